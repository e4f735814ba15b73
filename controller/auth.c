/*
 * auth: the in-memory token table (see auth.h). Owns the table, its reload
 * query and the periodic refresh that also drops expired tokens.
 */
#define LOG_MODULE "auth"
#include "auth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "log.h"
#include "mem.h"
#include "store.h"
#include "strmap.h"

#define REFRESH_SECS 30

struct token {
    char sha[65];
    char *name;
    enum auth_role role;
    long long expires; /* unix seconds, 0 = never */
};

struct auth {
    struct db_pool *db;
    struct strmap table; /* sha hex -> token */
    struct event *refresh;
    int loaded;
    int loading, again;
};

static void
table_clear(struct strmap *m)
{
    for (size_t i = 0; i < m->cap; i++) {
        struct token *t = m->vals[i];
        if (t) {
            free(t->name);
            free(t);
        }
    }
    strmap_fini(m);
}

const char *
auth_role_name(enum auth_role r)
{
    switch (r) {
    case ROLE_VIEWER: return "viewer";
    case ROLE_OPERATOR: return "operator";
    case ROLE_ADMIN: return "admin";
    default: return "none";
    }
}

int
auth_role_parse(const char *s, enum auth_role *r)
{
    if (strcmp(s, "viewer") == 0)
        *r = ROLE_VIEWER;
    else if (strcmp(s, "operator") == 0)
        *r = ROLE_OPERATOR;
    else if (strcmp(s, "admin") == 0)
        *r = ROLE_ADMIN;
    else
        return -1;
    return 0;
}

static void reload(struct auth *a);

/* The rows of ST_TOKENS_LOAD. */
static void
on_loaded(const PGresult *res, const struct db_error *err, void *arg)
{
    struct auth *a = arg;
    struct strmap fresh;

    a->loading = 0;
    if (err) {
        log_warnx("cannot load API tokens: %s", err->message);
        return; /* the refresh timer tries again */
    }
    strmap_init(&fresh);
    for (int i = 0; i < PQntuples(res); i++) {
        struct token *t = xcalloc(1, sizeof(*t));
        xstrlcpy(t->sha, PQgetvalue(res, i, TOKENS_LOAD_SHA256),
                 sizeof(t->sha));
        t->name = xstrdup(PQgetvalue(res, i, TOKENS_LOAD_NAME));
        if (auth_role_parse(PQgetvalue(res, i, TOKENS_LOAD_ROLE), &t->role) < 0)
            t->role = ROLE_NONE; /* join tokens open no API door */
        t->expires =
            PQgetisnull(res, i, TOKENS_LOAD_EXPIRES)
                ? 0
                : strtoll(PQgetvalue(res, i, TOKENS_LOAD_EXPIRES), NULL, 10);
        strmap_put(&fresh, t->sha, t);
    }
    table_clear(&a->table);
    a->table = fresh;
    if (!a->loaded)
        log_info("API tokens loaded: %zu", a->table.len);
    a->loaded = 1;
    if (a->again) {
        a->again = 0;
        reload(a);
    }
}

static void
reload(struct auth *a)
{
    if (a->loading) {
        a->again = 1;
        return;
    }
    a->loading = 1;
    db_query(a->db, store_stmt(ST_TOKENS_LOAD), NULL, on_loaded, a);
}

static void
on_refresh(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    reload(arg);
}

struct auth *
auth_new(struct event_base *base, struct db_pool *db)
{
    struct auth *a = xcalloc(1, sizeof(*a));
    struct timeval tv = {REFRESH_SECS, 0};

    a->db = db;
    strmap_init(&a->table);
    a->refresh = event_new(base, -1, EV_PERSIST, on_refresh, a);
    if (a->refresh == NULL || event_add(a->refresh, &tv) < 0)
        fatalx("cannot start the token refresh timer");
    return a;
}

void
auth_free(struct auth *a)
{
    if (a == NULL)
        return;
    table_clear(&a->table);
    event_free(a->refresh);
    free(a);
}

int
auth_ready(const struct auth *a)
{
    return a->loaded;
}

void
auth_on_event(void *arg, long long id, const char *type, const char *object,
              const char *object_id)
{
    (void)id;
    (void)type;
    (void)object_id;
    if (strcmp(object, "token") == 0)
        reload(arg);
}

void
auth_on_reconnect(void *arg)
{
    reload(arg);
}

void
auth_hash(const char *secret, char *sha_hex)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;

    if (EVP_Digest(secret, strlen(secret), md, &n, EVP_sha256(), NULL) != 1)
        fatalx("SHA-256 failed");
    for (unsigned i = 0; i < n; i++)
        snprintf(sha_hex + 2 * i, 3, "%02x", md[i]);
}

int
auth_new_secret(char *secret, char *sha_hex)
{
    static const char b64url[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    unsigned char rnd[32];
    size_t o = 4;
    unsigned long acc = 0;
    int bits = 0;

    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        log_warnx("cannot draw random bytes for a token");
        return -1;
    }
    memcpy(secret, "cld_", 4);
    for (size_t i = 0; i < sizeof(rnd); i++) {
        acc = (acc << 8) | rnd[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            secret[o++] = b64url[(acc >> bits) & 63];
        }
    }
    if (bits > 0)
        secret[o++] = b64url[(acc << (6 - bits)) & 63];
    secret[o] = '\0';
    auth_hash(secret, sha_hex);
    return 0;
}

int
auth_check(struct auth *a, const char *header, enum auth_role *role,
           const char **name, char *why, size_t whylen)
{
    char sha[65];
    struct token *t;
    const char *secret;

    *role = ROLE_NONE;
    *name = NULL;
    if (header == NULL || strncasecmp(header, "Bearer ", 7) != 0) {
        snprintf(why, whylen,
                 "missing bearer token (Authorization: Bearer <token>)");
        return -1;
    }
    secret = header + 7;
    while (*secret == ' ')
        secret++;
    if (strlen(secret) == 0 || strlen(secret) > 256) {
        snprintf(why, whylen, "malformed bearer token");
        return -1;
    }
    auth_hash(secret, sha);
    t = strmap_get(&a->table, sha);
    if (t == NULL || t->role == ROLE_NONE) {
        snprintf(why, whylen, "unknown or revoked token");
        return -1;
    }
    if (t->expires != 0 && (long long)time(NULL) >= t->expires) {
        snprintf(why, whylen, "token %s has expired", t->name);
        return -1;
    }
    *role = t->role;
    *name = t->name;
    return 0;
}
