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

/* What a map holds for keys[i] by the reference: &present[i] or NULL. */
static void *
expected(int i)
{
    return present[i] ? &present[i] : NULL;
}

/* Every key maps to what the reference says, and nothing else is there;
 * strmap_next visits each entry once. */
static void
check_strmap(struct strmap *m)
{
    static int seen[NKEYS];
    size_t n = 0, visited = 0, pos = 0;
    int *v;

    for (int k = 0; k < NKEYS; k++) {
        void **slot = strmap_ref(m, keys[k]);

        assert_ptr_equal(strmap_get(m, keys[k]), expected(k));
        if (present[k]) {
            assert_non_null(slot);
            assert_ptr_equal(*slot, expected(k));
        } else {
            assert_null(slot);
        }
        n += (size_t)present[k];
    }
    assert_int_equal(m->len, n);
    memset(seen, 0, sizeof(seen));
    while ((v = strmap_next(m, &pos)) != NULL) {
        int k = (int)(v - present);

        assert_true(k >= 0 && k < NKEYS && present[k]);
        assert_int_equal(seen[k], 0);
        seen[k] = 1;
        visited++;
    }
    assert_int_equal(visited, n);
    assert_null(strmap_next(m, &pos)); /* stays at the end */
}

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The walk gives the reference's keys in order, and after(cursor) starts
 * right past the cursor. */
static void
check_omap(struct omap *m)
{
    const char *sorted[NKEYS];
    size_t n = 0;
    struct omap_node *x;

    for (int k = 0; k < NKEYS; k++)
        if (present[k])
            sorted[n++] = keys[k];
    qsort(sorted, n, sizeof(sorted[0]), cmp_str);
    assert_int_equal(m->len, n);
    /* full walk is sorted and complete */
    x = omap_after(m, NULL);
    for (size_t k = 0; k < n; k++, x = omap_next(x)) {
        assert_non_null(x);
        assert_string_equal(x->key, sorted[k]);
    }
    assert_null(x);
    /* after(cursor) starts right past the cursor, present or not */
    for (size_t k = 0; k + 1 < n; k += 37) {
        x = omap_after(m, sorted[k]);
        assert_non_null(x);
        assert_string_equal(x->key, sorted[k + 1]);
    }
    if (n > 0) {
        assert_null(omap_after(m, sorted[n - 1]));
        assert_string_equal(omap_ceil(m, "k")->key, sorted[0]);
    }
}

/* The same random puts (two in three) and deletes on both maps, each
 * returning the value it replaced or removed, for a few seeds. */
static void
test_random_ops(void **state)
{
    static const unsigned long long seeds[] = {42, 7};

    (void)state;
    for (size_t si = 0; si < sizeof(seeds) / sizeof(seeds[0]); si++) {
        unsigned long long s = seeds[si];
        struct strmap sm;
        struct omap om;

        setup_keys();
        strmap_init(&sm);
        omap_init(&om);
        for (int step = 0; step < 20000; step++) {
            int i = (int)(rnd(&s) % NKEYS);
            void *want = expected(i);

            if (rnd(&s) % 3) {
                assert_ptr_equal(strmap_put(&sm, keys[i], &present[i]), want);
                assert_ptr_equal(omap_put(&om, keys[i], &present[i]), want);
                present[i] = 1;
            } else {
                assert_ptr_equal(strmap_del(&sm, keys[i]), want);
                assert_ptr_equal(omap_del(&om, keys[i]), want);
                present[i] = 0;
            }
            if (step % 500 == 0) {
                check_strmap(&sm);
                check_omap(&om);
            }
        }
        strmap_fini(&sm);
        omap_fini(&om);
    }
}

/* A value changed through strmap_ref is what get returns, under the key the
 * map already held. */
static void
test_ref_in_place(void **state)
{
    struct strmap m;
    char held[] = "inst-1", asked[] = "inst-1";
    int a, b;

    (void)state;
    strmap_init(&m);
    assert_null(strmap_ref(&m, "inst-1"));
    strmap_put(&m, held, &a);
    *strmap_ref(&m, asked) = &b;
    assert_ptr_equal(strmap_get(&m, "inst-1"), &b);
    assert_int_equal(m.len, 1);
    for (size_t i = 0; i < m.cap; i++)
        if (m.keys[i])
            assert_ptr_equal(m.keys[i], held);
    strmap_fini(&m);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_ops),
        cmocka_unit_test(test_ref_in_place),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
