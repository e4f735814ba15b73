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
#include <jansson.h>

#include "db.h"
#include "pki.h"
#include "watch.h"

#define GATEWAY_DEFAULT_LISTEN "127.0.0.1:7071"

struct gateway_config {
    const struct pki_paths *pki;
    unsigned heartbeat_ms;   /* agent heartbeat and flush interval */
    unsigned resync_ms;      /* periodic re-read of every desired set */
    unsigned first_frame_ms; /* Hello/JoinRequest deadline (0: 10 s) */
    const char *blob_dir;    /* blob files served to agents (BlobRequest) */
    struct blobstore *blob_store; /* and their content (blobstore.h) */
    struct db_pool *hb_db;   /* heartbeats' own pool (NULL: the main one) */
};

struct blobstore;
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

/* Enrolment (join.h) and the port agents dial; for the API. */
struct join *gateway_join(struct gateway *gw);
unsigned short gateway_port(const struct gateway *gw);

/*
 * Console log streams through an agent (LogRequest -> LogChunks). Bounded:
 * GATEWAY_LOG_STREAMS_PER_AGENT per agent connection and
 * GATEWAY_LOG_STREAMS_MAX in all.
 */
#define GATEWAY_LOG_STREAMS_PER_AGENT 16
#define GATEWAY_LOG_STREAMS_MAX 1024

struct gateway_log_sink {
    /* One LogChunk. After one with eof (error set or not) no more calls;
     * the sink may call gateway_log_close() from inside. */
    void (*on_chunk)(void *arg, const unsigned char *data, size_t len,
                     unsigned long long offset, int eof, const char *error);
    /* The agent's connection ended first: no more calls. */
    void (*on_lost)(void *arg, const char *why);
    /* The stream could not be opened after all (status 429 or 503, why a
     * sentence): no more calls. Only the log relay calls it (logrelay.h:
     * its open is answered later); the gateway refuses in
     * gateway_log_open itself. */
    void (*on_refused)(void *arg, int status, const char *why);
};

struct gateway_log_params {
    const char *host; /* host name (the certificate's CN) */
    const char *instance_id;
    unsigned long long tail_bytes;
    unsigned tail_lines;
    int follow;
};

/*
 * Sends a LogRequest to the host's agent if it is connected to this
 * controller. Returns a handle (> 0), or 0 with *status (503: the agent is
 * not connected here, 429: too many streams) and a sentence in why.
 */
unsigned long long gateway_log_open(struct gateway *gw,
                                    const struct gateway_log_params *p,
                                    const struct gateway_log_sink *sink,
                                    void *arg, int *status, char *why,
                                    size_t whylen);
/* The client left: forget the stream and tell the agent to stop it. No
 * more sink calls. Handles already finished are ignored. */
void gateway_log_close(struct gateway *gw, unsigned long long handle);

/* 1 if the agent of host (its name) is connected to this controller now. */
int gateway_holds(const struct gateway *gw, const char *host);

/*
 * The hosts whose agents are connected here with a session, as the log
 * relay records them (cloud_log_relay_beat): [{"id": host id, "epoch":
 * session epoch}, ...] in connection order. A new reference.
 */
json_t *gateway_links(const struct gateway *gw);
/* fn(arg) runs (from the gateway's callbacks) whenever an agent's session
 * starts or ends here: what gateway_links returns changed. One handler. */
void gateway_on_links(struct gateway *gw, void (*fn)(void *arg), void *arg);

#endif
