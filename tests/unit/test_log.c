/*
 * Unit tests for the log line formats (common/log.c): text and JSON built
 * for a fixed time, escaping of control characters in both, a message too
 * long for a line, --log-format's values, and the choice by isatty: a pty
 * (openpty) on stderr gets text, a pipe JSON, and a forced format wins
 * over either.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "log_priv.h"

static const struct timeval T0 = {.tv_sec = 1796687001, .tv_usec = 123456};

static void
test_text_line(void **state)
{
    char buf[LOG_LINE_MAX];
    size_t n;

    (void)state;
    n = log_format_line(buf, sizeof(buf), 0, &T0, LOG_LVL_INFO,
                        "cloud-controller", "gateway",
                        "host hv1 registered from 10.0.0.5, session 3");
    assert_string_equal(buf, "2026-12-07T23:43:21.123Z INFO  gateway  host "
                             "hv1 registered from 10.0.0.5, session 3\n");
    assert_int_equal(n, strlen(buf));
    /* every level, padded to one width; a long module keeps one space */
    log_format_line(buf, sizeof(buf), 0, &T0, LOG_LVL_ERR, "p", "reconciler",
                    "m");
    assert_string_equal(buf, "2026-12-07T23:43:21.123Z ERROR reconciler m\n");
    log_format_line(buf, sizeof(buf), 0, &T0, LOG_LVL_WARN, "p", "dev", "m");
    assert_string_equal(buf, "2026-12-07T23:43:21.123Z WARN  dev      m\n");
    log_format_line(buf, sizeof(buf), 0, &T0, LOG_LVL_DEBUG, "p", "dev", "m");
    assert_string_equal(buf, "2026-12-07T23:43:21.123Z DEBUG dev      m\n");
}

static void
test_json_line_unchanged(void **state)
{
    char buf[LOG_LINE_MAX];

    (void)state;
    log_format_line(buf, sizeof(buf), 1, &T0, LOG_LVL_WARN, "cloud-agent",
                    "link", "lost \"the\" controller");
    assert_string_equal(buf, "{\"time\":\"2026-12-07T23:43:21.123Z\","
                             "\"level\":\"warn\",\"prog\":\"cloud-agent\","
                             "\"module\":\"link\",\"msg\":\"lost "
                             "\\\"the\\\" controller\"}\n");
}

/* ESC, a newline, a tab, a quote, a backslash, DEL and U+009B (CSI). */
static const char HOSTILE[] = "a\x1b[31mb\nc\td\"e\\f\x7fg\xc2\x9bh\xc3\xa9";

static void
test_text_escapes_controls(void **state)
{
    char buf[LOG_LINE_MAX];
    size_t n;

    (void)state;
    n = log_format_line(buf, sizeof(buf), 0, &T0, LOG_LVL_INFO, "p", "api",
                        HOSTILE);
    assert_string_equal(buf + 25, "INFO  api      a\\u001b[31mb\\nc\\u0009d\"e"
                                  "\\f\\u007fg\\u009bh\xc3\xa9\n");
    /* nothing a terminal acts on but the final newline */
    for (size_t i = 0; i + 1 < n; i++) {
        unsigned char c = (unsigned char)buf[i];
        assert_true(c >= 0x20 && c != 0x7f);
        if (c == 0xc2)
            assert_false((unsigned char)buf[i + 1] >= 0x80 &&
                         (unsigned char)buf[i + 1] <= 0x9f);
    }
}

static void
test_json_escapes_controls(void **state)
{
    char buf[LOG_LINE_MAX];
    const char *msg;

    (void)state;
    log_format_line(buf, sizeof(buf), 1, &T0, LOG_LVL_INFO, "p", "api",
                    HOSTILE);
    msg = strstr(buf, "\"msg\":\"");
    assert_non_null(msg);
    /* as before this change: JSON escapes C0, quotes and backslashes */
    assert_string_equal(msg, "\"msg\":\"a\\u001b[31mb\\nc\\u0009d\\\"e\\\\f"
                             "\x7fg\xc2\x9bh\xc3\xa9\"}\n");
}

static void
test_long_message_cut_whole_line(void **state)
{
    char buf[LOG_LINE_MAX], msg[8000];

    (void)state;
    memset(msg, '\x01', 7999);
    msg[7999] = '\0';
    for (int json = 0; json <= 1; json++) {
        size_t n = log_format_line(buf, sizeof(buf), json, &T0, LOG_LVL_INFO,
                                   "p", "api", msg);
        assert_true(n < sizeof(buf));
        assert_int_equal(n, strlen(buf));
        assert_int_equal(buf[n - 1], '\n');
        /* an escape is never cut in half */
        assert_memory_equal(buf + n - (json ? 9 : 7), "\\u0001", 6);
        if (json)
            assert_memory_equal(buf + n - 3, "\"}", 2);
    }
}

static void
test_format_values(void **state)
{
    int json = 7;

    (void)state;
    assert_int_equal(log_format_parse("json", &json), 0);
    assert_int_equal(json, 1);
    assert_int_equal(log_format_parse("text", &json), 0);
    assert_int_equal(json, 0);
    json = 7;
    assert_int_equal(log_format_parse("auto", &json), -1);
    assert_int_equal(log_format_parse("JSON", &json), -1);
    assert_int_equal(log_format_parse("", &json), -1);
    assert_int_equal(log_format_parse("jsonl", &json), -1);
    assert_int_equal(json, 7);
}

/* Reads what is there on fd within a second. */
static void
read_some(int fd, char *buf, size_t cap)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    size_t off = 0;

    while (off + 1 < cap && poll(&p, 1, off ? 100 : 1000) == 1) {
        ssize_t n = read(fd, buf + off, cap - 1 - off);
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    buf[off] = '\0';
}

/* Logs one line with stderr on fd, format chosen by json. */
static void
log_to(int fd, int json, char *out, size_t cap, int readfd)
{
    int saved = dup(STDERR_FILENO);

    assert_true(saved >= 0);
    assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);
    log_init("test_log", LOG_LVL_INFO, json);
    log_msg(LOG_LVL_INFO, "gateway", 0, "hello %s\x1b", "there");
    assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
    close(saved);
    read_some(readfd, out, cap);
}

static int
is_text(const char *s)
{
    return strlen(s) > 25 && s[4] == '-' && s[10] == 'T' && s[23] == 'Z' &&
           strstr(s, " INFO  gateway  hello there\\u001b") == s + 24;
}

static int
is_json(const char *s)
{
    return strncmp(s, "{\"time\":\"", 9) == 0 &&
           strstr(s, "\"level\":\"info\",\"prog\":\"test_log\",\"module\":"
                     "\"gateway\",\"msg\":\"hello there\\u001b\"}") != NULL;
}

static void
test_tty_text_pipe_json(void **state)
{
    char out[8192];
    int master, slave, pfd[2];

    (void)state;
    assert_int_equal(openpty(&master, &slave, NULL, NULL, NULL), 0);
    assert_int_equal(pipe(pfd), 0);

    /* auto: a terminal gets text, a pipe JSON */
    log_to(slave, -1, out, sizeof(out), master);
    assert_true(is_text(out));
    assert_false(is_json(out));
    log_to(pfd[1], -1, out, sizeof(out), pfd[0]);
    assert_true(is_json(out));
    assert_false(is_text(out));

    /* forced: --log-format json on a terminal, text into a pipe */
    log_to(slave, 1, out, sizeof(out), master);
    assert_true(is_json(out));
    log_to(pfd[1], 0, out, sizeof(out), pfd[0]);
    assert_true(is_text(out));

    /* log_set_json after log_init, as the option does */
    log_init("test_log", LOG_LVL_INFO, -1);
    log_set_json(0);
    assert_int_equal(log_is_json(), 0);
    log_set_json(1);
    assert_int_equal(log_is_json(), 1);

    close(master);
    close(slave);
    close(pfd[0]);
    close(pfd[1]);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_line),
        cmocka_unit_test(test_json_line_unchanged),
        cmocka_unit_test(test_text_escapes_controls),
        cmocka_unit_test(test_json_escapes_controls),
        cmocka_unit_test(test_long_message_cut_whole_line),
        cmocka_unit_test(test_format_values),
        cmocka_unit_test(test_tty_text_pipe_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
