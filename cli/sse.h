/*
 * sse: an incremental Server-Sent Events parser (the WHATWG event-stream
 * format) for `events -f` and other watches. Fed arbitrary pieces of the
 * body, it calls back once per complete event. Memory is bounded: an event
 * larger than SSE_MAX_EVENT stops the stream with an error.
 */
#ifndef CLOUD_CLI_SSE_H
#define CLOUD_CLI_SSE_H

#include <stdbool.h>
#include <stddef.h>

#define SSE_MAX_EVENT (1024u * 1024)
#define SSE_MAX_FIELD 128

struct sse_parser {
    char *line;
    size_t llen, lcap;
    char *data;
    size_t dlen, dcap;
    bool has_data;
    bool prev_cr;
    char event[SSE_MAX_FIELD];
    char last_id[SSE_MAX_FIELD]; /* sticky across events, per the spec */
};

/* id may be "" (no id seen yet); event is "message" when not named. */
typedef int (*sse_event_fn)(void *arg, const char *id, const char *event,
                            const char *data);

void sse_init(struct sse_parser *p);
void sse_free(struct sse_parser *p);
/* Returns 0 to go on, 1 when fn asked to stop, -1 when an event or line is
 * over SSE_MAX_EVENT. */
int sse_feed(struct sse_parser *p, const char *buf, size_t n, sse_event_fn fn,
             void *arg);

#endif
