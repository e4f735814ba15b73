/*
 * cmd_hosts: `hosts` ls, inspect, cordon, uncordon and drain. Hosts are
 * addressed by name. Cordon/uncordon answer at once; drain answers 202 and
 * the reconciler moves the instances, so `hosts ls` shows its progress.
 */
#include "cli.h"

#include <string.h>

#include "cmd_priv.h"
#include "mem.h"


static int
hosts_ls(struct cli_ctx *ctx, int argc, char **argv)
{
    static const struct cli_list_filter filters[] = {
        {"state", 0, "state", false},
        {NULL, 0, NULL, false},
    };
    static const struct cli_list list = {"hosts", "/v1/hosts", filters,
                                         fmt_hosts};
    return cli_list_run(ctx, &list, argc, argv);
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
        char *path = cli_object_path("hosts", pos[i], suffix);
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
