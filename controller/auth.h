/*
 * auth: bearer tokens for the API. The token table is held in memory (the
 * SHA-256 of each live secret with its name, role and expiry), loaded after
 * every (re)connect of the LISTEN session and re-read when a token event
 * arrives, so checking a request costs one hash and one lookup. Secrets are
 * never stored, logged or sent to PostgreSQL: only their SHA-256.
 */
#ifndef CLOUD_AUTH_H
#define CLOUD_AUTH_H

#include <event2/event.h>
#include <stddef.h>

#include "db.h"

enum auth_role {
    ROLE_NONE = 0,
    ROLE_VIEWER = 1,
    ROLE_OPERATOR = 2,
    ROLE_ADMIN = 3,
};

#define AUTH_SECRET_LEN 47 /* "cld_" + 43 base64url characters */

struct auth;

struct auth *auth_new(struct event_base *base, struct db_pool *db);
void auth_free(struct auth *a);
int auth_ready(const struct auth *a);

/* Adapters for struct watch_observer (arg is the auth). */
void auth_on_event(void *arg, long long id, const char *type,
                   const char *object, const char *object_id);
void auth_on_reconnect(void *arg);

/*
 * Checks an Authorization header value. Returns 0 and sets *role and
 * *name (valid until the next reload) for a live token; otherwise -1 with
 * why filled ("missing", "unknown or revoked", "expired").
 */
int auth_check(struct auth *a, const char *header, enum auth_role *role,
               const char **name, char *why, size_t whylen);

/* Draws a new secret (AUTH_SECRET_LEN + 1 bytes) and its SHA-256 in hex. */
int auth_new_secret(char *secret, char *sha_hex);
/* SHA-256 of a secret in hex (65 bytes). */
void auth_hash(const char *secret, char *sha_hex);

const char *auth_role_name(enum auth_role r);
int auth_role_parse(const char *s, enum auth_role *r);

#endif
