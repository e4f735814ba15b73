/*
 * Guest channel (agent/channel.c): the line codec, and the connection
 * logic against a unix socket this test binds in QEMU's place.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>

#include "channel.h"
#include "log.h"
#include "mem.h"

/* ---- codec ---------------------------------------------------------------- */

static int
parse(const char *line, struct channel_msg *m)
{
    char err[256];

    return channel_parse_line(line, strlen(line), m, err, sizeof(err));
}

static void
test_parse_each_key(void **state)
{
    struct channel_msg m;

    (void)state;
    assert_int_equal(parse("{\"ack\":7}", &m), 0);
    assert_true(m.has_ack);
    assert_false(m.has_ready || m.has_exit || m.has_addrs);
    assert_int_equal(m.ack, 7);
    channel_msg_clear(&m);

    assert_int_equal(parse("{\"ready\":true}", &m), 0);
    assert_true(m.has_ready && m.ready);
    channel_msg_clear(&m);
    assert_int_equal(parse("{\"ready\":false}", &m), 0);
    assert_true(m.has_ready && !m.ready);
    channel_msg_clear(&m);

    assert_int_equal(parse("{\"exit\":3}", &m), 0);
    assert_true(m.has_exit);
    assert_int_equal(m.exit_code, 3);
    channel_msg_clear(&m);
    assert_int_equal(parse("{\"exit\":255}", &m), 0);
    assert_int_equal(m.exit_code, 255);
    channel_msg_clear(&m);

    assert_int_equal(parse("{\"addr\":\"10.0.0.5:8080\"}", &m), 0);
    assert_true(m.has_addrs);
    assert_int_equal(m.naddrs, 1);
    assert_string_equal(m.addrs[0], "10.0.0.5:8080");
    channel_msg_clear(&m);

    assert_int_equal(
        parse("{\"addr\":[\"10.0.0.5\",\"fe80::1\",\"[fe80::1]:22\"]}", &m), 0);
    assert_int_equal(m.naddrs, 3);
    assert_string_equal(m.addrs[2], "[fe80::1]:22");
    channel_msg_clear(&m);

    /* Several keys in one line, unknown keys beside them ignored. */
    assert_int_equal(parse("{\"ack\":2,\"ready\":true,\"x\":1}", &m), 0);
    assert_true(m.has_ack && m.has_ready && m.ready);
    assert_int_equal(m.ack, 2);
    channel_msg_clear(&m);
}

static void
test_parse_refuses(void **state)
{
    static const char *bad[] = {
        "",
        "not json",
        "[1,2]",
        "\"ack\"",
        "{}",
        "{\"hello\":1}",
        "{\"ack\":-1}",
        "{\"ack\":\"3\"}",
        "{\"ack\":1.5}",
        "{\"ready\":1}",
        "{\"ready\":\"true\"}",
        "{\"exit\":256}",
        "{\"exit\":-1}",
        "{\"exit\":null}",
        "{\"addr\":\"\"}",
        "{\"addr\":\"example.com\"}",
        "{\"addr\":\"10.0.0.5:0\"}",
        "{\"addr\":\"10.0.0.5:65536\"}",
        "{\"addr\":\"10.0.0.5:80:1\"}",
        "{\"addr\":\"fe80::1:22x\"}",
        "{\"addr\":[1]}",
        "{\"addr\":[\"1.2.3.4\",\"1.2.3.4\",\"1.2.3.4\",\"1.2.3.4\",\"1.2.3.4\","
        "\"1.2.3.4\",\"1.2.3.4\",\"1.2.3.4\",\"1.2.3.4\",\"1.2.3.4\",\"1.2.3.4\","
        "\"1.2.3.4\",\"1.2.3.4\",\"1.2.3.4\",\"1.2.3.4\",\"1.2.3.4\",\"1.2.3.4\"]}",
        "{\"ack\":1,\"ack\":2}",
        "{\"ack\":1} trailing",
    };
    struct channel_msg m;
    char err[256];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        if (channel_parse_line(bad[i], strlen(bad[i]), &m, err,
                               sizeof(err)) == 0)
            fail_msg("accepted %s", bad[i]);
        assert_true(err[0] != '\0');
        assert_int_equal(m.naddrs, 0);
    }
}

static void
test_parse_too_long(void **state)
{
    size_t n = CHANNEL_IN_LINE_MAX + 1;
    char *line = xmalloc(n + 1);
    struct channel_msg m;
    char err[256];

    (void)state;
    memset(line, ' ', n);
    memcpy(line, "{\"ack\":1}", 9);
    line[n] = '\0';
    assert_int_equal(channel_parse_line(line, n, &m, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "longer"));
    /* The same at the limit is fine (JSON allows the trailing blanks). */
    assert_int_equal(channel_parse_line(line, n - 1, &m, err, sizeof(err)), 0);
    channel_msg_clear(&m);
    free(line);
}

static void
test_format(void **state)
{
    json_t *cfg = json_pack("{s:s, s:s, s:s}", "zeta", "1", "alpha",
                            "two words", "nl", "a\nb\"c");
    char *line;

    (void)state;
    line = channel_format_config(12, cfg);
    assert_non_null(line);
    assert_string_equal(line, "{\"version\":12,\"config\":{\"alpha\":\"two "
                              "words\",\"nl\":\"a\\nb\\\"c\",\"zeta\":\"1\"}}\n");
    /* One line: the only newline is the last byte. */
    assert_ptr_equal(strchr(line, '\n'), line + strlen(line) - 1);
    free(line);
    line = channel_format_config(1, NULL);
    assert_string_equal(line, "{\"version\":1,\"config\":{}}\n");
    free(line);
    json_decref(cfg);
    cfg = json_array();
    assert_null(channel_format_config(1, cfg));
    json_decref(cfg);
    /* Longer than a line may be: refused. */
    {
        char *big = xmalloc(CHANNEL_LINE_MAX + 1);

        memset(big, 'x', CHANNEL_LINE_MAX);
        big[CHANNEL_LINE_MAX] = '\0';
        cfg = json_pack("{s:s}", "k", big);
        assert_null(channel_format_config(1, cfg));
        json_decref(cfg);
        free(big);
    }
}

static void
test_format_boot(void **state)
{
    json_t *env = json_pack("{s:s, s:s}", "B", "2", "A", "x\001\"y");
    json_t *args = json_pack("[s, s, s]", "--", "a b", "");
    char *line;

    (void)state;
    line = channel_format_boot(env, args);
    assert_non_null(line);
    assert_string_equal(line, "{\"env\":{\"A\":\"x\\u0001\\\"y\",\"B\":\"2\"},"
                              "\"args\":[\"--\",\"a b\",\"\"]}\n");
    free(line);
    line = channel_format_boot(NULL, NULL);
    assert_string_equal(line, "{\"env\":{},\"args\":[]}\n");
    free(line);
    json_array_append_new(args, json_integer(1));
    assert_null(channel_format_boot(env, args));
    json_decref(env);
    json_decref(args);
}

/* The worst line the controller's limits allow (cmdline.h): 1 MiB of
 * config made of control characters, each 6 bytes escaped, and every link
 * at its cap. It is formatted, not refused. */
static void
test_format_largest_config(void **state)
{
    json_t *cfg = json_object();
    char key[160], *line, *v = xmalloc(GUEST_CONFIG_VALUE_MAX + 1);
    size_t used = 0;
    int i;

    (void)state;
    memset(v, 1, GUEST_CONFIG_VALUE_MAX);
    v[GUEST_CONFIG_VALUE_MAX] = '\0';
    for (i = 0; used + 3 + GUEST_CONFIG_VALUE_MAX <= GUEST_CONFIG_TOTAL_MAX; i++) {
        snprintf(key, sizeof(key), "K%02d", i);
        json_object_set_new(cfg, key, json_string(v));
        used += 3 + GUEST_CONFIG_VALUE_MAX;
    }
    memset(v, '9', GUEST_LINK_ENDPOINTS_MAX);
    v[GUEST_LINK_ENDPOINTS_MAX] = '\0';
    for (i = 0; i < GUEST_LINKS_MAX; i++) {
        snprintf(key, sizeof(key), "%0*d_ENDPOINTS", 63, i);
        json_object_set_new(cfg, key, json_string(v));
        snprintf(key, sizeof(key), "%0*d_ENDPOINTS_TRUNCATED", 63, i);
        json_object_set_new(cfg, key, json_string("18446744073709551615"));
        snprintf(key, sizeof(key), "%0*d_ENDPOINTS_VERSION", 63, i);
        json_object_set_new(cfg, key, json_string("18446744073709551615"));
    }
    line = channel_format_config(UINT64_MAX, cfg);
    assert_non_null(line);
    assert_true(strlen(line) > 6 * (size_t)(GUEST_CONFIG_TOTAL_MAX - 64 * 1024));
    assert_true(strlen(line) <= GUEST_CONFIG_LINE_BOUND);
    free(line);
    json_decref(cfg);
    free(v);
}

/* ---- connections ---------------------------------------------------------- */

struct fixture {
    char dir[64];
    char path[128];
    int lfd;  /* listening, as QEMU */
    int gfd;  /* the accepted connection: "the guest" */
    struct event_base *base;
    struct chset *cs;
    int changes;
};

static void
on_changed(void *arg, const char *id)
{
    struct fixture *f = arg;

    assert_string_equal(id, "i1");
    f->changes++;
}

static int
setup(void **state)
{
    struct fixture *f = xcalloc(1, sizeof(*f));
    struct sockaddr_un sun;
    struct chset_ops ops = {.changed = on_changed};

    snprintf(f->dir, sizeof(f->dir), "/tmp/test_channel.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/channel.sock", f->dir);
    f->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(f->lfd >= 0);
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    xstrlcpy(sun.sun_path, f->path, sizeof(sun.sun_path));
    assert_int_equal(bind(f->lfd, (struct sockaddr *)&sun, sizeof(sun)), 0);
    assert_int_equal(listen(f->lfd, 4), 0);
    f->gfd = -1;
    f->base = event_base_new();
    f->cs = chset_new(f->base, &ops, f);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *f = *state;

    chset_free(f->cs);
    event_base_free(f->base);
    if (f->gfd >= 0)
        close(f->gfd);
    close(f->lfd);
    unlink(f->path);
    rmdir(f->dir);
    free(f);
    return 0;
}

/* Runs the loop for up to ms milliseconds. */
static void
spin(struct fixture *f, int ms)
{
    struct timespec ts = {0, 5 * 1000 * 1000};
    int i;

    for (i = 0; i < ms / 5; i++) {
        event_base_loop(f->base, EVLOOP_NONBLOCK);
        nanosleep(&ts, NULL);
    }
    event_base_loop(f->base, EVLOOP_NONBLOCK);
}

static void
guest_accept(struct fixture *f)
{
    struct pollfd p = {.fd = f->lfd, .events = POLLIN};
    int i;

    for (i = 0; i < 200 && poll(&p, 1, 0) == 0; i++)
        spin(f, 10);
    assert_true(p.revents & POLLIN);
    f->gfd = accept4(f->lfd, NULL, NULL, SOCK_CLOEXEC);
    assert_true(f->gfd >= 0);
}

/* Reads what the agent wrote within ms (may be ""). */
static char *
guest_read(struct fixture *f, int ms)
{
    static char buf[4096];
    size_t n = 0;
    int waited = 0;

    buf[0] = '\0';
    while (waited < ms) {
        struct pollfd p = {.fd = f->gfd, .events = POLLIN};

        spin(f, 10);
        waited += 10;
        if (poll(&p, 1, 0) == 1 && (p.revents & POLLIN)) {
            ssize_t r = read(f->gfd, buf + n, sizeof(buf) - 1 - n);

            if (r <= 0)
                break;
            n += (size_t)r;
            buf[n] = '\0';
        }
    }
    return buf;
}

static void
guest_write(struct fixture *f, const char *s)
{
    assert_int_equal(write(f->gfd, s, strlen(s)), (ssize_t)strlen(s));
    spin(f, 50);
}

static void
test_connect_writes_current_config(void **state)
{
    struct fixture *f = *state;
    json_t *cfg = json_pack("{s:s}", "greeting", "hello");
    struct channel_view v;

    assert_int_equal(chset_config(f->cs, "i1", 3, cfg), 1);
    chset_attach(f->cs, "i1", f->path);
    guest_accept(f);
    assert_string_equal(guest_read(f, 100),
                        "{\"version\":3,\"config\":{\"greeting\":\"hello\"}}\n");
    /* Lower or equal versions are never written. */
    assert_int_equal(chset_config(f->cs, "i1", 3, cfg), 0);
    assert_int_equal(chset_config(f->cs, "i1", 2, cfg), 0);
    assert_string_equal(guest_read(f, 100), "");
    /* A higher one is, at once. */
    json_object_set_new(cfg, "greeting", json_string("hi again"));
    assert_int_equal(chset_config(f->cs, "i1", 4, cfg), 1);
    assert_string_equal(guest_read(f, 100),
                        "{\"version\":4,\"config\":{\"greeting\":\"hi again\"}}\n");
    /* The guest's reports. */
    guest_write(f, "{\"ack\":4}\n{\"ready\":true}\n");
    assert_true(chset_view(f->cs, "i1", &v));
    assert_int_equal(v.acked, 4);
    assert_true(v.ready);
    assert_int_equal(f->changes, 2);
    /* A repeat changes nothing; an ack of a version never sent is refused. */
    guest_write(f, "{\"ack\":4}\n{\"ack\":9}\n{\"ack\":1}\n");
    assert_true(chset_view(f->cs, "i1", &v));
    assert_int_equal(v.acked, 4);
    assert_int_equal(f->changes, 2);
    /* Garbage is ignored, the connection stays. */
    guest_write(f, "garbage\n\n{\"exit\":300}\r\n{\"addr\":\"10.1.2.3:80\"}\n");
    assert_true(chset_view(f->cs, "i1", &v));
    assert_int_equal(v.naddrs, 1);
    assert_string_equal(v.addrs[0], "10.1.2.3:80");
    assert_int_equal(f->changes, 3);
    /* A second readiness report is a new run: the current config again. */
    guest_write(f, "{\"ready\":true}\n");
    assert_string_equal(guest_read(f, 100),
                        "{\"version\":4,\"config\":{\"greeting\":\"hi again\"}}\n");
    assert_int_equal(f->changes, 3);
    json_decref(cfg);
}

static void
test_exit_read_at_detach(void **state)
{
    struct fixture *f = *state;
    int code = -1;
    struct channel_view v;

    chset_attach(f->cs, "i1", f->path);
    guest_accept(f);
    guest_write(f, "{\"ready\":true}\n");
    /* The guest writes its exit and QEMU goes away before the loop runs. */
    assert_int_equal(write(f->gfd, "{\"exit\":3}\n", 11), 11);
    close(f->gfd);
    f->gfd = -1;
    assert_true(chset_detach(f->cs, "i1", &code));
    assert_int_equal(code, 3);
    assert_true(chset_view(f->cs, "i1", &v));
    assert_false(v.ready);
    assert_false(v.have_exit);
    /* Detached: no redial. */
    spin(f, 300);
    {
        struct pollfd p = {.fd = f->lfd, .events = POLLIN};

        assert_int_equal(poll(&p, 1, 0), 0);
    }
    assert_false(chset_detach(f->cs, "i1", &code));
    chset_forget(f->cs, "i1");
    assert_false(chset_view(f->cs, "i1", &v));
}

/* The boot line goes first, on connect and at a new run of the guest. */
static void
test_boot_line_first(void **state)
{
    struct fixture *f = *state;
    json_t *env = json_pack("{s:s}", "MODE", "a b");
    json_t *args = json_pack("[s]", "x y");
    json_t *cfg = json_pack("{s:s}", "k", "v");
    const char *both = "{\"env\":{\"MODE\":\"a b\"},\"args\":[\"x y\"]}\n"
                       "{\"version\":2,\"config\":{\"k\":\"v\"}}\n";
    char *line;

    assert_int_equal(chset_boot(f->cs, "i1", env, args), 0);
    assert_int_equal(chset_config(f->cs, "i1", 2, cfg), 1);
    line = chset_boot_line(f->cs, "i1");
    assert_string_equal(line, "{\"env\":{\"MODE\":\"a b\"},\"args\":[\"x y\"]}\n");
    free(line);
    chset_attach(f->cs, "i1", f->path);
    guest_accept(f);
    assert_string_equal(guest_read(f, 100), both);
    /* A new config: only the config line. */
    json_object_set_new(cfg, "k", json_string("w"));
    assert_int_equal(chset_config(f->cs, "i1", 3, cfg), 1);
    assert_string_equal(guest_read(f, 100),
                        "{\"version\":3,\"config\":{\"k\":\"w\"}}\n");
    /* The first ready is this run; a second one is a new run: both again. */
    guest_write(f, "{\"ready\":true}\n");
    assert_string_equal(guest_read(f, 100), "");
    guest_write(f, "{\"ready\":true}\n");
    assert_string_equal(guest_read(f, 100),
                        "{\"env\":{\"MODE\":\"a b\"},\"args\":[\"x y\"]}\n"
                        "{\"version\":3,\"config\":{\"k\":\"w\"}}\n");
    /* Without a config, the boot line alone. */
    assert_int_equal(chset_boot(f->cs, "i2", NULL, NULL), 0);
    line = chset_boot_line(f->cs, "i2");
    assert_string_equal(line, "{\"env\":{},\"args\":[]}\n");
    free(line);
    json_decref(env);
    json_decref(args);
    json_decref(cfg);
}

/* A config line of several MB (control characters escaped) is written
 * whole: what the API accepts, the agent carries. */
static void
test_big_line_written(void **state)
{
    struct fixture *f = *state;
    size_t n = 900 * 1024, got = 0, cap = 7 * n;
    char *v = xmalloc(n + 1), *buf = xmalloc(cap);
    json_t *cfg, *back;
    int waited = 0;

    memset(v, 1, n);
    v[n] = '\0';
    cfg = json_pack("{s:s}", "k", v);
    assert_int_equal(chset_config(f->cs, "i1", 1, cfg), 1);
    chset_attach(f->cs, "i1", f->path);
    guest_accept(f);
    while (waited < 10000 && (got == 0 || buf[got - 1] != '\n')) {
        struct pollfd p = {.fd = f->gfd, .events = POLLIN};

        spin(f, 5);
        waited += 5;
        if (poll(&p, 1, 0) == 1 && (p.revents & POLLIN)) {
            ssize_t r = read(f->gfd, buf + got, cap - got);

            if (r <= 0)
                break;
            got += (size_t)r;
        }
    }
    assert_true(got > 6 * n);
    assert_int_equal(buf[got - 1], '\n');
    back = json_loadb(buf, got - 1, 0, NULL);
    assert_non_null(back);
    assert_true(json_equal(json_object_get(back, "config"), cfg));
    json_decref(back);
    json_decref(cfg);
    free(v);
    free(buf);
}

static void
test_too_long_line_redials(void **state)
{
    struct fixture *f = *state;
    size_t n = CHANNEL_IN_LINE_MAX + 100;
    char *big = xmalloc(n);
    json_t *cfg = json_pack("{s:s}", "k", "v");
    size_t off = 0;

    assert_int_equal(chset_config(f->cs, "i1", 1, cfg), 1);
    chset_attach(f->cs, "i1", f->path);
    guest_accept(f);
    assert_string_equal(guest_read(f, 100),
                        "{\"version\":1,\"config\":{\"k\":\"v\"}}\n");
    memset(big, 'x', n);
    fcntl(f->gfd, F_SETFL, O_NONBLOCK);
    while (off < n) {
        ssize_t r = write(f->gfd, big + off, n - off);

        if (r < 0 && errno == EAGAIN) {
            spin(f, 10);
            continue;
        }
        if (r <= 0)
            break;
        off += (size_t)r;
    }
    spin(f, 100);
    /* The agent hung up ... */
    {
        char c;
        ssize_t r;
        int i;

        for (i = 0; i < 100; i++) {
            r = read(f->gfd, &c, 1);
            if (r == 0)
                break;
            spin(f, 10);
        }
        assert_int_equal(r, 0);
    }
    close(f->gfd);
    /* ... and dials again, writing the current config on the new one. */
    guest_accept(f);
    assert_string_equal(guest_read(f, 200),
                        "{\"version\":1,\"config\":{\"k\":\"v\"}}\n");
    free(big);
    json_decref(cfg);
}

static void
test_dial_retries_until_bound(void **state)
{
    struct fixture *f = *state;
    char path[160];

    /* Attached before QEMU has bound the socket: it keeps trying. */
    snprintf(path, sizeof(path), "%s/late.sock", f->dir);
    chset_attach(f->cs, "i1", path);
    spin(f, 300);
    {
        struct sockaddr_un sun;
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct pollfd p;

        memset(&sun, 0, sizeof(sun));
        sun.sun_family = AF_UNIX;
        xstrlcpy(sun.sun_path, path, sizeof(sun.sun_path));
        assert_int_equal(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
        assert_int_equal(listen(fd, 1), 0);
        p.fd = fd;
        p.events = POLLIN;
        p.revents = 0;
        {
            int i;

            for (i = 0; i < 300 && poll(&p, 1, 0) == 0; i++)
                spin(f, 10);
        }
        assert_true(p.revents & POLLIN);
        close(fd);
        unlink(path);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_each_key),
        cmocka_unit_test(test_parse_refuses),
        cmocka_unit_test(test_parse_too_long),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_format_boot),
        cmocka_unit_test(test_format_largest_config),
        cmocka_unit_test_setup_teardown(test_boot_line_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_big_line_written, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_writes_current_config,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_exit_read_at_detach, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_too_long_line_redials, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_dial_retries_until_bound, setup,
                                        teardown),
    };

    log_init("test_channel", getenv("TEST_DEBUG") ? LOG_LVL_DEBUG : LOG_LVL_ERR, 0);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
