/*
 * cmd_token: `cloud-controller token create|list|revoke`, run against the
 * database directly (blocking libpq: a command, not the daemon), and the
 * dev cluster's admin token, kept in <data-dir>/admin-token (mode 0600).
 */
#ifndef CLOUD_CMD_TOKEN_H
#define CLOUD_CMD_TOKEN_H

#include <libpq-fe.h>

/* argv[0] is "token"; returns the process exit code. */
int cmd_token_main(const char *conninfo, int argc, char **argv);

/*
 * Returns the dev cluster's admin secret (caller frees): the one stored in
 * data_dir when it is still live, else a new one, stored. NULL on failure.
 */
char *cmd_token_dev_admin(const char *conninfo, const char *data_dir);

/* A blocking connection for a command (token, join-token, agent-cert), or
 * NULL after saying why on stderr. */
PGconn *cmd_token_connect(const char *conninfo);

#endif
