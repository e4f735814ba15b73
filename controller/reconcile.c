/*
 * reconcile: the leader's control loop (see reconcile.h, docs/reconciler.md).
 *
 * Owns a mirror of hosts, services and instances (only while leading), the
 * scheduler's cluster model built from it, and the pass state machine:
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
#include "../scheduler/sched.h"
#include "store.h"
#include "strmap.h"

#define TICK_MS 1000
#define LIVENESS_MS 1000
#define RESYNC_SECS 300
#define FULL_DECIDE_SECS 30 /* decide for everything: the safety net */
#define LOST_KEEP_MS 60000 /* a lost, deleted instance stays visible */
#define MAX_OPS 1000 /* decisions per batch; more follow next pass */
#define ON_FAILURE "on-failure"

/* ---- the mirror ------------------------------------------------------- */

enum ist {
    IS_PENDING = 0,
    IS_SCHEDULED,
    IS_STARTING,
    IS_RUNNING,
    IS_STOPPING,
    IS_EXITED,
    IS_FAILED,
    IS_LOST,
};
static const char *const ist_names[] = {"pending", "scheduled", "starting",
                                        "running", "stopping", "exited",
                                        "failed",  "lost",      NULL};

enum idesired { ID_RUNNING = 0, ID_STOPPED, ID_DELETED };

struct rhost {
    char *id;
    char *name;
    char *state;
    char *labels; /* "k=v\nk=v" */
    char *hypervisor;
    struct sched_resources cap;
    long long version;
    int registered; /* session_epoch > 0: an agent has said hello */
    uint64_t sid;   /* the model's id */
    struct rinst *ihead; /* instances whose host_id is this host */
};

struct rinst;

/* The instances of one service id (the service row may be missing). */
struct sgrp {
    char *svc_id;
    struct rinst *head;
    size_t n;
};

struct rsvc {
    char *id;
    char *name;
    char *restart;
    int deleting;
    int replicas;
    int max_unavailable, max_surge;
    long long generation;
    long long version;
    /* rollout progress already reported: generation, updated, old */
    long long ro_gen;
    int ro_updated, ro_old;
};

struct rinst {
    char *id;
    char *name;
    char *svc_id;  /* NULL: one-off */
    char *host_id; /* NULL: unplaced */
    char *restart;
    char *constraints; /* selector text, "" for none */
    char *pending_reason;
    enum ist state;
    enum idesired desired;
    enum sched_strategy strategy;
    int ordinal;
    int exit_code; /* -1: none */
    int restart_count;
    uint32_t max_per_host;
    long long generation;
    long long next_restart_ms; /* 0: none */
    long long finished_ms;
    long long created_ms;
    long long version;
    struct sched_resources res;
    /* model */
    int counted;
    uint64_t counted_sid;
    /* indexes: the host's and the service's lists */
    struct rhost *hlink;
    struct rinst *hnext, *hprev;
    struct sgrp *grp;
    struct rinst *snext, *sprev;
    /* decisions */
    unsigned long long planned_pass;
    unsigned long long cand_pass; /* a placement candidate of this pass */
    long long noted_version; /* "not restarted" reported at this version */
};

/* A placement decided this pass, held in the model until the batch ends. */
struct tentative {
    uint64_t sid;
    struct sched_resources res;
    char *svc;
};

enum phase { PH_LOAD = 0, PH_DIRTY, PH_LIVENESS, PH_DECIDE, PH_DONE };
enum kind { K_HOST = 0, K_SVC, K_INST, K__COUNT };

struct fetchlist {
    char **ids;
    size_t n, cap;
    int all;
};

struct pass {
    enum phase phase;
    unsigned long long term;
    unsigned long long serial;
    struct fetchlist fetch[K__COUNT];
    struct tentative *tent;
    size_t ntent, captent;
};

struct reconciler {
    struct event_base *base;
    struct db_pool *db;
    struct leader *leader;
    struct event *tick;
    struct event *kick;
    char *actor;
    unsigned long long term;
    long long epoch;
    long long term_start_ms;
    /* mirror: id -> object (the object owns its key) */
    struct strmap hosts, svcs, insts;
    struct rhost **by_sid;
    size_t nsid, capsid;
    struct sched_cluster *model;
    int loaded;
    int need_load;
    long long last_load_ms;
    long long last_liveness_ms;
    /* ids named by events since the last re-read: id -> owned id */
    struct strmap dirty[K__COUNT];
    /* service id -> struct sgrp */
    struct strmap sgrps;
    /* to decide at the next pass (id sets): objects re-read since the
     * last decision, services a pass made decisions for, leftovers of a
     * full batch */
    struct strmap dec[K__COUNT];
    /* pending instances that did not fit: retried when capacity appears */
    struct strmap waiting;
    int retry_waiting;
    /* instances with a deadline: restart back-off, lost-and-deleted keep */
    struct strmap timed;
    int full_decide; /* the next decision covers everything */
    long long last_full_ms;
    /* figures (debug log) */
    unsigned long long passes_decided, full_passes;
    struct pass *p;
    unsigned long long serial;
    int again;
    int inflight;
    int closing;
};

struct qctx {
    struct reconciler *r;
    unsigned long long term;
    enum kind kind;
    char **ids; /* the ids asked for (NULL: all) */
    size_t n;
};

static void pass_continue(struct reconciler *r);
static void pass_end(struct reconciler *r);

static const char *
val(const PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
}

static char *
dup_or_null(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

static long long
ll(const char *s)
{
    return s ? strtoll(s, NULL, 10) : 0;
}

static int
streq(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return strcmp(a, b) == 0;
}

static void
set_str(char **dst, const char *src)
{
    if (streq(*dst, src))
        return;
    free(*dst);
    *dst = dup_or_null(src);
}

/* ---- id sets and fetch lists ------------------------------------------ */

static void
idset_add(struct strmap *m, const char *id)
{
    char *k;

    if (strmap_get(m, id) != NULL)
        return;
    k = xstrdup(id);
    strmap_put(m, k, k);
}

static void
idset_clear(struct strmap *m)
{
    for (size_t i = 0; i < m->cap; i++)
        if (m->keys[i])
            free(m->vals[i]);
    strmap_fini(m);
    strmap_init(m);
}

static void
idset_del(struct strmap *m, const char *id)
{
    free(strmap_del(m, id));
}

/* Something to decide for at the next pass (unless it decides for all). */
static void
mark(struct reconciler *r, enum kind k, const char *id)
{
    if (r->full_decide || id == NULL)
        return;
    idset_add(&r->dec[k], id);
}

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

/* ---- model ------------------------------------------------------------ */

/* A host no agent ever registered (session_epoch 0, e.g. declared by an
 * operator) has nobody to run instances: the model counts it as down. */
static enum sched_host_state
host_sched_state(const char *s, int registered)
{
    if (!registered)
        return SCHED_HOST_DOWN;
    if (strcmp(s, "ready") == 0)
        return SCHED_HOST_READY;
    if (strcmp(s, "draining") == 0)
        return SCHED_HOST_DRAINING;
    if (strcmp(s, "down") == 0)
        return SCHED_HOST_DOWN;
    return SCHED_HOST_CORDONED; /* cordoned, drained */
}

/* Splits "k=v\nk=v" into a vector (pointers into buf, which is modified). */
static size_t
split_labels(char *buf, const char **out, size_t max)
{
    size_t n = 0;
    char *save = NULL;

    for (char *t = strtok_r(buf, "\n", &save); t && n < max;
         t = strtok_r(NULL, "\n", &save))
        out[n++] = t;
    return n;
}

#define MAX_LABELS 64

static void
model_set_labels(struct reconciler *r, struct rhost *h)
{
    char *buf = xstrdup(h->labels);
    const char *lv[MAX_LABELS];
    size_t n = split_labels(buf, lv, MAX_LABELS);

    if (sched_host_set_labels(r->model, h->sid, lv, n) < 0) {
        log_warnx("host %s: labels not usable for placement: %s", h->name,
                  sched_error(r->model));
        if (sched_host_set_labels(r->model, h->sid, NULL, 0) < 0)
            log_warnx("host %s: %s", h->name, sched_error(r->model));
    }
    free(buf);
}

static void
model_add_host(struct reconciler *r, struct rhost *h)
{
    struct sched_host_spec spec;
    char *buf = xstrdup(h->labels);
    const char *lv[MAX_LABELS];

    memset(&spec, 0, sizeof(spec));
    spec.id = h->sid;
    spec.name = h->name;
    spec.capacity = h->cap;
    spec.labels = lv;
    spec.nlabels = split_labels(buf, lv, MAX_LABELS);
    spec.state = host_sched_state(h->state, h->registered);
    spec.hypervisor = h->hypervisor;
    if (sched_host_add(r->model, &spec) < 0) {
        log_warnx("host %s: labels not usable for placement: %s", h->name,
                  sched_error(r->model));
        spec.nlabels = 0;
        if (sched_host_add(r->model, &spec) < 0)
            log_warnx("host %s: not in the placement model: %s", h->name,
                      sched_error(r->model));
    }
    free(buf);
}

static int
inst_finished(const struct rinst *i)
{
    return i->state == IS_EXITED || i->state == IS_FAILED ||
           i->state == IS_LOST;
}

static void
inst_uncount(struct reconciler *r, struct rinst *i)
{
    struct sched_service svc = {.name = i->svc_id, .id = 0};

    if (!i->counted)
        return;
    i->counted = 0;
    if (r->model == NULL)
        return;
    /* Fails only if the host left the model, taking the allocation. */
    (void)sched_release(r->model, i->counted_sid, &i->res,
                        i->svc_id ? &svc : NULL);
}

static void
inst_count(struct reconciler *r, struct rinst *i)
{
    struct sched_service svc = {.name = i->svc_id, .id = 0};
    struct rhost *h;

    if (i->counted || i->host_id == NULL || inst_finished(i) ||
        r->model == NULL)
        return;
    h = strmap_get(&r->hosts, i->host_id);
    if (h == NULL)
        return;
    if (sched_alloc(r->model, h->sid, &i->res, i->svc_id ? &svc : NULL) < 0) {
        log_warnx("instance %s: not counted on host %s: %s", i->name, h->name,
                  sched_error(r->model));
        return;
    }
    i->counted = 1;
    i->counted_sid = h->sid;
}

/* ---- indexes: instances by host and by service ------------------------- */

static void
host_link(struct reconciler *r, struct rinst *i)
{
    struct rhost *h;

    if (i->hlink || i->host_id == NULL)
        return;
    h = strmap_get(&r->hosts, i->host_id);
    if (h == NULL)
        return; /* a host we do not know (yet): the next load links it */
    i->hlink = h;
    i->hprev = NULL;
    i->hnext = h->ihead;
    if (h->ihead)
        h->ihead->hprev = i;
    h->ihead = i;
}

static void
host_unlink(struct rinst *i)
{
    struct rhost *h = i->hlink;

    if (h == NULL)
        return;
    if (i->hprev)
        i->hprev->hnext = i->hnext;
    else
        h->ihead = i->hnext;
    if (i->hnext)
        i->hnext->hprev = i->hprev;
    i->hlink = NULL;
    i->hnext = i->hprev = NULL;
}

static void
grp_link(struct reconciler *r, struct rinst *i)
{
    struct sgrp *g;

    if (i->svc_id == NULL || i->grp)
        return;
    g = strmap_get(&r->sgrps, i->svc_id);
    if (g == NULL) {
        g = xcalloc(1, sizeof(*g));
        g->svc_id = xstrdup(i->svc_id);
        strmap_put(&r->sgrps, g->svc_id, g);
    }
    i->grp = g;
    i->sprev = NULL;
    i->snext = g->head;
    if (g->head)
        g->head->sprev = i;
    g->head = i;
    g->n++;
}

static void
grp_unlink(struct reconciler *r, struct rinst *i)
{
    struct sgrp *g = i->grp;

    if (g == NULL)
        return;
    if (i->sprev)
        i->sprev->snext = i->snext;
    else
        g->head = i->snext;
    if (i->snext)
        i->snext->sprev = i->sprev;
    i->grp = NULL;
    i->snext = i->sprev = NULL;
    if (--g->n == 0) {
        strmap_del(&r->sgrps, g->svc_id);
        free(g->svc_id);
        free(g);
    }
}

/* The services with instances on a host must decide again (its state
 * moved: doomed or not). */
static void
mark_host_services(struct reconciler *r, struct rhost *h)
{
    for (struct rinst *i = h->ihead; i; i = i->hnext)
        if (i->svc_id)
            mark(r, K_SVC, i->svc_id);
}

/* ---- mirror upkeep ------------------------------------------------------ */

static void
host_free(struct rhost *h)
{
    if (h == NULL)
        return;
    free(h->id);
    free(h->name);
    free(h->state);
    free(h->labels);
    free(h->hypervisor);
    free(h);
}

static void
svc_free(struct rsvc *s)
{
    if (s == NULL)
        return;
    free(s->id);
    free(s->name);
    free(s->restart);
    free(s);
}

static void
inst_free(struct rinst *i)
{
    if (i == NULL)
        return;
    free(i->id);
    free(i->name);
    free(i->svc_id);
    free(i->host_id);
    free(i->restart);
    free(i->constraints);
    free(i->pending_reason);
    free(i);
}

/* Frees the mirror and the model; reinit: ready for a new load. */
static void
mirror_clear_x(struct reconciler *r, int reinit)
{
    for (size_t k = 0; k < r->hosts.cap; k++)
        if (r->hosts.keys[k])
            host_free(r->hosts.vals[k]);
    for (size_t k = 0; k < r->svcs.cap; k++)
        if (r->svcs.keys[k])
            svc_free(r->svcs.vals[k]);
    for (size_t k = 0; k < r->insts.cap; k++)
        if (r->insts.keys[k])
            inst_free(r->insts.vals[k]);
    for (size_t k = 0; k < r->sgrps.cap; k++) {
        if (r->sgrps.keys[k]) {
            struct sgrp *g = r->sgrps.vals[k];
            free(g->svc_id);
            free(g);
        }
    }
    strmap_fini(&r->sgrps);
    for (int k = 0; k < K__COUNT; k++)
        idset_clear(&r->dec[k]);
    idset_clear(&r->waiting);
    idset_clear(&r->timed);
    r->retry_waiting = 0;
    r->full_decide = 1;
    strmap_fini(&r->hosts);
    strmap_fini(&r->svcs);
    strmap_fini(&r->insts);
    if (reinit) {
        strmap_init(&r->sgrps);
        strmap_init(&r->hosts);
        strmap_init(&r->svcs);
        strmap_init(&r->insts);
    }
    free(r->by_sid);
    r->by_sid = NULL;
    r->nsid = r->capsid = 0;
    sched_cluster_free(r->model);
    r->model = NULL;
    r->loaded = 0;
}

static void
mirror_clear(struct reconciler *r)
{
    mirror_clear_x(r, 1);
}

/* ST_REC_HOSTS: id, name, state, version, vcpus, memory, disk, hypervisor,
 * labels, session_epoch */
static void
host_apply(struct reconciler *r, const PGresult *res, int row)
{
    const char *id = val(res, row, 0);
    struct rhost *h = strmap_get(&r->hosts, id);
    long long version = ll(val(res, row, 3));
    struct sched_resources cap = {
        .vcpus = (uint32_t)ll(val(res, row, 4)),
        .memory_mib = (uint64_t)ll(val(res, row, 5)),
        .disk_gib = (uint64_t)ll(val(res, row, 6)),
    };
    const char *state = val(res, row, 2), *labels = val(res, row, 8);
    int registered = ll(val(res, row, 9)) > 0;

    if (h && h->version > version)
        return;
    if (h == NULL) {
        h = xcalloc(1, sizeof(*h));
        h->id = xstrdup(id);
        h->name = xstrdup(val(res, row, 1));
        h->state = xstrdup(state);
        h->labels = xstrdup(labels ? labels : "");
        h->hypervisor = xstrdup(val(res, row, 7));
        h->cap = cap;
        h->version = version;
        h->registered = registered;
        if (r->nsid == r->capsid) {
            r->capsid = r->capsid ? r->capsid * 2 : 64;
            r->by_sid = xrealloc(r->by_sid, r->capsid * sizeof(*r->by_sid));
        }
        r->by_sid[r->nsid++] = h;
        h->sid = r->nsid;
        strmap_put(&r->hosts, h->id, h);
        model_add_host(r, h);
        mark(r, K_HOST, h->id);
        r->retry_waiting = 1; /* room may have appeared */
        return;
    }
    h->version = version;
    mark(r, K_HOST, h->id);
    if (strcmp(h->state, state) != 0 || h->registered != registered) {
        /* doomed or not, ready or not: its services and the waiting
         * instances decide again */
        mark_host_services(r, h);
        r->retry_waiting = 1;
        set_str(&h->state, state);
        h->registered = registered;
        if (sched_host_set_state(r->model, h->sid,
                                 host_sched_state(state, registered)) < 0)
            log_warnx("host %s: %s", h->name, sched_error(r->model));
    }
    if (!streq(h->labels, labels ? labels : "")) {
        set_str(&h->labels, labels ? labels : "");
        model_set_labels(r, h);
        r->retry_waiting = 1;
    }
    if (memcmp(&h->cap, &cap, sizeof(cap)) != 0) {
        h->cap = cap;
        r->retry_waiting = 1;
        if (sched_host_set_capacity(r->model, h->sid, &cap) < 0)
            log_warnx("host %s: %s", h->name, sched_error(r->model));
    }
}

static void
host_remove(struct reconciler *r, const char *id)
{
    struct rhost *h = strmap_del(&r->hosts, id);

    if (h == NULL)
        return;
    mark_host_services(r, h);
    while (h->ihead)
        host_unlink(h->ihead);
    r->retry_waiting = 1;
    (void)sched_host_remove(r->model, h->sid);
    r->by_sid[h->sid - 1] = NULL;
    host_free(h);
}

/* ST_REC_SERVICES: id, name, state, version, replicas, generation,
 * max_unavailable, max_surge, restart */
static void
svc_apply(struct reconciler *r, const PGresult *res, int row)
{
    const char *id = val(res, row, 0);
    struct rsvc *s = strmap_get(&r->svcs, id);
    long long version = ll(val(res, row, 3));

    if (s && s->version > version)
        return;
    if (s == NULL) {
        s = xcalloc(1, sizeof(*s));
        s->id = xstrdup(id);
        strmap_put(&r->svcs, s->id, s);
    }
    mark(r, K_SVC, s->id);
    set_str(&s->name, val(res, row, 1));
    s->deleting = streq(val(res, row, 2), "deleting");
    s->version = version;
    s->replicas = (int)ll(val(res, row, 4));
    s->generation = ll(val(res, row, 5));
    s->max_unavailable = (int)ll(val(res, row, 6));
    s->max_surge = (int)ll(val(res, row, 7));
    set_str(&s->restart, val(res, row, 8));
}

static void
svc_remove(struct reconciler *r, const char *id)
{
    svc_free(strmap_del(&r->svcs, id));
    idset_del(&r->dec[K_SVC], id);
}

static enum ist
ist_parse(const char *s)
{
    for (int k = 0; ist_names[k]; k++)
        if (streq(s, ist_names[k]))
            return (enum ist)k;
    return IS_PENDING;
}

/* ST_REC_INSTANCES: id, name, service_id, ordinal, generation, state,
 * desired_state, host_id, vcpus, memory_mib, disk_gib, restart, constraints,
 * strategy, max_per_host, exit_code, restart_count, next_restart_ms,
 * finished_ms, created_ms, pending_reason, version */
static void
inst_apply_at(struct reconciler *r, const PGresult *res, int row, int c0)
{
    const char *id = val(res, row, c0 + 0), *d = val(res, row, c0 + 6);
    struct rinst *i = strmap_get(&r->insts, id);
    long long version = ll(val(res, row, c0 + 21));
    enum sched_strategy strat = SCHED_SPREAD;
    int was_counted = 0;
    uint64_t was_sid = 0;

    if (i && i->version > version)
        return;
    if (i == NULL) {
        i = xcalloc(1, sizeof(*i));
        i->id = xstrdup(id);
        i->svc_id = dup_or_null(val(res, row, c0 + 2));
        i->res.vcpus = (uint32_t)ll(val(res, row, c0 + 8));
        i->res.memory_mib = (uint64_t)ll(val(res, row, c0 + 9));
        i->res.disk_gib = (uint64_t)ll(val(res, row, c0 + 10));
        strmap_put(&r->insts, i->id, i);
        grp_link(r, i);
    } else {
        was_counted = i->counted;
        was_sid = i->counted_sid;
        inst_uncount(r, i);
        if (i->hlink)
            mark(r, K_HOST, i->hlink->id); /* drained? */
    }
    /* Re-read, changed or not: decide for it (a refused decision comes
     * back unchanged and is decided again). */
    mark(r, K_INST, i->id);
    if (i->svc_id)
        mark(r, K_SVC, i->svc_id);
    set_str(&i->name, val(res, row, c0 + 1));
    i->ordinal = (int)ll(val(res, row, c0 + 3));
    i->generation = ll(val(res, row, c0 + 4));
    i->state = ist_parse(val(res, row, c0 + 5));
    i->desired = streq(d, "deleted")   ? ID_DELETED
                 : streq(d, "stopped") ? ID_STOPPED
                                       : ID_RUNNING;
    if (!streq(i->host_id, val(res, row, c0 + 7))) {
        host_unlink(i);
        set_str(&i->host_id, val(res, row, c0 + 7));
        host_link(r, i);
    }
    set_str(&i->restart, val(res, row, c0 + 11));
    set_str(&i->constraints, val(res, row, c0 + 12) ? val(res, row, c0 + 12) : "");
    if (sched_strategy_parse(val(res, row, c0 + 13), &strat) < 0)
        strat = SCHED_SPREAD;
    i->strategy = strat;
    i->max_per_host = (uint32_t)ll(val(res, row, c0 + 14));
    i->exit_code = val(res, row, c0 + 15) ? (int)ll(val(res, row, c0 + 15)) : -1;
    i->restart_count = (int)ll(val(res, row, c0 + 16));
    i->next_restart_ms = ll(val(res, row, c0 + 17));
    i->finished_ms = ll(val(res, row, c0 + 18));
    i->created_ms = ll(val(res, row, c0 + 19));
    set_str(&i->pending_reason, val(res, row, c0 + 20));
    i->version = version;
    inst_count(r, i);
    if (i->hlink)
        mark(r, K_HOST, i->hlink->id);
    if (was_counted && (!i->counted || i->counted_sid != was_sid))
        r->retry_waiting = 1; /* resources were released */
    /* A waiting instance stays waiting while it is pending (its own
     * pending_reason write changes nothing that placement reads). */
    if (i->state != IS_PENDING || i->host_id || i->desired != ID_RUNNING)
        idset_del(&r->waiting, i->id);
}

/* A row of ST_REC_INSTANCES. */
static void
inst_apply(struct reconciler *r, const PGresult *res, int row)
{
    inst_apply_at(r, res, row, 0);
}

static void
inst_remove(struct reconciler *r, const char *id)
{
    struct rinst *i = strmap_del(&r->insts, id);

    if (i == NULL)
        return;
    if (i->counted)
        r->retry_waiting = 1;
    if (i->svc_id)
        mark(r, K_SVC, i->svc_id);
    if (i->hlink)
        mark(r, K_HOST, i->hlink->id);
    idset_del(&r->waiting, id);
    idset_del(&r->timed, id);
    idset_del(&r->dec[K_INST], id);
    inst_uncount(r, i);
    host_unlink(i);
    grp_unlink(r, i);
    inst_free(i);
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

static int
is_fenced(const struct db_error *err)
{
    return strcmp(err->sqlstate, "CLEPC") == 0;
}

static void
on_fetch(const PGresult *res, const struct db_error *err, void *arg)
{
    struct qctx *q = arg;
    struct reconciler *r = q->r;
    struct strmap seen;
    int n;

    if (ctx_done(q)) {
        qctx_free(q);
        maybe_free(r);
        return;
    }
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
            strmap_put(&seen, PQgetvalue(res, row, 0), (void *)1);
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
    qctx_free(q);
    pass_continue(r);
}

static const enum store_stmt fetch_stmt[K__COUNT] = {
    [K_HOST] = ST_REC_HOSTS,
    [K_SVC] = ST_REC_SERVICES,
    [K_INST] = ST_REC_INSTANCES,
};

/* Issues the next pending fetch of the pass; 0 when none was left. */
static int
fetch_next(struct reconciler *r)
{
    struct pass *p = r->p;
    struct qctx *q;
    const char *vals[1];
    char *lit = NULL;

    for (int k = 0; k < K__COUNT; k++) {
        struct fetchlist *f = &p->fetch[k];

        if (!f->all && f->n == 0)
            continue;
        q = qctx_new(r, (enum kind)k);
        if (!f->all) {
            q->ids = f->ids;
            q->n = f->n;
            lit = array_literal(f->ids, f->n);
        }
        f->ids = NULL;
        f->n = f->cap = 0;
        f->all = 0;
        vals[0] = lit;
        db_query(r->db, store_stmt(fetch_stmt[k]), vals, on_fetch, q);
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
        const char *kind = PQgetvalue(res, row, 0), *id = PQgetvalue(res, row, 1);

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

    if (ctx_done(q)) {
        qctx_free(q);
        maybe_free(r);
        return;
    }
    qctx_free(q);
    release_tentative(r, r->p);
    if (err) {
        if (is_fenced(err)) {
            pass_end(r);
            leader_fenced(r->leader, err->message);
            return;
        }
        log_warnx("reconciler write failed: %s", err->message);
        pass_end(r);
        return;
    }
    take_touched(r->p, res);
    pass_continue(r);
}

/* ---- decisions ------------------------------------------------------------ */

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
    h = strmap_get(&r->hosts, i->host_id);
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
 *   doomed live instances on a draining host (to be moved)
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
        if (i->generation >= s->generation && inst_finished(i)) {
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
placeable(struct decide *d, struct rinst *i)
{
    struct reconciler *r = d->r;
    struct rsvc *s;

    if (i->state != IS_PENDING || i->host_id || i->desired != ID_RUNNING ||
        i->planned_pass == d->p->serial)
        return 0;
    if (i->next_restart_ms && i->next_restart_ms > d->now_ms) {
        idset_add(&r->timed, i->id);
        return 0;
    }
    if (i->svc_id) {
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

/* A new candidate: placeable and not already known not to fit. */
static void
cand_consider(struct decide *d, struct rinst *i)
{
    if (strmap_get(&d->r->waiting, i->id) == NULL && placeable(d, i))
        cand_push(d, i);
}

static void
decide_place(struct decide *d, struct ivec *pending)
{
    struct reconciler *r = d->r;
    struct selcache sc;

    strmap_init(&sc.m);
    if (pending->n > 1)
        qsort(pending->v, pending->n, sizeof(*pending->v), cmp_place);
    for (size_t k = 0; k < pending->n; k++) {
        struct rinst *i = pending->v[k];
        struct sched_request req;
        struct sched_placement pl;
        struct selentry *se = NULL;
        const char *why;

        if (ops_full(d)) {
            /* the rest: next pass */
            for (; k < pending->n; k++)
                idset_add(&r->dec[K_INST], pending->v[k]->id);
            break;
        }
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
                if (!streq(i->pending_reason, se->error))
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
            p->tent[p->ntent].svc = dup_or_null(i->svc_id);
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
        if (!streq(i->pending_reason, why))
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
    cand_consider(d, i);
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
static json_t *
decide(struct reconciler *r, struct pass *p)
{
    struct decide d = {.r = r, .p = p, .ops = json_array()};
    struct ivec none = {0};
    struct rinst **insts;
    struct rsvc **svcs;
    struct rhost **hosts;
    size_t ninsts, nsvcs, nhosts, nwaiting = 0;
    long long t0 = mono_us();
    int full;

    if (d.ops == NULL)
        fatalx("out of memory");
    d.now_ms = leader_db_now_ms(r->leader);
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
                cand_consider(&d, v.v[j]);
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
            if (placeable(&d, w.v[k]))
                cand_push(&d, w.v[k]);
        free(w.v);
    }

    /* placement */
    decide_place(&d, &d.cand);

    r->passes_decided++;
    log_debug("reconcile pass %llu: %s decision over %zu instances, %zu "
              "services, %zu hosts, %zu to place (%zu waiting retried), "
              "%zu ops, %lld us",
              p->serial, full ? "full" : "incremental", ninsts, nsvcs, nhosts,
              d.cand.n, nwaiting, json_array_size(d.ops), mono_us() - t0);
    free(d.cand.v);
    free(insts);
    free(svcs);
    free(hosts);
    return d.ops;
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

    if (ctx_done(q)) {
        qctx_free(q);
        maybe_free(r);
        return;
    }
    qctx_free(q);
    if (err) {
        if (is_fenced(err)) {
            pass_end(r);
            leader_fenced(r->leader, err->message);
            return;
        }
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
            ops = decide(r, p);
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

static void
on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
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
    r->need_load = 1;
    r->last_liveness_ms = 0;
    pass_free(r, r->p);
    r->p = NULL;
    log_info("reconciling as the leader (epoch %lld)", epoch);
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
    mirror_clear(r);
    idset_clear(&r->dirty[K_HOST]);
    idset_clear(&r->dirty[K_SVC]);
    idset_clear(&r->dirty[K_INST]);
    log_info("reconciler stopped acting");
}

static void
obs_event(void *arg, long long id, const char *type, const char *object,
          const char *object_id)
{
    struct reconciler *r = arg;

    (void)id;
    (void)type;
    if (object_id == NULL || r->closing || !leader_acting(r->leader))
        return;
    if (strcmp(object, "instance") == 0)
        idset_add(&r->dirty[K_INST], object_id);
    else if (strcmp(object, "service") == 0)
        idset_add(&r->dirty[K_SVC], object_id);
    else if (strcmp(object, "host") == 0)
        idset_add(&r->dirty[K_HOST], object_id);
}

/*
 * An event read with its instance's row (watch.h WATCH_COL_REC): between
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

    if (object_id == NULL || r->closing || !leader_acting(r->leader))
        return;
    if (strcmp(object, "instance") != 0 || r->p != NULL || !r->loaded ||
        r->need_load || PQnfields(res) < WATCH_COL_REC + 22 ||
        strmap_get(&r->dirty[K_INST], object_id) != NULL) {
        obs_event(arg, id, type, object, object_id);
        return;
    }
    if (PQgetisnull(res, row, WATCH_COL_INST)) {
        inst_remove(r, object_id); /* gone when the event was read */
        return;
    }
    if (PQgetisnull(res, row, WATCH_COL_REC))
        return; /* a later event of the instance in this read carries it */
    if (strcmp(PQgetvalue(res, row, WATCH_COL_REC), object_id) != 0) {
        obs_event(arg, id, type, object, object_id);
        return;
    }
    inst_apply_at(r, res, row, WATCH_COL_REC);
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
    strmap_init(&r->hosts);
    strmap_init(&r->svcs);
    strmap_init(&r->insts);
    for (int k = 0; k < K__COUNT; k++)
        strmap_init(&r->dirty[k]);
    r->tick = event_new(base, -1, EV_PERSIST, on_tick, r);
    r->kick = event_new(base, -1, 0, on_kick, r);
    if (r->tick == NULL || r->kick == NULL || event_add(r->tick, &tv) < 0)
        fatalx("cannot create the reconciler timers");
    r->leader = leader_new(base, db, opts->identity,
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

int
reconciler_leading(const struct reconciler *r)
{
    return r->leader && leader_acting(r->leader);
}
