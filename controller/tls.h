/*
 * tls: the API's server TLS context (OpenSSL 3): TLS 1.2 and newer, forward-
 * secret AEAD cipher suites only, certificate chain and key from files.
 */
#ifndef CLOUD_TLS_H
#define CLOUD_TLS_H

#include <openssl/ssl.h>

/* Returns a context or NULL after logging why (unreadable, mismatched). */
SSL_CTX *tls_server_ctx(const char *cert_file, const char *key_file);

#endif
