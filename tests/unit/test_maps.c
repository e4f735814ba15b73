/*
 * Unit tests for common/strmap.c and common/omap.c: random operations
 * checked against a plain reference array, so deletion with backward shift
 * and skip-list ordering are exercised on many shapes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mem.h"
#include "omap.h"
#include "strmap.h"

#define NKEYS 600

static char keys[NKEYS][16];
static int present[NKEYS];

static unsigned
rnd(unsigned long long *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return (unsigned)(*s >> 11);
}

static void
setup_keys(void)
{
    for (int i = 0; i < NKEYS; i++)
        snprintf(keys[i], sizeof(keys[i]), "k%05x", (unsigned)(i * 7919) % 0xfffff);
    memset(present, 0, sizeof(present));
}

static void
test_strmap_random(void **state)
{
    struct strmap m;
    unsigned long long s = 42;

    (void)state;
    setup_keys();
    strmap_init(&m);
    for (int step = 0; step < 20000; step++) {
        int i = (int)(rnd(&s) % NKEYS);
        if (rnd(&s) % 3) {
            void *old = strmap_put(&m, keys[i], &present[i]);
            assert_ptr_equal(old, present[i] ? &present[i] : NULL);
            present[i] = 1;
        } else {
            void *old = strmap_del(&m, keys[i]);
            assert_ptr_equal(old, present[i] ? &present[i] : NULL);
            present[i] = 0;
        }
        if (step % 500 == 0) {
            size_t n = 0;
            for (int k = 0; k < NKEYS; k++) {
                assert_ptr_equal(strmap_get(&m, keys[k]),
                                 present[k] ? &present[k] : NULL);
                n += (size_t)present[k];
            }
            assert_int_equal(m.len, n);
        }
    }
    strmap_fini(&m);
}

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void
test_omap_order(void **state)
{
    struct omap m;
    unsigned long long s = 7;
    const char *sorted[NKEYS];

    (void)state;
    setup_keys();
    omap_init(&m);
    for (int step = 0; step < 20000; step++) {
        int i = (int)(rnd(&s) % NKEYS);
        if (rnd(&s) % 3) {
            omap_put(&m, keys[i], &present[i]);
            present[i] = 1;
        } else {
            void *old = omap_del(&m, keys[i]);
            assert_ptr_equal(old, present[i] ? &present[i] : NULL);
            present[i] = 0;
        }
        if (step % 1000 == 0) {
            size_t n = 0;
            struct omap_node *x;
            for (int k = 0; k < NKEYS; k++)
                if (present[k])
                    sorted[n++] = keys[k];
            qsort(sorted, n, sizeof(sorted[0]), cmp_str);
            assert_int_equal(m.len, n);
            /* full walk is sorted and complete */
            x = omap_after(&m, NULL);
            for (size_t k = 0; k < n; k++, x = omap_next(x)) {
                assert_non_null(x);
                assert_string_equal(x->key, sorted[k]);
            }
            assert_null(x);
            /* after(cursor) starts right past the cursor, present or not */
            for (size_t k = 0; k + 1 < n; k += 37) {
                x = omap_after(&m, sorted[k]);
                assert_non_null(x);
                assert_string_equal(x->key, sorted[k + 1]);
            }
            if (n > 0) {
                assert_null(omap_after(&m, sorted[n - 1]));
                assert_string_equal(omap_ceil(&m, "k")->key, sorted[0]);
            }
        }
    }
    omap_fini(&m);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strmap_random),
        cmocka_unit_test(test_omap_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
