/*
 * netpolicy: the host's share of "links are the firewall" (see netpolicy.h,
 * docs/network-policy.md). Owns table inet cloud and nothing else:
 *
 *   forward (filter)      packets out of the bridge to this host's subnet
 *                         go through guest_in; IPv6 TCP/UDP into the
 *                         bridge is dropped (the cluster is IPv4)
 *   guest_in              established/related -> accept; a source claiming
 *                         to be the gateway -> drop (the host's own packets
 *                         never cross forward); open destination -> accept;
 *                         (dst . src) in @allow -> accept; ICMP echo ->
 *                         accept; everything else -> drop
 *   postrouting (nat)     cluster CIDR -> outside it: masquerade
 *
 * Bridged traffic between two guests on the bridge reaches the inet
 * forward hook through br_netfilter (net.bridge.bridge-nf-call-iptables,
 * per network namespace), which netpolicy_apply turns on: a bridge-family
 * table would need conntrack in the bridge family (nf_conntrack_bridge),
 * which kernels such as the CI's do not have (docs/decisions.md §36).
 *
 * Every apply is one libnftables transaction: "table inet cloud {}" (so
 * the delete cannot fail on a first run), "delete table inet cloud", the
 * new table. The kernel commits all of it or none: no instant without
 * rules, and a refused script leaves the previous table in force.
 */
#define LOG_MODULE "netpolicy"

#include "netpolicy_priv.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <nftables/libnftables.h>

#include "log.h"
#include "mem.h"

static const char *const np_sysctls[] = {
    "/proc/sys/net/bridge/bridge-nf-call-iptables",
    "/proc/sys/net/bridge/bridge-nf-call-ip6tables",
};

static void np_fail(char *why, size_t whylen, const char *fmt, ...)
    CLOUD_PRINTF(3, 4);

static void
np_fail(char *why, size_t whylen, const char *fmt, ...)
{
    va_list ap;

    if (whylen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
}

/* s as it may appear in a one-line message: at most 64 printable ASCII
 * characters, anything else as '?'. */
struct np_q {
    char s[72];
};

static struct np_q
np_quote(const char *s)
{
    struct np_q q;
    size_t i;

    if (s == NULL) {
        snprintf(q.s, sizeof(q.s), "(none)");
        return q;
    }
    for (i = 0; s[i] != '\0' && i < 64; i++)
        q.s[i] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?';
    q.s[i] = '\0';
    if (s[i] != '\0')
        snprintf(q.s + i, sizeof(q.s) - i, "...");
    return q;
}

/* A dotted-quad IPv4 address (inet_pton: exactly four decimal parts, no
 * spaces, nothing after). Host byte order in *a. */
static int
np_addr(const char *s, uint32_t *a)
{
    struct in_addr in;

    if (s == NULL || inet_pton(AF_INET, s, &in) != 1)
        return -1;
    *a = ntohl(in.s_addr);
    return 0;
}

/* "a.b.c.d/n" with no host bits set. */
static int
np_prefix(const char *s, uint32_t *net, unsigned *len)
{
    char addr[INET_ADDRSTRLEN];
    const char *slash;
    unsigned n = 0;
    size_t alen, i;

    if (s == NULL || (slash = strchr(s, '/')) == NULL)
        return -1;
    alen = (size_t)(slash - s);
    if (alen == 0 || alen >= sizeof(addr))
        return -1;
    memcpy(addr, s, alen);
    addr[alen] = '\0';
    if (np_addr(addr, net) < 0)
        return -1;
    for (i = 1; slash[i] != '\0'; i++) {
        if (slash[i] < '0' || slash[i] > '9' || i > 2)
            return -1;
        n = n * 10 + (unsigned)(slash[i] - '0');
    }
    if (i == 1 || n > 32)
        return -1;
    if (n < 32 && (*net & (0xffffffffu >> n)) != 0)
        return -1;
    *len = n;
    return 0;
}

static int
np_in(uint32_t a, uint32_t net, unsigned len)
{
    uint32_t mask = len == 0 ? 0 : 0xffffffffu << (32 - len);

    return (a & mask) == net;
}

/* An interface name the kernel would take: 1..15 characters, none of which
 * needs quoting in nft or could end the quoted string. */
static int
np_ifname(const char *s)
{
    size_t i, n;

    if (s == NULL || (n = strlen(s)) == 0 || n >= IFNAMSIZ)
        return -1;
    if (strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
        return -1;
    for (i = 0; i < n; i++) {
        char c = s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.'))
            return -1;
    }
    return 0;
}

static void
np_print_addr(FILE *fp, uint32_t a)
{
    fprintf(fp, "%u.%u.%u.%u", a >> 24, (a >> 16) & 0xff, (a >> 8) & 0xff,
            a & 0xff);
}

/* A set's elements; *first tracks the separator across calls. */
static void
np_elem_sep(FILE *fp, int *first)
{
    fputs(*first ? "\t\telements = { " : ",\n\t\t\t", fp);
    *first = 0;
}

char *
netpolicy_script(const struct netpolicy *p, char *why, size_t whylen)
{
    uint32_t cnet, snet, gw, a = 0, src = 0;
    unsigned clen, slen;
    size_t i, j, pairs = 0, len = 0;
    char *buf = NULL;
    FILE *fp = NULL;
    int first;

    if (p == NULL) {
        np_fail(why, whylen, "network policy: no policy given");
        return NULL;
    }
    if (np_prefix(p->cluster_cidr, &cnet, &clen) < 0) {
        np_fail(why, whylen,
                "network policy: cluster CIDR \"%s\" is not an IPv4 network (a.b.c.d/n, no host bits)",
                np_quote(p->cluster_cidr).s);
        return NULL;
    }
    if (np_prefix(p->subnet, &snet, &slen) < 0) {
        np_fail(why, whylen,
                "network policy: host subnet \"%s\" is not an IPv4 network (a.b.c.d/n, no host bits)",
                np_quote(p->subnet).s);
        return NULL;
    }
    if (slen < clen || !np_in(snet, cnet, clen)) {
        np_fail(why, whylen,
                "network policy: host subnet %s is not inside cluster CIDR %s",
                p->subnet, p->cluster_cidr);
        return NULL;
    }
    if (np_ifname(p->bridge) < 0) {
        np_fail(why, whylen,
                "network policy: bridge \"%s\" is not an interface name (1-15 of a-z A-Z 0-9 . _ -)",
                np_quote(p->bridge).s);
        return NULL;
    }
    if (np_addr(p->gateway, &gw) < 0 || !np_in(gw, snet, slen)) {
        np_fail(why, whylen,
                "network policy: gateway \"%s\" is not an IPv4 address in host subnet %s",
                np_quote(p->gateway).s, p->subnet);
        return NULL;
    }
    if (p->ninsts > NETPOLICY_MAX_INSTS || (p->ninsts > 0 && p->insts == NULL)) {
        np_fail(why, whylen,
                "network policy: %zu instances, at most %d on one host",
                p->ninsts, NETPOLICY_MAX_INSTS);
        return NULL;
    }
    /* Everything is checked before a byte is written: a refused policy
     * never leaves a half-built script behind. */
    for (i = 0; i < p->ninsts; i++) {
        const struct netpolicy_inst *in = &p->insts[i];

        if (np_addr(in->address, &a) < 0 || !np_in(a, snet, slen) || a == gw) {
            np_fail(why, whylen,
                    "network policy: instance address \"%s\" is not an IPv4 address in host subnet %s other than the gateway",
                    np_quote(in->address).s, p->subnet);
            return NULL;
        }
        if (in->nallowed > 0 && in->allowed == NULL) {
            np_fail(why, whylen,
                    "network policy: instance %s has %zu allowed sources but no list",
                    in->address, in->nallowed);
            return NULL;
        }
        if (in->nallowed > NETPOLICY_MAX_PAIRS - pairs) {
            np_fail(why, whylen,
                    "network policy: more than %d allowed (instance, source) pairs",
                    NETPOLICY_MAX_PAIRS);
            return NULL;
        }
        pairs += in->nallowed;
        for (j = 0; j < in->nallowed; j++) {
            if (np_addr(in->allowed[j], &src) < 0 || !np_in(src, cnet, clen)) {
                np_fail(why, whylen,
                        "network policy: instance %s: allowed source \"%s\" is not an IPv4 address in cluster CIDR %s",
                        in->address,
                        np_quote(in->allowed[j]).s,
                        p->cluster_cidr);
                return NULL;
            }
        }
    }

    if ((fp = open_memstream(&buf, &len)) == NULL)
        fatal("open_memstream");
    fprintf(fp, "table inet " NETPOLICY_TABLE " {}\n"
                "delete table inet " NETPOLICY_TABLE "\n"
                "table inet " NETPOLICY_TABLE " {\n");

    fputs("\tset open {\n\t\ttype ipv4_addr\n", fp);
    first = 1;
    for (i = 0; i < p->ninsts; i++) {
        if (!p->insts[i].open)
            continue;
        np_elem_sep(fp, &first);
        np_addr(p->insts[i].address, &a);
        np_print_addr(fp, a);
    }
    fputs(first ? "\t}\n" : " }\n\t}\n", fp);

    fputs("\tset allow {\n\t\ttype ipv4_addr . ipv4_addr\n", fp);
    first = 1;
    for (i = 0; i < p->ninsts; i++) {
        const struct netpolicy_inst *in = &p->insts[i];

        np_addr(in->address, &a);
        for (j = 0; j < in->nallowed; j++) {
            np_elem_sep(fp, &first);
            np_addr(in->allowed[j], &src);
            np_print_addr(fp, a);
            fputs(" . ", fp);
            np_print_addr(fp, src);
        }
    }
    fputs(first ? "\t}\n" : " }\n\t}\n", fp);

    fprintf(fp, "\tchain forward {\n"
                "\t\ttype filter hook forward priority filter; policy accept;\n"
                "\t\toifname \"%s\" ip daddr ",
            p->bridge);
    np_print_addr(fp, snet);
    fprintf(fp, "/%u jump guest_in\n", slen);
    fprintf(fp, "\t\toifname \"%s\" meta nfproto ipv6 meta l4proto { tcp, udp } drop\n"
                "\t}\n",
            p->bridge);

    fputs("\tchain guest_in {\n"
          "\t\tct state established,related accept\n"
          "\t\tip saddr ",
          fp);
    np_print_addr(fp, gw);
    fputs(" drop\n"
          "\t\tip daddr @open accept\n"
          "\t\tip daddr . ip saddr @allow accept\n"
          "\t\ticmp type echo-request accept\n"
          "\t\tcounter drop\n"
          "\t}\n",
          fp);

    fputs("\tchain postrouting {\n"
          "\t\ttype nat hook postrouting priority srcnat; policy accept;\n"
          "\t\tip saddr ",
          fp);
    np_print_addr(fp, cnet);
    fprintf(fp, "/%u ip daddr != ", clen);
    np_print_addr(fp, cnet);
    fprintf(fp, "/%u masquerade\n"
                "\t}\n"
                "}\n",
            clen);

    if (fclose(fp) != 0)
        fatal("open_memstream");
    return buf;
}

/* The first Error: line of libnftables' error buffer, as one sentence.
 * The script line nft quotes under it is left out: for buffer input,
 * libnftables 1.0.6 quotes the buffer's first line whatever the error's. */
static void
np_nft_fail(struct nft_ctx *ctx, char *why, size_t whylen, const char *what)
{
    const char *e = nft_ctx_get_error_buffer(ctx);
    const char *msg, *nl;
    int mlen;

    if (e == NULL || *e == '\0')
        e = "no error text";
    msg = strstr(e, "Error: ");
    msg = msg ? msg + 7 : e;
    nl = strchr(msg, '\n');
    mlen = nl ? (int)(nl - msg) : (int)strlen(msg);
    np_fail(why, whylen, "network policy: libnftables refused to %s: %.*s",
            what, mlen > 300 ? 300 : mlen, msg);
}

int
netpolicy_run(const char *script, const char *what, char *why, size_t whylen)
{
    struct nft_ctx *ctx;
    int rc = -1;

    if ((ctx = nft_ctx_new(NFT_CTX_DEFAULT)) == NULL) {
        np_fail(why, whylen, "network policy: libnftables could not create a context");
        return -1;
    }
    if (nft_ctx_buffer_output(ctx) != 0 || nft_ctx_buffer_error(ctx) != 0) {
        np_fail(why, whylen, "network policy: libnftables could not buffer its output");
        goto cleanup;
    }
    if (nft_run_cmd_from_buffer(ctx, script) != 0) {
        np_nft_fail(ctx, why, whylen, what);
        goto cleanup;
    }
    rc = 0;
cleanup:
    nft_ctx_free(ctx);
    return rc;
}

/* Writes "1" to path unless it already holds 1. */
static int
np_sysctl_on(const char *path, char *why, size_t whylen)
{
    char cur[8] = "";
    ssize_t n;
    int fd;

    if ((fd = open(path, O_RDWR | O_CLOEXEC)) < 0) {
        if (errno == ENOENT)
            np_fail(why, whylen,
                    "network policy: %s is missing: br_netfilter is not loaded (modprobe br_netfilter), and without it traffic between guests on one bridge is not filtered",
                    path);
        else
            np_fail(why, whylen, "network policy: cannot open %s: %s", path,
                    strerror(errno));
        return -1;
    }
    n = read(fd, cur, sizeof(cur) - 1);
    if (n > 0 && cur[0] == '1') {
        close(fd);
        return 0;
    }
    if (lseek(fd, 0, SEEK_SET) < 0 || write(fd, "1\n", 2) != 2) {
        np_fail(why, whylen, "network policy: cannot turn on %s: %s", path,
                strerror(errno));
        close(fd);
        return -1;
    }
    if (close(fd) < 0) {
        np_fail(why, whylen, "network policy: cannot turn on %s: %s", path,
                strerror(errno));
        return -1;
    }
    log_info("turned on %s: bridged traffic now crosses table inet cloud", path);
    return 0;
}

int
netpolicy_apply(const struct netpolicy *p, char *why, size_t whylen)
{
    char *script __cleanup_free = netpolicy_script(p, why, whylen);
    size_t i;

    if (script == NULL)
        return -1;
    /* Before the rules: once committed they must see bridged traffic. */
    for (i = 0; i < sizeof(np_sysctls) / sizeof(np_sysctls[0]); i++)
        if (np_sysctl_on(np_sysctls[i], why, whylen) < 0)
            return -1;
    if (netpolicy_run(script, "replace table inet cloud", why, whylen) < 0)
        return -1;
    log_debug("table inet cloud: %zu instances on bridge %s", p->ninsts,
              p->bridge);
    return 0;
}

int
netpolicy_remove(char *why, size_t whylen)
{
    /* The empty add makes the delete succeed when there is no table. */
    return netpolicy_run("table inet " NETPOLICY_TABLE " {}\n"
                  "delete table inet " NETPOLICY_TABLE "\n",
                  "delete table inet cloud", why, whylen);
}
