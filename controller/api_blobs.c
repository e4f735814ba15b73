/*
 * api_blobs: blob store and chunked uploads (see api_blobs.h). Upload
 * sessions live in PostgreSQL (migrations/0025, docs/decisions.md §32):
 * each PATCH stores its piece and advances the session's offset in one
 * statement, answered after it committed, so every step of an upload may
 * land on another replica. This module owns the routes, the sweep timer of
 * idle sessions and the blob files; the blobs directory is the one in
 * --data-dir, a cache of the content kept in PostgreSQL (blobstore.c): a
 * finished upload is read back into the cache of the replica that
 * finishes it, and answered after its chunks committed; a GET of a blob
 * this replica does not hold fills the cache first.
 *
 * Limits (cluster settings, migrations/0019; kept here by blobs_settings):
 * quotas.upload_sessions bounds the sessions of the cluster, counted in
 * the statement that opens one (cloud_upload_start); an upload that would
 * leave less than blobs.min_free_bytes free on the file system of this
 * replica's blob directory, where its file is written, is refused with
 * 507. Garbage collection
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

#define SESSION_IDLE_SECS 600
#define GC_BATCH "1000"
#define PIECE (256 * 1024)

struct blobs {
    struct event_base *base;
    char *dir;     /* <data>/blobs/sha256 */
    char *updir;   /* <data>/uploads */
    unsigned long long max_blob;
    struct db_pool *db; /* the blob pool: pieces and sessions */
    struct event *sweep;
    int sweep_inflight;
    struct blobstore *store; /* the content in PostgreSQL */
    /* cluster settings (blobs_settings): the defaults until first read
     * (quotas.upload_sessions is read by cloud_upload_start itself) */
    unsigned long long min_free;
    long long gc_grace;
    int gc_inflight;
    int closing; /* freed by the last GC or sweep query's callback */
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
reply_upload(struct http_req *r, int status, const char *id,
             unsigned long long offset)
{
    char *loc = xasprintf("/v1/blobs/uploads/%s", id);
    char off[24];
    json_t *j;

    snprintf(off, sizeof(off), "%llu", offset);
    http_add_header(r, "Location", loc);
    http_add_header(r, "Upload-Offset", off);
    free(loc);
    j = json_pack("{s:s,s:I}", "id", id, "offset", (json_int_t)offset);
    http_reply_json(r, status, j);
    json_decref(j);
}

/* The session id of r's path, or NULL after a 404 (ids are 32 lower-case
 * hex digits: anything else was never a session). */
static const char *
session_id(struct http_req *r)
{
    const char *id = http_param(r, 0);
    size_t n = strspn(id, "0123456789abcdef");

    if (n != BLOBSTORE_SESSION_ID - 1 || id[n] != '\0') {
        http_reply_error(r, 404, "not_found", NULL,
                         "upload %.64s not found: it was finished, "
                         "cancelled, or ended after %d s idle",
                         id, SESSION_IDLE_SECS);
        return NULL;
    }
    return id;
}

static int blobs_maybe_release(struct blobs *b);

static void
on_sweep(const PGresult *res, const struct db_error *err, void *arg)
{
    struct blobs *b = arg;

    b->sweep_inflight = 0;
    if (blobs_maybe_release(b))
        return;
    if (err) {
        log_warnx("cannot sweep the idle upload sessions: %s", err->message);
        return;
    }
    for (int i = 0; i < PQntuples(res); i++)
        log_info("upload %s abandoned after %s bytes",
                 PQgetvalue(res, i, UPLOAD_SWEEP_ID),
                 PQgetvalue(res, i, UPLOAD_SWEEP_RECEIVED));
}

/* Every replica sweeps: sessions are the cluster's, a second sweep finds
 * nothing, and none waits for a leader. */
static void
sweep_cb(evutil_socket_t fd, short what, void *arg)
{
    struct blobs *b = arg;
    char idle[16];
    const char *vals[1] = {idle};

    (void)fd;
    (void)what;
    if (b->sweep_inflight)
        return;
    snprintf(idle, sizeof(idle), "%d", SESSION_IDLE_SECS);
    b->sweep_inflight = 1;
    db_query(b->db, store_stmt(ST_UPLOAD_SWEEP), vals, on_sweep, b);
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

/* The random id of a new session, in id; -1 after a 500. */
static int
new_session_id(struct http_req *r, char *id)
{
    unsigned char rnd[(BLOBSTORE_SESSION_ID - 1) / 2];

    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        http_reply_error(r, 500, "internal", NULL,
                         "cannot draw a random upload id");
        return -1;
    }
    for (size_t i = 0; i < sizeof(rnd); i++)
        snprintf(id + 2 * i, 3, "%02x", rnd[i]);
    return 0;
}

static void
on_upload_started(const PGresult *res, const struct db_error *err,
                  void *arg)
{
    struct http_req *r = arg;

    if (api_db_one_row(r, res, err, "upload start"))
        return;
    reply_upload(r, 202, PQgetvalue(res, 0, 0), 0);
}

void
blobs_h_upload_start(struct http_req *r)
{
    struct blobs *b = blobs_of(r);
    char id[BLOBSTORE_SESSION_ID], idle[16];
    const char *vals[3] = {id, r->actor, idle};

    if (space_ok(r, b, 0) < 0 || new_session_id(r, id) < 0)
        return;
    snprintf(idle, sizeof(idle), "%d", SESSION_IDLE_SECS);
    db_query(b->db, store_stmt(ST_UPLOAD_START), vals, on_upload_started, r);
}

/* A PATCH's piece committed (or refused): its new offset. */
static void
on_piece(const PGresult *res, const struct db_error *err, void *arg)
{
    struct http_req *r = arg;

    if (api_db_one_row(r, res, err, "upload piece"))
        return;
    reply_upload(r, 202, http_param(r, 0),
                 strtoull(PQgetvalue(res, 0, 0), NULL, 10));
}

void
blobs_h_upload_chunk(struct http_req *r)
{
    struct blobs *b = blobs_of(r);
    const char *id = session_id(r);
    struct evbuffer *in;
    const char *ctype, *off;
    char max[24], idle[16];
    size_t len;

    if (id == NULL)
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
    if (off && (off[0] == '\0' || strspn(off, "0123456789") != strlen(off) ||
                strlen(off) > 19)) {
        http_reply_error(r, 409, "conflict", "Upload-Offset",
                         "upload %s: Upload-Offset is a byte offset, not "
                         "%.30s",
                         id, off);
        return;
    }
    if (len > b->max_blob) {
        http_reply_error(r, 413, "too_large", NULL,
                         "blobs are at most %llu bytes", b->max_blob);
        return;
    }
    snprintf(max, sizeof(max), "%llu", b->max_blob);
    snprintf(idle, sizeof(idle), "%d", SESSION_IDLE_SECS);
    {
        /* The bytes go to PostgreSQL as they are (binary); the offset
         * advances in the same statement only if off is where the session
         * is, and the answer waits for the commit. An empty chunk is
         * an empty bytea (pullup gives NULL), which only keeps the session
         * alive. */
        const char *data = len ? (const char *)evbuffer_pullup(in, -1) : "";
        const char *vals[5] = {id, off, data, max, idle};
        const int lens[5] = {0, 0, (int)len, 0, 0};
        const int fmts[5] = {0, 0, 1, 0, 0};
        struct db_params prm = {vals, lens, fmts, 0};

        db_query_params(b->db, store_stmt(ST_UPLOAD_PIECE), &prm, on_piece,
                        r);
    }
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

/* A session that cannot become a blob (digest mismatch, quota): deleted,
 * as an upload always was, before the error is answered. */
struct discard {
    struct http_req *r;
    char id[BLOBSTORE_SESSION_ID];
    struct db_error why;
};

static void
on_discarded(const PGresult *res, const struct db_error *err, void *arg)
{
    struct discard *d = arg;

    (void)res;
    if (err)
        log_warnx("upload %s: cannot discard it (it ends idle): %s", d->id,
                  err->message);
    if (!api_gone(d->r))
        api_reply_db_error(d->r, &d->why);
    free(d);
}

static void
session_discard(struct http_req *r, const struct db_error *why)
{
    struct discard *d = xcalloc(1, sizeof(*d));
    const char *vals[1] = {d->id};

    d->r = r;
    d->why = *why;
    xstrlcpy(d->id, http_param(r, 0), sizeof(d->id));
    db_query(blobs_of(r)->db, store_stmt(ST_UPLOAD_CANCEL), vals,
             on_discarded, d);
}

/* The blob's chunks committed in PostgreSQL (or failed): answer. */
static void
on_put(const struct db_error *err, void *arg)
{
    struct put_wait *w = arg;
    struct http_req *r = w->r;

    r->on_cancel = NULL;
    r->data = NULL;
    /* Refused by quotas.blob_bytes: discarded, as it always was (a retry
     * cannot pass). Other failures keep the session: finish it again. */
    if (err && strcmp(err->code, "quota") == 0 && !r->cancelled) {
        session_discard(r, err);
        put_wait_free(w);
        return;
    }
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

/* The session was read back into this replica's cache (or not): commit
 * it as the blob, or answer why not. */
static void
on_session_read(int status, const char *why, const char *got,
                unsigned long long size, void *arg)
{
    struct http_req *r = arg;
    struct blobs *b;
    struct put_wait *w;
    const char *want;

    if (api_gone(r))
        return;
    b = blobs_of(r);
    want = http_query(r, "digest");
    if (status != 0) {
        http_reply_error(r, status, code_of(status), NULL, "%s", why);
        return;
    }
    if (strcmp(got, want) != 0) {
        struct db_error bad = {.status = 422, .code = "invalid",
                               .field = "digest"};

        snprintf(bad.message, sizeof(bad.message),
                 "upload %s has digest %s, not the declared %s; it was "
                 "discarded",
                 http_param(r, 0), got, want);
        session_discard(r, &bad);
        return;
    }
    w = xcalloc(1, sizeof(*w));
    w->r = r;
    w->size = size;
    xstrlcpy(w->digest, got, sizeof(w->digest));
    /* Acknowledged once its chunks committed (blobstore.c). */
    w->put = blobstore_put(b->store, http_param(r, 0), got, size, on_put, w);
    r->data = w;
    r->on_cancel = put_cancel;
    put_watch_hangup(w);
}

void
blobs_h_upload_finish(struct http_req *r)
{
    const char *id = session_id(r);
    const char *want = http_query(r, "digest");

    if (id == NULL)
        return;
    if (want == NULL || !digest_valid(want)) {
        http_reply_error(r, 400, "bad_request", "digest",
                         "finish an upload with ?digest=sha256:<64 hex>");
        return;
    }
    blobstore_read_session(blobs_of(r)->store, id, want, on_session_read, r);
}

static void
on_cancelled(const PGresult *res, const struct db_error *err, void *arg)
{
    struct http_req *r = arg;

    if (api_db_done(r, err))
        return;
    if (PQntuples(res) != 1) {
        http_reply_error(r, 404, "not_found", NULL,
                         "upload %s not found: it was finished, cancelled, "
                         "or ended after %d s idle",
                         http_param(r, 0), SESSION_IDLE_SECS);
        return;
    }
    http_reply_json_text(r, 200, "{\"deleted\":true}");
}

void
blobs_h_upload_cancel(struct http_req *r)
{
    const char *id = session_id(r);
    const char *vals[1] = {id};

    if (id == NULL)
        return;
    db_query(blobs_of(r)->db, store_stmt(ST_UPLOAD_CANCEL), vals,
             on_cancelled, r);
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
    b->db = blob_db;
    b->min_free = 1ULL << 30;
    b->gc_grace = 86400;
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
    if (b->sweep)
        event_free(b->sweep);
    b->sweep = NULL;
    b->closing = 1;
    /* else db_pool_free fails the queries: see gc_done, on_sweep */
    blobs_maybe_release(b);
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

/* 1 when b was freed: blobs_free ran and no query of b is in flight. */
static int
blobs_maybe_release(struct blobs *b)
{
    if (!b->closing)
        return 0;
    if (!b->gc_inflight && !b->sweep_inflight)
        blobs_release(b);
    return 1;
}

/* The end of a GC pass; 1 when b is closing (and freed if it was the last
 * query in flight). */
static int
gc_done(struct blobs *b)
{
    b->gc_inflight = 0;
    return blobs_maybe_release(b);
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
