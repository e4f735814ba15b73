/*
 * store_stmts: the contract between the controller's SQL and its C, checked
 * against a migrated database (test_store_stmts.py runs it).
 *
 *   store_stmts table CONNINFO
 *     prepares every statement of store_stmts[] and checks the parameters
 *     and result columns PostgreSQL describes against the table's nparams
 *     and ncols (db_stmt_check, what each pool connection checks); also
 *     that the check refuses each statement declared with one column more.
 *     Prints one line per mismatch; exit 0 when there is none.
 *
 *   store_stmts pool CONNINFO
 *     db.c's own path: a pool whose table declares a column too few never
 *     comes up (its query is not answered and the mismatch is logged),
 *     while the same table declared right answers. Exit 0 when both hold.
 */
#define LOG_MODULE "store_stmts"
#include <stdio.h>
#include <string.h>

#include <event2/event.h>
#include <libpq-fe.h>

#include "db.h"
#include "log.h"
#include "store.h"

/* 1 when res is a command's success; else prints why and clears it. */
static int
step_ok(PGresult *res, const char *what, const char *name)
{
    if (PQresultStatus(res) == PGRES_COMMAND_OK)
        return 1;
    printf("statement %s: cannot %s it: %s", name, what,
           PQresultErrorMessage(res));
    PQclear(res);
    return 0;
}

static int
check_table(const char *conninfo)
{
    PGconn *c = PQconnectdb(conninfo);
    int bad = 0;
    char why[256];

    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "store_stmts: cannot connect: %s", PQerrorMessage(c));
        PQfinish(c);
        return 1;
    }
    for (int i = 0; i < ST__COUNT; i++) {
        const struct db_stmt *s = &store_stmts[i];
        struct db_stmt wrong = *s;
        PGresult *res;

        if (s->name == NULL || s->sql == NULL) {
            printf("statement %d has no entry in store_stmts\n", i);
            bad++;
            continue;
        }
        res = PQprepare(c, s->name, s->sql, s->nparams, NULL);
        if (!step_ok(res, "prepare", s->name)) {
            bad++;
            continue;
        }
        PQclear(res);
        res = PQdescribePrepared(c, s->name);
        if (!step_ok(res, "describe", s->name)) {
            bad++;
            continue;
        }
        if (db_stmt_check(s, res, why, sizeof(why)) < 0) {
            printf("%s\n", why);
            bad++;
        }
        wrong.ncols++;
        if (db_stmt_check(&wrong, res, why, sizeof(why)) == 0) {
            printf("statement %s: a declaration of %d columns passes the "
                   "check\n",
                   s->name, wrong.ncols);
            bad++;
        }
        PQclear(res);
    }
    PQfinish(c);
    printf("%d statements checked, %d mismatches\n", ST__COUNT, bad);
    return bad == 0 ? 0 : 1;
}

struct probe {
    struct event_base *base;
    int answered;
};

static void
on_answer(const PGresult *res, const struct db_error *err, void *arg)
{
    struct probe *p = arg;

    (void)res;
    if (err == NULL)
        p->answered = 1;
    event_base_loopbreak(p->base);
}

/* 1 when a pool over stmts answers its first statement within 3 s. */
static int
pool_answers(const char *conninfo, const struct db_stmt *stmts, int n)
{
    struct probe p = {event_base_new(), 0};
    struct timeval tv = {3, 0};
    struct db_pool *pool;

    if (p.base == NULL)
        fatalx("cannot allocate an event base");
    pool = db_pool_new(p.base, conninfo, 1, stmts, n);
    db_query(pool, &stmts[0], NULL, on_answer, &p);
    event_base_loopexit(p.base, &tv);
    event_base_dispatch(p.base);
    db_pool_free(pool); /* an unanswered query fails here: not counted */
    event_base_free(p.base);
    return p.answered;
}

static int
check_pool(const char *conninfo)
{
    const struct db_stmt right[] = {
        {"probe", "SELECT 1", 0, 1},
        {"pair", "SELECT 1, 'two'", 0, 2},
    };
    const struct db_stmt wrong[] = {
        {"probe", "SELECT 1", 0, 1},
        {"pair", "SELECT 1, 'two'", 0, 1},
    };
    int rc = 0;

    if (!pool_answers(conninfo, right, 2)) {
        printf("a pool whose statements are declared right does not "
               "answer\n");
        rc = 1;
    }
    if (pool_answers(conninfo, wrong, 2)) {
        printf("a pool with a statement declared a column too few "
               "answers\n");
        rc = 1;
    }
    return rc;
}

int
main(int argc, char **argv)
{
    log_init("store_stmts", LOG_LVL_INFO, 0);
    if (argc == 3 && strcmp(argv[1], "table") == 0)
        return check_table(argv[2]);
    if (argc == 3 && strcmp(argv[1], "pool") == 0)
        return check_pool(argv[2]);
    fprintf(stderr, "usage: store_stmts table|pool CONNINFO\n");
    return 2;
}
