/*
 * cloudsched: the placement library (scheduler/sched*.c; named so that it
 * never shadows the system <sched.h>). A pure in-memory model of the
 * cluster (hosts, their capacity, allocation, labels, state, hypervisor
 * and per-service instance counts) plus the placement algorithm that picks
 * a host for an instance. No I/O, no globals, no logging: the controller
 * owns one struct sched_cluster, loads it from PostgreSQL at start, keeps
 * it current with the incremental calls below, and asks it where pending
 * instances go.
 *
 * Conventions
 *  - Functions return 0 on success and -1 on failure (or a pointer / NULL).
 *    After a failure, sched_error() returns a one-line message that names the
 *    object; for a failed placement it is the explanation, e.g.
 *    "0/500 hosts fit: 300 insufficient memory, 150 label zone=b, 50 cordoned"
 *  - A cluster is not thread-safe; callers serialise access (the controller
 *    only schedules on its event loop thread).
 *  - Hosts are identified by a caller-chosen 64-bit id (the store's host id);
 *    names are kept for messages and results only.
 *  - Determinism: for the same sequence of calls the same hosts are chosen.
 *    Ties between equally good hosts go to the lowest id for binpack and to
 *    the highest id for spread (see sched_place()).
 *
 * Typical use by the controller:
 *
 *   struct sched_cluster *c = sched_cluster_new();
 *   for each host row:      sched_host_add(c, &spec);
 *   for each live instance: sched_service_adjust(c, host_id, &svc, +1);
 *   per service:            sel = sched_selector_parse(c, "zone in (a,b)");
 *   per pending instance:   if (sched_place(c, &req, 0, &out) == 0) write
 *                           instance.host = out.host_id, else record
 *                           sched_error(c) as the instance's reason;
 *   instance ended:         sched_release(c, host_id, &res, &svc);
 *   host changed:           sched_host_set_state/_labels/_capacity(...);
 */
#ifndef CLOUD_CLOUDSCHED_H
#define CLOUD_CLOUDSCHED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sched_cluster;
struct sched_selector;

enum sched_host_state {
    SCHED_HOST_READY = 0, /* the only state that accepts placements */
    SCHED_HOST_CORDONED,
    SCHED_HOST_DRAINING,
    SCHED_HOST_DOWN,
};

enum sched_strategy {
    SCHED_BINPACK = 0, /* fill the fullest host that fits (best fit) */
    SCHED_SPREAD,      /* fewest instances of the service, then most free */
};

struct sched_resources {
    uint32_t vcpus;
    uint64_t memory_mib;
    uint64_t disk_gib;
};

/*
 * A service key: either a name or a numeric id (the store's service id).
 * name != NULL wins; name == NULL and id == 0 means "no service" (a one-off
 * instance: no anti-affinity, counted nowhere). "web" and id 7 are different
 * services even if the caller happens to mean the same thing.
 */
struct sched_service {
    const char *name;
    uint64_t id;
};

/* Everything the controller knows about a host, for sched_host_add(). */
struct sched_host_spec {
    uint64_t id;
    const char *name;
    struct sched_resources capacity;
    struct sched_resources allocated; /* may exceed capacity (then free = 0) */
    const char *const *labels;        /* "key=value" strings, one per key */
    size_t nlabels;
    enum sched_host_state state;
    const char *hypervisor; /* "kvm", "qemu", "xen", "test"; NULL = "" */
};

/* A snapshot returned by sched_host_get(); strings point into the cluster
 * and stay valid until the host is removed or relabelled. */
struct sched_host_info {
    uint64_t id;
    const char *name;
    struct sched_resources capacity;
    struct sched_resources allocated;
    enum sched_host_state state;
    const char *hypervisor;
    size_t nlabels;
};

/* One placement request. Identical requests of a service can share one. */
struct sched_request {
    struct sched_resources res;
    const struct sched_selector *selector; /* NULL: any labels */
    const char *hypervisor;                /* NULL or "": any hypervisor */
    enum sched_strategy strategy;
    struct sched_service service;
    /* Anti-affinity: at most this many instances of the service per host,
     * counting those already there. 0 = unlimited, 1 = strict. */
    uint32_t max_per_host;
};

struct sched_placement {
    uint64_t host_id;
    const char *host_name; /* valid until the host is removed */
};

/* Flags for sched_place() and sched_place_batch(). */
/* Choose but do not allocate; the caller commits with sched_commit(). */
#define SCHED_DRY_RUN 0x1u
/* On failure skip the O(hosts) explanation; sched_error() is generic. */
#define SCHED_NO_EXPLAIN 0x2u
/* Batch only: if not all n fit, place none (undo the partial batch). */
#define SCHED_ALL_OR_NOTHING 0x4u

/* --- cluster --- */

struct sched_cluster *sched_cluster_new(void);
void sched_cluster_free(struct sched_cluster *c); /* accepts NULL */
/* Message of the last failed call on c ("" if none). Valid until the next
 * call on c. */
const char *sched_error(const struct sched_cluster *c);
size_t sched_host_count(const struct sched_cluster *c);
size_t sched_host_ready_count(const struct sched_cluster *c);

/* --- hosts (incremental updates, O(labels * log hosts) each) --- */

/* Fails on a duplicate id, a malformed label or a key given twice. */
int sched_host_add(struct sched_cluster *c, const struct sched_host_spec *spec);
/* Forgets the host, its allocation and its service counts. */
int sched_host_remove(struct sched_cluster *c, uint64_t id);
int sched_host_set_state(struct sched_cluster *c, uint64_t id,
                         enum sched_host_state state);
/* Replaces all labels of the host. */
int sched_host_set_labels(struct sched_cluster *c, uint64_t id,
                          const char *const *labels, size_t nlabels);
int sched_host_set_capacity(struct sched_cluster *c, uint64_t id,
                            const struct sched_resources *capacity);
int sched_host_get(const struct sched_cluster *c, uint64_t id,
                   struct sched_host_info *out);

/* --- allocation and service counts --- */

/*
 * Records resources used on a host by an instance of svc (svc may be NULL).
 * This records a fact (an instance is there), so it never refuses for lack
 * of capacity; placements are what keep hosts within capacity.
 */
int sched_alloc(struct sched_cluster *c, uint64_t host_id,
                const struct sched_resources *res,
                const struct sched_service *svc);
/* The inverse of sched_alloc(); fails, changing nothing, if it would take
 * the allocation or the service count below zero. */
int sched_release(struct sched_cluster *c, uint64_t host_id,
                  const struct sched_resources *res,
                  const struct sched_service *svc);
/* Adjusts only the instance count of svc on the host (for loading counts of
 * instances whose resources are already in spec.allocated). */
int sched_service_adjust(struct sched_cluster *c, uint64_t host_id,
                         const struct sched_service *svc, int32_t delta);
/* Instances of svc on the host; 0 for an unknown service. */
int sched_service_count(const struct sched_cluster *c, uint64_t host_id,
                        const struct sched_service *svc, uint32_t *out);

/* --- label selectors --- */

/*
 * Parses a selector: requirements separated by commas, all must hold.
 *   key=value   key==value   key!=value   key in (a,b)   key notin (a,b)
 * Keys are [A-Za-z0-9._/-]+, values [A-Za-z0-9._/:-]+, blanks around tokens
 * are ignored; "" selects every host. A host without the key fails "=" and
 * "in" and passes "!=" and "notin". Bad syntax returns NULL and
 * sched_error(c) says where, e.g.
 *   selector "zone in (a,": expected a label value at column 12
 * The selector belongs to c (values are interned there) and must be freed
 * before c.
 */
struct sched_selector *sched_selector_parse(struct sched_cluster *c,
                                            const char *text);
void sched_selector_free(struct sched_selector *sel); /* accepts NULL */
/* Canonical text, e.g. "zone in (a,b),ssd=true". */
const char *sched_selector_text(const struct sched_selector *sel);

/* --- placement --- */

/*
 * Picks a ready host for one instance and, unless SCHED_DRY_RUN, allocates
 * req->res and counts the instance of req->service on it, so the next call
 * sees the new allocation.
 *
 * Filters: state ready, hypervisor, selector, free memory, vcpus and disk,
 * max_per_host. Scores: binpack takes the host with the least free memory
 * that fits (ties: lowest id); spread takes the host with the fewest
 * instances of the service, then the most free memory (ties: highest id).
 * Hosts are indexed by free memory (per label value too), so a placement
 * visits few hosts, not all of them.
 *
 * Returns 0 and fills *out, or -1 when nothing fits, with the explanation in
 * sched_error(c) (unless SCHED_NO_EXPLAIN).
 */
int sched_place(struct sched_cluster *c, const struct sched_request *req,
                unsigned flags, struct sched_placement *out);
/*
 * Places n identical instances one after the other (each sees the previous
 * ones, so anti-affinity and spread apply within the batch). host_ids[i]
 * receives the host of instance i; *placed the number placed. Returns 0 if
 * all n were placed, else -1 with the explanation for the first that did
 * not fit. With SCHED_ALL_OR_NOTHING a partial batch is undone (*placed = 0).
 * With SCHED_DRY_RUN the hosts are chosen as if committed, then released.
 */
int sched_place_batch(struct sched_cluster *c, const struct sched_request *req,
                      size_t n, unsigned flags, uint64_t *host_ids,
                      size_t *placed);
/* Commits a SCHED_DRY_RUN choice: sched_alloc(host, req->res, service). */
int sched_commit(struct sched_cluster *c, const struct sched_request *req,
                 uint64_t host_id);

/* --- names --- */

const char *sched_host_state_name(enum sched_host_state state);
int sched_host_state_parse(const char *s, enum sched_host_state *out);
const char *sched_strategy_name(enum sched_strategy strategy);
int sched_strategy_parse(const char *s, enum sched_strategy *out);

#endif
