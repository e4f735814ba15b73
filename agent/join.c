/*
 * join: `cloud-agent join` (see join.h). Errors are one line on stderr,
 * "cloud-agent: ...", because a person runs this command.
 */
#include "join.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "ctlist.h"
#include "frame.h"
#include "fsutil.h"
#include "mem.h"
#include "pin.h"
#include "tlsctx.h"

#define JOIN_REPLY_MAX (1024u * 1024u)

static void
fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
fail(const char *fmt, ...)
{
    char buf[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    fprintf(stderr, "cloud-agent: %s\n", buf);
}

/* OpenSSL's first queued error as text, queue cleared (tlsctx_error). */
static const char *
ssl_err(void)
{
    static char buf[256];

    return tlsctx_error(buf, sizeof(buf));
}

char *
join_default_pki_dir(const char *state_dir)
{
    return xasprintf("%s/pki", state_dir);
}

/* The hosts.name rule (controller/pki.c pki_name_valid). */
static int
name_ok(const char *s)
{
    size_t n = strlen(s), i;

    if (n == 0 || n > 253 || !isalnum((unsigned char)s[0]) ||
        !isalnum((unsigned char)s[n - 1]))
        return 0;
    for (i = 0; i < n; i++)
        if (!(islower((unsigned char)s[i]) || isdigit((unsigned char)s[i]) ||
              s[i] == '.' || s[i] == '-'))
            return 0;
    return 1;
}

/* path atomically and durably (fsutil.h), said once on failure. */
static int
write_file(const char *path, mode_t mode, const char *data)
{
    if (fsutil_write_atomic(path, mode, data, strlen(data)) < 0) {
        fail("cannot write %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* Connects to host:port with send/receive timeouts. -1 (said) on failure. */
static int
dial(const char *host, const char *port, unsigned timeout_s)
{
    struct addrinfo hints, *res = NULL, *ai;
    struct timeval tv = {(time_t)timeout_s, 0};
    int fd = -1, rc, err = 0;

    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        fail("cannot resolve %s: %s", host, gai_strerror(rc));
        return -1;
    }
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
                    ai->ai_protocol);
        if (fd < 0)
            continue;
        if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) == 0 &&
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == 0 &&
            connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        err = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        fail("cannot connect to %s:%s: %s", host, port,
             err ? strerror(err) : "no address");
    return fd;
}

/*
 * Finds the CA with the pin in the chain the server sent and checks that
 * the server's certificate is issued by it, is for serverAuth and names
 * host. Returns the CA (new reference) or NULL (said).
 */
static X509 *
check_server(SSL *ssl, const char *host, const unsigned char pin[PIN_LEN],
             const char *pin_text)
{
    STACK_OF(X509) *chain = SSL_get_peer_cert_chain(ssl);
    X509 *leaf = SSL_get0_peer_certificate(ssl), *ca = NULL;
    X509_STORE *store = NULL;
    X509_STORE_CTX *sctx = NULL;
    X509_VERIFY_PARAM *param;
    char seen[1024] = "";
    int i, ok = 0;

    for (i = 0; chain != NULL && i < sk_X509_num(chain); i++) {
        X509 *x = sk_X509_value(chain, i);
        char p[PIN_TEXT_LEN + 1];

        if (X509_check_ca(x) >= 1 && pin_matches(x, pin)) {
            ca = x;
            break;
        }
        if (X509_check_ca(x) >= 1 && pin_format(x, p, sizeof(p)) == 0) {
            size_t used = strlen(seen);

            snprintf(seen + used, sizeof(seen) - used, "%s%s",
                     used ? "," : "", p);
        }
    }
    if (leaf == NULL || ca == NULL) {
        fail("the controller at %s does not present a CA with pin %s (its CA: %s); refusing to join",
             host, pin_text, seen[0] ? seen : "none sent");
        return NULL;
    }
    store = X509_STORE_new();
    sctx = X509_STORE_CTX_new();
    if (store == NULL || sctx == NULL || X509_STORE_add_cert(store, ca) != 1 ||
        X509_STORE_CTX_init(sctx, store, leaf, chain) != 1 ||
        X509_STORE_CTX_set_purpose(sctx, X509_PURPOSE_SSL_SERVER) != 1) {
        fail("cannot check the controller's certificate: %s", ssl_err());
        goto cleanup;
    }
    param = X509_STORE_CTX_get0_param(sctx);
    if (tlsctx_verify_host(param, host) < 0) {
        fail("cannot check the controller's certificate for %s: %s", host,
             ssl_err());
        goto cleanup;
    }
    if (X509_verify_cert(sctx) != 1) {
        fail("the controller's certificate is not valid for %s under the pinned CA: %s",
             host,
             X509_verify_cert_error_string(X509_STORE_CTX_get_error(sctx)));
        goto cleanup;
    }
    ok = 1;

cleanup:
    X509_STORE_CTX_free(sctx);
    X509_STORE_free(store);
    if (!ok)
        return NULL;
    X509_up_ref(ca);
    return ca;
}

/* A CSR for key with subject CN=name, as PEM (xmalloc'd). */
static char *
make_csr(EVP_PKEY *key, const char *name)
{
    X509_REQ *req = X509_REQ_new();
    X509_NAME *subj = X509_NAME_new();
    BIO *b = BIO_new(BIO_s_mem());
    char *data, *out = NULL;
    long len;

    if (req == NULL || subj == NULL || b == NULL ||
        !X509_NAME_add_entry_by_txt(subj, "CN", MBSTRING_UTF8,
                                    (const unsigned char *)name, -1, -1, 0) ||
        !X509_REQ_set_subject_name(req, subj) ||
        !X509_REQ_set_pubkey(req, key) ||
        X509_REQ_sign(req, key, EVP_sha256()) <= 0 ||
        PEM_write_bio_X509_REQ(b, req) != 1 ||
        (len = BIO_get_mem_data(b, &data)) <= 0)
        fail("cannot make a certificate request: %s", ssl_err());
    else
        out = xstrndup(data, (size_t)len);
    BIO_free(b);
    X509_NAME_free(subj);
    X509_REQ_free(req);
    return out;
}

static int
ssl_write_all(SSL *ssl, const uint8_t *buf, size_t len)
{
    while (len > 0) {
        int n = SSL_write(ssl, buf, len > 65536 ? 65536 : (int)len);

        if (n <= 0)
            return -1;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

static int
ssl_read_all(SSL *ssl, uint8_t *buf, size_t len)
{
    while (len > 0) {
        int n = SSL_read(ssl, buf, len > 65536 ? 65536 : (int)len);

        if (n <= 0)
            return -1;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Reads one frame; NULL (said) on error. */
static frame_envelope *
read_frame(SSL *ssl, const char *ctl)
{
    uint8_t hdr[FRAME_HEADER_LEN], *buf;
    struct frame_limits lim = {JOIN_REPLY_MAX, 0};
    frame_envelope *env = NULL;
    char err[256];
    size_t n, used;

    if (ssl_read_all(ssl, hdr, sizeof(hdr)) < 0) {
        fail("the controller at %s closed the connection without an answer (%s)",
             ctl, ssl_err());
        return NULL;
    }
    n = (size_t)hdr[0] << 24 | (size_t)hdr[1] << 16 | (size_t)hdr[2] << 8 |
        hdr[3];
    if (n > JOIN_REPLY_MAX) {
        fail("the controller's answer announces %zu bytes (at most %u)", n,
             JOIN_REPLY_MAX);
        return NULL;
    }
    buf = xmalloc(sizeof(hdr) + n);
    memcpy(buf, hdr, sizeof(hdr));
    if (ssl_read_all(ssl, buf + sizeof(hdr), n) < 0)
        fail("the controller's answer was cut short (%s)", ssl_err());
    else if (frame_decode_buf(buf, sizeof(hdr) + n, &lim, &env, &used, err,
                              sizeof(err)) != FRAME_OK)
        fail("the controller's answer is not a frame: %s", err);
    free(buf);
    return env;
}

static X509 *
pem_cert(const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, (int)strlen(pem));
    X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;

    BIO_free(b);
    return x;
}

static char *
key_pem(EVP_PKEY *key)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *data, *out = NULL;
    long len;

    if (b != NULL &&
        PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL) == 1 &&
        (len = BIO_get_mem_data(b, &data)) > 0)
        out = xstrndup(data, (size_t)len);
    BIO_free(b);
    return out;
}

/* Checks the JoinResponse and writes the three files. 0 or -1 (said). */
static int
store_result(const struct join_opts *o, const char *name, EVP_PKEY *key,
             const unsigned char pin[PIN_LEN],
             const Cloud__Agent__JoinResponse *r)
{
    X509 *cert = pem_cert(r->cert_pem), *ca = pem_cert(r->ca_pem);
    char *kp = NULL, *cert_path = NULL, *key_path = NULL, *ca_path = NULL;
    char serial[PIN_SERIAL_MAX] = "?", until[64] = "?";
    X509_STORE *store = NULL;
    X509_STORE_CTX *sctx = NULL;
    const ASN1_TIME *na;
    struct tm tm;
    int ret = -1;

    if (cert == NULL || ca == NULL || strcmp(r->host_name, name) != 0 ||
        X509_check_private_key(cert, key) != 1 || !pin_matches(ca, pin) ||
        X509_check_host(cert, name, 0, 0, NULL) != 1) {
        fail("the controller's JoinResponse does not hold a certificate for %s and our key under the pinned CA",
             name);
        goto cleanup;
    }
    store = X509_STORE_new();
    sctx = X509_STORE_CTX_new();
    if (store == NULL || sctx == NULL || X509_STORE_add_cert(store, ca) != 1 ||
        X509_STORE_CTX_init(sctx, store, cert, NULL) != 1 ||
        X509_STORE_CTX_set_purpose(sctx, X509_PURPOSE_SSL_CLIENT) != 1 ||
        X509_verify_cert(sctx) != 1) {
        fail("the certificate the controller signed does not verify as a client certificate: %s",
             sctx ? X509_verify_cert_error_string(X509_STORE_CTX_get_error(sctx))
                  : "out of memory");
        goto cleanup;
    }
    kp = key_pem(key);
    if (kp == NULL) {
        fail("cannot encode the private key: %s", ssl_err());
        goto cleanup;
    }
    if (fsutil_mkdir_p(o->pki_dir, 0700) < 0) {
        fail("cannot create directory %s: %s", o->pki_dir, strerror(errno));
        goto cleanup;
    }
    key_path = xasprintf("%s/key.pem", o->pki_dir);
    cert_path = xasprintf("%s/cert.pem", o->pki_dir);
    ca_path = xasprintf("%s/ca.pem", o->pki_dir);
    /* The key first: a cert.pem never stands beside someone else's key. */
    if (write_file(key_path, 0600, kp) < 0 ||
        write_file(ca_path, 0644, r->ca_pem) < 0 ||
        write_file(cert_path, 0644, r->cert_pem) < 0)
        goto cleanup;
    (void)pin_serial(cert, serial, sizeof(serial));
    na = X509_get0_notAfter(cert);
    if (na != NULL && ASN1_TIME_to_tm(na, &tm) == 1)
        strftime(until, sizeof(until), "%Y-%m-%dT%H:%M:%SZ", &tm);
    printf("joined as %s: certificate %s, valid until %s, in %s\n"
           "start the agent with:\n"
           "  cloud-agent --name %s run --controller %s --ca %s --cert %s --key %s\n",
           name, serial, until, o->pki_dir, name, o->controller, ca_path,
           cert_path, key_path);
    ret = 0;

cleanup:
    if (kp != NULL) {
        OPENSSL_cleanse(kp, strlen(kp));
        free(kp);
    }
    free(key_path);
    free(cert_path);
    free(ca_path);
    X509_STORE_CTX_free(sctx);
    X509_STORE_free(store);
    X509_free(cert);
    X509_free(ca);
    return ret;
}

int
join_run(const struct join_opts *o)
{
    unsigned char pin[PIN_LEN];
    char hostname[256] = "", *name = NULL;
    const char *host = NULL;
    struct ctaddr *addrs = NULL;
    size_t naddrs = 0;
    char *csr = NULL;
    SSL_CTX *ctx = NULL;
    char why[TLSCTX_WHY_MAX];
    SSL *ssl = NULL;
    X509 *ca = NULL;
    EVP_PKEY *key = NULL;
    frame_envelope *reply = NULL;
    Cloud__Agent__Envelope env = CLOUD__AGENT__ENVELOPE__INIT;
    Cloud__Agent__JoinRequest jr = CLOUD__AGENT__JOIN_REQUEST__INIT;
    uint8_t *frame = NULL;
    size_t flen;
    int fd = -1, rc = 1;

    if (o->controller == NULL || o->token == NULL || o->ca_pin == NULL) {
        fail("join needs --controller HOST:PORT[,HOST:PORT...], --token ID.SECRET and --ca-pin sha256:HEX");
        return 2;
    }
    if (ctlist_parse(o->controller, &addrs, &naddrs, why, sizeof(why)) < 0) {
        fail("%s", why);
        return 2;
    }
    if (pin_parse(o->ca_pin, pin) < 0) {
        fail("--ca-pin must be sha256: and 64 hex digits, not %.80s", o->ca_pin);
        ctlist_free(addrs, naddrs);
        return 2;
    }
    if (o->name != NULL) {
        name = xstrdup(o->name);
    } else {
        if (gethostname(hostname, sizeof(hostname) - 1) < 0)
            hostname[0] = '\0';
        for (char *p = hostname; *p; p++)
            *p = (char)tolower((unsigned char)*p);
        name = xstrdup(hostname);
    }
    if (!name_ok(name)) {
        fail("host name \"%.64s\" is not valid (lower-case letters, digits, '.' and '-'); give --name",
             name);
        rc = 2;
        goto cleanup;
    }
    /* Any replica can enrol us (they share the CA): the first that
     * answers. */
    for (size_t i = 0; i < naddrs && fd < 0; i++) {
        host = addrs[i].host;
        fd = dial(host, addrs[i].port, o->timeout_s ? o->timeout_s : 15);
    }
    if (fd < 0)
        goto cleanup;
    /* Nothing is trusted yet: the pin decides (check_server). */
    ctx = tlsctx_new(&(struct tlsctx_opts){.role = TLSCTX_CLIENT,
                                           .peer = TLSCTX_PEER_NONE},
                     why, sizeof(why));
    if (ctx == NULL) {
        fail("cannot set up TLS: %s", why);
        goto cleanup;
    }
    if ((ssl = SSL_new(ctx)) == NULL || SSL_set_fd(ssl, fd) != 1 ||
        (!tlsctx_host_is_ip(host) &&
         SSL_set_tlsext_host_name(ssl, host) != 1)) {
        fail("cannot set up TLS: %s", ssl_err());
        goto cleanup;
    }
    if (SSL_connect(ssl) != 1) {
        fail("TLS handshake with %s failed: %s", o->controller, ssl_err());
        goto cleanup;
    }
    ca = check_server(ssl, host, pin, o->ca_pin);
    if (ca == NULL)
        goto cleanup;

    key = EVP_EC_gen("P-256");
    if (key == NULL) {
        fail("cannot generate an EC P-256 key: %s", ssl_err());
        goto cleanup;
    }
    csr = make_csr(key, name);
    if (csr == NULL)
        goto cleanup;
    jr.token = (char *)o->token;
    jr.host_name = name;
    jr.csr_pem = csr;
    env.msg_case = CLOUD__AGENT__ENVELOPE__MSG_JOIN_REQUEST;
    env.join_request = &jr;
    if (frame_encode_buf(&env, &frame, &flen) < 0) {
        fail("cannot encode the JoinRequest");
        goto cleanup;
    }
    if (ssl_write_all(ssl, frame, flen) < 0) {
        fail("cannot send the JoinRequest to %s: %s", o->controller, ssl_err());
        goto cleanup;
    }
    reply = read_frame(ssl, o->controller);
    if (reply == NULL)
        goto cleanup;
    if (reply->msg_case == CLOUD__AGENT__ENVELOPE__MSG_ERROR &&
        reply->error->code ==
            CLOUD__AGENT__ERROR_CODE__ERROR_CODE_RATE_LIMITED) {
        /* Nothing was judged: the same command may simply be retried. */
        fail("the controller is not taking join attempts from this address "
             "for now: %.300s; run the same command again in %u s",
             reply->error->message, (unsigned)reply->error->retry_after_s);
        rc = JOIN_EXIT_RETRY;
        goto cleanup;
    }
    if (reply->msg_case == CLOUD__AGENT__ENVELOPE__MSG_ERROR) {
        fail("the controller refused to join %s: %.300s", name,
             reply->error->message);
        goto cleanup;
    }
    if (reply->msg_case != CLOUD__AGENT__ENVELOPE__MSG_JOIN_RESPONSE) {
        fail("the controller answered %s, not join_response",
             frame_msg_name(reply));
        goto cleanup;
    }
    if (store_result(o, name, key, pin, reply->join_response) < 0)
        goto cleanup;
    rc = 0;

cleanup:
    frame_envelope_free(reply);
    free(frame);
    free(csr);
    EVP_PKEY_free(key);
    X509_free(ca);
    if (ssl != NULL) {
        (void)SSL_shutdown(ssl);
        SSL_free(ssl);
    }
    SSL_CTX_free(ctx);
    if (fd >= 0)
        close(fd);
    ctlist_free(addrs, naddrs);
    free(name);
    ERR_clear_error();
    return rc;
}
