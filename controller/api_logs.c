/*
 * api_logs: the console log route (see api_logs.h). Owns one struct log_req per
 * request: the stream handle (the gateway's, or the log relay's when the
 * host's agent is connected to another replica), the first-chunk timer and
 * whether the reply has started. It ends in exactly one of: the last chunk,
 * the agent's connection ending (on_lost), the stream refused by the
 * replica holding the agent (on_refused), the client leaving (r->on_cancel),
 * the first chunk not coming in time, a slow client.
 */
#define LOG_MODULE "logs"
#include "api_logs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/http.h>

#include "app.h"
#include "gateway.h"
#include "logrelay.h"
#include "log.h"
#include "mem.h"

struct log_req {
    struct http_req *r;
    struct gateway *gw;
    struct logrelay *relay; /* set: the stream is relayed (handle is its) */
    unsigned long long handle;
    struct event *timer;
    char *inst, *host;
    int started;
    int follow;
};

static void
log_req_free(struct log_req *lr)
{
    if (lr->timer)
        event_free(lr->timer);
    free(lr->inst);
    free(lr->host);
    free(lr);
}

/* Stops the stream at its source (no more sink calls). */
static void
log_close_source(struct log_req *lr)
{
    if (lr->relay != NULL)
        logrelay_cancel(lr->relay, lr->handle);
    else
        gateway_log_close(lr->gw, lr->handle);
}

/* The stream could not be opened: 429 (too many) or 503. */
static void
log_refuse(struct http_req *r, int status, const char *inst, const char *why)
{
    http_reply_error(r, status, status == 429 ? "too_many" : "unavailable",
                     NULL, "console of instance %s: %s", inst, why);
}

static size_t
client_backlog(struct http_req *r)
{
    struct evhttp_connection *evcon;
    struct bufferevent *bev;

    if (r->req == NULL)
        return 0;
    evcon = evhttp_request_get_connection(r->req);
    bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
    return bev ? evbuffer_get_length(bufferevent_get_output(bev)) : 0;
}

static void
log_start(struct log_req *lr, unsigned long long offset)
{
    char off[24];

    snprintf(off, sizeof(off), "%llu", offset);
    http_add_header(lr->r, "X-Log-Offset", off);
    http_add_header(lr->r, "X-Content-Type-Options", "nosniff");
    /* The guest's bytes, as they are: not necessarily UTF-8. */
    http_stream_start(lr->r, 200, "text/plain");
    lr->started = 1;
    /* A followed console may be silent for hours. */
    if (lr->follow && lr->r->req != NULL)
        http_stream_long(lr->r, LOGS_WRITE_TIMEOUT_S);
}

/* Ends the reply (or the error before it) and frees lr. */
static void
log_end(struct log_req *lr, int status, const char *error)
{
    if (lr->started)
        http_stream_end(lr->r);
    else
        http_reply_error(lr->r, status, "unavailable", NULL,
                         "instance %s: %s", lr->inst,
                         error != NULL ? error : "the log stream ended");
    log_req_free(lr);
}

static void
on_chunk(void *arg, const unsigned char *data, size_t len,
         unsigned long long offset, int eof, const char *error)
{
    struct log_req *lr = arg;

    evtimer_del(lr->timer);
    if (error != NULL) {
        if (lr->started)
            log_warnx("instance %s: console log stream from host %s ended: "
                      "%s",
                      lr->inst, lr->host, error);
        log_end(lr, 503, error);
        return;
    }
    if (!lr->started)
        log_start(lr, offset);
    if (len > 0)
        http_stream_chunk(lr->r, (const char *)data, len);
    if (eof) {
        log_end(lr, 200, NULL);
        return;
    }
    if (client_backlog(lr->r) > LOGS_MAX_BUFFERED) {
        log_warnx("instance %s: log client fell %u bytes behind; ending its "
                  "stream",
                  lr->inst, LOGS_MAX_BUFFERED);
        log_close_source(lr);
        log_end(lr, 200, NULL);
    }
}

static void
on_lost(void *arg, const char *why)
{
    struct log_req *lr = arg;

    log_info("instance %s: console log stream ended: %s", lr->inst, why);
    log_end(lr, 503, why);
}

static void
on_refused(void *arg, int status, const char *why)
{
    struct log_req *lr = arg;

    evtimer_del(lr->timer);
    log_refuse(lr->r, status, lr->inst, why);
    log_req_free(lr);
}

static void
on_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct log_req *lr = arg;

    (void)fd;
    (void)what;
    log_close_source(lr);
    log_end(lr, 503,
            lr->relay != NULL
                ? "the agent did not answer the log request in time (asked "
                  "through the controller replica that holds its connection)"
                : "the agent did not answer the log request in time");
}

/* The client left: stop the agent's stream, free everything. */
static void
on_cancel(struct http_req *r)
{
    struct log_req *lr = r->data;

    r->on_cancel = NULL;
    log_close_source(lr);
    http_req_release(r);
    log_req_free(lr);
}

/* ?key= as an integer in [lo, hi]; *out keeps its default when absent. */
static int
query_ull(struct http_req *r, const char *key, unsigned long long lo,
          unsigned long long hi, unsigned long long *out)
{
    const char *s = http_query(r, key);
    char *end;
    unsigned long long v;

    if (s == NULL)
        return 0;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || *end || end == s || s[0] == '-' || v < lo || v > hi) {
        http_reply_error(r, 400, "bad_request", key,
                         "%s must be an integer from %llu to %llu", key, lo,
                         hi);
        return -1;
    }
    *out = v;
    return 0;
}

void
logs_h_get(struct http_req *r)
{
    struct app *a = http_app(r);
    const struct cache_obj *o;
    struct gateway_log_params p;
    struct gateway_log_sink sink = {
        .on_chunk = on_chunk, .on_lost = on_lost, .on_refused = on_refused};
    struct log_req *lr;
    unsigned long long tail_bytes = LOGS_TAIL_DEFAULT, tail = 0;
    const char *follow = http_query(r, "follow");
    char msg[600];
    int status = 404, fol = 0;
    struct timeval tv = {LOGS_FIRST_CHUNK_S, 0};

    if (follow != NULL) {
        if (strcmp(follow, "true") == 0 || strcmp(follow, "1") == 0) {
            fol = 1;
        } else if (strcmp(follow, "false") != 0 && strcmp(follow, "0") != 0) {
            http_reply_error(r, 400, "bad_request", "follow",
                             "follow must be true or false, not \"%.40s\"",
                             follow);
            return;
        }
    }
    if (query_ull(r, "tail_bytes", 1, LOGS_TAIL_MAX, &tail_bytes) < 0 ||
        query_ull(r, "tail", 0, 100000000, &tail) < 0)
        return;
    /* Where an instance runs is known from the read cache only. */
    if (!cache_ready(a->cache) || !watch_listening(a->watch)) {
        http_reply_error(r, 503, "unavailable", NULL,
                         "the controller's instance cache is not loaded "
                         "(database unreachable?); try again");
        return;
    }
    o = cache_instance_find(a->cache, http_param(r, 0), &status, msg,
                            sizeof(msg));
    if (o == NULL) {
        http_reply_error(r, status, status == 409 ? "conflict" : "not_found",
                         NULL, "%s", msg);
        return;
    }
    if (o->host == NULL) {
        http_reply_error(r, 409, "conflict", NULL,
                         "instance %s has no console yet: it is %s and not "
                         "placed on a host",
                         o->name, o->state ? o->state : "pending");
        return;
    }
    lr = xcalloc(1, sizeof(*lr));
    lr->r = r;
    lr->gw = a->gateway;
    lr->inst = xstrdup(o->name);
    lr->host = xstrdup(o->host);
    lr->follow = fol;
    lr->timer = evtimer_new(a->base, on_timeout, lr);
    if (lr->timer == NULL)
        fatalx("cannot allocate a timer");
    memset(&p, 0, sizeof(p));
    p.host = o->host;
    p.instance_id = o->id;
    p.tail_bytes = tail_bytes;
    p.tail_lines = (unsigned)tail;
    p.follow = fol;
    /* The agent is connected here, or to another replica: relayed through
     * PostgreSQL (logrelay.h), the same bytes. */
    if (gateway_holds(a->gateway, o->host)) {
        lr->handle = gateway_log_open(a->gateway, &p, &sink, lr, &status, msg,
                                      sizeof(msg));
    } else {
        lr->relay = a->relay;
        lr->handle = logrelay_open(a->relay, &p, &sink, lr, &status, msg,
                                   sizeof(msg));
    }
    if (lr->handle == 0) {
        log_req_free(lr);
        log_refuse(r, status, o->name, msg);
        return;
    }
    r->data = lr;
    r->on_cancel = on_cancel;
    if (evtimer_add(lr->timer, &tv) < 0)
        fatalx("cannot arm a timer");
}
