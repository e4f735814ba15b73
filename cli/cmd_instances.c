/*
 * cmd_instances: the process-like commands on instances: ps, inspect, logs,
 * kill, rm, stop, start, restart and wait. Instances are addressed by id,
 * unique id prefix or name; the server resolves those, so the CLI passes
 * what the user typed, escaped, and shows the server's answer.
 */
#include "cli.h"

#include <string.h>
#include <strings.h>

#include "cmd_priv.h"
#include "http.h"
#include "mem.h"

enum {
    OPT_ALL = 1,
    OPT_SERVICE,
    OPT_HOST,
    OPT_STATE,
    OPT_QUIET,
    OPT_FOLLOW,
    OPT_TAIL,
    OPT_SIGNAL,
    OPT_TIMEOUT,
    OPT_SELECTOR,
    OPT_GRACE,
};

/* ---- ps -------------------------------------------------------------- */

struct ps_opts {
    bool all;
    bool quiet;
    const char *service;
    const char *host;
    const char *state;
    json_t *selectors;
};

static int
ps_opt(struct cli_ctx *ctx, void *st, int id, const char *val)
{
    struct ps_opts *o = st;
    switch (id) {
    case OPT_SELECTOR:
        if (val[0] == '\0')
            return cli_usage(ctx, "ps", "--selector needs KEY=VALUE or KEY");
        json_array_append_new(o->selectors, json_string(val));
        break;
    case OPT_ALL:
        o->all = true;
        break;
    case OPT_QUIET:
        o->quiet = true;
        break;
    case OPT_SERVICE:
        o->service = val;
        break;
    case OPT_HOST:
        o->host = val;
        break;
    case OPT_STATE:
        o->state = val;
        break;
    }
    return 0;
}

/* Newest first, like docker ps; ties by id for a stable order. */
static int
cmp_created_desc(const void *a, const void *b)
{
    const json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
    const char *cx = cli_jstr(x, "created_at"), *cy = cli_jstr(y, "created_at");
    int c = strcmp(cy ? cy : "", cx ? cx : "");
    if (c != 0)
        return c;
    const char *ix = cli_jstr(x, "id"), *iy = cli_jstr(y, "id");
    return strcmp(ix ? ix : "", iy ? iy : "");
}

int
cli_ps_filter(json_t *items, bool all, json_t **out)
{
    size_t n = json_array_size(items), kept = 0, i;
    json_t **v = xcalloc(n + 1, sizeof(*v));
    json_t *it;

    json_array_foreach(items, i, it)
    {
        if (!all && fmt_state_is_final(cli_jstr(it, "state")))
            continue;
        v[kept++] = it;
    }
    qsort(v, kept, sizeof(*v), cmp_created_desc);
    *out = json_array();
    for (i = 0; i < kept; i++)
        json_array_append(*out, v[i]);
    free(v);
    return 0;
}

int
cmd_ps(struct cli_ctx *ctx, int argc, char **argv)
{
    static const struct arg_spec specs[] = {
        {"all", 'a', false, OPT_ALL},      {"quiet", 'q', false, OPT_QUIET},
        {"service", 0, true, OPT_SERVICE}, {"host", 0, true, OPT_HOST},
        {"state", 0, true, OPT_STATE},     {"selector", 'l', true, OPT_SELECTOR},
        {"label", 0, true, OPT_SELECTOR},  {NULL, 0, false, 0},
    };
    struct ps_opts o = {.selectors = json_array()};
    char **pos = NULL;
    int npos, rc;
    json_t *items = NULL, *shown = NULL;
    char *path = NULL;

    rc = cli_parse(ctx, "ps", specs, 0, argc, argv, ps_opt, &o, &pos, &npos);
    if (rc == 0)
        rc = cli_want_args(ctx, "ps", pos, npos, 0, 0, NULL);
    if (rc != 0)
        goto out;
    path = xstrdup("/v1/instances");
    path = cli_list_query(path, "service", o.service);
    path = cli_list_query(path, "host", o.host);
    path = cli_list_query(path, "state", o.state);
    path = cli_add_selectors(path, o.selectors);
    rc = cli_api_list(ctx, path, &items);
    if (rc != 0)
        goto out;
    /* An explicit --state is honoured even for final states. */
    cli_ps_filter(items, o.all || o.state != NULL, &shown);
    if (o.quiet) {
        size_t i;
        json_t *it;
        json_array_foreach(shown, i, it)
            cli_print_line(ctx, cli_jstr(it, "id") ? cli_jstr(it, "id") : "");
    } else {
        cli_list_print(ctx, shown, fmt_instances);
    }
out:
    free(path);
    free(pos);
    json_decref(items);
    json_decref(shown);
    json_decref(o.selectors);
    return rc;
}

/* ---- inspect --------------------------------------------------------- */

int
cmd_inspect(struct cli_ctx *ctx, int argc, char **argv)
{
    char **pos = NULL;
    int npos, rc;
    json_t *all = json_array();

    rc =
        cli_parse(ctx, "inspect", NULL, 0, argc, argv, NULL, NULL, &pos, &npos);
    if (rc == 0)
        rc = cli_want_args(ctx, "inspect", pos, npos, 1, -1,
                           "an instance ID or NAME is required");
    if (rc != 0)
        goto out;
    for (int i = 0; i < npos; i++) {
        json_t *obj = NULL;
        int status;
        char *path = cli_object_path("instances", pos[i], NULL);
        rc = cli_api(ctx, "GET", path, NULL, &obj, &status);
        if (rc != 0 && status == 404) {
            /* Not an instance: a service of that name is the next best
             * guess, as `docker inspect` looks at every object type. */
            char *spath = cli_object_path("services", pos[i], NULL);
            json_t *svc = NULL;
            int sstatus;
            if (cli_api(ctx, "GET", spath, NULL, &svc, &sstatus) == 0) {
                json_decref(obj);
                obj = svc;
                rc = 0;
            } else {
                json_decref(svc);
            }
            free(spath);
        }
        if (rc != 0) {
            if (status != 0)
                cli_print_api_error(ctx, status, obj, "GET", path);
            json_decref(obj);
            free(path);
            goto out;
        }
        free(path);
        json_array_append_new(all, obj);
    }
    cli_print_json(ctx, npos == 1 ? json_array_get(all, 0) : all);
out:
    free(pos);
    json_decref(all);
    return rc;
}

/* ---- logs ------------------------------------------------------------ */

struct logs_opts {
    bool follow;
    const char *tail;
};

static int
logs_opt(struct cli_ctx *ctx, void *st, int id, const char *val)
{
    struct logs_opts *o = st;
    long long n;

    if (id == OPT_FOLLOW) {
        o->follow = true;
    } else if (id == OPT_TAIL) {
        if (cli_parse_int(val, 0, 100000000, &n) < 0)
            return cli_usage(ctx, "logs", "--tail \"%s\" is not a number", val);
        o->tail = val;
    }
    return 0;
}

static int
logs_write(void *arg, const char *data, size_t len)
{
    struct cli_ctx *ctx = arg;
    /* Console bytes pass through as they are: they are the guest's. */
    if (fwrite(data, 1, len, ctx->out) != len)
        return 1;
    fflush(ctx->out);
    return 0;
}

int
cmd_logs(struct cli_ctx *ctx, int argc, char **argv)
{
    static const struct arg_spec specs[] = {
        {"follow", 'f', false, OPT_FOLLOW},
        {"tail", 'n', true, OPT_TAIL},
        {NULL, 0, false, 0},
    };
    struct logs_opts o = {0};
    struct cli_http_resp r = {0};
    char **pos = NULL, *path = NULL;
    int npos, rc;

    rc =
        cli_parse(ctx, "logs", specs, 0, argc, argv, logs_opt, &o, &pos, &npos);
    if (rc == 0)
        rc = cli_want_args(ctx, "logs", pos, npos, 1, 1,
                           "exactly one instance ID or NAME is required");
    if (rc != 0)
        goto out;
    if (cli_connect(ctx) != 0) {
        rc = CLI_EXIT_FAIL;
        goto out;
    }
    char *base = cli_object_path("instances", pos[0], "/logs");
    path = xasprintf("%s%s%s%s%s", base, o.follow || o.tail ? "?" : "",
                     o.follow ? "follow=true" : "",
                     o.follow && o.tail ? "&" : "", o.tail ? "tail=" : "");
    free(base);
    if (o.tail) {
        char *p = xasprintf("%s%s", path, o.tail);
        free(path);
        path = p;
    }
    /* A followed log may be silent for long: no idle limit then. */
    int got = cli_http_stream(ctx->http, path, NULL, o.follow ? 0 : 30,
                              logs_write, ctx, &r);
    if (got < 0) {
        rc = cli_fail(ctx, "%s", r.error);
    } else if (got == 0 && (r.status < 200 || r.status >= 300)) {
        rc = cli_fail_answer(ctx, r.status, r.body, r.len, "GET", path);
    }
out:
    cli_http_resp_clear(&r);
    free(path);
    free(pos);
    return rc;
}

/* ---- kill, stop, rm, start, restart ---------------------------------- */

/* Accepts TERM, SIGTERM, term, 15 and the same for KILL. */
static const char *
parse_signal(const char *s)
{
    if (strncasecmp(s, "SIG", 3) == 0)
        s += 3;
    if (strcasecmp(s, "TERM") == 0 || strcmp(s, "15") == 0)
        return "TERM";
    if (strcasecmp(s, "KILL") == 0 || strcmp(s, "9") == 0)
        return "KILL";
    return NULL;
}

struct kill_opts {
    const char *cmd;
    const char *sig;
    long grace; /* seconds; -1: the instance's own */
};

static int
kill_opt(struct cli_ctx *ctx, void *st, int id, const char *val)
{
    struct kill_opts *o = st;
    if (id == OPT_SIGNAL) {
        o->sig = parse_signal(val);
        if (o->sig == NULL)
            return cli_usage(ctx, "kill", "signal \"%s\" is not TERM or KILL",
                             val);
    } else if (id == OPT_GRACE) {
        /* The range (1..3600 s) is the API's to check: its 422 names it. */
        o->grace = cli_parse_duration(val);
        if (o->grace < 0)
            return cli_usage(ctx, o->cmd,
                             "--grace \"%s\" is not a number of seconds "
                             "(30, 30s, 2m)",
                             val);
    }
    return 0;
}

/* Kills every live instance of service name; the service's own 404 is
 * what the user sees when neither an instance nor a service matched. */
static int
kill_service(struct cli_ctx *ctx, const char *name, json_t *body, bool *found)
{
    char *spath = cli_object_path("services", name, NULL);
    char *ipath = cli_list_query(xstrdup("/v1/instances"), "service", name);
    json_t *svc = NULL, *items = NULL;
    int status, rc = CLI_EXIT_FAIL;
    size_t i;
    json_t *it;

    *found = false;
    if (cli_api(ctx, "GET", spath, NULL, &svc, &status) != 0)
        goto out;
    *found = true;
    if (cli_api_list(ctx, ipath, &items) != 0)
        goto out;
    rc = 0;
    json_array_foreach(items, i, it)
    {
        const char *id = cli_jstr(it, "id");
        json_t *ans = NULL;
        if (id == NULL || fmt_state_is_final(cli_jstr(it, "state")))
            continue;
        char *kpath = cli_object_path("instances", id, "/kill");
        if (cli_api(ctx, "POST", kpath, body, &ans, NULL) == 0)
            cli_print_line(ctx,
                           cli_jstr(it, "name") ? cli_jstr(it, "name") : id);
        else
            rc = CLI_EXIT_FAIL;
        json_decref(ans);
        free(kpath);
    }
out:
    json_decref(svc);
    json_decref(items);
    free(spath);
    free(ipath);
    return rc;
}

/* kill and stop: parses cmd's flags (specs), then signals each NAME;
 * with services_too a NAME that is no instance may be a service. */
static int
signal_instances(struct cli_ctx *ctx, const char *cmd,
                 const struct arg_spec *specs, const char *need,
                 bool services_too, int argc, char **argv)
{
    struct kill_opts o = {.cmd = cmd, .sig = "TERM", .grace = -1};
    json_t *body = NULL;
    char **pos = NULL;
    int npos, rc;

    rc = cli_parse(ctx, cmd, specs, 0, argc, argv, kill_opt, &o, &pos, &npos);
    if (rc == 0)
        rc = cli_want_args(ctx, cmd, pos, npos, 1, -1, need);
    if (rc != 0)
        goto out;
    body = json_pack("{s:s}", "signal", o.sig);
    if (o.grace >= 0)
        json_object_set_new(body, "grace_seconds", json_integer(o.grace));

    for (int i = 0; i < npos; i++) {
        json_t *ans = NULL;
        int status;
        char *path = cli_object_path("instances", pos[i], "/kill");
        int r = cli_api(ctx, "POST", path, body, &ans, &status);
        if (r == 0) {
            cli_print_line(ctx, pos[i]);
        } else if (status == 404 && services_too) {
            bool found;
            if (kill_service(ctx, pos[i], body, &found) != 0) {
                if (!found)
                    cli_print_api_error(ctx, status, ans, "POST", path);
                rc = CLI_EXIT_FAIL;
            }
        } else {
            if (status != 0)
                cli_print_api_error(ctx, status, ans, "POST", path);
            rc = CLI_EXIT_FAIL;
        }
        json_decref(ans);
        free(path);
    }
out:
    json_decref(body);
    free(pos);
    return rc;
}

int
cmd_kill(struct cli_ctx *ctx, int argc, char **argv)
{
    static const struct arg_spec specs[] = {
        {"signal", 's', true, OPT_SIGNAL},
        {"grace", 0, true, OPT_GRACE},
        {NULL, 0, false, 0},
    };

    return signal_instances(ctx, "kill", specs,
                            "an instance ID, NAME or SERVICE is required", true,
                            argc, argv);
}

int
cmd_stop(struct cli_ctx *ctx, int argc, char **argv)
{
    static const struct arg_spec specs[] = {
        {"grace", 0, true, OPT_GRACE},
        {NULL, 0, false, 0},
    };

    /* The API's kill TERM is docker's stop: ACPI shutdown, then destroy
     * after the grace period (--grace: docker's --time). */
    return signal_instances(ctx, "stop", specs,
                            "an instance ID or NAME is required", false, argc,
                            argv);
}

/* One request per argument, every one tried; prints each argument that
 * succeeded. */
static int
each_instance(struct cli_ctx *ctx, const char *cmd, const char *method,
              const char *suffix, int argc, char **argv)
{
    const struct cli_each e = {.cmd = cmd,
                               .collection = "instances",
                               .need = "an instance ID or NAME is required",
                               .keep_going = true};

    return cli_each_run(ctx, &e, method, suffix, argc, argv);
}

int
cmd_rm(struct cli_ctx *ctx, int argc, char **argv)
{
    return each_instance(ctx, "rm", "DELETE", NULL, argc, argv);
}

int
cmd_start(struct cli_ctx *ctx, int argc, char **argv)
{
    /* Not in docs/api.md yet: the server's answer says so. */
    return each_instance(ctx, "start", "POST", "/start", argc, argv);
}

int
cmd_restart(struct cli_ctx *ctx, int argc, char **argv)
{
    return each_instance(ctx, "restart", "POST", "/restart", argc, argv);
}

/* ---- wait ------------------------------------------------------------ */

static int
wait_opt(struct cli_ctx *ctx, void *st, int id, const char *val)
{
    if (id == OPT_TIMEOUT)
        return cli_parse_timeout(ctx, "wait", val, st);
    return 0;
}

/* Polls until final and prints the exit code. Returns 0 with *status set
 * to the exit status to use, or -1 after printing why it failed. */
static int
wait_one(struct cli_ctx *ctx, const char *id, long timeout_s, int *status)
{
    double start = cli_now_mono();
    long delay = 250;
    char *path = cli_object_path("instances", id, NULL);
    int rc = -1;

    for (;;) {
        const char *state, *name;
        json_t *inst = cli_poll_instance(ctx, path, id, &state, &name);

        if (inst == NULL)
            break;
        json_t *code = json_object_get(inst, "exit_code");
        if (fmt_state_is_final(state)) {
            cli_progress_done(ctx);
            if (json_is_integer(code)) {
                json_int_t c = json_integer_value(code);
                fprintf(ctx->out, "%" JSON_INTEGER_FORMAT "\n", c);
                /* Exit with the code, as docker wait's callers expect;
                 * the shell only sees 8 bits. */
                *status = c >= 0 && c <= 255 ? (int)c : CLI_EXIT_FAIL;
                rc = 0;
            } else {
                const char *reason = cli_jstr(inst, "reason");
                cli_fail(ctx, "instance %s %s without an exit code%s%s", name,
                         state, reason ? ": " : "", reason ? reason : "");
            }
            json_decref(inst);
            break;
        }
        double elapsed = cli_now_mono() - start;
        if (timeout_s > 0 && elapsed >= (double)timeout_s) {
            cli_progress_done(ctx);
            cli_fail(ctx, "instance %s is still %s after %lds", name,
                     state ? state : "unknown", timeout_s);
            json_decref(inst);
            break;
        }
        cli_progress(ctx, "waiting for %s: %s (%.0fs)", name,
                     state ? state : "unknown", elapsed);
        json_decref(inst);
        cli_poll_sleep(&delay);
    }
    free(path);
    return rc;
}

int
cmd_wait(struct cli_ctx *ctx, int argc, char **argv)
{
    static const struct arg_spec specs[] = {
        {"timeout", 0, true, OPT_TIMEOUT},
        {NULL, 0, false, 0},
    };
    long timeout = 0;
    char **pos = NULL;
    int npos, rc;

    rc = cli_parse(ctx, "wait", specs, 0, argc, argv, wait_opt, &timeout, &pos,
                   &npos);
    if (rc == 0)
        rc = cli_want_args(ctx, "wait", pos, npos, 1, -1,
                           "an instance ID or NAME is required");
    /* Several instances: every code is printed, the last one is the
     * exit status (docker wait does the same). */
    for (int i = 0; rc == 0 && i < npos; i++) {
        int status = CLI_EXIT_FAIL;
        if (wait_one(ctx, pos[i], timeout, &status) < 0)
            rc = CLI_EXIT_FAIL;
        else if (i + 1 == npos)
            rc = status;
    }
    free(pos);
    return rc;
}
