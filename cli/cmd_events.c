/*
 * cmd_events: `events` (list, or -f to follow the Server-Sent Events
 * watch), and the watch loop that `config watch` and `endpoints -w` reuse
 * with callbacks of their own. A followed watch resumes after a dropped
 * connection with Last-Event-ID, so no event is lost or printed twice
 * across reconnects. When the controller no longer keeps the events after
 * that id (410 expired, before the stream or as an "error" event in it),
 * the watch says so on stderr and starts again from now, without
 * Last-Event-ID or --since, as kubectl re-lists after a 410.
 */
#include "cli.h"

#include <string.h>

#include "cmd_priv.h"
#include "http.h"
#include "mem.h"
#include "sse.h"

/* The controller sends a keepalive every 15 s: three missed means dead. */
#define WATCH_IDLE_S 45
#define WATCH_BACKOFF_MAX_MS 10000

enum {
    OPT_FOLLOW = 1,
    OPT_SINCE,
    OPT_TYPE,
    OPT_OBJECT,
};

struct watch {
    struct cli_ctx *ctx;
    struct sse_parser sse;
    char last_id[SSE_MAX_FIELD];
    bool got_data;
    bool raw; /* print data as it is */
    cli_watch_event_fn on_ev;
    cli_watch_connect_fn on_connect;
    void *arg;
    int cb_rc; /* a callback's failure ends the watch with it */
    bool expired; /* the stream ended with an "expired" error event */
};

/* An "error" event with code "expired": the position was pruned. */
static bool
is_expired(const char *event, const char *data)
{
    json_t *j, *code;
    bool yes;

    if (strcmp(event, "error") != 0)
        return false;
    j = json_loads(data, 0, NULL);
    code = json_object_get(json_object_get(j, "error"), "code");
    yes = json_is_string(code) && strcmp(json_string_value(code), "expired") == 0;
    json_decref(j);
    return yes;
}

/* path without its since= parameter (a new string). */
static char *
drop_since(const char *path)
{
    const char *q = strchr(path, '?');
    char *out;
    size_t n = 0, cap;

    if (q == NULL)
        return xstrdup(path);
    cap = strlen(path) + 1;
    out = xmalloc(cap);
    memcpy(out, path, (size_t)(q - path));
    n = (size_t)(q - path);
    for (const char *p = q + 1; *p;) {
        const char *end = strchr(p, '&');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (strncmp(p, "since=", 6) != 0) {
            char sep = n == (size_t)(q - path) ? '?' : '&';
            out[n++] = sep;
            memcpy(out + n, p, len);
            n += len;
        }
        p += len + (end ? 1 : 0);
    }
    out[n] = '\0';
    return out;
}

static int
on_event(void *arg, const char *id, const char *event, const char *data)
{
    struct watch *w = arg;
    struct cli_ctx *ctx = w->ctx;
    json_t *ev;

    if (w->expired)
        return 0; /* the server ends the stream after it */
    if (is_expired(event, data)) {
        /* Not stopped from here: cancelling a request leaves the
         * connection unusable for the next one; the server ends the
         * stream right after this event anyway. */
        w->expired = true;
        return 0;
    }
    if (id[0] != '\0')
        xstrlcpy(w->last_id, id, sizeof(w->last_id));
    if (w->on_ev != NULL) {
        w->cb_rc = w->on_ev(ctx, w->arg, event, data);
        return w->cb_rc != 0;
    }
    ev = json_loads(data, JSON_DECODE_ANY, NULL);
    if (ev == NULL || w->raw) {
        cli_print_line(ctx, data);
    } else if (ctx->output == FMT_JSON) {
        /* One object per line: the form `jq` and log shippers stream. */
        char *s = json_dumps(ev, JSON_COMPACT | JSON_ENCODE_ANY);
        fprintf(ctx->out, "%s\n", s ? s : "null");
        free(s);
    } else {
        if (ctx->output == FMT_NAME)
            fprintf(ctx->out, "%" JSON_INTEGER_FORMAT "\n",
                    json_integer_value(json_object_get(ev, "id")));
        else
            fmt_event_line(ctx->out, ev, ctx->color);
    }
    fflush(ctx->out);
    json_decref(ev);
    return 0;
}

static int
on_data(void *arg, const char *data, size_t len)
{
    struct watch *w = arg;
    if (!w->got_data && w->on_connect != NULL) {
        /* The server answered: what changed before the watch began is
         * read now, what changes later arrives as events. */
        w->got_data = true;
        w->cb_rc = w->on_connect(w->ctx, w->arg);
        if (w->cb_rc != 0)
            return 1;
    }
    w->got_data = true;
    int rc = sse_feed(&w->sse, data, len, on_event, w);
    return rc != 0;
}

int
cli_watch(struct cli_ctx *ctx, const char *path, bool raw)
{
    return cli_watch_cb(ctx, path, raw, NULL, NULL, NULL);
}

int
cli_watch_cb(struct cli_ctx *ctx, const char *path, bool raw,
             cli_watch_event_fn on_ev, cli_watch_connect_fn on_connect,
             void *arg)
{
    struct watch w = {.ctx = ctx,
                      .raw = raw,
                      .on_ev = on_ev,
                      .on_connect = on_connect,
                      .arg = arg};
    bool connected = false, warned = false;
    long backoff = 500;
    int rc = CLI_EXIT_FAIL;
    char *cur = xstrdup(path);

    if (cli_connect(ctx) != 0) {
        free(cur);
        return CLI_EXIT_FAIL;
    }
    path = cur;
    for (;;) {
        struct cli_http_resp r;
        char *hdr = NULL;
        const char *headers[2] = {NULL, NULL};

        /* A fresh parser per connection: a half event is not resumed. */
        sse_init(&w.sse);
        w.got_data = false;
        w.expired = false;
        if (w.last_id[0] != '\0') {
            hdr = xasprintf("Last-Event-ID: %s", w.last_id);
            headers[0] = hdr;
        }
        int got = cli_http_stream(ctx->http, path, headers, WATCH_IDLE_S,
                                  on_data, &w, &r);
        sse_free(&w.sse);
        free(hdr);
        if (w.cb_rc != 0) {
            /* A callback failed and said why. */
            rc = w.cb_rc;
            cli_http_resp_clear(&r);
            break;
        }
        if (w.expired || (got == 0 && r.status == 410)) {
            /* Pruned: what happened since our position is gone. Start
             * again from now; the callers' on_connect re-reads state. */
            if (w.last_id[0])
                fprintf(ctx->err,
                        "cloudctl: the events after %s were pruned by the "
                        "controller (410 expired); re-listing from now, "
                        "events in between are not shown\n",
                        w.last_id);
            else
                fprintf(ctx->err,
                        "cloudctl: events this watch had not seen were "
                        "pruned by the controller (410 expired); re-listing "
                        "from now, events in between are not shown\n");
            w.last_id[0] = '\0';
            connected = true;
            {
                char *np = drop_since(cur);
                free(cur);
                cur = np;
                path = cur;
            }
            cli_http_resp_clear(&r);
            continue;
        }
        if (got == 1) {
            rc = cli_fail(ctx, "GET %s: an event is over %u bytes", path,
                          SSE_MAX_EVENT);
            cli_http_resp_clear(&r);
            break;
        }
        if (got == 0 && (r.status < 200 || r.status >= 300)) {
            rc = cli_fail_answer(ctx, r.status, r.body, r.len, "GET", path);
            cli_http_resp_clear(&r);
            break;
        }
        if (got < 0 && !connected && !w.got_data) {
            rc = cli_fail(ctx, "%s", r.error);
            cli_http_resp_clear(&r);
            break;
        }
        if (got == 0 || w.got_data) {
            connected = true;
            backoff = 500;
            warned = false;
        }
        if (got < 0 && !warned) {
            /* Said once per outage; the watch goes on by itself. */
            fprintf(ctx->err,
                    "cloudctl: watch interrupted (%s); reconnecting\n",
                    r.error);
            warned = true;
        }
        cli_http_resp_clear(&r);
        cli_sleep_ms(backoff);
        backoff = backoff * 2 > WATCH_BACKOFF_MAX_MS ? WATCH_BACKOFF_MAX_MS
                                                     : backoff * 2;
    }
    free(cur);
    return rc;
}

/* ---- events ---------------------------------------------------------- */

struct events_opts {
    bool follow;
    const char *since, *type, *object;
};

static int
events_opt(struct cli_ctx *ctx, void *st, int id, const char *val)
{
    struct events_opts *o = st;
    long long n;

    switch (id) {
    case OPT_FOLLOW:
        o->follow = true;
        break;
    case OPT_SINCE:
        if (cli_parse_int(val, 0, (1LL << 62), &n) < 0)
            return cli_usage(ctx, "events", "--since \"%s\" is not an event id",
                             val);
        o->since = val;
        break;
    case OPT_TYPE:
        o->type = val;
        break;
    case OPT_OBJECT:
        o->object = val;
        break;
    }
    return 0;
}

/* fmt_events() as a list printer: event lines carry their own time. */
static void
print_events(FILE *out, const json_t *items, enum fmt_mode mode, time_t now,
             bool color)
{
    (void)now;
    fmt_events(out, items, mode, color);
}

int
cmd_events(struct cli_ctx *ctx, int argc, char **argv)
{
    static const struct arg_spec specs[] = {
        {"follow", 'f', false, OPT_FOLLOW}, {"watch", 'w', false, OPT_FOLLOW},
        {"since", 0, true, OPT_SINCE},      {"type", 0, true, OPT_TYPE},
        {"object", 0, true, OPT_OBJECT},    {NULL, 0, false, 0},
    };
    struct events_opts o = {0};
    char **pos = NULL, *path = NULL;
    int npos, rc;
    json_t *items = NULL;

    rc = cli_parse(ctx, "events", specs, 0, argc, argv, events_opt, &o, &pos,
                   &npos);
    if (rc == 0)
        rc = cli_want_args(ctx, "events", pos, npos, 0, 0, NULL);
    if (rc != 0)
        goto out;
    path = xstrdup("/v1/events");
    if (o.follow)
        path = cli_list_query(path, "watch", "true");
    path = cli_list_query(path, "since", o.since);
    path = cli_list_query(path, "type", o.type);
    path = cli_list_query(path, "object", o.object);
    if (o.follow) {
        rc = cli_watch(ctx, path, false);
        goto out;
    }
    rc = cli_api_list(ctx, path, &items);
    if (rc == 0)
        rc = cli_list_print(ctx, items, print_events);
out:
    json_decref(items);
    free(path);
    free(pos);
    return rc;
}
