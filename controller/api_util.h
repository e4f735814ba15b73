/*
 * api_util: what every REST handler module (api.c, api_cluster.c,
 * api_config.c, api_join.c, api_blobs.c) does when a database round trip
 * returns: drop a request whose client left, answer a database error, or
 * answer a write with the writer's body.
 */
#ifndef CLOUD_API_UTIL_H
#define CLOUD_API_UTIL_H

#include "db.h"
#include "http.h"

/*
 * 1 if r's client went away while the database worked: r is released
 * (http_req_release) and the caller must not touch it again, only free
 * what it owns. 0 if r still wants its answer.
 */
int api_gone(struct http_req *r);

/* Answers err as the error body: its HTTP status, code, field (omitted
 * when empty) and message (http_reply_error). */
void api_reply_db_error(struct http_req *r, const struct db_error *err);

/*
 * The start of every query callback: 1 when r needs nothing more from the
 * caller (its client left, see api_gone; or err was answered), 0 when the
 * caller goes on with the result.
 */
int api_db_done(struct http_req *r, const struct db_error *err);

/*
 * api_db_done, and then a result that must have exactly one row: else 500
 * internal "the <what> query returned N rows" and 1.
 */
int api_db_one_row(struct http_req *r, const PGresult *res,
                   const struct db_error *err, const char *what);

/* A writer_cb (writer.h) for r (arg): the writer's status and JSON body,
 * or its error. */
void api_reply_write(int status, const char *body, const struct db_error *err,
                     void *arg);

#endif
