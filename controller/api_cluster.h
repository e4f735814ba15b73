/*
 * api_cluster: the cluster-wide settings of the REST API
 * (GET/PATCH /v1/cluster/settings; docs/api.md "Cluster settings"). The
 * reconciler reads them inside its own SQL (down_after_seconds).
 */
#ifndef CLOUD_API_CLUSTER_H
#define CLOUD_API_CLUSTER_H

#include "http.h"

#define CLUSTER_DOWN_AFTER_MIN 5
#define CLUSTER_DOWN_AFTER_MAX 3600

void api_cluster_h_settings_get(struct http_req *r);
void api_cluster_h_settings_patch(struct http_req *r);

#endif
