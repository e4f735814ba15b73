/*
 * watch: the controller's event bus (see watch.h). Owns the LISTEN session
 * and the hub that re-reads the events table from the highest id it has
 * seen, and fans each event out to the in-process observers
 * (watch_observe: the read cache, the reconciler, the gateway), to other
 * modules' streams, and to the live SSE clients of GET /v1/watch (their
 * side is api_watch.c); and the keepalive timer.
 */
#define LOG_MODULE "watch"
#include "watch_priv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/http.h>
#include <jansson.h>

#include "log.h"
#include "mem.h"
#include "store.h"

/* ---- the hub --------------------------------------------------------- */

static void hub_fetch(struct watch *w);

/*
 * Events above the hub's position were pruned before it read them (a
 * controller cut off from the database for longer than the retention
 * kept events, or a retention of a few events): the observers re-read
 * everything, as after a reconnect, and live clients that had not seen
 * them are told their stream expired. The newest event is never pruned,
 * so a read that returns no rows proves nothing was missed.
 */
static void
hub_check_low_water(struct watch *w, long long low_water)
{
    struct watch_client *c, *next;
    char *msg;

    if (low_water <= w->last_id)
        return;
    log_warnx("events %lld to %lld were pruned before this controller read "
              "them; re-reading the state",
              w->last_id + 1, low_water);
    for (int o = 0; o < w->nobs; o++)
        if (w->obs[o].on_reconnect)
            w->obs[o].on_reconnect(w->obs[o].arg);
    msg = xasprintf("events after %lld are no longer kept: events up to %lld "
                    "were pruned (cluster setting events_retention); list "
                    "again without since and watch from there",
                    w->last_id, low_water);
    TAILQ_FOREACH_SAFE(c, &w->clients, link, next) {
        if (c->state == CL_LIVE && c->cursor < low_water)
            watch_client_expire(c, msg);
    }
    free(msg);
}

static void
hub_on_rows(const PGresult *res, const struct db_error *err, void *arg)
{
    struct watch *w = arg;
    struct watch_client *c, *next;
    int n;

    w->fetching = 0;
    if (err) {
        struct timeval tv = {1, 0};
        log_warnx("cannot read new events, retrying: %s", err->message);
        evtimer_add(w->retry, &tv);
        return;
    }
    if (w->last_id < 0) {
        w->last_id = watch_ll(PQgetvalue(res, 0, 0));
        n = 0;
        if (w->reload_pending) {
            w->reload_pending = 0;
            for (int o = 0; o < w->nobs; o++)
                if (w->obs[o].on_reconnect)
                    w->obs[o].on_reconnect(w->obs[o].arg);
        }
    } else {
        n = PQntuples(res);
        if (n > 0)
            hub_check_low_water(
                w, watch_ll(PQgetvalue(res, 0, EVENT_HUB_LOW_WATER)));
        for (int i = 0; i < n; i++) {
            const char *id = PQgetvalue(res, i, EVENT_HUB_ID);
            const char *type = PQgetvalue(res, i, EVENT_HUB_TYPE);
            const char *object = PQgetvalue(res, i, EVENT_HUB_OBJECT);
            const char *object_id =
                PQgetisnull(res, i, EVENT_HUB_OBJECT_ID)
                    ? NULL
                    : PQgetvalue(res, i, EVENT_HUB_OBJECT_ID);
            long long eid = watch_ll(id);
            TAILQ_FOREACH_SAFE(c, &w->clients, link, next) {
                if (c->state != CL_LIVE || c->cursor >= eid)
                    continue;
                if (PQgetisnull(res, i, EVENT_HUB_JSON)) {
                    /* Read without JSON (no client was connected when the
                     * read began): this client catches up on its own. */
                    c->state = CL_CATCHUP;
                    continue;
                }
                watch_client_send(c, id, type, object,
                                  PQgetvalue(res, i, EVENT_HUB_JSON));
                if (watch_lagging(c->r)) {
                    log_warnx("watch client fell %d bytes behind; closing "
                              "its stream so it resumes",
                              WATCH_MAX_BUFFERED);
                    watch_client_drop(c);
                }
            }
            w->last_id = eid;
            for (int o = 0; o < w->nobs; o++)
                if (w->obs[o].on_event_row)
                    w->obs[o].on_event_row(w->obs[o].arg, eid, type, object,
                                           object_id, res, i);
                else if (w->obs[o].on_event)
                    w->obs[o].on_event(w->obs[o].arg, eid, type, object,
                                       object_id);
        }
        for (int o = 0; o < w->nobs; o++)
            if (n > 0 && w->obs[o].on_batch)
                w->obs[o].on_batch(w->obs[o].arg);
    }
    /* Clients that caught up while the hub did not know the end. */
    TAILQ_FOREACH_SAFE(c, &w->clients, link, next) {
        if (c->state == CL_CATCHUP && !c->inflight)
            watch_client_step(c);
    }
    if (n == WATCH_BATCH || w->again) {
        w->again = 0;
        hub_fetch(w);
    }
}

static void
hub_fetch(struct watch *w)
{
    char since[32];
    const char *vals[4];

    if (w->fetching) {
        w->again = 1;
        return;
    }
    w->fetching = 1;
    if (w->last_id < 0) {
        db_query(w->db, store_stmt(ST_EVENT_MAX), NULL, hub_on_rows, w);
        return;
    }
    snprintf(since, sizeof(since), "%lld", w->last_id);
    vals[0] = since;
    vals[1] = WATCH_BATCH_S;
    /* Only in-process observers: they need no JSON. */
    vals[2] = w->nclients == 0 ? "false" : "true";
    db_query(w->db, store_stmt(ST_EVENT_HUB), vals, hub_on_rows, w);
}

static void
hub_on_notify(const char *channel, const char *payload, void *arg)
{
    struct watch *w = arg;

    (void)channel;
    if (payload != NULL && payload[0] != '\0') {
        if (w->on_payload)
            w->on_payload(w->payload_arg, payload);
        return;
    }
    hub_fetch(w);
}

void
watch_on_payload(struct watch *w, void (*fn)(void *arg, const char *payload),
                 void *arg)
{
    w->on_payload = fn;
    w->payload_arg = arg;
}

static void
hub_on_connect(void *arg)
{
    struct watch *w = arg;

    /*
     * Whatever happened while the session was down is in the table. The
     * first time, the hub's position is the newest event id, read by a
     * statement of its own: the observers' full loads are sent only once
     * it has answered, so each load's snapshot is at or after that
     * position. Sent together, a load could run first on another pool
     * connection, and an object committed between the two would be in
     * neither the load nor the events after the position (lost to the
     * read cache of a replica restarted under writes; chaos_replicas).
     */
    if (w->last_id < 0) {
        w->reload_pending = 1;
        hub_fetch(w);
        return;
    }
    for (int o = 0; o < w->nobs; o++)
        if (w->obs[o].on_reconnect)
            w->obs[o].on_reconnect(w->obs[o].arg);
    hub_fetch(w);
}

void
watch_observe(struct watch *w, const struct watch_observer *obs)
{
    if (w->nobs == WATCH_MAX_OBSERVERS)
        fatalx("too many watch observers");
    w->obs[w->nobs++] = *obs;
}

static void
hub_on_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    hub_fetch(arg);
}

static void
hub_on_keepalive(evutil_socket_t fd, short what, void *arg)
{
    struct watch *w = arg;
    struct watch_client *c;
    struct watch_stream *st;

    (void)fd;
    (void)what;
    TAILQ_FOREACH(c, &w->clients, link)
        if (c->started)
            http_stream_chunk(c->r, ": keepalive\n\n", 13);
    TAILQ_FOREACH(st, &w->streams, link)
        http_stream_chunk(st->r, ": keepalive\n\n", 13);
}

void
watch_stream_add(struct watch *w, struct watch_stream *s)
{
    TAILQ_INSERT_TAIL(&w->streams, s, link);
}

void
watch_stream_del(struct watch *w, struct watch_stream *s)
{
    TAILQ_REMOVE(&w->streams, s, link);
}

struct watch *
watch_new(struct event_base *base, struct db_pool *db, const char *conninfo)
{
    struct watch *w = xcalloc(1, sizeof(*w));
    struct timeval tv = {WATCH_KEEPALIVE_S, 0};

    w->base = base;
    w->db = db;
    w->last_id = -1;
    TAILQ_INIT(&w->clients);
    TAILQ_INIT(&w->streams);
    w->keepalive = event_new(base, -1, EV_PERSIST, hub_on_keepalive, w);
    if (w->keepalive == NULL || event_add(w->keepalive, &tv) < 0)
        fatalx("cannot start the watch keepalive timer");
    w->retry = evtimer_new(base, hub_on_retry, w);
    if (w->retry == NULL)
        fatalx("cannot allocate the watch retry timer");
    w->listener = db_listener_new(base, conninfo, "cloud_events",
                                  hub_on_notify, hub_on_connect, w);
    return w;
}

void
watch_free(struct watch *w)
{
    struct watch_client *c;

    if (w == NULL)
        return;
    while ((c = TAILQ_FIRST(&w->clients)) != NULL) {
        c->inflight = 0;
        watch_client_drop(c);
    }
    db_listener_free(w->listener);
    event_free(w->keepalive);
    event_free(w->retry);
    free(w);
}

int
watch_listening(const struct watch *w)
{
    return db_listener_up(w->listener);
}

int
watch_clients(const struct watch *w)
{
    return w->nclients;
}
