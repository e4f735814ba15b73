/*
 * migrate: applies embedded migrations (see migrate.h).
 */
#define LOG_MODULE "migrate"
#include "migrate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <openssl/evp.h>

#include "log.h"

#define MIGRATE_LOCK "726200100"

int
migrate_latest(void)
{
    return nmigrations > 0 ? migrations[nmigrations - 1].version : 0;
}

static int
exec_ok(PGconn *c, const char *sql, const char *what)
{
    PGresult *res = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(res);
    int ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;

    if (!ok)
        log_errx("%s failed: %s", what, PQresultErrorMessage(res));
    PQclear(res);
    return ok ? 0 : -1;
}

static PGconn *
connect_wait(const char *conninfo, int wait_s)
{
    PGconn *c = NULL;

    for (int waited = 0;; waited++) {
        c = PQconnectdb(conninfo);
        if (PQstatus(c) == CONNECTION_OK)
            return c;
        if (waited >= wait_s) {
            log_errx("cannot connect to PostgreSQL: %s", PQerrorMessage(c));
            PQfinish(c);
            return NULL;
        }
        if (waited == 0)
            log_warnx("waiting for PostgreSQL: %s", PQerrorMessage(c));
        PQfinish(c);
        sleep(1);
    }
}

/* SHA-256 of a migration's SQL as 64 hex digits. 0 or -1. */
static int
checksum(const char *sql, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;

    if (EVP_Digest(sql, strlen(sql), md, &n, EVP_sha256(), NULL) != 1 ||
        n != 32)
        return -1;
    for (unsigned i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    return 0;
}

/*
 * Whether m is applied; if so, checks that it was applied from the same
 * SQL as this build's. A row without a checksum (applied before they were
 * kept) takes this build's. -1 after logging why.
 */
static int
applied(PGconn *c, const struct migration *m, const char *sum, int *yes)
{
    char v[16];
    const char *vals[2] = {v, sum};
    PGresult *res;

    snprintf(v, sizeof(v), "%d", m->version);
    res = PQexecParams(c,
                       "SELECT checksum FROM schema_migrations "
                       "WHERE version = $1",
                       1, NULL, vals, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        log_errx("cannot read schema_migrations: %s",
                 PQresultErrorMessage(res));
        PQclear(res);
        return -1;
    }
    *yes = PQntuples(res) > 0;
    if (*yes && !PQgetisnull(res, 0, 0) &&
        strcmp(PQgetvalue(res, 0, 0), sum) != 0) {
        log_errx("migration %s was applied to this database from other SQL "
                 "than this build's (SHA-256 %.12s..., here %.12s...): the "
                 "database was migrated by a different build of "
                 "cloud-controller; run that build, or use a new database",
                 m->name, PQgetvalue(res, 0, 0), sum);
        PQclear(res);
        return -1;
    }
    if (*yes && PQgetisnull(res, 0, 0)) {
        PQclear(res);
        res = PQexecParams(c,
                           "UPDATE schema_migrations SET checksum = $2 "
                           "WHERE version = $1",
                           2, NULL, vals, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            log_errx("cannot record the checksum of migration %s: %s",
                     m->name, PQresultErrorMessage(res));
            PQclear(res);
            return -1;
        }
    }
    PQclear(res);
    return 0;
}

static int
apply_one(PGconn *c, const struct migration *m, const char *sum)
{
    char v[16];
    const char *vals[3] = {v, m->name, sum};
    PGresult *res;

    snprintf(v, sizeof(v), "%d", m->version);
    if (exec_ok(c, "BEGIN", "BEGIN") < 0)
        return -1;
    if (exec_ok(c, m->sql, m->name) < 0)
        goto rollback;
    res = PQexecParams(c,
                       "INSERT INTO schema_migrations (version, name, "
                       "checksum) VALUES ($1, $2, $3)",
                       3, NULL, vals, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        log_errx("cannot record migration %s: %s", m->name,
                 PQresultErrorMessage(res));
        PQclear(res);
        goto rollback;
    }
    PQclear(res);
    if (exec_ok(c, "COMMIT", "COMMIT") < 0)
        return -1;
    log_info("applied migration %s", m->name);
    return 0;
rollback:
    exec_ok(c, "ROLLBACK", "ROLLBACK");
    return -1;
}

int
migrate_run(const char *conninfo, int wait_s)
{
    PGconn *c = connect_wait(conninfo, wait_s);
    PGresult *res;
    int rc = -1, newest = 0;

    if (c == NULL)
        return -1;
    /* Quiet the NOTICEs of CREATE ... IF NOT EXISTS. */
    if (exec_ok(c, "SET client_min_messages = warning", "SET") < 0 ||
        exec_ok(c, "SELECT pg_advisory_lock(" MIGRATE_LOCK ")",
                "taking the migration lock") < 0)
        goto out;
    if (exec_ok(c,
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                "version integer PRIMARY KEY, name text NOT NULL, "
                "applied_at timestamptz NOT NULL DEFAULT now())",
                "creating schema_migrations") < 0 ||
        exec_ok(c,
                "ALTER TABLE schema_migrations "
                "ADD COLUMN IF NOT EXISTS checksum text",
                "adding schema_migrations.checksum") < 0)
        goto unlock;
    for (int i = 0; i < nmigrations; i++) {
        char sum[65];
        int yes;

        if (checksum(migrations[i].sql, sum) < 0) {
            log_errx("cannot compute the checksum of migration %s",
                     migrations[i].name);
            goto unlock;
        }
        if (applied(c, &migrations[i], sum, &yes) < 0)
            goto unlock;
        if (!yes && apply_one(c, &migrations[i], sum) < 0)
            goto unlock;
    }
    res = PQexec(c, "SELECT coalesce(max(version), 0) FROM schema_migrations");
    if (PQresultStatus(res) == PGRES_TUPLES_OK)
        newest = (int)strtol(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    if (newest > migrate_latest())
        log_warnx("the database schema (version %d) is newer than this "
                  "controller (version %d); upgrade the controller",
                  newest, migrate_latest());
    rc = 0;
unlock:
    exec_ok(c, "SELECT pg_advisory_unlock(" MIGRATE_LOCK ")",
            "releasing the migration lock");
out:
    PQfinish(c);
    return rc;
}
