/*
 * watch: the SSE hub (see watch.h). Owns the listener session, the live and
 * catching-up clients, and the keepalive timer.
 */
#define LOG_MODULE "watch"
#include "watch.h"

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

#ifndef TAILQ_FOREACH_SAFE
#define TAILQ_FOREACH_SAFE(var, head, field, tvar)                            \
    for ((var) = TAILQ_FIRST((head));                                         \
         (var) && ((tvar) = TAILQ_NEXT((var), field), 1); (var) = (tvar))
#endif

#define WATCH_BATCH 500
#define WATCH_BATCH_S "500"
#define WATCH_KEEPALIVE_S 15
/* A client this far behind is cut off; it resumes with Last-Event-ID. */
#define WATCH_MAX_BUFFERED (8 * 1024 * 1024)

enum client_state { CL_NEED_MAX, CL_CATCHUP, CL_LIVE };

struct watch_client {
    TAILQ_ENTRY(watch_client) link;
    struct watch *w;
    struct http_req *r;
    enum client_state state;
    long long cursor;
    char *object, *type;
    int inflight;
    int dead;
    int started; /* the 200 and the stream's head are sent */
};
TAILQ_HEAD(client_list, watch_client);

struct watch {
    struct event_base *base;
    struct db_pool *db;
    struct db_listener *listener;
    struct event *keepalive;
    struct event *retry;
    struct client_list clients;
    int nclients;
    long long last_id; /* -1 until known */
    int fetching, again;
    struct watch_observer obs[WATCH_MAX_OBSERVERS];
    int nobs;
    TAILQ_HEAD(, watch_stream) streams; /* other modules' (watch_stream) */
};

static void client_step(struct watch_client *c);

static long long
ll_of(const char *s)
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

static void
client_drop(struct watch_client *c)
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
        if (c->r->cancelled)
            http_req_release(c->r);
        else if (!c->started)
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
static void
client_expire(struct watch_client *c, const char *message)
{
    json_t *j;
    char *body, *msg;

    if (!c->started) {
        c->r->on_cancel = NULL;
        http_reply_error(c->r, 410, "expired", "since", "%s", message);
        c->r = NULL;
        client_drop(c);
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
    client_drop(c);
}

static void
client_on_cancel(struct http_req *r)
{
    struct watch_client *c = r->data;

    r->on_cancel = NULL;
    client_drop(c);
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

static void
client_send(struct watch_client *c, const char *id, const char *type,
            const char *object, const char *json)
{
    char *msg;

    c->cursor = ll_of(id);
    if (!client_matches(c, object, type))
        return;
    msg = xasprintf("id: %s\nevent: %s\ndata: %s\n\n", id, type, json);
    http_stream_chunk(c->r, msg, strlen(msg));
    free(msg);
}

/* A row set from ST_EVENT_LIST: id, type, object, json. */
static int
rows_send(struct watch_client *c, const PGresult *res)
{
    int n = PQntuples(res);

    for (int i = 0; i < n; i++)
        client_send(c, PQgetvalue(res, i, 0), PQgetvalue(res, i, 1),
                    PQgetvalue(res, i, 2), PQgetvalue(res, i, 3));
    return n;
}

static void
client_on_rows(const PGresult *res, const struct db_error *err, void *arg)
{
    struct watch_client *c = arg;
    struct watch *w = c->w;

    c->inflight = 0;
    if (c->dead) {
        client_drop(c);
        return;
    }
    if (err && err->status == 410) {
        client_expire(c, err->message);
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
        client_drop(c);
        return;
    }
    if (!c->started)
        client_start(c);
    if (c->state == CL_NEED_MAX) {
        c->cursor = ll_of(PQgetvalue(res, 0, 0));
        c->state = CL_CATCHUP;
    } else if (rows_send(c, res) == WATCH_BATCH) {
        client_step(c);
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
    client_step(c);
}

static void
client_step(struct watch_client *c)
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
    client_step(c);
}

/* ---- the hub --------------------------------------------------------- */

static void hub_fetch(struct watch *w);

/*
 * Events above the hub's position were pruned before it read them (a
 * controller cut off from the database for longer than the retention
 * kept events, or a retention of a few events): the observers re-read
 * everything, as after a reconnect, and live clients that had not seen
 * them are told their stream expired. The newest event is never pruned,
 * so a read that returns no rows proves nothing was missed.
 */
static void
hub_check_low_water(struct watch *w, long long low_water)
{
    struct watch_client *c, *next;
    char *msg;

    if (low_water <= w->last_id)
        return;
    log_warnx("events %lld to %lld were pruned before this controller read "
              "them; re-reading the state",
              w->last_id + 1, low_water);
    for (int o = 0; o < w->nobs; o++)
        if (w->obs[o].on_reconnect)
            w->obs[o].on_reconnect(w->obs[o].arg);
    msg = xasprintf("events after %lld are no longer kept: events up to %lld "
                    "were pruned (cluster setting events_retention); list "
                    "again without since and watch from there",
                    w->last_id, low_water);
    TAILQ_FOREACH_SAFE(c, &w->clients, link, next) {
        if (c->state == CL_LIVE && c->cursor < low_water)
            client_expire(c, msg);
    }
    free(msg);
}

static void
hub_on_rows(const PGresult *res, const struct db_error *err, void *arg)
{
    struct watch *w = arg;
    struct watch_client *c, *next;
    int n;

    w->fetching = 0;
    if (err) {
        struct timeval tv = {1, 0};
        log_warnx("cannot read new events, retrying: %s", err->message);
        evtimer_add(w->retry, &tv);
        return;
    }
    if (w->last_id < 0) {
        w->last_id = ll_of(PQgetvalue(res, 0, 0));
        n = 0;
    } else {
        n = PQntuples(res);
        if (n > 0)
            hub_check_low_water(
                w, ll_of(PQgetvalue(res, 0, WATCH_COL_LOW_WATER)));
        for (int i = 0; i < n; i++) {
            const char *id = PQgetvalue(res, i, 0);
            long long eid = ll_of(id);
            TAILQ_FOREACH_SAFE(c, &w->clients, link, next) {
                if (c->state != CL_LIVE || c->cursor >= eid)
                    continue;
                if (PQgetisnull(res, i, 3)) {
                    /* Read without JSON (no client was connected when the
                     * read began): this client catches up on its own. */
                    c->state = CL_CATCHUP;
                    continue;
                }
                client_send(c, id, PQgetvalue(res, i, 1),
                            PQgetvalue(res, i, 2), PQgetvalue(res, i, 3));
                if (watch_lagging(c->r)) {
                    log_warnx("watch client fell %d bytes behind; closing "
                              "its stream so it resumes",
                              WATCH_MAX_BUFFERED);
                    client_drop(c);
                }
            }
            w->last_id = eid;
            for (int o = 0; o < w->nobs; o++)
                if (w->obs[o].on_event_row)
                    w->obs[o].on_event_row(
                        w->obs[o].arg, eid, PQgetvalue(res, i, 1),
                        PQgetvalue(res, i, 2),
                        PQgetisnull(res, i, 4) ? NULL : PQgetvalue(res, i, 4),
                        res, i);
                else if (w->obs[o].on_event)
                    w->obs[o].on_event(w->obs[o].arg, eid,
                                       PQgetvalue(res, i, 1),
                                       PQgetvalue(res, i, 2),
                                       PQgetisnull(res, i, 4)
                                           ? NULL
                                           : PQgetvalue(res, i, 4));
        }
        for (int o = 0; o < w->nobs; o++)
            if (n > 0 && w->obs[o].on_batch)
                w->obs[o].on_batch(w->obs[o].arg);
    }
    /* Clients that caught up while the hub did not know the end. */
    TAILQ_FOREACH_SAFE(c, &w->clients, link, next) {
        if (c->state == CL_CATCHUP && !c->inflight)
            client_step(c);
    }
    if (n == WATCH_BATCH || w->again) {
        w->again = 0;
        hub_fetch(w);
    }
}

static void
hub_fetch(struct watch *w)
{
    char since[32];
    const char *vals[4];

    if (w->fetching) {
        w->again = 1;
        return;
    }
    w->fetching = 1;
    if (w->last_id < 0) {
        db_query(w->db, store_stmt(ST_EVENT_MAX), NULL, hub_on_rows, w);
        return;
    }
    snprintf(since, sizeof(since), "%lld", w->last_id);
    vals[0] = since;
    vals[1] = WATCH_BATCH_S;
    /* Only in-process observers: they need no JSON. */
    vals[2] = w->nclients == 0 ? "false" : "true";
    db_query(w->db, store_stmt(ST_EVENT_HUB), vals, hub_on_rows, w);
}

static void
hub_on_notify(const char *channel, const char *payload, void *arg)
{
    (void)channel;
    (void)payload;
    hub_fetch(arg);
}

static void
hub_on_connect(void *arg)
{
    struct watch *w = arg;

    /* Whatever happened while the session was down is in the table. */
    for (int o = 0; o < w->nobs; o++)
        if (w->obs[o].on_reconnect)
            w->obs[o].on_reconnect(w->obs[o].arg);
    hub_fetch(w);
}

void
watch_observe(struct watch *w, const struct watch_observer *obs)
{
    if (w->nobs == WATCH_MAX_OBSERVERS)
        fatalx("too many watch observers");
    w->obs[w->nobs++] = *obs;
}

static void
hub_on_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    hub_fetch(arg);
}

static void
hub_on_keepalive(evutil_socket_t fd, short what, void *arg)
{
    struct watch *w = arg;
    struct watch_client *c;
    struct watch_stream *st;

    (void)fd;
    (void)what;
    TAILQ_FOREACH(c, &w->clients, link)
        if (c->started)
            http_stream_chunk(c->r, ": keepalive\n\n", 13);
    TAILQ_FOREACH(st, &w->streams, link)
        http_stream_chunk(st->r, ": keepalive\n\n", 13);
}

void
watch_stream_add(struct watch *w, struct watch_stream *s)
{
    TAILQ_INSERT_TAIL(&w->streams, s, link);
}

void
watch_stream_del(struct watch *w, struct watch_stream *s)
{
    TAILQ_REMOVE(&w->streams, s, link);
}

struct watch *
watch_new(struct event_base *base, struct db_pool *db, const char *conninfo)
{
    struct watch *w = xcalloc(1, sizeof(*w));
    struct timeval tv = {WATCH_KEEPALIVE_S, 0};

    w->base = base;
    w->db = db;
    w->last_id = -1;
    TAILQ_INIT(&w->clients);
    TAILQ_INIT(&w->streams);
    w->keepalive = event_new(base, -1, EV_PERSIST, hub_on_keepalive, w);
    if (w->keepalive == NULL || event_add(w->keepalive, &tv) < 0)
        fatalx("cannot start the watch keepalive timer");
    w->retry = evtimer_new(base, hub_on_retry, w);
    if (w->retry == NULL)
        fatalx("cannot allocate the watch retry timer");
    w->listener = db_listener_new(base, conninfo, "cloud_events",
                                  hub_on_notify, hub_on_connect, w);
    return w;
}

void
watch_free(struct watch *w)
{
    struct watch_client *c;

    if (w == NULL)
        return;
    while ((c = TAILQ_FIRST(&w->clients)) != NULL) {
        c->inflight = 0;
        client_drop(c);
    }
    db_listener_free(w->listener);
    event_free(w->keepalive);
    event_free(w->retry);
    free(w);
}

int
watch_listening(const struct watch *w)
{
    return db_listener_up(w->listener);
}

int
watch_clients(const struct watch *w)
{
    return w->nclients;
}
