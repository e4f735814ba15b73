/*
 * metrics: counters and histograms kept in small arrays. Routes come from
 * the static route table (a bounded set), so series never grow without bound:
 * an unknown path is counted under route "unmatched".
 */
#include "metrics.h"

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

void
metrics_reset(void)
{
    free(counters);
    free(histos);
    counters = NULL;
    histos = NULL;
    ncounters = capcounters = nhistos = caphistos = 0;
}
