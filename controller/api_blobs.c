/*
 * api_blobs: blob store and chunked uploads (see api_blobs.h). Owns the upload
 * sessions (in memory, with their open file and running SHA-256), their idle
 * timer, and the blob files. A session lives on the controller replica that
 * started it; the blobs directory is the one in --data-dir, a cache of the
 * content kept in PostgreSQL (blobstore.c): a finished upload is answered
 * after its chunks committed there, and a GET of a blob this replica does
 * not hold fills the cache first.
 *
 * File writes of at most one chunk (1 MiB) happen on the loop: they land in
 * the page cache.
 *
 * Limits (cluster settings, migrations/0019; kept here by blobs_settings):
 * quotas.upload_sessions bounds the sessions of this replica (they live in
 * its memory, and the one loop makes the count race-free); an upload or
 * chunk that would leave less than blobs.min_free_bytes free on the blob
 * directory's file system is refused with 507. Garbage collection
 * (blobs_gc, driven by retention.c) deletes the files of blobs whose rows
 * the leader collected, and files this replica holds with no row, once
 * older than blobs.gc_grace_seconds; a file is removed only after its row
 * is gone, and never one written within the grace (a re-upload puts a new
 * file in place). Blob downloads are paced by the client (the next piece is
 * read when the previous one has left), so a large blob is never in memory.
 */
#define LOG_MODULE "blobs"
#include "api_blobs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/http.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "api_util.h"
#include "app.h"
#include "blobstore.h"
#include "digest.h"
#include "fsutil.h"
#include "evbuf.h"
#include "log.h"
#include "mem.h"
#include "store.h"
#include "strmap.h"

#define SESSION_IDLE_SECS 600
#define GC_BATCH "1000"
#define PIECE (256 * 1024)

struct upload {
    char id[33];
    char *path;
    int fd;
    EVP_MD_CTX *md;
    unsigned long long offset;
    time_t touched;
};

struct blobs {
    struct event_base *base;
    char *dir;     /* <data>/blobs/sha256 */
    char *updir;   /* <data>/uploads */
    unsigned long long max_blob;
    struct strmap sessions;
    struct event *sweep;
    struct blobstore *store; /* the content in PostgreSQL */
    /* cluster settings (blobs_settings): the defaults until first read */
    long long quota_sessions;
    unsigned long long min_free;
    long long gc_grace;
    int gc_inflight;
    int closing; /* freed by the GC query's callback */
};

static void blobs_release(struct blobs *b);

/* ---- helpers --------------------------------------------------------- */

/* mkdir -p (fsutil.h), said once. */
static int
mkdirs(const char *path)
{
    if (fsutil_mkdir_p(path, 0755) < 0) {
        log_warn("cannot create directory %s", path);
        return -1;
    }
    return 0;
}

static struct blobs *
blobs_of(struct http_req *r)
{
    return ((struct app *)http_app(r))->blobs;
}

static void
upload_free(struct upload *u)
{
    if (u == NULL)
        return;
    if (u->fd >= 0)
        close(u->fd);
    if (u->path) {
        unlink(u->path);
        free(u->path);
    }
    EVP_MD_CTX_free(u->md);
    free(u);
}

static void
reply_upload(struct http_req *r, int status, const struct upload *u)
{
    char *loc = xasprintf("/v1/blobs/uploads/%s", u->id);
    char off[24];

    snprintf(off, sizeof(off), "%llu", u->offset);
    http_add_header(r, "Location", loc);
    http_add_header(r, "Upload-Offset", off);
    free(loc);
    {
        json_t *j = json_pack("{s:s,s:I}", "id", u->id, "offset",
                              (json_int_t)u->offset);
        http_reply_json(r, status, j);
        json_decref(j);
    }
}

static struct upload *
session(struct http_req *r)
{
    struct upload *u = strmap_get(&blobs_of(r)->sessions, http_param(r, 0));

    if (u == NULL)
        http_reply_error(r, 404, "not_found", NULL,
                         "upload %.64s not found (sessions live on the "
                         "controller that started them and end after %d s "
                         "idle)",
                         http_param(r, 0), SESSION_IDLE_SECS);
    return u;
}

static void
sweep_cb(evutil_socket_t fd, short what, void *arg)
{
    struct blobs *b = arg;
    time_t now = time(NULL);
    int again = 1;

    (void)fd;
    (void)what;
    while (again) {
        again = 0;
        for (size_t i = 0; i < b->sessions.cap; i++) {
            struct upload *u = b->sessions.vals[i];
            if (u && now - u->touched > SESSION_IDLE_SECS) {
                log_info("upload %s abandoned after %llu bytes", u->id,
                         u->offset);
                strmap_del(&b->sessions, u->id);
                upload_free(u);
                again = 1;
                break;
            }
        }
    }
}

/*
 * Answers 507 and returns -1 when writing need more bytes would leave less
 * than the reserve free on the blob store's file system.
 */
static int
space_ok(struct http_req *r, struct blobs *b, unsigned long long need)
{
    char why[400];
    int status;

    if (blobstore_space(b->dir, need, b->min_free, &status, why,
                        sizeof(why)) < 0) {
        http_reply_error(r, status,
                         status == 507 ? "insufficient_storage" : "internal",
                         NULL, "%s", why);
        return -1;
    }
    return 0;
}

/* ---- handlers -------------------------------------------------------- */

void
blobs_h_upload_start(struct http_req *r)
{
    struct blobs *b = blobs_of(r);
    struct upload *u;
    unsigned char rnd[16];

    if ((long long)b->sessions.len >= b->quota_sessions) {
        http_reply_error(r, 409, "quota", "quotas.upload_sessions",
                         "quota upload_sessions exceeded: %zu uploads are "
                         "in progress on this controller, the quota is %lld; "
                         "finish or cancel one (sessions end after %d s "
                         "idle) or raise quotas.upload_sessions in the "
                         "cluster settings",
                         b->sessions.len, b->quota_sessions,
                         SESSION_IDLE_SECS);
        return;
    }
    if (space_ok(r, b, 0) < 0)
        return;
    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        http_reply_error(r, 500, "internal", NULL,
                         "cannot draw a random upload id");
        return;
    }
    u = xcalloc(1, sizeof(*u));
    for (size_t i = 0; i < sizeof(rnd); i++)
        snprintf(u->id + 2 * i, 3, "%02x", rnd[i]);
    u->path = xasprintf("%s/%s", b->updir, u->id);
    u->fd = open(u->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    u->md = EVP_MD_CTX_new();
    u->touched = time(NULL);
    if (u->fd < 0 || u->md == NULL ||
        EVP_DigestInit_ex(u->md, EVP_sha256(), NULL) != 1) {
        log_warn("cannot start an upload in %s", b->updir);
        upload_free(u);
        http_reply_error(r, 500, "internal", NULL,
                         "cannot start an upload: %s", strerror(errno));
        return;
    }
    strmap_put(&b->sessions, u->id, u);
    reply_upload(r, 202, u);
}

void
blobs_h_upload_chunk(struct http_req *r)
{
    struct blobs *b = blobs_of(r);
    struct upload *u = session(r);
    struct evbuffer *in;
    const char *ctype, *off;
    size_t len;
    unsigned char *data;

    if (u == NULL)
        return;
    in = evhttp_request_get_input_buffer(r->req);
    len = evbuffer_get_length(in);
    ctype = http_header(r, "Content-Type");
    off = http_header(r, "Upload-Offset");
    if (ctype && strcmp(ctype, "application/octet-stream") != 0) {
        http_reply_error(r, 415, "unsupported_media_type", NULL,
                         "chunks are application/octet-stream, not %.60s",
                         ctype);
        return;
    }
    if (len > HTTP_MAX_BODY) {
        http_reply_error(r, 413, "too_large", NULL,
                         "a chunk is at most %d bytes, not %zu",
                         HTTP_MAX_BODY, len);
        return;
    }
    if (off) {
        char *end;
        unsigned long long want = strtoull(off, &end, 10);
        if (*end != '\0' || end == off || want != u->offset) {
            http_reply_error(r, 409, "conflict", "Upload-Offset",
                             "upload %s is at offset %llu, not %.30s",
                             u->id, u->offset, off);
            return;
        }
    }
    if (u->offset + len > b->max_blob) {
        http_reply_error(r, 413, "too_large", NULL,
                         "blobs are at most %llu bytes", b->max_blob);
        return;
    }
    if (space_ok(r, b, len) < 0)
        return;
    data = evbuffer_pullup(in, -1);
    for (size_t done = 0; done < len;) {
        ssize_t n = write(u->fd, data + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            log_warn("upload %s: write", u->id);
            http_reply_error(r, 500, "internal", NULL,
                             "cannot store the chunk: %s", strerror(errno));
            return;
        }
        done += (size_t)n;
    }
    if (EVP_DigestUpdate(u->md, data, len) != 1) {
        http_reply_error(r, 500, "internal", NULL, "SHA-256 update failed");
        return;
    }
    u->offset += len;
    u->touched = time(NULL);
    reply_upload(r, 202, u);
}

/* A finished upload whose chunks are being written to PostgreSQL. */
struct put_wait {
    struct http_req *r;
    struct blobstore_put *put;
    char digest[DIGEST_TEXT_SIZE];
    unsigned long long size;
    struct event *hup; /* the client's socket, watched for a hang-up */
};

static void
put_wait_free(struct put_wait *w)
{
    if (w->hup)
        event_free(w->hup);
    free(w);
}

/* The client left: roll back (unless the COMMIT is already on its way)
 * and free w. */
static void
put_abandon(struct put_wait *w)
{
    if (blobstore_put_abort(w->put))
        log_info("upload of blob %s: the client left while its commit was "
                 "in flight; the blob may be stored",
                 w->digest);
    else
        log_info("upload of blob %s: the client left before the commit; "
                 "rolled back",
                 w->digest);
    put_wait_free(w);
}

/*
 * evhttp reads nothing while a request is being handled, so it notices a
 * client that left only when the answer is written. A blob's transaction
 * may take seconds: watch the socket, and on end of file roll back now
 * (the answer then closes the connection). Bytes instead (a pipelined
 * request) end the watch.
 */
static void
put_hup_cb(evutil_socket_t fd, short what, void *arg)
{
    struct put_wait *w = arg;
    struct http_req *r = w->r;
    char c;
    ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);

    (void)what;
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    event_del(w->hup);
    if (n > 0)
        return;
    r->on_cancel = NULL;
    r->data = NULL;
    http_reply_error(r, 400, "bad_request", NULL,
                     "the client closed the connection before blob %s was "
                     "committed",
                     w->digest);
    put_abandon(w);
}

static void
put_watch_hangup(struct put_wait *w)
{
    struct evhttp_connection *evcon =
        w->r->req ? evhttp_request_get_connection(w->r->req) : NULL;
    struct bufferevent *bev =
        evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
    evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;

    if (fd < 0)
        return;
    w->hup = event_new(bufferevent_get_base(bev), fd, EV_READ | EV_PERSIST,
                       put_hup_cb, w);
    if (w->hup == NULL || event_add(w->hup, NULL) < 0)
        log_warnx("upload of blob %s: cannot watch the client's connection",
                  w->digest);
}

/* The blob's chunks committed in PostgreSQL (or failed): answer. */
static void
on_put(const struct db_error *err, void *arg)
{
    struct put_wait *w = arg;
    struct http_req *r = w->r;

    r->on_cancel = NULL;
    r->data = NULL;
    if (!api_db_done(r, err)) {
        json_t *j = json_pack("{s:s,s:I}", "digest", w->digest, "size",
                              (json_int_t)w->size);
        http_reply_json(r, 201, j);
        json_decref(j);
    }
    put_wait_free(w);
}

/* evhttp saw the client leave while the chunks were being written: roll
 * them back (nothing of the blob stays in PostgreSQL; the cache file is
 * collected as a file with no row). */
static void
put_cancel(struct http_req *r)
{
    struct put_wait *w = r->data;

    r->on_cancel = NULL;
    put_abandon(w);
    http_req_release(r);
}

void
blobs_h_upload_finish(struct http_req *r)
{
    struct blobs *b = blobs_of(r);
    struct upload *u = session(r);
    const char *want = http_query(r, "digest");
    char got[DIGEST_TEXT_SIZE], *final = NULL;
    struct put_wait *w;

    if (u == NULL)
        return;
    if (want == NULL || !digest_valid(want)) {
        http_reply_error(r, 400, "bad_request", "digest",
                         "finish an upload with ?digest=sha256:<64 hex>");
        return;
    }
    if (digest_final(u->md, got) < 0) {
        http_reply_error(r, 500, "internal", NULL, "SHA-256 final failed");
        return;
    }
    strmap_del(&b->sessions, u->id);
    if (strcmp(got, want) != 0) {
        http_reply_error(r, 422, "invalid", "digest",
                         "upload %s has digest %s, not the declared %s; it "
                         "was discarded",
                         u->id, got, want);
        upload_free(u);
        return;
    }
    final = xasprintf("%s/%s", b->dir, got + 7);
    /* Durable before the row that names it is written. */
    if (fsutil_commit(u->fd, u->path, final) < 0) {
        log_warn("cannot move upload %s to %s", u->id, final);
        http_reply_error(r, 500, "internal", NULL, "cannot store the blob");
        free(final);
        upload_free(u);
        return;
    }
    free(u->path);
    u->path = NULL; /* it is the blob now */
    w = xcalloc(1, sizeof(*w));
    w->r = r;
    w->size = u->offset;
    xstrlcpy(w->digest, got, sizeof(w->digest));
    upload_free(u);
    /* Acknowledged once its chunks committed (blobstore.c). */
    w->put = blobstore_put(b->store, final, got, w->size, on_put, w);
    free(final);
    r->data = w;
    r->on_cancel = put_cancel;
    put_watch_hangup(w);
}

void
blobs_h_upload_cancel(struct http_req *r)
{
    struct upload *u = session(r);

    if (u == NULL)
        return;
    strmap_del(&blobs_of(r)->sessions, u->id);
    upload_free(u);
    http_reply_json_text(r, 200, "{\"deleted\":true}");
}

/* A download in progress: the file and where it is. */
struct download {
    struct http_req *r;
    int fd;
};

static void download_next(struct evhttp_connection *evcon, void *arg);

static void
download_end(struct download *d)
{
    close(d->fd);
    http_stream_end(d->r);
    free(d);
}

static void
download_cancel(struct http_req *r)
{
    struct download *d = r->data;

    /* No chunk callback will come: finish here. */
    r->on_cancel = NULL;
    close(d->fd);
    http_req_release(r);
    free(d);
}

static void
download_next(struct evhttp_connection *evcon, void *arg)
{
    struct download *d = arg;
    char *buf;
    ssize_t n;
    struct evbuffer *out;

    (void)evcon;
    if (d->r->cancelled || d->r->req == NULL) {
        download_end(d);
        return;
    }
    buf = xmalloc(PIECE);
    n = read(d->fd, buf, PIECE);
    if (n <= 0) {
        if (n < 0)
            log_warn("blob read");
        free(buf);
        download_end(d);
        return;
    }
    out = evbuf_new();
    evbuffer_add(out, buf, (size_t)n);
    free(buf);
    evhttp_send_reply_chunk_with_cb(d->r->req, out, download_next, d);
    evbuffer_free(out);
}

/* Streams the blob file fd (owned from here) to the client. */
static void
download_begin(struct http_req *r, const char *digest, int fd)
{
    struct download *d;
    struct stat st;
    char len[24];

    if (fstat(fd, &st) < 0) {
        close(fd);
        http_reply_error(r, 500, "internal", NULL,
                         "blob %s cannot be read on this controller: %s",
                         digest, strerror(errno));
        return;
    }
    d = xcalloc(1, sizeof(*d));
    d->r = r;
    d->fd = fd;
    r->data = d;
    r->on_cancel = download_cancel;
    snprintf(len, sizeof(len), "%lld", (long long)st.st_size);
    http_add_header(r, "X-Blob-Size", len);
    http_add_header(r, "Docker-Content-Digest", digest);
    http_stream_start(r, 200, "application/octet-stream");
    download_next(NULL, d);
}

static const char *
code_of(int status)
{
    switch (status) {
    case 400: return "bad_request";
    case 404: return "not_found";
    case 503: return "unavailable";
    case 507: return "insufficient_storage";
    default: return "internal";
    }
}

/* A GET waiting for this replica's cache to be filled from PostgreSQL. */
struct get_wait {
    struct http_req *r;
    struct blobstore_wait *w;
};

static void
on_fetched(int fd, int status, const char *why, void *arg)
{
    struct get_wait *g = arg;
    struct http_req *r = g->r;

    free(g);
    r->on_cancel = NULL;
    r->data = NULL;
    if (fd < 0) {
        http_reply_error(r, status, code_of(status), NULL, "%s", why);
        return;
    }
    download_begin(r, http_param(r, 0), fd);
}

static void
get_wait_cancel(struct http_req *r)
{
    struct get_wait *g = r->data;

    r->on_cancel = NULL;
    blobstore_fetch_cancel(g->w);
    free(g);
    http_req_release(r);
}

void
blobs_h_get(struct http_req *r)
{
    struct blobs *b = blobs_of(r);
    const char *digest = http_param(r, 0);
    struct get_wait *g;
    char why[512];
    int fd, status;

    if (!digest_valid(digest)) {
        http_reply_error(r, 400, "bad_request", "digest",
                         "a blob is named sha256:<64 hex>, not %.80s",
                         digest);
        return;
    }
    fd = blobstore_open_local(b->store, digest);
    if (fd >= 0) {
        download_begin(r, digest, fd);
        return;
    }
    /* Not cached here: fill the cache from PostgreSQL, then serve. */
    g = xcalloc(1, sizeof(*g));
    g->r = r;
    g->w = blobstore_fetch(b->store, digest, on_fetched, g, &status, why,
                           sizeof(why));
    if (g->w == NULL) {
        free(g);
        http_reply_error(r, status, code_of(status), NULL, "%s", why);
        return;
    }
    r->data = g;
    r->on_cancel = get_wait_cancel;
}

/* ---- lifecycle ------------------------------------------------------- */

struct blobs *
blobs_new(struct event_base *base, struct db_pool *blob_db,
          const char *data_dir, unsigned long long max_blob)
{
    struct blobs *b = xcalloc(1, sizeof(*b));
    struct timeval tv = {60, 0};

    b->base = base;
    b->dir = xasprintf("%s/blobs/sha256", data_dir);
    b->updir = xasprintf("%s/uploads", data_dir);
    b->max_blob = max_blob;
    b->quota_sessions = 64;
    b->min_free = 1ULL << 30;
    b->gc_grace = 86400;
    strmap_init(&b->sessions);
    if (mkdirs(b->dir) < 0 || mkdirs(b->updir) < 0) {
        blobs_free(b);
        return NULL;
    }
    b->store = blobstore_new(base, blob_db, b->dir, b->updir);
    b->sweep = event_new(base, -1, EV_PERSIST, sweep_cb, b);
    if (b->sweep == NULL || event_add(b->sweep, &tv) < 0)
        fatalx("cannot start the upload sweep timer");
    return b;
}

static void
blobs_release(struct blobs *b)
{
    blobstore_free(b->store);
    free(b->dir);
    free(b->updir);
    free(b);
}

void
blobs_free(struct blobs *b)
{
    if (b == NULL)
        return;
    for (size_t i = 0; i < b->sessions.cap; i++)
        upload_free(b->sessions.vals[i]);
    strmap_fini(&b->sessions);
    if (b->sweep)
        event_free(b->sweep);
    b->sweep = NULL;
    b->closing = 1;
    if (!b->gc_inflight)
        blobs_release(b); /* else db_pool_free fails the query: see gc_done */
}

int
blobs_ready_dir(const char *data_dir)
{
    char *dir = xasprintf("%s/blobs/sha256", data_dir);
    int rc = mkdirs(dir);

    free(dir);
    return rc;
}

const char *
blobs_dir(const struct blobs *b)
{
    return b->dir;
}

struct blobstore *
blobs_store(const struct blobs *b)
{
    return b->store;
}

/* ---- settings and garbage collection --------------------------------- */

void
blobs_settings(struct blobs *b, const char *settings_json)
{
    json_t *j = json_loads(settings_json, 0, NULL);
    json_t *v;

    if (b == NULL || j == NULL) {
        json_decref(j);
        return;
    }
    v = json_object_get(json_object_get(j, "quotas"), "upload_sessions");
    if (json_is_integer(v))
        b->quota_sessions = json_integer_value(v);
    v = json_object_get(json_object_get(j, "blobs"), "min_free_bytes");
    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        b->min_free = (unsigned long long)json_integer_value(v);
        blobstore_set_min_free(b->store, b->min_free);
    }
    v = json_object_get(json_object_get(j, "blobs"), "gc_grace_seconds");
    if (json_is_integer(v))
        b->gc_grace = json_integer_value(v);
    json_decref(j);
}

/* Removes the file of a blob whose row is gone, unless it was written
 * within the grace (a new upload of the same digest put it back). */
static void
gc_unlink(struct blobs *b, const char *digest, const char *why)
{
    char *path;
    struct stat st;

    if (!digest_valid(digest))
        return;
    path = xasprintf("%s/%s", b->dir, digest + 7);
    if (stat(path, &st) == 0 && time(NULL) - st.st_mtime >= b->gc_grace) {
        if (unlink(path) == 0)
            log_info("blob %s removed (%s)", digest, why);
        else if (errno != ENOENT)
            log_warn("cannot remove %s", path);
    }
    free(path);
}

/* The end of a GC pass; frees b if blobs_free ran meanwhile. */
static int
gc_done(struct blobs *b)
{
    b->gc_inflight = 0;
    if (b->closing) {
        blobs_release(b);
        return 1;
    }
    return 0;
}

static void
on_gc_unknown(const PGresult *res, const struct db_error *err, void *arg)
{
    struct blobs *b = arg;

    if (b->closing) {
        gc_done(b);
        return;
    }
    if (err)
        log_warnx("blob GC: cannot check the blob files: %s", err->message);
    else
        for (int i = 0; i < PQntuples(res); i++)
            gc_unlink(b, PQgetvalue(res, i, 0), "no row");
    gc_done(b);
}

/* This replica's files older than the grace, as a text[] literal; NULL
 * when there are none. */
static char *
old_files(struct blobs *b)
{
    DIR *d = opendir(b->dir);
    struct dirent *de;
    char *lit = NULL;
    size_t len = 0, n = 0;
    time_t now = time(NULL);

    if (d == NULL) {
        log_warn("blob GC: cannot read %s", b->dir);
        return NULL;
    }
    while ((de = readdir(d)) != NULL && n < 10000) {
        struct stat st;
        char digest[72];

        if (strlen(de->d_name) != 64)
            continue;
        snprintf(digest, sizeof(digest), "sha256:%.64s", de->d_name);
        if (!digest_valid(digest) ||
            fstatat(dirfd(d), de->d_name, &st, 0) < 0 ||
            now - st.st_mtime < b->gc_grace)
            continue;
        lit = xrealloc(lit, len + 75);
        len += (size_t)snprintf(lit + len, 75, "%c%s", n ? ',' : '{',
                                digest);
        n++;
    }
    closedir(d);
    if (lit) {
        lit = xrealloc(lit, len + 2);
        memcpy(lit + len, "}", 2);
    }
    return lit;
}

static void
gc_files(struct blobs *b, struct db_pool *db)
{
    char *lit = old_files(b);
    const char *vals[1] = {lit};

    if (lit == NULL) {
        gc_done(b);
        return;
    }
    db_query(db, store_stmt(ST_BLOB_UNKNOWN), vals, on_gc_unknown, b);
    free(lit);
}

struct gc_call {
    struct blobs *b;
    struct db_pool *db;
};

static void
on_gc_rows(const PGresult *res, const struct db_error *err, void *arg)
{
    struct gc_call *gc = arg;
    struct blobs *b = gc->b;
    struct db_pool *db = gc->db;

    free(gc);
    if (b->closing) {
        gc_done(b);
        return;
    }
    if (err) {
        log_warnx("blob GC failed: %s", err->message);
        gc_done(b);
        return;
    }
    /* The rows are gone (committed): now the files. */
    for (int i = 0; i < PQntuples(res); i++) {
        log_info("blob %s (%s bytes) collected: no image uses it",
                 PQgetvalue(res, i, BLOB_GC_DIGEST),
                 PQgetvalue(res, i, BLOB_GC_SIZE));
        gc_unlink(b, PQgetvalue(res, i, BLOB_GC_DIGEST), "collected");
    }
    gc_files(b, db);
}

void
blobs_gc(struct blobs *b, struct db_pool *db, int leading)
{
    struct gc_call *gc;
    const char *vals[1] = {GC_BATCH};

    if (b == NULL || b->gc_inflight)
        return;
    b->gc_inflight = 1;
    if (!leading) {
        gc_files(b, db);
        return;
    }
    gc = xcalloc(1, sizeof(*gc));
    gc->b = b;
    gc->db = db;
    db_query(db, store_stmt(ST_BLOB_GC), vals, on_gc_rows, gc);
}

long long
blobs_gc_grace(const struct blobs *b)
{
    return b->gc_grace;
}
