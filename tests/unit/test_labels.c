/*
 * test_labels: the label rules (keys, values, counts), the canonical form
 * the read cache keeps, and label selectors (parse, match, SQL form).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "labels.h"
#include "mem.h"

static void
test_keys_and_values(void **state)
{
    static const char *const good_keys[] = {
        "a",   "app",      "A.b_c-d", "example.com/team",
        "x/y", "k8s.io/a", "a1-b2",   "a.b-c.d/Name_1"};
    static const char *const bad_keys[] = {
        "",      "-a",   "a-",     "a b",      "/a",  "a/",   "A.com/x", "a//b",
        "a/b/c", ".a/x", "a..b/x", "-a.com/x", "a=b", "a\nb", "é"};
    static const char *const good_values[] = {"", "v", "1", "a.b_c-d", "V9"};
    static const char *const bad_values[] = {"-v",  "v-", "v w", "a=b",
                                             "a,b", "\n", "é"};
    char key64[65], pfx[300];

    (void)state;
    for (size_t i = 0; i < sizeof(good_keys) / sizeof(good_keys[0]); i++)
        assert_true(labels_key_ok(good_keys[i]));
    for (size_t i = 0; i < sizeof(bad_keys) / sizeof(bad_keys[0]); i++)
        if (labels_key_ok(bad_keys[i]))
            fail_msg("key \"%s\" was accepted", bad_keys[i]);
    for (size_t i = 0; i < sizeof(good_values) / sizeof(good_values[0]); i++)
        assert_true(labels_value_ok(good_values[i]));
    for (size_t i = 0; i < sizeof(bad_values) / sizeof(bad_values[0]); i++)
        if (labels_value_ok(bad_values[i]))
            fail_msg("value \"%s\" was accepted", bad_values[i]);
    /* 63 is the limit of a name and of a value. */
    memset(key64, 'a', 64);
    key64[64] = '\0';
    assert_false(labels_key_ok(key64));
    assert_false(labels_value_ok(key64));
    key64[63] = '\0';
    assert_true(labels_key_ok(key64));
    assert_true(labels_value_ok(key64));
    /* A prefix: DNS labels of at most 63, 253 in all. */
    snprintf(pfx, sizeof(pfx), "%s/x", key64);
    assert_true(labels_key_ok(pfx));
    snprintf(pfx, sizeof(pfx), "%sa/x", key64);
    assert_false(labels_key_ok(pfx));
    snprintf(pfx, sizeof(pfx), "%s.%s.%s.%.61s/x", key64, key64, key64, key64);
    assert_true(labels_key_ok(pfx)); /* 253 */
    snprintf(pfx, sizeof(pfx), "%s.%s.%s.%.62s/x", key64, key64, key64, key64);
    assert_false(labels_key_ok(pfx)); /* 254 */
}

static void
check_error(const char *json, const char *want_field)
{
    json_t *j = json_loads(json, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    char field[128], msg[320];

    assert_non_null(j);
    assert_int_equal(labels_check(j, field, sizeof(field), msg, sizeof(msg)),
                     -1);
    assert_string_equal(field, want_field);
    assert_true(strlen(msg) > 10);
    json_decref(j);
}

static void
test_check(void **state)
{
    json_t *many = json_object();
    char field[128], msg[320];

    (void)state;
    check_error("[]", "labels");
    check_error("\"a=b\"", "labels");
    check_error("{\"bad key\":\"x\"}", "labels");
    check_error("{\"ok\":1}", "labels.ok");
    check_error("{\"ok\":null}", "labels.ok");
    check_error("{\"ok\":\"-x\"}", "labels.ok");
    check_error("{\"ok\":\"a\\u0000b\"}", "labels.ok");
    for (int i = 0; i < LABELS_MAX; i++) {
        char k[16];
        snprintf(k, sizeof(k), "k%d", i);
        json_object_set_new(many, k, json_string("v"));
    }
    assert_int_equal(labels_check(many, field, sizeof(field), msg, sizeof(msg)),
                     0);
    json_object_set_new(many, "one-more", json_string("v"));
    assert_int_equal(labels_check(many, field, sizeof(field), msg, sizeof(msg)),
                     -1);
    assert_string_equal(field, "labels");
    json_decref(many);
}

static void
test_canon(void **state)
{
    json_t *j =
        json_loads("{\"z\":\"1\",\"a\":\"\",\"m.io/k\":\"v\"}", 0, NULL);
    char *c = labels_canon(j);

    (void)state;
    assert_string_equal(c, "\na=\nm.io/k=v\nz=1\n");
    free(c);
    json_decref(j);
    assert_null(labels_canon_text("{}"));
    assert_null(labels_canon_text(NULL));
    assert_null(labels_canon_text("not json"));
    c = labels_canon_text("{\"b\":\"2\",\"a\":\"1\"}");
    assert_string_equal(c, "\na=1\nb=2\n");
    free(c);
}

static int
sel_matches(const char *const *exprs, size_t n, const char *canon)
{
    struct label_sel s = {0};
    char msg[256];
    int r;

    for (size_t i = 0; i < n; i++)
        if (labels_sel_add(&s, exprs[i], msg, sizeof(msg)) < 0)
            fail_msg("selector \"%s\" refused: %s", exprs[i], msg);
    r = labels_sel_match(&s, canon);
    labels_sel_free(&s);
    return r;
}

static void
test_selectors(void **state)
{
    const char *canon = "\napp=web\nenv=prod\nexample.com/team=a\nempty=\n";
    static const char *const bad[] = {"",    "=x",  "k=v=w", "a,,b",
                                      ",",   "-k",  "k=-v",  "A.com/k=v",
                                      "k v", "k=v,"};
    struct label_sel s = {0};
    char msg[256], *eq = NULL, *keys = NULL;

    (void)state;
    assert_true(sel_matches((const char *[]){"app=web"}, 1, canon));
    assert_true(sel_matches((const char *[]){"app=web", "env=prod"}, 2, canon));
    assert_true(sel_matches((const char *[]){"app=web,env=prod"}, 1, canon));
    assert_true(sel_matches((const char *[]){"example.com/team=a"}, 1, canon));
    assert_true(sel_matches((const char *[]){"empty"}, 1, canon));
    assert_true(sel_matches((const char *[]){"empty="}, 1, canon));
    assert_true(sel_matches((const char *[]){"app"}, 1, canon));
    assert_false(sel_matches((const char *[]){"app=we"}, 1, canon));
    assert_false(sel_matches((const char *[]){"ap"}, 1, canon));
    assert_false(sel_matches((const char *[]){"pp=web"}, 1, canon));
    assert_false(sel_matches((const char *[]){"team=a"}, 1, canon));
    assert_false(sel_matches((const char *[]){"app=web", "env=dev"}, 2, canon));
    assert_false(sel_matches((const char *[]){"app=web", "app=db"}, 2, canon));
    assert_false(sel_matches((const char *[]){"app"}, 1, NULL));
    /* No selector matches everything, labels or not. */
    assert_true(labels_sel_match(NULL, NULL));
    assert_true(labels_sel_match(&s, NULL));
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct label_sel b = {0};
        if (labels_sel_add(&b, bad[i], msg, sizeof(msg)) == 0)
            fail_msg("selector \"%s\" accepted", bad[i]);
        labels_sel_free(&b);
    }
    for (int i = 0; i < LABEL_SEL_MAX; i++)
        assert_int_equal(labels_sel_add(&s, "k", msg, sizeof(msg)), 0);
    assert_int_equal(labels_sel_add(&s, "k", msg, sizeof(msg)), -1);
    labels_sel_free(&s);
    /* The SQL form: equality terms as an object, bare keys as an array. */
    assert_int_equal(labels_sel_add(&s, "app=web,tier", msg, sizeof(msg)), 0);
    labels_sel_sql(&s, &eq, &keys);
    assert_string_equal(eq, "{\"app\":\"web\"}");
    assert_string_equal(keys, "[\"tier\"]");
    free(eq);
    free(keys);
    assert_int_equal(labels_sel_add(&s, "app=db", msg, sizeof(msg)), 0);
    labels_sel_sql(&s, &eq, &keys);
    /* One key, two values: a value no label can hold, so nothing matches. */
    assert_string_equal(eq, "{\"app\":\"\\n\"}");
    free(eq);
    free(keys);
    labels_sel_free(&s);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keys_and_values),
        cmocka_unit_test(test_check),
        cmocka_unit_test(test_canon),
        cmocka_unit_test(test_selectors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
