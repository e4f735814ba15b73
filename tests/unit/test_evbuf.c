/*
 * Unit tests for common/evbuf.c: a buffer's bytes drained into a string,
 * with its length, the buffer left empty and usable; an empty buffer gives
 * "".
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "evbuf.h"

static void
test_drain_string(void **state)
{
    struct evbuffer *b = evbuf_new();
    size_t len = 99;
    char *s;

    (void)state;
    assert_non_null(b);
    s = evbuf_drain_string(b, &len);
    assert_string_equal(s, "");
    assert_int_equal(len, 0);
    free(s);

    evbuffer_add_printf(b, "{%s,%d}", "a", 7);
    evbuffer_add(b, "tail", 4);
    s = evbuf_drain_string(b, &len);
    assert_string_equal(s, "{a,7}tail");
    assert_int_equal(len, 9);
    assert_int_equal(evbuffer_get_length(b), 0);
    free(s);

    /* Still the caller's: it takes more, and lenp may be NULL. */
    evbuffer_add(b, "x", 1);
    s = evbuf_drain_string(b, NULL);
    assert_string_equal(s, "x");
    free(s);
    evbuffer_free(b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_drain_string),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
