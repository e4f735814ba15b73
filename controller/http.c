/*
 * http: evhttp server, routing, limits and reply helpers (see http.h).
 *
 * libevent 2.1 has no connection limit of its own, so connections are
 * counted here: each accepted connection gets a record (found through a
 * small pointer hash) and a close callback. A connection is idle while it
 * has no request being handled (never sent a byte, is sending one, or is
 * kept alive after a reply); idle ones sit on a list, oldest first. At the
 * limit a new connection closes the oldest idle one to make room (as h2o
 * and nginx reuse idle keep-alive connections); a connection over its
 * address's cap, or one that finds every other connection busy, is
 * refused: its first request is answered 429 or 503 and it is closed.
 *
 *   accept --> IDLE --request--> BUSY --reply written--> IDLE --> ...
 *     \--> REFUSED (idle, first to go) --request--> 429/503 + close
 */
#define LOG_MODULE "http"
/* 5xx answers logged at most this often (the rest are counted) */
#define HTTP_5XX_LOG_PER_SEC 5
#include "http.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/http_struct.h>
#include <openssl/ssl.h>

#include "evbuf.h"
#include "log.h"
#include "mem.h"
#include "metrics.h"
#include "netopt.h"
#include "ratelimit.h"
#include "validate.h"

TAILQ_HEAD(http_req_list, http_req);

struct http_conn {
    struct evhttp_connection *evcon;
    struct http_server *srv;
    struct http_req_list reqs;
    struct event *deadline; /* the next request must be in by then */
    TAILQ_ENTRY(http_conn) idle_link;
    int idle;     /* on srv->idle */
    int has_addr; /* addr is known */
    int counted;  /* counts against its address's cap */
    int refused;  /* 0, or the status its first request gets */
    struct rl_addr addr;
};
TAILQ_HEAD(http_conn_list, http_conn);

struct http_server {
    struct event_base *base;
    struct evhttp *http;
    const struct http_route *routes;
    size_t nroutes;
    int max_conns;
    void *app;
    struct http_opts opts;
    /* open-addressing map evcon -> http_conn */
    struct http_conn **slots;
    size_t nslots, nconns;
    /* Idle connections: refused ones first, then the oldest idle. */
    struct http_conn_list idle;
    struct rl_counts *per_addr;
    struct ratelimit *anon;
};

static const char *const unmatched_route = "unmatched";

/* ---- connection records ---------------------------------------------- */

static size_t
slot_of(const struct http_server *srv, const void *p)
{
    uintptr_t h = (uintptr_t)p;
    h ^= h >> 17;
    h *= 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 7) & (srv->nslots - 1);
}

static struct http_conn *
conn_find(struct http_server *srv, struct evhttp_connection *evcon)
{
    for (size_t i = slot_of(srv, evcon);; i = (i + 1) & (srv->nslots - 1)) {
        if (srv->slots[i] == NULL)
            return NULL;
        if (srv->slots[i]->evcon == evcon)
            return srv->slots[i];
    }
}

static void
conn_insert(struct http_server *srv, struct http_conn *c)
{
    size_t i = slot_of(srv, c->evcon);

    while (srv->slots[i] != NULL)
        i = (i + 1) & (srv->nslots - 1);
    srv->slots[i] = c;
    srv->nconns++;
}

static void
conn_remove(struct http_server *srv, struct http_conn *c)
{
    size_t i = slot_of(srv, c->evcon), j;

    while (srv->slots[i] != c)
        i = (i + 1) & (srv->nslots - 1);
    srv->slots[i] = NULL;
    srv->nconns--;
    /* Re-insert the rest of the cluster (linear probing deletion). */
    for (j = (i + 1) & (srv->nslots - 1); srv->slots[j] != NULL;
         j = (j + 1) & (srv->nslots - 1)) {
        struct http_conn *m = srv->slots[j];
        srv->slots[j] = NULL;
        srv->nconns--;
        conn_insert(srv, m);
    }
}

/* Replies leave in one go: without TCP_NODELAY a reply larger than one
 * segment waits on the client's delayed ACK (40 ms per response). */
static void
conn_nodelay(struct evhttp_connection *evcon)
{
    struct bufferevent *bev = evhttp_connection_get_bufferevent(evcon);
    evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;

    if (fd >= 0 && netopt_nodelay(fd) < 0)
        log_warn("cannot set TCP_NODELAY");
}

/* ---- idle connections ------------------------------------------------- */

static void
idle_enter(struct http_conn *c)
{
    if (c->idle)
        return;
    if (c->refused)
        TAILQ_INSERT_HEAD(&c->srv->idle, c, idle_link);
    else
        TAILQ_INSERT_TAIL(&c->srv->idle, c, idle_link);
    c->idle = 1;
}

static void
idle_leave(struct http_conn *c)
{
    if (!c->idle)
        return;
    TAILQ_REMOVE(&c->srv->idle, c, idle_link);
    c->idle = 0;
}

static void
conn_on_close(struct evhttp_connection *evcon, void *arg)
{
    struct http_conn *c = arg;
    struct http_req *r;

    (void)evcon;
    /* A request still on the connection is freed by evhttp right after
     * this callback; one it detached (the client left while we worked on
     * it) is left to us. */
    while ((r = TAILQ_FIRST(&c->reqs)) != NULL) {
        TAILQ_REMOVE(&c->reqs, r, link);
        r->conn = NULL;
        if (r->req && evhttp_request_get_connection(r->req) == NULL)
            r->orphan = r->req;
        r->req = NULL;
        r->cancelled = 1;
        if (r->on_cancel)
            r->on_cancel(r);
    }
    idle_leave(c);
    if (c->counted)
        rl_counts_add(c->srv->per_addr, &c->addr, -1);
    conn_remove(c->srv, c);
    if (c->deadline)
        event_free(c->deadline);
    free(c);
}

/* ---- request deadline (slow clients) ----------------------------------- */

static void
conn_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    struct http_conn *c = arg;

    (void)fd;
    (void)what;
    /* Only armed while no request of this connection is being handled. */
    if (!TAILQ_EMPTY(&c->reqs))
        return;
    if (c->refused)
        log_debug("closing a refused HTTP connection: no request within "
                  "%d s", HTTP_REFUSED_TIMEOUT_S);
    else
        log_info("closing an HTTP connection: no complete request within "
                 "%d s", c->srv->opts.request_timeout_s);
    evhttp_connection_free(c->evcon); /* conn_on_close frees c */
}

/* Starts the wait for the next request: the connection is idle until it
 * is in. */
static void
conn_arm(struct http_conn *c, int extra_s)
{
    struct timeval tv = {c->srv->opts.request_timeout_s + extra_s, 0};

    if (c->refused && tv.tv_sec > HTTP_REFUSED_TIMEOUT_S)
        tv.tv_sec = HTTP_REFUSED_TIMEOUT_S;
    idle_enter(c);
    if (c->deadline == NULL)
        c->deadline = evtimer_new(c->srv->base, conn_deadline_cb, c);
    if (c->deadline == NULL || evtimer_add(c->deadline, &tv) < 0)
        fatalx("cannot arm an HTTP request deadline");
}

/* A reply went out: the next request on a kept-alive connection has the
 * idle timeout and then the request timeout to arrive. */
static void
conn_on_complete(struct evhttp_request *req, void *arg)
{
    (void)req;
    conn_arm(arg, HTTP_IDLE_TIMEOUT_S);
}

/* ---- request contexts ------------------------------------------------ */

static void
req_free(struct http_req *r)
{
    if (r->conn)
        TAILQ_REMOVE(&r->conn->reqs, r, link);
    if (r->orphan)
        evhttp_request_free(r->orphan);
    for (int i = 0; i < HTTP_MAX_PARAMS; i++)
        free(r->params[i]);
    evhttp_clear_headers(&r->query);
    free(r->actor);
    free(r);
}

void
http_req_release(struct http_req *r)
{
    if (r != NULL)
        req_free(r);
}

void *
http_app(struct http_req *r)
{
    return r->srv->app;
}

const char *
http_param(struct http_req *r, int i)
{
    return i >= 0 && i < HTTP_MAX_PARAMS ? r->params[i] : NULL;
}

const char *
http_query(struct http_req *r, const char *key)
{
    return evhttp_find_header(&r->query, key);
}

const char *
http_header(struct http_req *r, const char *key)
{
    if (r->req == NULL)
        return NULL;
    return evhttp_find_header(evhttp_request_get_input_headers(r->req), key);
}

void
http_add_header(struct http_req *r, const char *key, const char *value)
{
    if (r->req)
        evhttp_add_header(evhttp_request_get_output_headers(r->req), key,
                          value);
}

static void
observe(struct http_req *r, int status)
{
    struct timespec now;
    double secs;

    clock_gettime(CLOCK_MONOTONIC, &now);
    secs = (double)(now.tv_sec - r->start.tv_sec) +
           (double)(now.tv_nsec - r->start.tv_nsec) / 1e9;
    metrics_http_observe(r->route ? r->route->path : unmatched_route,
                         r->method, status, secs);
}

static const char *
reason_of(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 412: return "Precondition Failed";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    case 507: return "Insufficient Storage";
    default: return "Unknown";
    }
}

/* Sends body and frees it: evhttp moves its chains onto the connection's
 * output, so the bytes are not copied again. */
static void
reply_with(struct http_req *r, int status, const char *ctype,
           struct evbuffer *body)
{
    if (r->req != NULL && !r->cancelled) {
        evhttp_add_header(evhttp_request_get_output_headers(r->req),
                          "Content-Type", ctype);
        evhttp_send_reply(r->req, status, reason_of(status), body);
        observe(r, status);
    }
    evbuffer_free(body);
    req_free(r);
}

void
http_reply_raw(struct http_req *r, int status, const char *ctype,
               const char *body, size_t len)
{
    struct evbuffer *buf = evbuf_new();

    evbuffer_add(buf, body, len);
    reply_with(r, status, ctype, buf);
}

void
http_reply_buffer(struct http_req *r, int status, const char *ctype,
                  struct evbuffer *body)
{
    reply_with(r, status, ctype, body);
}

void
http_reply_json_buffer(struct http_req *r, int status, struct evbuffer *json)
{
    evbuffer_add(json, "\n", 1);
    reply_with(r, status, "application/json", json);
}

void
http_reply_json_text(struct http_req *r, int status, const char *json)
{
    struct evbuffer *buf = evbuf_new();

    evbuffer_add(buf, json, strlen(json));
    http_reply_json_buffer(r, status, buf);
}

void
http_reply_json(struct http_req *r, int status, json_t *obj)
{
    char *s = json_dumps(obj, JSON_COMPACT);

    if (s == NULL)
        fatalx("cannot serialise a JSON reply");
    http_reply_json_text(r, status, s);
    free(s);
}

void
http_reply_error(struct http_req *r, int status, const char *code,
                 const char *field, const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    json_t *err, *body;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    err = json_pack("{s:s,s:s}", "code", code, "message", msg);
    if (field && *field)
        json_object_set_new(err, "field", json_string(field));
    body = json_pack("{s:o}", "error", err);
    if (r->srv->opts.on_error && r->req != NULL)
        r->srv->opts.on_error(r, status, msg);
    if (status >= 500) {
        /* One failure (the database failing over) answers every request
         * alike: a few lines a second say it, the rest are counted. */
        static struct log_rate rate;
        unsigned dropped;

        if (log_rate_ok(&rate, HTTP_5XX_LOG_PER_SEC, &dropped)) {
            if (dropped)
                log_warnx("%u more 5xx answers were not logged (at most %d "
                          "a second)",
                          dropped, HTTP_5XX_LOG_PER_SEC);
            log_warnx("%s %s: %d %s", r->method,
                      r->req ? evhttp_request_get_uri(r->req) : "?", status,
                      msg);
        }
    }
    http_reply_json(r, status, body);
    json_decref(body);
}

void
http_stream_start(struct http_req *r, int status, const char *ctype)
{
    r->streaming = 1;
    if (r->req == NULL)
        return;
    evhttp_add_header(evhttp_request_get_output_headers(r->req),
                      "Content-Type", ctype);
    evhttp_add_header(evhttp_request_get_output_headers(r->req),
                      "Cache-Control", "no-cache");
    evhttp_send_reply_start(r->req, status, reason_of(status));
    observe(r, status);
}

void
http_stream_chunk(struct http_req *r, const char *data, size_t len)
{
    struct evbuffer *buf;

    if (r->req == NULL || r->cancelled)
        return;
    buf = evbuf_new();
    evbuffer_add(buf, data, len);
    evhttp_send_reply_chunk(r->req, buf);
    evbuffer_free(buf);
}

int
http_stream_long(struct http_req *r, int write_timeout_s)
{
    struct evhttp_connection *evcon =
        r->req ? evhttp_request_get_connection(r->req) : NULL;
    struct bufferevent *bev =
        evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
    struct timeval wr = {write_timeout_s, 0};

    if (bev == NULL || bufferevent_set_timeouts(bev, NULL, &wr) < 0) {
        log_warnx("cannot lift the read timeout of a long stream");
        return -1;
    }
    return 0;
}

void
http_stream_end(struct http_req *r)
{
    if (r->req != NULL && !r->cancelled)
        evhttp_send_reply_end(r->req);
    req_free(r);
}

/* ---- body ------------------------------------------------------------ */

json_t *
http_body_json(struct http_req *r, int *empty)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(r->req);
    size_t len = evbuffer_get_length(in);
    const char *ctype = http_header(r, "Content-Type");
    json_error_t jerr;
    json_t *j;
    char *buf;

    *empty = 0;
    if (len == 0) {
        *empty = 1;
        return NULL;
    }
    if (len > HTTP_MAX_BODY) {
        http_reply_error(r, 413, "too_large", NULL,
                         "request body of %zu bytes is over the limit of %d",
                         len, HTTP_MAX_BODY);
        return NULL;
    }
    /* curl -d sends form-urlencoded unless told otherwise; a JSON body
     * under that label is taken as JSON (docs/api.md). */
    if (ctype && strncasecmp(ctype, "application/json", 16) != 0 &&
        strncasecmp(ctype, "application/x-www-form-urlencoded", 33) != 0) {
        http_reply_error(r, 415, "unsupported_media_type", NULL,
                         "request body must be application/json, not %.80s",
                         ctype);
        return NULL;
    }
    buf = (char *)evbuffer_pullup(in, -1);
    if (validate_json_depth(buf, len, VALIDATE_JSON_MAX_DEPTH) < 0) {
        http_reply_error(r, 400, "bad_request", NULL,
                         "request body nests deeper than %d levels",
                         VALIDATE_JSON_MAX_DEPTH);
        return NULL;
    }
    j = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (j == NULL) {
        http_reply_error(r, 400, "bad_request", NULL,
                         "request body is not valid JSON: %s at line %d "
                         "column %d",
                         jerr.text, jerr.line, jerr.column);
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        http_reply_error(r, 400, "bad_request", NULL,
                         "request body must be a JSON object");
        return NULL;
    }
    return j;
}

int
http_if_match_min(struct http_req *r, long long min, const char *what,
                  long long *version)
{
    const char *h = http_header(r, "If-Match");
    char buf[32], *end;
    size_t n;
    long long v = -1;

    *version = -1;
    if (h == NULL)
        return 0;
    /* "N", N or W/"N" */
    while (*h == ' ')
        h++;
    if (h[0] == 'W' && h[1] == '/')
        h += 2;
    n = strlen(h);
    while (n > 0 && h[n - 1] == ' ')
        n--;
    if (n >= 2 && h[0] == '"' && h[n - 1] == '"') {
        h++;
        n -= 2;
    }
    if (n > 0 && n < sizeof(buf) && h[0] >= '0' && h[0] <= '9') {
        memcpy(buf, h, n);
        buf[n] = '\0';
        errno = 0;
        v = strtoll(buf, &end, 10);
        if (errno != 0 || *end != '\0')
            v = -1;
    }
    if (v < min || v < 0) {
        http_reply_error(r, 400, "bad_request", NULL,
                         "If-Match must be %s such as \"3\"", what);
        return -1;
    }
    *version = v;
    return 0;
}

int
http_if_match(struct http_req *r, long long *version)
{
    if (http_if_match_min(r, 1, "an object version", version) < 0)
        return -1;
    if (*version < 0)
        *version = 0;
    return 0;
}

/* ---- routing --------------------------------------------------------- */

static const char *
method_name(enum evhttp_cmd_type t)
{
    switch (t) {
    case EVHTTP_REQ_GET: return "GET";
    case EVHTTP_REQ_POST: return "POST";
    case EVHTTP_REQ_PUT: return "PUT";
    case EVHTTP_REQ_PATCH: return "PATCH";
    case EVHTTP_REQ_DELETE: return "DELETE";
    case EVHTTP_REQ_HEAD: return "HEAD";
    case EVHTTP_REQ_OPTIONS: return "OPTIONS";
    default: return "OTHER";
    }
}

/* Matches path against pattern, collecting decoded ":param" segments. */
static int
route_match(const char *pattern, const char *path, char **params)
{
    int np = 0;

    while (*pattern && *path) {
        const char *pe, *se;
        if (*pattern != '/' || *path != '/')
            return 0;
        pattern++;
        path++;
        pe = pattern + strcspn(pattern, "/");
        se = path + strcspn(path, "/");
        if (*pattern == ':') {
            char *raw, *dec;
            if (se == path || np >= HTTP_MAX_PARAMS)
                return 0;
            raw = xstrndup(path, (size_t)(se - path));
            dec = evhttp_uridecode(raw, 0, NULL);
            free(raw);
            if (dec == NULL)
                return 0;
            params[np] = xstrdup(dec);
            free(dec);
            np++;
        } else if ((size_t)(pe - pattern) != (size_t)(se - path) ||
                   strncmp(pattern, path, (size_t)(pe - pattern)) != 0) {
            return 0;
        }
        pattern = pe;
        path = se;
    }
    return *pattern == '\0' && (*path == '\0' || strcmp(path, "/") == 0);
}

static http_handler
route_handler(const struct http_route *rt, enum evhttp_cmd_type t)
{
    switch (t) {
    case EVHTTP_REQ_GET: return rt->get;
    case EVHTTP_REQ_POST: return rt->post;
    case EVHTTP_REQ_PUT: return rt->put;
    case EVHTTP_REQ_PATCH: return rt->patch;
    case EVHTTP_REQ_DELETE: return rt->delete;
    default: return NULL;
    }
}

static void
allow_header(const struct http_route *rt, char *buf, size_t cap)
{
    buf[0] = '\0';
    snprintf(buf, cap, "%s%s%s%s%s", rt->get ? "GET, " : "",
             rt->post ? "POST, " : "", rt->put ? "PUT, " : "",
             rt->patch ? "PATCH, " : "", rt->delete ? "DELETE, " : "");
    if (strlen(buf) >= 2)
        buf[strlen(buf) - 2] = '\0';
}

/* The Origin when it is one of the allowed origins, else NULL. */
static const char *
cors_origin(struct http_req *r)
{
    const char *origin = http_header(r, "Origin");

    if (origin == NULL || r->srv->opts.cors_origins == NULL)
        return NULL;
    for (const char *const *o = r->srv->opts.cors_origins; *o; o++)
        if (strcmp(*o, "*") == 0 || strcmp(*o, origin) == 0)
            return origin;
    return NULL;
}

static void
cors_headers(struct http_req *r)
{
    const char *origin = cors_origin(r);

    if (origin == NULL)
        return;
    http_add_header(r, "Access-Control-Allow-Origin", origin);
    http_add_header(r, "Vary", "Origin");
    http_add_header(r, "Access-Control-Expose-Headers",
                    "ETag, Location, Upload-Offset, X-Blob-Size");
}

/* OPTIONS: the route's methods, and a CORS preflight answer when the
 * origin is allowed (none by default). No token is needed for this. */
static void
preflight(struct http_req *r, const struct http_route *rt)
{
    char allow[64];

    allow_header(rt, allow, sizeof(allow));
    http_add_header(r, "Allow", allow);
    if (cors_origin(r) != NULL) {
        http_add_header(r, "Access-Control-Allow-Methods", allow);
        http_add_header(r, "Access-Control-Allow-Headers",
                        "Authorization, Content-Type, If-Match, "
                        "Idempotency-Key, Last-Event-ID, Upload-Offset");
        http_add_header(r, "Access-Control-Max-Age", "600");
    }
    http_reply_raw(r, 204, "text/plain", "", 0);
}

static size_t
headers_size(struct evhttp_request *req)
{
    struct evkeyvalq *h = evhttp_request_get_input_headers(req);
    struct evkeyval *kv;
    size_t n = 0;

    TAILQ_FOREACH(kv, h, next)
        n += strlen(kv->key) + strlen(kv->value) + 4;
    return n;
}

/*
 * True if the request carries Content-Length twice with different values.
 * evhttp frames the body by the first one and keeps the connection; a
 * proxy in front may have used the other, so the rest of the stream cannot
 * be trusted (RFC 9112 6.3: refuse, and close). evhttp itself refuses
 * Content-Length together with Transfer-Encoding.
 */
static int
content_length_conflict(struct evhttp_request *req)
{
    struct evkeyvalq *h = evhttp_request_get_input_headers(req);
    struct evkeyval *kv;
    const char *first = NULL;

    TAILQ_FOREACH(kv, h, next) {
        if (strcasecmp(kv->key, "Content-Length") != 0)
            continue;
        if (first == NULL)
            first = kv->value;
        else if (strcmp(first, kv->value) != 0)
            return 1;
    }
    return 0;
}

/* ---- connection and rate limits ----------------------------------------- */

/* The first request of a refused connection: why, and close. */
static void
refuse_conn(struct http_req *r)
{
    struct http_server *srv = r->srv;
    char who[RL_ADDR_TEXT];

    http_add_header(r, "Connection", "close");
    http_add_header(r, "Retry-After", "1");
    if (r->conn->refused == 429) {
        rl_addr_text(&r->conn->addr, who, sizeof(who));
        http_reply_error(r, 429, "too_many_connections", NULL,
                         "client address %s already has %d open connections, "
                         "the limit per address (--max-conns-per-addr); "
                         "close idle ones or retry later",
                         who, srv->opts.max_conns_per_addr);
        return;
    }
    http_reply_error(r, 503, "unavailable", NULL,
                     "too many connections (limit %d) and none is idle; "
                     "retry later",
                     srv->max_conns);
}

int
http_limit_anon(struct http_req *r)
{
    struct http_server *srv = r->srv;
    unsigned retry = 1;
    char who[RL_ADDR_TEXT], ra[16];

    if (srv->anon == NULL || r->conn == NULL || !r->conn->has_addr ||
        rl_take(srv->anon, &r->conn->addr, rl_now(), &retry) == 0)
        return 0;
    rl_addr_text(&r->conn->addr, who, sizeof(who));
    snprintf(ra, sizeof(ra), "%u", retry);
    http_add_header(r, "Retry-After", ra);
    http_reply_error(r, 429, "rate_limited", NULL,
                     "too many requests without a valid token from %s (at "
                     "most %g per second, bursts of %g: --anon-rate, "
                     "--anon-burst); retry in %u s",
                     who, rl_rate(srv->anon), rl_burst(srv->anon), retry);
    return -1;
}

/* An error answered before any token is looked at: it counts against the
 * client address's budget of unauthenticated requests (429 once spent). */
static void
reply_anon_error(struct http_req *r, int status, const char *code,
                 const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void
reply_anon_error(struct http_req *r, int status, const char *code,
                 const char *fmt, ...)
{
    char msg[600];
    va_list ap;

    if (http_limit_anon(r) < 0)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    http_reply_error(r, status, code, NULL, "%s", msg);
}

static struct http_conn *conn_track(struct http_server *srv,
                                    struct evhttp_connection *evcon);
static void on_request_tracked(struct http_server *srv, struct http_req *r,
                               struct evhttp_request *req);

static void
on_request(struct evhttp_request *req, void *arg)
{
    struct http_server *srv = arg;
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    struct http_conn *c = conn_find(srv, evcon);
    struct http_req *r = xcalloc(1, sizeof(*r));

    clock_gettime(CLOCK_MONOTONIC, &r->start);
    r->req = req;
    r->srv = srv;
    r->method = method_name(evhttp_request_get_command(req));
    TAILQ_INIT(&r->query);

    if (c == NULL)
        c = conn_track(srv, evcon);
    if (c->deadline)
        evtimer_del(c->deadline);
    idle_leave(c);
    evhttp_request_set_on_complete_cb(req, conn_on_complete, c);
    r->conn = c;
    TAILQ_INSERT_TAIL(&c->reqs, r, link);
    on_request_tracked(srv, r, req);
}

/* A record for evcon (conn_find finds it from now on). */
static struct http_conn *
conn_track(struct http_server *srv, struct evhttp_connection *evcon)
{
    struct http_conn *c = xcalloc(1, sizeof(*c));

    {
        c->evcon = evcon;
        c->srv = srv;
        TAILQ_INIT(&c->reqs);
        if ((srv->nconns + 1) * 2 > srv->nslots) {
            /* Grow the map; rehash every record. */
            struct http_conn **old = srv->slots;
            size_t oldn = srv->nslots;
            srv->nslots *= 2;
            srv->slots = xcalloc(srv->nslots, sizeof(*srv->slots));
            srv->nconns = 0;
            for (size_t i = 0; i < oldn; i++)
                if (old[i])
                    conn_insert(srv, old[i]);
            free(old);
        }
        conn_insert(srv, c);
        evhttp_connection_set_closecb(evcon, conn_on_close, c);
        conn_nodelay(evcon);
    }
    {
        const struct sockaddr *sa = evhttp_connection_get_addr(evcon);

        c->has_addr = sa != NULL && rl_addr_from_sockaddr(sa, &c->addr) == 0;
    }
    return c;
}

/*
 * A new connection: makes room at the limit by closing the oldest idle
 * connection, and refuses it over its address's cap (its first request
 * is answered 429) or when every other connection is busy (503). At the
 * limit a connection over its address's cap is closed at once rather
 * than take an idle connection's place. Returns NULL if it was closed.
 */
static struct http_conn *
conn_admit(struct http_server *srv, struct evhttp_connection *evcon)
{
    struct http_conn *c = conn_track(srv, evcon), *victim;
    int over_addr = 0;
    char who[RL_ADDR_TEXT];

    if (srv->opts.max_conns_per_addr > 0 && c->has_addr &&
        rl_counts_get(srv->per_addr, &c->addr) >=
            (unsigned)srv->opts.max_conns_per_addr)
        over_addr = 1;
    if ((int)srv->nconns > srv->max_conns) {
        victim = TAILQ_FIRST(&srv->idle);
        if (victim != NULL && (!over_addr || victim->refused)) {
            log_debug("closing an idle HTTP connection to make room (limit "
                      "%d)", srv->max_conns);
            evhttp_connection_free(victim->evcon); /* frees victim */
        } else if (over_addr) {
            rl_addr_text(&c->addr, who, sizeof(who));
            log_debug("closing a new HTTP connection from %s: over its cap "
                      "of %d and no room", who, srv->opts.max_conns_per_addr);
            evhttp_connection_free(evcon); /* frees c */
            return NULL;
        } else {
            c->refused = 503;
        }
    }
    if (over_addr) {
        c->refused = 429;
    } else if (c->has_addr && !c->refused) {
        rl_counts_add(srv->per_addr, &c->addr, 1);
        c->counted = 1;
    }
    conn_arm(c, 0);
    return c;
}

static void
on_request_tracked(struct http_server *srv, struct http_req *r,
                   struct evhttp_request *req)
{
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = evhttp_uri_get_path(uri);
    const char *qs = evhttp_uri_get_query(uri);
    enum evhttp_cmd_type t = evhttp_request_get_command(req);

    if (r->conn->refused) {
        refuse_conn(r);
        return;
    }
    if (headers_size(req) > HTTP_MAX_HEADERS) {
        reply_anon_error(r, 413, "too_large",
                         "request headers are over the limit of %d bytes",
                         HTTP_MAX_HEADERS);
        return;
    }
    if (content_length_conflict(req)) {
        evhttp_add_header(evhttp_request_get_output_headers(req),
                          "Connection", "close");
        reply_anon_error(r, 400, "bad_request",
                         "the request has Content-Length headers with different values");
        return;
    }
    cors_headers(r);
    if (path == NULL || *path == '\0')
        path = "/";
    if (qs && evhttp_parse_query_str(qs, &r->query) < 0) {
        reply_anon_error(r, 400, "bad_request",
                         "the query string is malformed");
        return;
    }
    for (size_t i = 0; i < srv->nroutes; i++) {
        const struct http_route *rt = &srv->routes[i];
        http_handler h;
        char *params[HTTP_MAX_PARAMS] = {NULL};

        if (!route_match(rt->path, path, params)) {
            for (int k = 0; k < HTTP_MAX_PARAMS; k++)
                free(params[k]);
            continue;
        }
        memcpy(r->params, params, sizeof(params));
        r->route = rt;
        if (t == EVHTTP_REQ_OPTIONS) {
            if (http_limit_anon(r) == 0)
                preflight(r, rt);
            return;
        }
        h = route_handler(rt, t);
        if (h == NULL) {
            char allow[64];
            allow_header(rt, allow, sizeof(allow));
            evhttp_add_header(evhttp_request_get_output_headers(req),
                              "Allow", allow);
            reply_anon_error(r, 405, "method_not_allowed",
                             "%s is not allowed on %s; allowed: %s",
                             r->method, rt->path, allow);
            return;
        }
        if (srv->opts.authorize) {
            int need = t == EVHTTP_REQ_GET ? rt->read_role : rt->write_role;
            if (need == 0)
                need = t == EVHTTP_REQ_GET ? 1 : 2;
            if (need == HTTP_ROLE_OPEN ? http_limit_anon(r) < 0
                                       : srv->opts.authorize(r, need) < 0)
                return;
        }
        h(r);
        return;
    }
    reply_anon_error(r, 404, "not_found", "no route for %s %.200s",
                     r->method, path);
}

/*
 * Every accepted connection gets its record and request deadline at once,
 * not at its first complete request (which a slow client never sends).
 * evhttp 2.1 has no accept hook: evhttp calls the bufferevent callback below
 * from its accept callback and then ties the bufferevent to its new
 * connection; an event activated here runs right after that accept
 * callback, before any I/O of the new connection, and finds the connection
 * as the bufferevent's callback argument.
 */
struct http_accepted {
    struct http_server *srv;
    struct bufferevent *bev;
    struct event *ev;
};

static void
accepted_cb(evutil_socket_t fd, short what, void *arg)
{
    struct http_accepted *a = arg;
    bufferevent_data_cb readcb = NULL;
    void *cbarg = NULL;

    (void)fd;
    (void)what;
    bufferevent_getcb(a->bev, &readcb, NULL, NULL, &cbarg);
    if (readcb != NULL && cbarg != NULL &&
        conn_find(a->srv, cbarg) == NULL)
        (void)conn_admit(a->srv, cbarg);
    event_free(a->ev);
    free(a);
}

static struct bufferevent *
accept_bev(struct event_base *base, void *arg)
{
    struct http_server *srv = arg;
    struct http_accepted *a;
    struct bufferevent *bev;

    if (srv->opts.tls != NULL) {
        SSL *ssl = SSL_new(srv->opts.tls);

        if (ssl == NULL)
            return NULL;
        bev = bufferevent_openssl_socket_new(base, -1, ssl,
                                             BUFFEREVENT_SSL_ACCEPTING,
                                             BEV_OPT_CLOSE_ON_FREE);
    } else {
        bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    }
    if (bev == NULL)
        return NULL;
    a = xcalloc(1, sizeof(*a));
    a->srv = srv;
    a->bev = bev;
    a->ev = event_new(base, -1, 0, accepted_cb, a);
    if (a->ev == NULL)
        fatalx("cannot allocate an accept event");
    event_active(a->ev, EV_TIMEOUT, 1);
    return bev;
}

struct http_server *
http_server_new(struct event_base *base, const struct http_route *routes,
                size_t nroutes, const struct http_opts *opts, void *app)
{
    struct http_server *srv = xcalloc(1, sizeof(*srv));
    struct timeval tv = {HTTP_IDLE_TIMEOUT_S, 0};

    srv->base = base;
    srv->routes = routes;
    srv->nroutes = nroutes;
    srv->max_conns = opts->max_conns;
    srv->opts = *opts;
    srv->app = app;
    srv->nslots = 256;
    srv->slots = xcalloc(srv->nslots, sizeof(*srv->slots));
    TAILQ_INIT(&srv->idle);
    srv->per_addr = rl_counts_new();
    srv->anon = rl_new(opts->anon_rate, opts->anon_burst, HTTP_RL_ENTRIES);
    srv->http = evhttp_new(base);
    if (srv->http == NULL)
        fatalx("cannot create the HTTP server");
    /* libevent's defaults are unlimited: set every limit explicitly. */
    /* Headers up to four times the limit reach the handler, which answers
     * 413 as JSON; larger ones are refused by evhttp (400). */
    evhttp_set_max_headers_size(srv->http, 4 * HTTP_MAX_HEADERS);
    /* Bodies up to twice the API limit reach the handler, which answers
     * 413 as JSON; larger ones are refused by evhttp before buffering. */
    evhttp_set_max_body_size(srv->http, 2 * HTTP_MAX_BODY);
    evhttp_set_timeout_tv(srv->http, &tv);
    evhttp_set_allowed_methods(srv->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST |
                                              EVHTTP_REQ_PUT |
                                              EVHTTP_REQ_PATCH |
                                              EVHTTP_REQ_DELETE |
                                              EVHTTP_REQ_OPTIONS);
    if (srv->opts.request_timeout_s <= 0)
        srv->opts.request_timeout_s = HTTP_REQUEST_TIMEOUT_S;
    evhttp_set_bevcb(srv->http, accept_bev, srv);
    evhttp_set_default_content_type(srv->http, "application/json");
    evhttp_set_gencb(srv->http, on_request, srv);
    return srv;
}

int
http_server_listen(struct http_server *srv, const char *addr,
                   unsigned short port, unsigned short *bound)
{
    struct evhttp_bound_socket *sock =
        evhttp_bind_socket_with_handle(srv->http, addr, port);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);

    if (sock == NULL) {
        log_warn("cannot listen on %s:%u", addr, port);
        return -1;
    }
    if (getsockname(evhttp_bound_socket_get_fd(sock), (struct sockaddr *)&ss,
                    &sl) == 0) {
        if (ss.ss_family == AF_INET)
            *bound = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        else if (ss.ss_family == AF_INET6)
            *bound = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    return 0;
}

void
http_server_free(struct http_server *srv)
{
    if (srv == NULL)
        return;
    /* evhttp_free closes connections: their close callbacks free records. */
    evhttp_free(srv->http);
    rl_counts_free(srv->per_addr);
    rl_free(srv->anon);
    free(srv->slots);
    free(srv);
}
