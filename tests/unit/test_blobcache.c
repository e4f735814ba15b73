/*
 * test_blobcache: the agent's image cache (agent/blobcache.c) without a
 * controller: which blobs eviction picks, and a whole fetch driven by
 * hand-made BlobChunks (verified rename, corrupt data refused, one fetch
 * shared by two askers, unknown digest).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>
#include <openssl/evp.h>

#include "blobcache.h"
#include "mem.h"

static void
test_pick_none_under_limit(void **state)
{
    struct blobcache_file f[2] = {
        {"sha256:a", 100, 1, false},
        {"sha256:b", 100, 2, false},
    };
    bool v[2];

    (void)state;
    assert_int_equal(blobcache_pick_victims(f, 2, 200, v), 0);
    assert_false(v[0]);
    assert_false(v[1]);
}

static void
test_pick_lru_unreferenced(void **state)
{
    struct blobcache_file f[4] = {
        {"sha256:old-ref", 100, 1, true},
        {"sha256:old", 100, 2, false},
        {"sha256:mid", 100, 3, false},
        {"sha256:new", 100, 4, false},
    };
    bool v[4];

    (void)state;
    /* 400 bytes, limit 250: the two oldest unreferenced go. */
    assert_int_equal(blobcache_pick_victims(f, 4, 250, v), 2);
    assert_false(v[0]);
    assert_true(v[1]);
    assert_true(v[2]);
    assert_false(v[3]);
}

static void
test_pick_referenced_never(void **state)
{
    struct blobcache_file f[2] = {
        {"sha256:a", 1000, 1, true},
        {"sha256:b", 1000, 2, true},
    };
    bool v[2];

    (void)state;
    assert_int_equal(blobcache_pick_victims(f, 2, 0, v), 0);
    assert_false(v[0]);
    assert_false(v[1]);
}

/* ---- fetches against a recorded "controller" -------------------------- */

struct sent {
    int n;
    uint64_t id[16];
    uint64_t offset[16];
    bool cancel[16];
    char digest[16][72];
};

static int
rec_send(void *arg, const frame_envelope *env)
{
    struct sent *s = arg;

    assert_int_equal(env->msg_case, CLOUD__AGENT__ENVELOPE__MSG_BLOB_REQUEST);
    assert_true(s->n < 16);
    s->id[s->n] = env->blob_request->request_id;
    s->offset[s->n] = env->blob_request->offset;
    s->cancel[s->n] = env->blob_request->cancel;
    snprintf(s->digest[s->n], 72, "%s", env->blob_request->digest);
    s->n++;
    return 0;
}

static int kicks;

static void
count_kick(void *arg)
{
    (void)arg;
    kicks++;
}

static void
digest_of(const void *data, size_t len, char out[72])
{
    unsigned char md[32];
    unsigned int mdlen = 0;

    assert_int_equal(EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL), 1);
    memcpy(out, "sha256:", 7);
    for (unsigned i = 0; i < 32; i++)
        snprintf(out + 7 + 2 * i, 3, "%02x", md[i]);
}

static void
chunk(struct blobcache *bc, uint64_t id, uint64_t off, const void *data,
      size_t len, uint64_t total, int eof, const char *err)
{
    Cloud__Agent__BlobChunk ch = CLOUD__AGENT__BLOB_CHUNK__INIT;

    ch.request_id = id;
    ch.offset = off;
    ch.data.data = (uint8_t *)data;
    ch.data.len = len;
    ch.total_size = total;
    ch.eof = eof;
    ch.error = (char *)(err ? err : "");
    blobcache_on_chunk(bc, &ch);
}

static void
test_fetch(void **state)
{
    char dir[] = "/tmp/test_blobcache.XXXXXX";
    struct event_base *base = event_base_new();
    struct blobcache_opts o = {.max_bytes = 1 << 20};
    struct sent sent;
    struct blobcache *bc;
    struct worker_spec spec;
    char good[72], bad[72], why[256], *path = NULL, *want;
    static const char data[] = "a kernel, in two pieces";
    struct stat st;

    (void)state;
    memset(&sent, 0, sizeof(sent));
    assert_non_null(mkdtemp(dir));
    o.dir = dir;
    bc = blobcache_new(base, &o, rec_send, &sent);
    assert_non_null(bc);
    blobcache_set_kick(bc, count_kick, NULL);
    digest_of(data, sizeof(data), good);
    digest_of("other", 5, bad);

    /* The worker asks first: "fetching", nothing sent while the link is
     * down; two askers, one entry. */
    assert_int_equal(blobcache_resolve(bc, good, &path, why, sizeof(why)), 0);
    assert_non_null(strstr(why, "fetching image sha256:"));
    assert_int_equal(blobcache_resolve(bc, good, &path, why, sizeof(why)), 0);
    assert_int_equal(sent.n, 0);
    blobcache_link_up(bc);
    assert_int_equal(sent.n, 1);
    assert_string_equal(sent.digest[0], good);
    assert_int_equal(sent.offset[0], 0);

    /* First piece, then the link drops: the fetch resumes at 10. */
    chunk(bc, sent.id[0], 0, data, 10, sizeof(data), 0, NULL);
    blobcache_link_down(bc);
    blobcache_link_up(bc);
    assert_int_equal(sent.n, 2);
    assert_int_equal(sent.offset[1], 10);
    /* A late chunk of the old request is ignored. */
    chunk(bc, sent.id[0], 10, data + 10, 5, sizeof(data), 0, NULL);
    chunk(bc, sent.id[1], 10, data + 10, sizeof(data) - 10, sizeof(data), 1,
          NULL);
    assert_int_equal(blobcache_fetched(bc), 1);
    assert_true(kicks >= 1);
    assert_int_equal(blobcache_resolve(bc, good, &path, why, sizeof(why)), 1);
    want = xasprintf("%s/%s", dir, good);
    assert_string_equal(path, want);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, sizeof(data));
    free(path);
    path = NULL;

    /* Bytes that do not hash to the digest: failed, nothing kept. */
    memset(&spec, 0, sizeof(spec));
    spec.id = "i1";
    spec.desired = WORKER_RUN;
    spec.kernel_digest = bad;
    blobcache_note_set(bc, &spec, 1); /* prefetch */
    assert_int_equal(sent.n, 3);
    assert_string_equal(sent.digest[2], bad);
    chunk(bc, sent.id[2], 0, data, sizeof(data), sizeof(data), 1, NULL);
    assert_int_equal(blobcache_resolve(bc, bad, &path, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "corrupt"));
    free(want);
    want = xasprintf("%s/%s", dir, bad);
    assert_int_not_equal(access(want, F_OK), 0);

    /* The controller does not have it: its error becomes the reason. */
    spec.kernel_digest = good; /* present: no request */
    blobcache_note_set(bc, &spec, 1);
    assert_int_equal(sent.n, 3);

    /* Eviction: a 1-byte limit removes what the set does not use. */
    bc = (blobcache_free(bc), NULL);
    o.max_bytes = 1;
    bc = blobcache_new(base, &o, rec_send, &sent);
    assert_non_null(bc);
    assert_int_equal(blobcache_evict(bc), 0); /* no set yet: keep all */
    blobcache_note_set(bc, &spec, 1);         /* references good */
    assert_int_equal(blobcache_evict(bc), 0);
    spec.desired = WORKER_DELETE;
    blobcache_note_set(bc, &spec, 1);
    assert_int_equal(blobcache_evict(bc), 1);
    free(want);
    want = xasprintf("%s/%s", dir, good);
    assert_int_not_equal(access(want, F_OK), 0);
    free(want);

    blobcache_free(bc);
    event_base_free(base);
    rmdir(dir);
}

static void
test_unknown_digest(void **state)
{
    char dir[] = "/tmp/test_blobcache.XXXXXX";
    struct event_base *base = event_base_new();
    struct blobcache_opts o = {.max_bytes = 1 << 20};
    struct sent sent;
    struct blobcache *bc;
    char d[72], why[512], *path = NULL;

    (void)state;
    memset(&sent, 0, sizeof(sent));
    assert_non_null(mkdtemp(dir));
    o.dir = dir;
    bc = blobcache_new(base, &o, rec_send, &sent);
    digest_of("nothing", 7, d);
    blobcache_link_up(bc);
    assert_int_equal(blobcache_resolve(bc, d, &path, why, sizeof(why)), 0);
    /* the loop picks the wish up from the eventfd */
    event_base_loop(base, EVLOOP_NONBLOCK);
    assert_int_equal(sent.n, 1);
    chunk(bc, sent.id[0], 0, NULL, 0, 0, 1, "blob is not in this controller's blob store");
    assert_int_equal(blobcache_resolve(bc, d, &path, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "not in this controller's blob store"));
    assert_int_equal(blobcache_resolve(bc, "sha256:xyz", &path, why,
                                       sizeof(why)),
                     -1);
    blobcache_free(bc);
    event_base_free(base);
    rmdir(dir);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pick_none_under_limit),
        cmocka_unit_test(test_pick_lru_unreferenced),
        cmocka_unit_test(test_pick_referenced_never),
        cmocka_unit_test(test_fetch),
        cmocka_unit_test(test_unknown_digest),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
