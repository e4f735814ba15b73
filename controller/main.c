/*
 * cloud-controller: the cluster's "kernel". Parses options, migrates the
 * schema, and runs one libevent loop for the REST API, the database pool and
 * the event watch. `--dev` brings its own PostgreSQL (dev_pg.c).
 */
#define LOG_MODULE "main"
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/crypto.h>
#include <openssl/ssl.h>

#include "app.h"
#include "cmd_join.h"
#include "cmd_token.h"
#include "dev_mode.h"
#include "dev_pg.h"
#include "fsutil.h"
#include "gateway.h" /* agent gateway */
#include "join.h" /* agent enrolment */
#include "leader.h" /* the replica identity */
#include "logrelay.h" /* console logs between replicas */
#include "log.h"
#include "mem.h"
#include "migrate.h"
#include "notify.h" /* systemd readiness */
#include "pki.h" /* agent gateway */
#include "reconcile.h"
#include "retention.h"
#include "store.h"
#include "tlsctx.h"

#define CLOUD_VERSION "0.1.0"
/* Where cmake --install puts them (controller/CMakeLists.txt): relative to
 * the installed binary's directory (right under any --prefix and DESTDIR),
 * else at the configured prefix. A build tree's copies come first. */
#ifndef CLOUD_INSTALLED_AGENT
#define CLOUD_INSTALLED_AGENT "/usr/bin/cloud-agent"
#define CLOUD_INSTALLED_AGENT_REL "cloud-agent"
#endif
#ifndef CLOUD_INSTALLED_SAMPLE_SCRIPT
#define CLOUD_INSTALLED_SAMPLE_SCRIPT "/usr/libexec/cloud/build-sample.sh"
#define CLOUD_INSTALLED_SAMPLE_SCRIPT_REL "../libexec/cloud/build-sample.sh"
#endif
#define DEFAULT_LISTEN "127.0.0.1:7070"

struct opts {
    int dev;
    const char *listen;
    const char *db;
    const char *data_dir;
    int pool;
    int max_conns;
    int max_conns_per_addr;
    double anon_rate, anon_burst; /* per client address, http.c */
    double join_rate, join_burst; /* per client address, join.c */
    int db_wait;
    unsigned long long max_blob;
    const char *tls_cert, *tls_key;
    const char *cors[17];
    int ncors;
    int insecure_http;
    const char *agent_bin;     /* dev: the local agent's binary */
    const char *agent_connect; /* dev: its libvirt URI, else probed */
    const char *sample_script; /* dev: images/build-sample.sh */
    int no_local_agent;
    int no_sample;
    const char *agent_listen; /* agent gateway; "none" disables */
    int agent_listen_set;
    int no_reconcile; /* reconciler */
    int lease_secs;   /* reconciler */
    int load_page;    /* reconciler: instances per page of a full load */
    int verbose;
    int request_timeout; /* slow clients: HTTP request, agent first frame */
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
            "       cloud-controller join-token create [--ttl 1h] "
            "[--controller HOST:PORT] [--data-dir DIR] [--db URL]\n"
            "                                              print a one-time "
            "`cloud-agent join` command\n"
            "       cloud-controller join-token list [--db URL]\n"
            "       cloud-controller cert revoke SERIAL|--host NAME [--db URL]\n"
            "       cloud-controller cert list [--db URL]\n"
            "       cloud-controller version | --version\n"
            "\n"
            "options:\n"
            "  --listen ADDR:PORT   API address (default %s)\n"
            "  --db URL             PostgreSQL URL (or CLOUD_DB_URL)\n"
            "  --data-dir DIR       state directory (dev default: "
            "/var/lib/cloud/dev as root, ~/.local/share/cloud/dev otherwise)\n"
            "  --db-pool N          database connections (default 4)\n"
            "  --max-conns N        concurrent HTTP connections (default "
            "1024); at the limit\n"
            "                       the oldest idle one is closed for a "
            "new one\n"
            "  --max-conns-per-addr N\n"
            "                       HTTP connections from one client "
            "address (default %d;\n"
            "                       0: no cap); over it: 429\n"
            "  --anon-rate R        requests without a valid token (open "
            "routes, 401s, 404s)\n"
            "                       per second per client address (default "
            "%d; 0: no limit);\n"
            "                       over it: 429\n"
            "  --anon-burst N       ... in a burst of up to N (default %d)\n"
            "  --join-rate R        agent join attempts per second per "
            "client address\n"
            "                       (default %g; 0: no limit)\n"
            "  --join-burst N       ... in a burst of up to N (default %d)\n"
            "  --db-wait SECONDS    how long to wait for PostgreSQL at start "
            "(default 30)\n"
            "  --max-blob-mib N     largest image blob accepted (default "
            "8192)\n"
            "  --tls-cert FILE      API certificate chain (PEM); with "
            "--tls-key, serve HTTPS\n"
            "  --tls-key FILE       API private key (PEM)\n"
            "  --insecure-http      allow plain HTTP on a non-loopback "
            "address\n"
            "  --cors-origin ORIGIN allow a dashboard origin (repeatable; "
            "none by default)\n"
            "  --agent-bin FILE     dev: the local agent (default: "
            "../agent/cloud-agent beside this binary,\n"
            "                       else the installed " CLOUD_INSTALLED_AGENT
            ")\n"
            "  --sample-script FILE dev: the sample image builder (default: "
            "images/build-sample.sh of the source\n"
            "                       tree, else the installed "
            CLOUD_INSTALLED_SAMPLE_SCRIPT ")\n"
            "  --agent-connect URI  dev: the local agent's libvirt URI, e.g. "
            "test:///default\n"
            "                       (default: qemu:///system when it "
            "answers, starting libvirtd\n"
            "                       as root, else test:///default)\n"
            "  --no-local-agent     dev: start no local agent (the one "
            "started is restarted\n"
            "                       whenever it ends, after 1 s doubling "
            "to 30 s)\n"
            "  --no-sample-image    dev: do not build the sample image\n"
            "  --agent-listen ADDR:PORT  agent gateway (mTLS) address "
            "(default " GATEWAY_DEFAULT_LISTEN "), or none\n"
            "  --lease-seconds N    leader lease (default 10; acting stops "
            "after 0.6 N without renewal)\n"
            "  --load-page N        instances per page of the reconciler's "
            "full loads (default 5000)\n"
            "  --no-reconcile       serve the API only; never lead or "
            "reconcile\n"
            "  --request-timeout S  a client must send a whole HTTP request, "
            "an agent its Hello\n"
            "                       or JoinRequest, within S seconds of "
            "connecting (default 20)\n"
            "  --log-format json|text\n"
            "                       log lines on stderr: one JSON object "
            "each, or readable\n"
            "                       text (time, level, module, message); "
            "default: text on a\n"
            "                       terminal, JSON otherwise\n"
            "  -v, --verbose        debug logging\n"
            "  -h, --help           this text\n",
            DEFAULT_LISTEN, HTTP_MAX_CONNS_PER_ADDR, HTTP_ANON_RATE,
            HTTP_ANON_BURST, JOIN_RATE, JOIN_BURST);
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

static double
num_opt(const char *name, const char *s, double min, double max)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(s, &end);
    if (errno || *end || end == s || !(v >= min && v <= max)) {
        fprintf(stderr, "cloud-controller: %s must be a number from %g to "
                        "%g, not \"%s\"\n",
                name, min, max, s);
        exit(2);
    }
    return v;
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
        {"max-conns-per-addr", required_argument, NULL, 'a'},
        {"anon-rate", required_argument, NULL, 'R'},
        {"anon-burst", required_argument, NULL, 'b'},
        {"join-rate", required_argument, NULL, 'j'},
        {"join-burst", required_argument, NULL, 'J'},
        {"db-wait", required_argument, NULL, 'w'},
        {"max-blob-mib", required_argument, NULL, 'B'},
        {"tls-cert", required_argument, NULL, 'C'},
        {"tls-key", required_argument, NULL, 'K'},
        {"insecure-http", no_argument, NULL, 'I'},
        {"cors-origin", required_argument, NULL, 'O'},
        {"agent-bin", required_argument, NULL, 'G'},
        {"agent-connect", required_argument, NULL, 'U'},
        {"sample-script", required_argument, NULL, 'S'},
        {"no-local-agent", no_argument, NULL, 'Q'},
        {"no-sample-image", no_argument, NULL, 'Y'},
        {"agent-listen", required_argument, NULL, 'A'},
        {"lease-seconds", required_argument, NULL, 'L'},
        {"load-page", required_argument, NULL, 'P'},
        {"no-reconcile", no_argument, NULL, 'N'},
        {"verbose", no_argument, NULL, 'v'},
        {"log-format", required_argument, NULL, 'F'},
        {"request-timeout", required_argument, NULL, 'T'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    int c;

    memset(o, 0, sizeof(*o));
    o->listen = DEFAULT_LISTEN;
    o->db = getenv("CLOUD_DB_URL");
    o->pool = 4;
    o->max_conns = 1024;
    o->max_conns_per_addr = HTTP_MAX_CONNS_PER_ADDR;
    o->anon_rate = HTTP_ANON_RATE;
    o->anon_burst = HTTP_ANON_BURST;
    o->join_rate = JOIN_RATE;
    o->join_burst = JOIN_BURST;
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
        case 'a':
            o->max_conns_per_addr =
                int_opt("--max-conns-per-addr", optarg, 0, 100000);
            break;
        case 'R': o->anon_rate = num_opt("--anon-rate", optarg, 0, 1e6); break;
        case 'b': o->anon_burst = num_opt("--anon-burst", optarg, 1, 1e6); break;
        case 'j': o->join_rate = num_opt("--join-rate", optarg, 0, 1e6); break;
        case 'J': o->join_burst = num_opt("--join-burst", optarg, 1, 1e6); break;
        case 'w': o->db_wait = int_opt("--db-wait", optarg, 0, 3600); break;
        case 'B':
            o->max_blob = (unsigned long long)int_opt("--max-blob-mib", optarg,
                                                      1, 1048576) << 20;
            break;
        case 'A': o->agent_listen = optarg; o->agent_listen_set = 1; break;
        case 'C': o->tls_cert = optarg; break;
        case 'K': o->tls_key = optarg; break;
        case 'I': o->insecure_http = 1; break;
        case 'G': o->agent_bin = optarg; break;
        case 'U':
            if (optarg[0] == '\0' || strstr(optarg, ":///") == NULL) {
                fprintf(stderr, "cloud-controller: --agent-connect takes a "
                                "libvirt URI such as test:///default or "
                                "qemu:///system, not \"%s\"\n",
                        optarg);
                exit(2);
            }
            o->agent_connect = optarg;
            break;
        case 'S': o->sample_script = optarg; break;
        case 'Q': o->no_local_agent = 1; break;
        case 'Y': o->no_sample = 1; break;
        case 'O':
            if (o->ncors == 16) {
                fprintf(stderr, "cloud-controller: at most 16 --cors-origin\n");
                exit(2);
            }
            o->cors[o->ncors++] = optarg;
            break;
        case 'L': o->lease_secs = int_opt("--lease-seconds", optarg, 3, 300); break;
        case 'P': o->load_page = int_opt("--load-page", optarg, 1, 1000000); break;
        case 'N': o->no_reconcile = 1; break;
        case 'v': o->verbose = 1; break;
        case 'F': {
            int json;

            if (log_format_parse(optarg, &json) < 0) {
                fprintf(stderr, "cloud-controller: --log-format must be json "
                                "or text, not \"%s\"\n",
                        optarg);
                exit(2);
            }
            log_set_json(json);
            break;
        }
        case 'T':
            o->request_timeout = int_opt("--request-timeout", optarg, 1, 3600);
            break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); exit(2);
        }
    }
}

/* A file of the build tree beside this binary, else an installed one. */
static char *
find_file(const char *build_rel, const char *inst_rel, const char *inst_abs)
{
    char *p = dev_mode_find(build_rel, NULL);

    return p ? p : dev_mode_find(inst_rel, inst_abs);
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
write_context(const char *url, const char *token)
{
    const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
    char *dir, *path, *body;

    if (xdg && *xdg)
        dir = xasprintf("%s/cloud", xdg);
    else if (home && *home)
        dir = xasprintf("%s/.config/cloud", home);
    else
        return;
    if (fsutil_mkdir_p(dir, 0700) < 0) {
        log_warn("cannot create directory %s", dir);
        free(dir);
        return;
    }
    path = xasprintf("%s/context.json", dir);
    body = xasprintf("{\"url\":\"%s\",\"token\":\"%s\"}\n", url, token);
    /* 0600 whatever the umask: it holds a secret. */
    if (fsutil_write_atomic(path, 0600, body, strlen(body)) < 0)
        log_warn("cannot write %s", path);
    OPENSSL_cleanse(body, strlen(body));
    free(body);
    free(path);
    free(dir);
}

/* How long a stopping leader waits to give its lease up. */
#define RELEASE_WAIT_S 2
/* connections for blob content: two uploads or fills at once */
#define BLOB_DB_POOL 2

static void
on_released(void *arg)
{
    struct app *app = arg;

    event_base_loopexit(app->base, NULL);
}

/*
 * SIGTERM or SIGINT: the first gives the lease up when this controller
 * leads (a successor leads within a second, not after a lease; at most
 * RELEASE_WAIT_S), then stops; a second stops at once.
 */
static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct app *app = arg;
    static int stopping;
    struct timeval wait = {RELEASE_WAIT_S, 0};

    (void)what;
    notify_stopping();
    if (stopping++ || app->reconciler == NULL) {
        log_info("signal %d: shutting down", (int)sig);
        event_base_loopexit(app->base, NULL);
        return;
    }
    log_info("signal %d: shutting down after giving the lease up (if held)",
             (int)sig);
    event_base_loopexit(app->base, &wait);
    reconciler_release(app->reconciler, on_released, app);
}

/* token [--db URL] create|list|revoke ...; --db may stand anywhere. */
static int
cmd_token(int argc, char **argv)
{
    const char *db = getenv("CLOUD_DB_URL");
    char **rest = xcalloc((size_t)argc + 1, sizeof(char *));
    int n = 0, rc;

    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--db") == 0 && i + 1 < argc)
            db = argv[++i];
        else if (strncmp(argv[i], "--db=", 5) == 0)
            db = argv[i] + 5;
        else
            rest[n++] = argv[i];
    }
    if (db == NULL) {
        fprintf(stderr, "cloud-controller: token needs --db URL or "
                        "CLOUD_DB_URL\n");
        free(rest);
        return 2;
    }
    if (n >= 2 && migrate_run(db, 5) < 0) {
        free(rest);
        return 1;
    }
    rc = cmd_token_main(db, n, rest);
    free(rest);
    return rc;
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

/* ---- agent gateway (gateway_*.c, pki.c) ---- */

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
 * Every HTTP connection is a descriptor: raise the soft limit towards the
 * hard one so that --max-conns, not accept()'s EMFILE, is what holds
 * (EMFILE would leave the listener spinning on a connection it cannot
 * take). The margin covers the database pool, the gateway and files.
 */
static void
raise_nofile(int max_conns)
{
    struct rlimit rl;
    rlim_t want = (rlim_t)max_conns + 512;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
        log_warn("cannot read RLIMIT_NOFILE");
        return;
    }
    if (rl.rlim_cur >= want)
        return;
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= want
                      ? want
                      : rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
        log_warn("cannot raise RLIMIT_NOFILE to %llu",
                 (unsigned long long)rl.rlim_cur);
    if (rl.rlim_cur < want)
        log_warnx("--max-conns %d needs about %llu file descriptors, and "
                  "the limit is %llu: lower --max-conns or raise the hard "
                  "limit (ulimit -Hn, LimitNOFILE=)",
                  max_conns, (unsigned long long)want,
                  (unsigned long long)rl.rlim_cur);
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
        .resync_ms = 15000,
        .first_frame_ms = (unsigned)(o->request_timeout ? o->request_timeout
                                                        : HTTP_REQUEST_TIMEOUT_S) *
                          1000u,
        .blob_dir = app->blobs ? blobs_dir(app->blobs) : NULL,
        .blob_store = app->blobs ? blobs_store(app->blobs) : NULL,
        .hb_db = app->ctl_db,
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
    struct dev_pg pg;
    struct http_server *srv = NULL;
    struct retention *retention = NULL;
    struct event *sigint = NULL, *sigterm = NULL;
    struct gateway *gw = NULL; /* agent gateway */
    struct notify *notifier = NULL; /* systemd readiness */
    struct pki_paths pki = {0};
    char *host = NULL, *data_dir = NULL, *url = NULL, *admin = NULL;
    unsigned short port = 0, bound = 0;
    SSL_CTX *tls = NULL;
    struct http_opts hopts;
    struct dev_mode dm;
    char *agent_bin = NULL, *script = NULL;
    int rc = 1;

    memset(&app, 0, sizeof(app));
    memset(&pg, 0, sizeof(pg));
    memset(&dm, 0, sizeof(dm));
    if (split_listen(o->listen, &host, &port) < 0) {
        fprintf(stderr, "cloud-controller: --listen must be ADDR:PORT, not "
                        "\"%s\"\n",
                o->listen);
        return 2;
    }
    if (o->dev) {
        data_dir = o->data_dir ? xstrdup(o->data_dir) : default_data_dir(1);
        if (fsutil_mkdir_p(data_dir, 0755) < 0) {
            log_warn("cannot create directory %s", data_dir);
            goto out;
        }
        if (o->db == NULL) {
            if (dev_pg_start(&pg, data_dir) < 0)
                goto out;
            o->db = pg.conninfo;
        }
    } else if (o->data_dir != NULL) {
        data_dir = xstrdup(o->data_dir);
    }
    if (data_dir && fsutil_mkdir_p(data_dir, 0755) < 0) {
        log_warn("cannot create directory %s", data_dir);
        goto out;
    }
    if (!o->dev && o->db == NULL) {
        fprintf(stderr, "cloud-controller: give --db URL (or CLOUD_DB_URL), "
                        "or run --dev for an all-in-one cluster\n");
        rc = 2;
        goto out;
    }
    if ((o->tls_cert == NULL) != (o->tls_key == NULL)) {
        fprintf(stderr, "cloud-controller: --tls-cert and --tls-key go "
                        "together\n");
        rc = 2;
        goto out;
    }
    /* Plain HTTP only where nobody else can listen in: loopback. */
    if (o->tls_cert == NULL && !o->insecure_http &&
        strcmp(host, "127.0.0.1") != 0 && strcmp(host, "::1") != 0 &&
        strcmp(host, "localhost") != 0) {
        fprintf(stderr,
                "cloud-controller: %s is not a loopback address: give "
                "--tls-cert and --tls-key (or --insecure-http to accept "
                "plain HTTP there)\n",
                host);
        rc = 2;
        goto out;
    }
    if (o->tls_cert) {
        struct tlsctx_opts to = {.role = TLSCTX_SERVER,
                                 .peer = TLSCTX_PEER_NONE,
                                 .cert = o->tls_cert,
                                 .key = o->tls_key};
        char why[TLSCTX_WHY_MAX];

        if ((tls = tlsctx_new(&to, why, sizeof(why))) == NULL) {
            log_errx("API TLS: %s", why);
            goto out;
        }
    }
    if (migrate_run(o->db, o->db_wait) < 0) {
        if (o->dev && pg.conninfo != NULL && o->db == pg.conninfo)
            log_warnx("cannot migrate the dev database under %s; if "
                      "another build of cloud-controller made it, start "
                      "afresh: remove that directory (rm -rf %s) or give "
                      "--data-dir another",
                      data_dir, data_dir);
        goto out;
    }
    if (o->dev && (admin = cmd_token_dev_admin(o->db, data_dir)) == NULL)
        goto out;
    if (o->dev && !o->no_sample) {
        script = o->sample_script
                     ? xstrdup(o->sample_script)
                     : find_file("../../images/build-sample.sh",
                                 CLOUD_INSTALLED_SAMPLE_SCRIPT_REL,
                                 CLOUD_INSTALLED_SAMPLE_SCRIPT);
        if (access(script, R_OK) != 0) {
            log_warn("no sample image builder at %s (--sample-script): no "
                     "sample image",
                     script);
            free(script);
            script = NULL;
        } else if (fsutil_mkdir_p(data_dir, 0755) == 0 &&
                   (blobs_ready_dir(data_dir) < 0 ||
                    dev_mode_sample_image(script, data_dir, o->db) < 0)) {
            log_warnx("continuing without the sample image");
        }
    }

    app.schema_version = migrate_latest();
    app.base = event_base_new();
    if (app.base == NULL)
        fatalx("cannot create the event loop");
    app.db = db_pool_new(app.base, o->db, o->pool, store_stmts, ST__COUNT);
    app.ctl_db = db_pool_new(app.base, o->db, 1, store_stmts, ST__COUNT);
    /* Blob content: uploads hold a connection for their transaction
     * (blobstore.h), so they get their own, away from API queries. */
    app.blob_db = db_pool_new(app.base, o->db, BLOB_DB_POOL, store_stmts,
                              ST__COUNT);
    app.watch = watch_new(app.base, app.db, o->db);
    app.replica = leader_make_identity();
    app.cache = cache_new(app.base, app.db);
    app.writer = writer_new(app.db, app.cache);
    if (data_dir == NULL)
        data_dir = default_data_dir(o->dev);
    app.blobs = blobs_new(app.base, app.blob_db, data_dir, o->max_blob);
    if (app.blobs == NULL)
        goto out;
    {
        struct watch_observer obs = {
            .on_event = cache_on_event,
            .on_event_row = cache_on_event_row,
            .on_batch = cache_on_batch,
            .on_reconnect = cache_on_reconnect,
            .arg = app.cache,
        };
        watch_observe(app.watch, &obs);
    }
    app.auth = auth_new(app.base, app.db);
    {
        struct watch_observer obs = {
            .on_event = auth_on_event,
            .on_reconnect = auth_on_reconnect,
            .arg = app.auth,
        };
        watch_observe(app.watch, &obs);
    }
    /* [reconciler start-up goes here] */
    if (!o->no_reconcile) {
        struct reconciler_opts ropts = {.lease_secs = o->lease_secs,
                                        .load_page = o->load_page,
                                        .lease_db = app.ctl_db,
                                        .identity = app.replica};

        app.reconciler = reconciler_new(app.base, app.db, app.watch, &ropts);
    }
    retention = retention_new(&app); /* events pruning, blob GC */
    if (start_gateway(o, &app, data_dir, &pki, &gw) < 0)
        goto out;
    app.gateway = gw; /* console logs (api_logs.c) */
    /* ... and those of agents connected to other replicas */
    app.relay = logrelay_new(app.base, app.db, app.ctl_db, app.watch, gw,
                             app.replica);
    join_set_rate(gateway_join(gw), o->join_rate, o->join_burst);
    memset(&hopts, 0, sizeof(hopts));
    hopts.max_conns = o->max_conns;
    hopts.max_conns_per_addr = o->max_conns_per_addr;
    hopts.anon_rate = o->anon_rate;
    hopts.anon_burst = o->anon_burst;
    raise_nofile(o->max_conns);
    hopts.request_timeout_s = o->request_timeout;
    hopts.tls = tls;
    hopts.cors_origins = o->ncors ? o->cors : NULL;
    hopts.authorize = api_authorize;
    hopts.on_error = api_on_error;
    srv = http_server_new(app.base, api_routes, api_nroutes, &hopts, &app);
    if (http_server_listen(srv, host, port, &bound) < 0)
        goto out;
    url = xasprintf("%s://%s:%u", tls ? "https" : "http", host, bound);
    log_info("listening on %s", url);
    notifier = notify_new(&app, url);

    sigint = evsignal_new(app.base, SIGINT, on_signal, &app);
    sigterm = evsignal_new(app.base, SIGTERM, on_signal, &app);
    if (sigint == NULL || sigterm == NULL || evsignal_add(sigint, NULL) < 0 ||
        evsignal_add(sigterm, NULL) < 0)
        fatalx("cannot install signal handlers");

    if (o->dev && !o->no_local_agent) {
        agent_bin = o->agent_bin ? xstrdup(o->agent_bin)
                                 : find_file("../agent/cloud-agent",
                                             CLOUD_INSTALLED_AGENT_REL,
                                             CLOUD_INSTALLED_AGENT);
        if (access(agent_bin, X_OK) != 0) {
            log_warnx("no cloud-agent at %s (--agent-bin): no local agent",
                      agent_bin);
        } else if (strcmp(o->agent_listen, "none") == 0 ||
                   dev_mode_libvirt(&dm, agent_bin, o->agent_connect) < 0 ||
                   dev_mode_start_agent(&dm, agent_bin, data_dir,
                                        o->agent_listen) < 0) {
            log_warnx("no local agent: instances stay pending");
        } else {
            dev_mode_supervise(&dm, app.base); /* logs if it cannot */
        }
    }
    if (o->dev) {
        write_context(url, admin);
        printf("\n"
               "  cloud dev cluster is up\n"
               "  API:      %s\n"
               "  data:     %s\n"
               "  token:    %s  (admin; also in the context file)\n"
               "\n"
               "  agent:    %s\n"
               "\n"
               "  try (build/cli/cloudctl, or cloudctl once installed):\n"
               "    cloudctl run --name hello --replicas 2 --wait hello\n"
               "    cloudctl ps\n"
               "    cloudctl scale hello=3 --wait\n"
               "\n"
               "  Ctrl-C stops what this started: the controller, its "
               "PostgreSQL, the local agent%s.\n\n",
               url, data_dir, admin,
               dm.agent_pid ? (strcmp(dm.uri, "qemu:///system") == 0
                                   ? "local, real QEMU guests (qemu:///system)"
                                   : "local, SIMULATED by libvirt's test "
                                     "driver")
                            : "none",
               dm.libvirtd_pid ? " and libvirtd" : "");
        fflush(stdout);
    }
    event_base_dispatch(app.base);
    rc = 0;
out:
    if (sigint)
        event_free(sigint);
    if (sigterm)
        event_free(sigterm);
    notify_free(notifier);
    http_server_free(srv);
    retention_free(retention);
    /* [reconciler shutdown goes here] */
    reconciler_free(app.reconciler);
    /* Writers fail what waits; then the pool fails what is in flight (its
     * callbacks may still touch watch clients, the cache and the writer). */
    writer_free(app.writer);
    db_pool_free(app.blob_db); /* uploads and fills end (failed) here */
    blobs_free(app.blobs);
    auth_free(app.auth);
    gateway_close(gw); /* agent gateway: its queries fail in db_pool_free */
    logrelay_close(app.relay); /* likewise */
    db_pool_free(app.db);
    db_pool_free(app.ctl_db);
    logrelay_free(app.relay);
    gateway_free(gw);
    free(app.replica);
    pki_paths_clear(&pki);
    watch_free(app.watch);
    cache_free(app.cache);
    dev_mode_stop(&dm); /* its events are on app.base */
    if (app.base)
        event_base_free(app.base);
    dev_pg_stop(&pg);
    free(agent_bin);
    free(script);
    free(host);
    free(data_dir);
    free(url);
    if (admin) {
        OPENSSL_cleanse(admin, strlen(admin));
        free(admin);
    }
    SSL_CTX_free(tls);
    return rc;
}

int
main(int argc, char **argv)
{
    struct opts o;

    log_init("cloud-controller", LOG_LVL_INFO, -1);
    signal(SIGPIPE, SIG_IGN);
    /* Every libpq connection (pool, LISTEN, migrations, tokens) goes to a
     * member that takes writes: with a multi-host --db URL libpq skips
     * standbys, where the first host would otherwise win forever. A URL's
     * own target_session_attrs still takes precedence (docs/ha.md). */
    if (setenv("PGTARGETSESSIONATTRS", "read-write", 0) < 0)
        fatal("setenv");
    if (argc > 1 && (strcmp(argv[1], "version") == 0 ||
                     strcmp(argv[1], "--version") == 0)) {
        printf("cloud-controller %s (schema %d)\n", CLOUD_VERSION,
               migrate_latest());
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "migrate") == 0)
        return cmd_migrate(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "token") == 0)
        return cmd_token(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "issue-agent-cert") == 0)
        return cmd_issue_agent_cert(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "join-token") == 0) {
        char *def = default_data_dir(0);
        int rc = cmd_join_token_main(def, argc - 1, argv + 1);

        free(def);
        return rc;
    }
    if (argc > 1 && strcmp(argv[1], "cert") == 0)
        return cmd_join_cert_main(argc - 1, argv + 1);
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
