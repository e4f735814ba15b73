/*
 * test_cli_args: cloudctl's argument handling, run in-process through
 * cli_main(). A usage error must exit 2 with exactly one line on stderr
 * ("cloudctl: ...") and nothing on stdout, before any network traffic;
 * help goes to stdout and exits 0. Also the request bodies that `run` and
 * `services update` build, and the small parsers behind them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <netinet/in.h>
#include <unistd.h>

#include <cmocka.h>

#include "args.h"
#include "cli.h"
#include "cmd_priv.h"
#include "mem.h"

struct result {
    int rc;
    char *out;
    char *err;
};

/* Runs `cloudctl ARGS...` (NULL-terminated) with captured streams. */
static struct result
run(const char *first, ...)
{
    char *argv[64];
    int argc = 0;
    va_list ap;
    struct result r = {0};
    size_t olen = 0, elen = 0;

    argv[argc++] = (char *)"cloudctl";
    va_start(ap, first);
    for (const char *a = first; a != NULL; a = va_arg(ap, const char *))
        argv[argc++] = (char *)a;
    va_end(ap);
    argv[argc] = NULL;

    FILE *out = open_memstream(&r.out, &olen);
    FILE *err = open_memstream(&r.err, &elen);
    r.rc = cli_main(argc, argv, out, err);
    fclose(out);
    fclose(err);
    return r;
}

static void
result_free(struct result *r)
{
    free(r->out);
    free(r->err);
}

static size_t
count_lines(const char *s)
{
    size_t n = 0;
    for (; *s != '\0'; s++)
        if (*s == '\n')
            n++;
    return n;
}

/* The one-line error contract. */
static void
assert_one_error(const struct result *r, int rc, const char *needle)
{
    if (r->rc != rc || count_lines(r->err) != 1 ||
        strncmp(r->err, "cloudctl: ", 10) != 0 || r->out[0] != '\0')
        print_message("rc=%d stdout=[%s] stderr=[%s]\n", r->rc, r->out, r->err);
    assert_int_equal(r->rc, rc);
    assert_int_equal(count_lines(r->err), 1);
    assert_memory_equal(r->err, "cloudctl: ", 10);
    assert_string_equal(r->out, "");
    if (needle != NULL && strstr(r->err, needle) == NULL)
        fail_msg("stderr [%s] lacks [%s]", r->err, needle);
}

#define USAGE(needle, ...)                                                     \
    do {                                                                       \
        struct result r_ = run(__VA_ARGS__, NULL);                             \
        assert_one_error(&r_, CLI_EXIT_USAGE, needle);                         \
        result_free(&r_);                                                      \
    } while (0)

static int
setup(void **state)
{
    (void)state;
    /* Nothing from the developer's set-up: no context file, no env. */
    setenv("XDG_CONFIG_HOME", "/nonexistent/cloudctl-test", 1);
    unsetenv("CLOUD_URL");
    unsetenv("CLOUD_TOKEN");
    return 0;
}

static void
test_usage_errors(void **state)
{
    (void)state;
    {
        struct result r = run(NULL, NULL);
        assert_one_error(&r, CLI_EXIT_USAGE, "no command");
        result_free(&r);
    }
    USAGE("unknown flag --bogus", "--bogus");
    USAGE("--server needs a value", "--server");
    USAGE("unknown command \"frobnicate\"", "frobnicate");
    USAGE("ps: unknown flag --bogus", "ps", "--bogus");
    USAGE("unknown flag -z", "ps", "-z");
    USAGE("takes no value", "ps", "--all=yes");
    USAGE("unexpected argument", "ps", "extra");
    USAGE("not one of table", "-o", "yaml", "ps");
    USAGE("not one of table", "ps", "-o", "yaml");
    USAGE("IMAGE is required", "run");
    USAGE("--cpus \"x\"", "run", "--cpus", "x", "img");
    USAGE("--cpus \"1.5\"", "run", "--cpus", "1.5", "img");
    USAGE("--memory \"12Q\"", "run", "--memory", "12Q", "img");
    USAGE("--memory", "run", "-m", "-1", "img");
    USAGE("--disk \"1500M\"", "run", "--disk", "1500M", "img");
    USAGE("needs --name", "run", "--replicas", "2", "img");
    USAGE("--replicas \"two\"", "run", "--replicas", "two", "img");
    USAGE("exclude each other", "run", "--spread", "--binpack", "img");
    USAGE("empty name", "run", "--env", "=x", "img");
    USAGE("not set in this environment", "run", "--env",
          "CLOUDCTL_TEST_UNSET_VARIABLE", "img");
    USAGE("not KEY=VALUE", "run", "--label", "novalue", "img");
    USAGE("--timeout \"forever\"", "run", "--timeout", "forever", "img");
    USAGE("required", "kill");
    USAGE("signal \"HUP\"", "kill", "-s", "HUP", "x");
    USAGE("-s needs a value", "kill", "-s");
    USAGE("--grace \"soon\" is not a number", "kill", "--grace", "soon", "x");
    USAGE("--grace \"-5\"", "stop", "--grace", "-5", "x");
    USAGE("SERVICE=REPLICAS is required", "scale");
    USAGE("\"web\" is not SERVICE=REPLICAS", "scale", "web");
    USAGE("\"web=-1\"", "scale", "web=-1");
    USAGE("\"=3\"", "scale", "=3");
    USAGE("required", "wait");
    USAGE("--timeout \"x\"", "wait", "--timeout", "x", "id");
    USAGE("exactly one", "logs");
    USAGE("exactly one", "logs", "a", "b");
    USAGE("--tail \"x\"", "logs", "--tail", "x", "a");
    USAGE("required", "inspect");
    USAGE("required", "rm");
    USAGE("required", "stop");
    USAGE("unknown subcommand \"frob\"", "services", "frob");
    USAGE("exactly one service NAME", "services", "update");
    USAGE("at least one change", "services", "update", "web");
    USAGE("NAME is required", "services", "rm");
    USAGE("unknown subcommand \"frob\"", "hosts", "frob");
    USAGE("NAME is required", "hosts", "cordon");
    USAGE("exactly one NAME:TAG", "images", "push");
    USAGE("--kernel FILE", "images", "push", "x:y");
    USAGE("unknown subcommand", "images", "frob");
    USAGE("--since \"abc\"", "events", "--since", "abc");
    USAGE("unexpected argument", "events", "extra");
    USAGE("subcommand is required", "config");
    USAGE("unknown subcommand \"frob\"", "config", "frob", "web");
    USAGE("not KEY=VALUE", "config", "set", "web", "novalue");
    USAGE("SERVICE is required", "config", "get");
    USAGE("unset takes KEY names", "config", "unset", "web", "A=1");
    USAGE("get takes SERVICE [KEY]", "config", "get", "web", "A", "B");
    USAGE("--version is for get only", "config", "set", "web", "A=1",
          "--version", "2");
    USAGE("--if-version is for set", "config", "get", "web", "--if-version",
          "2");
    USAGE("--if-version \"x\"", "config", "set", "web", "A=1", "--if-version",
          "x");
    USAGE("rollback takes SERVICE VERSION", "config", "rollback", "web");
    USAGE("VERSION \"0\"", "config", "rollback", "web", "0");
    USAGE("history takes SERVICE", "config", "history", "web", "x");
    USAGE("watch takes SERVICE", "config", "watch", "web", "x");
    USAGE("exactly one SERVICE", "endpoints");
    USAGE("exactly one SERVICE", "endpoints", "a", "b");
    USAGE("--link is for services", "run", "--link", "db", "img");
    USAGE("--ready-when is for services", "run", "--ready-when", "guest",
          "img");
    USAGE("--ready-when \"soon\"", "run", "--name", "w", "--replicas", "1",
          "--ready-when", "soon", "img");
    USAGE("--ready-when \"soon\"", "services", "update", "web",
          "--ready-when", "soon");
    USAGE("--selector needs", "ps", "-l", "");
    USAGE("--no-labels and --label", "services", "update", "web",
          "--no-labels", "-l", "a=b");
    USAGE("--unlink needs a service", "services", "update", "web", "--unlink",
          "");
    USAGE("unknown command \"frob\"", "help", "frob");
}

static void
test_help(void **state)
{
    (void)state;
    struct result r = run("--help", NULL);
    assert_int_equal(r.rc, 0);
    assert_non_null(strstr(r.out, "Usage: cloudctl [global flags] COMMAND"));
    assert_string_equal(r.err, "");
    result_free(&r);

    /* Every command has complete help reachable both ways. */
    for (const struct cli_cmd *c = cli_commands; c->name != NULL; c++) {
        char *want = xasprintf("Usage: cloudctl %s", c->name);
        struct result a = run(c->name, "--help", NULL);
        struct result b = run("help", c->name, NULL);
        assert_int_equal(a.rc, 0);
        assert_string_equal(a.err, "");
        if (strncmp(a.out, want, strlen(want)) != 0)
            fail_msg("%s --help starts [%.40s]", c->name, a.out);
        assert_non_null(strstr(a.out, "Global flags:"));
        assert_string_equal(a.out, b.out);
        result_free(&a);
        result_free(&b);
        free(want);
    }
    /* Subcommands answer with their command's help. */
    r = run("services", "update", "--help", NULL);
    assert_int_equal(r.rc, 0);
    assert_non_null(strstr(r.out, "Usage: cloudctl services"));
    result_free(&r);
    r = run("version", "--client", NULL);
    assert_int_equal(r.rc, 0);
    assert_non_null(strstr(r.out, "Client: cloudctl " CLOUD_VERSION));
    result_free(&r);
}

/* A port nobody listens on: bound, then closed. */
static int
refused_port(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

static void
test_failures(void **state)
{
    char *url = xasprintf("http://127.0.0.1:%d", refused_port());
    struct result r;

    (void)state;
    r = run("--server", url, "ps", NULL);
    assert_one_error(&r, CLI_EXIT_FAIL, "connection refused");
    assert_non_null(strstr(r.err, url));
    result_free(&r);

    /* The env var is used when no flag is given. */
    setenv("CLOUD_URL", url, 1);
    r = run("hosts", NULL);
    assert_one_error(&r, CLI_EXIT_FAIL, url);
    result_free(&r);
    unsetenv("CLOUD_URL");

    r = run("--server", "ftp://example.org", "ps", NULL);
    assert_one_error(&r, CLI_EXIT_FAIL, "http:// or https://");
    result_free(&r);

    /* A broken context file is reported, not ignored. */
    char dir[] = "/tmp/cloudctl-test-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char *sub = xasprintf("%s/cloud", dir);
    char *file = xasprintf("%s/context.json", sub);
    assert_int_equal(mkdir(sub, 0700), 0);
    FILE *f = fopen(file, "w");
    fputs("{\"url\": ", f);
    fclose(f);
    setenv("XDG_CONFIG_HOME", dir, 1);
    r = run("ps", NULL);
    assert_one_error(&r, CLI_EXIT_FAIL, "context file");
    result_free(&r);

    /* A good one gives the URL. */
    f = fopen(file, "w");
    fprintf(f, "{\"url\":\"%s\",\"token\":\"t\"}", url);
    fclose(f);
    r = run("ps", NULL);
    assert_one_error(&r, CLI_EXIT_FAIL, url);
    result_free(&r);

    setenv("XDG_CONFIG_HOME", "/nonexistent/cloudctl-test", 1);
    unlink(file);
    rmdir(sub);
    rmdir(dir);
    free(file);
    free(sub);
    free(url);
}

/* Builds `run` argv into a body and compares it with want (JSON). */
static void
assert_run_body(const char *want, bool want_service, int argc, char **argv)
{
    struct cli_ctx ctx = {.out = stdout, .err = stderr};
    json_t *body = NULL, *w = json_loads(want, 0, NULL);
    bool service = false, wait = false;
    long timeout = 0;

    assert_non_null(w);
    assert_int_equal(
        cli_run_build(&ctx, argc, argv, &body, &service, &wait, &timeout), 0);
    if (!json_equal(body, w)) {
        char *got = json_dumps(body, JSON_SORT_KEYS);
        fail_msg("run body %s, want %s", got, want);
    }
    assert_int_equal(service, want_service);
    json_decref(body);
    json_decref(w);
}

static void
test_run_body(void **state)
{
    (void)state;
    setenv("CLOUDCTL_TEST_B", "from-env", 1);
    {
        char *argv[] = {"run", "hello", NULL};
        assert_run_body("{\"image\":\"hello\"}", false, 2, argv);
    }
    {
        char *argv[] = {"run",
                        "--name",
                        "web",
                        "--replicas",
                        "3",
                        "-m",
                        "1G",
                        "--cpus=2",
                        "-e",
                        "A=1",
                        "--env",
                        "CLOUDCTL_TEST_B",
                        "--constraint",
                        "zone=a",
                        "--constraint",
                        "rack in (r1,r2)",
                        "--binpack",
                        "--restart",
                        "on-failure:3",
                        "hello:latest",
                        "--",
                        "--port",
                        "80",
                        NULL};
        assert_run_body(
            "{\"image\":\"hello:latest\",\"name\":\"web\",\"replicas\":3,\"resources\":{\"vcpus\":2,\"memory_mib\":1024,\"disk_gib\":0},\"env\":{\"A\":\"1\",\"CLOUDCTL_TEST_B\":\"from-env\"},\"restart\":\"on-failure:3\",\"args\":[\"--port\",\"80\"],\"placement\":{\"constraints\":[\"zone=a\",\"rack in (r1,r2)\"],\"strategy\":\"binpack\",\"max_per_host\":0}}",
            true, 23, argv);
    }
    {
        /* After IMAGE everything is the guest's, flags included. */
        char *argv[] = {"run", "--memory", "300",   "img",
                        "ls",  "-l",       "--all", NULL};
        assert_run_body(
            "{\"image\":\"img\",\"args\":[\"ls\",\"-l\",\"--all\"],\"resources\":{\"vcpus\":1,\"memory_mib\":300,\"disk_gib\":0}}",
            false, 7, argv);
    }
    {
        char *argv[] = {"run",  "--name", "web", "--replicas", "1",
                        "-l",   "app=web", "--label", "tier=", "--link",
                        "db",   "--link", "cache", "--ready-when", "guest",
                        "img",  NULL};
        assert_run_body(
            "{\"image\":\"img\",\"name\":\"web\",\"replicas\":1,\"labels\":{\"app\":\"web\",\"tier\":\"\"},\"links\":[\"db\",\"cache\"],\"ready_when\":\"guest\"}",
            true, 16, argv);
    }
    {
        char *argv[] = {"run", "img", "--", "--", "x", NULL};
        assert_run_body("{\"image\":\"img\",\"args\":[\"--\",\"x\"]}", false, 5,
                        argv);
    }
    {
        char *argv[] = {"run", "-l", "team=a", "--disk", "10G", "img", NULL};
        assert_run_body(
            "{\"image\":\"img\",\"labels\":{\"team\":\"a\"},\"resources\":{\"vcpus\":1,\"memory_mib\":256,\"disk_gib\":10}}",
            false, 6, argv);
    }
}

static void
test_update_body(void **state)
{
    struct cli_ctx ctx = {.out = stdout, .err = stderr};
    char *argv[] = {"update",     "web",       "--image", "hello:2",
                    "--replicas", "4",         "-m",      "512M",
                    "--arg",      "a",         "--arg",   "b",
                    "--wait",     "--timeout", "2m",      NULL};
    json_t *body = NULL;
    char *name = NULL;
    bool wait = false;
    long timeout = 0;

    (void)state;
    json_t *link = NULL, *unlink = NULL;
    assert_int_equal(cli_services_update_build(&ctx, 15, argv, &body, &name,
                                               &wait, &timeout, &link, &unlink),
                     0);
    assert_int_equal(json_array_size(link), 0);
    assert_int_equal(json_array_size(unlink), 0);
    json_decref(link);
    json_decref(unlink);
    json_t *want = json_loads(
        "{\"image\":\"hello:2\",\"replicas\":4,\"args\":[\"a\",\"b\"],\"resources\":{\"vcpus\":1,\"memory_mib\":512,\"disk_gib\":0}}",
        0, NULL);
    assert_true(json_equal(body, want));
    assert_string_equal(name, "web");
    assert_true(wait);
    assert_int_equal(timeout, 120);
    json_decref(want);
    json_decref(body);
    free(name);
    {
        char *argv2[] = {"update", "web",      "--link", "db",    "--unlink",
                         "cache",  "-l",       "a=b",    "--label", "c=",
                         NULL};
        assert_int_equal(cli_services_update_build(&ctx, 10, argv2, &body,
                                                   &name, &wait, &timeout,
                                                   &link, &unlink),
                         0);
        json_t *w2 = json_loads("{\"labels\":{\"a\":\"b\",\"c\":\"\"}}",
                                0, NULL);
        assert_true(json_equal(body, w2));
        assert_string_equal(json_string_value(json_array_get(link, 0)), "db");
        assert_string_equal(json_string_value(json_array_get(unlink, 0)),
                            "cache");
        json_decref(w2);
        json_decref(link);
        json_decref(unlink);
        json_decref(body);
        free(name);
    }
    {
        char *argv3[] = {"update", "web", "--no-labels", NULL};
        assert_int_equal(cli_services_update_build(&ctx, 3, argv3, &body,
                                                   &name, &wait, &timeout,
                                                   &link, &unlink),
                         0);
        assert_true(json_is_object(json_object_get(body, "labels")));
        assert_int_equal(json_object_size(json_object_get(body, "labels")), 0);
        json_decref(link);
        json_decref(unlink);
        json_decref(body);
        free(name);
    }
}

static void
test_parsers(void **state)
{
    static const struct {
        const char *in;
        long long mib; /* -1: invalid */
    } sizes[] = {
        {"256", 256}, {"256M", 256}, {"256mi", 256},  {"256MiB", 256},
        {"2G", 2048}, {"2gb", 2048}, {"1T", 1048576}, {"0", 0},
        {"", -1},     {"M", -1},     {"12Q", -1},     {"-5", -1},
        {"1.5G", -1}, {"256 M", -1},
    };
    static const struct {
        const char *in;
        long secs;
    } durations[] = {
        {"90", 90}, {"90s", 90}, {"5m", 300}, {"1h", 3600}, {"0", 0},
        {"x", -1},  {"5d", -1},  {"-1", -1},  {"", -1},     {"1.5h", -1},
    };
    long long v;
    (void)state;
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        int rc = cli_parse_size_mib(sizes[i].in, &v);
        if (sizes[i].mib < 0) {
            assert_int_equal(rc, -1);
        } else {
            assert_int_equal(rc, 0);
            assert_int_equal(v, sizes[i].mib);
        }
    }
    for (size_t i = 0; i < sizeof(durations) / sizeof(durations[0]); i++)
        assert_int_equal(cli_parse_duration(durations[i].in),
                         durations[i].secs);
    assert_int_equal(cli_parse_int("12", 0, 100, &v), 0);
    assert_int_equal(v, 12);
    assert_int_equal(cli_parse_int("101", 0, 100, &v), -1);
    assert_int_equal(cli_parse_int("1x", 0, 100, &v), -1);
    assert_int_equal(cli_parse_int("", 0, 100, &v), -1);

    char *e = cli_escape("a b/c?d=é");
    assert_string_equal(e, "a%20b%2Fc%3Fd%3D%C3%A9");
    free(e);
}

static void
test_args_iter(void **state)
{
    static const struct arg_spec specs[] = {
        {"all", 'a', false, 1},   {"follow", 'f', false, 2},
        {"signal", 's', true, 3}, {"name", 0, true, 4},
        {NULL, 0, false, 0},
    };
    char *argv[] = {"cmd", "-af", "-sKILL", "x",  "--name=n1", "--name",
                    "n2",  "-",   "--",     "-a", NULL};
    struct args_iter it;
    const char *val;
    (void)state;

    args_init(&it, 10, argv, 1, specs, NULL, 0);
    assert_int_equal(args_next(&it, &val), 1);
    assert_int_equal(args_next(&it, &val), 2);
    assert_int_equal(args_next(&it, &val), 3);
    assert_string_equal(val, "KILL");
    assert_int_equal(args_next(&it, &val), ARGS_POSITIONAL);
    assert_string_equal(val, "x");
    assert_int_equal(args_next(&it, &val), 4);
    assert_string_equal(val, "n1");
    assert_int_equal(args_next(&it, &val), 4);
    assert_string_equal(val, "n2");
    assert_int_equal(args_next(&it, &val), ARGS_POSITIONAL);
    assert_string_equal(val, "-");
    assert_int_equal(args_next(&it, &val), ARGS_POSITIONAL);
    assert_string_equal(val, "-a"); /* after "--" */
    assert_int_equal(args_next(&it, &val), ARGS_END);

    char *bad[] = {"cmd", "-ax", NULL};
    args_init(&it, 2, bad, 1, specs, NULL, 0);
    assert_int_equal(args_next(&it, &val), 1);
    assert_int_equal(args_next(&it, &val), ARGS_ERROR);
    assert_string_equal(it.error, "unknown flag -x");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_usage_errors), cmocka_unit_test(test_help),
        cmocka_unit_test(test_failures),     cmocka_unit_test(test_run_body),
        cmocka_unit_test(test_update_body),  cmocka_unit_test(test_parsers),
        cmocka_unit_test(test_args_iter),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
