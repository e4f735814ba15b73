/*
 * gateway_blobs: blob downloads over an agent's link (BlobRequest ->
 * BlobChunks, proto/agent.proto). One struct gwblobs per agent connection,
 * made on its first BlobRequest by the gateway (gateway_conn.c) and freed when
 * the connection ends.
 *
 * A blob is read from this controller's cache of the blob store
 * (<data-dir>/blobs/sha256, filled from PostgreSQL first when the file is
 * not there: blobstore.h) in GWBLOBS_PIECE pieces. The next
 * piece is queued only while the connection's output buffer holds less
 * than GWBLOBS_LOW_WATER bytes, so a disk image of gigabytes never sits in
 * memory and heartbeats, desired sets and log chunks to the same agent
 * wait behind at most that much.
 * At most GWBLOBS_STREAMS_PER_AGENT requests run at once per connection;
 * they take turns piece by piece.
 *
 * A blob that is in no cache and not in PostgreSQL (an unknown digest), or
 * whose fill fails, is answered with one BlobChunk carrying eof and an
 * error saying so.
 */
#ifndef CLOUD_GATEWAY_BLOBS_H
#define CLOUD_GATEWAY_BLOBS_H

#include <stddef.h>

#include <event2/bufferevent.h>

#include "frame.h"

#define GWBLOBS_PIECE (256u * 1024u)
#define GWBLOBS_LOW_WATER (512u * 1024u)
#define GWBLOBS_STREAMS_PER_AGENT 4

struct gwblobs;

/* send(conn, env) queues one frame on the connection: 0 or -1. */
typedef int (*gwblobs_send_fn)(void *conn, const frame_envelope *env);

/*
 * Streams for one connection whose output is bev's. store is the blob
 * store (its cache files, filled on demand; it outlives b). host names
 * the agent in log lines.
 */
struct blobstore;
struct gwblobs *gwblobs_new(struct event_base *base, struct bufferevent *bev,
                            struct blobstore *store, const char *host,
                            gwblobs_send_fn send, void *conn);
/* One BlobRequest from the agent (a new stream or a cancel). */
void gwblobs_request(struct gwblobs *b, const Cloud__Agent__BlobRequest *q);
/* Streams running now. */
int gwblobs_active(const struct gwblobs *b);
/*
 * The connection is closing: ends every stream and detaches from the
 * bufferevent (call before freeing it). Safe from inside a send callback;
 * later requests are ignored. Accepts NULL.
 */
void gwblobs_stop(struct gwblobs *b);
/* Stops and frees. Never from inside a gwblobs callback. Accepts NULL. */
void gwblobs_free(struct gwblobs *b);

/* 1 if d is "sha256:" and 64 lower-case hex digits. */
int gwblobs_digest_ok(const char *d);

#endif
