/*
 * digest: "sha256:<hex>" digests (see digest.h).
 */
#include "digest.h"

#include <string.h>

void
digest_format(const unsigned char md[DIGEST_LEN], char out[DIGEST_TEXT_SIZE])
{
    static const char hex[] = "0123456789abcdef";
    char *p = out + DIGEST_PREFIX_LEN;

    memcpy(out, DIGEST_PREFIX, DIGEST_PREFIX_LEN);
    for (size_t i = 0; i < DIGEST_LEN; i++) {
        *p++ = hex[md[i] >> 4];
        *p++ = hex[md[i] & 0x0f];
    }
    *p = '\0';
}

int
digest_final(EVP_MD_CTX *md, char out[DIGEST_TEXT_SIZE])
{
    unsigned char h[EVP_MAX_MD_SIZE];
    unsigned int hl = 0;

    if (md == NULL || EVP_DigestFinal_ex(md, h, &hl) != 1 || hl != DIGEST_LEN)
        return -1;
    digest_format(h, out);
    return 0;
}

int
digest_valid(const char *s)
{
    return s != NULL && strncmp(s, DIGEST_PREFIX, DIGEST_PREFIX_LEN) == 0 &&
           strlen(s) == DIGEST_TEXT_LEN &&
           strspn(s + DIGEST_PREFIX_LEN, "0123456789abcdef") == 2 * DIGEST_LEN;
}
