/*
 * ident: cluster id and agent name from the agent's PEM files (ident.h).
 * Owns no state.
 */
#define LOG_MODULE "ident"

#include "ident.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "domxml.h"
#include "log.h"
#include "mem.h"
#include "tlsctx.h"

static X509 *
ident_read(const char *path, const char *what)
{
    FILE *fp = fopen(path, "r");
    X509 *x;

    if (fp == NULL) {
        log_warn("cannot open the %s %s", what, path);
        return NULL;
    }
    x = PEM_read_X509(fp, NULL, NULL, NULL);
    if (fclose(fp) != 0)
        log_warn("closing %s", path);
    if (x == NULL) {
        char buf[256];

        if (ERR_peek_error() == 0)
            snprintf(buf, sizeof(buf), "no PEM certificate");
        else
            tlsctx_error(buf, sizeof(buf));
        log_warnx("the %s %s holds no readable certificate: %s", what, path,
                  buf);
    }
    return x;
}

int
ident_load(const char *ca_file, const char *cert_file, char **clusterp,
           char **ownerp)
{
    unsigned char *der = NULL, md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char hex[IDENT_CLUSTER_HEX + 1], cn[256];
    X509 *ca = NULL, *cert = NULL;
    int len, i, ret = -1;

    *clusterp = *ownerp = NULL;
    ca = ident_read(ca_file, "CA certificate");
    if (ca == NULL)
        goto cleanup;
    cert = ident_read(cert_file, "agent certificate");
    if (cert == NULL)
        goto cleanup;
    len = i2d_X509(ca, &der);
    if (len <= 0) {
        log_warnx("cannot encode the CA certificate %s", ca_file);
        goto cleanup;
    }
    if (EVP_Digest(der, (size_t)len, md, &mdlen, EVP_sha256(), NULL) != 1 ||
        mdlen < IDENT_CLUSTER_HEX / 2) {
        log_warnx("cannot hash the CA certificate %s", ca_file);
        goto cleanup;
    }
    for (i = 0; i < IDENT_CLUSTER_HEX / 2; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    len = X509_NAME_get_text_by_NID(X509_get_subject_name(cert),
                                    NID_commonName, cn, sizeof(cn));
    if (len <= 0 || (size_t)len >= sizeof(cn) || strlen(cn) != (size_t)len ||
        domxml_owner_valid(cn) < 0) {
        log_warnx("the agent certificate %s has no usable CN", cert_file);
        goto cleanup;
    }
    *clusterp = xstrdup(hex);
    *ownerp = xstrdup(cn);
    ret = 0;

cleanup:
    OPENSSL_free(der);
    X509_free(ca);
    X509_free(cert);
    return ret;
}
