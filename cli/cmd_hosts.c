/*
 * cmd_hosts: `hosts` ls, inspect, cordon, uncordon and drain. Hosts are
 * addressed by name. Cordon/uncordon answer at once; drain answers 202 and
 * the reconciler moves the instances, so `hosts ls` shows its progress.
 */
#include "cli.h"

#include <string.h>

#include "mem.h"

enum { OPT_STATE = 1 };

static char *
host_path(const char *name, const char *suffix)
{
    char *esc = cli_escape(name);
    char *p = xasprintf("/v1/hosts/%s%s", esc, suffix ? suffix : "");
    free(esc);
    return p;
}

static int
ls_opt(struct cli_ctx *ctx, void *st, int id, const char *val)
{
    (void)ctx;
    if (id == OPT_STATE)
        *(const char **)st = val;
    return 0;
}

static int
hosts_ls(struct cli_ctx *ctx, int argc, char **argv)
{
    static const struct arg_spec specs[] = {
        {"state", 0, true, OPT_STATE},
        {NULL, 0, false, 0},
    };
    const char *state = NULL;
    char **pos = NULL, *path = NULL;
    int npos, rc;
    json_t *items = NULL;

    rc = cli_parse(ctx, "hosts", specs, 0, argc, argv, ls_opt, &state, &pos,
                   &npos);
    if (rc != 0)
        goto out;
    if (npos > 0) {
        rc = cli_usage(ctx, "hosts", "unexpected argument \"%s\"", pos[0]);
        goto out;
    }
    if (state != NULL) {
        char *esc = cli_escape(state);
        path = xasprintf("/v1/hosts?state=%s", esc);
        free(esc);
    } else {
        path = xstrdup("/v1/hosts");
    }
    rc = cli_api_list(ctx, path, &items);
    if (rc != 0)
        goto out;
    if (ctx->output == FMT_JSON) {
        json_t *wrap = json_pack("{s:O,s:n}", "items", items, "next");
        cli_print_json(ctx, wrap);
        json_decref(wrap);
    } else {
        fmt_hosts(ctx->out, items, ctx->output, time(NULL), ctx->color);
    }
out:
    json_decref(items);
    free(path);
    free(pos);
    return rc;
}

/* inspect (GET) or an action (POST .../cordon etc.) on each named host. */
static int
hosts_each(struct cli_ctx *ctx, const char *action, int argc, char **argv)
{
    char **pos = NULL;
    int npos, rc;
    json_t *all = json_array();
    bool get = action == NULL;

    rc = cli_parse(ctx, "hosts", NULL, 0, argc, argv, NULL, NULL, &pos, &npos);
    if (rc == 0 && npos < 1)
        rc = cli_usage(ctx, "hosts", "a host NAME is required");
    for (int i = 0; rc == 0 && i < npos; i++) {
        json_t *obj = NULL;
        char *suffix = get ? NULL : xasprintf("/%s", action);
        char *path = host_path(pos[i], suffix);
        if (cli_api(ctx, get ? "GET" : "POST", path, NULL, &obj, NULL) != 0) {
            rc = CLI_EXIT_FAIL;
        } else if (get) {
            json_array_append(all, obj);
        } else if (ctx->output == FMT_JSON) {
            cli_print_json(ctx, obj);
        } else {
            const char *st = json_string_value(json_object_get(obj, "state"));
            char *s = fmt_sanitize(pos[i], 0);
            char *t = fmt_sanitize(st ? st : "?", 32);
            fprintf(ctx->out, "%s %s\n", s, t);
            free(s);
            free(t);
        }
        json_decref(obj);
        free(path);
        free(suffix);
    }
    if (rc == 0 && get)
        cli_print_json(ctx, npos == 1 ? json_array_get(all, 0) : all);
    json_decref(all);
    free(pos);
    return rc;
}

int
cmd_hosts(struct cli_ctx *ctx, int argc, char **argv)
{
    if (argc < 2 || argv[1][0] == '-')
        return hosts_ls(ctx, argc, argv);
    const char *sub = argv[1];
    if (strcmp(sub, "ls") == 0 || strcmp(sub, "list") == 0)
        return hosts_ls(ctx, argc - 1, argv + 1);
    if (strcmp(sub, "inspect") == 0 || strcmp(sub, "get") == 0)
        return hosts_each(ctx, NULL, argc - 1, argv + 1);
    if (strcmp(sub, "cordon") == 0 || strcmp(sub, "uncordon") == 0 ||
        strcmp(sub, "drain") == 0)
        return hosts_each(ctx, sub, argc - 1, argv + 1);
    return cli_usage(
        ctx, "hosts",
        "unknown subcommand \"%s\" (ls, inspect, cordon, uncordon, drain)",
        sub);
}
