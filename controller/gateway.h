/*
 * gateway: the controller's end of the agent protocol (proto/agent.proto).
 *
 * Agents dial in over mutual TLS (bufferevent_openssl); the client
 * certificate must come from the cluster CA (pki.h) and its CN is the host
 * name the agent may speak for. Frames are proto/frame.h envelopes. Per
 * connection: Hello -> register the host (new session_epoch) -> Welcome;
 * then heartbeats, InstanceStatus reports, and DesiredState pushes.
 *
 * Database load is batched: heartbeats of every connected host are flushed
 * in one statement per interval, status reports are group-committed (one
 * call per flush, the next flush as soon as the previous returns). A host's
 * desired set is re-read when an event names one of its instances (through
 * watch_observe), after every LISTEN reconnect, and periodically, and is
 * sent only when it differs from what the agent has, with a new revision.
 */
#ifndef CLOUD_GATEWAY_H
#define CLOUD_GATEWAY_H

#include <event2/event.h>

#include "db.h"
#include "pki.h"
#include "watch.h"

#define GATEWAY_DEFAULT_LISTEN "127.0.0.1:7071"

struct gateway_config {
    const struct pki_paths *pki;
    unsigned heartbeat_ms;   /* agent heartbeat and flush interval */
    unsigned down_after_ms;  /* told to agents; the reconciler enforces it */
    unsigned fence_after_ms; /* < down_after_ms */
    unsigned resync_ms;      /* periodic re-read of every desired set */
};

struct gateway;

/* Loads the TLS context; NULL (logged) on failure. */
struct gateway *gateway_new(struct event_base *base, struct db_pool *db,
                            struct watch *watch,
                            const struct gateway_config *cfg);
/* Binds host:port (port 0: any); *bound gets the port. 0 or -1 (logged). */
int gateway_listen(struct gateway *gw, const char *host, unsigned short port,
                   unsigned short *bound);
/*
 * Stops listening and closes every agent connection. Call before
 * db_pool_free(); free with gateway_free() after it (queries in flight
 * still reference the gateway when the pool fails them).
 */
void gateway_close(struct gateway *gw);
void gateway_free(struct gateway *gw); /* accepts NULL */

/* Agents connected with a session right now. */
int gateway_agents(const struct gateway *gw);

#endif
