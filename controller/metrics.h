/*
 * metrics: Prometheus text exposition of the controller's own figures:
 * HTTP requests by route, method and status, request latency histograms by
 * route and method (kept here), and the gauges and counters of the other
 * modules, which the API gathers at each scrape into a metrics_figures.
 */
#ifndef CLOUD_METRICS_H
#define CLOUD_METRICS_H

#include <stddef.h>

#include <event2/buffer.h>

/* One row of the object counts query: how many objects of a kind
 * ("instances") are in a state. */
struct metrics_count {
    const char *kind, *state, *count;
};

/* An object kind and every state it has (NULL-terminated): each state gets
 * a series, zero included, so that dashboards always see it. */
struct metrics_kind {
    const char *name;
    const char *const *states;
};

/* The figures of one scrape. */
struct metrics_figures {
    /* The database pool (db_pool_stats) and whether the object counts
     * query answered; the object gauges are left out when it did not. */
    int db_size, db_up, db_busy, db_queued;
    unsigned long long db_queries, db_errors, db_reconnects;
    int db_answered;
    int watch_clients;
    /* The group-commit writer (writer_stats). */
    unsigned long long write_batches, writes, write_bulk_batches,
        write_retries;
    /* The read cache. */
    int cache_ready;
    size_t cache_instances, cache_services;
    /* Objects by state. */
    const struct metrics_kind *kinds;
    size_t nkinds;
    const struct metrics_count *counts;
    size_t ncounts;
};

void metrics_http_observe(const char *route, const char *method, int status,
                          double seconds);
/* The whole /metrics text: the HTTP series, then the figures of f. */
void metrics_render(struct evbuffer *out, const struct metrics_figures *f);
void metrics_render_http(struct evbuffer *out);
void metrics_reset(void);

#endif
