/*
 * blobstore: blob content in PostgreSQL (table blob_chunks, migrations/0023;
 * docs/decisions.md §29) and this replica's cache of it, the files of
 * <data-dir>/blobs/sha256.
 *
 * - An upload session (migrations/0025, docs/decisions.md §32) keeps its
 *   pieces in PostgreSQL as they arrive. Its finishing PUT, on any
 *   replica, reads them back in order into a cache file while computing
 *   the SHA-256 (blobstore_read_session), then in one transaction creates
 *   the blobs row (cloud_blob_put), copies the pieces into blob_chunks
 *   inside PostgreSQL and deletes the session (blobstore_put). The upload
 *   is acknowledged only after that commit, so any replica can serve what
 *   was acknowledged.
 * - A read of a blob whose file is missing (uploaded through another
 *   replica, or this replica's data directory lost) fills the cache from
 *   the chunks, checking the SHA-256, then serves the file. Reads of the
 *   same digest wait on one fill.
 *
 * Every statement runs on the pool given to blobstore_new (the blob pool:
 * its connections are held by long transactions that must not delay API
 * queries). The loop never waits: one statement in flight per transfer,
 * at most one chunk in memory per transfer.
 */
#ifndef CLOUD_BLOBSTORE_H
#define CLOUD_BLOBSTORE_H

#include <event2/event.h>

#include "db.h"

#ifndef BLOBSTORE_CHUNK
#define BLOBSTORE_CHUNK (1024 * 1024)
#endif

struct blobstore;
struct blobstore_put;
struct blobstore_wait;

/* dir: the cache (<data>/blobs/sha256); tmpdir: where fills are written
 * before they are renamed into dir. Both copied. */
struct blobstore *blobstore_new(struct event_base *base, struct db_pool *db,
                                const char *dir, const char *tmpdir);
/* Fills and puts in flight must have ended (free the pool first). */
void blobstore_free(struct blobstore *s);
/* The reserve of free bytes a fill must leave (blobs.min_free_bytes). */
void blobstore_set_min_free(struct blobstore *s, unsigned long long min_free);

/*
 * 0 when writing need more bytes into dir leaves min_free free; -1 with a
 * sentence in why (and *status 507, or 500 when statvfs failed).
 */
int blobstore_space(const char *dir, unsigned long long need,
                    unsigned long long min_free, int *status, char *why,
                    size_t len);

/* An upload session's id: 32 hex digits and the NUL. */
#define BLOBSTORE_SESSION_ID 33

/*
 * Reads the content of upload session id back from PostgreSQL, piece by
 * piece in offset order, into a new file of tmpdir while computing its
 * SHA-256; when that is want the file is moved into the cache. cb runs
 * once, never before this returns: status 0 with got, the content's
 * digest, and size (got different from want: nothing was cached), else
 * status (404, 409, 500, 503, 507) and a sentence.
 */
typedef void (*blobstore_read_cb)(int status, const char *why,
                                  const char *got, unsigned long long size,
                                  void *arg);
void blobstore_read_session(struct blobstore *s, const char *id,
                            const char *want, blobstore_read_cb cb,
                            void *arg);

/*
 * Makes upload session's content the blob digest of size bytes (digest
 * checked by blobstore_read_session), in one transaction: the session
 * locked and still at size, the blobs row, the pieces copied into
 * blob_chunks, the session deleted. cb runs once: err NULL after the
 * commit. blobstore_put_abort instead rolls it back and cb never runs; it
 * returns 1 when the COMMIT was already sent (the blob may be stored after
 * all), else 0.
 */
typedef void (*blobstore_put_cb)(const struct db_error *err, void *arg);
struct blobstore_put *blobstore_put(struct blobstore *s, const char *session,
                                    const char *digest,
                                    unsigned long long size,
                                    blobstore_put_cb cb, void *arg);
int blobstore_put_abort(struct blobstore_put *p);

/*
 * The cached file of digest, opened read-only, or -1 (errno ENOENT: not
 * cached here; then blobstore_fetch).
 */
int blobstore_open_local(const struct blobstore *s, const char *digest);

/*
 * Fills the cache from PostgreSQL and calls cb once, never before
 * returning: fd >= 0 the file opened read-only (the callee owns it), else
 * status (404, 500, 503, 507) and a sentence. NULL when it failed at once
 * (status and why set, cb never runs). blobstore_fetch_cancel drops the
 * waiter (the fill goes on for the others and the cache).
 */
typedef void (*blobstore_fetch_cb)(int fd, int status, const char *why,
                                   void *arg);
struct blobstore_wait *blobstore_fetch(struct blobstore *s, const char *digest,
                                       blobstore_fetch_cb cb, void *arg,
                                       int *status, char *why, size_t len);
void blobstore_fetch_cancel(struct blobstore_wait *w);

#endif
