/*
 * cmd_run: `cloudctl run`, which creates a one-off instance (POST
 * /v1/instances) or, with --replicas, a service (POST /v1/services), and the
 * polling loops behind --wait that `scale` and `services update` share.
 * Polling rather than watching events: one GET per second is cheap, works
 * through any proxy, and survives a controller restart without resuming.
 */
#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cmd_priv.h"
#include "mem.h"

/* Poll intervals: quick at first, when most starts finish, then relaxed. */
#define POLL_FIRST_MS 250
#define POLL_MAX_MS 2000

/* run's own options; the spec options keep their CLI_SPEC_* ids. */
enum {
    OPT_NAME = 100,
    OPT_REPLICAS,
    OPT_LABEL,
    OPT_WAIT,
    OPT_TIMEOUT,
    OPT_LINK,
    OPT_READY_WHEN,
};

static const struct arg_spec run_specs[] = {
    {"name", 0, true, OPT_NAME},
    {"replicas", 0, true, OPT_REPLICAS},
    {"label", 'l', true, OPT_LABEL},
    {"wait", 'w', false, OPT_WAIT},
    {"timeout", 0, true, OPT_TIMEOUT},
    {"link", 0, true, OPT_LINK},
    {"ready-when", 0, true, OPT_READY_WHEN},
    CLI_SPEC_ARG_SPECS,
    {NULL, 0, false, 0},
};

int
cli_parse_int(const char *s, long long min, long long max, long long *out)
{
    char *end;

    if (s == NULL || *s == '\0')
        return -1;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

int
cli_parse_timeout(struct cli_ctx *ctx, const char *cmd, const char *val,
                  long *seconds)
{
    long s = cli_parse_duration(val);

    if (s < 0)
        return cli_usage(
            ctx, cmd, "--timeout \"%s\" is not a duration like 90s, 5m or 1h",
            val);
    *seconds = s;
    return 0;
}

int
cli_parse_size_mib(const char *s, long long *mib)
{
    char *end;
    long long mult;

    if (s == NULL || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || v < 0)
        return -1;
    /* The API counts MiB: a bare number is MiB, suffixes are binary. */
    if (*end == '\0' || strcasecmp(end, "m") == 0 ||
        strcasecmp(end, "mi") == 0 || strcasecmp(end, "mb") == 0 ||
        strcasecmp(end, "mib") == 0)
        mult = 1;
    else if (strcasecmp(end, "g") == 0 || strcasecmp(end, "gi") == 0 ||
             strcasecmp(end, "gb") == 0 || strcasecmp(end, "gib") == 0)
        mult = 1024;
    else if (strcasecmp(end, "t") == 0 || strcasecmp(end, "ti") == 0 ||
             strcasecmp(end, "tb") == 0 || strcasecmp(end, "tib") == 0)
        mult = 1024 * 1024;
    else
        return -1;
    if (v > (1LL << 40) / mult)
        return -1;
    *mib = v * mult;
    return 0;
}

/* "K=V" into obj; a bare "K" takes the value from our environment, as
 * `docker run -e K` does. */
int
cli_add_env(struct cli_ctx *ctx, const char *cmd, json_t *obj, const char *kv)
{
    const char *eq = strchr(kv, '=');

    if (eq == kv)
        return cli_usage(ctx, cmd, "--env \"%s\" has an empty name", kv);
    if (eq == NULL) {
        const char *v = getenv(kv);
        if (v == NULL)
            return cli_usage(
                ctx, cmd,
                "--env %s: not set in this environment (use --env %s=VALUE)",
                kv, kv);
        json_object_set_new(obj, kv, json_string(v));
        return 0;
    }
    char *k = xstrndup(kv, (size_t)(eq - kv));
    json_object_set_new(obj, k, json_string(eq + 1));
    free(k);
    return 0;
}

int
cli_add_label(struct cli_ctx *ctx, const char *cmd, json_t *obj, const char *kv)
{
    const char *eq = strchr(kv, '=');

    if (eq == NULL || eq == kv)
        return cli_usage(ctx, cmd, "--label \"%s\" is not KEY=VALUE", kv);
    char *k = xstrndup(kv, (size_t)(eq - kv));
    json_object_set_new(obj, k, json_string(eq + 1));
    free(k);
    return 0;
}

int
cli_spec_opt(struct cli_ctx *ctx, const char *cmd, struct cli_spec *sp, int id,
             const char *val)
{
    long long n;

    switch (id) {
    case CLI_SPEC_CPUS:
        if (cli_parse_int(val, 1, 1000000, &n) < 0)
            return cli_usage(
                ctx, cmd, "--cpus \"%s\" is not a whole number of vCPUs", val);
        json_object_set_new(sp->resources, "vcpus", json_integer(n));
        return 0;
    case CLI_SPEC_MEMORY:
        if (cli_parse_size_mib(val, &n) < 0)
            return cli_usage(
                ctx, cmd, "--memory \"%s\" is not a size like 256M or 2G", val);
        json_object_set_new(sp->resources, "memory_mib", json_integer(n));
        return 0;
    case CLI_SPEC_DISK:
        if (cli_parse_size_mib(val, &n) < 0 || n % 1024 != 0)
            return cli_usage(
                ctx, cmd, "--disk \"%s\" is not a whole number of GiB like 10G",
                val);
        json_object_set_new(sp->resources, "disk_gib", json_integer(n / 1024));
        return 0;
    case CLI_SPEC_RESTART:
        json_object_set_new(sp->body, "restart", json_string(val));
        return 0;
    case CLI_SPEC_CONSTRAINT:
        json_array_append_new(sp->constraints, json_string(val));
        return 0;
    case CLI_SPEC_SPREAD:
    case CLI_SPEC_BINPACK: {
        const char *s = id == CLI_SPEC_SPREAD ? "spread" : "binpack";
        if (sp->strategy != NULL && strcmp(sp->strategy, s) != 0)
            return cli_usage(ctx, cmd,
                             "--spread and --binpack exclude each other");
        sp->strategy = s;
        return 0;
    }
    case CLI_SPEC_MAX_PER_HOST:
        if (cli_parse_int(val, 0, 1000000, &n) < 0)
            return cli_usage(ctx, cmd, "--max-per-host \"%s\" is not a number",
                             val);
        sp->max_per_host = n;
        return 0;
    case CLI_SPEC_ENV:
        sp->env_set = true;
        return cli_add_env(ctx, cmd, sp->env, val);
    case CLI_SPEC_STOP_GRACE: {
        /* The range (1..3600 s) is the API's to check: its 422 says it. */
        long g = cli_parse_duration(val);
        if (g < 0)
            return cli_usage(ctx, cmd,
                             "--stop-grace \"%s\" is not a number of seconds "
                             "like 30, 30s or 2m",
                             val);
        json_object_set_new(sp->body, "stop_grace_seconds", json_integer(g));
        return 0;
    }
    }
    return cli_usage(ctx, cmd, "internal error: option %d unhandled", id);
}

void
cli_spec_init(struct cli_spec *sp)
{
    memset(sp, 0, sizeof(*sp));
    sp->body = json_object();
    sp->resources = json_object();
    sp->constraints = json_array();
    sp->env = json_object();
    sp->max_per_host = -1;
}

void
cli_spec_finish(struct cli_spec *sp, bool fill_defaults)
{
    if (json_object_size(sp->resources) > 0) {
        /* A PATCH or create with resources replaces the whole object, so
         * the documented defaults fill what the user left out. */
        if (fill_defaults) {
            if (!json_object_get(sp->resources, "vcpus"))
                json_object_set_new(sp->resources, "vcpus", json_integer(1));
            if (!json_object_get(sp->resources, "memory_mib"))
                json_object_set_new(sp->resources, "memory_mib",
                                    json_integer(256));
            if (!json_object_get(sp->resources, "disk_gib"))
                json_object_set_new(sp->resources, "disk_gib", json_integer(0));
        }
        json_object_set(sp->body, "resources", sp->resources);
    }
    if (json_array_size(sp->constraints) > 0 || sp->strategy != NULL ||
        sp->max_per_host >= 0) {
        json_t *pl = json_object();
        json_object_set(pl, "constraints", sp->constraints);
        json_object_set_new(
            pl, "strategy",
            json_string(sp->strategy ? sp->strategy : "spread"));
        json_object_set_new(
            pl, "max_per_host",
            json_integer(sp->max_per_host > 0 ? sp->max_per_host : 0));
        json_object_set_new(sp->body, "placement", pl);
    }
    if (sp->env_set)
        json_object_set(sp->body, "env", sp->env);
}

void
cli_spec_free(struct cli_spec *sp)
{
    json_decref(sp->body);
    json_decref(sp->resources);
    json_decref(sp->constraints);
    json_decref(sp->env);
}

/* ---- waiting --------------------------------------------------------- */

void
cli_progress(struct cli_ctx *ctx, const char *fmt, ...)
{
    va_list ap;
    char *msg;

    if (!ctx->progress)
        return;
    va_start(ap, fmt);
    msg = xvasprintf(fmt, ap);
    va_end(ap);
    char *clean = fmt_sanitize(msg, 200);
    /* Rewrite one line in place: \r, clear to end of line. */
    fprintf(ctx->err, "\r\033[K%s", clean);
    fflush(ctx->err);
    free(clean);
    free(msg);
}

void
cli_progress_done(struct cli_ctx *ctx)
{
    if (!ctx->progress)
        return;
    fprintf(ctx->err, "\r\033[K");
    fflush(ctx->err);
}

void
cli_poll_sleep(long *delay_ms)
{
    cli_sleep_ms(*delay_ms);
    *delay_ms = *delay_ms * 2 > POLL_MAX_MS ? POLL_MAX_MS : *delay_ms * 2;
}

json_t *
cli_poll_instance(struct cli_ctx *ctx, const char *path, const char *id,
                  const char **state, const char **name)
{
    json_t *inst = NULL;

    if (cli_api(ctx, "GET", path, NULL, &inst, NULL) != 0)
        return NULL;
    *state = cli_jstr(inst, "state");
    *name = cli_jstr(inst, "name") ? cli_jstr(inst, "name") : id;
    return inst;
}

int
cli_wait_instance_running(struct cli_ctx *ctx, const char *id, long timeout_s,
                          json_t **final)
{
    double start = cli_now_mono();
    long delay = POLL_FIRST_MS;
    char *path = cli_object_path("instances", id, NULL);
    int rc = CLI_EXIT_FAIL;

    *final = NULL;
    for (;;) {
        const char *state, *name;
        json_t *inst = cli_poll_instance(ctx, path, id, &state, &name);

        if (inst == NULL)
            break;
        const char *reason = cli_jstr(inst, "reason");
        const char *pending = cli_jstr(inst, "pending_reason");
        json_t *code = json_object_get(inst, "exit_code");
        state = state ? state : "unknown";

        if (strcmp(state, "running") == 0 ||
            (strcmp(state, "exited") == 0 && json_is_integer(code) &&
             json_integer_value(code) == 0)) {
            /* A one-off that already ran to completion also succeeded. */
            cli_progress_done(ctx);
            *final = inst;
            rc = 0;
            break;
        }
        if (fmt_state_is_final(state)) {
            cli_progress_done(ctx);
            if (json_is_integer(code))
                cli_fail(ctx,
                         "instance %s %s with code %" JSON_INTEGER_FORMAT
                         "%s%s",
                         name, state, json_integer_value(code),
                         reason ? ": " : "", reason ? reason : "");
            else
                cli_fail(ctx, "instance %s %s%s%s", name, state,
                         reason ? ": " : "", reason ? reason : "");
            *final = inst;
            break;
        }
        double elapsed = cli_now_mono() - start;
        if (timeout_s > 0 && elapsed >= (double)timeout_s) {
            cli_progress_done(ctx);
            cli_fail(ctx, "instance %s is still %s after %lds%s%s", name, state,
                     timeout_s, pending ? ": " : "", pending ? pending : "");
            json_decref(inst);
            break;
        }
        cli_progress(ctx, "%s: %s%s%s (%.0fs)", name, state,
                     pending ? ": " : "", pending ? pending : "", elapsed);
        json_decref(inst);
        cli_poll_sleep(&delay);
    }
    free(path);
    return rc;
}

int
cli_wait_service(struct cli_ctx *ctx, const char *name, long timeout_s)
{
    double start = cli_now_mono();
    long delay = POLL_FIRST_MS;
    char *spath = cli_object_path("services", name, NULL);
    char *ipath = cli_list_query(xstrdup("/v1/instances"), "service", name);
    int rc = CLI_EXIT_FAIL;

    for (;;) {
        json_t *svc = NULL, *items = NULL;
        size_t i;
        json_t *it;
        long long running = 0, live = 0;
        const char *pending = NULL;
        char *failure = NULL;

        if (cli_api(ctx, "GET", spath, NULL, &svc, NULL) != 0)
            break;
        if (cli_api_list(ctx, ipath, &items) != 0) {
            json_decref(svc);
            break;
        }
        long long want = json_integer_value(json_object_get(svc, "replicas"));
        json_t *gen = json_object_get(svc, "generation");
        json_array_foreach(items, i, it)
        {
            const char *st = cli_jstr(it, "state");
            const char *desired = cli_jstr(it, "desired_state");
            json_t *igen = json_object_get(it, "generation");
            bool current = !json_is_integer(gen) || !json_is_integer(igen) ||
                           json_integer_value(gen) == json_integer_value(igen);
            if (st == NULL || desired == NULL)
                continue;
            if (!fmt_state_is_final(st) && strcmp(desired, "running") == 0)
                live++;
            if (!current)
                continue;
            if (strcmp(st, "running") == 0 && strcmp(desired, "running") == 0)
                running++;
            else if (strcmp(st, "failed") == 0 && failure == NULL &&
                     strcmp(desired, "running") == 0)
                failure = xasprintf(
                    "instance %s failed%s%s", cli_jstr(it, "name"),
                    cli_jstr(it, "reason") ? ": " : "",
                    cli_jstr(it, "reason") ? cli_jstr(it, "reason") : "");
            else if (pending == NULL && cli_jstr(it, "pending_reason") != NULL)
                pending = cli_jstr(it, "pending_reason");
        }
        double elapsed = cli_now_mono() - start;
        bool done = running >= want && live <= want;
        char *line =
            xasprintf("service %s: %lld/%lld running%s%s", name, running, want,
                      pending ? "; " : "", pending ? pending : "");
        if (done) {
            cli_progress_done(ctx);
            rc = 0;
        } else if (failure != NULL) {
            cli_progress_done(ctx);
            cli_fail(ctx, "service %s: %s", name, failure);
        } else if (timeout_s > 0 && elapsed >= (double)timeout_s) {
            cli_progress_done(ctx);
            cli_fail(ctx, "%s after %lds", line, timeout_s);
        } else {
            cli_progress(ctx, "%s (%.0fs)", line, elapsed);
        }
        bool stop = done || failure != NULL ||
                    (timeout_s > 0 && elapsed >= (double)timeout_s);
        free(line);
        free(failure);
        json_decref(svc);
        json_decref(items);
        if (stop)
            break;
        cli_poll_sleep(&delay);
    }
    free(spath);
    free(ipath);
    return rc;
}

/* ---- run ------------------------------------------------------------- */

struct run_opts {
    struct cli_spec spec;
    const char *name;
    long long replicas;
    bool wait;
    long timeout;
    json_t *labels;
    json_t *links;
    const char *ready_when;
};

static int
run_opt(struct cli_ctx *ctx, void *st, int id, const char *val)
{
    struct run_opts *o = st;
    long long n;

    switch (id) {
    case OPT_NAME:
        o->name = val;
        return 0;
    case OPT_REPLICAS:
        if (cli_parse_int(val, 0, 1000000, &n) < 0)
            return cli_usage(ctx, "run", "--replicas \"%s\" is not a number",
                             val);
        o->replicas = n;
        return 0;
    case OPT_LABEL:
        return cli_add_label(ctx, "run", o->labels, val);
    case OPT_LINK:
        if (val[0] == '\0')
            return cli_usage(ctx, "run", "--link needs a service name");
        json_array_append_new(o->links, json_string(val));
        return 0;
    case OPT_READY_WHEN:
        if (strcmp(val, "running") != 0 && strcmp(val, "guest") != 0)
            return cli_usage(
                ctx, "run", "--ready-when \"%s\" is not running or guest", val);
        o->ready_when = val;
        return 0;
    case OPT_WAIT:
        o->wait = true;
        return 0;
    case OPT_TIMEOUT:
        return cli_parse_timeout(ctx, "run", val, &o->timeout);
    }
    return cli_spec_opt(ctx, "run", &o->spec, id, val);
}

int
cli_run_build(struct cli_ctx *ctx, int argc, char **argv, json_t **body,
              bool *is_service, bool *wait, long *timeout)
{
    struct run_opts o = {.replicas = -1};
    char **pos = NULL;
    int npos, rc;

    *body = NULL;
    cli_spec_init(&o.spec);
    o.labels = json_object();
    o.links = json_array();
    /* Stop at IMAGE: what follows belongs to the guest, as in docker run. */
    rc = cli_parse(ctx, "run", run_specs, ARGS_STOP_AT_POSITIONAL, argc, argv,
                   run_opt, &o, &pos, &npos);
    if (rc == 0)
        rc =
            cli_want_args(ctx, "run", pos, npos, 1, -1, "an IMAGE is required");
    if (rc != 0)
        goto out;
    if ((json_array_size(o.links) > 0 || o.ready_when != NULL) &&
        o.replicas < 0) {
        rc = cli_usage(ctx, "run",
                       "--%s is for services: add --replicas N and --name",
                       o.ready_when != NULL ? "ready-when" : "link");
        goto out;
    }
    if (o.replicas >= 0 && o.name == NULL) {
        rc = cli_usage(ctx, "run",
                       "--replicas creates a service, which needs --name");
        goto out;
    }
    json_object_set_new(o.spec.body, "image", json_string(pos[0]));
    if (o.name != NULL)
        json_object_set_new(o.spec.body, "name", json_string(o.name));
    /* `run IMAGE -- ARGS`: the "--" only separates; `-- --` passes one. */
    int first_arg = npos > 1 && strcmp(pos[1], "--") == 0 ? 2 : 1;
    if (npos > first_arg) {
        json_t *args = json_array();
        for (int i = first_arg; i < npos; i++)
            json_array_append_new(args, json_string(pos[i]));
        json_object_set_new(o.spec.body, "args", args);
    }
    if (o.replicas >= 0)
        json_object_set_new(o.spec.body, "replicas", json_integer(o.replicas));
    /* The server checks labels and links and names a bad one (422). */
    if (json_object_size(o.labels) > 0)
        json_object_set(o.spec.body, "labels", o.labels);
    if (json_array_size(o.links) > 0)
        json_object_set(o.spec.body, "links", o.links);
    if (o.ready_when != NULL)
        json_object_set_new(o.spec.body, "ready_when",
                            json_string(o.ready_when));
    cli_spec_finish(&o.spec, true);
    *body = json_incref(o.spec.body);
    *is_service = o.replicas >= 0;
    *wait = o.wait;
    *timeout = o.timeout;
out:
    free(pos);
    json_decref(o.labels);
    json_decref(o.links);
    cli_spec_free(&o.spec);
    return rc;
}

int
cmd_run(struct cli_ctx *ctx, int argc, char **argv)
{
    json_t *body = NULL, *obj = NULL, *final = NULL;
    bool service = false, wait = false;
    long timeout = 0;
    int rc;

    rc = cli_run_build(ctx, argc, argv, &body, &service, &wait, &timeout);
    if (rc != 0)
        return rc;
    rc = cli_api(ctx, "POST", service ? "/v1/services" : "/v1/instances", body,
                 &obj, NULL);
    if (rc != 0)
        goto out;
    const char *id = cli_jstr(obj, "id");
    const char *name = cli_jstr(obj, "name");
    if (ctx->output != FMT_JSON) {
        /* docker run -d prints the id; a service is addressed by name. */
        const char *show = service || ctx->output == FMT_NAME ? name : id;
        cli_print_line(ctx, show ? show : "");
        fflush(ctx->out);
    }
    if (wait) {
        if (service) {
            rc = cli_wait_service(ctx, name ? name : "", timeout);
        } else {
            rc = cli_wait_instance_running(ctx, id ? id : "", timeout, &final);
        }
    }
    if (ctx->output == FMT_JSON)
        cli_print_json(ctx, final ? final : obj);
out:
    json_decref(body);
    json_decref(obj);
    json_decref(final);
    return rc;
}
