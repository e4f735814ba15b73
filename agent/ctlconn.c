/*
 * ctlconn: the agent's end of a controller connection and its session (see
 * ctlconn.h), shared by cloud-agent's link and cloud-hollow's hosts.
 */
#define LOG_MODULE "link"

#include "ctlconn.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/util.h>

#include "log.h"
#include "netopt.h"
#include "tlsev.h"

static void
free_cb(evutil_socket_t fd, short what, void *arg)
{
    struct ctlconn *c = arg;

    (void)fd;
    (void)what;
    if (c->dead_bev != NULL) {
        bufferevent_free(c->dead_bev);
        c->dead_bev = NULL;
    }
}

static void
hb_cb(evutil_socket_t fd, short what, void *arg)
{
    struct ctlconn *c = arg;

    (void)fd;
    (void)what;
    if (c->state == CTLCONN_READY)
        c->ops->heartbeat(c->arg);
}

static void
retry_cb(evutil_socket_t fd, short what, void *arg)
{
    struct ctlconn *c = arg;

    (void)fd;
    (void)what;
    c->ops->dial(c->arg);
}

int
ctlconn_init(struct ctlconn *c, struct event_base *base,
             const struct ctlconn_ops *ops, void *arg, const char *prefix,
             unsigned welcome_timeout_s)
{
    memset(c, 0, sizeof(*c));
    c->base = base;
    c->ops = ops;
    c->arg = arg;
    c->prefix = prefix;
    c->welcome_timeout_s = welcome_timeout_s;
    c->parts = dsparts_new(DSPARTS_MAX, DSPARTS_BYTES_MAX, DSPARTS_MEM_MAX);
    c->free_ev = event_new(base, -1, 0, free_cb, c);
    c->hb_ev = event_new(base, -1, EV_PERSIST, hb_cb, c);
    c->retry_ev = evtimer_new(base, retry_cb, c);
    return c->free_ev == NULL || c->hb_ev == NULL || c->retry_ev == NULL ? -1
                                                                         : 0;
}

void
ctlconn_fini(struct ctlconn *c)
{
    if (c->bev != NULL)
        bufferevent_free(c->bev);
    if (c->dead_bev != NULL)
        bufferevent_free(c->dead_bev);
    if (c->free_ev != NULL)
        event_free(c->free_ev);
    if (c->hb_ev != NULL)
        event_free(c->hb_ev);
    if (c->retry_ev != NULL)
        event_free(c->retry_ev);
    dsparts_free(c->parts);
    memset(c, 0, sizeof(*c));
}

/* ---- sending ---------------------------------------------------------- */

int
ctlconn_send(struct ctlconn *c, const frame_envelope *env)
{
    if (c->bev == NULL)
        return -1;
    if (frame_encode_evbuffer(bufferevent_get_output(c->bev), env) < 0) {
        log_warnx("%scannot encode a %s frame", c->prefix, frame_msg_name(env));
        return -1;
    }
    return 0;
}

void
ctlconn_send_error(struct ctlconn *c, Cloud__Agent__ErrorCode code,
                   const char *msg)
{
    Cloud__Agent__Envelope env = CLOUD__AGENT__ENVELOPE__INIT;
    Cloud__Agent__Error err = CLOUD__AGENT__ERROR__INIT;

    err.code = code;
    err.message = (char *)msg;
    env.msg_case = CLOUD__AGENT__ENVELOPE__MSG_ERROR;
    env.error = &err;
    (void)ctlconn_send(c, &env);
}

void
ctlconn_send_hello(struct ctlconn *c, Cloud__Agent__Hello *h)
{
    Cloud__Agent__Envelope env = CLOUD__AGENT__ENVELOPE__INIT;

    h->protocol_version = CLOUD__AGENT__PROTOCOL_VERSION__PROTOCOL_VERSION_1;
    h->highest_leader_epoch = c->highest_leader_epoch;
    h->desired_set_max = DSPARTS_BYTES_MAX;
    env.msg_case = CLOUD__AGENT__ENVELOPE__MSG_HELLO;
    env.hello = h;
    (void)ctlconn_send(c, &env);
}

void
ctlconn_hello_ref(Cloud__Agent__Hello *h, Cloud__Agent__InstanceRef *ref,
                  char *id, uint64_t generation,
                  Cloud__Agent__ObservedInstanceState state)
{
    cloud__agent__instance_ref__init(ref);
    ref->id = id;
    ref->generation = generation;
    ref->state = state;
    h->instances[h->n_instances++] = ref;
}

/* ---- the connection ---------------------------------------------------- */

static bool dispatch(struct ctlconn *c, frame_envelope *env);

static void
read_cb(struct bufferevent *bev, void *arg)
{
    struct ctlconn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    char err[256];

    while (c->bev == bev) {
        frame_envelope *env = NULL;
        enum frame_status st =
            frame_decode_evbuffer(in, NULL, &env, err, sizeof(err));

        if (st == FRAME_NEED_MORE)
            break;
        if (st == FRAME_ERROR) {
            ctlconn_down(c, "bad frame from the controller: %s", err);
            break;
        }
        if (!dispatch(c, env))
            frame_envelope_free(env);
    }
}

static void
event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct ctlconn *c = arg;
    char buf[256] = "";

    if (bev != c->bev)
        return;
    if (what & BEV_EVENT_CONNECTED) {
        struct timeval tv = {c->welcome_timeout_s, 0};

        c->state = CTLCONN_WELCOME;
        bufferevent_set_timeouts(bev, &tv, NULL);
        /* Frames are small and latency matters (acks, statuses). */
        if (netopt_nodelay(bufferevent_getfd(bev)) < 0)
            log_warn("%scannot set TCP_NODELAY on the controller link",
                     c->prefix);
        c->ops->connected(c->arg);
        return;
    }
    tlsev_error(bev, "controller's", buf, sizeof(buf));
    if (what & BEV_EVENT_TIMEOUT)
        c->ops->down(c->arg, "no Welcome in time");
    else if (what & BEV_EVENT_EOF)
        c->ops->down(c->arg, "the controller closed the connection");
    else
        ctlconn_down(
            c, "connection failed: %s",
            buf[0] ? buf
                   : evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
}

void
ctlconn_dial(struct ctlconn *c, SSL *ssl, const char *host, int port)
{
    struct timeval tv = {c->welcome_timeout_s, 0};

    c->bev = bufferevent_openssl_socket_new(
        c->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
    if (c->bev == NULL) {
        SSL_free(ssl);
        ctlconn_down(c, "cannot create a TLS bufferevent");
        return;
    }
    bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
    bufferevent_setcb(c->bev, read_cb, NULL, event_cb, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    c->state = CTLCONN_CONNECTING;
    bufferevent_set_timeouts(c->bev, &tv, &tv);
    if (bufferevent_socket_connect_hostname(c->bev, NULL, AF_UNSPEC, host,
                                            port) < 0)
        ctlconn_down(c, "cannot connect");
}

void
ctlconn_down(struct ctlconn *c, const char *fmt, ...)
{
    char why[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    c->ops->down(c->arg, why);
}

void
ctlconn_dial_after(struct ctlconn *c, unsigned ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

    if (evtimer_add(c->retry_ev, &tv) < 0)
        fatalx("%scannot arm the reconnect", c->prefix);
}

void
ctlconn_close(struct ctlconn *c, unsigned retry_ms)
{
    dsparts_reset(c->parts); /* a partial set belongs to the session */
    if (c->bev != NULL) {
        bufferevent_disable(c->bev, EV_READ | EV_WRITE);
        if (c->dead_bev != NULL)
            bufferevent_free(c->dead_bev);
        c->dead_bev = c->bev; /* freed outside its own callback */
        c->bev = NULL;
        event_active(c->free_ev, EV_TIMEOUT, 0);
    }
    evtimer_del(c->hb_ev);
    c->state = CTLCONN_IDLE;
    ctlconn_dial_after(c, retry_ms + (unsigned)(random() % (retry_ms / 4 + 1)));
}

/* ---- the session ------------------------------------------------------- */

/* Starts the session w names; -1 (logged) when no Hello waits for it. */
static int
ctlconn_welcome(struct ctlconn *c, const Cloud__Agent__Welcome *w)
{
    struct timeval tv;

    if (c->state != CTLCONN_WELCOME) {
        log_warnx("%sWelcome outside the handshake ignored", c->prefix);
        return -1;
    }
    c->epoch = w->session_epoch;
    c->revision = 0;
    dsparts_reset(c->parts);
    c->hb_seq = 0;
    c->hb_ms = w->heartbeat_interval_ms ? w->heartbeat_interval_ms : 2000;
    if (c->hb_ms < 100)
        c->hb_ms = 100;
    c->state = CTLCONN_READY;
    /* No read timeout any more: the controller sends only on changes. */
    bufferevent_set_timeouts(c->bev, NULL, NULL);
    tv.tv_sec = c->hb_ms / 1000;
    tv.tv_usec = (c->hb_ms % 1000) * 1000;
    if (evtimer_add(c->hb_ev, &tv) < 0)
        fatalx("%scannot arm the heartbeat", c->prefix);
    return 0;
}

void
ctlconn_heartbeat(struct ctlconn *c)
{
    Cloud__Agent__Envelope env = CLOUD__AGENT__ENVELOPE__INIT;
    Cloud__Agent__Heartbeat hb = CLOUD__AGENT__HEARTBEAT__INIT;

    hb.session_epoch = c->epoch;
    hb.seq = ++c->hb_seq;
    hb.applied_revision = c->revision;
    env.msg_case = CLOUD__AGENT__ENVELOPE__MSG_HEARTBEAT;
    env.heartbeat = &hb;
    (void)ctlconn_send(c, &env);
}

/*
 * A DesiredState frame (takes env): checks its session, leader epoch and
 * revision, in that order, and adds it to the partial set; DSPARTS_WHOLE
 * fills *out. A set refused is logged and answered with an Error.
 */
static enum dsparts_status
ctlconn_desired(struct ctlconn *c, frame_envelope *env, struct dsparts_set *out)
{
    const Cloud__Agent__DesiredState *d = env->desired_state;
    enum dsparts_status st;
    char why[256];

    if (c->state != CTLCONN_READY || d->session_epoch != c->epoch) {
        log_warnx("%sDesiredState for session %" PRIu64
                  " ignored (ours is %" PRIu64 ")",
                  c->prefix, d->session_epoch, c->epoch);
        frame_envelope_free(env);
        return DSPARTS_HELD;
    }
    if (d->leader_epoch < c->highest_leader_epoch) {
        log_warnx("%sDesiredState from leader epoch %" PRIu64
                  " refused: epoch %" PRIu64 " was seen",
                  c->prefix, d->leader_epoch, c->highest_leader_epoch);
        frame_envelope_free(env);
        return DSPARTS_HELD;
    }
    c->highest_leader_epoch = d->leader_epoch;
    if (d->revision <= c->revision) {
        frame_envelope_free(env); /* applied already */
        return DSPARTS_HELD;
    }
    st = dsparts_add(c->parts, env, out, why, sizeof(why));
    if (st == DSPARTS_REFUSED) {
        log_warnx("%s%s", c->prefix, why);
        ctlconn_send_error(c, CLOUD__AGENT__ERROR_CODE__ERROR_CODE_UNSUPPORTED,
                           why);
    }
    return st;
}

/* The session's own messages here, the rest to the owner; true: env kept. */
static bool
dispatch(struct ctlconn *c, frame_envelope *env)
{
    struct dsparts_set set;

    switch (env->msg_case) {
    case CLOUD__AGENT__ENVELOPE__MSG_WELCOME:
        if (ctlconn_welcome(c, env->welcome) == 0)
            c->ops->welcome(c->arg, env->welcome);
        return false;
    case CLOUD__AGENT__ENVELOPE__MSG_DESIRED_STATE:
        if (ctlconn_desired(c, env, &set) == DSPARTS_WHOLE) {
            c->ops->desired(c->arg, &set);
            dsparts_set_clear(&set);
        }
        return true;
    case CLOUD__AGENT__ENVELOPE__MSG_ERROR:
        log_warnx("%scontroller error %d: %.512s", c->prefix,
                  (int)env->error->code, env->error->message);
        return false;
    default:
        c->ops->message(c->arg, env);
        return false;
    }
}
