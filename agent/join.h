/*
 * join: `cloud-agent join`, the agent's side of enrolment. Dials the
 * controller's gateway over TLS trusting nothing but the CA pin (the
 * SHA-256 of the CA's SubjectPublicKeyInfo, printed by `cloud-controller
 * join-token create`), sends a JoinRequest with a new EC P-256 key's CSR and
 * the one-time token, and writes the key (0600), the certificate and the CA
 * into the pki directory, which `cloud-agent run` then uses by default.
 * Blocking I/O: a command, not the daemon.
 */
#ifndef CLOUD_AGENT_JOIN_H
#define CLOUD_AGENT_JOIN_H

struct join_opts {
    const char *controller; /* HOST:PORT */
    const char *token;      /* <id>.<secret> */
    const char *ca_pin;     /* sha256:<hex> */
    const char *name;       /* host name; default: gethostname() */
    const char *pki_dir;
    unsigned timeout_s;
};

/* Returns the process exit code (0, 1 refused or failed, 2 usage,
 * JOIN_EXIT_RETRY rate limited: the same command may be run again). */
#define JOIN_EXIT_RETRY 75 /* EX_TEMPFAIL */
int join_run(const struct join_opts *o);

/* <state-dir>/pki: where join writes and run looks by default. */
char *join_default_pki_dir(const char *state_dir);

#endif
