/*
 * sched: the cluster model (hosts, allocations, per-service counts) and the
 * placement algorithm. Placement is filter-then-score over an index: ready
 * hosts sit in trees ordered by free memory (one for all, one per label
 * value), so binpack walks up from the request's memory and spread walks
 * down from the emptiest host, and both usually stop after a few hosts.
 * Only a failed placement pays for a full scan, to explain itself.
 */
#include "sched_priv.h"

#include <stdio.h>
#include <string.h>

#include "mem.h"

void
sched_set_error(struct sched_cluster *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg = xvasprintf(fmt, ap);
    va_end(ap);
    free(c->err);
    c->err = msg;
}

struct sched_cluster *
sched_cluster_new(void)
{
    struct sched_cluster *c = xcalloc(1, sizeof(*c));
    /* hypervisor 0 is "", the hypervisor of hosts that did not say */
    c->hv_names = xcalloc(1, sizeof(*c->hv_names));
    c->hv_names[0] = xstrdup("");
    c->nhv = 1;
    sched_strmap_put(&c->hvs, "", 0, 0);
    return c;
}

static void
host_free(struct sched_host *h)
{
    free(h->name);
    free(h->pairs);
    free(h->pnodes);
    free(h->bits);
    free(h->svc);
    free(h);
}

void
sched_cluster_free(struct sched_cluster *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->nhosts; i++)
        host_free(c->hosts[i]);
    free(c->hosts);
    sched_idmap_free(&c->byid);
    sched_strmap_free(&c->keys);
    sched_strmap_free(&c->pairs_by_text);
    sched_strmap_free(&c->hvs);
    sched_strmap_free(&c->svcs);
    for (size_t i = 0; i < c->npairs; i++)
        free(c->pairs[i].text);
    free(c->pairs);
    for (size_t i = 0; i < c->nhv; i++)
        free(c->hv_names[i]);
    free(c->hv_names);
    free(c->err);
    free(c);
}

const char *
sched_error(const struct sched_cluster *c)
{
    return c->err ? c->err : "";
}

size_t
sched_host_count(const struct sched_cluster *c)
{
    return c->nhosts;
}

size_t
sched_host_ready_count(const struct sched_cluster *c)
{
    return c->nready;
}

struct sched_host *
sched_host_lookup(const struct sched_cluster *c, uint64_t id)
{
    return sched_idmap_get(&c->byid, id);
}

static struct sched_host *
host_find(struct sched_cluster *c, uint64_t id)
{
    struct sched_host *h = sched_idmap_get(&c->byid, id);
    if (h == NULL)
        sched_set_error(c, "host %llu: no such host", (unsigned long long)id);
    return h;
}

/* --- index maintenance --- */

static uint64_t
sat_sub(uint64_t a, uint64_t b)
{
    return a > b ? a - b : 0;
}

static void
host_compute_free(struct sched_host *h)
{
    h->free.vcpus = (uint32_t)sat_sub(h->cap.vcpus, h->alloc.vcpus);
    h->free.memory_mib = sat_sub(h->cap.memory_mib, h->alloc.memory_mib);
    h->free.disk_gib = sat_sub(h->cap.disk_gib, h->alloc.disk_gib);
}

static void
host_index(struct sched_cluster *c, struct sched_host *h)
{
    if (h->indexed || h->state != SCHED_HOST_READY)
        return;
    sched_node_load(&h->gnode);
    c->root = sched_tree_insert(c->root, &h->gnode);
    for (uint32_t i = 0; i < h->npairs; i++) {
        struct sched_pair *p = &c->pairs[h->pairs[i]];
        if (!p->tracked)
            continue;
        sched_node_load(&h->pnodes[i]);
        p->root = sched_tree_insert(p->root, &h->pnodes[i]);
        p->nready++;
    }
    h->indexed = true;
    c->nready++;
}

static void
host_unindex(struct sched_cluster *c, struct sched_host *h)
{
    if (!h->indexed)
        return;
    c->root = sched_tree_remove(c->root, &h->gnode);
    for (uint32_t i = 0; i < h->npairs; i++) {
        struct sched_pair *p = &c->pairs[h->pairs[i]];
        if (!p->tracked)
            continue;
        p->root = sched_tree_remove(p->root, &h->pnodes[i]);
        p->nready--;
    }
    h->indexed = false;
    c->nready--;
}

void
sched_pair_track(struct sched_cluster *c, uint32_t pair)
{
    struct sched_pair *p = &c->pairs[pair];
    if (p->tracked++ > 0)
        return;
    /* first selector to ask: build the tree once, O(hosts) */
    for (size_t i = 0; i < c->nhosts; i++) {
        struct sched_host *h = c->hosts[i];
        if (!h->indexed || !sched_host_has_pair(h, pair))
            continue;
        for (uint32_t j = 0; j < h->npairs; j++) {
            if (h->pairs[j] == pair) {
                sched_node_load(&h->pnodes[j]);
                p->root = sched_tree_insert(p->root, &h->pnodes[j]);
                p->nready++;
            }
        }
    }
}

void
sched_pair_untrack(struct sched_cluster *c, uint32_t pair)
{
    struct sched_pair *p = &c->pairs[pair];
    if (--p->tracked > 0)
        return;
    /* the nodes live in their hosts; forgetting the root is enough */
    p->root = NULL;
    p->nready = 0;
}

/* --- hosts --- */

static int
labels_compile(struct sched_cluster *c, const char *const *labels, size_t n,
               uint32_t **pairs_out, uint64_t **bits_out, uint32_t *nwords_out)
{
    uint32_t *pairs = n ? xcalloc(n, sizeof(*pairs)) : NULL;
    for (size_t i = 0; i < n; i++) {
        if (sched_label_parse(c, labels[i], &pairs[i]) < 0)
            goto fail;
        for (size_t j = 0; j < i; j++) {
            if (c->pairs[pairs[j]].key == c->pairs[pairs[i]].key) {
                sched_set_error(c, "label \"%s\": key given twice", labels[i]);
                goto fail;
            }
        }
    }
    uint32_t maxp = 0;
    for (size_t i = 0; i < n; i++)
        maxp = pairs[i] > maxp ? pairs[i] : maxp;
    uint32_t nwords = n ? maxp / 64 + 1 : 0;
    uint64_t *bits = nwords ? xcalloc(nwords, sizeof(*bits)) : NULL;
    for (size_t i = 0; i < n; i++)
        bits[pairs[i] / 64] |= 1ull << (pairs[i] % 64);
    *pairs_out = pairs;
    *bits_out = bits;
    *nwords_out = nwords;
    return 0;
fail:
    free(pairs);
    return -1;
}

static void
host_set_pairs(struct sched_host *h, uint32_t *pairs, uint32_t npairs,
               uint64_t *bits, uint32_t nwords)
{
    free(h->pairs);
    free(h->pnodes);
    free(h->bits);
    h->pairs = pairs;
    h->npairs = npairs;
    h->bits = bits;
    h->nwords = nwords;
    h->pnodes = npairs ? xcalloc(npairs, sizeof(*h->pnodes)) : NULL;
    for (uint32_t i = 0; i < npairs; i++)
        h->pnodes[i].h = h;
}

static uint32_t
intern_hv(struct sched_cluster *c, const char *hv)
{
    size_t len = strlen(hv);
    int64_t id = sched_strmap_get(&c->hvs, hv, len);
    if (id >= 0)
        return (uint32_t)id;
    c->hv_names = xrealloc(c->hv_names, (c->nhv + 1) * sizeof(*c->hv_names));
    c->hv_names[c->nhv] = xstrdup(hv);
    sched_strmap_put(&c->hvs, hv, len, (uint32_t)c->nhv);
    return (uint32_t)c->nhv++;
}

static bool
state_valid(enum sched_host_state s)
{
    return s >= SCHED_HOST_READY && s <= SCHED_HOST_DOWN;
}

int
sched_host_add(struct sched_cluster *c, const struct sched_host_spec *spec)
{
    if (sched_idmap_get(&c->byid, spec->id) != NULL) {
        sched_set_error(c, "host %llu: already exists",
                        (unsigned long long)spec->id);
        return -1;
    }
    if (!state_valid(spec->state)) {
        sched_set_error(c, "host %llu: invalid state %d",
                        (unsigned long long)spec->id, (int)spec->state);
        return -1;
    }
    uint32_t *pairs;
    uint64_t *bits;
    uint32_t nwords;
    if (labels_compile(c, spec->labels, spec->nlabels, &pairs, &bits, &nwords) <
        0)
        return -1;
    struct sched_host *h = xcalloc(1, sizeof(*h));
    h->id = spec->id;
    h->name = xstrdup(spec->name ? spec->name : "");
    h->cap = spec->capacity;
    h->alloc = spec->allocated;
    host_compute_free(h);
    h->state = spec->state;
    h->hv = intern_hv(c, spec->hypervisor ? spec->hypervisor : "");
    h->gnode.h = h;
    host_set_pairs(h, pairs, (uint32_t)spec->nlabels, bits, nwords);
    if (c->nhosts == c->hosts_cap) {
        c->hosts_cap = c->hosts_cap ? c->hosts_cap * 2 : 64;
        c->hosts = xrealloc(c->hosts, c->hosts_cap * sizeof(*c->hosts));
    }
    h->slot = c->nhosts;
    c->hosts[c->nhosts++] = h;
    sched_idmap_put(&c->byid, h->id, h);
    host_index(c, h);
    return 0;
}

int
sched_host_remove(struct sched_cluster *c, uint64_t id)
{
    struct sched_host *h = host_find(c, id);
    if (h == NULL)
        return -1;
    host_unindex(c, h);
    sched_idmap_del(&c->byid, id);
    /* swap-remove keeps the table dense; order of c->hosts carries no
     * meaning because every choice breaks ties by id */
    struct sched_host *last = c->hosts[--c->nhosts];
    c->hosts[h->slot] = last;
    last->slot = h->slot;
    host_free(h);
    return 0;
}

int
sched_host_set_state(struct sched_cluster *c, uint64_t id,
                     enum sched_host_state state)
{
    struct sched_host *h = host_find(c, id);
    if (h == NULL)
        return -1;
    if (!state_valid(state)) {
        sched_set_error(c, "host %s: invalid state %d", h->name, (int)state);
        return -1;
    }
    host_unindex(c, h);
    h->state = state;
    host_index(c, h);
    return 0;
}

int
sched_host_set_labels(struct sched_cluster *c, uint64_t id,
                      const char *const *labels, size_t nlabels)
{
    struct sched_host *h = host_find(c, id);
    if (h == NULL)
        return -1;
    uint32_t *pairs;
    uint64_t *bits;
    uint32_t nwords;
    if (labels_compile(c, labels, nlabels, &pairs, &bits, &nwords) < 0)
        return -1;
    host_unindex(c, h);
    host_set_pairs(h, pairs, (uint32_t)nlabels, bits, nwords);
    host_index(c, h);
    return 0;
}

int
sched_host_set_capacity(struct sched_cluster *c, uint64_t id,
                        const struct sched_resources *capacity)
{
    struct sched_host *h = host_find(c, id);
    if (h == NULL)
        return -1;
    host_unindex(c, h);
    h->cap = *capacity;
    host_compute_free(h);
    host_index(c, h);
    return 0;
}

int
sched_host_get(const struct sched_cluster *c, uint64_t id,
               struct sched_host_info *out)
{
    struct sched_host *h = sched_idmap_get(&c->byid, id);
    if (h == NULL)
        return -1; /* const c: no message; the caller knows the id */
    *out = (struct sched_host_info){
        .id = h->id,
        .name = h->name,
        .capacity = h->cap,
        .allocated = h->alloc,
        .state = h->state,
        .hypervisor = c->hv_names[h->hv],
        .nlabels = h->npairs,
    };
    return 0;
}

/* --- services --- */

static bool
svc_none(const struct sched_service *svc)
{
    return svc == NULL || (svc->name == NULL && svc->id == 0);
}

/* Names and numeric ids share one table; a numeric id is keyed with a
 * leading byte no valid name would start with so the two never collide. */
static size_t
svc_key(const struct sched_service *svc, char *buf, size_t cap,
        const char **key)
{
    if (svc->name != NULL) {
        *key = svc->name;
        return strlen(svc->name);
    }
    int n = snprintf(buf, cap, "\x1f%llu", (unsigned long long)svc->id);
    *key = buf;
    return (size_t)n;
}

/* Returns the service index, or -1 for no service or (unless intern) an
 * unknown one. */
static int64_t
svc_lookup(struct sched_cluster *c, const struct sched_service *svc,
           bool intern)
{
    if (svc_none(svc))
        return -1;
    char buf[32];
    const char *key;
    size_t len = svc_key(svc, buf, sizeof(buf), &key);
    int64_t idx = sched_strmap_get(&c->svcs, key, len);
    if (idx < 0 && intern) {
        idx = (int64_t)c->svcs.len;
        sched_strmap_put(&c->svcs, key, len, (uint32_t)idx);
    }
    return idx;
}

static struct sched_svc_slot *
host_svc_slot(const struct sched_host *h, uint32_t svc, bool *found)
{
    *found = false;
    if (h->svc_cap == 0)
        return NULL;
    uint32_t mask = h->svc_cap - 1;
    for (uint32_t i = (svc * 2654435761u) & mask;; i = (i + 1) & mask) {
        if (h->svc[i].svc == svc + 1) {
            *found = true;
            return &h->svc[i];
        }
        if (h->svc[i].svc == 0)
            return &h->svc[i];
    }
}

static uint32_t
host_svc_count(const struct sched_host *h, int64_t svc)
{
    if (svc < 0)
        return 0;
    bool found;
    struct sched_svc_slot *s = host_svc_slot(h, (uint32_t)svc, &found);
    return found ? s->count : 0;
}

static void
host_svc_grow(struct sched_host *h)
{
    struct sched_svc_slot *old = h->svc;
    uint32_t ocap = h->svc_cap;
    h->svc_cap = ocap ? ocap * 2 : 4;
    h->svc = xcalloc(h->svc_cap, sizeof(*h->svc));
    for (uint32_t i = 0; i < ocap; i++) {
        if (old[i].svc == 0)
            continue;
        bool found;
        *host_svc_slot(h, old[i].svc - 1, &found) = old[i];
    }
    free(old);
}

/* Entries that fall to zero stay: a host sees few distinct services, and
 * keeping them avoids deletion in the open-addressed table. */
static int
host_svc_adjust(struct sched_cluster *c, struct sched_host *h, int64_t svc,
                int32_t delta, bool dry)
{
    if (svc < 0)
        return 0;
    bool found;
    struct sched_svc_slot *s = host_svc_slot(h, (uint32_t)svc, &found);
    uint32_t cur = found ? s->count : 0;
    if (delta < 0 && cur < (uint32_t) - (int64_t)delta) {
        sched_set_error(c,
                        "host %s: has %u instances of the service, cannot "
                        "remove %d",
                        h->name, cur, -delta);
        return -1;
    }
    if (dry || delta == 0)
        return 0;
    if (!found) {
        if ((h->svc_used + 1) * 4 > h->svc_cap * 3) {
            host_svc_grow(h);
            s = host_svc_slot(h, (uint32_t)svc, &found);
        }
        s->svc = (uint32_t)svc + 1;
        s->count = 0;
        h->svc_used++;
    }
    s->count = (uint32_t)((int64_t)s->count + delta);
    return 0;
}

int
sched_service_adjust(struct sched_cluster *c, uint64_t host_id,
                     const struct sched_service *svc, int32_t delta)
{
    struct sched_host *h = host_find(c, host_id);
    if (h == NULL)
        return -1;
    return host_svc_adjust(c, h, svc_lookup(c, svc, delta > 0), delta, false);
}

int
sched_service_count(const struct sched_cluster *c, uint64_t host_id,
                    const struct sched_service *svc, uint32_t *out)
{
    struct sched_host *h = sched_idmap_get(&c->byid, host_id);
    if (h == NULL)
        return -1;
    /* the lookup does not intern, so casting away const changes nothing */
    *out = host_svc_count(h, svc_lookup((struct sched_cluster *)c, svc, false));
    return 0;
}

/* --- allocation --- */

static void
host_add_alloc(struct sched_cluster *c, struct sched_host *h,
               const struct sched_resources *r, bool release)
{
    /* the key of h in the trees is its free memory: out, change, back in */
    bool was = h->indexed;
    if (was)
        host_unindex(c, h);
    if (release) {
        h->alloc.vcpus -= r->vcpus;
        h->alloc.memory_mib -= r->memory_mib;
        h->alloc.disk_gib -= r->disk_gib;
    } else {
        h->alloc.vcpus += r->vcpus;
        h->alloc.memory_mib += r->memory_mib;
        h->alloc.disk_gib += r->disk_gib;
    }
    host_compute_free(h);
    if (was)
        host_index(c, h);
}

int
sched_alloc(struct sched_cluster *c, uint64_t host_id,
            const struct sched_resources *res, const struct sched_service *svc)
{
    struct sched_host *h = host_find(c, host_id);
    if (h == NULL)
        return -1;
    host_add_alloc(c, h, res, false);
    host_svc_adjust(c, h, svc_lookup(c, svc, true), 1, false);
    return 0;
}

int
sched_release(struct sched_cluster *c, uint64_t host_id,
              const struct sched_resources *res,
              const struct sched_service *svc)
{
    struct sched_host *h = host_find(c, host_id);
    if (h == NULL)
        return -1;
    if (res->vcpus > h->alloc.vcpus || res->memory_mib > h->alloc.memory_mib ||
        res->disk_gib > h->alloc.disk_gib) {
        sched_set_error(c,
                        "host %s: releasing %u vcpus, %llu MiB, %llu GiB "
                        "but only %u vcpus, %llu MiB, %llu GiB are allocated",
                        h->name, res->vcpus,
                        (unsigned long long)res->memory_mib,
                        (unsigned long long)res->disk_gib, h->alloc.vcpus,
                        (unsigned long long)h->alloc.memory_mib,
                        (unsigned long long)h->alloc.disk_gib);
        return -1;
    }
    int64_t s = svc_lookup(c, svc, false);
    if (!svc_none(svc) && s < 0) {
        sched_set_error(c, "host %s: has no instances of the service", h->name);
        return -1;
    }
    if (host_svc_adjust(c, h, s, -1, true) < 0)
        return -1;
    host_svc_adjust(c, h, s, -1, false);
    host_add_alloc(c, h, res, true);
    return 0;
}

/* --- placement --- */

/* A request with its strings resolved to interned ids, done once per call
 * so the per-host checks are integer compares and bit tests. */
struct prep {
    const struct sched_request *req;
    const struct sched_selector *sel;
    int64_t hv;  /* -1: any; UINT32_MAX-ish: unknown, nothing matches */
    int64_t svc; /* -1: none or not yet seen anywhere */
};

static int
prepare(struct sched_cluster *c, const struct sched_request *req,
        struct prep *p)
{
    p->req = req;
    p->sel = req->selector;
    if (p->sel != NULL && p->sel->c != c) {
        sched_set_error(c,
                        "request: selector \"%s\" belongs to another "
                        "cluster",
                        p->sel->text);
        return -1;
    }
    if (req->strategy != SCHED_BINPACK && req->strategy != SCHED_SPREAD) {
        sched_set_error(c, "request: invalid strategy %d", (int)req->strategy);
        return -1;
    }
    p->hv = -1;
    if (req->hypervisor != NULL && req->hypervisor[0] != '\0') {
        p->hv =
            sched_strmap_get(&c->hvs, req->hypervisor, strlen(req->hypervisor));
        if (p->hv < 0)
            p->hv = INT64_MAX; /* no host has it */
    }
    p->svc = svc_lookup(c, &req->service, false);
    return 0;
}

/* Checks in the order explanations report them; returns SCHED_R_*. */
static size_t
host_check(const struct sched_host *h, const struct prep *p, uint32_t *count)
{
    const struct sched_resources *r = &p->req->res;
    switch (h->state) {
    case SCHED_HOST_READY:
        break;
    case SCHED_HOST_CORDONED:
        return SCHED_R_CORDONED;
    case SCHED_HOST_DRAINING:
        return SCHED_R_DRAINING;
    case SCHED_HOST_DOWN:
        return SCHED_R_DOWN;
    }
    if (p->hv >= 0 && (int64_t)h->hv != p->hv)
        return SCHED_R_HYPERVISOR;
    size_t failed;
    if (p->sel && !sched_selector_match(p->sel, h, &failed))
        return SCHED_R_LABEL + failed;
    if (h->free.memory_mib < r->memory_mib)
        return SCHED_R_MEMORY;
    if (h->free.vcpus < r->vcpus)
        return SCHED_R_VCPUS;
    if (h->free.disk_gib < r->disk_gib)
        return SCHED_R_DISK;
    *count = host_svc_count(h, p->svc);
    if (p->req->max_per_host && *count >= p->req->max_per_host)
        return SCHED_R_ANTI_AFFINITY;
    return SCHED_R_OK;
}

/* Is a better than b under the request's scoring? (b may be NULL) */
static bool
better(const struct prep *p, const struct sched_host *a, uint32_t ca,
       const struct sched_host *b, uint32_t cb)
{
    if (b == NULL)
        return true;
    if (p->req->strategy == SCHED_BINPACK) {
        if (a->free.memory_mib != b->free.memory_mib)
            return a->free.memory_mib < b->free.memory_mib;
        return a->id < b->id;
    }
    if (ca != cb)
        return ca < cb;
    if (a->free.memory_mib != b->free.memory_mib)
        return a->free.memory_mib > b->free.memory_mib;
    return a->id > b->id;
}

/* The smallest tree that holds every candidate: the tree of a label value
 * the selector requires, if any, else all ready hosts. */
static struct sched_node *
pick_tree(struct sched_cluster *c, const struct prep *p)
{
    struct sched_node *root = c->root;
    size_t best = c->nready;
    if (p->sel == NULL)
        return root;
    for (size_t i = 0; i < p->sel->nreqs; i++) {
        const struct sched_req *r = &p->sel->reqs[i];
        if ((r->op != SEL_EQ && r->op != SEL_IN) || r->npairs != 1)
            continue;
        struct sched_pair *pair = &c->pairs[r->pairs[0]];
        if (pair->tracked && pair->nready < best) {
            best = pair->nready;
            root = pair->root;
        }
    }
    return root;
}

static struct sched_host *
search(struct sched_cluster *c, const struct prep *p)
{
    struct sched_iter it;
    struct sched_node *root = pick_tree(c, p);
    uint64_t mem = p->req->res.memory_mib;
    struct sched_host *h, *best = NULL;
    uint32_t count = 0, best_count = 0;

    if (p->req->strategy == SCHED_BINPACK) {
        /* ascending from the request's memory: the first fit is the best */
        sched_iter_from(&it, root, &p->req->res);
        while ((h = sched_iter_next(&it)) != NULL)
            if (host_check(h, p, &count) == SCHED_R_OK)
                return h;
        return NULL;
    }
    /* spread: descending; a fit with no instance of the service wins at
     * once, otherwise keep the fit with the fewest */
    sched_iter_from_max(&it, root, &p->req->res);
    while ((h = sched_iter_next(&it)) != NULL) {
        if (h->free.memory_mib < mem)
            break;
        if (host_check(h, p, &count) != SCHED_R_OK)
            continue;
        if (count == 0)
            return h;
        if (best == NULL || count < best_count) {
            best = h;
            best_count = count;
        }
    }
    return best;
}

int
sched_scan_hosts(struct sched_cluster *c, const struct sched_request *req,
                 struct sched_scan *out)
{
    struct prep p;
    if (prepare(c, req, &p) < 0)
        return -1;
    memset(out, 0, sizeof(*out));
    out->ncounts = SCHED_R_LABEL + (p.sel ? p.sel->nreqs : 0);
    out->counts = xcalloc(out->ncounts, sizeof(*out->counts));
    uint32_t best_count = 0;
    for (size_t i = 0; i < c->nhosts; i++) {
        struct sched_host *h = c->hosts[i];
        uint32_t count = 0;
        size_t r = host_check(h, &p, &count);
        out->counts[r]++;
        if (r != SCHED_R_OK)
            continue;
        out->fit++;
        if (better(&p, h, count, out->best, best_count)) {
            out->best = h;
            best_count = count;
        }
    }
    return 0;
}

static const char *
reason_text(const struct prep *p, size_t r, char *buf, size_t cap)
{
    switch (r) {
    case SCHED_R_DOWN:
        return "down";
    case SCHED_R_CORDONED:
        return "cordoned";
    case SCHED_R_DRAINING:
        return "draining";
    case SCHED_R_HYPERVISOR:
        snprintf(buf, cap, "hypervisor not %s", p->req->hypervisor);
        return buf;
    case SCHED_R_MEMORY:
        return "insufficient memory";
    case SCHED_R_VCPUS:
        return "insufficient vcpus";
    case SCHED_R_DISK:
        return "insufficient disk";
    case SCHED_R_ANTI_AFFINITY:
        snprintf(buf, cap, "anti-affinity (max %u per host)",
                 p->req->max_per_host);
        return buf;
    default:
        return p->sel->reqs[r - SCHED_R_LABEL].text;
    }
}

/* "0/500 hosts fit: 300 insufficient memory, 150 label zone=b, ..." with
 * the most common reason first (ties in check order, for stable output). */
static void
explain(struct sched_cluster *c, const struct sched_request *req)
{
    struct sched_scan s;
    struct prep p;
    if (prepare(c, req, &p) < 0 || sched_scan_hosts(c, req, &s) < 0)
        return;
    char *msg = xasprintf("%zu/%zu hosts fit", s.fit, c->nhosts);
    if (c->nhosts == 0) {
        char *n = xasprintf("%s: the cluster has no hosts", msg);
        free(msg);
        msg = n;
    }
    bool first = true;
    for (;;) {
        size_t top = 0, topn = 0;
        for (size_t r = 1; r < s.ncounts; r++) {
            if (s.counts[r] > topn) {
                topn = s.counts[r];
                top = r;
            }
        }
        if (topn == 0)
            break;
        char buf[96];
        const char *what = reason_text(&p, top, buf, sizeof(buf));
        char *n = xasprintf("%s%s%zu %s%s", msg, first ? ": " : ", ", topn,
                            top >= SCHED_R_LABEL ? "label " : "", what);
        free(msg);
        msg = n;
        s.counts[top] = 0;
        first = false;
    }
    free(s.counts);
    free(c->err);
    c->err = msg;
}

int
sched_place(struct sched_cluster *c, const struct sched_request *req,
            unsigned flags, struct sched_placement *out)
{
    struct prep p;
    if (prepare(c, req, &p) < 0)
        return -1;
    struct sched_host *h = search(c, &p);
    if (h == NULL) {
        if (flags & SCHED_NO_EXPLAIN)
            sched_set_error(c, "no host fits the request");
        else
            explain(c, req);
        return -1;
    }
    if (!(flags & SCHED_DRY_RUN)) {
        host_add_alloc(c, h, &req->res, false);
        host_svc_adjust(c, h, svc_lookup(c, &req->service, true), 1, false);
    }
    if (out != NULL) {
        out->host_id = h->id;
        out->host_name = h->name;
    }
    return 0;
}

int
sched_commit(struct sched_cluster *c, const struct sched_request *req,
             uint64_t host_id)
{
    return sched_alloc(c, host_id, &req->res, &req->service);
}

int
sched_place_batch(struct sched_cluster *c, const struct sched_request *req,
                  size_t n, unsigned flags, uint64_t *host_ids, size_t *placed)
{
    size_t i;
    struct sched_placement pl;
    int rc = 0;
    /* each instance is committed so the next sees it; a dry run undoes
     * them all at the end */
    for (i = 0; i < n; i++) {
        if (sched_place(c, req, flags & ~SCHED_DRY_RUN, &pl) < 0) {
            rc = -1;
            break;
        }
        host_ids[i] = pl.host_id;
    }
    bool undo =
        (flags & SCHED_DRY_RUN) || (rc < 0 && (flags & SCHED_ALL_OR_NOTHING));
    if (undo) {
        /* keep the explanation of the failure, not a release message */
        char *err = c->err;
        c->err = NULL;
        for (size_t j = i; j > 0; j--)
            sched_release(c, host_ids[j - 1], &req->res, &req->service);
        free(c->err);
        c->err = err;
    }
    if (placed != NULL)
        *placed = rc < 0 && (flags & SCHED_ALL_OR_NOTHING) ? 0 : i;
    return rc;
}

/* --- consistency check, for tests --- */

int
sched_cluster_check(struct sched_cluster *c)
{
    long n = sched_tree_check(c->root);
    if (n < 0 || (size_t)n != c->nready) {
        sched_set_error(c, "index: global tree has %ld nodes, %zu ready", n,
                        c->nready);
        return -1;
    }
    size_t ready = 0;
    size_t *per_pair = c->npairs ? xcalloc(c->npairs, sizeof(*per_pair)) : NULL;
    int rc = 0;
    for (size_t i = 0; i < c->nhosts; i++) {
        struct sched_host *h = c->hosts[i];
        if (h->slot != i || sched_idmap_get(&c->byid, h->id) != h ||
            h->indexed != (h->state == SCHED_HOST_READY)) {
            sched_set_error(c, "index: host %s is misfiled", h->name);
            rc = -1;
            goto out;
        }
        if (!h->indexed)
            continue;
        ready++;
        for (uint32_t j = 0; j < h->npairs; j++)
            if (c->pairs[h->pairs[j]].tracked)
                per_pair[h->pairs[j]]++;
    }
    for (size_t i = 0; i < c->npairs; i++) {
        long m = sched_tree_check(c->pairs[i].root);
        if (m < 0 || (size_t)m != per_pair[i] ||
            c->pairs[i].nready != per_pair[i]) {
            sched_set_error(c, "index: tree of %s is inconsistent",
                            c->pairs[i].text);
            rc = -1;
            goto out;
        }
    }
    if (ready != c->nready || c->byid.len != c->nhosts) {
        sched_set_error(c, "index: ready or id counts are off");
        rc = -1;
    }
out:
    free(per_pair);
    return rc;
}

/* --- names --- */

static const char *const state_names[] = {
    [SCHED_HOST_READY] = "ready",
    [SCHED_HOST_CORDONED] = "cordoned",
    [SCHED_HOST_DRAINING] = "draining",
    [SCHED_HOST_DOWN] = "down",
};

const char *
sched_host_state_name(enum sched_host_state state)
{
    return state_valid(state) ? state_names[state] : "invalid";
}

int
sched_host_state_parse(const char *s, enum sched_host_state *out)
{
    for (int i = SCHED_HOST_READY; i <= SCHED_HOST_DOWN; i++) {
        if (s && strcmp(s, state_names[i]) == 0) {
            *out = (enum sched_host_state)i;
            return 0;
        }
    }
    return -1;
}

const char *
sched_strategy_name(enum sched_strategy strategy)
{
    return strategy == SCHED_SPREAD ? "spread" : "binpack";
}

int
sched_strategy_parse(const char *s, enum sched_strategy *out)
{
    if (s && strcmp(s, "binpack") == 0) {
        *out = SCHED_BINPACK;
        return 0;
    }
    if (s && strcmp(s, "spread") == 0) {
        *out = SCHED_SPREAD;
        return 0;
    }
    return -1;
}
