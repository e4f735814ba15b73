/*
 * migrate: the schema migrations and SQL function files embedded in the
 * binary (generated from the migrations directory at build time). One
 * transaction, under an advisory lock so controllers starting together do
 * not race, applies the changed function files of functions/bound/ (what
 * the schema calls: triggers, CHECKs), the missing migrations in order,
 * then the changed files of functions/, and drops the functions no file
 * defines (docs/decisions.md §18). Runs before the event loop starts
 * (start-up and `cloud-controller migrate`), so blocking libpq is fine.
 */
#ifndef CLOUD_MIGRATE_H
#define CLOUD_MIGRATE_H

struct migration {
    int version;
    const char *name;
    const char *sql;
};

extern const struct migration migrations[];
extern const int nmigrations;

/* One SQL function file: migrations/functions[/bound]/<name>.sql. */
struct sqlfunc {
    const char *name;
    int bound; /* in functions/bound/: applied before the migrations */
    const char *sql;
};

extern const struct sqlfunc sqlfuncs[];
extern const int nsqlfuncs;

/* The newest version embedded. */
int migrate_latest(void);

/*
 * Connects (retrying for up to wait_s seconds while the server is not
 * there), applies what is missing, and returns 0, or -1 after logging why.
 * Each applied migration's SHA-256 is kept in schema_migrations.checksum;
 * one applied from other SQL than this build's (a database migrated by a
 * different build) is an error, and nothing is applied. A database
 * migrated through 0020 by a build from before the squash is carried
 * forward to 0020_baseline; one migrated part of the way is refused.
 * Each function file's SHA-256 is kept in schema_functions.checksum.
 */
int migrate_run(const char *conninfo, int wait_s);

#endif
