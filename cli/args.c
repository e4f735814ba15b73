/*
 * args: option parsing for cloudctl (see args.h for why not getopt_long).
 * Accepts --name value, --name=value, -n value, -nvalue, bundles of short
 * flags (-af) and "--" to end options.
 */
#include "args.h"

#include <stdio.h>
#include <string.h>

void
args_init(struct args_iter *it, int argc, char **argv, int first,
          const struct arg_spec *specs, const struct arg_spec *specs2,
          unsigned flags)
{
    memset(it, 0, sizeof(*it));
    it->argc = argc;
    it->argv = argv;
    it->i = first;
    it->specs[0] = specs;
    it->specs[1] = specs2;
    it->flags = flags;
}

static const struct arg_spec *
find_long(const struct args_iter *it, const char *name, size_t len)
{
    for (int t = 0; t < 2; t++) {
        const struct arg_spec *s = it->specs[t];
        for (; s != NULL && s->long_name != NULL; s++)
            if (strlen(s->long_name) == len &&
                memcmp(s->long_name, name, len) == 0)
                return s;
    }
    return NULL;
}

static const struct arg_spec *
find_short(const struct args_iter *it, char c)
{
    for (int t = 0; t < 2; t++) {
        const struct arg_spec *s = it->specs[t];
        for (; s != NULL && s->long_name != NULL; s++)
            if (s->short_name == c)
                return s;
    }
    return NULL;
}

static int
next_short(struct args_iter *it, const char **val)
{
    char c = *it->shortp++;
    const struct arg_spec *s = find_short(it, c);

    if (s == NULL) {
        snprintf(it->error, sizeof(it->error), "unknown flag -%c", c);
        it->shortp = NULL;
        return ARGS_ERROR;
    }
    if (!s->takes_value) {
        if (*it->shortp == '\0')
            it->shortp = NULL;
        *val = NULL;
        return s->id;
    }
    if (*it->shortp != '\0') {
        *val = it->shortp; /* -sKILL */
    } else if (it->i < it->argc) {
        *val = it->argv[it->i++];
    } else {
        snprintf(it->error, sizeof(it->error), "flag -%c needs a value", c);
        it->shortp = NULL;
        return ARGS_ERROR;
    }
    it->shortp = NULL;
    return s->id;
}

int
args_next(struct args_iter *it, const char **val)
{
    *val = NULL;
    if (it->shortp != NULL)
        return next_short(it, val);
    if (it->i >= it->argc)
        return ARGS_END;

    const char *a = it->argv[it->i++];
    if (it->only_positional || a[0] != '-' || a[1] == '\0') {
        /* "-" alone is a positional (stdin, by convention). */
        if (it->flags & ARGS_STOP_AT_POSITIONAL)
            it->only_positional = true;
        *val = a;
        return ARGS_POSITIONAL;
    }
    if (strcmp(a, "--") == 0) {
        it->only_positional = true;
        return args_next(it, val);
    }
    if (a[1] != '-') {
        it->shortp = a + 1;
        return next_short(it, val);
    }

    const char *name = a + 2;
    const char *eq = strchr(name, '=');
    size_t len = eq ? (size_t)(eq - name) : strlen(name);
    const struct arg_spec *s = find_long(it, name, len);
    if (s == NULL) {
        snprintf(it->error, sizeof(it->error), "unknown flag --%.*s",
                 (int)(len > 64 ? 64 : len), name);
        return ARGS_ERROR;
    }
    if (!s->takes_value) {
        if (eq != NULL) {
            snprintf(it->error, sizeof(it->error), "flag --%s takes no value",
                     s->long_name);
            return ARGS_ERROR;
        }
        return s->id;
    }
    if (eq != NULL) {
        *val = eq + 1;
    } else if (it->i < it->argc) {
        *val = it->argv[it->i++];
    } else {
        snprintf(it->error, sizeof(it->error), "flag --%s needs a value",
                 s->long_name);
        return ARGS_ERROR;
    }
    return s->id;
}
