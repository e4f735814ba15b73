/*
 * tlsev: a failed OpenSSL bufferevent as text (see tlsev.h).
 */
#include "tlsev.h"

#include <stdio.h>

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "tlsctx.h"

/* libevent queues SSL_get_error() results (1..8) beside real packed codes. */
#define TLSEV_BARE_CODE_MAX 64

const char *
tlsev_error(struct bufferevent *bev, const char *peer, char *buf, size_t len)
{
    unsigned long e;
    SSL *ssl;
    long vr;

    if (len == 0)
        return buf;
    buf[0] = '\0';
    while ((e = bufferevent_get_openssl_error(bev)) != 0) {
        if (ERR_GET_LIB(e) == 0 && e < TLSEV_BARE_CODE_MAX)
            continue;
        tlsctx_error_code(e, buf, len);
    }
    ssl = bufferevent_openssl_get_ssl(bev);
    /* Without SSL_VERIFY_PEER (cloudctl --insecure) a result is recorded
     * but nothing was refused for it. */
    vr = ssl && (SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER)
             ? SSL_get_verify_result(ssl)
             : X509_V_OK;
    if (vr != X509_V_OK)
        snprintf(buf, len, "the %s certificate is refused: %s", peer,
                 X509_verify_cert_error_string(vr));
    return buf;
}
