/*
 * api: the REST handlers of docs/api.md and the route table.
 *
 * A handler validates its input, names a store statement, and answers from
 * the database's result. Writes return (status, body) from the SQL function;
 * reads return the object's JSON as PostgreSQL built it. Nothing here speaks
 * SQL or waits on the database.
 */
#define LOG_MODULE "api"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <openssl/crypto.h>

#include "api_cluster.h" /* reconciler */
#include "api_join.h"    /* agent enrolment */
#include "api_config.h"  /* config, links, endpoints */
#include "api_util.h"
#include "app.h"
#include "evbuf.h"
#include "labels.h"
#include "log.h"
#include "api_logs.h"
#include "mem.h"
#include "metrics.h"
#include "store.h"
#include "validate.h"

#define LIST_DEFAULT 100
#define LIST_MAX 1000
/* Who a write is done for: the token's name (the audit trail). */
#define ACTOR (r->actor ? r->actor : "anonymous")

static struct app *
app_of(struct http_req *r)
{
    return http_app(r);
}

/* Reads come from memory while the cache is loaded and the LISTEN session
 * keeps it current; otherwise from PostgreSQL (503 when it is down). */
static int
use_cache(struct http_req *r)
{
    struct app *a = app_of(r);
    return cache_ready(a->cache) && watch_listening(a->watch);
}

/* ---- generic result handlers ----------------------------------------- */

/* A cached object's JSON with its version as ETag. */
static void
reply_cached(struct http_req *r, const struct cache_obj *o)
{
    char etag[40];

    snprintf(etag, sizeof(etag), "\"%lld\"", o->version);
    http_add_header(r, "ETag", etag);
    http_reply_json_text(r, 200, o->json);
}

/* A service's JSON with "running" (cache_service_json) as the reply. */
static void
reply_service(struct http_req *r, int status, const char *json,
              long long running, long long version)
{
    struct evbuffer *b = evbuf_new();
    char etag[40];

    cache_service_json_text(json, running, b);
    if (version > 0) {
        snprintf(etag, sizeof(etag), "\"%lld\"", version);
        http_add_header(r, "ETag", etag);
    }
    http_reply_json_buffer(r, status, b);
}

/* A write of a service answered; its reply waits for the running count
 * when the read cache cannot give it. */
struct svc_reply {
    struct http_req *r;
    int status;
    char *body;
};

static void
on_service_running(const PGresult *res, const struct db_error *err,
                   void *arg)
{
    struct svc_reply *sr = arg;
    struct http_req *r = sr->r;

    if (!api_db_done(r, err))
        reply_service(r, sr->status, sr->body,
                      PQntuples(res) == 1
                          ? strtoll(PQgetvalue(res, 0, 0), NULL, 10)
                          : 0,
                      0);
    free(sr->body);
    free(sr);
}

static void
on_service_write(int status, const char *body, const struct db_error *err,
                 void *arg)
{
    struct http_req *r = arg;
    json_t *j;
    const char *vals[1];
    struct svc_reply *sr;

    if (api_db_done(r, err))
        return;
    j = json_loads(body, 0, NULL);
    vals[0] = json_string_value(json_object_get(j, "name"));
    if (vals[0] == NULL) {
        json_decref(j);
        http_reply_json_text(r, status, body); /* not a service body */
        return;
    }
    if (use_cache(r)) {
        reply_service(r, status, body,
                      cache_service_running(app_of(r)->cache, vals[0]), 0);
        json_decref(j);
        return;
    }
    sr = xcalloc(1, sizeof(*sr));
    sr->r = r;
    sr->status = status;
    sr->body = xstrdup(body);
    db_query(app_of(r)->db, store_stmt(ST_SERVICE_RUNNING), vals,
             on_service_running, sr);
    json_decref(j);
}

/* A write through the group-commit writer; a service's reply carries its
 * running count as its reads do. */
static void
write_op(struct http_req *r, const struct writer_op *op)
{
    writer_submit(app_of(r)->writer, op,
                  strncmp(op->op, "service_", 8) == 0 ? on_service_write
                                                      : api_reply_write,
                  r);
}

/* One row (OBJECT_GET_*, ST_IMAGE_GET's the JSON alone) or none; r->data
 * names the object kind. */
static void
on_get(const PGresult *res, const struct db_error *err, void *arg)
{
    struct http_req *r = arg;

    if (api_db_done(r, err))
        return;
    if (PQntuples(res) == 0) {
        http_reply_error(r, 404, "not_found", NULL, "%s %s not found",
                         (const char *)r->data, http_param(r, 0));
        return;
    }
    if (PQnfields(res) > OBJECT_GET_VERSION) {
        char etag[40];
        snprintf(etag, sizeof(etag), "\"%s\"",
                 PQgetvalue(res, 0, OBJECT_GET_VERSION));
        http_add_header(r, "ETag", etag);
    }
    http_reply_json_text(r, 200, PQgetvalue(res, 0, OBJECT_GET_JSON));
}

/* GET of one object by the route's parameter from PostgreSQL; kind names
 * it in a 404. */
static void
get_one(struct http_req *r, const char *kind, enum store_stmt st)
{
    const char *vals[1] = {http_param(r, 0)};

    r->data = (void *)kind;
    db_query(app_of(r)->db, store_stmt(st), vals, on_get, r);
}

/* The columns of each list statement: the next page's cursor, the item. */
static const struct list_cols {
    int key, json;
} list_cols[ST__COUNT] = {
    [ST_SERVICE_LIST] = {SERVICE_LIST_NAME, SERVICE_LIST_JSON},
    [ST_SERVICE_LIST_SEL] = {SERVICE_LIST_NAME, SERVICE_LIST_JSON},
    [ST_INSTANCE_LIST] = {INSTANCE_LIST_ID, INSTANCE_LIST_JSON},
    [ST_INSTANCE_LIST_SEL] = {INSTANCE_LIST_ID, INSTANCE_LIST_JSON},
    [ST_HOST_LIST] = {HOST_LIST_NAME, HOST_LIST_JSON},
    [ST_EVENT_LIST] = {EVENT_LIST_ID, EVENT_LIST_JSON},
    [ST_IMAGE_LIST] = {IMAGE_LIST_REF, IMAGE_LIST_JSON},
    [ST_TOKEN_LIST] = {TOKEN_LIST_NAME, TOKEN_LIST_JSON},
};

struct list_ctx {
    int limit;
    const struct list_cols *cols;
};

static void
on_list(const PGresult *res, const struct db_error *err, void *arg)
{
    struct http_req *r = arg;
    struct list_ctx *lc = r->data;
    struct evbuffer *b;
    int n, more;

    if (api_db_done(r, err)) {
        free(lc);
        return;
    }
    n = PQntuples(res);
    more = n > lc->limit;
    if (more)
        n = lc->limit;
    b = evbuf_new();
    evbuffer_add_printf(b, "{\"items\":[");
    for (int i = 0; i < n; i++) {
        if (i)
            evbuffer_add(b, ",", 1);
        evbuffer_add(b, PQgetvalue(res, i, lc->cols->json),
                     (size_t)PQgetlength(res, i, lc->cols->json));
    }
    if (more) {
        json_t *cur = json_string(PQgetvalue(res, n - 1, lc->cols->key));
        char *s = json_dumps(cur, JSON_ENCODE_ANY);
        evbuffer_add_printf(b, "],\"next\":%s}", s);
        free(s);
        json_decref(cur);
    } else {
        evbuffer_add_printf(b, "],\"next\":null}");
    }
    free(lc);
    http_reply_json_buffer(r, 200, b);
}

/* ---- query parameters ------------------------------------------------- */

/* Parses ?limit= (default LIST_DEFAULT); replies 400 and returns -1. */
static int
query_limit(struct http_req *r, int *limit)
{
    const char *s = http_query(r, "limit");
    char *end;
    long v;

    *limit = LIST_DEFAULT;
    if (s == NULL)
        return 0;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < 1 || v > LIST_MAX) {
        http_reply_error(r, 400, "bad_request", "limit",
                         "limit must be an integer from 1 to %d", LIST_MAX);
        return -1;
    }
    *limit = (int)v;
    return 0;
}

/* A filter value from a fixed set (NULL-terminated), or absent. */
static int
query_enum(struct http_req *r, const char *key, const char *const *allowed,
           const char **out)
{
    const char *s = http_query(r, key);
    char list[200] = "";

    *out = NULL;
    if (s == NULL)
        return 0;
    for (const char *const *a = allowed; *a; a++) {
        if (strcmp(*a, s) == 0) {
            *out = *a;
            return 0;
        }
        snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s",
                 a == allowed ? "" : ", ", *a);
    }
    http_reply_error(r, 400, "bad_request", key,
                     "%s must be one of %s, not \"%.40s\"", key, list, s);
    return -1;
}

/* A free-form filter (name or cursor) of bounded length. */
static int
query_str(struct http_req *r, const char *key, const char **out)
{
    const char *s = http_query(r, key);

    *out = s;
    if (s != NULL && (strlen(s) == 0 || strlen(s) > 256)) {
        http_reply_error(r, 400, "bad_request", key,
                         "%s must be 1 to 256 characters", key);
        return -1;
    }
    return 0;
}

/* ?label=k=v or ?label=k (also comma-separated), repeatable: every term
 * must hold. Replies 400 and returns -1 on a bad term. */
static int
query_labels(struct http_req *r, struct label_sel *sel)
{
    struct evkeyval *kv;
    char msg[256];

    memset(sel, 0, sizeof(*sel));
    TAILQ_FOREACH(kv, &r->query, next) {
        if (strcmp(kv->key, "label") != 0)
            continue;
        if (labels_sel_add(sel, kv->value, msg, sizeof(msg)) < 0) {
            labels_sel_free(sel);
            http_reply_error(r, 400, "bad_request", "label", "%s", msg);
            return -1;
        }
    }
    return 0;
}

static const char *const instance_states[] = {
    "pending", "scheduled", "starting", "running",
    "stopping", "exited", "failed", "lost", NULL};
static const char *const desired_states[] = {"running", "stopped",
                                             "deleted", NULL};
static const char *const host_states[] = {"ready", "cordoned", "draining",
                                          "drained", "down", NULL};
static const char *const service_states[] = {"active", "deleting", NULL};
static const char *const event_objects[] = {"service", "instance", "host",
                                            "image", "token", "config",
                                            "controller", NULL};

/* A list read from PostgreSQL: vals[n] is the statement's limit, set here
 * to limit + 1 (a row past the page says there is a next one). */
static void
run_list(struct http_req *r, enum store_stmt st, const char **vals, int n,
         int limit)
{
    struct list_ctx *lc = xcalloc(1, sizeof(*lc));
    char lim[16];

    snprintf(lim, sizeof(lim), "%d", limit + 1);
    vals[n] = lim;
    lc->limit = limit;
    lc->cols = &list_cols[st];
    r->data = lc;
    db_query(app_of(r)->db, store_stmt(st), vals, on_list, r);
}

/* run_list with an optional label selector: st without one; with one,
 * st_sel with the selector's SQL arguments in vals[n + 1] and vals[n + 2].
 * Frees sel. */
static void
run_list_labels(struct http_req *r, enum store_stmt st, enum store_stmt st_sel,
                const char **vals, int n, struct label_sel *sel, int limit)
{
    char *eq, *keys;

    if (sel->n == 0) {
        run_list(r, st, vals, n, limit);
        return;
    }
    labels_sel_sql(sel, &eq, &keys);
    labels_sel_free(sel);
    vals[n + 1] = eq;
    vals[n + 2] = keys;
    run_list(r, st_sel, vals, n, limit);
    free(eq);
    free(keys);
}

static void
version_str(char *buf, size_t cap, long long v)
{
    if (v > 0)
        snprintf(buf, cap, "%lld", v);
    else
        buf[0] = '\0';
}

/* ---- health ---------------------------------------------------------- */

static void
h_healthz(struct http_req *r)
{
    http_reply_json_text(r, 200, "{\"status\":\"ok\"}");
}

static void
on_ready(const PGresult *res, const struct db_error *err, void *arg)
{
    struct http_req *r = arg;
    long v;

    if (api_gone(r))
        return;
    if (err) {
        http_reply_error(r, 503, "unavailable", NULL, "not ready: %s",
                         err->message);
        return;
    }
    v = strtol(PQgetvalue(res, 0, 0), NULL, 10);
    if (!auth_ready(app_of(r)->auth)) {
        http_reply_error(r, 503, "unavailable", NULL,
                         "not ready: API tokens are still loading");
        return;
    }
    if (v < app_of(r)->schema_version) {
        http_reply_error(r, 503, "unavailable", NULL,
                         "not ready: database schema is at version %ld, "
                         "this controller needs %d",
                         v, app_of(r)->schema_version);
        return;
    }
    /* Behind a load balancer a replica takes traffic only once it answers
     * from its read cache: before, routes that need it (console logs: where
     * an instance runs) answer 503, and every read costs a query. */
    if (!use_cache(r)) {
        http_reply_error(r, 503, "unavailable", NULL,
                         "not ready: the read cache is loading");
        return;
    }
    http_reply_json_text(r, 200, "{\"status\":\"ready\"}");
}

static void
h_readyz(struct http_req *r)
{
    db_query(app_of(r)->db, store_stmt(ST_READY), NULL, on_ready, r);
}

static void
on_counts(const PGresult *res, const struct db_error *err, void *arg)
{
    static const struct metrics_kind kinds[] = {
        {"instances", instance_states},
        {"hosts", host_states},
        {"services", service_states},
    };
    struct http_req *r = arg;
    struct app *app;
    struct evbuffer *b;
    struct db_pool_stats st;
    struct metrics_figures f = {0};
    struct metrics_count *counts = NULL;
    int n;

    if (api_gone(r))
        return;
    app = app_of(r);
    n = err == NULL ? PQntuples(res) : 0;
    db_pool_stats(app->db, &st);
    f.db_size = st.size;
    f.db_up = st.up;
    f.db_busy = st.busy;
    f.db_queued = st.queued;
    f.db_queries = st.queries;
    f.db_errors = st.errors;
    f.db_reconnects = st.reconnects;
    f.db_answered = err == NULL;
    f.watch_clients = watch_clients(app->watch);
    writer_stats(app->writer, &f.write_batches, &f.writes,
                 &f.write_bulk_batches, &f.write_retries);
    f.cache_ready = cache_ready(app->cache);
    f.cache_instances = cache_count(app->cache, 0);
    f.cache_services = cache_count(app->cache, 1);
    f.kinds = kinds;
    f.nkinds = sizeof(kinds) / sizeof(kinds[0]);
    if (n > 0)
        counts = xcalloc((size_t)n, sizeof(*counts));
    for (int i = 0; i < n; i++)
        counts[i] =
            (struct metrics_count){PQgetvalue(res, i, OBJECT_COUNTS_KIND),
                                   PQgetvalue(res, i, OBJECT_COUNTS_STATE),
                                   PQgetvalue(res, i, OBJECT_COUNTS_COUNT)};
    f.counts = counts;
    f.ncounts = (size_t)n;
    b = evbuf_new();
    metrics_render(b, &f);
    free(counts);
    http_reply_buffer(r, 200, "text/plain; version=0.0.4", b);
}

static void
h_metrics(struct http_req *r)
{
    db_query(app_of(r)->db, store_stmt(ST_OBJECT_COUNTS), NULL, on_counts, r);
}

/* ---- services -------------------------------------------------------- */

static void
h_services_list(struct http_req *r)
{
    const char *after, *state, *vals[5];
    int limit;
    struct label_sel sel;

    if (query_limit(r, &limit) < 0 || query_str(r, "after", &after) < 0 ||
        query_enum(r, "state", service_states, &state) < 0 ||
        query_labels(r, &sel) < 0)
        return;
    if (use_cache(r)) {
        struct evbuffer *b = evbuf_new();

        cache_service_list(app_of(r)->cache, after, state, &sel, limit, b);
        labels_sel_free(&sel);
        http_reply_json_buffer(r, 200, b);
        return;
    }
    vals[0] = after;
    vals[1] = state;
    run_list_labels(r, ST_SERVICE_LIST, ST_SERVICE_LIST_SEL, vals, 2, &sel,
                    limit);
}

static int
idem_key(struct http_req *r, const char **key)
{
    *key = http_header(r, "Idempotency-Key");
    if (*key && (strlen(*key) == 0 || strlen(*key) > 128)) {
        http_reply_error(r, 400, "bad_request", NULL,
                         "Idempotency-Key must be 1 to 128 characters");
        return -1;
    }
    return 0;
}

/* Validates a body with fn and runs the write statement st with it. */
/*
 * Reads the JSON body and validates it with fn; returns the normalized
 * body as text (caller frees), or NULL after replying 400/413/415/422.
 */
static char *
validated_body(struct http_req *r, json_t *(*fn)(json_t *, struct verr *))
{
    int empty;
    json_t *in = http_body_json(r, &empty), *norm;
    struct verr e;
    char *body;

    if (in == NULL) {
        if (empty)
            http_reply_error(r, 400, "bad_request", NULL,
                             "a JSON body is required");
        return NULL;
    }
    norm = fn(in, &e);
    json_decref(in);
    if (norm == NULL) {
        http_reply_error(r, 422, "invalid", e.field, "%s", e.message);
        return NULL;
    }
    body = json_dumps(norm, JSON_COMPACT);
    json_decref(norm);
    return body;
}

static void
create_with(struct http_req *r, json_t *(*fn)(json_t *, struct verr *),
            const char *op)
{
    const char *key;
    char *body;

    if (idem_key(r, &key) < 0)
        return;
    body = validated_body(r, fn);
    if (body == NULL)
        return;
    write_op(r, &(struct writer_op){
                    .op = op, .body = body, .idem_key = key, .actor = ACTOR});
    free(body);
}

static void
h_services_create(struct http_req *r)
{
    create_with(r, validate_service_create, "service_create");
}

static void
h_service_get(struct http_req *r)
{
    if (use_cache(r)) {
        const struct cache_obj *o =
            cache_service_get(app_of(r)->cache, http_param(r, 0));
        if (o == NULL)
            http_reply_error(r, 404, "not_found", NULL,
                             "service %s not found", http_param(r, 0));
        else
            reply_service(r, 200, o->json,
                          cache_service_running(app_of(r)->cache, o->name),
                          o->version);
        return;
    }
    get_one(r, "service", ST_SERVICE_GET);
}

static void
h_service_patch(struct http_req *r)
{
    long long ver;
    char vs[24], *body;

    if (http_if_match(r, &ver) < 0)
        return;
    body = validated_body(r, validate_service_patch);
    if (body == NULL)
        return;
    version_str(vs, sizeof(vs), ver);
    write_op(r, &(struct writer_op){.op = "service_patch",
                                    .ref = http_param(r, 0),
                                    .body = body,
                                    .if_match = ver ? vs : NULL,
                                    .actor = ACTOR});
    free(body);
}

/* DELETE and the POST actions: a reference, an optional If-Match; action:
 * host_action's, else NULL. */
static void
ref_action(struct http_req *r, const char *op, const char *action)
{
    long long ver;
    char vs[24];

    if (http_if_match(r, &ver) < 0)
        return;
    version_str(vs, sizeof(vs), ver);
    write_op(r, &(struct writer_op){.op = op,
                                    .ref = http_param(r, 0),
                                    .action = action,
                                    .if_match = ver ? vs : NULL,
                                    .actor = ACTOR});
}

static void
h_service_delete(struct http_req *r)
{
    ref_action(r, "service_delete", NULL);
}

/* ---- instances ------------------------------------------------------- */

static void
h_instances_list(struct http_req *r)
{
    const char *after, *service, *state, *host, *desired, *vals[8];
    int limit;
    struct label_sel sel;

    if (query_limit(r, &limit) < 0 || query_str(r, "after", &after) < 0 ||
        query_str(r, "service", &service) < 0 ||
        query_enum(r, "state", instance_states, &state) < 0 ||
        query_str(r, "host", &host) < 0 ||
        query_enum(r, "desired_state", desired_states, &desired) < 0 ||
        query_labels(r, &sel) < 0)
        return;
    if (use_cache(r)) {
        struct evbuffer *b = evbuf_new();

        cache_instance_list(app_of(r)->cache, after, service, state, host,
                            desired, &sel, limit, b);
        labels_sel_free(&sel);
        http_reply_json_buffer(r, 200, b);
        return;
    }
    vals[0] = after;
    vals[1] = service;
    vals[2] = state;
    vals[3] = host;
    vals[4] = desired;
    run_list_labels(r, ST_INSTANCE_LIST, ST_INSTANCE_LIST_SEL, vals, 5, &sel,
                    limit);
}

static void
h_instances_create(struct http_req *r)
{
    create_with(r, validate_instance_create, "instance_create");
}

static void
h_instance_get(struct http_req *r)
{
    if (use_cache(r)) {
        int status = 404;
        char msg[200];
        const struct cache_obj *o = cache_instance_find(
            app_of(r)->cache, http_param(r, 0), &status, msg, sizeof(msg));
        if (o == NULL)
            http_reply_error(r, status,
                             status == 409 ? "conflict" : "not_found", NULL,
                             "%s", msg);
        else
            reply_cached(r, o);
        return;
    }
    get_one(r, "instance", ST_INSTANCE_GET);
}

static void
h_instance_delete(struct http_req *r)
{
    ref_action(r, "instance_delete", NULL);
}

static void
h_instance_start(struct http_req *r)
{
    ref_action(r, "instance_start", NULL);
}

static void
h_instance_restart(struct http_req *r)
{
    ref_action(r, "instance_restart", NULL);
}

static void
h_instance_kill(struct http_req *r)
{
    int empty;
    json_t *in = http_body_json(r, &empty);
    const char *sig;
    char vs[24], gs[16];
    long long ver;
    int grace;
    struct verr e;

    if (in == NULL && !empty)
        return;
    if (validate_kill(in, &sig, &grace, &e) < 0) {
        json_decref(in);
        http_reply_error(r, 422, "invalid", e.field, "%s", e.message);
        return;
    }
    json_decref(in);
    if (http_if_match(r, &ver) < 0)
        return;
    version_str(vs, sizeof(vs), ver);
    snprintf(gs, sizeof(gs), "%d", grace);
    /* The kill's own grace period travels to the agent with this stop
     * (migrations/0018: instances.kill_grace_seconds). */
    write_op(r, &(struct writer_op){.op = "instance_kill",
                                    .ref = http_param(r, 0),
                                    .signal = sig,
                                    .if_match = ver ? vs : NULL,
                                    .actor = ACTOR,
                                    .grace_s = grace ? gs : NULL});
}

/* ---- hosts ----------------------------------------------------------- */

static void
h_hosts_list(struct http_req *r)
{
    const char *after, *state, *vals[3];
    int limit;

    if (query_limit(r, &limit) < 0 || query_str(r, "after", &after) < 0 ||
        query_enum(r, "state", host_states, &state) < 0)
        return;
    vals[0] = after;
    vals[1] = state;
    run_list(r, ST_HOST_LIST, vals, 2, limit);
}

static void
h_host_get(struct http_req *r)
{
    get_one(r, "host", ST_HOST_GET);
}

static void
h_host_cordon(struct http_req *r)
{
    ref_action(r, "host_action", "cordon");
}

static void
h_host_uncordon(struct http_req *r)
{
    ref_action(r, "host_action", "uncordon");
}

static void
h_host_drain(struct http_req *r)
{
    ref_action(r, "host_action", "drain");
}

/* ---- events ---------------------------------------------------------- */

static int
parse_since(struct http_req *r, const char *s, long long *out)
{
    char *end;

    errno = 0;
    *out = strtoll(s, &end, 10);
    if (errno || *end || end == s || *out < 0) {
        http_reply_error(r, 400, "bad_request", "since",
                         "since must be an event id (an integer >= 0)");
        return -1;
    }
    return 0;
}

static void
h_events(struct http_req *r)
{
    const char *object, *type, *since_s, *watch, *vals[4];
    long long since = -1;
    int limit;
    char ss[24];

    if (query_limit(r, &limit) < 0 ||
        query_enum(r, "object", event_objects, &object) < 0 ||
        query_str(r, "type", &type) < 0)
        return;
    /* The list cursor (after) and since are the same thing for events:
     * the id of the last event seen. */
    since_s = http_query(r, "after");
    if (since_s == NULL)
        since_s = http_query(r, "since");
    if (since_s == NULL)
        since_s = http_header(r, "Last-Event-ID");
    if (since_s && parse_since(r, since_s, &since) < 0)
        return;
    watch = http_query(r, "watch");
    if (watch && (strcmp(watch, "true") == 0 || strcmp(watch, "1") == 0)) {
        watch_add(app_of(r)->watch, r, since, object, type);
        return;
    }
    if (watch && strcmp(watch, "false") != 0 && strcmp(watch, "0") != 0) {
        http_reply_error(r, 400, "bad_request", "watch",
                         "watch must be true or false");
        return;
    }
    snprintf(ss, sizeof(ss), "%lld", since);
    /* No since: from the oldest kept event. A since below the low-water
     * mark is 410 expired (migrations/0019_retention_quotas.sql). */
    vals[0] = since < 0 ? NULL : ss;
    vals[1] = object;
    vals[2] = type;
    run_list(r, ST_EVENT_LIST, vals, 3, limit);
}

/* ---- images ---------------------------------------------------------- */

/* A list with no filter but the cursor: (after, limit + 1). */
static void
cursor_list(struct http_req *r, enum store_stmt st)
{
    const char *after, *vals[2];
    int limit;

    if (query_limit(r, &limit) < 0 || query_str(r, "after", &after) < 0)
        return;
    vals[0] = after;
    run_list(r, st, vals, 1, limit);
}

static void
h_images_list(struct http_req *r)
{
    cursor_list(r, ST_IMAGE_LIST);
}

static void
h_images_create(struct http_req *r)
{
    char *body = validated_body(r, validate_image_create);

    if (body == NULL)
        return;
    write_op(r, &(struct writer_op){
                    .op = "image_create", .body = body, .actor = ACTOR});
    free(body);
}

static void
h_image_delete(struct http_req *r)
{
    write_op(r, &(struct writer_op){.op = "image_delete",
                                    .ref = http_param(r, 0),
                                    .actor = ACTOR});
}

static void
h_image_get(struct http_req *r)
{
    get_one(r, "image", ST_IMAGE_GET);
}

/* ---- authorisation and audit ----------------------------------------- */

int
api_authorize(struct http_req *r, int need)
{
    struct app *a = app_of(r);
    enum auth_role role;
    const char *name;
    char why[160];

    if (!auth_ready(a->auth)) {
        http_reply_error(r, 503, "unavailable", NULL,
                         "not ready: API tokens are still loading");
        return -1;
    }
    if (auth_check(a->auth, http_header(r, "Authorization"), &role, &name,
                   why, sizeof(why)) < 0) {
        if (http_limit_anon(r) < 0) /* 429: too many from this address */
            return -1;
        http_add_header(r, "WWW-Authenticate", "Bearer realm=\"cloud\"");
        http_reply_error(r, 401, "unauthorized", NULL, "%s", why);
        return -1;
    }
    r->actor = xstrdup(name);
    if ((int)role < need) {
        http_reply_error(r, 403, "forbidden", NULL,
                         "token %s has role %s; %s %s needs %s", name,
                         auth_role_name(role), r->method, r->route->path,
                         auth_role_name((enum auth_role)need));
        return -1;
    }
    return 0;
}

static void
on_audited(int status, const char *body, const struct db_error *err,
           void *arg)
{
    (void)status;
    (void)body;
    (void)arg;
    if (err)
        log_warnx("cannot record an audit event: %s", err->message);
}

void
api_on_error(struct http_req *r, int status, const char *message)
{
    char what[300];
    char st[8];

    /* Reads are not audited; nor is who we do not know (401). */
    if (strcmp(r->method, "GET") == 0 || r->actor == NULL)
        return;
    snprintf(what, sizeof(what), "%s %s", r->method,
             evhttp_request_get_uri(r->req));
    snprintf(st, sizeof(st), "%d", status);
    writer_submit(app_of(r)->writer,
                  &(struct writer_op){.op = "audit",
                                      .actor = r->actor,
                                      .request = what,
                                      .status = st,
                                      .message = message},
                  on_audited, NULL);
}

/* ---- tokens ---------------------------------------------------------- */

struct token_create {
    char secret[AUTH_SECRET_LEN + 1];
};

static void
on_token_created(int status, const char *body, const struct db_error *err,
                 void *arg)
{
    struct http_req *r = arg;
    struct token_create *tc = r->data;
    json_t *j;

    if (api_db_done(r, err)) {
        free(tc);
        return;
    }
    /* The secret is shown this once; PostgreSQL holds only its SHA-256. */
    j = json_loads(body, 0, NULL);
    if (j == NULL) {
        free(tc);
        http_reply_error(r, 500, "internal", NULL, "cannot read the token");
        return;
    }
    json_object_set_new(j, "secret", json_string(tc->secret));
    OPENSSL_cleanse(tc->secret, sizeof(tc->secret));
    free(tc);
    http_reply_json(r, status, j);
    json_decref(j);
}

static void
h_tokens_create(struct http_req *r)
{
    static const char *const keys[] = {"name", "role", "ttl_seconds", NULL};
    int empty;
    json_t *in = http_body_json(r, &empty), *v;
    const char *name, *role;
    enum auth_role ro;
    char sha[65], ttl[24] = "";
    struct token_create *tc;
    const char *key;

    if (in == NULL) {
        if (empty)
            http_reply_error(r, 400, "bad_request", NULL,
                             "a JSON body is required");
        return;
    }
    json_object_foreach(in, key, v) {
        int ok = 0;
        for (const char *const *k = keys; *k; k++)
            ok |= strcmp(*k, key) == 0;
        if (!ok) {
            /* key lives in the object: answer before letting it go */
            http_reply_error(r, 422, "invalid", key, "unknown field \"%s\"",
                             key);
            json_decref(in);
            return;
        }
    }
    name = json_string_value(json_object_get(in, "name"));
    role = json_string_value(json_object_get(in, "role"));
    v = json_object_get(in, "ttl_seconds");
    if (name == NULL || validate_name(name) < 0) {
        json_decref(in);
        http_reply_error(r, 422, "invalid", "name",
                         "name must be 1-63 lower-case letters, digits or "
                         "'-'");
        return;
    }
    if (role == NULL || auth_role_parse(role, &ro) < 0) {
        json_decref(in);
        http_reply_error(r, 422, "invalid", "role",
                         "role must be viewer, operator or admin");
        return;
    }
    if (v && (!json_is_integer(v) || json_integer_value(v) < 1 ||
              json_integer_value(v) > 10LL * 366 * 86400)) {
        json_decref(in);
        http_reply_error(r, 422, "invalid", "ttl_seconds",
                         "ttl_seconds must be an integer from 1 to 316224000");
        return;
    }
    if (v)
        snprintf(ttl, sizeof(ttl), "%lld", (long long)json_integer_value(v));
    tc = xcalloc(1, sizeof(*tc));
    if (auth_new_secret(tc->secret, sha) < 0) {
        free(tc);
        json_decref(in);
        http_reply_error(r, 500, "internal", NULL,
                         "cannot draw a random secret");
        return;
    }
    r->data = tc;
    writer_submit(app_of(r)->writer,
                  &(struct writer_op){.op = "token_create",
                                      .ref = name,
                                      .role = auth_role_name(ro),
                                      .sha256 = sha,
                                      .ttl_s = v ? ttl : NULL,
                                      .actor = ACTOR},
                  on_token_created, r);
    json_decref(in);
}

static void
h_tokens_list(struct http_req *r)
{
    cursor_list(r, ST_TOKEN_LIST);
}

static void
h_token_revoke(struct http_req *r)
{
    write_op(r, &(struct writer_op){.op = "token_revoke",
                                    .ref = http_param(r, 0),
                                    .actor = ACTOR});
}

/* ---- the table ------------------------------------------------------- */

#define OPEN HTTP_ROLE_OPEN
#define ADMIN ROLE_ADMIN

const struct http_route api_routes[] = {
    {.path = "/healthz", .get = h_healthz, .read_role = OPEN},
    {.path = "/readyz", .get = h_readyz, .read_role = OPEN},
    {.path = "/metrics", .get = h_metrics},
    {.path = "/v1/services", .get = h_services_list, .post = h_services_create},
    {.path = "/v1/services/:name",
     .get = h_service_get,
     .patch = h_service_patch,
     .delete = h_service_delete},
    {.path = "/v1/instances",
     .get = h_instances_list,
     .post = h_instances_create},
    {.path = "/v1/instances/:id",
     .get = h_instance_get,
     .delete = h_instance_delete},
    {.path = "/v1/instances/:id/kill", .post = h_instance_kill},
    {.path = "/v1/instances/:id/start", .post = h_instance_start},
    {.path = "/v1/instances/:id/restart", .post = h_instance_restart},
    {.path = "/v1/instances/:id/logs", .get = logs_h_get}, /* api_logs.c */
    {.path = "/v1/hosts", .get = h_hosts_list},
    {.path = "/v1/hosts/:name", .get = h_host_get},
    {.path = "/v1/hosts/:name/cordon", .post = h_host_cordon, .write_role = ADMIN},
    {.path = "/v1/hosts/:name/uncordon",
     .post = h_host_uncordon,
     .write_role = ADMIN},
    {.path = "/v1/hosts/:name/drain", .post = h_host_drain, .write_role = ADMIN},
    {.path = "/v1/events", .get = h_events},
    {.path = "/v1/images",
     .get = h_images_list,
     .post = h_images_create,
     .write_role = ADMIN},
    {.path = "/v1/images/:ref",
     .get = h_image_get,
     .delete = h_image_delete,
     .write_role = ADMIN},
    {.path = "/v1/blobs/uploads", .post = blobs_h_upload_start, .write_role = ADMIN},
    {.path = "/v1/blobs/uploads/:id",
     .patch = blobs_h_upload_chunk,
     .put = blobs_h_upload_finish,
     .delete = blobs_h_upload_cancel,
     .write_role = ADMIN},
    {.path = "/v1/blobs/:digest", .get = blobs_h_get},
    {.path = "/v1/tokens",
     .get = h_tokens_list,
     .post = h_tokens_create,
     .read_role = ADMIN,
     .write_role = ADMIN},
    {.path = "/v1/tokens/:name",
     .delete = h_token_revoke,
     .read_role = ADMIN,
     .write_role = ADMIN},
    /* config, links and endpoints: controller/api_config.c */
    {.path = "/v1/services/:name/config",
     .get = api_config_h_get,
     .put = api_config_h_put,
     .patch = api_config_h_patch},
    {.path = "/v1/services/:name/config/history", .get = api_config_h_history},
    {.path = "/v1/services/:name/config/rollback",
     .post = api_config_h_rollback},
    {.path = "/v1/services/:name/endpoints", .get = api_config_h_endpoints},
    {.path = "/v1/instances/:id/config", .get = api_config_h_instance},
    /* agent enrolment: controller/api_join.c */
    {.path = "/v1/join-tokens",
     .get = api_join_h_tokens_list,
     .post = api_join_h_token_create,
     .read_role = ADMIN,
     .write_role = ADMIN},
    {.path = "/v1/agent-certs",
     .get = api_join_h_certs_list,
     .read_role = ADMIN},
    {.path = "/v1/agent-certs/revoke",
     .post = api_join_h_certs_revoke,
     .write_role = ADMIN},
    /* reconciler: controller/api_cluster.c */
    {.path = "/v1/cluster/settings", .get = api_cluster_h_settings_get,
     .patch = api_cluster_h_settings_patch, .write_role = ADMIN},
};
const size_t api_nroutes = sizeof(api_routes) / sizeof(api_routes[0]);
