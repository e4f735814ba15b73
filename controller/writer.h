/*
 * writer: group commit for the API's writes. Writes that arrive while a
 * batch is in flight wait and go together in the next one: one transaction
 * and one NOTIFY for many changes (DESIGN.md "Flows"), with no added delay
 * when the system is idle. Each write still gets its own answer.
 */
#ifndef CLOUD_WRITER_H
#define CLOUD_WRITER_H

#include "cache.h"
#include "db.h"

#define WRITER_BATCH_MAX 256

/*
 * One API write: a cloud_batch operation and its arguments by name (NULL:
 * SQL NULL, or not one of the operation's). Which fields an operation takes,
 * in the order migrations/functions/cloud_batch_one.sql reads them, is
 * writer.c's table; the writer copies them, so they need live only for the
 * call.
 */
struct writer_op {
    const char *op;       /* service_create, instance_kill, audit, ... */
    const char *ref;      /* the object: a name, id, digest; token's name */
    const char *body;     /* validated JSON: creates, service_patch */
    const char *idem_key; /* the Idempotency-Key header: creates */
    const char *if_match; /* the If-Match version */
    const char *actor;    /* who writes: the token's name */
    const char *action;   /* host_action: cordon, uncordon, drain */
    const char *signal;   /* instance_kill: TERM or KILL */
    const char *grace_s;  /* instance_kill: the kill's own grace, seconds */
    const char *size;     /* blob_add: the blob's bytes */
    const char *role;     /* token_create */
    const char *sha256;   /* token_create: the secret's digest, hex */
    const char *ttl_s;    /* token_create: seconds to expiry */
    const char *request;  /* audit: "METHOD uri" */
    const char *status;   /* audit: the HTTP status */
    const char *message;  /* audit: the reply's message */
};

/* status and body on success; err on failure (body NULL). */
typedef void (*writer_cb)(int status, const char *body,
                          const struct db_error *err, void *arg);

struct writer;

struct writer *writer_new(struct db_pool *db, struct cache *cache);
void writer_free(struct writer *w);

/* Queues a write; cb answers it. An operation the writer does not know is
 * a caller's bug: fatal. */
void writer_submit(struct writer *w, const struct writer_op *op, writer_cb cb,
                   void *arg);

/* Batches sent, writes in them, set-based create batches, batches sent
 * again item by item after a failure: for /metrics. */
void writer_stats(const struct writer *w, unsigned long long *batches,
                  unsigned long long *writes, unsigned long long *bulk,
                  unsigned long long *retries);

#endif
