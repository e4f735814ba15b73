/*
 * test_ratelimit: client address keys (IPv4, mapped, IPv6 /64), token
 * buckets (burst, refill, Retry-After), the fixed table's eviction (a
 * refilled bucket goes first, memory stays fixed) and the exact
 * connection counts per address (add, remove, deletion in clusters).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>

#include "ratelimit.h"

static struct rl_addr
A(const char *text)
{
    struct rl_addr a;

    if (rl_addr_parse(text, &a) < 0)
        fail_msg("%s does not parse", text);
    return a;
}

static void
test_addresses(void **state)
{
    struct rl_addr a = A("10.1.2.3"), b = A("::ffff:10.1.2.3");
    struct rl_addr c = A("2001:db8:1:2::1"), d = A("2001:db8:1:2:ffff::9");
    struct rl_addr e = A("2001:db8:1:3::1");
    struct sockaddr_in sin = {.sin_family = AF_INET};
    char t[RL_ADDR_TEXT];

    (void)state;
    assert_memory_equal(&a, &b, sizeof(a));
    assert_memory_equal(&c, &d, sizeof(c)); /* one /64 */
    assert_memory_not_equal(&c, &e, sizeof(c));
    rl_addr_text(&a, t, sizeof(t));
    assert_string_equal(t, "10.1.2.3");
    rl_addr_text(&c, t, sizeof(t));
    assert_string_equal(t, "2001:db8:1:2::/64");
    inet_pton(AF_INET, "10.1.2.3", &sin.sin_addr);
    assert_int_equal(rl_addr_from_sockaddr((struct sockaddr *)&sin, &b), 0);
    assert_memory_equal(&a, &b, sizeof(a));
    assert_int_equal(rl_addr_parse("nonsense", &b), -1);
}

static void
test_bucket(void **state)
{
    struct ratelimit *rl = rl_new(2, 5, 64); /* 2/s, burst 5 */
    struct rl_addr a = A("10.0.0.1"), b = A("10.0.0.2");
    unsigned retry = 0;

    (void)state;
    assert_null(rl_new(0, 5, 64)); /* no limit */
    assert_int_equal(rl_take(NULL, &a, 0, &retry), 0);
    for (int i = 0; i < 5; i++)
        assert_int_equal(rl_take(rl, &a, 100.0, &retry), 0);
    assert_int_equal(rl_take(rl, &a, 100.0, &retry), -1);
    assert_int_equal(retry, 1);
    /* Another address has its own bucket. */
    assert_int_equal(rl_take(rl, &b, 100.0, &retry), 0);
    /* Half a second brings one token back (2/s), not two. */
    assert_int_equal(rl_take(rl, &a, 100.5, &retry), 0);
    assert_int_equal(rl_take(rl, &a, 100.5, &retry), -1);
    /* Refusals do not dig a hole: 10 s refill to the burst, no more. */
    for (int i = 0; i < 100; i++)
        assert_int_equal(rl_take(rl, &a, 100.6, &retry), -1);
    for (int i = 0; i < 5; i++)
        assert_int_equal(rl_take(rl, &a, 110.6, &retry), 0);
    assert_int_equal(rl_take(rl, &a, 110.6, &retry), -1);
    rl_free(rl);

    /* A slow rate: the wait is rounded up to whole seconds. */
    rl = rl_new(0.1, 1, 64);
    assert_int_equal(rl_take(rl, &a, 0, &retry), 0);
    assert_int_equal(rl_take(rl, &a, 1, &retry), -1);
    assert_int_equal(retry, 9);
    rl_free(rl);
}

/* With far more addresses than entries, the table does not grow, a busy
 * address that keeps its bucket empty is not forgotten while addresses
 * that each sent one request (and refilled) come and go. */
static void
test_table_is_fixed(void **state)
{
    struct ratelimit *rl = rl_new(1, 3, 8); /* one set of 8 */
    struct rl_addr hog = A("192.0.2.1");
    unsigned retry;
    char t[32];

    (void)state;
    for (int i = 0; i < 3; i++)
        assert_int_equal(rl_take(rl, &hog, 0, &retry), 0);
    for (int i = 0; i < 1000; i++) {
        struct rl_addr x;
        double now = 0.001 * i;

        snprintf(t, sizeof(t), "198.51.%d.%d", i / 250, i % 250);
        x = A(t);
        assert_int_equal(rl_take(rl, &x, now, &retry), 0);
        /* The hog is still refused: its empty bucket was not evicted. */
        if (i % 100 == 0)
            assert_int_equal(rl_take(rl, &hog, now, &retry), -1);
    }
    rl_free(rl);
}

static void
test_counts(void **state)
{
    struct rl_counts *c = rl_counts_new();
    char t[32];

    (void)state;
    assert_int_equal(rl_counts_add(c, &(struct rl_addr){{0}}, -1), 0);
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 500; i++) {
            struct rl_addr x;
            snprintf(t, sizeof(t), "10.%d.%d.%d", i % 7, i / 250, i % 250);
            x = A(t);
            for (int k = 0; k <= i % 3; k++)
                assert_int_equal(rl_counts_add(c, &x, 1), (unsigned)k + 1);
        }
        assert_int_equal(rl_counts_len(c), 500);
        for (int i = 0; i < 500; i++) {
            struct rl_addr x;
            snprintf(t, sizeof(t), "10.%d.%d.%d", i % 7, i / 250, i % 250);
            x = A(t);
            assert_int_equal(rl_counts_get(c, &x), (unsigned)(i % 3) + 1);
        }
        /* Remove in another order than added (clusters shift back). */
        for (int i = 499; i >= 0; i -= 2) {
            struct rl_addr x;
            snprintf(t, sizeof(t), "10.%d.%d.%d", i % 7, i / 250, i % 250);
            x = A(t);
            while (rl_counts_get(c, &x) > 0)
                rl_counts_add(c, &x, -1);
        }
        for (int i = 0; i < 500; i++) {
            struct rl_addr x;
            snprintf(t, sizeof(t), "10.%d.%d.%d", i % 7, i / 250, i % 250);
            x = A(t);
            assert_int_equal(rl_counts_get(c, &x),
                             i % 2 ? 0 : (unsigned)(i % 3) + 1);
            while (rl_counts_get(c, &x) > 0)
                rl_counts_add(c, &x, -1);
        }
        assert_int_equal(rl_counts_len(c), 0);
    }
    rl_counts_free(c);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_addresses),
        cmocka_unit_test(test_bucket),
        cmocka_unit_test(test_table_is_fixed),
        cmocka_unit_test(test_counts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
