/*
 * watch: the controller's event bus, and the Server-Sent Events fan-out of
 * the event log (GET /v1/watch) on top of it.
 *
 * One LISTEN session wakes the hub (watch.c); the hub re-reads the events
 * table from the highest id it has sent and fans each event out to the
 * in-process observers (watch_observe) and to the live SSE clients
 * (api_watch.c).
 * A client that joins behind (since=<id> or Last-Event-ID) first catches up
 * with its own queries, then joins the live set. After any reconnect of the
 * listener the hub re-reads from its last id, so nothing is lost.
 */
#ifndef CLOUD_WATCH_H
#define CLOUD_WATCH_H

#include <sys/queue.h>

#include "db.h"
#include "http.h"

struct watch;

/*
 * Observers of the event stream inside the controller (the read cache, the
 * reconciler). on_event runs for each new event in id order; on_batch after
 * each batch; on_reconnect after every (re)connect of the LISTEN session,
 * when anything may have been missed. Any callback may be NULL.
 */
struct watch_observer {
    void (*on_event)(void *arg, long long id, const char *type,
                     const char *object, const char *object_id);
    void (*on_batch)(void *arg);
    void (*on_reconnect)(void *arg);
    void *arg;
    /* When set, runs instead of on_event, with the hub's result row (see
     * store.h EVENT_HUB_*; an instance event carries its instance's host
     * and, the last one of an instance in a read, the reconciler's row). */
    void (*on_event_row)(void *arg, long long id, const char *type,
                         const char *object, const char *object_id,
                         const PGresult *res, int row);
};
#define WATCH_MAX_OBSERVERS 8

struct watch *watch_new(struct event_base *base, struct db_pool *db,
                        const char *conninfo);
void watch_free(struct watch *w);
void watch_observe(struct watch *w, const struct watch_observer *obs);
int watch_listening(const struct watch *w);

/*
 * Notifications on the hub's channel that carry a payload go to fn instead
 * of waking the hub (the event trigger's carry none): the log relay's
 * ("logs ...", logrelay.c) share the one LISTEN session. One handler.
 */
void watch_on_payload(struct watch *w,
                      void (*fn)(void *arg, const char *payload), void *arg);
int watch_clients(const struct watch *w);

/*
 * Streams events with id > since (since < 0: from now on) matching the
 * optional object and type filters. Takes over r. A since below the
 * low-water mark (pruned events) is answered 410 expired; a stream whose
 * position falls below it later ends with an "error" event saying so.
 */
void watch_add(struct watch *w, struct http_req *r, long long since,
               const char *object, const char *type);

/*
 * A server-sent event stream that another module feeds with documents of
 * its own (api_config.c's endpoint watches: the list of a service, re-read
 * when an endpoints.changed event marks it). The hub keeps it with its own
 * clients: one keepalive timer sends ": keepalive" to both every 15 s.
 * The owner adds a stream once its 200 is sent and deletes it before it
 * ends the stream; it checks watch_lagging after each document it sends.
 */
struct watch_stream {
    struct http_req *r;
    TAILQ_ENTRY(watch_stream) link; /* the hub's */
};
void watch_stream_add(struct watch *w, struct watch_stream *s);
void watch_stream_del(struct watch *w, struct watch_stream *s);

/* 1 if r's client has fallen more than the hub's limit (8 MiB unsent)
 * behind: end its stream, and it resumes from where it stands. */
int watch_lagging(const struct http_req *r);

#endif
