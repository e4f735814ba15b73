/*
 * evbuf: evbuffers that abort on out-of-memory, and their text (see
 * evbuf.h).
 */
#define LOG_MODULE "evbuf"
#include "evbuf.h"

#include <event2/buffer.h>

#include "log.h"
#include "mem.h"

struct evbuffer *
evbuf_new(void)
{
    struct evbuffer *b = evbuffer_new();

    if (b == NULL)
        fatalx("cannot allocate an evbuffer");
    return b;
}

char *
evbuf_drain_string(struct evbuffer *b, size_t *lenp)
{
    size_t len = evbuffer_get_length(b);
    char *s = xmalloc(len + 1);

    if (evbuffer_remove(b, s, len) != (int)len)
        fatalx("cannot copy %zu bytes out of an evbuffer", len);
    s[len] = '\0';
    if (lenp != NULL)
        *lenp = len;
    return s;
}
