/*
 * blobstore: blob content in PostgreSQL and this replica's file cache of it
 * (see blobstore.h). Owns the upload sessions being read back (struct
 * sread: received -> piece... -> digest -> rename), the uploads being
 * committed as blobs (struct blobstore_put: BEGIN -> session locked ->
 * cloud_blob_put -> pieces copied -> session deleted -> COMMIT, one
 * statement in flight) and the cache fills (struct fill: size -> chunk...
 * -> digest check -> rename, one statement in flight), each with the
 * waiters of its digest.
 */
#define LOG_MODULE "blobs"
#include "blobstore.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/evp.h>

#include "digest.h"
#include "fsutil.h"
#include "log.h"
#include "mem.h"
#include "store.h"

struct blobstore_wait {
    TAILQ_ENTRY(blobstore_wait) link;
    struct fill *fill;
    blobstore_fetch_cb cb;
    void *arg;
};
TAILQ_HEAD(wait_list, blobstore_wait);

struct fill {
    LIST_ENTRY(fill) link;
    struct blobstore *s;
    char digest[DIGEST_TEXT_SIZE];
    char *tmp;
    int fd;
    EVP_MD_CTX *md;
    unsigned long long size, off;
    int seq;
    struct wait_list waiters;
};

/* An upload session read back from PostgreSQL for its finishing PUT. */
struct sread {
    struct blobstore *s;
    char id[BLOBSTORE_SESSION_ID];
    char want[DIGEST_TEXT_SIZE];
    char *tmp;
    int fd;
    EVP_MD_CTX *md;
    unsigned long long size, off;
    int pieces;
    blobstore_read_cb cb;
    void *arg;
};

struct blobstore {
    struct event_base *base;
    struct db_pool *db;
    char *dir, *tmpdir;
    unsigned long long min_free;
    LIST_HEAD(, fill) fills;
};

struct blobstore_put {
    struct blobstore *s;
    struct db_tx *tx;
    char digest[DIGEST_TEXT_SIZE];
    char session[BLOBSTORE_SESSION_ID];
    unsigned long long size;
    int inflight; /* a statement of tx is running */
    int aborted;  /* the client left: roll back, never call cb */
    int ending;   /* COMMIT or ROLLBACK sent: tx is gone */
    blobstore_put_cb cb;
    void *arg;
};

/* ---- free space ------------------------------------------------------ */

int
blobstore_space(const char *dir, unsigned long long need,
                unsigned long long min_free, int *status, char *why,
                size_t len)
{
    struct statvfs sv;
    unsigned long long avail;

    if (statvfs(dir, &sv) < 0) {
        log_warn("statvfs %s", dir);
        *status = 500;
        snprintf(why, len, "cannot read the free space of the blob store: %s",
                 strerror(errno));
        return -1;
    }
    avail = (unsigned long long)sv.f_bavail * sv.f_frsize;
    if (avail < need || avail - need < min_free) {
        *status = 507;
        snprintf(why, len,
                 "the blob store has %llu bytes free; taking %llu more "
                 "would leave less than the reserve of %llu bytes (cluster "
                 "setting blobs.min_free_bytes); delete images or free disk "
                 "space",
                 avail, need, min_free);
        return -1;
    }
    return 0;
}

/* ---- uploads into PostgreSQL ----------------------------------------- */

static void
put_free(struct blobstore_put *p)
{
    free(p);
}

/* Ends the transaction with a rollback and frees p; cb runs with err
 * unless the client left. */
static void
put_fail(struct blobstore_put *p, const struct db_error *err)
{
    if (!p->ending)
        db_tx_end(p->tx, 0, NULL, NULL);
    if (!p->aborted && err)
        p->cb(err, p->arg);
    put_free(p);
}

/* A failure found here, not by PostgreSQL: status, code and a sentence. */
static void put_fail_as(struct blobstore_put *p, int status, const char *code,
                        const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
put_fail_as(struct blobstore_put *p, int status, const char *code,
            const char *fmt, ...)
{
    struct db_error err;
    va_list ap;

    memset(&err, 0, sizeof(err));
    err.status = status;
    err.code = code;
    va_start(ap, fmt);
    vsnprintf(err.message, sizeof(err.message), fmt, ap);
    va_end(ap);
    if (status >= 500)
        log_warnx("%s", err.message);
    put_fail(p, &err);
}

/* Common start of every callback: 1 when p is finished (and freed). */
static int
put_settle(struct blobstore_put *p, const struct db_error *err)
{
    p->inflight = 0;
    if (p->aborted) {
        put_fail(p, NULL);
        return 1;
    }
    if (err) {
        put_fail(p, err);
        return 1;
    }
    return 0;
}

static void
on_put_commit(const PGresult *res, const struct db_error *err, void *arg)
{
    struct blobstore_put *p = arg;

    (void)res;
    if (!p->aborted) {
        if (err == NULL)
            log_info("blob %s (%llu bytes) of upload %s stored in "
                     "PostgreSQL",
                     p->digest, p->size, p->session);
        p->cb(err, p->arg);
    }
    put_free(p);
}

static void
on_put_end(const PGresult *res, const struct db_error *err, void *arg)
{
    struct blobstore_put *p = arg;

    (void)res;
    if (put_settle(p, err))
        return;
    p->ending = 1;
    db_tx_end(p->tx, 1, on_put_commit, p);
}

/* One statement of p's transaction with the text parameters vals. */
static void
put_query(struct blobstore_put *p, enum store_stmt id,
          const char *const *vals, db_cb cb)
{
    struct db_params prm = {.values = vals};

    p->inflight = 1;
    db_tx_query(p->tx, store_stmt(id), &prm, cb, p);
}

/* The session's rows go with the commit that makes the blob. */
static void
put_end(struct blobstore_put *p)
{
    const char *vals[1] = {p->session};

    put_query(p, ST_UPLOAD_END, vals, on_put_end);
}

static void
on_put_copy(const PGresult *res, const struct db_error *err, void *arg)
{
    struct blobstore_put *p = arg;

    (void)res;
    if (put_settle(p, err))
        return;
    put_end(p);
}

static void
on_put_row(const PGresult *res, const struct db_error *err, void *arg)
{
    struct blobstore_put *p = arg;
    const char *vals[2] = {p->digest, p->session};

    if (put_settle(p, err))
        return;
    if (PQntuples(res) != 1 || strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
        /* Committed before with its chunks: only made fresh again. */
        put_end(p);
        return;
    }
    /* The pieces become the chunks inside PostgreSQL: no byte comes back
     * through the controller. */
    put_query(p, ST_UPLOAD_COPY, vals, on_put_copy);
}

static void
on_put_lock(const PGresult *res, const struct db_error *err, void *arg)
{
    struct blobstore_put *p = arg;
    char size[24];
    const char *vals[2] = {p->digest, size};

    if (put_settle(p, err))
        return;
    if (PQntuples(res) != 1) {
        put_fail_as(p, 404, "not_found",
                    "upload %s was finished by another request, cancelled "
                    "or ended idle while it was being finished",
                    p->session);
        return;
    }
    if (strtoull(PQgetvalue(res, 0, 0), NULL, 10) != p->size) {
        put_fail_as(p, 409, "conflict",
                    "upload %s received more bytes (now %s, not %llu) "
                    "while it was being finished; finish it again",
                    p->session, PQgetvalue(res, 0, 0), p->size);
        return;
    }
    snprintf(size, sizeof(size), "%llu", p->size);
    put_query(p, ST_BLOB_PUT, vals, on_put_row);
}

static void
on_put_begin(const PGresult *res, const struct db_error *err, void *arg)
{
    struct blobstore_put *p = arg;
    const char *vals[1] = {p->session};

    (void)res;
    if (put_settle(p, err))
        return;
    /* Holds the session still: the pieces copied are the bytes hashed. */
    put_query(p, ST_UPLOAD_LOCK, vals, on_put_lock);
}

static void
put_start(evutil_socket_t fd, short what, void *arg)
{
    struct blobstore_put *p = arg;

    (void)fd;
    (void)what;
    db_tx_begin(p->tx, on_put_begin, p);
}

struct blobstore_put *
blobstore_put(struct blobstore *s, const char *session, const char *digest,
              unsigned long long size, blobstore_put_cb cb, void *arg)
{
    struct blobstore_put *p = xcalloc(1, sizeof(*p));

    p->s = s;
    p->cb = cb;
    p->arg = arg;
    p->size = size;
    xstrlcpy(p->digest, digest, sizeof(p->digest));
    xstrlcpy(p->session, session, sizeof(p->session));
    p->tx = db_tx_new(s->db);
    p->inflight = 1;
    /* BEGIN from the next loop turn: a pool that is down fails it at once,
     * and cb must not run before this returns. */
    if (event_base_once(s->base, -1, EV_TIMEOUT, put_start, p, NULL) < 0)
        fatalx("cannot schedule a blob upload's transaction");
    return p;
}

int
blobstore_put_abort(struct blobstore_put *p)
{
    int committing;

    if (p == NULL)
        return 0;
    committing = p->ending;
    p->aborted = 1;
    if (!p->inflight && !p->ending)
        put_fail(p, NULL);
    /* else the callback in flight rolls back (or the commit's frees p) */
    return committing;
}

/* ---- files written while hashing ------------------------------------- */

/* Opens a new file at path (O_EXCL when excl) and a SHA-256 context; -1
 * with errno when either failed (nothing left open). */
static int
hashfile_open(const char *path, int excl, int *fd, EVP_MD_CTX **md)
{
    int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (excl ? O_EXCL : O_TRUNC);

    *md = NULL;
    *fd = open(path, flags, 0644);
    if (*fd < 0)
        return -1;
    *md = EVP_MD_CTX_new();
    if (*md == NULL || EVP_DigestInit_ex(*md, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(*md);
        *md = NULL;
        close(*fd);
        *fd = -1;
        (void)unlink(path);
        errno = ENOMEM;
        return -1;
    }
    return 0;
}

/* Appends len bytes to fd and to the digest md; -1 with a sentence. */
static int
hashfile_append(int fd, EVP_MD_CTX *md, const char *data, size_t len,
                char *why, size_t whylen)
{
    size_t done = 0;

    while (done < len) {
        ssize_t n = write(fd, data + done, len - done);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            snprintf(why, whylen, "cannot write the cache file: %s",
                     n < 0 ? strerror(errno) : "no progress");
            return -1;
        }
        done += (size_t)n;
    }
    if (EVP_DigestUpdate(md, data, len) != 1) {
        snprintf(why, whylen, "SHA-256 update failed");
        return -1;
    }
    return 0;
}

/* ---- cache fills from PostgreSQL ------------------------------------- */

static void fill_next(struct fill *f);

static void
fill_finish(struct fill *f, int status, const char *why)
{
    struct blobstore_wait *w;
    char *final = xasprintf("%s/%s", f->s->dir, f->digest + 7);

    if (f->fd >= 0)
        close(f->fd);
    f->fd = -1;
    if (status != 0 && f->tmp)
        (void)unlink(f->tmp);
    LIST_REMOVE(f, link);
    /* One waiter at a time: a callback may cancel another. */
    while ((w = TAILQ_FIRST(&f->waiters)) != NULL) {
        int fd = -1;

        TAILQ_REMOVE(&f->waiters, w, link);
        if (status == 0) {
            fd = open(final, O_RDONLY | O_CLOEXEC);
            if (fd < 0)
                log_warn("blob %s: cannot open %s after its fill", f->digest,
                         final);
        }
        if (fd >= 0)
            w->cb(fd, 0, NULL, w->arg);
        else
            w->cb(-1, status ? status : 500,
                  status ? why : "the filled cache file cannot be opened",
                  w->arg);
        free(w);
    }
    free(final);
    free(f->tmp);
    EVP_MD_CTX_free(f->md);
    free(f);
}

static void fill_fail(struct fill *f, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
fill_fail(struct fill *f, int status, const char *fmt, ...)
{
    char why[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    if (status >= 500)
        log_warnx("%s", why);
    fill_finish(f, status, why);
}

static void
fill_complete(struct fill *f)
{
    char got[DIGEST_TEXT_SIZE];
    char *final;

    if (digest_final(f->md, got) < 0) {
        fill_fail(f, 500, "blob %s: SHA-256 final failed", f->digest);
        return;
    }
    if (strcmp(got, f->digest) != 0) {
        fill_fail(f, 500,
                  "blob %s: its content in PostgreSQL has digest %s; it was "
                  "not cached",
                  f->digest, got);
        return;
    }
    final = xasprintf("%s/%s", f->s->dir, f->digest + 7);
    if (fsutil_commit(f->fd, f->tmp, final) < 0) {
        int e = errno;

        free(final);
        fill_fail(f, 500, "blob %s: cannot move its fill into the cache: %s",
                  f->digest, strerror(e));
        return;
    }
    free(final);
    log_info("blob %s (%llu bytes) cached from PostgreSQL", f->digest,
             f->size);
    fill_finish(f, 0, NULL);
}

static void
on_fill_chunk(const PGresult *res, const struct db_error *err, void *arg)
{
    struct fill *f = arg;
    const char *data;
    char why[160];
    size_t len;

    if (err) {
        fill_fail(f, err->status, "blob %s: %s", f->digest, err->message);
        return;
    }
    if (PQntuples(res) != 1) {
        fill_fail(f, 500,
                  "blob %s: chunk %d of its content is not in PostgreSQL "
                  "(a blob registered before migration 0023 whose file is "
                  "gone); upload it again",
                  f->digest, f->seq);
        return;
    }
    data = PQgetvalue(res, 0, 0);
    len = (size_t)PQgetlength(res, 0, 0);
    if (len == 0 || f->off + len > f->size) {
        fill_fail(f, 500,
                  "blob %s: chunk %d has %zu bytes, past the size %llu of "
                  "its row",
                  f->digest, f->seq, len, f->size);
        return;
    }
    if (hashfile_append(f->fd, f->md, data, len, why, sizeof(why)) < 0) {
        fill_fail(f, 500, "blob %s: %s", f->digest, why);
        return;
    }
    f->off += len;
    f->seq++;
    fill_next(f);
}

static void
fill_next(struct fill *f)
{
    char seq[16];
    const char *vals[2] = {f->digest, seq};
    struct db_params prm = {.values = vals, .result_binary = 1};

    if (f->off == f->size) {
        fill_complete(f);
        return;
    }
    snprintf(seq, sizeof(seq), "%d", f->seq);
    db_query_params(f->s->db, store_stmt(ST_BLOB_CHUNK_GET), &prm,
                    on_fill_chunk, f);
}

static void
on_fill_size(const PGresult *res, const struct db_error *err, void *arg)
{
    struct fill *f = arg;
    char why[400];
    int status;

    if (err) {
        fill_fail(f, err->status, "blob %s: %s", f->digest, err->message);
        return;
    }
    if (PQntuples(res) != 1) {
        fill_fail(f, 404, "blob %s not found", f->digest);
        return;
    }
    f->size = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
    if (blobstore_space(f->s->dir, f->size, f->s->min_free, &status, why,
                        sizeof(why)) < 0) {
        fill_fail(f, status, "blob %s cannot be cached here: %s", f->digest,
                  why);
        return;
    }
    f->tmp = xasprintf("%s/fill-%s", f->s->tmpdir, f->digest + 7);
    if (hashfile_open(f->tmp, 0, &f->fd, &f->md) < 0) {
        fill_fail(f, 500, "blob %s: cannot start its cache file %s: %s",
                  f->digest, f->tmp, strerror(errno));
        return;
    }
    fill_next(f);
}

int
blobstore_open_local(const struct blobstore *s, const char *digest)
{
    char *path = xasprintf("%s/%s", s->dir, digest + 7);
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    free(path);
    return fd;
}

struct blobstore_wait *
blobstore_fetch(struct blobstore *s, const char *digest,
                blobstore_fetch_cb cb, void *arg, int *status, char *why,
                size_t len)
{
    struct blobstore_wait *w;
    struct fill *f;

    if (!digest_valid(digest)) {
        *status = 400;
        snprintf(why, len, "a blob is named sha256:<64 hex>, not %.80s",
                 digest);
        return NULL;
    }
    LIST_FOREACH(f, &s->fills, link)
    if (strcmp(f->digest, digest) == 0)
        break;
    if (f == NULL) {
        const char *vals[1] = {digest};

        f = xcalloc(1, sizeof(*f));
        f->s = s;
        f->fd = -1;
        xstrlcpy(f->digest, digest, sizeof(f->digest));
        TAILQ_INIT(&f->waiters);
        LIST_INSERT_HEAD(&s->fills, f, link);
        db_query(s->db, store_stmt(ST_BLOB_SIZE), vals, on_fill_size, f);
        /* db_query may have failed f at once (no connection): it is gone
         * and so is its list entry; look again. */
        LIST_FOREACH(f, &s->fills, link)
        if (strcmp(f->digest, digest) == 0)
            break;
        if (f == NULL) {
            *status = 503;
            snprintf(why, len,
                     "blob %s: database unavailable: no connection to "
                     "PostgreSQL",
                     digest);
            return NULL;
        }
    }
    w = xcalloc(1, sizeof(*w));
    w->fill = f;
    w->cb = cb;
    w->arg = arg;
    TAILQ_INSERT_TAIL(&f->waiters, w, link);
    return w;
}

void
blobstore_fetch_cancel(struct blobstore_wait *w)
{
    if (w == NULL)
        return;
    TAILQ_REMOVE(&w->fill->waiters, w, link);
    free(w);
}

/* ---- upload sessions read back --------------------------------------- */

static void sread_next(struct sread *r);

static void
sread_end(struct sread *r, int status, const char *why, const char *got)
{
    if (r->fd >= 0)
        close(r->fd);
    if (r->tmp)
        (void)unlink(r->tmp); /* gone already when it became the blob */
    r->cb(status, why, got, r->size, r->arg);
    free(r->tmp);
    EVP_MD_CTX_free(r->md);
    free(r);
}

static void sread_fail(struct sread *r, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
sread_fail(struct sread *r, int status, const char *fmt, ...)
{
    char why[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    if (status >= 500)
        log_warnx("%s", why);
    sread_end(r, status, why, NULL);
}

static void
sread_complete(struct sread *r)
{
    char got[DIGEST_TEXT_SIZE];
    char *final;

    if (digest_final(r->md, got) < 0) {
        sread_fail(r, 500, "upload %s: SHA-256 final failed", r->id);
        return;
    }
    if (strcmp(got, r->want) != 0) {
        sread_end(r, 0, NULL, got);
        return;
    }
    final = xasprintf("%s/%s", r->s->dir, got + 7);
    /* Durable before the row that names it is written. */
    if (fsutil_commit(r->fd, r->tmp, final) < 0) {
        int e = errno;

        free(final);
        sread_fail(r, 500, "upload %s: cannot move it into the cache: %s",
                   r->id, strerror(e));
        return;
    }
    free(final);
    free(r->tmp);
    r->tmp = NULL;
    log_info("upload %s (%llu bytes in %d pieces) read back from "
             "PostgreSQL as blob %s",
             r->id, r->size, r->pieces, got);
    sread_end(r, 0, NULL, got);
}

static void
on_sread_piece(const PGresult *res, const struct db_error *err, void *arg)
{
    struct sread *r = arg;
    char why[160];
    size_t len;

    if (err) {
        sread_fail(r, err->status, "upload %s: %s", r->id, err->message);
        return;
    }
    if (PQntuples(res) != 1) {
        sread_fail(r, 404,
                   "upload %s: its piece at offset %llu is gone (the "
                   "upload was finished or cancelled meanwhile)",
                   r->id, r->off);
        return;
    }
    len = (size_t)PQgetlength(res, 0, 0);
    if (len == 0 || r->off + len > r->size) {
        sread_fail(r, 500,
                   "upload %s: the piece at offset %llu has %zu bytes, past "
                   "the %llu received",
                   r->id, r->off, len, r->size);
        return;
    }
    if (hashfile_append(r->fd, r->md, PQgetvalue(res, 0, 0), len, why,
                        sizeof(why)) < 0) {
        sread_fail(r, 500, "upload %s: %s", r->id, why);
        return;
    }
    r->off += len;
    r->pieces++;
    sread_next(r);
}

static void
sread_next(struct sread *r)
{
    char off[24];
    const char *vals[2] = {r->id, off};
    struct db_params prm = {.values = vals, .result_binary = 1};

    if (r->off == r->size) {
        sread_complete(r);
        return;
    }
    snprintf(off, sizeof(off), "%llu", r->off);
    db_query_params(r->s->db, store_stmt(ST_UPLOAD_PIECE_GET), &prm,
                    on_sread_piece, r);
}

static void
on_sread_size(const PGresult *res, const struct db_error *err, void *arg)
{
    struct sread *r = arg;
    char why[400];
    int status;

    if (err) {
        sread_fail(r, err->status, "upload %s: %s", r->id, err->message);
        return;
    }
    if (PQntuples(res) != 1) {
        sread_fail(r, 404,
                   "upload %s not found: it was finished, cancelled, or "
                   "ended idle",
                   r->id);
        return;
    }
    r->size = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
    if (blobstore_space(r->s->dir, r->size, r->s->min_free, &status, why,
                        sizeof(why)) < 0) {
        sread_fail(r, status, "upload %s cannot be finished here: %s", r->id,
                   why);
        return;
    }
    r->tmp = xasprintf("%s/upload-%s", r->s->tmpdir, r->id);
    if (hashfile_open(r->tmp, 1, &r->fd, &r->md) < 0) {
        int e = errno;

        free(r->tmp);
        r->tmp = NULL; /* another PUT of this session owns it */
        sread_fail(r, e == EEXIST ? 409 : 500,
                   "upload %s: cannot start its cache file: %s", r->id,
                   e == EEXIST ? "it is being finished already"
                               : strerror(e));
        return;
    }
    sread_next(r);
}

static void
sread_start(evutil_socket_t fd, short what, void *arg)
{
    struct sread *r = arg;
    const char *vals[1] = {r->id};

    (void)fd;
    (void)what;
    db_query(r->s->db, store_stmt(ST_UPLOAD_RECEIVED), vals, on_sread_size,
             r);
}

void
blobstore_read_session(struct blobstore *s, const char *id, const char *want,
                       blobstore_read_cb cb, void *arg)
{
    struct sread *r = xcalloc(1, sizeof(*r));

    r->s = s;
    r->fd = -1;
    r->cb = cb;
    r->arg = arg;
    xstrlcpy(r->id, id, sizeof(r->id));
    xstrlcpy(r->want, want, sizeof(r->want));
    /* From the next loop turn: cb must not run before this returns. */
    if (event_base_once(s->base, -1, EV_TIMEOUT, sread_start, r, NULL) < 0)
        fatalx("cannot schedule the read of an upload session");
}

/* ---- lifecycle ------------------------------------------------------- */

struct blobstore *
blobstore_new(struct event_base *base, struct db_pool *db, const char *dir,
              const char *tmpdir)
{
    struct blobstore *s = xcalloc(1, sizeof(*s));

    s->base = base;
    s->db = db;
    s->dir = xstrdup(dir);
    s->tmpdir = xstrdup(tmpdir);
    s->min_free = 1ULL << 30;
    LIST_INIT(&s->fills);
    return s;
}

void
blobstore_set_min_free(struct blobstore *s, unsigned long long min_free)
{
    s->min_free = min_free;
}

void
blobstore_free(struct blobstore *s)
{
    if (s == NULL)
        return;
    if (!LIST_EMPTY(&s->fills))
        log_warnx("blob cache fills still in flight at shutdown");
    free(s->dir);
    free(s->tmpdir);
    free(s);
}
