/*
 * frame: length-prefixed protobuf Envelope codec (see frame.h). Owns the
 * bounded protobuf-c allocator; the envelopes it returns are freed with
 * frame_envelope_free().
 */
#include "frame.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>

#include "mem.h"

/* Per-frame allocation budget, the allocator_data of the bounded allocator. */
struct frame_budget {
    size_t used;
    size_t limit;
    bool exceeded;
};

static void *
frame_bounded_alloc(void *data, size_t size)
{
    struct frame_budget *b = data;

    if (size > b->limit - b->used) {
        b->exceeded = true;
        return NULL; /* protobuf-c unwinds and fails the unpack */
    }
    b->used += size;
    return xmalloc(size);
}

static void
frame_plain_free(void *data, void *ptr)
{
    (void)data;
    free(ptr);
}

/* Used only to free: the budget matters while unpacking, not afterwards. */
static ProtobufCAllocator frame_free_allocator = {
    .alloc = frame_bounded_alloc, /* never called through this instance */
    .free = frame_plain_free,
    .allocator_data = NULL,
};

static void
frame_put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t
frame_get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
           (uint32_t)p[3];
}

/* Sets *sizep to the packed size of env; -1 if it is over FRAME_MAX. */
static int
frame_packed_size(const frame_envelope *env, size_t *sizep)
{
    size_t n = cloud__agent__envelope__get_packed_size(env);

    if (n > FRAME_MAX)
        return -1;
    *sizep = n;
    return 0;
}

int
frame_encode_evbuffer(struct evbuffer *out, const frame_envelope *env)
{
    struct evbuffer_iovec vec;
    size_t n;

    if (frame_packed_size(env, &n) < 0)
        return -1;
    /* One contiguous reservation, so a failure never leaves half a frame. */
    if (evbuffer_reserve_space(out, (ev_ssize_t)(n + FRAME_HEADER_LEN), &vec,
                               1) != 1)
        return -1;
    frame_put_be32(vec.iov_base, (uint32_t)n);
    if (cloud__agent__envelope__pack(env, (uint8_t *)vec.iov_base +
                                              FRAME_HEADER_LEN) != n)
        return -1;
    vec.iov_len = n + FRAME_HEADER_LEN;
    if (evbuffer_commit_space(out, &vec, 1) != 0)
        return -1;
    return 0;
}

int
frame_encode_buf(const frame_envelope *env, uint8_t **outp, size_t *lenp)
{
    uint8_t *buf;
    size_t n;

    if (frame_packed_size(env, &n) < 0)
        return -1;
    buf = xmalloc(n + FRAME_HEADER_LEN);
    frame_put_be32(buf, (uint32_t)n);
    if (cloud__agent__envelope__pack(env, buf + FRAME_HEADER_LEN) != n) {
        free(buf);
        return -1;
    }
    *outp = buf;
    *lenp = n + FRAME_HEADER_LEN;
    return 0;
}

/* Checks the header of a buffered frame. Returns the status so far. */
static enum frame_status
frame_check_header(const uint8_t hdr[FRAME_HEADER_LEN], size_t buffered,
                   size_t max_frame, size_t *framelenp, char *errbuf,
                   size_t errlen)
{
    uint32_t n = frame_get_be32(hdr);

    if (n > max_frame) {
        snprintf(errbuf, errlen,
                 "frame length %u exceeds the maximum of %zu bytes", n,
                 max_frame);
        return FRAME_ERROR;
    }
    *framelenp = n;
    if (buffered - FRAME_HEADER_LEN < n)
        return FRAME_NEED_MORE;
    return FRAME_OK;
}

static enum frame_status
frame_unpack(const uint8_t *payload, size_t n, size_t alloc_budget,
             frame_envelope **envp, char *errbuf, size_t errlen)
{
    struct frame_budget budget = {.used = 0, .limit = alloc_budget};
    ProtobufCAllocator alloc = {
        .alloc = frame_bounded_alloc,
        .free = frame_plain_free,
        .allocator_data = &budget,
    };
    frame_envelope *env;

    env = cloud__agent__envelope__unpack(&alloc, n, payload);
    if (env == NULL) {
        if (budget.exceeded)
            snprintf(
                errbuf, errlen,
                "frame of %zu bytes needs more than the allocation budget of %zu bytes",
                n, alloc_budget);
        else
            snprintf(errbuf, errlen,
                     "frame of %zu bytes is not a valid Envelope", n);
        return FRAME_ERROR;
    }
    *envp = env;
    return FRAME_OK;
}

static void
frame_limits_resolve(const struct frame_limits *limits, size_t *maxp,
                     size_t *budgetp)
{
    *maxp = limits && limits->max_frame ? limits->max_frame : FRAME_MAX;
    *budgetp = limits && limits->alloc_budget ? limits->alloc_budget
                                              : FRAME_ALLOC_BUDGET;
}

enum frame_status
frame_decode_buf(const uint8_t *buf, size_t len,
                 const struct frame_limits *limits, frame_envelope **envp,
                 size_t *consumedp, char *errbuf, size_t errlen)
{
    enum frame_status st;
    size_t max_frame, budget, n;

    frame_limits_resolve(limits, &max_frame, &budget);
    if (len < FRAME_HEADER_LEN)
        return FRAME_NEED_MORE;
    st = frame_check_header(buf, len, max_frame, &n, errbuf, errlen);
    if (st != FRAME_OK)
        return st;
    st = frame_unpack(buf + FRAME_HEADER_LEN, n, budget, envp, errbuf, errlen);
    if (st == FRAME_OK)
        *consumedp = n + FRAME_HEADER_LEN;
    return st;
}

enum frame_status
frame_decode_evbuffer(struct evbuffer *in, const struct frame_limits *limits,
                      frame_envelope **envp, char *errbuf, size_t errlen)
{
    uint8_t hdr[FRAME_HEADER_LEN];
    enum frame_status st;
    size_t max_frame, budget, n, have;
    unsigned char *p;

    frame_limits_resolve(limits, &max_frame, &budget);
    have = evbuffer_get_length(in);
    if (have < FRAME_HEADER_LEN)
        return FRAME_NEED_MORE;
    if (evbuffer_copyout(in, hdr, sizeof(hdr)) != (ev_ssize_t)sizeof(hdr)) {
        snprintf(errbuf, errlen, "cannot read the frame header");
        return FRAME_ERROR;
    }
    st = frame_check_header(hdr, have, max_frame, &n, errbuf, errlen);
    if (st != FRAME_OK)
        return st;
    /* Linearises at most max_frame + 4 bytes, already checked above. */
    p = evbuffer_pullup(in, (ev_ssize_t)(n + FRAME_HEADER_LEN));
    if (p == NULL) {
        snprintf(errbuf, errlen, "cannot linearise a frame of %zu bytes", n);
        return FRAME_ERROR;
    }
    st = frame_unpack(p + FRAME_HEADER_LEN, n, budget, envp, errbuf, errlen);
    if (st == FRAME_OK)
        evbuffer_drain(in, n + FRAME_HEADER_LEN);
    return st;
}

void
frame_envelope_free(frame_envelope *env)
{
    if (env == NULL)
        return;
    cloud__agent__envelope__free_unpacked(env, &frame_free_allocator);
}

const char *
frame_msg_name(const frame_envelope *env)
{
    switch (env->msg_case) {
    case CLOUD__AGENT__ENVELOPE__MSG_HELLO:
        return "hello";
    case CLOUD__AGENT__ENVELOPE__MSG_WELCOME:
        return "welcome";
    case CLOUD__AGENT__ENVELOPE__MSG_HEARTBEAT:
        return "heartbeat";
    case CLOUD__AGENT__ENVELOPE__MSG_DESIRED_STATE:
        return "desired_state";
    case CLOUD__AGENT__ENVELOPE__MSG_INSTANCE_STATUS:
        return "instance_status";
    case CLOUD__AGENT__ENVELOPE__MSG_LOG_REQUEST:
        return "log_request";
    case CLOUD__AGENT__ENVELOPE__MSG_LOG_CHUNK:
        return "log_chunk";
    case CLOUD__AGENT__ENVELOPE__MSG_CONFIG_UPDATE:
        return "config_update";
    case CLOUD__AGENT__ENVELOPE__MSG_ERROR:
        return "error";
    case CLOUD__AGENT__ENVELOPE__MSG_HEARTBEAT_ACK:
        return "heartbeat_ack";
    default:
        return "unknown";
    }
}
