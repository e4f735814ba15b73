/*
 * validate: checks request bodies and query values before anything reaches
 * the database, and fills defaults. Every failure names the JSON field and
 * says, in one sentence, what is wrong and what is allowed.
 */
#ifndef CLOUD_VALIDATE_H
#define CLOUD_VALIDATE_H

#include <jansson.h>
#include <stddef.h>

#define VALIDATE_JSON_MAX_DEPTH 16

struct verr {
    char field[128];
    char message[320];
};

/* ^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$ */
int validate_name(const char *s);
/* never | always | on-failure | on-failure:N (1..1000) */
int validate_restart(const char *s);
/* key=value, key!=value, key in (a,b); msg gets the reason on failure. */
int validate_constraint(const char *s, char *msg, size_t msglen);
/* name[:tag] or sha256:<64 hex> */
int validate_image_ref(const char *s);
/* Returns 0 when buf nests objects/arrays at most max deep. */
int validate_json_depth(const char *buf, size_t len, int max);

/*
 * Each returns a new normalized object (caller owns it) or NULL with err
 * filled. Create fills every default; patch keeps only what was given.
 */
json_t *validate_service_create(json_t *in, struct verr *err);
json_t *validate_service_patch(json_t *in, struct verr *err);
json_t *validate_instance_create(json_t *in, struct verr *err);

/* {"name","tag","kind","kernel","initrd","disk","cmdline"} */
json_t *validate_image_create(json_t *in, struct verr *err);

/*
 * The grace period of a TERM stop (ACPI shutdown, then destroy), in
 * seconds: stop_grace_seconds of services and instances, grace_seconds of
 * a kill. The database's CHECKs (migrations/0018) hold the same range.
 */
#define VALIDATE_GRACE_MIN 1
#define VALIDATE_GRACE_MAX 3600

/*
 * {"signal":"TERM"|"KILL","grace_seconds":N}; an empty or absent body means
 * TERM. *grace is the kill's grace period (TERM only), 0 when not given.
 */
int validate_kill(json_t *in, const char **signal, int *grace,
                  struct verr *err);

#endif
