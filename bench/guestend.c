/*
 * cloud-guestend: the guest end of many guest channels, for
 * bench/config_bench.py on libvirt's test driver (no QEMU binds the channel
 * sockets there; see tests/integration/guestpeer.py for the Python peer the
 * tests use).
 *
 * It plays QEMU + the sample guest on each socket it is told of: it binds
 * and listens, accepts the agent's connection, says {"ready":true}, answers
 * every config line with {"ack":N} at once, and reports to its parent. One
 * epoll loop in C: 100 simulated guests share this machine's cores with the
 * controller, the agents and PostgreSQL, and a Python guest end spent more
 * CPU per line than the agent that wrote it (real guests run on their own
 * vCPUs).
 *
 *   cloud-guestend KEY
 * stdin, one command a line:
 *   listen INST PATH   serve PATH (unlinked and bound afresh) for INST
 * stdout, one event a line:
 *   C INST                       the agent connected to INST's channel
 *   L INST VERSION T_NS VALUE    INST read config line VERSION at T_NS
 *                                (CLOCK_MONOTONIC, Python's time.monotonic)
 *                                with KEY = VALUE ("-": no such key)
 *   E TEXT                       an error
 * Exits when stdin closes.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "mem.h"

#define MAX_LINE (1u << 20)

enum kind { K_STDIN, K_LISTEN, K_CONN };

struct fdst {
    enum kind kind;
    int fd;
    char inst[64];
    char *buf;
    size_t len, cap;
};

static int ep;
static const char *key;

static void
say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
say(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
}

static uint64_t
now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static struct fdst *
watch_fd(enum kind kind, int fd, const char *inst)
{
    struct fdst *s = xcalloc(1, sizeof(*s));
    struct epoll_event ev = {.events = EPOLLIN};

    s->kind = kind;
    s->fd = fd;
    snprintf(s->inst, sizeof(s->inst), "%s", inst);
    ev.data.ptr = s;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
        say("E epoll_ctl %s: %s\n", inst, strerror(errno));
        close(fd);
        free(s);
        return NULL;
    }
    return s;
}

static void
drop(struct fdst *s)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, s->fd, NULL);
    close(s->fd);
    free(s->buf);
    free(s);
}

static void
send_line(struct fdst *s, const char *line)
{
    size_t n = strlen(line), off = 0;

    while (off < n) {
        ssize_t w = write(s->fd, line + off, n - off);

        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            if (errno != EPIPE && errno != ECONNRESET)
                say("E write to %s: %s\n", s->inst, strerror(errno));
            return;
        }
        off += (size_t)w;
    }
}

static void
do_listen(const char *inst, const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd;

    if (strlen(path) >= sizeof(sa.sun_path) || strlen(inst) >= 64) {
        say("E listen %s: path or name too long\n", inst);
        return;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    (void)unlink(path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        listen(fd, 4) < 0) {
        say("E bind %s: %s\n", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return;
    }
    (void)watch_fd(K_LISTEN, fd, inst);
}

/* One config line from the agent: ack it, then report it. */
static void
on_config_line(struct fdst *s, char *line, uint64_t t)
{
    json_error_t e;
    json_t *j = json_loads(line, 0, &e), *v, *cfg;
    char ack[64];
    long long version;

    /* The boot line (env, args; agent/channel.h) precedes the config. */
    if (j != NULL && json_is_object(json_object_get(j, "env"))) {
        json_decref(j);
        return;
    }
    if (j == NULL || !json_is_integer(v = json_object_get(j, "version")) ||
        !json_is_object(cfg = json_object_get(j, "config"))) {
        say("E bad line from the agent on %s: %.200s\n", s->inst, line);
        json_decref(j);
        return;
    }
    version = (long long)json_integer_value(v);
    snprintf(ack, sizeof(ack), "{\"ack\":%lld}\n", version);
    send_line(s, ack);
    v = json_object_get(cfg, key);
    say("L %s %lld %llu %s\n", s->inst, version, (unsigned long long)t,
        json_is_string(v) && strchr(json_string_value(v), ' ') == NULL &&
                strchr(json_string_value(v), '\n') == NULL &&
                json_string_value(v)[0] != '\0'
            ? json_string_value(v)
            : "-");
    json_decref(j);
}

/* Reads what is there; calls fn for each whole line. 0, or -1 at EOF. */
static int
read_lines(struct fdst *s, void (*fn)(struct fdst *, char *, uint64_t))
{
    char tmp[65536];
    ssize_t n = read(s->fd, tmp, sizeof(tmp));
    uint64_t t = now_ns();
    size_t start = 0;

    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return 0;
    if (n <= 0)
        return -1;
    if (s->len + (size_t)n + 1 > s->cap) {
        s->cap = s->len + (size_t)n + 1 + 4096;
        if (s->cap > MAX_LINE) {
            say("E a line of more than %u bytes on %s\n", MAX_LINE, s->inst);
            return -1;
        }
        s->buf = xrealloc(s->buf, s->cap);
    }
    memcpy(s->buf + s->len, tmp, (size_t)n);
    s->len += (size_t)n;
    for (size_t i = 0; i < s->len; i++) {
        if (s->buf[i] != '\n')
            continue;
        s->buf[i] = '\0';
        if (i > start)
            fn(s, s->buf + start, t);
        start = i + 1;
    }
    memmove(s->buf, s->buf + start, s->len - start);
    s->len -= start;
    return 0;
}

static void
on_command(struct fdst *s, char *line, uint64_t t)
{
    char inst[64], path[4096];

    (void)s;
    (void)t;
    if (sscanf(line, "listen %63s %4095s", inst, path) == 2)
        do_listen(inst, path);
    else
        say("E unknown command: %.200s\n", line);
}

int
main(int argc, char **argv)
{
    struct epoll_event evs[64];

    if (argc != 2) {
        fprintf(stderr, "usage: cloud-guestend KEY\n");
        return 2;
    }
    key = argv[1];
    setvbuf(stdout, NULL, _IOFBF, 1 << 16);
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0 || fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK) < 0) {
        perror("cloud-guestend");
        return 1;
    }
    if (watch_fd(K_STDIN, 0, "stdin") == NULL)
        return 1;
    for (;;) {
        int n = epoll_wait(ep, evs, 64, -1);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            perror("cloud-guestend: epoll_wait");
            return 1;
        }
        for (int i = 0; i < n; i++) {
            struct fdst *s = evs[i].data.ptr;

            if (s->kind == K_STDIN) {
                if (read_lines(s, on_command) < 0)
                    return 0; /* the bench is done */
            } else if (s->kind == K_LISTEN) {
                int c = accept4(s->fd, NULL, NULL,
                                SOCK_NONBLOCK | SOCK_CLOEXEC);
                struct fdst *cs;

                if (c < 0)
                    continue;
                cs = watch_fd(K_CONN, c, s->inst);
                if (cs == NULL)
                    continue;
                say("C %s\n", s->inst);
                send_line(cs, "{\"ready\":true}\n");
            } else if (read_lines(s, on_config_line) < 0) {
                drop(s);
            }
        }
        fflush(stdout);
    }
}
