/*
 * omap: an ordered map from string keys to pointers (a skip list), for
 * cursor pagination: find the first key greater than a cursor, walk on.
 * Keys are not copied (the value owns its key). Deterministic level choice
 * from a seeded xorshift, so runs are reproducible.
 */
#ifndef CLOUD_OMAP_H
#define CLOUD_OMAP_H

#include <stddef.h>

#define OMAP_MAX_LEVEL 24

struct omap_node {
    const char *key;
    void *val;
    int level;
    struct omap_node *next[];
};

struct omap {
    struct omap_node *head;
    int level;
    size_t len;
    unsigned long long rng;
};

void omap_init(struct omap *m);
void omap_fini(struct omap *m);
/* Inserts or replaces; returns the previous value or NULL. */
void *omap_put(struct omap *m, const char *key, void *val);
void *omap_del(struct omap *m, const char *key);
void *omap_get(const struct omap *m, const char *key);
/* First node with key > after (after NULL: the first node), or NULL. */
struct omap_node *omap_after(const struct omap *m, const char *after);
/* First node with key >= key, or NULL. */
struct omap_node *omap_ceil(const struct omap *m, const char *key);

static inline struct omap_node *
omap_next(const struct omap_node *n)
{
    return n->next[0];
}

#endif
