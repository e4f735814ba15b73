/*
 * http: synchronous requests over libevent's evhttp client (see http.h).
 * Each call builds a connection, runs the event loop until the answer is
 * complete, then frees everything, so no state outlives a request except
 * the event base and the SSL_CTX.
 */
#include "http.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "evbuf.h"
#include "mem.h"
#include "tlsctx.h"
#include "tlsev.h"

#ifndef CLOUD_VERSION
#define CLOUD_VERSION "0.0.0"
#endif

#define CLI_HTTP_MAX_HEADERS (64 * 1024)

struct cli_http {
    struct event_base *base;
    SSL_CTX *ssl_ctx;   /* NULL for http:// */
    char *url;          /* as given, for messages */
    char *connect_host; /* without IPv6 brackets */
    char *host_header;
    char *prefix; /* path prefix without trailing '/' */
    char *auth;   /* "Bearer <token>" or NULL */
    int port;
    int timeout_s;
};

struct req_state {
    struct cli_http *h;
    struct evhttp_connection *conn;
    struct cli_http_resp *resp;
    struct evbuffer *body;
    cli_http_data_fn fn;
    void *fn_arg;
    bool done;
    bool stopped;
    bool have_err;
    enum evhttp_request_error err;
    int sock_err;
    bool too_large;
    bool is_stream;
};

struct cli_http *
cli_http_new(const char *url, const char *token, const char *cacert,
             bool insecure, char **err)
{
    struct evhttp_uri *uri = evhttp_uri_parse_with_flags(url, 0);
    struct cli_http *h = NULL;
    const char *scheme, *host, *path;
    bool https;

    *err = NULL;
    if (uri == NULL) {
        *err = xasprintf("server URL %s is not a valid URL", url);
        return NULL;
    }
    scheme = evhttp_uri_get_scheme(uri);
    host = evhttp_uri_get_host(uri);
    if (scheme == NULL ||
        (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0)) {
        *err =
            xasprintf("server URL %s must start with http:// or https://", url);
        goto out;
    }
    if (host == NULL || *host == '\0') {
        *err = xasprintf("server URL %s has no host", url);
        goto out;
    }
    https = strcmp(scheme, "https") == 0;

    h = xcalloc(1, sizeof(*h));
    h->url = xstrdup(url);
    h->timeout_s = 30;
    h->port = evhttp_uri_get_port(uri);
    if (h->port <= 0)
        h->port = https ? 443 : 80;
    /* libevent keeps the brackets of an IPv6 literal in the host. */
    if (host[0] == '[')
        h->connect_host = xstrndup(host + 1, strlen(host) - 2);
    else
        h->connect_host = xstrdup(host);
    if (evhttp_uri_get_port(uri) > 0)
        h->host_header = xasprintf("%s:%d", host, h->port);
    else
        h->host_header = xstrdup(host);
    path = evhttp_uri_get_path(uri);
    h->prefix = xstrdup(path ? path : "");
    size_t plen = strlen(h->prefix);
    while (plen > 0 && h->prefix[plen - 1] == '/')
        h->prefix[--plen] = '\0';
    if (token != NULL && *token != '\0')
        h->auth = xasprintf("Bearer %s", token);

    h->base = event_base_new();
    if (h->base == NULL) {
        *err = xstrdup("cannot create an event loop");
        goto fail;
    }
    if (https) {
        /* --insecure: nothing is checked; else the server's certificate
         * against --cacert or the system's CAs (tlsctx.h). */
        struct tlsctx_opts to = {.role = TLSCTX_CLIENT,
                                 .peer = insecure ? TLSCTX_PEER_NONE
                                                  : TLSCTX_PEER_CA,
                                 .ca = cacert};
        char why[TLSCTX_WHY_MAX];

        h->ssl_ctx = tlsctx_new(&to, why, sizeof(why));
        if (h->ssl_ctx == NULL) {
            *err = xstrdup(why);
            goto fail;
        }
    }
    evhttp_uri_free(uri);
    return h;
fail:
    cli_http_free(h);
    h = NULL;
out:
    evhttp_uri_free(uri);
    return h;
}

void
cli_http_free(struct cli_http *h)
{
    if (h == NULL)
        return;
    if (h->ssl_ctx != NULL)
        SSL_CTX_free(h->ssl_ctx);
    if (h->base != NULL)
        event_base_free(h->base);
    free(h->url);
    free(h->connect_host);
    free(h->host_header);
    free(h->prefix);
    free(h->auth);
    free(h);
}

void
cli_http_set_timeout(struct cli_http *h, int seconds)
{
    h->timeout_s = seconds;
}

void
cli_http_resp_clear(struct cli_http_resp *r)
{
    if (r == NULL)
        return;
    free(r->body);
    free(r->etag);
    free(r->error);
    memset(r, 0, sizeof(*r));
}

static int
method_type(const char *m, enum evhttp_cmd_type *t)
{
    static const struct {
        const char *name;
        enum evhttp_cmd_type type;
    } methods[] = {
        {"GET", EVHTTP_REQ_GET},       {"POST", EVHTTP_REQ_POST},
        {"PUT", EVHTTP_REQ_PUT},       {"PATCH", EVHTTP_REQ_PATCH},
        {"DELETE", EVHTTP_REQ_DELETE}, {"HEAD", EVHTTP_REQ_HEAD},
    };
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
        if (strcmp(methods[i].name, m) == 0) {
            *t = methods[i].type;
            return 0;
        }
    return -1;
}

static void
on_error(enum evhttp_request_error err, void *arg)
{
    struct req_state *st = arg;
    st->have_err = true;
    st->err = err;
    st->sock_err = EVUTIL_SOCKET_ERROR();
}

/* Moves what arrived to the stream callback, or to the error body. */
static void
take_input(struct req_state *st, struct evhttp_request *req)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    int code = evhttp_request_get_response_code(req);
    size_t n = evbuffer_get_length(in);

    if (n == 0)
        return;
    if (st->is_stream && code >= 200 && code < 300 && !st->stopped) {
        while (evbuffer_get_length(in) > 0 && !st->stopped) {
            struct evbuffer_iovec v;
            if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
                break;
            if (st->fn(st->fn_arg, v.iov_base, v.iov_len) != 0) {
                st->stopped = true;
                event_base_loopbreak(st->h->base);
            }
            evbuffer_drain(in, v.iov_len);
        }
        evbuffer_drain(in, evbuffer_get_length(in));
        return;
    }
    size_t room = CLI_HTTP_MAX_ERROR_BODY;
    if (!st->is_stream)
        room = CLI_HTTP_MAX_BODY;
    size_t have = evbuffer_get_length(st->body);
    if (have + n > room) {
        st->too_large = true;
        evbuffer_drain(in, n);
        return;
    }
    evbuffer_remove_buffer(in, st->body, n);
}

static void
on_chunk(struct evhttp_request *req, void *arg)
{
    take_input(arg, req);
}

static void
on_done(struct evhttp_request *req, void *arg)
{
    struct req_state *st = arg;

    st->done = true;
    event_base_loopexit(st->h->base, NULL);
    /* A refused connect reaches here without the error callback, with
     * errno still telling why. */
    if ((req == NULL || evhttp_request_get_response_code(req) == 0) &&
        !st->have_err)
        st->sock_err = EVUTIL_SOCKET_ERROR();
    if (req == NULL)
        return;
    st->resp->status = evhttp_request_get_response_code(req);
    if (st->resp->status == 0)
        return;
    const char *etag =
        evhttp_find_header(evhttp_request_get_input_headers(req), "ETag");
    if (etag != NULL)
        st->resp->etag = xstrdup(etag);
    take_input(st, req);
}

/* The transport failure as a sentence naming the server. */
static char *
describe_failure(struct req_state *st, struct bufferevent *bev)
{
    struct cli_http *h = st->h;
    char *ssl = NULL;
    const char *why = NULL;
    char *r;

    if (bev != NULL && h->ssl_ctx != NULL) {
        char buf[256];

        if (tlsev_error(bev, "server's", buf, sizeof(buf))[0] != '\0')
            ssl = xstrdup(buf);
    }
    if (bev != NULL && bufferevent_socket_get_dns_error(bev) != 0) {
        r = xasprintf(
            "cannot resolve %s: %s", h->connect_host,
            evutil_gai_strerror(bufferevent_socket_get_dns_error(bev)));
        free(ssl);
        return r;
    }
    if (!st->have_err) {
        /* libevent fails a refused connect without the error callback
         * (http.c, evhttp_connection_cb: "goto cleanup" on ECONNREFUSED),
         * and errno is overwritten by then. Every other failure goes
         * through evhttp_connection_fail_, which calls it. */
        r = xasprintf("cannot reach %s: connection refused", h->url);
    } else if (st->err == EVREQ_HTTP_TIMEOUT) {
        r = xasprintf("%s did not answer within %d s", h->url, h->timeout_s);
    } else if (st->err == EVREQ_HTTP_DATA_TOO_LONG) {
        r = xasprintf("%s sent an answer over the size limit", h->url);
    } else if (st->err == EVREQ_HTTP_INVALID_HEADER) {
        r = xasprintf("%s sent an invalid HTTP answer", h->url);
    } else if (ssl != NULL) {
        r = xasprintf("TLS with %s failed: %s", h->url, ssl);
    } else if (st->err == EVREQ_HTTP_EOF) {
        r = xasprintf("%s closed the connection before answering", h->url);
    } else {
        int e = st->sock_err;
        /* Leftovers of non-blocking I/O say nothing about the failure. */
        if (e == 0 || e == EINPROGRESS || e == EAGAIN || e == ENOTCONN)
            why = "connection failed";
        else
            why = evutil_socket_error_to_string(e);
        r = xasprintf("cannot reach %s: %s", h->url, why);
    }
    free(ssl);
    return r;
}

static int
run_request(struct cli_http *h, const char *method, const char *path,
            const char *body, size_t body_len, const char *ctype,
            const char *const *headers, bool stream, int timeout_s,
            cli_http_data_fn fn, void *arg, struct cli_http_resp *resp)
{
    struct req_state st = {
        .h = h, .resp = resp, .fn = fn, .fn_arg = arg, .is_stream = stream};
    struct bufferevent *bev = NULL;
    struct evhttp_request *req;
    struct evkeyvalq *hdr;
    enum evhttp_cmd_type type;
    char *uri = NULL;
    int rc = -1;

    memset(resp, 0, sizeof(*resp));
    if (method_type(method, &type) < 0) {
        resp->error = xasprintf("HTTP method %s is not supported", method);
        return -1;
    }
    if (h->ssl_ctx != NULL) {
        SSL *ssl = SSL_new(h->ssl_ctx);

        if (ssl == NULL) {
            resp->error = xstrdup("cannot create a TLS session");
            return -1;
        }
        /* Verify the name we dialled; IP literals are matched as IPs. */
        if (tlsctx_client_host(ssl, h->connect_host) < 0) {
            SSL_free(ssl);
            resp->error = xasprintf(
                "cannot set %s as the server name to verify", h->connect_host);
            return -1;
        }
        bev = bufferevent_openssl_socket_new(h->base, -1, ssl,
                                             BUFFEREVENT_SSL_CONNECTING,
                                             BEV_OPT_CLOSE_ON_FREE);
        if (bev == NULL) {
            SSL_free(ssl);
            resp->error = xstrdup("cannot create a TLS connection");
            return -1;
        }
        /* Servers commonly close without close_notify after the body. */
        bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    }
    st.conn = evhttp_connection_base_bufferevent_new(
        h->base, NULL, bev, h->connect_host, (unsigned short)h->port);
    if (st.conn == NULL) {
        if (bev != NULL)
            bufferevent_free(bev);
        resp->error = xasprintf("cannot create a connection to %s", h->url);
        return -1;
    }
    if (bev == NULL)
        bev = evhttp_connection_get_bufferevent(st.conn);
    evhttp_connection_set_timeout(st.conn, timeout_s);
    evhttp_connection_set_retries(st.conn, 0);
    evhttp_connection_set_max_headers_size(st.conn, CLI_HTTP_MAX_HEADERS);
    /* A stream is bounded per event by its parser, not in total. */
    if (!stream)
        evhttp_connection_set_max_body_size(st.conn, CLI_HTTP_MAX_BODY);

    st.body = evbuf_new();
    req = evhttp_request_new(on_done, &st);
    evhttp_request_set_error_cb(req, on_error);
    if (stream)
        evhttp_request_set_chunked_cb(req, on_chunk);
    hdr = evhttp_request_get_output_headers(req);
    evhttp_add_header(hdr, "Host", h->host_header);
    evhttp_add_header(hdr, "User-Agent", "cloudctl/" CLOUD_VERSION);
    evhttp_add_header(hdr, "Accept",
                      stream ? "text/event-stream, */*" : "application/json");
    if (!stream)
        evhttp_add_header(hdr, "Connection", "close");
    if (h->auth != NULL)
        evhttp_add_header(hdr, "Authorization", h->auth);
    for (size_t i = 0; headers != NULL && headers[i] != NULL; i++) {
        const char *colon = strchr(headers[i], ':');
        if (colon == NULL)
            continue;
        char *name = xstrndup(headers[i], (size_t)(colon - headers[i]));
        const char *v = colon + 1;
        while (*v == ' ')
            v++;
        evhttp_add_header(hdr, name, v);
        free(name);
    }
    if (body != NULL) {
        /* libevent adds Content-Length for POST and PUT only; a PATCH
         * without it arrives with no body. */
        char len[32];
        snprintf(len, sizeof(len), "%zu", body_len);
        evhttp_add_header(hdr, "Content-Length", len);
        evhttp_add_header(hdr, "Content-Type", ctype);
        evbuffer_add(evhttp_request_get_output_buffer(req), body, body_len);
    }
    uri = xasprintf("%s%s", h->prefix, path);
    if (evhttp_make_request(st.conn, req, type, uri) != 0) {
        /* libevent has freed req. */
        resp->error = xasprintf("cannot send a request to %s", h->url);
        goto out;
    }
    event_base_dispatch(h->base);

    if (st.stopped) {
        rc = 1;
        goto out;
    }
    if (!st.done || resp->status == 0) {
        resp->error = describe_failure(&st, bev);
        resp->status = 0;
        goto out;
    }
    if (st.too_large) {
        resp->error =
            xasprintf("%s sent an answer over the size limit", h->url);
        resp->status = 0;
        goto out;
    }
    resp->body = evbuf_drain_string(st.body, &resp->len);
    rc = 0;
out:
    /* Frees a still-pending request (a stopped stream) and the bufferevent. */
    evhttp_connection_free(st.conn);
    evbuffer_free(st.body);
    free(uri);
    ERR_clear_error();
    return rc;
}

int
cli_http_request(struct cli_http *h, const char *method, const char *path,
                 const char *body, const char *const *headers,
                 struct cli_http_resp *resp)
{
    return run_request(h, method, path, body, body ? strlen(body) : 0,
                       "application/json", headers, false, h->timeout_s, NULL,
                       NULL, resp);
}

int
cli_http_request_bin(struct cli_http *h, const char *method, const char *path,
                     const void *data, size_t len, const char *ctype,
                     const char *const *headers, struct cli_http_resp *resp)
{
    return run_request(h, method, path, data, len, ctype, headers, false,
                       h->timeout_s, NULL, NULL, resp);
}

int
cli_http_stream(struct cli_http *h, const char *path,
                const char *const *headers, int idle_timeout_s,
                cli_http_data_fn fn, void *arg, struct cli_http_resp *resp)
{
    return run_request(h, "GET", path, NULL, 0, NULL, headers, true,
                       idle_timeout_s, fn, arg, resp);
}
