/*
 * sched_index: the data structures that keep a placement sub-linear in the
 * number of hosts: an AVL tree of hosts ordered by (free memory, id), used
 * once for all ready hosts and once per label value, and the two small hash
 * maps of the model (string interning and host id lookup).
 *
 * The tree is intrusive (nodes live in struct sched_host) so moving a host
 * after an allocation costs no allocation, and it is an AVL rather than a
 * treap because its height bound lets iterators use a fixed stack.
 */
#include "sched_priv.h"

#include <string.h>

#include "mem.h"
#include "rng.h"

/* --- hashing --- */

static uint64_t
hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

/* --- string interning map --- */

void
sched_strmap_free(struct sched_strmap *m)
{
    for (size_t i = 0; i < m->cap; i++)
        free(m->keys[i]);
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof(*m));
}

static bool
key_equal(const char *stored, const char *key, size_t keylen)
{
    return strncmp(stored, key, keylen) == 0 && stored[keylen] == '\0';
}

/* The slot of key, or the empty slot where it would go (cap != 0). */
static size_t
strmap_slot(const struct sched_strmap *m, const char *key, size_t keylen)
{
    size_t mask = m->cap - 1;
    size_t i = hash_bytes(key, keylen) & mask;

    while (m->keys[i] != NULL && !key_equal(m->keys[i], key, keylen))
        i = (i + 1) & mask;
    return i;
}

int64_t
sched_strmap_get(const struct sched_strmap *m, const char *key, size_t keylen)
{
    size_t i;

    if (m->cap == 0)
        return -1;
    i = strmap_slot(m, key, keylen);
    return m->keys[i] != NULL ? (int64_t)m->vals[i] : -1;
}

/* Doubles the table; the keys move, they are not copied. */
static void
strmap_grow(struct sched_strmap *m)
{
    struct sched_strmap old = *m;

    m->cap = old.cap ? old.cap * 2 : 16;
    m->keys = xcalloc(m->cap, sizeof(*m->keys));
    m->vals = xcalloc(m->cap, sizeof(*m->vals));
    for (size_t i = 0; i < old.cap; i++) {
        if (old.keys[i] != NULL) {
            size_t j = strmap_slot(m, old.keys[i], strlen(old.keys[i]));
            m->keys[j] = old.keys[i];
            m->vals[j] = old.vals[i];
        }
    }
    free(old.keys);
    free(old.vals);
}

void
sched_strmap_put(struct sched_strmap *m, const char *key, size_t keylen,
                 uint32_t val)
{
    size_t i;

    if ((m->len + 1) * 2 > m->cap)
        strmap_grow(m);
    i = strmap_slot(m, key, keylen);
    if (m->keys[i] == NULL) {
        m->keys[i] = xstrndup(key, keylen);
        m->len++;
    }
    m->vals[i] = val;
}

/* --- host id map --- */

/* The slot of key, or the empty slot where it would go (cap != 0). */
static size_t
idmap_slot(const struct sched_idmap *m, uint64_t key)
{
    size_t mask = m->cap - 1;
    size_t i = rng_mix(key) & mask;

    while (m->vals[i] != NULL && m->keys[i] != key)
        i = (i + 1) & mask;
    return i;
}

void
sched_idmap_free(struct sched_idmap *m)
{
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof(*m));
}

struct sched_host *
sched_idmap_get(const struct sched_idmap *m, uint64_t key)
{
    if (m->cap == 0)
        return NULL;
    return m->vals[idmap_slot(m, key)];
}

/* Doubles the table: every entry is put again. */
static void
idmap_grow(struct sched_idmap *m)
{
    struct sched_idmap old = *m;

    m->len = 0;
    m->cap = old.cap ? old.cap * 2 : 64;
    m->keys = xcalloc(m->cap, sizeof(*m->keys));
    m->vals = xcalloc(m->cap, sizeof(*m->vals));
    for (size_t i = 0; i < old.cap; i++)
        if (old.vals[i] != NULL)
            sched_idmap_put(m, old.keys[i], old.vals[i]);
    free(old.keys);
    free(old.vals);
}

void
sched_idmap_put(struct sched_idmap *m, uint64_t key, struct sched_host *h)
{
    size_t i;

    if ((m->len + 1) * 2 > m->cap)
        idmap_grow(m);
    i = idmap_slot(m, key);
    if (m->vals[i] == NULL)
        m->len++;
    m->keys[i] = key;
    m->vals[i] = h;
}

void
sched_idmap_del(struct sched_idmap *m, uint64_t key)
{
    if (m->cap == 0)
        return;
    size_t mask = m->cap - 1;
    size_t i = idmap_slot(m, key);
    if (m->vals[i] == NULL)
        return;
    /* Backward shift instead of tombstones: hosts come and go forever, and
     * tombstones would slowly turn every lookup into a long probe. */
    size_t hole = i;
    for (size_t j = (i + 1) & mask; m->vals[j] != NULL; j = (j + 1) & mask) {
        size_t home = rng_mix(m->keys[j]) & mask;
        /* j may move into hole only if home is not in (hole, j] cyclically */
        bool between =
            hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (!between) {
            m->keys[hole] = m->keys[j];
            m->vals[hole] = m->vals[j];
            hole = j;
        }
    }
    m->vals[hole] = NULL;
    m->keys[hole] = 0;
    m->len--;
}

/* --- AVL tree --- */

static int
node_cmp(const struct sched_node *a, const struct sched_node *b)
{
    if (a->mem != b->mem)
        return a->mem < b->mem ? -1 : 1;
    if (a->id != b->id)
        return a->id < b->id ? -1 : 1;
    return 0;
}

void
sched_node_load(struct sched_node *node)
{
    const struct sched_host *h = node->h;
    node->mem = h->free.memory_mib;
    node->id = h->id;
    node->vcpus = h->free.vcpus;
    node->disk = h->free.disk_gib;
}

static int
height(const struct sched_node *n)
{
    return n ? n->height : 0;
}

static void
fix_height(struct sched_node *n)
{
    int hl = height(n->l), hr = height(n->r);
    n->height = 1 + (hl > hr ? hl : hr);
    n->max_vcpus = n->vcpus;
    n->max_disk = n->disk;
    for (int i = 0; i < 2; i++) {
        const struct sched_node *k = i ? n->r : n->l;
        if (k == NULL)
            continue;
        if (k->max_vcpus > n->max_vcpus)
            n->max_vcpus = k->max_vcpus;
        if (k->max_disk > n->max_disk)
            n->max_disk = k->max_disk;
    }
}

/* Lifts n's left child over n (right) or its right child (left). */
static struct sched_node *
rotate(struct sched_node *n, bool right)
{
    struct sched_node *c = right ? n->l : n->r;

    if (right) {
        n->l = c->r;
        c->r = n;
    } else {
        n->r = c->l;
        c->l = n;
    }
    fix_height(n);
    fix_height(c);
    return c;
}

static struct sched_node *
rebalance(struct sched_node *n)
{
    fix_height(n);
    int bal = height(n->l) - height(n->r);
    if (bal > 1) {
        if (height(n->l->l) < height(n->l->r))
            n->l = rotate(n->l, false);
        return rotate(n, true);
    }
    if (bal < -1) {
        if (height(n->r->r) < height(n->r->l))
            n->r = rotate(n->r, true);
        return rotate(n, false);
    }
    return n;
}

struct sched_node *
sched_tree_insert(struct sched_node *root, struct sched_node *node)
{
    if (root == NULL) {
        node->l = node->r = NULL;
        fix_height(node);
        return node;
    }
    if (node_cmp(node, root) < 0)
        root->l = sched_tree_insert(root->l, node);
    else
        root->r = sched_tree_insert(root->r, node);
    return rebalance(root);
}

static struct sched_node *
remove_min(struct sched_node *root, struct sched_node **min)
{
    if (root->l == NULL) {
        *min = root;
        return root->r;
    }
    root->l = remove_min(root->l, min);
    return rebalance(root);
}

/* Keys are unique (the id breaks ties), so the node found is node. */
struct sched_node *
sched_tree_remove(struct sched_node *root, const struct sched_node *node)
{
    if (root == NULL)
        return NULL;
    int c = node_cmp(node, root);
    if (c < 0) {
        root->l = sched_tree_remove(root->l, node);
    } else if (c > 0) {
        root->r = sched_tree_remove(root->r, node);
    } else {
        struct sched_node *l = root->l, *r = root->r, *m;
        root->l = root->r = NULL;
        if (r == NULL)
            return l;
        r = remove_min(r, &m);
        m->l = l;
        m->r = r;
        return rebalance(m);
    }
    return rebalance(root);
}

static bool
subtree_may_fit(const struct sched_iter *it, const struct sched_node *n)
{
    return n->max_vcpus >= it->vcpus && n->max_disk >= it->disk;
}

static bool
node_may_fit(const struct sched_iter *it, const struct sched_node *n)
{
    return n->vcpus >= it->vcpus && n->disk >= it->disk;
}

/* Stacks the path to the leftmost candidate of n's subtree. A node on the
 * stack stands for itself and its right subtree, both still to visit. */
static void
push_left(struct sched_iter *it, struct sched_node *n)
{
    while (n != NULL && subtree_may_fit(it, n)) {
        if (n->mem >= it->mem) {
            it->stk[it->n++] = n;
            n = n->l;
        } else {
            n = n->r; /* n and its left subtree have too little memory */
        }
    }
}

static void
push_right(struct sched_iter *it, struct sched_node *n)
{
    while (n != NULL && subtree_may_fit(it, n)) {
        it->stk[it->n++] = n;
        n = n->r;
    }
}

void
sched_iter_from(struct sched_iter *it, struct sched_node *root,
                const struct sched_resources *res)
{
    it->n = 0;
    it->desc = false;
    it->mem = res->memory_mib;
    it->vcpus = res->vcpus;
    it->disk = res->disk_gib;
    push_left(it, root);
}

void
sched_iter_from_max(struct sched_iter *it, struct sched_node *root,
                    const struct sched_resources *res)
{
    it->n = 0;
    it->desc = true;
    it->mem = 0;
    it->vcpus = res->vcpus;
    it->disk = res->disk_gib;
    push_right(it, root);
}

struct sched_host *
sched_iter_next(struct sched_iter *it)
{
    while (it->n > 0) {
        struct sched_node *t = it->stk[--it->n];
        if (it->desc)
            push_right(it, t->l);
        else
            push_left(it, t->r);
        /* t was stacked because its subtree may fit, not t itself */
        if (node_may_fit(it, t))
            return t->h;
    }
    return NULL;
}

static long
check_rec(const struct sched_node *n, const struct sched_node *lo,
          const struct sched_node *hi)
{
    if (n == NULL)
        return 0;
    if ((lo && node_cmp(n, lo) <= 0) || (hi && node_cmp(n, hi) >= 0))
        return -1;
    /* the cached key must match the host */
    struct sched_node fresh = *n;
    sched_node_load(&fresh);
    if (node_cmp(&fresh, n) != 0 || fresh.vcpus != n->vcpus ||
        fresh.disk != n->disk)
        return -1;
    int hl = height(n->l), hr = height(n->r);
    if (n->height != 1 + (hl > hr ? hl : hr) || hl - hr > 1 || hr - hl > 1)
        return -1;
    struct sched_node copy = *n;
    fix_height(&copy);
    if (copy.max_vcpus != n->max_vcpus || copy.max_disk != n->max_disk)
        return -1;
    long a = check_rec(n->l, lo, n);
    long b = check_rec(n->r, n, hi);
    if (a < 0 || b < 0)
        return -1;
    return a + b + 1;
}

long
sched_tree_check(const struct sched_node *root)
{
    return check_rec(root, NULL, NULL);
}
