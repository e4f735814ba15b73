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

#define WRITER_MAX_ARGS 6
#define WRITER_BATCH_MAX 256

/* status and body on success; err on failure (body NULL). */
typedef void (*writer_cb)(int status, const char *body,
                          const struct db_error *err, void *arg);

struct writer;

struct writer *writer_new(struct db_pool *db, struct cache *cache);
void writer_free(struct writer *w);

/*
 * Queues op (a cloud_batch operation: service_create, instance_kill, ...)
 * with up to WRITER_MAX_ARGS string arguments (NULL = SQL NULL).
 */
void writer_submit(struct writer *w, const char *op, int nargs,
                   const char *const *args, writer_cb cb, void *arg);

/* Batches sent, writes in them, set-based create batches, batches sent
 * again item by item after a failure: for /metrics. */
void writer_stats(const struct writer *w, unsigned long long *batches,
                  unsigned long long *writes, unsigned long long *bulk,
                  unsigned long long *retries);

#endif
