/*
 * Unit tests for common/digest.c and common/monotime.c: "sha256:<hex>"
 * against the FIPS 180-2 test vector, the validity rule blob names follow,
 * and the monotonic and wall clocks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>
#include <time.h>

#include "digest.h"
#include "monotime.h"

/* SHA-256("abc"), FIPS 180-2 appendix B.1. */
static const char abc_digest[] =
    "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

static void
test_format_and_final(void **state)
{
    unsigned char md[DIGEST_LEN];
    char out[DIGEST_TEXT_SIZE];
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned int mdlen = 0;

    (void)state;
    assert_int_equal(EVP_Digest("abc", 3, md, &mdlen, EVP_sha256(), NULL), 1);
    memset(out, 'x', sizeof(out));
    digest_format(md, out);
    assert_string_equal(out, abc_digest);
    assert_int_equal(strlen(out), DIGEST_TEXT_LEN);

    assert_non_null(ctx);
    assert_int_equal(EVP_DigestInit_ex(ctx, EVP_sha256(), NULL), 1);
    assert_int_equal(EVP_DigestUpdate(ctx, "ab", 2), 1);
    assert_int_equal(EVP_DigestUpdate(ctx, "c", 1), 1);
    assert_int_equal(digest_final(ctx, out), 0);
    assert_string_equal(out, abc_digest);
    /* Not a SHA-256: refused rather than printed short. */
    assert_int_equal(EVP_DigestInit_ex(ctx, EVP_sha1(), NULL), 1);
    assert_int_equal(digest_final(ctx, out), -1);
    assert_int_equal(digest_final(NULL, out), -1);
    EVP_MD_CTX_free(ctx);
}

static void
test_valid(void **state)
{
    char s[DIGEST_TEXT_SIZE + 1];

    (void)state;
    assert_int_equal(digest_valid(abc_digest), 1);
    assert_int_equal(digest_valid(NULL), 0);
    assert_int_equal(digest_valid(""), 0);
    assert_int_equal(digest_valid("sha256:"), 0);
    assert_int_equal(digest_valid(abc_digest + 7), 0); /* no prefix */
    memcpy(s, abc_digest, DIGEST_TEXT_SIZE);
    s[10] = 'A'; /* upper case is not the canonical name */
    assert_int_equal(digest_valid(s), 0);
    memcpy(s, abc_digest, DIGEST_TEXT_SIZE);
    s[DIGEST_TEXT_LEN - 1] = '\0'; /* 63 digits */
    assert_int_equal(digest_valid(s), 0);
    memcpy(s, abc_digest, DIGEST_TEXT_LEN);
    s[DIGEST_TEXT_LEN] = '0'; /* 65 digits */
    s[DIGEST_TEXT_LEN + 1] = '\0';
    assert_int_equal(digest_valid(s), 0);
    memcpy(s, abc_digest, DIGEST_TEXT_SIZE);
    s[0] = 'S';
    assert_int_equal(digest_valid(s), 0);
    memcpy(s, abc_digest, DIGEST_TEXT_SIZE);
    s[20] = 'g';
    assert_int_equal(digest_valid(s), 0);
}

/* The monotonic clock advances across a 30 ms sleep; the wall clock agrees
 * with time(), give or take a second. */
static void
test_clocks(void **state)
{
    struct timespec ts = {0, 30 * 1000000};
    time_t before, after;
    long long a, b, ms;

    (void)state;
    a = mono_ms();
    assert_true(a > 0);
    nanosleep(&ts, NULL);
    b = mono_ms();
    assert_true(b - a >= 30);
    assert_true(b - a < 10000);
    before = time(NULL);
    ms = wall_ms();
    after = time(NULL);
    assert_true(ms / 1000 >= (long long)before - 1);
    assert_true(ms / 1000 <= (long long)after + 1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_and_final),
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_clocks),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
