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

/* After cordon, uncordon or drain: "NAME STATE". */
static void
host_done(struct cli_ctx *ctx, const char *name, json_t *host)
{
    const char *st = json_string_value(json_object_get(host, "state"));
    char *s = fmt_sanitize(name, 0);
    char *t = fmt_sanitize(st ? st : "?", 32);

    fprintf(ctx->out, "%s %s\n", s, t);
    free(s);
    free(t);
}

/* inspect (GET) or an action (POST .../cordon etc.) on each named host. */
static int
hosts_each(struct cli_ctx *ctx, const char *action, int argc, char **argv)
{
    static const struct cli_each each = {
        "hosts", "hosts", "a host NAME is required", true, host_done};
    char *suffix = action ? xasprintf("/%s", action) : NULL;
    int rc =
        cli_each_run(ctx, &each, action ? "POST" : "GET", suffix, argc, argv);

    free(suffix);
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
