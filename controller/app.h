/*
 * app: the controller process's shared state, handed to every HTTP handler
 * through http_app(). Owned by main.c.
 */
#ifndef CLOUD_APP_H
#define CLOUD_APP_H

#include <stddef.h>

#include "api_blobs.h"
#include "auth.h"
#include "cache.h"
#include "db.h"
#include "http.h"
#include "watch.h"
#include "writer.h"

struct app {
    struct event_base *base;
    struct db_pool *db;
    /* One connection for the lease and agent heartbeats only: neither may
     * queue behind API or reconciler work (docs/decisions.md §21). */
    struct db_pool *ctl_db;
    struct db_pool *blob_db; /* blob content (blobstore.c) */
    struct watch *watch;
    struct cache *cache;
    struct writer *writer;
    struct blobs *blobs;
    struct auth *auth;
    struct reconciler *reconciler; /* NULL with --no-reconcile */
    struct gateway *gateway;       /* agent gateway; NULL when disabled */
    struct logrelay *relay; /* console logs through other replicas */
    char *replica;          /* this replica's identity (lease, relay) */
    int schema_version; /* the newest migration embedded in this binary */
};

extern const struct http_route api_routes[];
extern const size_t api_nroutes;

/* http_opts.authorize for the API (api.c). */
int api_authorize(struct http_req *r, int role);
/* Audits a refused or failed mutating request (called by http.c). */
void api_on_error(struct http_req *r, int status, const char *message);

#endif
