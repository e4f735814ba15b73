/*
 * db: asynchronous PostgreSQL on the controller's libevent loop.
 *
 * A pool of libpq connections in non-blocking mode, each an explicit state
 * machine (connecting -> preparing <-> describing -> idle <-> busy -> broken
 * -> connecting).
 * Every statement the controller runs is registered up front and prepared on
 * each connection when it connects. A listener connection delivers NOTIFY
 * wake-ups. The loop never waits on the database.
 */
#ifndef CLOUD_DB_H
#define CLOUD_DB_H

#include <event2/event.h>
#include <libpq-fe.h>

/*
 * A prepared statement: name and SQL; registered with db_pool_new(). nparams
 * and ncols are its contract with the C that runs it: the parameters passed
 * and the result columns read (store.h names them). Each connection checks
 * both against PostgreSQL's description of the statement once, when it
 * prepares it (db_stmt_check).
 */
struct db_stmt {
    const char *name;
    const char *sql;
    int nparams;
    int ncols;
};

/* What went wrong with a query, already translated for the API edge. */
struct db_error {
    int status;          /* HTTP status: 404, 409, 412, 422, 503, 500 */
    const char *code;    /* "not_found", "conflict", ... */
    char sqlstate[6];
    char field[64];      /* offending JSON field for 422, or "" */
    char message[512];   /* one sentence */
};

/*
 * Called exactly once per query: res is the (single) result on success and
 * err NULL; on failure res is NULL and err says why. res is freed by db
 * after the callback returns.
 */
typedef void (*db_cb)(const PGresult *res, const struct db_error *err,
                      void *arg);

struct db_pool;

struct db_pool *db_pool_new(struct event_base *base, const char *conninfo,
                            int size, const struct db_stmt *stmts, int nstmts);
void db_pool_free(struct db_pool *pool);

/*
 * Queues a prepared statement. values[i] NULL means SQL NULL. Fails at once
 * (callback with a 503 error) when no connection is up.
 */
void db_query(struct db_pool *pool, const struct db_stmt *stmt,
              const char *const *values, db_cb cb, void *arg);

/*
 * Parameters with their formats, for bytea: values[i] of lengths[i] bytes
 * when formats[i] is 1 (binary), else a string (lengths and formats may be
 * NULL: all text). result_binary asks for the result columns in binary.
 */
struct db_params {
    const char *const *values;
    const int *lengths;
    const int *formats;
    int result_binary;
};
void db_query_params(struct db_pool *pool, const struct db_stmt *stmt,
                     const struct db_params *p, db_cb cb, void *arg);

/*
 * A transaction: one connection of the pool held from BEGIN to COMMIT or
 * ROLLBACK, for work that must commit whole but runs as many statements
 * (blob chunks). db_tx_begin queues BEGIN like any query; its callback
 * says whether the transaction runs. Then db_tx_query one statement at a
 * time (each callback before the next query), and db_tx_end exactly once
 * whatever happened before (it frees tx; cb may be NULL; a ROLLBACK with
 * no connection left succeeds at once with res and err NULL). A lost
 * connection fails the statement in flight and every later one with 503;
 * PostgreSQL rolls the transaction back. Statements are not retried.
 */
struct db_tx;
struct db_tx *db_tx_new(struct db_pool *pool);
void db_tx_begin(struct db_tx *tx, db_cb cb, void *arg);
void db_tx_query(struct db_tx *tx, const struct db_stmt *stmt,
                 const struct db_params *p, db_cb cb, void *arg);
void db_tx_end(struct db_tx *tx, int commit, db_cb cb, void *arg);

/* Pool state for /metrics and /readyz. */
struct db_pool_stats {
    int size, up, busy, queued;
    unsigned long long queries, errors, reconnects;
};
void db_pool_stats(const struct db_pool *pool, struct db_pool_stats *st);

/*
 * A LISTEN session. on_notify runs for every notification; on_connect runs
 * after each (re)connection, once LISTEN is in effect, so the owner can
 * re-read everything it may have missed.
 */
typedef void (*db_notify_cb)(const char *channel, const char *payload,
                             void *arg);
typedef void (*db_connect_cb)(void *arg);
struct db_listener;
struct db_listener *db_listener_new(struct event_base *base,
                                    const char *conninfo, const char *channel,
                                    db_notify_cb on_notify,
                                    db_connect_cb on_connect, void *arg);
void db_listener_free(struct db_listener *l);
int db_listener_up(const struct db_listener *l);

/*
 * 0 when desc, PQdescribePrepared's result for s, has the parameters and
 * result columns s declares; else -1 with a sentence naming the statement
 * in why.
 */
int db_stmt_check(const struct db_stmt *s, const PGresult *desc, char *why,
                  size_t len);

/* Fills err from an SQLSTATE, message and field (a batch item's error). */
void db_error_from_fields(const char *sqlstate, const char *primary,
                          const char *field, struct db_error *err);

/* Fills err from a failed PGresult or connection (used by migrate too). */
void db_error_from_result(const PGresult *res, PGconn *conn,
                          struct db_error *err);

#endif
