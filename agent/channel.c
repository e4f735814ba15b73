/*
 * channel: guest channel connections of the agent daemon (see channel.h).
 * Owns one struct chan per instance: its config line, what the guest
 * reported, and the unix socket connection (a bufferevent on the daemon's
 * loop). Connections are closed from their own callbacks by parking the
 * bufferevent and freeing it from a deferred event, never in place.
 */
#define LOG_MODULE "channel"

#include "channel.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "evbuf.h"
#include "log.h"
#include "mem.h"
#include "strmap.h"

#define CHAN_RETRY_MIN_MS 200
#define CHAN_RETRY_MAX_MS 5000
/* A guest that reads nothing while versions pile up: drop and redial.
 * Room for a whole line of the largest size and 1 MiB more. */
#define CHAN_OUT_MAX (CHANNEL_LINE_MAX + 1024 * 1024)
/* Dial failures logged at debug until a domain has had this long to boot. */
#define CHAN_QUIET_MS 30000

/* ---- the line codec ---------------------------------------------------- */

void
channel_msg_clear(struct channel_msg *m)
{
    size_t i;

    if (m == NULL)
        return;
    for (i = 0; i < m->naddrs; i++)
        free(m->addrs[i]);
    memset(m, 0, sizeof(*m));
}

int
channel_addr_valid(const char *s)
{
    unsigned char buf[16];
    char host[CHANNEL_ADDR_MAX + 1];
    const char *port = NULL, *colon;
    size_t n = strlen(s);

    if (n == 0 || n > CHANNEL_ADDR_MAX)
        return -1;
    if (inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1)
        return 0;
    if (s[0] == '[') {
        const char *end = strchr(s, ']');

        if (end == NULL || end[1] != ':')
            return -1;
        memcpy(host, s + 1, (size_t)(end - s - 1));
        host[end - s - 1] = '\0';
        if (inet_pton(AF_INET6, host, buf) != 1)
            return -1;
        port = end + 2;
    } else {
        colon = strchr(s, ':');
        if (colon == NULL || strchr(colon + 1, ':') != NULL)
            return -1;
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = '\0';
        if (inet_pton(AF_INET, host, buf) != 1)
            return -1;
        port = colon + 1;
    }
    n = strlen(port);
    if (n == 0 || n > 5 || strspn(port, "0123456789") != n ||
        strtol(port, NULL, 10) < 1 || strtol(port, NULL, 10) > 65535)
        return -1;
    return 0;
}

static int
parse_addrs(json_t *v, struct channel_msg *m, char *err, size_t errlen)
{
    size_t i, n;

    if (json_is_string(v)) {
        if (channel_addr_valid(json_string_value(v)) < 0) {
            snprintf(err, errlen, "\"addr\" %.64s is not IP or IP:PORT",
                     json_string_value(v));
            return -1;
        }
        m->addrs[m->naddrs++] = xstrdup(json_string_value(v));
        return 0;
    }
    if (!json_is_array(v) || (n = json_array_size(v)) > CHANNEL_ADDRS_MAX) {
        snprintf(err, errlen,
                 "\"addr\" must be a string or an array of at most %d strings",
                 CHANNEL_ADDRS_MAX);
        return -1;
    }
    for (i = 0; i < n; i++) {
        json_t *a = json_array_get(v, i);

        if (!json_is_string(a) ||
            channel_addr_valid(json_string_value(a)) < 0) {
            snprintf(err, errlen, "\"addr\" item %zu is not IP or IP:PORT", i);
            return -1;
        }
        m->addrs[m->naddrs++] = xstrdup(json_string_value(a));
    }
    return 0;
}

int
channel_parse_line(const char *line, size_t len, struct channel_msg *m,
                   char *err, size_t errlen)
{
    json_error_t je;
    json_t *o, *v;
    int ret = -1;

    memset(m, 0, sizeof(*m));
    if (len > CHANNEL_IN_LINE_MAX) {
        snprintf(err, errlen, "line of %zu bytes is longer than %d", len,
                 CHANNEL_IN_LINE_MAX);
        return -1;
    }
    o = json_loadb(line, len, JSON_REJECT_DUPLICATES, &je);
    if (o == NULL) {
        snprintf(err, errlen, "not JSON: %s", je.text);
        return -1;
    }
    if (!json_is_object(o)) {
        snprintf(err, errlen, "not a JSON object");
        goto cleanup;
    }
    if ((v = json_object_get(o, "ack")) != NULL) {
        if (!json_is_integer(v) || json_integer_value(v) < 0) {
            snprintf(err, errlen, "\"ack\" must be a version (an integer >= 0)");
            goto cleanup;
        }
        m->has_ack = true;
        m->ack = (uint64_t)json_integer_value(v);
    }
    if ((v = json_object_get(o, "ready")) != NULL) {
        if (!json_is_boolean(v)) {
            snprintf(err, errlen, "\"ready\" must be true or false");
            goto cleanup;
        }
        m->has_ready = true;
        m->ready = json_is_true(v);
    }
    if ((v = json_object_get(o, "exit")) != NULL) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            json_integer_value(v) > 255) {
            snprintf(err, errlen, "\"exit\" must be an integer 0..255");
            goto cleanup;
        }
        m->has_exit = true;
        m->exit_code = (int)json_integer_value(v);
    }
    if ((v = json_object_get(o, "addr")) != NULL) {
        if (parse_addrs(v, m, err, errlen) < 0)
            goto cleanup;
        m->has_addrs = true;
    }
    if (!m->has_ack && !m->has_ready && !m->has_exit && !m->has_addrs) {
        snprintf(err, errlen, "no \"ack\", \"ready\", \"exit\" or \"addr\"");
        goto cleanup;
    }
    ret = 0;

cleanup:
    if (ret < 0)
        channel_msg_clear(m);
    json_decref(o);
    return ret;
}

char *
channel_format_config(uint64_t version, const json_t *config)
{
    char *body, *line;

    if (config != NULL && !json_is_object(config))
        return NULL;
    body = config ? json_dumps(config, JSON_COMPACT | JSON_SORT_KEYS)
                  : xstrdup("{}");
    if (body == NULL)
        return NULL;
    line = xasprintf("{\"version\":%" PRIu64 ",\"config\":%s}\n", version,
                     body);
    free(body);
    if (strlen(line) > CHANNEL_LINE_MAX) {
        free(line);
        return NULL;
    }
    return line;
}

char *
channel_format_boot(const json_t *env, const json_t *args)
{
    char *e = NULL, *a = NULL, *line = NULL;
    size_t i;
    json_t *v;
    const char *k;

    if ((env != NULL && !json_is_object(env)) ||
        (args != NULL && !json_is_array(args)))
        return NULL;
    if (env != NULL) {
        json_object_foreach((json_t *)env, k, v) {
            if (!json_is_string(v))
                return NULL;
        }
    }
    if (args != NULL) {
        json_array_foreach(args, i, v) {
            if (!json_is_string(v))
                return NULL;
        }
    }
    e = env ? json_dumps(env, JSON_COMPACT | JSON_SORT_KEYS) : xstrdup("{}");
    a = args ? json_dumps(args, JSON_COMPACT) : xstrdup("[]");
    /* "env" first: a guest may read the env before its argv, as a
     * process's environment is there before it runs. */
    if (e != NULL && a != NULL)
        line = xasprintf("{\"env\":%s,\"args\":%s}\n", e, a);
    free(e);
    free(a);
    if (line != NULL && strlen(line) > CHANNEL_LINE_MAX) {
        free(line);
        line = NULL;
    }
    return line;
}

/* ---- connections -------------------------------------------------------- */

enum chan_state { CH_DETACHED = 0, CH_WAITING, CH_OPEN };

struct chan {
    struct chset *cs;
    char *id;
    char *path; /* while attached */
    enum chan_state state;
    struct bufferevent *bev;
    struct event *retry_ev;
    unsigned backoff_ms;
    unsigned waited_ms; /* dialling since the attach, for logging */
    bool warned;
    /* config */
    uint64_t version; /* highest known */
    char *line;       /* its line, NULL while version is 0 */
    char *boot;       /* the boot line (env, args), NULL until known */
    uint64_t written; /* highest written on this connection */
    bool ready_seen;  /* a {"ready"} arrived on this connection */
    /* what the guest said */
    uint64_t acked;
    bool ready;
    bool have_exit;
    int exit_code;
    char *addrs[CHANNEL_ADDRS_MAX];
    size_t naddrs;
};

struct chset {
    struct event_base *base;
    struct chset_ops ops;
    void *arg;
    struct strmap chans;
    struct bufferevent **dead;
    size_t ndead, capdead;
    struct event *free_ev;
};

static void chan_dial(struct chan *ch);

static void
free_dead_cb(evutil_socket_t fd, short what, void *arg)
{
    struct chset *cs = arg;
    size_t i;

    (void)fd;
    (void)what;
    for (i = 0; i < cs->ndead; i++)
        bufferevent_free(cs->dead[i]);
    cs->ndead = 0;
}

/* Closes the connection without freeing the bufferevent in place. */
static void
chan_close(struct chan *ch)
{
    struct chset *cs = ch->cs;

    if (ch->bev != NULL) {
        bufferevent_disable(ch->bev, EV_READ | EV_WRITE);
        bufferevent_setcb(ch->bev, NULL, NULL, NULL, NULL);
        if (cs->ndead == cs->capdead) {
            cs->capdead = cs->capdead ? cs->capdead * 2 : 8;
            cs->dead = xrealloc(cs->dead, cs->capdead * sizeof(*cs->dead));
        }
        cs->dead[cs->ndead++] = ch->bev;
        ch->bev = NULL;
        event_active(cs->free_ev, EV_TIMEOUT, 0);
    }
    ch->written = 0;
    ch->ready_seen = false;
}

static void
chan_retry_later(struct chan *ch)
{
    struct timeval tv;

    ch->state = CH_WAITING;
    tv.tv_sec = ch->backoff_ms / 1000;
    tv.tv_usec = (ch->backoff_ms % 1000) * 1000;
    if (evtimer_add(ch->retry_ev, &tv) < 0)
        log_warnx("instance %s: cannot arm the channel retry timer", ch->id);
    ch->waited_ms += ch->backoff_ms;
    ch->backoff_ms *= 2;
    if (ch->backoff_ms > CHAN_RETRY_MAX_MS)
        ch->backoff_ms = CHAN_RETRY_MAX_MS;
}

/* Drops the connection of an attached instance and dials again. */
static void
chan_reset(struct chan *ch, const char *why)
{
    log_warnx("instance %s: guest channel %s: %s; reconnecting", ch->id,
              ch->path, why);
    chan_close(ch);
    ch->backoff_ms = CHAN_RETRY_MIN_MS;
    chan_retry_later(ch);
}

static void
chan_write_line(struct chan *ch)
{
    struct evbuffer *out;

    if (ch->bev == NULL || ch->line == NULL)
        return;
    out = bufferevent_get_output(ch->bev);
    if (evbuffer_get_length(out) > CHAN_OUT_MAX) {
        chan_reset(ch, "the guest reads nothing (a line and 1 MiB unread)");
        return;
    }
    if (bufferevent_write(ch->bev, ch->line, strlen(ch->line)) < 0) {
        chan_reset(ch, "cannot queue a config line");
        return;
    }
    ch->written = ch->version;
    log_info("instance %s: config version %" PRIu64 " written to the guest",
             ch->id, ch->version);
}

/* The boot line, then the current config line: what a run starts with. */
static void
chan_write_start(struct chan *ch)
{
    if (ch->bev != NULL && ch->boot != NULL) {
        if (bufferevent_write(ch->bev, ch->boot, strlen(ch->boot)) < 0) {
            chan_reset(ch, "cannot queue the boot line");
            return;
        }
        log_info("instance %s: boot line (env, args) written to the guest",
                 ch->id);
    }
    if (ch->line != NULL)
        chan_write_line(ch);
}

static void
changed(struct chan *ch)
{
    if (ch->cs->ops.changed)
        ch->cs->ops.changed(ch->cs->arg, ch->id);
}

static bool
addrs_equal(const struct chan *ch, const struct channel_msg *m)
{
    size_t i;

    if (ch->naddrs != m->naddrs)
        return false;
    for (i = 0; i < m->naddrs; i++)
        if (strcmp(ch->addrs[i], m->addrs[i]) != 0)
            return false;
    return true;
}

static void
chan_on_line(struct chan *ch, const char *line, size_t len)
{
    struct channel_msg m;
    char err[256];
    bool dirty = false;
    size_t i;

    if (len > 0 && line[len - 1] == '\r')
        len--;
    if (len == 0)
        return;
    if (channel_parse_line(line, len, &m, err, sizeof(err)) < 0) {
        log_warnx("instance %s: guest channel line ignored: %s", ch->id, err);
        return;
    }
    if (m.has_ack) {
        if (m.ack > ch->version) {
            log_warnx("instance %s: the guest acknowledged config version %" PRIu64
                      ", which was never sent (the latest is %" PRIu64 "); ignored",
                      ch->id, m.ack, ch->version);
        } else if (m.ack > ch->acked) {
            ch->acked = m.ack;
            dirty = true;
        }
    }
    if (m.has_ready) {
        /* A second readiness report on one connection is a new run of the
         * guest (a reboot keeps the socket): give it the config again. */
        if (ch->ready_seen && m.ready)
            chan_write_start(ch);
        ch->ready_seen = true;
        if (ch->ready != m.ready) {
            ch->ready = m.ready;
            dirty = true;
        }
    }
    if (m.has_exit) {
        log_info("instance %s: the guest reports exit code %d", ch->id,
                 m.exit_code);
        ch->have_exit = true;
        ch->exit_code = m.exit_code;
    }
    if (m.has_addrs && !addrs_equal(ch, &m)) {
        for (i = 0; i < ch->naddrs; i++)
            free(ch->addrs[i]);
        for (i = 0; i < m.naddrs; i++) {
            ch->addrs[i] = m.addrs[i];
            m.addrs[i] = NULL;
        }
        ch->naddrs = m.naddrs;
        m.naddrs = 0;
        dirty = true;
    }
    channel_msg_clear(&m);
    if (dirty)
        changed(ch);
}

/* Consumes the complete lines in the input. -1 when the connection was
 * reset (a line too long). */
static int
chan_consume(struct chan *ch, struct evbuffer *in)
{
    for (;;) {
        size_t eol_len = 0;
        struct evbuffer_ptr eol =
            evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_LF);
        char *line;

        if (eol.pos < 0) {
            if (evbuffer_get_length(in) > CHANNEL_IN_LINE_MAX) {
                chan_reset(ch, "a line longer than 64 KiB");
                return -1;
            }
            return 0;
        }
        if ((size_t)eol.pos > CHANNEL_IN_LINE_MAX) {
            chan_reset(ch, "a line longer than 64 KiB");
            return -1;
        }
        line = xmalloc((size_t)eol.pos + 1);
        if (evbuffer_remove(in, line, (size_t)eol.pos) != (int)eol.pos ||
            evbuffer_drain(in, eol_len) < 0) {
            free(line);
            chan_reset(ch, "cannot read a line from the buffer");
            return -1;
        }
        line[eol.pos] = '\0';
        chan_on_line(ch, line, (size_t)eol.pos);
        free(line);
        if (ch->bev == NULL)
            return -1;
    }
}

static void
chan_read_cb(struct bufferevent *bev, void *arg)
{
    struct chan *ch = arg;

    (void)chan_consume(ch, bufferevent_get_input(bev));
}

static void
chan_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct chan *ch = arg;

    (void)bev;
    if (what & BEV_EVENT_EOF) {
        /* What a guest poweroff looks like from here: not worth a warning.
         * The exit arrives from the worker; until then, dial again. */
        log_info("instance %s: guest channel closed by QEMU", ch->id);
        chan_close(ch);
        ch->backoff_ms = CHAN_RETRY_MIN_MS;
        chan_retry_later(ch);
    }
    else if (what & BEV_EVENT_ERROR)
        chan_reset(ch, evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
}

/* A unix socket connect never blocks: it succeeds or fails at once. */
static void
chan_dial(struct chan *ch)
{
    struct sockaddr_un sun;
    int fd;

    if (ch->path == NULL)
        return;
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    if (strlen(ch->path) >= sizeof(sun.sun_path)) {
        log_warnx("instance %s: guest channel path %s is longer than a unix socket path can be",
                  ch->id, ch->path);
        ch->state = CH_WAITING; /* attached, never connected */
        return;
    }
    memcpy(sun.sun_path, ch->path, strlen(ch->path) + 1);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        log_warn("instance %s: cannot create a unix socket", ch->id);
        chan_retry_later(ch);
        return;
    }
    if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
        int e = errno;

        close(fd);
        if (!ch->warned && ch->waited_ms >= CHAN_QUIET_MS) {
            log_warnx("instance %s: cannot connect to guest channel %s for %u s: %s (still trying)",
                      ch->id, ch->path, ch->waited_ms / 1000, strerror(e));
            ch->warned = true;
        } else {
            log_debug("instance %s: guest channel %s: %s", ch->id, ch->path,
                      strerror(e));
        }
        chan_retry_later(ch);
        return;
    }
    ch->bev = bufferevent_socket_new(ch->cs->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (ch->bev == NULL) {
        close(fd);
        log_warnx("instance %s: cannot create a bufferevent for the guest channel",
                  ch->id);
        chan_retry_later(ch);
        return;
    }
    /* Reading stops at a full line's worth unconsumed: a too-long line is
     * seen (and refused) without buffering more of it. */
    bufferevent_setwatermark(ch->bev, EV_READ, 0, CHANNEL_IN_LINE_MAX + 2);
    bufferevent_setcb(ch->bev, chan_read_cb, NULL, chan_event_cb, ch);
    if (bufferevent_enable(ch->bev, EV_READ | EV_WRITE) < 0) {
        chan_reset(ch, "cannot enable the bufferevent");
        return;
    }
    ch->state = CH_OPEN;
    ch->backoff_ms = CHAN_RETRY_MIN_MS;
    ch->waited_ms = 0;
    ch->warned = false;
    ch->written = 0;
    ch->ready_seen = false;
    log_info("instance %s: guest channel %s connected", ch->id, ch->path);
    chan_write_start(ch);
}

static void
retry_cb(evutil_socket_t fd, short what, void *arg)
{
    struct chan *ch = arg;

    (void)fd;
    (void)what;
    if (ch->state == CH_WAITING)
        chan_dial(ch);
}

/* ---- the set ------------------------------------------------------------ */

struct chset *
chset_new(struct event_base *base, const struct chset_ops *ops, void *arg)
{
    struct chset *cs = xcalloc(1, sizeof(*cs));

    cs->base = base;
    if (ops)
        cs->ops = *ops;
    cs->arg = arg;
    strmap_init(&cs->chans);
    cs->free_ev = event_new(base, -1, 0, free_dead_cb, cs);
    if (cs->free_ev == NULL)
        fatalx("cannot create the guest channels' event");
    return cs;
}

static struct chan *
chan_get(struct chset *cs, const char *id)
{
    struct chan *ch = strmap_get(&cs->chans, id);

    if (ch == NULL) {
        ch = xcalloc(1, sizeof(*ch));
        ch->cs = cs;
        ch->id = xstrdup(id);
        ch->backoff_ms = CHAN_RETRY_MIN_MS;
        ch->retry_ev = evtimer_new(cs->base, retry_cb, ch);
        if (ch->retry_ev == NULL)
            fatalx("cannot create a guest channel timer");
        strmap_put(&cs->chans, ch->id, ch);
    }
    return ch;
}

static void
chan_free(struct chan *ch)
{
    size_t i;

    chan_close(ch);
    event_free(ch->retry_ev);
    for (i = 0; i < ch->naddrs; i++)
        free(ch->addrs[i]);
    free(ch->line);
    free(ch->boot);
    free(ch->path);
    free(ch->id);
    free(ch);
}

void
chset_free(struct chset *cs)
{
    size_t i;

    if (cs == NULL)
        return;
    for (i = 0; i < cs->chans.cap; i++)
        if (cs->chans.keys[i] != NULL)
            chan_free(cs->chans.vals[i]);
    strmap_fini(&cs->chans);
    free_dead_cb(-1, 0, cs);
    free(cs->dead);
    event_free(cs->free_ev);
    free(cs);
}

void
chset_attach(struct chset *cs, const char *id, const char *path)
{
    struct chan *ch = chan_get(cs, id);

    if (ch->path != NULL && strcmp(ch->path, path) == 0 &&
        ch->state != CH_DETACHED)
        return;
    chan_close(ch);
    evtimer_del(ch->retry_ev);
    free(ch->path);
    ch->path = xstrdup(path);
    ch->backoff_ms = CHAN_RETRY_MIN_MS;
    ch->waited_ms = 0;
    ch->warned = false;
    ch->state = CH_WAITING;
    chan_dial(ch);
}

bool
chset_detach(struct chset *cs, const char *id, int *exit_code)
{
    struct chan *ch = strmap_get(&cs->chans, id);
    bool have_exit;
    size_t i;

    if (ch == NULL)
        return false;
    if (ch->bev != NULL) {
        /* QEMU is gone: what the guest wrote last is in the socket. The
         * bufferevent's input takes no bytes from outside (its end is
         * frozen): read into a buffer of our own, after what it holds. */
        struct evbuffer *in = evbuf_new();
        evutil_socket_t fd = bufferevent_getfd(ch->bev);

        if (evbuffer_add_buffer(in, bufferevent_get_input(ch->bev)) < 0)
            log_warnx("instance %s: cannot take the guest channel's input",
                      ch->id);
        while (ch->bev != NULL && chan_consume(ch, in) == 0 &&
               evbuffer_read(in, fd, CHANNEL_IN_LINE_MAX) > 0)
            ;
        evbuffer_free(in);
    }
    chan_close(ch);
    evtimer_del(ch->retry_ev);
    free(ch->path);
    ch->path = NULL;
    ch->state = CH_DETACHED;
    have_exit = ch->have_exit;
    if (have_exit && exit_code != NULL)
        *exit_code = ch->exit_code;
    ch->have_exit = false;
    ch->ready = false;
    /* The guest's addresses were those of this run. */
    for (i = 0; i < ch->naddrs; i++)
        free(ch->addrs[i]);
    ch->naddrs = 0;
    return have_exit;
}

void
chset_forget(struct chset *cs, const char *id)
{
    struct chan *ch = strmap_del(&cs->chans, id);

    if (ch != NULL)
        chan_free(ch);
}

int
chset_config(struct chset *cs, const char *id, uint64_t version,
             const json_t *config)
{
    struct chan *ch;
    char *line;

    ch = strmap_get(&cs->chans, id);
    if (version == 0 || (ch != NULL && version <= ch->version))
        return 0;
    line = channel_format_config(version, config);
    if (line == NULL) {
        log_warnx("instance %s: config version %" PRIu64
                  " cannot be sent: not an object of UTF-8 strings, or longer than %u bytes",
                  id, version, CHANNEL_LINE_MAX);
        return -1;
    }
    ch = chan_get(cs, id);
    free(ch->line);
    ch->line = line;
    ch->version = version;
    if (ch->state == CH_OPEN && ch->bev != NULL && version > ch->written)
        chan_write_line(ch);
    return 1;
}

int
chset_boot(struct chset *cs, const char *id, const json_t *env,
           const json_t *args)
{
    struct chan *ch;
    char *line = channel_format_boot(env, args);

    if (line == NULL) {
        log_warnx("instance %s: env and args cannot be sent: not strings, or longer than %u bytes",
                  id, CHANNEL_LINE_MAX);
        return -1;
    }
    ch = chan_get(cs, id);
    free(ch->boot);
    ch->boot = line;
    return 0;
}

char *
chset_boot_line(struct chset *cs, const char *id)
{
    struct chan *ch = strmap_get(&cs->chans, id);

    return ch && ch->boot ? xstrdup(ch->boot) : NULL;
}

char *
chset_config_line(struct chset *cs, const char *id)
{
    struct chan *ch = strmap_get(&cs->chans, id);

    return ch && ch->line ? xstrdup(ch->line) : NULL;
}

bool
chset_view(struct chset *cs, const char *id, struct channel_view *v)
{
    struct chan *ch = strmap_get(&cs->chans, id);

    memset(v, 0, sizeof(*v));
    if (ch == NULL)
        return false;
    v->acked = ch->acked;
    v->ready = ch->ready;
    v->have_exit = ch->have_exit;
    v->exit_code = ch->exit_code;
    v->addrs = ch->addrs;
    v->naddrs = ch->naddrs;
    return true;
}
