/*
 * migrate: the schema migrations embedded in the binary (generated from
 * the migrations directory at build time), applied in order, each in its own
 * transaction, under an advisory lock so controllers starting together do
 * not race. Runs before the event loop starts (start-up and
 * `cloud-controller migrate`), so blocking libpq is fine here.
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

/* The newest version embedded. */
int migrate_latest(void);

/*
 * Connects (retrying for up to wait_s seconds while the server is not
 * there), applies what is missing, and returns 0, or -1 after logging why.
 * Each applied migration's SHA-256 is kept in schema_migrations.checksum;
 * one applied from other SQL than this build's (a database migrated by a
 * different build) is an error, and nothing after it is applied.
 */
int migrate_run(const char *conninfo, int wait_s);

#endif
