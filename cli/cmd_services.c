/*
 * cmd_services: `services` (ls, inspect, update, rm) and `scale`. Services
 * are addressed by name. Updates are PATCHes of the fields given, so a
 * concurrent change of another field is never overwritten.
 */
#include "cli.h"

#include <string.h>

#include "cmd_priv.h"
#include "mem.h"

enum {
    OPT_WAIT = 100,
    OPT_TIMEOUT,
    OPT_IMAGE,
    OPT_REPLICAS,
    OPT_ARG,
    OPT_LABEL,
    OPT_NO_LABELS,
    OPT_LINK,
    OPT_UNLINK,
    OPT_READY_WHEN,
};

/* ---- scale ----------------------------------------------------------- */

struct wait_opts {
    bool wait;
    long timeout;
};

static int
wait_opt(struct cli_ctx *ctx, const char *cmd, struct wait_opts *o, int id,
         const char *val)
{
    if (id == OPT_TIMEOUT)
        return cli_parse_timeout(ctx, cmd, val, &o->timeout);
    if (id == OPT_WAIT)
        o->wait = true;
    return 0;
}

static int
scale_opt(struct cli_ctx *ctx, void *st, int id, const char *val)
{
    return wait_opt(ctx, "scale", st, id, val);
}

int
cmd_scale(struct cli_ctx *ctx, int argc, char **argv)
{
    static const struct arg_spec specs[] = {
        {"wait", 'w', false, OPT_WAIT},
        {"timeout", 0, true, OPT_TIMEOUT},
        {NULL, 0, false, 0},
    };
    struct wait_opts o = {0};
    char **pos = NULL;
    int npos, rc;
    long long *counts = NULL;

    rc = cli_parse(ctx, "scale", specs, 0, argc, argv, scale_opt, &o, &pos,
                   &npos);
    if (rc == 0)
        rc = cli_want_args(ctx, "scale", pos, npos, 1, -1,
                           "SERVICE=REPLICAS is required");
    if (rc != 0)
        goto out;
    /* Check every argument before changing anything. */
    counts = xcalloc((size_t)npos, sizeof(*counts));
    for (int i = 0; i < npos; i++) {
        char *eq = strchr(pos[i], '=');
        if (eq == NULL || eq == pos[i] ||
            cli_parse_int(eq + 1, 0, 1000000, &counts[i]) < 0) {
            rc = cli_usage(ctx, "scale",
                           "\"%s\" is not SERVICE=REPLICAS (like web=3)",
                           pos[i]);
            goto out;
        }
    }
    for (int i = 0; i < npos; i++) {
        char *name = xstrndup(pos[i], (size_t)(strchr(pos[i], '=') - pos[i]));
        char *path = cli_object_path("services", name, NULL);
        json_t *body = json_pack("{s:I}", "replicas", (json_int_t)counts[i]);
        json_t *svc = NULL;
        if (cli_api(ctx, "PATCH", path, body, &svc, NULL) == 0) {
            if (ctx->output == FMT_JSON) {
                cli_print_json(ctx, svc);
            } else {
                char *s = fmt_sanitize(name, 0);
                fprintf(ctx->out, "%s scaled to %lld\n", s, counts[i]);
                free(s);
            }
            fflush(ctx->out);
        } else {
            rc = CLI_EXIT_FAIL;
        }
        json_decref(body);
        json_decref(svc);
        free(path);
        free(name);
    }
    for (int i = 0; rc == 0 && o.wait && i < npos; i++) {
        char *name = xstrndup(pos[i], (size_t)(strchr(pos[i], '=') - pos[i]));
        rc = cli_wait_service(ctx, name, o.timeout);
        free(name);
    }
out:
    free(counts);
    free(pos);
    return rc;
}

/* ---- services ls / inspect / rm -------------------------------------- */

/* After rm: the name, with " (deleting)" while its instances are still
 * going away (202). */
static void
service_done(struct cli_ctx *ctx, const char *name, json_t *svc)
{
    const char *st = cli_jstr(svc, "state");
    char *s = fmt_sanitize(name, 0);

    fprintf(ctx->out, "%s%s\n", s,
            st && strcmp(st, "deleting") == 0 ? " (deleting)" : "");
    free(s);
}

/* ---- services update ------------------------------------------------- */

struct update_opts {
    struct cli_spec spec;
    struct wait_opts wait;
    json_t *args;
    json_t *labels;
    bool no_labels;
    json_t *link;   /* names to add */
    json_t *unlink; /* names to remove */
};

static const struct arg_spec update_specs[] = {
    {"image", 0, true, OPT_IMAGE},
    {"replicas", 0, true, OPT_REPLICAS},
    {"arg", 0, true, OPT_ARG},
    {"wait", 'w', false, OPT_WAIT},
    {"timeout", 0, true, OPT_TIMEOUT},
    {"label", 'l', true, OPT_LABEL},
    {"no-labels", 0, false, OPT_NO_LABELS},
    {"link", 0, true, OPT_LINK},
    {"unlink", 0, true, OPT_UNLINK},
    {"ready-when", 0, true, OPT_READY_WHEN},
    CLI_SPEC_ARG_SPECS,
    {NULL, 0, false, 0},
};

static int
update_opt(struct cli_ctx *ctx, void *st, int id, const char *val)
{
    struct update_opts *o = st;
    long long n;

    switch (id) {
    case OPT_IMAGE:
        json_object_set_new(o->spec.body, "image", json_string(val));
        return 0;
    case OPT_REPLICAS:
        if (cli_parse_int(val, 0, 1000000, &n) < 0)
            return cli_usage(ctx, "services",
                             "--replicas \"%s\" is not a number", val);
        json_object_set_new(o->spec.body, "replicas", json_integer(n));
        return 0;
    case OPT_ARG:
        json_array_append_new(o->args, json_string(val));
        return 0;
    case OPT_LABEL:
        return cli_add_label(ctx, "services", o->labels, val);
    case OPT_READY_WHEN:
        if (strcmp(val, "running") != 0 && strcmp(val, "guest") != 0)
            return cli_usage(ctx, "services",
                             "--ready-when \"%s\" is not running or guest",
                             val);
        json_object_set_new(o->spec.body, "ready_when", json_string(val));
        return 0;
    case OPT_NO_LABELS:
        o->no_labels = true;
        return 0;
    case OPT_LINK:
    case OPT_UNLINK:
        if (val[0] == '\0')
            return cli_usage(ctx, "services", "--%s needs a service name",
                             id == OPT_LINK ? "link" : "unlink");
        json_array_append_new(id == OPT_LINK ? o->link : o->unlink,
                              json_string(val));
        return 0;
    case OPT_WAIT:
    case OPT_TIMEOUT:
        return wait_opt(ctx, "services", &o->wait, id, val);
    }
    return cli_spec_opt(ctx, "services", &o->spec, id, val);
}

int
cli_services_update_build(struct cli_ctx *ctx, int argc, char **argv,
                          json_t **body, char **name, bool *wait, long *timeout,
                          json_t **link, json_t **unlink)
{
    struct update_opts o = {0};
    char **pos = NULL;
    int npos, rc;

    *body = NULL;
    *name = NULL;
    *link = NULL;
    *unlink = NULL;
    cli_spec_init(&o.spec);
    o.args = json_array();
    o.labels = json_object();
    o.link = json_array();
    o.unlink = json_array();
    rc = cli_parse(ctx, "services", update_specs, 0, argc, argv, update_opt, &o,
                   &pos, &npos);
    if (rc == 0)
        rc = cli_want_args(ctx, "services", pos, npos, 1, 1,
                           "update needs exactly one service NAME");
    if (rc != 0)
        goto out;
    if (json_array_size(o.args) > 0)
        json_object_set(o.spec.body, "args", o.args);
    if (o.no_labels && json_object_size(o.labels) > 0) {
        rc = cli_usage(ctx, "services",
                       "--no-labels and --label exclude each other");
        goto out;
    }
    if (o.no_labels || json_object_size(o.labels) > 0)
        json_object_set(o.spec.body, "labels", o.labels);
    /* Resources replace the whole object on PATCH; without the current
     * values at hand, the documented defaults fill the gaps. */
    cli_spec_finish(&o.spec, true);
    if (json_object_size(o.spec.body) == 0 && json_array_size(o.link) == 0 &&
        json_array_size(o.unlink) == 0) {
        rc = cli_usage(
            ctx, "services",
            "update needs at least one change (--image, --replicas, --cpus...)");
        goto out;
    }
    *body = json_incref(o.spec.body);
    *name = xstrdup(pos[0]);
    *wait = o.wait.wait;
    *timeout = o.wait.timeout;
    *link = json_incref(o.link);
    *unlink = json_incref(o.unlink);
out:
    json_decref(o.args);
    json_decref(o.labels);
    json_decref(o.link);
    json_decref(o.unlink);
    cli_spec_free(&o.spec);
    free(pos);
    return rc;
}

/* The service's links with the --link names added and the --unlink ones
 * removed, into body; *version gets the version they were read at. */
static int
edit_links(struct cli_ctx *ctx, const char *path, json_t *body, json_t *link,
           json_t *unlink, long long *version)
{
    json_t *svc = NULL, *links = json_array(), *v;
    size_t i, j;
    int rc = cli_api(ctx, "GET", path, NULL, &svc, NULL);

    if (rc != 0) {
        json_decref(links);
        return rc;
    }
    *version = json_integer_value(json_object_get(svc, "version"));
    json_array_foreach(json_object_get(svc, "links"), i, v)
    {
        bool drop = false;
        json_t *u;
        json_array_foreach(unlink, j, u) if (json_equal(u, v)) drop = true;
        if (!drop)
            json_array_append(links, v);
    }
    json_array_foreach(link, i, v)
    {
        bool have = false;
        json_t *x;
        json_array_foreach(links, j, x) if (json_equal(x, v)) have = true;
        if (!have)
            json_array_append(links, v);
    }
    json_object_set_new(body, "links", links);
    json_decref(svc);
    return 0;
}

static int
services_update(struct cli_ctx *ctx, int argc, char **argv)
{
    json_t *body = NULL, *svc = NULL, *link = NULL, *unlink = NULL;
    char *name = NULL, *im = NULL;
    const char *headers[2] = {NULL, NULL};
    bool wait;
    long timeout;
    int rc;

    rc = cli_services_update_build(ctx, argc, argv, &body, &name, &wait,
                                   &timeout, &link, &unlink);
    if (rc != 0)
        return rc;
    char *path = cli_object_path("services", name, NULL);
    if (json_array_size(link) > 0 || json_array_size(unlink) > 0) {
        /* Read-modify-write: If-Match makes a concurrent change of the
         * service fail (412) instead of losing its links or ours. */
        long long version = 0;
        rc = edit_links(ctx, path, body, link, unlink, &version);
        if (rc != 0)
            goto out;
        im = xasprintf("If-Match: \"%lld\"", version);
        headers[0] = im;
    }
    rc = cli_api_h(ctx, "PATCH", path, headers, body, &svc, NULL);
    if (rc == 0) {
        if (ctx->output == FMT_JSON) {
            cli_print_json(ctx, svc);
        } else {
            char *s = fmt_sanitize(name, 0);
            fprintf(ctx->out,
                    "%s updated (generation %" JSON_INTEGER_FORMAT ")\n", s,
                    json_integer_value(json_object_get(svc, "generation")));
            free(s);
        }
        fflush(ctx->out);
        if (wait)
            rc = cli_wait_service(ctx, name, timeout);
    }
out:
    free(path);
    free(name);
    free(im);
    json_decref(body);
    json_decref(svc);
    json_decref(link);
    json_decref(unlink);
    return rc;
}

int
cmd_services(struct cli_ctx *ctx, int argc, char **argv)
{
    static const struct cli_list_filter filters[] = {
        {"state", 0, "state", false},
        {"selector", 'l', "label", true},
        {"label", 0, "label", true},
        {NULL, 0, NULL, false},
    };
    static const struct cli_list list = {"services", "/v1/services", filters,
                                         fmt_services};
    static const struct cli_each each = {.cmd = "services",
                                         .collection = "services",
                                         .need = "a service NAME is required",
                                         .json_answers = true,
                                         .done = service_done};
    static const struct cli_action actions[] = {
        {"rm", "delete", "DELETE", NULL},
        {NULL, NULL, NULL, NULL},
    };
    static const struct cli_resource r = {
        &list,    &each,           actions,
        "update", services_update, "ls, inspect, update, rm"};

    return cli_resource_run(ctx, &r, argc, argv);
}
