/*
 * evbuf: libevent buffers as the tree uses them. An evbuffer that cannot be
 * allocated ends the process, as xmalloc does (mem.h); a buffer's contents
 * are drained into a C string in one call.
 */
#ifndef CLOUD_EVBUF_H
#define CLOUD_EVBUF_H

#include <stddef.h>

struct evbuffer;

/* A new, empty evbuffer; never NULL (aborts on out-of-memory). */
struct evbuffer *evbuf_new(void);

/* Drains b (left empty, still the caller's) into a NUL-terminated string
 * (xmalloc'd, caller frees); its length without the NUL in *lenp unless
 * lenp is NULL. */
char *evbuf_drain_string(struct evbuffer *b, size_t *lenp);

#endif
