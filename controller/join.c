/*
 * join: join tokens, CSR signing and the revocation set (see join.h). Owns
 * the CA certificate and key in memory while the gateway runs, and the
 * revocation set and its refresh timer. The `join-token` and `cert`
 * subcommands are cmd_join.c.
 */
#define LOG_MODULE "join"
#include "join.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "auth.h"
#include "log.h"
#include "mem.h"
#include "pin.h"
#include "ratelimit.h"
#include "store.h"
#include "strmap.h"

struct join {
    struct event_base *base;
    struct db_pool *db;
    X509 *ca;
    EVP_PKEY *ca_key;
    char *ca_pem;
    struct strmap revoked; /* serial -> its own key */
    struct event *timer;
    int inflight, again;
    int loaded;
    void (*on_reload)(void *arg);
    void *arg;
    struct ratelimit *rl; /* join attempts per client address */
};

/* ---- join attempts per address --------------------------------------- */

#define JOIN_RL_ENTRIES 4096

void
join_set_rate(struct join *j, double rate, double burst)
{
    if (j == NULL)
        return;
    rl_free(j->rl);
    j->rl = rl_new(rate, burst, JOIN_RL_ENTRIES);
}

int
join_admit(struct join *j, const char *addr, unsigned *retry_after_s,
           char *why, size_t whylen)
{
    struct rl_addr a;

    *retry_after_s = 0;
    if (j->rl == NULL || rl_addr_parse(addr, &a) < 0 ||
        rl_take(j->rl, &a, rl_now(), retry_after_s) == 0)
        return 0;
    snprintf(why, whylen,
             "too many join attempts from %s (at most %g per second, bursts "
             "of %g); retry in %u s",
             addr, rl_rate(j->rl), rl_burst(j->rl), *retry_after_s);
    return -1;
}

/* ---- the revocation set ------------------------------------------------ */

static void
revoked_clear(struct join *j)
{
    size_t i;

    for (i = 0; i < j->revoked.cap; i++)
        if (j->revoked.keys[i] != NULL)
            free(j->revoked.vals[i]);
    strmap_fini(&j->revoked);
    strmap_init(&j->revoked);
}

static void join_load(struct join *j);

static void
on_revoked_loaded(const PGresult *res, const struct db_error *err, void *arg)
{
    struct join *j = arg;
    int i, n;

    j->inflight = 0;
    if (err != NULL) {
        /* Keep the set we have: an outage must not un-revoke anything. */
        if (err->status != 503 || j->loaded)
            log_warnx("cannot read the certificate revocation list: %s",
                      err->message);
        return;
    }
    revoked_clear(j);
    n = PQntuples(res);
    for (i = 0; i < n; i++) {
        char *s = xstrdup(PQgetvalue(res, i, 0));

        free(strmap_put(&j->revoked, s, s));
    }
    if (!j->loaded || n > 0)
        log_debug("revocation list: %d certificates", n);
    j->loaded = 1;
    if (j->on_reload)
        j->on_reload(j->arg);
    if (j->again) {
        j->again = 0;
        join_load(j);
    }
}

static void
join_load(struct join *j)
{
    if (j->inflight) {
        j->again = 1; /* a revocation may have landed after that read */
        return;
    }
    j->inflight = 1;
    db_query(j->db, store_stmt(ST_JOIN_REVOKED), NULL, on_revoked_loaded, j);
}

static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    join_load(arg);
}

void
join_refresh(struct join *j)
{
    if (j != NULL)
        join_load(j);
}

int
join_revoked(const struct join *j, const char *serial)
{
    return j != NULL && serial != NULL &&
           strmap_get(&j->revoked, serial) != NULL;
}

struct join *
join_new(struct event_base *base, struct db_pool *db,
         const struct pki_paths *pki, void (*on_reload)(void *arg), void *arg)
{
    struct join *j = xcalloc(1, sizeof(*j));
    struct timeval tv = {JOIN_REFRESH_MS / 1000, (JOIN_REFRESH_MS % 1000) * 1000};
    BIO *b = NULL;
    char *data;
    long len;

    j->base = base;
    j->db = db;
    j->on_reload = on_reload;
    j->arg = arg;
    j->rl = rl_new(JOIN_RATE, JOIN_BURST, JOIN_RL_ENTRIES);
    strmap_init(&j->revoked);
    if (pki_ca_read(pki, &j->ca, &j->ca_key) < 0)
        goto fail;
    b = BIO_new(BIO_s_mem());
    if (b == NULL || PEM_write_bio_X509(b, j->ca) != 1 ||
        (len = BIO_get_mem_data(b, &data)) <= 0) {
        log_warnx("cannot encode the CA certificate as PEM");
        goto fail;
    }
    j->ca_pem = xstrndup(data, (size_t)len);
    BIO_free(b);
    b = NULL;
    j->timer = event_new(base, -1, EV_PERSIST, timer_cb, j);
    if (j->timer == NULL || event_add(j->timer, &tv) < 0)
        fatalx("cannot start the revocation list timer");
    join_load(j);
    return j;

fail:
    BIO_free(b);
    join_free(j);
    return NULL;
}

void
join_free(struct join *j)
{
    if (j == NULL)
        return;
    if (j->timer)
        event_free(j->timer);
    revoked_clear(j);
    strmap_fini(&j->revoked);
    X509_free(j->ca);
    EVP_PKEY_free(j->ca_key);
    free(j->ca_pem);
    rl_free(j->rl);
    free(j);
}

/* ---- JoinRequest ------------------------------------------------------- */

void
join_issue_clear(struct join_issue *is)
{
    if (is == NULL)
        return;
    free(is->token_id);
    free(is->token_sha);
    free(is->host);
    free(is->serial);
    free(is->not_after);
    free(is->cert_pem);
    free(is->ca_pem);
    memset(is, 0, sizeof(*is));
}

/* Splits "<16 hex>.<64 hex>" into id and the secret's SHA-256 (hex). */
static int
token_split(const char *token, char id[17], char sha[65])
{
    const char *dot = strchr(token, '.');

    if (dot == NULL || dot - token != 16 ||
        strspn(token, "0123456789abcdef") != 16 || strlen(dot + 1) != 64 ||
        strspn(dot + 1, "0123456789abcdef") != 64)
        return -1;
    memcpy(id, token, 16);
    id[16] = '\0';
    auth_hash(dot + 1, sha);
    return 0;
}

/* EC P-256/P-384 or RSA 2048..8192: what the gateway's TLS accepts. */
static int
key_ok(EVP_PKEY *k)
{
    char group[64] = "";
    size_t glen = 0;
    int bits = EVP_PKEY_get_bits(k);

    if (EVP_PKEY_is_a(k, "EC"))
        return EVP_PKEY_get_group_name(k, group, sizeof(group), &glen) == 1 &&
               (strcmp(group, "prime256v1") == 0 ||
                strcmp(group, "P-256") == 0 ||
                strcmp(group, "secp384r1") == 0 || strcmp(group, "P-384") == 0);
    if (EVP_PKEY_is_a(k, "RSA"))
        return bits >= 2048 && bits <= 8192;
    return 0;
}

static char *
pem_of(X509 *x)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *data, *out = NULL;
    long len;

    if (b != NULL && PEM_write_bio_X509(b, x) == 1 &&
        (len = BIO_get_mem_data(b, &data)) > 0)
        out = xstrndup(data, (size_t)len);
    BIO_free(b);
    return out;
}

int
join_prepare(struct join *j, const char *token, const char *host,
             const char *csr_pem, struct join_issue *out, char *why,
             size_t whylen)
{
    char id[17], sha[65], serial[PIN_SERIAL_MAX], *cn = NULL;
    const ASN1_TIME *na;
    struct tm tm;
    char when[64];
    X509_REQ *req = NULL;
    X509 *x = NULL;
    EVP_PKEY *pub;
    BIO *b = NULL;
    int ret = -1;

    memset(out, 0, sizeof(*out));
    ERR_clear_error();
    if (strlen(token) > JOIN_TOKEN_MAX || token_split(token, id, sha) < 0) {
        snprintf(why, whylen, "the join token is malformed (want <16 hex>.<64 hex>)");
        goto cleanup;
    }
    if (pki_name_valid(host) < 0) {
        snprintf(why, whylen, "host name %.64s is not valid: lower-case letters, digits, '.' and '-'",
                 host);
        goto cleanup;
    }
    if (strlen(csr_pem) > JOIN_CSR_MAX ||
        (b = BIO_new_mem_buf(csr_pem, (int)strlen(csr_pem))) == NULL ||
        (req = PEM_read_bio_X509_REQ(b, NULL, NULL, NULL)) == NULL) {
        snprintf(why, whylen, "csr_pem is not a PEM certificate request of at most %d bytes",
                 JOIN_CSR_MAX);
        goto cleanup;
    }
    pub = X509_REQ_get0_pubkey(req);
    if (pub == NULL || !key_ok(pub)) {
        snprintf(why, whylen, "the request's key must be EC P-256 or P-384, or RSA of 2048 to 8192 bits");
        goto cleanup;
    }
    if (X509_REQ_verify(req, pub) != 1) {
        snprintf(why, whylen, "the certificate request's signature does not verify");
        goto cleanup;
    }
    cn = pki_only_cn(X509_REQ_get_subject_name(req), NULL);
    if (cn == NULL || strcmp(cn, host) != 0) {
        snprintf(why, whylen, "the certificate request's subject must have exactly one CN, the host name %s",
                 host);
        goto cleanup;
    }
    x = pki_sign_agent(j->ca, j->ca_key, pub, host, PKI_JOIN_DAYS);
    if (x == NULL || pin_serial(x, serial, sizeof(serial)) < 0 ||
        (na = X509_get0_notAfter(x)) == NULL || ASN1_TIME_to_tm(na, &tm) != 1 ||
        strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0 ||
        (out->cert_pem = pem_of(x)) == NULL) {
        snprintf(why, whylen, "the controller cannot sign the certificate; try again");
        log_warnx("cannot sign a certificate for host %s", host);
        goto cleanup;
    }
    out->token_id = xstrdup(id);
    out->token_sha = xstrdup(sha);
    out->host = xstrdup(host);
    out->serial = xstrdup(serial);
    out->not_after = xstrdup(when);
    out->ca_pem = xstrdup(j->ca_pem);
    ret = 0;

cleanup:
    if (ret < 0) {
        join_issue_clear(out);
        ERR_clear_error();
    }
    OPENSSL_cleanse(sha, sizeof(sha));
    free(cn);
    X509_free(x);
    X509_REQ_free(req);
    BIO_free(b);
    return ret;
}

int
join_ca_pin(const struct join *j, char *out, size_t outlen)
{
    return j != NULL ? pin_format(j->ca, out, outlen) : -1;
}

int
join_token_new(char id[17], char secret[65], char sha[65])
{
    unsigned char rnd[40];
    int i;

    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        log_warnx("cannot draw random bytes for a join token");
        return -1;
    }
    for (i = 0; i < 8; i++)
        snprintf(id + 2 * i, 3, "%02x", rnd[i]);
    for (i = 0; i < 32; i++)
        snprintf(secret + 2 * i, 3, "%02x", rnd[8 + i]);
    auth_hash(secret, sha);
    OPENSSL_cleanse(rnd, sizeof(rnd));
    return 0;
}
