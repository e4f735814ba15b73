/*
 * evbuf: libevent buffers as the tree uses them. An evbuffer that cannot be
 * allocated ends the process, as xmalloc does (mem.h); a buffer's contents
 * are taken as a C string in one call.
 */
#ifndef CLOUD_EVBUF_H
#define CLOUD_EVBUF_H

struct evbuffer;

/* A new, empty evbuffer; never NULL (aborts on out-of-memory). */
struct evbuffer *evbuf_new(void);

/* Drains b into a NUL-terminated string (xmalloc'd, caller frees) and
 * frees b. */
char *evbuf_take_string(struct evbuffer *b);

#endif
