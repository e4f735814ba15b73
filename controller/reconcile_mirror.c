/*
 * reconcile_mirror: the reconciler's mirror of hosts, services and
 * instances (reconcile_priv.h), its indexes (instances by host, by service)
 * and the scheduler's cluster model built from it.
 *
 * The mirror changes only from rows read back from PostgreSQL (never from
 * what the reconciler meant to write). Every change marks what it touched
 * for the next decision (the dec id sets), unless the next decision covers
 * everything anyway.
 */
#define LOG_MODULE "reconcile"
#include "reconcile_priv.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mem.h"
#include "store.h"

const char *const ist_names[] = {"pending", "scheduled", "starting",
                                 "running", "stopping", "exited",
                                 "failed",  "lost",      NULL};

static const char *
val(const PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
}

char *
rec_dup_or_null(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

static long long
ll(const char *s)
{
    return s ? strtoll(s, NULL, 10) : 0;
}

int
rec_streq(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return strcmp(a, b) == 0;
}

static void
set_str(char **dst, const char *src)
{
    if (rec_streq(*dst, src))
        return;
    free(*dst);
    *dst = rec_dup_or_null(src);
}

/* ---- id sets and fetch lists ------------------------------------------ */

void
idset_add(struct strmap *m, const char *id)
{
    char *k;

    if (strmap_get(m, id) != NULL)
        return;
    k = xstrdup(id);
    strmap_put(m, k, k);
}

void
idset_clear(struct strmap *m)
{
    for (size_t i = 0; i < m->cap; i++)
        if (m->keys[i])
            free(m->vals[i]);
    strmap_fini(m);
    strmap_init(m);
}

void
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

int
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
void
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

void
mirror_clear(struct reconciler *r)
{
    mirror_clear_x(r, 1);
}

/* A row of ST_REC_HOSTS. */
void
host_apply(struct reconciler *r, const PGresult *res, int row)
{
    const char *id = val(res, row, REC_HOSTS_ID);
    struct rhost *h = strmap_get(&r->hosts, id);
    long long version = ll(val(res, row, REC_HOSTS_VERSION));
    struct sched_resources cap = {
        .vcpus = (uint32_t)ll(val(res, row, REC_HOSTS_VCPUS)),
        .memory_mib = (uint64_t)ll(val(res, row, REC_HOSTS_MEMORY_MIB)),
        .disk_gib = (uint64_t)ll(val(res, row, REC_HOSTS_DISK_GIB)),
    };
    const char *state = val(res, row, REC_HOSTS_STATE),
               *labels = val(res, row, REC_HOSTS_LABELS);
    int registered = ll(val(res, row, REC_HOSTS_SESSION_EPOCH)) > 0;

    if (h && h->version > version)
        return;
    if (h == NULL) {
        h = xcalloc(1, sizeof(*h));
        h->id = xstrdup(id);
        h->name = xstrdup(val(res, row, REC_HOSTS_NAME));
        h->state = xstrdup(state);
        h->labels = xstrdup(labels ? labels : "");
        h->hypervisor = xstrdup(val(res, row, REC_HOSTS_HYPERVISOR));
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
    if (!rec_streq(h->labels, labels ? labels : "")) {
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

void
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

/* A row of ST_REC_SERVICES. */
void
svc_apply(struct reconciler *r, const PGresult *res, int row)
{
    const char *id = val(res, row, REC_SERVICES_ID);
    struct rsvc *s = strmap_get(&r->svcs, id);
    long long version = ll(val(res, row, REC_SERVICES_VERSION));

    if (s && s->version > version)
        return;
    if (s == NULL) {
        s = xcalloc(1, sizeof(*s));
        s->id = xstrdup(id);
        strmap_put(&r->svcs, s->id, s);
    }
    mark(r, K_SVC, s->id);
    set_str(&s->name, val(res, row, REC_SERVICES_NAME));
    s->deleting = rec_streq(val(res, row, REC_SERVICES_STATE), "deleting");
    s->version = version;
    s->replicas = (int)ll(val(res, row, REC_SERVICES_REPLICAS));
    s->generation = ll(val(res, row, REC_SERVICES_GENERATION));
    s->max_unavailable = (int)ll(val(res, row, REC_SERVICES_MAX_UNAVAILABLE));
    s->max_surge = (int)ll(val(res, row, REC_SERVICES_MAX_SURGE));
    set_str(&s->restart, val(res, row, REC_SERVICES_RESTART));
}

void
svc_remove(struct reconciler *r, const char *id)
{
    svc_free(strmap_del(&r->svcs, id));
    idset_del(&r->dec[K_SVC], id);
}

static enum ist
ist_parse(const char *s)
{
    for (int k = 0; ist_names[k]; k++)
        if (rec_streq(s, ist_names[k]))
            return (enum ist)k;
    return IS_PENDING;
}

/* A row of ST_REC_INSTANCES at column c0 (0, or EVENT_HUB_REC in the
 * hub's rows). */
void
inst_apply_at(struct reconciler *r, const PGresult *res, int row, int c0)
{
    const char *id = val(res, row, c0 + REC_INSTANCES_ID),
               *d = val(res, row, c0 + REC_INSTANCES_DESIRED_STATE);
    struct rinst *i = strmap_get(&r->insts, id);
    long long version = ll(val(res, row, c0 + REC_INSTANCES_VERSION));
    enum sched_strategy strat = SCHED_SPREAD;
    int was_counted = 0;
    uint64_t was_sid = 0;

    if (i && i->version > version)
        return;
    if (i == NULL) {
        i = xcalloc(1, sizeof(*i));
        i->id = xstrdup(id);
        i->svc_id =
            rec_dup_or_null(val(res, row, c0 + REC_INSTANCES_SERVICE_ID));
        i->res.vcpus = (uint32_t)ll(val(res, row, c0 + REC_INSTANCES_VCPUS));
        i->res.memory_mib =
            (uint64_t)ll(val(res, row, c0 + REC_INSTANCES_MEMORY_MIB));
        i->res.disk_gib =
            (uint64_t)ll(val(res, row, c0 + REC_INSTANCES_DISK_GIB));
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
    set_str(&i->name, val(res, row, c0 + REC_INSTANCES_NAME));
    i->ordinal = (int)ll(val(res, row, c0 + REC_INSTANCES_ORDINAL));
    i->generation = ll(val(res, row, c0 + REC_INSTANCES_GENERATION));
    i->state = ist_parse(val(res, row, c0 + REC_INSTANCES_STATE));
    i->desired = rec_streq(d, "deleted")   ? ID_DELETED
                 : rec_streq(d, "stopped") ? ID_STOPPED
                                       : ID_RUNNING;
    if (!rec_streq(i->host_id, val(res, row, c0 + REC_INSTANCES_HOST_ID))) {
        host_unlink(i);
        set_str(&i->host_id, val(res, row, c0 + REC_INSTANCES_HOST_ID));
        host_link(r, i);
    }
    set_str(&i->restart, val(res, row, c0 + REC_INSTANCES_RESTART));
    set_str(&i->constraints, val(res, row, c0 + REC_INSTANCES_CONSTRAINTS)
                                 ? val(res, row, c0 + REC_INSTANCES_CONSTRAINTS)
                                 : "");
    if (sched_strategy_parse(val(res, row, c0 + REC_INSTANCES_STRATEGY),
                             &strat) < 0)
        strat = SCHED_SPREAD;
    i->strategy = strat;
    i->max_per_host =
        (uint32_t)ll(val(res, row, c0 + REC_INSTANCES_MAX_PER_HOST));
    i->exit_code = val(res, row, c0 + REC_INSTANCES_EXIT_CODE)
                       ? (int)ll(val(res, row, c0 + REC_INSTANCES_EXIT_CODE))
                       : -1;
    i->restart_count = (int)ll(val(res, row, c0 + REC_INSTANCES_RESTART_COUNT));
    i->next_restart_ms = ll(val(res, row, c0 + REC_INSTANCES_NEXT_RESTART_MS));
    i->finished_ms = ll(val(res, row, c0 + REC_INSTANCES_FINISHED_MS));
    i->created_ms = ll(val(res, row, c0 + REC_INSTANCES_CREATED_MS));
    set_str(&i->pending_reason,
            val(res, row, c0 + REC_INSTANCES_PENDING_REASON));
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
void
inst_apply(struct reconciler *r, const PGresult *res, int row)
{
    inst_apply_at(r, res, row, 0);
}

void
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

