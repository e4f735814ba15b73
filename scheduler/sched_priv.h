/*
 * sched_priv: internals of the scheduler shared by its .c files and its unit
 * tests. Not part of the public API; the controller includes cloudsched.h only.
 */
#ifndef CLOUD_SCHED_PRIV_H
#define CLOUD_SCHED_PRIV_H

#include "cloudsched.h"

#include <stdarg.h>

/* --- small hash maps (sched_index.c) --- */

/* Interning map: string -> dense index. Entries are never removed, because
 * interned ids live in bitsets and selectors. */
struct sched_strmap {
    char **keys;
    uint32_t *vals;
    size_t cap, len;
};

void sched_strmap_free(struct sched_strmap *m);
/* Returns the index or -1 when absent. */
int64_t sched_strmap_get(const struct sched_strmap *m, const char *key,
                         size_t keylen);
void sched_strmap_put(struct sched_strmap *m, const char *key, size_t keylen,
                      uint32_t val);

/* Host id -> host. Linear probing with backward-shift deletion. */
struct sched_idmap {
    uint64_t *keys;
    struct sched_host **vals; /* NULL marks an empty slot */
    size_t cap, len;
};

void sched_idmap_free(struct sched_idmap *m);
struct sched_host *sched_idmap_get(const struct sched_idmap *m, uint64_t key);
void sched_idmap_put(struct sched_idmap *m, uint64_t key, struct sched_host *h);
void sched_idmap_del(struct sched_idmap *m, uint64_t key);

/* --- ordered index of hosts by (free memory, id): an AVL tree --- */

/* Each node also keeps the most free vcpus and disk in its subtree, so a
 * search skips whole subtrees of hosts that are full in those dimensions
 * while ordered by memory. */
struct sched_node {
    struct sched_node *l, *r;
    struct sched_host *h;
    /* copies of the host's free resources, so a descent does not chase
     * h into another cache line at every level */
    uint64_t mem, id, disk, max_disk;
    uint32_t vcpus, max_vcpus;
    int height;
};

/* AVL height stays below 1.45 * log2(n + 2); 64 covers any address space. */
#define SCHED_ITER_DEPTH 64

struct sched_iter {
    struct sched_node *stk[SCHED_ITER_DEPTH];
    int n;
    bool desc;
    uint64_t mem, disk;
    uint32_t vcpus;
};

struct sched_node *sched_tree_insert(struct sched_node *root,
                                     struct sched_node *node);
/* Fills node's key from its host; call before sched_tree_insert(). */
void sched_node_load(struct sched_node *node);
struct sched_node *sched_tree_remove(struct sched_node *root,
                                     const struct sched_node *node);
/* Ascending over the hosts with at least res free in every dimension. */
void sched_iter_from(struct sched_iter *it, struct sched_node *root,
                     const struct sched_resources *res);
/* Descending from the most free memory over the hosts with at least
 * res->vcpus and res->disk_gib free (memory is the caller's to stop on). */
void sched_iter_from_max(struct sched_iter *it, struct sched_node *root,
                         const struct sched_resources *res);
struct sched_host *sched_iter_next(struct sched_iter *it);
/* Checks order, balance and heights; returns the node count or -1. */
long sched_tree_check(const struct sched_node *root);

/* --- cluster model (sched.c) --- */

struct sched_svc_slot {
    uint32_t svc; /* service index + 1; 0 = empty */
    uint32_t count;
};

struct sched_host {
    uint64_t id;
    char *name;
    struct sched_resources cap, alloc, free;
    enum sched_host_state state;
    uint32_t hv;     /* interned hypervisor */
    uint32_t *pairs; /* interned key=value label ids */
    uint32_t npairs;
    struct sched_node gnode;   /* in the cluster-wide tree when ready */
    struct sched_node *pnodes; /* one per pair, in that pair's tree */
    uint64_t *bits;            /* bitset over label pair ids */
    uint32_t nwords;
    struct sched_svc_slot *svc; /* open addressing, cap a power of two */
    uint32_t svc_cap, svc_used;
    size_t slot; /* index in cluster->hosts */
    bool indexed;
};

/* One interned label value of one key. Its tree of hosts exists only
 * while some live selector requires the value (tracked > 0): a tree costs
 * every allocation on its hosts an update, and most values (rack=r1234)
 * are never asked for. */
struct sched_pair {
    uint32_t key;
    char *text;              /* "key=value" */
    struct sched_node *root; /* ready hosts carrying this label */
    size_t nready;
    uint32_t tracked;
};

struct sched_cluster {
    struct sched_host **hosts;
    size_t nhosts, hosts_cap, nready;
    struct sched_idmap byid;
    struct sched_node *root; /* all ready hosts */
    struct sched_strmap keys, pairs_by_text, hvs, svcs;
    struct sched_pair *pairs;
    size_t npairs, pairs_cap;
    char **hv_names;
    size_t nhv;
    char *err;
    size_t nselectors; /* live selectors, to catch use after free */
};

enum sched_sel_op { SEL_EQ, SEL_NE, SEL_IN, SEL_NOTIN };

struct sched_req {
    enum sched_sel_op op;
    uint32_t *pairs; /* the values named, interned */
    uint32_t npairs;
    char *text; /* canonical text, used in explanations */
};

struct sched_selector {
    struct sched_cluster *c;
    struct sched_req *reqs;
    size_t nreqs;
    char *text;
};

void sched_set_error(struct sched_cluster *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Interning (sched_selector.c). */
uint32_t sched_intern_key(struct sched_cluster *c, const char *key, size_t len);
uint32_t sched_intern_pair(struct sched_cluster *c, const char *key,
                           size_t klen, const char *val, size_t vlen);
/* Validates "key=value" and interns it; -1 with an error on bad syntax. */
int sched_label_parse(struct sched_cluster *c, const char *label,
                      uint32_t *pair);
/* A selector starts or stops needing the tree of a label value. */
void sched_pair_track(struct sched_cluster *c, uint32_t pair);
void sched_pair_untrack(struct sched_cluster *c, uint32_t pair);
bool sched_selector_match(const struct sched_selector *sel,
                          const struct sched_host *h, size_t *failed);

static inline bool
sched_host_has_pair(const struct sched_host *h, uint32_t pair)
{
    uint32_t w = pair / 64;
    return w < h->nwords && (h->bits[w] >> (pair % 64)) & 1u;
}

/*
 * Reference placement by a linear scan of all hosts, with per-reason counts
 * of the hosts that do not fit. Used for explanations and, in tests, as the
 * oracle the indexed search must agree with.
 */
enum {
    SCHED_R_OK = 0,
    SCHED_R_DOWN,
    SCHED_R_CORDONED,
    SCHED_R_DRAINING,
    SCHED_R_HYPERVISOR,
    SCHED_R_MEMORY,
    SCHED_R_VCPUS,
    SCHED_R_DISK,
    SCHED_R_ANTI_AFFINITY,
    SCHED_R_LABEL, /* + index of the failed requirement */
};

struct sched_scan {
    struct sched_host *best;
    size_t fit;
    size_t *counts; /* SCHED_R_LABEL + nreqs entries, caller frees */
    size_t ncounts;
};

int sched_scan_hosts(struct sched_cluster *c, const struct sched_request *req,
                     struct sched_scan *out);
/* Verifies every index against the host table; -1 with an error if not. */
int sched_cluster_check(struct sched_cluster *c);
struct sched_host *sched_host_lookup(const struct sched_cluster *c,
                                     uint64_t id);

#endif
