/*
 * strmap: a hash map from NUL-terminated string keys to pointers.
 * Keys are not copied: the value owns its key and must outlive its entry.
 * Open addressing with linear probing and backward-shift deletion.
 */
#ifndef CLOUD_STRMAP_H
#define CLOUD_STRMAP_H

#include <stddef.h>

struct strmap {
    const char **keys;
    void **vals;
    size_t cap, len;
};

void strmap_init(struct strmap *m);
void strmap_fini(struct strmap *m);
void *strmap_get(const struct strmap *m, const char *key);
/* The slot holding key's value, or NULL when key is absent: to change a
 * value in place, keeping the key the map already holds. Valid until the
 * next put or delete. */
void **strmap_ref(const struct strmap *m, const char *key);
/* Inserts or replaces; returns the previous value or NULL. */
void *strmap_put(struct strmap *m, const char *key, void *val);
/* Removes; returns the removed value or NULL. */
void *strmap_del(struct strmap *m, const char *key);

#endif
