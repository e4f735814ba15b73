/*
 * cloud-agent: the per-host agent.
 *   cloud-agent run         the daemon: joins the controller over mTLS and
 *                           reconciles libvirt against its desired set
 *                           (link.c, worker.c)
 *   cloud-agent facts       host facts as JSON (what Hello carries)
 *   cloud-agent boot-once   boot one kernel image through the driver, wait
 *                           for a marker on its console, tear it down
 *   cloud-agent net policy  replace or delete table inet cloud from a JSON
 *                           policy (netpolicy_cli.c)
 *   cloud-agent net apply   make the host network (bridge, VXLAN overlay)
 *                           match a plan file (netcmd.c, hostnet.c)
 */
#define LOG_MODULE "agent"

#include <errno.h>
#include <arpa/inet.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "blobcache.h"
#include "domxml.h"
#include "hv.h"
#include "join.h"
#include "link.h"
#include "netcmd.h"
#include "log.h"
#include "mem.h"
#include "netpolicy.h"
#include "virt.h"

#ifndef CLOUD_VERSION
#define CLOUD_VERSION "0"
#endif

struct agent_opts {
    const char *uri;
    /* run */
    const char *controller, *ca, *cert, *key, *labels, *images, *state_dir;
    unsigned long cap_vcpus, cap_memory_mib; /* 0: what libvirt reports */
    const char *cache_dir;                   /* NULL: <state-dir>/cache */
    const char *network;                     /* NULL: domains get no NIC */
    unsigned long cache_max_mib;
    const char *name;
    enum hv_type hypervisor;
    const char *token, *ca_pin, *pki_dir; /* join; pki_dir also run */
    /* boot-once */
    const char *id;
    const char *kernel;
    const char *initrd;
    const char *cmdline;
    const char *log;
    const char *channel;
    const char *boot_config_file;
    const char *send;
    const char *marker;
    unsigned timeout_s;
    unsigned vcpus;
    uint64_t memory_mib;
    long expect_exit; /* -1: do not wait for an exit report */
    const char *plan; /* net */
    int host_network;       /* run: build the host network (docs/network.md) */
    const char *underlay;   /* run: its underlay IPv4 address */
};

static const struct virt_driver *drv = &virt_libvirt_driver;

static void
usage(FILE *fp)
{
    fprintf(
        fp,
        "usage: cloud-agent [--connect URI] [--hypervisor qemu|kvm|test] [--name NAME]\n"
        "                   [--log-format json|text] [--verbose] COMMAND\n"
        "commands:\n"
        "  run        --controller HOST:PORT[,HOST:PORT...] --ca FILE --cert FILE --key FILE\n"
        "             [--labels k=v,...] [--images DIR] [--state-dir DIR]\n"
        "             [--cap-vcpus N] [--cap-memory MIB]\n"
        "             [--cache-dir DIR] [--cache-max-mib N] [--network NAME]\n"
        "             [--host-network [--underlay-address IPV4]]\n"
        "             the agent daemon (--ca, --cert, --key default to the\n"
        "             files `join` wrote in --pki-dir, <state-dir>/pki;\n"
        "             --host-network: build the bridge and overlay the\n"
        "             controller plans, reached by other hosts at\n"
        "             --underlay-address, default the address this host\n"
        "             reaches the controller from)\n"
        "  join       --controller HOST:PORT[,...] --token ID.SECRET --ca-pin sha256:HEX\n"
        "             [--pki-dir DIR] [--state-dir DIR]\n"
        "             get a certificate with a join token (cloud-controller join-token create)\n"
        "  facts      print host facts as JSON\n"
        "  boot-once  --kernel PATH [--initrd PATH] [--cmdline STR] --log FILE\n"
        "             [--channel SOCK] [--config-file PATH] [--send LINE] [--expect-exit N]\n"
        "             [--marker STR] [--timeout SEC] [--id ID] [--vcpus N] [--memory MIB]\n"
        "  net apply|remove --plan FILE\n"
        "             make this host's bridge and VXLAN overlay match a JSON\n"
        "             plan, or delete them (docs/network-overlay.md)\n"
        "  version    print the version (also --version)\n"
        "options:\n"
        "  --log-format json|text  log lines on stderr: one JSON object each, or\n"
        "             readable text (time, level, module, message); default:\n"
        "             text on a terminal, JSON otherwise\n");
}

static double
now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
parse_ulong(const char *opt, const char *s, unsigned long max,
            unsigned long *out)
{
    unsigned long v;
    char *end;

    errno = 0;
    v = strtoul(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v > max) {
        log_warnx("option --%s needs a number up to %lu, not %s", opt, max, s);
        return -1;
    }
    *out = v;
    return 0;
}

/* Opens libvirt and probes the host; both outputs are cleared on failure. */
static struct virt_conn *
agent_probe(const struct agent_opts *o, struct virt_host_info *info,
            struct hv_facts *facts)
{
    struct hv_probe_opts popts = {.override = o->hypervisor};
    struct virt_conn *c;

    memset(facts, 0, sizeof(*facts));
    memset(info, 0, sizeof(*info));
    c = drv->open(o->uri);
    if (c == NULL)
        return NULL;
    if (drv->host_info(c, info) < 0 ||
        hv_probe(info->caps_xml, &popts, facts) < 0) {
        hv_facts_clear(facts);
        virt_host_info_clear(info);
        drv->close(c);
        return NULL;
    }
    return c;
}

static int
cmd_facts(const struct agent_opts *o)
{
    struct virt_host_info info;
    struct hv_facts facts;
    struct virt_conn *c;
    json_t *root, *types;
    char *out;
    size_t i;

    c = agent_probe(o, &info, &facts);
    if (c == NULL)
        return 1;
    types = json_array();
    for (i = 0; i < facts.ntypes; i++)
        json_array_append_new(types, json_string(facts.types[i]));
    /* One key per line reads better than what clang-format packs. */
    // clang-format off
    root = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:s, s:o, s:b, s:b, s:b, s:b, s:s}",
                     "name", o->name ? o->name : info.hostname,
                     "hostname", info.hostname,
                     "agent_version", CLOUD_VERSION,
                     "libvirt_uri", o->uri,
                     "vcpus", (json_int_t)info.cpus,
                     "memory_mib", (json_int_t)info.memory_mib,
                     "arch", facts.arch,
                     "hypervisor_types", types,
                     "kvm_listed", facts.kvm_listed,
                     "kvm_device", facts.kvm_dev,
                     "cpu_virt_flags", facts.cpu_virt,
                     "kvm_usable", facts.kvm_usable,
                     "domain_type", hv_type_name(facts.chosen));
    // clang-format on
    if (root == NULL)
        fatalx("cannot build the facts JSON");
    json_object_set_new(root, "libvirt_version",
                        json_string(info.libvirt_version));
    out = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (out == NULL)
        fatalx("cannot serialise the facts JSON");
    printf("%s\n", out);
    free(out);
    json_decref(root);
    hv_facts_clear(&facts);
    virt_host_info_clear(&info);
    drv->close(c);
    return 0;
}

/* Waits until the file at path contains marker. 0 if found, -1 on timeout. */
static int
wait_for_marker(const char *path, const char *marker, double deadline)
{
    char *buf = NULL;
    size_t len;
    FILE *fp;

    while (now_s() < deadline) {
        fp = fopen(path, "r");
        if (fp != NULL) {
            /* Console logs of a boot are small; the whole file is fine. */
            buf = xmalloc(1 << 20);
            len = fread(buf, 1, (1 << 20) - 1, fp);
            buf[len] = '\0';
            fclose(fp);
            if (memmem(buf, len, marker, strlen(marker)) != NULL) {
                free(buf);
                return 0;
            }
            free(buf);
        }
        usleep(200 * 1000);
    }
    log_warnx("marker %s did not appear in %s in time", marker, path);
    return -1;
}

static int
channel_connect(const char *path, double deadline)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    int fd;

    if (strlen(path) >= sizeof(sun.sun_path)) {
        log_warnx("channel socket path %s is too long", path);
        return -1;
    }
    xstrlcpy(sun.sun_path, path, sizeof(sun.sun_path));
    while (now_s() < deadline) {
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            log_warn("socket");
            return -1;
        }
        if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0)
            return fd;
        close(fd);
        usleep(200 * 1000);
    }
    log_warnx("cannot connect to guest channel %s in time", path);
    return -1;
}

/*
 * Reads JSON lines from the guest channel until one is {"exit":N}; returns
 * N, or -1 on timeout or a closed channel.
 */
static long
channel_wait_exit(int fd, double deadline)
{
    char buf[4096];
    size_t have = 0;

    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        double left = deadline - now_s();
        char *nl;
        ssize_t r;
        int pr;

        if (left <= 0)
            break;
        pr = poll(&pfd, 1, (int)(left * 1000) + 1);
        if (pr < 0 && errno != EINTR) {
            log_warn("poll on the guest channel");
            return -1;
        }
        if (pr <= 0)
            continue;
        r = read(fd, buf + have, sizeof(buf) - 1 - have);
        if (r <= 0) {
            log_warnx("guest channel closed before an exit report");
            return -1;
        }
        have += (size_t)r;
        buf[have] = '\0';
        while ((nl = strchr(buf, '\n')) != NULL) {
            json_error_t jerr;
            json_t *msg, *ex;
            size_t linelen = (size_t)(nl - buf) + 1;
            long code = -1;

            *nl = '\0';
            log_info("guest channel: %s", buf);
            msg = json_loads(buf, 0, &jerr);
            if (msg != NULL && (ex = json_object_get(msg, "exit")) != NULL &&
                json_is_integer(ex))
                code = (long)json_integer_value(ex);
            json_decref(msg);
            memmove(buf, buf + linelen, have - linelen + 1);
            have -= linelen;
            if (code >= 0)
                return code;
        }
        if (have == sizeof(buf) - 1) {
            log_warnx("guest channel line longer than %zu bytes", sizeof(buf));
            return -1;
        }
    }
    log_warnx("no exit report on the guest channel in time");
    return -1;
}

static int
wait_for_stop(struct virt_conn *c, const char *id, double deadline)
{
    enum virt_state st = VIRT_STATE_UNKNOWN;

    while (now_s() < deadline) {
        if (drv->state(c, id, &st) < 0)
            return -1;
        if (st == VIRT_STATE_SHUTOFF || st == VIRT_STATE_ABSENT)
            return 0;
        usleep(200 * 1000);
    }
    log_warnx("instance %s still %s after its exit report", id,
              virt_state_name(st));
    return -1;
}

static int
cmd_boot_once(const struct agent_opts *o)
{
    struct domxml_spec spec = {0};
    struct virt_host_info info;
    struct hv_facts facts;
    struct virt_conn *c;
    char *xml = NULL;
    double deadline;
    bool defined = false;
    int fd = -1, rc = 1;

    if (o->kernel == NULL || o->log == NULL) {
        log_warnx("boot-once needs --kernel and --log");
        return 2;
    }
    c = agent_probe(o, &info, &facts);
    if (c == NULL)
        return 1;
    spec.instance_id = o->id;
    spec.generation = 1;
    spec.type = facts.chosen;
    spec.vcpus = o->vcpus;
    spec.memory_mib = o->memory_mib;
    spec.kernel = o->kernel;
    spec.initrd = o->initrd;
    spec.cmdline = o->cmdline;
    spec.console_log = o->log;
    spec.channel_path = o->channel;
    spec.boot_config_file = o->boot_config_file;
    xml = domxml_build(&spec);
    if (xml == NULL)
        goto cleanup;
    log_info("instance %s: booting %s as domain type %s", o->id, o->kernel,
             hv_type_name(facts.chosen));
    deadline = now_s() + o->timeout_s;
    if (drv->define_start(c, o->id, xml) < 0)
        goto cleanup;
    defined = true;
    if (wait_for_marker(o->log, o->marker, deadline) < 0)
        goto cleanup;
    log_info("instance %s: marker %s seen on the console", o->id, o->marker);
    if (o->channel != NULL && (o->send != NULL || o->expect_exit >= 0)) {
        fd = channel_connect(o->channel, deadline);
        if (fd < 0)
            goto cleanup;
        if (o->send != NULL) {
            char *line = xasprintf("%s\n", o->send);
            ssize_t w = write(fd, line, strlen(line));

            free(line);
            if (w < 0) {
                log_warn("write to guest channel %s", o->channel);
                goto cleanup;
            }
        }
        if (o->expect_exit >= 0) {
            long code = channel_wait_exit(fd, deadline);

            if (code < 0)
                goto cleanup;
            if (code != o->expect_exit) {
                log_warnx("instance %s: guest reported exit %ld, expected %ld",
                          o->id, code, o->expect_exit);
                goto cleanup;
            }
            if (wait_for_stop(c, o->id, deadline) < 0)
                goto cleanup;
            log_info("instance %s: guest exited with %ld and powered off",
                     o->id, code);
        }
    }
    rc = 0;

cleanup:
    if (fd >= 0)
        close(fd);
    if (defined && (drv->destroy(c, o->id) < 0 || drv->undefine(c, o->id) < 0))
        rc = 1;
    free(xml);
    hv_facts_clear(&facts);
    virt_host_info_clear(&info);
    drv->close(c);
    return rc;
}

int
main(int argc, char **argv)
{
    enum {
        OPT_CONNECT = 256,
        OPT_HYPERVISOR,
        OPT_NAME,
        OPT_ID,
        OPT_KERNEL,
        OPT_INITRD,
        OPT_CMDLINE,
        OPT_LOG,
        OPT_CHANNEL,
        OPT_CONFIG_FILE,
        OPT_SEND,
        OPT_MARKER,
        OPT_TIMEOUT,
        OPT_VCPUS,
        OPT_MEMORY,
        OPT_EXPECT_EXIT,
        OPT_CONTROLLER,
        OPT_CA,
        OPT_CERT,
        OPT_KEY,
        OPT_LABELS,
        OPT_IMAGES,
        OPT_STATE_DIR,
        OPT_VERBOSE,
        OPT_CAP_VCPUS,
        OPT_CAP_MEMORY,
        OPT_TOKEN,   /* join */
        OPT_CA_PIN,  /* join */
        OPT_PKI_DIR, /* join, run */
        OPT_CACHE_DIR,
        OPT_CACHE_MAX_MIB,
        OPT_NETWORK,
        OPT_PLAN,
        OPT_HOST_NETWORK,
        OPT_UNDERLAY,
        OPT_LOG_FORMAT,
    };
    static const struct option longopts[] = {
        {"connect", required_argument, NULL, OPT_CONNECT},
        {"hypervisor", required_argument, NULL, OPT_HYPERVISOR},
        {"name", required_argument, NULL, OPT_NAME},
        {"id", required_argument, NULL, OPT_ID},
        {"kernel", required_argument, NULL, OPT_KERNEL},
        {"initrd", required_argument, NULL, OPT_INITRD},
        {"cmdline", required_argument, NULL, OPT_CMDLINE},
        {"log", required_argument, NULL, OPT_LOG},
        {"channel", required_argument, NULL, OPT_CHANNEL},
        {"config-file", required_argument, NULL, OPT_CONFIG_FILE},
        {"send", required_argument, NULL, OPT_SEND},
        {"marker", required_argument, NULL, OPT_MARKER},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"vcpus", required_argument, NULL, OPT_VCPUS},
        {"memory", required_argument, NULL, OPT_MEMORY},
        {"expect-exit", required_argument, NULL, OPT_EXPECT_EXIT},
        {"controller", required_argument, NULL, OPT_CONTROLLER},
        {"ca", required_argument, NULL, OPT_CA},
        {"cert", required_argument, NULL, OPT_CERT},
        {"key", required_argument, NULL, OPT_KEY},
        {"labels", required_argument, NULL, OPT_LABELS},
        {"images", required_argument, NULL, OPT_IMAGES},
        {"state-dir", required_argument, NULL, OPT_STATE_DIR},
        {"verbose", no_argument, NULL, OPT_VERBOSE},
        {"cap-vcpus", required_argument, NULL, OPT_CAP_VCPUS},
        {"cap-memory", required_argument, NULL, OPT_CAP_MEMORY},
        {"token", required_argument, NULL, OPT_TOKEN},
        {"ca-pin", required_argument, NULL, OPT_CA_PIN},
        {"pki-dir", required_argument, NULL, OPT_PKI_DIR},
        {"cache-dir", required_argument, NULL, OPT_CACHE_DIR},
        {"cache-max-mib", required_argument, NULL, OPT_CACHE_MAX_MIB},
        {"network", required_argument, NULL, OPT_NETWORK},
        {"plan", required_argument, NULL, OPT_PLAN},
        {"host-network", no_argument, NULL, OPT_HOST_NETWORK},
        {"underlay-address", required_argument, NULL, OPT_UNDERLAY},
        {"log-format", required_argument, NULL, OPT_LOG_FORMAT},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct agent_opts o = {
        .uri = "qemu:///system",
        .id = "bootonce",
        .marker = "CLOUD-SAMPLE-BOOTED",
        .timeout_s = 60,
        .vcpus = 1,
        .memory_mib = 256,
        .expect_exit = -1,
        .cache_max_mib = BLOBCACHE_DEFAULT_MAX_MIB,
    };
    unsigned long v;
    const char *cmd;
    int ch;

    log_init("cloud-agent", LOG_LVL_INFO, -1);
    if (argc == 2 && (strcmp(argv[1], "version") == 0 ||
                      strcmp(argv[1], "--version") == 0)) {
        printf("cloud-agent %s\n", CLOUD_VERSION);
        return 0;
    }
    /* `net policy` parses its own options (netpolicy_cli.c). */
    if (argc >= 3 && strcmp(argv[1], "net") == 0 &&
        strcmp(argv[2], "policy") == 0)
        return netpolicy_main(argc - 2, argv + 2);
    while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (ch) {
        case OPT_CONNECT:
            o.uri = optarg;
            break;
        case OPT_HYPERVISOR:
            if (hv_type_parse(optarg, &o.hypervisor) < 0) {
                log_warnx("--hypervisor must be qemu, kvm or test, not %s",
                          optarg);
                return 2;
            }
            break;
        case OPT_NAME:
            o.name = optarg;
            break;
        case OPT_ID:
            o.id = optarg;
            break;
        case OPT_KERNEL:
            o.kernel = optarg;
            break;
        case OPT_INITRD:
            o.initrd = optarg;
            break;
        case OPT_CMDLINE:
            o.cmdline = optarg;
            break;
        case OPT_LOG:
            o.log = optarg;
            break;
        case OPT_CHANNEL:
            o.channel = optarg;
            break;
        case OPT_CONFIG_FILE:
            o.boot_config_file = optarg;
            break;
        case OPT_SEND:
            o.send = optarg;
            break;
        case OPT_MARKER:
            o.marker = optarg;
            break;
        case OPT_TIMEOUT:
            if (parse_ulong("timeout", optarg, 3600, &v) < 0)
                return 2;
            o.timeout_s = (unsigned)v;
            break;
        case OPT_VCPUS:
            if (parse_ulong("vcpus", optarg, 1024, &v) < 0)
                return 2;
            o.vcpus = (unsigned)v;
            break;
        case OPT_MEMORY:
            if (parse_ulong("memory", optarg, 1UL << 30, &v) < 0)
                return 2;
            o.memory_mib = v;
            break;
        case OPT_EXPECT_EXIT:
            if (parse_ulong("expect-exit", optarg, 255, &v) < 0)
                return 2;
            o.expect_exit = (long)v;
            break;
        case OPT_CONTROLLER:
            o.controller = optarg;
            break;
        case OPT_CA:
            o.ca = optarg;
            break;
        case OPT_CERT:
            o.cert = optarg;
            break;
        case OPT_KEY:
            o.key = optarg;
            break;
        case OPT_LABELS:
            o.labels = optarg;
            break;
        case OPT_IMAGES:
            o.images = optarg;
            break;
        case OPT_STATE_DIR:
            o.state_dir = optarg;
            break;
        case OPT_CAP_VCPUS:
            if (parse_ulong("cap-vcpus", optarg, 1000000, &o.cap_vcpus) < 0)
                return 2;
            break;
        case OPT_CAP_MEMORY:
            if (parse_ulong("cap-memory", optarg, 1UL << 40, &o.cap_memory_mib) < 0)
                return 2;
            break;
        case OPT_CACHE_DIR:
            o.cache_dir = optarg;
            break;
        case OPT_HOST_NETWORK:
            o.host_network = 1;
            break;
        case OPT_UNDERLAY: {
            struct in_addr a;

            if (inet_pton(AF_INET, optarg, &a) != 1) {
                fprintf(stderr,
                        "cloud-agent: --underlay-address takes an IPv4 address, not %s\n",
                        optarg);
                return 2;
            }
            o.underlay = optarg;
            break;
        }
        case OPT_NETWORK:
            /* A libvirt network name, written into every domain's XML. */
            if (optarg[0] == '\0' || strlen(optarg) > DOMXML_ID_MAX ||
                strspn(optarg, "abcdefghijklmnopqrstuvwxyz"
                               "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") !=
                    strlen(optarg)) {
                fprintf(stderr,
                        "cloud-agent: --network takes a libvirt network name of 1 to %d characters of [A-Za-z0-9_-], not %s\n",
                        DOMXML_ID_MAX, optarg);
                return 2;
            }
            o.network = optarg;
            break;
        case OPT_CACHE_MAX_MIB:
            if (parse_ulong("cache-max-mib", optarg, 1UL << 30,
                            &o.cache_max_mib) < 0)
                return 2;
            if (o.cache_max_mib == 0) {
                log_warnx("option --cache-max-mib needs at least 1 MiB");
                return 2;
            }
            break;
        case OPT_TOKEN:
            o.token = optarg;
            break;
        case OPT_CA_PIN:
            o.ca_pin = optarg;
            break;
        case OPT_PKI_DIR:
            o.pki_dir = optarg;
            break;
        case OPT_PLAN:
            o.plan = optarg;
            break;
        case OPT_VERBOSE:
            log_set_level(LOG_LVL_DEBUG);
            break;
        case OPT_LOG_FORMAT: {
            int json;

            if (log_format_parse(optarg, &json) < 0) {
                fprintf(stderr, "cloud-agent: --log-format must be json or "
                                "text, not \"%s\"\n",
                        optarg);
                return 2;
            }
            log_set_json(json);
            break;
        }
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    /* `net` alone takes a subcommand: net apply|remove. */
    if (optind == argc - 2 && strcmp(argv[optind], "net") == 0)
        return netcmd_run(argv[optind + 1], o.plan);
    if (optind != argc - 1) {
        usage(stderr);
        return 2;
    }
    cmd = argv[optind];
    if (strcmp(cmd, "join") == 0) {
        char *def = join_default_pki_dir(o.state_dir ? o.state_dir
                                                     : "/var/lib/cloud/agent");
        struct join_opts jo = {
            .controller = o.controller,
            .token = o.token,
            .ca_pin = o.ca_pin,
            .name = o.name,
            .pki_dir = o.pki_dir ? o.pki_dir : def,
        };
        int rc = join_run(&jo);

        free(def);
        return rc;
    }
    if (strcmp(cmd, "run") == 0 && o.underlay != NULL && !o.host_network) {
        fprintf(stderr, "cloud-agent: --underlay-address is the address of "
                        "the host network: give --host-network too\n");
        return 2;
    }
    if (strcmp(cmd, "run") == 0) {
        /* Without --ca/--cert/--key: what `cloud-agent join` wrote. */
        char *pki = o.pki_dir ? xstrdup(o.pki_dir)
                              : join_default_pki_dir(
                                    o.state_dir ? o.state_dir
                                                : "/var/lib/cloud/agent");
        char *ca = xasprintf("%s/ca.pem", pki);
        char *cert = xasprintf("%s/cert.pem", pki);
        char *key = xasprintf("%s/key.pem", pki);
        int rc;

        if (o.ca == NULL && o.cert == NULL && o.key == NULL) {
            o.ca = ca;
            o.cert = cert;
            o.key = key;
        }
        struct link_opts lo = {
            .controller = o.controller,
            .ca = o.ca,
            .cert = o.cert,
            .key = o.key,
            .name = o.name,
            .labels = o.labels,
            .uri = o.uri,
            .hypervisor = o.hypervisor,
            .images_dir = o.images,
            .state_dir = o.state_dir ? o.state_dir : "/var/lib/cloud/agent",
            .version = CLOUD_VERSION,
            .cap_vcpus = (unsigned)o.cap_vcpus,
            .cap_memory_mib = o.cap_memory_mib,
            .cache_dir = o.cache_dir,
            .cache_max_mib = o.cache_max_mib,
            .network = o.network,
            .host_network = o.host_network,
            .underlay = o.underlay,
        };

        rc = link_run(&lo);
        free(ca);
        free(cert);
        free(key);
        free(pki);
        return rc;
    }
    if (strcmp(cmd, "facts") == 0)
        return cmd_facts(&o);
    if (strcmp(cmd, "boot-once") == 0)
        return cmd_boot_once(&o);
    log_warnx("unknown command %s", cmd);
    usage(stderr);
    return 2;
}
