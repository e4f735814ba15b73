/*
 * test_hostnet: agent/hostnet.c against the real kernel, in a network
 * namespace of its own (unshare(CLONE_NEWNET): needs root; without it the
 * test fails, it never skips). The underlay is a veth with 192.168.250.1.
 * Checked with libnl, independently of hostnet's own reading: the devices,
 * addresses, routes, neighbours and FDB a plan asks for; a second apply
 * that changes nothing (no netlink notification at all, same ifindexes,
 * a "guest" port still on the bridge); drift repaired without recreating
 * the bridge; stale peers removed; a foreign device of our name refused;
 * bad plans refused with a sentence; hostnet_remove.
 *
 * The tests run in order and share the namespace.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <linux/if.h>
#include <linux/neighbour.h>
#include <linux/rtnetlink.h>
#include <netlink/cache.h>
#include <netlink/errno.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/veth.h>
#include <netlink/route/link/vxlan.h>
#include <netlink/route/neighbour.h>
#include <netlink/route/route.h>

#include "hostnet.h"

#define BR "cloudbr0"
#define VX "cloudvx0"

static struct nl_sock *sk;  /* checks and fixtures */
static struct nl_sock *mon; /* notifications of every change */

static struct hostnet_peer peers3[] = {
    {"192.168.250.2", "10.240.2.0/24"},
    {"192.168.250.3", "10.240.4.0/24"},
};

static struct hostnet_plan
plan_of(const struct hostnet_peer *peers, size_t n)
{
    struct hostnet_plan p = {
        .bridge = BR,
        .gateway = "10.240.3.1/24",
        .cluster_cidr = "10.240.0.0/16",
        .vni = 4240,
        .vxlan = VX,
        .underlay = "192.168.250.1",
        .peers = peers,
        .npeers = n,
    };
    return p;
}

/* A reference to the link named name, or NULL. */
static struct rtnl_link *
link_named(const char *name)
{
    struct rtnl_link *l = NULL;
    int err = rtnl_link_get_kernel(sk, 0, name, &l);

    if (err == -NLE_OBJ_NOTFOUND || err == -NLE_NODEV)
        return NULL;
    if (err < 0)
        fail_msg("link %s: %s", name, nl_geterror(err));
    return l;
}

static int
ifindex_of(const char *name)
{
    struct rtnl_link *l = link_named(name);
    int i;

    if (l == NULL)
        return 0;
    i = rtnl_link_get_ifindex(l);
    rtnl_link_put(l);
    return i;
}

static struct nl_addr *
a4(const char *s, int plen)
{
    struct in_addr in;
    struct nl_addr *a;

    assert_int_equal(inet_pton(AF_INET, s, &in), 1);
    a = nl_addr_build(AF_INET, &in, 4);
    assert_non_null(a);
    nl_addr_set_prefixlen(a, plen);
    return a;
}

static int
same4(struct nl_addr *a, const char *s)
{
    struct in_addr in;

    assert_int_equal(inet_pton(AF_INET, s, &in), 1);
    return a != NULL && nl_addr_get_family(a) == AF_INET &&
           nl_addr_get_len(a) == 4 &&
           memcmp(nl_addr_get_binary_addr(a), &in, 4) == 0;
}

static int
same_mac(struct nl_addr *a, const char *s)
{
    char buf[32];

    return a != NULL && strcmp(nl_addr2str(a, buf, sizeof(buf)), s) == 0;
}

/* The IPv4 addresses of ifindex, "a.b.c.d/n" joined by spaces. */
static void
addrs_of(int ifindex, char *out, size_t outlen)
{
    struct nl_cache *c;
    size_t len = 0;

    out[0] = '\0';
    assert_int_equal(rtnl_addr_alloc_cache(sk, &c), 0);
    for (struct nl_object *o = nl_cache_get_first(c); o;
         o = nl_cache_get_next(o)) {
        struct rtnl_addr *a = (struct rtnl_addr *)o;
        char buf[INET_ADDRSTRLEN];

        if (rtnl_addr_get_ifindex(a) != ifindex ||
            rtnl_addr_get_family(a) != AF_INET)
            continue;
        assert_non_null(inet_ntop(AF_INET,
                                  nl_addr_get_binary_addr(rtnl_addr_get_local(a)),
                                  buf, sizeof(buf)));
        len += (size_t)snprintf(out + len, outlen - len, "%s%s/%d",
                                len ? " " : "", buf,
                                rtnl_addr_get_prefixlen(a));
        assert_true(len < outlen);
    }
    nl_cache_free(c);
}

/* Routes of the main table through ifindex, "dst via gw onlink" joined. */
static void
routes_via(int ifindex, char *out, size_t outlen)
{
    struct nl_cache *c;
    size_t len = 0;

    out[0] = '\0';
    assert_int_equal(rtnl_route_alloc_cache(sk, AF_INET, 0, &c), 0);
    for (struct nl_object *o = nl_cache_get_first(c); o;
         o = nl_cache_get_next(o)) {
        struct rtnl_route *r = (struct rtnl_route *)o;
        struct rtnl_nexthop *nh;
        char d[64], g[64];

        if (rtnl_route_get_table(r) != RT_TABLE_MAIN ||
            rtnl_route_get_nnexthops(r) != 1)
            continue;
        nh = rtnl_route_nexthop_n(r, 0);
        if (rtnl_route_nh_get_ifindex(nh) != ifindex)
            continue;
        nl_addr2str(rtnl_route_get_dst(r), d, sizeof(d));
        if (rtnl_route_nh_get_gateway(nh))
            nl_addr2str(rtnl_route_nh_get_gateway(nh), g, sizeof(g));
        else
            snprintf(g, sizeof(g), "none");
        len += (size_t)snprintf(
            out + len, outlen - len, "%s%s via %s%s", len ? "; " : "", d, g,
            (rtnl_route_nh_get_flags(nh) & RTNH_F_ONLINK) ? " onlink" : "");
        assert_true(len < outlen);
    }
    nl_cache_free(c);
}

/*
 * Neighbours (AF_INET) or FDB entries (AF_BRIDGE, unicast) of ifindex:
 * "dst lladdr [permanent]" joined by "; ", sorted by the kernel's order.
 */
static void
neighs_of(int family, int ifindex, char *out, size_t outlen)
{
    struct nl_cache *c;
    size_t len = 0;

    out[0] = '\0';
    assert_int_equal(rtnl_neigh_alloc_cache_flags(sk, &c, NL_CACHE_AF_ITER),
                     0);
    for (struct nl_object *o = nl_cache_get_first(c); o;
         o = nl_cache_get_next(o)) {
        struct rtnl_neigh *n = (struct rtnl_neigh *)o;
        struct nl_addr *ll = rtnl_neigh_get_lladdr(n);
        char d[64], m[32];

        if (rtnl_neigh_get_ifindex(n) != ifindex ||
            rtnl_neigh_get_family(n) != family || ll == NULL ||
            (((const uint8_t *)nl_addr_get_binary_addr(ll))[0] & 1))
            continue;
        if (rtnl_neigh_get_dst(n))
            nl_addr2str(rtnl_neigh_get_dst(n), d, sizeof(d));
        else
            snprintf(d, sizeof(d), "none");
        nl_addr2str(ll, m, sizeof(m));
        len += (size_t)snprintf(
            out + len, outlen - len, "%s%s %s%s", len ? "; " : "", d, m,
            (rtnl_neigh_get_state(n) & NUD_PERMANENT) ? " permanent" : "");
        assert_true(len < outlen);
    }
    nl_cache_free(c);
}

static int
has(const char *list, const char *item)
{
    return strstr(list, item) != NULL;
}

/*
 * Reads pending notifications; returns how many are about what hostnet
 * owns: links (AF_UNSPEC; the IPv6 and bridge-port variants are the
 * kernel's own), IPv4 addresses and routes, permanent neighbours and FDB
 * entries (the kernel's own NOARP entries come and go with carrier).
 */
static int
drain_notifications(int wait_ms)
{
    int fd = nl_socket_get_fd(mon), n = 0;
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    char buf[65536];

    while (poll(&pfd, 1, wait_ms) > 0) {
        ssize_t r = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);

        /* Overflowed: notifications were lost, so some were sent. */
        if (r < 0 && errno == ENOBUFS) {
            n++;
            continue;
        }
        if (r <= 0)
            break;
        for (struct nlmsghdr *h = (struct nlmsghdr *)buf;
             NLMSG_OK(h, (size_t)r); h = NLMSG_NEXT(h, r)) {
            if (h->nlmsg_type == RTM_NEWLINK || h->nlmsg_type == RTM_DELLINK) {
                const struct ifinfomsg *ii = NLMSG_DATA(h);

                if (ii->ifi_family != AF_UNSPEC)
                    continue;
            } else if (h->nlmsg_type == RTM_NEWNEIGH ||
                       h->nlmsg_type == RTM_DELNEIGH) {
                const struct ndmsg *nd = NLMSG_DATA(h);

                if (!(nd->ndm_state & NUD_PERMANENT))
                    continue;
            }
            n++;
        }
    }
    return n;
}

static void
set_ip_forward(char c)
{
    int fd = open("/proc/sys/net/ipv4/ip_forward", O_RDWR);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, &c, 1), 1);
    close(fd);
}

static char
ip_forward(void)
{
    int fd = open("/proc/sys/net/ipv4/ip_forward", O_RDONLY);
    char c = 0;

    assert_true(fd >= 0);
    assert_int_equal(read(fd, &c, 1), 1);
    close(fd);
    return c;
}

static void
add_addr(const char *dev, const char *ip, int plen)
{
    struct rtnl_addr *a = rtnl_addr_alloc();
    struct nl_addr *l = a4(ip, plen);

    rtnl_addr_set_ifindex(a, ifindex_of(dev));
    assert_int_equal(rtnl_addr_set_local(a, l), 0);
    assert_int_equal(rtnl_addr_add(sk, a, 0), 0);
    nl_addr_put(l);
    rtnl_addr_put(a);
}

static void
del_addr(const char *dev, const char *ip, int plen)
{
    struct rtnl_addr *a = rtnl_addr_alloc();
    struct nl_addr *l = a4(ip, plen);

    rtnl_addr_set_ifindex(a, ifindex_of(dev));
    assert_int_equal(rtnl_addr_set_local(a, l), 0);
    assert_int_equal(rtnl_addr_delete(sk, a, 0), 0);
    nl_addr_put(l);
    rtnl_addr_put(a);
}

static void
set_up(const char *dev, int up)
{
    struct rtnl_link *l = link_named(dev), *chg = rtnl_link_alloc();

    assert_non_null(l);
    if (up)
        rtnl_link_set_flags(chg, IFF_UP);
    else
        rtnl_link_unset_flags(chg, IFF_UP);
    assert_int_equal(rtnl_link_change(sk, l, chg, 0), 0);
    rtnl_link_put(chg);
    rtnl_link_put(l);
}

/* This host's side of the plan: devices, addresses, ip_forward. */
static void
check_planned(void)
{
    struct rtnl_link *br = link_named(BR), *vx = link_named(VX);
    struct nl_addr *local = NULL;
    uint32_t id = 0, port = 0;
    char buf[2048];
    int vxi;

    assert_non_null(br);
    assert_non_null(vx);
    assert_string_equal(rtnl_link_get_type(br), "bridge");
    assert_true(rtnl_link_get_flags(br) & IFF_UP);
    assert_int_equal(rtnl_link_get_mtu(br), 1500 - 50);
    addrs_of(rtnl_link_get_ifindex(br), buf, sizeof(buf));
    assert_string_equal(buf, "10.240.3.1/24");

    assert_string_equal(rtnl_link_get_type(vx), "vxlan");
    assert_true(rtnl_link_get_flags(vx) & IFF_UP);
    assert_int_equal(rtnl_link_get_mtu(vx), 1500 - 50);
    assert_int_equal(rtnl_link_vxlan_get_id(vx, &id), 0);
    assert_int_equal(id, 4240);
    assert_int_equal(rtnl_link_vxlan_get_port(vx, &port), 0);
    assert_int_equal(port, 4789);
    assert_int_equal(rtnl_link_vxlan_get_learning(vx), 0);
    assert_int_equal(rtnl_link_vxlan_get_local(vx, &local), 0);
    assert_true(same4(local, "192.168.250.1"));
    nl_addr_put(local);
    assert_true(same_mac(rtnl_link_get_addr(vx), "02:18:0a:f0:03:00"));
    vxi = rtnl_link_get_ifindex(vx);
    addrs_of(vxi, buf, sizeof(buf));
    assert_string_equal(buf, "10.240.3.0/32");

    assert_int_equal(ip_forward(), '1');
    rtnl_link_put(br);
    rtnl_link_put(vx);
}

/* Counts "; "-separated entries. */
static int
count(const char *list)
{
    int n = list[0] ? 1 : 0;

    for (const char *s = list; (s = strstr(s, "; ")) != NULL; s += 2)
        n++;
    return n;
}

static void
check_peers(const struct hostnet_peer *peers, size_t n)
{
    int vxi = ifindex_of(VX);
    char routes[2048], neigh[2048], fdb[2048], item[256];
    uint8_t mac[6];
    char why[256];

    routes_via(vxi, routes, sizeof(routes));
    neighs_of(AF_INET, vxi, neigh, sizeof(neigh));
    neighs_of(AF_BRIDGE, vxi, fdb, sizeof(fdb));
    assert_int_equal(count(routes), (int)n);
    assert_int_equal(count(neigh), (int)n);
    assert_int_equal(count(fdb), (int)n);
    for (size_t i = 0; i < n; i++) {
        char net[32], ms[18];

        snprintf(net, sizeof(net), "%s", peers[i].subnet);
        *strchr(net, '/') = '\0';
        assert_int_equal(hostnet_vtep_mac(peers[i].subnet, mac, why,
                                          sizeof(why)),
                         0);
        snprintf(ms, sizeof(ms), "%02x:%02x:%02x:%02x:%02x:%02x", mac[0],
                 mac[1], mac[2], mac[3], mac[4], mac[5]);
        snprintf(item, sizeof(item), "%s via %s onlink", peers[i].subnet,
                 net);
        assert_true(has(routes, item));
        snprintf(item, sizeof(item), "%s %s permanent", net, ms);
        assert_true(has(neigh, item));
        snprintf(item, sizeof(item), "%s %s permanent", peers[i].underlay,
                 ms);
        assert_true(has(fdb, item));
    }
}

static int br_index, vx_index;

static void
test_vtep_mac(void **state)
{
    uint8_t mac[6];
    char why[256];

    (void)state;
    assert_int_equal(hostnet_vtep_mac("10.240.4.0/24", mac, why, sizeof(why)),
                     0);
    assert_memory_equal(mac, "\x02\x18\x0a\xf0\x04\x00", 6);
    assert_int_equal(hostnet_vtep_mac("10.240.4.1/24", mac, why, sizeof(why)),
                     -1);
    assert_true(has(why, "10.240.4.1/24"));
}

static void
test_bad_plans(void **state)
{
    struct hostnet_peer overlap[] = {{"192.168.250.2", "10.240.3.0/25"}};
    struct hostnet_peer outside[] = {{"192.168.250.2", "10.9.0.0/24"}};
    struct hostnet_peer self[] = {{"192.168.250.1", "10.240.9.0/24"}};
    struct hostnet_plan p;
    char why[256];

    (void)state;
    p = plan_of(NULL, 0);
    p.gateway = "10.241.3.1/24";
    assert_int_equal(hostnet_apply(&p, why, sizeof(why)), -1);
    assert_string_equal(why, "plan: gateway 10.241.3.1/24 is outside cluster_cidr 10.240.0.0/16");
    p = plan_of(NULL, 0);
    p.gateway = "10.240.3.0/24";
    assert_int_equal(hostnet_apply(&p, why, sizeof(why)), -1);
    assert_true(has(why, "network or broadcast"));
    p = plan_of(NULL, 0);
    p.vni = 1 << 24;
    assert_int_equal(hostnet_apply(&p, why, sizeof(why)), -1);
    assert_true(has(why, "vni 16777216"));
    p = plan_of(overlap, 1);
    assert_int_equal(hostnet_apply(&p, why, sizeof(why)), -1);
    assert_true(has(why, "peer subnet 10.240.3.0/25 overlaps"));
    p = plan_of(outside, 1);
    assert_int_equal(hostnet_apply(&p, why, sizeof(why)), -1);
    assert_true(has(why, "outside cluster_cidr"));
    p = plan_of(self, 1);
    assert_int_equal(hostnet_apply(&p, why, sizeof(why)), -1);
    assert_true(has(why, "own underlay address"));
    p = plan_of(NULL, 0);
    p.underlay = "192.168.251.1";
    assert_int_equal(hostnet_apply(&p, why, sizeof(why)), -1);
    assert_string_equal(why, "underlay address 192.168.251.1 is not on any interface of this host");
    /* None of them left anything behind. */
    assert_int_equal(ifindex_of(BR), 0);
    assert_int_equal(ifindex_of(VX), 0);
}

static void
test_apply_builds_the_plan(void **state)
{
    struct hostnet_plan p = plan_of(peers3, 2);
    char why[256];
    int n;

    (void)state;
    set_ip_forward('0');
    n = hostnet_apply(&p, why, sizeof(why));
    if (n < 0)
        fail_msg("hostnet_apply: %s", why);
    /*
     * bridge, its MTU, its address, vxlan, its address, ip_forward,
     * and 3 per peer
     */
    assert_int_equal(n, 6 + 3 * 2);
    check_planned();
    check_peers(peers3, 2);
    br_index = ifindex_of(BR);
    vx_index = ifindex_of(VX);
}

/* A guest's tap, as libvirt would attach it: a veth port of the bridge. */
static void
attach_guest(void)
{
    struct rtnl_link *g, *b;

    assert_int_equal(rtnl_link_veth_add(sk, "guest0", "guest0p", getpid()), 0);
    g = link_named("guest0");
    b = link_named(BR);
    assert_int_equal(rtnl_link_enslave(sk, b, g), 0);
    rtnl_link_put(g);
    rtnl_link_put(b);
    /* Both ends up: a running guest's tap has carrier. */
    set_up("guest0p", 1);
    set_up("guest0", 1);
}

static int
guest_master(void)
{
    struct rtnl_link *g = link_named("guest0");
    int m;

    assert_non_null(g);
    m = rtnl_link_get_master(g);
    rtnl_link_put(g);
    return m;
}

static void
test_apply_again_changes_nothing(void **state)
{
    struct hostnet_plan p = plan_of(peers3, 2);
    char why[256];
    int n;

    (void)state;
    attach_guest();
    /*
     * Let the kernel settle: the bridge's carrier and operstate follow
     * the new port through linkwatch, which batches for up to a second.
     * Listen once nothing came for 1.5 s.
     */
    (void)drain_notifications(1500);
    n = hostnet_apply(&p, why, sizeof(why));
    if (n < 0)
        fail_msg("hostnet_apply: %s", why);
    assert_int_equal(n, 0);
    assert_int_equal(drain_notifications(300), 0);
    assert_int_equal(ifindex_of(BR), br_index);
    assert_int_equal(ifindex_of(VX), vx_index);
    assert_int_equal(guest_master(), br_index);
    check_planned();
    check_peers(peers3, 2);
}

/* What someone changed by hand is put back; the bridge is not recreated. */
static void
test_drift_is_repaired(void **state)
{
    struct hostnet_plan p = plan_of(peers3, 2);
    struct rtnl_route *r = rtnl_route_alloc();
    struct rtnl_nexthop *nh = rtnl_route_nh_alloc();
    struct nl_addr *dst = a4("10.240.4.0", 24);
    char why[256];
    int n;

    (void)state;
    del_addr(BR, "10.240.3.1", 24);
    add_addr(BR, "10.250.0.1", 24);
    set_up(VX, 0); /* down: the kernel drops its routes too */
    rtnl_route_set_family(r, AF_INET);
    rtnl_route_set_table(r, RT_TABLE_MAIN);
    assert_int_equal(rtnl_route_set_dst(r, dst), 0);
    rtnl_route_nh_set_ifindex(nh, vx_index);
    rtnl_route_add_nexthop(r, nh);
    /* Already gone with the link down, or deleted here. */
    (void)rtnl_route_delete(sk, r, 0);
    rtnl_route_put(r);
    nl_addr_put(dst);
    set_ip_forward('0');
    (void)drain_notifications(200);

    n = hostnet_apply(&p, why, sizeof(why));
    if (n < 0)
        fail_msg("hostnet_apply: %s", why);
    /* The monitor that saw nothing above does see changes. */
    assert_true(drain_notifications(300) >= 5);
    assert_true(n >= 5); /* address out, address in, up, forward, routes */
    assert_int_equal(ifindex_of(BR), br_index);
    assert_int_equal(ifindex_of(VX), vx_index);
    assert_int_equal(guest_master(), br_index);
    check_planned();
    check_peers(peers3, 2);
    n = hostnet_apply(&p, why, sizeof(why));
    assert_int_equal(n, 0);
}

static void
test_peers_change(void **state)
{
    /* 10.240.4.0/24 leaves, 10.240.5.0/24 joins, 10.240.2.0/24 moved. */
    struct hostnet_peer next[] = {
        {"192.168.250.9", "10.240.2.0/24"},
        {"192.168.250.5", "10.240.5.0/24"},
    };
    struct hostnet_plan p = plan_of(next, 2);
    char why[256], buf[2048];
    int n;

    (void)state;
    n = hostnet_apply(&p, why, sizeof(why));
    if (n < 0)
        fail_msg("hostnet_apply: %s", why);
    /* 3 removed for .4, 3 added for .5, the FDB entry of .2 replaced */
    assert_int_equal(n, 7);
    check_peers(next, 2);
    routes_via(vx_index, buf, sizeof(buf));
    assert_false(has(buf, "10.240.4.0"));
    neighs_of(AF_BRIDGE, vx_index, buf, sizeof(buf));
    assert_false(has(buf, "192.168.250.2 "));
    assert_false(has(buf, "192.168.250.3 "));
    assert_int_equal(ifindex_of(BR), br_index);
    assert_int_equal(guest_master(), br_index);

    /* No peers at all: the overlay is empty, the host network stays. */
    p = plan_of(NULL, 0);
    assert_int_equal(hostnet_apply(&p, why, sizeof(why)), 6);
    check_peers(NULL, 0);
    check_planned();
}

/* A new VNI cannot be set in place: the VXLAN device is recreated. */
static void
test_vni_change_recreates_vxlan_only(void **state)
{
    struct hostnet_plan p = plan_of(peers3, 2);
    uint32_t id = 0;
    struct rtnl_link *vx;
    char why[256];
    int n;

    (void)state;
    p.vni = 4241;
    n = hostnet_apply(&p, why, sizeof(why));
    if (n < 0)
        fail_msg("hostnet_apply: %s", why);
    vx = link_named(VX);
    assert_non_null(vx);
    assert_int_equal(rtnl_link_vxlan_get_id(vx, &id), 0);
    assert_int_equal(id, 4241);
    rtnl_link_put(vx);
    assert_int_equal(ifindex_of(BR), br_index);
    assert_int_equal(guest_master(), br_index);
    check_peers(peers3, 2);
    assert_int_equal(hostnet_apply(&p, why, sizeof(why)), 0);
}

static void
test_foreign_device_refused(void **state)
{
    struct hostnet_plan p = plan_of(NULL, 0);
    char why[256];

    (void)state;
    p.bridge = "guest0p"; /* a veth */
    assert_int_equal(hostnet_apply(&p, why, sizeof(why)), -1);
    assert_string_equal(why, "bridge guest0p: a device of that name exists and is a veth, not a bridge; not touching it");
    assert_int_equal(hostnet_remove("guest0p", VX, why, sizeof(why)), -1);
    assert_true(has(why, "bridge guest0p"));
    assert_true(ifindex_of("guest0p") != 0);
    assert_true(ifindex_of(VX) != 0); /* nothing deleted before refusing */
}

static void
test_remove(void **state)
{
    char why[256];

    (void)state;
    assert_int_equal(hostnet_remove(BR, VX, why, sizeof(why)), 2);
    assert_int_equal(ifindex_of(BR), 0);
    assert_int_equal(ifindex_of(VX), 0);
    assert_int_equal(hostnet_remove(BR, VX, why, sizeof(why)), 0);
}

/* The underlay: a veth whose end holds 192.168.250.1/24. */
static int
underlay_up(void **state)
{
    (void)state;
    assert_int_equal(rtnl_link_veth_add(sk, "ul0", "ul1", getpid()), 0);
    add_addr("ul0", "192.168.250.1", 24);
    set_up("ul0", 1);
    return 0;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vtep_mac),
        cmocka_unit_test(test_bad_plans),
        cmocka_unit_test(test_apply_builds_the_plan),
        cmocka_unit_test(test_apply_again_changes_nothing),
        cmocka_unit_test(test_drift_is_repaired),
        cmocka_unit_test(test_peers_change),
        cmocka_unit_test(test_vni_change_recreates_vxlan_only),
        cmocka_unit_test(test_foreign_device_refused),
        cmocka_unit_test(test_remove),
    };
    int rc;

    /* Never skip: a CI without root must see a failure. */
    if (unshare(CLONE_NEWNET) < 0) {
        fprintf(stderr,
                "test_hostnet: unshare(CLONE_NEWNET) failed: %s (needs root; this test fails rather than skips)\n",
                strerror(errno));
        return 1;
    }
    /*
     * No IPv6 here: its autoconfiguration (DAD, router solicitations) on
     * the new devices notifies for seconds, and hostnet is IPv4 only.
     */
    for (size_t i = 0; i < 2; i++) {
        static const char *const v6[] = {
            "/proc/sys/net/ipv6/conf/all/disable_ipv6",
            "/proc/sys/net/ipv6/conf/default/disable_ipv6"};
        int fd = open(v6[i], O_WRONLY);

        if (fd < 0 || write(fd, "1", 1) != 1) {
            fprintf(stderr, "test_hostnet: cannot write %s: %s\n", v6[i],
                    strerror(errno));
            return 1;
        }
        close(fd);
    }
    sk = nl_socket_alloc();
    mon = nl_socket_alloc();
    if (sk == NULL || mon == NULL || nl_connect(sk, NETLINK_ROUTE) < 0 ||
        nl_connect(mon, NETLINK_ROUTE) < 0 ||
        nl_socket_set_buffer_size(mon, 4 << 20, 0) < 0 ||
        nl_socket_add_memberships(mon, RTNLGRP_LINK, RTNLGRP_IPV4_IFADDR,
                                  RTNLGRP_IPV4_ROUTE, RTNLGRP_NEIGH, 0) < 0) {
        fprintf(stderr, "test_hostnet: cannot open netlink sockets\n");
        return 1;
    }
    rc = cmocka_run_group_tests(tests, underlay_up, NULL);
    nl_socket_free(mon);
    nl_socket_free(sk);
    return rc;
}
