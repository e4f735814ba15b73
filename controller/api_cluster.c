/*
 * api_cluster: GET and PATCH /v1/cluster/settings. The handlers validate,
 * name a store statement and answer with the JSON PostgreSQL built
 * (cloud_settings_json); the write and its event are one SQL function
 * (migrations/functions/cloud_settings_*.sql: down_after and
 * fence_after, cluster_cidr and host_subnet_prefix, events_retention,
 * quotas, blobs).
 */
#define LOG_MODULE "api"
#include "api_cluster.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "api_util.h"
#include "app.h"
#include "log.h"
#include "mem.h"
#include "store.h"

/*
 * The settings a PATCH may change: top-level integers, or objects of
 * integers (events_retention, quotas, blobs; migrations/0019). Each with
 * its range; the table's CHECKs repeat them as the last line.
 */
struct setting {
    const char *group; /* NULL: a top-level key */
    const char *key;
    long long min, max;
};

static const struct setting settings[] = {
    {NULL, "down_after_seconds", CLUSTER_DOWN_AFTER_MIN,
     CLUSTER_DOWN_AFTER_MAX},
    /* With down_after: fence_after + 3 < down_after, checked in
     * cloud_settings_patch against the stored values. */
    {NULL, "fence_after_seconds", CLUSTER_FENCE_AFTER_MIN,
     CLUSTER_FENCE_AFTER_MAX},
    /* IPAM (docs/network.md): a /29 leaves 5 instance addresses after the
     * network, gateway and broadcast addresses. Must be at least
     * cluster_cidr's prefix, checked in cloud_settings_patch. */
    {NULL, "host_subnet_prefix", 16, 29},
    {"events_retention", "max_age_seconds", 60, 315360000},
    {"events_retention", "max_events", 1, 1000000000},
    {"quotas", "services", 0, 1000000000},
    {"quotas", "instances", 0, 1000000000},
    {"quotas", "images", 0, 1000000000},
    {"quotas", "tokens", 0, 1000000000},
    {"quotas", "upload_sessions", 0, 4096},
    {"quotas", "blob_bytes", 0, 1LL << 60},
    {"blobs", "gc_grace_seconds", 1, 315360000},
    {"blobs", "min_free_bytes", 0, 1LL << 60},
};
#define NSETTINGS (sizeof(settings) / sizeof(settings[0]))

static const struct setting *
setting_find(const char *group, const char *key)
{
    for (size_t i = 0; i < NSETTINGS; i++) {
        const struct setting *st = &settings[i];
        if (((group == NULL && st->group == NULL) ||
             (group && st->group && strcmp(group, st->group) == 0)) &&
            strcmp(key, st->key) == 0)
            return st;
        if (group == NULL && st->group && strcmp(key, st->group) == 0)
            return st; /* a group: its members are checked next */
    }
    return NULL;
}

static int
setting_value_ok(struct http_req *r, const struct setting *st,
                 const json_t *v)
{
    char field[64];

    snprintf(field, sizeof(field), "%s%s%s", st->group ? st->group : "",
             st->group ? "." : "", st->key);
    if (!json_is_integer(v) || json_integer_value(v) < st->min ||
        json_integer_value(v) > st->max) {
        http_reply_error(r, 422, "invalid", field,
                         "%s must be an integer from %lld to %lld", field,
                         st->min, st->max);
        return -1;
    }
    return 0;
}

/* cluster_cidr: an IPv4 network "a.b.c.d/n", n from 8 to 29, without
 * host bits (the subnets are carved from it; docs/network.md). */
static int
cluster_cidr_ok(struct http_req *r, const json_t *v)
{
    char buf[32], *slash, *end;
    struct in_addr a;
    unsigned long n;
    uint32_t mask;

    if (!json_is_string(v) || json_string_length(v) >= sizeof(buf)) {
        http_reply_error(r, 422, "invalid", "cluster_cidr",
                         "cluster_cidr must be an IPv4 network as a string, "
                         "e.g. \"10.240.0.0/16\"");
        return -1;
    }
    memcpy(buf, json_string_value(v), json_string_length(v) + 1);
    slash = strchr(buf, '/');
    if (slash == NULL) {
        http_reply_error(r, 422, "invalid", "cluster_cidr",
                         "cluster_cidr \"%s\" has no prefix length: write "
                         "it as address/length, e.g. \"10.240.0.0/16\"",
                         buf);
        return -1;
    }
    *slash = '\0';
    errno = 0;
    n = strtoul(slash + 1, &end, 10);
    if (inet_pton(AF_INET, buf, &a) != 1 || slash[1] < '0' ||
        slash[1] > '9' || *end != '\0' || errno != 0 || n < 8 || n > 29) {
        *slash = '/';
        http_reply_error(r, 422, "invalid", "cluster_cidr",
                         "cluster_cidr \"%s\" is not an IPv4 network with a "
                         "prefix length from 8 to 29, e.g. \"10.240.0.0/16\"",
                         buf);
        return -1;
    }
    mask = n == 0 ? 0 : 0xffffffffu << (32 - n);
    if ((ntohl(a.s_addr) & ~mask) != 0) {
        struct in_addr net = {.s_addr = htonl(ntohl(a.s_addr) & mask)};
        char nbuf[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &net, nbuf, sizeof(nbuf));
        http_reply_error(r, 422, "invalid", "cluster_cidr",
                         "cluster_cidr \"%s/%lu\" has host bits set: the "
                         "network is %s/%lu",
                         buf, n, nbuf, n);
        return -1;
    }
    return 0;
}

static int
settings_check(struct http_req *r, json_t *in)
{
    const char *key, *k2;
    json_t *v, *v2;

    json_object_foreach(in, key, v) {
        const struct setting *st;

        if (strcmp(key, "cluster_cidr") == 0) {
            if (cluster_cidr_ok(r, v) < 0)
                return -1;
            continue;
        }
        st = setting_find(NULL, key);
        if (st == NULL) {
            http_reply_error(r, 422, "invalid", key,
                             "unknown field \"%s\": the settings are "
                             "down_after_seconds, fence_after_seconds, "
                             "cluster_cidr, host_subnet_prefix, "
                             "events_retention, quotas and blobs",
                             key);
            return -1;
        }
        if (st->group == NULL) {
            if (setting_value_ok(r, st, v) < 0)
                return -1;
            continue;
        }
        if (!json_is_object(v)) {
            http_reply_error(r, 422, "invalid", key,
                             "%s must be an object", key);
            return -1;
        }
        json_object_foreach(v, k2, v2) {
            const struct setting *m = setting_find(key, k2);
            if (m == NULL) {
                char names[256] = "";
                for (size_t i = 0; i < NSETTINGS; i++)
                    if (settings[i].group &&
                        strcmp(settings[i].group, key) == 0) {
                        size_t l = strlen(names);
                        snprintf(names + l, sizeof(names) - l, "%s%s",
                                 l ? ", " : "", settings[i].key);
                    }
                http_reply_error(r, 422, "invalid", key,
                                 "unknown field \"%s.%s\": %s has %s", key,
                                 k2, key, names);
                return -1;
            }
            if (setting_value_ok(r, m, v2) < 0)
                return -1;
        }
    }
    return 0;
}

static void
on_settings(const PGresult *res, const struct db_error *err, void *arg)
{
    struct http_req *r = arg;

    if (api_db_one_row(r, res, err, "cluster settings"))
        return;
    /* GET: the JSON alone; PATCH: SETTINGS_PATCH_*. This controller's blob
     * store takes the new limits at once (read your writes); the others follow
     * the controller.settings event (retention.c). */
    if (PQnfields(res) != SETTINGS_PATCH__NCOLS) {
        blobs_settings(((struct app *)http_app(r))->blobs,
                       PQgetvalue(res, 0, 0));
        http_reply_json_text(r, 200, PQgetvalue(res, 0, 0));
    } else {
        blobs_settings(((struct app *)http_app(r))->blobs,
                       PQgetvalue(res, 0, SETTINGS_PATCH_BODY));
        http_reply_json_text(
            r, (int)strtol(PQgetvalue(res, 0, SETTINGS_PATCH_STATUS), NULL, 10),
            PQgetvalue(res, 0, SETTINGS_PATCH_BODY));
    }
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
    json_t *in;
    const char *vals[3];
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
    if (settings_check(r, in) < 0)
        goto cleanup;
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
