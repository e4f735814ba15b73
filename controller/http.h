/*
 * http: the controller's HTTP server on libevent's evhttp.
 *
 * Owns the listener, the explicit limits (headers, body, timeouts,
 * connections), the route table dispatch (404 / 405 with Allow), request
 * contexts that survive asynchronous work, and JSON replies and errors in the
 * shape of docs/api.md. A client that goes away while its request waits on
 * the database or streams events marks the context cancelled; the context is
 * freed when its owner next looks (never inside libevent's callback).
 */
#ifndef CLOUD_HTTP_H
#define CLOUD_HTTP_H

#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <stddef.h>
#include <sys/queue.h>
#include <time.h>

#define HTTP_MAX_BODY (1024 * 1024)
#define HTTP_MAX_HEADERS (16 * 1024)
#define HTTP_MAX_PARAMS 3

struct http_server;
struct http_conn;
struct http_req;

typedef void (*http_handler)(struct http_req *r);

/*
 * A route: a path pattern with ":param" segments, a handler per method, and
 * the role a token needs to read (GET) or write (the other methods):
 * 0 means the default (viewer reads, operator writes), HTTP_ROLE_OPEN no
 * token at all, otherwise the role's number (auth.h: 1 viewer, 2 operator,
 * 3 admin).
 */
#define HTTP_ROLE_OPEN (-1)
struct http_route {
    const char *path;
    http_handler get, post, put, patch, delete;
    signed char read_role, write_role;
};

struct http_req {
    struct evhttp_request *req; /* NULL once the client is gone */
    /* A request libevent detached from its dead connection: ours to free
     * (libevent 2.1 frees it only through a reply, which cannot happen). */
    struct evhttp_request *orphan;
    struct http_server *srv;
    struct http_conn *conn;
    TAILQ_ENTRY(http_req) link;
    const struct http_route *route;
    const char *method;
    char *params[HTTP_MAX_PARAMS];
    struct evkeyvalq query;
    struct timespec start;
    int cancelled;
    int streaming; /* replying in chunks (SSE, logs) */
    char *actor;   /* the token's name once authorised, for the audit */
    /* Called once if the client goes away; the owner must stop using r. */
    void (*on_cancel)(struct http_req *r);
    void *data;
};

/*
 * Decides whether r may go on with a token of at least role; replies (401,
 * 403, 503) and returns -1 when not. Set by the application.
 */
typedef int (*http_authorize_fn)(struct http_req *r, int role);

struct http_opts {
    int max_conns;
    void *tls;                        /* SSL_CTX *, or NULL for plain HTTP */
    const char *const *cors_origins;  /* NULL-terminated, or NULL */
    http_authorize_fn authorize;      /* NULL: no authorisation */
    /* Sees every error reply before it is sent (the audit trail). */
    void (*on_error)(struct http_req *r, int status, const char *message);
    /* A connection must deliver a whole request (head and body) within
     * this many seconds of connecting, or of its previous reply plus the
     * idle timeout; 0: HTTP_REQUEST_TIMEOUT_S. Unlike evhttp's idle
     * timeout it is not reset by each byte (slowloris). */
    int request_timeout_s;
    /* Open connections per client address (ratelimit.h); 0: no cap. Over
     * it a connection's first request is answered 429 and it is closed. */
    int max_conns_per_addr;
    /* Token bucket per client address for requests answered without a
     * valid token (open routes, 404, 405, 401, early 400/413): rate per
     * second (<= 0: no limit) and burst. Spent: 429 rate_limited. */
    double anon_rate, anon_burst;
};
#define HTTP_REQUEST_TIMEOUT_S 20
#define HTTP_IDLE_TIMEOUT_S 60
#define HTTP_REFUSED_TIMEOUT_S 5 /* a refused connection's request */
#define HTTP_MAX_CONNS_PER_ADDR 64
#define HTTP_ANON_RATE 10
#define HTTP_ANON_BURST 50
#define HTTP_RL_ENTRIES 16384 /* client addresses remembered (buckets) */

struct http_server *http_server_new(struct event_base *base,
                                    const struct http_route *routes,
                                    size_t nroutes,
                                    const struct http_opts *opts, void *app);
int http_server_listen(struct http_server *srv, const char *addr,
                       unsigned short port, unsigned short *bound);
void http_server_free(struct http_server *srv);
void *http_app(struct http_req *r);

/* Request accessors. */
const char *http_param(struct http_req *r, int i);
const char *http_query(struct http_req *r, const char *key);
const char *http_header(struct http_req *r, const char *key);
/*
 * Parses the body as a JSON object within the limits; on failure replies
 * with 400/413/415 itself and returns NULL. *empty is set when there is no
 * body (then NULL is returned without a reply).
 */
json_t *http_body_json(struct http_req *r, int *empty);
/* If-Match ("N", N or W/"N") as a version; 0 = absent, -1 = malformed
 * (400 sent). */
int http_if_match(struct http_req *r, long long *version);
/* The same for versions >= min (>= 0); *version = -1 when absent. what
 * names the version in the 400 ("a config version"). */
int http_if_match_min(struct http_req *r, long long min, const char *what,
                      long long *version);

/*
 * Counts r, a request that has no valid token, against its client
 * address's budget; 0 while there is budget, else replies 429
 * rate_limited with Retry-After and returns -1. The authorize callback
 * calls it before answering 401.
 */
int http_limit_anon(struct http_req *r);

/* Replies; each finishes (and frees) r. */
void http_reply_raw(struct http_req *r, int status, const char *ctype,
                    const char *body, size_t len);
void http_reply_json_text(struct http_req *r, int status, const char *json);
/* The same with a body built in an evbuffer: the reply takes the buffer
 * (and frees it) without copying its bytes; the JSON one adds the final
 * newline that every JSON reply ends with. */
void http_reply_buffer(struct http_req *r, int status, const char *ctype,
                       struct evbuffer *body);
void http_reply_json_buffer(struct http_req *r, int status,
                            struct evbuffer *json);
void http_reply_json(struct http_req *r, int status, json_t *obj);
void http_reply_error(struct http_req *r, int status, const char *code,
                      const char *field, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
void http_add_header(struct http_req *r, const char *key, const char *value);

/* Streaming: start, send chunks, end (frees r; of a cancelled request,
 * whose client went away, it only frees r, as http_req_release). */
void http_stream_start(struct http_req *r, int status, const char *ctype);
void http_stream_chunk(struct http_req *r, const char *data, size_t len);
void http_stream_end(struct http_req *r);
/*
 * For streams that may be silent for long (event watches, log follows):
 * lifts evhttp's read timeout, which would close the connection after 60 s
 * of no request bytes; the write timeout still drops a client that stops
 * reading. 0 or -1.
 */
int http_stream_long(struct http_req *r, int write_timeout_s);

/* Frees a context whose client went away (after on_cancel or a callback). */
void http_req_release(struct http_req *r);

#endif
