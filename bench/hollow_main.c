/*
 * cloud-hollow: N simulated hosts on one event loop (see hollow.h), for
 * bench/scale_bench.sh. Owns the options, the event loop, the shared TLS
 * client context, the hosts, signals and the summary logged every
 * HOLLOW_SUMMARY_S seconds (hosts ready, instances running, frames).
 *
 *   cloud-hollow --controller HOST:PORT --ca CA.pem --certs-dir DIR
 *                --hosts N [--prefix hollow] [--vcpus 64]
 *                [--memory-mib 262144] [--disk-gib 1000]
 *                [--hypervisor test] [--start-delay-ms 0] [-v]
 */
#define LOG_MODULE "hollow"

#include <errno.h>
#include <netinet/in.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/util.h>
#include <openssl/x509v3.h>

#include "hollow.h"
#include "log.h"
#include "mem.h"
#include "tlsctx.h"

#define HOLLOW_HOSTS_MAX 100000u
#define HOLLOW_SUMMARY_S 10
/* First dials are spread so that N handshakes do not all land at once. */
#define HOLLOW_DIAL_SPREAD_US 2000u

static void
usage(FILE *f)
{
    fprintf(f,
            "usage: cloud-hollow --controller HOST:PORT --ca FILE --certs-dir DIR\n"
            "                    --hosts N [--prefix NAME] [--vcpus N]\n"
            "                    [--memory-mib N] [--disk-gib N] [--hypervisor T]\n"
            "                    [--start-delay-ms N] [--arrivals FILE] [-v]\n"
            "Runs N simulated hosts PREFIX0..PREFIX{N-1}, each with DIR/NAME/cert.pem\n"
            "and key.pem (cloud-controller issue-agent-cert --out DIR/NAME).\n"
            "--arrivals appends a line \"ID MS R HOST\" when an instance first arrives\n"
            "in HOST's desired set wanted running and \"ID MS D HOST\" when it is\n"
            "first wanted stopped or deleted there (MS: wall clock, milliseconds\n"
            "since the epoch).\n");
}

static int
parse_num(const char *what, const char *s, unsigned long long max,
          unsigned long long *out)
{
    char *end;
    unsigned long long v;

    errno = 0;
    v = strtoull(s, &end, 10);
    if (s[0] == '\0' || s[0] == '-' || *end != '\0' || errno != 0 || v > max) {
        log_warnx("--%s takes a number from 0 to %llu, not %s", what, max, s);
        return -1;
    }
    *out = v;
    return 0;
}

/* One descriptor per host: the caller raises the limit (scale_bench.sh). */
static void
check_nofile(unsigned hosts)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        log_warn("cannot read RLIMIT_NOFILE");
    else if (rl.rlim_cur < (rlim_t)hosts + 64)
        log_warnx("%u hosts need about %u file descriptors and the limit is "
                  "%llu (ulimit -n): some hosts will not connect",
                  hosts, hosts + 64, (unsigned long long)rl.rlim_cur);
}

/*
 * Every host checks that the controller's certificate names what it
 * dialled; the name is the same for all, so it is set once on the context.
 */
static int
check_controller_name(struct hollow *hw)
{
    X509_VERIFY_PARAM *vp = SSL_CTX_get0_param(hw->ssl);
    unsigned char addr[16];
    char e[256];

    hw->sni = evutil_inet_pton(AF_INET, hw->host, addr) != 1 &&
              evutil_inet_pton(AF_INET6, hw->host, addr) != 1;
    if ((hw->sni ? X509_VERIFY_PARAM_set1_host(vp, hw->host, 0)
                 : X509_VERIFY_PARAM_set1_ip_asc(vp, hw->host)) != 1) {
        log_warnx("cannot check the controller's certificate for %s: %s",
                  hw->host, tlsctx_error(e, sizeof(e)));
        return -1;
    }
    return 0;
}

static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    log_info("signal %d: stopping", (int)sig);
    event_base_loopexit(arg, NULL);
}

static void
summary_cb(evutil_socket_t fd, short what, void *arg)
{
    struct hollow *hw = arg;

    (void)fd;
    (void)what;
    log_info("%u of %u hosts ready, %" PRIu64 " instances running, %" PRIu64
             " desired sets applied, %" PRIu64 " statuses sent, %" PRIu64
             " disconnects",
             hw->ready, hw->o->hosts, hw->running, hw->sets_applied,
             hw->statuses_sent, hw->disconnects);
}

static int
split_controller(struct hollow *hw, const char *c)
{
    const char *colon = c ? strrchr(c, ':') : NULL;

    if (colon == NULL || colon == c || colon[1] == '\0' ||
        strspn(colon + 1, "0123456789") != strlen(colon + 1)) {
        log_warnx("--controller must be HOST:PORT");
        return -1;
    }
    hw->host = xstrndup(c, (size_t)(colon - c));
    if (hw->host[0] == '[' && hw->host[strlen(hw->host) - 1] == ']') {
        char *h = xstrndup(hw->host + 1, strlen(hw->host) - 2);

        free(hw->host);
        hw->host = h;
    }
    hw->port = xstrdup(colon + 1);
    return 0;
}

static int
parse_opts(int argc, char **argv, struct hollow_opts *o)
{
    enum { O_CONTROLLER = 256, O_CA, O_CERTS, O_HOSTS, O_PREFIX, O_VCPUS,
           O_MEMORY, O_DISK, O_HV, O_DELAY, O_ARRIVALS };
    static const struct option longopts[] = {
        {"controller", required_argument, NULL, O_CONTROLLER},
        {"ca", required_argument, NULL, O_CA},
        {"certs-dir", required_argument, NULL, O_CERTS},
        {"hosts", required_argument, NULL, O_HOSTS},
        {"prefix", required_argument, NULL, O_PREFIX},
        {"vcpus", required_argument, NULL, O_VCPUS},
        {"memory-mib", required_argument, NULL, O_MEMORY},
        {"disk-gib", required_argument, NULL, O_DISK},
        {"hypervisor", required_argument, NULL, O_HV},
        {"start-delay-ms", required_argument, NULL, O_DELAY},
        {"arrivals", required_argument, NULL, O_ARRIVALS},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    unsigned long long v;
    int ch;

    while ((ch = getopt_long(argc, argv, "vh", longopts, NULL)) != -1) {
        switch (ch) {
        case O_CONTROLLER: o->controller = optarg; break;
        case O_CA: o->ca = optarg; break;
        case O_CERTS: o->certs_dir = optarg; break;
        case O_PREFIX: o->prefix = optarg; break;
        case O_HV: o->hypervisor = optarg; break;
        case O_ARRIVALS: o->arrivals = optarg; break;
        case O_HOSTS:
            if (parse_num("hosts", optarg, HOLLOW_HOSTS_MAX, &v) < 0)
                return -1;
            o->hosts = (unsigned)v;
            break;
        case O_VCPUS:
            if (parse_num("vcpus", optarg, 1000000, &v) < 0)
                return -1;
            o->vcpus = (unsigned)v;
            break;
        case O_MEMORY:
            if (parse_num("memory-mib", optarg, 1ull << 40, &v) < 0)
                return -1;
            o->memory_mib = v;
            break;
        case O_DISK:
            if (parse_num("disk-gib", optarg, 1ull << 40, &v) < 0)
                return -1;
            o->disk_gib = v;
            break;
        case O_DELAY:
            if (parse_num("start-delay-ms", optarg, 3600000, &v) < 0)
                return -1;
            o->start_delay_ms = (unsigned)v;
            break;
        case 'v': log_set_level(LOG_LVL_DEBUG); break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); return -1;
        }
    }
    if (optind < argc || o->controller == NULL || o->ca == NULL ||
        o->certs_dir == NULL || o->hosts == 0) {
        usage(stderr);
        return -1;
    }
    return 0;
}

int
main(int argc, char **argv)
{
    struct hollow_opts o = {
        .prefix = "hollow",
        .vcpus = 64,
        .memory_mib = 262144,
        .disk_gib = 1000,
        .hypervisor = "test",
    };
    struct tlsctx_opts to = {.role = TLSCTX_CLIENT, .peer = TLSCTX_PEER_CA};
    struct hollow hw;
    struct hhost **hosts = NULL;
    struct event *sigint = NULL, *sigterm = NULL, *summary = NULL;
    struct timeval every = {HOLLOW_SUMMARY_S, 0};
    char why[TLSCTX_WHY_MAX];
    unsigned i;
    int rc = 1;

    log_init("cloud-hollow", LOG_LVL_INFO, -1);
    memset(&hw, 0, sizeof(hw));
    if (parse_opts(argc, argv, &o) < 0)
        return 2;
    hw.o = &o;
    if (split_controller(&hw, o.controller) < 0)
        goto cleanup;
    /* Each host shows its own certificate (SSL_use_certificate per
     * connection); the context checks the controller's. */
    to.ca = o.ca;
    hw.ssl = tlsctx_new(&to, why, sizeof(why));
    if (hw.ssl == NULL) {
        log_warnx("cannot set up TLS for the controller links: %s", why);
        goto cleanup;
    }
    if (check_controller_name(&hw) < 0)
        goto cleanup;
    if (o.arrivals != NULL) {
        hw.arrivals = fopen(o.arrivals, "a");
        if (hw.arrivals == NULL) {
            log_warn("cannot open %s", o.arrivals);
            goto cleanup;
        }
    }
    check_nofile(o.hosts);
    srandom((unsigned)getpid() ^ (unsigned)time(NULL));
    hw.base = event_base_new();
    if (hw.base == NULL)
        fatalx("cannot create the event loop");
    sigint = evsignal_new(hw.base, SIGINT, on_signal, hw.base);
    sigterm = evsignal_new(hw.base, SIGTERM, on_signal, hw.base);
    summary = event_new(hw.base, -1, EV_PERSIST, summary_cb, &hw);
    if (sigint == NULL || sigterm == NULL || summary == NULL ||
        evsignal_add(sigint, NULL) < 0 || evsignal_add(sigterm, NULL) < 0 ||
        evtimer_add(summary, &every) < 0)
        fatalx("cannot set up the process's events");
    hosts = xcalloc(o.hosts, sizeof(*hosts));
    for (i = 0; i < o.hosts; i++) {
        char *name = xasprintf("%s%u", o.prefix, i);

        hosts[i] = hhost_new(&hw, name,
                             (unsigned)((uint64_t)i * HOLLOW_DIAL_SPREAD_US / 1000));
        free(name);
        if (hosts[i] == NULL)
            goto cleanup;
    }
    log_info("%u hosts (%s0..%s%u: %u vcpus, %" PRIu64
             " MiB each, start delay %u ms) dialling %s",
             o.hosts, o.prefix, o.prefix, o.hosts - 1, o.vcpus, o.memory_mib,
             o.start_delay_ms, o.controller);
    if (event_base_dispatch(hw.base) < 0) {
        log_warnx("the event loop failed");
        goto cleanup;
    }
    summary_cb(-1, 0, &hw);
    rc = 0;

cleanup:
    if (hosts != NULL)
        for (i = 0; i < o.hosts; i++)
            hhost_free(hosts[i]);
    free(hosts);
    if (sigint != NULL)
        event_free(sigint);
    if (sigterm != NULL)
        event_free(sigterm);
    if (summary != NULL)
        event_free(summary);
    if (hw.base != NULL)
        event_base_free(hw.base);
    SSL_CTX_free(hw.ssl);
    free(hw.host);
    free(hw.port);
    if (hw.arrivals != NULL && fclose(hw.arrivals) != 0) {
        log_warn("cannot write %s", o.arrivals);
        rc = 1;
    }
    return rc;
}
