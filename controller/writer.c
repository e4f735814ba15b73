/*
 * writer: batches API writes into cloud_batch() calls (see writer.h). Owns
 * the queue of waiting writes and the one batch in flight. A batch that
 * fails as a whole (connection lost) fails every write in it with the
 * database's error: none of them is acknowledged.
 */
#define LOG_MODULE "writer"
#include "writer.h"

#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <jansson.h>

#include "log.h"
#include "mem.h"
#include "store.h"

struct wreq {
    TAILQ_ENTRY(wreq) link;
    const char *op;
    json_t *args;
    writer_cb cb;
    void *arg;
};
TAILQ_HEAD(wreq_list, wreq);

struct batch {
    struct writer *w;
    struct wreq **items;
    int n;
    char *text; /* kept to send again in safe mode */
    char *bulk; /* instance creates only: the set-based fast path */
    char *actor;
    int safe;
};

struct writer {
    struct db_pool *db;
    struct cache *cache;
    struct wreq_list queue;
    int queued;
    int inflight;
    int dead; /* freed by the batch in flight when it returns */
    unsigned long long batches, writes, safe_retries, bulk;
};

static void writer_kick(struct writer *w);
static void on_batch(const PGresult *res, const struct db_error *err,
                     void *arg);

static void
batch_send(struct writer *w, struct batch *b)
{
    const char *vals[2] = {b->text, b->safe ? "true" : "false"};

    if (b->bulk) {
        vals[0] = b->bulk;
        vals[1] = b->actor;
        db_query(w->db, store_stmt(ST_CREATE_MANY), vals, on_batch, b);
        return;
    }
    db_query(w->db, store_stmt(ST_BATCH), vals, on_batch, b);
}

/*
 * A batch of one-off instance creates by one actor without idempotency
 * keys goes through cloud_instance_create_many(): one INSERT for all.
 */
static void
batch_bulk(struct batch *b)
{
    json_t *arr;
    const char *actor = NULL;

    if (b->n < 2)
        return;
    for (int i = 0; i < b->n; i++) {
        json_t *a = b->items[i]->args;
        const char *who = json_string_value(json_array_get(a, 2));
        if (strcmp(b->items[i]->op, "instance_create") != 0 ||
            !json_is_null(json_array_get(a, 1)) || who == NULL ||
            (actor && strcmp(actor, who) != 0))
            return;
        actor = who;
    }
    arr = json_array();
    for (int i = 0; i < b->n; i++) {
        json_t *body = json_loads(
            json_string_value(json_array_get(b->items[i]->args, 0)), 0, NULL);
        if (body == NULL) {
            json_decref(arr);
            return;
        }
        json_array_append_new(arr, body);
    }
    b->bulk = json_dumps(arr, JSON_COMPACT);
    b->actor = xstrdup(actor);
    json_decref(arr);
}

static void
wreq_free(struct wreq *r)
{
    json_decref(r->args);
    free(r);
}

/* Error fields of a failed item, mapped like a failed statement. */
static void
item_error(const PGresult *res, int row, struct db_error *err)
{
    const char *state = PQgetvalue(res, row, BATCH_ERR_STATE);
    const char *msg = PQgetvalue(res, row, BATCH_ERR_MESSAGE);
    const char *field = PQgetisnull(res, row, BATCH_ERR_FIELD)
                            ? ""
                            : PQgetvalue(res, row, BATCH_ERR_FIELD);

    db_error_from_fields(state, msg, field, err);
}

static void
on_batch(const PGresult *res, const struct db_error *err, void *arg)
{
    struct batch *b = arg;
    struct writer *w = b->w;
    int n = res ? PQntuples(res) : 0;

    /* The fast path failed on an item: send again with each item in its
     * own subtransaction, so only the failing ones fail. A database that
     * is gone (503) fails them all. */
    if (err && !b->safe && err->status != 503 && !w->dead) {
        /* the bulk path, too, falls back to item by item */
        free(b->bulk);
        b->bulk = NULL;
        b->safe = 1;
        w->safe_retries++;
        batch_send(w, b);
        return;
    }
    w->inflight = 0;
    for (int i = 0; i < b->n; i++) {
        struct wreq *r = b->items[i];
        if (err) {
            r->cb(0, NULL, err, r->arg);
        } else if (i >= n) {
            struct db_error e;
            db_error_from_fields("XX000", "the batch returned too few rows",
                                 "", &e);
            r->cb(0, NULL, &e, r->arg);
        } else if (PQgetisnull(res, i, BATCH_STATUS)) {
            struct db_error e;
            item_error(res, i, &e);
            r->cb(0, NULL, &e, r->arg);
        } else {
            const char *body = PQgetvalue(res, i, BATCH_BODY);
            int status =
                (int)strtol(PQgetvalue(res, i, BATCH_STATUS), NULL, 10);
            /* Before the reply: a client reads its own write. */
            long long eid =
                PQgetisnull(res, i, BATCH_EVENT_ID)
                    ? 0
                    : strtoll(PQgetvalue(res, i, BATCH_EVENT_ID), NULL, 10);
            if (w->cache)
                cache_apply_write(w->cache, r->op, body, eid);
            r->cb(status, body, NULL, r->arg);
        }
        wreq_free(r);
    }
    free(b->items);
    free(b->text);
    free(b->bulk);
    free(b->actor);
    free(b);
    if (w->dead) {
        free(w);
        return;
    }
    writer_kick(w);
}

static void
writer_kick(struct writer *w)
{
    struct batch *b;
    json_t *arr;

    if (w->inflight || TAILQ_EMPTY(&w->queue))
        return;
    b = xcalloc(1, sizeof(*b));
    b->w = w;
    b->items = xcalloc(WRITER_BATCH_MAX, sizeof(*b->items));
    arr = json_array();
    while (b->n < WRITER_BATCH_MAX && !TAILQ_EMPTY(&w->queue)) {
        struct wreq *r = TAILQ_FIRST(&w->queue);
        TAILQ_REMOVE(&w->queue, r, link);
        w->queued--;
        b->items[b->n++] = r;
        json_array_append_new(arr, json_pack("{s:s,s:O}", "op", r->op,
                                             "args", r->args));
    }
    b->text = json_dumps(arr, JSON_COMPACT);
    json_decref(arr);
    if (b->text == NULL)
        fatalx("cannot serialise a write batch");
    batch_bulk(b);
    if (b->bulk)
        w->bulk++;
    w->inflight = 1;
    w->batches++;
    w->writes += (unsigned long long)b->n;
    batch_send(w, b);
}

void
writer_submit(struct writer *w, const char *op, int nargs,
              const char *const *args, writer_cb cb, void *arg)
{
    struct wreq *r;

    /* More would be dropped: a caller's bug (token_create's actor was). */
    if (nargs > WRITER_MAX_ARGS)
        fatalx("writer: %s with %d arguments, at most %d", op, nargs,
               WRITER_MAX_ARGS);
    r = xcalloc(1, sizeof(*r));
    r->op = op;
    r->cb = cb;
    r->arg = arg;
    r->args = json_array();
    for (int i = 0; i < nargs; i++)
        json_array_append_new(r->args,
                              args[i] ? json_string(args[i]) : json_null());
    TAILQ_INSERT_TAIL(&w->queue, r, link);
    w->queued++;
    writer_kick(w);
}

struct writer *
writer_new(struct db_pool *db, struct cache *cache)
{
    struct writer *w = xcalloc(1, sizeof(*w));

    w->db = db;
    w->cache = cache;
    TAILQ_INIT(&w->queue);
    return w;
}

void
writer_free(struct writer *w)
{
    struct wreq *r;

    if (w == NULL)
        return;
    while ((r = TAILQ_FIRST(&w->queue)) != NULL) {
        struct db_error e;
        TAILQ_REMOVE(&w->queue, r, link);
        db_error_from_fields("57P01", "controller shutting down", "", &e);
        r->cb(0, NULL, &e, r->arg);
        wreq_free(r);
    }
    if (w->inflight) {
        w->dead = 1;
        return;
    }
    free(w);
}

void
writer_stats(const struct writer *w, unsigned long long *batches,
             unsigned long long *writes, unsigned long long *bulk,
             unsigned long long *retries)
{
    *batches = w->batches;
    *writes = w->writes;
    *bulk = w->bulk;
    *retries = w->safe_retries;
}
