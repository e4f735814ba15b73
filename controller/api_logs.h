/*
 * api_logs: GET /v1/instances/{id}/logs, an instance's serial console. The
 * instance is resolved in the read cache; its host's agent streams the
 * console log (LogRequest -> LogChunks), through this controller's gateway
 * if it is connected here, else relayed from the replica it is connected to
 * (logrelay.h), and the chunks go to the client as a chunked text/plain
 * body.
 * Without ?follow the body ends at the end of the log as it was; with
 * ?follow=true it goes on until the client leaves (the agent is told to
 * stop), the instance is removed, or the agent disconnects.
 */
#ifndef CLOUD_API_LOGS_H
#define CLOUD_API_LOGS_H

#include "http.h"

/* Bytes of a log sent when no ?tail_bytes is given, and the most allowed. */
#define LOGS_TAIL_DEFAULT (1024ull * 1024ull)
#define LOGS_TAIL_MAX (16ull * 1024ull * 1024ull)
/* A client this far behind is cut off. */
#define LOGS_MAX_BUFFERED (8u * 1024u * 1024u)
/* The agent must answer this fast (its first chunk comes at once). */
#define LOGS_FIRST_CHUNK_S 15
/* A follower whose socket takes no bytes for this long is dropped. */
#define LOGS_WRITE_TIMEOUT_S 60

void logs_h_get(struct http_req *r);

#endif
