/*
 * ctlconn: the agent's end of one connection to the controller, and the
 * session it carries. cloud-agent's link (link.c) and cloud-hollow's
 * simulated hosts (bench/hollow_host.c) both speak through it, so a
 * simulated host dials, reads frames, registers and checks desired sets
 * exactly as the agent does.
 *
 * Owns the TLS bufferevent (freed from a deferred event, never inside its
 * own callback), the Welcome timeout, the heartbeat and redial timers, the
 * session numbers (epoch, applied revision, highest leader epoch,
 * heartbeat seq) and the partial desired set (dsparts.h); it handles
 * Welcome, DesiredState (checked, assembled) and Error itself. The owner
 * keeps the rest: what it says in Hello, what it does with a whole set and
 * other messages, and its back-off (ops->down is its cue to call
 * ctlconn_close with the delay to the next ops->dial).
 *
 * States: IDLE (waiting to dial) -> CONNECTING (TCP + TLS) -> WELCOME
 * (ops->connected sent Hello) -> READY (Welcome); ctlconn_close goes back
 * to IDLE.
 */
#ifndef CLOUD_AGENT_CTLCONN_H
#define CLOUD_AGENT_CTLCONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "dsparts.h"
#include "frame.h"

struct bufferevent;
struct event;
struct event_base;

enum ctlconn_state {
    CTLCONN_IDLE = 0,
    CTLCONN_CONNECTING,
    CTLCONN_WELCOME,
    CTLCONN_READY,
};

struct ctlconn_ops {
    /* The redial timer fired (ctlconn_close, ctlconn_dial_after): dial. */
    void (*dial)(void *arg);
    /* TLS is up, the Welcome timeout runs: send Hello. */
    void (*connected)(void *arg);
    /* The session w names started: READY, heartbeats armed. */
    void (*welcome)(void *arg, const Cloud__Agent__Welcome *w);
    /* A whole desired set of a newer revision: apply it and set
     * c->revision (set is cleared on return). */
    void (*desired)(void *arg, const struct dsparts_set *set);
    /* Any other message but Error (logged here). */
    void (*message)(void *arg, const frame_envelope *env);
    /* The connection failed (why: one phrase): call ctlconn_close. */
    void (*down)(void *arg, const char *why);
    /* The heartbeat timer of a READY session fired. */
    void (*heartbeat)(void *arg);
};

struct ctlconn {
    struct event_base *base;
    const struct ctlconn_ops *ops;
    void *arg;
    const char *prefix; /* of its log lines: "" or "host NAME: " */
    unsigned welcome_timeout_s;
    enum ctlconn_state state;
    struct bufferevent *bev, *dead_bev;
    struct event *free_ev, *hb_ev, *retry_ev;
    /* the session (Welcome) */
    uint64_t epoch, revision, highest_leader_epoch, hb_seq;
    unsigned hb_ms;
    struct dsparts *parts;
};

/* Sets c up IDLE; -1 when libevent cannot make its events. */
int ctlconn_init(struct ctlconn *c, struct event_base *base,
                 const struct ctlconn_ops *ops, void *arg, const char *prefix,
                 unsigned welcome_timeout_s);
/* Frees what c holds (not c). Accepts a c that ctlconn_init never set. */
void ctlconn_fini(struct ctlconn *c);

/* Dials host:port over ssl (taken): CONNECTING, or ops->down. */
void ctlconn_dial(struct ctlconn *c, SSL *ssl, const char *host, int port);
/* Formats why and hands it to ops->down. */
void ctlconn_down(struct ctlconn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/*
 * Ends the connection and the partial set: IDLE. Safe in a callback.
 * ops->dial comes after retry_ms and up to a quarter more (jitter, so that
 * hosts cut off together do not dial again together).
 */
void ctlconn_close(struct ctlconn *c, unsigned retry_ms);
/* ops->dial after exactly ms. */
void ctlconn_dial_after(struct ctlconn *c, unsigned ms);

/* Queues one frame; -1 (logged when it cannot be encoded) when down. */
int ctlconn_send(struct ctlconn *c, const frame_envelope *env);
void ctlconn_send_error(struct ctlconn *c, Cloud__Agent__ErrorCode code,
                        const char *msg);
/*
 * Sends Hello h with what this build and the session say filled in: the
 * protocol version, the desired set bound, the highest leader epoch seen.
 */
void ctlconn_send_hello(struct ctlconn *c, Cloud__Agent__Hello *h);
/* Appends ref, for one instance, to h->instances (sized by the caller). */
void ctlconn_hello_ref(Cloud__Agent__Hello *h, Cloud__Agent__InstanceRef *ref,
                       char *id, uint64_t generation,
                       Cloud__Agent__ObservedInstanceState state);
/* Sends the next Heartbeat of the session. */
void ctlconn_heartbeat(struct ctlconn *c);

#endif
