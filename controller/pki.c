/*
 * pki: cluster CA and certificate issuing with OpenSSL 3 (see pki.h). Owns
 * the files under <data-dir>/pki. Keys are EC P-256; private keys are
 * written 0600 through a temporary file and a rename, so a crash never
 * leaves half a key where the controller would load it.
 */
#define LOG_MODULE "pki"

#include "pki.h"

#include <errno.h>
#include <fcntl.h>
#include <regex.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "fsutil.h"
#include "log.h"
#include "mem.h"
#include "tlsctx.h"

#define PKI_CA_DAYS 3650
#define PKI_LEAF_DAYS 825
#define PKI_CA_CN "cloud cluster CA"
#define PKI_CONTROLLER_CN "cloud-controller"

/* Logs msg with OpenSSL's queued error text, and clears the queue. */
static void
pki_ssl_fail(const char *msg)
{
    char buf[256];

    log_warnx("%s: %s", msg, tlsctx_error(buf, sizeof(buf)));
}

int
pki_name_valid(const char *name)
{
    regex_t re;
    int rc;

    if (name == NULL || strlen(name) > 253)
        return -1;
    if (regcomp(&re, "^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$",
                REG_EXTENDED | REG_NOSUB) != 0)
        return -1;
    rc = regexec(&re, name, 0, NULL, 0);
    regfree(&re);
    return rc == 0 ? 0 : -1;
}

char *
pki_only_cn(X509_NAME *name, const char **why)
{
    int idx = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
    const ASN1_STRING *s;
    int len;

    if (idx < 0 || X509_NAME_get_index_by_NID(name, NID_commonName, idx) >= 0) {
        if (why != NULL)
            *why = "needs exactly one CN";
        return NULL;
    }
    s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx));
    len = ASN1_STRING_length(s);
    if (len <= 0 || len > 253 ||
        memchr(ASN1_STRING_get0_data(s), '\0', (size_t)len) != NULL) {
        if (why != NULL)
            *why = "CN is not a host name";
        return NULL;
    }
    return xstrndup((const char *)ASN1_STRING_get0_data(s), (size_t)len);
}

/* mkdir -p (fsutil.h: parents 0755, the leaf mode), said once. */
static int
pki_mkdir(const char *path, mode_t mode)
{
    if (fsutil_mkdir_p(path, mode) < 0) {
        log_warn("cannot create directory %s", path);
        return -1;
    }
    return 0;
}

static EVP_PKEY *
pki_keygen(void)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");

    if (k == NULL)
        pki_ssl_fail("cannot generate an EC P-256 key");
    return k;
}

static int
pki_add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509_EXTENSION *ext;
    int ok;

    X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (ext == NULL) {
        pki_ssl_fail("cannot build a certificate extension");
        return -1;
    }
    ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    if (!ok) {
        pki_ssl_fail("cannot add a certificate extension");
        return -1;
    }
    return 0;
}

/*
 * Builds a certificate for key with subject CN cn, signed by issuer_key
 * (issuer NULL: self-signed). exts is a list of (nid, value) pairs ending
 * with nid 0.
 */
struct pki_ext {
    int nid;
    const char *value;
};

static X509 *
pki_make_cert(EVP_PKEY *key, const char *cn, X509 *issuer,
              EVP_PKEY *issuer_key, int days, const struct pki_ext *exts)
{
    X509 *x = X509_new();
    X509_NAME *name = NULL;
    BIGNUM *bn = NULL;
    ASN1_INTEGER *serial = NULL;
    int ok = 0;

    if (x == NULL) {
        pki_ssl_fail("cannot allocate a certificate");
        return NULL;
    }
    bn = BN_new();
    if (bn == NULL || !BN_rand(bn, 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) ||
        (serial = BN_to_ASN1_INTEGER(bn, NULL)) == NULL ||
        !X509_set_serialNumber(x, serial)) {
        pki_ssl_fail("cannot set a random serial number");
        goto cleanup;
    }
    if (!X509_set_version(x, X509_VERSION_3) ||
        X509_gmtime_adj(X509_getm_notBefore(x), -3600) == NULL ||
        X509_time_adj_ex(X509_getm_notAfter(x), days, 0, NULL) == NULL ||
        !X509_set_pubkey(x, key)) {
        pki_ssl_fail("cannot fill in the certificate");
        goto cleanup;
    }
    name = X509_NAME_new();
    if (name == NULL ||
        !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                    (const unsigned char *)cn, -1, -1, 0) ||
        !X509_set_subject_name(x, name)) {
        pki_ssl_fail("cannot set the certificate subject");
        goto cleanup;
    }
    if (!X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer)
                                        : name)) {
        pki_ssl_fail("cannot set the certificate issuer");
        goto cleanup;
    }
    for (; exts->nid != 0; exts++)
        if (pki_add_ext(x, issuer ? issuer : x, exts->nid, exts->value) < 0)
            goto cleanup;
    if (X509_sign(x, issuer_key, EVP_sha256()) <= 0) {
        pki_ssl_fail("cannot sign the certificate");
        goto cleanup;
    }
    ok = 1;

cleanup:
    X509_NAME_free(name);
    ASN1_INTEGER_free(serial);
    BN_free(bn);
    if (!ok) {
        X509_free(x);
        x = NULL;
    }
    return x;
}

/* Writes cert (or else key) as PEM to path (mode), atomically and durably
 * (fsutil.h). */
static int
pki_write(const char *path, mode_t mode, X509 *cert, EVP_PKEY *key)
{
    BIO *mem = BIO_new(BIO_s_mem());
    char *data = NULL;
    long len;
    int ok, ret = -1;

    if (mem == NULL) {
        pki_ssl_fail("cannot allocate a memory BIO");
        return -1;
    }
    if (cert != NULL)
        ok = PEM_write_bio_X509(mem, cert);
    else
        ok = PEM_write_bio_PrivateKey(mem, key, NULL, NULL, 0, NULL, NULL);
    len = BIO_get_mem_data(mem, &data);
    if (!ok || len <= 0) {
        pki_ssl_fail("cannot write PEM data");
        goto cleanup;
    }
    if (fsutil_write_atomic(path, mode, data, (size_t)len) < 0) {
        log_warn("cannot write %s", path);
        goto cleanup;
    }
    ret = 0;

cleanup:
    /* A key's PEM must not linger in freed memory. */
    if (data != NULL && len > 0)
        OPENSSL_cleanse(data, (size_t)len);
    BIO_free(mem);
    return ret;
}

/* Reads a certificate into *cert (cert not NULL) or else a private key
 * into *key from the PEM file path. 0 or -1. */
static int
pki_read(const char *path, X509 **cert, EVP_PKEY **key)
{
    switch (tlsctx_read_pem(path, cert, key)) {
    case -1:
        log_warn("cannot open %s", path);
        return -1;
    case -2:
        pki_ssl_fail(path);
        return -1;
    }
    return 0;
}

static int
pki_exists(const char *path)
{
    return access(path, F_OK) == 0;
}

/* Loads the CA from p, creating it first if neither file exists. */
static int
pki_ca_load(const struct pki_paths *p, X509 **cap, EVP_PKEY **keyp)
{
    static const struct pki_ext ca_exts[] = {
        {NID_basic_constraints, "critical,CA:TRUE,pathlen:0"},
        {NID_key_usage, "critical,keyCertSign,cRLSign"},
        {NID_subject_key_identifier, "hash"},
        {NID_authority_key_identifier, "keyid:always"},
        {0, NULL},
    };
    int have_cert = pki_exists(p->ca_cert), have_key = pki_exists(p->ca_key);

    *cap = NULL;
    *keyp = NULL;
    if (have_cert != have_key) {
        log_warnx("%s and %s must both exist or both be absent; restore the missing one or remove both to make a new CA",
                  p->ca_cert, p->ca_key);
        return -1;
    }
    if (!have_cert) {
        *keyp = pki_keygen();
        if (*keyp == NULL)
            return -1;
        *cap = pki_make_cert(*keyp, PKI_CA_CN, NULL, *keyp, PKI_CA_DAYS,
                             ca_exts);
        if (*cap == NULL || pki_write(p->ca_key, 0600, NULL, *keyp) < 0 ||
            pki_write(p->ca_cert, 0644, *cap, NULL) < 0)
            goto fail;
        log_info("created the cluster CA in %s", p->ca_cert);
        return 0;
    }
    return pki_ca_read(p, cap, keyp);

fail:
    X509_free(*cap);
    EVP_PKEY_free(*keyp);
    *cap = NULL;
    *keyp = NULL;
    return -1;
}

/* A leaf certificate for key, signed by the CA, for eku (serverAuth or
 * clientAuth) and with the subjectAltName list san unless it is NULL. */
static X509 *
pki_make_leaf(EVP_PKEY *key, const char *cn, const char *eku, const char *san,
              X509 *ca, EVP_PKEY *ca_key, int days)
{
    const struct pki_ext exts[] = {
        {NID_basic_constraints, "critical,CA:FALSE"},
        {NID_key_usage, "critical,digitalSignature,keyAgreement"},
        {NID_ext_key_usage, eku},
        {NID_subject_key_identifier, "hash"},
        {NID_authority_key_identifier, "keyid:always"},
        {san != NULL ? NID_subject_alt_name : 0, san},
        {0, NULL},
    };

    return pki_make_cert(key, cn, ca, ca_key, days, exts);
}

/* Issues a leaf certificate into cert_path/key_path. */
static int
pki_issue(X509 *ca, EVP_PKEY *ca_key, const char *cn, const char *eku,
          const char *san, const char *cert_path, const char *key_path)
{
    EVP_PKEY *key = pki_keygen();
    X509 *x = NULL;
    int ret = -1;

    if (key == NULL)
        return -1;
    x = pki_make_leaf(key, cn, eku, san, ca, ca_key, PKI_LEAF_DAYS);
    if (x == NULL || pki_write(key_path, 0600, NULL, key) < 0 ||
        pki_write(cert_path, 0644, x, NULL) < 0)
        goto cleanup;
    ret = 0;

cleanup:
    X509_free(x);
    EVP_PKEY_free(key);
    return ret;
}

static void
pki_paths_fill(const char *data_dir, struct pki_paths *p)
{
    p->dir = xasprintf("%s/pki", data_dir);
    p->ca_cert = xasprintf("%s/ca.pem", p->dir);
    p->ca_key = xasprintf("%s/ca.key", p->dir);
    p->cert = xasprintf("%s/controller.pem", p->dir);
    p->key = xasprintf("%s/controller.key", p->dir);
}

int
pki_init(const char *data_dir, struct pki_paths *p)
{
    X509 *ca = NULL;
    EVP_PKEY *ca_key = NULL;
    char host[256] = "";
    char *san = NULL;
    int ret = -1;

    memset(p, 0, sizeof(*p));
    pki_paths_fill(data_dir, p);
    if (pki_mkdir(data_dir, 0755) < 0 || pki_mkdir(p->dir, 0700) < 0)
        goto cleanup;
    if (pki_ca_load(p, &ca, &ca_key) < 0)
        goto cleanup;
    if (pki_exists(p->cert) && pki_exists(p->key)) {
        ret = 0;
        goto cleanup;
    }
    /* Agents check the name they dial against these. */
    if (gethostname(host, sizeof(host) - 1) < 0 || host[0] == '\0' ||
        strchr(host, ',') != NULL)
        san = xstrdup("DNS:localhost,IP:127.0.0.1,IP:::1");
    else
        san = xasprintf("DNS:localhost,IP:127.0.0.1,IP:::1,DNS:%s", host);
    if (pki_issue(ca, ca_key, PKI_CONTROLLER_CN, "serverAuth", san, p->cert,
                  p->key) < 0)
        goto cleanup;
    log_info("issued the agent gateway certificate %s (%s)", p->cert, san);
    ret = 0;

cleanup:
    free(san);
    X509_free(ca);
    EVP_PKEY_free(ca_key);
    return ret;
}

void
pki_paths_clear(struct pki_paths *p)
{
    if (p == NULL)
        return;
    free(p->dir);
    free(p->ca_cert);
    free(p->ca_key);
    free(p->cert);
    free(p->key);
    memset(p, 0, sizeof(*p));
}

/* Copies the CA certificate to path (agents verify the controller with it). */
static int
pki_copy_cert(const char *from, const char *to)
{
    X509 *x = NULL;
    int ret;

    if (pki_read(from, &x, NULL) < 0)
        return -1;
    ret = pki_write(to, 0644, x, NULL);
    X509_free(x);
    return ret;
}

int
pki_issue_agent(const char *data_dir, const char *name, const char *out_dir)
{
    struct pki_paths p;
    X509 *ca = NULL;
    EVP_PKEY *ca_key = NULL;
    char *cert = NULL, *key = NULL, *ca_copy = NULL;
    int ret = -1;

    memset(&p, 0, sizeof(p));
    if (pki_name_valid(name) < 0) {
        log_warnx("host name %s is not valid: lower-case letters, digits, '.' and '-', starting and ending with a letter or digit",
                  name);
        return -1;
    }
    pki_paths_fill(data_dir, &p);
    if (pki_mkdir(data_dir, 0755) < 0 || pki_mkdir(p.dir, 0700) < 0 ||
        pki_mkdir(out_dir, 0700) < 0)
        goto cleanup;
    if (pki_ca_load(&p, &ca, &ca_key) < 0)
        goto cleanup;
    cert = xasprintf("%s/cert.pem", out_dir);
    key = xasprintf("%s/key.pem", out_dir);
    ca_copy = xasprintf("%s/ca.pem", out_dir);
    if (pki_issue(ca, ca_key, name, "clientAuth", NULL, cert, key) < 0 ||
        pki_copy_cert(p.ca_cert, ca_copy) < 0)
        goto cleanup;
    log_info("issued an agent certificate for host %s into %s", name, out_dir);
    ret = 0;

cleanup:
    free(cert);
    free(key);
    free(ca_copy);
    X509_free(ca);
    EVP_PKEY_free(ca_key);
    pki_paths_clear(&p);
    return ret;
}

/* ---- the join flow (join.c) ------------------------------------------- */

int
pki_ca_read(const struct pki_paths *p, X509 **ca, EVP_PKEY **ca_key)
{
    int rc_cert, rc_key;

    *ca = NULL;
    *ca_key = NULL;
    /* Both read, so that both are reported when both are unreadable. */
    rc_cert = pki_read(p->ca_cert, ca, NULL);
    rc_key = pki_read(p->ca_key, NULL, ca_key);
    if (rc_cert < 0 || rc_key < 0 ||
        X509_check_private_key(*ca, *ca_key) != 1) {
        if (*ca != NULL && *ca_key != NULL)
            pki_ssl_fail("the CA key does not match the CA certificate");
        X509_free(*ca);
        EVP_PKEY_free(*ca_key);
        *ca = NULL;
        *ca_key = NULL;
        return -1;
    }
    return 0;
}

X509 *
pki_sign_agent(X509 *ca, EVP_PKEY *ca_key, EVP_PKEY *pub, const char *name,
               int days)
{
    char *san = xasprintf("DNS:%s", name);
    X509 *x = pki_make_leaf(pub, name, "clientAuth", san, ca, ca_key, days);

    free(san);
    return x;
}
