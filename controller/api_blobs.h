/*
 * api_blobs: the content-addressed blob store under <data-dir>/blobs and the
 * chunked upload sessions that fill it, with their HTTP handlers:
 *
 *   POST   /v1/blobs/uploads            start a session -> {"id","offset"}
 *   PATCH  /v1/blobs/uploads/{id}       append one chunk (<= 1 MiB,
 *                                       application/octet-stream,
 *                                       Upload-Offset must match)
 *   PUT    /v1/blobs/uploads/{id}?digest=sha256:<hex>
 *                                       finish, on any replica: the chunks
 *                                       read back from PostgreSQL into the
 *                                       cache must have that SHA-256, then
 *                                       the blob's row and chunks (copied
 *                                       from the session's) are committed
 *                                       before the 201
 *   DELETE /v1/blobs/uploads/{id}       abandon
 *   GET    /v1/blobs/{digest}           stream a blob (from this replica's
 *                                       cache, filled from PostgreSQL when
 *                                       the file is not here)
 *
 * Every request body stays within the API's 1 MiB limit, as the Docker
 * registry's chunked uploads do, so nothing large is ever buffered.
 */
#ifndef CLOUD_API_BLOBS_H
#define CLOUD_API_BLOBS_H

#include <event2/event.h>

#include "db.h"
#include "http.h"

struct blobs;
struct blobstore;

/* blob_db: the pool of the blob content's statements (blobstore.h). */
struct blobs *blobs_new(struct event_base *base, struct db_pool *blob_db,
                        const char *data_dir, unsigned long long max_blob);
void blobs_free(struct blobs *b);
const char *blobs_dir(const struct blobs *b);
/* The content in PostgreSQL and this replica's cache (gateway_blobs.c). */
struct blobstore *blobs_store(const struct blobs *b);
/* Makes <data_dir>/blobs/sha256 (before the store opens); 0 or -1. */
int blobs_ready_dir(const char *data_dir);

/*
 * Takes this replica's limits from the cluster settings JSON
 * (cloud_settings_json): blobs.min_free_bytes,
 * blobs.gc_grace_seconds. Accepts NULL b.
 */
void blobs_settings(struct blobs *b, const char *settings_json);
/*
 * One garbage collection pass: the leader deletes the rows of blobs no
 * image uses that are older than the grace (cloud_blob_gc) and then their
 * files; every replica removes its files that have no row and are older
 * than the grace. At most one pass in flight. db must outlive it.
 */
void blobs_gc(struct blobs *b, struct db_pool *db, int leading);
long long blobs_gc_grace(const struct blobs *b);

void blobs_h_upload_start(struct http_req *r);
void blobs_h_upload_chunk(struct http_req *r);
void blobs_h_upload_finish(struct http_req *r);
void blobs_h_upload_cancel(struct http_req *r);
void blobs_h_get(struct http_req *r);

#endif
