/*
 * tlsev: why a libevent OpenSSL bufferevent failed, as one phrase. The agent
 * gateway, the agent's link and cloudctl report a failed TLS connection
 * with it (part of `cloudtls`, see tlsctx.h).
 */
#ifndef CLOUD_TLSEV_H
#define CLOUD_TLSEV_H

#include <stddef.h>

struct bufferevent;

/*
 * Drains bev's OpenSSL errors (bufferevent_get_openssl_error) into buf, the
 * last one winning; libevent's bare SSL_get_error() codes (such as
 * SSL_ERROR_SYSCALL, which the socket error explains better) are skipped,
 * and an operating system error reads as strerror says it. When the
 * peer's certificate failed its check, says that instead, naming the peer:
 * "the <peer> certificate is refused: <X509 reason>" (OpenSSL 3's queue
 * through libevent often holds nothing useful then). buf is "" when there
 * is nothing to say: the caller falls back to the socket error. Returns buf.
 */
const char *tlsev_error(struct bufferevent *bev, const char *peer, char *buf,
                        size_t len);

#endif
