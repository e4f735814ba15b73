/*
 * list: the one shape of every `ls`-style command (services, hosts,
 * images; ps and events use its pieces): flags that become query
 * filters, every page of the list route, then the API's JSON list or a
 * table (see cmd_priv.h).
 */
#include "cli.h"

#include <string.h>

#include "cmd_priv.h"
#include "mem.h"

struct list_state {
    const struct cli_list *l;
    const char *one[CLI_LIST_MAX_FILTERS]; /* single-valued filters */
    json_t *many[CLI_LIST_MAX_FILTERS];    /* repeatable ones */
};

char *
cli_list_query(char *path, const char *key, const char *val)
{
    if (val == NULL)
        return path;
    char *esc = cli_escape(val);
    char *p =
        xasprintf("%s%c%s=%s", path, strchr(path, '?') ? '&' : '?', key, esc);
    free(esc);
    free(path);
    return p;
}

char *
cli_add_selectors(char *path, json_t *selectors)
{
    size_t i;
    json_t *v;

    json_array_foreach(selectors, i, v) path =
        cli_list_query(path, "label", json_string_value(v));
    return path;
}

int
cli_list_print(struct cli_ctx *ctx, json_t *items, cli_list_print_fn print)
{
    if (ctx->output == FMT_JSON) {
        /* Every page was fetched: one list, no cursor. */
        json_t *wrap = json_pack("{s:O,s:n}", "items", items, "next");
        cli_print_json(ctx, wrap);
        json_decref(wrap);
    } else {
        print(ctx->out, items, ctx->output, time(NULL), ctx->color);
    }
    return 0;
}

static int
list_opt(struct cli_ctx *ctx, void *st, int id, const char *val)
{
    struct list_state *s = st;
    const struct cli_list_filter *f = &s->l->filters[id - 1];

    if (!f->repeatable) {
        s->one[id - 1] = val;
        return 0;
    }
    /* A label selector term is never empty; say so before the server. */
    if (val[0] == '\0')
        return cli_usage(ctx, s->l->cmd, "--%s needs KEY=VALUE or KEY",
                         f->long_name);
    json_array_append_new(s->many[id - 1], json_string(val));
    return 0;
}

int
cli_list_run(struct cli_ctx *ctx, const struct cli_list *l, int argc,
             char **argv)
{
    struct arg_spec specs[CLI_LIST_MAX_FILTERS + 1];
    struct list_state s = {.l = l};
    char **pos = NULL, *path = NULL;
    json_t *items = NULL;
    int n = 0, npos, rc;

    for (; l->filters != NULL && l->filters[n].long_name != NULL; n++) {
        if (n == CLI_LIST_MAX_FILTERS)
            return cli_fail(ctx, "%s: internal error: too many filters",
                            l->cmd);
        specs[n] = (struct arg_spec){l->filters[n].long_name,
                                     l->filters[n].short_name, true, n + 1};
        s.many[n] = json_array();
    }
    specs[n] = (struct arg_spec){NULL, 0, false, 0};
    rc =
        cli_parse(ctx, l->cmd, specs, 0, argc, argv, list_opt, &s, &pos, &npos);
    if (rc == 0)
        rc = cli_want_args(ctx, l->cmd, pos, npos, 0, 0, NULL);
    if (rc != 0)
        goto out;
    path = xstrdup(l->route);
    for (int i = 0; i < n; i++) {
        size_t k;
        json_t *v;
        path = cli_list_query(path, l->filters[i].key, s.one[i]);
        json_array_foreach(s.many[i], k, v) path =
            cli_list_query(path, l->filters[i].key, json_string_value(v));
    }
    rc = cli_api_list(ctx, path, &items);
    if (rc == 0)
        rc = cli_list_print(ctx, items, l->print);
out:
    for (int i = 0; i < n; i++)
        json_decref(s.many[i]);
    json_decref(items);
    free(path);
    free(pos);
    return rc;
}

int
cli_each_run(struct cli_ctx *ctx, const struct cli_each *e, const char *method,
             const char *suffix, int argc, char **argv)
{
    bool get = strcmp(method, "GET") == 0;
    json_t *all = json_array();
    char **pos = NULL;
    int npos, rc;

    rc = cli_parse(ctx, e->cmd, NULL, 0, argc, argv, NULL, NULL, &pos, &npos);
    if (rc == 0)
        rc = cli_want_args(ctx, e->cmd, pos, npos, 1, -1, e->need);
    for (int i = 0;
         (rc == 0 || (rc == CLI_EXIT_FAIL && e->keep_going)) && i < npos; i++) {
        json_t *obj = NULL;
        char *path = cli_object_path(e->collection, pos[i], suffix);

        if (cli_api(ctx, method, path, NULL, &obj, NULL) != 0)
            rc = CLI_EXIT_FAIL;
        else if (get)
            json_array_append(all, obj);
        else if (e->json_answers && ctx->output == FMT_JSON)
            cli_print_json(ctx, obj);
        else if (e->done != NULL)
            e->done(ctx, pos[i], obj);
        else
            cli_print_line(ctx, pos[i]);
        json_decref(obj);
        free(path);
    }
    if (rc == 0 && get)
        cli_print_json(ctx, npos == 1 ? json_array_get(all, 0) : all);
    json_decref(all);
    free(pos);
    return rc;
}

static bool
sub_is(const char *sub, const char *name, const char *alias)
{
    return strcmp(sub, name) == 0 || (alias != NULL && strcmp(sub, alias) == 0);
}

int
cli_resource_run(struct cli_ctx *ctx, const struct cli_resource *r, int argc,
                 char **argv)
{
    const char *sub;

    if (argc < 2 || argv[1][0] == '-')
        return cli_list_run(ctx, r->list, argc, argv);
    sub = argv[1];
    if (sub_is(sub, "ls", "list"))
        return cli_list_run(ctx, r->list, argc - 1, argv + 1);
    if (sub_is(sub, "inspect", "get"))
        return cli_each_run(ctx, r->each, "GET", NULL, argc - 1, argv + 1);
    for (const struct cli_action *a = r->actions; a->name != NULL; a++)
        if (sub_is(sub, a->name, a->alias))
            return cli_each_run(ctx, r->each, a->method, a->suffix, argc - 1,
                                argv + 1);
    if (r->other != NULL && strcmp(sub, r->other) == 0)
        return r->other_run(ctx, argc - 1, argv + 1);
    return cli_usage(ctx, r->list->cmd, "unknown subcommand \"%s\" (%s)", sub,
                     r->subs);
}
