/*
 * tlsctx: the SSL_CTX of every TLS endpoint (OpenSSL 3) and OpenSSL's error
 * queue as text. The API server (controller/main.c), the agent gateway
 * (controller/gateway_conn.c), the agent's link (agent/link.c), `cloud-agent
 * join` (agent/join.c) and cloudctl (cli/http.c) build their contexts here,
 * so that one policy holds everywhere:
 *
 * - both roles: TLS 1.2 or later;
 * - a server: ECDHE with AES-GCM or ChaCha20-Poly1305 only, its own cipher
 *   order, no renegotiation, no compression; its certificate chain and key
 *   are required and must match;
 * - a client: OpenSSL's default cipher list (it only ever meets our servers
 *   or a proxy in front of the API); a certificate and key are optional.
 *
 * What the peer must show (enum tlsctx_peer) is the only choice. A CA pin is
 * not a context property: a client that trusts by pin (agent/join.c) builds
 * a TLSCTX_PEER_NONE context and checks the pin against the chain after the
 * handshake (pin.h). The host name a client dialled is per connection
 * (SSL_set1_host), not here.
 *
 * Errors are not logged here: tlsctx_new fills `why` with one sentence
 * naming the file and OpenSSL's reason, and the caller reports it once, in
 * its own way (a daemon's log, a command's stderr, cloudctl's error).
 *
 * Part of the `cloudtls` library (common/tls/), with tlsev.h. It is kept out
 * of `common` so that the fuzz build, which compiles every common/NAME.c, needs no
 * libevent_openssl.
 */
#ifndef CLOUD_TLSCTX_H
#define CLOUD_TLSCTX_H

#include <stddef.h>

#include <openssl/ssl.h>

enum tlsctx_role { TLSCTX_SERVER, TLSCTX_CLIENT };

enum tlsctx_peer {
    /* Nothing is verified: the API server (bearer tokens, no client
     * certificates), a joining agent (the caller checks the CA pin after
     * the handshake), cloudctl --insecure. */
    TLSCTX_PEER_NONE,
    /* Client: the server's certificate must chain to `ca` (NULL: the
     * system's default CAs) and be fit for serverAuth, so that a clientAuth
     * certificate of the same CA cannot pose as a server.
     * Server (mutual TLS): a client certificate, when sent, must chain to
     * `ca` and be fit for clientAuth, or the handshake fails; a client may
     * also connect without one, and the caller decides what it may do then
     * (SSL_get0_peer_certificate). `ca` is then sent in the server's chain
     * too (a joining client checks it against its pin), and the session
     * cache is off: every connection presents and checks its certificate
     * in full. */
    TLSCTX_PEER_CA,
};

struct tlsctx_opts {
    enum tlsctx_role role;
    enum tlsctx_peer peer;
    const char *cert; /* PEM certificate chain: required for a server */
    const char *key;  /* PEM private key of cert: with cert */
    const char *ca;   /* PEM CA file for TLSCTX_PEER_CA (required for a
                         server; a client without one uses the system's) */
};

/* Maximum useful size of a `why` buffer (paths and OpenSSL's text fit). */
#define TLSCTX_WHY_MAX 1024

/*
 * A context for o, or NULL with why (one sentence, no trailing period, e.g.
 * "cannot load the certificate chain /etc/x.pem: ...: no such file"). The
 * OpenSSL error queue is left empty either way.
 */
SSL_CTX *tlsctx_new(const struct tlsctx_opts *o, char *why, size_t whylen);

/*
 * Reads the first certificate (cert not NULL) or else the private key (key)
 * of the PEM file path into *cert or *key. Returns 0; -1 when path cannot
 * be opened (errno says why); -2 when it holds none (tlsctx_error says
 * why). Nothing is logged: the caller names the file its own way.
 */
int tlsctx_read_pem(const char *path, X509 **cert, EVP_PKEY **key);

/*
 * OpenSSL's first queued error as text in buf ("unknown OpenSSL error"
 * when the queue is empty; an operating system error as strerror says it),
 * and the queue cleared. Returns buf.
 */
const char *tlsctx_error(char *buf, size_t len);

/* Text of one packed OpenSSL error code (see tlsctx_error). Returns buf. */
const char *tlsctx_error_code(unsigned long e, char *buf, size_t len);

/*
 * The name or address a client dialled, checked per connection: an IPv4 or
 * IPv6 literal is matched against the certificate's IP addresses and never
 * sent as SNI; anything else against its DNS names, and sent as SNI.
 */
int tlsctx_host_is_ip(const char *host);

/* Makes param check that the server's certificate names host (as above).
 * 0, or -1 with OpenSSL's error queue saying why. */
int tlsctx_verify_host(X509_VERIFY_PARAM *param, const char *host);

/* A client session's both: tlsctx_verify_host on ssl's parameters, and
 * host as SNI unless it is an address. 0, or -1 (OpenSSL's queue). */
int tlsctx_client_host(SSL *ssl, const char *host);

#endif
