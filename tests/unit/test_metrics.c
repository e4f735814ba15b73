/*
 * test_metrics: the Prometheus text of /metrics (controller/metrics.c)
 * from fixed figures, against a golden file (tests/golden/metrics/,
 * rewritten with UPDATE_GOLDEN=1); object gauges with every state, zero
 * included, and none of them when the database did not answer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>

#include "evbuf.h"
#include "mem.h"
#include "metrics.h"
#include "unit_golden.h"

static const char *const inst_states[] = {"pending", "running", "failed",
                                          NULL};
static const char *const svc_states[] = {"active", "deleting", NULL};
static const struct metrics_kind kinds[] = {
    {"instances", inst_states},
    {"services", svc_states},
};
static const struct metrics_count counts[] = {
    {"instances", "running", "7"},
    {"services", "active", "2"},
    {"instances", "pending", "1"},
};

static struct metrics_figures
figures(void)
{
    struct metrics_figures f = {
        .db_size = 4, .db_up = 3, .db_busy = 1, .db_queued = 2,
        .db_queries = 1000, .db_errors = 5, .db_reconnects = 1,
        .db_answered = 1, .watch_clients = 6,
        .write_batches = 40, .writes = 900, .write_bulk_batches = 30,
        .write_retries = 2,
        .cache_ready = 1, .cache_instances = 8, .cache_services = 2,
        .kinds = kinds, .nkinds = 2,
        .counts = counts, .ncounts = 3,
    };
    return f;
}

/* The rendered text as a string (xmalloc'd). */
static char *
render(const struct metrics_figures *f)
{
    struct evbuffer *b = evbuf_new();
    char *s;

    metrics_render(b, f);
    s = evbuf_drain_string(b, NULL);
    evbuffer_free(b);
    return s;
}

static int
reset(void **state)
{
    (void)state;
    metrics_reset();
    return 0;
}

static void
test_render(void **state)
{
    /* Routes are compared by pointer (they come from the route table). */
    static const char route[] = "/v1/instances", get[] = "GET";
    struct metrics_figures f = figures();
    char *text;

    (void)state;
    metrics_http_observe(route, get, 200, 0.002);
    metrics_http_observe(route, get, 200, 0.3);
    metrics_http_observe(route, get, 404, 0.0001);
    text = render(&f);
    unit_golden_check(GOLDEN_DIR, "metrics.txt", text);
    assert_non_null(strstr(text, "cloud_instances{state=\"failed\"} 0\n"));
    assert_non_null(strstr(text, "cloud_services{state=\"deleting\"} 0\n"));
    assert_non_null(strstr(text, "cloud_instances{state=\"running\"} 7\n"));
    free(text);
}

/* No object gauges from a scrape whose database query failed. */
static void
test_db_down(void **state)
{
    struct metrics_figures f = figures();
    char *text;

    (void)state;
    f.db_answered = 0;
    f.counts = NULL;
    f.ncounts = 0;
    text = render(&f);
    assert_non_null(strstr(text, "\ncloud_db_up 0\n"));
    assert_null(strstr(text, "cloud_instances"));
    assert_null(strstr(text, "cloud_services{"));
    assert_non_null(
        strstr(text, "cloud_cache_objects{kind=\"services\"} 2\n"));
    free(text);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_render, reset),
        cmocka_unit_test_setup(test_db_down, reset),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
