/*
 * test_frame: the wire frame codec (proto/frame.c). Round trips, partial
 * delivery, and the bounds a hostile peer must not get past: the length
 * maximum (checked before allocation) and the per-frame allocation budget.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>

#include "frame.h"
#include "mem.h"

static frame_envelope *
make_hello(void)
{
    static Cloud__Agent__Resources cap = CLOUD__AGENT__RESOURCES__INIT;
    static Cloud__Agent__HostFacts facts = CLOUD__AGENT__HOST_FACTS__INIT;
    static char *types[] = {"qemu", "kvm"};
    static Cloud__Agent__Hello__LabelsEntry l0 =
        CLOUD__AGENT__HELLO__LABELS_ENTRY__INIT;
    static Cloud__Agent__Hello__LabelsEntry *labels[] = {&l0};
    static Cloud__Agent__InstanceRef r0 = CLOUD__AGENT__INSTANCE_REF__INIT;
    static Cloud__Agent__InstanceRef *refs[] = {&r0};
    static Cloud__Agent__Hello hello = CLOUD__AGENT__HELLO__INIT;
    static frame_envelope env = CLOUD__AGENT__ENVELOPE__INIT;

    cap.vcpus = 64;
    cap.memory_mib = 262144;
    cap.disk_gib = 2000;
    facts.arch = "x86_64";
    facts.n_hypervisor_types = 2;
    facts.hypervisor_types = types;
    facts.kvm_usable = 0;
    facts.domain_type = "qemu";
    l0.key = "rack";
    l0.value = "r17";
    r0.id = "7f3a";
    r0.generation = 3;
    r0.state =
        CLOUD__AGENT__OBSERVED_INSTANCE_STATE__OBSERVED_INSTANCE_STATE_RUNNING;
    hello.host_name = "hv-0001";
    hello.agent_version = "0.1.0";
    hello.capacity = &cap;
    hello.facts = &facts;
    hello.n_labels = 1;
    hello.labels = labels;
    hello.n_instances = 1;
    hello.instances = refs;
    env.msg_case = CLOUD__AGENT__ENVELOPE__MSG_HELLO;
    env.hello = &hello;
    return &env;
}

static void
check_hello(const frame_envelope *env)
{
    const Cloud__Agent__Hello *h;

    assert_int_equal(env->msg_case, CLOUD__AGENT__ENVELOPE__MSG_HELLO);
    assert_string_equal(frame_msg_name(env), "hello");
    h = env->hello;
    assert_string_equal(h->host_name, "hv-0001");
    assert_int_equal(h->capacity->vcpus, 64);
    assert_int_equal(h->capacity->memory_mib, 262144);
    assert_int_equal(h->facts->n_hypervisor_types, 2);
    assert_string_equal(h->facts->hypervisor_types[1], "kvm");
    assert_int_equal(h->n_labels, 1);
    assert_string_equal(h->labels[0]->value, "r17");
    assert_int_equal(h->n_instances, 1);
    assert_string_equal(h->instances[0]->id, "7f3a");
    assert_int_equal(h->instances[0]->generation, 3);
}

static void
test_roundtrip_evbuffer(void **state)
{
    struct evbuffer *buf = evbuffer_new();
    frame_envelope *out = NULL;
    char err[256];
    uint8_t hdr[4];
    size_t n;

    (void)state;
    assert_int_equal(frame_encode_evbuffer(buf, make_hello()), 0);
    n = evbuffer_get_length(buf);
    evbuffer_copyout(buf, hdr, 4);
    /* Big-endian length of the payload that follows. */
    assert_int_equal(
        (size_t)(hdr[0] << 24 | hdr[1] << 16 | hdr[2] << 8 | hdr[3]), n - 4);
    assert_int_equal(frame_decode_evbuffer(buf, NULL, &out, err, sizeof(err)),
                     FRAME_OK);
    check_hello(out);
    assert_int_equal(evbuffer_get_length(buf), 0);
    frame_envelope_free(out);
    evbuffer_free(buf);
}

/* A stream delivers bytes in arbitrary pieces; decode only whole frames. */
static void
test_partial_then_two_frames(void **state)
{
    struct evbuffer *src = evbuffer_new(), *in = evbuffer_new();
    frame_envelope *out = NULL;
    Cloud__Agent__Heartbeat hb = CLOUD__AGENT__HEARTBEAT__INIT;
    frame_envelope env = CLOUD__AGENT__ENVELOPE__INIT;
    char err[256];
    uint8_t byte;
    int frames = 0;

    (void)state;
    assert_int_equal(frame_encode_evbuffer(src, make_hello()), 0);
    hb.session_epoch = 9;
    hb.seq = 42;
    env.msg_case = CLOUD__AGENT__ENVELOPE__MSG_HEARTBEAT;
    env.heartbeat = &hb;
    assert_int_equal(frame_encode_evbuffer(src, &env), 0);

    while (evbuffer_remove(src, &byte, 1) == 1) {
        enum frame_status st;

        evbuffer_add(in, &byte, 1);
        st = frame_decode_evbuffer(in, NULL, &out, err, sizeof(err));
        assert_int_not_equal(st, FRAME_ERROR);
        if (st == FRAME_NEED_MORE)
            continue;
        if (frames == 0) {
            check_hello(out);
        } else {
            assert_int_equal(out->msg_case,
                             CLOUD__AGENT__ENVELOPE__MSG_HEARTBEAT);
            assert_int_equal(out->heartbeat->seq, 42);
            assert_int_equal(out->heartbeat->session_epoch, 9);
        }
        frame_envelope_free(out);
        out = NULL;
        frames++;
        assert_int_equal(evbuffer_get_length(in), 0);
    }
    assert_int_equal(frames, 2);
    evbuffer_free(src);
    evbuffer_free(in);
}

/* A huge announced length is refused from the header alone, not awaited. */
static void
test_oversize_header_refused(void **state)
{
    struct evbuffer *in = evbuffer_new();
    uint8_t hdr[4] = {0xff, 0xff, 0xff, 0xff};
    frame_envelope *out = NULL;
    char err[256] = "";

    (void)state;
    evbuffer_add(in, hdr, 4);
    assert_int_equal(frame_decode_evbuffer(in, NULL, &out, err, sizeof(err)),
                     FRAME_ERROR);
    assert_null(out);
    assert_non_null(strstr(err, "4294967295 exceeds the maximum"));
    /* Nothing drained: the connection is to be closed. */
    assert_int_equal(evbuffer_get_length(in), 4);
    evbuffer_free(in);

    /* Exactly FRAME_MAX is allowed (and just waits for the bytes). */
    in = evbuffer_new();
    hdr[0] = (uint8_t)(FRAME_MAX >> 24);
    hdr[1] = (uint8_t)(FRAME_MAX >> 16);
    hdr[2] = (uint8_t)(FRAME_MAX >> 8);
    hdr[3] = (uint8_t)FRAME_MAX;
    evbuffer_add(in, hdr, 4);
    assert_int_equal(frame_decode_evbuffer(in, NULL, &out, err, sizeof(err)),
                     FRAME_NEED_MORE);
    evbuffer_free(in);
}

/* What one frame_decode_buf of buf[0..len) gave. */
struct decoded {
    enum frame_status status;
    frame_envelope *env; /* the caller frees it */
    size_t used;
    char err[256];
};

static struct decoded
decode(const uint8_t *buf, size_t len, const struct frame_limits *lim)
{
    struct decoded d = {.env = NULL};

    d.status =
        frame_decode_buf(buf, len, lim, &d.env, &d.used, d.err, sizeof(d.err));
    return d;
}

static void
test_custom_max(void **state)
{
    struct frame_limits lim = {.max_frame = 16};
    struct decoded d;
    uint8_t *buf = NULL;
    size_t len = 0;

    (void)state;
    assert_int_equal(frame_encode_buf(make_hello(), &buf, &len), 0);
    assert_true(len > 20);
    d = decode(buf, len, &lim);
    assert_int_equal(d.status, FRAME_ERROR);
    assert_non_null(strstr(d.err, "exceeds the maximum of 16 bytes"));
    d = decode(buf, len, NULL);
    assert_int_equal(d.status, FRAME_OK);
    assert_int_equal(d.used, len);
    check_hello(d.env);
    frame_envelope_free(d.env);
    /* A truncated buffer is "need more", never an error. */
    assert_int_equal(decode(buf, len - 1, NULL).status, FRAME_NEED_MORE);
    assert_int_equal(decode(buf, 3, NULL).status, FRAME_NEED_MORE);
    free(buf);
}

/*
 * Repeated empty sub-messages cost 2 bytes each on the wire but a pointer
 * plus a whole struct once unpacked: the budget stops that amplification.
 */
static void
test_alloc_budget(void **state)
{
    enum { N = 20000 };
    Cloud__Agent__DesiredState ds = CLOUD__AGENT__DESIRED_STATE__INIT;
    frame_envelope env = CLOUD__AGENT__ENVELOPE__INIT;
    Cloud__Agent__InstanceSpec *specs, **ptrs;
    struct frame_limits small = {.alloc_budget = 256 * 1024};
    struct decoded d;
    uint8_t *buf = NULL;
    size_t len = 0, i;

    (void)state;
    specs = xcalloc(N, sizeof(*specs));
    ptrs = xcalloc(N, sizeof(*ptrs));
    for (i = 0; i < N; i++) {
        Cloud__Agent__InstanceSpec init = CLOUD__AGENT__INSTANCE_SPEC__INIT;
        specs[i] = init;
        ptrs[i] = &specs[i];
    }
    ds.n_instances = N;
    ds.instances = ptrs;
    env.msg_case = CLOUD__AGENT__ENVELOPE__MSG_DESIRED_STATE;
    env.desired_state = &ds;
    assert_int_equal(frame_encode_buf(&env, &buf, &len), 0);
    assert_true(len < 64 * 1024); /* small on the wire ... */
    assert_true(N * sizeof(Cloud__Agent__InstanceSpec) > small.alloc_budget);

    d = decode(buf, len, &small);
    assert_int_equal(d.status, FRAME_ERROR);
    assert_null(d.env);
    assert_non_null(strstr(d.err, "allocation budget of 262144 bytes"));

    d = decode(buf, len, NULL);
    assert_int_equal(d.status, FRAME_OK);
    assert_int_equal(d.env->desired_state->n_instances, N);
    frame_envelope_free(d.env);
    free(buf);
    free(specs);
    free(ptrs);
}

static void
test_garbage_refused(void **state)
{
    /* Length 3, then field 1 as a length-delimited value running past the end.
     */
    const uint8_t bad[] = {0, 0, 0, 3, 0x0a, 0x7f, 0x01};
    struct decoded d = decode(bad, sizeof(bad), NULL);

    (void)state;
    assert_int_equal(d.status, FRAME_ERROR);
    assert_null(d.env);
    assert_non_null(strstr(d.err, "not a valid Envelope"));
}

/* A message type added later (unknown field) arrives as MSG__NOT_SET. */
static void
test_unknown_message_passes(void **state)
{
    /* Field 100, wire type 2, length 1, one byte. */
    const uint8_t fut[] = {0, 0, 0, 4, 0xa2, 0x06, 0x01, 0x00};
    const uint8_t empty[] = {0, 0, 0, 0};
    struct decoded d = decode(fut, sizeof(fut), NULL);

    (void)state;
    assert_int_equal(d.status, FRAME_OK);
    assert_int_equal(d.env->msg_case, CLOUD__AGENT__ENVELOPE__MSG__NOT_SET);
    assert_string_equal(frame_msg_name(d.env), "unknown");
    assert_int_equal(d.used, sizeof(fut));
    frame_envelope_free(d.env);

    d = decode(empty, sizeof(empty), NULL);
    assert_int_equal(d.status, FRAME_OK);
    assert_int_equal(d.used, 4);
    frame_envelope_free(d.env);
    frame_envelope_free(NULL);
}

/* The sender enforces the same maximum the receiver does. */
static void
test_encode_refuses_oversize(void **state)
{
    Cloud__Agent__LogChunk chunk = CLOUD__AGENT__LOG_CHUNK__INIT;
    frame_envelope env = CLOUD__AGENT__ENVELOPE__INIT;
    struct evbuffer *ev = evbuffer_new();
    uint8_t *buf = NULL;
    size_t len = 0;

    (void)state;
    chunk.data.len = FRAME_MAX;
    chunk.data.data = xcalloc(1, FRAME_MAX);
    env.msg_case = CLOUD__AGENT__ENVELOPE__MSG_LOG_CHUNK;
    env.log_chunk = &chunk;
    assert_int_equal(frame_encode_buf(&env, &buf, &len), -1);
    assert_null(buf);
    assert_int_equal(frame_encode_evbuffer(ev, &env), -1);
    assert_int_equal(evbuffer_get_length(ev), 0);

    chunk.data.len = FRAME_MAX - 64;
    assert_int_equal(frame_encode_evbuffer(ev, &env), 0);
    free(chunk.data.data);
    evbuffer_free(ev);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_evbuffer),
        cmocka_unit_test(test_partial_then_two_frames),
        cmocka_unit_test(test_oversize_header_refused),
        cmocka_unit_test(test_custom_max),
        cmocka_unit_test(test_alloc_budget),
        cmocka_unit_test(test_garbage_refused),
        cmocka_unit_test(test_unknown_message_passes),
        cmocka_unit_test(test_encode_refuses_oversize),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
