/*
 * pgrow: a one-row PGresult of text columns made with libpq's PQsetvalue,
 * shaped as the controller's statements return rows, without a database.
 * For tests and benchmarks of code that reads results (the reconciler's
 * mirror: test_reconcile_decide.c, bench/decide_bench.c).
 */
#ifndef CLOUD_TESTS_PGROW_H
#define CLOUD_TESTS_PGROW_H

#include <string.h>

#include <libpq-fe.h>

#define PGROW_MAX_COLS 32

/* n text columns (v[k] NULL: SQL NULL); NULL if libpq refuses. */
static inline PGresult *
pgrow_make(int n, const char *const *v)
{
    PGresult *res;
    PGresAttDesc att[PGROW_MAX_COLS];

    if (n > PGROW_MAX_COLS ||
        (res = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK)) == NULL)
        return NULL;
    memset(att, 0, sizeof(att));
    for (int k = 0; k < n; k++) {
        att[k].name = (char *)"c";
        att[k].typid = 25; /* text */
        att[k].typlen = -1;
        att[k].atttypmod = -1;
    }
    if (!PQsetResultAttrs(res, n, att))
        goto fail;
    for (int k = 0; k < n; k++)
        if (!PQsetvalue(res, 0, k, (char *)v[k], v[k] ? (int)strlen(v[k]) : -1))
            goto fail;
    return res;
fail:
    PQclear(res);
    return NULL;
}

#endif
