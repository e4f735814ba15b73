/*
 * api_config: the config, history, rollback, effective config and endpoint
 * routes (see api_config.h). The handlers validate and name a store
 * statement; versions, merge and limits on the merged result live in
 * migrations/functions/cloud_config_*.sql.
 *
 * Endpoint watches: one hub per process (created by the first watch, it
 * observes the event stream from then on) holds the watching clients. An
 * endpoints.changed event marks the clients of that service; after each
 * batch of events every marked client re-reads its list and gets it if the
 * version moved. A client is freed when its query is not in flight (a query
 * callback finishes a client that left meanwhile). This is not a second
 * event hub: it streams a document re-read on demand, not the event log,
 * and rides on watch.c's (as an observer for the triggers, and a
 * watch_stream for keepalives and the limit on a client that lags).
 */
#define LOG_MODULE "api"
#include "api_config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <jansson.h>

#include "api_util.h"
#include "app.h"
#include "log.h"
#include "mem.h"
#include "store.h"

#define ACTOR (r->actor ? r->actor : "anonymous")
#define HISTORY_DEFAULT 20
#define HISTORY_MAX 100
#define EP_WRITE_TIMEOUT_S 60
#define EP_MAX_WATCHERS 10000

static struct app *
app_of(struct http_req *r)
{
    return http_app(r);
}

/* CONFIG_GET_* (also ST_INSTANCE_CONFIG's) with the version as ETag, or
 * CONFIG_WRITE_*. */
static void
on_doc(const PGresult *res, const struct db_error *err, void *arg)
{
    struct http_req *r = arg;
    int write, status = 200;
    char etag[40];

    if (api_db_one_row(r, res, err, "config"))
        return;
    write = PQnfields(res) == CONFIG_WRITE__NCOLS && r->data != NULL;
    if (write)
        status = (int)strtol(PQgetvalue(res, 0, CONFIG_WRITE_STATUS), NULL, 10);
    snprintf(
        etag, sizeof(etag), "\"%s\"",
        PQgetvalue(res, 0, write ? CONFIG_WRITE_VERSION : CONFIG_GET_VERSION));
    http_add_header(r, "ETag", etag);
    http_reply_json_text(
        r, status,
        PQgetvalue(res, 0, write ? CONFIG_WRITE_BODY : CONFIG_GET_BODY));
}

/* A non-negative integer from a query value or header; -1 when malformed. */
static long long
parse_version(const char *s)
{
    char *end;
    long long v;

    if (s == NULL || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < 0)
        return -1;
    return v;
}

int
api_config_key_ok(const char *k)
{
    size_t n = strlen(k);

    if (n == 0 || n > CONFIG_MAX_KEY ||
        !((k[0] >= 'A' && k[0] <= 'Z') || (k[0] >= 'a' && k[0] <= 'z') ||
          k[0] == '_'))
        return -1;
    for (size_t i = 1; i < n; i++) {
        char c = k[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
              (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
            return -1;
    }
    return 0;
}

/*
 * The body {"config":{...}}: replies (400/413/415/422) and returns NULL when
 * it is not acceptable, else the config object (a new reference). A patch
 * may set keys to null (remove).
 */
static json_t *
config_body(struct http_req *r, int patch)
{
    int empty;
    json_t *in = http_body_json(r, &empty), *cfg, *v;
    const char *k;
    size_t total = 0;

    if (in == NULL) {
        if (empty)
            http_reply_error(r, 400, "bad_request", NULL,
                             "a JSON body {\"config\":{...}} is required");
        return NULL;
    }
    json_object_foreach(in, k, v) {
        if (strcmp(k, "config") != 0) {
            http_reply_error(r, 422, "invalid", k,
                             "unknown field \"%.64s\": the body is "
                             "{\"config\":{...}}",
                             k);
            json_decref(in);
            return NULL;
        }
    }
    cfg = json_object_get(in, "config");
    if (!json_is_object(cfg)) {
        http_reply_error(r, 422, "invalid", "config",
                         "config must be an object of string values");
        json_decref(in);
        return NULL;
    }
    if (json_object_size(cfg) > CONFIG_MAX_KEYS) {
        http_reply_error(r, 422, "invalid", "config",
                         "config has %zu keys; at most %d",
                         json_object_size(cfg), CONFIG_MAX_KEYS);
        json_decref(in);
        return NULL;
    }
    json_object_foreach(cfg, k, v) {
        char field[160];

        snprintf(field, sizeof(field), "config.%.128s", k);
        if (api_config_key_ok(k) < 0) {
            http_reply_error(r, 422, "invalid", field,
                             "config key \"%.64s\" must match "
                             "[A-Za-z_][A-Za-z0-9_.-]* and have at most %d "
                             "characters",
                             k, CONFIG_MAX_KEY);
            json_decref(in);
            return NULL;
        }
        if (patch && json_is_null(v))
            continue;
        if (!json_is_string(v) ||
            strlen(json_string_value(v)) != json_string_length(v) ||
            json_string_length(v) > CONFIG_MAX_VALUE) {
            http_reply_error(r, 422, "invalid", field,
                             "config key %.64s: the value must be a string "
                             "of at most %d bytes without NUL%s",
                             k, CONFIG_MAX_VALUE,
                             patch ? ", or null to remove the key" : "");
            json_decref(in);
            return NULL;
        }
        total += strlen(k) + json_string_length(v);
    }
    if (total > CONFIG_MAX_TOTAL) {
        http_reply_error(r, 422, "invalid", "config",
                         "config has %zu bytes of keys and values; at most "
                         "%d",
                         total, CONFIG_MAX_TOTAL);
        json_decref(in);
        return NULL;
    }
    json_incref(cfg);
    json_decref(in);
    return cfg;
}

static void
config_write(struct http_req *r, const char *mode, json_t *arg)
{
    long long ver;
    char vs[24], *body;
    const char *vals[5];

    /* 0 matches a service never configured. */
    if (http_if_match_min(r, 0, "a config version", &ver) < 0) {
        json_decref(arg);
        return;
    }
    body = json_dumps(arg, JSON_COMPACT);
    json_decref(arg);
    if (body == NULL) {
        http_reply_error(r, 500, "internal", NULL, "cannot encode the config");
        return;
    }
    snprintf(vs, sizeof(vs), "%lld", ver);
    vals[0] = http_param(r, 0);
    vals[1] = mode;
    vals[2] = body;
    vals[3] = ver >= 0 ? vs : NULL;
    vals[4] = ACTOR;
    r->data = (void *)mode; /* on_doc: a write's (status, body, version) */
    db_query(app_of(r)->db, store_stmt(ST_CONFIG_WRITE), vals, on_doc, r);
    free(body);
}

void
api_config_h_get(struct http_req *r)
{
    const char *vs = http_query(r, "version"), *vals[2];

    if (vs != NULL && parse_version(vs) < 0) {
        http_reply_error(r, 400, "bad_request", "version",
                         "version must be an integer >= 0");
        return;
    }
    vals[0] = http_param(r, 0);
    vals[1] = vs;
    r->data = NULL;
    db_query(app_of(r)->db, store_stmt(ST_CONFIG_GET), vals, on_doc, r);
}

void
api_config_h_put(struct http_req *r)
{
    json_t *cfg = config_body(r, 0);

    if (cfg != NULL)
        config_write(r, "put", cfg);
}

void
api_config_h_patch(struct http_req *r)
{
    json_t *cfg = config_body(r, 1);

    if (cfg != NULL)
        config_write(r, "patch", cfg);
}

void
api_config_h_rollback(struct http_req *r)
{
    int empty;
    json_t *in = http_body_json(r, &empty), *v;
    const char *k;

    if (in == NULL) {
        if (empty)
            http_reply_error(r, 400, "bad_request", NULL,
                             "a JSON body {\"version\":N} is required");
        return;
    }
    json_object_foreach(in, k, v) {
        if (strcmp(k, "version") != 0) {
            http_reply_error(r, 422, "invalid", k,
                             "unknown field \"%.64s\": the body is "
                             "{\"version\":N}",
                             k);
            json_decref(in);
            return;
        }
    }
    v = json_object_get(in, "version");
    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        http_reply_error(r, 422, "invalid", "version",
                         "version must be an integer >= 0 (a kept config "
                         "version)");
        json_decref(in);
        return;
    }
    config_write(r, "rollback", in);
}

static void
on_text(const PGresult *res, const struct db_error *err, void *arg)
{
    struct http_req *r = arg;

    if (api_db_one_row(r, res, err, "history"))
        return;
    http_reply_json_text(r, 200, PQgetvalue(res, 0, 0));
}

void
api_config_h_history(struct http_req *r)
{
    const char *ls = http_query(r, "limit"), *after = http_query(r, "after");
    const char *vals[3];
    long long limit = HISTORY_DEFAULT;
    char lim[24];

    if (ls != NULL) {
        limit = parse_version(ls);
        if (limit < 1 || limit > HISTORY_MAX) {
            http_reply_error(r, 400, "bad_request", "limit",
                             "limit must be an integer from 1 to %d",
                             HISTORY_MAX);
            return;
        }
    }
    if (after != NULL && parse_version(after) < 0) {
        http_reply_error(r, 400, "bad_request", "after",
                         "after must be a config version (the \"next\" of "
                         "the previous page)");
        return;
    }
    snprintf(lim, sizeof(lim), "%lld", limit);
    vals[0] = http_param(r, 0);
    vals[1] = after;
    vals[2] = lim;
    db_query(app_of(r)->db, store_stmt(ST_CONFIG_HISTORY), vals, on_text,
             r);
}

void
api_config_h_instance(struct http_req *r)
{
    const char *vals[1] = {http_param(r, 0)};

    r->data = NULL;
    db_query(app_of(r)->db, store_stmt(ST_INSTANCE_CONFIG), vals, on_doc,
             r);
}

/* ---- endpoints and their watches -------------------------------------- */

struct ep_client {
    TAILQ_ENTRY(ep_client) link;
    struct ep_hub *hub;
    struct watch_stream stream; /* keepalives and the lag limit (watch.h) */
    struct http_req *r; /* NULL once finished */
    char *name;         /* the service */
    char *sid;          /* its id when the watch began */
    long long sent;     /* the version of the last list sent */
    int inflight, dirty, dead;
};

struct ep_hub {
    struct db_pool *db;
    struct watch *watch;
    TAILQ_HEAD(, ep_client) clients;
    int nclients;
};

static struct ep_hub *hub; /* one per process: the first watch makes it */

static void ep_fetch(struct ep_client *c);

static void
ep_client_free(struct ep_client *c)
{
    free(c->name);
    free(c->sid);
    free(c);
}

/* Ends c's stream (or releases a context whose client left) and frees c
 * unless its query is in flight. */
static void
ep_drop(struct ep_client *c)
{
    if (!c->dead) {
        TAILQ_REMOVE(&c->hub->clients, c, link);
        c->hub->nclients--;
        watch_stream_del(c->hub->watch, &c->stream);
        c->dead = 1;
    }
    if (c->inflight)
        return;
    if (c->r) {
        http_stream_end(c->r);
        c->r = NULL;
    }
    ep_client_free(c);
}

static void
ep_on_cancel(struct http_req *r)
{
    struct ep_client *c = r->data;

    r->on_cancel = NULL;
    ep_drop(c);
}

static void
ep_send(struct ep_client *c, const char *json, long long version)
{
    char head[64];
    int n = snprintf(head, sizeof(head), "id: %lld\nevent: endpoints\ndata: ",
                     version);

    http_stream_chunk(c->r, head, (size_t)n);
    http_stream_chunk(c->r, json, strlen(json));
    http_stream_chunk(c->r, "\n\n", 2);
    c->sent = version;
}

static void
ep_on_rows(const PGresult *res, const struct db_error *err, void *arg)
{
    struct ep_client *c = arg;
    long long v;

    c->inflight = 0;
    if (c->dead) {
        ep_drop(c);
        return;
    }
    if (err) {
        /* The service is gone (404) or the database is: end the stream;
         * the client reconnects and gets an answer it can act on. */
        log_info("endpoint watch of %s ends: %s", c->name, err->message);
        ep_drop(c);
        return;
    }
    if (PQntuples(res) != 1) {
        ep_drop(c);
        return;
    }
    v = strtoll(PQgetvalue(res, 0, ENDPOINTS_GET_VERSION), NULL, 10);
    if (v > c->sent)
        ep_send(c, PQgetvalue(res, 0, ENDPOINTS_GET_BODY), v);
    if (watch_lagging(c->r)) {
        log_warnx("endpoint watch of %s fell behind; closing its stream so "
                  "it resumes",
                  c->name);
        ep_drop(c);
        return;
    }
    if (c->dirty)
        ep_fetch(c);
}

static void
ep_fetch(struct ep_client *c)
{
    const char *vals[1] = {c->name};

    c->dirty = 0;
    c->inflight = 1;
    db_query(c->hub->db, store_stmt(ST_ENDPOINTS_GET), vals, ep_on_rows, c);
}

static void
ep_on_event(void *arg, long long id, const char *type, const char *object,
            const char *object_id)
{
    struct ep_hub *h = arg;
    struct ep_client *c;

    (void)id;
    if (type == NULL || object == NULL || strcmp(object, "config") != 0 ||
        strcmp(type, "endpoints.changed") != 0)
        return;
    TAILQ_FOREACH(c, &h->clients, link)
        if (object_id == NULL || c->sid == NULL ||
            strcmp(c->sid, object_id) == 0)
            c->dirty = 1;
}

static void
ep_on_batch(void *arg)
{
    struct ep_hub *h = arg;
    struct ep_client *c;

    TAILQ_FOREACH(c, &h->clients, link)
        if (c->dirty && !c->inflight)
            ep_fetch(c);
}

static void
ep_on_reconnect(void *arg)
{
    struct ep_hub *h = arg;
    struct ep_client *c;

    TAILQ_FOREACH(c, &h->clients, link)
        c->dirty = 1;
    ep_on_batch(h);
}

static struct ep_hub *
ep_hub_get(struct app *a)
{
    struct watch_observer obs = {
        .on_event = ep_on_event,
        .on_batch = ep_on_batch,
        .on_reconnect = ep_on_reconnect,
    };

    if (hub != NULL)
        return hub;
    hub = xcalloc(1, sizeof(*hub));
    hub->db = a->db;
    hub->watch = a->watch;
    TAILQ_INIT(&hub->clients);
    obs.arg = hub;
    watch_observe(a->watch, &obs);
    return hub;
}

/* The first answer of a watch: an error is an ordinary reply; a list
 * starts the stream. */
static void
on_watch_first(const PGresult *res, const struct db_error *err, void *arg)
{
    struct http_req *r = arg;
    struct ep_hub *h;
    struct ep_client *c;

    if (api_db_one_row(r, res, err, "endpoints"))
        return;
    h = ep_hub_get(app_of(r));
    if (h->nclients >= EP_MAX_WATCHERS) {
        http_reply_error(r, 503, "unavailable", NULL,
                         "%d endpoint watches are open; try again later",
                         EP_MAX_WATCHERS);
        return;
    }
    c = xcalloc(1, sizeof(*c));
    c->hub = h;
    c->r = r;
    c->name = xstrdup(http_param(r, 0));
    c->sid = PQgetisnull(res, 0, ENDPOINTS_GET_SERVICE_ID)
                 ? NULL
                 : xstrdup(PQgetvalue(res, 0, ENDPOINTS_GET_SERVICE_ID));
    c->sent = -1;
    r->data = c;
    r->on_cancel = ep_on_cancel;
    TAILQ_INSERT_TAIL(&h->clients, c, link);
    h->nclients++;
    http_stream_start(r, 200, "text/event-stream");
    c->stream.r = r;
    watch_stream_add(h->watch, &c->stream);
    /* Quiet services send only keepalives; the client sends nothing. */
    http_stream_long(r, EP_WRITE_TIMEOUT_S);
    ep_send(c, PQgetvalue(res, 0, ENDPOINTS_GET_BODY),
            strtoll(PQgetvalue(res, 0, ENDPOINTS_GET_VERSION), NULL, 10));
}

void
api_config_h_endpoints(struct http_req *r)
{
    const char *watch = http_query(r, "watch"), *vals[1] = {http_param(r, 0)};
    int follow = 0;

    if (watch != NULL) {
        if (strcmp(watch, "true") == 0 || strcmp(watch, "1") == 0) {
            follow = 1;
        } else if (strcmp(watch, "false") != 0 && strcmp(watch, "0") != 0) {
            http_reply_error(r, 400, "bad_request", "watch",
                             "watch must be true or false");
            return;
        }
    }
    r->data = NULL;
    db_query(app_of(r)->db, store_stmt(ST_ENDPOINTS_GET), vals,
             follow ? on_watch_first : on_doc, r);
}
