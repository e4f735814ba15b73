/*
 * leader: leader election by lease (DESIGN.md "Controller").
 *
 * The row leader_lease (id 1: holder, epoch, expires_at) is renewed with one
 * conditional UPDATE on the database's clock (never a local one); a takeover
 * of an expired lease bumps the epoch, the fencing token every reconciler
 * write checks in its own transaction. A leader that cannot renew stops
 * acting well before its lease ends: it acts only while its last successful
 * renewal was sent less than stop_after ago (0.6 x the lease), measured on
 * the local monotonic clock from the moment the renewal was *sent*, which is
 * before the database stamped the new expiry.
 *
 * Owns the renewal timer and the identity string. Not thread-safe: one
 * event loop.
 */
#ifndef CLOUD_LEADER_H
#define CLOUD_LEADER_H

#include <event2/event.h>

#include "db.h"

#define LEADER_LEASE_DEFAULT 10 /* seconds */
#define LEADER_LEASE_MIN 3
#define LEADER_LEASE_MAX 300

struct leader;

struct leader_cbs {
    /*
     * This controller now leads with epoch; term_start_ms is the database's
     * now() (ms since the Unix epoch) when it took the lease.
     */
    void (*elected)(void *arg, long long epoch, long long term_start_ms);
    /* It stopped leading (lease taken, fenced, or not renewed in time). */
    void (*lost)(void *arg, const char *why);
    void *arg;
};

/* A new identity, hostname-pid-random (xmalloc'd): what names this
 * controller replica in the lease and in the log relay (logrelay.h). */
char *leader_make_identity(void);

/* identity NULL: hostname-pid-random. lease_secs in [MIN, MAX]. */
struct leader *leader_new(struct event_base *base, struct db_pool *db,
                          const char *identity, int lease_secs,
                          const struct leader_cbs *cbs);
/*
 * Stops the timers. Queries in flight finish later (db_pool_free fails
 * them); the struct is freed by the last of them. Accepts NULL.
 */
void leader_free(struct leader *l);

/* Leading, and the last renewal recent enough to act on. */
int leader_acting(const struct leader *l);
long long leader_epoch(const struct leader *l);
const char *leader_identity(const struct leader *l);
/* The database clock now, estimated from the last renewal (ms). */
long long leader_db_now_ms(const struct leader *l);
/* The database refused our epoch: stop acting at once. */
void leader_fenced(struct leader *l, const char *why);
/*
 * Shutting down: stops acting and competing, and gives the lease up
 * (cloud_lease_release) if it holds it; done(arg) runs once that answered
 * (at once when it did not lead). The leader is still freed with
 * leader_free().
 */
void leader_release(struct leader *l, void (*done)(void *), void *arg);
/* Another controller gave the lease up: try for it now, not at the next
 * tick (nothing when leading, released or a try is in flight). */
void leader_poke(struct leader *l);

#endif
