/*
 * gateway_priv.h: what the agent gateway's files share (libvirt's
 * *_priv.h): the connection and gateway structures and the functions one
 * file offers the others. Users of the gateway include gateway.h.
 *
 *   gateway_conn.c     connections: TLS identity, Hello -> register ->
 *                      Welcome, reading frames, join and revocation, blob
 *                      requests, life cycle
 *   gateway_status.c   status reports (group commit), heartbeats
 *   gateway_desired.c  desired sets, the watch observer, config events
 *   gateway_logs.c     console log streams
 *
 * (gateway_blobs.c and gateway_config.c are modules of their own with
 * public headers.)
 */
#ifndef CLOUD_GATEWAY_PRIV_H
#define CLOUD_GATEWAY_PRIV_H

#include <netinet/in.h>
#include <stdint.h>

#include <event2/bufferevent.h>
#include <event2/listener.h>
#include <jansson.h>
#include <openssl/ssl.h>

#include "frame.h"
#include "gateway.h"
#include "strmap.h"

#define GW_HELLO_TIMEOUT_S 15
#define GW_FIRST_FRAME_MS 10000 /* default of cfg.first_frame_ms */
#define GW_MAX_OUTPUT (64u * 1024u * 1024u) /* a slower agent is dropped */
#define GW_STATUS_BATCH_MAX 2000
#define GW_STATUS_QUEUE_MAX 200000
#define GW_DESIRED_INFLIGHT_MAX 32
#define GW_UNKNOWN_MAX 10000
#define GW_LABELS_MAX 64
#define GW_RETRY_MS 1000
#define GW_LOG_CHUNK_MAX (256u * 1024u) /* agents send <= 64 KiB */
/* After a config push, the hosts' desired sets catch up this much later
 * (off the push's path; see on_cfg_push). */
#define GW_CFG_SETTLE_MS 300
/* A desired set over this (packed) goes in parts of at most this much each
 * (agent.proto DesiredState.part/parts), well under FRAME_MAX: one
 * instance larger than that (inline configs) goes alone in its part. */
#define GW_DESIRED_PART_MAX (1024u * 1024u)
/* What a part adds beside its instances: session_epoch, revision,
 * leader_epoch, part, parts, the envelope's tag and length. */
#define GW_DESIRED_PART_OVERHEAD 64u

enum gw_state {
    GW_HANDSHAKE = 0,
    GW_HELLO,
    GW_JOIN, /* TLS up without a client certificate: one JoinRequest */
    GW_REGISTERING,
    GW_READY,
    GW_CLOSING,
};

struct gw_conn {
    int refs;
    struct gateway *gw;
    struct gw_conn *prev, *next; /* gw->conns: every connection not freed */
    struct bufferevent *bev;
    struct event *close_ev;
    enum gw_state state;
    char addr[INET6_ADDRSTRLEN];
    char *name; /* certificate CN: the only host this agent speaks for */
    char *serial;              /* its serial (revocation, join.c) */
    struct join_issue *join;   /* GW_JOIN: the certificate being recorded */
    struct event *deadline_ev; /* first frame (Hello/JoinRequest) deadline */
    char *host_id;
    uint64_t epoch;
    /* desired set */
    int dirty, desired_inflight;
    uint64_t revision;
    uint8_t *last_set; /* packed instances of the last set sent */
    size_t last_set_len;
    /* Hello.desired_set_max: most bytes of a set in parts the agent takes;
     * 0 for an agent before parts, which gets only one-frame sets */
    uint64_t set_max;
    char **ids; /* instance ids of the last set read (owners in gw->owner) */
    size_t nids;
    /* heartbeats */
    int hb_pending;
    uint64_t hb_seq;
    int hb_acks;          /* Hello.heartbeat_acks: HeartbeatAck wanted */
    long long hb_recv_ms;  /* when heartbeat hb_seq arrived (mono_ms) */
    int hb_flushing;       /* in the heartbeat flush in flight */
    uint64_t hb_flush_seq; /* the seq that flush stores */
    long long hb_flush_wait; /* ms from its arrival to the flush */
    int nlogs; /* console log streams through this agent */
    struct gwblobs *blobs; /* blob downloads (gateway_blobs.c), or NULL */
    int cfg_stale; /* ConfigUpdates pushed: the set is re-read later */
    /* Hello.host_network: HostNetwork wanted (gateway_net.c) */
    int hostnet;
    int net_inflight, net_dirty;
};

/* A console log stream (gateway_log_open). */
struct gw_log {
    struct gw_log *prev, *next; /* gw->logs */
    uint64_t id;
    struct gw_conn *conn; /* not referenced: dropped in conn_shutdown */
    struct gateway_log_sink sink;
    void *arg;
};

struct gw_status {
    json_t *item;
    struct gw_conn *conn; /* referenced */
};

struct gateway {
    struct event_base *base;
    struct db_pool *db;
    struct db_pool *hb_db; /* heartbeats: never behind bulk work */
    struct gateway_config cfg;
    SSL_CTX *ssl;
    struct evconnlistener *listener;
    struct join *join; /* enrolment and the revocation set (join.c) */
    unsigned short port; /* bound */
    struct gw_conn *conns;
    struct strmap by_host; /* host id -> READY conn (key: conn->host_id) */
    struct strmap owner;   /* instance id -> conn (key: a conn->ids entry) */
    struct strmap unknown; /* instance ids seen in events, owner unknown */
    /* services whose effective config changed (config events), pending a
     * lookup of their hosts (gateway_config.h) */
    struct strmap cfg_services;
    int cfg_inflight;
    struct event *hb_timer, *resync_timer, *kick_ev, *status_retry;
    struct event *cfg_settle; /* re-reads the sets of cfg_stale hosts */
    int hb_inflight, hosts_inflight, desired_inflight;
    /* The cluster settings agents are told (Welcome, HeartbeatAck), as
     * the last registration or heartbeat flush read them. */
    unsigned down_after_ms, fence_after_ms;
    int desired_capped; /* a kick stopped at GW_DESIRED_INFLIGHT_MAX */
    size_t kick_from;   /* where in gw->conns the next kick starts */
    /* status group commit */
    struct gw_status *pending, *inflight;
    size_t npending, cap_pending, ninflight;
    int status_safe;
    int closed;
    /* the links changed (gateway_on_links) */
    void (*on_links)(void *arg);
    void *links_arg;
    /* console log streams */
    struct gw_log *logs;
    int nlogs;
    uint64_t next_log_id;
};

/* ---- gateway_conn.c ---- */

void conn_forget_ids(struct gw_conn *c);
struct gw_conn *conn_ref(struct gw_conn *c);
int conn_send(struct gw_conn *c, const frame_envelope *env);
void conn_send_error(struct gw_conn *c, Cloud__Agent__ErrorCode code,
                     const char *msg);
void conn_shutdown(struct gw_conn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void conn_unref(struct gw_conn *c);

/* ---- gateway_status.c ---- */

void conn_on_heartbeat(struct gw_conn *c, const Cloud__Agent__Heartbeat *hb);
void conn_on_status(struct gw_conn *c, const Cloud__Agent__InstanceStatus *s);
void gw_hb_timer_cb(evutil_socket_t fd, short what, void *arg);
void gw_settings_note(struct gateway *gw, const PGresult *res, int down_col,
                      int fence_col);
int gw_id_ok(const char *id);
void gw_status_items_free(struct gw_status *v, size_t n);
void gw_status_retry_cb(evutil_socket_t fd, short what, void *arg);

/* ---- gateway_desired.c ---- */

void gw_cfg_clear(struct gateway *gw);
void gw_cfg_settle_cb(evutil_socket_t fd, short what, void *arg);
void gw_kick(struct gateway *gw);
void gw_on_batch(void *arg);
void gw_on_event(void *arg, long long id, const char *type, const char *object,
                 const char *object_id);
void gw_on_event_row(void *arg, long long id, const char *type,
                     const char *object, const char *object_id,
                     const PGresult *res, int row);
void gw_on_reconnect(void *arg);
void gw_kick_cb(evutil_socket_t fd, short what, void *arg);
void gw_resync_cb(evutil_socket_t fd, short what, void *arg);

/* ---- gateway_net.c ---- */

/* Sends c its HostNetwork (read anew) if its Hello asked for one. */
void gw_net_send(struct gw_conn *c);
/* A host registered or was given a subnet: every agent that builds the
 * host network gets its HostNetwork again. */
void gw_net_changed(struct gateway *gw);

/* ---- gateway_logs.c ---- */

void conn_logs_lost(struct gw_conn *c, const char *why);
void conn_on_log_chunk(struct gw_conn *c, const Cloud__Agent__LogChunk *ch);

#endif
