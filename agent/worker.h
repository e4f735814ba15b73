/*
 * worker: the agent's libvirt side, on a thread of its own. Every blocking
 * libvirt call happens here, never on the event loop. The worker owns the
 * libvirt connection (reopened with back-off when libvirtd restarts), the
 * per-instance state machine, and reconciles libvirt against the latest
 * desired set: define and start, ACPI shutdown then destroy after the grace
 * period, destroy for KILL, undefine for delete. Libvirt lifecycle events
 * (libvirt's own event loop runs on another thread, virt_event_loop_start)
 * wake it for the instance concerned.
 *
 * Results go back to the event loop through a queue and a notify callback
 * (the daemon writes an eventfd from it): host facts after each libvirt
 * (re)connect, and an instance status whenever an observed state changes.
 */
#ifndef CLOUD_AGENT_WORKER_H
#define CLOUD_AGENT_WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hv.h"
#include "virt.h"

enum worker_desired {
    WORKER_RUN = 1,
    WORKER_STOP,
    WORKER_DELETE,
};

/* One instance of the desired set (InstanceSpec, flattened). */
struct worker_spec {
    char *id;
    char *name;
    uint64_t generation;
    uint64_t restart_count;
    enum worker_desired desired;
    bool kill;         /* stop with destroy (137), not ACPI */
    bool fence; /* partition_policy "stop": destroyed by worker_fence */
    unsigned grace_ms; /* ACPI shutdown -> destroy */
    unsigned vcpus;
    uint64_t memory_mib;
    bool disk_image;
    char *kernel_digest, *initrd_digest, *disk_digest, *cmdline;
    uint64_t disk_gib; /* disk images: the overlay's least size */
    /* Guest channel (channel.h): the config line of config_version, also
     * written as the fw_cfg boot config file; NULL when there is none. */
    uint64_t config_version;
    char *config_line;
    /* The instance's args (kernel images: appended to cmdline, quoted,
     * common/cmdline.h) and the boot line {"env","args"} (channel.h), also
     * the first line of the boot config file; NULL when unknown. */
    char **args;
    size_t nargs;
    char *boot_line;
};

/* Observed states, as agent.proto numbers them. */
enum worker_state {
    WS_STARTING = 3,
    WS_RUNNING = 4,
    WS_STOPPING = 5,
    WS_EXITED = 6,
    WS_FAILED = 7,
    WS_REMOVED = 9,
};

struct worker_status {
    char *id;
    uint64_t generation;
    enum worker_state state;
    int exit_code;
    char *reason; /* "" when none */
    int64_t started_ms, finished_ms;
    /* The unix socket of the domain's guest channel, NULL when it has none
     * (the test driver, no state dir). */
    char *channel;
    /* Set by the daemon: exit_code came from the guest's {"exit":N}. */
    bool exit_from_guest;
    /* libvirt's view of its NICs' addresses (--network), while it runs. */
    char **addrs;
    size_t naddrs;
};

struct worker_facts {
    char *hostname;
    char *arch;
    char *libvirt_version;
    char **types;
    size_t ntypes;
    bool kvm_usable;
    enum hv_type domain_type;
    unsigned vcpus;
    uint64_t memory_mib;
    uint64_t disk_gib;
};

enum worker_result_kind { WR_FACTS = 1, WR_STATUS };

struct worker_result {
    enum worker_result_kind kind;
    struct worker_facts facts;   /* WR_FACTS */
    struct worker_status status; /* WR_STATUS */
    struct worker_result *next;
};

struct worker_opts {
    const char *uri;
    enum hv_type hv_override;
    const char *images_dir; /* blobs named by digest; NULL: none */
    const char *state_dir;  /* console logs under state_dir/run/<id>/ */
    const struct virt_driver *drv;
    /*
     * The agent's identity, written into every domain it defines and
     * compared with the owner of the domains it finds: those of another
     * cluster or agent are left alone (domxml_owner_check). Both NULL: no
     * identity, every cloud-* domain is this agent's (the old behaviour).
     */
    const char *cluster_id;
    const char *owner;
    /* A libvirt network every domain gets a virtio NIC on (NULL: none);
     * the worker then reports the domains' addresses (virt addresses). */
    const char *network;
    /*
     * Where an image blob is (blobcache_resolve_cb): 1 with *pathp, 0 while
     * it is being fetched (why says so), -1 with why. Called on the worker
     * thread; must not block. NULL: blobs are read from images_dir only.
     */
    int (*resolve)(void *arg, const char *digest, char **pathp, char *why,
                   size_t whylen);
    void *resolve_arg;
};

struct worker;

/*
 * Starts the worker thread. notify(arg) is called on the worker thread
 * whenever results are queued; it must only wake the event loop.
 */
struct worker *worker_start(const struct worker_opts *o,
                            void (*notify)(void *arg), void *arg);

/*
 * Replaces the desired set (takes ownership of specs[0..n)). Until the
 * first call the worker only observes: it stops nothing it found.
 */
void worker_set_desired(struct worker *w, struct worker_spec *specs,
                        size_t n);

/*
 * Asks for a full reconcile soon (an image blob arrived or failed). Any
 * thread. worker_kick_cb is the same with a void * for callbacks.
 */
void worker_kick(struct worker *w);
void worker_kick_cb(void *w);

/*
 * The agent has heard from no controller for fence_after (fence.h): destroy
 * every running instance of partition_policy "stop" (of the desired set,
 * or before the first set of the fence record) and report it exited 137
 * with reason. Fenced instances stay down until the controller asks for a
 * new run. Any thread.
 */
void worker_fence(struct worker *w, const char *reason);

/* Takes every queued result (a list, oldest first); NULL if none. */
struct worker_result *worker_take(struct worker *w);
void worker_result_free(struct worker_result *r); /* frees the whole list */

void worker_spec_clear(struct worker_spec *s);
void worker_facts_clear(struct worker_facts *f);

/* Stops the thread and frees everything (libvirt guests keep running). */
void worker_stop(struct worker *w);

#endif
