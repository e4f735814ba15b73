/*
 * cloud-controller: the cluster's "kernel". Parses options, migrates the
 * schema, and runs one libevent loop for the REST API, the database pool and
 * the event watch. `--dev` brings its own PostgreSQL (devpg.c).
 */
#define LOG_MODULE "main"
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#include "app.h"
#include "devpg.h"
#include "gateway.h" /* agent gateway */
#include "log.h"
#include "mem.h"
#include "migrate.h"
#include "pki.h" /* agent gateway */
#include "store.h"

#define CLOUD_VERSION "0.1.0"
#define DEFAULT_LISTEN "127.0.0.1:7070"

struct opts {
    int dev;
    const char *listen;
    const char *db;
    const char *data_dir;
    int pool;
    int max_conns;
    int db_wait;
    unsigned long long max_blob;
    const char *agent_listen; /* agent gateway; "none" disables */
    int agent_listen_set;
    int verbose;
};

static void
usage(FILE *f)
{
    fprintf(f,
            "usage: cloud-controller [options]            run the controller\n"
            "       cloud-controller --dev [options]      all-in-one dev "
            "cluster with its own PostgreSQL\n"
            "       cloud-controller migrate --db URL     apply schema "
            "migrations and exit\n"
            "       cloud-controller issue-agent-cert --data-dir DIR --name "
            "HOST --out DIR\n"
            "                                              sign an agent's "
            "client certificate\n"
            "       cloud-controller version\n"
            "\n"
            "options:\n"
            "  --listen ADDR:PORT   API address (default %s)\n"
            "  --db URL             PostgreSQL URL (or CLOUD_DB_URL)\n"
            "  --data-dir DIR       state directory (dev default: "
            "/var/lib/cloud/dev as root, ~/.local/share/cloud/dev otherwise)\n"
            "  --db-pool N          database connections (default 4)\n"
            "  --max-conns N        concurrent HTTP connections (default "
            "1024)\n"
            "  --db-wait SECONDS    how long to wait for PostgreSQL at start "
            "(default 30)\n"
            "  --max-blob-mib N     largest image blob accepted (default "
            "8192)\n"
            "  --agent-listen ADDR:PORT  agent gateway (mTLS) address "
            "(default " GATEWAY_DEFAULT_LISTEN "), or none\n"
            "  -v, --verbose        debug logging\n"
            "  -h, --help           this text\n",
            DEFAULT_LISTEN);
}

static int
int_opt(const char *name, const char *s, int min, int max)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < min || v > max) {
        fprintf(stderr, "cloud-controller: %s must be an integer from %d to "
                        "%d, not \"%s\"\n",
                name, min, max, s);
        exit(2);
    }
    return (int)v;
}

static void
parse_opts(int argc, char **argv, struct opts *o)
{
    static const struct option longopts[] = {
        {"dev", no_argument, NULL, 'D'},
        {"listen", required_argument, NULL, 'l'},
        {"db", required_argument, NULL, 'd'},
        {"data-dir", required_argument, NULL, 'r'},
        {"db-pool", required_argument, NULL, 'p'},
        {"max-conns", required_argument, NULL, 'm'},
        {"db-wait", required_argument, NULL, 'w'},
        {"max-blob-mib", required_argument, NULL, 'B'},
        {"agent-listen", required_argument, NULL, 'A'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    int c;

    memset(o, 0, sizeof(*o));
    o->listen = DEFAULT_LISTEN;
    o->db = getenv("CLOUD_DB_URL");
    o->pool = 4;
    o->max_conns = 1024;
    o->db_wait = 30;
    o->max_blob = 8ull << 30;
    o->agent_listen = GATEWAY_DEFAULT_LISTEN;
    while ((c = getopt_long(argc, argv, "vh", longopts, NULL)) != -1) {
        switch (c) {
        case 'D': o->dev = 1; break;
        case 'l': o->listen = optarg; break;
        case 'd': o->db = optarg; break;
        case 'r': o->data_dir = optarg; break;
        case 'p': o->pool = int_opt("--db-pool", optarg, 1, 64); break;
        case 'm': o->max_conns = int_opt("--max-conns", optarg, 1, 100000); break;
        case 'w': o->db_wait = int_opt("--db-wait", optarg, 0, 3600); break;
        case 'B':
            o->max_blob = (unsigned long long)int_opt("--max-blob-mib", optarg,
                                                      1, 1048576) << 20;
            break;
        case 'A': o->agent_listen = optarg; o->agent_listen_set = 1; break;
        case 'v': o->verbose = 1; break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); exit(2);
        }
    }
}

static int
split_listen(const char *s, char **host, unsigned short *port)
{
    const char *colon = strrchr(s, ':');
    char *end;
    long p;

    if (colon == NULL || colon == s)
        return -1;
    p = strtol(colon + 1, &end, 10);
    if (*end || end == colon + 1 || p < 0 || p > 65535)
        return -1;
    *host = xstrndup(s, (size_t)(colon - s));
    *port = (unsigned short)p;
    return 0;
}

static int
mkdir_p(const char *path, mode_t mode)
{
    char *p = xstrdup(path);
    int rc = 0;

    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, mode) < 0 && errno != EEXIST)
            rc = -1;
        *s = '/';
    }
    if (mkdir(p, mode) < 0 && errno != EEXIST)
        rc = -1;
    if (rc < 0)
        log_warn("cannot create %s", path);
    free(p);
    return rc;
}

static char *
default_data_dir(int dev)
{
    const char *home = getenv("HOME");
    const char *leaf = dev ? "dev" : "controller";

    if (geteuid() == 0 || home == NULL)
        return xasprintf("/var/lib/cloud/%s", leaf);
    return xasprintf("%s/.local/share/cloud/%s", home, leaf);
}

/* Writes the CLI context so cloudctl needs no flags (cli reads it). */
static void
write_context(const char *url)
{
    const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
    char *dir, *path, *tmp;
    FILE *f;

    if (xdg && *xdg)
        dir = xasprintf("%s/cloud", xdg);
    else if (home && *home)
        dir = xasprintf("%s/.config/cloud", home);
    else
        return;
    if (mkdir_p(dir, 0700) < 0) {
        free(dir);
        return;
    }
    path = xasprintf("%s/context.json", dir);
    tmp = xasprintf("%s.tmp", path);
    f = fopen(tmp, "w");
    if (f == NULL) {
        log_warn("cannot write %s", tmp);
    } else {
        fprintf(f, "{\"url\":\"%s\",\"token\":\"\"}\n", url);
        if (fclose(f) != 0 || rename(tmp, path) != 0)
            log_warn("cannot write %s", path);
    }
    free(tmp);
    free(path);
    free(dir);
}

static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    log_info("signal %d: shutting down", (int)sig);
    event_base_loopexit(arg, NULL);
}

static int
cmd_migrate(int argc, char **argv)
{
    struct opts o;

    parse_opts(argc, argv, &o);
    if (o.db == NULL) {
        fprintf(stderr, "cloud-controller: migrate needs --db URL or "
                        "CLOUD_DB_URL\n");
        return 2;
    }
    return migrate_run(o.db, o.db_wait) < 0 ? 1 : 0;
}

/* ---- agent gateway (gateway.c, pki.c) ---- */

static int
cmd_issue_agent_cert(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"data-dir", required_argument, NULL, 'r'},
        {"name", required_argument, NULL, 'n'},
        {"out", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    const char *dir = NULL, *name = NULL, *out = NULL;
    char *def = NULL;
    int c, rc;

    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'r': dir = optarg; break;
        case 'n': name = optarg; break;
        case 'o': out = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (name == NULL || out == NULL || optind < argc) {
        fprintf(stderr, "cloud-controller: issue-agent-cert needs --name HOST "
                        "and --out DIR (and --data-dir of the controller)\n");
        return 2;
    }
    if (dir == NULL)
        dir = def = default_data_dir(0);
    rc = pki_issue_agent(dir, name, out) < 0 ? 1 : 0;
    free(def);
    return rc;
}

/*
 * Starts the agent gateway. With the default address a busy port only
 * warns (parallel test controllers all default to it); an explicit
 * --agent-listen that cannot be bound is fatal.
 */
static int
start_gateway(const struct opts *o, struct app *app, const char *data_dir,
              struct pki_paths *pki, struct gateway **gwp)
{
    struct gateway_config cfg = {
        .pki = pki,
        .heartbeat_ms = 2000,
        .down_after_ms = 30000,
        .fence_after_ms = 20000,
        .resync_ms = 15000,
    };
    char *ghost = NULL;
    unsigned short gport = 0, gbound = 0;
    int ret = -1;

    if (strcmp(o->agent_listen, "none") == 0)
        return 0;
    if (split_listen(o->agent_listen, &ghost, &gport) < 0) {
        log_errx("--agent-listen must be ADDR:PORT or none, not %s",
                 o->agent_listen);
        return -1;
    }
    if (pki_init(data_dir, pki) < 0)
        goto cleanup;
    *gwp = gateway_new(app->base, app->db, app->watch, &cfg);
    if (*gwp == NULL)
        goto cleanup;
    if (gateway_listen(*gwp, ghost, gport, &gbound) < 0) {
        if (o->agent_listen_set)
            goto cleanup;
        log_warnx("agent gateway disabled: the default %s is taken; give "
                  "--agent-listen to choose another",
                  o->agent_listen);
    }
    ret = 0;

cleanup:
    free(ghost);
    return ret;
}

static int
run(struct opts *o)
{
    struct app app;
    struct devpg pg;
    struct http_server *srv = NULL;
    struct event *sigint = NULL, *sigterm = NULL;
    struct gateway *gw = NULL; /* agent gateway */
    struct pki_paths pki = {0};
    char *host = NULL, *data_dir = NULL, *url = NULL;
    unsigned short port = 0, bound = 0;
    int rc = 1;

    memset(&app, 0, sizeof(app));
    memset(&pg, 0, sizeof(pg));
    if (split_listen(o->listen, &host, &port) < 0) {
        fprintf(stderr, "cloud-controller: --listen must be ADDR:PORT, not "
                        "\"%s\"\n",
                o->listen);
        return 2;
    }
    if (o->dev) {
        data_dir = o->data_dir ? xstrdup(o->data_dir) : default_data_dir(1);
        if (mkdir_p(data_dir, 0755) < 0)
            goto out;
        if (o->db == NULL) {
            if (devpg_start(&pg, data_dir) < 0)
                goto out;
            o->db = pg.conninfo;
        }
    } else if (o->data_dir != NULL) {
        data_dir = xstrdup(o->data_dir);
    }
    if (data_dir && mkdir_p(data_dir, 0755) < 0)
        goto out;
    if (!o->dev && o->db == NULL) {
        fprintf(stderr, "cloud-controller: give --db URL (or CLOUD_DB_URL), "
                        "or run --dev for an all-in-one cluster\n");
        rc = 2;
        goto out;
    }
    if (migrate_run(o->db, o->db_wait) < 0)
        goto out;

    app.schema_version = migrate_latest();
    app.base = event_base_new();
    if (app.base == NULL)
        fatalx("cannot create the event loop");
    app.db = db_pool_new(app.base, o->db, o->pool, store_stmts, ST__COUNT);
    app.watch = watch_new(app.base, app.db, o->db);
    app.cache = cache_new(app.base, app.db);
    app.writer = writer_new(app.db, app.cache);
    if (data_dir == NULL)
        data_dir = default_data_dir(o->dev);
    app.blobs = blobs_new(app.base, data_dir, o->max_blob);
    if (app.blobs == NULL)
        goto out;
    {
        struct watch_observer obs = {
            .on_event = cache_on_event,
            .on_batch = cache_on_batch,
            .on_reconnect = cache_on_reconnect,
            .arg = app.cache,
        };
        watch_observe(app.watch, &obs);
    }
    /* [reconciler start-up goes here] */
    if (start_gateway(o, &app, data_dir, &pki, &gw) < 0)
        goto out;
    srv = http_server_new(app.base, api_routes, api_nroutes, o->max_conns,
                          &app);
    if (http_server_listen(srv, host, port, &bound) < 0)
        goto out;
    url = xasprintf("http://%s:%u", host, bound);
    log_info("listening on %s", url);

    sigint = evsignal_new(app.base, SIGINT, on_signal, app.base);
    sigterm = evsignal_new(app.base, SIGTERM, on_signal, app.base);
    if (sigint == NULL || sigterm == NULL || evsignal_add(sigint, NULL) < 0 ||
        evsignal_add(sigterm, NULL) < 0)
        fatalx("cannot install signal handlers");

    if (o->dev) {
        write_context(url);
        printf("\n"
               "  cloud dev cluster is up\n"
               "  API:      %s\n"
               "  data:     %s\n"
               "  token:    none needed in dev mode (API on loopback only)\n"
               "\n"
               "  try:\n"
               "    curl -s %s/v1/hosts\n"
               "    curl -s -X POST %s/v1/services -H 'Content-Type: "
               "application/json' -d '{\"name\":\"web\",\"image\":\"...\"}'\n"
               "    curl -sN '%s/v1/events?watch=true'\n"
               "\n"
               "  no local agent yet: instances stay pending until agents "
               "join (see README, Status).\n"
               "  Ctrl-C stops the controller and its PostgreSQL.\n\n",
               url, data_dir, url, url, url);
        fflush(stdout);
    }
    event_base_dispatch(app.base);
    rc = 0;
out:
    if (sigint)
        event_free(sigint);
    if (sigterm)
        event_free(sigterm);
    http_server_free(srv);
    /* [reconciler shutdown goes here] */
    /* Writers fail what waits; then the pool fails what is in flight (its
     * callbacks may still touch watch clients, the cache and the writer). */
    writer_free(app.writer);
    blobs_free(app.blobs);
    gateway_close(gw); /* agent gateway: its queries fail in db_pool_free */
    db_pool_free(app.db);
    gateway_free(gw);
    pki_paths_clear(&pki);
    watch_free(app.watch);
    cache_free(app.cache);
    if (app.base)
        event_base_free(app.base);
    devpg_stop(&pg);
    free(host);
    free(data_dir);
    free(url);
    return rc;
}

int
main(int argc, char **argv)
{
    struct opts o;

    log_init("cloud-controller", LOG_LVL_INFO, -1);
    signal(SIGPIPE, SIG_IGN);
    if (argc > 1 && strcmp(argv[1], "version") == 0) {
        printf("cloud-controller %s (schema %d)\n", CLOUD_VERSION,
               migrate_latest());
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "migrate") == 0)
        return cmd_migrate(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "issue-agent-cert") == 0)
        return cmd_issue_agent_cert(argc - 1, argv + 1);
    parse_opts(argc, argv, &o);
    if (optind < argc) {
        fprintf(stderr, "cloud-controller: unknown command \"%s\"\n",
                argv[optind]);
        usage(stderr);
        return 2;
    }
    if (o.verbose)
        log_set_level(LOG_LVL_DEBUG);
    return run(&o);
}
