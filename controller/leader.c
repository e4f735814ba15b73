/*
 * leader: the lease (see leader.h). Owns the renewal timer, the deadline
 * timer that stops acting when renewals fail, and the identity. One renewal
 * is in flight at a time; a renewal that comes back after the term it was
 * sent in has ended counts for nothing.
 */
#define LOG_MODULE "leader"
#include "leader.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "log.h"
#include "mem.h"
#include "monotime.h"
#include "store.h"

struct leader {
    struct event_base *base;
    struct db_pool *db;
    struct event *tick;     /* renew (or try to acquire) */
    struct event *deadline; /* stop acting if no renewal by then */
    char *identity;
    int lease_secs;
    long long renew_ms;      /* interval between renewals */
    long long stop_after_ms; /* act at most this long after a renewal */
    int leading;
    long long epoch;
    long long last_ok_ms; /* monotonic send time of the last success */
    long long db_offset_ms; /* database clock minus local realtime */
    int inflight;
    int closing;
    int released; /* leader_release: competes no more */
    void (*release_done)(void *);
    void *release_arg;
    unsigned long long term; /* changes whenever leading starts or stops */
    struct leader_cbs cbs;
};

struct renew {
    struct leader *l;
    long long sent_ms;
    long long sent_real_ms;
    long long epoch; /* what we asked to renew */
    unsigned long long term;
};

char *
leader_make_identity(void)
{
    char host[256];
    unsigned char rnd[4];

    if (gethostname(host, sizeof(host)) < 0)
        xstrlcpy(host, "controller", sizeof(host));
    host[sizeof(host) - 1] = '\0';
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
        /* Identity only needs to differ between processes; pid and time
         * already do on one host. */
        long long t = wall_ms();
        memcpy(rnd, &t, sizeof(rnd));
    }
    return xasprintf("%s-%ld-%02x%02x%02x%02x", host, (long)getpid(), rnd[0],
                     rnd[1], rnd[2], rnd[3]);
}

static void
ms_tv(long long ms, struct timeval *tv)
{
    tv->tv_sec = (time_t)(ms / 1000);
    tv->tv_usec = (suseconds_t)((ms % 1000) * 1000);
}

static void
stop_leading(struct leader *l, const char *why)
{
    if (!l->leading)
        return;
    l->leading = 0;
    l->term++;
    event_del(l->deadline);
    log_warnx("no longer the leader (epoch %lld): %s", l->epoch, why);
    if (l->cbs.lost)
        l->cbs.lost(l->cbs.arg, why);
}

static void
arm_deadline(struct leader *l)
{
    struct timeval tv;
    long long left = l->last_ok_ms + l->stop_after_ms - mono_ms();

    ms_tv(left > 0 ? left : 0, &tv);
    event_add(l->deadline, &tv);
}

static void
on_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct leader *l = arg;
    char why[128];

    (void)fd;
    (void)what;
    if (!l->leading)
        return;
    if (mono_ms() < l->last_ok_ms + l->stop_after_ms) {
        arm_deadline(l);
        return;
    }
    snprintf(why, sizeof(why), "the lease was not renewed for %lld ms",
             l->stop_after_ms);
    stop_leading(l, why);
}

static void maybe_free(struct leader *l);

static void
on_renew(const PGresult *res, const struct db_error *err, void *arg)
{
    struct renew *rq = arg;
    struct leader *l = rq->l;
    long long epoch, now_ms;
    int took_over;

    l->inflight--;
    if (l->closing)
        goto out;
    if (err) {
        log_warnx("lease renewal failed: %s", err->message);
        goto out;
    }
    if (l->released)
        goto out; /* given up meanwhile (the release queued behind this) */
    if (rq->term != l->term && !l->leading) {
        /* Sent while leading, answered after we stopped: whatever it says,
         * the next renewal decides afresh (with epoch 0 -> a takeover of
         * our own lease bumps the epoch). */
        goto out;
    }
    if (PQntuples(res) == 0) {
        if (l->leading)
            stop_leading(l, "another controller holds the lease");
        goto out;
    }
    epoch = strtoll(PQgetvalue(res, 0, LEASE_ACQUIRE_EPOCH), NULL, 10);
    now_ms = strtoll(PQgetvalue(res, 0, LEASE_ACQUIRE_NOW_MS), NULL, 10);
    took_over = PQgetvalue(res, 0, LEASE_ACQUIRE_TOOK_OVER)[0] == 't';
    /* The database stamped now_ms somewhere between send and answer. */
    l->db_offset_ms = now_ms - rq->sent_real_ms;
    if (l->leading && (took_over || epoch != l->epoch))
        stop_leading(l, "the lease moved to a new epoch");
    l->last_ok_ms = rq->sent_ms;
    if (!l->leading) {
        l->leading = 1;
        l->epoch = epoch;
        l->term++;
        log_info("leading as %s (epoch %lld)", l->identity, epoch);
        arm_deadline(l);
        if (l->cbs.elected)
            l->cbs.elected(l->cbs.arg, epoch, now_ms);
    } else {
        arm_deadline(l);
    }
out:
    free(rq);
    maybe_free(l);
}

static void
renew(struct leader *l)
{
    struct renew *rq;
    char epoch[24], secs[16];
    const char *vals[3];

    if (l->inflight > 0 || l->released)
        return; /* a slow database: do not pile renewals up */
    rq = xcalloc(1, sizeof(*rq));
    rq->l = l;
    rq->sent_ms = mono_ms();
    rq->sent_real_ms = wall_ms();
    rq->epoch = l->leading ? l->epoch : 0;
    rq->term = l->term;
    snprintf(epoch, sizeof(epoch), "%lld", rq->epoch);
    snprintf(secs, sizeof(secs), "%d", l->lease_secs);
    vals[0] = l->identity;
    vals[1] = epoch;
    vals[2] = secs;
    l->inflight++;
    db_query(l->db, store_stmt(ST_LEASE_ACQUIRE), vals, on_renew, rq);
}

static void
on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    renew(arg);
}

struct leader *
leader_new(struct event_base *base, struct db_pool *db, const char *identity,
           int lease_secs, const struct leader_cbs *cbs)
{
    struct leader *l = xcalloc(1, sizeof(*l));
    struct timeval tv;

    l->base = base;
    l->db = db;
    l->identity = identity ? xstrdup(identity) : leader_make_identity();
    l->lease_secs = lease_secs;
    l->renew_ms = (long long)lease_secs * 1000 / 5;
    l->stop_after_ms = (long long)lease_secs * 600;
    l->cbs = *cbs;
    l->tick = event_new(base, -1, EV_PERSIST, on_tick, l);
    l->deadline = event_new(base, -1, 0, on_deadline, l);
    if (l->tick == NULL || l->deadline == NULL)
        fatalx("cannot create the lease timers");
    ms_tv(l->renew_ms, &tv);
    if (event_add(l->tick, &tv) < 0)
        fatalx("cannot start the lease timer");
    log_info("controller %s: lease %d s, renewed every %lld ms, acting at "
             "most %lld ms after a renewal",
             l->identity, lease_secs, l->renew_ms, l->stop_after_ms);
    renew(l); /* first try at once */
    return l;
}

static void
maybe_free(struct leader *l)
{
    if (!l->closing || l->inflight > 0)
        return;
    if (l->release_done != NULL) {
        l->release_done(l->release_arg); /* never answered */
        l->release_done = NULL;
    }
    free(l->identity);
    free(l);
}

void
leader_free(struct leader *l)
{
    if (l == NULL)
        return;
    event_free(l->tick);
    event_free(l->deadline);
    l->tick = l->deadline = NULL;
    l->closing = 1;
    l->leading = 0;
    maybe_free(l);
}

int
leader_acting(const struct leader *l)
{
    return l->leading && !l->closing &&
           mono_ms() < l->last_ok_ms + l->stop_after_ms;
}

long long
leader_epoch(const struct leader *l)
{
    return l->epoch;
}

const char *
leader_identity(const struct leader *l)
{
    return l->identity;
}

long long
leader_db_now_ms(const struct leader *l)
{
    return wall_ms() + l->db_offset_ms;
}

void
leader_fenced(struct leader *l, const char *why)
{
    stop_leading(l, why);
}

static void
on_release(const PGresult *res, const struct db_error *err, void *arg)
{
    struct leader *l = arg;
    void (*done)(void *) = l->release_done;

    l->inflight--;
    l->release_done = NULL;
    if (err != NULL)
        log_warnx("could not give the lease up (a successor takes over "
                  "when it expires): %s",
                  err->message);
    else if (PQgetvalue(res, 0, 0)[0] == 't')
        log_info("gave the lease up (epoch %lld)", l->epoch);
    else
        log_info("the lease (epoch %lld) was no longer ours to give up",
                 l->epoch);
    if (done != NULL)
        done(l->release_arg);
    maybe_free(l);
}

void
leader_release(struct leader *l, void (*done)(void *), void *arg)
{
    char epoch[24];
    const char *vals[2];
    int held = l->leading;

    l->released = 1;
    stop_leading(l, "shutting down: giving the lease up");
    if (!held || l->closing || l->release_done != NULL) {
        done(arg);
        return;
    }
    snprintf(epoch, sizeof(epoch), "%lld", l->epoch);
    vals[0] = l->identity;
    vals[1] = epoch;
    l->release_done = done;
    l->release_arg = arg;
    l->inflight++;
    db_query(l->db, store_stmt(ST_LEASE_RELEASE), vals, on_release, l);
}

void
leader_poke(struct leader *l)
{
    if (!l->leading && !l->released && !l->closing)
        renew(l);
}
