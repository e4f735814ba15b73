/*
 * retention: the housekeeping timer (see retention.h). Owns the timer and
 * the in-flight flags of its three queries (prune, settings, blob GC via
 * api_blobs.c); at most one of each is in flight.
 */
#define LOG_MODULE "retention"
#include "retention.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "mem.h"
#include "reconcile.h"
#include "store.h"

struct retention {
    struct app *app;
    struct event *tick;
    struct event *again; /* the next prune batch, at once */
    int prune_inflight;
    int settings_inflight;
    int closing;
    time_t last_gc;
};

static int
leading(const struct retention *rt)
{
    return rt->app->reconciler && reconciler_leading(rt->app->reconciler);
}

static void
maybe_release(struct retention *rt)
{
    if (rt->closing && !rt->prune_inflight && !rt->settings_inflight)
        free(rt);
}

/* One of rt's queries answered: clears its in-flight flag (*inflight).
 * False when the answer is not to be used: rt is closing (and freed here
 * if nothing else is in flight), or the query failed (reported as "cannot
 * <what>"). */
static int
answer_usable(struct retention *rt, int *inflight, const struct db_error *err,
              const char *what)
{
    *inflight = 0;
    if (rt->closing) {
        maybe_release(rt);
        return 0;
    }
    if (err) {
        log_warnx("cannot %s: %s", what, err->message);
        return 0;
    }
    return 1;
}

static void prune(struct retention *rt);

static void
on_pruned(const PGresult *res, const struct db_error *err, void *arg)
{
    struct retention *rt = arg;
    long long deleted;

    if (!answer_usable(rt, &rt->prune_inflight, err, "prune events"))
        return;
    deleted = strtoll(PQgetvalue(res, 0, EVENTS_PRUNE_DELETED), NULL, 10);
    if (deleted > 0)
        log_info("pruned %lld events; events up to %s are no longer kept",
                 deleted, PQgetvalue(res, 0, EVENTS_PRUNE_LOW_WATER));
    /* A full batch: more to go. Through the loop, so other work runs in
     * between the statements. */
    if (deleted >= RETENTION_BATCH)
        event_active(rt->again, 0, 0);
}

static void
prune(struct retention *rt)
{
    char batch[16];
    const char *vals[1] = {batch};

    if (rt->prune_inflight || !leading(rt))
        return;
    snprintf(batch, sizeof(batch), "%d", RETENTION_BATCH);
    rt->prune_inflight = 1;
    db_query(rt->app->db, store_stmt(ST_EVENTS_PRUNE), vals, on_pruned, rt);
}

static void
on_settings(const PGresult *res, const struct db_error *err, void *arg)
{
    struct retention *rt = arg;
    time_t now = time(NULL);
    long long every;

    if (!answer_usable(rt, &rt->settings_inflight, err,
                       "read the cluster settings"))
        return;
    if (PQntuples(res) == 1)
        blobs_settings(rt->app->blobs, PQgetvalue(res, 0, 0));
    every = blobs_gc_grace(rt->app->blobs);
    if (every > 60)
        every = 60;
    if (now - rt->last_gc >= every) {
        rt->last_gc = now;
        blobs_gc(rt->app->blobs, rt->app->db, leading(rt));
    }
}

static void
on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct retention *rt = arg;

    (void)fd;
    (void)what;
    prune(rt);
    if (!rt->settings_inflight) {
        rt->settings_inflight = 1;
        db_query(rt->app->db, store_stmt(ST_SETTINGS_GET), NULL, on_settings,
                 rt);
    }
}

static void
on_again(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    prune(arg);
}

struct retention *
retention_new(struct app *app)
{
    struct retention *rt = xcalloc(1, sizeof(*rt));
    struct timeval tv = {RETENTION_TICK_S, 0};

    rt->app = app;
    rt->last_gc = time(NULL);
    rt->tick = event_new(app->base, -1, EV_PERSIST, on_tick, rt);
    rt->again = event_new(app->base, -1, 0, on_again, rt);
    if (rt->tick == NULL || rt->again == NULL || event_add(rt->tick, &tv) < 0)
        fatalx("cannot start the retention timer");
    return rt;
}

void
retention_free(struct retention *rt)
{
    if (rt == NULL)
        return;
    event_free(rt->tick);
    event_free(rt->again);
    rt->tick = rt->again = NULL;
    rt->closing = 1;
    maybe_release(rt);
}
