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

static int
applied(PGconn *c, int version, int *yes)
{
    char v[16];
    const char *vals[1] = {v};
    PGresult *res;

    snprintf(v, sizeof(v), "%d", version);
    res = PQexecParams(c, "SELECT 1 FROM schema_migrations WHERE version = $1",
                       1, NULL, vals, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        log_errx("cannot read schema_migrations: %s",
                 PQresultErrorMessage(res));
        PQclear(res);
        return -1;
    }
    *yes = PQntuples(res) > 0;
    PQclear(res);
    return 0;
}

static int
apply_one(PGconn *c, const struct migration *m)
{
    char v[16];
    const char *vals[2] = {v, m->name};
    PGresult *res;

    snprintf(v, sizeof(v), "%d", m->version);
    if (exec_ok(c, "BEGIN", "BEGIN") < 0)
        return -1;
    if (exec_ok(c, m->sql, m->name) < 0)
        goto rollback;
    res = PQexecParams(c,
                       "INSERT INTO schema_migrations (version, name) "
                       "VALUES ($1, $2)",
                       2, NULL, vals, NULL, NULL, 0);
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
                "creating schema_migrations") < 0)
        goto unlock;
    for (int i = 0; i < nmigrations; i++) {
        int yes;
        if (applied(c, migrations[i].version, &yes) < 0)
            goto unlock;
        if (!yes && apply_one(c, &migrations[i]) < 0)
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
