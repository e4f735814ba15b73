/*
 * api_config: configuration as an API, links and endpoints (docs/config.md):
 *   GET/PUT/PATCH /v1/services/{name}/config, .../config/history,
 *   POST .../config/rollback, GET /v1/instances/{id}/config,
 *   GET /v1/services/{name}/endpoints[?watch=true] (Server-Sent Events).
 * The writes, versions and the effective config are SQL functions of
 * migrations/functions/cloud_config_*.sql; delivery to agents is gateway_config.h.
 */
#ifndef CLOUD_API_CONFIG_H
#define CLOUD_API_CONFIG_H

#include "cmdline.h"
#include "http.h"

/* The limits the agent's channel is sized for (cmdline.h); the SQL of
 * migrations/functions/cloud_config_write.sql holds the same numbers for merged PATCHes. */
#define CONFIG_MAX_KEYS GUEST_CONFIG_KEYS_MAX
#define CONFIG_MAX_KEY GUEST_CONFIG_KEY_MAX
#define CONFIG_MAX_VALUE GUEST_CONFIG_VALUE_MAX
#define CONFIG_MAX_TOTAL GUEST_CONFIG_TOTAL_MAX

void api_config_h_get(struct http_req *r);
void api_config_h_put(struct http_req *r);
void api_config_h_patch(struct http_req *r);
void api_config_h_history(struct http_req *r);
void api_config_h_rollback(struct http_req *r);
void api_config_h_instance(struct http_req *r);
void api_config_h_endpoints(struct http_req *r);

/* 0 when k is an acceptable config key: [A-Za-z_][A-Za-z0-9_.-]{0,127}. */
int api_config_key_ok(const char *k);

#endif
