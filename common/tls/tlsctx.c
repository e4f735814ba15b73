/*
 * tlsctx: TLS contexts and OpenSSL error text (see tlsctx.h).
 */
#include "tlsctx.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#define TLSCTX_SERVER_CIPHERS "ECDHE+AESGCM:ECDHE+CHACHA20"

const char *
tlsctx_error_code(unsigned long e, char *buf, size_t len)
{
    if (len == 0)
        return buf;
    if (e == 0)
        snprintf(buf, len, "unknown OpenSSL error");
    else if (ERR_GET_LIB(e) == ERR_LIB_SYS)
        snprintf(buf, len, "%s", strerror(ERR_GET_REASON(e)));
    else
        ERR_error_string_n(e, buf, len);
    return buf;
}

const char *
tlsctx_error(char *buf, size_t len)
{
    unsigned long e = ERR_get_error();

    tlsctx_error_code(e, buf, len);
    ERR_clear_error();
    return buf;
}

int
tlsctx_host_is_ip(const char *host)
{
    unsigned char buf[16];

    return inet_pton(AF_INET, host, buf) == 1 ||
           inet_pton(AF_INET6, host, buf) == 1;
}

int
tlsctx_verify_host(X509_VERIFY_PARAM *param, const char *host)
{
    int ok = tlsctx_host_is_ip(host)
                 ? X509_VERIFY_PARAM_set1_ip_asc(param, host)
                 : X509_VERIFY_PARAM_set1_host(param, host, 0);

    return ok == 1 ? 0 : -1;
}

int
tlsctx_client_host(SSL *ssl, const char *host)
{
    if (tlsctx_verify_host(SSL_get0_param(ssl), host) < 0)
        return -1;
    if (!tlsctx_host_is_ip(host) && SSL_set_tlsext_host_name(ssl, host) != 1)
        return -1;
    return 0;
}

/* why = fmt ": " OpenSSL's reason; the queue is cleared. */
static void
fail(char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
fail(char *why, size_t whylen, const char *fmt, ...)
{
    char ossl[256];
    va_list ap;
    int n;

    if (whylen == 0) {
        ERR_clear_error();
        return;
    }
    va_start(ap, fmt);
    n = vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
    tlsctx_error(ossl, sizeof(ossl));
    if (n >= 0 && (size_t)n < whylen)
        snprintf(why + n, whylen - (size_t)n, ": %s", ossl);
}

int
tlsctx_read_pem(const char *path, X509 **cert, EVP_PKEY **key)
{
    FILE *f = fopen(path, "r");
    bool ok;

    if (f == NULL)
        return -1;
    if (cert != NULL)
        ok = (*cert = PEM_read_X509(f, NULL, NULL, NULL)) != NULL;
    else
        ok = (*key = PEM_read_PrivateKey(f, NULL, NULL, NULL)) != NULL;
    fclose(f);
    return ok ? 0 : -2;
}

/* Appends the CA certificate of path to the chain the server sends. */
static int
add_ca_to_chain(SSL_CTX *ctx, const char *path)
{
    X509 *ca = NULL;
    int ok;

    if (tlsctx_read_pem(path, &ca, NULL) < 0)
        return -1;
    ok = SSL_CTX_add1_chain_cert(ctx, ca);
    X509_free(ca);
    return ok == 1 ? 0 : -1;
}

static int
load_own(SSL_CTX *ctx, const struct tlsctx_opts *o, char *why, size_t whylen)
{
    if (SSL_CTX_use_certificate_chain_file(ctx, o->cert) != 1) {
        fail(why, whylen, "cannot load the certificate chain %s", o->cert);
        return -1;
    }
    if (o->key == NULL ||
        SSL_CTX_use_PrivateKey_file(ctx, o->key, SSL_FILETYPE_PEM) != 1) {
        fail(why, whylen, "cannot load the private key %s",
             o->key ? o->key : "(none given)");
        return -1;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        fail(why, whylen, "the private key %s does not match the certificate %s",
             o->key, o->cert);
        return -1;
    }
    return 0;
}

static int
set_server(SSL_CTX *ctx, const struct tlsctx_opts *o, char *why,
           size_t whylen)
{
    if (SSL_CTX_set_cipher_list(ctx, TLSCTX_SERVER_CIPHERS) != 1) {
        fail(why, whylen, "cannot restrict the TLS cipher suites");
        return -1;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE |
                                 SSL_OP_NO_COMPRESSION);
    if (o->cert == NULL) {
        snprintf(why, whylen, "a TLS server needs a certificate and a key");
        return -1;
    }
    if (load_own(ctx, o, why, whylen) < 0)
        return -1;
    if (o->peer == TLSCTX_PEER_NONE)
        return 0;
    if (o->ca == NULL) {
        snprintf(why, whylen, "a TLS server that checks client certificates "
                              "needs a CA file");
        return -1;
    }
    if (SSL_CTX_load_verify_locations(ctx, o->ca, NULL) != 1) {
        fail(why, whylen, "cannot load the CA %s", o->ca);
        return -1;
    }
    if (SSL_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT) != 1) {
        fail(why, whylen, "cannot require clientAuth of client certificates");
        return -1;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (add_ca_to_chain(ctx, o->ca) < 0) {
        fail(why, whylen, "cannot add the CA %s to the certificate chain",
             o->ca);
        return -1;
    }
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    return 0;
}

static int
set_client(SSL_CTX *ctx, const struct tlsctx_opts *o, char *why,
           size_t whylen)
{
    if (o->cert != NULL && load_own(ctx, o, why, whylen) < 0)
        return -1;
    if (o->peer == TLSCTX_PEER_NONE) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
        return 0;
    }
    if (o->ca != NULL ? SSL_CTX_load_verify_locations(ctx, o->ca, NULL) != 1
                      : SSL_CTX_set_default_verify_paths(ctx) != 1) {
        if (o->ca != NULL)
            fail(why, whylen, "cannot load the CA %s", o->ca);
        else
            fail(why, whylen, "cannot load the system's CA certificates");
        return -1;
    }
    if (SSL_CTX_set_purpose(ctx, X509_PURPOSE_SSL_SERVER) != 1) {
        fail(why, whylen, "cannot require serverAuth of server certificates");
        return -1;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    return 0;
}

SSL_CTX *
tlsctx_new(const struct tlsctx_opts *o, char *why, size_t whylen)
{
    int server = o->role == TLSCTX_SERVER;
    SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method()
                                      : TLS_client_method());

    if (whylen > 0)
        why[0] = '\0';
    if (ctx == NULL) {
        fail(why, whylen, "cannot create a TLS context");
        return NULL;
    }
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
        fail(why, whylen, "cannot require TLS 1.2 or later");
        goto fail;
    }
    if ((server ? set_server(ctx, o, why, whylen)
                : set_client(ctx, o, why, whylen)) < 0)
        goto fail;
    return ctx;

fail:
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return NULL;
}
