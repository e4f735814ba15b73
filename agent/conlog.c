/*
 * conlog: console log streams and the size cap (see conlog.h). Owns the
 * open streams (one file descriptor and one timer each) and the cap timer.
 *
 * A stream's state: WAITING (no file yet; a follow polls for it) -> READING
 * (at the current end a follow polls for growth, truncation and
 * replacement) -> freed after its eof chunk, a cancel, or a link drop.
 */
#define LOG_MODULE "conlog"

#include "conlog.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "domxml.h"
#include "log.h"
#include "mem.h"

/* A stream reads on while less than this is queued to the controller. */
#define CONLOG_BACKLOG_HIGH (256u * 1024u)
/* Chunks per turn of the loop, so one stream does not hog it. */
#define CONLOG_BURST 4
#define CONLOG_BACKOFF_MS 20

struct cl_stream {
    struct cl_stream *next;
    struct conlog *c;
    uint64_t id;
    char *inst;
    char *path;
    int fd; /* -1 until the file exists */
    dev_t dev;
    ino_t ino;
    uint64_t pos;
    uint64_t end; /* without follow: the size when the request came */
    uint64_t offset, tail_bytes;
    unsigned tail_lines;
    bool follow, sent, gone;
    struct event *ev;
};

struct conlog {
    struct event_base *base;
    char *state_dir;
    struct conlog_ops ops;
    void *arg;
    struct cl_stream *streams;
    int nstreams;
    struct event *cap_ev;
};

static void stream_pump(evutil_socket_t fd, short what, void *arg);

static void
stream_free(struct cl_stream *s)
{
    struct cl_stream **pp;

    for (pp = &s->c->streams; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            s->c->nstreams--;
            break;
        }
    }
    if (s->fd >= 0)
        close(s->fd);
    event_free(s->ev);
    free(s->inst);
    free(s->path);
    free(s);
}

static void
stream_later(struct cl_stream *s, unsigned ms)
{
    struct timeval tv = {ms / 1000, (long)(ms % 1000) * 1000};

    if (evtimer_add(s->ev, &tv) < 0)
        fatalx("cannot arm a console log timer");
}

/* The last chunk; frees s. */
static void
stream_finish(struct cl_stream *s, const uint8_t *data, size_t len,
              const char *error)
{
    (void)s->c->ops.send(s->c->arg, s->id, data, len, s->pos, true, error);
    stream_free(s);
}

/*
 * Where a tail starts: tail_bytes before the end, moved forward to just
 * after the tail_lines-th newline from the end (a final newline does not
 * count) if that lies within.
 */
static uint64_t
tail_start(int fd, uint64_t size, uint64_t tail_bytes, unsigned tail_lines)
{
    uint64_t lo, pos = size;
    unsigned seen = 0;
    uint8_t *buf;

    if (tail_bytes == 0 || tail_bytes > CONLOG_MAX_TAIL)
        tail_bytes = CONLOG_MAX_TAIL;
    lo = size > tail_bytes ? size - tail_bytes : 0;
    if (tail_lines == 0)
        return lo;
    buf = xmalloc(CONLOG_CHUNK);
    while (pos > lo) {
        size_t n = pos - lo < CONLOG_CHUNK ? (size_t)(pos - lo) : CONLOG_CHUNK;
        ssize_t got;

        pos -= n;
        got = pread(fd, buf, n, (off_t)pos);
        if (got != (ssize_t)n)
            break; /* shrank under us: start at lo */
        for (size_t i = n; i-- > 0;) {
            if (buf[i] != '\n' || pos + i == size - 1)
                continue;
            if (++seen == tail_lines) {
                free(buf);
                return pos + i + 1;
            }
        }
    }
    free(buf);
    return lo;
}

/* Opens the file if it exists now: 1 opened, 0 not there, -1 error. */
static int
stream_open(struct cl_stream *s, bool first)
{
    struct stat st;
    int fd = open(s->path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);

    if (fd < 0)
        return errno == ENOENT ? 0 : -1;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        errno = EINVAL;
        return -1;
    }
    s->fd = fd;
    s->dev = st.st_dev;
    s->ino = st.st_ino;
    if (!first) {
        s->pos = 0; /* a new file after rotation */
    } else if (s->tail_bytes || s->tail_lines) {
        s->pos = tail_start(fd, (uint64_t)st.st_size, s->tail_bytes,
                            s->tail_lines);
    } else {
        s->pos = s->offset <= (uint64_t)st.st_size ? s->offset
                                                   : (uint64_t)st.st_size;
    }
    s->end = (uint64_t)st.st_size;
    return 1;
}

/*
 * At the end of the file: was it truncated (cap, virtlogd) or replaced
 * (rotation)? Then go on from the start of what is there now.
 */
static void
stream_check_rotation(struct cl_stream *s)
{
    struct stat st;

    if (stat(s->path, &st) < 0) {
        if (errno != ENOENT)
            log_warn("instance %s: cannot stat %s", s->inst, s->path);
        return;
    }
    if (st.st_dev != s->dev || st.st_ino != s->ino) {
        close(s->fd);
        s->fd = -1;
        if (stream_open(s, false) < 0)
            log_warn("instance %s: cannot open %s", s->inst, s->path);
        return;
    }
    if ((uint64_t)st.st_size < s->pos)
        s->pos = 0;
}

/* Ends s with the reason errno gives for a failed open or read. */
static void
stream_fail_read(struct cl_stream *s)
{
    char why[200];

    snprintf(why, sizeof(why), "cannot read the console log of %s: %s", s->inst,
             strerror(errno));
    log_warnx("%s", why);
    stream_finish(s, NULL, 0, why);
}

static void
stream_pump(evutil_socket_t fd, short what, void *arg)
{
    struct cl_stream *s = arg;
    struct conlog *c = s->c;
    uint8_t *buf = NULL;
    int burst;

    (void)fd;
    (void)what;
    if (s->fd < 0) {
        int rc = stream_open(s, !s->sent);

        if (rc < 0) {
            stream_fail_read(s);
            return;
        }
        if (rc == 0) {
            /* No console yet: an empty log, which a follow waits on. */
            if (!s->follow || s->gone) {
                stream_finish(s, NULL, 0, NULL);
                return;
            }
            if (!s->sent) {
                s->sent = true;
                (void)c->ops.send(c->arg, s->id, NULL, 0, 0, false, NULL);
            }
            stream_later(s, CONLOG_POLL_MS);
            return;
        }
    }
    buf = xmalloc(CONLOG_CHUNK);
    for (burst = 0; burst < CONLOG_BURST; burst++) {
        size_t want = CONLOG_CHUNK;
        ssize_t n;
        bool last;

        if (c->ops.backlog(c->arg) >= CONLOG_BACKLOG_HIGH) {
            stream_later(s, CONLOG_BACKOFF_MS);
            goto out;
        }
        if (!s->follow) {
            if (s->end - s->pos < want)
                want = (size_t)(s->end - s->pos);
            if (want == 0) {
                stream_finish(s, NULL, 0, NULL);
                goto out;
            }
        }
        n = pread(s->fd, buf, want, (off_t)s->pos);
        if (n < 0) {
            stream_fail_read(s);
            goto out;
        }
        if (n == 0) {
            if (!s->follow) {
                stream_finish(s, NULL, 0, NULL); /* truncated meanwhile */
                goto out;
            }
            if (s->gone) {
                stream_finish(s, NULL, 0, NULL);
                goto out;
            }
            if (!s->sent) {
                s->sent = true;
                (void)c->ops.send(c->arg, s->id, NULL, 0, s->pos, false,
                                  NULL);
            }
            stream_check_rotation(s);
            stream_later(s, CONLOG_POLL_MS);
            goto out;
        }
        last = !s->follow && s->pos + (uint64_t)n >= s->end;
        s->sent = true;
        if (c->ops.send(c->arg, s->id, buf, (size_t)n, s->pos, last, NULL) <
            0) {
            stream_free(s);
            goto out;
        }
        s->pos += (uint64_t)n;
        if (last) {
            stream_free(s);
            goto out;
        }
    }
    stream_later(s, 0); /* more to read: after the other events */
out:
    free(buf);
}

void
conlog_start(struct conlog *c, const struct conlog_request *req)
{
    struct cl_stream *s;

    if (c->state_dir == NULL) {
        (void)c->ops.send(c->arg, req->id, NULL, 0, 0, true,
                          "this agent runs without a state directory: no "
                          "console logs");
        return;
    }
    if (!domxml_id_ok(req->instance_id)) {
        (void)c->ops.send(c->arg, req->id, NULL, 0, 0, true,
                          "not an instance id");
        return;
    }
    for (s = c->streams; s != NULL; s = s->next) {
        if (s->id == req->id) {
            log_warnx("log request %" PRIu64 " is already streaming; "
                      "repeat ignored",
                      req->id);
            return;
        }
    }
    if (c->nstreams >= CONLOG_MAX_STREAMS) {
        char why[120];

        snprintf(why, sizeof(why),
                 "this host already streams %d console logs, the most it "
                 "serves at once",
                 CONLOG_MAX_STREAMS);
        (void)c->ops.send(c->arg, req->id, NULL, 0, 0, true, why);
        return;
    }
    s = xcalloc(1, sizeof(*s));
    s->c = c;
    s->id = req->id;
    s->inst = xstrdup(req->instance_id);
    s->path = xasprintf("%s/run/%s/console.log", c->state_dir, s->inst);
    s->fd = -1;
    s->offset = req->offset;
    s->tail_bytes = req->tail_bytes;
    s->tail_lines = req->tail_lines;
    s->follow = req->follow;
    s->ev = evtimer_new(c->base, stream_pump, s);
    if (s->ev == NULL)
        fatalx("cannot allocate a console log timer");
    s->next = c->streams;
    c->streams = s;
    c->nstreams++;
    log_debug("log request %" PRIu64 ": instance %s%s", s->id, s->inst,
              s->follow ? ", following" : "");
    stream_later(s, 0);
}

void
conlog_cancel(struct conlog *c, uint64_t id)
{
    struct cl_stream *s;

    for (s = c->streams; s != NULL; s = s->next) {
        if (s->id == id) {
            log_debug("log request %" PRIu64 ": cancelled", id);
            stream_free(s);
            return;
        }
    }
}

void
conlog_instance_gone(struct conlog *c, const char *instance_id)
{
    struct cl_stream *s;

    for (s = c->streams; s != NULL; s = s->next) {
        if (strcmp(s->inst, instance_id) == 0 && !s->gone) {
            s->gone = true;
            stream_later(s, 0);
        }
    }
}

void
conlog_drop_all(struct conlog *c)
{
    while (c->streams != NULL)
        stream_free(c->streams);
}

int
conlog_streams(const struct conlog *c)
{
    return c->nstreams;
}

/* ---- the size cap ---------------------------------------------------- */

int
conlog_cap_file(const char *path, uint64_t cap)
{
    struct stat st;
    char *old = NULL;
    int fd = -1, ofd = -1, ret = -1;
    off_t in_off = 0;

    fd = open(path, O_RDWR | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        if (errno == ENOENT)
            return 0;
        log_warn("cannot open %s to cap its size", path);
        return -1;
    }
    if (fstat(fd, &st) < 0) {
        log_warn("cannot stat %s", path);
        goto cleanup;
    }
    if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size <= cap) {
        ret = 0;
        goto cleanup;
    }
    /* Keep the previous part as console.log.1 (one generation), then
     * start over: the writer appends, so it goes on at offset 0. */
    old = xasprintf("%s.1", path);
    ofd = open(old, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOCTTY,
               0640);
    if (ofd < 0) {
        log_warn("cannot create %s", old);
        goto cleanup;
    }
    while (in_off < st.st_size) {
        ssize_t n = copy_file_range(fd, &in_off, ofd, NULL,
                                    (size_t)(st.st_size - in_off), 0);
        if (n <= 0) {
            if (n < 0)
                log_warn("cannot copy %s to %s", path, old);
            break;
        }
    }
    if (ftruncate(fd, 0) < 0) {
        log_warn("cannot truncate %s", path);
        goto cleanup;
    }
    log_info("console log %s reached %lld bytes (cap %" PRIu64
             "): kept as %s, started over",
             path, (long long)st.st_size, cap, old);
    ret = 1;

cleanup:
    if (ofd >= 0 && close(ofd) < 0)
        log_warn("cannot close %s", old);
    if (fd >= 0)
        close(fd);
    free(old);
    return ret;
}

static void
cap_cb(evutil_socket_t fd, short what, void *arg)
{
    struct conlog *c = arg;
    char *run = xasprintf("%s/run", c->state_dir);
    struct dirent *e;
    DIR *d;

    (void)fd;
    (void)what;
    d = opendir(run);
    if (d == NULL) {
        if (errno != ENOENT)
            log_warn("cannot list %s", run);
        free(run);
        return;
    }
    while ((e = readdir(d)) != NULL) {
        char *path;

        if (!domxml_id_ok(e->d_name))
            continue;
        path = xasprintf("%s/%s/console.log", run, e->d_name);
        (void)conlog_cap_file(path, CONLOG_CAP);
        free(path);
    }
    closedir(d);
    free(run);
}

/* ---- life cycle ------------------------------------------------------ */

struct conlog *
conlog_new(struct event_base *base, const char *state_dir,
           const struct conlog_ops *ops, void *arg)
{
    struct conlog *c = xcalloc(1, sizeof(*c));

    c->base = base;
    c->state_dir = state_dir ? xstrdup(state_dir) : NULL;
    c->ops = *ops;
    c->arg = arg;
    if (c->state_dir != NULL) {
        struct timeval tv = {CONLOG_CAP_CHECK_S, 0};

        c->cap_ev = event_new(base, -1, EV_PERSIST, cap_cb, c);
        if (c->cap_ev == NULL || event_add(c->cap_ev, &tv) < 0)
            fatalx("cannot start the console log cap timer");
    }
    return c;
}

void
conlog_free(struct conlog *c)
{
    if (c == NULL)
        return;
    conlog_drop_all(c);
    if (c->cap_ev)
        event_free(c->cap_ev);
    free(c->state_dir);
    free(c);
}
