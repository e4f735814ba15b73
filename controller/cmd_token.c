/*
 * cmd_token: token administration from the controller binary (cmd_token.h).
 * Uses the same SQL functions as the API (migrations/functions/cloud_token_*.sql), so
 * every token change is an event with its actor, here "cli".
 */
#define LOG_MODULE "token"
#include "cmd_token.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "auth.h"
#include "log.h"
#include "mem.h"
#include "validate.h"

PGconn *
cmd_token_connect(const char *conninfo)
{
    PGconn *c = PQconnectdb(conninfo);

    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "cloud-controller: cannot connect to PostgreSQL: %s",
                PQerrorMessage(c));
        PQfinish(c);
        return NULL;
    }
    return c;
}

/* Creates a token; prints nothing. Returns the secret or NULL. */
static char *
create(PGconn *c, const char *name, const char *role, const char *ttl,
       const char *actor)
{
    char secret[AUTH_SECRET_LEN + 1], sha[65];
    const char *vals[5] = {name, role, sha, ttl, actor};
    PGresult *res;
    char *out = NULL;

    if (auth_new_secret(secret, sha) < 0)
        return NULL;
    res = PQexecParams(c,
                       "SELECT status FROM cloud_token_create($1, $2, $3, "
                       "$4::bigint, $5)",
                       5, NULL, vals, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        fprintf(stderr, "cloud-controller: cannot create token %s: %s", name,
                PQresultErrorMessage(res));
    else
        out = xstrdup(secret);
    PQclear(res);
    OPENSSL_cleanse(secret, sizeof(secret));
    return out;
}

static int
cmd_create(PGconn *c, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"name", required_argument, NULL, 'n'},
        {"role", required_argument, NULL, 'r'},
        {"ttl", required_argument, NULL, 't'},
        {NULL, 0, NULL, 0}};
    const char *name = NULL, *role = "viewer", *ttl = NULL;
    enum auth_role ro;
    char *secret;
    int ch;

    optind = 1;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (ch) {
        case 'n': name = optarg; break;
        case 'r': role = optarg; break;
        case 't': ttl = optarg; break;
        default: return 2;
        }
    }
    if (name == NULL || validate_name(name) < 0) {
        fprintf(stderr, "cloud-controller: token create needs --name NAME "
                        "(lower-case letters, digits, '-')\n");
        return 2;
    }
    if (auth_role_parse(role, &ro) < 0) {
        fprintf(stderr, "cloud-controller: --role must be viewer, operator "
                        "or admin\n");
        return 2;
    }
    if (ttl) {
        char *end;
        long long v = strtoll(ttl, &end, 10);
        if (v < 1 || end == ttl || *end != '\0') {
            fprintf(stderr, "cloud-controller: --ttl is a number of seconds "
                            "(1 or more)\n");
            return 2;
        }
    }
    secret = create(c, name, role, ttl, "cli");
    if (secret == NULL)
        return 1;
    /* The only time the secret is shown. */
    printf("%s\n", secret);
    free(secret);
    return 0;
}

static int
cmd_list(PGconn *c)
{
    /* the columns of the SELECT below */
    enum { TOKEN_NAME, TOKEN_ROLE, TOKEN_EXPIRES, TOKEN_STATE };
    PGresult *res = PQexec(c,
                           "SELECT name, role, coalesce(cloud_ts(expires_at), "
                           "'never'), CASE WHEN revoked_at IS NOT NULL THEN "
                           "'revoked' WHEN expires_at <= now() THEN 'expired' "
                           "ELSE 'active' END FROM tokens ORDER BY name");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        fprintf(stderr, "cloud-controller: cannot list tokens: %s",
                PQresultErrorMessage(res));
        PQclear(res);
        return 1;
    }
    printf("%-24s %-9s %-26s %s\n", "NAME", "ROLE", "EXPIRES", "STATE");
    for (int i = 0; i < PQntuples(res); i++)
        printf("%-24s %-9s %-26s %s\n", PQgetvalue(res, i, TOKEN_NAME),
               PQgetvalue(res, i, TOKEN_ROLE),
               PQgetvalue(res, i, TOKEN_EXPIRES),
               PQgetvalue(res, i, TOKEN_STATE));
    PQclear(res);
    return 0;
}

static int
cmd_revoke(PGconn *c, const char *name)
{
    const char *vals[2] = {name, "cli"};
    PGresult *res = PQexecParams(c,
                                 "SELECT status FROM cloud_token_revoke($1, "
                                 "$2)",
                                 2, NULL, vals, NULL, NULL, 0);
    int rc = 0;

    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        fprintf(stderr, "cloud-controller: %s",
                PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY)
                    ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY)
                    : PQresultErrorMessage(res));
        fprintf(stderr, "\n");
        rc = 1;
    }
    PQclear(res);
    return rc;
}

int
cmd_token_main(const char *conninfo, int argc, char **argv)
{
    PGconn *c;
    int rc;

    if (argc < 2) {
        fprintf(stderr, "usage: cloud-controller token create --name NAME "
                        "[--role viewer|operator|admin] [--ttl SECONDS]\n"
                        "       cloud-controller token list\n"
                        "       cloud-controller token revoke NAME\n"
                        "(with --db URL or CLOUD_DB_URL)\n");
        return 2;
    }
    if (strcmp(argv[1], "revoke") == 0 && argc != 3) {
        fprintf(stderr, "cloud-controller: token revoke needs one NAME\n");
        return 2;
    }
    if (strcmp(argv[1], "create") != 0 && strcmp(argv[1], "list") != 0 &&
        strcmp(argv[1], "revoke") != 0) {
        fprintf(stderr, "cloud-controller: unknown token command \"%s\" "
                        "(create, list, revoke)\n",
                argv[1]);
        return 2;
    }
    c = cmd_token_connect(conninfo);
    if (c == NULL)
        return 1;
    if (strcmp(argv[1], "create") == 0)
        rc = cmd_create(c, argc - 1, argv + 1);
    else if (strcmp(argv[1], "list") == 0)
        rc = cmd_list(c);
    else
        rc = cmd_revoke(c, argv[2]);
    PQfinish(c);
    return rc;
}

char *
cmd_token_dev_admin(const char *conninfo, const char *data_dir)
{
    char *path = xasprintf("%s/admin-token", data_dir);
    char buf[128] = "", sha[65], name[32];
    unsigned char rnd[3];
    char *secret = NULL;
    PGconn *c = cmd_token_connect(conninfo);
    FILE *f;

    if (c == NULL)
        goto out;
    f = fopen(path, "r");
    if (f) {
        if (fgets(buf, sizeof(buf), f) == NULL)
            buf[0] = '\0';
        fclose(f);
        buf[strcspn(buf, "\n")] = '\0';
    }
    if (buf[0]) {
        const char *vals[1] = {sha};
        PGresult *res;
        auth_hash(buf, sha);
        res = PQexecParams(c,
                           "SELECT 1 FROM tokens WHERE secret_sha256 = "
                           "decode($1, 'hex') AND revoked_at IS NULL AND "
                           "role = 'admin' AND (expires_at IS NULL OR "
                           "expires_at > now())",
                           1, NULL, vals, NULL, NULL, 0);
        if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
            secret = xstrdup(buf);
        PQclear(res);
        if (secret)
            goto out;
    }
    if (RAND_bytes(rnd, sizeof(rnd)) != 1)
        goto out;
    snprintf(name, sizeof(name), "dev-admin-%02x%02x%02x", rnd[0], rnd[1],
             rnd[2]);
    secret = create(c, name, "admin", NULL, "dev-mode");
    if (secret == NULL)
        goto out;
    {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0 || write(fd, secret, strlen(secret)) < 0 ||
            write(fd, "\n", 1) < 0)
            log_warn("cannot store the dev admin token in %s", path);
        if (fd >= 0)
            close(fd);
    }
out:
    OPENSSL_cleanse(buf, sizeof(buf));
    if (c)
        PQfinish(c);
    free(path);
    return secret;
}
