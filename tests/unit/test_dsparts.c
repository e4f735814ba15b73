/*
 * test_dsparts: the agent's assembly of a desired set from its parts
 * (agent/dsparts.c, agent.proto DesiredState.part/parts). Frames go through
 * the real codec (encoded, then decoded as the link decodes them), so the
 * envelopes are the ones the link hands over. What the link applies is the
 * whole set, in part order, once every part is in: never a partial set,
 * never parts of two sets mixed, and never more than the bounds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "dsparts.h"
#include "frame.h"
#include "mem.h"

/* A DesiredState frame as the link gets it: instances "<tag>-<first..>". */
static frame_envelope *
part_env(uint64_t session, uint64_t revision, uint32_t part, uint32_t parts,
         const char *tag, int first, int count, size_t env_bytes)
{
    frame_envelope env = CLOUD__AGENT__ENVELOPE__INIT;
    Cloud__Agent__DesiredState ds = CLOUD__AGENT__DESIRED_STATE__INIT;
    Cloud__Agent__InstanceSpec *specs, **pspecs;
    Cloud__Agent__InstanceSpec__EnvEntry *ee, **pee;
    char(*ids)[32];
    char *big = NULL;
    frame_envelope *out = NULL;
    uint8_t *buf = NULL;
    size_t len = 0, used = 0;
    char err[256];

    specs = xcalloc((size_t)count + 1, sizeof(*specs));
    pspecs = xcalloc((size_t)count + 1, sizeof(*pspecs));
    ee = xcalloc((size_t)count + 1, sizeof(*ee));
    pee = xcalloc((size_t)count + 1, sizeof(*pee));
    ids = xcalloc((size_t)count + 1, sizeof(*ids));
    if (env_bytes > 0) {
        big = xmalloc(env_bytes + 1);
        memset(big, 'x', env_bytes);
        big[env_bytes] = '\0';
    }
    for (int i = 0; i < count; i++) {
        cloud__agent__instance_spec__init(&specs[i]);
        snprintf(ids[i], sizeof(ids[i]), "%s-%d", tag, first + i);
        specs[i].id = ids[i];
        specs[i].name = ids[i];
        specs[i].generation = 1;
        if (big != NULL) {
            cloud__agent__instance_spec__env_entry__init(&ee[i]);
            ee[i].key = "BIG";
            ee[i].value = big;
            pee[i] = &ee[i];
            specs[i].n_env = 1;
            specs[i].env = &pee[i];
        }
        pspecs[i] = &specs[i];
    }
    ds.session_epoch = session;
    ds.revision = revision;
    ds.leader_epoch = 1;
    ds.part = part;
    ds.parts = parts;
    ds.n_instances = (size_t)count;
    ds.instances = pspecs;
    env.msg_case = CLOUD__AGENT__ENVELOPE__MSG_DESIRED_STATE;
    env.desired_state = &ds;
    assert_int_equal(frame_encode_buf(&env, &buf, &len), 0);
    assert_int_equal(
        frame_decode_buf(buf, len, NULL, &out, &used, err, sizeof(err)),
        FRAME_OK);
    assert_int_equal(used, len);
    free(buf);
    free(big);
    free(ids);
    free(pee);
    free(ee);
    free(pspecs);
    free(specs);
    return out;
}

static frame_envelope *
part_of(uint64_t revision, uint32_t part, uint32_t parts, int first, int count)
{
    return part_env(7, revision, part, parts, "i", first, count, 0);
}

/* The set's instance ids are tag-0 .. tag-(n-1), in that order. */
static void
assert_ids(const struct dsparts_set *s, const char *tag, size_t n)
{
    char want[32];

    assert_int_equal(s->n, n);
    for (size_t i = 0; i < n; i++) {
        snprintf(want, sizeof(want), "%s-%zu", tag, i);
        assert_string_equal(s->instances[i]->id, want);
    }
}

static struct dsparts *
new_default(void)
{
    return dsparts_new(DSPARTS_MAX, DSPARTS_BYTES_MAX, DSPARTS_MEM_MAX);
}

static enum dsparts_status
add(struct dsparts *a, frame_envelope *env, struct dsparts_set *set)
{
    char why[256] = "";
    enum dsparts_status st = dsparts_add(a, env, set, why, sizeof(why));

    if (st == DSPARTS_REFUSED)
        assert_true(why[0] != '\0');
    return st;
}

static void
test_one_frame_set_is_whole_at_once(void **state)
{
    struct dsparts *a = new_default();
    struct dsparts_set set;

    (void)state;
    /* parts unset: what a controller before parts sends */
    assert_int_equal(add(a, part_of(3, 0, 0, 0, 4), &set), DSPARTS_WHOLE);
    assert_int_equal(set.revision, 3);
    assert_ids(&set, "i", 4);
    dsparts_set_clear(&set);
    /* parts 1, part 0: the same */
    assert_int_equal(add(a, part_of(4, 0, 1, 0, 2), &set), DSPARTS_WHOLE);
    assert_int_equal(set.revision, 4);
    assert_ids(&set, "i", 2);
    dsparts_set_clear(&set);
    /* an empty set: every instance is to go */
    assert_int_equal(add(a, part_of(5, 0, 0, 0, 0), &set), DSPARTS_WHOLE);
    assert_int_equal(set.n, 0);
    dsparts_set_clear(&set);
    dsparts_free(a);
}

static void
test_parts_in_order_make_one_set(void **state)
{
    struct dsparts *a = new_default();
    struct dsparts_set set;

    (void)state;
    assert_int_equal(add(a, part_of(9, 0, 3, 0, 2), &set), DSPARTS_HELD);
    assert_int_equal(add(a, part_of(9, 1, 3, 2, 3), &set), DSPARTS_HELD);
    assert_int_equal(add(a, part_of(9, 2, 3, 5, 1), &set), DSPARTS_WHOLE);
    assert_int_equal(set.revision, 9);
    assert_int_equal(set.nenvs, 3);
    assert_ids(&set, "i", 6);
    dsparts_set_clear(&set);
    dsparts_free(a);
}

static void
test_parts_out_of_order_in_part_order(void **state)
{
    struct dsparts *a = new_default();
    struct dsparts_set set;

    (void)state;
    assert_int_equal(add(a, part_of(9, 2, 3, 5, 1), &set), DSPARTS_HELD);
    assert_int_equal(add(a, part_of(9, 0, 3, 0, 2), &set), DSPARTS_HELD);
    /* a repeated part is dropped, not counted twice */
    assert_int_equal(add(a, part_of(9, 0, 3, 0, 2), &set), DSPARTS_HELD);
    assert_int_equal(add(a, part_of(9, 1, 3, 2, 3), &set), DSPARTS_WHOLE);
    assert_ids(&set, "i", 6);
    dsparts_set_clear(&set);
    dsparts_free(a);
}

static void
test_newer_revision_discards_partial_set(void **state)
{
    struct dsparts *a = new_default();
    struct dsparts_set set;

    (void)state;
    assert_int_equal(add(a, part_of(5, 0, 2, 0, 1), &set), DSPARTS_HELD);
    /* revision 6 begins: revision 5 is gone, its later part is stale */
    assert_int_equal(add(a, part_of(6, 1, 2, 1, 1), &set), DSPARTS_HELD);
    assert_int_equal(add(a, part_of(5, 1, 2, 1, 1), &set), DSPARTS_HELD);
    assert_int_equal(add(a, part_of(6, 0, 2, 0, 1), &set), DSPARTS_WHOLE);
    assert_int_equal(set.revision, 6);
    assert_ids(&set, "i", 2);
    dsparts_set_clear(&set);
    /* a one-frame set drops a partial one too */
    assert_int_equal(add(a, part_of(7, 0, 2, 0, 1), &set), DSPARTS_HELD);
    assert_int_equal(add(a, part_of(8, 0, 0, 0, 3), &set), DSPARTS_WHOLE);
    assert_int_equal(set.revision, 8);
    dsparts_set_clear(&set);
    assert_int_equal(add(a, part_of(9, 1, 2, 1, 1), &set), DSPARTS_HELD);
    dsparts_free(a); /* frees the partial set */
}

static void
test_stale_part_keeps_partial_set(void **state)
{
    struct dsparts *a = new_default();
    struct dsparts_set set;

    (void)state;
    assert_int_equal(add(a, part_of(12, 0, 2, 0, 2), &set), DSPARTS_HELD);
    /* an older revision's parts neither complete nor disturb it */
    assert_int_equal(add(a, part_of(11, 1, 2, 2, 5), &set), DSPARTS_HELD);
    assert_int_equal(add(a, part_of(11, 0, 2, 0, 2), &set), DSPARTS_HELD);
    assert_int_equal(add(a, part_of(12, 1, 2, 2, 1), &set), DSPARTS_WHOLE);
    assert_int_equal(set.revision, 12);
    assert_ids(&set, "i", 3);
    dsparts_set_clear(&set);
    dsparts_free(a);
}

static void
test_another_session_discards_partial_set(void **state)
{
    struct dsparts *a = new_default();
    struct dsparts_set set;

    (void)state;
    assert_int_equal(add(a, part_env(1, 3, 0, 2, "old", 0, 1, 0), &set),
                     DSPARTS_HELD);
    /* same revision, new session: not part of the old set */
    assert_int_equal(add(a, part_env(2, 3, 1, 2, "new", 1, 1, 0), &set),
                     DSPARTS_HELD);
    assert_int_equal(add(a, part_env(2, 3, 0, 2, "new", 0, 1, 0), &set),
                     DSPARTS_WHOLE);
    assert_ids(&set, "new", 2);
    dsparts_set_clear(&set);
    /* dsparts_reset (the link went down) drops a partial set */
    assert_int_equal(add(a, part_env(2, 4, 0, 2, "x", 0, 1, 0), &set),
                     DSPARTS_HELD);
    dsparts_reset(a);
    assert_int_equal(add(a, part_env(2, 4, 1, 2, "x", 1, 1, 0), &set),
                     DSPARTS_HELD);
    dsparts_free(a);
}

static void
test_bounds_refuse_the_set(void **state)
{
    struct dsparts *a = dsparts_new(4, 64 * 1024, 1u << 30);
    struct dsparts_set set;

    (void)state;
    /* more parts than the bound: refused before anything is kept */
    assert_int_equal(add(a, part_of(2, 0, 5, 0, 1), &set), DSPARTS_REFUSED);
    /* the set's other parts are dropped without another refusal */
    assert_int_equal(add(a, part_of(2, 1, 5, 1, 1), &set), DSPARTS_HELD);
    /* a part number past the count */
    assert_int_equal(add(a, part_of(3, 2, 2, 0, 1), &set), DSPARTS_REFUSED);
    assert_int_equal(add(a, part_of(4, 1, 0, 0, 1), &set), DSPARTS_REFUSED);
    /* parts that disagree on the count */
    assert_int_equal(add(a, part_of(5, 0, 3, 0, 1), &set), DSPARTS_HELD);
    assert_int_equal(add(a, part_of(5, 1, 2, 1, 1), &set), DSPARTS_REFUSED);
    /* over the bytes: 3 parts of ~24 KiB fit 64 KiB only twice */
    assert_int_equal(add(a, part_env(7, 6, 0, 3, "b", 0, 1, 24000), &set),
                     DSPARTS_HELD);
    assert_int_equal(add(a, part_env(7, 6, 1, 3, "b", 1, 1, 24000), &set),
                     DSPARTS_HELD);
    assert_int_equal(add(a, part_env(7, 6, 2, 3, "b", 2, 1, 24000), &set),
                     DSPARTS_REFUSED);
    /* a part alone over the bytes */
    assert_int_equal(add(a, part_env(7, 7, 0, 2, "b", 0, 3, 24000), &set),
                     DSPARTS_REFUSED);
    /* a set within them still goes through */
    assert_int_equal(add(a, part_env(7, 8, 1, 2, "b", 1, 1, 24000), &set),
                     DSPARTS_HELD);
    assert_int_equal(add(a, part_env(7, 8, 0, 2, "b", 0, 1, 24000), &set),
                     DSPARTS_WHOLE);
    assert_ids(&set, "b", 2);
    assert_int_equal(strlen(set.instances[1]->env[0]->value), 24000);
    dsparts_set_clear(&set);
    dsparts_free(a);
}

static void
test_memory_bound_counts_unpacked_structures(void **state)
{
    /* 2,000 tiny instances: some 20 KB packed, far more unpacked */
    struct dsparts *a = dsparts_new(4, 1u << 30, 256 * 1024);
    struct dsparts_set set;

    (void)state;
    assert_int_equal(add(a, part_of(3, 0, 2, 0, 2000), &set), DSPARTS_REFUSED);
    assert_int_equal(add(a, part_of(4, 0, 2, 0, 100), &set), DSPARTS_HELD);
    assert_int_equal(add(a, part_of(4, 1, 2, 100, 100), &set), DSPARTS_WHOLE);
    assert_int_equal(set.n, 200);
    dsparts_set_clear(&set);
    dsparts_free(a);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_frame_set_is_whole_at_once),
        cmocka_unit_test(test_parts_in_order_make_one_set),
        cmocka_unit_test(test_parts_out_of_order_in_part_order),
        cmocka_unit_test(test_newer_revision_discards_partial_set),
        cmocka_unit_test(test_stale_part_keeps_partial_set),
        cmocka_unit_test(test_another_session_discards_partial_set),
        cmocka_unit_test(test_bounds_refuse_the_set),
        cmocka_unit_test(test_memory_bound_counts_unpacked_structures),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
