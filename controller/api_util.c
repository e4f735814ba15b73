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
    http_reply_error(r, err->status, err->code,
                     err->field[0] ? err->field : NULL, "%s", err->message);
}
