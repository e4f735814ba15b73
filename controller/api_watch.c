/*
 * api_watch: GET /v1/watch, the Server-Sent Events stream of the event log
 * (see watch.h watch_add). Owns the SSE clients: one that joins behind
 * (since=<id> or Last-Event-ID) catches up with its own queries, then joins
 * the hub's live set (watch.c), which fans new events out to it.
 */
#define LOG_MODULE "watch"
#include "watch_priv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/http.h>
#include <jansson.h>

#include "log.h"
#include "mem.h"
#include "store.h"

long long
watch_ll(const char *s)
{
    return strtoll(s, NULL, 10);
}

static void
client_free(struct watch_client *c)
{
    free(c->object);
    free(c->type);
    free(c);
}

void
watch_client_drop(struct watch_client *c)
{
    struct watch *w = c->w;

    if (!c->dead) {
        TAILQ_REMOVE(&w->clients, c, link);
        w->nclients--;
        c->dead = 1;
    }
    if (c->inflight)
        return; /* the query callback finishes the job */
    if (c->r) {
        if (!c->started && !c->r->cancelled)
            http_reply_error(c->r, 503, "unavailable", NULL,
                             "the watch ended before it began; retry");
        else
            http_stream_end(c->r);
        c->r = NULL;
    }
    client_free(c);
}

static void
client_start(struct watch_client *c)
{
    struct http_req *r = c->r;

    c->started = 1;
    http_stream_start(r, 200, "text/event-stream");
    /* A quiet cluster sends only keepalives; the client sends nothing. */
    http_stream_long(r, 60);
    http_stream_chunk(r, ": watching events\n\n", 19);
}

/*
 * The client's position is below the low-water mark: events it has not
 * seen were pruned. Before the stream began that is a plain 410; after,
 * an "error" event with the same body (as a Kubernetes watch sends an
 * ERROR event with a 410 Status), then the end of the stream. Either way
 * the client lists again and watches from there.
 */
void
watch_client_expire(struct watch_client *c, const char *message)
{
    json_t *j;
    char *body, *msg;

    if (!c->started) {
        c->r->on_cancel = NULL;
        http_reply_error(c->r, 410, "expired", "since", "%s", message);
        c->r = NULL;
        watch_client_drop(c);
        return;
    }
    j = json_pack("{s:{s:s,s:s}}", "error", "code", "expired", "message",
                  message);
    body = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (body) {
        msg = xasprintf("event: error\ndata: %s\n\n", body);
        http_stream_chunk(c->r, msg, strlen(msg));
        free(msg);
        free(body);
    }
    watch_client_drop(c);
}

static void
client_on_cancel(struct http_req *r)
{
    struct watch_client *c = r->data;

    r->on_cancel = NULL;
    watch_client_drop(c);
}

static int
client_matches(const struct watch_client *c, const char *object,
               const char *type)
{
    if (c->object && strcmp(c->object, object) != 0)
        return 0;
    if (c->type && strcmp(c->type, type) != 0)
        return 0;
    return 1;
}

int
watch_lagging(const struct http_req *r)
{
    struct evhttp_connection *evcon;
    struct bufferevent *bev;

    if (r == NULL || r->req == NULL)
        return 0;
    evcon = evhttp_request_get_connection(r->req);
    bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
    return bev && evbuffer_get_length(bufferevent_get_output(bev)) >
                      WATCH_MAX_BUFFERED;
}

void
watch_client_send(struct watch_client *c, const char *id, const char *type,
            const char *object, const char *json)
{
    char *msg;

    c->cursor = watch_ll(id);
    if (!client_matches(c, object, type))
        return;
    msg = xasprintf("id: %s\nevent: %s\ndata: %s\n\n", id, type, json);
    http_stream_chunk(c->r, msg, strlen(msg));
    free(msg);
}

/* A row set from ST_EVENT_LIST. */
static int
rows_send(struct watch_client *c, const PGresult *res)
{
    int n = PQntuples(res);

    for (int i = 0; i < n; i++)
        watch_client_send(c, PQgetvalue(res, i, EVENT_LIST_ID),
                          PQgetvalue(res, i, EVENT_LIST_TYPE),
                          PQgetvalue(res, i, EVENT_LIST_OBJECT),
                          PQgetvalue(res, i, EVENT_LIST_JSON));
    return n;
}

static void
client_on_rows(const PGresult *res, const struct db_error *err, void *arg)
{
    struct watch_client *c = arg;
    struct watch *w = c->w;

    c->inflight = 0;
    if (c->dead) {
        watch_client_drop(c);
        return;
    }
    if (err && err->status == 410) {
        watch_client_expire(c, err->message);
        return;
    }
    if (err) {
        /* The client reconnects and resumes from its last id. */
        log_warnx("watch client catch-up failed: %s", err->message);
        if (!c->started) {
            c->r->on_cancel = NULL;
            http_reply_error(c->r, err->status, err->code, NULL, "%s",
                             err->message);
            c->r = NULL;
        }
        watch_client_drop(c);
        return;
    }
    if (!c->started)
        client_start(c);
    if (c->state == CL_NEED_MAX) {
        c->cursor = watch_ll(PQgetvalue(res, 0, 0));
        c->state = CL_CATCHUP;
    } else if (rows_send(c, res) == WATCH_BATCH) {
        watch_client_step(c);
        return;
    }
    if (w->last_id >= 0 && c->cursor >= w->last_id) {
        c->state = CL_LIVE;
        return;
    }
    if (w->last_id < 0) {
        /* The hub does not know where the log ends yet; it will put us
         * live once it does (see hub_on_rows). */
        return;
    }
    watch_client_step(c);
}

void
watch_client_step(struct watch_client *c)
{
    char since[32];
    const char *vals[4];

    c->inflight = 1;
    if (c->state == CL_NEED_MAX) {
        db_query(c->w->db, store_stmt(ST_EVENT_MAX), NULL, client_on_rows, c);
        return;
    }
    snprintf(since, sizeof(since), "%lld", c->cursor);
    vals[0] = since;
    vals[1] = c->object;
    vals[2] = c->type;
    vals[3] = WATCH_BATCH_S;
    db_query(c->w->db, store_stmt(ST_EVENT_LIST), vals, client_on_rows, c);
}

void
watch_add(struct watch *w, struct http_req *r, long long since,
          const char *object, const char *type)
{
    struct watch_client *c = xcalloc(1, sizeof(*c));

    c->w = w;
    c->r = r;
    c->object = object ? xstrdup(object) : NULL;
    c->type = type ? xstrdup(type) : NULL;
    r->data = c;
    r->on_cancel = client_on_cancel;
    TAILQ_INSERT_TAIL(&w->clients, c, link);
    w->nclients++;
    if (since < 0) {
        client_start(c);
        if (w->last_id >= 0) {
            c->cursor = w->last_id;
            c->state = CL_LIVE;
            return;
        }
        c->state = CL_NEED_MAX;
    } else {
        /* The first page is read before the stream begins, even when the
         * client is at the end already: a since below the low-water mark
         * is answered 410 with no stream (cloud_event_page). */
        c->cursor = since;
        c->state = CL_CATCHUP;
    }
    watch_client_step(c);
}
