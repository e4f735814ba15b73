/*
 * cache: in-memory instances and services (see cache.h). Owns the objects,
 * their indexes (ordered by key for pages, hashed by id and name), the
 * tombstones of deleted objects, and the re-read queries.
 */
#define LOG_MODULE "cache"
#include "cache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <jansson.h>

#include "evbuf.h"
#include "log.h"
#include "mem.h"
#include "omap.h"
#include "store.h"
#include "strmap.h"
#include "watch.h"

/* A deleted id stays refused this long: longer than any re-read in flight. */
#define TOMBSTONE_SECS 300
/* Objects re-read per query. */
#define FETCH_MAX 1000

struct kind {
    int is_service;
    struct omap order;   /* instances by id, services by name */
    struct strmap by_id; /* id -> obj */
    struct strmap names; /* instances: name -> obj */
    struct strmap pending;
    struct strmap tomb; /* id -> (time_t expiry cast to pointer) */
    struct strmap running; /* instances: service name -> struct svc_running */
    int fetching;
    int loading;
    unsigned long long reload_seq;
};

struct cache {
    struct db_pool *db;
    struct event *retry; /* reload after a failed full load */
    struct kind inst, svc;
    unsigned long long seq;
    int ready;
    int reload_again;
};

/* How many cached instances of a service are running; owns its key. */
struct svc_running {
    long long n;
    char name[];
};

static int kind_fetch(struct cache *c, struct kind *k);

/* ---- objects --------------------------------------------------------- */

static char *
dup_or_null(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

static void
obj_free(struct cache_obj *o)
{
    if (o == NULL)
        return;
    free(o->id);
    free(o->name);
    free(o->service);
    free(o->host);
    free(o->state);
    free(o->desired);
    free(o->json);
    free(o->labels);
    free(o);
}

static const char *
obj_key(const struct kind *k, const struct cache_obj *o)
{
    return k->is_service ? o->name : o->id;
}

static int
is_live(const struct cache_obj *o)
{
    return o->desired == NULL || strcmp(o->desired, "deleted") != 0;
}

/* Counts o in (d = 1) or out (d = -1) of its service's running figure. */
static void
running_count(struct kind *k, const struct cache_obj *o, int d)
{
    struct svc_running *r;
    size_t len;

    if (k->is_service || o->service == NULL || o->state == NULL ||
        strcmp(o->state, "running") != 0)
        return;
    r = strmap_get(&k->running, o->service);
    if (r == NULL) {
        if (d < 0)
            return;
        len = strlen(o->service) + 1;
        r = xcalloc(1, sizeof(*r) + len);
        memcpy(r->name, o->service, len);
        strmap_put(&k->running, r->name, r);
    }
    r->n += d;
    if (r->n <= 0) {
        strmap_del(&k->running, r->name);
        free(r);
    }
}

static void
kind_unlink(struct kind *k, struct cache_obj *o)
{
    running_count(k, o, -1);
    omap_del(&k->order, obj_key(k, o));
    strmap_del(&k->by_id, o->id);
    if (!k->is_service && strmap_get(&k->names, o->name) == o)
        strmap_del(&k->names, o->name);
}

static void
kind_link(struct kind *k, struct cache_obj *o)
{
    struct cache_obj *other;

    omap_put(&k->order, obj_key(k, o), o);
    strmap_put(&k->by_id, o->id, o);
    running_count(k, o, 1);
    if (k->is_service)
        return;
    /* The name names the live instance; a deleted one only while no live
     * one carries it. */
    other = strmap_get(&k->names, o->name);
    if (other == NULL || other == o || is_live(o) || !is_live(other))
        strmap_put(&k->names, o->name, o);
}

static void
kind_remove(struct kind *k, const char *id)
{
    struct cache_obj *o = strmap_get(&k->by_id, id);

    if (o == NULL)
        return;
    kind_unlink(k, o);
    obj_free(o);
}

static int
tombstoned(struct kind *k, const char *id)
{
    void *v = strmap_get(&k->tomb, id);
    return v != NULL && (time_t)(intptr_t)v > time(NULL);
}

static void
tombstone(struct kind *k, const char *id)
{
    time_t expiry = time(NULL) + TOMBSTONE_SECS;
    void **slot = strmap_ref(&k->tomb, id);

    if (slot != NULL) {
        *slot = (void *)(intptr_t)expiry; /* the map keeps its own key */
        return;
    }
    strmap_put(&k->tomb, xstrdup(id), (void *)(intptr_t)expiry);
}

/* Drops the expired tombstones: one scan picks them, then each is deleted
 * (a delete shifts entries, so not while scanning). */
static void
tombs_purge(struct kind *k)
{
    time_t now = time(NULL);
    const char **gone = xcalloc(k->tomb.len + 1, sizeof(*gone));
    size_t n = 0;

    for (size_t i = 0; i < k->tomb.cap; i++)
        if (k->tomb.keys[i] && (time_t)(intptr_t)k->tomb.vals[i] <= now)
            gone[n++] = k->tomb.keys[i];
    for (size_t i = 0; i < n; i++) {
        strmap_del(&k->tomb, gone[i]);
        free((char *)gone[i]);
    }
    free(gone);
}

/* Applies o (owned) unless older than what is held or deleted. */
static void
kind_apply(struct cache *c, struct kind *k, struct cache_obj *o)
{
    struct cache_obj *old;

    if (tombstoned(k, o->id)) {
        obj_free(o);
        return;
    }
    old = strmap_get(&k->by_id, o->id);
    if (old && old->version > o->version) {
        obj_free(o);
        return;
    }
    o->seq = ++c->seq;
    if (old) {
        kind_unlink(k, old);
        obj_free(old);
    }
    kind_link(k, o);
}

static void
kind_init(struct kind *k, int is_service)
{
    memset(k, 0, sizeof(*k));
    k->is_service = is_service;
    omap_init(&k->order);
    strmap_init(&k->by_id);
    strmap_init(&k->names);
    strmap_init(&k->pending);
    strmap_init(&k->tomb);
    strmap_init(&k->running);
}

static void
free_keys(struct strmap *m)
{
    for (size_t i = 0; i < m->cap; i++)
        free((char *)m->keys[i]);
}

static void
kind_fini(struct kind *k)
{
    for (struct omap_node *n = omap_after(&k->order, NULL); n;
         n = omap_next(n))
        obj_free(n->val);
    omap_fini(&k->order);
    strmap_fini(&k->by_id);
    strmap_fini(&k->names);
    free_keys(&k->pending);
    strmap_fini(&k->pending);
    free_keys(&k->tomb);
    strmap_fini(&k->tomb);
    for (size_t i = 0; i < k->running.cap; i++)
        free(k->running.vals[i]);
    strmap_fini(&k->running);
}

/* ---- rows from the database ------------------------------------------ */

static const char *
val(const PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
}

/* The columns both kinds' rows have: id, name, state, version, json,
 * labels. */
static const struct obj_cols {
    int id, name, state, version, json, labels;
} service_cols = {CACHE_SERVICES_ID,    CACHE_SERVICES_NAME,
                  CACHE_SERVICES_STATE, CACHE_SERVICES_VERSION,
                  CACHE_SERVICES_JSON,  CACHE_SERVICES_LABELS},
  instance_cols = {CACHE_INSTANCES_ID,    CACHE_INSTANCES_NAME,
                   CACHE_INSTANCES_STATE, CACHE_INSTANCES_VERSION,
                   CACHE_INSTANCES_JSON,  CACHE_INSTANCES_LABELS};

/* A row of ST_CACHE_SERVICES or ST_CACHE_INSTANCES. */
static struct cache_obj *
obj_from_row(const struct kind *k, const PGresult *res, int i)
{
    const struct obj_cols *c = k->is_service ? &service_cols : &instance_cols;
    struct cache_obj *o = xcalloc(1, sizeof(*o));

    o->id = xstrdup(val(res, i, c->id));
    o->name = xstrdup(val(res, i, c->name));
    o->state = xstrdup(val(res, i, c->state));
    o->version = strtoll(val(res, i, c->version), NULL, 10);
    o->json = xstrdup(val(res, i, c->json));
    o->labels = labels_canon_text(val(res, i, c->labels));
    if (!k->is_service) {
        o->service = dup_or_null(val(res, i, CACHE_INSTANCES_SERVICE));
        o->host = dup_or_null(val(res, i, CACHE_INSTANCES_HOST));
        o->desired = xstrdup(val(res, i, CACHE_INSTANCES_DESIRED));
    }
    return o;
}

struct fetch {
    struct cache *c;
    struct kind *k;
    char **ids; /* NULL for a full load */
    int nids;
};

static void
fetch_free(struct fetch *f)
{
    for (int i = 0; i < f->nids; i++)
        free(f->ids[i]);
    free(f->ids);
    free(f);
}

static void
update_ready(struct cache *c)
{
    int was = c->ready;

    c->ready = !c->inst.loading && !c->svc.loading && c->inst.reload_seq &&
               c->svc.reload_seq;
    if (c->ready && !was)
        log_info("read cache loaded: %zu instances, %zu services",
                 c->inst.order.len, c->svc.order.len);
}

static void
on_fetch(const PGresult *res, const struct db_error *err, void *arg)
{
    struct fetch *f = arg;
    struct cache *c = f->c;
    struct kind *k = f->k;
    int n;

    k->fetching = 0;
    if (err) {
        /* Names stay pending for the next flush; a full load failing
         * leaves the cache not ready until the next reconnect. */
        log_warnx("cannot re-read %s: %s",
                  k->is_service ? "services" : "instances", err->message);
        if (f->ids)
            for (int i = 0; i < f->nids; i++)
                if (strmap_get(&k->pending, f->ids[i]) == NULL) {
                    strmap_put(&k->pending, f->ids[i], (void *)1);
                    f->ids[i] = NULL;
                }
        if (!f->ids) {
            struct timeval tv = {1, 0};
            k->loading = 0;
            evtimer_add(c->retry, &tv);
        }
        fetch_free(f);
        return;
    }
    n = PQntuples(res);
    if (f->ids == NULL) {
        /* Full load: merge under the version guard, then drop what is gone
         * unless something newer than the load touched it since. */
        unsigned long long start = k->reload_seq;
        struct strmap seen;
        strmap_init(&seen);
        for (int i = 0; i < n; i++) {
            struct cache_obj *o = obj_from_row(k, res, i);
            char *id = xstrdup(o->id);
            strmap_put(&seen, id, id);
            kind_apply(c, k, o);
        }
        for (struct omap_node *x = omap_after(&k->order, NULL), *nx; x;
             x = nx) {
            struct cache_obj *o = x->val;
            nx = omap_next(x);
            if (strmap_get(&seen, o->id) == NULL && o->seq <= start)
                kind_remove(k, o->id);
        }
        free_keys(&seen);
        strmap_fini(&seen);
        k->loading = 0;
        update_ready(c);
    } else {
        struct strmap found;
        strmap_init(&found);
        for (int i = 0; i < n; i++) {
            struct cache_obj *o = obj_from_row(k, res, i);
            for (int j = 0; j < f->nids; j++)
                if (f->ids[j] && strcmp(f->ids[j], o->id) == 0)
                    strmap_put(&found, f->ids[j], (void *)1);
            kind_apply(c, k, o);
        }
        /* Named by an event but gone: deleted. */
        for (int j = 0; j < f->nids; j++)
            if (strmap_get(&found, f->ids[j]) == NULL) {
                kind_remove(k, f->ids[j]);
                tombstone(k, f->ids[j]);
            }
        strmap_fini(&found);
    }
    fetch_free(f);
    if (c->reload_again) {
        c->reload_again = 0;
        cache_reload(c);
        return;
    }
    if (k->pending.len > 0)
        kind_fetch(c, k);
}

/* Ids are [a-z0-9-] (checked by the schema), so an array literal of them
 * needs no quoting; anything else is skipped defensively. */
static int
id_safe(const char *s)
{
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
              *s == '-'))
            return 0;
    return 1;
}

static int
kind_fetch(struct cache *c, struct kind *k)
{
    struct fetch *f;
    struct evbuffer *b;
    const char *vals[1];
    char *arr;

    if (k->fetching || k->loading || k->pending.len == 0)
        return 0;
    f = xcalloc(1, sizeof(*f));
    f->c = c;
    f->k = k;
    f->ids = xcalloc(FETCH_MAX, sizeof(char *));
    b = evbuf_new();
    evbuffer_add(b, "{", 1);
    for (size_t i = 0; i < k->pending.cap && f->nids < FETCH_MAX; i++) {
        char *id = (char *)k->pending.keys[i];
        if (id == NULL)
            continue;
        if (id_safe(id)) {
            evbuffer_add_printf(b, "%s%s", f->nids ? "," : "", id);
            f->ids[f->nids++] = id;
        } else {
            free(id);
        }
        k->pending.keys[i] = NULL; /* taken; the map is rebuilt below */
    }
    {
        /* Re-insert whatever was not taken (bounded batch). */
        struct strmap rest;
        strmap_init(&rest);
        for (size_t i = 0; i < k->pending.cap; i++)
            if (k->pending.keys[i])
                strmap_put(&rest, k->pending.keys[i], (void *)1);
        strmap_fini(&k->pending);
        k->pending = rest;
    }
    evbuffer_add(b, "}", 1);
    arr = evbuf_drain_string(b, NULL);
    evbuffer_free(b);
    if (f->nids == 0) {
        free(arr);
        fetch_free(f);
        return 0;
    }
    vals[0] = arr;
    k->fetching = 1;
    db_query(c->db,
             store_stmt(k->is_service ? ST_CACHE_SERVICES
                                      : ST_CACHE_INSTANCES),
             vals, on_fetch, f);
    free(arr);
    return 1;
}

/* ---- public ---------------------------------------------------------- */

static void
on_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    cache_reload(arg);
}

struct cache *
cache_new(struct event_base *base, struct db_pool *db)
{
    struct cache *c = xcalloc(1, sizeof(*c));

    c->db = db;
    c->retry = evtimer_new(base, on_retry, c);
    if (c->retry == NULL)
        fatalx("cannot allocate the cache retry timer");
    kind_init(&c->inst, 0);
    kind_init(&c->svc, 1);
    return c;
}

void
cache_free(struct cache *c)
{
    if (c == NULL)
        return;
    kind_fini(&c->inst);
    kind_fini(&c->svc);
    event_free(c->retry);
    free(c);
}

int
cache_ready(const struct cache *c)
{
    return c->ready;
}

size_t
cache_count(const struct cache *c, int services)
{
    return services ? c->svc.order.len : c->inst.order.len;
}

static void
kind_load(struct cache *c, struct kind *k)
{
    struct fetch *f = xcalloc(1, sizeof(*f));
    const char *vals[1] = {NULL};

    f->c = c;
    f->k = k;
    k->loading = 1;
    k->reload_seq = ++c->seq;
    /* What events named so far is covered by the load. */
    free_keys(&k->pending);
    strmap_fini(&k->pending);
    strmap_init(&k->pending);
    db_query(c->db,
             store_stmt(k->is_service ? ST_CACHE_SERVICES
                                      : ST_CACHE_INSTANCES),
             vals, on_fetch, f);
}

void
cache_reload(struct cache *c)
{
    if (c->inst.loading || c->svc.loading || c->inst.fetching ||
        c->svc.fetching) {
        c->reload_again = 1;
        c->ready = 0;
        return;
    }
    c->ready = 0;
    tombs_purge(&c->inst);
    tombs_purge(&c->svc);
    kind_load(c, &c->inst);
    kind_load(c, &c->svc);
}

void
cache_note(struct cache *c, const char *object, const char *object_id,
           long long event_id)
{
    struct kind *k;
    struct cache_obj *o;

    if (object_id == NULL)
        return;
    if (strcmp(object, "instance") == 0)
        k = &c->inst;
    else if (strcmp(object, "service") == 0)
        k = &c->svc;
    else
        return;
    /* This controller wrote it and already holds what the event says. */
    o = strmap_get(&k->by_id, object_id);
    if (o != NULL && event_id > 0 && o->event_id >= event_id)
        return;
    if (strmap_get(&k->pending, object_id) == NULL)
        strmap_put(&k->pending, xstrdup(object_id), (void *)1);
}

void
cache_flush(struct cache *c)
{
    kind_fetch(c, &c->inst);
    kind_fetch(c, &c->svc);
}

static char *
jstr(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_string(v) ? xstrdup(json_string_value(v)) : NULL;
}

void
cache_apply_write(struct cache *c, const char *op, const char *body,
                  long long event_id)
{
    int svc = strncmp(op, "service_", 8) == 0;
    struct kind *k = svc ? &c->svc : &c->inst;
    json_error_t e;
    json_t *j;
    struct cache_obj *o;

    if (!svc && strncmp(op, "instance_", 9) != 0)
        return;
    j = json_loads(body, 0, &e);
    if (j == NULL) {
        log_warnx("cannot read back a written %s: %s", op, e.text);
        return;
    }
    if (json_is_true(json_object_get(j, "deleted"))) {
        json_t *id = json_object_get(j, "id");
        if (json_is_string(id)) {
            kind_remove(k, json_string_value(id));
            tombstone(k, json_string_value(id));
        }
        json_decref(j);
        return;
    }
    o = xcalloc(1, sizeof(*o));
    o->id = jstr(j, "id");
    o->name = jstr(j, "name");
    o->state = jstr(j, "state");
    o->version = json_integer_value(json_object_get(j, "version"));
    o->labels = labels_canon(json_object_get(j, "labels"));
    if (!svc) {
        o->service = jstr(j, "service");
        o->host = jstr(j, "host");
        o->desired = jstr(j, "desired_state");
    }
    o->json = xstrdup(body);
    o->event_id = event_id;
    json_decref(j);
    if (o->id == NULL || o->name == NULL || o->state == NULL) {
        log_warnx("a written %s lacks id, name or state", op);
        obj_free(o);
        return;
    }
    kind_apply(c, k, o);
}

void
cache_on_event(void *arg, long long id, const char *type, const char *object,
               const char *object_id)
{
    (void)type;
    cache_note(arg, object, object_id, id);
}

/*
 * A guest-only change (store.h EVENT_HUB_GUEST_*: acked config version,
 * ready, addresses) of an instance whose copy here is exactly one version
 * behind: nothing else can have moved, so the copy is patched with the
 * hub's columns instead of re-read. A config change acked by 100 guests
 * re-read 100 instances (cloud_instance_json, ~0.1 ms a row of database
 * time on the path of the next change). 0 when patched, -1 to re-read.
 */
static int
guest_patch(struct cache *c, struct cache_obj *o, long long event_id,
            const PGresult *res, int row)
{
    long long version;
    json_t *j, *addrs;
    char *out;

    if (o == NULL || PQnfields(res) <= EVENT_HUB_GUEST_UPDATED_AT ||
        PQgetisnull(res, row, EVENT_HUB_GUEST_VERSION) ||
        PQgetisnull(res, row, EVENT_HUB_GUEST_UPDATED_AT))
        return -1;
    version = strtoll(PQgetvalue(res, row, EVENT_HUB_GUEST_VERSION), NULL, 10);
    if (version != o->version + 1)
        return -1;
    j = json_loads(o->json, 0, NULL);
    addrs =
        json_loads(PQgetvalue(res, row, EVENT_HUB_GUEST_ADDRESSES), 0, NULL);
    if (!json_is_object(j) || !json_is_array(addrs)) {
        json_decref(j);
        json_decref(addrs);
        return -1;
    }
    json_object_set_new(
        j, "config_version",
        json_integer(strtoll(
            PQgetvalue(res, row, EVENT_HUB_GUEST_CONFIG_VERSION), NULL, 10)));
    json_object_set_new(
        j, "ready",
        json_boolean(PQgetvalue(res, row, EVENT_HUB_GUEST_READY)[0] == 't'));
    json_object_set_new(j, "addresses", addrs);
    json_object_set_new(j, "version", json_integer(version));
    json_object_set_new(
        j, "updated_at",
        json_string(PQgetvalue(res, row, EVENT_HUB_GUEST_UPDATED_AT)));
    out = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (out == NULL)
        return -1;
    free(o->json);
    o->json = out;
    o->version = version;
    o->event_id = event_id;
    o->seq = ++c->seq;
    return 0;
}

/* An instance event read with its instance's id (store.h EVENT_HUB_INST):
 * gone, it is removed at once; a guest-only change is patched in place
 * (guest_patch); otherwise re-read as before (the hub does not carry the
 * JSON: cloud_instance_json costs 1-2 ms a row, which would delay the
 * reconciler and the gateway behind every event read). */
void
cache_on_event_row(void *arg, long long id, const char *type,
                   const char *object, const char *object_id,
                   const PGresult *res, int row)
{
    struct cache *c = arg;
    struct kind *k = &c->inst;
    struct cache_obj *o;

    if (object_id == NULL || strcmp(object, "instance") != 0 ||
        PQnfields(res) <= EVENT_HUB_INST) {
        cache_note(c, object, object_id, id);
        return;
    }
    o = strmap_get(&k->by_id, object_id);
    if (o != NULL && o->event_id >= id)
        return; /* this controller wrote it and holds it already */
    if (PQgetisnull(res, row, EVENT_HUB_INST)) {
        /* Gone when the event was read: deleted. */
        kind_remove(k, object_id);
        tombstone(k, object_id);
        return;
    }
    (void)type;
    if (guest_patch(c, o, id, res, row) == 0)
        return;
    cache_note(c, object, object_id, id); /* re-read: no JSON here */
}

void
cache_on_batch(void *arg)
{
    cache_flush(arg);
}

void
cache_on_reconnect(void *arg)
{
    cache_reload(arg);
}

/* ---- reads ----------------------------------------------------------- */

static int
hex_prefix(const char *s)
{
    size_t n = strlen(s);

    if (n < 4 || n > 15)
        return 0;
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
            return 0;
    return 1;
}

const struct cache_obj *
cache_instance_find(struct cache *c, const char *ref, int *status, char *msg,
                    size_t msglen)
{
    struct cache_obj *o = strmap_get(&c->inst.by_id, ref);
    struct omap_node *n;
    size_t plen = strlen(ref);

    if (o)
        return o;
    o = strmap_get(&c->inst.names, ref);
    if (o)
        return o;
    if (hex_prefix(ref)) {
        n = omap_ceil(&c->inst.order, ref);
        if (n && strncmp(n->key, ref, plen) == 0) {
            struct omap_node *m = omap_next(n);
            if (m && strncmp(m->key, ref, plen) == 0) {
                *status = 409;
                snprintf(msg, msglen,
                         "instance prefix %s is ambiguous; give more "
                         "characters",
                         ref);
                return NULL;
            }
            return n->val;
        }
    }
    *status = 404;
    snprintf(msg, msglen, "instance %s not found", ref);
    return NULL;
}

const struct cache_obj *
cache_service_get(struct cache *c, const char *name)
{
    return omap_get(&c->svc.order, name);
}

static int
eq_or_any(const char *want, const char *have)
{
    return want == NULL || (have != NULL && strcmp(want, have) == 0);
}

long long
cache_service_running(const struct cache *c, const char *name)
{
    const struct svc_running *r = strmap_get(&c->inst.running, name);
    return r != NULL ? r->n : 0;
}

void
cache_service_json_text(const char *json, long long running,
                        struct evbuffer *out)
{
    size_t len = strlen(json);

    /* The object without its closing brace, then the status field: the
     * cached text stays as the database wrote it. */
    if (len == 0 || json[len - 1] != '}')
        fatalx("cache: a service's JSON does not end with '}'");
    evbuffer_add(out, json, len - 1);
    evbuffer_add_printf(out, ",\"running\":%lld}", running);
}

void
cache_service_json(const struct cache *c, const struct cache_obj *o,
                   struct evbuffer *out)
{
    cache_service_json_text(o->json, cache_service_running(c, o->name), out);
}

static void
page(const struct cache *c, struct kind *k, const char *after, int limit, struct evbuffer *out,
     const char *service, const char *state, const char *host,
     const char *desired, const struct label_sel *sel)
{
    int n = 0;
    const char *last = NULL;
    struct omap_node *x;

    evbuffer_add(out, "{\"items\":[", 10);
    for (x = omap_after(&k->order, after); x; x = omap_next(x)) {
        struct cache_obj *o = x->val;
        if (!eq_or_any(state, o->state) || !eq_or_any(service, o->service) ||
            !eq_or_any(host, o->host) || !eq_or_any(desired, o->desired) ||
            !labels_sel_match(sel, o->labels))
            continue;
        if (n == limit)
            break;
        if (n)
            evbuffer_add(out, ",", 1);
        if (k->is_service)
            cache_service_json(c, o, out);
        else
            evbuffer_add(out, o->json, strlen(o->json));
        last = x->key;
        n++;
    }
    if (x != NULL && last != NULL) {
        /* Keys are [a-z0-9-]: no JSON escaping needed. */
        evbuffer_add_printf(out, "],\"next\":\"%s\"}", last);
    } else {
        evbuffer_add_printf(out, "],\"next\":null}");
    }
}

void
cache_instance_list(struct cache *c, const char *after, const char *service,
                    const char *state, const char *host, const char *desired,
                    const struct label_sel *sel, int limit,
                    struct evbuffer *out)
{
    page(c, &c->inst, after, limit, out, service, state, host, desired, sel);
}

void
cache_service_list(struct cache *c, const char *after, const char *state,
                   const struct label_sel *sel, int limit,
                   struct evbuffer *out)
{
    page(c, &c->svc, after, limit, out, NULL, state, NULL, NULL, sel);
}
