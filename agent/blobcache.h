/*
 * blobcache: the agent's local image cache. Blobs (kernels, initrds, disk
 * images) are files named "sha256:<hex>" in one directory shared by every
 * instance on the host. A missing blob is fetched from the controller over
 * the agent's link (BlobRequest -> BlobChunks, proto/agent.proto), written
 * to a temporary file while its SHA-256 is computed, synced, and renamed
 * into place only if the digest matches. One fetch per digest, however many
 * instances wait for it; at most BLOBCACHE_FETCHES requests at once. A
 * fetch cut by a lost link resumes from where it stopped.
 *
 * Eviction: after each fetch and every minute, while the cache holds more
 * than its limit, the least recently used blobs that no instance of the
 * desired set references are deleted. "Used" is the file's mtime, touched
 * whenever an instance starts from it.
 *
 * Threads: the fetching runs on the agent's event loop; the libvirt worker
 * thread asks for paths with blobcache_resolve(), which never blocks on the
 * network: it answers "fetching" at once and wakes the loop, and the loop
 * kicks the worker when the blob is there (or failed).
 */
#ifndef CLOUD_AGENT_BLOBCACHE_H
#define CLOUD_AGENT_BLOBCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "frame.h"
#include "worker.h"

#define BLOBCACHE_FETCHES 4                /* requests in flight at once */
#define BLOBCACHE_DEFAULT_MAX_MIB 10240    /* --cache-max-mib */
#define BLOBCACHE_RETRY_MS 5000            /* a failed digest is not retried sooner */
#define BLOBCACHE_EVICT_INTERVAL_S 60

struct blobcache;

struct blobcache_opts {
    const char *dir;        /* the cache directory (created if missing) */
    const char *images_dir; /* read-only blobs checked first; NULL: none */
    uint64_t max_bytes;
};

/* Queues one frame to the controller: 0, or -1 when the link is down. */
typedef int (*blobcache_send_fn)(void *arg, const frame_envelope *env);

/* NULL (logged) if the directory cannot be made. */
struct blobcache *blobcache_new(struct event_base *base,
                                const struct blobcache_opts *o,
                                blobcache_send_fn send, void *send_arg);
/* kick(arg) asks the worker to reconcile again (a blob arrived or failed). */
void blobcache_set_kick(struct blobcache *bc, void (*kick)(void *arg),
                        void *arg);
void blobcache_free(struct blobcache *bc); /* accepts NULL */

/*
 * Worker thread (any thread): where the blob digest is. Returns 1 with
 * *pathp (free it), 0 while it is being fetched (why: "fetching image
 * sha256:ab12... (35%)"), or -1 with why when it cannot be had.
 */
int blobcache_resolve(struct blobcache *bc, const char *digest, char **pathp,
                      char *why, size_t whylen);
/* Same signature as worker_opts.resolve. */
int blobcache_resolve_cb(void *arg, const char *digest, char **pathp,
                         char *why, size_t whylen);

/* Event loop: a new desired set (before the worker gets it): remembers
 * which digests are referenced and starts fetching what RUN specs lack. */
void blobcache_note_set(struct blobcache *bc, const struct worker_spec *specs,
                        size_t n);
/* Event loop: one BlobChunk from the controller. */
void blobcache_on_chunk(struct blobcache *bc,
                        const Cloud__Agent__BlobChunk *ch);
/* Event loop: the link is ready (send the requests) or went down. */
void blobcache_link_up(struct blobcache *bc);
void blobcache_link_down(struct blobcache *bc);
/* Deletes unreferenced blobs, least recently used first, while over the
 * limit. Returns how many were deleted. */
int blobcache_evict(struct blobcache *bc);
/* Completed fetches since start (for logs and tests). */
uint64_t blobcache_fetched(const struct blobcache *bc);

/* ---- exposed for the unit test --------------------------------------- */

struct blobcache_file {
    char name[80]; /* "sha256:<hex>" */
    uint64_t size;
    int64_t used;  /* mtime, seconds */
    bool referenced;
};

/*
 * Marks which files to delete (sets victim[i]) so that the total size drops
 * to max_bytes or below: unreferenced files only, least recently used
 * first (ties by name). Returns the number of victims.
 */
size_t blobcache_pick_victims(const struct blobcache_file *files, size_t n,
                              uint64_t max_bytes, bool *victim);

#endif
