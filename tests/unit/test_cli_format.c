/*
 * test_cli_format: golden-file tests of what cloudctl prints. Fixture JSON
 * in the tests/golden/cli JSON files is rendered with a fixed "now" and
 * compared byte for byte with the .out files next to it; UPDATE_GOLDEN=1
 * rewrites them (review the diff before committing). Plus the small formatters.
 */
#include "format.h"
#include "mem.h"
#include "unit_golden.h"

#ifndef CLI_GOLDEN_DIR
#error CLI_GOLDEN_DIR must name tests/golden/cli
#endif

/* 2026-11-27T12:00:00Z: every fixture's ages are relative to it. */
static time_t
fixed_now(void)
{
    time_t t;
    assert_int_equal(fmt_parse_time("2026-11-27T12:00:00Z", &t), 0);
    return t;
}

/* Compares got with NAME.out, or writes it with UPDATE_GOLDEN=1. */
static void
golden(const char *name, const char *got)
{
    char *file = xasprintf("%s.out", name);

    unit_golden_check(CLI_GOLDEN_DIR, file, got);
    free(file);
}

static json_t *
fixture(const char *name)
{
    char *path = xasprintf("%s/%s", CLI_GOLDEN_DIR, name);
    json_error_t err;
    json_t *j = json_load_file(path, 0, &err);
    if (j == NULL)
        fail_msg("%s: %s", path, err.text);
    free(path);
    return j;
}

/* What a formatter writes, kept in memory. */
struct capture {
    char *buf;
    size_t len;
    FILE *f;
};

static FILE *
capture_open(struct capture *c)
{
    c->buf = NULL;
    c->len = 0;
    c->f = open_memstream(&c->buf, &c->len);
    assert_non_null(c->f);
    return c->f;
}

/* Compares what c holds with NAME.out and frees it. Plain output must hold
 * no escape: nothing the server sends may drive the terminal. */
static void
capture_golden(struct capture *c, const char *name, bool plain)
{
    assert_int_equal(fclose(c->f), 0);
    if (plain)
        assert_null(strchr(c->buf, '\033'));
    golden(name, c->buf);
    free(c->buf);
}

typedef void (*table_fn)(FILE *, const json_t *, enum fmt_mode, time_t, bool);

static void
check_table(const char *fixture_name, const char *out_name, table_fn fn,
            enum fmt_mode mode, bool color)
{
    json_t *j = fixture(fixture_name);
    struct capture c;

    fn(capture_open(&c), json_object_get(j, "items"), mode, fixed_now(), color);
    capture_golden(&c, out_name, !color);
    json_decref(j);
}

/* The instance, service, host and image tables in each mode they have. */
static void
test_tables(void **state)
{
    static const struct {
        const char *fixture, *out;
        table_fn fn;
        enum fmt_mode mode;
        bool color;
    } cases[] = {
        {"instances.json", "instances", fmt_instances, FMT_TABLE, false},
        {"instances.json", "instances_wide", fmt_instances, FMT_WIDE, false},
        {"instances.json", "instances_name", fmt_instances, FMT_NAME, false},
        {"instances.json", "instances_color", fmt_instances, FMT_TABLE, true},
        {"services.json", "services", fmt_services, FMT_TABLE, false},
        {"services.json", "services_wide", fmt_services, FMT_WIDE, false},
        {"hosts.json", "hosts", fmt_hosts, FMT_TABLE, false},
        {"hosts.json", "hosts_wide", fmt_hosts, FMT_WIDE, false},
        {"images.json", "images", fmt_images, FMT_TABLE, false},
        {"images.json", "images_wide", fmt_images, FMT_WIDE, false},
        {"images.json", "images_name", fmt_images, FMT_NAME, false},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        check_table(cases[i].fixture, cases[i].out, cases[i].fn, cases[i].mode,
                    cases[i].color);
}

static void
test_events(void **state)
{
    json_t *j = fixture("events.json");
    struct capture c;

    (void)state;
    fmt_events(capture_open(&c), json_object_get(j, "items"), FMT_TABLE, false);
    capture_golden(&c, "events", true);
    json_decref(j);
}

/* config get, config history and endpoints (format_config.c). */
static void
test_config_tables(void **state)
{
    static const struct {
        const char *fixture, *out;
        int kind; /* 0 config, 1 history, 2 endpoints */
        enum fmt_mode mode;
    } cases[] = {
        {"config.json", "config", 0, FMT_TABLE},
        {"config.json", "config_wide", 0, FMT_WIDE},
        {"config.json", "config_name", 0, FMT_NAME},
        {"config_history.json", "config_history", 1, FMT_TABLE},
        {"config_history.json", "config_history_wide", 1, FMT_WIDE},
        {"endpoints.json", "endpoints", 2, FMT_TABLE},
        {"endpoints.json", "endpoints_wide", 2, FMT_WIDE},
        {"endpoints.json", "endpoints_name", 2, FMT_NAME},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *j = fixture(cases[i].fixture);
        struct capture c;
        FILE *f = capture_open(&c);

        if (cases[i].kind == 0)
            fmt_config(f, j, cases[i].mode);
        else if (cases[i].kind == 1)
            fmt_config_history(f, json_object_get(j, "items"), cases[i].mode,
                               fixed_now());
        else
            fmt_endpoints(f, j, cases[i].mode);
        capture_golden(&c, cases[i].out, true);
        json_decref(j);
    }
}

static void
test_error_lines(void **state)
{
    json_t *cases = fixture("errors.json");
    struct capture out;
    FILE *f = capture_open(&out);
    size_t i;
    json_t *c;

    (void)state;
    json_array_foreach(cases, i, c)
    {
        const char *body = json_string_value(json_object_get(c, "body"));
        char *line = fmt_error_line(
            (int)json_integer_value(json_object_get(c, "status")), body,
            strlen(body), json_string_value(json_object_get(c, "method")),
            json_string_value(json_object_get(c, "path")));
        /* The contract: one line, prefixed, nothing to break a terminal. */
        assert_null(strchr(line, '\n'));
        assert_null(strchr(line, '\033'));
        assert_memory_equal(line, "cloudctl: ", 10);
        fprintf(f, "%s\n", line);
        free(line);
    }
    capture_golden(&out, "errors", true);
    json_decref(cases);
}

static void
test_duration(void **state)
{
    static const struct {
        long long s;
        const char *want;
    } cases[] = {
        {-5, "0s"},
        {0, "0s"},
        {59, "59s"},
        {119, "119s"},
        {120, "2m"},
        {192, "3m12s"},
        {599, "9m59s"},
        {600, "10m"},
        {3 * 3600 - 1, "179m"},
        {3 * 3600, "3h"},
        {5 * 3600 + 600, "5h10m"},
        {47 * 3600, "47h"},
        {48 * 3600, "2d"},
        {3 * 86400 + 7200, "3d2h"},
        {8 * 86400, "8d"},
        {730 * 86400LL, "2y"},
    };
    char buf[32];
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        fmt_duration(cases[i].s, buf, sizeof(buf));
        assert_string_equal(buf, cases[i].want);
    }
}

static void
test_parse_time(void **state)
{
    time_t a, b;
    (void)state;
    assert_int_equal(fmt_parse_time("2026-11-27T10:00:00.123Z", &a), 0);
    assert_int_equal(fmt_parse_time("2026-11-27T12:00:00+02:00", &b), 0);
    assert_true(a == b);
    assert_int_equal(fmt_parse_time("2026-11-27 10:00:00z", &b), 0);
    assert_true(a == b);
    assert_int_equal(fmt_parse_time("1970-01-01T00:00:00Z", &a), 0);
    assert_true(a == 0);
    assert_int_equal(fmt_parse_time("2026-11-27T10:00:00", &a), -1);
    assert_int_equal(fmt_parse_time("2026-13-27T10:00:00Z", &a), -1);
    assert_int_equal(fmt_parse_time("2026-11-27T10:00:00Zjunk", &a), -1);
    assert_int_equal(fmt_parse_time("", &a), -1);
    assert_int_equal(fmt_parse_time(NULL, &a), -1);

    char *age = fmt_age(NULL, fixed_now());
    assert_string_equal(age, "-");
    free(age);
}

static void
test_sizes(void **state)
{
    static const struct {
        long long v;
        const char *mib, *bytes;
    } cases[] = {
        {0, "0Mi", "0B"},
        {256, "256Mi", "256B"},
        {1024, "1Gi", "1KiB"},
        {1536, "1.5Gi", "1.5KiB"},
        {15872, "15.5Gi", "15.5KiB"},
        {1048575, "1023Gi", "1023KiB"},
        {200 * 1024 + 512, "200Gi", "200KiB"},
        {1048576, "1Ti", "1MiB"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *m = fmt_mib(cases[i].v);
        char *b = fmt_bytes(cases[i].v);
        assert_string_equal(m, cases[i].mib);
        assert_string_equal(b, cases[i].bytes);
        free(m);
        free(b);
    }
}

static void
test_state_column(void **state)
{
    static const struct {
        const char *json, *want;
    } cases[] = {
        {"{\"state\":\"running\",\"desired_state\":\"running\"}", "running"},
        {"{\"state\":\"exited\",\"exit_code\":143}", "exited (143)"},
        {"{\"state\":\"exited\",\"exit_code\":0}", "exited (0)"},
        {"{\"state\":\"failed\",\"exit_code\":null}", "failed"},
        {"{\"state\":\"running\",\"desired_state\":\"stopped\"}",
         "running (stopping)"},
        {"{\"state\":\"stopping\",\"desired_state\":\"stopped\"}", "stopping"},
        {"{\"state\":\"pending\",\"desired_state\":\"deleted\"}",
         "pending (deleting)"},
        {"{}", "-"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *j = json_loads(cases[i].json, 0, NULL);
        char *s = fmt_instance_state(j);
        assert_string_equal(s, cases[i].want);
        free(s);
        json_decref(j);
    }
}

static void
test_table_alignment(void **state)
{
    static const char *const head[] = {"A", "LONG HEADER", "C"};
    static const char *const r1[] = {"\xc3\xa9t\xc3\xa9", NULL, "x"};
    static const char *const r2[] = {"abcdef", "y", ""};
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    struct fmt_table *t = fmt_table_new(3, head);

    (void)state;
    fmt_table_row(t, r1, NULL);
    fmt_table_row(t, r2, NULL);
    fmt_table_print(t, f, false);
    fmt_table_free(t);
    fclose(f);
    /* UTF-8 counts by characters; empty and NULL cells print "-"; no
     * trailing blanks. */
    assert_string_equal(buf, "A        LONG HEADER   C\n"
                             "\xc3\xa9t\xc3\xa9      -             x\n"
                             "abcdef   y             -\n");
    free(buf);
}

static void
test_sanitize(void **state)
{
    char *s = fmt_sanitize("a\033[2Jb\tc\nd\x7f", 0);
    (void)state;
    assert_string_equal(s, "a?[2Jb c d?");
    free(s);
    s = fmt_sanitize("abcdef", 3);
    assert_string_equal(s, "abc");
    free(s);
}

static void
test_mode_parse(void **state)
{
    (void)state;
    assert_int_equal(fmt_mode_parse("wide"), FMT_WIDE);
    assert_int_equal(fmt_mode_parse("json"), FMT_JSON);
    assert_int_equal(fmt_mode_parse("name"), FMT_NAME);
    assert_int_equal(fmt_mode_parse("table"), FMT_TABLE);
    assert_int_equal(fmt_mode_parse("yaml"), -1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tables),
        cmocka_unit_test(test_events),
        cmocka_unit_test(test_config_tables),
        cmocka_unit_test(test_error_lines),
        cmocka_unit_test(test_duration),
        cmocka_unit_test(test_parse_time),
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_state_column),
        cmocka_unit_test(test_table_alignment),
        cmocka_unit_test(test_sanitize),
        cmocka_unit_test(test_mode_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
