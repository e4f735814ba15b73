/*
 * api_join: join tokens and agent certificates over the API (see
 * api_join.h). The token's secret is shown once, in the 201 answer.
 */
#define LOG_MODULE "api"
#include "api_join.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "api_util.h"
#include "app.h"
#include "gateway.h"
#include "join.h"
#include "log.h"
#include "mem.h"
#include "pin.h"
#include "store.h"

#define JOIN_TTL_MIN 60
#define JOIN_TTL_MAX (30 * 86400)

struct token_new {
    char id[17], secret[65], pin[PIN_TEXT_LEN + 1];
    char *command_host;
    unsigned short port;
};

static void
token_new_free(struct token_new *t)
{
    if (t == NULL)
        return;
    free(t->command_host);
    OPENSSL_cleanse(t, sizeof(*t));
    free(t);
}

static void
on_token_created(const PGresult *res, const struct db_error *err, void *arg)
{
    struct http_req *r = arg;
    struct token_new *t = r->data;
    char *token, *cmd;
    json_t *j;

    r->data = NULL;
    if (api_gone(r)) {
        token_new_free(t);
        return;
    }
    if (err != NULL || PQntuples(res) != 1) {
        if (err != NULL)
            api_reply_db_error(r, err);
        else
            http_reply_error(r, 500, "internal", NULL,
                             "the join token was not stored");
        token_new_free(t);
        return;
    }
    token = xasprintf("%s.%s", t->id, t->secret);
    cmd = xasprintf("cloud-agent join --controller %s:%u --token %s "
                    "--ca-pin %s",
                    t->command_host, t->port, token, t->pin);
    j = json_pack("{s:s, s:s, s:s, s:s, s:s}", "id", t->id, "token", token,
                  "expires_at", PQgetvalue(res, 0, 0), "ca_pin", t->pin,
                  "command", cmd);
    OPENSSL_cleanse(token, strlen(token));
    OPENSSL_cleanse(cmd, strlen(cmd));
    free(token);
    free(cmd);
    token_new_free(t);
    if (j == NULL) {
        http_reply_error(r, 500, "internal", NULL, "cannot encode the answer");
        return;
    }
    http_reply_json(r, 201, j);
    json_decref(j);
}

/* The host part of the Host header if it is a plain name or address. */
static char *
command_host(struct http_req *r)
{
    const char *h = http_header(r, "Host");
    size_t n;

    if (h == NULL || *h == '\0' || strlen(h) > 255)
        return xstrdup("CONTROLLER");
    if (h[0] == '[') {
        n = strcspn(h, "]");
        if (h[n] != ']' || strspn(h + 1, "0123456789abcdefABCDEF:.") != n - 1)
            return xstrdup("CONTROLLER");
        return xstrndup(h, n + 1);
    }
    n = strcspn(h, ":");
    if (n == 0 || strspn(h, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                            "0123456789.-") != n)
        return xstrdup("CONTROLLER");
    return xstrndup(h, n);
}

void
api_join_h_token_create(struct http_req *r)
{
    struct app *a = http_app(r);
    struct join *jn = gateway_join(a->gateway);
    struct token_new *t;
    json_t *in = NULL, *v;
    const char *key, *vals[4];
    char sha[65], ttl[24];
    long long secs = 3600;
    int empty;

    if (jn == NULL) {
        http_reply_error(r, 503, "unavailable", NULL,
                         "the agent gateway is disabled on this controller (--agent-listen none)");
        return;
    }
    in = http_body_json(r, &empty);
    if (in == NULL && !empty)
        return; /* answered */
    if (in != NULL) {
        json_object_foreach(in, key, v) {
            if (strcmp(key, "ttl_seconds") != 0) {
                http_reply_error(r, 422, "invalid", key,
                                 "unknown field \"%s\": the only field is ttl_seconds",
                                 key);
                json_decref(in);
                return;
            }
        }
        v = json_object_get(in, "ttl_seconds");
        if (v != NULL && (!json_is_integer(v) ||
                          json_integer_value(v) < JOIN_TTL_MIN ||
                          json_integer_value(v) > JOIN_TTL_MAX)) {
            json_decref(in);
            http_reply_error(r, 422, "invalid", "ttl_seconds",
                             "ttl_seconds must be an integer from %d to %d",
                             JOIN_TTL_MIN, JOIN_TTL_MAX);
            return;
        }
        if (v != NULL)
            secs = json_integer_value(v);
        json_decref(in);
    }
    t = xcalloc(1, sizeof(*t));
    if (join_token_new(t->id, t->secret, sha) < 0 ||
        join_ca_pin(jn, t->pin, sizeof(t->pin)) < 0) {
        token_new_free(t);
        http_reply_error(r, 500, "internal", NULL,
                         "cannot make a join token");
        return;
    }
    t->command_host = command_host(r);
    t->port = gateway_port(a->gateway);
    snprintf(ttl, sizeof(ttl), "%lld", secs);
    r->data = t;
    vals[0] = t->id;
    vals[1] = sha;
    vals[2] = ttl;
    vals[3] = r->actor ? r->actor : "api";
    db_query(a->db, store_stmt(ST_JOIN_TOKEN_CREATE), vals, on_token_created,
             r);
}

static void
on_list(const PGresult *res, const struct db_error *err, void *arg)
{
    struct http_req *r = arg;
    char *body;

    if (api_db_one_row(r, res, err, "join token list"))
        return;
    body = xasprintf("{\"items\":%s}", PQgetvalue(res, 0, 0));
    http_reply_json_text(r, 200, body);
    free(body);
}

void
api_join_h_tokens_list(struct http_req *r)
{
    db_query(((struct app *)http_app(r))->db,
             store_stmt(ST_JOIN_TOKEN_LIST_JSON), NULL, on_list, r);
}

void
api_join_h_certs_list(struct http_req *r)
{
    db_query(((struct app *)http_app(r))->db,
             store_stmt(ST_JOIN_CERT_LIST_JSON), NULL, on_list, r);
}

static void
on_revoked(const PGresult *res, const struct db_error *err, void *arg)
{
    struct http_req *r = arg;
    char body[64];

    if (api_db_one_row(r, res, err, "revocation"))
        return;
    snprintf(body, sizeof(body), "{\"revoked\":%ld}",
             strtol(PQgetvalue(res, 0, 0), NULL, 10));
    http_reply_json_text(r, 200, body);
}

void
api_join_h_certs_revoke(struct http_req *r)
{
    struct app *a = http_app(r);
    json_t *in, *v;
    const char *key, *serial_in = NULL, *host = NULL, *vals[3];
    char serial[PIN_SERIAL_MAX];
    int empty;

    in = http_body_json(r, &empty);
    if (in == NULL) {
        if (empty)
            http_reply_error(r, 400, "bad_request", NULL,
                             "a JSON body with serial or host is required");
        return;
    }
    json_object_foreach(in, key, v) {
        if (strcmp(key, "serial") != 0 && strcmp(key, "host") != 0) {
            http_reply_error(r, 422, "invalid", key,
                             "unknown field \"%s\": give serial or host", key);
            goto cleanup;
        }
    }
    serial_in = json_string_value(json_object_get(in, "serial"));
    host = json_string_value(json_object_get(in, "host"));
    if ((serial_in == NULL) == (host == NULL) ||
        json_object_size(in) != 1) {
        http_reply_error(r, 422, "invalid", NULL,
                         "give exactly one of serial (a string) or host (a string)");
        goto cleanup;
    }
    if (serial_in != NULL &&
        pin_serial_parse(serial_in, serial, sizeof(serial)) < 0) {
        http_reply_error(r, 422, "invalid", "serial",
                         "serial must be hex digits (':' allowed), at most 64");
        goto cleanup;
    }
    if (host != NULL && pki_name_valid(host) < 0) {
        http_reply_error(r, 422, "invalid", "host",
                         "host must be a host name: lower-case letters, digits, '.' and '-'");
        goto cleanup;
    }
    vals[0] = serial_in ? serial : NULL;
    vals[1] = host;
    vals[2] = r->actor ? r->actor : "api";
    db_query(a->db, store_stmt(ST_JOIN_CERT_REVOKE), vals, on_revoked, r);

cleanup:
    json_decref(in);
}
