/*
 * logrelay: console log streams between controller replicas, through
 * PostgreSQL (docs/decisions.md §30). Replicas share nothing but the
 * database, and a host's agent is connected to one of them: a replica asked
 * for the console of an instance whose agent is connected elsewhere (the
 * asker) writes a request row that the replica holding the agent (the
 * holder) picks up; the holder opens the stream through its gateway and
 * writes the agent's chunks back as rows, which the asker reads, deletes
 * and hands to its HTTP client. Every wake-up is a NOTIFY on the watch
 * hub's LISTEN session (watch_on_payload): "logs ask|chunk|end <replica>
 * <relay id>".
 *
 * Every replica beats once a second (cloud_log_relay_beat): its liveness,
 * the links of the agents it holds, and the relays to end because the
 * other side stopped beating. An asker whose holder is silent for
 * LOGRELAY_STALE_MS ends its client's stream (on_lost); a holder whose
 * asker is silent stops the agent's stream.
 */
#ifndef CLOUD_LOGRELAY_H
#define CLOUD_LOGRELAY_H

#include <event2/event.h>

#include "db.h"
#include "gateway.h"
#include "watch.h"

#define LOGRELAY_BEAT_MS 1000
/* A replica silent this long holds no agent and ends its relays. */
#define LOGRELAY_STALE_MS 5000
/* Relays this replica asks at once, at most. */
#define LOGRELAY_ASKS_MAX 1024
/* Bytes of log in one row, at most (the agent sends up to 64 KiB). */
#define LOGRELAY_ROW_MAX (256u * 1024u)
/* Rows read at once, at most: what a client gets in one burst (its
 * backlog is checked after each chunk, as for the gateway's streams). */
#define LOGRELAY_READ_ROWS 4
/* An asker this far behind (bytes written, not read) is cut off. */
#define LOGRELAY_UNREAD_MAX (16u * 1024u * 1024u)

struct logrelay;

/*
 * replica: this controller's identity (leader_make_identity). gw: its agent
 * gateway, or NULL (it only asks). beat_db: the pool the beat goes through
 * (the lease's: it must not queue behind bulk work).
 */
struct logrelay *logrelay_new(struct event_base *base, struct db_pool *db,
                              struct db_pool *beat_db, struct watch *w,
                              struct gateway *gw, const char *replica);
/* Stops the timer and forgets the streams (no more sink calls). Call
 * before db_pool_free(); free with logrelay_free() after it. */
void logrelay_close(struct logrelay *rl);
void logrelay_free(struct logrelay *rl); /* accepts NULL */

/*
 * Asks for p's log through the replica holding p->host's agent. Returns a
 * handle (> 0) and the sink gets what the agent sends, as from
 * gateway_log_open, or on_refused (503: no replica holds the agent, 429:
 * the holder streams too many); 0 with *status 429 and a sentence in why
 * when this replica asks too many already.
 */
unsigned long long logrelay_open(struct logrelay *rl,
                                 const struct gateway_log_params *p,
                                 const struct gateway_log_sink *sink,
                                 void *arg, int *status, char *why,
                                 size_t whylen);
/* The client left: no more sink calls; the holder is told to stop. */
void logrelay_cancel(struct logrelay *rl, unsigned long long handle);

#endif
