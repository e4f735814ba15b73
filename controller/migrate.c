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
#include "mem.h"

#define MIGRATE_LOCK "726200100"

int
migrate_latest(void)
{
    return nmigrations > 0 ? migrations[nmigrations - 1].version : 0;
}

/* Whether res (cleared here) is a success; what names the step in the
 * error reported. */
static int
result_ok(PGresult *res, const char *what)
{
    ExecStatusType st = PQresultStatus(res);
    int ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;

    if (!ok)
        log_errx("%s failed: %s", what, PQresultErrorMessage(res));
    PQclear(res);
    return ok ? 0 : -1;
}

static int
exec_ok(PGconn *c, const char *sql, const char *what)
{
    return result_ok(PQexec(c, sql), what);
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

/*
 * The migrations 0001-0020 of builds from before the squash (issue 12):
 * they are one migration now, 0020_baseline, which leaves the same schema
 * and no functions (those are in migrations/functions/). A database they
 * migrated all the way is carried forward; see carry_forward().
 */
static const struct {
    int version;
    const char *name;
    const char *sum;
} legacy[] = {
    {1, "0001_init",
     "b2ed1ddcfb462af34ee298ac9b8be2c118ddef190ea31d0017e365ec6514068c"},
    {2, "0002_api",
     "55326c38adebb6c5e7b4b14cabd3db1330605eefc9e26b14e7398f2dfb30b0bf"},
    {3, "0003_reconcile",
     "d0cc1451a15eb5f4aec9e712c5f1e0b16e7bc407816398ece5ed2b3af7f25413"},
    {4, "0004_agents",
     "ec7e5c98e0da5d3e32794879a03c9624f7323f49de60d4d8503eddbce1bd10bd"},
    {5, "0005_images",
     "ea6311505e13561645c88c6918cdbb9726279a9e2d4ddbac26882f44f22e73df"},
    {6, "0006_tokens",
     "28c3cd776dc8abaabd05167f08c64816b12b4c7cb7dd766b5e83071e0864c732"},
    {7, "0007_bulk_create",
     "5eeae84773279824e09d42f6410e241fcc8b0926218691bb60c6f4b55523a912"},
    {8, "0008_start_restart",
     "aeccc4892993d8cdb4c0fdb837f86e6c9252f831a2c5fd908e8cb2d829037f18"},
    {9, "0009_guest_channel",
     "a6e6a890452bd1e4f7227f8c40325c24ff06f4f1ab0c975b241fa121ac3f0250"},
    {10, "0010_config",
     "398e6e55a7f19442bbdf355c9e6a69bf4f41a2bdc37cee56083dc1409de58d11"},
    {11, "0011_labels",
     "bcffbfebb6c98a7838b7a9ed5e68579ff42a818d7162605002049415b5b42a26"},
    {12, "0012_join",
     "dcd8736435df4080bca35565f7373ecab326e92f8650668b06ee38032a72a12a"},
    {13, "0013_config_fast",
     "dd1bbfe7bc3c1c4bad06bfc8b9630ee8d1cef119eb908b88b129ec1a13268776"},
    {15, "0015_lock_order",
     "92845efff675a5699096d4084b5c7128f5e30e6e48cab2a7275ac15b67f693a7"},
    {16, "0016_status_set_path",
     "1be63ebd26520587cfe619329472dbd350b8ce2b8ddafb132cc8504d9c1e2f86"},
    {17, "0017_labels_check_trigger",
     "378aa29a72fd33b0d8824cd6344436c3fb76a37809d976ffd924955a4313a5bd"},
    {18, "0018_stop_grace",
     "537ec84e63c8de22fe2396a38204f145b87bfb460f0b70a75eb8253982e5b3fe"},
    {19, "0019_retention_quotas",
     "42004614707220d402c3ec0b15b3c14dd137c0c7475a2803d0f1e90dafec4a17"},
    {20, "0020_guest_limits",
     "9351cbc630f135e3f2f7ad7ee37da8f4b1cb50603f231c4853cf7450a2dc39cf"},
};
#define BASELINE_VERSION 20
#define BASELINE_VERSION_S "20"

static int
exec_params_ok(PGconn *c, const char *sql, int n, const char *const *vals,
               const char *what)
{
    return result_ok(PQexecParams(c, sql, n, NULL, vals, NULL, NULL, 0), what);
}

/*
 * A database migrated by a build from before the squash has rows for
 * 0001..0020 (some without a checksum if older still). All of them, from
 * that SQL: its rows become the one of 0020_baseline, the schema being
 * the same, and its functions are replaced by the files (the caller
 * applies every file to a database without schema_functions, and drops
 * the layers no file defines). Anything else below 0020 is refused.
 * Inside the caller's transaction. 0 or -1 after logging why.
 */
static int
carry_forward(PGconn *c, const char *baseline_name, const char *baseline_sum)
{
    const int nlegacy = (int)(sizeof(legacy) / sizeof(legacy[0]));
    /* the columns of the SELECT below */
    enum { MIG_VERSION, MIG_NAME, MIG_CHECKSUM };
    char v[16];
    const char *vals[3] = {v, baseline_name, baseline_sum};
    PGresult *res;
    int n, ok = 1;
    const char *bad = NULL;

    res = PQexec(c, "SELECT version, name, checksum FROM schema_migrations "
                    "WHERE version <= " BASELINE_VERSION_S
                    " ORDER BY version");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        log_errx("cannot read schema_migrations: %s",
                 PQresultErrorMessage(res));
        PQclear(res);
        return -1;
    }
    n = PQntuples(res);
    if (n == 0 ||
        (n == 1 && strcmp(PQgetvalue(res, 0, MIG_NAME), baseline_name) == 0)) {
        PQclear(res);
        return 0; /* new, or already in this layout */
    }
    for (int i = 0; i < nlegacy && ok; i++) {
        if (i >= n) {
            ok = 0;
            bad = legacy[i].name;
            break;
        }
        if (strtol(PQgetvalue(res, i, MIG_VERSION), NULL, 10) !=
                legacy[i].version ||
            strcmp(PQgetvalue(res, i, MIG_NAME), legacy[i].name) != 0 ||
            (!PQgetisnull(res, i, MIG_CHECKSUM) &&
             strcmp(PQgetvalue(res, i, MIG_CHECKSUM), legacy[i].sum) != 0)) {
            ok = 0;
            bad = legacy[i].name;
        }
    }
    if (ok && n != nlegacy) {
        ok = 0;
        bad = PQgetvalue(res, nlegacy, MIG_NAME);
    }
    if (!ok) {
        log_errx("the database was migrated by another build of "
                 "cloud-controller, and its migrations 0001-0020 are not "
                 "those this build can carry forward (at %s: missing, or "
                 "from other SQL); migrations 0001-0020 are one migration "
                 "now (0020_baseline): bring the database to "
                 "0020_guest_limits with a build from before that change, "
                 "or use a new database",
                 bad);
        PQclear(res);
        return -1;
    }
    PQclear(res);
    snprintf(v, sizeof(v), "%d", BASELINE_VERSION);
    if (exec_params_ok(c, "DELETE FROM schema_migrations WHERE version <= $1",
                       1, vals, "forgetting migrations 0001-0020") < 0 ||
        exec_params_ok(c,
                       "INSERT INTO schema_migrations (version, name, "
                       "checksum) VALUES ($1, $2, $3)",
                       3, vals, "recording the baseline") < 0)
        return -1;
    log_info("carried forward a database migrated by an earlier build "
             "(migrations 0001-0020 are %s now; its function layers are "
             "replaced by migrations/functions/)", baseline_name);
    return 0;
}

static int
apply_one(PGconn *c, const struct migration *m, const char *sum)
{
    char v[16];
    const char *vals[3] = {v, m->name, sum};

    snprintf(v, sizeof(v), "%d", m->version);
    if (exec_ok(c, m->sql, m->name) < 0)
        return -1;
    if (exec_params_ok(c,
                       "INSERT INTO schema_migrations (version, name, "
                       "checksum) VALUES ($1, $2, $3)",
                       3, vals, "recording the migration") < 0)
        return -1;
    log_info("applied migration %s", m->name);
    return 0;
}

/*
 * The function files whose SHA-256 differs from the one recorded in
 * schema_functions (or that have no row): changed[i] = 1. 0 or -1.
 */
static int
changed_functions(PGconn *c, char (*sums)[65], unsigned char *changed)
{
    /* the columns of the SELECT below */
    enum { FUNC_NAME, FUNC_CHECKSUM };
    PGresult *res = PQexec(c, "SELECT name, checksum FROM schema_functions");

    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        log_errx("cannot read schema_functions: %s",
                 PQresultErrorMessage(res));
        PQclear(res);
        return -1;
    }
    for (int i = 0; i < nsqlfuncs; i++) {
        if (checksum(sqlfuncs[i].sql, sums[i]) < 0) {
            log_errx("cannot compute the checksum of function %s",
                     sqlfuncs[i].name);
            PQclear(res);
            return -1;
        }
        changed[i] = 1;
        for (int r = 0; r < PQntuples(res); r++)
            if (strcmp(PQgetvalue(res, r, FUNC_NAME), sqlfuncs[i].name) == 0) {
                changed[i] =
                    strcmp(PQgetvalue(res, r, FUNC_CHECKSUM), sums[i]) != 0;
                break;
            }
    }
    PQclear(res);
    return 0;
}

/* Runs the changed files of one folder (bound or not). 0 or -1. */
static int
apply_functions(PGconn *c, const unsigned char *changed, int bound)
{
    for (int i = 0; i < nsqlfuncs; i++) {
        char what[128];

        if (!changed[i] || sqlfuncs[i].bound != bound)
            continue;
        snprintf(what, sizeof(what), "function %s%s", sqlfuncs[i].name,
                 bound ? " (functions/bound)" : "");
        if (exec_ok(c, sqlfuncs[i].sql, what) < 0)
            return -1;
    }
    return 0;
}

/* Whether a function file of this build is named name. */
static int
has_file(const char *name)
{
    for (int i = 0; i < nsqlfuncs; i++)
        if (strcmp(sqlfuncs[i].name, name) == 0)
            return 1;
    return 0;
}

/*
 * Drops the functions of the public schema no file names (the old layers,
 * a file removed; not those of extensions), and forgets the checksums of
 * removed files. 0 or -1.
 */
static int
sweep_functions(PGconn *c)
{
    /* the columns of the first SELECT below */
    enum { PROC_NAME, PROC_SIGNATURE };
    PGresult *res;
    int dropped = 0, rc = 0;

    res = PQexec(c, "SELECT p.proname, p.oid::regprocedure FROM pg_proc p "
                    "WHERE p.pronamespace = 'public'::regnamespace "
                    "AND NOT EXISTS (SELECT 1 FROM pg_depend d "
                    "WHERE d.classid = 'pg_proc'::regclass "
                    "AND d.objid = p.oid AND d.deptype = 'e') ORDER BY 2");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        log_errx("cannot list the functions: %s", PQresultErrorMessage(res));
        PQclear(res);
        return -1;
    }
    for (int r = 0; r < PQntuples(res) && rc == 0; r++) {
        char *sql;

        if (has_file(PQgetvalue(res, r, PROC_NAME)))
            continue;
        sql = xasprintf("DROP ROUTINE %s", PQgetvalue(res, r, PROC_SIGNATURE));
        rc = exec_ok(c, sql, "dropping a function no file defines");
        free(sql);
        dropped++;
    }
    PQclear(res);
    if (rc < 0)
        return -1;
    if (dropped > 0)
        log_info("dropped %d function(s) no file of migrations/functions "
                 "defines", dropped);
    res = PQexec(c, "SELECT name FROM schema_functions");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        log_errx("cannot read schema_functions: %s",
                 PQresultErrorMessage(res));
        PQclear(res);
        return -1;
    }
    for (int r = 0; r < PQntuples(res) && rc == 0; r++) {
        const char *vals[1] = {PQgetvalue(res, r, 0)};

        if (!has_file(vals[0]))
            rc = exec_params_ok(c,
                                "DELETE FROM schema_functions WHERE name = $1",
                                1, vals, "forgetting a removed function file");
    }
    PQclear(res);
    return rc;
}

/*
 * After every changed file ran with body checks off (so their order among
 * themselves does not matter), runs them once more with checks on, now
 * that everything they refer to exists: a body that does not parse, or
 * names a missing table or function (SQL bodies), fails the migration
 * instead of its first call. Then records their checksums and sweeps.
 * 0 or -1.
 */
static int
finish_functions(PGconn *c, char (*sums)[65], const unsigned char *changed)
{
    int nchanged = 0;

    if (exec_ok(c, "SET LOCAL check_function_bodies = on", "SET") < 0)
        return -1;
    for (int i = 0; i < nsqlfuncs; i++) {
        const char *vals[2] = {sqlfuncs[i].name, sums[i]};

        if (!changed[i])
            continue;
        nchanged++;
        if (exec_ok(c, sqlfuncs[i].sql, sqlfuncs[i].name) < 0 ||
            exec_params_ok(c,
                           "INSERT INTO schema_functions (name, checksum) "
                           "VALUES ($1, $2) ON CONFLICT (name) DO UPDATE "
                           "SET checksum = $2, applied_at = now()",
                           2, vals, "recording a function") < 0)
            return -1;
    }
    if (nchanged > 0)
        log_info("applied %d function file(s) of migrations/functions",
                 nchanged);
    return sweep_functions(c);
}

int
migrate_run(const char *conninfo, int wait_s)
{
    PGconn *c = connect_wait(conninfo, wait_s);
    PGresult *res;
    char (*fsums)[65] = NULL;
    unsigned char *fchanged = NULL;
    const struct migration *baseline = NULL;
    char bsum[65] = "";
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
                "adding schema_migrations.checksum") < 0 ||
        exec_ok(c,
                "CREATE TABLE IF NOT EXISTS schema_functions ("
                "name text PRIMARY KEY, checksum text NOT NULL, "
                "applied_at timestamptz NOT NULL DEFAULT now())",
                "creating schema_functions") < 0)
        goto unlock;
    for (int i = 0; i < nmigrations; i++)
        if (migrations[i].version == BASELINE_VERSION)
            baseline = &migrations[i];
    if (baseline == NULL || checksum(baseline->sql, bsum) < 0) {
        log_errx("this build embeds no usable baseline migration (version %d)",
                 BASELINE_VERSION);
        goto unlock;
    }
    fsums = xcalloc((size_t)nsqlfuncs + 1, sizeof(*fsums));
    fchanged = xcalloc((size_t)nsqlfuncs + 1, 1);
    /*
     * One transaction for all of it: functions the schema calls, the
     * schema, the other functions, the sweep. Body checks are off until
     * finish_functions(), so files may refer to what comes later.
     */
    if (exec_ok(c, "BEGIN", "BEGIN") < 0)
        goto unlock;
    if (carry_forward(c, baseline->name, bsum) < 0 ||
        changed_functions(c, fsums, fchanged) < 0 ||
        exec_ok(c, "SET LOCAL check_function_bodies = off", "SET") < 0 ||
        apply_functions(c, fchanged, 1) < 0)
        goto rollback;
    for (int i = 0; i < nmigrations; i++) {
        char sum[65];
        int yes;

        if (checksum(migrations[i].sql, sum) < 0) {
            log_errx("cannot compute the checksum of migration %s",
                     migrations[i].name);
            goto rollback;
        }
        if (applied(c, &migrations[i], sum, &yes) < 0)
            goto rollback;
        if (!yes && apply_one(c, &migrations[i], sum) < 0)
            goto rollback;
    }
    if (apply_functions(c, fchanged, 0) < 0 ||
        finish_functions(c, fsums, fchanged) < 0)
        goto rollback;
    if (exec_ok(c, "COMMIT", "COMMIT") < 0)
        goto unlock;
    res = PQexec(c, "SELECT coalesce(max(version), 0) FROM schema_migrations");
    if (PQresultStatus(res) == PGRES_TUPLES_OK)
        newest = (int)strtol(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    if (newest > migrate_latest())
        log_warnx("the database schema (version %d) is newer than this "
                  "controller (version %d); upgrade the controller",
                  newest, migrate_latest());
    rc = 0;
    goto unlock;
rollback:
    exec_ok(c, "ROLLBACK", "ROLLBACK");
unlock:
    exec_ok(c, "SELECT pg_advisory_unlock(" MIGRATE_LOCK ")",
            "releasing the migration lock");
out:
    free(fsums);
    free(fchanged);
    PQfinish(c);
    return rc;
}
