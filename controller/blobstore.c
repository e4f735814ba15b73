/*
 * blobstore: blob content in PostgreSQL and this replica's file cache of it
 * (see blobstore.h). Owns the upload sessions being read back (struct
 * sread: received -> piece... -> digest -> rename), the uploads being
 * committed as blobs (struct blobstore_put: BEGIN -> session locked ->
 * cloud_blob_put -> pieces copied -> session deleted -> COMMIT, one
 * statement in flight) and the cache fills (struct fill: size -> chunk...
 * -> digest check -> rename, one statement in flight), each with the
 * waiters of its digest. Both reads back go through one reader (struct
 * rowread: rows into a file while hashing).
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

/*
 * Rows of bytes read back from PostgreSQL into a file while hashing (a
 * cache fill's chunks, an upload session's pieces): one statement at a
 * time, row_stmt($1 key, $2 position), the position the row number from 0
 * or, by_offset, the byte offset reached. done gets the computed digest
 * (status 0), or a status and a sentence; the file stays for the caller.
 */
struct rowread {
    struct blobstore *s;
    char label[80]; /* "blob sha256:..." or "upload ID", for sentences */
    const char *key;
    enum store_stmt row_stmt;
    int by_offset;
    int missing_status; /* a row that is not there */
    const char *missing_why;
    char *tmp;
    int fd;
    EVP_MD_CTX *md;
    unsigned long long size, off;
    int rows;
    void (*done)(struct rowread *rr, int status, const char *why,
                 const char *got);
};

struct fill {
    struct rowread rr; /* first: a struct rowread * is a struct fill * */
    LIST_ENTRY(fill) link;
    char digest[DIGEST_TEXT_SIZE];
    struct wait_list waiters;
};

/* An upload session read back from PostgreSQL for its finishing PUT. */
struct sread {
    struct rowread rr; /* first, as in struct fill */
    char id[BLOBSTORE_SESSION_ID];
    char want[DIGEST_TEXT_SIZE];
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

/* ---- rows read back into a hashed file -------------------------------- */

static void rowread_next(struct rowread *rr);

static void rowread_fail(struct rowread *rr, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
rowread_fail(struct rowread *rr, int status, const char *fmt, ...)
{
    char why[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    if (status >= 500)
        log_warnx("%s", why);
    rr->done(rr, status, why, NULL);
}

static void
rowread_init(struct rowread *rr, struct blobstore *s, const char *kind,
             const char *key, enum store_stmt row_stmt, int by_offset,
             void (*done)(struct rowread *, int, const char *, const char *))
{
    rr->s = s;
    snprintf(rr->label, sizeof(rr->label), "%s %s", kind, key);
    rr->key = key;
    rr->row_stmt = row_stmt;
    rr->by_offset = by_offset;
    rr->fd = -1;
    rr->done = done;
}

/* Closes and frees what rr holds (the file is unlinked unless keep). */
static void
rowread_release(struct rowread *rr, int keep)
{
    if (rr->fd >= 0)
        close(rr->fd);
    rr->fd = -1;
    if (rr->tmp != NULL && !keep)
        (void)unlink(rr->tmp);
    free(rr->tmp);
    rr->tmp = NULL;
    EVP_MD_CTX_free(rr->md);
    rr->md = NULL;
}

/*
 * The size is known (sz, the text of a size row): checks the free-space
 * reserve for it, opens tmp (owned by rr from here; O_EXCL when excl) and
 * reads the rows. what: how a refusal is put ("cannot be cached here").
 */
static void
rowread_begin(struct rowread *rr, const char *sz, char *tmp, int excl,
              const char *what)
{
    char why[400];
    int status;

    rr->size = strtoull(sz, NULL, 10);
    if (blobstore_space(rr->s->dir, rr->size, rr->s->min_free, &status, why,
                        sizeof(why)) < 0) {
        free(tmp);
        rowread_fail(rr, status, "%s %s: %s", rr->label, what, why);
        return;
    }
    if (hashfile_open(tmp, excl, &rr->fd, &rr->md) < 0) {
        int e = errno;

        free(tmp); /* not ours when it exists (another reader's) */
        rowread_fail(rr, e == EEXIST ? 409 : 500,
                     "%s: cannot start its cache file: %s", rr->label,
                     e == EEXIST ? "it is being finished already"
                                 : strerror(e));
        return;
    }
    rr->tmp = tmp;
    rowread_next(rr);
}

static void
on_rowread_row(const PGresult *res, const struct db_error *err, void *arg)
{
    struct rowread *rr = arg;
    char why[160];
    size_t len;

    if (err) {
        rowread_fail(rr, err->status, "%s: %s", rr->label, err->message);
        return;
    }
    if (PQntuples(res) != 1) {
        rowread_fail(rr, rr->missing_status, "%s: row %d (byte %llu) %s",
                     rr->label, rr->rows, rr->off, rr->missing_why);
        return;
    }
    len = (size_t)PQgetlength(res, 0, 0);
    if (len == 0 || rr->off + len > rr->size) {
        rowread_fail(rr, 500,
                     "%s: row %d has %zu bytes, past the size %llu",
                     rr->label, rr->rows, len, rr->size);
        return;
    }
    if (hashfile_append(rr->fd, rr->md, PQgetvalue(res, 0, 0), len, why,
                        sizeof(why)) < 0) {
        rowread_fail(rr, 500, "%s: %s", rr->label, why);
        return;
    }
    rr->off += len;
    rr->rows++;
    rowread_next(rr);
}

static void
rowread_next(struct rowread *rr)
{
    char pos[24], got[DIGEST_TEXT_SIZE];
    const char *vals[2] = {rr->key, pos};
    struct db_params prm = {.values = vals, .result_binary = 1};

    if (rr->off == rr->size) {
        if (digest_final(rr->md, got) < 0)
            rowread_fail(rr, 500, "%s: SHA-256 final failed", rr->label);
        else
            rr->done(rr, 0, NULL, got);
        return;
    }
    if (rr->by_offset)
        snprintf(pos, sizeof(pos), "%llu", rr->off);
    else
        snprintf(pos, sizeof(pos), "%d", rr->rows);
    db_query_params(rr->s->db, store_stmt(rr->row_stmt), &prm,
                    on_rowread_row, rr);
}

/* ---- cache fills from PostgreSQL ------------------------------------- */

static void
fill_finish(struct fill *f, int status, const char *why)
{
    struct blobstore_wait *w;
    char *final = xasprintf("%s/%s", f->rr.s->dir, f->digest + 7);

    rowread_release(&f->rr, status == 0);
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
    free(f);
}

/* The chunks are read (got: their digest), or a failure. */
static void
fill_done(struct rowread *rr, int status, const char *why, const char *got)
{
    struct fill *f = (struct fill *)rr;
    char *final;

    if (status != 0) {
        fill_finish(f, status, why);
        return;
    }
    if (strcmp(got, f->digest) != 0) {
        rowread_fail(rr, 500,
                     "blob %s: its content in PostgreSQL has digest %s; it "
                     "was not cached",
                     f->digest, got);
        return;
    }
    final = xasprintf("%s/%s", rr->s->dir, f->digest + 7);
    if (fsutil_commit(rr->fd, rr->tmp, final) < 0) {
        int e = errno;

        free(final);
        rowread_fail(rr, 500,
                     "blob %s: cannot move its fill into the cache: %s",
                     f->digest, strerror(e));
        return;
    }
    free(final);
    log_info("blob %s (%llu bytes) cached from PostgreSQL", f->digest,
             rr->size);
    fill_finish(f, 0, NULL);
}

static void
on_fill_size(const PGresult *res, const struct db_error *err, void *arg)
{
    struct fill *f = arg;

    if (err) {
        rowread_fail(&f->rr, err->status, "blob %s: %s", f->digest,
                     err->message);
        return;
    }
    if (PQntuples(res) != 1) {
        rowread_fail(&f->rr, 404, "blob %s not found", f->digest);
        return;
    }
    rowread_begin(&f->rr, PQgetvalue(res, 0, 0),
                  xasprintf("%s/fill-%s", f->rr.s->tmpdir, f->digest + 7), 0,
                  "cannot be cached here");
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
        xstrlcpy(f->digest, digest, sizeof(f->digest));
        rowread_init(&f->rr, s, "blob", f->digest, ST_BLOB_CHUNK_GET, 0,
                     fill_done);
        f->rr.missing_status = 500;
        f->rr.missing_why = "of its content is not in PostgreSQL (a blob "
                            "registered before migration 0023 whose file is "
                            "gone); upload it again";
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

/* The pieces are read (got: their digest), or a failure. */
static void
sread_done(struct rowread *rr, int status, const char *why, const char *got)
{
    struct sread *r = (struct sread *)rr;
    char *final;

    if (status == 0 && strcmp(got, r->want) == 0) {
        final = xasprintf("%s/%s", rr->s->dir, got + 7);
        /* Durable before the row that names it is written. */
        if (fsutil_commit(rr->fd, rr->tmp, final) < 0) {
            int e = errno;

            free(final);
            rowread_fail(rr, 500,
                         "upload %s: cannot move it into the cache: %s",
                         r->id, strerror(e));
            return;
        }
        free(final);
        free(rr->tmp);
        rr->tmp = NULL; /* it is the blob's file now */
        log_info("upload %s (%llu bytes in %d pieces) read back from "
                 "PostgreSQL as blob %s",
                 r->id, rr->size, rr->rows, got);
    }
    rowread_release(rr, 0);
    r->cb(status, why, status == 0 ? got : NULL, rr->size, r->arg);
    free(r);
}

static void
on_sread_size(const PGresult *res, const struct db_error *err, void *arg)
{
    struct sread *r = arg;

    if (err) {
        rowread_fail(&r->rr, err->status, "upload %s: %s", r->id,
                     err->message);
        return;
    }
    if (PQntuples(res) != 1) {
        rowread_fail(&r->rr, 404,
                     "upload %s not found: it was finished, cancelled, or "
                     "ended idle",
                     r->id);
        return;
    }
    rowread_begin(&r->rr, PQgetvalue(res, 0, 0),
                  xasprintf("%s/upload-%s", r->rr.s->tmpdir, r->id), 1,
                  "cannot be finished here");
}

static void
sread_start(evutil_socket_t fd, short what, void *arg)
{
    struct sread *r = arg;
    const char *vals[1] = {r->id};

    (void)fd;
    (void)what;
    db_query(r->rr.s->db, store_stmt(ST_UPLOAD_RECEIVED), vals,
             on_sread_size, r);
}

void
blobstore_read_session(struct blobstore *s, const char *id, const char *want,
                       blobstore_read_cb cb, void *arg)
{
    struct sread *r = xcalloc(1, sizeof(*r));

    xstrlcpy(r->id, id, sizeof(r->id));
    xstrlcpy(r->want, want, sizeof(r->want));
    rowread_init(&r->rr, s, "upload", r->id, ST_UPLOAD_PIECE_GET, 1,
                 sread_done);
    r->rr.missing_status = 404;
    r->rr.missing_why = "is gone (the upload was finished or cancelled "
                        "meanwhile)";
    r->cb = cb;
    r->arg = arg;
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
