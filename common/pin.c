/*
 * pin: CA pins and certificate serials (see pin.h).
 */
#include "pin.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "digest.h"

_Static_assert(PIN_LEN == DIGEST_LEN && PIN_TEXT_LEN == DIGEST_TEXT_LEN,
               "a pin is a digest of a public key");

int
pin_compute(X509 *x, unsigned char out[PIN_LEN])
{
    unsigned char *der = NULL;
    unsigned int mdlen = 0;
    int len, ok;

    if (x == NULL)
        return -1;
    len = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &der);
    if (len <= 0)
        return -1;
    ok = EVP_Digest(der, (size_t)len, out, &mdlen, EVP_sha256(), NULL);
    OPENSSL_free(der);
    return ok == 1 && mdlen == PIN_LEN ? 0 : -1;
}

int
pin_format(X509 *x, char *out, size_t outlen)
{
    unsigned char md[PIN_LEN];

    if (outlen < PIN_TEXT_LEN + 1 || pin_compute(x, md) < 0)
        return -1;
    digest_format(md, out);
    return 0;
}

static int
hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

int
pin_parse(const char *s, unsigned char out[PIN_LEN])
{
    size_t n = strlen(PIN_PREFIX), i;

    if (s == NULL || strncmp(s, PIN_PREFIX, n) != 0 ||
        strlen(s + n) != 2 * PIN_LEN)
        return -1;
    s += n;
    for (i = 0; i < PIN_LEN; i++) {
        int hi = hexval((unsigned char)s[2 * i]);
        int lo = hexval((unsigned char)s[2 * i + 1]);

        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return 0;
}

int
pin_matches(X509 *x, const unsigned char pin[PIN_LEN])
{
    unsigned char md[PIN_LEN];

    if (pin_compute(x, md) < 0)
        return 0;
    return CRYPTO_memcmp(md, pin, PIN_LEN) == 0;
}

int
pin_serial(X509 *x, char *out, size_t outlen)
{
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    char *hex = bn ? BN_bn2hex(bn) : NULL;
    int ret = -1;

    /* Negative serials (RFC 5280 forbids them) are not ours. */
    if (hex != NULL && hex[0] != '-')
        ret = pin_serial_parse(hex, out, outlen);
    OPENSSL_free(hex);
    BN_free(bn);
    return ret;
}

int
pin_serial_parse(const char *s, char *out, size_t outlen)
{
    size_t n = 0;

    if (s == NULL)
        return -1;
    for (; *s != '\0'; s++) {
        int v;

        if (*s == ':')
            continue;
        v = hexval((unsigned char)*s);
        if (v < 0)
            return -1;
        if (n == 0 && v == 0)
            continue; /* leading zero */
        if (n + 1 >= outlen || n >= 64)
            return -1;
        out[n++] = "0123456789ABCDEF"[v];
    }
    if (n == 0)
        return -1; /* zero is not a serial we issue */
    out[n] = '\0';
    return 0;
}
