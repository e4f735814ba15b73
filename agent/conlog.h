/*
 * conlog: the agent's console logs. Serves LogRequest streams (read
 * <state-dir>/run/<id>/console.log from an offset or a tail, in chunks of
 * at most CONLOG_CHUNK bytes; with follow, poll the file every
 * CONLOG_POLL_MS until cancelled or the instance is removed) and caps each
 * console log at CONLOG_CAP bytes: a larger file is copied to console.log.1
 * and truncated (QEMU writes it with O_APPEND, so writing goes on at the new
 * end; under virtlogd its own max_size, 2 MiB by default, rotates first).
 *
 * Runs on the agent's event loop: reads are small preads of a regular file
 * (page cache), paced by how much is queued to the controller.
 */
#ifndef CLOUD_AGENT_CONLOG_H
#define CLOUD_AGENT_CONLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#define CONLOG_CHUNK (64u * 1024u)
#define CONLOG_POLL_MS 250
#define CONLOG_CAP (4u * 1024u * 1024u)
#define CONLOG_CAP_CHECK_S 5
#define CONLOG_MAX_STREAMS 32
#define CONLOG_MAX_TAIL (16u * 1024u * 1024u)

struct conlog;

struct conlog_ops {
    /* Sends one LogChunk; 0 or -1 (the link is down). */
    int (*send)(void *arg, uint64_t request_id, const uint8_t *data,
                size_t len, uint64_t offset, bool eof, const char *error);
    /* Bytes queued to the controller and not yet written. */
    size_t (*backlog)(void *arg);
};

struct conlog_request {
    uint64_t id;
    const char *instance_id;
    uint64_t offset;
    uint64_t tail_bytes;
    unsigned tail_lines;
    bool follow;
};

/* state_dir NULL: every request is answered with an error. */
struct conlog *conlog_new(struct event_base *base, const char *state_dir,
                          const struct conlog_ops *ops, void *arg);
void conlog_free(struct conlog *c); /* accepts NULL */

void conlog_start(struct conlog *c, const struct conlog_request *req);
void conlog_cancel(struct conlog *c, uint64_t id);
/* The instance was removed: its follow streams end after what is left. */
void conlog_instance_gone(struct conlog *c, const char *instance_id);
/* The controller link went down: every stream ends without a word. */
void conlog_drop_all(struct conlog *c);
int conlog_streams(const struct conlog *c);

/* The size cap for one file (exposed for tests). 1 rotated, 0 not, -1. */
int conlog_cap_file(const char *path, uint64_t cap);

#endif
