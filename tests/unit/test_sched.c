/*
 * Unit tests of the scheduler library: every filter, both strategies,
 * anti-affinity, batches, explanations of failures, the selector parser and
 * incremental updates of the model.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "mem.h"
#include "cloudsched.h"
#include "sched_priv.h"

static const struct sched_resources small = {1, 1024, 10};

static void
add_host_full(struct sched_cluster *c, uint64_t id, uint32_t vcpus,
              uint64_t mem, uint64_t disk, const char *labels,
              enum sched_host_state state, const char *hv)
{
    char name[32], buf[256];
    const char *lv[8];
    size_t n = 0;
    snprintf(name, sizeof(name), "h%03llu", (unsigned long long)id);
    if (labels != NULL) {
        xstrlcpy(buf, labels, sizeof(buf));
        for (char *save = NULL, *t = strtok_r(buf, " ", &save); t && n < 8;
             t = strtok_r(NULL, " ", &save))
            lv[n++] = t;
    }
    struct sched_host_spec spec = {
        .id = id,
        .name = name,
        .capacity = {vcpus, mem, disk},
        .labels = lv,
        .nlabels = n,
        .state = state,
        .hypervisor = hv ? hv : "kvm",
    };
    assert_int_equal(sched_host_add(c, &spec), 0);
}

static void
add_host(struct sched_cluster *c, uint64_t id, uint64_t mem, const char *labels)
{
    add_host_full(c, id, 16, mem, 100, labels, SCHED_HOST_READY, "kvm");
}

static uint64_t
place(struct sched_cluster *c, const struct sched_request *req)
{
    struct sched_placement pl;
    if (sched_place(c, req, 0, &pl) < 0)
        return 0;
    assert_int_equal(sched_cluster_check(c), 0);
    return pl.host_id;
}

static void
test_binpack_best_fit(void **state)
{
    (void)state;
    struct sched_cluster *c = sched_cluster_new();
    add_host(c, 1, 8192, NULL);
    add_host(c, 2, 2048, NULL);
    add_host(c, 3, 4096, NULL);
    add_host(c, 4, 1024, NULL);
    struct sched_request req = {.res = {1, 1500, 1}};
    /* host 4 is too small; host 2 is the tightest fit */
    assert_int_equal(place(c, &req), 2);
    /* host 2 now has 548 MiB free: the next tightest is 3 */
    assert_int_equal(place(c, &req), 3);
    assert_int_equal(place(c, &req), 3);
    assert_int_equal(place(c, &req), 1);
    sched_cluster_free(c);
}

static void
test_binpack_tie_lowest_id(void **state)
{
    (void)state;
    struct sched_cluster *c = sched_cluster_new();
    add_host(c, 7, 4096, NULL);
    add_host(c, 3, 4096, NULL);
    add_host(c, 5, 4096, NULL);
    struct sched_request req = {.res = small};
    assert_int_equal(place(c, &req), 3);
    assert_int_equal(place(c, &req), 3);
    sched_cluster_free(c);
}

static void
test_spread(void **state)
{
    (void)state;
    struct sched_cluster *c = sched_cluster_new();
    add_host(c, 1, 8192, NULL);
    add_host(c, 2, 4096, NULL);
    add_host(c, 3, 4096, NULL);
    struct sched_request req = {
        .res = small, .strategy = SCHED_SPREAD, .service = {.name = "web"}};
    /* fewest instances of the service first, then most free memory */
    assert_int_equal(place(c, &req), 1);
    assert_int_equal(place(c, &req), 3); /* tie 2/3: highest id */
    assert_int_equal(place(c, &req), 2);
    /* every host has one: host 1 still has the most free memory */
    assert_int_equal(place(c, &req), 1);
    uint32_t n;
    struct sched_service web = {.name = "web"};
    assert_int_equal(sched_service_count(c, 1, &web, &n), 0);
    assert_int_equal(n, 2);
    /* another service does not care about web's counts */
    struct sched_request db = {
        .res = small, .strategy = SCHED_SPREAD, .service = {.id = 42}};
    assert_int_equal(place(c, &db), 1);
    sched_cluster_free(c);
}

static void
test_spread_without_service(void **state)
{
    (void)state;
    struct sched_cluster *c = sched_cluster_new();
    add_host(c, 1, 2048, NULL);
    add_host(c, 2, 4096, NULL);
    struct sched_request req = {.res = small, .strategy = SCHED_SPREAD};
    assert_int_equal(place(c, &req), 2);
    assert_int_equal(place(c, &req), 2); /* 3072 > 2048 */
    assert_int_equal(place(c, &req), 2); /* 2048 tie: highest id */
    assert_int_equal(place(c, &req), 1);
    sched_cluster_free(c);
}

static void
test_filter_resources(void **state)
{
    (void)state;
    struct sched_cluster *c = sched_cluster_new();
    add_host_full(c, 1, 1, 8192, 100, NULL, SCHED_HOST_READY, "kvm");
    add_host_full(c, 2, 8, 8192, 5, NULL, SCHED_HOST_READY, "kvm");
    add_host_full(c, 3, 8, 512, 100, NULL, SCHED_HOST_READY, "kvm");
    add_host_full(c, 4, 8, 8192, 100, NULL, SCHED_HOST_READY, "kvm");
    struct sched_request req = {.res = {2, 1024, 10}};
    assert_int_equal(place(c, &req), 4);
    req.res = (struct sched_resources){2, 1024, 1000};
    assert_int_equal(place(c, &req), 0);
    assert_string_equal(sched_error(c), "0/4 hosts fit: 2 insufficient disk, "
                                        "1 insufficient memory, 1 insufficient "
                                        "vcpus");
    sched_cluster_free(c);
}

static void
test_filter_state(void **state)
{
    (void)state;
    struct sched_cluster *c = sched_cluster_new();
    add_host_full(c, 1, 8, 8192, 100, NULL, SCHED_HOST_CORDONED, "kvm");
    add_host_full(c, 2, 8, 8192, 100, NULL, SCHED_HOST_DRAINING, "kvm");
    add_host_full(c, 3, 8, 8192, 100, NULL, SCHED_HOST_DOWN, "kvm");
    add_host_full(c, 4, 8, 8192, 100, NULL, SCHED_HOST_DOWN, "kvm");
    struct sched_request req = {.res = small};
    assert_int_equal(place(c, &req), 0);
    assert_string_equal(sched_error(c),
                        "0/4 hosts fit: 2 down, 1 cordoned, 1 draining");
    assert_int_equal(sched_host_ready_count(c), 0);
    assert_int_equal(sched_host_set_state(c, 2, SCHED_HOST_READY), 0);
    assert_int_equal(place(c, &req), 2);
    assert_int_equal(sched_host_set_state(c, 2, SCHED_HOST_CORDONED), 0);
    assert_int_equal(place(c, &req), 0);
    assert_int_equal(sched_host_set_state(c, 9, SCHED_HOST_READY), -1);
    assert_string_equal(sched_error(c), "host 9: no such host");
    sched_cluster_free(c);
}

static void
test_filter_hypervisor(void **state)
{
    (void)state;
    struct sched_cluster *c = sched_cluster_new();
    add_host_full(c, 1, 8, 2048, 100, NULL, SCHED_HOST_READY, "kvm");
    add_host_full(c, 2, 8, 8192, 100, NULL, SCHED_HOST_READY, "xen");
    add_host_full(c, 3, 8, 8192, 100, NULL, SCHED_HOST_READY, "qemu");
    struct sched_request req = {.res = small, .hypervisor = "xen"};
    assert_int_equal(place(c, &req), 2);
    req.hypervisor = "kvm";
    assert_int_equal(place(c, &req), 1);
    req.hypervisor = "";
    assert_int_equal(place(c, &req), 1); /* any: tightest fit */
    req.hypervisor = "test";
    assert_int_equal(place(c, &req), 0);
    assert_string_equal(sched_error(c), "0/3 hosts fit: 3 hypervisor not test");
    struct sched_host_info info;
    assert_int_equal(sched_host_get(c, 3, &info), 0);
    assert_string_equal(info.hypervisor, "qemu");
    assert_string_equal(info.name, "h003");
    sched_cluster_free(c);
}

static struct sched_selector *
sel(struct sched_cluster *c, const char *text)
{
    struct sched_selector *s = sched_selector_parse(c, text);
    if (s == NULL)
        fail_msg("%s", sched_error(c));
    return s;
}

static void
test_filter_labels(void **state)
{
    (void)state;
    struct sched_cluster *c = sched_cluster_new();
    add_host(c, 1, 4096, "zone=a ssd=true");
    add_host(c, 2, 4096, "zone=b ssd=false");
    add_host(c, 3, 4096, "zone=c");
    add_host(c, 4, 8192, "zone=b ssd=true rack=r1");
    struct sched_request req = {.res = small};

    req.selector = sel(c, "zone=b");
    assert_int_equal(place(c, &req), 2);
    sched_selector_free((struct sched_selector *)req.selector);

    req.selector = sel(c, "zone==b,ssd=true");
    assert_int_equal(place(c, &req), 4);
    sched_selector_free((struct sched_selector *)req.selector);

    /* a host without the key passes != and notin */
    req.selector = sel(c, "ssd!=false, zone notin (a)");
    assert_int_equal(place(c, &req), 3);
    sched_selector_free((struct sched_selector *)req.selector);

    req.selector = sel(c, "zone in (c, a)");
    assert_int_equal(place(c, &req), 3); /* 3072 free beats 4096 */
    sched_selector_free((struct sched_selector *)req.selector);

    /* a value no host has yet is interned, and matches a later host */
    req.selector = sel(c, "zone=d");
    assert_int_equal(place(c, &req), 0);
    assert_string_equal(sched_error(c), "0/4 hosts fit: 4 label zone=d");
    add_host(c, 5, 4096, "zone=d");
    assert_int_equal(place(c, &req), 5);
    sched_selector_free((struct sched_selector *)req.selector);

    /* the first failing requirement is the reason reported */
    req.selector = sel(c, "zone in (a,b),rack=r1");
    assert_int_equal(place(c, &req), 4);
    req.res.memory_mib = 7000;
    assert_int_equal(place(c, &req), 0);
    assert_string_equal(sched_error(c),
                        "0/5 hosts fit: 2 label zone in (a,b), 2 label "
                        "rack=r1, 1 insufficient memory");
    sched_selector_free((struct sched_selector *)req.selector);
    sched_cluster_free(c);
}

static void
test_selector_parse(void **state)
{
    (void)state;
    struct sched_cluster *c = sched_cluster_new();
    static const struct {
        const char *in, *canon;
    } ok[] = {
        {"", ""},
        {"  ", ""},
        {"zone=a", "zone=a"},
        {" zone = a ", "zone=a"},
        {"zone==a,ssd!=true", "zone=a,ssd!=true"},
        {"zone in (a,b, c)", "zone in (a,b,c)"},
        {"zone in(a,a)", "zone in (a)"},
        {"topology.io/rack notin ( r1 , r2 )",
         "topology.io/rack notin (r1,r2)"},
        {"img=reg:5000", "img=reg:5000"},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        struct sched_selector *s = sched_selector_parse(c, ok[i].in);
        if (s == NULL)
            fail_msg("%s: %s", ok[i].in, sched_error(c));
        assert_string_equal(sched_selector_text(s), ok[i].canon);
        sched_selector_free(s);
    }
    static const struct {
        const char *in, *err;
    } bad[] = {
        {"zone=", "selector \"zone=\": expected a label value at column 6"},
        {"=a", "selector \"=a\": expected a label key at column 1"},
        {"zone", "selector \"zone\": expected '=', '!=', 'in' or 'notin' at "
                 "column 5"},
        {"zone is (a)", "selector \"zone is (a)\": expected '=', '!=', 'in' "
                        "or 'notin' at column 6"},
        {"zone in a", "selector \"zone in a\": expected '(' after in/notin at "
                      "column 9"},
        {"zone in (a,", "selector \"zone in (a,\": expected a label value at "
                        "column 12"},
        {"zone in (a b)", "selector \"zone in (a b)\": expected ',' or ')' in "
                          "value list at column 12"},
        {"zone in ()", "selector \"zone in ()\": expected a label value at "
                       "column 10"},
        {"zone=a ssd=b", "selector \"zone=a ssd=b\": expected ',' between "
                         "requirements at column 8"},
        {"zone=a,", "selector \"zone=a,\": expected a requirement after ',' "
                    "at column 8"},
        {"zone=a$", "selector \"zone=a$\": expected ',' between requirements "
                    "at column 7"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_null(sched_selector_parse(c, bad[i].in));
        assert_string_equal(sched_error(c), bad[i].err);
    }
    assert_int_equal(c->nselectors, 0);
    sched_cluster_free(c);
}

static void
test_host_labels_invalid(void **state)
{
    (void)state;
    struct sched_cluster *c = sched_cluster_new();
    const char *dup[] = {"zone=a", "zone=b"};
    struct sched_host_spec spec = {
        .id = 1, .name = "h1", .labels = dup, .nlabels = 2};
    assert_int_equal(sched_host_add(c, &spec), -1);
    assert_string_equal(sched_error(c), "label \"zone=b\": key given twice");
    const char *bad[] = {"zone"};
    spec.labels = bad;
    spec.nlabels = 1;
    assert_int_equal(sched_host_add(c, &spec), -1);
    assert_string_equal(sched_error(c), "label \"zone\": expected key=value");
    const char *bad2[] = {"zo ne=a"};
    spec.labels = bad2;
    assert_int_equal(sched_host_add(c, &spec), -1);
    assert_string_equal(sched_error(c),
                        "label \"zo ne=a\": invalid character ' ' in key");
    assert_int_equal(sched_host_count(c), 0);
    spec.nlabels = 0;
    assert_int_equal(sched_host_add(c, &spec), 0);
    assert_int_equal(sched_host_add(c, &spec), -1);
    assert_string_equal(sched_error(c), "host 1: already exists");
    sched_cluster_free(c);
}

static void
test_anti_affinity(void **state)
{
    (void)state;
    struct sched_cluster *c = sched_cluster_new();
    add_host(c, 1, 8192, NULL);
    add_host(c, 2, 8192, NULL);
    add_host(c, 3, 8192, NULL);
    struct sched_request req = {
        .res = small, .service = {.name = "db"}, .max_per_host = 1};
    /* strict: binpack would stack them, anti-affinity forbids it */
    assert_int_equal(place(c, &req), 1);
    assert_int_equal(place(c, &req), 2);
    assert_int_equal(place(c, &req), 3);
    assert_int_equal(place(c, &req), 0);
    assert_string_equal(sched_error(c),
                        "0/3 hosts fit: 3 anti-affinity (max 1 per host)");
    /* an instance ends: its host takes one again */
    struct sched_service db = {.name = "db"};
    assert_int_equal(sched_release(c, 2, &small, &db), 0);
    assert_int_equal(place(c, &req), 2);
    /* max 2 */
    req.max_per_host = 2;
    assert_int_equal(place(c, &req), 1);
    assert_int_equal(place(c, &req), 2);
    assert_int_equal(place(c, &req), 3);
    assert_int_equal(place(c, &req), 0);
    /* counts loaded at start count too */
    struct sched_service other = {.id = 5};
    assert_int_equal(sched_service_adjust(c, 3, &other, 1), 0);
    struct sched_request r2 = {
        .res = small, .service = other, .max_per_host = 1};
    assert_int_equal(place(c, &r2), 1);
    assert_int_equal(place(c, &r2), 2);
    assert_int_equal(place(c, &r2), 0);
    assert_int_equal(sched_service_adjust(c, 3, &other, -2), -1);
    sched_cluster_free(c);
}

static void
test_batch(void **state)
{
    (void)state;
    struct sched_cluster *c = sched_cluster_new();
    add_host(c, 1, 4096, "zone=a");
    add_host(c, 2, 4096, "zone=b");
    add_host(c, 3, 4096, "zone=a");
    struct sched_request req = {
        .res = {1, 2048, 1}, .service = {.name = "web"}, .max_per_host = 1};
    uint64_t ids[8];
    size_t n;
    assert_int_equal(sched_place_batch(c, &req, 3, 0, ids, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[1], 2);
    assert_int_equal(ids[2], 3);
    /* all or nothing: 4 do not fit, nothing is left behind */
    req.max_per_host = 2;
    struct sched_host_info before, after;
    assert_int_equal(sched_host_get(c, 1, &before), 0);
    assert_int_equal(
        sched_place_batch(c, &req, 4, SCHED_ALL_OR_NOTHING, ids, &n), -1);
    assert_int_equal(n, 0);
    assert_string_equal(sched_error(c), "0/3 hosts fit: 3 insufficient memory");
    assert_int_equal(sched_host_get(c, 1, &after), 0);
    assert_int_equal(before.allocated.memory_mib, after.allocated.memory_mib);
    /* partial: 3 of 4 stay */
    assert_int_equal(sched_place_batch(c, &req, 4, 0, ids, &n), -1);
    assert_int_equal(n, 3);
    assert_int_equal(sched_place_batch(c, &req, 1, 0, ids, &n), -1);
    assert_int_equal(n, 0);
    sched_cluster_free(c);
}

static void
test_batch_dry_run_and_commit(void **state)
{
    (void)state;
    struct sched_cluster *c = sched_cluster_new();
    add_host(c, 1, 4096, NULL);
    add_host(c, 2, 4096, NULL);
    struct sched_request req = {
        .res = {1, 2048, 1}, .max_per_host = 1, .service = {.id = 9}};
    uint64_t ids[2];
    size_t n;
    assert_int_equal(sched_place_batch(c, &req, 2, SCHED_DRY_RUN, ids, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[1], 2);
    struct sched_host_info info;
    assert_int_equal(sched_host_get(c, 1, &info), 0);
    assert_int_equal(info.allocated.memory_mib, 0);
    /* a single dry run does not allocate; the commit does */
    struct sched_placement pl;
    assert_int_equal(sched_place(c, &req, SCHED_DRY_RUN, &pl), 0);
    assert_int_equal(sched_place(c, &req, SCHED_DRY_RUN, &pl), 0);
    assert_int_equal(pl.host_id, 1);
    assert_string_equal(pl.host_name, "h001");
    assert_int_equal(sched_commit(c, &req, pl.host_id), 0);
    assert_int_equal(sched_place(c, &req, SCHED_DRY_RUN, &pl), 0);
    assert_int_equal(pl.host_id, 2);
    assert_int_equal(sched_host_get(c, 1, &info), 0);
    assert_int_equal(info.allocated.memory_mib, 2048);
    sched_cluster_free(c);
}

static void
test_explanation_order_and_flags(void **state)
{
    (void)state;
    struct sched_cluster *c = sched_cluster_new();
    uint64_t id = 1;
    for (int i = 0; i < 300; i++)
        add_host(c, id++, 512, "zone=a");
    for (int i = 0; i < 150; i++)
        add_host(c, id++, 8192, "zone=c");
    for (int i = 0; i < 50; i++)
        add_host_full(c, id++, 16, 8192, 100, "zone=b", SCHED_HOST_CORDONED,
                      "kvm");
    struct sched_request req = {.res = small,
                                .selector = sel(c, "zone in (a,b)")};
    assert_int_equal(place(c, &req), 0);
    assert_string_equal(sched_error(c),
                        "0/500 hosts fit: 300 insufficient memory, 150 label "
                        "zone in (a,b), 50 cordoned");
    struct sched_placement pl;
    assert_int_equal(sched_place(c, &req, SCHED_NO_EXPLAIN, &pl), -1);
    assert_string_equal(sched_error(c), "no host fits the request");
    sched_selector_free((struct sched_selector *)req.selector);

    struct sched_cluster *empty = sched_cluster_new();
    req.selector = NULL;
    assert_int_equal(sched_place(empty, &req, 0, &pl), -1);
    assert_string_equal(sched_error(empty),
                        "0/0 hosts fit: the cluster has no hosts");
    sched_cluster_free(empty);
    sched_cluster_free(c);
}

static void
test_incremental_updates(void **state)
{
    (void)state;
    struct sched_cluster *c = sched_cluster_new();
    add_host(c, 1, 4096, "zone=a");
    add_host(c, 2, 8192, "zone=b");
    struct sched_request req = {.res = small, .selector = sel(c, "zone=a")};
    assert_int_equal(place(c, &req), 1);
    /* relabel: host 2 joins zone a, host 1 leaves it */
    const char *la[] = {"zone=a", "ssd=true"};
    const char *lb[] = {"zone=b"};
    assert_int_equal(sched_host_set_labels(c, 2, la, 2), 0);
    assert_int_equal(sched_host_set_labels(c, 1, lb, 1), 0);
    assert_int_equal(sched_cluster_check(c), 0);
    assert_int_equal(place(c, &req), 2);
    /* a bad label set changes nothing */
    const char *bad[] = {"zone"};
    assert_int_equal(sched_host_set_labels(c, 2, bad, 1), -1);
    assert_int_equal(place(c, &req), 2);
    /* capacity shrinks below the allocation: free is 0, nothing fits */
    struct sched_resources cap = {16, 1024, 100};
    assert_int_equal(sched_host_set_capacity(c, 2, &cap), 0);
    assert_int_equal(place(c, &req), 0);
    assert_string_equal(sched_error(c), "0/2 hosts fit: 1 insufficient "
                                        "memory, 1 label zone=a");
    cap.memory_mib = 65536;
    assert_int_equal(sched_host_set_capacity(c, 2, &cap), 0);
    assert_int_equal(place(c, &req), 2);
    /* release beyond the allocation is refused and changes nothing */
    struct sched_resources huge = {1, 1 << 30, 1};
    assert_int_equal(sched_release(c, 2, &huge, NULL), -1);
    assert_non_null(strstr(sched_error(c), "host h002: releasing"));
    struct sched_service web = {.name = "web"};
    assert_int_equal(sched_release(c, 2, &small, &web), -1);
    assert_string_equal(sched_error(c),
                        "host h002: has no instances of the service");
    /* alloc records facts even beyond capacity */
    struct sched_resources big = {64, 1 << 20, 1000};
    assert_int_equal(sched_alloc(c, 1, &big, &web), 0);
    struct sched_host_info info;
    assert_int_equal(sched_host_get(c, 1, &info), 0);
    assert_int_equal(info.allocated.vcpus, 65);
    assert_int_equal(sched_release(c, 1, &big, &web), 0);
    /* remove and re-add */
    assert_int_equal(sched_host_remove(c, 2), 0);
    assert_int_equal(sched_host_remove(c, 2), -1);
    assert_int_equal(sched_cluster_check(c), 0);
    assert_int_equal(place(c, &req), 0);
    assert_string_equal(sched_error(c), "0/1 hosts fit: 1 label zone=a");
    add_host(c, 2, 2048, "zone=a");
    assert_int_equal(place(c, &req), 2);
    assert_int_equal(sched_host_count(c), 2);
    sched_selector_free((struct sched_selector *)req.selector);
    sched_cluster_free(c);
}

static void
test_many_hosts_remove(void **state)
{
    (void)state;
    /* exercises id map deletion and tree rebalancing at some scale */
    struct sched_cluster *c = sched_cluster_new();
    for (uint64_t i = 1; i <= 2000; i++)
        add_host(c, i * 7919, 1024 + (i % 37) * 512,
                 i % 3 ? "zone=a" : "zone=b");
    assert_int_equal(sched_cluster_check(c), 0);
    for (uint64_t i = 1; i <= 2000; i += 2)
        assert_int_equal(sched_host_remove(c, i * 7919), 0);
    assert_int_equal(sched_cluster_check(c), 0);
    assert_int_equal(sched_host_count(c), 1000);
    for (uint64_t i = 2; i <= 2000; i += 2) {
        struct sched_host_info info;
        assert_int_equal(sched_host_get(c, i * 7919, &info), 0);
        assert_int_equal(sched_host_get(c, (i - 1) * 7919, &info), -1);
    }
    sched_cluster_free(c);
}

static void
test_names(void **state)
{
    (void)state;
    enum sched_host_state s;
    enum sched_strategy st;
    assert_int_equal(sched_host_state_parse("draining", &s), 0);
    assert_int_equal(s, SCHED_HOST_DRAINING);
    assert_string_equal(sched_host_state_name(SCHED_HOST_DOWN), "down");
    assert_int_equal(sched_host_state_parse("gone", &s), -1);
    assert_int_equal(sched_strategy_parse("spread", &st), 0);
    assert_int_equal(st, SCHED_SPREAD);
    assert_int_equal(sched_strategy_parse("pack", &st), -1);
    assert_string_equal(sched_strategy_name(SCHED_BINPACK), "binpack");
}

static void
test_foreign_selector(void **state)
{
    (void)state;
    struct sched_cluster *a = sched_cluster_new();
    struct sched_cluster *b = sched_cluster_new();
    add_host(b, 1, 4096, "zone=a");
    struct sched_request req = {.res = small, .selector = sel(a, "zone=a")};
    struct sched_placement pl;
    assert_int_equal(sched_place(b, &req, 0, &pl), -1);
    assert_string_equal(sched_error(b), "request: selector \"zone=a\" "
                                        "belongs to another cluster");
    sched_selector_free((struct sched_selector *)req.selector);
    sched_cluster_free(a);
    sched_cluster_free(b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_binpack_best_fit),
        cmocka_unit_test(test_binpack_tie_lowest_id),
        cmocka_unit_test(test_spread),
        cmocka_unit_test(test_spread_without_service),
        cmocka_unit_test(test_filter_resources),
        cmocka_unit_test(test_filter_state),
        cmocka_unit_test(test_filter_hypervisor),
        cmocka_unit_test(test_filter_labels),
        cmocka_unit_test(test_selector_parse),
        cmocka_unit_test(test_host_labels_invalid),
        cmocka_unit_test(test_anti_affinity),
        cmocka_unit_test(test_batch),
        cmocka_unit_test(test_batch_dry_run_and_commit),
        cmocka_unit_test(test_explanation_order_and_flags),
        cmocka_unit_test(test_incremental_updates),
        cmocka_unit_test(test_many_hosts_remove),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_foreign_selector),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
