/*
 * db: asynchronous libpq connections driven by libevent.
 *
 * Owns the pool's connections, the FIFO of queued queries and the LISTEN
 * session. Each connection is a state machine; a broken connection fails its
 * in-flight query with 503 (the caller never acknowledges what may not have
 * committed) and reconnects with back-off. See db.h.
 */
#define LOG_MODULE "db"
#include "db.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/queue.h>

#include "log.h"
#include "mem.h"

#define DB_QUEUE_MAX 20000
#define DB_CONNECT_TIMEOUT_S 10
#define DB_BACKOFF_MIN_MS 100
#define DB_BACKOFF_MAX_MS 2000
/* A statement PostgreSQL chose as a deadlock's (or serialization
 * conflict's) victim is run again this many times before it fails. */
#define DB_CONFLICT_RETRIES 3
/* failed statements logged at most this often (the rest are counted) */
#define DB_FAIL_LOG_PER_SEC 5

enum conn_state {
    CONN_DOWN = 0,
    CONN_CONNECTING,
    CONN_PREPARING, /* preparing statement prep_next */
    CONN_DESCRIBING, /* describing it, to check its declared shape */
    CONN_LISTENING, /* listener: LISTEN sent, waiting for its result */
    CONN_IDLE,
    CONN_BUSY,
    CONN_TX, /* held by a transaction (db_tx), between its statements */
};

struct db_req {
    TAILQ_ENTRY(db_req) link;
    const struct db_stmt *stmt;
    char **values;
    int *lengths;      /* with formats: binary parameters (NULL: all text) */
    int *formats;
    int result_binary;
    const char *raw;   /* BEGIN, COMMIT or ROLLBACK of a transaction */
    struct db_tx *tx;  /* the transaction it belongs to, or NULL */
    db_cb cb;
    void *arg;
    int retries; /* after a deadlock or serialization failure */
};

/* A transaction: one connection held from BEGIN to COMMIT or ROLLBACK. */
struct db_tx {
    struct db_pool *pool;
    struct db_conn *conn; /* NULL before BEGIN ran and once it broke */
};
TAILQ_HEAD(db_req_queue, db_req);

struct db_conn {
    struct event_base *base;
    const char *conninfo;
    struct db_pool *pool;         /* NULL for a listener */
    struct db_listener *listener; /* NULL for a pool connection */
    PGconn *pg;
    enum conn_state state;
    struct event *ev_r;  /* persistent read (connected) / connect poll */
    struct event *ev_w;  /* one-shot write for flushing */
    struct event *retry; /* reconnect timer */
    int backoff_ms;
    int prep_next;
    struct db_req *req;
    struct db_tx *tx; /* the transaction holding it, or NULL */
    PGresult *first; /* first result of the operation in flight */
};

struct db_pool {
    struct event_base *base;
    char *conninfo;
    const struct db_stmt *stmts;
    int nstmts;
    int size;
    struct db_conn *conns;
    struct db_req_queue queue;
    int queued;
    int ever_up; /* until the first connection is up, queries wait */
    unsigned long long queries, errors, reconnects;
};

struct db_listener {
    struct db_conn conn;
    char *conninfo;
    char *channel;
    db_notify_cb on_notify;
    db_connect_cb on_connect;
    void *arg;
};

static void conn_start(struct db_conn *c);
static void conn_broken(struct db_conn *c, const char *why);
static void conn_on_io(evutil_socket_t fd, short what, void *arg);
static void pool_kick(struct db_pool *pool);
static void pool_submit(struct db_pool *pool, struct db_req *r);

/* ---- errors ---------------------------------------------------------- */

static void
err_set(struct db_error *err, int status, const char *code, const char *msg)
{
    err->status = status;
    err->code = code;
    xstrlcpy(err->message, msg, sizeof(err->message));
}

void
db_error_from_fields(const char *state, const char *primary,
                     const char *column, struct db_error *err)
{
    char buf[512];

    memset(err, 0, sizeof(*err));
    xstrlcpy(err->sqlstate, state ? state : "", sizeof(err->sqlstate));
    if (column)
        xstrlcpy(err->field, column, sizeof(err->field));
    if (state && strncmp(state, "CL", 2) == 0) {
        if (strcmp(state, "CL404") == 0)
            err_set(err, 404, "not_found", primary);
        else if (strcmp(state, "CL409") == 0)
            err_set(err, 409, "conflict", primary);
        else if (strcmp(state, "CL412") == 0)
            err_set(err, 412, "precondition_failed", primary);
        else if (strcmp(state, "CL410") == 0)
            err_set(err, 410, "expired", primary);
        else if (strcmp(state, "CLQTA") == 0)
            err_set(err, 409, "quota", primary);
        else if (strcmp(state, "CL413") == 0)
            err_set(err, 413, "too_large", primary);
        else
            err_set(err, 422, "invalid", primary);
        return;
    }
    if (state && strcmp(state, "23505") == 0) {
        err_set(err, 409, "conflict", primary);
    } else if (state && (strcmp(state, "23514") == 0 ||
                         strcmp(state, "22P02") == 0 ||
                         strcmp(state, "22003") == 0)) {
        err_set(err, 422, "invalid", primary);
    } else if (state && strcmp(state, "23503") == 0) {
        err_set(err, 409, "conflict", primary);
    } else if (state && (strncmp(state, "08", 2) == 0 ||
                         strncmp(state, "57", 2) == 0 ||
                         strcmp(state, "40001") == 0 ||
                         strcmp(state, "40P01") == 0 ||
                         strcmp(state, "25006") == 0 ||
                         strcmp(state, "53300") == 0)) {
        snprintf(buf, sizeof(buf), "database unavailable: %s", primary);
        err_set(err, 503, "unavailable", buf);
    } else {
        snprintf(buf, sizeof(buf), "database error %s: %s",
                 state ? state : "?", primary);
        err_set(err, 500, "internal", buf);
    }
}

void
db_error_from_result(const PGresult *res, PGconn *conn, struct db_error *err)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *primary =
        res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *column =
        res ? PQresultErrorField(res, PG_DIAG_COLUMN_NAME) : NULL;
    char buf[512];

    if (primary == NULL) {
        const char *m = conn ? PQerrorMessage(conn) : "";
        memset(err, 0, sizeof(*err));
        snprintf(buf, sizeof(buf), "database unavailable: %s",
                 m && *m ? m : "connection lost");
        /* libpq messages end with a newline. */
        buf[strcspn(buf, "\n")] = '\0';
        err_set(err, 503, "unavailable", buf);
        return;
    }
    db_error_from_fields(state, primary, column && *column ? column : NULL,
                         err);
}

/* ---- requests -------------------------------------------------------- */

/* A COMMIT or ROLLBACK: the end of its transaction, whatever its outcome. */
static int
req_ends_tx(const struct db_req *r)
{
    return r->tx != NULL && r->raw != NULL && r->raw[0] != 'B';
}

static void
req_free(struct db_req *r)
{
    if (r == NULL)
        return;
    if (req_ends_tx(r))
        free(r->tx);
    if (r->values) {
        for (int i = 0; i < r->stmt->nparams; i++)
            free(r->values[i]);
        free(r->values);
    }
    free(r->lengths);
    free(r->formats);
    free(r);
}

static void
req_fail(struct db_req *r, int status, const char *code, const char *msg)
{
    struct db_error err;

    memset(&err, 0, sizeof(err));
    err_set(&err, status, code, msg);
    r->cb(NULL, &err, r->arg);
    req_free(r);
}

static int
pool_up(const struct db_pool *pool)
{
    for (int i = 0; i < pool->size; i++)
        if (pool->conns[i].state == CONN_IDLE ||
            pool->conns[i].state == CONN_BUSY ||
            pool->conns[i].state == CONN_TX)
            return 1;
    return 0;
}

static void
pool_fail_queue(struct db_pool *pool, const char *why)
{
    struct db_req *r;

    while ((r = TAILQ_FIRST(&pool->queue)) != NULL) {
        TAILQ_REMOVE(&pool->queue, r, link);
        pool->queued--;
        pool->errors++;
        req_fail(r, 503, "unavailable", why);
    }
}

/* A request holding its own copy of the parameters (binary ones by their
 * lengths). */
static struct db_req *
req_new(const struct db_stmt *stmt, const struct db_params *p, db_cb cb,
        void *arg)
{
    struct db_req *r = xcalloc(1, sizeof(*r));
    int n = stmt ? stmt->nparams : 0;

    r->stmt = stmt;
    r->cb = cb;
    r->arg = arg;
    if (n > 0) {
        r->values = xcalloc((size_t)n, sizeof(char *));
        for (int i = 0; i < n; i++) {
            const char *v = p->values[i];
            int bin = p->formats && p->formats[i] == 1;

            if (v == NULL)
                continue;
            if (bin) {
                r->values[i] = xmalloc(p->lengths[i] ? (size_t)p->lengths[i]
                                                     : 1);
                memcpy(r->values[i], v, (size_t)p->lengths[i]);
            } else {
                r->values[i] = xstrdup(v);
            }
        }
        if (p->formats) {
            r->lengths = xcalloc((size_t)n, sizeof(int));
            r->formats = xcalloc((size_t)n, sizeof(int));
            memcpy(r->lengths, p->lengths, (size_t)n * sizeof(int));
            memcpy(r->formats, p->formats, (size_t)n * sizeof(int));
        }
    }
    r->result_binary = p ? p->result_binary : 0;
    return r;
}

void
db_query(struct db_pool *pool, const struct db_stmt *stmt,
         const char *const *values, db_cb cb, void *arg)
{
    struct db_params p = {.values = values};

    db_query_params(pool, stmt, &p, cb, arg);
}

void
db_query_params(struct db_pool *pool, const struct db_stmt *stmt,
                const struct db_params *p, db_cb cb, void *arg)
{
    struct db_req *r = req_new(stmt, p, cb, arg);

    pool_submit(pool, r);
}

static void
pool_submit(struct db_pool *pool, struct db_req *r)
{
    pool->queries++;
    if (!pool_up(pool) && pool->ever_up) {
        pool->errors++;
        req_fail(r, 503, "unavailable",
                 "database unavailable: no connection to PostgreSQL");
        return;
    }
    if (pool->queued >= DB_QUEUE_MAX) {
        pool->errors++;
        req_fail(r, 503, "unavailable",
                 "database unavailable: too many queued queries");
        return;
    }
    TAILQ_INSERT_TAIL(&pool->queue, r, link);
    pool->queued++;
    pool_kick(pool);
}

/* ---- transactions ---------------------------------------------------- */

static void conn_send_req(struct db_conn *c);

struct db_tx *
db_tx_new(struct db_pool *pool)
{
    struct db_tx *tx = xcalloc(1, sizeof(*tx));

    tx->pool = pool;
    return tx;
}

void
db_tx_begin(struct db_tx *tx, db_cb cb, void *arg)
{
    struct db_req *r = req_new(NULL, NULL, cb, arg);

    r->raw = "BEGIN";
    r->tx = tx;
    pool_submit(tx->pool, r);
}

/* Runs r on the transaction's connection, or fails it when there is none. */
static void
tx_send(struct db_tx *tx, struct db_req *r)
{
    struct db_conn *c = tx->conn;

    tx->pool->queries++;
    if (c == NULL || c->state != CONN_TX) {
        tx->pool->errors++;
        req_fail(r, 503, "unavailable",
                 c == NULL ? "database unavailable: the connection of the "
                             "transaction was lost"
                           : "a transaction runs one statement at a time");
        return;
    }
    c->req = r;
    c->state = CONN_BUSY;
    conn_send_req(c);
}

void
db_tx_query(struct db_tx *tx, const struct db_stmt *stmt,
            const struct db_params *p, db_cb cb, void *arg)
{
    struct db_req *r = req_new(stmt, p, cb, arg);

    r->tx = tx;
    tx_send(tx, r);
}

static void
tx_end_noop(const PGresult *res, const struct db_error *err, void *arg)
{
    (void)res;
    (void)err;
    (void)arg;
}

void
db_tx_end(struct db_tx *tx, int commit, db_cb cb, void *arg)
{
    struct db_req *r = req_new(NULL, NULL, cb ? cb : tx_end_noop, arg);

    r->raw = commit ? "COMMIT" : "ROLLBACK";
    r->tx = tx;
    if (tx->conn == NULL) {
        /* Never began, or its connection broke: nothing to roll back
         * (req_free frees tx). */
        if (commit) {
            req_fail(r, 503, "unavailable",
                     "database unavailable: the connection of the "
                     "transaction was lost before its commit");
        } else {
            r->cb(NULL, NULL, r->arg);
            req_free(r);
        }
        return;
    }
    tx_send(tx, r);
}

/* The end of a statement of a transaction (res NULL: it failed). */
static void
tx_op_done(struct db_conn *c, struct db_req *r, const PGresult *res, int ok)
{
    struct db_tx *tx = r->tx;
    struct db_error err;

    if (!ok) {
        db_error_from_result(res, c->pg, &err);
        c->pool->errors++;
        if (err.status >= 500)
            log_warnx("statement %s of a transaction failed: %s",
                      r->raw ? r->raw : r->stmt->name, err.message);
    }
    if (r->raw != NULL && (req_ends_tx(r) || !ok)) {
        /* COMMIT or ROLLBACK ran (req_free frees tx), or BEGIN failed:
         * the connection is the pool's again. */
        c->tx = NULL;
        c->state = CONN_IDLE;
    } else {
        if (r->raw != NULL) { /* BEGIN */
            tx->conn = c;
            c->tx = tx;
        }
        c->state = CONN_TX;
    }
    r->cb(ok ? res : NULL, ok ? NULL : &err, r->arg);
    req_free(r);
    if (c->state == CONN_IDLE && c->pool != NULL)
        pool_kick(c->pool);
}

/* ---- connection machinery -------------------------------------------- */

static void
conn_flush(struct db_conn *c)
{
    int r = PQflush(c->pg);

    if (r < 0) {
        conn_broken(c, PQerrorMessage(c->pg));
        return;
    }
    if (r == 1)
        event_add(c->ev_w, NULL);
}

static void
conn_on_write(evutil_socket_t fd, short what, void *arg)
{
    struct db_conn *c = arg;

    (void)fd;
    (void)what;
    if (c->pg != NULL)
        conn_flush(c);
}

static void
conn_send_prepare(struct db_conn *c)
{
    const struct db_stmt *s = &c->pool->stmts[c->prep_next];

    if (!PQsendPrepare(c->pg, s->name, s->sql, s->nparams, NULL)) {
        conn_broken(c, PQerrorMessage(c->pg));
        return;
    }
    conn_flush(c);
}

/* One round trip per statement and connection, at connect time only. */
static void
conn_send_describe(struct db_conn *c)
{
    const struct db_stmt *s = &c->pool->stmts[c->prep_next];

    if (!PQsendDescribePrepared(c->pg, s->name)) {
        conn_broken(c, PQerrorMessage(c->pg));
        return;
    }
    conn_flush(c);
}

int
db_stmt_check(const struct db_stmt *s, const PGresult *desc, char *why,
              size_t len)
{
    if (PQnparams(desc) != s->nparams) {
        snprintf(why, len,
                 "statement %s takes %d parameters, the controller passes %d",
                 s->name, PQnparams(desc), s->nparams);
        return -1;
    }
    if (PQnfields(desc) != s->ncols) {
        snprintf(why, len,
                 "statement %s returns %d columns, the controller reads %d",
                 s->name, PQnfields(desc), s->ncols);
        return -1;
    }
    return 0;
}

static void
conn_send_req(struct db_conn *c)
{
    struct db_req *r = c->req;
    int ok;

    if (r->raw)
        ok = PQsendQueryParams(c->pg, r->raw, 0, NULL, NULL, NULL, NULL, 0);
    else
        ok = PQsendQueryPrepared(c->pg, r->stmt->name, r->stmt->nparams,
                                 (const char *const *)r->values, r->lengths,
                                 r->formats, r->result_binary);
    if (!ok) {
        conn_broken(c, PQerrorMessage(c->pg));
        return;
    }
    conn_flush(c);
}

static void
pool_kick(struct db_pool *pool)
{
    for (int i = 0; i < pool->size && !TAILQ_EMPTY(&pool->queue); i++) {
        struct db_conn *c = &pool->conns[i];
        struct db_req *r;

        if (c->state != CONN_IDLE)
            continue;
        r = TAILQ_FIRST(&pool->queue);
        TAILQ_REMOVE(&pool->queue, r, link);
        pool->queued--;
        c->req = r;
        c->state = CONN_BUSY;
        conn_send_req(c);
    }
}

/*
 * Why the server this connection reached cannot take writes, or NULL. The
 * URL's target_session_attrs=read-write makes libpq skip such servers; this
 * holds without it too (a single-host URL on a standby, a member demoted
 * between libpq's check and ours): the connection goes back to connecting.
 * Both parameters are reported by PostgreSQL 14 and later.
 */
static const char *
conn_read_only(PGconn *pg)
{
    const char *v = PQparameterStatus(pg, "in_hot_standby");

    if (v != NULL && strcmp(v, "on") == 0)
        return "is a standby in recovery (read-only)";
    v = PQparameterStatus(pg, "default_transaction_read_only");
    if (v != NULL && strcmp(v, "on") == 0)
        return "has default_transaction_read_only on";
    return NULL;
}

static void
conn_connected(struct db_conn *c)
{
    const char *ro = conn_read_only(c->pg);

    if (ro != NULL) {
        char why[300];

        snprintf(why, sizeof(why),
                 "PostgreSQL at %s:%s %s; the controller needs the primary",
                 PQhost(c->pg), PQport(c->pg), ro);
        conn_broken(c, why);
        return;
    }
    event_free(c->ev_r);
    c->ev_r = NULL;
    if (PQsetnonblocking(c->pg, 1) != 0) {
        conn_broken(c, PQerrorMessage(c->pg));
        return;
    }
    c->ev_r = event_new(c->base, PQsocket(c->pg), EV_READ | EV_PERSIST,
                        conn_on_io, c);
    c->ev_w = event_new(c->base, PQsocket(c->pg), EV_WRITE, conn_on_write, c);
    if (c->ev_r == NULL || c->ev_w == NULL || event_add(c->ev_r, NULL) < 0) {
        conn_broken(c, "cannot register the connection's socket events");
        return;
    }
    c->backoff_ms = 0;
    if (c->listener) {
        char *q;
        char *id = PQescapeIdentifier(c->pg, c->listener->channel,
                                      strlen(c->listener->channel));
        if (id == NULL) {
            conn_broken(c, PQerrorMessage(c->pg));
            return;
        }
        q = xasprintf("LISTEN %s", id);
        PQfreemem(id);
        c->state = CONN_LISTENING;
        if (!PQsendQuery(c->pg, q)) {
            free(q);
            conn_broken(c, PQerrorMessage(c->pg));
            return;
        }
        free(q);
        conn_flush(c);
        return;
    }
    if (c->pool->nstmts == 0) {
        c->state = CONN_IDLE;
        c->pool->ever_up = 1;
        pool_kick(c->pool);
        return;
    }
    c->state = CONN_PREPARING;
    c->prep_next = 0;
    conn_send_prepare(c);
}

static void
conn_on_connect_io(evutil_socket_t fd, short what, void *arg)
{
    struct db_conn *c = arg;
    PostgresPollingStatusType st;

    (void)fd;
    if (what & EV_TIMEOUT) {
        conn_broken(c, "timed out connecting to PostgreSQL");
        return;
    }
    st = PQconnectPoll(c->pg);
    if (st == PGRES_POLLING_OK) {
        conn_connected(c);
        return;
    }
    if (st == PGRES_POLLING_FAILED) {
        conn_broken(c, PQerrorMessage(c->pg));
        return;
    }
    /* The socket may change between polls (libpq docs): re-create. */
    event_free(c->ev_r);
    c->ev_r = event_new(c->base, PQsocket(c->pg),
                        st == PGRES_POLLING_READING ? EV_READ : EV_WRITE,
                        conn_on_connect_io, c);
    if (c->ev_r == NULL) {
        conn_broken(c, "cannot register the connection's socket event");
        return;
    }
    {
        struct timeval tv = {DB_CONNECT_TIMEOUT_S, 0};
        event_add(c->ev_r, &tv);
    }
}

static void
conn_on_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    conn_start(arg);
}

static void
conn_start(struct db_conn *c)
{
    struct timeval tv = {DB_CONNECT_TIMEOUT_S, 0};

    c->pg = PQconnectStart(c->conninfo);
    if (c->pg == NULL || PQstatus(c->pg) == CONNECTION_BAD ||
        PQsocket(c->pg) < 0) {
        conn_broken(c, c->pg ? PQerrorMessage(c->pg)
                             : "cannot allocate a libpq connection");
        return;
    }
    c->state = CONN_CONNECTING;
    c->ev_r = event_new(c->base, PQsocket(c->pg), EV_WRITE,
                        conn_on_connect_io, c);
    if (c->ev_r == NULL || event_add(c->ev_r, &tv) < 0) {
        conn_broken(c, "cannot register the connection's socket event");
        return;
    }
}

static void
conn_broken(struct db_conn *c, const char *why)
{
    char msg[300];
    struct timeval tv;
    enum conn_state was = c->state;
    struct db_req *r = c->req;

    snprintf(msg, sizeof(msg), "%s", why && *why ? why : "connection lost");
    msg[strcspn(msg, "\n")] = '\0';
    if (was != CONN_DOWN && c->backoff_ms == 0)
        log_warnx("connection to PostgreSQL lost or refused: %s", msg);

    c->req = NULL;
    if (c->tx) {
        c->tx->conn = NULL; /* PostgreSQL rolls it back */
        c->tx = NULL;
    }
    if (c->first) {
        PQclear(c->first);
        c->first = NULL;
    }
    if (c->ev_r) {
        event_free(c->ev_r);
        c->ev_r = NULL;
    }
    if (c->ev_w) {
        event_free(c->ev_w);
        c->ev_w = NULL;
    }
    if (c->pg) {
        PQfinish(c->pg);
        c->pg = NULL;
    }
    c->state = CONN_DOWN;

    if (r) {
        char m[400];
        snprintf(m, sizeof(m), "database unavailable: %s", msg);
        c->pool->errors++;
        req_fail(r, 503, "unavailable", m);
    }
    if (c->pool) {
        c->pool->reconnects++;
        if (!pool_up(c->pool) && c->pool->ever_up)
            pool_fail_queue(c->pool,
                            "database unavailable: no connection to "
                            "PostgreSQL");
    }
    c->backoff_ms = c->backoff_ms == 0 ? DB_BACKOFF_MIN_MS : c->backoff_ms * 2;
    if (c->backoff_ms > DB_BACKOFF_MAX_MS)
        c->backoff_ms = DB_BACKOFF_MAX_MS;
    tv.tv_sec = c->backoff_ms / 1000;
    tv.tv_usec = (c->backoff_ms % 1000) * 1000;
    evtimer_add(c->retry, &tv);
}

/* Preparing or describing a statement failed: nothing runs on this
 * connection until it connects again. */
static void
conn_setup_failed(struct db_conn *c, const char *what, PGresult *res)
{
    struct db_error err;

    db_error_from_result(res, c->pg, &err);
    log_errx("cannot %s statement %s: %s", what,
             c->pool->stmts[c->prep_next].name, err.message);
    PQclear(res);
    conn_broken(c, err.message);
}

/* One operation (prepare, query or LISTEN) finished: act on its result. */
static void
conn_op_done(struct db_conn *c)
{
    PGresult *res = c->first;
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    int ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;

    c->first = NULL;
    switch (c->state) {
    case CONN_PREPARING:
        if (!ok) {
            conn_setup_failed(c, "prepare", res);
            return;
        }
        PQclear(res);
        c->state = CONN_DESCRIBING;
        conn_send_describe(c);
        return;
    case CONN_DESCRIBING: {
        char why[256];

        if (!ok) {
            conn_setup_failed(c, "describe", res);
            return;
        }
        if (db_stmt_check(&c->pool->stmts[c->prep_next], res, why,
                          sizeof(why)) < 0) {
            /* The SQL and the C that reads it disagree: a defect, or a
             * schema this build does not know; nothing runs on it. */
            log_errx("%s", why);
            PQclear(res);
            conn_broken(c, why);
            return;
        }
        PQclear(res);
        if (++c->prep_next < c->pool->nstmts) {
            c->state = CONN_PREPARING;
            conn_send_prepare(c);
            return;
        }
        c->state = CONN_IDLE;
        if (c->pool->reconnects > 0)
            log_info("connection to PostgreSQL is up");
        c->pool->ever_up = 1;
        pool_kick(c->pool);
        return;
    }
    case CONN_LISTENING:
        PQclear(res);
        if (!ok) {
            conn_broken(c, PQerrorMessage(c->pg));
            return;
        }
        c->state = CONN_IDLE;
        log_info("listening on channel %s", c->listener->channel);
        c->listener->on_connect(c->listener->arg);
        return;
    case CONN_BUSY: {
        struct db_req *r = c->req;
        c->req = NULL;
        c->state = CONN_IDLE;
        if (r->tx) {
            tx_op_done(c, r, res, ok);
            PQclear(res);
            return;
        }
        if (ok) {
            r->cb(res, NULL, r->arg);
        } else {
            struct db_error err;
            const char *sqlstate =
                res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

            /* Every pool statement is its own transaction, rolled back
             * whole when it lost a deadlock (40P01) or a serialization
             * conflict (40001): run it again, first in the queue. */
            if (sqlstate != NULL &&
                (strcmp(sqlstate, "40P01") == 0 ||
                 strcmp(sqlstate, "40001") == 0) &&
                r->retries < DB_CONFLICT_RETRIES) {
                r->retries++;
                log_info("statement %s: %s; running it again (%d of %d)",
                         r->stmt->name,
                         strcmp(sqlstate, "40P01") == 0
                             ? "deadlock detected"
                             : "serialization failure",
                         r->retries, DB_CONFLICT_RETRIES);
                PQclear(res);
                TAILQ_INSERT_HEAD(&c->pool->queue, r, link);
                c->pool->queued++;
                pool_kick(c->pool);
                return;
            }
            /* The server is read-only under this session (a primary
             * demoted with its sessions kept, default_transaction_read_only
             * set): nothing was written. Run the statement again elsewhere
             * and send this connection back to find the primary; if no
             * connection is left up, conn_broken fails the queue (503). */
            if (sqlstate != NULL && strcmp(sqlstate, "25006") == 0 &&
                r->retries < DB_CONFLICT_RETRIES) {
                char why[300];

                r->retries++;
                snprintf(why, sizeof(why),
                         "PostgreSQL at %s:%s refused a write (read-only); "
                         "reconnecting to find the primary",
                         PQhost(c->pg), PQport(c->pg));
                PQclear(res);
                TAILQ_INSERT_HEAD(&c->pool->queue, r, link);
                c->pool->queued++;
                conn_broken(c, why);
                pool_kick(c->pool);
                return;
            }
            db_error_from_result(res, c->pg, &err);
            c->pool->errors++;
            if (err.status >= 500) {
                static struct log_rate rate;
                unsigned dropped;

                if (log_rate_ok(&rate, DB_FAIL_LOG_PER_SEC, &dropped)) {
                    if (dropped)
                        log_warnx("%u more failed statements were not "
                                  "logged (at most %d a second)",
                                  dropped, DB_FAIL_LOG_PER_SEC);
                    log_warnx("statement %s failed: %s", r->stmt->name,
                              err.message);
                }
            }
            r->cb(NULL, &err, r->arg);
        }
        PQclear(res);
        req_free(r);
        pool_kick(c->pool);
        return;
    }
    default:
        PQclear(res);
        return;
    }
}

static void
conn_on_io(evutil_socket_t fd, short what, void *arg)
{
    struct db_conn *c = arg;
    PGnotify *n;

    (void)fd;
    (void)what;
    if (!PQconsumeInput(c->pg)) {
        conn_broken(c, PQerrorMessage(c->pg));
        return;
    }
    /* Results: drain every result the operation produces. */
    while (c->pg && !PQisBusy(c->pg)) {
        PGresult *res = PQgetResult(c->pg);
        if (res == NULL) {
            if (c->state == CONN_IDLE || c->state == CONN_DOWN ||
                c->state == CONN_TX)
                break;
            conn_op_done(c);
            if (c->pg == NULL || c->state == CONN_IDLE ||
                c->state == CONN_TX)
                break;
            continue;
        }
        if (c->first == NULL)
            c->first = res;
        else
            PQclear(res);
    }
    if (c->pg == NULL)
        return;
    while (c->listener && (n = PQnotifies(c->pg)) != NULL) {
        c->listener->on_notify(n->relname, n->extra, c->listener->arg);
        PQfreemem(n);
    }
    if (PQstatus(c->pg) == CONNECTION_BAD)
        conn_broken(c, PQerrorMessage(c->pg));
}

static void
conn_init(struct db_conn *c, struct event_base *base, const char *conninfo)
{
    c->base = base;
    c->conninfo = conninfo;
    c->retry = evtimer_new(base, conn_on_retry, c);
    if (c->retry == NULL)
        fatalx("cannot allocate a libevent timer");
}

static void
conn_fini(struct db_conn *c)
{
    if (c->first)
        PQclear(c->first);
    if (c->ev_r)
        event_free(c->ev_r);
    if (c->ev_w)
        event_free(c->ev_w);
    if (c->retry)
        event_free(c->retry);
    if (c->pg)
        PQfinish(c->pg);
}

/* ---- pool ------------------------------------------------------------ */

struct db_pool *
db_pool_new(struct event_base *base, const char *conninfo, int size,
            const struct db_stmt *stmts, int nstmts)
{
    struct db_pool *pool = xcalloc(1, sizeof(*pool));

    pool->base = base;
    pool->conninfo = xstrdup(conninfo);
    pool->stmts = stmts;
    pool->nstmts = nstmts;
    pool->size = size;
    pool->conns = xcalloc((size_t)size, sizeof(*pool->conns));
    TAILQ_INIT(&pool->queue);
    for (int i = 0; i < size; i++) {
        conn_init(&pool->conns[i], base, pool->conninfo);
        pool->conns[i].pool = pool;
        conn_start(&pool->conns[i]);
    }
    return pool;
}

void
db_pool_free(struct db_pool *pool)
{
    if (pool == NULL)
        return;
    for (int i = 0; i < pool->size; i++)
        pool->conns[i].state = CONN_DOWN; /* callbacks below see no pool */
    for (int i = 0; i < pool->size; i++) {
        struct db_conn *c = &pool->conns[i];
        struct db_req *r = c->req;
        c->req = NULL;
        if (c->tx) {
            c->tx->conn = NULL;
            c->tx = NULL;
        }
        if (r)
            req_fail(r, 503, "unavailable", "controller shutting down");
    }
    for (int i = 0; i < pool->size; i++)
        conn_fini(&pool->conns[i]);
    /* conns are down now, so the queue fails as unavailable */
    pool_fail_queue(pool, "controller shutting down");
    free(pool->conns);
    free(pool->conninfo);
    free(pool);
}

void
db_pool_stats(const struct db_pool *pool, struct db_pool_stats *st)
{
    memset(st, 0, sizeof(*st));
    st->size = pool->size;
    for (int i = 0; i < pool->size; i++) {
        if (pool->conns[i].state == CONN_IDLE)
            st->up++;
        else if (pool->conns[i].state == CONN_BUSY ||
                 pool->conns[i].state == CONN_TX) {
            st->up++;
            st->busy++;
        }
    }
    st->queued = pool->queued;
    st->queries = pool->queries;
    st->errors = pool->errors;
    st->reconnects = pool->reconnects;
}

/* ---- listener -------------------------------------------------------- */

struct db_listener *
db_listener_new(struct event_base *base, const char *conninfo,
                const char *channel, db_notify_cb on_notify,
                db_connect_cb on_connect, void *arg)
{
    struct db_listener *l = xcalloc(1, sizeof(*l));

    l->conninfo = xstrdup(conninfo);
    l->channel = xstrdup(channel);
    l->on_notify = on_notify;
    l->on_connect = on_connect;
    l->arg = arg;
    conn_init(&l->conn, base, l->conninfo);
    l->conn.listener = l;
    conn_start(&l->conn);
    return l;
}

void
db_listener_free(struct db_listener *l)
{
    if (l == NULL)
        return;
    conn_fini(&l->conn);
    free(l->channel);
    free(l->conninfo);
    free(l);
}

int
db_listener_up(const struct db_listener *l)
{
    return l->conn.state == CONN_IDLE;
}
