/*
 * cmd_images: `images` ls, inspect, push and rm. The API has list and get
 * only; push and rm send the natural request (POST /v1/images, DELETE
 * /v1/images/{ref}) and report what the server answers, so they start to
 * work the day the controller grows the routes, and never pretend before.
 */
#include "cli.h"

#include <string.h>
#include <unistd.h>

#include "mem.h"

enum {
    OPT_KERNEL = 1,
    OPT_INITRD,
    OPT_DISK,
    OPT_CMDLINE,
};

static char *
image_path(const char *ref)
{
    char *esc = cli_escape(ref);
    char *p = xasprintf("/v1/images/%s", esc);
    free(esc);
    return p;
}

static int
images_ls(struct cli_ctx *ctx, int argc, char **argv)
{
    char **pos = NULL;
    int npos, rc;
    json_t *items = NULL;

    rc = cli_parse(ctx, "images", NULL, 0, argc, argv, NULL, NULL, &pos, &npos);
    if (rc == 0 && npos > 0)
        rc = cli_usage(ctx, "images", "unexpected argument \"%s\"", pos[0]);
    if (rc == 0)
        rc = cli_api_list(ctx, "/v1/images", &items);
    if (rc == 0) {
        if (ctx->output == FMT_JSON) {
            json_t *wrap = json_pack("{s:O,s:n}", "items", items, "next");
            cli_print_json(ctx, wrap);
            json_decref(wrap);
        } else {
            fmt_images(ctx->out, items, ctx->output, time(NULL), ctx->color);
        }
    }
    json_decref(items);
    free(pos);
    return rc;
}

static int
images_each(struct cli_ctx *ctx, const char *method, int argc, char **argv)
{
    char **pos = NULL;
    int npos, rc;
    json_t *all = json_array();
    bool get = strcmp(method, "GET") == 0;

    rc = cli_parse(ctx, "images", NULL, 0, argc, argv, NULL, NULL, &pos, &npos);
    if (rc == 0 && npos < 1)
        rc = cli_usage(ctx, "images", "an image REF or ID is required");
    for (int i = 0; rc == 0 && i < npos; i++) {
        json_t *obj = NULL;
        char *path = image_path(pos[i]);
        if (cli_api(ctx, method, path, NULL, &obj, NULL) != 0) {
            rc = CLI_EXIT_FAIL;
        } else if (get) {
            json_array_append(all, obj);
        } else {
            char *s = fmt_sanitize(pos[i], 0);
            fprintf(ctx->out, "%s\n", s);
            free(s);
        }
        json_decref(obj);
        free(path);
    }
    if (rc == 0 && get)
        cli_print_json(ctx, npos == 1 ? json_array_get(all, 0) : all);
    json_decref(all);
    free(pos);
    return rc;
}

struct push_opts {
    const char *kernel, *initrd, *disk, *cmdline;
};

static int
push_opt(struct cli_ctx *ctx, void *st, int id, const char *val)
{
    struct push_opts *o = st;
    (void)ctx;
    switch (id) {
    case OPT_KERNEL:
        o->kernel = val;
        break;
    case OPT_INITRD:
        o->initrd = val;
        break;
    case OPT_DISK:
        o->disk = val;
        break;
    case OPT_CMDLINE:
        o->cmdline = val;
        break;
    }
    return 0;
}

static int
images_push(struct cli_ctx *ctx, int argc, char **argv)
{
    static const struct arg_spec specs[] = {
        {"kernel", 0, true, OPT_KERNEL},
        {"initrd", 0, true, OPT_INITRD},
        {"disk", 0, true, OPT_DISK},
        {"cmdline", 0, true, OPT_CMDLINE},
        {NULL, 0, false, 0},
    };
    struct push_opts o = {0};
    char **pos = NULL;
    int npos, rc;
    json_t *body = NULL, *ans = NULL;

    rc = cli_parse(ctx, "images", specs, 0, argc, argv, push_opt, &o, &pos,
                   &npos);
    if (rc != 0)
        goto out;
    if (npos != 1) {
        rc = cli_usage(ctx, "images", "push needs exactly one NAME:TAG");
        goto out;
    }
    if ((o.kernel == NULL) == (o.disk == NULL)) {
        rc = cli_usage(
            ctx, "images",
            "push needs --kernel FILE (with optional --initrd) or --disk FILE");
        goto out;
    }
    const char *files[] = {o.kernel, o.initrd, o.disk};
    for (size_t i = 0; i < 3; i++)
        if (files[i] != NULL && access(files[i], R_OK) != 0) {
            rc = cli_fail(ctx, "images push: cannot read %s", files[i]);
            goto out;
        }
    /* The upload protocol is not in the API yet: announce the image and
     * let the server's answer decide, without sending any blob. */
    body = json_pack("{s:s,s:s}", "ref", pos[0], "kind",
                     o.kernel ? "kernel" : "disk");
    if (o.cmdline != NULL)
        json_object_set_new(body, "cmdline", json_string(o.cmdline));
    rc = cli_api(ctx, "POST", "/v1/images", body, &ans, NULL);
    if (rc == 0) {
        if (ctx->output == FMT_JSON) {
            cli_print_json(ctx, ans);
        } else {
            char *s = fmt_sanitize(pos[0], 0);
            fprintf(ctx->out, "%s\n", s);
            free(s);
        }
    }
out:
    json_decref(body);
    json_decref(ans);
    free(pos);
    return rc;
}

int
cmd_images(struct cli_ctx *ctx, int argc, char **argv)
{
    if (argc < 2 || argv[1][0] == '-')
        return images_ls(ctx, argc, argv);
    const char *sub = argv[1];
    if (strcmp(sub, "ls") == 0 || strcmp(sub, "list") == 0)
        return images_ls(ctx, argc - 1, argv + 1);
    if (strcmp(sub, "inspect") == 0 || strcmp(sub, "get") == 0)
        return images_each(ctx, "GET", argc - 1, argv + 1);
    if (strcmp(sub, "rm") == 0 || strcmp(sub, "delete") == 0)
        return images_each(ctx, "DELETE", argc - 1, argv + 1);
    if (strcmp(sub, "push") == 0)
        return images_push(ctx, argc - 1, argv + 1);
    return cli_usage(ctx, "images",
                     "unknown subcommand \"%s\" (ls, inspect, push, rm)", sub);
}
