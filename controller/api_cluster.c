/*
 * api_cluster: GET and PATCH /v1/cluster/settings. The handlers validate,
 * name a store statement and answer with the JSON PostgreSQL built
 * (cloud_settings_json); the write and its event are one SQL function
 * (migrations/0003_reconcile.sql).
 */
#define LOG_MODULE "api"
#include "api_cluster.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "app.h"
#include "log.h"
#include "mem.h"
#include "store.h"

static int
gone(struct http_req *r)
{
    if (r->cancelled) {
        http_req_release(r);
        return 1;
    }
    return 0;
}

static void
reply_db_error(struct http_req *r, const struct db_error *err)
{
    http_reply_error(r, err->status, err->code, err->field[0] ? err->field
                                                              : NULL,
                     "%s", err->message);
}

static void
on_settings(const PGresult *res, const struct db_error *err, void *arg)
{
    struct http_req *r = arg;

    if (gone(r))
        return;
    if (err) {
        reply_db_error(r, err);
        return;
    }
    if (PQntuples(res) != 1) {
        http_reply_error(r, 500, "internal", NULL,
                         "the cluster settings row is missing");
        return;
    }
    /* GET: (json); PATCH: (status, json) */
    if (PQnfields(res) == 1)
        http_reply_json_text(r, 200, PQgetvalue(res, 0, 0));
    else
        http_reply_json_text(r, (int)strtol(PQgetvalue(res, 0, 0), NULL, 10),
                             PQgetvalue(res, 0, 1));
}

void
api_cluster_h_settings_get(struct http_req *r)
{
    struct app *a = http_app(r);

    db_query(a->db, store_stmt(ST_SETTINGS_GET), NULL, on_settings, r);
}

void
api_cluster_h_settings_patch(struct http_req *r)
{
    struct app *a = http_app(r);
    int empty;
    json_t *in, *v;
    const char *key, *vals[3];
    long long ver;
    char vs[24], *body = NULL;

    if (http_if_match(r, &ver) < 0)
        return;
    in = http_body_json(r, &empty);
    if (in == NULL) {
        if (empty)
            http_reply_error(r, 400, "bad_request", NULL,
                             "a JSON body is required");
        return;
    }
    json_object_foreach(in, key, v) {
        if (strcmp(key, "down_after_seconds") != 0) {
            http_reply_error(r, 422, "invalid", key,
                             "unknown field \"%s\": the settings are "
                             "down_after_seconds",
                             key);
            goto cleanup;
        }
    }
    v = json_object_get(in, "down_after_seconds");
    if (v && (!json_is_integer(v) ||
              json_integer_value(v) < CLUSTER_DOWN_AFTER_MIN ||
              json_integer_value(v) > CLUSTER_DOWN_AFTER_MAX)) {
        http_reply_error(r, 422, "invalid", "down_after_seconds",
                         "down_after_seconds must be an integer from %d to %d",
                         CLUSTER_DOWN_AFTER_MIN, CLUSTER_DOWN_AFTER_MAX);
        goto cleanup;
    }
    body = json_dumps(in, JSON_COMPACT);
    if (body == NULL) {
        http_reply_error(r, 500, "internal", NULL, "cannot encode the patch");
        goto cleanup;
    }
    snprintf(vs, sizeof(vs), "%lld", ver);
    vals[0] = body;
    vals[1] = ver ? vs : NULL;
    vals[2] = r->actor ? r->actor : "api";
    db_query(a->db, store_stmt(ST_SETTINGS_PATCH), vals, on_settings, r);
cleanup:
    free(body);
    json_decref(in);
}
