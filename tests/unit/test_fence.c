/*
 * test_fence: the agent's fence clock and record (agent/fence.c) and the
 * controller address list (agent/ctlist.c). The clock fires once
 * fence_after has passed since the last heartbeat stored, never before,
 * once per silence, and an agent restarted mid-silence goes on from the
 * stamp it left; the record reads back what was written.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>

#include "ctlist.h"
#include "fence.h"
#include "mem.h"
#include "monotime.h"
#include "unit_tmpdir.h"

struct fired {
    int n;
    long long silent;
};

static void
on_fire(void *arg, long long silent_ms, unsigned after_ms)
{
    struct fired *f = arg;

    (void)after_ms;
    f->n++;
    f->silent = silent_ms;
}

/* Runs the loop for ms. */
static void
run_for(struct event_base *base, long long ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};

    event_base_loopexit(base, &tv);
    event_base_dispatch(base);
}

static void
test_clock_fires_after_fence_after_once(void **state)
{
    struct event_base *base = event_base_new();
    char *dir = unit_tmpdir_new("test_fence");
    struct fired fr = {0};
    struct fence *f;
    long long t0;

    (void)state;
    assert_non_null(dir);
    f = fence_new(base, dir, on_fire, &fr);
    /* fence_after unknown: never fires */
    run_for(base, 150);
    assert_int_equal(fr.n, 0);
    t0 = mono_ms();
    fence_heard(f, t0);
    fence_set_after(f, 300);
    /* heard again at 200 ms: the 300 ms count from there */
    run_for(base, 200);
    assert_int_equal(fr.n, 0);
    fence_heard(f, mono_ms());
    run_for(base, 200);
    assert_int_equal(fr.n, 0);
    run_for(base, 1000);
    assert_int_equal(fr.n, 1);
    assert_true(fr.silent >= 300);
    assert_true(mono_ms() - t0 >= 500);
    /* once per silence; an older proof does not end it */
    fence_heard(f, t0);
    run_for(base, 400);
    assert_int_equal(fr.n, 1);
    fence_free(f);

    /* A restart in the same boot goes on from the stamp: fires at once. */
    f = fence_new(base, dir, on_fire, &fr);
    run_for(base, 200);
    assert_int_equal(fr.n, 2);
    assert_true(fr.silent >= 500);
    /* heard anew: the next silence fires again */
    fence_heard(f, mono_ms());
    run_for(base, 1000);
    assert_int_equal(fr.n, 3);
    fence_free(f);
    event_base_free(base);
    unit_tmpdir_free(dir);
}

static void
test_record_round_trip(void **state)
{
    char *dir = unit_tmpdir_new("test_fence");
    struct fence_entry in[2] = {
        {.id = "a1", .generation = 3, .restart_count = 7, .fenced = NULL},
        {.id = "b2", .generation = 1, .restart_count = 0,
         .fenced = "fenced: \"quoted\" reason"},
    };
    struct fence_entry *out;
    size_t n;
    char *text;

    (void)state;
    assert_non_null(dir);
    /* no record yet: nothing, no error */
    assert_int_equal(fence_record_load(dir, &out, &n), 0);
    assert_int_equal(n, 0);
    text = fence_record_text(in, 2);
    assert_int_equal(fence_record_save(dir, text), 0);
    free(text);
    assert_int_equal(fence_record_load(dir, &out, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(out[0].id, "a1");
    assert_int_equal(out[0].generation, 3);
    assert_int_equal(out[0].restart_count, 7);
    assert_null(out[0].fenced);
    assert_string_equal(out[1].id, "b2");
    assert_string_equal(out[1].fenced, "fenced: \"quoted\" reason");
    fence_entries_free(out, n);
    /* a broken record is refused, not half read */
    assert_int_equal(fence_record_save(dir, "{\"instances\":"), 0);
    assert_int_equal(fence_record_load(dir, &out, &n), -1);
    assert_int_equal(n, 0);
    unit_tmpdir_free(dir);
}

static void
test_ctlist(void **state)
{
    struct ctaddr *a;
    size_t n;
    char why[256];
    char many[CTLIST_MAX * 8 + 16] = "";

    (void)state;
    assert_int_equal(ctlist_parse("a:7071,[::1]:7072,10.0.0.1:1", &a, &n, why,
                                  sizeof(why)),
                     0);
    assert_int_equal(n, 3);
    assert_string_equal(a[0].host, "a");
    assert_string_equal(a[0].port, "7071");
    assert_string_equal(a[1].host, "::1");
    assert_string_equal(a[1].text, "[::1]:7072");
    assert_string_equal(a[2].host, "10.0.0.1");
    ctlist_free(a, n);
    {
        static const char *const bad[] = {
            "", "a", "a:", ":7071", "a:70x1", "a:0", "a:65536", "a:1,",
            ",a:1", "a:1,,b:2",
        };

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            a = (struct ctaddr *)1;
            assert_int_equal(ctlist_parse(bad[i], &a, &n, why, sizeof(why)),
                             -1);
            assert_null(a);
            assert_non_null(strstr(why, "--controller"));
        }
    }
    for (int i = 0; i <= CTLIST_MAX; i++)
        snprintf(many + strlen(many), sizeof(many) - strlen(many), "%sh:%d",
                 i ? "," : "", i + 1);
    assert_int_equal(ctlist_parse(many, &a, &n, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "at most"));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clock_fires_after_fence_after_once),
        cmocka_unit_test(test_record_round_trip),
        cmocka_unit_test(test_ctlist),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
