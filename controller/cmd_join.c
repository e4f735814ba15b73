/*
 * cmd_join: the `join-token` and `cert` subcommands of cloud-controller (see
 * cmd_join.h): join tokens for agents and the cluster's agent certificates,
 * run against the database directly (blocking libpq: commands, not the
 * daemon). What they share with the gateway's enrolment is join.h.
 */
#define LOG_MODULE "join"
#include "cmd_join.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "cmd_token.h"
#include "join.h"
#include "log.h"
#include "mem.h"
#include "migrate.h"
#include "pin.h"
#include "pki.h"
#include "store.h"

static PGconn *
connect_db(const char *conninfo)
{
    if (migrate_run(conninfo, 5) < 0)
        return NULL;
    return cmd_token_connect(conninfo);
}

/* "90", "90s", "15m", "2h", "1d" -> seconds in 60 s .. 30 d; -1 if not. */
static long long
ttl_parse(const char *s)
{
    char *end;
    long long v;

    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || v < 1 || s[0] == '-')
        return -1;
    if (*end == 'm')
        v *= 60;
    else if (*end == 'h')
        v *= 3600;
    else if (*end == 'd')
        v *= 86400;
    else if (*end != 's' && *end != '\0')
        return -1;
    if (*end != '\0' && end[1] != '\0')
        return -1;
    return v >= 60 && v <= 30 * 86400 ? v : -1;
}

static int
token_create(const char *db, const char *data_dir, const char *ttl_s,
             const char *controller)
{
    struct pki_paths p;
    X509 *ca = NULL;
    EVP_PKEY *ca_key = NULL;
    char id[17], secret[65] = "", sha[65], pin[PIN_TEXT_LEN + 1], ttl[32];
    char host[256] = "", *addr = NULL;
    const char *vals[4];
    long long secs = ttl_s ? ttl_parse(ttl_s) : JOIN_DEFAULT_TTL_S;
    PGconn *c = NULL;
    PGresult *res = NULL;
    int rc = 1;

    memset(&p, 0, sizeof(p));
    if (secs < 0) {
        fprintf(stderr, "cloud-controller: --ttl is a duration from 60s to 30d (e.g. 90s, 15m, 1h, 2d), not \"%s\"\n",
                ttl_s);
        return 2;
    }
    /* The CA is made at the controller's first start; make it now if this
     * command comes first, so the pin printed is the one agents will see. */
    if (pki_init(data_dir, &p) < 0 || pki_ca_read(&p, &ca, &ca_key) < 0 ||
        pin_format(ca, pin, sizeof(pin)) < 0) {
        fprintf(stderr, "cloud-controller: cannot read the cluster CA under %s/pki\n",
                data_dir);
        goto cleanup;
    }
    if (join_token_new(id, secret, sha) < 0) {
        fprintf(stderr, "cloud-controller: cannot draw random bytes\n");
        goto cleanup;
    }
    snprintf(ttl, sizeof(ttl), "%lld", secs);
    c = connect_db(db);
    if (c == NULL)
        goto cleanup;
    vals[0] = id;
    vals[1] = sha;
    vals[2] = ttl;
    vals[3] = "cli";
    res = PQexecParams(c, store_stmt(ST_JOIN_TOKEN_CREATE)->sql, 4, NULL,
                       vals, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        fprintf(stderr, "cloud-controller: cannot create a join token: %s",
                PQresultErrorMessage(res));
        goto cleanup;
    }
    if (controller == NULL) {
        if (gethostname(host, sizeof(host) - 1) < 0 || host[0] == '\0')
            xstrlcpy(host, "localhost", sizeof(host));
        addr = xasprintf("%s:7071", host);
    } else {
        addr = xstrdup(controller);
    }
    fprintf(stderr, "join token %s expires at %s (one join only)\n", id,
            PQgetvalue(res, 0, 0));
    /* The only time the secret is shown. */
    printf("cloud-agent join --controller %s --token %s.%s --ca-pin %s\n",
           addr, id, secret, pin);
    rc = 0;

cleanup:
    OPENSSL_cleanse(secret, sizeof(secret));
    PQclear(res);
    if (c)
        PQfinish(c);
    free(addr);
    X509_free(ca);
    EVP_PKEY_free(ca_key);
    pki_paths_clear(&p);
    return rc;
}

static int
token_list(const char *db)
{
    /* the columns of the SELECT below */
    enum { TOKEN_ID, TOKEN_EXPIRES, TOKEN_STATE };
    PGconn *c = connect_db(db);
    PGresult *res;
    int i;

    if (c == NULL)
        return 1;
    res = PQexec(c, "SELECT id, cloud_ts(expires_at), CASE WHEN used_at IS "
                    "NOT NULL THEN 'used by ' || used_by WHEN expires_at <= "
                    "now() THEN 'expired' ELSE 'active' END FROM join_tokens "
                    "ORDER BY created_at, id");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        fprintf(stderr, "cloud-controller: cannot list join tokens: %s",
                PQresultErrorMessage(res));
        PQclear(res);
        PQfinish(c);
        return 1;
    }
    printf("%-16s  %-24s  %s\n", "ID", "EXPIRES", "STATE");
    for (i = 0; i < PQntuples(res); i++)
        printf("%-16s  %-24s  %s\n", PQgetvalue(res, i, TOKEN_ID),
               PQgetvalue(res, i, TOKEN_EXPIRES),
               PQgetvalue(res, i, TOKEN_STATE));
    PQclear(res);
    PQfinish(c);
    return 0;
}

static int
token_delete(const char *db, const char *id)
{
    const char *vals[1] = {id};
    PGconn *c;
    PGresult *res;
    int rc = 1;

    if (strlen(id) != 16 || strspn(id, "0123456789abcdef") != 16) {
        fprintf(stderr, "cloud-controller: %s is not a join token id (16 hex digits, the part before the '.')\n",
                id);
        return 2;
    }
    c = connect_db(db);
    if (c == NULL)
        return 1;
    res = PQexecParams(c, store_stmt(ST_JOIN_TOKEN_DELETE)->sql, 1, NULL, vals,
                       NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        fprintf(stderr, "cloud-controller: cannot delete join token %s: %s",
                id, PQresultErrorMessage(res));
    else if (PQntuples(res) != 1)
        fprintf(stderr, "cloud-controller: join token %s does not exist or was used already\n",
                id);
    else
        rc = 0;
    PQclear(res);
    PQfinish(c);
    return rc;
}

/* Common options: --db URL (or CLOUD_DB_URL), --data-dir DIR. */
struct cmd_opts {
    const char *db, *data_dir, *ttl, *controller, *host;
};

static int
cmd_parse(int argc, char **argv, struct cmd_opts *o, const char *usage)
{
    static const struct option longopts[] = {
        {"db", required_argument, NULL, 'd'},
        {"data-dir", required_argument, NULL, 'r'},
        {"ttl", required_argument, NULL, 't'},
        {"controller", required_argument, NULL, 'c'},
        {"host", required_argument, NULL, 'H'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    int ch;

    o->db = getenv("CLOUD_DB_URL");
    optind = 1;
    opterr = 1;
    while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (ch) {
        case 'd': o->db = optarg; break;
        case 'r': o->data_dir = optarg; break;
        case 't': o->ttl = optarg; break;
        case 'c': o->controller = optarg; break;
        case 'H': o->host = optarg; break;
        case 'h': fputs(usage, stdout); return 0;
        default: fputs(usage, stderr); return 2;
        }
    }
    if (o->db == NULL) {
        fprintf(stderr, "cloud-controller: %s needs --db URL or CLOUD_DB_URL\n",
                argv[0]);
        return 2;
    }
    return -1;
}

static const char token_usage[] =
    "usage: cloud-controller join-token create [--ttl 1h]\n"
    "                                          [--controller HOST:PORT[,HOST:PORT...]]\n"
    "                                          [--data-dir DIR] [--db URL]\n"
    "       cloud-controller join-token list [--db URL]\n"
    "       cloud-controller join-token delete ID [--db URL]\n";

int
cmd_join_token_main(const char *def_data_dir, int argc, char **argv)
{
    struct cmd_opts o;
    const char *sub = argc > 1 ? argv[1] : NULL;
    int rc;

    memset(&o, 0, sizeof(o));
    if (sub == NULL || (strcmp(sub, "create") != 0 && strcmp(sub, "list") != 0 &&
                        strcmp(sub, "delete") != 0)) {
        if (sub != NULL)
            fprintf(stderr, "cloud-controller: unknown join-token command \"%s\" (create, list, delete)\n",
                    sub);
        fputs(token_usage, stderr);
        return 2;
    }
    rc = cmd_parse(argc - 1, argv + 1, &o, token_usage);
    if (rc >= 0)
        return rc;
    if (strcmp(sub, "delete") == 0) {
        if (optind != argc - 2 || o.host || o.ttl || o.controller) {
            fprintf(stderr, "cloud-controller: join-token delete needs one ID\n");
            return 2;
        }
        return token_delete(o.db, argv[optind + 1]);
    }
    if (optind < argc - 1 || o.host != NULL ||
        (strcmp(sub, "list") == 0 && (o.ttl || o.controller))) {
        fprintf(stderr, "cloud-controller: unexpected arguments to join-token %s\n",
                sub);
        return 2;
    }
    if (strcmp(sub, "list") == 0)
        return token_list(o.db);
    return token_create(o.db, o.data_dir ? o.data_dir : def_data_dir, o.ttl,
                        o.controller);
}

static const char cert_usage[] =
    "usage: cloud-controller cert revoke SERIAL|--host NAME [--db URL]\n"
    "       cloud-controller cert list [--db URL]\n";

static int
cert_list(const char *db)
{
    PGconn *c = connect_db(db);
    PGresult *res;
    int i;

    if (c == NULL)
        return 1;
    res = PQexecParams(c, store_stmt(ST_JOIN_CERT_LIST)->sql, 0, NULL, NULL,
                       NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        fprintf(stderr, "cloud-controller: cannot list certificates: %s",
                PQresultErrorMessage(res));
        PQclear(res);
        PQfinish(c);
        return 1;
    }
    printf("%-34s  %-24s  %-24s  %s\n", "SERIAL", "HOST", "NOT AFTER", "STATE");
    for (i = 0; i < PQntuples(res); i++)
        printf("%-34s  %-24s  %-24s  %s\n",
               PQgetvalue(res, i, JOIN_CERT_LIST_SERIAL),
               PQgetvalue(res, i, JOIN_CERT_LIST_HOST),
               PQgetvalue(res, i, JOIN_CERT_LIST_NOT_AFTER),
               PQgetvalue(res, i, JOIN_CERT_LIST_STATE));
    PQclear(res);
    PQfinish(c);
    return 0;
}

static int
cert_revoke(const char *db, const char *serial, const char *host)
{
    const char *vals[3] = {serial, host, "cli"};
    PGconn *c = connect_db(db);
    PGresult *res;
    int rc = 1;

    if (c == NULL)
        return 1;
    res = PQexecParams(c, store_stmt(ST_JOIN_CERT_REVOKE)->sql, 3, NULL, vals,
                       NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        fprintf(stderr, "cloud-controller: cannot revoke: %s",
                PQresultErrorMessage(res));
    } else if (host != NULL && strcmp(PQgetvalue(res, 0, 0), "0") == 0) {
        fprintf(stderr, "cloud-controller: host %s has no certificate on record that is not revoked already\n",
                host);
    } else {
        printf("revoked %s certificate(s) of %s %s\n", PQgetvalue(res, 0, 0),
               host ? "host" : "serial", host ? host : serial);
        rc = 0;
    }
    PQclear(res);
    PQfinish(c);
    return rc;
}

int
cmd_join_cert_main(int argc, char **argv)
{
    struct cmd_opts o;
    const char *sub = argc > 1 ? argv[1] : NULL;
    char serial[PIN_SERIAL_MAX];
    int rc;

    memset(&o, 0, sizeof(o));
    if (sub == NULL || (strcmp(sub, "revoke") != 0 && strcmp(sub, "list") != 0)) {
        if (sub != NULL)
            fprintf(stderr, "cloud-controller: unknown cert command \"%s\" (revoke, list)\n",
                    sub);
        fputs(cert_usage, stderr);
        return 2;
    }
    rc = cmd_parse(argc - 1, argv + 1, &o, cert_usage);
    if (rc >= 0)
        return rc;
    if (o.ttl || o.controller || o.data_dir) {
        fprintf(stderr, "cloud-controller: unexpected options to cert %s\n",
                sub);
        return 2;
    }
    if (strcmp(sub, "list") == 0) {
        if (optind < argc - 1 || o.host) {
            fprintf(stderr, "cloud-controller: cert list takes no arguments\n");
            return 2;
        }
        return cert_list(o.db);
    }
    if ((o.host == NULL) == (optind != argc - 2)) {
        fprintf(stderr, "cloud-controller: cert revoke needs one SERIAL or --host NAME\n");
        return 2;
    }
    if (o.host != NULL) {
        if (pki_name_valid(o.host) < 0) {
            fprintf(stderr, "cloud-controller: %s is not a valid host name\n",
                    o.host);
            return 2;
        }
        return cert_revoke(o.db, NULL, o.host);
    }
    if (pin_serial_parse(argv[optind + 1], serial, sizeof(serial)) < 0) {
        fprintf(stderr, "cloud-controller: %s is not a certificate serial (hex digits, ':' allowed)\n",
                argv[optind + 1]);
        return 2;
    }
    return cert_revoke(o.db, serial, NULL);
}
