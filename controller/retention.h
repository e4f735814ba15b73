/*
 * retention: the periodic housekeeping of the event log and the blob store
 * (issue 11; docs/decisions.md "Event retention and the low-water mark",
 * "Quotas and blob GC").
 *
 * Every RETENTION_TICK_S seconds: the leader prunes events past the
 * events_retention setting, RETENTION_BATCH rows per statement (and again
 * at once while a statement deletes a whole batch), without the event lock,
 * so API writes are never stalled behind it; every controller re-reads the
 * cluster settings for its blob store; blob garbage collection runs at most
 * every min(60 s, blobs.gc_grace_seconds).
 */
#ifndef CLOUD_RETENTION_H
#define CLOUD_RETENTION_H

#include <event2/event.h>

#include "app.h"

#define RETENTION_TICK_S 2
#define RETENTION_BATCH 5000

struct retention;

struct retention *retention_new(struct app *app);
/* Call before db_pool_free(); a query in flight frees it later. */
void retention_free(struct retention *rt);

#endif
