/*
 * format_config: what `config get`, `config history` and `endpoints`
 * print (see format.h). Kept apart from format.c, which holds the tables of
 * the objects every `ls` shows.
 */
#include "format.h"

#include <stdlib.h>
#include <string.h>

#include "mem.h"

/* A table cell of a config value: short in a table, whole when wide. */
#define VALUE_SHORT 60
#define SUMMARY_SHORT 60

static int
cmp_key(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The object's keys, sorted (byte order, like `env | sort`). */
static const char **
sorted_keys(const json_t *obj, size_t *n)
{
    const char *key, **keys;
    json_t *v;
    size_t i = 0;

    *n = json_is_object(obj) ? json_object_size(obj) : 0;
    keys = xcalloc(*n + 1, sizeof(*keys));
    if (*n == 0)
        return keys;
    json_object_foreach((json_t *)obj, key, v)
    {
        (void)v;
        keys[i++] = key;
    }
    qsort(keys, *n, sizeof(*keys), cmp_key);
    return keys;
}

/* A value as text: strings as they are, anything else as JSON. */
static char *
value_text(const json_t *v)
{
    if (json_is_string(v))
        return xstrdup(json_string_value(v));
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    return s ? s : xstrdup("");
}

static char *
shorten(char *s, size_t max)
{
    if (strlen(s) <= max)
        return s;
    char *r = xasprintf("%.*s...", (int)(max - 3), s);
    free(s);
    return r;
}

void
fmt_config(FILE *out, const json_t *cfg, enum fmt_mode mode)
{
    static const char *const head[] = {"KEY", "VALUE"};
    const json_t *map = json_object_get(cfg, "config");
    size_t n;
    const char **keys = sorted_keys(map, &n);

    if (mode == FMT_NAME) {
        for (size_t i = 0; i < n; i++) {
            char *s = fmt_sanitize(keys[i], 0);
            fprintf(out, "%s\n", s);
            free(s);
        }
        free(keys);
        return;
    }
    struct fmt_table *t = fmt_table_new(2, head);
    for (size_t i = 0; i < n; i++) {
        char *v = value_text(json_object_get(map, keys[i]));
        if (mode != FMT_WIDE)
            v = shorten(v, VALUE_SHORT);
        /* An empty value shows as "" rather than the table's "-". */
        const char *row[] = {keys[i], *v ? v : "\"\""};
        fmt_table_row(t, row, NULL);
        free(v);
    }
    fmt_table_print(t, out, false);
    fmt_table_free(t);
    free(keys);
}

/* "K=V,K2=V2" in key order. */
static char *
summary(const json_t *map)
{
    size_t n;
    const char **keys = sorted_keys(map, &n);
    char *r = xstrdup("");

    for (size_t i = 0; i < n; i++) {
        char *v = value_text(json_object_get(map, keys[i]));
        char *next = xasprintf("%s%s%s=%s", r, i ? "," : "", keys[i], v);
        free(v);
        free(r);
        r = next;
    }
    free(keys);
    return r;
}

void
fmt_config_history(FILE *out, const json_t *items, enum fmt_mode mode,
                   time_t now)
{
    static const char *const head[] = {"VERSION", "AGE", "KEYS", "CONFIG"};
    static const char *const whead[] = {"VERSION", "CREATED", "KEYS", "CONFIG"};
    size_t i;
    json_t *it;

    if (mode == FMT_NAME) {
        json_array_foreach((json_t *)items, i, it)
        {
            fprintf(out, "%" JSON_INTEGER_FORMAT "\n",
                    json_integer_value(json_object_get(it, "version")));
        }
        return;
    }
    struct fmt_table *t = fmt_table_new(4, mode == FMT_WIDE ? whead : head);
    json_array_foreach((json_t *)items, i, it)
    {
        const json_t *map = json_object_get(it, "config");
        const char *created =
            json_string_value(json_object_get(it, "created_at"));
        char *ver =
            xasprintf("%" JSON_INTEGER_FORMAT,
                      json_integer_value(json_object_get(it, "version")));
        char *when = mode == FMT_WIDE ? xstrdup(created ? created : "-")
                                      : fmt_age(created, now);
        char *nkeys = xasprintf(
            "%zu", json_is_object(map) ? json_object_size(map) : (size_t)0);
        char *sum = summary(map);
        if (mode != FMT_WIDE)
            sum = shorten(sum, SUMMARY_SHORT);
        const char *row[] = {ver, when, nkeys, sum};
        fmt_table_row(t, row, NULL);
        free(ver);
        free(when);
        free(nkeys);
        free(sum);
    }
    fmt_table_print(t, out, false);
    fmt_table_free(t);
}

void
fmt_endpoints(FILE *out, const json_t *eps, enum fmt_mode mode)
{
    static const char *const head[] = {"NAME", "ADDR"};
    static const char *const whead[] = {"NAME", "INSTANCE", "ADDRESS", "PORT",
                                        "ADDR"};
    const json_t *list = json_object_get(eps, "endpoints");
    size_t i;
    json_t *it;

    if (mode == FMT_NAME) {
        json_array_foreach((json_t *)list, i, it)
        {
            const char *a = json_string_value(json_object_get(it, "addr"));
            char *s = fmt_sanitize(a ? a : "-", 0);
            fprintf(out, "%s\n", s);
            free(s);
        }
        return;
    }
    struct fmt_table *t =
        mode == FMT_WIDE ? fmt_table_new(5, whead) : fmt_table_new(2, head);
    json_array_foreach((json_t *)list, i, it)
    {
        const char *name = json_string_value(json_object_get(it, "name"));
        const char *addr = json_string_value(json_object_get(it, "addr"));
        if (mode == FMT_WIDE) {
            json_t *p = json_object_get(it, "port");
            char *port = json_is_integer(p) ? xasprintf("%" JSON_INTEGER_FORMAT,
                                                        json_integer_value(p))
                                            : xstrdup("-");
            const char *row[] = {
                name, json_string_value(json_object_get(it, "instance")),
                json_string_value(json_object_get(it, "address")), port, addr};
            fmt_table_row(t, row, NULL);
            free(port);
        } else {
            const char *row[] = {name, addr};
            fmt_table_row(t, row, NULL);
        }
    }
    fmt_table_print(t, out, false);
    fmt_table_free(t);
}
