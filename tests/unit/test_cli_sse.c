/*
 * test_cli_sse: the Server-Sent Events parser behind `events -f`. The same
 * stream must give the same events however the network splits it, with
 * every line ending the spec allows, comments (keepalives) skipped, ids
 * sticky for Last-Event-ID, and oversized events refused.
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
#include "sse.h"

struct seen {
    char *log; /* "id|event|data\n" per event */
    int stop_after;
    int count;
};

static int
record(void *arg, const char *id, const char *event, const char *data)
{
    struct seen *s = arg;
    char *n = xasprintf("%s%s|%s|%s\n", s->log ? s->log : "", id, event, data);
    free(s->log);
    s->log = n;
    s->count++;
    return s->stop_after > 0 && s->count >= s->stop_after;
}

static const char stream[] =
    ": keepalive\n"
    "id: 1041\n"
    "event: instance.killed\n"
    "data: {\"id\":1041}\n"
    "\n"
    "data: line one\r\n"
    "data: line two\r\n"
    "\r\n"
    "id:1043\revent:host.cordoned\rdata:{\"a\":\rretry: 3000\runknown: field\r\revent: ignored-without-data\n"
    "\n"
    "data\n"
    "\n";

static const char want[] = "1041|instance.killed|{\"id\":1041}\n"
                           "1041|message|line one\nline two\n"
                           "1043|host.cordoned|{\"a\":\n"
                           "1043|message|\n";

static void
test_whole(void **state)
{
    struct sse_parser p;
    struct seen s = {0};
    (void)state;
    sse_init(&p);
    assert_int_equal(sse_feed(&p, stream, strlen(stream), record, &s), 0);
    assert_string_equal(s.log, want);
    assert_string_equal(p.last_id, "1043");
    sse_free(&p);
    free(s.log);
}

static void
test_every_split(void **state)
{
    size_t n = strlen(stream);
    (void)state;
    /* Two pieces at every boundary, then byte by byte. */
    for (size_t cut = 0; cut <= n; cut++) {
        struct sse_parser p;
        struct seen s = {0};
        sse_init(&p);
        assert_int_equal(sse_feed(&p, stream, cut, record, &s), 0);
        assert_int_equal(sse_feed(&p, stream + cut, n - cut, record, &s), 0);
        assert_string_equal(s.log, want);
        sse_free(&p);
        free(s.log);
    }
    struct sse_parser p;
    struct seen s = {0};
    sse_init(&p);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(sse_feed(&p, stream + i, 1, record, &s), 0);
    assert_string_equal(s.log, want);
    sse_free(&p);
    free(s.log);
}

static void
test_stop(void **state)
{
    struct sse_parser p;
    struct seen s = {.stop_after = 1};
    (void)state;
    sse_init(&p);
    assert_int_equal(sse_feed(&p, stream, strlen(stream), record, &s), 1);
    assert_int_equal(s.count, 1);
    sse_free(&p);
    free(s.log);
}

static void
test_too_large(void **state)
{
    struct sse_parser p;
    struct seen s = {0};
    size_t n = SSE_MAX_EVENT + 16;
    char *big = xmalloc(n);
    (void)state;
    memcpy(big, "data: ", 6);
    memset(big + 6, 'x', n - 6);
    sse_init(&p);
    assert_int_equal(sse_feed(&p, big, n, record, &s), -1);
    assert_int_equal(s.count, 0);
    sse_free(&p);
    free(big);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_whole),
        cmocka_unit_test(test_every_split),
        cmocka_unit_test(test_stop),
        cmocka_unit_test(test_too_large),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
