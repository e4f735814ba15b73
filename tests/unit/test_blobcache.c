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
#include "digest.h"
#include "mem.h"

/* Runs the pick on f[0..n) with limit; want has 'x' for each victim and
 * '-' for each file kept. */
static void
check_pick(const struct blobcache_file *f, size_t n, uint64_t limit,
           const char *want)
{
    bool v[8];
    size_t victims = 0;

    assert_true(n <= 8 && strlen(want) == n);
    for (size_t i = 0; i < n; i++)
        victims += want[i] == 'x';
    assert_int_equal(blobcache_pick_victims(f, n, limit, v), victims);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(v[i], want[i] == 'x');
}

static void
test_pick_victims(void **state)
{
    /* Under the limit: none. */
    struct blobcache_file under[] = {
        {"sha256:a", 100, 1, false},
        {"sha256:b", 100, 2, false},
    };
    /* 400 bytes, limit 250: the two oldest unreferenced go. */
    struct blobcache_file lru[] = {
        {"sha256:old-ref", 100, 1, true},
        {"sha256:old", 100, 2, false},
        {"sha256:mid", 100, 3, false},
        {"sha256:new", 100, 4, false},
    };
    /* Referenced files never go, whatever the limit. */
    struct blobcache_file referenced[] = {
        {"sha256:a", 1000, 1, true},
        {"sha256:b", 1000, 2, true},
    };

    (void)state;
    check_pick(under, 2, 200, "--");
    check_pick(lru, 4, 250, "-xx-");
    check_pick(referenced, 2, 0, "--");
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
digest_of(const void *data, size_t len, char out[DIGEST_TEXT_SIZE])
{
    unsigned char md[DIGEST_LEN];
    unsigned int mdlen = 0;

    assert_int_equal(EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL), 1);
    assert_int_equal(mdlen, DIGEST_LEN);
    digest_format(md, out);
}

/* A cache in a fresh directory, its loop and what it sent. */
struct fixture {
    char dir[32];
    struct event_base *base;
    struct blobcache_opts o;
    struct sent sent;
    struct blobcache *bc;
};

/* cmocka teardown and setup: *state is the fixture. */
static int
fixture_teardown(void **state)
{
    struct fixture *x = *state;

    blobcache_free(x->bc);
    event_base_free(x->base);
    /* Nothing left behind: no partial download, no evicted blob. */
    assert_int_equal(rmdir(x->dir), 0);
    free(x);
    return 0;
}

static int
fixture_setup(void **state)
{
    struct fixture *x = xcalloc(1, sizeof(*x));

    snprintf(x->dir, sizeof(x->dir), "/tmp/test_blobcache.XXXXXX");
    assert_non_null(mkdtemp(x->dir));
    x->base = event_base_new();
    assert_non_null(x->base);
    x->o.dir = x->dir;
    x->o.max_bytes = 1 << 20;
    x->bc = blobcache_new(x->base, &x->o, rec_send, &x->sent);
    assert_non_null(x->bc);
    *state = x;
    return 0;
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
    struct fixture *x = *state;
    struct worker_spec spec;
    char good[72], bad[72], why[256], *path = NULL, *want;
    static const char data[] = "a kernel, in two pieces";
    struct stat st;

    blobcache_set_kick(x->bc, count_kick, NULL);
    digest_of(data, sizeof(data), good);
    digest_of("other", 5, bad);

    /* The worker asks first: "fetching", nothing sent while the link is
     * down; two askers, one entry. */
    assert_int_equal(blobcache_resolve(x->bc, good, &path, why, sizeof(why)),
                     0);
    assert_non_null(strstr(why, "fetching image sha256:"));
    assert_int_equal(blobcache_resolve(x->bc, good, &path, why, sizeof(why)),
                     0);
    assert_int_equal(x->sent.n, 0);
    blobcache_link_up(x->bc);
    assert_int_equal(x->sent.n, 1);
    assert_string_equal(x->sent.digest[0], good);
    assert_int_equal(x->sent.offset[0], 0);

    /* First piece, then the link drops: the fetch resumes at 10. */
    chunk(x->bc, x->sent.id[0], 0, data, 10, sizeof(data), 0, NULL);
    blobcache_link_down(x->bc);
    blobcache_link_up(x->bc);
    assert_int_equal(x->sent.n, 2);
    assert_int_equal(x->sent.offset[1], 10);
    /* A late chunk of the old request is ignored. */
    chunk(x->bc, x->sent.id[0], 10, data + 10, 5, sizeof(data), 0, NULL);
    chunk(x->bc, x->sent.id[1], 10, data + 10, sizeof(data) - 10, sizeof(data),
          1, NULL);
    assert_int_equal(blobcache_fetched(x->bc), 1);
    assert_true(kicks >= 1);
    assert_int_equal(blobcache_resolve(x->bc, good, &path, why, sizeof(why)),
                     1);
    want = xasprintf("%s/%s", x->dir, good);
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
    blobcache_note_set(x->bc, &spec, 1); /* prefetch */
    assert_int_equal(x->sent.n, 3);
    assert_string_equal(x->sent.digest[2], bad);
    chunk(x->bc, x->sent.id[2], 0, data, sizeof(data), sizeof(data), 1, NULL);
    assert_int_equal(blobcache_resolve(x->bc, bad, &path, why, sizeof(why)),
                     -1);
    assert_non_null(strstr(why, "corrupt"));
    free(want);
    want = xasprintf("%s/%s", x->dir, bad);
    assert_int_not_equal(access(want, F_OK), 0);

    /* The controller does not have it: its error becomes the reason. */
    spec.kernel_digest = good; /* present: no request */
    blobcache_note_set(x->bc, &spec, 1);
    assert_int_equal(x->sent.n, 3);

    /* Eviction: a 1-byte limit removes what the set does not use. */
    x->bc = (blobcache_free(x->bc), NULL);
    x->o.max_bytes = 1;
    x->bc = blobcache_new(x->base, &x->o, rec_send, &x->sent);
    assert_non_null(x->bc);
    assert_int_equal(blobcache_evict(x->bc), 0); /* no set yet: keep all */
    blobcache_note_set(x->bc, &spec, 1);         /* references good */
    assert_int_equal(blobcache_evict(x->bc), 0);
    spec.desired = WORKER_DELETE;
    blobcache_note_set(x->bc, &spec, 1);
    assert_int_equal(blobcache_evict(x->bc), 1);
    free(want);
    want = xasprintf("%s/%s", x->dir, good);
    assert_int_not_equal(access(want, F_OK), 0);
    free(want);
}

static void
test_unknown_digest(void **state)
{
    struct fixture *x = *state;
    char d[72], why[512], *path = NULL;

    digest_of("nothing", 7, d);
    blobcache_link_up(x->bc);
    assert_int_equal(blobcache_resolve(x->bc, d, &path, why, sizeof(why)), 0);
    /* the loop picks the wish up from the eventfd */
    event_base_loop(x->base, EVLOOP_NONBLOCK);
    assert_int_equal(x->sent.n, 1);
    chunk(x->bc, x->sent.id[0], 0, NULL, 0, 0, 1,
          "blob is not in this controller's blob store");
    assert_int_equal(blobcache_resolve(x->bc, d, &path, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "not in this controller's blob store"));
    assert_int_equal(
        blobcache_resolve(x->bc, "sha256:xyz", &path, why, sizeof(why)), -1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pick_victims),
        cmocka_unit_test_setup_teardown(test_fetch, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_unknown_digest, fixture_setup,
                                        fixture_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
