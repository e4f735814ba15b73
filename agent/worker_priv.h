/*
 * worker_priv: what the worker's files share (worker.c: the thread, the
 * instance table, reconciling; worker_domain.c: building and starting a
 * domain). Not for the rest of the agent: worker.h is its interface.
 */
#ifndef CLOUD_AGENT_WORKER_PRIV_H
#define CLOUD_AGENT_WORKER_PRIV_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hv.h"
#include "strmap.h"
#include "virt.h"
#include "worker.h"

enum phase {
    P_NONE = 0, /* nothing done or seen yet */
    P_RUNNING,
    P_STOPPING, /* ACPI shutdown sent (TERM) or destroy issued (KILL) */
    P_DONE,     /* exited or failed; stays so until a new run token */
    P_REMOVED,
};

struct winst {
    char *id;
    struct worker_spec spec; /* valid when in_set */
    bool in_set;
    bool adopted; /* found in libvirt, not started by this process */
    /* Its spec changed (or it left the set) in the last desired set and it
     * has not been reconciled since: a new set reconciles only these. */
    bool dirty;
    bool spec_new; /* apply_set's mark: named by the set being applied */
    enum phase phase;
    bool have_token;
    uint64_t tok_gen, tok_restart;
    bool stop_kill, destroyed;
    int64_t stop_begin_ms, stop_deadline_ms; /* ACPI shutdown sent; destroy after */
    int64_t stop_press_ms; /* the next press of the power button */
    int64_t started_ms, finished_ms;
    /* the last status posted */
    bool reported;
    enum worker_state rep_state;
    int rep_code;
    char *rep_reason;
    uint64_t generation;
    char *channel; /* the domain's guest channel socket, NULL if none */
    /* libvirt's addresses of its NICs (--network), polled while running */
    char **addrs;
    size_t naddrs;
    bool addrs_dirty;                  /* changed since the last report */
    int64_t addr_next_ms, addr_since_ms;
    /* Self-fencing (fence.h): partition_policy "stop" (from the set, or
     * the fence record before the first set), and the reason it was
     * fenced (NULL: it was not) until a new run. */
    bool stop_policy;
    uint64_t rec_gen, rec_restart; /* the run the record names (no set) */
    char *fenced;
};

struct worker {
    struct worker_opts o;
    char *uri, *images_dir, *state_dir;
    char *network; /* NULL: domains get no NIC */
    char *cluster_id, *owner; /* NULL: no identity (see worker_opts) */
    /*
     * CLOUD_AGENT_TEST_CHANNELS=1: on libvirt's test driver too, give each
     * domain a run dir and a guest channel socket path as with QEMU, and
     * connect to it; nothing binds it unless a bench or test plays QEMU
     * and the guest there (bench/config_bench.sh).
     */
    bool test_channels;
    void (*notify)(void *);
    void *notify_arg;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* under mu */
    bool quit;
    bool have_new_set;
    struct worker_spec *new_specs;
    size_t nnew;
    struct strmap touched; /* ids named by libvirt events (key = value) */
    bool conn_lost;
    bool kicked; /* worker_kick: reconcile everything */
    char *fence_req; /* worker_fence: the reason */
    struct worker_result *res_head, *res_tail;
    /* worker thread only */
    struct virt_conn *conn;
    struct hv_facts facts;
    bool have_set; /* a desired set has arrived since start */
    struct strmap insts; /* id -> struct winst */
    int64_t next_reconnect_ms, reconnect_backoff_ms, next_resync_ms;
    struct worker_result *pending_facts;
    char *fence_todo; /* a fence waiting for the libvirt connection */
    char *fence_text; /* the fence record as last written */
    /* The table changed in a way the record may show (a set, a fence, a
     * new run, an instance gone): fence_sync compares and writes. */
    bool fence_dirty;
};

/* ---- worker_domain.c ------------------------------------------------- */

/* Defines and starts the domain of in (images from the image directory or
 * the cache, a disk overlay, the boot config, the guest channel). 0; 1
 * while an image blob is being fetched (why says so); -1 with why set. */
int wdom_start(struct worker *w, struct winst *in, char *why, size_t whylen);
/* The guest channel socket of an adopted domain, if QEMU bound one. */
char *wdom_channel_path(struct worker *w, const char *id);
/* Deletes the instance's disk overlay, if any (logged on failure). */
void wdom_overlay_delete(struct worker *w, const char *id);

#endif
