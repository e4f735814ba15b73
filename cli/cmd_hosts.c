/*
 * cmd_hosts: `hosts` ls, inspect, cordon, uncordon and drain. Hosts are
 * addressed by name. Cordon/uncordon answer at once; drain answers 202 and
 * the reconciler moves the instances, so `hosts ls` shows its progress.
 */
#include "cli.h"

#include <string.h>

#include "cmd_priv.h"
#include "mem.h"

/* After cordon, uncordon or drain: "NAME STATE". */
static void
host_done(struct cli_ctx *ctx, const char *name, json_t *host)
{
    const char *st = cli_jstr(host, "state");
    char *s = fmt_sanitize(name, 0);
    char *t = fmt_sanitize(st ? st : "?", 32);

    fprintf(ctx->out, "%s %s\n", s, t);
    free(s);
    free(t);
}

int
cmd_hosts(struct cli_ctx *ctx, int argc, char **argv)
{
    static const struct cli_list_filter filters[] = {
        {"state", 0, "state", false},
        {NULL, 0, NULL, false},
    };
    static const struct cli_list list = {"hosts", "/v1/hosts", filters,
                                         fmt_hosts};
    static const struct cli_each each = {.cmd = "hosts",
                                         .collection = "hosts",
                                         .need = "a host NAME is required",
                                         .json_answers = true,
                                         .done = host_done};
    static const struct cli_action actions[] = {
        {"cordon", NULL, "POST", "/cordon"},
        {"uncordon", NULL, "POST", "/uncordon"},
        {"drain", NULL, "POST", "/drain"},
        {NULL, NULL, NULL, NULL},
    };
    static const struct cli_resource r = {
        &list, &each, actions,
        NULL,  NULL,  "ls, inspect, cordon, uncordon, drain"};

    return cli_resource_run(ctx, &r, argc, argv);
}
