/*
 * reconcile_decide: the reconciler's decision step. From the mirror
 * (reconcile_priv.h) to a batch of operations for ST_REC_APPLY: services ->
 * instances (create missing, retire extra, roll to a new generation within
 * max_unavailable / max_surge), restart policies with back-off, drain, lost
 * instances, placement of pending instances through the scheduler library.
 * No I/O: the loop (reconcile_loop.c) reads and writes; the unit tests
 * (tests/unit/test_reconcile_decide.c) call reconcile_decide() directly.
 */
#define LOG_MODULE "reconcile"
#include "reconcile_priv.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "mem.h"
#include "monotime.h"

#define FULL_DECIDE_SECS 30 /* decide for everything: the safety net */
#define LOST_KEEP_MS 60000 /* a lost, deleted instance stays visible */
#define MAX_OPS 1000 /* decisions per batch; more follow next pass */
#define ON_FAILURE "on-failure"

struct ivec {
    struct rinst **v;
    size_t n, cap;
};

static void
ivec_push(struct ivec *a, struct rinst *i)
{
    if (a->n == a->cap) {
        a->cap = a->cap ? a->cap * 2 : 8;
        a->v = xrealloc(a->v, a->cap * sizeof(*a->v));
    }
    a->v[a->n++] = i;
}

struct decide {
    struct reconciler *r;
    struct pass *p;
    json_t *ops;
    long long now_ms; /* database clock, estimated */
    struct ivec cand; /* pending instances to place this pass */
};

static int
ops_full(struct decide *d)
{
    if (json_array_size(d->ops) < MAX_OPS)
        return 0;
    d->r->again = 1;
    return 1;
}

static void
op_add(struct decide *d, json_t *op)
{
    if (op == NULL)
        fatalx("cannot build a reconciler operation");
    json_array_append_new(d->ops, op);
}

static void
op_inst(struct decide *d, const char *op, struct rinst *i, const char *reason)
{
    json_t *o = json_pack("{s:s, s:s, s:I}", "op", op, "id", i->id, "version",
                          (json_int_t)i->version);

    if (o && reason)
        json_object_set_new(o, "reason", json_string(reason));
    op_add(d, o);
    i->planned_pass = d->p->serial;
}

static void
op_event(struct decide *d, const char *type, const char *object,
         const char *id, const char *name, const char *msg)
{
    op_add(d, json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "op", "event",
                        "type", type, "object", object, "id", id, "name",
                        name, "message", msg));
}

static int
is_running(const struct rinst *i)
{
    return i->state == IS_RUNNING;
}

/* Retire order: not running first, then unplaced, then newest. */
static int
cmp_retire(const void *a, const void *b)
{
    const struct rinst *x = *(struct rinst *const *)a;
    const struct rinst *y = *(struct rinst *const *)b;

    if (is_running(x) != is_running(y))
        return is_running(x) - is_running(y);
    if ((x->host_id != NULL) != (y->host_id != NULL))
        return (x->host_id != NULL) - (y->host_id != NULL);
    if (x->created_ms != y->created_ms)
        return x->created_ms < y->created_ms ? 1 : -1;
    return y->ordinal - x->ordinal;
}

/* Placement order: oldest first (first come, first served). */
static int
cmp_place(const void *a, const void *b)
{
    const struct rinst *x = *(struct rinst *const *)a;
    const struct rinst *y = *(struct rinst *const *)b;

    if (x->created_ms != y->created_ms)
        return x->created_ms < y->created_ms ? -1 : 1;
    return strcmp(x->id, y->id);
}

/*
 * The restart policy of a finished instance: 1 restart, 0 leave it. *note
 * is set when the policy said no because its limit was reached.
 */
static int
restart_wanted(const struct rinst *i, const char *policy, int *note)
{
    int failure;
    long limit = 0;

    *note = 0;
    if (i->desired != ID_RUNNING || !inst_finished(i) || policy == NULL)
        return 0;
    if (strcmp(policy, "always") == 0)
        return 1;
    if (strncmp(policy, ON_FAILURE, strlen(ON_FAILURE)) != 0)
        return 0; /* never */
    failure = i->state != IS_EXITED || i->exit_code != 0;
    if (!failure)
        return 0;
    if (policy[strlen(ON_FAILURE)] == ':')
        limit = strtol(policy + strlen(ON_FAILURE) + 1, NULL, 10);
    if (limit > 0 && i->restart_count >= limit) {
        *note = 1;
        return 0;
    }
    return 1;
}

static void
decide_restart(struct decide *d, struct rinst *i, const char *policy)
{
    int note;
    char *msg;

    if (i->planned_pass == d->p->serial || ops_full(d))
        return;
    if (restart_wanted(i, policy, &note)) {
        op_inst(d, "restart", i, NULL);
        return;
    }
    if (!note || i->noted_version == i->version)
        return;
    i->noted_version = i->version;
    if (i->exit_code >= 0)
        msg = xasprintf("instance %s not restarted after exit %d: restart "
                        "policy %s allows no more than its %d restarts",
                        i->name, i->exit_code, policy, i->restart_count);
    else
        msg = xasprintf("instance %s not restarted after it %s: restart "
                        "policy %s allows no more than its %d restarts",
                        i->name, ist_names[i->state], policy,
                        i->restart_count);
    op_event(d, "instance.not_restarted", "instance", i->id, i->name, msg);
    free(msg);
}

static int
on_doomed_host(struct reconciler *r, const struct rinst *i)
{
    struct rhost *h;

    if (i->host_id == NULL)
        return 0;
    /* the host's list links it; a host unknown when it was linked is
     * looked up */
    h = i->hlink ? i->hlink : strmap_get(&r->hosts, i->host_id);
    return h && (strcmp(h->state, "draining") == 0 ||
                 strcmp(h->state, "drained") == 0 ||
                 strcmp(h->state, "down") == 0);
}

static const char *
host_name(struct reconciler *r, const char *id)
{
    struct rhost *h = id ? strmap_get(&r->hosts, id) : NULL;

    return h ? h->name : "?";
}

static const char *
host_state(struct reconciler *r, const char *id)
{
    struct rhost *h = id ? strmap_get(&r->hosts, id) : NULL;

    return h ? h->state : "?";
}

static void
op_create(struct decide *d, struct rsvc *s, const char *reason)
{
    op_add(d, json_pack("{s:s, s:s, s:I, s:s}", "op", "create", "service",
                        s->id, "version", (json_int_t)s->version, "reason",
                        reason));
}

/*
 * One service: keep `replicas` live instances at the current generation.
 *   eff    live instances not on a draining/drained/down host
 *   fresh  eff at the service's generation; old: eff below it
 *   doomed live instances on a draining host (to be moved), or lost
 *          with a down one (partition_policy keep: kept for its return)
 * Creates: up to replicas fresh ones, within replicas + max_surge live while
 * a rollout runs. Retires: fresh beyond replicas (scale down); old ones that
 * are not running, and running ones while at least replicas -
 * max_unavailable stay running; doomed ones once replacements exist, within
 * the same bound.
 */
static void
decide_service(struct decide *d, struct rsvc *s, struct ivec *insts)
{
    struct reconciler *r = d->r;
    struct ivec fresh = {0}, old = {0}, doomed = {0};
    int R = s->replicas, surge = s->max_surge, maxu = s->max_unavailable;
    int run = 0, min_avail, eff, want, creates, fresh_left, old_left;
    int fresh_running = 0;
    char *msg;

    if (s->deleting) {
        if (insts->n == 0 && !ops_full(d))
            op_add(d, json_pack("{s:s, s:s, s:I}", "op", "service_remove",
                                "id", s->id, "version",
                                (json_int_t)s->version));
        return;
    }
    if (surge == 0 && maxu == 0)
        surge = 1; /* both 0 could never move: surge one at a time */
    min_avail = R > maxu ? R - maxu : 0;
    for (size_t k = 0; k < insts->n; k++) {
        struct rinst *i = insts->v[k];

        if (i->desired == ID_DELETED)
            continue;
        /* A lost one (partition_policy keep) waits for its host: it is
         * replaced as a doomed one, not restarted elsewhere. */
        if (i->generation >= s->generation && inst_finished(i) &&
            i->state != IS_LOST) {
            decide_restart(d, i, s->restart);
        }
        if (is_running(i))
            run++;
        if (on_doomed_host(r, i))
            ivec_push(&doomed, i);
        else if (i->generation >= s->generation) {
            ivec_push(&fresh, i);
            fresh_running += is_running(i);
        } else
            ivec_push(&old, i);
    }
    eff = (int)(fresh.n + old.n);

    /* creates */
    want = R - (int)fresh.n;
    creates = (old.n ? R + surge : R) - eff;
    if (creates > want)
        creates = want;
    for (int k = 0; k < creates && !ops_full(d); k++) {
        if (old.n)
            msg = xasprintf("rollout of %s to generation %lld", s->name,
                            s->generation);
        else if ((size_t)k < doomed.n)
            msg = xasprintf("replaces %s on %s host %s", doomed.v[k]->name,
                            host_state(r, doomed.v[k]->host_id),
                            host_name(r, doomed.v[k]->host_id));
        else
            msg = xasprintf("service %s wants %d replicas, has %d", s->name,
                            R, eff + k);
        op_create(d, s, msg);
        free(msg);
    }
    if (creates < 0)
        creates = 0;

    /* scale down: fresh beyond replicas */
    fresh_left = (int)fresh.n;
    if ((int)fresh.n > R) {
        qsort(fresh.v, fresh.n, sizeof(*fresh.v), cmp_retire);
        msg = xasprintf("service %s scaled to %d replicas", s->name, R);
        for (size_t k = 0; k < fresh.n - (size_t)R && !ops_full(d); k++) {
            run -= is_running(fresh.v[k]);
            op_inst(d, "retire", fresh.v[k], msg);
            fresh_left--;
        }
        free(msg);
    }

    /* rollout: old ones go as availability allows */
    old_left = (int)old.n;
    if (old.n) {
        qsort(old.v, old.n, sizeof(*old.v), cmp_retire);
        msg = xasprintf("replaced by generation %lld (rollout of %s, "
                        "max_unavailable %d, max_surge %d)",
                        s->generation, s->name, s->max_unavailable,
                        s->max_surge);
        for (size_t k = 0; k < old.n && !ops_full(d); k++) {
            struct rinst *i = old.v[k];

            if (i->planned_pass == d->p->serial)
                continue;
            if (is_running(i)) {
                if (run - 1 < min_avail)
                    break; /* sorted: the rest run too */
                run--;
            }
            op_inst(d, "retire", i, msg);
            old_left--;
        }
        free(msg);
    }

    /* drain: doomed ones go once their replacements exist */
    if (doomed.n && fresh_left + old_left + creates >= R) {
        qsort(doomed.v, doomed.n, sizeof(*doomed.v), cmp_retire);
        for (size_t k = 0; k < doomed.n && !ops_full(d); k++) {
            struct rinst *i = doomed.v[k];

            /* Lost with a down host: kept until it returns, then taken
             * back if it still runs (cloud_agent_register); its
             * replacement is retired as one too many. */
            if (i->state == IS_LOST)
                continue;
            if (is_running(i)) {
                if (run - 1 < min_avail)
                    break;
                run--;
            }
            msg = xasprintf("moved off %s host %s", host_state(r, i->host_id),
                            host_name(r, i->host_id));
            op_inst(d, "retire", i, msg);
            free(msg);
        }
    }

    /* rollout progress: an event whenever it moves */
    if (old.n && !ops_full(d)) {
        if (s->ro_gen != s->generation || s->ro_updated != fresh_running ||
            s->ro_old != (int)old.n) {
            msg = xasprintf("rollout of %s to generation %lld: %d/%d updated",
                            s->name, s->generation, fresh_running, R);
            op_event(d, "service.rollout", "service", s->id, s->name, msg);
            free(msg);
            s->ro_gen = s->generation;
            s->ro_updated = fresh_running;
            s->ro_old = (int)old.n;
        }
    } else if (s->ro_gen == s->generation && fresh_running >= R &&
               !ops_full(d)) {
        msg = xasprintf("rollout of %s to generation %lld complete: %d/%d "
                        "updated",
                        s->name, s->generation, fresh_running, R);
        op_event(d, "service.rollout", "service", s->id, s->name, msg);
        free(msg);
        s->ro_gen = 0;
    }
    free(fresh.v);
    free(old.v);
    free(doomed.v);
}

struct selcache {
    struct strmap m; /* text -> struct selentry */
};
struct selentry {
    char *text;
    struct sched_selector *sel;
    char *error;
};

static struct selentry *
selector_for(struct reconciler *r, struct selcache *sc, const char *text)
{
    struct selentry *e = strmap_get(&sc->m, text);

    if (e)
        return e;
    e = xcalloc(1, sizeof(*e));
    e->text = xstrdup(text);
    e->sel = sched_selector_parse(r->model, text);
    if (e->sel == NULL)
        e->error = xstrdup(sched_error(r->model));
    strmap_put(&sc->m, e->text, e);
    return e;
}

static void
selcache_free(struct selcache *sc)
{
    for (size_t k = 0; k < sc->m.cap; k++) {
        struct selentry *e;

        if (sc->m.keys[k] == NULL)
            continue;
        e = sc->m.vals[k];
        sched_selector_free(e->sel);
        free(e->error);
        free(e->text);
        free(e);
    }
    strmap_fini(&sc->m);
}

/* Whether a pending instance is to be placed now. One in its restart
 * back-off goes to the timed set (the tick brings it back); one whose
 * service is missing or deleting waits for the service to be re-read. */
static int
placeable(struct decide *d, struct rinst *i, const struct rsvc *s)
{
    struct reconciler *r = d->r;

    if (i->state != IS_PENDING || i->host_id || i->desired != ID_RUNNING ||
        i->planned_pass == d->p->serial)
        return 0;
    if (i->next_restart_ms && i->next_restart_ms > d->now_ms) {
        idset_add(&r->timed, i->id);
        return 0;
    }
    if (i->svc_id) {
        if (s == NULL)
            s = strmap_get(&r->svcs, i->svc_id);
        if (s == NULL || s->deleting)
            return 0;
    }
    return 1;
}

static void
cand_push(struct decide *d, struct rinst *i)
{
    if (i->cand_pass == d->p->serial)
        return;
    i->cand_pass = d->p->serial;
    ivec_push(&d->cand, i);
}

/* A new candidate: placeable and not already known not to fit. s: its
 * service when the caller has it (NULL: looked up). */
static void
cand_consider(struct decide *d, struct rinst *i, const struct rsvc *s)
{
    struct strmap *waiting = &d->r->waiting;

    /* the fields first: most instances of a large service are placed */
    if (i->state != IS_PENDING || i->host_id)
        return;
    if ((waiting->len == 0 || strmap_get(waiting, i->id) == NULL) &&
        placeable(d, i, s))
        cand_push(d, i);
}

/* The candidates as a binary heap in placement order: a pass places at
 * most MAX_OPS of them, so they are taken off the top one at a time
 * instead of sorting them all (a service of 100,000 waits in 100 passes). */
static void
heap_down(struct rinst **v, size_t n, size_t k)
{
    for (;;) {
        size_t c = 2 * k + 1;
        struct rinst *t;

        if (c >= n)
            return;
        if (c + 1 < n && cmp_place(&v[c + 1], &v[c]) < 0)
            c++;
        if (cmp_place(&v[c], &v[k]) >= 0)
            return;
        t = v[k];
        v[k] = v[c];
        v[c] = t;
        k = c;
    }
}

static struct rinst *
heap_pop(struct rinst **v, size_t *n)
{
    struct rinst *top = v[0];

    v[0] = v[--*n];
    heap_down(v, *n, 0);
    return top;
}

/* Candidates left when the pass is full are decided again next pass:
 * through their service, which looks at all its instances anyway, or on
 * their own (one-offs). */
static void
cand_defer(struct decide *d, struct rinst *i)
{
    struct reconciler *r = d->r;

    if (i->grp && i->grp->defer_pass == d->p->serial)
        return; /* its service is deferred already */
    if (i->grp && strmap_get(&r->svcs, i->svc_id)) {
        i->grp->defer_pass = d->p->serial;
        idset_add(&r->dec[K_SVC], i->svc_id);
    } else {
        idset_add(&r->dec[K_INST], i->id);
    }
}

static void
decide_place(struct decide *d, struct ivec *pending)
{
    struct reconciler *r = d->r;
    struct selcache sc;

    strmap_init(&sc.m);
    for (size_t k = pending->n / 2; k-- > 0;)
        heap_down(pending->v, pending->n, k);
    while (pending->n > 0) {
        struct rinst *i;
        struct sched_request req;
        struct sched_placement pl;
        struct selentry *se = NULL;
        const char *why;

        if (ops_full(d)) {
            /* the rest: next pass */
            for (size_t k = 0; k < pending->n; k++)
                cand_defer(d, pending->v[k]);
            break;
        }
        i = heap_pop(pending->v, &pending->n);
        if (i->planned_pass == d->p->serial)
            continue;
        memset(&req, 0, sizeof(req));
        req.res = i->res;
        req.strategy = i->strategy;
        req.service.name = i->svc_id;
        req.max_per_host = i->max_per_host;
        if (i->constraints[0]) {
            se = selector_for(r, &sc, i->constraints);
            if (se->sel == NULL) {
                idset_add(&r->waiting, i->id);
                if (!rec_streq(i->pending_reason, se->error))
                    op_inst(d, "unplaceable", i, se->error);
                continue;
            }
            req.selector = se->sel;
        }
        if (sched_place(r->model, &req, 0, &pl) == 0) {
            struct rhost *h = r->by_sid[pl.host_id - 1];
            struct pass *p = d->p;
            json_t *o;

            idset_del(&r->waiting, i->id);
            if (p->ntent == p->captent) {
                p->captent = p->captent ? p->captent * 2 : 64;
                p->tent = xrealloc(p->tent, p->captent * sizeof(*p->tent));
            }
            p->tent[p->ntent].sid = pl.host_id;
            p->tent[p->ntent].res = i->res;
            p->tent[p->ntent].svc = rec_dup_or_null(i->svc_id);
            p->ntent++;
            o = json_pack("{s:s, s:s, s:I, s:s}", "op", "place", "id", i->id,
                          "version", (json_int_t)i->version, "host", h->id);
            op_add(d, o);
            i->planned_pass = d->p->serial;
            continue;
        }
        /* Does not fit: waits until capacity appears. */
        idset_add(&r->waiting, i->id);
        why = sched_error(r->model);
        if (!rec_streq(i->pending_reason, why))
            op_inst(d, "unplaceable", i, why);
    }
    selcache_free(&sc);
}

/* Instance-level decisions: purge, one-off restart, placement candidate. */
static void
decide_inst(struct decide *d, struct rinst *i)
{
    if (i->desired == ID_DELETED) {
        if (i->host_id == NULL || i->state == IS_EXITED ||
            i->state == IS_FAILED ||
            (i->state == IS_LOST &&
             d->now_ms - i->finished_ms >= LOST_KEEP_MS))
            op_inst(d, "purge", i, NULL);
        else if (i->state == IS_LOST)
            idset_add(&d->r->timed, i->id); /* kept visible a while */
        return;
    }
    if (i->svc_id == NULL && inst_finished(i))
        decide_restart(d, i, i->restart);
    cand_consider(d, i, NULL);
}

static int
host_busy(const struct rhost *h)
{
    int n = 0;

    for (const struct rinst *i = h->ihead; i; i = i->hnext)
        if (i->svc_id && !inst_finished(i))
            n++;
    return n;
}

/* Whether a timed instance is still before its deadline. */
static int
timed_waits(const struct decide *d, const struct rinst *i)
{
    if (i->desired == ID_DELETED)
        return i->state == IS_LOST &&
               d->now_ms - i->finished_ms < LOST_KEEP_MS;
    return i->state == IS_PENDING && i->next_restart_ms &&
           i->next_restart_ms > d->now_ms;
}

/* Takes an id set's objects into a vector (ids gone from the mirror are
 * skipped) and empties the set. */
static void **
take_set(struct strmap *set, const struct strmap *objs, size_t *n)
{
    void **v = xcalloc(set->len + 1, sizeof(*v));
    size_t m = 0;

    for (size_t k = 0; k < set->cap; k++) {
        void *o;

        if (set->keys[k] == NULL)
            continue;
        o = strmap_get(objs, set->keys[k]);
        if (o)
            v[m++] = o;
    }
    idset_clear(set);
    *n = m;
    return v;
}

static void **
take_all(const struct strmap *objs, size_t *n)
{
    void **v = xcalloc(objs->len + 1, sizeof(*v));
    size_t m = 0;

    for (size_t k = 0; k < objs->cap; k++)
        if (objs->keys[k])
            v[m++] = objs->vals[k];
    *n = m;
    return v;
}

static long long
mono_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/*
 * Computes this pass's decisions; returns them as a JSON array. Decides
 * only for what changed (the dec sets, deadlines that passed, and the
 * waiting instances when capacity appeared), or, after a load and every
 * FULL_DECIDE_SECS, for everything.
 */
json_t *
reconcile_decide(struct reconciler *r, struct pass *p, long long now_ms)
{
    struct decide d = {.r = r, .p = p, .ops = json_array()};
    struct ivec none = {0};
    struct rinst **insts;
    struct rsvc **svcs;
    struct rhost **hosts;
    size_t ninsts, nsvcs, nhosts, nwaiting = 0, ncand;
    long long t0 = mono_us();
    int full;

    if (d.ops == NULL)
        fatalx("out of memory");
    d.now_ms = now_ms;
    full = r->full_decide ||
           mono_ms() - r->last_full_ms >= FULL_DECIDE_SECS * 1000LL;
    if (full) {
        r->full_decide = 0;
        r->last_full_ms = mono_ms();
        for (int k = 0; k < K__COUNT; k++)
            idset_clear(&r->dec[k]);
        idset_clear(&r->waiting);
        idset_clear(&r->timed);
        r->retry_waiting = 0;
        insts = (struct rinst **)take_all(&r->insts, &ninsts);
        svcs = (struct rsvc **)take_all(&r->svcs, &nsvcs);
        hosts = (struct rhost **)take_all(&r->hosts, &nhosts);
        r->full_passes++;
    } else {
        struct ivec due = {0};

        insts = (struct rinst **)take_set(&r->dec[K_INST], &r->insts, &ninsts);
        svcs = (struct rsvc **)take_set(&r->dec[K_SVC], &r->svcs, &nsvcs);
        hosts = (struct rhost **)take_set(&r->dec[K_HOST], &r->hosts, &nhosts);
        /* deadlines that passed */
        for (size_t k = 0; k < r->timed.cap; k++) {
            struct rinst *i;

            if (r->timed.keys[k] == NULL)
                continue;
            i = strmap_get(&r->insts, r->timed.keys[k]);
            if (i == NULL || !timed_waits(&d, i))
                ivec_push(&due, i ? i : NULL);
        }
        if (due.n) {
            size_t m = 0;

            insts = xrealloc(insts, (ninsts + due.n + 1) * sizeof(*insts));
            for (size_t k = 0; k < due.n; k++)
                if (due.v[k])
                    insts[ninsts + m++] = due.v[k];
            ninsts += m;
            /* rebuild the timed set without them */
            for (size_t k = 0; k < r->timed.cap; k++) {
                struct rinst *i;

                if (r->timed.keys[k] == NULL)
                    continue;
                i = strmap_get(&r->insts, r->timed.keys[k]);
                if (i && timed_waits(&d, i))
                    ivec_push(&none, i);
            }
            idset_clear(&r->timed);
            for (size_t k = 0; k < none.n; k++)
                idset_add(&r->timed, none.v[k]->id);
            free(none.v);
            memset(&none, 0, sizeof(none));
        }
        free(due.v);
    }

    /* instances: purges, one-off restarts, new placement candidates */
    for (size_t k = 0; k < ninsts; k++) {
        if (ops_full(&d)) {
            for (; k < ninsts; k++)
                idset_add(&r->dec[K_INST], insts[k]->id);
            break;
        }
        decide_inst(&d, insts[k]);
    }

    /* services */
    for (size_t k = 0; k < nsvcs; k++) {
        struct rsvc *s = svcs[k];
        struct sgrp *g;
        struct ivec v = {0};
        size_t before = json_array_size(d.ops);

        if (ops_full(&d)) {
            for (; k < nsvcs; k++)
                idset_add(&r->dec[K_SVC], svcs[k]->id);
            break;
        }
        g = strmap_get(&r->sgrps, s->id);
        for (struct rinst *i = g ? g->head : NULL; i; i = i->snext)
            ivec_push(&v, i);
        decide_service(&d, s, v.n ? &v : &none);
        /* touched: look again at the next pass */
        if (json_array_size(d.ops) != before || ops_full(&d))
            idset_add(&r->dec[K_SVC], s->id);
        for (size_t j = 0; j < v.n; j++)
            if (v.v[j]->desired != ID_DELETED)
                cand_consider(&d, v.v[j], s);
        free(v.v);
    }

    /* drained hosts */
    for (size_t k = 0; k < nhosts; k++) {
        struct rhost *h = hosts[k];

        if (strcmp(h->state, "draining") != 0 || host_busy(h) != 0)
            continue;
        if (ops_full(&d)) {
            idset_add(&r->dec[K_HOST], h->id);
            continue;
        }
        op_add(&d, json_pack("{s:s, s:s, s:I}", "op", "drained", "id", h->id,
                             "version", (json_int_t)h->version));
    }

    /* capacity appeared: the instances that did not fit try again */
    if (r->retry_waiting) {
        struct ivec w = {0};

        for (size_t k = 0; k < r->waiting.cap; k++) {
            struct rinst *i;

            if (r->waiting.keys[k] == NULL)
                continue;
            i = strmap_get(&r->insts, r->waiting.keys[k]);
            if (i)
                ivec_push(&w, i);
        }
        idset_clear(&r->waiting);
        r->retry_waiting = 0;
        nwaiting = w.n;
        for (size_t k = 0; k < w.n; k++)
            if (placeable(&d, w.v[k], NULL))
                cand_push(&d, w.v[k]);
        free(w.v);
    }

    /* placement */
    ncand = d.cand.n;
    decide_place(&d, &d.cand);

    r->passes_decided++;
    log_debug("reconcile pass %llu: %s decision over %zu instances, %zu "
              "services, %zu hosts, %zu to place (%zu waiting retried), "
              "%zu ops, %lld us",
              p->serial, full ? "full" : "incremental", ninsts, nsvcs, nhosts,
              ncand, nwaiting, json_array_size(d.ops), mono_us() - t0);
    free(d.cand.v);
    free(insts);
    free(svcs);
    free(hosts);
    return d.ops;
}

