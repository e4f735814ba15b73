/*
 * decide_bench: what the reconciler's decision step costs on the leader's
 * event loop (controller/reconcile_decide.c), without a database. Builds a
 * mirror of HOSTS ready hosts (256 GiB, 64 vCPUs or twice the even share)
 * and SERVICES services of REPLICAS pending instances each (rows shaped as
 * ST_REC_* returns them, made with libpq's PQsetvalue), then runs passes as
 * the reconciler does: decide, release the tentative placements, and apply
 * each placed instance's re-read row (scheduled on its host), until nothing
 * is left to place. One pass decides at most 1,000 operations, so 100,000
 * instances take 100 passes; what each pass costs is time the loop cannot
 * serve anything else (API reads, desired sets, status reports).
 *
 *   decide_bench HOSTS SERVICES REPLICAS
 *   e.g. decide_bench 1000 10 10000
 *
 * Prints one line per run: passes, placements, decide time per pass
 * (median, max), microseconds per decision, and the time applying the
 * re-read rows took. Figures only; it fails only when placement stalls.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "mem.h"
#include "pgrow.h"
#include "reconcile_priv.h"
#include "store.h"

#define NOW 1000000000LL

static long long
now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* A result of one row of n text columns (NULL: SQL NULL). */
static PGresult *
row(int n, const char *const *v)
{
    PGresult *res = pgrow_make(n, v);

    if (res == NULL)
        abort();
    return res;
}

static void
add_host(struct reconciler *r, const char *id, int vcpus)
{
    char nv[16];
    const char *v[REC_HOSTS__NCOLS];
    PGresult *res;

    snprintf(nv, sizeof(nv), "%d", vcpus);
    v[REC_HOSTS_ID] = id;
    v[REC_HOSTS_NAME] = id;
    v[REC_HOSTS_STATE] = "ready";
    v[REC_HOSTS_VERSION] = "1";
    v[REC_HOSTS_VCPUS] = nv;
    v[REC_HOSTS_MEMORY_MIB] = "262144";
    v[REC_HOSTS_DISK_GIB] = "10000";
    v[REC_HOSTS_HYPERVISOR] = "qemu";
    v[REC_HOSTS_LABELS] = "";
    v[REC_HOSTS_SESSION_EPOCH] = "1";
    res = row(REC_HOSTS__NCOLS, v);
    host_apply(r, res, 0);
    PQclear(res);
}

static void
add_service(struct reconciler *r, const char *id, int replicas)
{
    char n[16];
    const char *v[REC_SERVICES__NCOLS];
    PGresult *res;

    snprintf(n, sizeof(n), "%d", replicas);
    v[REC_SERVICES_ID] = id;
    v[REC_SERVICES_NAME] = id;
    v[REC_SERVICES_STATE] = "active";
    v[REC_SERVICES_VERSION] = "1";
    v[REC_SERVICES_REPLICAS] = n;
    v[REC_SERVICES_GENERATION] = "1";
    v[REC_SERVICES_MAX_UNAVAILABLE] = "1";
    v[REC_SERVICES_MAX_SURGE] = "1";
    v[REC_SERVICES_RESTART] = "always";
    res = row(REC_SERVICES__NCOLS, v);
    svc_apply(r, res, 0);
    PQclear(res);
}

/* An instance's row: pending and unplaced, or scheduled on host. */
static void
put_instance(struct reconciler *r, const char *id, const char *svc,
             int ordinal, long long version, const char *host)
{
    char ord[16], ver[24], cr[24];
    const char *v[REC_INSTANCES__NCOLS];
    PGresult *res;

    snprintf(ord, sizeof(ord), "%d", ordinal);
    snprintf(ver, sizeof(ver), "%lld", version);
    snprintf(cr, sizeof(cr), "%lld", NOW - 100000 + ordinal);
    v[REC_INSTANCES_ID] = id;
    v[REC_INSTANCES_NAME] = id;
    v[REC_INSTANCES_SERVICE_ID] = svc;
    v[REC_INSTANCES_ORDINAL] = ord;
    v[REC_INSTANCES_GENERATION] = "1";
    v[REC_INSTANCES_STATE] = host ? "scheduled" : "pending";
    v[REC_INSTANCES_DESIRED_STATE] = "running";
    v[REC_INSTANCES_HOST_ID] = host;
    v[REC_INSTANCES_VCPUS] = "1";
    v[REC_INSTANCES_MEMORY_MIB] = "64";
    v[REC_INSTANCES_DISK_GIB] = "1";
    v[REC_INSTANCES_RESTART] = "always";
    v[REC_INSTANCES_CONSTRAINTS] = "";
    v[REC_INSTANCES_STRATEGY] = "spread";
    v[REC_INSTANCES_MAX_PER_HOST] = "0";
    v[REC_INSTANCES_EXIT_CODE] = NULL;
    v[REC_INSTANCES_RESTART_COUNT] = "0";
    v[REC_INSTANCES_NEXT_RESTART_MS] = "0";
    v[REC_INSTANCES_FINISHED_MS] = "0";
    v[REC_INSTANCES_CREATED_MS] = cr;
    v[REC_INSTANCES_PENDING_REASON] = NULL;
    v[REC_INSTANCES_VERSION] = ver;
    res = row(REC_INSTANCES__NCOLS, v);
    inst_apply(r, res, 0);
    PQclear(res);
}

/* What reconcile_loop.c does when a batch returns: the model forgets the
 * pass's tentative placements (the re-read rows count them for real). */
static void
release_tentative(struct reconciler *r, struct pass *p)
{
    for (size_t k = 0; k < p->ntent; k++) {
        struct sched_service svc = {.name = p->tent[k].svc, .id = 0};

        (void)sched_release(r->model, p->tent[k].sid, &p->tent[k].res,
                            p->tent[k].svc ? &svc : NULL);
        free(p->tent[k].svc);
    }
    free(p->tent);
    p->tent = NULL;
    p->ntent = p->captent = 0;
}

/* A positive count from the command line, or -1. */
static int
count_arg(const char *s)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    return errno || end == s || *end || v < 1 || v > 10000000 ? -1 : (int)v;
}

static int
cmp_ll(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return x < y ? -1 : x > y;
}

int
main(int argc, char **argv)
{
    struct reconciler r;
    struct pass p;
    int nhosts, nsvc, replicas, total, placed = 0;
    long long *pass_us = NULL, decide_us = 0, apply_us = 0, ndec = 0;
    size_t npass = 0, cappass = 0;
    char id[64], svc[32];

    if (argc != 4 || (nhosts = count_arg(argv[1])) < 1 ||
        (nsvc = count_arg(argv[2])) < 1 || (replicas = count_arg(argv[3])) < 1) {
        fprintf(stderr, "usage: decide_bench HOSTS SERVICES REPLICAS\n");
        return 2;
    }
    total = nsvc * replicas;
    memset(&r, 0, sizeof(r));
    memset(&p, 0, sizeof(p));
    strmap_init(&r.hosts);
    strmap_init(&r.svcs);
    strmap_init(&r.insts);
    strmap_init(&r.sgrps);
    for (int k = 0; k < K__COUNT; k++) {
        strmap_init(&r.dec[k]);
        strmap_init(&r.dirty[k]);
    }
    strmap_init(&r.waiting);
    strmap_init(&r.timed);
    r.model = sched_cluster_new();
    for (int h = 0; h < nhosts; h++) {
        snprintf(id, sizeof(id), "host-%05d", h);
        /* room for twice the even share, as scale_bench.sh gives */
        add_host(&r, id, 2 * total / nhosts > 64 ? 2 * total / nhosts : 64);
    }
    for (int s = 0; s < nsvc; s++) {
        snprintf(svc, sizeof(svc), "svc-%03d", s);
        add_service(&r, svc, replicas);
        for (int k = 0; k < replicas; k++) {
            snprintf(id, sizeof(id), "%s-%06d", svc, k);
            put_instance(&r, id, svc, k, 1, NULL);
        }
    }
    r.full_decide = 1; /* as after a load */

    while (placed < total) {
        json_t *ops, *o;
        size_t k;
        long long t0 = now_us(), t1;
        int n = 0;

        p.serial++;
        ops = reconcile_decide(&r, &p, NOW);
        t1 = now_us();
        if (npass == cappass) {
            cappass = cappass ? cappass * 2 : 256;
            pass_us = xrealloc(pass_us, cappass * sizeof(*pass_us));
        }
        pass_us[npass++] = t1 - t0;
        decide_us += t1 - t0;
        ndec += (long long)json_array_size(ops);
        release_tentative(&r, &p);
        json_array_foreach(ops, k, o) {
            const char *op = json_string_value(json_object_get(o, "op"));
            const char *iid = json_string_value(json_object_get(o, "id"));
            struct rinst *i;

            if (strcmp(op, "place") != 0)
                continue;
            i = strmap_get(&r.insts, iid);
            put_instance(&r, iid, i->svc_id, i->ordinal, i->version + 1,
                         json_string_value(json_object_get(o, "host")));
            n++;
        }
        apply_us += now_us() - t1;
        json_decref(ops);
        placed += n;
        if (n == 0) {
            fprintf(stderr, "decide_bench: pass %zu placed nothing, %d of %d "
                    "placed\n", npass, placed, total);
            return 1;
        }
    }
    qsort(pass_us, npass, sizeof(*pass_us), cmp_ll);
    printf("decide: %d services of %d on %d hosts: %zu passes, %d placed; "
           "decide per pass median %.1f ms, max %.1f ms, all %.0f ms "
           "(%.1f us per decision); applying re-reads %.0f ms\n",
           nsvc, replicas, nhosts, npass, placed,
           pass_us[npass / 2] / 1000.0, pass_us[npass - 1] / 1000.0,
           decide_us / 1000.0, ndec ? (double)decide_us / (double)ndec : 0.0,
           apply_us / 1000.0);
    free(pass_us);
    mirror_clear_x(&r, 0);
    for (int k = 0; k < K__COUNT; k++) {
        idset_clear(&r.dec[k]);
        strmap_fini(&r.dec[k]);
        strmap_fini(&r.dirty[k]);
    }
    idset_clear(&r.waiting);
    idset_clear(&r.timed);
    strmap_fini(&r.waiting);
    strmap_fini(&r.timed);
    return 0;
}
