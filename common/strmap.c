/*
 * strmap: string-keyed hash map (see strmap.h). FNV-1a hashing; the table
 * doubles at half full so probes stay short.
 */
#include "strmap.h"

#include <stdint.h>
#include <string.h>

#include "mem.h"

static uint64_t
hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;

    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

void
strmap_init(struct strmap *m)
{
    m->cap = 64;
    m->len = 0;
    m->keys = xcalloc(m->cap, sizeof(*m->keys));
    m->vals = xcalloc(m->cap, sizeof(*m->vals));
}

void
strmap_fini(struct strmap *m)
{
    free(m->keys);
    free(m->vals);
    m->keys = NULL;
    m->vals = NULL;
    m->cap = m->len = 0;
}

static size_t
find(const struct strmap *m, const char *key)
{
    size_t i = (size_t)hash(key) & (m->cap - 1);

    while (m->keys[i] != NULL && strcmp(m->keys[i], key) != 0)
        i = (i + 1) & (m->cap - 1);
    return i;
}

void *
strmap_get(const struct strmap *m, const char *key)
{
    size_t i = find(m, key);
    return m->keys[i] ? m->vals[i] : NULL;
}

void **
strmap_ref(const struct strmap *m, const char *key)
{
    size_t i = find(m, key);
    return m->keys[i] ? &m->vals[i] : NULL;
}

static void
grow(struct strmap *m)
{
    const char **ok = m->keys;
    void **ov = m->vals;
    size_t oc = m->cap;

    m->cap *= 2;
    m->keys = xcalloc(m->cap, sizeof(*m->keys));
    m->vals = xcalloc(m->cap, sizeof(*m->vals));
    for (size_t i = 0; i < oc; i++) {
        if (ok[i]) {
            size_t j = find(m, ok[i]);
            m->keys[j] = ok[i];
            m->vals[j] = ov[i];
        }
    }
    free(ok);
    free(ov);
}

void *
strmap_put(struct strmap *m, const char *key, void *val)
{
    size_t i;
    void *old;

    if ((m->len + 1) * 2 > m->cap)
        grow(m);
    i = find(m, key);
    old = m->keys[i] ? m->vals[i] : NULL;
    if (m->keys[i] == NULL)
        m->len++;
    m->keys[i] = key;
    m->vals[i] = val;
    return old;
}

void *
strmap_del(struct strmap *m, const char *key)
{
    size_t i = find(m, key), j;
    void *old;

    if (m->keys[i] == NULL)
        return NULL;
    old = m->vals[i];
    m->keys[i] = NULL;
    m->vals[i] = NULL;
    m->len--;
    /* Backward shift: move later members of the cluster into the hole
     * when their home slot does not lie cyclically in (i, j]. */
    for (j = (i + 1) & (m->cap - 1); m->keys[j] != NULL;
         j = (j + 1) & (m->cap - 1)) {
        size_t home = (size_t)hash(m->keys[j]) & (m->cap - 1);
        int in_range = (i <= j) ? (home > i && home <= j)
                                : (home > i || home <= j);
        if (in_range)
            continue;
        m->keys[i] = m->keys[j];
        m->vals[i] = m->vals[j];
        m->keys[j] = NULL;
        m->vals[j] = NULL;
        i = j;
    }
    return old;
}

void *
strmap_next(const struct strmap *m, size_t *pos)
{
    for (; *pos < m->cap; (*pos)++)
        if (m->keys[*pos] != NULL)
            return m->vals[(*pos)++];
    return NULL;
}
