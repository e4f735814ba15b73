/*
 * mem: allocation wrappers that abort on out-of-memory, and cleanup helpers.
 * Nothing else in the tree calls malloc/calloc/realloc/strdup directly.
 */
#ifndef CLOUD_MEM_H
#define CLOUD_MEM_H

#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>

void *xmalloc(size_t n);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *xvasprintf(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));

/* strlcpy semantics: always terminates, returns strlen(src). */
size_t xstrlcpy(char *dst, const char *src, size_t cap);

static inline void
mem_free_ptr(void *p)
{
    free(*(void **)p);
}
/* char *s __cleanup_free = xstrdup(...); freed at end of scope. */
#define __cleanup_free __attribute__((cleanup(mem_free_ptr)))

#endif
