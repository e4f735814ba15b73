/*
 * hostnet: the host side of the instance network (issue 15), over netlink
 * (libnl-route-3; no `ip` commands). A routed L3 overlay on kernel VXLAN,
 * as flannel's vxlan backend: the plan says what this host's kernel
 * networking must be, hostnet_apply makes it so, changing only what
 * differs. docs/network-overlay.md has the design.
 */
#ifndef CLOUD_HOSTNET_H
#define CLOUD_HOSTNET_H

#include <stddef.h>
#include <stdint.h>

#define HOSTNET_VXLAN_PORT 4789
/* Outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8. */
#define HOSTNET_VXLAN_OVERHEAD 50
#define HOSTNET_PEERS_MAX 4096
/* IFNAMSIZ less the terminating NUL. */
#define HOSTNET_IFNAME_MAX 15

/* A peer host: its underlay IPv4 address and its instance subnet. */
struct hostnet_peer {
    const char *underlay; /* "192.168.50.2" */
    const char *subnet;   /* "10.240.4.0/24" */
};

struct hostnet_plan {
    const char *bridge;       /* "cloudbr0": guests' taps attach here */
    const char *gateway;      /* "10.240.3.1/24": the host subnet's first
                                 address, held by the bridge */
    const char *cluster_cidr; /* "10.240.0.0/16": every subnet is in it */
    uint32_t vni;             /* VXLAN id, 1 to 16777215 */
    const char *vxlan;        /* "cloudvx0" */
    const char *underlay;     /* this host's underlay IPv4 address; it
                                 must be on one of the host's interfaces */
    unsigned mtu;             /* bridge and VXLAN MTU; 0: the underlay
                                 interface's MTU less HOSTNET_VXLAN_OVERHEAD */
    const struct hostnet_peer *peers;
    size_t npeers; /* at most HOSTNET_PEERS_MAX */
};

/*
 * Makes the host's networking match the plan: the bridge up with the
 * gateway address, the VXLAN device (this VNI, local underlay address, UDP
 * 4789, learning off) up with its subnet's network address /32 and its
 * derived MAC, per peer a permanent neighbour entry, an FDB entry and an
 * onlink route; peers no longer planned are removed; ip_forward on.
 * Existing devices that are right are kept (guests' taps stay attached).
 * Returns the number of changes made (0: everything was already right), or
 * -1 with a sentence naming the object in why. Blocking (netlink calls):
 * run it off the event loop.
 */
int hostnet_apply(const struct hostnet_plan *p, char *why, size_t whylen);

/*
 * Deletes the VXLAN device (with it go its FDB, neighbours and routes) and
 * the bridge. Absent devices are fine; a device of that name but of
 * another kind is refused. Returns the number of devices deleted, or -1.
 */
int hostnet_remove(const char *bridge, const char *vxlan, char *why,
                   size_t whylen);

/*
 * The MAC of the VXLAN device of the host that owns subnet ("10.240.4.0/24"):
 * 02:<prefix length>:<the four bytes of the network address>, locally
 * administered unicast, so that every host computes its peers' MACs
 * without asking anyone (subnets never overlap, so MACs never collide).
 */
int hostnet_vtep_mac(const char *subnet, uint8_t mac[6], char *why,
                     size_t whylen);

#endif
