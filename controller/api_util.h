/*
 * api_util: what every REST handler module (api.c, api_cluster.c,
 * api_config.c, api_join.c, blobs.c) does at the end of a database round
 * trip: drop a request whose client left, or answer a database error.
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

#endif
