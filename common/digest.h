/*
 * digest: the text form of a content digest, "sha256:" and 64 lower-case
 * hex digits: blob and image names in the controller's store, the agent's
 * cache and cloudctl, and CA pins (pin.h). The OCI image spec and the
 * registries spell digests the same way.
 */
#ifndef CLOUD_DIGEST_H
#define CLOUD_DIGEST_H

#include <stddef.h>

#include <openssl/evp.h>

#define DIGEST_PREFIX "sha256:"
#define DIGEST_PREFIX_LEN (sizeof(DIGEST_PREFIX) - 1)
#define DIGEST_LEN 32 /* bytes of a SHA-256 */
#define DIGEST_TEXT_LEN (DIGEST_PREFIX_LEN + 2 * DIGEST_LEN) /* 71 */
#define DIGEST_TEXT_SIZE (DIGEST_TEXT_LEN + 1)               /* with NUL */

/* "sha256:<hex>" of md in out. */
void digest_format(const unsigned char md[DIGEST_LEN],
                   char out[DIGEST_TEXT_SIZE]);

/* Finishes a SHA-256 running in md (EVP_DigestInit_ex with EVP_sha256())
 * into out. 0, or -1 if OpenSSL failed or md is not a SHA-256. */
int digest_final(EVP_MD_CTX *md, char out[DIGEST_TEXT_SIZE]);

/* 1 if s is "sha256:" and exactly 64 lower-case hex digits, else 0 (NULL
 * too). */
int digest_valid(const char *s);

#endif
