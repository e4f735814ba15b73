/*
 * cmd_config: `config` (get, set, unset, history, rollback, watch on a
 * service's versioned key/values: /v1/services/{name}/config...) and
 * `endpoints` (a service's endpoints, -w to follow their Server-Sent
 * Events). Writes are merge patches; --if-version sends If-Match so a
 * concurrent edit fails with 412 instead of being overwritten.
 */
#include "cli.h"

#include <string.h>

#include "cmd_priv.h"
#include "http.h"
#include "mem.h"

/* The history route answers at most this many versions per page. */
#define HISTORY_PAGE 100
/* A history longer than this many pages is a server that loops. */
#define HISTORY_MAX_PAGES 10000

enum {
    OPT_VERSION = 1,
    OPT_IF_VERSION,
    OPT_WATCH,
    OPT_WAIT,
    OPT_TIMEOUT,
    OPT_INSTANCE,
};

struct config_opts {
    long long version;    /* --version, -1 when absent */
    long long if_version; /* --if-version, -1 when absent */
    bool watch;
    bool wait;    /* --wait: until every running instance acknowledged */
    long timeout; /* --timeout in seconds, 0 = none */
    const char *instance; /* get --instance: that instance's effective config */
    const char *cmd;
};

static int
config_opt(struct cli_ctx *ctx, void *st, int id, const char *val)
{
    struct config_opts *o = st;

    switch (id) {
    case OPT_VERSION:
        if (cli_parse_int(val, 0, (1LL << 62), &o->version) < 0)
            return cli_usage(ctx, o->cmd, "--version \"%s\" is not a version",
                             val);
        break;
    case OPT_IF_VERSION:
        if (cli_parse_int(val, 0, (1LL << 62), &o->if_version) < 0)
            return cli_usage(ctx, o->cmd,
                             "--if-version \"%s\" is not a version", val);
        break;
    case OPT_WATCH:
        o->watch = true;
        break;
    case OPT_WAIT:
        o->wait = true;
        break;
    case OPT_INSTANCE:
        o->instance = val;
        break;
    case OPT_TIMEOUT:
        return cli_parse_timeout(ctx, o->cmd, val, &o->timeout);
    }
    return 0;
}

static long long
jver(const json_t *o)
{
    return json_integer_value(json_object_get(o, "version"));
}

/* "web: config version 4" and the like, the name made safe to print. */
static void
print_version_line(struct cli_ctx *ctx, const char *service, long long v,
                   const char *suffix)
{
    char *s = fmt_sanitize(service, 0);
    fprintf(ctx->out, "%s: config version %lld%s\n", s, v, suffix);
    free(s);
    fflush(ctx->out);
}

/* ---- get -------------------------------------------------------------- */

static int
config_get(struct cli_ctx *ctx, struct config_opts *o, char **pos, int npos)
{
    json_t *cfg = NULL;
    char *path, *full;
    int rc;

    const char *key, *whose = o->instance ? "instance" : "service";

    if (o->instance != NULL) {
        /* The effective config: the service's plus the link variables. */
        if (npos > 1)
            return cli_usage(ctx, "config", "get --instance INSTANCE takes [KEY]");
        path = cli_object_path("instances", o->instance, "/config");
        key = npos == 1 ? pos[0] : NULL;
    } else {
        if (npos > 2)
            return cli_usage(ctx, "config", "get takes SERVICE [KEY]");
        path = cli_object_path("services", pos[0], "/config");
        key = npos == 2 ? pos[1] : NULL;
    }
    full = o->version >= 0 ? xasprintf("%s?version=%lld", path, o->version)
                           : xstrdup(path);
    rc = cli_api(ctx, "GET", full, NULL, &cfg, NULL);
    if (rc != 0)
        goto out;
    if (key != NULL) {
        json_t *v = json_object_get(json_object_get(cfg, "config"), key);
        if (v == NULL) {
            char *s = fmt_sanitize(o->instance ? o->instance : pos[0], 0),
                 *k = fmt_sanitize(key, 200);
            rc = cli_fail(ctx, "%s %s: config version %lld has no key %s",
                          whose, s, jver(cfg), k);
            free(s);
            free(k);
            goto out;
        }
        if (ctx->output == FMT_JSON) {
            cli_print_json(ctx, v);
        } else {
            /* The value alone, for $(cloudctl config get web KEY). */
            char *s = json_is_string(v)
                          ? xstrdup(json_string_value(v))
                          : json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
            fprintf(ctx->out, "%s\n", s ? s : "");
            free(s);
        }
    } else if (ctx->output == FMT_JSON) {
        cli_print_json(ctx, cfg);
    } else {
        fmt_config(ctx->out, cfg, ctx->output);
    }
out:
    json_decref(cfg);
    free(path);
    free(full);
    return rc;
}

/* ---- set / unset / rollback ------------------------------------------- */

/*
 * --wait: polls the service's instances until every running one reports a
 * config_version (what its guest acknowledged) at least the effective
 * version GET /v1/instances/{id}/config names for it. Instances that are
 * not running are not waited for: they get the current version when they
 * start. A guest that never speaks the channel makes this time out.
 */
static int
config_wait_acks(struct cli_ctx *ctx, const char *service, long timeout_s)
{
    double start = cli_now_mono();
    long delay = 100;
    char *ipath = cli_list_query(xstrdup("/v1/instances"), "service", service);
    int rc = CLI_EXIT_FAIL;

    for (;;) {
        json_t *items = NULL, *it;
        size_t i;
        long long running = 0, acked = 0;
        char *behind = NULL;

        if (cli_api_list(ctx, ipath, &items) != 0)
            break;
        json_array_foreach(items, i, it)
        {
            const char *st = cli_jstr(it, "state"), *id = cli_jstr(it, "id");
            const char *desired = cli_jstr(it, "desired_state");
            json_t *eff = NULL;
            if (st == NULL || id == NULL || desired == NULL ||
                strcmp(st, "running") != 0 || strcmp(desired, "running") != 0)
                continue;
            running++;
            char *cpath = xasprintf("/v1/instances/%s/config", id);
            int grc = cli_api(ctx, "GET", cpath, NULL, &eff, NULL);
            free(cpath);
            if (grc != 0) {
                json_decref(items);
                free(behind);
                goto out;
            }
            long long want = jver(eff);
            json_decref(eff);
            if (json_integer_value(json_object_get(it, "config_version")) >=
                want)
                acked++;
            else if (behind == NULL)
                behind = xasprintf("%s at %lld of %lld", cli_jstr(it, "name"),
                                   (long long)json_integer_value(
                                       json_object_get(it, "config_version")),
                                   want);
        }
        json_decref(items);
        double elapsed = cli_now_mono() - start;
        bool done = acked == running;
        char *line = xasprintf("%s: %lld/%lld running instances acknowledged%s%s",
                               service, acked, running, behind ? "; " : "",
                               behind ? behind : "");
        free(behind);
        if (done) {
            cli_progress_done(ctx);
            if (ctx->output != FMT_JSON && ctx->output != FMT_NAME)
                cli_print_line(ctx, line);
            rc = 0;
        } else if (timeout_s > 0 && elapsed >= (double)timeout_s) {
            cli_progress_done(ctx);
            char *s = fmt_sanitize(line, 0);
            cli_fail(ctx, "%s after %lds", s, timeout_s);
            free(s);
        } else {
            cli_progress(ctx, "%s (%.0fs)", line, elapsed);
        }
        free(line);
        if (done || (timeout_s > 0 && elapsed >= (double)timeout_s))
            break;
        cli_poll_sleep(&delay);
    }
out:
    free(ipath);
    return rc;
}

/* Sends a config write; prints the new version line (or -o json). */
static int
config_write(struct cli_ctx *ctx, struct config_opts *o, const char *method,
             const char *service, const char *what, json_t *body,
             const char *suffix)
{
    char *path = cli_object_path("services", service, what), *im = NULL;
    const char *headers[2] = {NULL, NULL};
    json_t *cfg = NULL;
    int rc;

    if (o->if_version >= 0) {
        im = xasprintf("If-Match: \"%lld\"", o->if_version);
        headers[0] = im;
    }
    rc = cli_api_h(ctx, method, path, headers, body, &cfg, NULL);
    if (rc == 0) {
        if (ctx->output == FMT_JSON)
            cli_print_json(ctx, cfg);
        else if (ctx->output == FMT_NAME)
            fprintf(ctx->out, "%lld\n", jver(cfg));
        else
            print_version_line(ctx, service, jver(cfg), suffix);
        if (o->wait)
            rc = config_wait_acks(ctx, service, o->timeout);
    }
    json_decref(cfg);
    free(path);
    free(im);
    return rc;
}

static int
config_set(struct cli_ctx *ctx, struct config_opts *o, bool set, char **pos,
           int npos)
{
    json_t *map, *body;
    int rc;

    if (npos < 2)
        return cli_usage(ctx, "config",
                         set ? "set takes SERVICE KEY=VALUE..."
                             : "unset takes SERVICE KEY...");
    map = json_object();
    for (int i = 1; i < npos; i++) {
        if (!set) {
            if (pos[i][0] == '\0' || strchr(pos[i], '=') != NULL) {
                json_decref(map);
                return cli_usage(ctx, "config",
                                 "unset takes KEY names, not \"%s\"", pos[i]);
            }
            /* null removes a key: a JSON merge patch. */
            json_object_set_new(map, pos[i], json_null());
            continue;
        }
        const char *eq = strchr(pos[i], '=');
        if (eq == NULL || eq == pos[i]) {
            json_decref(map);
            return cli_usage(ctx, "config", "\"%s\" is not KEY=VALUE", pos[i]);
        }
        char *k = xstrndup(pos[i], (size_t)(eq - pos[i]));
        json_object_set_new(map, k, json_string(eq + 1));
        free(k);
    }
    body = json_pack("{s:o}", "config", map);
    rc = config_write(ctx, o, "PATCH", pos[0], "/config", body, "");
    json_decref(body);
    return rc;
}

static int
config_rollback(struct cli_ctx *ctx, struct config_opts *o, char **pos,
                int npos)
{
    long long v;
    json_t *body;
    char suffix[64];
    int rc;

    if (npos != 2)
        return cli_usage(ctx, "config", "rollback takes SERVICE VERSION");
    if (cli_parse_int(pos[1], 1, (1LL << 62), &v) < 0)
        return cli_usage(ctx, "config", "VERSION \"%s\" is not a version",
                         pos[1]);
    body = json_pack("{s:I}", "version", (json_int_t)v);
    snprintf(suffix, sizeof(suffix), " (the config of version %lld)", v);
    rc = config_write(ctx, o, "POST", pos[0], "/config/rollback", body, suffix);
    json_decref(body);
    return rc;
}

/* ---- history ---------------------------------------------------------- */

static void
print_history(FILE *out, const json_t *items, enum fmt_mode mode, time_t now,
              bool color)
{
    (void)color;
    fmt_config_history(out, items, mode, now);
}

static int
config_history(struct cli_ctx *ctx, char **pos, int npos)
{
    char *base;
    json_t *all;
    int rc;

    if (npos != 1)
        return cli_usage(ctx, "config", "history takes SERVICE");
    base = cli_object_path("services", pos[0], "/config/history");
    rc = cli_api_pages(ctx, base, HISTORY_PAGE, HISTORY_MAX_PAGES, &all);
    if (rc == 0)
        rc = cli_list_print(ctx, all, print_history);
    json_decref(all);
    free(base);
    return rc;
}

/* ---- watch ------------------------------------------------------------ */

struct config_watch {
    struct cli_ctx *reader; /* its own connection: the stream holds ours */
    const char *service;
    char *path;
    long long shown; /* last version printed, -1 before the first */
};

static void
print_config_version(struct cli_ctx *ctx, const char *service,
                     const json_t *cfg)
{
    if (ctx->output == FMT_JSON) {
        /* One object per line, the form jq and log shippers stream. */
        char *s = json_dumps(cfg, JSON_COMPACT);
        fprintf(ctx->out, "%s\n", s ? s : "null");
        free(s);
    } else if (ctx->output == FMT_NAME) {
        fprintf(ctx->out, "%lld\n", jver(cfg));
    } else {
        const char *at = cli_jstr(cfg, "updated_at");
        char *suffix = at ? xasprintf(" (%s)", at) : xstrdup("");
        char *safe = fmt_sanitize(suffix, 80);
        print_version_line(ctx, service, jver(cfg), safe);
        fmt_config(ctx->out, cfg, FMT_TABLE);
        fputc('\n', ctx->out);
        free(safe);
        free(suffix);
    }
    fflush(ctx->out);
}

/* Reads the current config; prints it when it is newer than shown. */
static int
watch_refresh(struct cli_ctx *ctx, void *arg)
{
    struct config_watch *w = arg;
    json_t *cfg = NULL;
    int rc = cli_api(w->reader, "GET", w->path, NULL, &cfg, NULL);

    if (rc != 0)
        return rc;
    if (jver(cfg) > w->shown) {
        w->shown = jver(cfg);
        print_config_version(ctx, w->service, cfg);
    }
    json_decref(cfg);
    return 0;
}

static int
watch_event(struct cli_ctx *ctx, void *arg, const char *event, const char *data)
{
    struct config_watch *w = arg;
    json_t *ev = json_loads(data, 0, NULL);
    int rc = 0;

    /* Config events of this service only (the stream has every
     * service's); the event names the change, the GET reads it. */
    const char *name = cli_jstr(ev, "name");
    const char *type = cli_jstr(ev, "type") ? cli_jstr(ev, "type") : event;
    if (name != NULL && strcmp(name, w->service) == 0 && type != NULL &&
        strncmp(type, "config.", 7) == 0)
        rc = watch_refresh(ctx, arg);
    json_decref(ev);
    return rc;
}

static int
config_watch(struct cli_ctx *ctx, char **pos, int npos)
{
    struct cli_ctx reader;
    struct config_watch w = {.service = pos[0], .shown = -1};
    int rc;

    if (npos != 1)
        return cli_usage(ctx, "config", "watch takes SERVICE");
    if (cli_connect(ctx) != 0)
        return CLI_EXIT_FAIL;
    reader = *ctx;
    reader.http = NULL;
    reader.server = NULL;
    reader.token = NULL;
    w.reader = &reader;
    w.path = cli_object_path("services", pos[0], "/config");
    /* Fail fast on an unknown service, before following anything. */
    rc = watch_refresh(ctx, &w);
    if (rc == 0)
        rc = cli_watch_cb(ctx, "/v1/events?watch=true&object=config", false,
                          watch_event, watch_refresh, &w);
    cli_http_free(reader.http);
    free(reader.server);
    free(reader.token);
    free(w.path);
    return rc;
}

/* ---- config ----------------------------------------------------------- */

int
cmd_config(struct cli_ctx *ctx, int argc, char **argv)
{
    static const struct arg_spec specs[] = {
        {"version", 0, true, OPT_VERSION},
        {"if-version", 0, true, OPT_IF_VERSION},
        {"wait", 'w', false, OPT_WAIT},
        {"timeout", 0, true, OPT_TIMEOUT},
        {"instance", 0, true, OPT_INSTANCE},
        {NULL, 0, false, 0},
    };
    struct config_opts o = {
        .version = -1, .if_version = -1, .timeout = 120, .cmd = "config"};
    char **pos = NULL;
    int npos, rc;
    const char *sub = argc >= 2 ? argv[1] : NULL;

    if (sub == NULL || sub[0] == '-') {
        rc = cli_parse(ctx, "config", specs, 0, argc, argv, config_opt, &o,
                       &pos, &npos);
        if (rc == 0)
            rc = cli_usage(ctx, "config",
                           "a subcommand is required (get, set, unset, "
                           "history, rollback, watch)");
        goto out;
    }
    rc = cli_parse(ctx, "config", specs, 0, argc - 1, argv + 1, config_opt, &o,
                   &pos, &npos);
    if (rc != 0)
        goto out;
    bool known = strcmp(sub, "get") == 0 || strcmp(sub, "set") == 0 ||
                 strcmp(sub, "unset") == 0 || strcmp(sub, "history") == 0 ||
                 strcmp(sub, "rollback") == 0 || strcmp(sub, "watch") == 0;
    if (!known) {
        rc = cli_usage(ctx, "config",
                       "unknown subcommand \"%s\" (get, set, unset, history, "
                       "rollback, watch)",
                       sub);
        goto out;
    }
    if (o.instance != NULL && strcmp(sub, "get") != 0) {
        rc = cli_usage(ctx, "config", "--instance is for get only");
        goto out;
    }
    if (o.instance != NULL && o.version >= 0) {
        rc = cli_usage(ctx, "config",
                       "--version is for a service's config, not --instance");
        goto out;
    }
    if (npos < 1 && o.instance == NULL) {
        rc = cli_usage(ctx, "config", "a SERVICE is required");
        goto out;
    }
    if (o.version >= 0 && strcmp(sub, "get") != 0) {
        rc = cli_usage(ctx, "config", "--version is for get only");
        goto out;
    }
    if (o.if_version >= 0 && strcmp(sub, "set") != 0 &&
        strcmp(sub, "unset") != 0 && strcmp(sub, "rollback") != 0) {
        rc = cli_usage(ctx, "config",
                       "--if-version is for set, unset and rollback");
        goto out;
    }
    if (o.wait && strcmp(sub, "set") != 0 && strcmp(sub, "unset") != 0 &&
        strcmp(sub, "rollback") != 0) {
        rc = cli_usage(ctx, "config", "--wait is for set, unset and rollback");
        goto out;
    }
    if (strcmp(sub, "get") == 0)
        rc = config_get(ctx, &o, pos, npos);
    else if (strcmp(sub, "set") == 0 || strcmp(sub, "unset") == 0)
        rc = config_set(ctx, &o, strcmp(sub, "set") == 0, pos, npos);
    else if (strcmp(sub, "history") == 0)
        rc = config_history(ctx, pos, npos);
    else if (strcmp(sub, "rollback") == 0)
        rc = config_rollback(ctx, &o, pos, npos);
    else
        rc = config_watch(ctx, pos, npos);
out:
    free(pos);
    return rc;
}

/* ---- endpoints -------------------------------------------------------- */

struct ep_watch {
    const char *service;
    long long shown;
};

static void
print_endpoints(struct cli_ctx *ctx, json_t *eps, bool follow)
{
    if (ctx->output == FMT_JSON) {
        if (follow) {
            char *s = json_dumps(eps, JSON_COMPACT);
            fprintf(ctx->out, "%s\n", s ? s : "null");
            free(s);
        } else {
            cli_print_json(ctx, eps);
        }
    } else {
        if (follow && ctx->output != FMT_NAME) {
            const char *svc = cli_jstr(eps, "service");
            char *s = fmt_sanitize(svc ? svc : "-", 0);
            fprintf(ctx->out, "%s: endpoints version %lld\n", s, jver(eps));
            free(s);
        }
        fmt_endpoints(ctx->out, eps, ctx->output);
        if (follow)
            fputc('\n', ctx->out);
    }
    fflush(ctx->out);
}

static int
ep_event(struct cli_ctx *ctx, void *arg, const char *event, const char *data)
{
    struct ep_watch *w = arg;
    json_t *eps;

    if (strcmp(event, "endpoints") != 0)
        return 0;
    eps = json_loads(data, 0, NULL);
    if (!json_is_object(eps)) {
        json_decref(eps);
        return cli_fail(ctx, "service %s: an endpoints event is not JSON",
                        w->service);
    }
    /* A reconnect starts with the current list again: show changes only. */
    if (jver(eps) != w->shown) {
        w->shown = jver(eps);
        print_endpoints(ctx, eps, true);
    }
    json_decref(eps);
    return 0;
}

int
cmd_endpoints(struct cli_ctx *ctx, int argc, char **argv)
{
    static const struct arg_spec specs[] = {
        {"watch", 'w', false, OPT_WATCH},
        {"follow", 'f', false, OPT_WATCH},
        {NULL, 0, false, 0},
    };
    struct config_opts o = {
        .version = -1, .if_version = -1, .cmd = "endpoints"};
    char **pos = NULL, *path = NULL;
    int npos, rc;
    json_t *eps = NULL;

    rc = cli_parse(ctx, "endpoints", specs, 0, argc, argv, config_opt, &o, &pos,
                   &npos);
    if (rc == 0)
        rc = cli_want_args(ctx, "endpoints", pos, npos, 1, 1,
                           "exactly one SERVICE is required");
    if (rc != 0)
        goto out;
    path = cli_object_path("services", pos[0], "/endpoints");
    if (o.watch) {
        struct ep_watch w = {.service = pos[0], .shown = -1};
        char *wp = xasprintf("%s?watch=true", path);
        rc = cli_watch_cb(ctx, wp, false, ep_event, NULL, &w);
        free(wp);
        goto out;
    }
    rc = cli_api(ctx, "GET", path, NULL, &eps, NULL);
    if (rc == 0)
        print_endpoints(ctx, eps, false);
out:
    json_decref(eps);
    free(path);
    free(pos);
    return rc;
}
