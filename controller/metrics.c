/*
 * metrics: counters and histograms kept in small arrays. Routes come from
 * the static route table (a bounded set), so series never grow without bound:
 * an unknown path is counted under route "unmatched".
 */
#include "metrics.h"

#include <stdio.h>
#include <string.h>

#include "mem.h"

#define NBUCKETS 12
static const double buckets[NBUCKETS] = {0.0005, 0.001, 0.0025, 0.005,
                                         0.01,   0.025, 0.05,   0.1,
                                         0.25,   0.5,   1.0,    5.0};

struct counter {
    const char *route, *method;
    int status;
    unsigned long long n;
};

struct histo {
    const char *route, *method;
    unsigned long long b[NBUCKETS];
    unsigned long long count;
    double sum;
};

static struct counter *counters;
static size_t ncounters, capcounters;
static struct histo *histos;
static size_t nhistos, caphistos;

void
metrics_http_observe(const char *route, const char *method, int status,
                     double seconds)
{
    struct counter *c = NULL;
    struct histo *h = NULL;

    for (size_t i = 0; i < ncounters; i++)
        if (counters[i].route == route && counters[i].method == method &&
            counters[i].status == status)
            c = &counters[i];
    if (c == NULL) {
        if (ncounters == capcounters) {
            capcounters = capcounters ? capcounters * 2 : 64;
            counters = xrealloc(counters, capcounters * sizeof(*counters));
        }
        c = &counters[ncounters++];
        *c = (struct counter){route, method, status, 0};
    }
    c->n++;

    for (size_t i = 0; i < nhistos; i++)
        if (histos[i].route == route && histos[i].method == method)
            h = &histos[i];
    if (h == NULL) {
        if (nhistos == caphistos) {
            caphistos = caphistos ? caphistos * 2 : 32;
            histos = xrealloc(histos, caphistos * sizeof(*histos));
        }
        h = &histos[nhistos++];
        memset(h, 0, sizeof(*h));
        h->route = route;
        h->method = method;
    }
    for (int i = 0; i < NBUCKETS; i++)
        if (seconds <= buckets[i])
            h->b[i]++;
    h->count++;
    h->sum += seconds;
}

void
metrics_render_http(struct evbuffer *out)
{
    evbuffer_add_printf(out,
                        "# HELP cloud_http_requests_total HTTP requests "
                        "answered, by route, method and status.\n"
                        "# TYPE cloud_http_requests_total counter\n");
    for (size_t i = 0; i < ncounters; i++)
        evbuffer_add_printf(out,
                            "cloud_http_requests_total{route=\"%s\","
                            "method=\"%s\",status=\"%d\"} %llu\n",
                            counters[i].route, counters[i].method,
                            counters[i].status, counters[i].n);
    evbuffer_add_printf(out,
                        "# HELP cloud_http_request_duration_seconds Time "
                        "from request to reply.\n"
                        "# TYPE cloud_http_request_duration_seconds "
                        "histogram\n");
    for (size_t i = 0; i < nhistos; i++) {
        struct histo *h = &histos[i];
        for (int b = 0; b < NBUCKETS; b++)
            evbuffer_add_printf(out,
                                "cloud_http_request_duration_seconds_bucket{"
                                "route=\"%s\",method=\"%s\",le=\"%g\"} %llu\n",
                                h->route, h->method, buckets[b], h->b[b]);
        evbuffer_add_printf(out,
                            "cloud_http_request_duration_seconds_bucket{"
                            "route=\"%s\",method=\"%s\",le=\"+Inf\"} %llu\n"
                            "cloud_http_request_duration_seconds_sum{"
                            "route=\"%s\",method=\"%s\"} %.6f\n"
                            "cloud_http_request_duration_seconds_count{"
                            "route=\"%s\",method=\"%s\"} %llu\n",
                            h->route, h->method, h->count, h->route,
                            h->method, h->sum, h->route, h->method, h->count);
    }
}

static void
render_figures(struct evbuffer *out, const struct metrics_figures *f)
{
    evbuffer_add_printf(
        out,
        "# HELP cloud_db_pool_connections Database pool connections by "
        "state.\n# TYPE cloud_db_pool_connections gauge\n"
        "cloud_db_pool_connections{state=\"configured\"} %d\n"
        "cloud_db_pool_connections{state=\"up\"} %d\n"
        "cloud_db_pool_connections{state=\"busy\"} %d\n"
        "# HELP cloud_db_queue_length Queries waiting for a connection.\n"
        "# TYPE cloud_db_queue_length gauge\ncloud_db_queue_length %d\n"
        "# TYPE cloud_db_queries_total counter\ncloud_db_queries_total %llu\n"
        "# TYPE cloud_db_errors_total counter\ncloud_db_errors_total %llu\n"
        "# TYPE cloud_db_reconnects_total counter\n"
        "cloud_db_reconnects_total %llu\n"
        "# HELP cloud_db_up Whether the database answered this scrape.\n"
        "# TYPE cloud_db_up gauge\ncloud_db_up %d\n"
        "# TYPE cloud_watch_clients gauge\ncloud_watch_clients %d\n",
        f->db_size, f->db_up, f->db_busy, f->db_queued, f->db_queries,
        f->db_errors, f->db_reconnects, f->db_answered, f->watch_clients);
    evbuffer_add_printf(
        out,
        "# HELP cloud_write_batches_total Group commits sent.\n"
        "# TYPE cloud_write_batches_total counter\n"
        "cloud_write_batches_total %llu\n"
        "# TYPE cloud_writes_total counter\ncloud_writes_total %llu\n"
        "# HELP cloud_write_bulk_batches_total Batches of creates "
        "written set-based.\n"
        "# TYPE cloud_write_bulk_batches_total counter\n"
        "cloud_write_bulk_batches_total %llu\n"
        "# HELP cloud_write_retries_total Batches sent again item by "
        "item after a failure.\n"
        "# TYPE cloud_write_retries_total counter\n"
        "cloud_write_retries_total %llu\n"
        "# HELP cloud_cache_ready Whether reads are served from memory.\n"
        "# TYPE cloud_cache_ready gauge\ncloud_cache_ready %d\n"
        "# TYPE cloud_cache_objects gauge\n"
        "cloud_cache_objects{kind=\"instances\"} %zu\n"
        "cloud_cache_objects{kind=\"services\"} %zu\n",
        f->write_batches, f->writes, f->write_bulk_batches, f->write_retries,
        f->cache_ready, f->cache_instances, f->cache_services);
}

/* The count of kind in state from the query's rows; "0" if none. */
static const char *
count_of(const struct metrics_figures *f, const char *kind,
         const char *state)
{
    for (size_t i = 0; i < f->ncounts; i++)
        if (strcmp(f->counts[i].kind, kind) == 0 &&
            strcmp(f->counts[i].state, state) == 0)
            return f->counts[i].count;
    return "0";
}

static void
render_objects(struct evbuffer *out, const struct metrics_figures *f)
{
    for (size_t k = 0; k < f->nkinds; k++) {
        const char *name = f->kinds[k].name;

        evbuffer_add_printf(out, "# TYPE cloud_%s gauge\n", name);
        for (const char *const *s = f->kinds[k].states; *s; s++)
            evbuffer_add_printf(out, "cloud_%s{state=\"%s\"} %s\n", name, *s,
                                count_of(f, name, *s));
    }
}

void
metrics_render(struct evbuffer *out, const struct metrics_figures *f)
{
    metrics_render_http(out);
    render_figures(out, f);
    if (f->db_answered)
        render_objects(out, f);
}

void
metrics_reset(void)
{
    free(counters);
    free(histos);
    counters = NULL;
    histos = NULL;
    ncounters = capcounters = nhistos = caphistos = 0;
}
