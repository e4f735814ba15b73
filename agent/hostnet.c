/*
 * hostnet: makes this host's kernel networking match a plan, over netlink
 * with libnl-route-3. It owns two devices and what hangs off them: the
 * bridge (the gateway address; guests' taps are attached by libvirt and
 * left alone) and the VXLAN device (its /32, its neighbours, its FDB, the
 * routes through it). Each apply reads the kernel's state (links,
 * addresses, neighbours, routes) once, then changes only what differs, so
 * an agent restart disturbs nothing. A device of our name but of another
 * kind is never touched: the apply fails and says so.
 */
#define LOG_MODULE "hostnet"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <linux/if.h>
#include <linux/neighbour.h>
#include <linux/rtnetlink.h>
#include <netlink/addr.h>
#include <netlink/cache.h>
#include <netlink/errno.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/bridge.h>
#include <netlink/route/link/vxlan.h>
#include <netlink/route/neighbour.h>
#include <netlink/route/route.h>

#include "hostnet.h"
#include "log.h"
#include "mem.h"

#define IP_FORWARD_PATH "/proc/sys/net/ipv4/ip_forward"

struct cidr4 {
    struct in_addr addr; /* as written: the gateway keeps its host part */
    unsigned plen;
};

/* A peer, parsed: what the kernel entries are compared with. */
struct peer4 {
    const char *subnet_s;
    struct in_addr underlay;
    struct cidr4 subnet; /* network address */
    struct in_addr vtep; /* = subnet.addr: its VXLAN device's address */
    uint8_t mac[6];
};

/* One apply or remove. */
struct hn {
    struct nl_sock *sk;
    struct nl_cache *links, *addrs, *neighs, *routes;
    char *why;
    size_t whylen;
    int changes;
};

static void hn_fail(struct hn *h, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Records the failure sentence; the caller reports it (once). */
static void
hn_fail(struct hn *h, const char *fmt, ...)
{
    va_list ap;

    if (h->why == NULL || h->whylen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(h->why, h->whylen, fmt, ap);
    va_end(ap);
}

static void
hn_changed(struct hn *h)
{
    h->changes++;
}

/* "a.b.c.d/n"; with network, the host part must be zero. */
static int
parse_cidr4(const char *s, bool network, struct cidr4 *out)
{
    char buf[INET_ADDRSTRLEN + 4], *slash, *end;
    unsigned long plen;
    uint32_t mask;

    if (s == NULL || strlen(s) >= sizeof(buf))
        return -1;
    xstrlcpy(buf, s, sizeof(buf));
    slash = strchr(buf, '/');
    if (slash == NULL || slash[1] < '0' || slash[1] > '9')
        return -1;
    *slash = '\0';
    errno = 0;
    plen = strtoul(slash + 1, &end, 10);
    if (errno != 0 || *end != '\0' || plen > 32)
        return -1;
    if (inet_pton(AF_INET, buf, &out->addr) != 1)
        return -1;
    out->plen = (unsigned)plen;
    mask = plen == 0 ? 0 : htonl(~0U << (32 - plen));
    if (network && (out->addr.s_addr & ~mask) != 0)
        return -1;
    return 0;
}

static uint32_t
mask4(unsigned plen)
{
    return plen == 0 ? 0 : htonl(~0U << (32 - plen));
}

/* Whether inner lies wholly inside outer. */
static bool
cidr4_within(const struct cidr4 *inner, const struct cidr4 *outer)
{
    return inner->plen >= outer->plen &&
           (inner->addr.s_addr & mask4(outer->plen)) ==
               (outer->addr.s_addr & mask4(outer->plen));
}

static bool
cidr4_overlap(const struct cidr4 *a, const struct cidr4 *b)
{
    unsigned plen = a->plen < b->plen ? a->plen : b->plen;

    return (a->addr.s_addr & mask4(plen)) == (b->addr.s_addr & mask4(plen));
}

static void
mac_of(const struct cidr4 *net, uint8_t mac[6])
{
    mac[0] = 0x02; /* locally administered, unicast */
    mac[1] = (uint8_t)net->plen;
    memcpy(mac + 2, &net->addr.s_addr, 4);
}

int
hostnet_vtep_mac(const char *subnet, uint8_t mac[6], char *why,
                 size_t whylen)
{
    struct cidr4 c;

    if (parse_cidr4(subnet, true, &c) < 0) {
        snprintf(why, whylen,
                 "subnet %s is not an IPv4 network address with a prefix length",
                 subnet ? subnet : "(none)");
        return -1;
    }
    mac_of(&c, mac);
    return 0;
}

static bool
ifname_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;

    if (n == 0 || n > HOSTNET_IFNAME_MAX || strcmp(s, ".") == 0 ||
        strcmp(s, "..") == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] == '/' || s[i] == ':' || s[i] <= ' ' || s[i] > '~')
            return false;
    return true;
}

static struct nl_addr *
nladdr4(struct in_addr a, unsigned plen)
{
    struct nl_addr *na = nl_addr_build(AF_INET, &a, sizeof(a));

    if (na == NULL)
        fatalx("out of memory building a netlink address");
    nl_addr_set_prefixlen(na, (int)plen);
    return na;
}

static struct nl_addr *
nlmac(const uint8_t mac[6])
{
    struct nl_addr *na = nl_addr_build(AF_LLC, mac, 6);

    if (na == NULL)
        fatalx("out of memory building a netlink address");
    return na;
}

static bool
is4(struct nl_addr *a, struct in_addr want)
{
    return a != NULL && nl_addr_get_family(a) == AF_INET &&
           nl_addr_get_len(a) == 4 &&
           memcmp(nl_addr_get_binary_addr(a), &want, 4) == 0;
}

static bool
is_mac(struct nl_addr *a, const uint8_t mac[6])
{
    return a != NULL && nl_addr_get_len(a) == 6 &&
           memcmp(nl_addr_get_binary_addr(a), mac, 6) == 0;
}

static const char *
mac_str(const uint8_t mac[6], char buf[18])
{
    snprintf(buf, 18, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1],
             mac[2], mac[3], mac[4], mac[5]);
    return buf;
}

static const char *
in4_str(struct in_addr a, char buf[INET_ADDRSTRLEN])
{
    if (inet_ntop(AF_INET, &a, buf, INET_ADDRSTRLEN) == NULL)
        xstrlcpy(buf, "?", INET_ADDRSTRLEN);
    return buf;
}

/* An IPv4 nl_addr without its prefix length (nl_addr2str appends it). */
static const char *
nl4_str(struct nl_addr *a, char buf[INET_ADDRSTRLEN])
{
    struct in_addr in;

    if (a == NULL || nl_addr_get_len(a) != 4) {
        xstrlcpy(buf, "?", INET_ADDRSTRLEN);
        return buf;
    }
    memcpy(&in, nl_addr_get_binary_addr(a), 4);
    return in4_str(in, buf);
}

/* The plan, checked and parsed; peers is allocated (npeers entries). */
struct plan4 {
    struct cidr4 gateway, subnet, cluster;
    struct in_addr underlay;
    uint8_t mac[6];
    struct peer4 *peers;
};

static int
plan_parse(struct hn *h, const struct hostnet_plan *p, struct plan4 *out)
{
    memset(out, 0, sizeof(*out));
    if (!ifname_ok(p->bridge) || !ifname_ok(p->vxlan)) {
        hn_fail(h,
                "plan: bridge %s and vxlan %s must be interface names of 1 to %d printable characters without '/', ':' or spaces",
                p->bridge ? p->bridge : "(none)",
                p->vxlan ? p->vxlan : "(none)", HOSTNET_IFNAME_MAX);
        return -1;
    }
    if (strcmp(p->bridge, p->vxlan) == 0) {
        hn_fail(h, "plan: bridge and vxlan are both named %s", p->bridge);
        return -1;
    }
    if (p->vni == 0 || p->vni > 0xffffff) {
        hn_fail(h, "plan: vni %" PRIu32 " is not between 1 and 16777215",
                p->vni);
        return -1;
    }
    if (parse_cidr4(p->cluster_cidr, true, &out->cluster) < 0) {
        hn_fail(h, "plan: cluster_cidr %s is not an IPv4 network address with a prefix length",
                p->cluster_cidr ? p->cluster_cidr : "(none)");
        return -1;
    }
    if (parse_cidr4(p->gateway, false, &out->gateway) < 0 ||
        out->gateway.plen > 30) {
        hn_fail(h, "plan: gateway %s is not an IPv4 address with a prefix length of 30 or less",
                p->gateway ? p->gateway : "(none)");
        return -1;
    }
    out->subnet = out->gateway;
    out->subnet.addr.s_addr &= mask4(out->gateway.plen);
    if (out->subnet.addr.s_addr == out->gateway.addr.s_addr ||
        (out->gateway.addr.s_addr | ~mask4(out->gateway.plen)) ==
            out->gateway.addr.s_addr) {
        hn_fail(h, "plan: gateway %s is its subnet's network or broadcast address",
                p->gateway);
        return -1;
    }
    if (!cidr4_within(&out->subnet, &out->cluster)) {
        hn_fail(h, "plan: gateway %s is outside cluster_cidr %s", p->gateway,
                p->cluster_cidr);
        return -1;
    }
    if (p->underlay == NULL ||
        inet_pton(AF_INET, p->underlay, &out->underlay) != 1) {
        hn_fail(h, "plan: underlay %s is not an IPv4 address",
                p->underlay ? p->underlay : "(none)");
        return -1;
    }
    if (p->mtu != 0 && (p->mtu < 576 || p->mtu > 65535)) {
        hn_fail(h, "plan: mtu %u is not between 576 and 65535", p->mtu);
        return -1;
    }
    if (p->npeers > HOSTNET_PEERS_MAX || (p->npeers > 0 && p->peers == NULL)) {
        hn_fail(h, "plan: %zu peers, at most %d", p->npeers,
                HOSTNET_PEERS_MAX);
        return -1;
    }
    mac_of(&out->subnet, out->mac);
    out->peers = xcalloc(p->npeers ? p->npeers : 1, sizeof(*out->peers));
    for (size_t i = 0; i < p->npeers; i++) {
        const struct hostnet_peer *src = &p->peers[i];
        struct peer4 *pe = &out->peers[i];

        pe->subnet_s = src->subnet ? src->subnet : "(none)";
        if (parse_cidr4(src->subnet, true, &pe->subnet) < 0 ||
            pe->subnet.plen > 30) {
            hn_fail(h, "plan: peer subnet %s is not an IPv4 network address with a prefix length of 30 or less",
                    pe->subnet_s);
            return -1;
        }
        if (src->underlay == NULL ||
            inet_pton(AF_INET, src->underlay, &pe->underlay) != 1) {
            hn_fail(h, "plan: peer %s: underlay %s is not an IPv4 address",
                    pe->subnet_s, src->underlay ? src->underlay : "(none)");
            return -1;
        }
        if (!cidr4_within(&pe->subnet, &out->cluster)) {
            hn_fail(h, "plan: peer subnet %s is outside cluster_cidr %s",
                    pe->subnet_s, p->cluster_cidr);
            return -1;
        }
        if (cidr4_overlap(&pe->subnet, &out->subnet)) {
            hn_fail(h, "plan: peer subnet %s overlaps this host's subnet of gateway %s",
                    pe->subnet_s, p->gateway);
            return -1;
        }
        if (pe->underlay.s_addr == out->underlay.s_addr) {
            hn_fail(h, "plan: peer %s has this host's own underlay address %s",
                    pe->subnet_s, p->underlay);
            return -1;
        }
        for (size_t j = 0; j < i; j++)
            if (cidr4_overlap(&pe->subnet, &out->peers[j].subnet)) {
                hn_fail(h, "plan: peer subnets %s and %s overlap",
                        out->peers[j].subnet_s, pe->subnet_s);
                return -1;
            }
        pe->vtep = pe->subnet.addr;
        mac_of(&pe->subnet, pe->mac);
    }
    return 0;
}

static int
hn_open(struct hn *h)
{
    int err;

    h->sk = nl_socket_alloc();
    if (h->sk == NULL)
        fatalx("out of memory allocating a netlink socket");
    err = nl_connect(h->sk, NETLINK_ROUTE);
    if (err < 0) {
        hn_fail(h, "netlink: cannot open a route socket: %s",
                nl_geterror(err));
        return -1;
    }
    return 0;
}

static void
hn_close(struct hn *h)
{
    if (h->links)
        nl_cache_free(h->links);
    if (h->addrs)
        nl_cache_free(h->addrs);
    if (h->neighs)
        nl_cache_free(h->neighs);
    if (h->routes)
        nl_cache_free(h->routes);
    if (h->sk)
        nl_socket_free(h->sk);
}

static int
read_links(struct hn *h)
{
    int err;

    if (h->links == NULL)
        err = rtnl_link_alloc_cache(h->sk, AF_UNSPEC, &h->links);
    else
        err = nl_cache_refill(h->sk, h->links);
    if (err < 0) {
        hn_fail(h, "netlink: cannot read the host's links: %s",
                nl_geterror(err));
        return -1;
    }
    return 0;
}

static int
read_state(struct hn *h)
{
    int err;

    if ((err = rtnl_addr_alloc_cache(h->sk, &h->addrs)) < 0) {
        hn_fail(h, "netlink: cannot read the host's addresses: %s",
                nl_geterror(err));
        return -1;
    }
    /* AF_ITER: the IPv4/IPv6 neighbours and the bridge family's FDB. */
    if ((err = rtnl_neigh_alloc_cache_flags(h->sk, &h->neighs,
                                            NL_CACHE_AF_ITER)) < 0) {
        hn_fail(h, "netlink: cannot read the host's neighbours and FDB: %s",
                nl_geterror(err));
        return -1;
    }
    if ((err = rtnl_route_alloc_cache(h->sk, AF_INET, 0, &h->routes)) < 0) {
        hn_fail(h, "netlink: cannot read the host's routes: %s",
                nl_geterror(err));
        return -1;
    }
    return 0;
}

/* The MTU of the interface holding the underlay address. */
static int
underlay_mtu(struct hn *h, const struct hostnet_plan *p,
             const struct plan4 *q, unsigned *mtu)
{
    for (struct nl_object *o = nl_cache_get_first(h->addrs); o != NULL;
         o = nl_cache_get_next(o)) {
        struct rtnl_addr *a = (struct rtnl_addr *)o;
        struct rtnl_link *l;

        if (!is4(rtnl_addr_get_local(a), q->underlay))
            continue;
        l = rtnl_link_get(h->links, rtnl_addr_get_ifindex(a));
        if (l == NULL)
            break;
        *mtu = rtnl_link_get_mtu(l);
        rtnl_link_put(l);
        return 0;
    }
    hn_fail(h, "underlay address %s is not on any interface of this host",
            p->underlay);
    return -1;
}

/*
 * The device named name in *out (a reference), NULL when there is none;
 * -1 when the name is taken by a device of another kind.
 */
static int
link_kind_check(struct hn *h, const char *name, const char *kind,
                struct rtnl_link **out)
{
    struct rtnl_link *l = rtnl_link_get_by_name(h->links, name);
    const char *type;

    *out = NULL;
    if (l == NULL)
        return 0;
    type = rtnl_link_get_type(l);
    if (type == NULL || strcmp(type, kind) != 0) {
        hn_fail(h, "%s %s: a device of that name exists and is a %s, not a %s; not touching it",
                kind, name, type ? type : "device of no kind", kind);
        rtnl_link_put(l);
        return -1;
    }
    *out = l;
    return 0;
}

/* MTU, MAC (when mac is not NULL) and IFF_UP of an existing device. */
static int
link_fix(struct hn *h, const char *kind, struct rtnl_link *l, unsigned mtu,
         const uint8_t *mac)
{
    struct rtnl_link *chg = rtnl_link_alloc();
    struct nl_addr *lladdr = NULL;
    bool differs = false;
    int err, rc = -1;
    char ms[18];

    if (chg == NULL)
        fatalx("out of memory allocating a link");
    if (rtnl_link_get_mtu(l) != mtu) {
        log_info("%s %s: MTU %u -> %u", kind, rtnl_link_get_name(l),
                 rtnl_link_get_mtu(l), mtu);
        rtnl_link_set_mtu(chg, mtu);
        differs = true;
    }
    if (mac != NULL && !is_mac(rtnl_link_get_addr(l), mac)) {
        log_info("%s %s: MAC set to %s", kind, rtnl_link_get_name(l),
                 mac_str(mac, ms));
        lladdr = nlmac(mac);
        rtnl_link_set_addr(chg, lladdr);
        differs = true;
    }
    if (!(rtnl_link_get_flags(l) & IFF_UP)) {
        log_info("%s %s: set up", kind, rtnl_link_get_name(l));
        rtnl_link_set_flags(chg, IFF_UP);
        differs = true;
    }
    if (differs) {
        err = rtnl_link_change(h->sk, l, chg, 0);
        if (err < 0) {
            hn_fail(h, "%s %s: cannot set its MTU, MAC or up state: %s", kind,
                    rtnl_link_get_name(l), nl_geterror(err));
            goto cleanup;
        }
        hn_changed(h);
    }
    rc = 0;

cleanup:
    if (lladdr)
        nl_addr_put(lladdr);
    rtnl_link_put(chg);
    return rc;
}

static int
ensure_bridge(struct hn *h, const struct hostnet_plan *p, unsigned mtu,
              int *ifindex)
{
    struct rtnl_link *l;
    int err, rc = -1;

    if (link_kind_check(h, p->bridge, "bridge", &l) < 0)
        return -1;
    if (l == NULL) {
        l = rtnl_link_bridge_alloc();
        if (l == NULL)
            fatalx("out of memory allocating a bridge");
        /*
         * No MTU here: one given at creation is not "set by the user" for
         * the kernel, which would then raise it to the first port's (a
         * guest's tap). link_fix sets it below, and there it sticks.
         */
        rtnl_link_set_name(l, p->bridge);
        rtnl_link_set_flags(l, IFF_UP);
        err = rtnl_link_add(h->sk, l, NLM_F_CREATE | NLM_F_EXCL);
        rtnl_link_put(l);
        if (err < 0) {
            hn_fail(h, "bridge %s: cannot create it: %s", p->bridge,
                    nl_geterror(err));
            return -1;
        }
        log_info("bridge %s: created", p->bridge);
        hn_changed(h);
        if (read_links(h) < 0)
            return -1;
        l = rtnl_link_get_by_name(h->links, p->bridge);
        if (l == NULL) {
            hn_fail(h, "bridge %s: created but not found afterwards",
                    p->bridge);
            return -1;
        }
    }
    if (link_fix(h, "bridge", l, mtu, NULL) < 0)
        goto cleanup;
    *ifindex = rtnl_link_get_ifindex(l);
    rc = 0;

cleanup:
    rtnl_link_put(l);
    return rc;
}

/* Whether an existing VXLAN device has the plan's VNI, local, port, learning. */
static bool
vxlan_matches(struct rtnl_link *l, const struct hostnet_plan *p,
              const struct plan4 *q)
{
    struct nl_addr *local = NULL;
    uint32_t id = 0, port = 0;
    bool ok;

    if (rtnl_link_vxlan_get_id(l, &id) < 0 || id != p->vni)
        return false;
    if (rtnl_link_vxlan_get_port(l, &port) < 0 || port != HOSTNET_VXLAN_PORT)
        return false;
    if (rtnl_link_vxlan_get_learning(l) != 0)
        return false;
    if (rtnl_link_vxlan_get_local(l, &local) < 0)
        return false;
    ok = is4(local, q->underlay);
    nl_addr_put(local);
    return ok;
}

static int
vxlan_create(struct hn *h, const struct hostnet_plan *p,
             const struct plan4 *q, unsigned mtu)
{
    struct rtnl_link *l = rtnl_link_vxlan_alloc();
    struct nl_addr *local = nladdr4(q->underlay, 32);
    struct nl_addr *mac = nlmac(q->mac);
    int err, rc = -1;

    if (l == NULL)
        fatalx("out of memory allocating a vxlan link");
    rtnl_link_set_name(l, p->vxlan);
    rtnl_link_set_mtu(l, mtu);
    rtnl_link_set_addr(l, mac);
    rtnl_link_set_flags(l, IFF_UP);
    if ((err = rtnl_link_vxlan_set_id(l, p->vni)) < 0 ||
        (err = rtnl_link_vxlan_set_local(l, local)) < 0 ||
        (err = rtnl_link_vxlan_set_port(l, HOSTNET_VXLAN_PORT)) < 0 ||
        (err = rtnl_link_vxlan_set_learning(l, 0)) < 0) {
        hn_fail(h, "vxlan %s: cannot describe it: %s", p->vxlan,
                nl_geterror(err));
        goto cleanup;
    }
    err = rtnl_link_add(h->sk, l, NLM_F_CREATE | NLM_F_EXCL);
    if (err < 0) {
        hn_fail(h, "vxlan %s: cannot create it (VNI %" PRIu32 ", local %s, port %d): %s",
                p->vxlan, p->vni, p->underlay, HOSTNET_VXLAN_PORT,
                nl_geterror(err));
        goto cleanup;
    }
    log_info("vxlan %s: created, VNI %" PRIu32 ", local %s, MTU %u",
             p->vxlan, p->vni, p->underlay, mtu);
    hn_changed(h);
    rc = 0;

cleanup:
    nl_addr_put(mac);
    nl_addr_put(local);
    rtnl_link_put(l);
    return rc;
}

static int
ensure_vxlan(struct hn *h, const struct hostnet_plan *p,
             const struct plan4 *q, unsigned mtu, int *ifindex)
{
    struct rtnl_link *l;
    int err, rc = -1;

    if (link_kind_check(h, p->vxlan, "vxlan", &l) < 0)
        return -1;
    if (l != NULL && !vxlan_matches(l, p, q)) {
        /* VNI, local address and port cannot be changed in place. */
        err = rtnl_link_delete(h->sk, l);
        rtnl_link_put(l);
        l = NULL;
        if (err < 0) {
            hn_fail(h, "vxlan %s: cannot delete it to recreate it with VNI %" PRIu32 " and local %s: %s",
                    p->vxlan, p->vni, p->underlay, nl_geterror(err));
            return -1;
        }
        log_info("vxlan %s: deleted to recreate it with VNI %" PRIu32 " and local %s",
                 p->vxlan, p->vni, p->underlay);
        hn_changed(h);
    }
    if (l == NULL) {
        if (vxlan_create(h, p, q, mtu) < 0 || read_links(h) < 0)
            return -1;
        l = rtnl_link_get_by_name(h->links, p->vxlan);
        if (l == NULL) {
            hn_fail(h, "vxlan %s: created but not found afterwards",
                    p->vxlan);
            return -1;
        }
    }
    if (link_fix(h, "vxlan", l, mtu, q->mac) < 0)
        goto cleanup;
    *ifindex = rtnl_link_get_ifindex(l);
    rc = 0;

cleanup:
    rtnl_link_put(l);
    return rc;
}

/* Exactly one IPv4 address on a device: want/plen; others are removed. */
static int
ensure_addr(struct hn *h, const char *kind, const char *name, int ifindex,
            struct in_addr want, unsigned plen)
{
    struct nl_object *o;
    bool have = false;
    char as[INET_ADDRSTRLEN];
    int err;

    for (o = nl_cache_get_first(h->addrs); o != NULL;
         o = nl_cache_get_next(o)) {
        struct rtnl_addr *a = (struct rtnl_addr *)o;
        struct nl_addr *local = rtnl_addr_get_local(a);
        char buf[INET_ADDRSTRLEN];

        if (rtnl_addr_get_ifindex(a) != ifindex ||
            rtnl_addr_get_family(a) != AF_INET)
            continue;
        if (is4(local, want) &&
            (unsigned)rtnl_addr_get_prefixlen(a) == plen && !have) {
            have = true;
            continue;
        }
        nl4_str(local, buf);
        err = rtnl_addr_delete(h->sk, a, 0);
        if (err < 0) {
            hn_fail(h, "%s %s: cannot delete address %s/%d: %s", kind, name,
                    buf, rtnl_addr_get_prefixlen(a), nl_geterror(err));
            return -1;
        }
        log_info("%s %s: deleted address %s/%d", kind, name, buf,
                 rtnl_addr_get_prefixlen(a));
        hn_changed(h);
    }
    if (have)
        return 0;

    struct rtnl_addr *a = rtnl_addr_alloc();
    struct nl_addr *local = nladdr4(want, plen);

    if (a == NULL)
        fatalx("out of memory allocating an address");
    rtnl_addr_set_ifindex(a, ifindex);
    err = rtnl_addr_set_local(a, local);
    if (err >= 0)
        err = rtnl_addr_add(h->sk, a, 0);
    nl_addr_put(local);
    rtnl_addr_put(a);
    if (err < 0) {
        hn_fail(h, "%s %s: cannot add address %s/%u: %s", kind, name,
                in4_str(want, as), plen, nl_geterror(err));
        return -1;
    }
    log_info("%s %s: added address %s/%u", kind, name, in4_str(want, as),
             plen);
    hn_changed(h);
    return 0;
}

static int
ensure_ip_forward(struct hn *h)
{
    char c = 0;
    int fd = open(IP_FORWARD_PATH, O_RDWR | O_CLOEXEC);

    if (fd < 0) {
        hn_fail(h, "ip_forward: cannot open %s: %s", IP_FORWARD_PATH,
                strerror(errno));
        return -1;
    }
    if (read(fd, &c, 1) != 1) {
        hn_fail(h, "ip_forward: cannot read %s: %s", IP_FORWARD_PATH,
                strerror(errno));
        close(fd);
        return -1;
    }
    if (c != '1') {
        if (lseek(fd, 0, SEEK_SET) < 0 || write(fd, "1\n", 2) != 2) {
            hn_fail(h, "ip_forward: cannot write 1 to %s: %s",
                    IP_FORWARD_PATH, strerror(errno));
            close(fd);
            return -1;
        }
        log_info("ip_forward: enabled");
        hn_changed(h);
    }
    if (close(fd) < 0) {
        hn_fail(h, "ip_forward: cannot close %s: %s", IP_FORWARD_PATH,
                strerror(errno));
        return -1;
    }
    return 0;
}

static const struct peer4 *
peer_by_vtep(const struct plan4 *q, size_t n, struct nl_addr *dst)
{
    for (size_t i = 0; i < n; i++)
        if (is4(dst, q->peers[i].vtep))
            return &q->peers[i];
    return NULL;
}

static const struct peer4 *
peer_by_mac(const struct plan4 *q, size_t n, struct nl_addr *lladdr)
{
    for (size_t i = 0; i < n; i++)
        if (is_mac(lladdr, q->peers[i].mac))
            return &q->peers[i];
    return NULL;
}

/* Our route to a peer: main table, one onlink nexthop via its vtep on vx. */
static bool
route_right(struct rtnl_route *r, const struct peer4 *pe, int vx)
{
    struct rtnl_nexthop *nh;

    if (rtnl_route_get_nnexthops(r) != 1)
        return false;
    nh = rtnl_route_nexthop_n(r, 0);
    return nh != NULL && rtnl_route_nh_get_ifindex(nh) == vx &&
           is4(rtnl_route_nh_get_gateway(nh), pe->vtep) &&
           (rtnl_route_nh_get_flags(nh) & RTNH_F_ONLINK);
}

static bool
route_via(struct rtnl_route *r, int ifindex)
{
    int n = rtnl_route_get_nnexthops(r);

    for (int i = 0; i < n; i++) {
        struct rtnl_nexthop *nh = rtnl_route_nexthop_n(r, i);

        if (nh != NULL && rtnl_route_nh_get_ifindex(nh) == ifindex)
            return true;
    }
    return false;
}

/* A main-table IPv4 route whose destination is exactly dst, or NULL. */
static struct rtnl_route *
route_find(struct hn *h, const struct cidr4 *dst)
{
    for (struct nl_object *o = nl_cache_get_first(h->routes); o != NULL;
         o = nl_cache_get_next(o)) {
        struct rtnl_route *r = (struct rtnl_route *)o;
        struct nl_addr *d = rtnl_route_get_dst(r);

        if (rtnl_route_get_table(r) == RT_TABLE_MAIN && is4(d, dst->addr) &&
            (unsigned)nl_addr_get_prefixlen(d) == dst->plen)
            return r;
    }
    return NULL;
}

/* Routes, neighbours and FDB entries on vx that no planned peer owns. */
static int
remove_stale(struct hn *h, const struct hostnet_plan *p,
             const struct plan4 *q, int vx)
{
    struct nl_object *o;
    char buf[64], as[INET_ADDRSTRLEN];
    int err;

    for (o = nl_cache_get_first(h->routes); o != NULL;
         o = nl_cache_get_next(o)) {
        struct rtnl_route *r = (struct rtnl_route *)o;
        struct nl_addr *d = rtnl_route_get_dst(r);
        bool planned = false;

        if (rtnl_route_get_table(r) != RT_TABLE_MAIN ||
            rtnl_route_get_family(r) != AF_INET || !route_via(r, vx))
            continue;
        for (size_t i = 0; i < p->npeers && !planned; i++)
            planned = is4(d, q->peers[i].subnet.addr) &&
                      (unsigned)nl_addr_get_prefixlen(d) ==
                          q->peers[i].subnet.plen;
        if (planned)
            continue;
        snprintf(buf, sizeof(buf), "%s/%d", nl4_str(d, as),
                 nl_addr_get_prefixlen(d));
        if ((err = rtnl_route_delete(h->sk, r, 0)) < 0) {
            hn_fail(h, "vxlan %s: cannot delete the route to %s of a peer no longer planned: %s",
                    p->vxlan, buf, nl_geterror(err));
            return -1;
        }
        log_info("vxlan %s: deleted the route to %s (peer no longer planned)",
                 p->vxlan, buf);
        hn_changed(h);
    }
    for (o = nl_cache_get_first(h->neighs); o != NULL;
         o = nl_cache_get_next(o)) {
        struct rtnl_neigh *n = (struct rtnl_neigh *)o;
        struct nl_addr *ll = rtnl_neigh_get_lladdr(n);
        int fam = rtnl_neigh_get_family(n);
        const char *what;

        if (rtnl_neigh_get_ifindex(n) != vx)
            continue;
        if (fam == AF_INET) {
            if (peer_by_vtep(q, p->npeers, rtnl_neigh_get_dst(n)) != NULL)
                continue;
            what = "neighbour";
            nl4_str(rtnl_neigh_get_dst(n), buf);
        } else if (fam == AF_BRIDGE) {
            /* Multicast entries are the device's own, not a peer's. */
            if (ll == NULL || nl_addr_get_len(ll) != 6 ||
                (((const uint8_t *)nl_addr_get_binary_addr(ll))[0] & 1) ||
                peer_by_mac(q, p->npeers, ll) != NULL)
                continue;
            what = "FDB entry";
            nl_addr2str(ll, buf, sizeof(buf));
        } else {
            continue;
        }
        if ((err = rtnl_neigh_delete(h->sk, n, 0)) < 0) {
            hn_fail(h, "vxlan %s: cannot delete the %s %s of a peer no longer planned: %s",
                    p->vxlan, what, buf, nl_geterror(err));
            return -1;
        }
        log_info("vxlan %s: deleted the %s %s (peer no longer planned)",
                 p->vxlan, what, buf);
        hn_changed(h);
    }
    return 0;
}

/* A permanent neighbour on the VXLAN device vx: mac at IPv4 dst (the
 * peer's VTEP), or with fdb the bridge FDB entry sending mac to dst (the
 * peer's underlay address). Returns libnl's error, < 0 on failure. */
static int
neigh_put(struct hn *h, int vx, const uint8_t mac[6], struct in_addr dst4,
          int fdb)
{
    struct rtnl_neigh *n = rtnl_neigh_alloc();
    struct nl_addr *ll = nlmac(mac), *dst = nladdr4(dst4, 32);
    int err;

    if (n == NULL)
        fatalx("out of memory allocating a neighbour");
    rtnl_neigh_set_ifindex(n, vx);
    rtnl_neigh_set_lladdr(n, ll);
    /* The dst first: libnl refuses an IPv4 dst on an AF_BRIDGE neigh. */
    err = rtnl_neigh_set_dst(n, dst);
    if (fdb) {
        rtnl_neigh_set_family(n, AF_BRIDGE);
        rtnl_neigh_set_flags(n, NTF_SELF);
    }
    rtnl_neigh_set_state(n, NUD_PERMANENT);
    if (err >= 0)
        err = rtnl_neigh_add(h->sk, n, NLM_F_CREATE | NLM_F_REPLACE);
    nl_addr_put(ll);
    nl_addr_put(dst);
    rtnl_neigh_put(n);
    return err;
}

/* The FDB entry (MAC -> underlay), neighbour (vtep -> MAC) and route. */
static int
ensure_peer(struct hn *h, const struct hostnet_plan *p, const struct peer4 *pe,
            int vx)
{
    bool fdb_ok = false, neigh_ok = false;
    struct nl_object *o;
    struct rtnl_route *r;
    char us[INET_ADDRSTRLEN], vs[INET_ADDRSTRLEN], ms[18];
    int err;

    for (o = nl_cache_get_first(h->neighs); o != NULL;
         o = nl_cache_get_next(o)) {
        struct rtnl_neigh *n = (struct rtnl_neigh *)o;

        if (rtnl_neigh_get_ifindex(n) != vx ||
            !is_mac(rtnl_neigh_get_lladdr(n), pe->mac) ||
            !(rtnl_neigh_get_state(n) & NUD_PERMANENT))
            continue;
        if (rtnl_neigh_get_family(n) == AF_BRIDGE &&
            is4(rtnl_neigh_get_dst(n), pe->underlay))
            fdb_ok = true;
        if (rtnl_neigh_get_family(n) == AF_INET &&
            is4(rtnl_neigh_get_dst(n), pe->vtep))
            neigh_ok = true;
    }
    in4_str(pe->underlay, us);
    in4_str(pe->vtep, vs);
    mac_str(pe->mac, ms);
    if (!fdb_ok) {
        err = neigh_put(h, vx, pe->mac, pe->underlay, 1);
        if (err < 0) {
            hn_fail(h, "vxlan %s: cannot set the FDB entry %s dst %s of peer %s: %s",
                    p->vxlan, ms, us, pe->subnet_s, nl_geterror(err));
            return -1;
        }
        log_info("vxlan %s: FDB entry %s dst %s (peer %s)", p->vxlan, ms, us,
                 pe->subnet_s);
        hn_changed(h);
    }
    if (!neigh_ok) {
        err = neigh_put(h, vx, pe->mac, pe->vtep, 0);
        if (err < 0) {
            hn_fail(h, "vxlan %s: cannot set the neighbour %s lladdr %s of peer %s: %s",
                    p->vxlan, vs, ms, pe->subnet_s, nl_geterror(err));
            return -1;
        }
        log_info("vxlan %s: neighbour %s lladdr %s (peer %s)", p->vxlan, vs,
                 ms, pe->subnet_s);
        hn_changed(h);
    }
    r = route_find(h, &pe->subnet);
    if (r != NULL && route_right(r, pe, vx))
        return 0;

    struct rtnl_route *nr = rtnl_route_alloc();
    struct rtnl_nexthop *nh = rtnl_route_nh_alloc();
    struct nl_addr *dst = nladdr4(pe->subnet.addr, pe->subnet.plen);
    struct nl_addr *gw = nladdr4(pe->vtep, 32);

    if (nr == NULL || nh == NULL)
        fatalx("out of memory allocating a route");
    rtnl_route_set_family(nr, AF_INET);
    rtnl_route_set_table(nr, RT_TABLE_MAIN);
    rtnl_route_set_protocol(nr, RTPROT_STATIC);
    rtnl_route_set_scope(nr, RT_SCOPE_UNIVERSE);
    rtnl_route_set_type(nr, RTN_UNICAST);
    err = rtnl_route_set_dst(nr, dst);
    rtnl_route_nh_set_ifindex(nh, vx);
    rtnl_route_nh_set_gateway(nh, gw);
    rtnl_route_nh_set_flags(nh, RTNH_F_ONLINK);
    rtnl_route_add_nexthop(nr, nh); /* nr owns nh from here */
    if (err >= 0)
        err = rtnl_route_add(h->sk, nr, NLM_F_CREATE | NLM_F_REPLACE);
    nl_addr_put(dst);
    nl_addr_put(gw);
    rtnl_route_put(nr);
    if (err < 0) {
        hn_fail(h, "vxlan %s: cannot set the route %s via %s onlink of peer %s: %s",
                p->vxlan, pe->subnet_s, vs, pe->subnet_s, nl_geterror(err));
        return -1;
    }
    log_info("vxlan %s: route %s via %s onlink", p->vxlan, pe->subnet_s, vs);
    hn_changed(h);
    return 0;
}

int
hostnet_apply(const struct hostnet_plan *p, char *why, size_t whylen)
{
    struct hn h = {.why = why, .whylen = whylen};
    struct plan4 q;
    unsigned mtu;
    int br, vx, rc = -1;

    if (whylen > 0)
        why[0] = '\0';
    if (plan_parse(&h, p, &q) < 0)
        goto cleanup;
    if (hn_open(&h) < 0 || read_links(&h) < 0 || read_state(&h) < 0)
        goto cleanup;
    if (p->mtu != 0) {
        mtu = p->mtu;
    } else {
        if (underlay_mtu(&h, p, &q, &mtu) < 0)
            goto cleanup;
        if (mtu < 576 + HOSTNET_VXLAN_OVERHEAD) {
            hn_fail(&h, "underlay address %s: its interface's MTU %u leaves less than 576 bytes inside VXLAN",
                    p->underlay, mtu);
            goto cleanup;
        }
        mtu -= HOSTNET_VXLAN_OVERHEAD;
    }
    if (ensure_bridge(&h, p, mtu, &br) < 0 ||
        ensure_addr(&h, "bridge", p->bridge, br, q.gateway.addr,
                    q.gateway.plen) < 0 ||
        ensure_vxlan(&h, p, &q, mtu, &vx) < 0 ||
        ensure_addr(&h, "vxlan", p->vxlan, vx, q.subnet.addr, 32) < 0 ||
        ensure_ip_forward(&h) < 0)
        goto cleanup;
    /* A recreated device took its entries with it: read them again. */
    nl_cache_free(h.neighs);
    nl_cache_free(h.routes);
    h.neighs = h.routes = NULL;
    nl_cache_free(h.addrs);
    h.addrs = NULL;
    if (read_state(&h) < 0 || remove_stale(&h, p, &q, vx) < 0)
        goto cleanup;
    for (size_t i = 0; i < p->npeers; i++)
        if (ensure_peer(&h, p, &q.peers[i], vx) < 0)
            goto cleanup;
    rc = h.changes;

cleanup:
    free(q.peers);
    hn_close(&h);
    return rc;
}

static int
delete_link(struct hn *h, struct rtnl_link *l, const char *kind)
{
    int err = rtnl_link_delete(h->sk, l);

    if (err < 0) {
        hn_fail(h, "%s %s: cannot delete it: %s", kind, rtnl_link_get_name(l),
                nl_geterror(err));
        return -1;
    }
    log_info("%s %s: deleted", kind, rtnl_link_get_name(l));
    hn_changed(h);
    return 0;
}

int
hostnet_remove(const char *bridge, const char *vxlan, char *why,
               size_t whylen)
{
    struct hn h = {.why = why, .whylen = whylen};
    struct rtnl_link *vl = NULL, *bl = NULL;
    int rc = -1;

    if (whylen > 0)
        why[0] = '\0';
    if (!ifname_ok(bridge) || !ifname_ok(vxlan)) {
        hn_fail(&h, "remove: bridge %s and vxlan %s must be interface names of 1 to %d printable characters",
                bridge ? bridge : "(none)", vxlan ? vxlan : "(none)",
                HOSTNET_IFNAME_MAX);
        return -1;
    }
    if (hn_open(&h) < 0 || read_links(&h) < 0)
        goto cleanup;
    /* Both kinds checked before anything is deleted. */
    if (link_kind_check(&h, vxlan, "vxlan", &vl) < 0 ||
        link_kind_check(&h, bridge, "bridge", &bl) < 0)
        goto cleanup;
    if ((vl != NULL && delete_link(&h, vl, "vxlan") < 0) ||
        (bl != NULL && delete_link(&h, bl, "bridge") < 0))
        goto cleanup;
    rc = h.changes;

cleanup:
    if (vl)
        rtnl_link_put(vl);
    if (bl)
        rtnl_link_put(bl);
    hn_close(&h);
    return rc;
}
