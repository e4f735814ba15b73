/*
 * metrics: Prometheus text exposition of the controller's own figures:
 * HTTP requests by route, method and status, request latency histograms by
 * route and method. Database and object gauges are appended by the API.
 */
#ifndef CLOUD_METRICS_H
#define CLOUD_METRICS_H

#include <event2/buffer.h>

void metrics_http_observe(const char *route, const char *method, int status,
                          double seconds);
void metrics_render_http(struct evbuffer *out);
void metrics_reset(void);

#endif
