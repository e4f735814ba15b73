/*
 * frame: the controller <-> agent wire frame codec. A frame is a 4-byte
 * big-endian length followed by one serialized cloud.agent.Envelope.
 *
 * Everything a peer sends is bounded before it costs memory: the length is
 * checked against a maximum before any allocation, and unpacking runs on an
 * allocator that refuses to hand out more than a per-frame budget (protobuf-c
 * itself has no limits: a few bytes of repeated empty messages can expand to
 * many times their size).
 *
 * The codec does not log: a bad frame is the peer's error, so it returns a
 * reason for the caller to log once and send back as an Error message.
 */
#ifndef CLOUD_FRAME_H
#define CLOUD_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "agent.pb-c.h"

struct evbuffer;

/* Largest Envelope (excluding the 4-byte header) either side sends or accepts.
 */
#define FRAME_MAX (4u * 1024u * 1024u)
#define FRAME_HEADER_LEN 4u
/*
 * Bytes the unpacker may allocate for one frame. Unpacked structs are larger
 * than their encoding (pointers, struct padding, NUL terminators), so this is
 * a multiple of FRAME_MAX; a frame that needs more is refused.
 */
#define FRAME_ALLOC_BUDGET (8u * FRAME_MAX)

typedef Cloud__Agent__Envelope frame_envelope;

enum frame_status {
    FRAME_ERROR = -1,    /* the stream is unusable: close the connection */
    FRAME_NEED_MORE = 0, /* not a whole frame buffered yet */
    FRAME_OK = 1,        /* one envelope decoded and consumed */
};

struct frame_limits {
    size_t max_frame;    /* 0 means FRAME_MAX */
    size_t alloc_budget; /* 0 means FRAME_ALLOC_BUDGET */
};

/* Appends one frame carrying env to out. Refuses envelopes over FRAME_MAX. */
int frame_encode_evbuffer(struct evbuffer *out, const frame_envelope *env);

/*
 * Encodes env as one frame into a new xmalloc'd buffer (*outp, *lenp).
 * Refuses envelopes over FRAME_MAX. Returns 0 or -1.
 */
int frame_encode_buf(const frame_envelope *env, uint8_t **outp, size_t *lenp);

/*
 * Decodes one frame from buf[0..len). On FRAME_OK sets *envp (free with
 * frame_envelope_free) and *consumedp. On FRAME_ERROR writes a one-line
 * reason to errbuf. limits may be NULL for the defaults.
 *
 * An envelope whose oneof is unset (MSG__NOT_SET) is returned, not refused:
 * it may be a message type added after this build, and answering it with an
 * ERROR_CODE_UNSUPPORTED is the caller's call.
 */
enum frame_status frame_decode_buf(const uint8_t *buf, size_t len,
                                   const struct frame_limits *limits,
                                   frame_envelope **envp, size_t *consumedp,
                                   char *errbuf, size_t errlen);

/*
 * Same, reading from an evbuffer: on FRAME_OK the frame is drained from in.
 * On FRAME_ERROR nothing is drained (the stream has no usable boundary any
 * more). On FRAME_NEED_MORE nothing is allocated, however large the
 * announced length.
 */
enum frame_status frame_decode_evbuffer(struct evbuffer *in,
                                        const struct frame_limits *limits,
                                        frame_envelope **envp, char *errbuf,
                                        size_t errlen);

/* Frees an envelope returned by a frame_decode_* function. Accepts NULL. */
void frame_envelope_free(frame_envelope *env);

/* Short name of the envelope's message ("hello", "desired_state", ...). */
const char *frame_msg_name(const frame_envelope *env);

#endif
