/*
 * pki: the cluster's certificate authority, made with OpenSSL's APIs (no
 * `openssl` command). On first start the controller creates, under
 * <data-dir>/pki/:
 *
 *   ca.pem, ca.key (0600)                 the cluster CA (EC P-256, 10 years)
 *   controller.pem, controller.key (0600) the agent gateway's server
 *                                         certificate, signed by the CA
 *
 * and `cloud-controller issue-agent-cert` signs an agent's client
 * certificate whose CN is the host name: the gateway takes the host's
 * identity from it, so an agent can only ever speak for its own host.
 * Everything here blocks (file I/O, key generation): call it before the
 * event loop runs, never from a callback.
 */
#ifndef CLOUD_PKI_H
#define CLOUD_PKI_H

struct pki_paths {
    char *dir;     /* <data-dir>/pki */
    char *ca_cert; /* ca.pem */
    char *ca_key;  /* ca.key */
    char *cert;    /* controller.pem */
    char *key;     /* controller.key */
};

/*
 * Makes sure the CA and the controller's certificate exist under data_dir
 * (creating what is missing) and fills p. Returns 0, or -1 (logged).
 * Clear p with pki_paths_clear() either way.
 */
int pki_init(const char *data_dir, struct pki_paths *p);
void pki_paths_clear(struct pki_paths *p);

/* 0 if name is a valid host name (the hosts.name rule), -1 if not. */
int pki_name_valid(const char *name);

struct X509_name_st; /* OpenSSL's X509_NAME */

/*
 * The only CN of a certificate's or a request's subject as a new string,
 * or NULL with *why (unless why is NULL) saying what is wrong, to follow
 * "the certificate": "needs exactly one CN", or "CN is not a host name"
 * (empty, over 253 bytes or holding a NUL). Whether it is a valid host
 * name (pki_name_valid) is the caller's next check.
 */
char *pki_only_cn(struct X509_name_st *name, const char **why);

/*
 * Issues a client certificate for host `name`, signed by the CA under
 * data_dir (created if missing), into out_dir: cert.pem, key.pem (0600) and
 * a copy of ca.pem. Returns 0, or -1 (logged).
 */
int pki_issue_agent(const char *data_dir, const char *name,
                    const char *out_dir);

/* The join flow (join.c). X509 and EVP_PKEY are OpenSSL's. */
struct x509_st;
struct evp_pkey_st;
#define PKI_JOIN_DAYS 365

/* Loads the CA of p (made by pki_init). 0 or -1 (logged). */
int pki_ca_read(const struct pki_paths *p, struct x509_st **ca,
                struct evp_pkey_st **ca_key);
/*
 * Signs a client certificate (clientAuth only, CN and DNS SAN = name, days
 * of validity) for the public key pub. NULL (logged) on failure.
 */
struct x509_st *pki_sign_agent(struct x509_st *ca, struct evp_pkey_st *ca_key,
                               struct evp_pkey_st *pub, const char *name,
                               int days);

#endif
