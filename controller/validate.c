/*
 * validate: request body validation and defaults for the REST API.
 * The ranges are those of docs/api.md; the tables' CHECK constraints in
 * migrations/ hold the same limits as a last line.
 */
#include "validate.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cmdline.h"
#include "labels.h"
#include "mem.h"

#define MAX_LIST 256
#define MAX_STR 4096
#define MAX_PORTS 64
#define MAX_LINKS GUEST_LINKS_MAX
#define MAX_CONSTRAINTS 32

static int
fail(struct verr *e, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
fail(struct verr *e, const char *field, const char *fmt, ...)
{
    va_list ap;

    xstrlcpy(e->field, field, sizeof(e->field));
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof(e->message), fmt, ap);
    va_end(ap);
    return -1;
}

int
validate_name(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > 63)
        return -1;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        int alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alnum && !(c == '-' && i > 0 && i < n - 1))
            return -1;
    }
    return 0;
}

int
validate_restart(const char *s)
{
    const char *p;
    long n = 0;

    if (strcmp(s, "never") == 0 || strcmp(s, "always") == 0 ||
        strcmp(s, "on-failure") == 0)
        return 0;
    if (strncmp(s, "on-failure:", 11) != 0)
        return -1;
    p = s + 11;
    if (*p == '\0' || strlen(p) > 4)
        return -1;
    for (; *p; p++) {
        if (!isdigit((unsigned char)*p))
            return -1;
        n = n * 10 + (*p - '0');
    }
    return n >= 1 && n <= 1000 ? 0 : -1;
}

static int
label_token_ok(const char *s, size_t n)
{
    if (n == 0 || n > 63)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!(isalnum((unsigned char)c) || c == '-' || c == '_' || c == '.' ||
              c == '/'))
            return 0;
    }
    return 1;
}

static const char *
skip_ws(const char *p)
{
    while (*p == ' ')
        p++;
    return p;
}

int
validate_constraint(const char *s, char *msg, size_t msglen)
{
    const char *p = skip_ws(s), *k = p, *v;
    size_t klen;

    while (*p && *p != '=' && *p != '!' && *p != ' ')
        p++;
    klen = (size_t)(p - k);
    if (!label_token_ok(k, klen)) {
        snprintf(msg, msglen,
                 "constraint \"%s\" must start with a label key of 1-63 "
                 "letters, digits, '-', '_', '.' or '/'",
                 s);
        return -1;
    }
    p = skip_ws(p);
    if (p[0] == '=' || (p[0] == '!' && p[1] == '=')) {
        p += p[0] == '=' ? 1 : 2;
        v = skip_ws(p);
        p = v + strlen(v);
        while (p > v && p[-1] == ' ')
            p--;
        if (!label_token_ok(v, (size_t)(p - v))) {
            snprintf(msg, msglen,
                     "constraint \"%s\" needs a value of 1-63 letters, "
                     "digits, '-', '_', '.' or '/'",
                     s);
            return -1;
        }
        return 0;
    }
    if (strncmp(p, "in", 2) == 0 && (p[2] == ' ' || p[2] == '(')) {
        int count = 0;
        p = skip_ws(p + 2);
        if (*p != '(')
            goto bad_in;
        p++;
        for (;;) {
            const char *b;
            p = skip_ws(p);
            b = p;
            while (*p && *p != ',' && *p != ')' && *p != ' ')
                p++;
            if (!label_token_ok(b, (size_t)(p - b)))
                goto bad_in;
            count++;
            p = skip_ws(p);
            if (*p == ',') {
                p++;
                continue;
            }
            if (*p == ')')
                break;
            goto bad_in;
        }
        if (*skip_ws(p + 1) != '\0' || count > 64)
            goto bad_in;
        return 0;
    }
    snprintf(msg, msglen,
             "constraint \"%s\" must be key=value, key!=value or "
             "key in (a,b)",
             s);
    return -1;
bad_in:
    snprintf(msg, msglen,
             "constraint \"%s\" must list 1-64 values as key in (a,b)", s);
    return -1;
}

int
validate_image_ref(const char *s)
{
    size_t n = strlen(s);
    const char *colon;

    if (n == 0 || n > 256)
        return -1;
    if (strncmp(s, "sha256:", 7) == 0) {
        if (n != 7 + 64)
            return -1;
        for (size_t i = 7; i < n; i++)
            if (!isxdigit((unsigned char)s[i]) || isupper((unsigned char)s[i]))
                return -1;
        return 0;
    }
    colon = strchr(s, ':');
    for (const char *p = s; p < (colon ? colon : s + n); p++)
        if (!(islower((unsigned char)*p) || isdigit((unsigned char)*p) ||
              *p == '-' || *p == '_' || *p == '.'))
            return -1;
    if (colon == s)
        return -1;
    if (colon) {
        if (colon[1] == '\0' || strchr(colon + 1, ':'))
            return -1;
        for (const char *p = colon + 1; *p; p++)
            if (!(isalnum((unsigned char)*p) || *p == '-' || *p == '_' ||
                  *p == '.'))
                return -1;
    }
    return 0;
}

int
validate_json_depth(const char *buf, size_t len, int max)
{
    int depth = 0, in_str = 0;

    for (size_t i = 0; i < len; i++) {
        char c = buf[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = 0;
            continue;
        }
        if (c == '"')
            in_str = 1;
        else if (c == '{' || c == '[') {
            if (++depth > max)
                return -1;
        } else if (c == '}' || c == ']')
            depth--;
    }
    return 0;
}

/* ---- field helpers --------------------------------------------------- */

static void
path_join(char *out, size_t cap, const char *prefix, const char *key)
{
    if (prefix && *prefix)
        snprintf(out, cap, "%s.%s", prefix, key);
    else
        snprintf(out, cap, "%s", key);
}

/* Rejects keys not in allowed (NULL-terminated), naming the first one. */
static int
check_keys(json_t *obj, const char *prefix, const char *const *allowed,
           struct verr *e)
{
    const char *key;
    json_t *v;
    char path[128];

    json_object_foreach(obj, key, v) {
        int ok = 0;
        (void)v;
        for (const char *const *a = allowed; *a; a++)
            if (strcmp(*a, key) == 0)
                ok = 1;
        if (!ok) {
            path_join(path, sizeof(path), prefix, key);
            return fail(e, path, "unknown field \"%s\"", path);
        }
    }
    return 0;
}

static int
get_int(json_t *obj, const char *prefix, const char *key, long long min,
        long long max, long long *out, struct verr *e)
{
    json_t *v = json_object_get(obj, key);
    char path[128];

    if (v == NULL)
        return 1;
    path_join(path, sizeof(path), prefix, key);
    if (!json_is_integer(v))
        return fail(e, path, "%s must be an integer", path);
    if (json_integer_value(v) < min || json_integer_value(v) > max)
        return fail(e, path, "%s must be between %lld and %lld, not %lld",
                    path, min, max, (long long)json_integer_value(v));
    *out = json_integer_value(v);
    return 0;
}

static int
get_str(json_t *obj, const char *key, size_t maxlen, const char **out,
        struct verr *e)
{
    json_t *v = json_object_get(obj, key);

    if (v == NULL)
        return 1;
    if (!json_is_string(v))
        return fail(e, key, "%s must be a string", key);
    if (json_string_length(v) > maxlen || json_string_length(v) == 0)
        return fail(e, key, "%s must be 1 to %zu characters", key, maxlen);
    if (strlen(json_string_value(v)) != json_string_length(v))
        return fail(e, key, "%s must not contain NUL characters", key);
    *out = json_string_value(v);
    return 0;
}

/* The nested object in->key (resources, placement, rollout) into *sec,
 * checked to hold only keys: 1 to go on (*sec NULL when it is absent and
 * fill asks for the defaults), 0 when it is absent and there is nothing
 * to fill, -1 on error. */
static int
get_section(json_t *in, const char *key, const char *const *keys, int fill,
            json_t **sec, struct verr *e)
{
    *sec = json_object_get(in, key);
    if (*sec == NULL)
        return fill ? 1 : 0;
    if (!json_is_object(*sec))
        return fail(e, key, "%s must be an object", key);
    if (check_keys(*sec, key, keys, e) < 0)
        return -1;
    return 1;
}

/* A section of integers: each of keys (NULL-terminated) within lim's
 * {min, max} and, where absent, lim's default when fill asks for the
 * defaults (a create) or left out (a patch). */
static int
check_int_section(json_t *in, json_t *out, const char *section,
                  const char *const *keys, const long long (*lim)[3], int fill,
                  struct verr *e)
{
    json_t *sec, *o;
    int go = get_section(in, section, keys, fill, &sec, e);

    if (go <= 0)
        return go;
    o = json_object();
    for (int i = 0; keys[i]; i++) {
        long long v = lim[i][2];
        int rc = sec ? get_int(sec, section, keys[i], lim[i][0], lim[i][1],
                               &v, e)
                     : 1;
        if (rc < 0) {
            json_decref(o);
            return -1;
        }
        if (rc == 0 || fill)
            json_object_set_new(o, keys[i], json_integer(v));
    }
    json_object_set_new(out, section, o);
    return 0;
}

/* resources: {vcpus, memory_mib, disk_gib}; partial when patching. */
static int
check_resources(json_t *in, json_t *out, int fill, struct verr *e)
{
    static const char *const keys[] = {"vcpus", "memory_mib", "disk_gib",
                                       NULL};
    static const long long lim[3][3] = {
        {1, 256, 1}, {16, 1048576, 256}, {0, 65536, 0}};

    return check_int_section(in, out, "resources", keys, lim, fill, e);
}

static int
check_string_array(json_t *in, json_t *out, const char *key, size_t maxn,
                   size_t maxlen, int fill, int (*item_ok)(const char *),
                   const char *what, struct verr *e)
{
    json_t *a = json_object_get(in, key), *v;
    size_t i;
    char path[160];

    if (a == NULL) {
        if (fill)
            json_object_set_new(out, key, json_array());
        return 0;
    }
    if (!json_is_array(a))
        return fail(e, key, "%s must be an array of strings", key);
    if (json_array_size(a) > maxn)
        return fail(e, key, "%s must have at most %zu items", key, maxn);
    json_array_foreach(a, i, v) {
        snprintf(path, sizeof(path), "%s[%zu]", key, i);
        if (!json_is_string(v) || json_string_length(v) > maxlen ||
            strlen(json_string_value(v)) != json_string_length(v))
            return fail(e, path, "%s must be a string of at most %zu bytes",
                        path, maxlen);
        if (item_ok && item_ok(json_string_value(v)) < 0)
            return fail(e, path, "%s \"%s\" is not %s", path,
                        json_string_value(v), what);
    }
    json_object_set(out, key, a);
    return 0;
}

/*
 * args: an array of at most MAX_LIST strings that go on a kernel command
 * line, quoted (cmdline.h): no double quote or control character in one,
 * and at most CMDLINE_ARGS_MAX bytes together as quoted there, so that
 * with any image's command line (CMDLINE_IMAGE_MAX) they fit the kernel's.
 */
static int
check_args(json_t *in, json_t *out, int fill, struct verr *e)
{
    json_t *a, *v;
    size_t i, total = 0;
    char path[64], why[160];

    if (check_string_array(in, out, "args", MAX_LIST, MAX_STR, fill, NULL,
                           NULL, e) < 0)
        return -1;
    a = json_object_get(in, "args");
    if (a == NULL)
        return 0;
    json_array_foreach(a, i, v) {
        snprintf(path, sizeof(path), "args[%zu]", i);
        if (cmdline_arg_check(json_string_value(v), why, sizeof(why)) < 0)
            return fail(e, path, "%s %s", path, why);
        total += (i > 0 ? 1 : 0) + cmdline_arg_len(json_string_value(v));
    }
    if (total > CMDLINE_ARGS_MAX)
        return fail(e, "args",
                    "args take %zu bytes on the kernel command line (quoted, "
                    "space-separated); at most %d, so that with the image's "
                    "own command line (at most %d) they fit the kernel's %d",
                    total, CMDLINE_ARGS_MAX, CMDLINE_IMAGE_MAX, CMDLINE_MAX);
    return 0;
}

static int
env_key_ok(const char *k)
{
    size_t n = strlen(k);

    if (n == 0 || n > 128 || !(isalpha((unsigned char)k[0]) || k[0] == '_'))
        return 0;
    for (size_t i = 1; i < n; i++)
        if (!(isalnum((unsigned char)k[i]) || k[i] == '_'))
            return 0;
    return 1;
}

static int
check_env(json_t *in, json_t *out, int fill, struct verr *e)
{
    json_t *o = json_object_get(in, "env"), *v;
    const char *k;
    char path[160];
    size_t total = 0;

    if (o == NULL) {
        if (fill)
            json_object_set_new(out, "env", json_object());
        return 0;
    }
    if (!json_is_object(o))
        return fail(e, "env", "env must be an object of strings");
    if (json_object_size(o) > GUEST_ENV_KEYS_MAX)
        return fail(e, "env", "env must have at most %d keys",
                    GUEST_ENV_KEYS_MAX);
    json_object_foreach(o, k, v) {
        snprintf(path, sizeof(path), "env.%s", k);
        if (!env_key_ok(k))
            return fail(e, "env",
                        "env key \"%.64s\" must match "
                        "[A-Za-z_][A-Za-z0-9_]{0,127}",
                        k);
        if (!json_is_string(v) || json_string_length(v) > GUEST_ENV_VALUE_MAX ||
            strlen(json_string_value(v)) != json_string_length(v))
            return fail(e, path, "%s must be a string of at most %d bytes",
                        path, GUEST_ENV_VALUE_MAX);
        total += strlen(k) + json_string_length(v);
    }
    /* The boot line carries the whole env to the guest (cmdline.h). */
    if (total > GUEST_ENV_TOTAL_MAX)
        return fail(e, "env",
                    "env has %zu bytes of keys and values; at most %d",
                    total, GUEST_ENV_TOTAL_MAX);
    json_object_set(out, "env", o);
    return 0;
}

static int
check_ports(json_t *in, json_t *out, int fill, struct verr *e)
{
    static const char *const keys[] = {"name", "port", "protocol", NULL};
    json_t *a = json_object_get(in, "ports"), *p, *res;
    size_t i;
    int rc;
    char path[64];

    if (a == NULL) {
        if (fill)
            json_object_set_new(out, "ports", json_array());
        return 0;
    }
    if (!json_is_array(a) || json_array_size(a) > MAX_PORTS)
        return fail(e, "ports", "ports must be an array of at most %d ports",
                    MAX_PORTS);
    res = json_array();
    json_array_foreach(a, i, p) {
        const char *name = NULL, *proto = "tcp";
        long long port = 0;
        json_t *v;
        snprintf(path, sizeof(path), "ports[%zu]", i);
        if (!json_is_object(p)) {
            fail(e, path, "%s must be an object", path);
            goto bad;
        }
        if (check_keys(p, path, keys, e) < 0)
            goto bad;
        rc = get_int(p, path, "port", 1, 65535, &port, e);
        if (rc == 1)
            fail(e, path, "%s.port is required (1-65535)", path);
        if (rc != 0)
            goto bad;
        v = json_object_get(p, "name");
        if (v && (!json_is_string(v) ||
                  validate_name(json_string_value(v)) < 0)) {
            fail(e, path, "%s.name must be a name like \"http\"", path);
            goto bad;
        }
        name = v ? json_string_value(v) : NULL;
        v = json_object_get(p, "protocol");
        if (v && (!json_is_string(v) ||
                  (strcmp(json_string_value(v), "tcp") != 0 &&
                   strcmp(json_string_value(v), "udp") != 0))) {
            fail(e, path, "%s.protocol must be tcp or udp", path);
            goto bad;
        }
        if (v)
            proto = json_string_value(v);
        json_array_append_new(res, json_pack("{s:s?,s:I,s:s}", "name", name,
                                             "port", port, "protocol", proto));
    }
    json_object_set_new(out, "ports", res);
    return 0;
bad:
    json_decref(res);
    return -1;
}

static int
check_constraints(json_t *c, struct verr *e)
{
    json_t *v;
    size_t i;

    if (!json_is_array(c) || json_array_size(c) > MAX_CONSTRAINTS)
        return fail(e, "placement.constraints",
                    "placement.constraints must be an array of at most %d "
                    "strings",
                    MAX_CONSTRAINTS);
    json_array_foreach(c, i, v) {
        char path[64], msg[200];
        snprintf(path, sizeof(path), "placement.constraints[%zu]", i);
        if (!json_is_string(v) || json_string_length(v) > 512)
            return fail(e, path, "%s must be a string", path);
        if (validate_constraint(json_string_value(v), msg, sizeof(msg)) < 0)
            return fail(e, path, "%s", msg);
    }
    return 0;
}

/* Checks all of placement before building its copy, so an error leaves
 * nothing to free. */
static int
check_placement(json_t *in, json_t *out, int fill, struct verr *e)
{
    static const char *const keys[] = {"constraints", "strategy",
                                       "max_per_host", NULL};
    json_t *pl, *o, *c = NULL, *st = NULL;
    long long mph = 0;
    int rc = get_section(in, "placement", keys, fill, &pl, e);

    if (rc <= 0)
        return rc;
    if (pl) {
        c = json_object_get(pl, "constraints");
        st = json_object_get(pl, "strategy");
    }
    if (c && check_constraints(c, e) < 0)
        return -1;
    if (st && (!json_is_string(st) ||
               (strcmp(json_string_value(st), "spread") != 0 &&
                strcmp(json_string_value(st), "binpack") != 0)))
        return fail(e, "placement.strategy",
                    "placement.strategy must be spread or binpack");
    rc = pl ? get_int(pl, "placement", "max_per_host", 0, 10000, &mph, e) : 1;
    if (rc < 0)
        return -1;
    o = json_object();
    if (c)
        json_object_set(o, "constraints", c);
    else if (fill)
        json_object_set_new(o, "constraints", json_array());
    if (st)
        json_object_set(o, "strategy", st);
    else if (fill)
        json_object_set_new(o, "strategy", json_string("spread"));
    if (rc == 0 || fill)
        json_object_set_new(o, "max_per_host", json_integer(mph));
    json_object_set_new(out, "placement", o);
    return 0;
}

static int
check_rollout(json_t *in, json_t *out, int fill, struct verr *e)
{
    static const char *const keys[] = {"max_unavailable", "max_surge", NULL};
    static const long long lim[2][3] = {{0, 10000, 1}, {0, 10000, 1}};

    return check_int_section(in, out, "rollout", keys, lim, fill, e);
}

static int
check_enum_str(json_t *in, json_t *out, const char *key, const char *a,
               const char *b, const char *def, struct verr *e)
{
    json_t *v = json_object_get(in, key);

    if (v == NULL) {
        if (def)
            json_object_set_new(out, key, json_string(def));
        return 0;
    }
    if (!json_is_string(v) || (strcmp(json_string_value(v), a) != 0 &&
                               strcmp(json_string_value(v), b) != 0))
        return fail(e, key, "%s must be %s or %s", key, a, b);
    json_object_set(out, key, v);
    return 0;
}

/* "stop": agents fence themselves after fence_after (docs/agent.md
 * "Fencing"); "keep": the guests run on through a partition. */
static int
check_partition_policy(json_t *in, json_t *out, int create, struct verr *e)
{
    return check_enum_str(in, out, "partition_policy", "keep", "stop",
                          create ? "keep" : NULL, e);
}

static int
check_restart(json_t *in, json_t *out, const char *def, struct verr *e)
{
    const char *s = NULL;
    int rc = get_str(in, "restart", 32, &s, e);

    if (rc < 0)
        return -1;
    if (rc == 1) {
        if (def)
            json_object_set_new(out, "restart", json_string(def));
        return 0;
    }
    if (validate_restart(s) < 0)
        return fail(e, "restart",
                    "restart must be never, always, on-failure or "
                    "on-failure:N with N from 1 to 1000, not \"%.40s\"",
                    s);
    json_object_set_new(out, "restart", json_string(s));
    return 0;
}

static int
check_image(json_t *in, json_t *out, int required, struct verr *e)
{
    const char *s = NULL;
    int rc = get_str(in, "image", 256, &s, e);

    if (rc < 0)
        return -1;
    if (rc == 1)
        return required ? fail(e, "image", "image is required") : 0;
    if (validate_image_ref(s) < 0)
        return fail(e, "image",
                    "image \"%.80s\" must be name[:tag] or sha256:<64 hex>",
                    s);
    json_object_set_new(out, "image", json_string(s));
    return 0;
}

/* labels: see labels.h; absent is {} on create, unchanged on patch. */
static int
check_labels(json_t *in, json_t *out, int fill, struct verr *e)
{
    json_t *l = json_object_get(in, "labels");

    if (l == NULL) {
        if (fill)
            json_object_set_new(out, "labels", json_object());
        return 0;
    }
    if (labels_check(l, e->field, sizeof(e->field), e->message,
                     sizeof(e->message)) < 0)
        return -1;
    json_object_set(out, "labels", l);
    return 0;
}

/* stop_grace_seconds: absent is the database's default (10) on create,
 * unchanged on patch; so it is copied only when given. */
static int
check_stop_grace(json_t *in, json_t *out, struct verr *e)
{
    long long g;
    int rc = get_int(in, "", "stop_grace_seconds", VALIDATE_GRACE_MIN,
                     VALIDATE_GRACE_MAX, &g, e);

    if (rc < 0)
        return -1;
    if (rc == 0)
        json_object_set_new(out, "stop_grace_seconds", json_integer(g));
    return 0;
}

static int
name_ok(const char *s)
{
    return validate_name(s);
}

static int
check_body(json_t *in, struct verr *e)
{
    if (!json_is_object(in))
        return fail(e, "", "the request body must be a JSON object");
    return 0;
}

/* ---- bodies ---------------------------------------------------------- */

static json_t *
service_common(json_t *in, int create, struct verr *e)
{
    static const char *const create_keys[] = {
        "name",     "image",     "resources",        "args",  "env",
        "ports",    "restart",   "placement",        "links", "replicas",
        "rollout",  "partition_policy", "labels", "ready_when",
        "stop_grace_seconds", NULL};
    static const char *const patch_keys[] = {
        "image",   "resources", "args",    "env",
        "ports",   "restart",   "placement", "partition_policy",
        "links",   "replicas",  "rollout", "labels", "ready_when",
        "stop_grace_seconds", NULL};
    json_t *out = json_object();
    long long replicas = 1;
    int rc;

    memset(e, 0, sizeof(*e));
    if (check_body(in, e) < 0 ||
        check_keys(in, "", create ? create_keys : patch_keys, e) < 0)
        goto bad;
    if (create) {
        const char *name = NULL;
        rc = get_str(in, "name", 63, &name, e);
        if (rc < 0)
            goto bad;
        if (rc == 1) {
            fail(e, "name", "name is required");
            goto bad;
        }
        if (validate_name(name) < 0) {
            fail(e, "name",
                 "name \"%.80s\" must be 1-63 lower-case letters, digits "
                 "or '-', starting and ending with a letter or digit",
                 name);
            goto bad;
        }
        json_object_set_new(out, "name", json_string(name));
    }
    if (check_image(in, out, create, e) < 0 ||
        check_resources(in, out, create, e) < 0 ||
        check_args(in, out, create, e) < 0 ||
        check_env(in, out, create, e) < 0 || check_ports(in, out, create, e) < 0 ||
        check_restart(in, out, create ? "always" : NULL, e) < 0 ||
        check_placement(in, out, create, e) < 0 ||
        check_partition_policy(in, out, create, e) < 0 ||
        check_enum_str(in, out, "ready_when", "running", "guest",
                       create ? "running" : NULL, e) < 0 ||
        check_string_array(in, out, "links", MAX_LINKS, 63, create, name_ok,
                           "a service name", e) < 0 ||
        check_rollout(in, out, create, e) < 0 ||
        check_labels(in, out, create, e) < 0 ||
        check_stop_grace(in, out, e) < 0)
        goto bad;
    rc = get_int(in, "", "replicas", 0, 10000, &replicas, e);
    if (rc < 0)
        goto bad;
    if (rc == 0 || create)
        json_object_set_new(out, "replicas", json_integer(replicas));
    return out;
bad:
    json_decref(out);
    return NULL;
}

json_t *
validate_service_create(json_t *in, struct verr *err)
{
    return service_common(in, 1, err);
}

json_t *
validate_service_patch(json_t *in, struct verr *err)
{
    return service_common(in, 0, err);
}

json_t *
validate_instance_create(json_t *in, struct verr *e)
{
    static const char *const keys[] = {"name",    "image",     "resources",
                                       "args",    "env",       "restart",
                                       "placement", "labels",
                                       "stop_grace_seconds", NULL};
    json_t *out = json_object();
    const char *name = NULL;
    int rc;

    memset(e, 0, sizeof(*e));
    if (check_body(in, e) < 0 || check_keys(in, "", keys, e) < 0)
        goto bad;
    rc = get_str(in, "name", 63, &name, e);
    if (rc < 0)
        goto bad;
    if (rc == 0) {
        if (validate_name(name) < 0) {
            fail(e, "name",
                 "name \"%.80s\" must be 1-63 lower-case letters, digits "
                 "or '-', starting and ending with a letter or digit",
                 name);
            goto bad;
        }
        json_object_set_new(out, "name", json_string(name));
    }
    if (check_image(in, out, 1, e) < 0 || check_resources(in, out, 1, e) < 0 ||
        check_args(in, out, 1, e) < 0 ||
        check_env(in, out, 1, e) < 0 || check_restart(in, out, "never", e) < 0 ||
        check_placement(in, out, 1, e) < 0 ||
        check_labels(in, out, 1, e) < 0 || check_stop_grace(in, out, e) < 0)
        goto bad;
    return out;
bad:
    json_decref(out);
    return NULL;
}

int
validate_kill(json_t *in, const char **signal, int *grace, struct verr *e)
{
    static const char *const keys[] = {"signal", "grace_seconds", NULL};
    json_t *v;
    long long g = 0;

    memset(e, 0, sizeof(*e));
    *signal = "TERM";
    *grace = 0;
    if (in == NULL)
        return 0;
    if (check_body(in, e) < 0 || check_keys(in, "", keys, e) < 0)
        return -1;
    v = json_object_get(in, "signal");
    if (v != NULL) {
        const char *s = json_is_string(v) ? json_string_value(v) : "";
        if (strncmp(s, "SIG", 3) == 0)
            s += 3;
        if (strcmp(s, "TERM") != 0 && strcmp(s, "KILL") != 0)
            return fail(e, "signal", "signal must be TERM or KILL");
        *signal = strcmp(s, "TERM") == 0 ? "TERM" : "KILL";
    }
    if (get_int(in, "", "grace_seconds", VALIDATE_GRACE_MIN,
                VALIDATE_GRACE_MAX, &g, e) < 0)
        return -1;
    if (g != 0 && strcmp(*signal, "KILL") == 0)
        return fail(e, "grace_seconds",
                    "grace_seconds applies to signal TERM only (KILL "
                    "destroys at once)");
    *grace = (int)g;
    return 0;
}

static int
image_token_ok(const char *s, size_t max, int tag)
{
    size_t n = strlen(s);

    if (n == 0 || n > max)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                 c == '.' || c == '-' || c == '_' ||
                 (tag && c >= 'A' && c <= 'Z');
        if (!ok)
            return 0;
    }
    return 1;
}

static int
digest_field(json_t *in, json_t *out, const char *key, struct verr *e)
{
    json_t *v = json_object_get(in, key);

    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_string(v) || validate_image_ref(json_string_value(v)) < 0 ||
        strncmp(json_string_value(v), "sha256:", 7) != 0)
        return fail(e, key, "%s must be a blob digest sha256:<64 hex>", key);
    json_object_set(out, key, v);
    return 0;
}

json_t *
validate_image_create(json_t *in, struct verr *e)
{
    static const char *const keys[] = {"name",   "tag",  "kind", "kernel",
                                       "initrd", "disk", "cmdline", NULL};
    json_t *out = json_object();
    const char *name = NULL, *tag = "latest", *kind = NULL, *cmdline = "";
    int rc;

    memset(e, 0, sizeof(*e));
    if (check_body(in, e) < 0 || check_keys(in, "", keys, e) < 0)
        goto bad;
    rc = get_str(in, "name", 128, &name, e);
    if (rc < 0)
        goto bad;
    if (rc == 1 || !image_token_ok(name, 128, 0)) {
        fail(e, "name",
             "name must be 1-128 lower-case letters, digits, '.', '-' or "
             "'_'");
        goto bad;
    }
    rc = get_str(in, "tag", 128, &tag, e);
    if (rc < 0 || (rc == 0 && !image_token_ok(tag, 128, 1))) {
        fail(e, "tag", "tag must be 1-128 letters, digits, '.', '-' or '_'");
        goto bad;
    }
    rc = get_str(in, "kind", 16, &kind, e);
    if (rc < 0)
        goto bad;
    if (rc == 1 ||
        (strcmp(kind, "kernel") != 0 && strcmp(kind, "disk") != 0)) {
        fail(e, "kind", "kind must be kernel or disk");
        goto bad;
    }
    if (digest_field(in, out, "kernel", e) < 0 ||
        digest_field(in, out, "initrd", e) < 0 ||
        digest_field(in, out, "disk", e) < 0)
        goto bad;
    if (strcmp(kind, "kernel") == 0 && !json_object_get(out, "kernel")) {
        fail(e, "kernel", "a kernel image needs a kernel blob");
        goto bad;
    }
    if (strcmp(kind, "disk") == 0 && !json_object_get(out, "disk")) {
        fail(e, "disk", "a disk image needs a disk blob");
        goto bad;
    }
    rc = get_str(in, "cmdline", CMDLINE_IMAGE_MAX, &cmdline, e);
    if (rc < 0)
        goto bad;
    /* A disk image boots its disk through the BIOS, or the kernel it
     * names (root on the disk): initrd and cmdline go with a kernel. */
    if (!json_object_get(out, "kernel") &&
        (json_object_get(out, "initrd") || cmdline[0] != '\0')) {
        fail(e, json_object_get(out, "initrd") ? "initrd" : "cmdline",
             "initrd and cmdline need a kernel blob (a disk image without "
             "a kernel boots through the BIOS)");
        goto bad;
    }
    json_object_set_new(out, "name", json_string(name));
    json_object_set_new(out, "tag", json_string(tag));
    json_object_set_new(out, "kind", json_string(kind));
    json_object_set_new(out, "cmdline", json_string(cmdline));
    return out;
bad:
    json_decref(out);
    return NULL;
}
