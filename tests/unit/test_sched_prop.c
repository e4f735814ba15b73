/*
 * Property test of the scheduler: random workloads (seeded, so every run is
 * the same) of placements, batches, releases, state changes, relabels and
 * host churn. After every step no host is over-committed, no service exceeds
 * its anti-affinity limit, the model's allocation equals the sum of the
 * instances the test placed, and the indexed search picks exactly the host a
 * brute-force scan of all hosts picks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "mem.h"
#include "rng.h"
#include "cloudsched.h"
#include "sched_priv.h"

#define MAX_HOSTS 400
#define NSVC 5

struct inst {
    uint64_t host;
    struct sched_resources res;
    int svc; /* -1: none */
};

struct world {
    struct sched_cluster *c;
    struct rng r;
    bool live[MAX_HOSTS];
    struct sched_resources cap[MAX_HOSTS];
    struct sched_resources alloc[MAX_HOSTS];
    uint32_t count[MAX_HOSTS][NSVC];
    struct inst *insts;
    size_t ninsts, cap_insts;
    struct sched_selector *sels[8];
    size_t nsels;
    size_t placed, failed, mismatches;
};

static const char *const svc_names[NSVC] = {"web", "db", NULL, "cache", NULL};
static const uint64_t svc_ids[NSVC] = {0, 0, 77, 0, 1000};
static const uint32_t svc_max[NSVC] = {0, 1, 2, 3, 0};

static struct sched_service
svc_of(int i)
{
    if (i < 0)
        return (struct sched_service){0};
    return (struct sched_service){.name = svc_names[i], .id = svc_ids[i]};
}

static void
random_labels(struct world *w, char bufs[4][32], const char *lv[4], size_t *n)
{
    static const char *const zones[] = {"a", "b", "c"};
    *n = 0;
    snprintf(bufs[*n], 32, "zone=%s", zones[rng_below(&w->r, 3)]);
    lv[*n] = bufs[*n];
    (*n)++;
    snprintf(bufs[*n], 32, "rack=r%u", rng_below(&w->r, 10));
    lv[*n] = bufs[*n];
    (*n)++;
    uint32_t ssd = rng_below(&w->r, 3);
    if (ssd < 2) { /* a third have no ssd label at all */
        snprintf(bufs[*n], 32, "ssd=%s", ssd ? "true" : "false");
        lv[*n] = bufs[*n];
        (*n)++;
    }
}

static void
add_random_host(struct world *w, uint64_t id)
{
    char bufs[4][32], name[32];
    const char *lv[4];
    size_t n;
    random_labels(w, bufs, lv, &n);
    snprintf(name, sizeof(name), "host-%llu", (unsigned long long)id);
    struct sched_resources cap = {
        .vcpus = 4 + rng_below(&w->r, 29),
        .memory_mib = 1024 * (4 + rng_below(&w->r, 61)),
        .disk_gib = 50 + rng_below(&w->r, 500),
    };
    uint32_t st = rng_below(&w->r, 10);
    struct sched_host_spec spec = {
        .id = id,
        .name = name,
        .capacity = cap,
        .labels = lv,
        .nlabels = n,
        .state = st < 7 ? SCHED_HOST_READY : (enum sched_host_state)(st - 6),
        .hypervisor = rng_below(&w->r, 4) ? "kvm" : "xen",
    };
    assert_int_equal(sched_host_add(w->c, &spec), 0);
    w->live[id] = true;
    w->cap[id] = cap;
    memset(&w->alloc[id], 0, sizeof(w->alloc[id]));
    memset(w->count[id], 0, sizeof(w->count[id]));
}

static void
record(struct world *w, uint64_t host, const struct sched_resources *res,
       int svc)
{
    if (w->ninsts == w->cap_insts) {
        w->cap_insts = w->cap_insts ? w->cap_insts * 2 : 256;
        w->insts = xrealloc(w->insts, w->cap_insts * sizeof(*w->insts));
    }
    w->insts[w->ninsts++] = (struct inst){host, *res, svc};
    w->alloc[host].vcpus += res->vcpus;
    w->alloc[host].memory_mib += res->memory_mib;
    w->alloc[host].disk_gib += res->disk_gib;
    if (svc >= 0)
        w->count[host][svc]++;
}

static void
random_request(struct world *w, struct sched_request *req, int *svc)
{
    static const char *const hvs[] = {NULL, NULL, "kvm", "xen"};
    memset(req, 0, sizeof(*req));
    req->res.vcpus = 1 + rng_below(&w->r, 8);
    req->res.memory_mib = 256 * (1 + rng_below(&w->r, 64));
    req->res.disk_gib = 5 + rng_below(&w->r, 100);
    uint32_t s = rng_below(&w->r, (uint32_t)w->nsels + 2);
    req->selector = s < w->nsels ? w->sels[s] : NULL;
    req->hypervisor = hvs[rng_below(&w->r, 4)];
    req->strategy = rng_below(&w->r, 2) ? SCHED_SPREAD : SCHED_BINPACK;
    *svc = (int)rng_below(&w->r, NSVC + 1) - 1;
    req->service = svc_of(*svc);
    req->max_per_host = *svc >= 0 ? svc_max[*svc] : 0;
}

static void
step_place(struct world *w)
{
    struct sched_request req;
    int svc;
    random_request(w, &req, &svc);
    struct sched_scan scan;
    assert_int_equal(sched_scan_hosts(w->c, &req, &scan), 0);
    free(scan.counts);
    struct sched_placement pl;
    int rc = sched_place(w->c, &req, 0, &pl);
    if (scan.best == NULL) {
        assert_int_equal(rc, -1);
        assert_non_null(strstr(sched_error(w->c), " hosts fit: "));
        w->failed++;
        return;
    }
    assert_int_equal(rc, 0);
    if (pl.host_id != scan.best->id)
        fail_msg("indexed search chose %llu, the scan %llu",
                 (unsigned long long)pl.host_id,
                 (unsigned long long)scan.best->id);
    record(w, pl.host_id, &req.res, svc);
    w->placed++;
}

static void
step_batch(struct world *w)
{
    struct sched_request req;
    int svc;
    random_request(w, &req, &svc);
    uint64_t ids[6];
    size_t n = 1 + rng_below(&w->r, 6), placed;
    unsigned flags = rng_below(&w->r, 2) ? SCHED_ALL_OR_NOTHING : 0;
    int rc = sched_place_batch(w->c, &req, n, flags, ids, &placed);
    assert_true(rc == 0 ? placed == n : placed < n);
    for (size_t i = 0; i < placed; i++)
        record(w, ids[i], &req.res, svc);
    w->placed += placed;
}

static void
step_release(struct world *w)
{
    if (w->ninsts == 0)
        return;
    size_t i = rng_below(&w->r, (uint32_t)w->ninsts);
    struct inst in = w->insts[i];
    w->insts[i] = w->insts[--w->ninsts];
    struct sched_service svc = svc_of(in.svc);
    assert_int_equal(sched_release(w->c, in.host, &in.res, &svc), 0);
    w->alloc[in.host].vcpus -= in.res.vcpus;
    w->alloc[in.host].memory_mib -= in.res.memory_mib;
    w->alloc[in.host].disk_gib -= in.res.disk_gib;
    if (in.svc >= 0)
        w->count[in.host][in.svc]--;
}

static uint64_t
random_live_host(struct world *w)
{
    for (int tries = 0; tries < 1000; tries++) {
        uint64_t id = 1 + rng_below(&w->r, MAX_HOSTS - 1);
        if (w->live[id])
            return id;
    }
    return 0;
}

static const char *const selectors[] = {
    "zone=a",
    "zone in (b,c)",
    "ssd=true",
    "ssd!=true,zone=b",
    "rack notin (r1,r2,r3)",
    "rack=r4",
    "zone=a,rack in (r1,r5)",
};

static void
step_churn(struct world *w)
{
    uint32_t what = rng_below(&w->r, 5);
    if (what == 4) {
        /* a service's selector goes away and comes back: the label trees it
         * needed are dropped and rebuilt from the hosts */
        size_t i = rng_below(&w->r, (uint32_t)w->nsels);
        sched_selector_free(w->sels[i]);
        w->sels[i] = sched_selector_parse(w->c, selectors[i]);
        assert_non_null(w->sels[i]);
        if (sched_cluster_check(w->c) < 0)
            fail_msg("%s", sched_error(w->c));
        return;
    }
    uint64_t id = random_live_host(w);
    if (what == 0 && id) {
        uint32_t st = rng_below(&w->r, 6);
        enum sched_host_state s =
            st < 3 ? SCHED_HOST_READY : (enum sched_host_state)(st - 2);
        assert_int_equal(sched_host_set_state(w->c, id, s), 0);
    } else if (what == 1 && id) {
        char bufs[4][32];
        const char *lv[4];
        size_t n;
        random_labels(w, bufs, lv, &n);
        assert_int_equal(sched_host_set_labels(w->c, id, lv, n), 0);
    } else if (what == 2 && id) {
        /* the host goes away with its instances */
        assert_int_equal(sched_host_remove(w->c, id), 0);
        w->live[id] = false;
        for (size_t i = 0; i < w->ninsts;) {
            if (w->insts[i].host == id)
                w->insts[i] = w->insts[--w->ninsts];
            else
                i++;
        }
    } else {
        for (uint64_t nid = 1; nid < MAX_HOSTS; nid++) {
            if (!w->live[nid]) {
                add_random_host(w, nid);
                break;
            }
        }
    }
}

static void
check_invariants(struct world *w, bool deep)
{
    for (uint64_t id = 1; id < MAX_HOSTS; id++) {
        if (!w->live[id])
            continue;
        struct sched_host_info info;
        assert_int_equal(sched_host_get(w->c, id, &info), 0);
        /* never over-committed */
        assert_true(info.allocated.vcpus <= info.capacity.vcpus);
        assert_true(info.allocated.memory_mib <= info.capacity.memory_mib);
        assert_true(info.allocated.disk_gib <= info.capacity.disk_gib);
        /* the model agrees with what was placed */
        assert_int_equal(info.allocated.vcpus, w->alloc[id].vcpus);
        assert_int_equal(info.allocated.memory_mib, w->alloc[id].memory_mib);
        assert_int_equal(info.allocated.disk_gib, w->alloc[id].disk_gib);
        for (int s = 0; s < NSVC; s++) {
            struct sched_service svc = svc_of(s);
            uint32_t n;
            assert_int_equal(sched_service_count(w->c, id, &svc, &n), 0);
            assert_int_equal(n, w->count[id][s]);
            if (svc_max[s])
                assert_true(n <= svc_max[s]);
        }
    }
    if (deep && sched_cluster_check(w->c) < 0)
        fail_msg("%s", sched_error(w->c));
}

static void
run_world(uint64_t seed, size_t nhosts, size_t steps)
{
    struct world *w = xcalloc(1, sizeof(*w));
    w->c = sched_cluster_new();
    w->r.s = seed;
    for (size_t i = 0; i < sizeof(selectors) / sizeof(selectors[0]); i++) {
        w->sels[i] = sched_selector_parse(w->c, selectors[i]);
        assert_non_null(w->sels[i]);
        w->nsels++;
    }
    for (uint64_t id = 1; id <= nhosts; id++)
        add_random_host(w, id);
    for (size_t step = 0; step < steps; step++) {
        uint32_t op = rng_below(&w->r, 100);
        if (op < 55)
            step_place(w);
        else if (op < 60)
            step_batch(w);
        else if (op < 92)
            step_release(w);
        else
            step_churn(w);
        check_invariants(w, step % 97 == 0);
    }
    check_invariants(w, true);
    /* the workload must have exercised both outcomes */
    assert_true(w->placed > steps / 10);
    assert_true(w->failed > 0);
    for (size_t i = 0; i < w->nsels; i++)
        sched_selector_free(w->sels[i]);
    sched_cluster_free(w->c);
    free(w->insts);
    free(w);
}

static void
test_random_small(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 10; seed++)
        run_world(seed, 20, 3000);
}

static void
test_random_large(void **state)
{
    (void)state;
    run_world(12345, 300, 20000);
}

/* Fill to the brim with one shape: every host ends full in some dimension,
 * and the totals never exceed capacity. */
static void
test_fill_until_full(void **state)
{
    (void)state;
    for (int strategy = 0; strategy < 2; strategy++) {
        struct world *w = xcalloc(1, sizeof(*w));
        w->c = sched_cluster_new();
        w->r.s = 99;
        for (uint64_t id = 1; id <= 200; id++)
            add_random_host(w, id);
        struct sched_request req = {.res = {2, 2048, 20},
                                    .strategy = (enum sched_strategy)strategy};
        struct sched_placement pl;
        while (sched_place(w->c, &req, 0, &pl) == 0)
            record(w, pl.host_id, &req.res, -1);
        check_invariants(w, true);
        for (uint64_t id = 1; id <= 200; id++) {
            struct sched_host_info info;
            assert_int_equal(sched_host_get(w->c, id, &info), 0);
            if (info.state != SCHED_HOST_READY)
                continue;
            assert_true(info.capacity.vcpus - info.allocated.vcpus < 2 ||
                        info.capacity.memory_mib - info.allocated.memory_mib <
                            2048 ||
                        info.capacity.disk_gib - info.allocated.disk_gib < 20);
        }
        sched_cluster_free(w->c);
        free(w->insts);
        free(w);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_small),
        cmocka_unit_test(test_random_large),
        cmocka_unit_test(test_fill_until_full),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
