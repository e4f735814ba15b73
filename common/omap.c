/*
 * omap: skip list (see omap.h). Compares keys with strcmp, the same order
 * as PostgreSQL's "C" collation, so cached and database pages agree.
 */
#include "omap.h"

#include <string.h>

#include "mem.h"

static struct omap_node *
node_new(int level)
{
    struct omap_node *n =
        xcalloc(1, sizeof(*n) + (size_t)level * sizeof(n->next[0]));
    n->level = level;
    return n;
}

void
omap_init(struct omap *m)
{
    m->head = node_new(OMAP_MAX_LEVEL);
    m->level = 1;
    m->len = 0;
    m->rng = 0x9E3779B97F4A7C15ull;
}

void
omap_fini(struct omap *m)
{
    struct omap_node *n = m->head, *next;

    while (n) {
        next = n->next[0];
        free(n);
        n = next;
    }
    m->head = NULL;
    m->len = 0;
}

static int
random_level(struct omap *m)
{
    int l = 1;

    m->rng ^= m->rng << 13;
    m->rng ^= m->rng >> 7;
    m->rng ^= m->rng << 17;
    /* p = 1/4 per level */
    for (unsigned long long r = m->rng; (r & 3) == 0 && l < OMAP_MAX_LEVEL;
         r >>= 2)
        l++;
    return l;
}

/* Fills update[] with the last node before key at each level. */
static struct omap_node *
find_prev(const struct omap *m, const char *key, struct omap_node **update)
{
    struct omap_node *x = m->head;

    for (int i = m->level - 1; i >= 0; i--) {
        while (x->next[i] && strcmp(x->next[i]->key, key) < 0)
            x = x->next[i];
        if (update)
            update[i] = x;
    }
    return x;
}

void *
omap_put(struct omap *m, const char *key, void *val)
{
    struct omap_node *update[OMAP_MAX_LEVEL], *x, *n;
    int level;

    x = find_prev(m, key, update)->next[0];
    if (x && strcmp(x->key, key) == 0) {
        void *old = x->val;
        x->key = key;
        x->val = val;
        return old;
    }
    level = random_level(m);
    if (level > m->level) {
        for (int i = m->level; i < level; i++)
            update[i] = m->head;
        m->level = level;
    }
    n = node_new(level);
    n->key = key;
    n->val = val;
    for (int i = 0; i < level; i++) {
        n->next[i] = update[i]->next[i];
        update[i]->next[i] = n;
    }
    m->len++;
    return NULL;
}

void *
omap_del(struct omap *m, const char *key)
{
    struct omap_node *update[OMAP_MAX_LEVEL], *x;
    void *val;

    x = find_prev(m, key, update)->next[0];
    if (x == NULL || strcmp(x->key, key) != 0)
        return NULL;
    for (int i = 0; i < m->level; i++) {
        if (update[i]->next[i] != x)
            break;
        update[i]->next[i] = x->next[i];
    }
    while (m->level > 1 && m->head->next[m->level - 1] == NULL)
        m->level--;
    val = x->val;
    free(x);
    m->len--;
    return val;
}

void *
omap_get(const struct omap *m, const char *key)
{
    struct omap_node *x = omap_ceil(m, key);
    return x && strcmp(x->key, key) == 0 ? x->val : NULL;
}

struct omap_node *
omap_ceil(const struct omap *m, const char *key)
{
    return find_prev(m, key, NULL)->next[0];
}

struct omap_node *
omap_after(const struct omap *m, const char *after)
{
    struct omap_node *x;

    if (after == NULL)
        return m->head->next[0];
    x = omap_ceil(m, after);
    if (x && strcmp(x->key, after) == 0)
        x = x->next[0];
    return x;
}
