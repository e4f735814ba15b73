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
/*
 * The value of the next entry at or after *pos, moving *pos past it; NULL
 * when there is none. From *pos = 0 it visits every entry once, in no
 * order, as long as the map does not change meanwhile (a put may grow the
 * table, a del moves entries back):
 *     size_t pos = 0;
 *     while ((v = strmap_next(m, &pos)) != NULL) ...
 */
void *strmap_next(const struct strmap *m, size_t *pos);

#endif
