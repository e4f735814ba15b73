/*
 * cmd_join: `cloud-controller join-token create|list|delete` and
 * `cloud-controller cert list|revoke`, run against the database directly
 * (blocking libpq: commands, not the daemon).
 */
#ifndef CLOUD_CMD_JOIN_H
#define CLOUD_CMD_JOIN_H

/* argv[0] is the command word; returns the exit code. def_data_dir: the
 * controller's data directory when --data-dir is not given. */
int cmd_join_token_main(const char *def_data_dir, int argc, char **argv);
int cmd_join_cert_main(int argc, char **argv);

#endif
