/*
 * Unit tests for controller/validate.c: names, restart policies, constraint
 * syntax, image refs, JSON depth, and the request bodies with their
 * defaults and field-naming errors.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "validate.h"

static json_t *
parse(const char *s)
{
    json_error_t e;
    json_t *j = json_loads(s, 0, &e);
    assert_non_null(j);
    return j;
}

static void
test_names(void **state)
{
    (void)state;
    assert_int_equal(validate_name("web"), 0);
    assert_int_equal(validate_name("a"), 0);
    assert_int_equal(validate_name("web-1"), 0);
    assert_int_equal(validate_name("0abc9"), 0);
    assert_int_equal(validate_name(""), -1);
    assert_int_equal(validate_name("-web"), -1);
    assert_int_equal(validate_name("web-"), -1);
    assert_int_equal(validate_name("Web"), -1);
    assert_int_equal(validate_name("we_b"), -1);
    assert_int_equal(validate_name("<script>"), -1);
    assert_int_equal(validate_name("a'; DROP TABLE x;--"), -1);
    /* 63 characters is the limit */
    assert_int_equal(validate_name("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"), 0);
    assert_int_equal(validate_name("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"), -1);
}

static void
test_restart(void **state)
{
    (void)state;
    assert_int_equal(validate_restart("never"), 0);
    assert_int_equal(validate_restart("always"), 0);
    assert_int_equal(validate_restart("on-failure"), 0);
    assert_int_equal(validate_restart("on-failure:3"), 0);
    assert_int_equal(validate_restart("on-failure:1000"), 0);
    assert_int_equal(validate_restart("on-failure:0"), -1);
    assert_int_equal(validate_restart("on-failure:1001"), -1);
    assert_int_equal(validate_restart("on-failure:"), -1);
    assert_int_equal(validate_restart("on-failure:x"), -1);
    assert_int_equal(validate_restart("sometimes"), -1);
}

static void
test_constraints(void **state)
{
    char msg[200];

    (void)state;
    assert_int_equal(validate_constraint("zone=a", msg, sizeof(msg)), 0);
    assert_int_equal(validate_constraint("disk!=hdd", msg, sizeof(msg)), 0);
    assert_int_equal(validate_constraint("rack in (r1,r2)", msg, sizeof(msg)), 0);
    assert_int_equal(validate_constraint("rack in ( r1 , r2 )", msg, sizeof(msg)), 0);
    assert_int_equal(validate_constraint("zone = a", msg, sizeof(msg)), 0);
    assert_int_equal(validate_constraint("zone", msg, sizeof(msg)), -1);
    assert_non_null(strstr(msg, "key=value"));
    assert_int_equal(validate_constraint("=a", msg, sizeof(msg)), -1);
    assert_int_equal(validate_constraint("zone=", msg, sizeof(msg)), -1);
    assert_int_equal(validate_constraint("rack in ()", msg, sizeof(msg)), -1);
    assert_int_equal(validate_constraint("rack in (a,)", msg, sizeof(msg)), -1);
    assert_int_equal(validate_constraint("rack in (a", msg, sizeof(msg)), -1);
    assert_int_equal(validate_constraint("rack in (a) x", msg, sizeof(msg)), -1);
}

static void
test_image_refs(void **state)
{
    (void)state;
    assert_int_equal(validate_image_ref("hello"), 0);
    assert_int_equal(validate_image_ref("hello:latest"), 0);
    assert_int_equal(validate_image_ref("my.img_1:v1.2"), 0);
    assert_int_equal(validate_image_ref("sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"), 0);
    assert_int_equal(validate_image_ref("sha256:0123"), -1);
    assert_int_equal(validate_image_ref("Hello"), -1);
    assert_int_equal(validate_image_ref(":tag"), -1);
    assert_int_equal(validate_image_ref("a:"), -1);
    assert_int_equal(validate_image_ref("a:b:c"), -1);
    assert_int_equal(validate_image_ref(""), -1);
}

static void
test_depth(void **state)
{
    (void)state;
    assert_int_equal(validate_json_depth("{\"a\":[1,{\"b\":2}]}", 17, 3), 0);
    assert_int_equal(validate_json_depth("[[[[1]]]]", 9, 3), -1);
    /* brackets inside strings do not count */
    assert_int_equal(validate_json_depth("{\"a\":\"[[[[[\"}", 13, 1), 0);
    assert_int_equal(validate_json_depth("{\"a\":\"\\\"[[[[\"}", 14, 1), 0);
}

static void
test_service_defaults(void **state)
{
    struct verr e;
    json_t *in = parse("{\"name\":\"web\",\"image\":\"hello\"}");
    json_t *out = validate_service_create(in, &e);

    (void)state;
    assert_non_null(out);
    assert_string_equal(json_string_value(json_object_get(out, "restart")), "always");
    assert_int_equal(json_integer_value(json_object_get(out, "replicas")), 1);
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(out, "resources"), "memory_mib")),
                     256);
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(out, "resources"), "vcpus")),
                     1);
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(out, "placement"), "strategy")),
                        "spread");
    assert_string_equal(json_string_value(json_object_get(out, "partition_policy")), "keep");
    assert_string_equal(json_string_value(json_object_get(out, "ready_when")), "running");
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(out, "rollout"), "max_surge")),
                     1);
    assert_true(json_is_array(json_object_get(out, "links")));
    json_decref(in);
    json_decref(out);
}

/* A body that must fail, naming field. */
static void
expect_invalid(json_t *(*fn)(json_t *, struct verr *), const char *body,
               const char *field)
{
    struct verr e;
    json_t *in = parse(body);
    json_t *out = fn(in, &e);

    if (out != NULL)
        fail_msg("accepted %s", body);
    assert_string_equal(e.field, field);
    assert_true(strlen(e.message) > 0);
    json_decref(in);
}

static void
test_service_invalid(void **state)
{
    (void)state;
    expect_invalid(validate_service_create, "{\"image\":\"hello\"}", "name");
    expect_invalid(validate_service_create, "{\"name\":\"Web\",\"image\":\"hello\"}", "name");
    expect_invalid(validate_service_create, "{\"name\":\"web\"}", "image");
    expect_invalid(validate_service_create, "{\"name\":\"web\",\"image\":\"hello\",\"bogus\":1}", "bogus");
    expect_invalid(validate_service_create, "{\"name\":\"web\",\"image\":\"hello\",\"resources\":{\"vcpus\":0}}", "resources.vcpus");
    expect_invalid(validate_service_create, "{\"name\":\"web\",\"image\":\"hello\",\"resources\":{\"memory_mib\":\"1G\"}}", "resources.memory_mib");
    expect_invalid(validate_service_create, "{\"name\":\"web\",\"image\":\"hello\",\"resources\":{\"gpus\":1}}", "resources.gpus");
    expect_invalid(validate_service_create, "{\"name\":\"web\",\"image\":\"hello\",\"restart\":\"sometimes\"}", "restart");
    expect_invalid(validate_service_create, "{\"name\":\"web\",\"image\":\"hello\",\"replicas\":-1}", "replicas");
    expect_invalid(validate_service_create, "{\"name\":\"web\",\"image\":\"hello\",\"replicas\":10001}", "replicas");
    expect_invalid(validate_service_create, "{\"name\":\"web\",\"image\":\"hello\",\"placement\":{\"constraints\":[\"zone\"]}}", "placement.constraints[0]");
    expect_invalid(validate_service_create, "{\"name\":\"web\",\"image\":\"hello\",\"placement\":{\"strategy\":\"random\"}}", "placement.strategy");
    expect_invalid(validate_service_create, "{\"name\":\"web\",\"image\":\"hello\",\"ports\":[{\"port\":0}]}", "ports[0].port");
    expect_invalid(validate_service_create, "{\"name\":\"web\",\"image\":\"hello\",\"ports\":[{\"name\":\"http\"}]}", "ports[0]");
    expect_invalid(validate_service_create, "{\"name\":\"web\",\"image\":\"hello\",\"env\":{\"1X\":\"v\"}}", "env");
    expect_invalid(validate_service_create, "{\"name\":\"web\",\"image\":\"hello\",\"links\":[\"Bad\"]}", "links[0]");
    expect_invalid(validate_service_create, "{\"name\":\"web\",\"image\":\"hello\",\"args\":[1]}", "args[0]");
    expect_invalid(validate_service_create, "{\"name\":\"web\",\"image\":\"hello\",\"partition_policy\":\"maybe\"}", "partition_policy");
    expect_invalid(validate_service_create, "{\"name\":\"web\",\"image\":\"hello\",\"ready_when\":\"ready\"}", "ready_when");
    expect_invalid(validate_service_patch, "{\"ready_when\":true}", "ready_when");
    expect_invalid(validate_service_patch, "{\"name\":\"other\"}", "name");
    expect_invalid(validate_instance_create, "{\"image\":\"hello\",\"replicas\":2}", "replicas");
}

/* args and env limits (common/cmdline.h), checked where they enter. */
static void
test_args_env_limits(void **state)
{
    struct verr e;
    json_t *in, *out;
    char key[16];

    (void)state;
    expect_invalid(validate_service_create, "{\"name\":\"web\",\"image\":\"hello\",\"args\":[\"a\",\"b\\\"c\"]}", "args[1]");
    expect_invalid(validate_instance_create, "{\"image\":\"hello\",\"args\":[\"a\\u0001\"]}", "args[0]");
    expect_invalid(validate_service_patch, "{\"args\":[\"\\t\"]}", "args[0]");
    /* 256 args (the count limit): 255 of one letter, one of 511 bytes. */
    in = json_pack("{s:s, s:[]}", "image", "hello", "args");
    for (int i = 0; i < 255; i++)
        json_array_append_new(json_object_get(in, "args"), json_string("a"));
    {
        char big[600];

        memset(big, 'b', 511);
        big[511] = '\0';
        json_array_append_new(json_object_get(in, "args"), json_string(big));
    }
    /* 255 + 511 + 255 spaces = 1021 and 1022 ("aa") fit; "a a", quoted
     * 5 bytes instead of 1, makes 1026. */
    out = validate_instance_create(in, &e);
    assert_non_null(out);
    json_decref(out);
    json_string_set(json_array_get(json_object_get(in, "args"), 0), "aa");
    out = validate_instance_create(in, &e);
    assert_non_null(out);
    json_decref(out);
    json_string_set(json_array_get(json_object_get(in, "args"), 1), "a a");
    assert_null(validate_instance_create(in, &e));
    assert_string_equal(e.field, "args");
    assert_non_null(strstr(e.message, "1026 bytes"));
    json_decref(in);
    /* env: 16384 bytes of names and values at most. */
    in = json_pack("{s:s, s:{}}", "image", "hello", "env");
    for (int i = 0; i < 4; i++) {
        char v[4096];

        memset(v, 'v', 4093);
        v[4093] = '\0';
        snprintf(key, sizeof(key), "K%02d", i);
        json_object_set_new(json_object_get(in, "env"), key, json_string(v));
    }
    out = validate_instance_create(in, &e);
    assert_non_null(out);
    json_decref(out);
    json_object_set_new(json_object_get(in, "env"), "X", json_string(""));
    assert_null(validate_instance_create(in, &e));
    assert_string_equal(e.field, "env");
    assert_non_null(strstr(e.message, "16385"));
    json_decref(in);
    /* An image cmdline of 1025 bytes leaves no room for the args. */
    in = json_pack("{s:s, s:s, s:s, s:s}", "name", "img", "kind", "kernel",
                   "kernel", "sha256:0000000000000000000000000000000000000000000000000000000000000000",
                   "cmdline", "");
    {
        char c[1100];

        memset(c, 'c', 1025);
        c[1025] = '\0';
        json_object_set_new(in, "cmdline", json_string(c));
        assert_null(validate_image_create(in, &e));
        assert_string_equal(e.field, "cmdline");
        c[1024] = '\0';
        json_object_set_new(in, "cmdline", json_string(c));
        out = validate_image_create(in, &e);
        assert_non_null(out);
        json_decref(out);
    }
    json_decref(in);
}

static void
test_service_patch_partial(void **state)
{
    struct verr e;
    json_t *in = parse("{\"resources\":{\"memory_mib\":512},\"replicas\":3}");
    json_t *out = validate_service_patch(in, &e);
    json_t *res;

    (void)state;
    assert_non_null(out);
    res = json_object_get(out, "resources");
    assert_int_equal(json_object_size(res), 1);
    assert_int_equal(json_integer_value(json_object_get(res, "memory_mib")), 512);
    assert_null(json_object_get(out, "restart"));
    assert_null(json_object_get(out, "image"));
    assert_null(json_object_get(out, "ready_when"));
    json_decref(in);
    json_decref(out);
    in = parse("{\"ready_when\":\"guest\"}");
    out = validate_service_patch(in, &e);
    assert_non_null(out);
    assert_string_equal(json_string_value(json_object_get(out, "ready_when")), "guest");
    json_decref(in);
    json_decref(out);
}

static void
test_instance_defaults(void **state)
{
    struct verr e;
    json_t *in = parse("{\"image\":\"hello:v1\",\"args\":[\"-x\"]}");
    json_t *out = validate_instance_create(in, &e);

    (void)state;
    assert_non_null(out);
    assert_string_equal(json_string_value(json_object_get(out, "restart")), "never");
    assert_null(json_object_get(out, "name"));
    assert_int_equal(json_array_size(json_object_get(out, "args")), 1);
    json_decref(in);
    json_decref(out);
}

static void
test_kill(void **state)
{
    struct verr e;
    const char *sig;
    int grace;
    json_t *in;

    (void)state;
    assert_int_equal(validate_kill(NULL, &sig, &grace, &e), 0);
    assert_string_equal(sig, "TERM");
    assert_int_equal(grace, 0);
    in = parse("{\"signal\":\"SIGKILL\"}");
    assert_int_equal(validate_kill(in, &sig, &grace, &e), 0);
    assert_string_equal(sig, "KILL");
    json_decref(in);
    in = parse("{\"signal\":\"HUP\"}");
    assert_int_equal(validate_kill(in, &sig, &grace, &e), -1);
    assert_string_equal(e.field, "signal");
    json_decref(in);
    in = parse("{\"sig\":\"TERM\"}");
    assert_int_equal(validate_kill(in, &sig, &grace, &e), -1);
    assert_string_equal(e.field, "sig");
    json_decref(in);
    /* A kill's own grace period: TERM only, 1..3600 s. */
    in = parse("{\"grace_seconds\":30}");
    assert_int_equal(validate_kill(in, &sig, &grace, &e), 0);
    assert_string_equal(sig, "TERM");
    assert_int_equal(grace, 30);
    json_decref(in);
    in = parse("{\"signal\":\"TERM\",\"grace_seconds\":3600}");
    assert_int_equal(validate_kill(in, &sig, &grace, &e), 0);
    assert_int_equal(grace, 3600);
    json_decref(in);
    in = parse("{\"signal\":\"TERM\",\"grace_seconds\":3601}");
    assert_int_equal(validate_kill(in, &sig, &grace, &e), -1);
    assert_string_equal(e.field, "grace_seconds");
    assert_non_null(strstr(e.message, "between 1 and 3600"));
    json_decref(in);
    in = parse("{\"grace_seconds\":0}");
    assert_int_equal(validate_kill(in, &sig, &grace, &e), -1);
    assert_string_equal(e.field, "grace_seconds");
    json_decref(in);
    in = parse("{\"grace_seconds\":\"5\"}");
    assert_int_equal(validate_kill(in, &sig, &grace, &e), -1);
    assert_string_equal(e.field, "grace_seconds");
    json_decref(in);
    in = parse("{\"signal\":\"KILL\",\"grace_seconds\":5}");
    assert_int_equal(validate_kill(in, &sig, &grace, &e), -1);
    assert_string_equal(e.field, "grace_seconds");
    json_decref(in);
}

/* stop_grace_seconds on services and one-off instances: 1..3600, copied
 * only when given (the database default applies otherwise). */
static void
test_stop_grace(void **state)
{
    struct verr e;
    json_t *in, *out;

    (void)state;
    in = parse("{\"name\":\"web\",\"image\":\"nginx\","
               "\"resources\":{\"vcpus\":1,\"memory_mib\":64},"
               "\"stop_grace_seconds\":60}");
    out = validate_service_create(in, &e);
    assert_non_null(out);
    assert_int_equal(json_integer_value(json_object_get(out, "stop_grace_seconds")), 60);
    json_decref(out);
    out = validate_instance_create(in, &e);
    assert_non_null(out);
    assert_int_equal(json_integer_value(json_object_get(out, "stop_grace_seconds")), 60);
    json_decref(out);
    json_object_del(in, "stop_grace_seconds");
    out = validate_service_create(in, &e);
    assert_non_null(out);
    assert_null(json_object_get(out, "stop_grace_seconds"));
    json_decref(out);
    json_object_set_new(in, "stop_grace_seconds", json_integer(0));
    assert_null(validate_service_create(in, &e));
    assert_string_equal(e.field, "stop_grace_seconds");
    assert_null(validate_instance_create(in, &e));
    assert_string_equal(e.field, "stop_grace_seconds");
    json_object_set_new(in, "stop_grace_seconds", json_integer(3601));
    assert_null(validate_service_create(in, &e));
    assert_string_equal(e.field, "stop_grace_seconds");
    json_decref(in);
    in = parse("{\"stop_grace_seconds\":120}");
    out = validate_service_patch(in, &e);
    assert_non_null(out);
    assert_int_equal(json_integer_value(json_object_get(out, "stop_grace_seconds")), 120);
    json_decref(out);
    json_decref(in);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_restart),
        cmocka_unit_test(test_constraints),
        cmocka_unit_test(test_image_refs),
        cmocka_unit_test(test_depth),
        cmocka_unit_test(test_service_defaults),
        cmocka_unit_test(test_service_invalid),
        cmocka_unit_test(test_args_env_limits),
        cmocka_unit_test(test_service_patch_partial),
        cmocka_unit_test(test_instance_defaults),
        cmocka_unit_test(test_kill),
        cmocka_unit_test(test_stop_grace),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
