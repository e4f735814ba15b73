/*
 * sse: Server-Sent Events parsing (see sse.h). Lines end in LF, CRLF or a
 * lone CR; a blank line dispatches the event; lines starting with ':' are
 * comments (the controller's keepalives).
 */
#include "sse.h"

#include <string.h>

#include "mem.h"

void
sse_init(struct sse_parser *p)
{
    memset(p, 0, sizeof(*p));
}

void
sse_free(struct sse_parser *p)
{
    free(p->line);
    free(p->data);
    memset(p, 0, sizeof(*p));
}

static int
append(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
    if (*len + n + 1 > SSE_MAX_EVENT)
        return -1;
    if (*len + n + 1 > *cap) {
        size_t c = *cap ? *cap : 256;
        while (c < *len + n + 1)
            c *= 2;
        *buf = xrealloc(*buf, c);
        *cap = c;
    }
    memcpy(*buf + *len, s, n);
    *len += n;
    (*buf)[*len] = '\0';
    return 0;
}

static void
set_field(char *dst, const char *v)
{
    xstrlcpy(dst, v, SSE_MAX_FIELD);
}

static int
process_line(struct sse_parser *p, sse_event_fn fn, void *arg)
{
    const char *line = p->line ? p->line : "";
    int rc = 0;

    if (p->llen == 0) {
        if (p->has_data) {
            /* The spec drops the final newline of the data buffer. */
            if (p->dlen > 0 && p->data[p->dlen - 1] == '\n')
                p->data[--p->dlen] = '\0';
            rc = fn(arg, p->last_id, p->event[0] ? p->event : "message",
                    p->data ? p->data : "")
                     ? 1
                     : 0;
        }
        p->dlen = 0;
        if (p->data)
            p->data[0] = '\0';
        p->has_data = false;
        p->event[0] = '\0';
        return rc;
    }
    if (line[0] == ':')
        return 0;
    const char *colon = strchr(line, ':');
    size_t nlen = colon ? (size_t)(colon - line) : p->llen;
    const char *value = colon ? colon + 1 : "";
    if (*value == ' ')
        value++;
    if (nlen == 4 && memcmp(line, "data", 4) == 0) {
        if (append(&p->data, &p->dlen, &p->dcap, value, strlen(value)) < 0 ||
            append(&p->data, &p->dlen, &p->dcap, "\n", 1) < 0)
            return -1;
        p->has_data = true;
    } else if (nlen == 5 && memcmp(line, "event", 5) == 0) {
        set_field(p->event, value);
    } else if (nlen == 2 && memcmp(line, "id", 2) == 0) {
        set_field(p->last_id, value);
    }
    /* "retry" and unknown fields are ignored, as the spec says. */
    return 0;
}

int
sse_feed(struct sse_parser *p, const char *buf, size_t n, sse_event_fn fn,
         void *arg)
{
    for (size_t i = 0; i < n; i++) {
        char c = buf[i];
        if (c == '\n' && p->prev_cr) {
            p->prev_cr = false;
            continue;
        }
        p->prev_cr = c == '\r';
        if (c == '\n' || c == '\r') {
            int rc = process_line(p, fn, arg);
            p->llen = 0;
            if (p->line)
                p->line[0] = '\0';
            if (rc != 0)
                return rc;
            continue;
        }
        if (append(&p->line, &p->llen, &p->lcap, &c, 1) < 0)
            return -1;
    }
    return 0;
}
