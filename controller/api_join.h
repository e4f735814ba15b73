/*
 * api_join: agent enrolment in the REST API (admin only; docs/api.md "Agent
 * enrolment"): join tokens and the certificates issued to agents, with the
 * same SQL as `cloud-controller join-token` and `cloud-controller cert`.
 */
#ifndef CLOUD_API_JOIN_H
#define CLOUD_API_JOIN_H

#include "http.h"

void api_join_h_token_create(struct http_req *r); /* POST /v1/join-tokens */
void api_join_h_tokens_list(struct http_req *r);  /* GET /v1/join-tokens */
void api_join_h_certs_list(struct http_req *r);   /* GET /v1/agent-certs */
void api_join_h_certs_revoke(struct http_req *r); /* POST /v1/agent-certs/revoke */

#endif
