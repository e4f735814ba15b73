/*
 * gateway_logs: console log streams through an agent (LogRequest ->
 * LogChunks; gateway.h gateway_log_open). What the gateway files share is
 * gateway_priv.h.
 */
#define LOG_MODULE "gateway"

#include "gateway_priv.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <jansson.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "frame.h"
#include "join.h" /* agent enrolment, revocation */
#include "gateway_config.h"
#include "gateway_blobs.h"
#include "log.h"
#include "netopt.h"
#include "mem.h"
#include "pin.h"
#include "store.h"
#include "strmap.h"
#include "tlsctx.h"
#include "tlsev.h"

/* ---- console log streams --------------------------------------------- */

static void
log_unlink(struct gateway *gw, struct gw_log *lg)
{
    if (lg->prev)
        lg->prev->next = lg->next;
    else
        gw->logs = lg->next;
    if (lg->next)
        lg->next->prev = lg->prev;
    gw->nlogs--;
    lg->conn->nlogs--;
}

static struct gw_log *
log_find(struct gateway *gw, uint64_t id)
{
    struct gw_log *lg;

    for (lg = gw->logs; lg != NULL; lg = lg->next)
        if (lg->id == id)
            return lg;
    return NULL;
}

/* The connection is going: every stream through it ends. */
void
conn_logs_lost(struct gw_conn *c, const char *why)
{
    struct gateway *gw = c->gw;
    struct gw_log *lg, *next;
    char msg[600];

    if (c->nlogs == 0)
        return;
    snprintf(msg, sizeof(msg), "the agent of host %s disconnected: %s",
             c->name ? c->name : "?", why);
    for (lg = gw->logs; lg != NULL; lg = next) {
        next = lg->next;
        if (lg->conn != c)
            continue;
        log_unlink(gw, lg);
        lg->sink.on_lost(lg->arg, msg);
        free(lg);
        next = gw->logs; /* the sink may have closed others: start over */
    }
}

void
conn_on_log_chunk(struct gw_conn *c, const Cloud__Agent__LogChunk *ch)
{
    struct gw_log *lg = log_find(c->gw, ch->request_id);
    struct gateway_log_sink sink;
    void *arg;

    if (lg == NULL || lg->conn != c) {
        /* Finished or cancelled meanwhile (or not this agent's). */
        log_debug("host %s: chunk of log stream %" PRIu64 " dropped", c->name,
                  ch->request_id);
        return;
    }
    if (ch->data.len > GW_LOG_CHUNK_MAX) {
        log_warnx("host %s: log chunk of %zu bytes refused (at most %u)",
                  c->name, ch->data.len, GW_LOG_CHUNK_MAX);
        gateway_log_close(c->gw, lg->id);
        return;
    }
    if (!ch->eof) {
        lg->sink.on_chunk(lg->arg, ch->data.data, ch->data.len, ch->offset, 0,
                          NULL);
        return;
    }
    sink = lg->sink;
    arg = lg->arg;
    log_unlink(c->gw, lg);
    free(lg);
    sink.on_chunk(arg, ch->data.data, ch->data.len, ch->offset, 1,
                  ch->error && ch->error[0] ? ch->error : NULL);
}

static struct gw_conn *
conn_by_name(const struct gateway *gw, const char *name)
{
    struct gw_conn *c;

    for (c = gw->conns; c != NULL; c = c->next)
        if (c->state == GW_READY && c->name != NULL &&
            strcmp(c->name, name) == 0 &&
            strmap_get(&gw->by_host, c->host_id) == c)
            return c;
    return NULL;
}

static int
log_send_request(struct gw_conn *c, uint64_t id,
                 const struct gateway_log_params *p, int cancel)
{
    Cloud__Agent__Envelope env = CLOUD__AGENT__ENVELOPE__INIT;
    Cloud__Agent__LogRequest q = CLOUD__AGENT__LOG_REQUEST__INIT;

    q.request_id = id;
    if (p != NULL) {
        q.instance_id = (char *)p->instance_id;
        q.tail_bytes = p->tail_bytes;
        q.tail_lines = p->tail_lines;
        q.follow = p->follow != 0;
    }
    q.cancel = cancel != 0;
    env.msg_case = CLOUD__AGENT__ENVELOPE__MSG_LOG_REQUEST;
    env.log_request = &q;
    return conn_send(c, &env);
}

unsigned long long
gateway_log_open(struct gateway *gw, const struct gateway_log_params *p,
                 const struct gateway_log_sink *sink, void *arg, int *status,
                 char *why, size_t whylen)
{
    struct gw_conn *c;
    struct gw_log *lg;

    c = gw->closed ? NULL : conn_by_name(gw, p->host);
    if (c == NULL) {
        *status = 503;
        snprintf(why, whylen,
                 "the agent of host %s is not connected to this controller",
                 p->host);
        return 0;
    }
    if (c->nlogs >= GATEWAY_LOG_STREAMS_PER_AGENT ||
        gw->nlogs >= GATEWAY_LOG_STREAMS_MAX) {
        *status = 429;
        snprintf(why, whylen,
                 "host %s already streams %d console logs (at most %d per "
                 "host, %d in all); try again later",
                 p->host, c->nlogs, GATEWAY_LOG_STREAMS_PER_AGENT,
                 GATEWAY_LOG_STREAMS_MAX);
        return 0;
    }
    lg = xcalloc(1, sizeof(*lg));
    lg->id = ++gw->next_log_id;
    lg->conn = c;
    lg->sink = *sink;
    lg->arg = arg;
    if (log_send_request(c, lg->id, p, 0) < 0) {
        free(lg);
        *status = 503;
        snprintf(why, whylen, "cannot send the log request to host %s",
                 p->host);
        return 0;
    }
    lg->next = gw->logs;
    if (gw->logs)
        gw->logs->prev = lg;
    gw->logs = lg;
    gw->nlogs++;
    c->nlogs++;
    return lg->id;
}

void
gateway_log_close(struct gateway *gw, unsigned long long handle)
{
    struct gw_log *lg = gw ? log_find(gw, handle) : NULL;
    struct gw_conn *c;

    if (lg == NULL)
        return;
    c = lg->conn;
    log_unlink(gw, lg);
    free(lg);
    (void)log_send_request(c, handle, NULL, 1);
}


int
gateway_holds(const struct gateway *gw, const char *host)
{
    return gw != NULL && !gw->closed && conn_by_name(gw, host) != NULL;
}

json_t *
gateway_links(const struct gateway *gw)
{
    json_t *a = json_array();
    struct gw_conn *c;

    if (a == NULL)
        fatalx("out of memory");
    for (c = gw && !gw->closed ? gw->conns : NULL; c != NULL; c = c->next) {
        if (c->state != GW_READY || c->host_id == NULL ||
            strmap_get(&gw->by_host, c->host_id) != c)
            continue;
        if (json_array_append_new(a, json_pack("{s:s, s:I}", "id", c->host_id,
                                               "epoch",
                                               (json_int_t)c->epoch)) < 0)
            fatalx("out of memory");
    }
    return a;
}

void
gateway_on_links(struct gateway *gw, void (*fn)(void *arg), void *arg)
{
    gw->on_links = fn;
    gw->links_arg = arg;
}
