/*
 * link: the agent daemon (`cloud-agent run`). One libevent loop holds the
 * mTLS connection to the controller (bufferevent_openssl), speaks
 * proto/agent.proto in proto/frame.h frames, and hands desired sets to the
 * libvirt worker thread (worker.h), whose status results come back through
 * an eventfd. Reconnects to the controller with exponential back-off; the
 * guests keep running whatever happens to the link.
 */
#ifndef CLOUD_AGENT_LINK_H
#define CLOUD_AGENT_LINK_H

#include <stdint.h>

#include "hv.h"

struct link_opts {
    const char *controller; /* HOST:PORT */
    const char *ca, *cert, *key;
    const char *name;   /* optional; must equal the certificate's CN */
    const char *labels; /* "k=v,k2=v2" */
    const char *uri;    /* libvirt */
    enum hv_type hypervisor;
    const char *images_dir;
    const char *state_dir;
    /* Image cache (blobcache.h): NULL means state_dir/cache. */
    const char *cache_dir;
    unsigned long cache_max_mib;
    const char *version;
    /* Capacity to advertise instead of libvirt's node info (0: libvirt's):
     * for overcommit, and for simulated hosts on the test driver. */
    unsigned cap_vcpus;
    uint64_t cap_memory_mib;
    /* A libvirt network each domain gets a virtio NIC on; NULL: none. */
    const char *network;
    /* Build the host network the controller's HostNetwork plans (bridge,
     * overlay: hostnet.h); its underlay address, NULL: the local address
     * of the connection to the controller. */
    int host_network;
    const char *underlay;
};

/* Runs until SIGTERM/SIGINT. Returns the process exit code. */
int link_run(const struct link_opts *o);

#endif
