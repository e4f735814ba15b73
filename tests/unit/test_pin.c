/*
 * Unit tests for common/pin.c: the CA pin of the join flow against a value
 * computed by the openssl command (x509 -pubkey | pkey -pubin -outform der |
 * sha256sum), pin parsing, and certificate serials.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/pem.h>

#include "pin.h"

static const char cert_pem[] =
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBbjCCAROgAwIBAgIGAKvN7wECMAoGCCqGSM49BAMCMBMxETAPBgNVBAMMCHBp\n"
    "bi10ZXN0MB4XDTI2MTEyNzA1MzAxNVoXDTM2MTEyNDA1MzAxNVowEzERMA8GA1UE\n"
    "AwwIcGluLXRlc3QwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAQnUafw49qEkOmO\n"
    "xiCDYspikJc/9ZvD/LspmR8BaAzHTdSuVwqi7LW/RkN35P7Si2WJFqHxJLZ5KEh/\n"
    "aI9LNUAIo1MwUTAdBgNVHQ4EFgQUxHyAjGF8T5LGhvbGmlJqo7WDljMwHwYDVR0j\n"
    "BBgwFoAUxHyAjGF8T5LGhvbGmlJqo7WDljMwDwYDVR0TAQH/BAUwAwEB/zAKBggq\n"
    "hkjOPQQDAgNJADBGAiEA9p5RWP6Iqr9UrDlVKNs7Lp49pBm2qLfFuqZYMKYUZX4C\n"
    "IQDf0TaIzF3G2u++Nc3GMLoNlfmOl+5NykohL4n5HJ/yYg==\n"
    "-----END CERTIFICATE-----\n";
/* openssl x509 -pubkey -noout | openssl pkey -pubin -outform der | sha256sum */
static const char cert_pin[] =
    "sha256:41a90b5a2b6f3f06502a3111cb0f84d625eb8edd988be0f5cf874f9916e1bb8d";

static X509 *
load(void)
{
    BIO *b = BIO_new_mem_buf(cert_pem, -1);
    X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);

    BIO_free(b);
    assert_non_null(x);
    return x;
}

static void
test_pin_of_a_certificate(void **state)
{
    X509 *x = load();
    char text[PIN_TEXT_LEN + 1], small[PIN_TEXT_LEN];
    unsigned char pin[PIN_LEN];

    (void)state;
    assert_int_equal(pin_format(x, text, sizeof(text)), 0);
    assert_string_equal(text, cert_pin);
    assert_int_equal(pin_format(x, small, sizeof(small)), -1);
    assert_int_equal(pin_parse(cert_pin, pin), 0);
    assert_int_equal(pin_matches(x, pin), 1);
    pin[31] ^= 1;
    assert_int_equal(pin_matches(x, pin), 0);
    X509_free(x);
}

static void
test_pin_parse(void **state)
{
    unsigned char pin[PIN_LEN];
    char upper[sizeof(cert_pin)];
    static const char *const bad[] = {
        "",
        "sha256:",
        "sha256:41a9",
        "SHA256:41a90b5a2b6f3f06502a3111cb0f84d625eb8edd988be0f5cf874f9916e1bb8d",
        "sha1:41a90b5a2b6f3f06502a3111cb0f84d625eb8edd988be0f5cf874f9916e1bb8d",
        "41a90b5a2b6f3f06502a3111cb0f84d625eb8edd988be0f5cf874f9916e1bb8d",
        "sha256:41a90b5a2b6f3f06502a3111cb0f84d625eb8edd988be0f5cf874f9916e1bb8",
        "sha256:41a90b5a2b6f3f06502a3111cb0f84d625eb8edd988be0f5cf874f9916e1bb8d0",
        "sha256:g1a90b5a2b6f3f06502a3111cb0f84d625eb8edd988be0f5cf874f9916e1bb8d",
        "sha256: 1a90b5a2b6f3f06502a3111cb0f84d625eb8edd988be0f5cf874f9916e1bb8d",
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(pin_parse(bad[i], pin), -1);
    assert_int_equal(pin_parse(NULL, pin), -1);
    /* Hex digits in either case. */
    memcpy(upper, cert_pin, sizeof(upper));
    for (i = 7; upper[i]; i++)
        if (upper[i] >= 'a' && upper[i] <= 'f')
            upper[i] = (char)(upper[i] - 'a' + 'A');
    assert_int_equal(pin_parse(upper, pin), 0);
    assert_int_equal(pin[0], 0x41);
    assert_int_equal(pin[31], 0x8d);
}

static void
test_serials(void **state)
{
    X509 *x = load();
    char out[PIN_SERIAL_MAX], tiny[4];
    char long_serial[80];

    (void)state;
    /* Set with -set_serial 0x00ABCDEF0102: no leading zeros, upper case. */
    assert_int_equal(pin_serial(x, out, sizeof(out)), 0);
    assert_string_equal(out, "ABCDEF0102");
    assert_int_equal(pin_serial(x, tiny, sizeof(tiny)), -1);
    assert_int_equal(pin_serial_parse("00:ab:cd:ef:01:02", out, sizeof(out)), 0);
    assert_string_equal(out, "ABCDEF0102");
    assert_int_equal(pin_serial_parse("7", out, sizeof(out)), 0);
    assert_string_equal(out, "7");
    assert_int_equal(pin_serial_parse("0", out, sizeof(out)), -1);
    assert_int_equal(pin_serial_parse("", out, sizeof(out)), -1);
    assert_int_equal(pin_serial_parse("12g4", out, sizeof(out)), -1);
    assert_int_equal(pin_serial_parse("-12", out, sizeof(out)), -1);
    memset(long_serial, 'f', 65);
    long_serial[65] = '\0';
    assert_int_equal(pin_serial_parse(long_serial, out, sizeof(out)), -1);
    long_serial[64] = '\0';
    assert_int_equal(pin_serial_parse(long_serial, out, sizeof(out)), 0);
    assert_int_equal(strlen(out), 64);
    X509_free(x);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pin_of_a_certificate),
        cmocka_unit_test(test_pin_parse),
        cmocka_unit_test(test_serials),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
