/*
 * http: the synchronous HTTP(S) client under every cloudctl command, built
 * on libevent's evhttp client with OpenSSL bufferevents for https URLs. One
 * connection per request: a CLI makes few calls, and a fresh connection
 * avoids reusing an SSL bufferevent after the server closed it.
 */
#ifndef CLOUD_CLI_HTTP_H
#define CLOUD_CLI_HTTP_H

#include <stdbool.h>
#include <stddef.h>

/* Answers larger than this are refused: a list page is far smaller. */
#define CLI_HTTP_MAX_BODY (64u * 1024 * 1024)
/* Error bodies collected from a stream that failed. */
#define CLI_HTTP_MAX_ERROR_BODY (64u * 1024)

struct cli_http;

struct cli_http_resp {
    int status; /* HTTP status; 0 when no answer came */
    char *body; /* NUL-terminated copy of the body (non-streamed answers) */
    size_t len;
    char *etag;  /* ETag header, or NULL */
    char *error; /* transport failure as a sentence, or NULL */
};

/*
 * Parses url (http:// or https://, optional path prefix). cacert: a PEM file
 * of trusted CAs instead of the system store; insecure skips verification.
 * Returns NULL with *err set (caller frees) when the URL is unusable.
 */
struct cli_http *cli_http_new(const char *url, const char *token,
                              const char *cacert, bool insecure, char **err);
void cli_http_free(struct cli_http *h);

/* Per-request timeout in seconds for cli_http_request (default 30). */
void cli_http_set_timeout(struct cli_http *h, int seconds);

/*
 * Sends method path (path starts with "/", may carry a query) with an
 * optional JSON body and extra headers ("Name: value" strings, NULL-ended).
 * Returns 0 when an HTTP answer arrived (any status), -1 on transport
 * failure (resp->error says why). Clear resp with cli_http_resp_clear().
 */
int cli_http_request(struct cli_http *h, const char *method, const char *path,
                     const char *body, const char *const *headers,
                     struct cli_http_resp *resp);

/* The same with a binary body of len bytes and the given Content-Type. */
int cli_http_request_bin(struct cli_http *h, const char *method,
                         const char *path, const void *data, size_t len,
                         const char *ctype, const char *const *headers,
                         struct cli_http_resp *resp);

/*
 * Streams a GET: on a 2xx answer each piece of body goes to fn as it
 * arrives; fn returns non-zero to stop. Non-2xx bodies are collected in
 * resp->body instead. idle_timeout_s bounds the silence between pieces.
 * Returns 0 when the server ended the answer, 1 when fn stopped it, -1 on
 * transport failure.
 */
typedef int (*cli_http_data_fn)(void *arg, const char *data, size_t len);
int cli_http_stream(struct cli_http *h, const char *path,
                    const char *const *headers, int idle_timeout_s,
                    cli_http_data_fn fn, void *arg, struct cli_http_resp *resp);

void cli_http_resp_clear(struct cli_http_resp *r);

#endif
