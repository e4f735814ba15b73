/*
 * sched-bench: measures the scheduler library on random clusters. For each
 * size it builds a cluster (zone/rack/ssd labels, mixed host shapes, a few
 * hosts not ready), runs a workload of requests with label constraints and
 * anti-affinity, and prints placements per second, the latency of one
 * placement (p50/p99/max, clock_gettime around each call) and the packing
 * density (instances placed before the first failure as a share of the ideal
 * total capacity / request size). It prints figures and never judges them.
 *
 *   sched-bench [--sizes 100,1000,10000,50000] [--ops N] [--seed S]
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mem.h"
#include "rng.h"
#include "cloudsched.h"

static uint64_t
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Host shapes: the last is disk-bound, so dimensions bind differently on
 * different hosts, as in a real fleet. */
static const struct sched_resources shapes[] = {
    {32, 131072, 2000}, {64, 262144, 4000}, {96, 393216, 6000},
    {16, 65536, 1000},  {64, 262144, 500},
};
#define NSHAPES (sizeof(shapes) / sizeof(shapes[0]))

/* About 4 GiB per vcpu, like the hosts, so no dimension is idle. */
static const struct sched_resources sizes_req[] = {
    {1, 2048, 10},
    {2, 8192, 20},
    {4, 16384, 40},
    {8, 32768, 80},
};
#define NREQ (sizeof(sizes_req) / sizeof(sizes_req[0]))

static const char *const selectors[] = {
    "",
    "",
    "",
    "zone=z1",
    "ssd=true",
    "zone in (z0,z2)",
    "zone=z3,ssd=true",
    "rack notin (r0,r1,r2)",
    "ssd!=true",
};
#define NSEL (sizeof(selectors) / sizeof(selectors[0]))

#define NSERVICES 200

struct service {
    struct sched_request req;
};

struct live {
    uint64_t host;
    uint32_t svc;
};

static struct sched_cluster *
build_cluster(size_t n, uint64_t seed, double *build_ms,
              struct sched_resources *ready_total)
{
    struct rng r = {seed};
    struct sched_cluster *c = sched_cluster_new();
    size_t nracks = n / 40 + 1;
    memset(ready_total, 0, sizeof(*ready_total));
    uint64_t t0 = now_ns();
    for (size_t i = 0; i < n; i++) {
        char name[32], zone[16], rack[24], ssd[16];
        snprintf(name, sizeof(name), "host-%05zu", i);
        snprintf(zone, sizeof(zone), "zone=z%u", rng_below(&r, 4));
        snprintf(rack, sizeof(rack), "rack=r%u",
                 rng_below(&r, (uint32_t)nracks));
        snprintf(ssd, sizeof(ssd), "ssd=%s",
                 rng_below(&r, 2) ? "true" : "false");
        const char *labels[] = {zone, rack, ssd};
        uint32_t st = rng_below(&r, 100);
        struct sched_host_spec spec = {
            .id = i + 1,
            .name = name,
            .capacity = shapes[rng_below(&r, NSHAPES)],
            .labels = labels,
            .nlabels = 3,
            .state =
                st < 97 ? SCHED_HOST_READY : (enum sched_host_state)(st - 96),
            .hypervisor = rng_below(&r, 10) ? "kvm" : "xen",
        };
        if (sched_host_add(c, &spec) < 0) {
            fprintf(stderr, "sched-bench: %s\n", sched_error(c));
            exit(1);
        }
        if (spec.state == SCHED_HOST_READY) {
            ready_total->vcpus += spec.capacity.vcpus;
            ready_total->memory_mib += spec.capacity.memory_mib;
            ready_total->disk_gib += spec.capacity.disk_gib;
        }
    }
    *build_ms = (double)(now_ns() - t0) / 1e6;
    return c;
}

static int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

struct run_stats {
    size_t ok, failed, calls;
    uint64_t total_ns;
    uint64_t p50, p99, max;
};

/*
 * Fills the cluster to about half its memory, then keeps it there: before
 * each further placement a random live instance ends. Every sched_place()
 * call is timed, failures included (they pay for their explanation).
 */
static void
run_workload(struct sched_cluster *c, size_t nhosts, size_t ops, uint64_t seed,
             const struct sched_resources *total, struct run_stats *st)
{
    struct rng r = {seed ^ 0xabcdef};
    struct service *svcs = xcalloc(NSERVICES, sizeof(*svcs));
    struct sched_selector *sels[NSEL];
    for (size_t i = 0; i < NSEL; i++) {
        sels[i] = sched_selector_parse(c, selectors[i]);
        if (sels[i] == NULL) {
            fprintf(stderr, "sched-bench: %s\n", sched_error(c));
            exit(1);
        }
    }
    struct sched_resources sum = {0, 0, 0};
    for (size_t i = 0; i < NSERVICES; i++) {
        struct sched_request *q = &svcs[i].req;
        q->res = sizes_req[rng_below(&r, NREQ)];
        q->selector = sels[rng_below(&r, NSEL)];
        q->hypervisor = rng_below(&r, 10) == 0 ? "kvm" : NULL;
        q->strategy = rng_below(&r, 10) < 7 ? SCHED_BINPACK : SCHED_SPREAD;
        q->service.id = i + 1;
        uint32_t aa = rng_below(&r, 10);
        q->max_per_host = aa < 5 ? 0 : aa < 8 ? 1 : 2;
        sum.vcpus += q->res.vcpus;
        sum.memory_mib += q->res.memory_mib;
        sum.disk_gib += q->res.disk_gib;
    }
    /* half of what the binding dimension allows for the average request */
    double fv = (double)total->vcpus * NSERVICES / sum.vcpus;
    double fm = (double)total->memory_mib * NSERVICES / (double)sum.memory_mib;
    double fd = (double)total->disk_gib * NSERVICES / (double)sum.disk_gib;
    double fmin = fv < fm ? fv : fm;
    size_t target = (size_t)((fmin < fd ? fmin : fd) / 2);
    size_t fill = target, max_calls = fill + ops;
    (void)nhosts;
    uint64_t *lat = xcalloc(max_calls, sizeof(*lat));
    struct live *lv = xcalloc(target + 1, sizeof(*lv));
    size_t nlive = 0;
    memset(st, 0, sizeof(*st));
    for (size_t i = 0; i < max_calls; i++) {
        if (i >= fill && nlive > 0) {
            size_t k = rng_below(&r, (uint32_t)nlive);
            struct service *s = &svcs[lv[k].svc];
            if (sched_release(c, lv[k].host, &s->req.res, &s->req.service) <
                0) {
                fprintf(stderr, "sched-bench: %s\n", sched_error(c));
                exit(1);
            }
            lv[k] = lv[--nlive];
        }
        uint32_t si = rng_below(&r, NSERVICES);
        struct sched_placement pl;
        uint64_t t0 = now_ns();
        int rc = sched_place(c, &svcs[si].req, 0, &pl);
        uint64_t dt = now_ns() - t0;
        lat[st->calls++] = dt;
        st->total_ns += dt;
        if (rc == 0) {
            st->ok++;
            if (nlive <= target)
                lv[nlive++] = (struct live){pl.host_id, si};
        } else {
            st->failed++;
        }
    }
    qsort(lat, st->calls, sizeof(*lat), cmp_u64);
    st->p50 = lat[st->calls / 2];
    st->p99 = lat[st->calls * 99 / 100];
    st->max = lat[st->calls - 1];
    free(lat);
    free(lv);
    for (size_t i = 0; i < NSEL; i++)
        sched_selector_free(sels[i]);
    free(svcs);
}

static double
ideal_count(const struct sched_resources *total,
            const struct sched_resources *req)
{
    double v = (double)total->vcpus / req->vcpus;
    double m = (double)total->memory_mib / (double)req->memory_mib;
    double d = (double)total->disk_gib / (double)req->disk_gib;
    double x = v < m ? v : m;
    return x < d ? x : d;
}

/* What the hosts could hold one by one: sum of min over dimensions. The
 * cluster-wide ideal ignores that dimensions bind on different hosts. */
static size_t
per_host_bound(struct sched_cluster *c, size_t n,
               const struct sched_resources *req)
{
    size_t sum = 0;
    for (size_t id = 1; id <= n; id++) {
        struct sched_host_info hi;
        if (sched_host_get(c, id, &hi) < 0 || hi.state != SCHED_HOST_READY)
            continue;
        uint64_t v = hi.capacity.vcpus / req->vcpus;
        uint64_t m = hi.capacity.memory_mib / req->memory_mib;
        uint64_t d = hi.capacity.disk_gib / req->disk_gib;
        uint64_t x = v < m ? v : m;
        sum += x < d ? x : d;
    }
    return sum;
}

/* Places identical instances until the first failure. */
static size_t
fill_until_failure(size_t n, uint64_t seed, enum sched_strategy strategy,
                   const struct sched_resources *req_res, double *ideal,
                   size_t *bound)
{
    double ms;
    struct sched_resources total;
    struct sched_cluster *c = build_cluster(n, seed, &ms, &total);
    *bound = per_host_bound(c, n, req_res);
    struct sched_request req = {.res = *req_res, .strategy = strategy};
    struct sched_placement pl;
    size_t placed = 0;
    while (sched_place(c, &req, SCHED_NO_EXPLAIN, &pl) == 0)
        placed++;
    *ideal = ideal_count(&total, req_res);
    sched_cluster_free(c);
    return placed;
}

/* Mixed shapes, binpack, until the first failure; reports how much of
 * each dimension of the ready hosts is then allocated. */
static void
fill_mixed(size_t n, uint64_t seed, size_t *placed_out, double share[3])
{
    double ms;
    struct sched_resources total;
    struct sched_cluster *c = build_cluster(n, seed, &ms, &total);
    struct rng r = {seed ^ 0x5151};
    struct sched_resources used = {0, 0, 0};
    size_t placed = 0;
    struct sched_placement pl;
    for (;;) {
        struct sched_request req = {.res = sizes_req[rng_below(&r, NREQ)]};
        if (sched_place(c, &req, SCHED_NO_EXPLAIN, &pl) < 0)
            break;
        used.vcpus += req.res.vcpus;
        used.memory_mib += req.res.memory_mib;
        used.disk_gib += req.res.disk_gib;
        placed++;
    }
    sched_cluster_free(c);
    *placed_out = placed;
    share[0] = (double)used.vcpus / total.vcpus;
    share[1] = (double)used.memory_mib / (double)total.memory_mib;
    share[2] = (double)used.disk_gib / (double)total.disk_gib;
}

static void
bench_size(size_t n, size_t ops, uint64_t seed)
{
    double build_ms;
    struct sched_resources total;
    struct sched_cluster *c = build_cluster(n, seed, &build_ms, &total);
    printf("## %zu hosts (%zu ready)\n", n, sched_host_ready_count(c));
    printf("build: %.1f ms (%.0f hosts/s)\n", build_ms,
           build_ms > 0 ? (double)n / (build_ms / 1e3) : 0.0);

    struct run_stats st;
    run_workload(c, n, ops, seed, &total, &st);
    double secs = (double)st.total_ns / 1e9;
    printf("workload: %zu placements (%zu ok, %zu failed) in %.3f s: "
           "%.0f placements/s\n",
           st.calls, st.ok, st.failed, secs,
           secs > 0 ? (double)st.calls / secs : 0.0);
    printf("latency: p50 %.2f us, p99 %.2f us, max %.1f us\n",
           (double)st.p50 / 1e3, (double)st.p99 / 1e3, (double)st.max / 1e3);
    sched_cluster_free(c);

    static const struct sched_resources uniform = {2, 8192, 40};
    for (int s = 0; s < 2; s++) {
        double ideal;
        size_t bound;
        enum sched_strategy strat = s ? SCHED_SPREAD : SCHED_BINPACK;
        size_t p = fill_until_failure(n, seed, strat, &uniform, &ideal, &bound);
        printf("density %-7s {2 vcpu, 8192 MiB, 40 GiB}: %zu placed / %.0f "
               "ideal = %.1f%% (per-host bound %zu = %.1f%%)\n",
               sched_strategy_name(strat), p, ideal, 100.0 * (double)p / ideal,
               bound, 100.0 * (double)bound / ideal);
    }
    size_t p;
    double share[3];
    fill_mixed(n, seed, &p, share);
    printf("density binpack mixed shapes: %zu placed; allocated %.1f%% vcpus, "
           "%.1f%% memory, %.1f%% disk\n\n",
           p, 100.0 * share[0], 100.0 * share[1], 100.0 * share[2]);
}

static int
parse_size(const char *s, size_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || (*end != '\0' && *end != ',') || v == 0)
        return -1;
    *out = (size_t)v;
    return 0;
}

static void
usage(void)
{
    fprintf(stderr, "usage: sched-bench [--sizes N[,N...]] [--ops N] "
                    "[--seed S]\n");
    exit(2);
}

int
main(int argc, char **argv)
{
    size_t sizes[16] = {100, 1000, 10000, 50000};
    size_t nsizes = 4, ops = 200000;
    uint64_t seed = 42;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc)
            usage();
        const char *v = argv[++i];
        if (strcmp(argv[i - 1], "--sizes") == 0) {
            nsizes = 0;
            for (const char *p = v; *p && nsizes < 16;) {
                if (parse_size(p, &sizes[nsizes++]) < 0)
                    usage();
                p = strchr(p, ',');
                p = p ? p + 1 : "";
            }
        } else if (strcmp(argv[i - 1], "--ops") == 0) {
            if (parse_size(v, &ops) < 0)
                usage();
        } else if (strcmp(argv[i - 1], "--seed") == 0) {
            size_t s;
            if (parse_size(v, &s) < 0)
                usage();
            seed = s;
        } else {
            usage();
        }
    }
    printf("# sched-bench: seed %" PRIu64 ", %zu steady-state placements per "
           "size after filling half the cluster\n\n",
           seed, ops);
    for (size_t i = 0; i < nsizes; i++)
        bench_size(sizes[i], ops, seed);
    return 0;
}
