/*
 * netpolicy: links are the firewall (issue 15, docs/network-policy.md).
 * Plain data in, kernel rules out: the caller says which instances run on
 * this host and, for each, which source addresses may reach it (the
 * instances of the services that link to its service); netpolicy_apply
 * turns that into the nftables table "inet cloud", which this module owns
 * entirely and replaces whole, in one libnftables transaction, at every
 * call. Nothing outside that table is touched, except the per-namespace
 * sysctls that make bridged IPv4/IPv6 traffic visible to it (br_netfilter).
 *
 * No state, no threads: each call opens its own libnftables context. The
 * calls block for as long as the kernel takes to commit the ruleset (a
 * netlink round trip): run them off the event loop.
 */
#ifndef CLOUD_AGENT_NETPOLICY_H
#define CLOUD_AGENT_NETPOLICY_H

#include <stddef.h>

/* Bounds of one policy: what the JSON of `net policy` and the controller's
 * messages may carry; netpolicy_apply refuses more. */
#define NETPOLICY_MAX_INSTS 65536     /* instances on one host */
#define NETPOLICY_MAX_PAIRS 1000000   /* allowed (instance, source) pairs */

struct netpolicy_inst {          /* an instance running on this host */
    const char *address;         /* "10.240.3.7": in the host's subnet */
    int open;                    /* its service has network.open: accept from anyone */
    const char *const *allowed;  /* source addresses allowed (instances of
                                    linking services, anywhere in the cluster) */
    size_t nallowed;
};

struct netpolicy {
    const char *cluster_cidr;    /* "10.240.0.0/16" */
    const char *subnet;          /* "10.240.3.0/24": this host's guests; every
                                    address in it is filtered, known or not */
    const char *bridge;          /* "cloudbr0": the guests' bridge */
    const char *gateway;         /* this host's address on the bridge,
                                    "10.240.3.1". The host is always allowed:
                                    its own packets never cross the forward
                                    hook; a forwarded packet claiming this
                                    source is a spoofing guest: dropped */
    const struct netpolicy_inst *insts;
    size_t ninsts;
};

/* Replaces table inet cloud with the rules of p, atomically: the old table
 * stays in force until the new one is committed, and a refused policy
 * leaves the old one in force. 0, or -1 with why set (one sentence). */
int netpolicy_apply(const struct netpolicy *p, char *why, size_t whylen);

/* Deletes table inet cloud if it exists. 0, or -1 with why set. */
int netpolicy_remove(char *why, size_t whylen);

/* `cloud-agent net policy ...` (agent/netpolicy_cli.c): argv[0] is
 * "policy". Returns the process exit status. */
int netpolicy_main(int argc, char **argv);

#endif
