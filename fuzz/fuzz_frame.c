/*
 * fuzz_frame: bytes from a peer through the agent wire codec
 * (proto/frame.c), as both ends read them: frame_decode_buf over a buffer,
 * and frame_decode_evbuffer over an evbuffer that is fed in pieces the way
 * a socket delivers them. Each stream is decoded with the default limits
 * and with tight ones, so the length check and the bounded allocator's
 * refusal both run. Beyond the sanitizers it checks that the two decoders
 * agree frame for frame, that an evbuffer is drained only on success, and
 * that every decoded envelope re-encodes and decodes again.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Enough frames to cover back-to-back decoding without slow inputs. */
#define FUZZ_MAX_FRAMES 64

struct decoded {
    enum frame_status st[FUZZ_MAX_FRAMES + 1];
    size_t used[FUZZ_MAX_FRAMES + 1]; /* bytes consumed up to frame i */
    int n;
};

/*
 * True if m or a message inside it kept unknown fields. Those are re-sent
 * as they came, and libprotobuf-c accepts on input what it cannot emit
 * again (an over-long varint tag naming field 0), so a round trip is only
 * promised for envelopes without them.
 */
static bool
has_unknown_fields(const ProtobufCMessage *m)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    const char *base = (const char *)m;

    if (m->n_unknown_fields > 0)
        return true;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];

        if (f->type != PROTOBUF_C_TYPE_MESSAGE)
            continue;
        if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
            *(const uint32_t *)(base + f->quantifier_offset) != f->id)
            continue; /* another member of the oneof owns the pointer */
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)(base + f->quantifier_offset);
            ProtobufCMessage *const *v =
                *(ProtobufCMessage *const *const *)(base + f->offset);
            for (size_t j = 0; j < n; j++)
                if (v[j] != NULL && has_unknown_fields(v[j]))
                    return true;
        } else {
            const ProtobufCMessage *sub =
                *(const ProtobufCMessage *const *)(base + f->offset);
            if (sub != NULL && has_unknown_fields(sub))
                return true;
        }
    }
    return false;
}

static void
check_roundtrip(const frame_envelope *env)
{
    frame_envelope *again = NULL;
    uint8_t *buf = NULL, *buf2 = NULL;
    size_t len = 0, len2 = 0, consumed = 0;
    char err[256];

    if (frame_msg_name(env) == NULL)
        abort();
    if (has_unknown_fields(&env->base))
        return;
    if (frame_encode_buf(env, &buf, &len) < 0)
        return; /* over FRAME_MAX once re-encoded: refused, not sent */
    /* A decoded envelope re-encodes to something the codec accepts, with
     * the default limits (an encoding may be longer than its source), and
     * encoding is stable from then on. */
    if (frame_decode_buf(buf, len, NULL, &again, &consumed, err,
                         sizeof(err)) != FRAME_OK ||
        consumed != len || again->msg_case != env->msg_case)
        abort();
    if (frame_encode_buf(again, &buf2, &len2) < 0 || len2 != len ||
        memcmp(buf, buf2, len) != 0)
        abort();
    frame_envelope_free(again);
    free(buf);
    free(buf2);
}

static void
decode_buf(const uint8_t *data, size_t size, const struct frame_limits *lim,
           struct decoded *d)
{
    size_t off = 0;

    d->n = 0;
    while (d->n < FUZZ_MAX_FRAMES) {
        frame_envelope *env = NULL;
        size_t consumed = 0;
        char err[256] = "";
        enum frame_status st = frame_decode_buf(data + off, size - off, lim,
                                                &env, &consumed, err,
                                                sizeof(err));
        d->st[d->n] = st;
        if (st == FRAME_OK) {
            if (env == NULL || consumed < FRAME_HEADER_LEN ||
                consumed > size - off)
                abort();
            check_roundtrip(env);
            frame_envelope_free(env);
            off += consumed;
        } else if (st == FRAME_ERROR) {
            if (err[0] == '\0' || env != NULL)
                abort();
        } else if (st != FRAME_NEED_MORE || env != NULL) {
            abort();
        }
        d->used[d->n] = off;
        d->n++;
        if (st != FRAME_OK)
            break;
    }
}

/*
 * The same stream through an evbuffer, appended in pieces whose sizes come
 * from the seed byte. Frame i must end the same way as in decode_buf:
 * NEED_MORE may only be answered while bytes are still to come.
 */
static void
decode_evbuffer(const uint8_t *data, size_t size, uint8_t seed,
                const struct frame_limits *lim, const struct decoded *ref)
{
    struct evbuffer *in = evbuffer_new();
    size_t fed = 0, piece = (size_t)(seed % 61) + 1;
    int i = 0;

    if (in == NULL)
        abort();
    while (i < ref->n) {
        frame_envelope *env = NULL;
        char err[256] = "";
        size_t before = evbuffer_get_length(in);
        enum frame_status st = frame_decode_evbuffer(in, lim, &env, err,
                                                     sizeof(err));

        if (st == FRAME_NEED_MORE) {
            if (env != NULL || evbuffer_get_length(in) != before)
                abort();
            if (fed == size) {
                if (ref->st[i] != FRAME_NEED_MORE)
                    abort();
                break;
            }
            size_t n = size - fed < piece ? size - fed : piece;
            evbuffer_add(in, data + fed, n);
            fed += n;
            piece = piece * 2 + 1; /* small pieces first, then large */
            continue;
        }
        if (st != ref->st[i])
            abort();
        if (st == FRAME_ERROR) {
            /* The stream is unusable: nothing is drained. */
            if (err[0] == '\0' || env != NULL ||
                evbuffer_get_length(in) != before)
                abort();
            break;
        }
        if (env == NULL ||
            fed - evbuffer_get_length(in) != ref->used[i])
            abort();
        frame_envelope_free(env);
        i++;
    }
    evbuffer_free(in);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Tight limits: a few KiB per frame and an allocation budget a small
     * frame of repeated empty messages can blow. */
    static const struct frame_limits tight = {.max_frame = 1024,
                                              .alloc_budget = 4096};
    struct decoded d;
    uint8_t seed = size > 0 ? data[size - 1] : 0;

    decode_buf(data, size, NULL, &d);
    decode_evbuffer(data, size, seed, NULL, &d);
    decode_buf(data, size, &tight, &d);
    decode_evbuffer(data, size, seed, &tight, &d);
    return 0;
}
