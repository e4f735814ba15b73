/*
 * test_reconcile_decide: the reconciler's decision step on its own
 * (controller/reconcile_decide.c). Each test builds a small mirror from
 * rows shaped as the reconciler's reads return them (ST_REC_HOSTS,
 * ST_REC_SERVICES, ST_REC_INSTANCES, made with libpq's PQsetvalue, no
 * database), calls reconcile_decide() and checks the operations it returns:
 * scale up and down, rollouts within max_surge / max_unavailable, restart
 * policies and back-off, lost instances and down hosts, drain, placement.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <libpq-fe.h>

#include "mem.h"
#include "pgrow.h"
#include "reconcile_priv.h"
#include "store.h"

#define NOW 1000000000LL /* the database clock of the tests, ms */

struct fx {
    struct reconciler r;
    struct pass p;
    long long now;
    int nrow; /* versions of the rows made so far */
};

static int
setup(void **state)
{
    struct fx *f = xcalloc(1, sizeof(*f));

    strmap_init(&f->r.hosts);
    strmap_init(&f->r.svcs);
    strmap_init(&f->r.insts);
    strmap_init(&f->r.sgrps);
    for (int k = 0; k < K__COUNT; k++) {
        strmap_init(&f->r.dec[k]);
        strmap_init(&f->r.dirty[k]);
    }
    strmap_init(&f->r.waiting);
    strmap_init(&f->r.timed);
    f->r.model = sched_cluster_new();
    f->r.full_decide = 1; /* as after a load */
    f->now = NOW;
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fx *f = *state;

    /* the placements decided (reconcile_loop.c releases them when the
     * batch returns; the model goes with the mirror here) */
    for (size_t k = 0; k < f->p.ntent; k++)
        free(f->p.tent[k].svc);
    free(f->p.tent);
    mirror_clear_x(&f->r, 0);
    for (int k = 0; k < K__COUNT; k++) {
        strmap_fini(&f->r.dec[k]);
        strmap_fini(&f->r.dirty[k]);
    }
    strmap_fini(&f->r.waiting);
    strmap_fini(&f->r.timed);
    free(f);
    return 0;
}

/* A one-row result of n text columns (NULL: SQL NULL). */
static PGresult *
row(int n, const char *const *v)
{
    PGresult *res = pgrow_make(n, v);

    assert_non_null(res);
    return res;
}

/* A host of 8 vCPUs, 8 GiB, 100 GiB in state st; registered: an agent has
 * said hello. */
static void
host(struct fx *f, const char *id, const char *st, int registered)
{
    const char *v[REC_HOSTS__NCOLS];
    PGresult *res;

    v[REC_HOSTS_ID] = id;
    v[REC_HOSTS_NAME] = id;
    v[REC_HOSTS_STATE] = st;
    v[REC_HOSTS_VERSION] = "1";
    v[REC_HOSTS_VCPUS] = "8";
    v[REC_HOSTS_MEMORY_MIB] = "8192";
    v[REC_HOSTS_DISK_GIB] = "100";
    v[REC_HOSTS_HYPERVISOR] = "qemu";
    v[REC_HOSTS_LABELS] = "";
    v[REC_HOSTS_SESSION_EPOCH] = registered ? "1" : "0";
    res = row(REC_HOSTS__NCOLS, v);

    host_apply(&f->r, res, 0);
    PQclear(res);
}

static void
service(struct fx *f, const char *id, const char *st, int replicas, int gen,
        int maxu, int surge, const char *restart)
{
    char r[16], g[16], u[16], s[16];
    const char *v[REC_SERVICES__NCOLS];
    PGresult *res;

    snprintf(r, sizeof(r), "%d", replicas);
    snprintf(g, sizeof(g), "%d", gen);
    snprintf(u, sizeof(u), "%d", maxu);
    snprintf(s, sizeof(s), "%d", surge);
    v[REC_SERVICES_ID] = id;
    v[REC_SERVICES_NAME] = id;
    v[REC_SERVICES_STATE] = st;
    v[REC_SERVICES_VERSION] = "1";
    v[REC_SERVICES_REPLICAS] = r;
    v[REC_SERVICES_GENERATION] = g;
    v[REC_SERVICES_MAX_UNAVAILABLE] = u;
    v[REC_SERVICES_MAX_SURGE] = s;
    v[REC_SERVICES_RESTART] = restart;
    res = row(REC_SERVICES__NCOLS, v);
    svc_apply(&f->r, res, 0);
    PQclear(res);
}

struct ispec {
    const char *id;
    const char *svc;     /* NULL: one-off */
    int gen;
    const char *state;
    const char *desired; /* NULL: running */
    const char *host;    /* NULL: unplaced */
    const char *restart; /* NULL: never */
    int exit_code;       /* -1: none */
    int restart_count;
    long long next_restart_ms, finished_ms, created_ms;
    int memory_mib; /* 0: 512 */
    const char *reason;
};

static void
inst(struct fx *f, const struct ispec *s)
{
    char gen[16], mem[16], ec[16], rc[16], nr[24], fin[24], cr[24], ver[16];
    const char *v[REC_INSTANCES__NCOLS];
    PGresult *res;

    snprintf(gen, sizeof(gen), "%d", s->gen);
    snprintf(mem, sizeof(mem), "%d", s->memory_mib ? s->memory_mib : 512);
    snprintf(ec, sizeof(ec), "%d", s->exit_code);
    snprintf(rc, sizeof(rc), "%d", s->restart_count);
    snprintf(nr, sizeof(nr), "%lld", s->next_restart_ms);
    snprintf(fin, sizeof(fin), "%lld", s->finished_ms);
    snprintf(cr, sizeof(cr), "%lld",
             s->created_ms ? s->created_ms : NOW - 100000 + f->nrow);
    snprintf(ver, sizeof(ver), "%d", ++f->nrow);
    v[REC_INSTANCES_ID] = s->id;
    v[REC_INSTANCES_NAME] = s->id;
    v[REC_INSTANCES_SERVICE_ID] = s->svc;
    v[REC_INSTANCES_ORDINAL] = "0";
    v[REC_INSTANCES_GENERATION] = gen;
    v[REC_INSTANCES_STATE] = s->state;
    v[REC_INSTANCES_DESIRED_STATE] = s->desired ? s->desired : "running";
    v[REC_INSTANCES_HOST_ID] = s->host;
    v[REC_INSTANCES_VCPUS] = "1";
    v[REC_INSTANCES_MEMORY_MIB] = mem;
    v[REC_INSTANCES_DISK_GIB] = "1";
    v[REC_INSTANCES_RESTART] = s->restart ? s->restart : "never";
    v[REC_INSTANCES_CONSTRAINTS] = "";
    v[REC_INSTANCES_STRATEGY] = "spread";
    v[REC_INSTANCES_MAX_PER_HOST] = "0";
    v[REC_INSTANCES_EXIT_CODE] = s->exit_code >= 0 ? ec : NULL;
    v[REC_INSTANCES_RESTART_COUNT] = rc;
    v[REC_INSTANCES_NEXT_RESTART_MS] = nr;
    v[REC_INSTANCES_FINISHED_MS] = fin;
    v[REC_INSTANCES_CREATED_MS] = cr;
    v[REC_INSTANCES_PENDING_REASON] = s->reason;
    v[REC_INSTANCES_VERSION] = ver;
    res = row(REC_INSTANCES__NCOLS, v);
    inst_apply(&f->r, res, 0);
    PQclear(res);
}

/* A running instance of a service on a host. */
static void
running(struct fx *f, const char *id, const char *svc, int gen, const char *h,
        long long created)
{
    struct ispec s = {.id = id, .svc = svc, .gen = gen, .state = "running",
                      .host = h, .exit_code = -1, .created_ms = created};
    inst(f, &s);
}

static json_t *
decide(struct fx *f)
{
    f->p.serial++;
    return reconcile_decide(&f->r, &f->p, f->now);
}

/* Number of operations op (with "id" id, if not NULL). */
static int
count(json_t *ops, const char *op, const char *id)
{
    size_t k;
    json_t *o;
    int n = 0;

    json_array_foreach(ops, k, o) {
        if (strcmp(json_string_value(json_object_get(o, "op")), op) != 0)
            continue;
        if (id && !rec_streq(json_string_value(json_object_get(o, "id")), id))
            continue;
        n++;
    }
    return n;
}

/* The first operation op (for id, if not NULL); fails if there is none. */
static json_t *
find(json_t *ops, const char *op, const char *id)
{
    size_t k;
    json_t *o;

    json_array_foreach(ops, k, o) {
        if (strcmp(json_string_value(json_object_get(o, "op")), op) == 0 &&
            (id == NULL ||
             rec_streq(json_string_value(json_object_get(o, "id")), id)))
            return o;
    }
    fail_msg("no %s operation for %s", op, id ? id : "any");
    return NULL;
}

static const char *
str(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));

    assert_non_null(s);
    return s;
}

static void
test_scale_up(void **state)
{
    struct fx *f = *state;
    json_t *ops;

    host(f, "h1", "ready", 1);
    service(f, "web", "active", 3, 1, 1, 1, "always");
    running(f, "web-0", "web", 1, "h1", 0);
    ops = decide(f);
    assert_int_equal(count(ops, "create", NULL), 2);
    assert_int_equal(json_array_size(ops), 2);
    assert_string_equal(str(find(ops, "create", NULL), "service"), "web");
    assert_string_equal(str(find(ops, "create", NULL), "reason"),
                        "service web wants 3 replicas, has 1");
    json_decref(ops);
}

static void
test_scale_down_retires_newest(void **state)
{
    struct fx *f = *state;
    struct ispec pend = {.id = "web-3", .svc = "web", .gen = 1,
                         .state = "pending", .exit_code = -1,
                         .created_ms = NOW - 50000};
    json_t *ops;

    host(f, "h1", "ready", 1);
    service(f, "web", "active", 2, 1, 1, 1, "always");
    running(f, "web-0", "web", 1, "h1", NOW - 90000);
    running(f, "web-1", "web", 1, "h1", NOW - 80000);
    running(f, "web-2", "web", 1, "h1", NOW - 70000);
    inst(f, &pend);
    ops = decide(f);
    /* not running first, then the newest running */
    assert_int_equal(count(ops, "retire", NULL), 2);
    assert_int_equal(count(ops, "retire", "web-3"), 1);
    assert_int_equal(count(ops, "retire", "web-2"), 1);
    assert_string_equal(str(find(ops, "retire", "web-2"), "reason"),
                        "service web scaled to 2 replicas");
    assert_int_equal(count(ops, "create", NULL), 0);
    /* a retired pending instance is not placed in the same pass */
    assert_int_equal(count(ops, "place", NULL), 0);
    json_decref(ops);
}

static void
test_rollout_max_surge(void **state)
{
    struct fx *f = *state;
    json_t *ops;

    host(f, "h1", "ready", 1);
    /* generation 2, max_unavailable 0, max_surge 1 */
    service(f, "web", "active", 2, 2, 0, 1, "always");
    running(f, "web-0", "web", 1, "h1", 0);
    running(f, "web-1", "web", 1, "h1", 0);
    ops = decide(f);
    /* one new one above replicas; no old one goes while none is updated */
    assert_int_equal(count(ops, "create", NULL), 1);
    assert_string_equal(str(find(ops, "create", NULL), "reason"),
                        "rollout of web to generation 2");
    assert_int_equal(count(ops, "retire", NULL), 0);
    assert_string_equal(str(find(ops, "event", "web"), "message"),
                        "rollout of web to generation 2: 0/2 updated");
    json_decref(ops);
}

static void
test_rollout_max_unavailable(void **state)
{
    struct fx *f = *state;
    json_t *ops;

    host(f, "h1", "ready", 1);
    /* generation 2, max_unavailable 1, max_surge 0 */
    service(f, "web", "active", 2, 2, 1, 0, "always");
    running(f, "web-0", "web", 1, "h1", NOW - 90000);
    running(f, "web-1", "web", 1, "h1", NOW - 80000);
    ops = decide(f);
    /* no room above replicas: one old one goes first, the newest */
    assert_int_equal(count(ops, "create", NULL), 0);
    assert_int_equal(count(ops, "retire", NULL), 1);
    assert_int_equal(count(ops, "retire", "web-1"), 1);
    json_decref(ops);
}

static void
test_rollout_replaces_stopped_old_at_once(void **state)
{
    struct fx *f = *state;
    struct ispec dead = {.id = "web-1", .svc = "web", .gen = 1,
                         .state = "failed", .host = "h1", .exit_code = 1};
    json_t *ops;

    host(f, "h1", "ready", 1);
    service(f, "web", "active", 2, 2, 0, 1, "never");
    running(f, "web-0", "web", 1, "h1", 0);
    inst(f, &dead);
    ops = decide(f);
    /* an old one that does not run costs no availability */
    assert_int_equal(count(ops, "retire", "web-1"), 1);
    assert_int_equal(count(ops, "retire", "web-0"), 0);
    assert_int_equal(count(ops, "create", NULL), 1);
    json_decref(ops);
}

static void
test_restart_policies(void **state)
{
    struct fx *f = *state;
    struct ispec a = {.id = "always", .state = "exited", .host = "h1",
                      .restart = "always", .exit_code = 0};
    struct ispec ok = {.id = "ok", .state = "exited", .host = "h1",
                       .restart = "on-failure", .exit_code = 0};
    struct ispec bad = {.id = "bad", .state = "exited", .host = "h1",
                        .restart = "on-failure", .exit_code = 3};
    struct ispec limit = {.id = "limit", .state = "failed", .host = "h1",
                          .restart = "on-failure:2", .exit_code = 1,
                          .restart_count = 2};
    struct ispec never = {.id = "never", .state = "failed", .host = "h1",
                          .exit_code = 1};
    struct ispec stopped = {.id = "stopped", .state = "exited", .host = "h1",
                            .desired = "stopped", .restart = "always",
                            .exit_code = 0};
    json_t *ops;

    host(f, "h1", "ready", 1);
    inst(f, &a);
    inst(f, &ok);
    inst(f, &bad);
    inst(f, &limit);
    inst(f, &never);
    inst(f, &stopped);
    ops = decide(f);
    assert_int_equal(count(ops, "restart", "always"), 1);
    assert_int_equal(count(ops, "restart", "ok"), 0);
    assert_int_equal(count(ops, "restart", "bad"), 1);
    assert_int_equal(count(ops, "restart", "limit"), 0);
    assert_int_equal(count(ops, "restart", "never"), 0);
    assert_int_equal(count(ops, "restart", "stopped"), 0);
    /* the limit is reported once per version of the row */
    assert_string_equal(str(find(ops, "event", "limit"), "message"),
                        "instance limit not restarted after exit 1: restart "
                        "policy on-failure:2 allows no more than its 2 "
                        "restarts");
    assert_int_equal(json_array_size(ops), 3);
    json_decref(ops);
    f->r.full_decide = 1;
    ops = decide(f);
    assert_int_equal(count(ops, "event", NULL), 0);
    json_decref(ops);
}

static void
test_service_restart_only_current_generation(void **state)
{
    struct fx *f = *state;
    struct ispec cur = {.id = "web-0", .svc = "web", .gen = 1,
                        .state = "failed", .host = "h1", .exit_code = 2};
    json_t *ops;

    host(f, "h1", "ready", 1);
    service(f, "web", "active", 1, 1, 1, 1, "on-failure");
    inst(f, &cur);
    ops = decide(f);
    assert_int_equal(count(ops, "restart", "web-0"), 1);
    assert_int_equal(count(ops, "create", NULL), 0);
    json_decref(ops);
}

static void
test_backoff_then_place(void **state)
{
    struct fx *f = *state;
    struct ispec s = {.id = "job", .state = "pending", .restart = "always",
                      .exit_code = -1, .restart_count = 1,
                      .next_restart_ms = NOW + 5000};
    json_t *ops;

    host(f, "h1", "ready", 1);
    inst(f, &s);
    ops = decide(f);
    /* in its back-off: not placed, remembered with its deadline */
    assert_int_equal(json_array_size(ops), 0);
    assert_non_null(strmap_get(&f->r.timed, "job"));
    json_decref(ops);

    f->now = NOW + 4999;
    ops = decide(f);
    assert_int_equal(json_array_size(ops), 0);
    json_decref(ops);

    f->now = NOW + 5000;
    ops = decide(f);
    assert_string_equal(str(find(ops, "place", "job"), "host"), "h1");
    assert_null(strmap_get(&f->r.timed, "job"));
    json_decref(ops);
}

static void
test_place_and_unplaceable(void **state)
{
    struct fx *f = *state;
    struct ispec small = {.id = "small", .state = "pending", .exit_code = -1};
    struct ispec big = {.id = "big", .state = "pending", .exit_code = -1,
                        .memory_mib = 65536};
    json_t *ops;

    host(f, "h1", "ready", 1);
    host(f, "h2", "ready", 0); /* no agent ever said hello */
    inst(f, &small);
    inst(f, &big);
    ops = decide(f);
    assert_string_equal(str(find(ops, "place", "small"), "host"), "h1");
    assert_int_equal(count(ops, "place", "big"), 0);
    assert_int_equal(count(ops, "unplaceable", "big"), 1);
    assert_non_null(strmap_get(&f->r.waiting, "big"));
    json_decref(ops);
}

static void
test_unregistered_host_not_used(void **state)
{
    struct fx *f = *state;
    struct ispec s = {.id = "job", .state = "pending", .exit_code = -1};
    json_t *ops;

    host(f, "h2", "ready", 0);
    inst(f, &s);
    ops = decide(f);
    assert_int_equal(count(ops, "place", NULL), 0);
    assert_int_equal(count(ops, "unplaceable", "job"), 1);
    json_decref(ops);
}

static void
test_lost_deleted_kept_then_purged(void **state)
{
    struct fx *f = *state;
    struct ispec recent = {.id = "recent", .state = "lost", .host = "h1",
                           .desired = "deleted", .exit_code = -1,
                           .finished_ms = NOW - 1000};
    struct ispec old = {.id = "old", .state = "lost", .host = "h1",
                        .desired = "deleted", .exit_code = -1,
                        .finished_ms = NOW - 60000};
    struct ispec unplaced = {.id = "unplaced", .state = "pending",
                             .desired = "deleted", .exit_code = -1};
    json_t *ops;

    host(f, "h1", "down", 1);
    inst(f, &recent);
    inst(f, &old);
    inst(f, &unplaced);
    ops = decide(f);
    assert_int_equal(count(ops, "purge", "old"), 1);
    assert_int_equal(count(ops, "purge", "unplaced"), 1);
    assert_int_equal(count(ops, "purge", "recent"), 0);
    assert_non_null(strmap_get(&f->r.timed, "recent"));
    json_decref(ops);

    f->now = NOW + 59000;
    ops = decide(f);
    assert_int_equal(count(ops, "purge", "recent"), 1);
    json_decref(ops);
}

static void
test_down_host_replaced(void **state)
{
    struct fx *f = *state;
    struct ispec lost = {.id = "web-0", .svc = "web", .gen = 1,
                         .state = "lost", .host = "h1", .exit_code = -1};
    json_t *ops;

    host(f, "h1", "down", 1);
    host(f, "h2", "ready", 1);
    service(f, "web", "active", 1, 1, 0, 1, "always");
    inst(f, &lost);
    ops = decide(f);
    assert_int_equal(count(ops, "create", NULL), 1);
    assert_string_equal(str(find(ops, "create", NULL), "reason"),
                        "replaces web-0 on down host h1");
    /* Lost and still wanted running (partition_policy keep): it waits for
     * its host, neither retired nor restarted elsewhere (docs/reconciler.md
     * "Host liveness"); cloud_agent_register takes it back or retires it. */
    assert_int_equal(count(ops, "retire", "web-0"), 0);
    assert_int_equal(count(ops, "restart", "web-0"), 0);
    json_decref(ops);
}

static void
test_drain(void **state)
{
    struct fx *f = *state;
    json_t *ops;

    host(f, "h1", "draining", 1);
    host(f, "h2", "ready", 1);
    host(f, "h3", "draining", 1);
    /* max_unavailable 0: the running one stays until its replacement runs */
    service(f, "web", "active", 1, 1, 0, 1, "always");
    running(f, "web-0", "web", 1, "h1", 0);
    ops = decide(f);
    assert_int_equal(count(ops, "create", NULL), 1);
    assert_int_equal(count(ops, "retire", NULL), 0);
    /* h3 has nothing left: drained; h1 still runs web-0 */
    assert_int_equal(count(ops, "drained", "h3"), 1);
    assert_int_equal(count(ops, "drained", "h1"), 0);
    json_decref(ops);

    /* the replacement runs on h2: now web-0 may go */
    running(f, "web-1", "web", 1, "h2", 0);
    f->r.full_decide = 1;
    ops = decide(f);
    assert_int_equal(count(ops, "create", NULL), 0);
    assert_string_equal(str(find(ops, "retire", "web-0"), "reason"),
                        "moved off draining host h1");
    json_decref(ops);
}

static void
test_drain_max_unavailable(void **state)
{
    struct fx *f = *state;
    json_t *ops;

    host(f, "h1", "draining", 1);
    host(f, "h2", "ready", 1);
    /* max_unavailable 1: goes at once, with its replacement created */
    service(f, "web", "active", 1, 1, 1, 0, "always");
    running(f, "web-0", "web", 1, "h1", 0);
    ops = decide(f);
    assert_int_equal(count(ops, "create", NULL), 1);
    assert_int_equal(count(ops, "retire", "web-0"), 1);
    json_decref(ops);
}

static void
test_deleting_service(void **state)
{
    struct fx *f = *state;
    json_t *ops;

    host(f, "h1", "ready", 1);
    service(f, "gone", "deleting", 2, 1, 1, 1, "always");
    service(f, "busy", "deleting", 2, 1, 1, 1, "always");
    running(f, "busy-0", "busy", 1, "h1", 0);
    ops = decide(f);
    assert_int_equal(count(ops, "service_remove", "gone"), 1);
    assert_int_equal(count(ops, "service_remove", "busy"), 0);
    assert_int_equal(count(ops, "create", NULL), 0);
    json_decref(ops);
}

static void
test_incremental_decides_only_changes(void **state)
{
    struct fx *f = *state;
    json_t *ops;

    host(f, "h1", "ready", 1);
    service(f, "web", "active", 1, 1, 1, 1, "always");
    running(f, "web-0", "web", 1, "h1", 0);
    ops = decide(f);
    assert_int_equal(json_array_size(ops), 0);
    json_decref(ops);
    /* nothing changed: nothing to decide */
    ops = decide(f);
    assert_int_equal(json_array_size(ops), 0);
    json_decref(ops);
    /* the service row scales up: marked, decided incrementally */
    service(f, "web", "active", 2, 1, 1, 1, "always");
    ops = decide(f);
    assert_int_equal(count(ops, "create", NULL), 1);
    json_decref(ops);
}

/* What reconcile_loop.c does when a batch returns: the model forgets the
 * pass's tentative placements; the re-read rows count them for real. */
static void
batch_done(struct fx *f)
{
    for (size_t k = 0; k < f->p.ntent; k++) {
        struct sched_service svc = {.name = f->p.tent[k].svc, .id = 0};

        assert_int_equal(sched_release(f->r.model, f->p.tent[k].sid,
                                       &f->p.tent[k].res,
                                       f->p.tent[k].svc ? &svc : NULL),
                         0);
        free(f->p.tent[k].svc);
    }
    f->p.ntent = 0;
}

/* A full pass (1,000 decisions) leaves candidates over: the oldest are
 * placed first, and the rest, of a service and one-off alike, are placed
 * by the next incremental pass, each once. */
static void
test_full_pass_carries_candidates(void **state)
{
    struct fx *f = *state;
    char id[32];
    json_t *ops, *o;
    size_t k;
    int placed[1501] = {0};

    for (int h = 0; h < 200; h++) { /* 8 vCPUs each: 1,600 places */
        snprintf(id, sizeof(id), "h%d", h);
        host(f, id, "ready", 1);
    }
    service(f, "web", "active", 1500, 1, 1, 1, "always");
    for (int n = 0; n < 1501; n++) {
        struct ispec s = {.id = id, .svc = n < 1500 ? "web" : NULL, .gen = 1,
                          .state = "pending", .exit_code = -1,
                          .created_ms = NOW - 100000 + n};

        snprintf(id, sizeof(id), "i%04d", n);
        inst(f, &s);
    }
    for (int pass = 0; pass < 2; pass++) {
        ops = decide(f);
        assert_int_equal(json_array_size(ops), pass == 0 ? 1000 : 501);
        batch_done(f);
        json_array_foreach(ops, k, o) {
            const char *iid = str(o, "id");
            int n = (int)strtol(iid + 1, NULL, 10);
            struct ispec s = {.id = iid, .svc = n < 1500 ? "web" : NULL,
                              .gen = 1, .state = "scheduled",
                              .host = str(o, "host"), .exit_code = -1,
                              .created_ms = NOW - 100000 + n};

            assert_string_equal(str(o, "op"), "place");
            /* first come, first served */
            assert_true(pass == 1 || n < 1000);
            assert_int_equal(placed[n]++, 0);
            inst(f, &s); /* the re-read row */
        }
        json_decref(ops);
    }
    for (int n = 0; n < 1501; n++)
        assert_int_equal(placed[n], 1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_scale_up, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scale_down_retires_newest, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_rollout_max_surge, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_rollout_max_unavailable, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_rollout_replaces_stopped_old_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restart_policies, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_service_restart_only_current_generation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backoff_then_place, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_place_and_unplaceable, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_unregistered_host_not_used,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_lost_deleted_kept_then_purged,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_down_host_replaced, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_drain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drain_max_unavailable, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_deleting_service, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_incremental_decides_only_changes,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_pass_carries_candidates,
                                        setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
