/*
 * pin: the CA pin of the join flow and certificate serials, shared by the
 * controller and the agent. A pin is "sha256:" and the SHA-256 (64 hex
 * digits) of a certificate's DER SubjectPublicKeyInfo, the same value as
 * kubeadm's --discovery-token-ca-cert-hash.
 */
#ifndef CLOUD_PIN_H
#define CLOUD_PIN_H

#include <stddef.h>

#include <openssl/x509.h>

#define PIN_PREFIX "sha256:"
#define PIN_LEN 32
#define PIN_TEXT_LEN (sizeof(PIN_PREFIX) - 1 + 2 * PIN_LEN) /* no NUL */
#define PIN_SERIAL_MAX 65 /* 64 hex digits and a NUL */

/* SHA-256 of x's SubjectPublicKeyInfo. 0 or -1. */
int pin_compute(X509 *x, unsigned char out[PIN_LEN]);
/* The same as "sha256:<hex>" in out (PIN_TEXT_LEN + 1 bytes). 0 or -1. */
int pin_format(X509 *x, char *out, size_t outlen);
/* Parses "sha256:<64 hex digits>" (either case). 0, or -1 if malformed. */
int pin_parse(const char *s, unsigned char out[PIN_LEN]);
/* Constant-time: 1 if x's key has pin, else 0. */
int pin_matches(X509 *x, const unsigned char pin[PIN_LEN]);

/* x's serial as upper-case hex without leading zeros. 0 or -1. */
int pin_serial(X509 *x, char *out, size_t outlen);
/* Normalises a serial typed by a person (hex, either case, optional ':'
 * separators and leading zeros) into out. 0, or -1 if not a serial. */
int pin_serial_parse(const char *s, char *out, size_t outlen);

#endif
