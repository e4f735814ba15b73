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
    ST_REC_LIVENESS,
    ST_REC_APPLY,
    ST_REC_HOSTS,
    ST_REC_SERVICES,
    ST_REC_INSTANCES,
    ST_SETTINGS_GET,
    ST_SETTINGS_PATCH,
    /* end of reconciler statements */
    /* agent gateway statements (gateway_*.c) */
    ST_AGENT_REGISTER,
    ST_AGENT_HEARTBEATS,
    ST_AGENT_STATUS,
    ST_AGENT_DESIRED,
    ST_AGENT_HOSTS_OF,
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
    ST__COUNT
};

/* The statement table handed to db_pool_new(). */
extern const struct db_stmt store_stmts[ST__COUNT];

static inline const struct db_stmt *
store_stmt(enum store_stmt s)
{
    return &store_stmts[s];
}

#endif
