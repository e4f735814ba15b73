/*
 * cache: the controller's read cache of instances and services, in the
 * manner of Kubernetes' watch cache. Reads of these objects are answered
 * from memory; writes always commit to PostgreSQL first.
 *
 * Kept current three ways: a full load after every (re)connect of the
 * LISTEN session; the objects named by new events, re-read in batches; and
 * the object a write of this controller returned, applied before the reply
 * (so a client reads its own writes). Versions guard against applying older
 * data over newer, tombstones against resurrecting what was deleted. While
 * not loaded (start-up, database outage) reads go to the database.
 */
#ifndef CLOUD_CACHE_H
#define CLOUD_CACHE_H

#include <event2/buffer.h>
#include <event2/event.h>

#include "db.h"
#include "labels.h"

struct cache;

struct cache_obj {
    char *id;
    char *name;
    char *service; /* instances: service name or NULL */
    char *host;    /* instances: host name or NULL */
    char *state;
    char *desired; /* instances: desired state */
    char *json;
    char *labels; /* labels_canon() form, NULL for none */
    long long version;
    long long event_id;     /* newest event this data is known to include */
    unsigned long long seq; /* cache-local change counter when last set */
};

struct cache *cache_new(struct event_base *base, struct db_pool *db);
void cache_free(struct cache *c);

/* Whether reads may be served from memory now. */
int cache_ready(const struct cache *c);

/* Adapters for struct watch_observer (arg is the cache). */
void cache_on_event(void *arg, long long id, const char *type,
                    const char *object, const char *object_id);
void cache_on_event_row(void *arg, long long id, const char *type,
                        const char *object, const char *object_id,
                        const PGresult *res, int row);
void cache_on_batch(void *arg);
void cache_on_reconnect(void *arg);

/* The LISTEN session (re)connected: reload everything. */
void cache_reload(struct cache *c);
/* An event named an object that changed; re-read it soon. */
void cache_note(struct cache *c, const char *object, const char *object_id,
                long long event_id);
/* The hub finished a batch of events: re-read what they named. */
void cache_flush(struct cache *c);
/*
 * A write of this controller returned body for a write op (writer.c);
 * event_id is the last event that write appended (0 if unknown).
 */
void cache_apply_write(struct cache *c, const char *op, const char *body,
                       long long event_id);

/*
 * Instance by id, live name, or unique id prefix (>= 4 hex). NULL with
 * *status 404 or 409 (ambiguous prefix) and msg filled.
 */
const struct cache_obj *cache_instance_find(struct cache *c, const char *ref,
                                            int *status, char *msg,
                                            size_t msglen);
const struct cache_obj *cache_service_get(struct cache *c, const char *name);

/* Writes a list page {"items":[...],"next":...} into out; sel may be
 * NULL (no label selector). */
void cache_instance_list(struct cache *c, const char *after,
                         const char *service, const char *state,
                         const char *host, const char *desired,
                         const struct label_sel *sel, int limit,
                         struct evbuffer *out);
void cache_service_list(struct cache *c, const char *after, const char *state,
                        const struct label_sel *sel, int limit,
                        struct evbuffer *out);

size_t cache_count(const struct cache *c, int services);

/*
 * A service as the API shows it: its JSON with "running", the number of its
 * instances in state running (kept from the cached instances as they
 * change), appended to out. The _text form takes a service's JSON and the
 * figure from elsewhere (a write's reply).
 */
long long cache_service_running(const struct cache *c, const char *name);
void cache_service_json(const struct cache *c, const struct cache_obj *o,
                        struct evbuffer *out);
void cache_service_json_text(const char *json, long long running,
                             struct evbuffer *out);

#endif
