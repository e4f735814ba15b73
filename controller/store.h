/*
 * store: every SQL statement the controller runs, and nothing else speaks
 * SQL. Statements are parameterised and prepared on every pool connection.
 * API writes go through ST_BATCH (writer.c: group commit) to the functions
 * of migrations/functions/, which append the event (and so NOTIFY) inside
 * the same transaction.
 */
#ifndef CLOUD_STORE_H
#define CLOUD_STORE_H

#include "db.h"

enum store_stmt {
    ST_READY = 0,
    ST_SERVICE_GET,
    ST_SERVICE_LIST,
    ST_INSTANCE_GET,
    ST_INSTANCE_LIST,
    ST_HOST_GET,
    ST_HOST_LIST,
    ST_EVENT_LIST,
    ST_EVENT_MAX,
    ST_IMAGE_GET,
    ST_IMAGE_LIST,
    ST_OBJECT_COUNTS,
    ST_CACHE_INSTANCES,
    ST_CACHE_SERVICES,
    ST_BATCH,
    ST_CREATE_MANY,
    ST_TOKENS_LOAD,
    ST_TOKEN_LIST,
    /* reconciler statements (reconcile_*.c, leader.c) below this line */
    ST_LEASE_ACQUIRE,
    ST_LEASE_RELEASE,
    ST_REC_LIVENESS,
    ST_REC_APPLY,
    ST_REC_HOSTS,
    ST_REC_SERVICES,
    ST_REC_INSTANCES,
    ST_REC_INSTANCES_PAGE,
    ST_SETTINGS_GET,
    ST_SETTINGS_PATCH,
    /* end of reconciler statements */
    /* agent gateway statements (gateway_*.c) */
    ST_AGENT_REGISTER,
    ST_AGENT_HEARTBEATS,
    ST_AGENT_STATUS,
    ST_AGENT_DESIRED,
    ST_AGENT_HOSTS_OF,
    ST_HOST_NETWORK,
    /* end of agent gateway statements */
    /* agent enrolment and certificate revocation (join.c) */
    ST_JOIN_TOKEN_CREATE,
    ST_JOIN_COMPLETE,
    ST_JOIN_REVOKED,
    ST_JOIN_CERT_REVOKE,
    ST_JOIN_CERT_LIST,
    ST_JOIN_TOKEN_LIST_JSON,
    ST_JOIN_CERT_LIST_JSON,
    ST_JOIN_TOKEN_DELETE,
    /* end of agent enrolment statements */
    /* labels (migrations/0020_baseline.sql): lists with a label selector */
    ST_INSTANCE_LIST_SEL,
    ST_SERVICE_LIST_SEL,
    /* end of labels statements */
    /* a service's running instances, for write replies read from the
     * database (api.c service_reply) */
    ST_SERVICE_RUNNING,
    /* config, links and endpoints (api_config.c, gateway_desired.c;
     * migrations/functions/cloud_config_*.sql) */
    ST_CONFIG_GET,
    ST_CONFIG_WRITE,
    ST_CONFIG_HISTORY,
    ST_INSTANCE_CONFIG,
    ST_ENDPOINTS_GET,
    ST_CONFIG_HOSTS_OF,
    /* end of config statements */
    /* live config push (gateway_desired.c; issue 6, docs/config.md "Delivery") */
    ST_CONFIG_PUSH,
    /* end of live config push statements */
    /* run to running (watch.c hub; issue 4, docs/benchmarks.md) */
    ST_EVENT_HUB,
    /* end of run to running statements */
    /* event retention, blob GC (retention.c, api_blobs.c; migrations/functions/) */
    ST_EVENTS_PRUNE,
    ST_BLOB_GC,
    ST_BLOB_UNKNOWN,
    /* end of retention statements */
    /* blob content (blobstore.c; migrations/0023, cloud_blob_put.sql) */
    ST_BLOB_PUT,
    ST_BLOB_SIZE,
    ST_BLOB_CHUNK_GET,
    /* end of blob content statements */
    /* upload sessions in PostgreSQL (api_blobs.c, blobstore.c; migrations/0025,
     * cloud_upload_*.sql, docs/decisions.md §32) */
    ST_UPLOAD_START,
    ST_UPLOAD_PIECE,
    ST_UPLOAD_CANCEL,
    ST_UPLOAD_SWEEP,
    ST_UPLOAD_RECEIVED,
    ST_UPLOAD_PIECE_GET,
    ST_UPLOAD_LOCK,
    ST_UPLOAD_COPY,
    ST_UPLOAD_END,
    /* end of upload session statements */
    /* console logs relayed between replicas (logrelay.c;
     * migrations/functions/cloud_log_relay_*.sql, docs/decisions.md §30) */
    ST_LOG_RELAY_ASK,
    ST_LOG_RELAY_TAKE,
    ST_LOG_RELAY_PUT,
    ST_LOG_RELAY_READ,
    ST_LOG_RELAY_END,
    ST_LOG_RELAY_BEAT,
    /* end of log relay statements */
    ST__COUNT
};

/*
 * Result columns, one enum per statement that returns several, in the order
 * of its SELECT list in store.c; <NAME>__NCOLS is the count the statement's
 * table entry declares, checked against PostgreSQL's own description when
 * the statement is prepared (db.c). Single-column statements read column 0
 * and declare 1. A statement sharing another's columns says so in store.c.
 */
/* ST_SERVICE_GET, ST_INSTANCE_GET, ST_HOST_GET (api.c on_get) */
enum { OBJECT_GET_JSON, OBJECT_GET_VERSION, OBJECT_GET__NCOLS };
/* also ST_SERVICE_LIST_SEL */
enum { SERVICE_LIST_NAME, SERVICE_LIST_JSON, SERVICE_LIST__NCOLS };
/* also ST_INSTANCE_LIST_SEL */
enum { INSTANCE_LIST_ID, INSTANCE_LIST_JSON, INSTANCE_LIST__NCOLS };
enum { HOST_LIST_NAME, HOST_LIST_JSON, HOST_LIST__NCOLS };
enum {
    EVENT_LIST_ID,
    EVENT_LIST_TYPE,
    EVENT_LIST_OBJECT,
    EVENT_LIST_JSON,
    EVENT_LIST_OBJECT_ID,
    EVENT_LIST__NCOLS
};
enum { IMAGE_LIST_REF, IMAGE_LIST_JSON, IMAGE_LIST__NCOLS };
enum {
    OBJECT_COUNTS_KIND,
    OBJECT_COUNTS_STATE,
    OBJECT_COUNTS_COUNT,
    OBJECT_COUNTS__NCOLS
};
enum {
    CACHE_INSTANCES_ID,
    CACHE_INSTANCES_NAME,
    CACHE_INSTANCES_SERVICE,
    CACHE_INSTANCES_HOST,
    CACHE_INSTANCES_STATE,
    CACHE_INSTANCES_DESIRED,
    CACHE_INSTANCES_VERSION,
    CACHE_INSTANCES_JSON,
    CACHE_INSTANCES_LABELS,
    CACHE_INSTANCES__NCOLS
};
enum {
    CACHE_SERVICES_ID,
    CACHE_SERVICES_NAME,
    CACHE_SERVICES_STATE,
    CACHE_SERVICES_VERSION,
    CACHE_SERVICES_JSON,
    CACHE_SERVICES_LABELS,
    CACHE_SERVICES__NCOLS
};
/* also ST_CREATE_MANY */
enum {
    BATCH_IDX,
    BATCH_STATUS,
    BATCH_BODY,
    BATCH_ERR_STATE,
    BATCH_ERR_MESSAGE,
    BATCH_ERR_FIELD,
    BATCH_EVENT_ID,
    BATCH__NCOLS
};
enum {
    TOKENS_LOAD_SHA256,
    TOKENS_LOAD_NAME,
    TOKENS_LOAD_ROLE,
    TOKENS_LOAD_EXPIRES, /* unix seconds, NULL: never */
    TOKENS_LOAD__NCOLS
};
enum { TOKEN_LIST_NAME, TOKEN_LIST_JSON, TOKEN_LIST__NCOLS };
enum {
    LEASE_ACQUIRE_EPOCH,
    LEASE_ACQUIRE_NOW_MS,
    LEASE_ACQUIRE_TOOK_OVER,
    LEASE_ACQUIRE__NCOLS
};
/* ST_REC_LIVENESS, ST_REC_APPLY: the rows a write touched */
enum { REC_TOUCHED_KIND, REC_TOUCHED_ID, REC_TOUCHED__NCOLS };
enum {
    REC_HOSTS_ID,
    REC_HOSTS_NAME,
    REC_HOSTS_STATE,
    REC_HOSTS_VERSION,
    REC_HOSTS_VCPUS,
    REC_HOSTS_MEMORY_MIB,
    REC_HOSTS_DISK_GIB,
    REC_HOSTS_HYPERVISOR,
    REC_HOSTS_LABELS, /* key=value lines */
    REC_HOSTS_SESSION_EPOCH,
    REC_HOSTS__NCOLS
};
enum {
    REC_SERVICES_ID,
    REC_SERVICES_NAME,
    REC_SERVICES_STATE,
    REC_SERVICES_VERSION,
    REC_SERVICES_REPLICAS,
    REC_SERVICES_GENERATION,
    REC_SERVICES_MAX_UNAVAILABLE,
    REC_SERVICES_MAX_SURGE,
    REC_SERVICES_RESTART,
    REC_SERVICES__NCOLS
};
/* also a block of ST_EVENT_HUB's row, from EVENT_HUB_REC */
enum {
    REC_INSTANCES_ID,
    REC_INSTANCES_NAME,
    REC_INSTANCES_SERVICE_ID,
    REC_INSTANCES_ORDINAL,
    REC_INSTANCES_GENERATION,
    REC_INSTANCES_STATE,
    REC_INSTANCES_DESIRED_STATE,
    REC_INSTANCES_HOST_ID,
    REC_INSTANCES_VCPUS,
    REC_INSTANCES_MEMORY_MIB,
    REC_INSTANCES_DISK_GIB,
    REC_INSTANCES_RESTART,
    REC_INSTANCES_CONSTRAINTS, /* ", "-separated */
    REC_INSTANCES_STRATEGY,
    REC_INSTANCES_MAX_PER_HOST,
    REC_INSTANCES_EXIT_CODE,
    REC_INSTANCES_RESTART_COUNT,
    REC_INSTANCES_NEXT_RESTART_MS,
    REC_INSTANCES_FINISHED_MS,
    REC_INSTANCES_CREATED_MS,
    REC_INSTANCES_PENDING_REASON,
    REC_INSTANCES_VERSION,
    REC_INSTANCES__NCOLS
};
enum { SETTINGS_PATCH_STATUS, SETTINGS_PATCH_BODY, SETTINGS_PATCH__NCOLS };
enum {
    AGENT_REGISTER_HOST_ID,
    AGENT_REGISTER_SESSION_EPOCH,
    AGENT_REGISTER_DOWN_AFTER,
    AGENT_REGISTER_FENCE_AFTER,
    AGENT_REGISTER__NCOLS
};
enum {
    AGENT_HEARTBEATS_UPDATED,
    AGENT_HEARTBEATS_DOWN_AFTER,
    AGENT_HEARTBEATS_FENCE_AFTER,
    AGENT_HEARTBEATS__NCOLS
};
enum { AGENT_STATUS_IDX, AGENT_STATUS_REFUSED, AGENT_STATUS__NCOLS };
/* ST_HOST_NETWORK: the HostNetwork of host $1 (gateway_net.c); peers are
 * lines "host_id underlay subnet" (ids [A-Za-z0-9_-], an IPv4 address, a
 * CIDR: no spaces). */
enum {
    HOST_NETWORK_CLUSTER_CIDR,
    HOST_NETWORK_SUBNET,
    HOST_NETWORK_GATEWAY,
    HOST_NETWORK_PEERS,
    HOST_NETWORK__NCOLS
};
enum {
    AGENT_DESIRED_ID,
    AGENT_DESIRED_NAME,
    AGENT_DESIRED_GENERATION,
    AGENT_DESIRED_DESIRED_STATE,
    AGENT_DESIRED_STOP_SIGNAL,
    AGENT_DESIRED_VCPUS,
    AGENT_DESIRED_MEMORY_MIB,
    AGENT_DESIRED_DISK_GIB,
    AGENT_DESIRED_IMAGE_KIND,
    AGENT_DESIRED_KERNEL_DIGEST,
    AGENT_DESIRED_INITRD_DIGEST,
    AGENT_DESIRED_DISK_DIGEST,
    AGENT_DESIRED_CMDLINE, /* the image's own; the agent appends ARGS */
    AGENT_DESIRED_PARTITION_POLICY,
    AGENT_DESIRED_RESTART_COUNT,
    AGENT_DESIRED_CONFIG_VERSION,
    AGENT_DESIRED_CONFIG,
    AGENT_DESIRED_STOP_GRACE_MS,
    AGENT_DESIRED_ENV,
    AGENT_DESIRED_ARGS,
    AGENT_DESIRED__NCOLS
};
enum {
    JOIN_CERT_LIST_SERIAL,
    JOIN_CERT_LIST_HOST,
    JOIN_CERT_LIST_NOT_AFTER,
    JOIN_CERT_LIST_STATE,
    JOIN_CERT_LIST__NCOLS
};
/* also ST_INSTANCE_CONFIG */
enum { CONFIG_GET_BODY, CONFIG_GET_VERSION, CONFIG_GET__NCOLS };
enum {
    CONFIG_WRITE_STATUS,
    CONFIG_WRITE_BODY,
    CONFIG_WRITE_VERSION,
    CONFIG_WRITE__NCOLS
};
enum {
    ENDPOINTS_GET_BODY,
    ENDPOINTS_GET_VERSION,
    ENDPOINTS_GET_SERVICE_ID, /* NULL: no such service */
    ENDPOINTS_GET__NCOLS
};
enum {
    CONFIG_PUSH_INSTANCE_ID,
    CONFIG_PUSH_HOST_ID,
    CONFIG_PUSH_CONFIG_VERSION,
    CONFIG_PUSH_CONFIG,
    CONFIG_PUSH__NCOLS
};
/* The hub's rows (watch.h on_event_row): the event, its instance's host
 * and id, a guest-only change, the reconciler's row, the low-water mark. */
enum {
    EVENT_HUB_ID,
    EVENT_HUB_TYPE,
    EVENT_HUB_OBJECT,
    EVENT_HUB_JSON, /* NULL: read without JSON (no SSE client) */
    EVENT_HUB_OBJECT_ID,
    EVENT_HUB_HOST_ID, /* the instance's host_id, NULL: none or gone */
    EVENT_HUB_INST,    /* the instance's id, NULL: gone */
    /* a guest-only change (the instance's last event in the read is
     * instance.guest), all NULL otherwise */
    EVENT_HUB_GUEST_VERSION,
    EVENT_HUB_GUEST_CONFIG_VERSION,
    EVENT_HUB_GUEST_READY,
    EVENT_HUB_GUEST_ADDRESSES, /* JSON */
    EVENT_HUB_GUEST_UPDATED_AT, /* cloud_ts */
    EVENT_HUB_UNUSED1, /* always NULL */
    EVENT_HUB_UNUSED2,
    EVENT_HUB_UNUSED3,
    /* the reconciler's row (REC_INSTANCES_* from here), its id NULL unless
     * this is the instance's last event in the read */
    EVENT_HUB_REC,
    EVENT_HUB_LOW_WATER = EVENT_HUB_REC + REC_INSTANCES__NCOLS,
    EVENT_HUB__NCOLS
};
enum { EVENTS_PRUNE_DELETED, EVENTS_PRUNE_LOW_WATER, EVENTS_PRUNE__NCOLS };
enum { BLOB_GC_DIGEST, BLOB_GC_SIZE, BLOB_GC__NCOLS };
/* ST_UPLOAD_SWEEP (api_blobs.c sweep) */
enum { UPLOAD_SWEEP_ID, UPLOAD_SWEEP_RECEIVED, UPLOAD_SWEEP__NCOLS };
enum { LOG_RELAY_ASK_ID, LOG_RELAY_ASK_HOLDER, LOG_RELAY_ASK__NCOLS };
enum { LOG_RELAY_BEAT_ID, LOG_RELAY_BEAT_GONE, LOG_RELAY_BEAT__NCOLS };
enum {
    LOG_RELAY_TAKE_ID,
    LOG_RELAY_TAKE_ASKER,
    LOG_RELAY_TAKE_HOST,
    LOG_RELAY_TAKE_INSTANCE_ID,
    LOG_RELAY_TAKE_TAIL_BYTES,
    LOG_RELAY_TAKE_TAIL_LINES,
    LOG_RELAY_TAKE_FOLLOW,
    LOG_RELAY_TAKE__NCOLS
};
enum {
    LOG_RELAY_READ_SEQ,
    LOG_RELAY_READ_KIND,
    LOG_RELAY_READ_DATA, /* bytea, hex text */
    LOG_RELAY_READ_OFFSET,
    LOG_RELAY_READ_STATUS,
    LOG_RELAY_READ_MESSAGE,
    LOG_RELAY_READ__NCOLS
};

/* The statement table handed to db_pool_new(). */
extern const struct db_stmt store_stmts[ST__COUNT];

static inline const struct db_stmt *
store_stmt(enum store_stmt s)
{
    return &store_stmts[s];
}

#endif
