/*
 * join: agent enrolment with one-time join tokens, and certificate
 * revocation (docs/security.md, "Agent enrolment").
 *
 * `cloud-controller join-token create` stores a token (SHA-256 of its secret
 * only) and prints the `cloud-agent join` command line with the CA pin. An
 * agent without a certificate may open a TLS session to the gateway and
 * send one JoinRequest: join_prepare() checks the CSR and signs it with the
 * cluster CA, ST_JOIN_COMPLETE consumes the token and records the serial in
 * one transaction, and only then does the gateway send the certificate.
 *
 * The gateway checks every client certificate's serial against an
 * in-memory revocation set, re-read from PostgreSQL every JOIN_REFRESH_MS
 * and at once on a host.cert_revoked event; after each reload it is told
 * (on_reload) so it can drop connections whose certificate was revoked.
 */
#ifndef CLOUD_JOIN_H
#define CLOUD_JOIN_H

#include <event2/event.h>

#include "db.h"
#include "pki.h"

#define JOIN_REFRESH_MS 10000
#define JOIN_TOKEN_MAX 128  /* "<16 hex>.<64 hex>" is 81 */
#define JOIN_CSR_MAX 16384  /* PEM bytes */
#define JOIN_DEFAULT_TTL_S 3600
/* JoinRequests per client address: a token bucket (ratelimit.h). */
#define JOIN_RATE 0.2 /* per second */
#define JOIN_BURST 20

struct join;

/* Loads the CA (pki_init ran). NULL (logged) on failure. */
struct join *join_new(struct event_base *base, struct db_pool *db,
                      const struct pki_paths *pki,
                      void (*on_reload)(void *arg), void *arg);
void join_free(struct join *j); /* accepts NULL */
/* Re-reads the revocation set now (a host.cert_revoked event). */
void join_refresh(struct join *j);
/* Join attempts per client address: rate per second (<= 0: no limit) and
 * burst; JOIN_RATE and JOIN_BURST until set. Accepts j == NULL. */
void join_set_rate(struct join *j, double rate, double burst);
/*
 * Counts a JoinRequest from addr (text, as the gateway logs it): 0 if
 * within the rate, else -1 with a sentence for the agent in why and the
 * whole seconds to wait in *retry_after_s. Checked before the CSR is
 * looked at, so a flood costs no signatures and no database work.
 */
int join_admit(struct join *j, const char *addr, unsigned *retry_after_s,
               char *why, size_t whylen);
/* 1 if serial (pin_serial form) is revoked, else 0. */
int join_revoked(const struct join *j, const char *serial);

/* A signed certificate waiting for its token to be consumed. */
struct join_issue {
    char *token_id, *token_sha; /* hex */
    char *host, *serial, *not_after;
    char *cert_pem, *ca_pem;
};

/*
 * Checks a JoinRequest (token syntax, host name, CSR: signature, key type
 * and size, CN = host name) and signs the certificate into out. Returns 0,
 * or -1 with a sentence for the agent in why.
 */
int join_prepare(struct join *j, const char *token, const char *host,
                 const char *csr_pem, struct join_issue *out, char *why,
                 size_t whylen);
void join_issue_clear(struct join_issue *is);

/* The CA's pin ("sha256:<hex>", PIN_TEXT_LEN + 1 bytes). 0 or -1. */
int join_ca_pin(const struct join *j, char *out, size_t outlen);
/* Draws a new token: id (16 hex), secret (64 hex) and the secret's
 * SHA-256 (hex). 0 or -1 (logged). */
int join_token_new(char id[17], char secret[65], char sha[65]);

#endif
