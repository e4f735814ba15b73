/*
 * labels: label rules, canonical form and selectors (see labels.h). The
 * same limits are CHECKs in migrations/0020_baseline.sql (functions/bound/cloud_labels_ok.sql).
 */
#define LOG_MODULE "labels"
#include "labels.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mem.h"

static int
alnum(char c)
{
    return isascii((unsigned char)c) && isalnum((unsigned char)c);
}

/* 1..max of [A-Za-z0-9._-], alphanumeric at both ends. */
static int
name_ok(const char *s, size_t n, size_t max)
{
    if (n == 0 || n > max || !alnum(s[0]) || !alnum(s[n - 1]))
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!alnum(s[i]) && s[i] != '.' && s[i] != '_' && s[i] != '-')
            return 0;
    return 1;
}

/* A DNS subdomain: dot-separated lower-case labels of 1..63 characters. */
static int
prefix_ok(const char *s, size_t n)
{
    size_t start = 0;

    if (n == 0 || n > LABEL_PREFIX_MAX)
        return 0;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || s[i] == '.') {
            size_t len = i - start;
            if (len == 0 || len > 63 || s[start] == '-' || s[i - 1] == '-')
                return 0;
            start = i + 1;
            continue;
        }
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') ||
              s[i] == '-'))
            return 0;
    }
    return 1;
}

int
labels_key_ok(const char *k)
{
    const char *slash = strchr(k, '/');

    if (slash == NULL)
        return name_ok(k, strlen(k), LABEL_NAME_MAX);
    return prefix_ok(k, (size_t)(slash - k)) &&
           name_ok(slash + 1, strlen(slash + 1), LABEL_NAME_MAX);
}

int
labels_value_ok(const char *v)
{
    return *v == '\0' || name_ok(v, strlen(v), LABEL_VALUE_MAX);
}

int
labels_check(json_t *labels, char *field, size_t fieldlen, char *msg,
             size_t msglen)
{
    const char *k;
    json_t *v;

    snprintf(field, fieldlen, "labels");
    if (!json_is_object(labels)) {
        snprintf(msg, msglen, "labels must be an object of strings");
        return -1;
    }
    if (json_object_size(labels) > LABELS_MAX) {
        snprintf(msg, msglen, "labels must have at most %d keys, not %zu",
                 LABELS_MAX, json_object_size(labels));
        return -1;
    }
    json_object_foreach(labels, k, v)
    {
        if (strlen(k) > LABEL_PREFIX_MAX + 1 + LABEL_NAME_MAX ||
            !labels_key_ok(k)) {
            snprintf(msg, msglen,
                     "label key \"%.80s\" must be [prefix/]name: name 1-63 "
                     "characters [A-Za-z0-9._-] starting and ending with a "
                     "letter or digit, prefix a DNS subdomain",
                     k);
            return -1;
        }
        snprintf(field, fieldlen, "labels.%.100s", k);
        if (!json_is_string(v)) {
            snprintf(msg, msglen, "label %.80s must be a string", k);
            return -1;
        }
        if (strlen(json_string_value(v)) != json_string_length(v) ||
            !labels_value_ok(json_string_value(v))) {
            snprintf(msg, msglen,
                     "label %.80s: value \"%.80s\" must be empty or 1-63 "
                     "characters [A-Za-z0-9._-] starting and ending with a "
                     "letter or digit",
                     k, json_string_value(v));
            return -1;
        }
    }
    return 0;
}

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

char *
labels_canon(json_t *labels)
{
    const char *keys[LABELS_MAX], *k;
    json_t *v;
    size_t n = 0, len = 2, off = 0;
    char *out;

    if (!json_is_object(labels) || json_object_size(labels) == 0)
        return NULL;
    json_object_foreach(labels, k, v)
    {
        if (n == LABELS_MAX || !json_is_string(v))
            return NULL; /* not stored: the CHECKs refuse it */
        keys[n++] = k;
        len += strlen(k) + json_string_length(v) + 2;
    }
    qsort(keys, n, sizeof(keys[0]), cmp_str);
    out = xmalloc(len + 1);
    out[off++] = '\n';
    for (size_t i = 0; i < n; i++) {
        const char *val = json_string_value(json_object_get(labels, keys[i]));
        off +=
            (size_t)snprintf(out + off, len + 1 - off, "%s=%s\n", keys[i], val);
    }
    out[off] = '\0';
    return out;
}

char *
labels_canon_text(const char *text)
{
    json_t *j;
    char *out;

    if (text == NULL || strcmp(text, "{}") == 0)
        return NULL;
    j = json_loads(text, 0, NULL);
    out = labels_canon(j);
    json_decref(j);
    return out;
}

static int
sel_term(struct label_sel *s, const char *t, size_t n, char *msg, size_t msglen)
{
    const char *eq = memchr(t, '=', n);
    char *key, *val = NULL;

    if (s->n == LABEL_SEL_MAX) {
        snprintf(msg, msglen, "a label selector has at most %d terms",
                 LABEL_SEL_MAX);
        return -1;
    }
    key = xstrndup(t, eq ? (size_t)(eq - t) : n);
    if (eq)
        val = xstrndup(eq + 1, n - (size_t)(eq - t) - 1);
    if (!labels_key_ok(key) || (val && !labels_value_ok(val))) {
        snprintf(msg, msglen,
                 "label selector \"%.*s\" must be key=value or key, with a "
                 "valid label key and value",
                 (int)(n > 120 ? 120 : n), t);
        free(key);
        free(val);
        return -1;
    }
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->t[i].key, key) == 0 && s->t[i].value && val &&
            strcmp(s->t[i].value, val) != 0)
            s->never = 1;
    s->t[s->n].key = key;
    s->t[s->n].value = val;
    s->n++;
    return 0;
}

int
labels_sel_add(struct label_sel *s, const char *expr, char *msg, size_t msglen)
{
    const char *p = expr;

    if (*expr == '\0') {
        snprintf(msg, msglen, "label selector must not be empty");
        return -1;
    }
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        if (sel_term(s, p, n, msg, msglen) < 0)
            return -1;
        if (comma == NULL)
            return 0;
        p = comma + 1;
    }
}

int
labels_sel_match(const struct label_sel *s, const char *canon)
{
    if (s == NULL || s->n == 0)
        return 1;
    if (s->never || canon == NULL)
        return 0;
    for (int i = 0; i < s->n; i++) {
        const char *k = s->t[i].key, *p = canon;
        size_t kl = strlen(k);
        int found = 0;
        /* canon is "\nk=v\n...": find "\n<key>=" and compare the value. */
        while ((p = strstr(p, k)) != NULL) {
            if (p[-1] == '\n' && p[kl] == '=') {
                const char *v = p + kl + 1, *end = strchr(v, '\n');
                const char *want = s->t[i].value;
                found =
                    want == NULL || ((size_t)(end - v) == strlen(want) &&
                                     strncmp(v, want, (size_t)(end - v)) == 0);
                break;
            }
            p += kl;
        }
        if (!found)
            return 0;
    }
    return 1;
}

void
labels_sel_sql(const struct label_sel *s, char **eq, char **keys)
{
    json_t *o = json_object(), *a = json_array();

    for (int i = 0; i < s->n; i++) {
        if (s->t[i].value)
            json_object_set_new(o, s->t[i].key, json_string(s->t[i].value));
        else
            json_array_append_new(a, json_string(s->t[i].key));
    }
    if (s->never) /* a value no label can have: nothing matches */
        json_object_set_new(o, s->t[0].key, json_string("\n"));
    *eq = json_dumps(o, JSON_COMPACT);
    *keys = json_dumps(a, JSON_COMPACT);
    if (*eq == NULL || *keys == NULL)
        fatalx("cannot encode a label selector");
    json_decref(o);
    json_decref(a);
}

void
labels_sel_free(struct label_sel *s)
{
    for (int i = 0; i < s->n; i++) {
        free(s->t[i].key);
        free(s->t[i].value);
    }
    s->n = 0;
}
