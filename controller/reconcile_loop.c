/*
 * reconcile_loop: the leader's control loop (see reconcile.h,
 * docs/reconciler.md). The mirror is reconcile_mirror.c, the decisions
 * reconcile_decide.c; what they share is reconcile_priv.h.
 *
 * Owns the mirror (only while leading) and the pass state machine:
 *
 *   load (after election, reconnect, or every RESYNC_SECS)
 *   -> re-read what events named -> liveness (at most every second)
 *   -> decide and write one batch -> re-read what the batch touched -> done
 *
 * One pass at a time; a wake-up during a pass runs another pass after it.
 * The mirror changes only from rows read back from PostgreSQL (never from
 * what we meant to write), so a skipped or refused decision cannot leave it
 * wrong; the one exception is the allocation of placements decided in the
 * current pass, held in the model until the batch returns and then released
 * in favour of the rows read back.
 */
#define LOG_MODULE "reconcile"
#include "reconcile.h"
#include "reconcile_priv.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <jansson.h>

#include "leader.h"
#include "log.h"
#include "mem.h"
#include "monotime.h"
#include "store.h"
#include "strmap.h"

#define TICK_MS 1000
#define LIVENESS_MS 1000
#define RESYNC_SECS 300
/* How long a controller that stopped leading keeps its mirror in step. */
#define MIRROR_KEEP_SECS 120
/* Instances per page of a full load (--load-page): each page is one query
 * and one turn of the loop, so a load of 100,000 never holds it for long. */
#define REC_LOAD_PAGE 5000

static void pass_continue(struct reconciler *r);
static void pass_end(struct reconciler *r);

/* ---- fetch lists ---------------------------------------------------------- */

static void
fl_add(struct fetchlist *f, const char *id)
{
    if (f->n == f->cap) {
        f->cap = f->cap ? f->cap * 2 : 16;
        f->ids = xrealloc(f->ids, f->cap * sizeof(*f->ids));
    }
    f->ids[f->n++] = xstrdup(id);
}

static void
fl_clear(struct fetchlist *f)
{
    for (size_t i = 0; i < f->n; i++)
        free(f->ids[i]);
    free(f->ids);
    free(f->after);
    memset(f, 0, sizeof(*f));
}

/* Moves an id set into a fetch list. */
static void
fl_take(struct fetchlist *f, struct strmap *m)
{
    for (size_t i = 0; i < m->cap; i++)
        if (m->keys[i])
            fl_add(f, m->keys[i]);
    idset_clear(m);
}

/* A PostgreSQL text[] literal with every element quoted. */
static char *
array_literal(char **ids, size_t n)
{
    struct evbuffer *b = evbuffer_new();
    size_t len;
    char *out;

    if (b == NULL)
        fatalx("out of memory");
    evbuffer_add(b, "{", 1);
    for (size_t i = 0; i < n; i++) {
        if (i)
            evbuffer_add(b, ",", 1);
        evbuffer_add(b, "\"", 1);
        for (const char *s = ids[i]; *s; s++) {
            if (*s == '"' || *s == '\\')
                evbuffer_add(b, "\\", 1);
            evbuffer_add(b, s, 1);
        }
        evbuffer_add(b, "\"", 1);
    }
    evbuffer_add(b, "}", 1);
    len = evbuffer_get_length(b);
    out = xmalloc(len + 1);
    evbuffer_remove(b, out, len);
    out[len] = '\0';
    evbuffer_free(b);
    return out;
}

/* ---- queries ------------------------------------------------------------ */

static void
maybe_free(struct reconciler *r)
{
    if (!r->closing || r->inflight > 0)
        return;
    idset_clear(&r->dirty[K_HOST]);
    idset_clear(&r->dirty[K_SVC]);
    idset_clear(&r->dirty[K_INST]);
    strmap_fini(&r->dirty[K_HOST]);
    strmap_fini(&r->dirty[K_SVC]);
    strmap_fini(&r->dirty[K_INST]);
    mirror_clear_x(r, 0);
    for (int k = 0; k < K__COUNT; k++)
        strmap_fini(&r->dec[k]);
    strmap_fini(&r->waiting);
    strmap_fini(&r->timed);
    free(r->actor);
    free(r);
}

/* Whether a query's answer still belongs to the running pass. */
static int
ctx_done(struct qctx *q)
{
    struct reconciler *r = q->r;
    int stale;

    r->inflight--;
    stale = r->closing || q->term != r->term || r->p == NULL ||
            r->p->term != q->term;
    return stale;
}

static void
qctx_free(struct qctx *q)
{
    if (q == NULL)
        return;
    for (size_t i = 0; i < q->n; i++)
        free(q->ids[i]);
    free(q->ids);
    free(q);
}

static struct qctx *
qctx_new(struct reconciler *r, enum kind kind)
{
    struct qctx *q = xcalloc(1, sizeof(*q));

    q->r = r;
    q->term = r->term;
    q->kind = kind;
    r->inflight++;
    return q;
}

/* A reply of a pass that is over (the term changed, or the reconciler is
 * closing): frees q, and the reconciler once its last reply is in. */
static int
reply_stale(struct qctx *q)
{
    struct reconciler *r = q->r;

    if (!ctx_done(q))
        return 0;
    qctx_free(q);
    maybe_free(r);
    return 1;
}

/* A write refused because another controller holds the lease now: the pass
 * ends and the leader steps down. */
static int
pass_fenced(struct reconciler *r, const struct db_error *err)
{
    if (strcmp(err->sqlstate, "CLEPC") != 0)
        return 0;
    pass_end(r);
    leader_fenced(r->leader, err->message);
    return 1;
}

/* Each kind's re-read and the column of its rows' id. */
static const struct {
    enum store_stmt stmt;
    int id_col;
} fetch_of[K__COUNT] = {
    [K_HOST] = {ST_REC_HOSTS, REC_HOSTS_ID},
    [K_SVC] = {ST_REC_SERVICES, REC_SERVICES_ID},
    [K_INST] = {ST_REC_INSTANCES, REC_INSTANCES_ID},
};

static void
on_fetch(const PGresult *res, const struct db_error *err, void *arg)
{
    struct qctx *q = arg;
    struct reconciler *r = q->r;
    struct strmap seen;
    int n;

    if (reply_stale(q))
        return;
    if (err) {
        log_warnx("reconciler read failed: %s", err->message);
        /* What the mirror misses is unknown now: start over. */
        r->need_load = 1;
        qctx_free(q);
        pass_end(r);
        return;
    }
    n = PQntuples(res);
    strmap_init(&seen);
    for (int row = 0; row < n; row++) {
        switch (q->kind) {
        case K_HOST: host_apply(r, res, row); break;
        case K_SVC: svc_apply(r, res, row); break;
        default: inst_apply(r, res, row); break;
        }
        if (q->ids)
            strmap_put(&seen, PQgetvalue(res, row, fetch_of[q->kind].id_col),
                       (void *)1);
    }
    /* Asked for and not there: deleted. */
    for (size_t k = 0; q->ids && k < q->n; k++) {
        if (strmap_get(&seen, q->ids[k]))
            continue;
        switch (q->kind) {
        case K_HOST: host_remove(r, q->ids[k]); break;
        case K_SVC: svc_remove(r, q->ids[k]); break;
        default: inst_remove(r, q->ids[k]); break;
        }
    }
    strmap_fini(&seen);
    /* A full page: the load goes on after its last id, in a later turn. */
    if (q->page && n == r->load_page && r->p != NULL) {
        struct fetchlist *f = &r->p->fetch[K_INST];

        f->all = 1;
        free(f->after);
        f->after = xstrdup(PQgetvalue(res, n - 1, REC_INSTANCES_ID));
    }
    qctx_free(q);
    pass_continue(r);
}

/* Issues the next pending fetch of the pass; 0 when none was left. */
static int
fetch_next(struct reconciler *r)
{
    struct pass *p = r->p;
    struct qctx *q;
    const char *vals[2];
    char *lit = NULL, page[16];
    enum store_stmt st;

    for (int k = 0; k < K__COUNT; k++) {
        struct fetchlist *f = &p->fetch[k];

        if (!f->all && f->n == 0)
            continue;
        q = qctx_new(r, (enum kind)k);
        st = fetch_of[k].stmt;
        vals[0] = NULL;
        vals[1] = NULL;
        if (!f->all) {
            q->ids = f->ids;
            q->n = f->n;
            lit = array_literal(f->ids, f->n);
            vals[0] = lit;
        } else if (k == K_INST) {
            /* Ids listed as dirty meanwhile are still re-read after. */
            q->page = 1;
            st = ST_REC_INSTANCES_PAGE;
            snprintf(page, sizeof(page), "%d", r->load_page);
            vals[0] = f->after ? f->after : "";
            vals[1] = page;
        }
        f->ids = NULL;
        f->n = f->cap = 0;
        f->all = 0;
        db_query(r->db, store_stmt(st), vals, on_fetch, q);
        free(f->after);
        f->after = NULL;
        free(lit);
        return 1;
    }
    return 0;
}

/* Rows (kind, id) of a write: re-read them. */
static void
take_touched(struct pass *p, const PGresult *res)
{
    int n = PQntuples(res);

    for (int row = 0; row < n; row++) {
        const char *kind = PQgetvalue(res, row, REC_TOUCHED_KIND);
        const char *id = PQgetvalue(res, row, REC_TOUCHED_ID);

        if (strcmp(kind, "host") == 0)
            fl_add(&p->fetch[K_HOST], id);
        else if (strcmp(kind, "service") == 0)
            fl_add(&p->fetch[K_SVC], id);
        else
            fl_add(&p->fetch[K_INST], id);
    }
}

static void
release_tentative(struct reconciler *r, struct pass *p)
{
    for (size_t k = 0; k < p->ntent; k++) {
        struct tentative *t = &p->tent[k];
        struct sched_service svc = {.name = t->svc, .id = 0};

        if (r->model)
            (void)sched_release(r->model, t->sid, &t->res,
                                t->svc ? &svc : NULL);
        free(t->svc);
    }
    free(p->tent);
    p->tent = NULL;
    p->ntent = p->captent = 0;
}

static void
on_write(const PGresult *res, const struct db_error *err, void *arg)
{
    struct qctx *q = arg;
    struct reconciler *r = q->r;

    if (reply_stale(q))
        return;
    qctx_free(q);
    release_tentative(r, r->p);
    if (err) {
        if (!pass_fenced(r, err)) {
            log_warnx("reconciler write failed: %s", err->message);
            pass_end(r);
        }
        return;
    }
    take_touched(r->p, res);
    pass_continue(r);
}


/* ---- the pass ------------------------------------------------------------ */

static void
pass_free(struct reconciler *r, struct pass *p)
{
    if (p == NULL)
        return;
    release_tentative(r, p);
    for (int k = 0; k < K__COUNT; k++)
        fl_clear(&p->fetch[k]);
    free(p);
}

static void
pass_end(struct reconciler *r)
{
    pass_free(r, r->p);
    r->p = NULL;
    if (r->again && !r->closing) {
        r->again = 0;
        event_active(r->kick, EV_TIMEOUT, 0);
    }
}

static void
on_liveness(const PGresult *res, const struct db_error *err, void *arg)
{
    struct qctx *q = arg;
    struct reconciler *r = q->r;

    if (reply_stale(q))
        return;
    qctx_free(q);
    if (err) {
        if (pass_fenced(r, err))
            return;
        log_warnx("host liveness check failed: %s", err->message);
        r->p->phase = PH_DECIDE;
        pass_continue(r);
        return;
    }
    take_touched(r->p, res);
    pass_continue(r);
}

static void
start_liveness(struct reconciler *r)
{
    char epoch[24], since[24];
    const char *vals[3];
    struct qctx *q = qctx_new(r, K_HOST);

    snprintf(epoch, sizeof(epoch), "%lld", r->epoch);
    snprintf(since, sizeof(since), "%lld", r->term_start_ms);
    vals[0] = epoch;
    vals[1] = r->actor;
    vals[2] = since;
    r->last_liveness_ms = mono_ms();
    db_query(r->db, store_stmt(ST_REC_LIVENESS), vals, on_liveness, q);
}

static void
start_write(struct reconciler *r, json_t *ops)
{
    char epoch[24];
    const char *vals[3];
    char *text = json_dumps(ops, JSON_COMPACT);
    struct qctx *q;

    if (text == NULL)
        fatalx("cannot encode the reconciler batch");
    snprintf(epoch, sizeof(epoch), "%lld", r->epoch);
    vals[0] = epoch;
    vals[1] = r->actor;
    vals[2] = text;
    log_debug("batch of %zu decisions", json_array_size(ops));
    q = qctx_new(r, K_INST);
    db_query(r->db, store_stmt(ST_REC_APPLY), vals, on_write, q);
    free(text);
}

/*
 * Drives the pass: each step either issues one query (and returns; its
 * callback calls back here) or moves to the next phase.
 */
static void
pass_continue(struct reconciler *r)
{
    struct pass *p = r->p;
    json_t *ops;

    for (;;) {
        if (p == NULL || p->term != r->term || r->closing)
            return;
        if (!leader_acting(r->leader)) {
            pass_end(r);
            return;
        }
        if (fetch_next(r))
            return;
        switch (p->phase) {
        case PH_LOAD:
            /* Any full reads were issued and applied by now. */
            r->loaded = 1;
            r->need_load = 0;
            p->phase = PH_DIRTY;
            fl_take(&p->fetch[K_HOST], &r->dirty[K_HOST]);
            fl_take(&p->fetch[K_SVC], &r->dirty[K_SVC]);
            fl_take(&p->fetch[K_INST], &r->dirty[K_INST]);
            break;
        case PH_DIRTY:
            p->phase = PH_LIVENESS;
            if (mono_ms() - r->last_liveness_ms >= LIVENESS_MS) {
                start_liveness(r);
                return;
            }
            break;
        case PH_LIVENESS:
            p->phase = PH_DECIDE;
            ops = reconcile_decide(r, p, leader_db_now_ms(r->leader));
            if (json_array_size(ops) == 0) {
                json_decref(ops);
                p->phase = PH_DONE;
                break;
            }
            start_write(r, ops);
            json_decref(ops);
            return;
        case PH_DECIDE:
            /* the batch's objects were re-read */
            p->phase = PH_DONE;
            break;
        case PH_DONE:
            pass_end(r);
            return;
        }
    }
}

static void
pass_start(struct reconciler *r)
{
    struct pass *p;

    if (r->p || r->closing || !leader_acting(r->leader))
        return;
    p = xcalloc(1, sizeof(*p));
    p->term = r->term;
    p->serial = ++r->serial;
    r->p = p;
    if (r->need_load || !r->loaded ||
        mono_ms() - r->last_load_ms >= RESYNC_SECS * 1000LL) {
        /* Start from nothing: the reads below rebuild mirror and model. */
        mirror_clear(r);
        r->model = sched_cluster_new();
        r->need_load = 1;
        r->last_load_ms = mono_ms();
        idset_clear(&r->dirty[K_HOST]);
        idset_clear(&r->dirty[K_SVC]);
        idset_clear(&r->dirty[K_INST]);
        p->fetch[K_HOST].all = p->fetch[K_SVC].all = p->fetch[K_INST].all = 1;
        p->phase = PH_LOAD;
    } else {
        p->phase = PH_LOAD; /* nothing to load: goes on to the dirty ids */
    }
    pass_continue(r);
}

static void
on_kick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pass_start(arg);
}

static void
kick(struct reconciler *r)
{
    if (r->closing || !leader_acting(r->leader))
        return;
    if (r->p) {
        r->again = 1;
        return;
    }
    event_active(r->kick, EV_TIMEOUT, 0);
}

static void maybe_drop_mirror(struct reconciler *r);

static void
on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    maybe_drop_mirror(arg);
    kick(arg);
}

/* ---- leader and watch callbacks ------------------------------------------- */

static void
on_elected(void *arg, long long epoch, long long term_start_ms)
{
    struct reconciler *r = arg;

    r->term++;
    r->epoch = epoch;
    r->term_start_ms = term_start_ms;
    r->last_liveness_ms = 0;
    pass_free(r, r->p);
    r->p = NULL;
    r->lost_ms = 0;
    if (r->loaded && !r->need_load) {
        /* Leading again with a mirror that events kept in step: re-read
         * only what they named meanwhile, then decide over everything. */
        r->full_decide = 1;
        log_info("reconciling as the leader (epoch %lld) with the mirror "
                 "kept: %zu instances, %zu changed meanwhile",
                 epoch, r->insts.len, r->dirty[K_INST].len);
    } else {
        r->need_load = 1;
        log_info("reconciling as the leader (epoch %lld)", epoch);
    }
    kick(r);
}

static void
on_lost(void *arg, const char *why)
{
    struct reconciler *r = arg;

    (void)why;
    r->term++;
    pass_free(r, r->p);
    r->p = NULL;
    r->again = 0;
    /* The mirror stays, kept in step by events, for a term that may soon
     * start again (a lease lost to a slow database, not to a rival); it
     * goes after MIRROR_KEEP_SECS without leading (on_tick). */
    r->lost_ms = mono_ms();
    log_info("reconciler stopped acting");
}

/* A follower's mirror is freed once it has not led for MIRROR_KEEP_SECS. */
static void
maybe_drop_mirror(struct reconciler *r)
{
    if (leader_acting(r->leader) || r->lost_ms == 0 ||
        mono_ms() - r->lost_ms < MIRROR_KEEP_SECS * 1000LL)
        return;
    r->lost_ms = 0;
    if (!r->loaded && r->insts.len == 0 && r->hosts.len == 0)
        return;
    mirror_clear(r);
    idset_clear(&r->dirty[K_HOST]);
    idset_clear(&r->dirty[K_SVC]);
    idset_clear(&r->dirty[K_INST]);
    log_info("dropped the mirror: not the leader for %d s", MIRROR_KEEP_SECS);
}

/* Events keep the mirror in step while leading, and after a term while
 * the mirror is kept (on_lost). */
static int
mirror_in_step(const struct reconciler *r)
{
    return leader_acting(r->leader) || (r->loaded && r->lost_ms != 0);
}

static void
obs_event(void *arg, long long id, const char *type, const char *object,
          const char *object_id)
{
    struct reconciler *r = arg;

    (void)id;
    if (type != NULL && strcmp(type, "controller.released") == 0 &&
        !r->closing) {
        leader_poke(r->leader); /* the leader gave up: try now */
        return;
    }
    if (object_id == NULL || r->closing || !mirror_in_step(r))
        return;
    if (strcmp(object, "instance") == 0)
        idset_add(&r->dirty[K_INST], object_id);
    else if (strcmp(object, "service") == 0)
        idset_add(&r->dirty[K_SVC], object_id);
    else if (strcmp(object, "host") == 0)
        idset_add(&r->dirty[K_HOST], object_id);
}

/*
 * An event read with its instance's row (store.h EVENT_HUB_REC): between
 * passes, the row goes into the mirror at once, as the next pass's re-read
 * of the id would have put it (read after the event's commit, under the
 * same version guard), and the pass that the batch kicks decides with no
 * read first. During a pass, or before the mirror is loaded, the id is
 * re-read as usual.
 */
static void
obs_event_row(void *arg, long long id, const char *type, const char *object,
              const char *object_id, const PGresult *res, int row)
{
    struct reconciler *r = arg;

    if (type != NULL && strcmp(type, "controller.released") == 0) {
        obs_event(arg, id, type, object, object_id);
        return;
    }
    if (object_id == NULL || r->closing || !mirror_in_step(r))
        return;
    if (strcmp(object, "instance") != 0 || r->p != NULL || !r->loaded ||
        r->need_load || PQnfields(res) < EVENT_HUB_REC + REC_INSTANCES__NCOLS ||
        strmap_get(&r->dirty[K_INST], object_id) != NULL) {
        obs_event(arg, id, type, object, object_id);
        return;
    }
    if (PQgetisnull(res, row, EVENT_HUB_INST)) {
        inst_remove(r, object_id); /* gone when the event was read */
        return;
    }
    if (PQgetisnull(res, row, EVENT_HUB_REC + REC_INSTANCES_ID))
        return; /* a later event of the instance in this read carries it */
    if (strcmp(PQgetvalue(res, row, EVENT_HUB_REC + REC_INSTANCES_ID),
               object_id) != 0) {
        obs_event(arg, id, type, object, object_id);
        return;
    }
    inst_apply_at(r, res, row, EVENT_HUB_REC);
}

static void
obs_batch(void *arg)
{
    kick(arg);
}

static void
obs_reconnect(void *arg)
{
    struct reconciler *r = arg;

    r->need_load = 1;
    kick(r);
}

/* ---- lifecycle -------------------------------------------------------------- */

struct reconciler *
reconciler_new(struct event_base *base, struct db_pool *db, struct watch *w,
               const struct reconciler_opts *opts)
{
    struct reconciler *r = xcalloc(1, sizeof(*r));
    struct leader_cbs cbs = {
        .elected = on_elected, .lost = on_lost, .arg = r};
    struct watch_observer obs = {
        .on_event = obs_event,
        .on_event_row = obs_event_row,
        .on_batch = obs_batch,
        .on_reconnect = obs_reconnect,
        .arg = r,
    };
    struct timeval tv = {.tv_sec = TICK_MS / 1000,
                         .tv_usec = (TICK_MS % 1000) * 1000};

    r->base = base;
    r->db = db;
    r->load_page = opts->load_page > 0 ? opts->load_page : REC_LOAD_PAGE;
    strmap_init(&r->hosts);
    strmap_init(&r->svcs);
    strmap_init(&r->insts);
    for (int k = 0; k < K__COUNT; k++)
        strmap_init(&r->dirty[k]);
    r->tick = event_new(base, -1, EV_PERSIST, on_tick, r);
    r->kick = event_new(base, -1, 0, on_kick, r);
    if (r->tick == NULL || r->kick == NULL || event_add(r->tick, &tv) < 0)
        fatalx("cannot create the reconciler timers");
    r->leader = leader_new(base, opts->lease_db ? opts->lease_db : db,
                           opts->identity,
                           opts->lease_secs ? opts->lease_secs
                                            : LEADER_LEASE_DEFAULT,
                           &cbs);
    r->actor = xasprintf("reconciler/%s", leader_identity(r->leader));
    watch_observe(w, &obs);
    return r;
}

void
reconciler_free(struct reconciler *r)
{
    if (r == NULL)
        return;
    r->closing = 1;
    event_free(r->tick);
    event_free(r->kick);
    r->tick = r->kick = NULL;
    leader_free(r->leader);
    r->leader = NULL;
    pass_free(r, r->p);
    r->p = NULL;
    maybe_free(r);
}

void
reconciler_release(struct reconciler *r, void (*done)(void *), void *arg)
{
    leader_release(r->leader, done, arg);
}

int
reconciler_leading(const struct reconciler *r)
{
    return r->leader && leader_acting(r->leader);
}
