/*
 * Unit tests for log_rate_ok_at (common/log.c): at most per_sec lines in
 * each second, the refused ones counted and told on the next line allowed,
 * a new second starting afresh, a clock that went backwards starting one.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "log.h"

static void
test_budget_per_second(void **state)
{
    struct log_rate lr = {0};
    unsigned dropped = 99;

    (void)state;
    assert_int_equal(log_rate_ok_at(&lr, 3, 1000, &dropped), 1);
    assert_int_equal(dropped, 0);
    assert_int_equal(log_rate_ok_at(&lr, 3, 1100, &dropped), 1);
    assert_int_equal(log_rate_ok_at(&lr, 3, 1200, &dropped), 1);
    /* the fourth and fifth in the same second are refused and counted */
    assert_int_equal(log_rate_ok_at(&lr, 3, 1300, &dropped), 0);
    assert_int_equal(log_rate_ok_at(&lr, 3, 1999, &dropped), 0);
    /* a new second: allowed, and it says how many went unlogged */
    assert_int_equal(log_rate_ok_at(&lr, 3, 2000, &dropped), 1);
    assert_int_equal(dropped, 2);
    assert_int_equal(log_rate_ok_at(&lr, 3, 2001, &dropped), 1);
    assert_int_equal(dropped, 0);
}

static void
test_clock_backwards_starts_a_second(void **state)
{
    struct log_rate lr = {0};
    unsigned dropped;

    (void)state;
    assert_int_equal(log_rate_ok_at(&lr, 1, 5000, &dropped), 1);
    assert_int_equal(log_rate_ok_at(&lr, 1, 5500, &dropped), 0);
    assert_int_equal(log_rate_ok_at(&lr, 1, 100, &dropped), 1);
    assert_int_equal(dropped, 1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_budget_per_second),
        cmocka_unit_test(test_clock_backwards_starts_a_second),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
