/*
 * reconcile: the leader's control loop (DESIGN.md "Flows" 2).
 *
 * Services -> instances (create missing, retire extra, roll to a new
 * generation within max_unavailable / max_surge), restart policies with
 * back-off, host liveness (down after down_after of silence seen by this
 * leader), drain, and placement of pending instances through the scheduler
 * library. Woken by the event stream and a 1 s tick, never overlapping
 * itself; every write is one batched SQL call guarded by the leader epoch.
 * See docs/reconciler.md.
 */
#ifndef CLOUD_RECONCILE_H
#define CLOUD_RECONCILE_H

#include <event2/event.h>

#include "db.h"
#include "watch.h"

struct reconciler;

struct reconciler_opts {
    int lease_secs;       /* LEADER_LEASE_DEFAULT if 0 */
    int load_page;        /* instances per page of a full load (0: 5000) */
    const char *identity; /* NULL: hostname-pid-random */
    struct db_pool *lease_db; /* the lease's own pool (NULL: db) */
};

/* Starts competing for the lease; observes w's event stream. */
struct reconciler *reconciler_new(struct event_base *base, struct db_pool *db,
                                  struct watch *w,
                                  const struct reconciler_opts *opts);
/* Stops acting at once; memory goes when the last query returns. Accepts
 * NULL. Call before db_pool_free(). */
void reconciler_free(struct reconciler *r);

/*
 * Shutting down: stops acting and gives the lease up, so that another
 * replica leads within a second instead of after a lease (the
 * controller.released event wakes them); done(arg) runs when that
 * answered. Still freed with reconciler_free().
 */
void reconciler_release(struct reconciler *r, void (*done)(void *), void *arg);

/* For /metrics and logs: whether this controller acts as the leader. */
int reconciler_leading(const struct reconciler *r);

#endif
