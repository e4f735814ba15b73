/*
 * Unit tests for common/tls (cloudtls): the policy tlsctx_new sets (TLS 1.2
 * floor, server cipher suites, mutual TLS, the CA in the server's chain),
 * errors that name the file, real handshakes over a socket pair for each
 * peer rule (purpose, foreign CA, no client certificate, TLS 1.1), OpenSSL
 * error text, tlsev_error on a libevent connection that failed, and the
 * host a client checks (tlsctx_client_host).
 * Certificates are made here with OpenSSL, in a temporary directory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "mem.h"
#include "tlsctx.h"
#include "tlsev.h"
#include "unit_tmpdir.h"

static char *dir;
/* ca: our CA; other: a foreign CA; srv: serverAuth of ca; cli: clientAuth
 * of ca; alien: clientAuth of other. */
static char *ca_pem, *other_pem, *srv_pem, *srv_key, *cli_pem, *cli_key,
    *alien_pem, *alien_key;

static char *
path_of(const char *name)
{
    return xasprintf("%s/%s", dir, name);
}

/* x as PEM to path, or k when x is NULL. */
static void
write_pem(const char *path, X509 *x, EVP_PKEY *k)
{
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    assert_int_equal(x ? PEM_write_X509(f, x)
                       : PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL),
                     1);
    fclose(f);
}

static void
add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX v3;
    X509_EXTENSION *e;

    X509V3_set_ctx(&v3, issuer ? issuer : x, x, NULL, NULL, 0);
    e = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    assert_non_null(e);
    assert_int_equal(X509_add_ext(x, e, -1), 1);
    X509_EXTENSION_free(e);
}

/* A certificate for key, signed by issuer (NULL: self-signed CA). */
static X509 *
make_cert(const char *cn, EVP_PKEY *key, X509 *issuer, EVP_PKEY *ikey,
          const char *eku)
{
    static long serial = 1;
    X509 *x = X509_new();

    assert_non_null(x);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, key);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                               (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(issuer ? issuer : x));
    if (issuer == NULL) {
        add_ext(x, NULL, NID_basic_constraints, "critical,CA:TRUE");
        add_ext(x, NULL, NID_key_usage, "critical,keyCertSign,cRLSign");
    } else {
        add_ext(x, issuer, NID_basic_constraints, "critical,CA:FALSE");
        add_ext(x, issuer, NID_key_usage, "critical,digitalSignature");
        add_ext(x, issuer, NID_ext_key_usage, eku);
    }
    assert_true(X509_sign(x, ikey ? ikey : key, EVP_sha256()) > 0);
    return x;
}

static void
leaf(const char *name, X509 *ca, EVP_PKEY *cakey, const char *eku,
     char **pem, char **keyp)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x;
    char *n;

    assert_non_null(k);
    x = make_cert(name, k, ca, cakey, eku);
    n = xasprintf("%s.pem", name);
    *pem = path_of(n);
    free(n);
    n = xasprintf("%s.key", name);
    *keyp = path_of(n);
    free(n);
    write_pem(*pem, x, NULL);
    write_pem(*keyp, NULL, k);
    X509_free(x);
    EVP_PKEY_free(k);
}

static int
setup(void **state)
{
    EVP_PKEY *cak, *otherk;
    X509 *ca, *other;

    (void)state;
    dir = unit_tmpdir_new("test_tlsctx");
    if (dir == NULL)
        return -1;
    cak = EVP_EC_gen("P-256");
    otherk = EVP_EC_gen("P-256");
    ca = make_cert("test CA", cak, NULL, NULL, NULL);
    other = make_cert("other CA", otherk, NULL, NULL, NULL);
    ca_pem = path_of("ca.pem");
    other_pem = path_of("other.pem");
    write_pem(ca_pem, ca, NULL);
    write_pem(other_pem, other, NULL);
    leaf("srv", ca, cak, "serverAuth", &srv_pem, &srv_key);
    leaf("cli", ca, cak, "clientAuth", &cli_pem, &cli_key);
    leaf("alien", other, otherk, "clientAuth", &alien_pem, &alien_key);
    X509_free(ca);
    X509_free(other);
    EVP_PKEY_free(cak);
    EVP_PKEY_free(otherk);
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    unit_tmpdir_free(dir);
    free(ca_pem);
    free(other_pem);
    free(srv_pem);
    free(srv_key);
    free(cli_pem);
    free(cli_key);
    free(alien_pem);
    free(alien_key);
    return 0;
}

static SSL_CTX *
ctx_ok(enum tlsctx_role role, enum tlsctx_peer peer, const char *cert,
       const char *key, const char *ca)
{
    struct tlsctx_opts o = {role, peer, cert, key, ca};
    char why[TLSCTX_WHY_MAX];
    SSL_CTX *ctx = tlsctx_new(&o, why, sizeof(why));

    if (ctx == NULL)
        fail_msg("tlsctx_new: %s", why);
    assert_int_equal(ERR_peek_error(), 0);
    return ctx;
}

static void
test_server_policy(void **state)
{
    SSL_CTX *ctx = ctx_ok(TLSCTX_SERVER, TLSCTX_PEER_CA, srv_pem, srv_key,
                          ca_pem);
    STACK_OF(SSL_CIPHER) *ciphers = SSL_CTX_get_ciphers(ctx);
    STACK_OF(X509) *chain = NULL;
    int found_ca = 0;

    (void)state;
    assert_int_equal(SSL_CTX_get_min_proto_version(ctx), TLS1_2_VERSION);
    assert_int_equal(SSL_CTX_get_verify_mode(ctx), SSL_VERIFY_PEER);
    assert_int_equal(SSL_CTX_get_session_cache_mode(ctx), SSL_SESS_CACHE_OFF);
    assert_true(SSL_CTX_get_options(ctx) & SSL_OP_NO_RENEGOTIATION);
    assert_true(SSL_CTX_get_options(ctx) & SSL_OP_NO_COMPRESSION);
    assert_true(SSL_CTX_get_options(ctx) & SSL_OP_CIPHER_SERVER_PREFERENCE);
    /* TLS 1.2 suites: ECDHE and AEAD only (TLS 1.3's are all AEAD). */
    assert_true(sk_SSL_CIPHER_num(ciphers) > 0);
    for (int i = 0; i < sk_SSL_CIPHER_num(ciphers); i++) {
        const SSL_CIPHER *c = sk_SSL_CIPHER_value(ciphers, i);
        int kx = SSL_CIPHER_get_kx_nid(c);

        if (kx != NID_kx_any && (kx != NID_kx_ecdhe || !SSL_CIPHER_is_aead(c)))
            fail_msg("cipher %s is offered", SSL_CIPHER_get_name(c));
    }
    /* The CA goes out in the chain (a joining client pins it). */
    assert_int_equal(SSL_CTX_get0_chain_certs(ctx, &chain), 1);
    for (int i = 0; chain != NULL && i < sk_X509_num(chain); i++)
        if (strstr(X509_NAME_oneline(X509_get_subject_name(sk_X509_value(chain, i)),
                                     (char[128]){0}, 128),
                   "test CA") != NULL)
            found_ca = 1;
    assert_true(found_ca);
    SSL_CTX_free(ctx);

    ctx = ctx_ok(TLSCTX_SERVER, TLSCTX_PEER_NONE, srv_pem, srv_key, NULL);
    assert_int_equal(SSL_CTX_get_verify_mode(ctx), SSL_VERIFY_NONE);
    assert_int_equal(SSL_CTX_get_min_proto_version(ctx), TLS1_2_VERSION);
    SSL_CTX_free(ctx);

    ctx = ctx_ok(TLSCTX_CLIENT, TLSCTX_PEER_NONE, NULL, NULL, NULL);
    assert_int_equal(SSL_CTX_get_verify_mode(ctx), SSL_VERIFY_NONE);
    assert_int_equal(SSL_CTX_get_min_proto_version(ctx), TLS1_2_VERSION);
    SSL_CTX_free(ctx);
    ctx = ctx_ok(TLSCTX_CLIENT, TLSCTX_PEER_CA, NULL, NULL, NULL); /* system CAs */
    assert_int_equal(SSL_CTX_get_verify_mode(ctx), SSL_VERIFY_PEER);
    SSL_CTX_free(ctx);
}

static void
test_errors_name_the_file(void **state)
{
    char *missing = path_of("missing.pem");
    /* Each fails, and why says want1 and want2 (NULL: nothing more). */
    const struct {
        enum tlsctx_role role;
        enum tlsctx_peer peer;
        const char *cert, *key, *ca, *want1, *want2;
    } cases[] = {
        {TLSCTX_SERVER, TLSCTX_PEER_NONE, NULL, NULL, NULL,
         "needs a certificate", NULL},
        {TLSCTX_SERVER, TLSCTX_PEER_NONE, missing, srv_key, NULL,
         "cannot load the certificate chain", missing},
        {TLSCTX_SERVER, TLSCTX_PEER_NONE, srv_pem, missing, NULL,
         "cannot load the private key", missing},
        {TLSCTX_SERVER, TLSCTX_PEER_NONE, srv_pem, cli_key, NULL, cli_key,
         "mismatch"},
        {TLSCTX_SERVER, TLSCTX_PEER_CA, srv_pem, srv_key, NULL,
         "needs a CA file", NULL},
        {TLSCTX_SERVER, TLSCTX_PEER_CA, srv_pem, srv_key, missing,
         "cannot load the CA", missing},
        {TLSCTX_CLIENT, TLSCTX_PEER_CA, NULL, NULL, missing,
         "cannot load the CA", missing},
        {TLSCTX_CLIENT, TLSCTX_PEER_CA, cli_pem, srv_key, ca_pem, srv_key,
         "mismatch"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct tlsctx_opts o = {cases[i].role, cases[i].peer, cases[i].cert,
                                cases[i].key, cases[i].ca};
        char why[TLSCTX_WHY_MAX];

        assert_null(tlsctx_new(&o, why, sizeof(why)));
        /* The queue is left empty for the next user. */
        assert_int_equal(ERR_peek_error(), 0);
        if (strstr(why, cases[i].want1) == NULL ||
            (cases[i].want2 && strstr(why, cases[i].want2) == NULL))
            fail_msg("case %zu: \"%s\" does not say \"%s\" and \"%s\"", i,
                     why, cases[i].want1,
                     cases[i].want2 ? cases[i].want2 : "");
    }
    free(missing);
}

struct hs {
    long server_vr, client_vr;
    int server_ok, client_ok;
    int server_has_peer;
};

/* A handshake between the two contexts over a socket pair. */
static struct hs
handshake(SSL_CTX *sctx, SSL_CTX *cctx, int client_max_version)
{
    struct hs h = {0};
    int sv[2], sdone = 0, cdone = 0, sfail = 0, cfail = 0;
    SSL *s, *c;

    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    fcntl(sv[0], F_SETFL, O_NONBLOCK);
    fcntl(sv[1], F_SETFL, O_NONBLOCK);
    s = SSL_new(sctx);
    c = SSL_new(cctx);
    assert_non_null(s);
    assert_non_null(c);
    if (client_max_version)
        SSL_set_max_proto_version(c, client_max_version);
    SSL_set_fd(s, sv[0]);
    SSL_set_fd(c, sv[1]);
    SSL_set_accept_state(s);
    SSL_set_connect_state(c);
    for (int i = 0; i < 1000 && !(sdone && cdone) && !sfail && !cfail; i++) {
        int r, e;

        if (!sdone) {
            r = SSL_do_handshake(s);
            e = SSL_get_error(s, r);
            if (r == 1)
                sdone = 1;
            else if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
                sfail = 1;
        }
        if (!cdone) {
            r = SSL_do_handshake(c);
            e = SSL_get_error(c, r);
            if (r == 1)
                cdone = 1;
            else if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
                cfail = 1;
        }
    }
    h.server_ok = sdone && !sfail;
    h.client_ok = cdone && !cfail;
    h.server_vr = SSL_get_verify_result(s);
    h.client_vr = SSL_get_verify_result(c);
    h.server_has_peer = SSL_get0_peer_certificate(s) != NULL;
    SSL_free(s);
    SSL_free(c);
    close(sv[0]);
    close(sv[1]);
    ERR_clear_error();
    return h;
}

/* Verify results a case expects: ANY, NOT_OK (some refusal) or a code. */
#define VR_ANY (-1L)
#define VR_NOT_OK (-2L)

static void
check_vr(const char *what, const char *side, long got, long want)
{
    if ((want == VR_NOT_OK && got == X509_V_OK) ||
        (want >= 0 && got != want))
        fail_msg("%s: %s verify result %ld, want %ld", what, side, got, want);
}

static void
test_handshakes(void **state)
{
    /* The server is the gateway (mutual TLS, the CA) unless srv_cli: then
     * a server presenting a clientAuth certificate. */
    const struct {
        const char *what;
        int srv_cli;
        enum tlsctx_peer peer;
        char **cert, **key, **ca;
        int max_version;
        int server_ok, client_ok, server_has_peer;
        long server_vr, client_vr;
    } cases[] = {
        {"an agent with its certificate", 0, TLSCTX_PEER_CA, &cli_pem,
         &cli_key, &ca_pem, 0, 1, 1, 1, X509_V_OK, X509_V_OK},
        {"a joining agent (no certificate, trusts by pin)", 0,
         TLSCTX_PEER_NONE, NULL, NULL, NULL, 0, 1, 1, 0, VR_ANY, VR_ANY},
        {"a client certificate of another CA", 0, TLSCTX_PEER_CA, &alien_pem,
         &alien_key, &ca_pem, 0, 0, -1, -1, VR_NOT_OK, VR_ANY},
        {"the controller's serverAuth certificate as a client", 0,
         TLSCTX_PEER_CA, &srv_pem, &srv_key, &ca_pem, 0, 0, -1, -1,
         X509_V_ERR_INVALID_PURPOSE, VR_ANY},
        {"a server of another CA", 0, TLSCTX_PEER_CA, NULL, NULL, &other_pem,
         0, -1, 0, -1, VR_ANY, VR_NOT_OK},
        {"a TLS 1.1 client", 0, TLSCTX_PEER_NONE, NULL, NULL, NULL,
         TLS1_1_VERSION, 0, 0, -1, VR_ANY, VR_ANY},
        {"a clientAuth certificate posing as a server", 1, TLSCTX_PEER_CA,
         NULL, NULL, &ca_pem, 0, -1, 0, -1, VR_ANY,
         X509_V_ERR_INVALID_PURPOSE},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        SSL_CTX *srv = cases[i].srv_cli
                           ? ctx_ok(TLSCTX_SERVER, TLSCTX_PEER_NONE, cli_pem,
                                    cli_key, NULL)
                           : ctx_ok(TLSCTX_SERVER, TLSCTX_PEER_CA, srv_pem,
                                    srv_key, ca_pem);
        SSL_CTX *c = ctx_ok(TLSCTX_CLIENT, cases[i].peer,
                            cases[i].cert ? *cases[i].cert : NULL,
                            cases[i].key ? *cases[i].key : NULL,
                            cases[i].ca ? *cases[i].ca : NULL);
        struct hs h;

        if (cases[i].max_version) {
            /* Let the client offer it at all, so that the server refuses. */
            SSL_CTX_set_min_proto_version(c, TLS1_VERSION);
            SSL_CTX_set_security_level(c, 0);
        }
        h = handshake(srv, c, cases[i].max_version);
        if ((cases[i].server_ok >= 0 && h.server_ok != cases[i].server_ok) ||
            (cases[i].client_ok >= 0 && h.client_ok != cases[i].client_ok) ||
            (cases[i].server_has_peer >= 0 &&
             h.server_has_peer != cases[i].server_has_peer))
            fail_msg("%s: server %d client %d peer certificate %d",
                     cases[i].what, h.server_ok, h.client_ok,
                     h.server_has_peer);
        check_vr(cases[i].what, "server", h.server_vr, cases[i].server_vr);
        check_vr(cases[i].what, "client", h.client_vr, cases[i].client_vr);
        SSL_CTX_free(c);
        SSL_CTX_free(srv);
    }
}

static void
test_error_text(void **state)
{
    char buf[256];

    (void)state;
    ERR_clear_error();
    assert_string_equal(tlsctx_error(buf, sizeof(buf)), "unknown OpenSSL error");
    ERR_raise(ERR_LIB_SYS, ENOENT);
    assert_string_equal(tlsctx_error(buf, sizeof(buf)), strerror(ENOENT));
    assert_int_equal(ERR_peek_error(), 0);
    /* The first of several, and the queue emptied. */
    ERR_raise(ERR_LIB_SSL, SSL_R_CERTIFICATE_VERIFY_FAILED);
    ERR_raise(ERR_LIB_SYS, EPIPE);
    tlsctx_error(buf, sizeof(buf));
    assert_non_null(strstr(buf, "certificate verify failed"));
    assert_int_equal(ERR_peek_error(), 0);
}

/* tlsctx_read_pem: a certificate, a key, and the two ways it fails. */
static void
test_read_pem(void **state)
{
    char *missing = path_of("missing.pem"), *junk = path_of("junk.pem");
    X509 *x = NULL;
    EVP_PKEY *k = NULL;
    FILE *f;

    (void)state;
    assert_int_equal(tlsctx_read_pem(srv_pem, &x, NULL), 0);
    assert_non_null(x);
    assert_int_equal(tlsctx_read_pem(srv_key, NULL, &k), 0);
    assert_non_null(k);
    assert_int_equal(X509_check_private_key(x, k), 1);
    X509_free(x);
    EVP_PKEY_free(k);
    errno = 0;
    assert_int_equal(tlsctx_read_pem(missing, &x, NULL), -1);
    assert_int_equal(errno, ENOENT);
    f = fopen(junk, "w");
    assert_non_null(f);
    fputs("not a PEM file\n", f);
    fclose(f);
    x = NULL;
    assert_int_equal(tlsctx_read_pem(junk, &x, NULL), -2);
    assert_null(x);
    /* A key file holds no certificate. */
    assert_int_equal(tlsctx_read_pem(srv_key, &x, NULL), -2);
    ERR_clear_error();
    free(missing);
    free(junk);
}

/* ---- tlsev on a real libevent connection ---------------------------- */

struct side {
    struct event_base *base;
    short what;
    char text[256];
};

static void
on_event(struct bufferevent *bev, short what, void *arg)
{
    struct side *sd = arg;

    if (what & BEV_EVENT_CONNECTED)
        return;
    sd->what = what;
    tlsev_error(bev, "server's", sd->text, sizeof(sd->text));
    event_base_loopbreak(sd->base);
}

static void
on_server_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    (void)what;
    (void)arg;
}

/* The client's tlsev_error text when it connects to a server presenting
 * server_cert. */
static void
connect_and_fail(const char *cert, const char *key, const char *client_ca,
                 struct side *sd)
{
    SSL_CTX *sctx = ctx_ok(TLSCTX_SERVER, TLSCTX_PEER_NONE, cert, key, NULL);
    SSL_CTX *cctx = ctx_ok(TLSCTX_CLIENT, TLSCTX_PEER_CA, NULL, NULL, client_ca);
    struct bufferevent *sb, *cb;
    struct timeval tv = {5, 0};
    int sv[2];

    memset(sd, 0, sizeof(*sd));
    sd->base = event_base_new();
    assert_non_null(sd->base);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    evutil_make_socket_nonblocking(sv[0]);
    evutil_make_socket_nonblocking(sv[1]);
    sb = bufferevent_openssl_socket_new(sd->base, sv[0], SSL_new(sctx),
                                        BUFFEREVENT_SSL_ACCEPTING,
                                        BEV_OPT_CLOSE_ON_FREE);
    cb = bufferevent_openssl_socket_new(sd->base, sv[1], SSL_new(cctx),
                                        BUFFEREVENT_SSL_CONNECTING,
                                        BEV_OPT_CLOSE_ON_FREE);
    assert_non_null(sb);
    assert_non_null(cb);
    bufferevent_setcb(sb, NULL, NULL, on_server_event, NULL);
    bufferevent_setcb(cb, NULL, NULL, on_event, sd);
    bufferevent_enable(sb, EV_READ | EV_WRITE);
    bufferevent_enable(cb, EV_READ | EV_WRITE);
    event_base_loopexit(sd->base, &tv);
    event_base_dispatch(sd->base);
    bufferevent_free(cb);
    bufferevent_free(sb);
    event_base_free(sd->base);
    SSL_CTX_free(cctx);
    SSL_CTX_free(sctx);
    ERR_clear_error();
}

static void
test_tlsev_names_the_refused_certificate(void **state)
{
    struct side sd;

    (void)state;
    connect_and_fail(cli_pem, cli_key, ca_pem, &sd);
    assert_true(sd.what & BEV_EVENT_ERROR);
    assert_string_equal(sd.text, "the server's certificate is refused: "
                                 "unsuitable certificate purpose");
    connect_and_fail(srv_pem, srv_key, other_pem, &sd);
    assert_true(sd.what & BEV_EVENT_ERROR);
    assert_non_null(strstr(sd.text, "the server's certificate is refused: "));
}

/* What a client checks of the server it dialled: a name as a DNS name and
 * SNI, an address as an IP and never as SNI. */
static void
test_client_host(void **state)
{
    struct tlsctx_opts o = {.role = TLSCTX_CLIENT, .peer = TLSCTX_PEER_NONE};
    char why[TLSCTX_WHY_MAX];
    SSL_CTX *ctx = tlsctx_new(&o, why, sizeof(why));
    X509_VERIFY_PARAM *p;
    SSL *ssl;
    char *ip;

    (void)state;
    assert_non_null(ctx);
    assert_true(tlsctx_host_is_ip("127.0.0.1"));
    assert_true(tlsctx_host_is_ip("::1"));
    assert_false(tlsctx_host_is_ip("controller.example"));
    assert_false(tlsctx_host_is_ip("10.0.0.1.example"));

    ssl = SSL_new(ctx);
    assert_non_null(ssl);
    assert_int_equal(tlsctx_client_host(ssl, "controller.example"), 0);
    p = SSL_get0_param(ssl);
    assert_string_equal(X509_VERIFY_PARAM_get0_host(p, 0),
                        "controller.example");
    assert_null(X509_VERIFY_PARAM_get1_ip_asc(p));
    assert_string_equal(SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name),
                        "controller.example");
    SSL_free(ssl);

    ssl = SSL_new(ctx);
    assert_non_null(ssl);
    assert_int_equal(tlsctx_client_host(ssl, "::1"), 0);
    p = SSL_get0_param(ssl);
    assert_null(X509_VERIFY_PARAM_get0_host(p, 0));
    ip = X509_VERIFY_PARAM_get1_ip_asc(p);
    assert_non_null(ip);
    assert_string_equal(ip, "0:0:0:0:0:0:0:1"); /* OpenSSL spells it out */
    OPENSSL_free(ip);
    assert_null(SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name));
    SSL_free(ssl);
    SSL_CTX_free(ctx);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_server_policy),
        cmocka_unit_test(test_errors_name_the_file),
        cmocka_unit_test(test_handshakes),
        cmocka_unit_test(test_error_text),
        cmocka_unit_test(test_read_pem),
        cmocka_unit_test(test_tlsev_names_the_refused_certificate),
        cmocka_unit_test(test_client_host),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
