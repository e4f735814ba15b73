/*
 * api_cluster: the cluster-wide settings of the REST API
 * (GET/PATCH /v1/cluster/settings; docs/api.md "Cluster settings"). The
 * reconciler reads them inside its own SQL (down_after_seconds); the agent
 * gateway tells agents down_after and fence_after (gateway_conn.c).
 */
#ifndef CLOUD_API_CLUSTER_H
#define CLOUD_API_CLUSTER_H

#include "http.h"

#define CLUSTER_DOWN_AFTER_MIN 5
#define CLUSTER_DOWN_AFTER_MAX 3600
/* Self-fencing (docs/decisions.md §28): agents learn fence_after from the
 * gateway; fence_after + 3 s < down_after, checked by cloud_settings_patch
 * against the stored values (and by migration 0022's CHECK). */
/* Above the 2 s heartbeat flush interval: a healthy agent hears a
 * HeartbeatAck every 2 s or so (docs/decisions.md §28). */
#define CLUSTER_FENCE_AFTER_MIN 3
#define CLUSTER_FENCE_AFTER_MAX 3600

void api_cluster_h_settings_get(struct http_req *r);
void api_cluster_h_settings_patch(struct http_req *r);

#endif
