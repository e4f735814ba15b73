/*
 * gateway_blobs: blob downloads over an agent's link (see gateway_blobs.h).
 * Owns the open blob files of the streams of one connection (or, for a
 * blob not cached on this replica, the wait for its fill from PostgreSQL,
 * blobstore.c), the callback on that connection's output buffer that
 * notices when it drained, and the event that queues the next pieces. Pieces are queued from that event,
 * never from inside the buffer callback (which runs while libevent is
 * draining the buffer).
 */
#define LOG_MODULE "gateway"

#include "gateway_blobs.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "blobstore.h"
#include "log.h"
#include "mem.h"

/* A stream waiting for the cache fill of its blob. */
struct gwb_pending {
    struct gwblobs *b;
    uint64_t id;
    struct blobstore_wait *w;
};

struct gwb_stream {
    uint64_t id;
    char digest[72];
    int fd;                    /* -1 while pend */
    struct gwb_pending *pend;  /* waiting for the cache, or NULL */
    uint64_t offset, size;
};

struct gwblobs {
    struct event_base *base;
    struct bufferevent *bev;
    struct evbuffer_cb_entry *out_cb;
    struct event *pump;
    struct blobstore *store;
    char *host;
    gwblobs_send_fn send;
    void *conn;
    struct gwb_stream streams[GWBLOBS_STREAMS_PER_AGENT];
    int nstreams;
    int turn; /* next stream to get a piece (round robin) */
    unsigned char *buf;
};

int
gwblobs_digest_ok(const char *d)
{
    if (d == NULL || strncmp(d, "sha256:", 7) != 0 || strlen(d) != 71)
        return 0;
    return strspn(d + 7, "0123456789abcdef") == 64;
}

static int
send_chunk(struct gwblobs *b, uint64_t id, uint64_t offset,
           const unsigned char *data, size_t len, uint64_t total, int eof,
           const char *error)
{
    Cloud__Agent__Envelope env = CLOUD__AGENT__ENVELOPE__INIT;
    Cloud__Agent__BlobChunk ch = CLOUD__AGENT__BLOB_CHUNK__INIT;

    ch.request_id = id;
    ch.offset = offset;
    ch.data.data = (uint8_t *)data;
    ch.data.len = len;
    ch.total_size = total;
    ch.eof = eof != 0;
    ch.error = (char *)(error ? error : "");
    env.msg_case = CLOUD__AGENT__ENVELOPE__MSG_BLOB_CHUNK;
    env.blob_chunk = &ch;
    return b->send(b->conn, &env);
}

static void send_error(struct gwblobs *b, uint64_t id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
send_error(struct gwblobs *b, uint64_t id, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    log_info("host %s: blob request %" PRIu64 " refused: %s", b->host, id,
             msg);
    (void)send_chunk(b, id, 0, NULL, 0, 0, 1, msg);
}

static int
stream_find(const struct gwblobs *b, uint64_t id)
{
    for (int i = 0; i < b->nstreams; i++)
        if (b->streams[i].id == id)
            return i;
    return -1;
}

static void
stream_drop(struct gwblobs *b, int i)
{
    if (b->streams[i].pend) {
        blobstore_fetch_cancel(b->streams[i].pend->w);
        free(b->streams[i].pend);
    } else if (b->streams[i].fd >= 0) {
        close(b->streams[i].fd);
    }
    b->streams[i] = b->streams[b->nstreams - 1];
    b->nstreams--;
    if (b->turn >= b->nstreams)
        b->turn = 0;
}

static size_t
backlog(const struct gwblobs *b)
{
    return evbuffer_get_length(bufferevent_get_output(b->bev));
}

/* Queues pieces, round robin over the streams, while the buffer is low. */
static void
pump_cb(evutil_socket_t fd, short what, void *arg)
{
    struct gwblobs *b = arg;

    (void)fd;
    (void)what;
    while (b->bev != NULL && b->nstreams > 0 &&
           backlog(b) < GWBLOBS_LOW_WATER) {
        struct gwb_stream *s;
        uint64_t left;
        size_t want;
        ssize_t n = 0;
        int eof, tries = 0;

        /* The next stream whose file is open (others wait for a fill). */
        while (b->streams[b->turn].pend && tries++ < b->nstreams)
            b->turn = (b->turn + 1) % b->nstreams;
        if (b->streams[b->turn].pend)
            return;
        s = &b->streams[b->turn];
        left = s->size - s->offset;
        want = left < GWBLOBS_PIECE ? (size_t)left : GWBLOBS_PIECE;

        if (want > 0) {
            n = pread(s->fd, b->buf, want, (off_t)s->offset);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                char why[256];

                snprintf(why, sizeof(why), "%s",
                         n < 0 ? strerror(errno) : "the file got shorter");
                log_warnx("host %s: cannot read blob %s at offset %" PRIu64
                          ": %s",
                          b->host, s->digest, s->offset, why);
                send_error(b, s->id,
                           "blob %s cannot be read on the controller at "
                           "offset %" PRIu64 ": %s",
                           s->digest, s->offset, why);
                stream_drop(b, b->turn);
                continue;
            }
        }
        eof = s->offset + (uint64_t)n == s->size;
        if (send_chunk(b, s->id, s->offset, b->buf, (size_t)n, s->size, eof,
                       NULL) < 0) {
            /* The connection is closing (and may have stopped us). */
            gwblobs_stop(b);
            return;
        }
        s->offset += (uint64_t)n;
        if (eof) {
            log_info("host %s: blob %s sent (%" PRIu64 " bytes, request %" PRIu64
                     ")",
                     b->host, s->digest, s->size, s->id);
            stream_drop(b, b->turn);
            continue;
        }
        b->turn = (b->turn + 1) % b->nstreams;
    }
}

/* The output buffer changed: when it drained below the mark, refill. */
static void
out_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    struct gwblobs *b = arg;

    if (info->n_deleted == 0 || b->nstreams == 0)
        return;
    if (evbuffer_get_length(buf) < GWBLOBS_LOW_WATER)
        event_active(b->pump, EV_TIMEOUT, 0);
}

struct gwblobs *
gwblobs_new(struct event_base *base, struct bufferevent *bev,
            struct blobstore *store, const char *host, gwblobs_send_fn send,
            void *conn)
{
    struct gwblobs *b = xcalloc(1, sizeof(*b));

    b->base = base;
    b->bev = bev;
    b->store = store;
    b->host = xstrdup(host ? host : "?");
    b->send = send;
    b->conn = conn;
    b->buf = xmalloc(GWBLOBS_PIECE);
    b->pump = event_new(base, -1, 0, pump_cb, b);
    if (b->pump == NULL)
        fatalx("cannot allocate the blob stream event");
    b->out_cb = evbuffer_add_cb(bufferevent_get_output(bev), out_cb, b);
    if (b->out_cb == NULL)
        fatalx("cannot watch an agent connection's output buffer");
    return b;
}

/* Stream i's file is fd (or fd < 0: errno says why): check and start. */
static void
stream_open(struct gwblobs *b, int i, int fd)
{
    struct gwb_stream *s = &b->streams[i];
    struct stat st;

    if (fd < 0) {
        send_error(b, s->id, "blob %s cannot be opened on the controller: %s",
                   s->digest, strerror(errno));
        stream_drop(b, i);
        return;
    }
    s->fd = fd;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        send_error(b, s->id,
                   "blob %s is not a regular file on the controller",
                   s->digest);
        stream_drop(b, i);
        return;
    }
    if (s->offset > (uint64_t)st.st_size) {
        send_error(b, s->id,
                   "blob %s has %lld bytes; offset %" PRIu64 " is past its end",
                   s->digest, (long long)st.st_size, s->offset);
        stream_drop(b, i);
        return;
    }
    s->size = (uint64_t)st.st_size;
    log_info("host %s: blob request %" PRIu64 ": %s from offset %" PRIu64
             " of %" PRIu64,
             b->host, s->id, s->digest, s->offset, s->size);
    event_active(b->pump, EV_TIMEOUT, 0);
}

/* The cache fill of a pending stream ended. */
static void
on_fetched(int fd, int status, const char *why, void *arg)
{
    struct gwb_pending *p = arg;
    struct gwblobs *b = p->b;
    int i = stream_find(b, p->id);

    (void)status;
    free(p);
    if (i < 0) { /* cannot happen: a dropped stream cancels its wait */
        if (fd >= 0)
            close(fd);
        return;
    }
    b->streams[i].pend = NULL;
    if (fd < 0) {
        send_error(b, b->streams[i].id, "%s", why);
        stream_drop(b, i);
        return;
    }
    stream_open(b, i, fd);
}

void
gwblobs_request(struct gwblobs *b, const Cloud__Agent__BlobRequest *q)
{
    struct gwb_stream *s;
    int i, fd;

    if (b->bev == NULL)
        return; /* the connection is closing */
    i = stream_find(b, q->request_id);
    if (q->cancel) {
        if (i >= 0) {
            log_info("host %s: blob request %" PRIu64 " (%s) cancelled at "
                     "offset %" PRIu64,
                     b->host, q->request_id, b->streams[i].digest,
                     b->streams[i].offset);
            stream_drop(b, i);
        }
        return;
    }
    if (i >= 0) {
        send_error(b, q->request_id,
                   "blob request %" PRIu64 " is already running",
                   q->request_id);
        return;
    }
    if (!gwblobs_digest_ok(q->digest)) {
        send_error(b, q->request_id,
                   "a blob is named sha256:<64 lower-case hex>, not %.80s",
                   q->digest ? q->digest : "");
        return;
    }
    if (b->nstreams >= GWBLOBS_STREAMS_PER_AGENT) {
        send_error(b, q->request_id,
                   "host %s already fetches %d blobs (at most %d at once)",
                   b->host, b->nstreams, GWBLOBS_STREAMS_PER_AGENT);
        return;
    }
    s = &b->streams[b->nstreams++];
    memset(s, 0, sizeof(*s));
    s->id = q->request_id;
    snprintf(s->digest, sizeof(s->digest), "%s", q->digest);
    s->fd = -1;
    s->offset = q->offset;
    /* The digest was checked: 64 hex digits, no path of the agent's. */
    fd = blobstore_open_local(b->store, q->digest);
    if (fd < 0 && errno == ENOENT) {
        /* Not cached here: wait for the fill from PostgreSQL. */
        char why[512];
        int status;
        struct gwb_pending *p = xcalloc(1, sizeof(*p));

        p->b = b;
        p->id = q->request_id;
        p->w = blobstore_fetch(b->store, q->digest, on_fetched, p, &status,
                               why, sizeof(why));
        if (p->w == NULL) {
            free(p);
            b->nstreams--;
            send_error(b, q->request_id, "%s", why);
            return;
        }
        s->pend = p;
        log_info("host %s: blob request %" PRIu64 ": %s is not cached on "
                 "this controller; filling it from PostgreSQL",
                 b->host, s->id, s->digest);
        return;
    }
    stream_open(b, b->nstreams - 1, fd);
}

int
gwblobs_active(const struct gwblobs *b)
{
    return b ? b->nstreams : 0;
}

void
gwblobs_stop(struct gwblobs *b)
{
    if (b == NULL)
        return;
    while (b->nstreams > 0)
        stream_drop(b, 0);
    if (b->out_cb != NULL && b->bev != NULL)
        evbuffer_remove_cb_entry(bufferevent_get_output(b->bev), b->out_cb);
    b->out_cb = NULL;
    b->bev = NULL;
    if (b->pump)
        event_del(b->pump);
}

void
gwblobs_free(struct gwblobs *b)
{
    if (b == NULL)
        return;
    gwblobs_stop(b);
    if (b->pump)
        event_free(b->pump);
    free(b->buf);
    free(b->host);
    free(b);
}
