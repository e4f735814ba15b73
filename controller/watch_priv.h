/*
 * watch_priv.h: what the event bus (watch.c) and the /v1/watch route
 * (api_watch.c) share: the hub and its SSE clients. Users include watch.h.
 */
#ifndef CLOUD_WATCH_PRIV_H
#define CLOUD_WATCH_PRIV_H

#include <sys/queue.h>

#include "watch.h"

#ifndef TAILQ_FOREACH_SAFE
#define TAILQ_FOREACH_SAFE(var, head, field, tvar)                            \
    for ((var) = TAILQ_FIRST((head));                                         \
         (var) && ((tvar) = TAILQ_NEXT((var), field), 1); (var) = (tvar))
#endif

#define WATCH_BATCH 500
#define WATCH_BATCH_S "500"
#define WATCH_KEEPALIVE_S 15
/* A client this far behind is cut off; it resumes with Last-Event-ID. */
#define WATCH_MAX_BUFFERED (8 * 1024 * 1024)

enum client_state { CL_NEED_MAX, CL_CATCHUP, CL_LIVE };

struct watch_client {
    TAILQ_ENTRY(watch_client) link;
    struct watch *w;
    struct http_req *r;
    enum client_state state;
    long long cursor;
    char *object, *type;
    int inflight;
    int dead;
    int started; /* the 200 and the stream's head are sent */
};
TAILQ_HEAD(client_list, watch_client);

struct watch {
    struct event_base *base;
    struct db_pool *db;
    struct db_listener *listener;
    struct event *keepalive;
    struct event *retry;
    struct client_list clients;
    int nclients;
    long long last_id; /* -1 until known */
    int fetching, again;
    /* The observers' reload waits for the first position (hub_on_connect) */
    int reload_pending;
    struct watch_observer obs[WATCH_MAX_OBSERVERS];
    int nobs;
    TAILQ_HEAD(, watch_stream) streams; /* other modules' (watch_stream) */
    void (*on_payload)(void *arg, const char *payload); /* watch_on_payload */
    void *payload_arg;
};

/* ---- api_watch.c: the SSE clients ---- */

void watch_client_drop(struct watch_client *c);
void watch_client_expire(struct watch_client *c, const char *message);
void watch_client_send(struct watch_client *c, const char *id,
                       const char *type, const char *object,
                       const char *json);
void watch_client_step(struct watch_client *c);
long long watch_ll(const char *s);

#endif
