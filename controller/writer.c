/*
 * writer: batches API writes into cloud_batch() calls (see writer.h). Owns
 * the queue of waiting writes and the one batch in flight. A batch that
 * fails as a whole (connection lost) fails every write in it with the
 * database's error: none of them is acknowledged.
 */
#define LOG_MODULE "writer"
#include "writer.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <jansson.h>

#include "log.h"
#include "mem.h"
#include "store.h"

/*
 * The operations of cloud_batch_one (migrations/functions/
 * cloud_batch_one.sql): each one's struct writer_op fields, in the order of
 * its positional arguments there. A list ends at the first 0, the offset of
 * op, which is never an argument.
 */
#define WRITER_MAX_ARGS 5
#define OPF(field) offsetof(struct writer_op, field)
static const struct writer_opdef {
    const char *op;
    size_t args[WRITER_MAX_ARGS + 1];
} writer_ops[] = {
    {"service_create", {OPF(body), OPF(idem_key), OPF(actor)}},
    {"service_patch", {OPF(ref), OPF(body), OPF(if_match), OPF(actor)}},
    {"service_delete", {OPF(ref), OPF(if_match), OPF(actor)}},
    {"instance_create", {OPF(body), OPF(idem_key), OPF(actor)}},
    {"instance_kill",
     {OPF(ref), OPF(signal), OPF(if_match), OPF(actor), OPF(grace_s)}},
    {"instance_delete", {OPF(ref), OPF(if_match), OPF(actor)}},
    {"instance_start", {OPF(ref), OPF(if_match), OPF(actor)}},
    {"instance_restart", {OPF(ref), OPF(if_match), OPF(actor)}},
    {"host_action", {OPF(ref), OPF(action), OPF(if_match), OPF(actor)}},
    {"blob_add", {OPF(ref), OPF(size), OPF(actor)}},
    {"image_create", {OPF(body), OPF(actor)}},
    {"image_delete", {OPF(ref), OPF(actor)}},
    {"token_create",
     {OPF(ref), OPF(role), OPF(sha256), OPF(ttl_s), OPF(actor)}},
    {"token_revoke", {OPF(ref), OPF(actor)}},
    {"audit", {OPF(actor), OPF(request), OPF(status), OPF(message)}},
};
_Static_assert(offsetof(struct writer_op, op) == 0,
               "writer_ops' lists end at op's offset");

struct wreq {
    TAILQ_ENTRY(wreq) link;
    const struct writer_opdef *def;
    json_t *args; /* the JSON array cloud_batch_one reads */
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

/* The argument of r that is field of struct writer_op; NULL when r's
 * operation takes no such field. */
static const char *
wreq_arg(const struct wreq *r, size_t field)
{
    for (size_t i = 0; i < WRITER_MAX_ARGS && r->def->args[i] != 0; i++)
        if (r->def->args[i] == field)
            return json_string_value(json_array_get(r->args, i));
    return NULL;
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
        const struct wreq *r = b->items[i];
        const char *who = wreq_arg(r, OPF(actor));
        if (strcmp(r->def->op, "instance_create") != 0 ||
            wreq_arg(r, OPF(idem_key)) != NULL || who == NULL ||
            (actor && strcmp(actor, who) != 0))
            return;
        actor = who;
    }
    arr = json_array();
    for (int i = 0; i < b->n; i++) {
        const char *text = wreq_arg(b->items[i], OPF(body));
        json_t *body = text ? json_loads(text, 0, NULL) : NULL;
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
                cache_apply_write(w->cache, r->def->op, body, eid);
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
        json_array_append_new(
            arr, json_pack("{s:s,s:O}", "op", r->def->op, "args", r->args));
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

/* v with every byte outside ASCII as '?': valid UTF-8 by construction. */
static json_t *
json_string_ascii(const char *v)
{
    char *c = xstrdup(v);
    json_t *j;

    for (char *p = c; *p != '\0'; p++)
        if ((unsigned char)*p >= 0x80)
            *p = '?';
    j = json_string(c);
    free(c);
    if (j == NULL)
        fatalx("cannot make a JSON string");
    return j;
}

void
writer_submit(struct writer *w, const struct writer_op *op, writer_cb cb,
              void *arg)
{
    const struct writer_opdef *def = NULL;
    struct wreq *r;

    for (size_t i = 0; i < sizeof(writer_ops) / sizeof(writer_ops[0]); i++)
        if (strcmp(writer_ops[i].op, op->op) == 0)
            def = &writer_ops[i];
    if (def == NULL)
        fatalx("writer: unknown operation %s", op->op);
    r = xcalloc(1, sizeof(*r));
    r->def = def;
    r->cb = cb;
    r->arg = arg;
    r->args = json_array();
    for (size_t i = 0; i < WRITER_MAX_ARGS && def->args[i] != 0; i++) {
        const char *v = *(const char *const *)((const char *)op + def->args[i]);
        json_t *j = v ? json_string(v) : json_null();

        /* Text from headers or the URI that is not UTF-8: JSON cannot
         * carry it, and an argument left out would shift the ones after
         * it (the actor into the key's place). The audit keeps its record
         * with the bytes replaced; any other write is refused. */
        if (j == NULL && strcmp(def->op, "audit") == 0)
            j = json_string_ascii(v);
        if (j == NULL) {
            struct db_error e;

            memset(&e, 0, sizeof(e));
            e.status = 400;
            e.code = "bad_request";
            snprintf(e.message, sizeof(e.message),
                     "a header or the path of the request is not valid "
                     "UTF-8");
            json_decref(r->args);
            free(r);
            cb(0, NULL, &e, arg);
            return;
        }
        json_array_append_new(r->args, j);
    }
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
