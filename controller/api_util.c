/*
 * api_util: request helpers shared by the REST handlers (see api_util.h).
 */
#include "api_util.h"

int
api_gone(struct http_req *r)
{
    if (r->cancelled) {
        http_req_release(r);
        return 1;
    }
    return 0;
}

void
api_reply_db_error(struct http_req *r, const struct db_error *err)
{
    /* The database is down or failing over (docs/ha.md): a second is the
     * order of a reconnect attempt. */
    if (err->status == 503)
        http_add_header(r, "Retry-After", "1");
    http_reply_error(r, err->status, err->code,
                     err->field[0] ? err->field : NULL, "%s", err->message);
}

int
api_db_done(struct http_req *r, const struct db_error *err)
{
    if (api_gone(r))
        return 1;
    if (err != NULL) {
        api_reply_db_error(r, err);
        return 1;
    }
    return 0;
}

int
api_db_one_row(struct http_req *r, const PGresult *res,
               const struct db_error *err, const char *what)
{
    if (api_db_done(r, err))
        return 1;
    if (PQntuples(res) != 1) {
        http_reply_error(r, 500, "internal", NULL,
                         "the %s query returned %d rows", what,
                         PQntuples(res));
        return 1;
    }
    return 0;
}

void
api_reply_write(int status, const char *body, const struct db_error *err,
                void *arg)
{
    struct http_req *r = arg;

    if (!api_db_done(r, err))
        http_reply_json_text(r, status, body);
}
