/*
 * virt: the agent's hypervisor driver, a function table with one backend per
 * hypervisor API (libvirt's virHypervisorDriver pattern). The libvirt backend
 * lives in virt.c; tests may plug fakes in through the same table.
 *
 * Every call blocks (libvirt RPC): the agent runs them on a worker thread,
 * never on the event loop. Domains are addressed by instance id; the driver
 * maps that to the domain name "cloud-<id>". Failures are logged once by the
 * driver, and the last error text stays readable through .last_error so it
 * can become an InstanceStatus reason.
 */
#ifndef CLOUD_AGENT_VIRT_H
#define CLOUD_AGENT_VIRT_H

#include <stddef.h>
#include <stdint.h>

enum virt_state {
    VIRT_STATE_UNKNOWN = 0,
    VIRT_STATE_RUNNING, /* running, blocked, or being started */
    VIRT_STATE_PAUSED,
    VIRT_STATE_STOPPING, /* ACPI shutdown in progress */
    VIRT_STATE_SHUTOFF,  /* defined, not running */
    VIRT_STATE_CRASHED,
    VIRT_STATE_ABSENT, /* no such domain */
};

/* Why a domain stopped, from libvirt's shutoff/crash reason. */
enum virt_reason {
    VIRT_REASON_NONE = 0,
    VIRT_REASON_SHUTDOWN,  /* the guest powered off */
    VIRT_REASON_DESTROYED, /* someone destroyed it */
    VIRT_REASON_CRASHED,   /* guest crash or panic */
    VIRT_REASON_FAILED,    /* QEMU failed or died */
    VIRT_REASON_OTHER,
};

/*
 * Lifecycle callback: instance_id is the instance whose domain changed, or
 * NULL when the connection to libvirt closed (libvirtd restarted). Runs on
 * libvirt's event thread (virt_event_loop_start()).
 */
typedef void (*virt_event_cb)(void *arg, const char *instance_id);

/* A domain found on the host, re-adopted from its metadata. */
struct virt_domain {
    char *instance_id;
    uint64_t generation;
    enum virt_state state;
    /* The owner in its metadata (domxml_metadata_owner), both NULL for a
     * domain made before ownership; the worker applies the rule. */
    char *cluster, *owner;
};

struct virt_host_info {
    char *hostname;
    char *caps_xml; /* libvirt capabilities, for hv_probe() */
    char *libvirt_version;
    unsigned cpus;
    uint64_t memory_mib;
};

struct virt_conn;

struct virt_driver {
    const char *name;
    /* Opens a connection to uri (e.g. "qemu:///system"); NULL on failure. */
    struct virt_conn *(*open)(const char *uri);
    void (*close)(struct virt_conn *conn); /* accepts NULL */
    /* Text of the last failure on conn, "" if none. Valid until next call. */
    const char *(*last_error)(struct virt_conn *conn);
    int (*host_info)(struct virt_conn *conn, struct virt_host_info *info);
    /*
     * Defines (or redefines) the persistent domain from xml and starts it.
     * Starting a domain that already runs is not an error. If the start
     * fails the definition is removed again, so nothing half-made lingers.
     */
    int (*define_start)(struct virt_conn *conn, const char *instance_id,
                        const char *xml);
    /* ACPI shutdown request; returns at once. */
    int (*shutdown)(struct virt_conn *conn, const char *instance_id);
    /* Hard stop. A domain that is not running or not there is success. */
    int (*destroy)(struct virt_conn *conn, const char *instance_id);
    /* Removes the definition. A missing domain is success. */
    int (*undefine)(struct virt_conn *conn, const char *instance_id);
    /* A missing domain is VIRT_STATE_ABSENT, not an error. */
    int (*state)(struct virt_conn *conn, const char *instance_id,
                 enum virt_state *statep);
    /*
     * Lists the domains named cloud-* that carry valid instance metadata
     * (others are logged and skipped). Free with virt_domains_free().
     */
    int (*list)(struct virt_conn *conn, struct virt_domain **domsp,
                size_t *ndomsp);
    /* Like state, plus why a shut-off or crashed domain stopped. */
    int (*state_reason)(struct virt_conn *conn, const char *instance_id,
                        enum virt_state *statep, enum virt_reason *reasonp);
    /*
     * Delivers lifecycle events of cloud-* domains and the close of the
     * connection to cb. Needs virt_event_loop_start() before open().
     */
    int (*watch)(struct virt_conn *conn, virt_event_cb cb, void *arg);
    /* 1 if the connection still works, 0 if it has to be reopened. */
    int (*alive)(struct virt_conn *conn);
    /*
     * Disk images: finds, or creates through libvirt's storage API, the
     * instance's copy-on-write overlay: a qcow2 volume of capacity bytes
     * whose backing store is the file backing (format backing_fmt, "raw"
     * or "qcow2"), in a dir storage pool over pool_dir (defined, built and
     * started when missing). *pathp gets the volume's path (free it).
     * NULL in drivers without storage.
     */
    int (*overlay_create)(struct virt_conn *conn, const char *pool_dir,
                          const char *instance_id, const char *backing,
                          const char *backing_fmt, uint64_t capacity,
                          char **pathp);
    /* Deletes the instance's overlay; none (or no pool) is success. */
    int (*overlay_delete)(struct virt_conn *conn, const char *pool_dir,
                          const char *instance_id);
    /*
     * The IP addresses of the domain's network interfaces (at most
     * VIRT_ADDRS_MAX, without prefix length): from the DHCP leases of its
     * libvirt network, else the guest agent, else the host's ARP table.
     * None (or no such domain) is 0 with *np 0. Free with virt_addrs_free.
     * NULL in drivers that cannot tell.
     */
    int (*addresses)(struct virt_conn *conn, const char *instance_id,
                     char ***addrsp, size_t *np);
};

#define VIRT_ADDRS_MAX 16
void virt_addrs_free(char **addrs, size_t n);

/*
 * Registers libvirt's default event loop implementation and runs it on a
 * thread of its own, so domain events arrive without polling. Call once,
 * before the first open(). 0 or -1 (logged).
 */
int virt_event_loop_start(void);

extern const struct virt_driver virt_libvirt_driver;

const char *virt_state_name(enum virt_state s);
const char *virt_reason_name(enum virt_reason r);
void virt_domains_free(struct virt_domain *doms, size_t n);
void virt_host_info_clear(struct virt_host_info *info);

#endif
