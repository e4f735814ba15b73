/*
 * main: cloudctl's command table, help texts and dispatch. cli_main() takes
 * its output streams as arguments so the unit tests can run the whole CLI
 * in-process and check what a user would see. The `version` command lives
 * here too: it is about the program, not about a resource.
 */
#include "cli.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http.h"
#include "mem.h"

#define GLOBAL_FLAGS                                                           \
    "Global flags:\n"                                                          \
    "  --server URL      controller URL (env CLOUD_URL, then the context\n"    \
    "                    file, then http://127.0.0.1:7070)\n"                  \
    "  --token TOKEN     bearer token (env CLOUD_TOKEN, then the context\n"    \
    "                    file)\n"                                              \
    "  -o, --output FMT  table (default), wide, json or name\n"                \
    "  --cacert FILE     trust the CA certificates in FILE for https\n"        \
    "  --insecure        do not verify the server's certificate\n"             \
    "  -h, --help        show help\n"

static const char help_run[] =
    "Usage: cloudctl run [flags] IMAGE [--] [ARGS...]\n"
    "\n"
    "Starts a one-off instance of IMAGE (POST /v1/instances), or a service of\n"
    "identical instances when --replicas is given (POST /v1/services). Prints\n"
    "the instance id, or the service name. Everything after IMAGE is passed\n"
    "to the guest as its arguments.\n"
    "\n"
    "Flags:\n"
    "  --name NAME            instance or service name (a service needs one)\n"
    "  --cpus N               vCPUs (default 1)\n"
    "  -m, --memory SIZE      memory: 256M, 2G, or a number of MiB (default 256M)\n"
    "  --disk SIZE            disk in whole GiB, e.g. 10G (default 0)\n"
    "  --replicas N           create a service with N instances\n"
    "  --restart POLICY       never, always, on-failure or on-failure:N\n"
    "  -e, --env K=V          environment variable (repeatable; K alone copies\n"
    "                         it from this environment)\n"
    "  -l, --label K=V        label (repeatable); a service's instances get\n"
    "                         its labels\n"
    "  --link SERVICE         a service: push SERVICE's endpoints into its\n"
    "                         config as SERVICE_ENDPOINTS (repeatable)\n"
    "  --ready-when WHEN      a service: when an instance counts as an\n"
    "                         endpoint, running (default) or guest (its\n"
    "                         guest said ready)\n"
    "  --stop-grace SECONDS   how long a TERM stop waits for the guest to\n"
    "                         power off before it is destroyed, 1 to 3600 s\n"
    "                         (30, 30s, 2m; default 10)\n"
    "  --constraint EXPR      placement constraint: k=v, k!=v, \"k in (a,b)\"\n"
    "                         (repeatable)\n"
    "  --spread | --binpack   placement strategy (default spread)\n"
    "  --max-per-host N       at most N instances of a service per host\n"
    "  -w, --wait             wait until running (a service: all replicas);\n"
    "                         fail with the reason if it fails\n"
    "  --timeout DURATION     give up waiting after 90s, 5m, 1h...\n"
    "\n"
    "Examples:\n"
    "  cloudctl run hello:latest\n"
    "  cloudctl run --name web --replicas 3 --memory 512M web:1.2 -- --port 8080\n";

static const char help_ps[] =
    "Usage: cloudctl ps [flags]\n"
    "\n"
    "Lists instances, newest first. Exited and failed instances are hidden\n"
    "unless -a is given.\n"
    "\n"
    "Flags:\n"
    "  -a, --all          show every instance\n"
    "  -q, --quiet        print full instance ids only\n"
    "  --service NAME     only instances of this service\n"
    "  --host NAME        only instances on this host\n"
    "  --state STATE      only instances in this state (pending, running,\n"
    "                     exited, ...)\n"
    "  -l, --selector K=V only instances with label K=V (K alone: with label\n"
    "                     K); repeat or separate with commas to require\n"
    "                     several\n"
    "\n"
    "Columns: ID (first 12 characters; any unique prefix is accepted back),\n"
    "NAME, SERVICE, STATE (\"exited (143)\", \"running (stopping)\"), HOST,\n"
    "AGE. -o wide adds IMAGE, DESIRED, RESTARTS, ADDRESSES, REASON and\n"
    "LABELS.\n";

static const char help_inspect[] =
    "Usage: cloudctl inspect ID|NAME...\n"
    "\n"
    "Prints instances as JSON, as the API returns them. IDs may be unique\n"
    "prefixes of at least 4 characters. A name that is no instance is looked\n"
    "up as a service. Several arguments print a JSON array.\n";

static const char help_logs[] =
    "Usage: cloudctl logs [-f] [--tail N] ID|NAME\n"
    "\n"
    "Prints the serial console of an instance (GET\n"
    "/v1/instances/{id}/logs): at most the last 1 MiB of it. The\n"
    "controller the instance's host agent is connected to serves it.\n"
    "\n"
    "Flags:\n"
    "  -f, --follow    keep printing new output\n"
    "  -n, --tail N    only the last N lines\n";

static const char help_kill[] =
    "Usage: cloudctl kill [-s TERM|KILL] [--grace SECONDS] ID|NAME|SERVICE...\n"
    "\n"
    "Sends a signal: TERM asks the guest to shut down (ACPI) and destroys it\n"
    "after the grace period (exit code 143; 0 or the guest's code when it\n"
    "powers off in time); KILL destroys it at once (exit code 137). An\n"
    "instance that never reached a host exits at once with 143 or 137. A\n"
    "service name kills every live instance of the service (the service\n"
    "then replaces them as its restart policy says).\n"
    "\n"
    "Flags:\n"
    "  -s, --signal SIG   TERM (default) or KILL; SIGTERM, 15, SIGKILL, 9 too\n"
    "  --grace SECONDS    this stop's grace period, 1 to 3600 s (30, 30s, 2m;\n"
    "                     TERM only); default: the instance's\n"
    "                     stop_grace_seconds (10 unless set)\n";

static const char help_rm[] =
    "Usage: cloudctl rm ID|NAME...\n"
    "\n"
    "Deletes instances. A pending or finished instance goes at once; a\n"
    "running one is stopped first and goes when it has stopped.\n";

static const char help_stop[] =
    "Usage: cloudctl stop [--grace SECONDS] ID|NAME...\n"
    "\n"
    "Stops instances gracefully: the same as kill -s TERM.\n"
    "\n"
    "Flags:\n"
    "  --grace SECONDS    this stop's grace period, 1 to 3600 s (30, 30s, 2m);\n"
    "                     default: the instance's stop_grace_seconds\n";

static const char help_start[] =
    "Usage: cloudctl start ID|NAME...\n"
    "\n"
    "Starts instances that have ended (exited, failed, lost) again: they\n"
    "go back to pending and are placed anew. Refused while one is still\n"
    "stopping.\n";

static const char help_restart[] =
    "Usage: cloudctl restart ID|NAME...\n"
    "\n"
    "Restarts instances: a running one is stopped (TERM, then the grace\n"
    "period) and started again once it has ended; an ended one starts.\n";

static const char help_wait[] =
    "Usage: cloudctl wait [--timeout DURATION] ID|NAME...\n"
    "\n"
    "Waits until each instance has exited, failed or been lost, prints its\n"
    "exit code and exits with it (like docker wait). With several instances\n"
    "every code is printed and the last one is the exit status. An instance\n"
    "that ends without an exit code (failed to start, lost) is an error.\n"
    "\n"
    "Flags:\n"
    "  --timeout DURATION   give up after 90s, 5m, 1h... (exit 1)\n";

static const char help_scale[] =
    "Usage: cloudctl scale [--wait] SERVICE=N...\n"
    "\n"
    "Sets the number of replicas of services (PATCH /v1/services/{name}).\n"
    "\n"
    "Flags:\n"
    "  -w, --wait           wait until N instances of the current generation\n"
    "                       run and no extra ones are left\n"
    "  --timeout DURATION   give up waiting after 90s, 5m, 1h...\n";

static const char help_services[] =
    "Usage: cloudctl services [ls] [--state STATE] [-l K=V]...\n"
    "       cloudctl services inspect NAME...\n"
    "       cloudctl services update NAME [flags]\n"
    "       cloudctl services rm NAME...\n"
    "\n"
    "Lists, shows, changes and deletes services. Create one with\n"
    "`cloudctl run --name NAME --replicas N IMAGE`. ls -l K=V (or\n"
    "--selector) keeps the services with that label; -o wide adds LABELS.\n"
    "\n"
    "Update flags (only what is given changes; image, resources, args and\n"
    "env roll the instances over to a new generation):\n"
    "  --image REF          new image\n"
    "  --replicas N         new replica count\n"
    "  --cpus N, -m SIZE, --disk SIZE\n"
    "                       new resources (unset ones take the defaults)\n"
    "  --arg ARG            guest argument (repeatable; replaces all)\n"
    "  -e, --env K=V        environment (repeatable; replaces all)\n"
    "  --restart POLICY     never, always, on-failure[:N]\n"
    "  --constraint EXPR, --spread, --binpack, --max-per-host N\n"
    "                       new placement (replaces all)\n"
    "  -l, --label K=V      label (repeatable; replaces all, the live\n"
    "                       instances are relabelled); --no-labels clears\n"
    "  --link SERVICE       add a link (repeatable)\n"
    "  --unlink SERVICE     remove a link (repeatable); links are changed\n"
    "                       with If-Match, so a concurrent edit fails\n"
    "  --ready-when WHEN    running or guest: when an instance is an endpoint\n"
    "  --stop-grace SECONDS the grace period of TERM stops, 1 to 3600 s (the\n"
    "                       live instances take it at once)\n"
    "  -w, --wait           wait until the new generation runs\n"
    "  --timeout DURATION   give up waiting after 90s, 5m, 1h...\n";

static const char help_hosts[] =
    "Usage: cloudctl hosts [ls] [--state STATE]\n"
    "       cloudctl hosts inspect NAME...\n"
    "       cloudctl hosts cordon|uncordon|drain NAME...\n"
    "\n"
    "Lists and manages hypervisor hosts. cordon keeps new instances off a\n"
    "host, uncordon makes it ready again, drain moves its service instances\n"
    "away (the host becomes draining, then drained).\n";

static const char help_images[] =
    "Usage: cloudctl images [ls]\n"
    "       cloudctl images inspect REF|ID...\n"
    "       cloudctl images push NAME:TAG --kernel FILE [--initrd FILE]\n"
    "                            [--cmdline CMDLINE] | --disk FILE\n"
    "       cloudctl images rm REF|ID...\n"
    "\n"
    "Lists, shows, pushes and removes images. REF is name:tag, or name for\n"
    "name:latest. push uploads each file in 1 MiB chunks, checked by SHA-256;\n"
    "rm is refused while a service or a live instance uses the image.\n";

static const char help_events[] =
    "Usage: cloudctl events [-f] [--since ID] [--type TYPE] [--object KIND]\n"
    "\n"
    "Prints the cluster's events, one line each: TIME TYPE NAME MESSAGE.\n"
    "With -o json, one JSON object per line when following.\n"
    "\n"
    "Flags:\n"
    "  -f, --follow     keep printing new events as they happen (Server-Sent\n"
    "                   Events; resumes by itself after a lost connection)\n"
    "  --since ID       only events after event ID\n"
    "  --type TYPE      only this type, e.g. instance.killed\n"
    "  --object KIND    only events of service, instance or host\n";

static const char help_config[] =
    "Usage: cloudctl config get SERVICE [KEY] [--version N]\n"
    "       cloudctl config get --instance INSTANCE [KEY]\n"
    "       cloudctl config set SERVICE KEY=VALUE... [--if-version N] [--wait]\n"
    "       cloudctl config unset SERVICE KEY... [--if-version N] [--wait]\n"
    "       cloudctl config history SERVICE\n"
    "       cloudctl config rollback SERVICE VERSION [--if-version N] [--wait]\n"
    "       cloudctl config watch SERVICE\n"
    "\n"
    "A service's configuration: string keys and values with a version that\n"
    "grows on every change, pushed live into its running guests.\n"
    "\n"
    "  get        the keys and values (KEY VALUE, sorted), or one value\n"
    "             alone; --version N shows an older version; --instance\n"
    "             shows what that instance's guest gets: its service's\n"
    "             config plus <LINK>_ENDPOINTS and <LINK>_ENDPOINTS_VERSION\n"
    "             for each linked service\n"
    "  set        sets keys (a merge: other keys stay); prints the new\n"
    "             version, \"web: config version 4\"\n"
    "  unset      removes keys\n"
    "  history    the kept versions, newest first\n"
    "  rollback   makes a new version with the config of VERSION\n"
    "  watch      prints the current version, then each new one\n"
    "\n"
    "Flags:\n"
    "  --version N      get: that version instead of the current one\n"
    "  --instance I     get: instance I's effective config\n"
    "  --if-version N   write only if the current version is N (else the\n"
    "                   server refuses with 412 and nothing changes)\n"
    "  -w, --wait       after a write, wait until every running instance's\n"
    "                   guest acknowledged the new version\n"
    "  --timeout D      give up waiting after D (default 2m; 0 = never)\n"
    "\n"
    "Examples:\n"
    "  cloudctl config set web MODE=prod WORKERS=4\n"
    "  cloudctl config set web MODE=debug --wait\n"
    "  cloudctl config get web MODE\n"
    "  cloudctl config get --instance web-1\n"
    "  cloudctl config rollback web 3\n";

static const char help_endpoints[] =
    "Usage: cloudctl endpoints SERVICE [-w]\n"
    "\n"
    "Lists a service's endpoints: its ready running instances' addresses\n"
    "with each declared port (NAME ADDR; -o wide adds INSTANCE, ADDRESS and\n"
    "PORT; -o name prints the addresses alone). Services that link to it\n"
    "get the same list in their config as <SERVICE>_ENDPOINTS.\n"
    "\n"
    "Flags:\n"
    "  -w, --watch   keep following: print the list again on every change\n"
    "                (with -o json, one object per line)\n";

static const char help_version[] =
    "Usage: cloudctl version [--client]\n"
    "\n"
    "Prints cloudctl's version and whether the server answers /healthz.\n"
    "\n"
    "Flags:\n"
    "  --client   do not contact the server\n";

static const char help_help[] = "Usage: cloudctl help [COMMAND]\n"
                                "\n"
                                "Shows help for cloudctl or for one command.\n";

static int cmd_help(struct cli_ctx *ctx, int argc, char **argv);

const struct cli_cmd cli_commands[] = {
    {"run", cmd_run, "start an instance or a service", help_run},
    {"ps", cmd_ps, "list instances", help_ps},
    {"inspect", cmd_inspect, "show instances as JSON", help_inspect},
    {"logs", cmd_logs, "print an instance's console", help_logs},
    {"kill", cmd_kill, "signal instances or a service", help_kill},
    {"stop", cmd_stop, "stop instances gracefully", help_stop},
    {"start", cmd_start, "start stopped instances", help_start},
    {"restart", cmd_restart, "restart instances", help_restart},
    {"rm", cmd_rm, "delete instances", help_rm},
    {"wait", cmd_wait, "wait for instances to end, print exit codes",
     help_wait},
    {"scale", cmd_scale, "set the replicas of services", help_scale},
    {"services", cmd_services, "list and manage services", help_services},
    {"hosts", cmd_hosts, "list and manage hosts", help_hosts},
    {"images", cmd_images, "list and manage images", help_images},
    {"events", cmd_events, "print or follow cluster events", help_events},
    {"config", cmd_config, "service configuration", help_config},
    {"endpoints", cmd_endpoints, "a service's endpoints", help_endpoints},
    {"version", cmd_version, "print versions", help_version},
    {"help", cmd_help, "show help", help_help},
    {NULL, NULL, NULL, NULL},
};

const struct cli_cmd *
cli_find_command(const char *name)
{
    for (const struct cli_cmd *c = cli_commands; c->name != NULL; c++)
        if (strcmp(c->name, name) == 0)
            return c;
    /* Familiar aliases from docker and kubectl. */
    static const struct {
        const char *alias, *name;
    } aliases[] = {
        {"service", "services"}, {"svc", "services"}, {"host", "hosts"},
        {"image", "images"},     {"delete", "rm"},    {"get", "inspect"},
    };
    for (size_t i = 0; i < sizeof(aliases) / sizeof(aliases[0]); i++)
        if (strcmp(aliases[i].alias, name) == 0)
            return cli_find_command(aliases[i].name);
    return NULL;
}

static void
main_help(FILE *out)
{
    fprintf(
        out,
        "Usage: cloudctl [global flags] COMMAND [flags] [ARGS...]\n"
        "\n"
        "cloudctl manages the instances (\"processes\") of a warehouse-scale cluster\n"
        "through its controller's REST API.\n"
        "\n"
        "Commands:\n");
    for (const struct cli_cmd *c = cli_commands; c->name != NULL; c++)
        fprintf(out, "  %-10s %s\n", c->name, c->summary);
    fprintf(
        out,
        "\n" GLOBAL_FLAGS "\n"
        "The context file $XDG_CONFIG_HOME/cloud/context.json (or\n"
        "~/.config/cloud/context.json) holds {\"url\":...,\"token\":...}; its token is\n"
        "only sent to its own url.\n"
        "\n"
        "Exit status: 0 on success, 1 when the operation failed, 2 for a usage error;\n"
        "`cloudctl wait` exits with the instance's code.\n"
        "Run 'cloudctl COMMAND --help' for a command's flags.\n");
}

int
cli_show_help(struct cli_ctx *ctx, const char *cmd)
{
    char first[32];
    const struct cli_cmd *c;

    if (cmd == NULL) {
        main_help(ctx->out);
        return CLI_EXIT_OK;
    }
    /* "services ls" -> "services" */
    xstrlcpy(first, cmd, sizeof(first));
    first[strcspn(first, " ")] = '\0';
    c = cli_find_command(first);
    if (c == NULL) {
        main_help(ctx->out);
        return CLI_EXIT_OK;
    }
    fprintf(ctx->out, "%s\n" GLOBAL_FLAGS, c->help);
    return CLI_EXIT_OK;
}

static int
cmd_help(struct cli_ctx *ctx, int argc, char **argv)
{
    char **pos = NULL;
    int npos;
    int rc =
        cli_parse(ctx, "help", NULL, 0, argc, argv, NULL, NULL, &pos, &npos);
    if (rc == 0) {
        if (npos > 0 && cli_find_command(pos[0]) == NULL)
            rc = cli_usage(ctx, NULL, "unknown command \"%s\"", pos[0]);
        else
            cli_show_help(ctx, npos > 0 ? pos[0] : NULL);
    }
    free(pos);
    return rc;
}

enum { OPT_CLIENT = 1 };

static int
version_opt(struct cli_ctx *ctx, void *st, int id, const char *val)
{
    (void)ctx;
    (void)val;
    if (id == OPT_CLIENT)
        *(bool *)st = true;
    return 0;
}

int
cmd_version(struct cli_ctx *ctx, int argc, char **argv)
{
    static const struct arg_spec specs[] = {
        {"client", 0, false, OPT_CLIENT},
        {NULL, 0, false, 0},
    };
    bool client_only = false;
    char **pos = NULL;
    int npos, rc;
    json_t *health = NULL;
    int status = 0;

    rc = cli_parse(ctx, "version", specs, 0, argc, argv, version_opt,
                   &client_only, &pos, &npos);
    free(pos);
    if (rc != 0)
        return rc;
    if (!client_only) {
        /* The API has no version route yet: /healthz says it answers. */
        rc = cli_api(ctx, "GET", "/healthz", NULL, &health, &status);
    }
    if (ctx->output == FMT_JSON) {
        json_t *v = json_pack("{s:{s:s}}", "client", "version", CLOUD_VERSION);
        if (!client_only && ctx->server != NULL)
            json_object_set_new(v, "server",
                                json_pack("{s:s,s:i,s:O?}", "url", ctx->server,
                                          "status", status, "healthz", health));
        cli_print_json(ctx, v);
        json_decref(v);
    } else {
        fprintf(ctx->out, "Client: cloudctl %s\n", CLOUD_VERSION);
        if (!client_only && ctx->server != NULL && status != 0) {
            const char *hs = cli_jstr(health, "status");
            char *s = fmt_sanitize(ctx->server, 0);
            fprintf(ctx->out, "Server: %s (healthz: %s)\n", s,
                    rc == 0 ? (hs ? hs : "ok") : "error");
            free(s);
        }
    }
    if (!client_only && rc != 0 && status != 0)
        cli_print_api_error(ctx, status, health, "GET", "/healthz");
    json_decref(health);
    return rc;
}

int
cli_main(int argc, char **argv, FILE *out, FILE *err)
{
    struct cli_ctx ctx = {.out = out, .err = err};
    struct args_iter it;
    const char *val, *cmdname = NULL;
    int id, rc = 0, cmd_index = -1;
    const char *nc = getenv("NO_COLOR");
    const char *term = getenv("TERM");

    ctx.color = isatty(fileno(out)) && (nc == NULL || *nc == '\0') &&
                (term == NULL || strcmp(term, "dumb") != 0);
    ctx.progress = isatty(fileno(err));

    /* Global flags may come before the command; the command's parser
     * accepts them again after it (kubectl does both). */
    args_init(&it, argc, argv, 1, NULL, cli_global_specs,
              ARGS_STOP_AT_POSITIONAL);
    while ((id = args_next(&it, &val)) != ARGS_END) {
        if (id == ARGS_ERROR) {
            rc = cli_usage(&ctx, NULL, "%s", it.error);
            goto out;
        }
        if (id == ARGS_POSITIONAL) {
            cmdname = val;
            cmd_index = it.i - 1;
            break;
        }
        rc = cli_global_opt(&ctx, NULL, id, val);
        if (rc != 0)
            goto out;
    }
    if (cmdname == NULL) {
        if (ctx.help) {
            main_help(out);
            rc = CLI_EXIT_OK;
        } else {
            rc = cli_usage(&ctx, NULL, "no command given");
        }
        goto out;
    }
    const struct cli_cmd *c = cli_find_command(cmdname);
    if (c == NULL) {
        rc = cli_usage(&ctx, NULL, "unknown command \"%s\"", cmdname);
        goto out;
    }
    rc = c->run(&ctx, argc - cmd_index, argv + cmd_index);
    if (rc == CLI_HELP_SHOWN)
        rc = CLI_EXIT_OK;
out:
    fflush(out);
    fflush(err);
    cli_http_free(ctx.http);
    free(ctx.flag_server);
    free(ctx.flag_token);
    free(ctx.cacert);
    free(ctx.server);
    free(ctx.token);
    return rc;
}
