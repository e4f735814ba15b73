/*
 * gateway_status: the agent gateway's status reports and heartbeats (see
 * gateway.h; what the gateway files share is gateway_priv.h). Status
 * reports are group-committed: one call per flush, the next flush as soon
 * as the previous returns; heartbeats of every connected host go in one
 * statement per interval.
 */
#define LOG_MODULE "gateway"

#include "gateway_priv.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
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
#include "monotime.h"
#include "log.h"
#include "netopt.h"
#include "mem.h"
#include "pin.h"
#include "store.h"
#include "strmap.h"
#include "tlsctx.h"
#include "tlsev.h"

static void gw_status_flush(struct gateway *gw);

/* ---- status reports (group commit) ---------------------------------- */

static const char *
observed_name(Cloud__Agent__ObservedInstanceState s)
{
    switch (s) {
    case CLOUD__AGENT__OBSERVED_INSTANCE_STATE__OBSERVED_INSTANCE_STATE_STARTING:
        return "starting";
    case CLOUD__AGENT__OBSERVED_INSTANCE_STATE__OBSERVED_INSTANCE_STATE_RUNNING:
        return "running";
    case CLOUD__AGENT__OBSERVED_INSTANCE_STATE__OBSERVED_INSTANCE_STATE_STOPPING:
        return "stopping";
    case CLOUD__AGENT__OBSERVED_INSTANCE_STATE__OBSERVED_INSTANCE_STATE_EXITED:
        return "exited";
    case CLOUD__AGENT__OBSERVED_INSTANCE_STATE__OBSERVED_INSTANCE_STATE_FAILED:
        return "failed";
    case CLOUD__AGENT__OBSERVED_INSTANCE_STATE__OBSERVED_INSTANCE_STATE_REMOVED:
        return "removed";
    default:
        return NULL;
    }
}

int
gw_id_ok(const char *id)
{
    size_t n = strlen(id);

    if (n == 0 || n > 64)
        return 0;
    return strspn(id, "0123456789abcdefghijklmnopqrstuvwxyz"
                      "ABCDEFGHIJKLMNOPQRSTUVWXYZ_-") == n;
}

void
conn_on_status(struct gw_conn *c, const Cloud__Agent__InstanceStatus *s)
{
    struct gateway *gw = c->gw;
    const char *st = observed_name(s->state);
    char reason[4097];
    json_t *item;

    if (s->session_epoch != c->epoch) {
        conn_send_error(c, CLOUD__AGENT__ERROR_CODE__ERROR_CODE_STALE_EPOCH,
                        "InstanceStatus carries a stale session epoch");
        log_info("host %s: status of %.64s refused: session %" PRIu64
                 " is not the current %" PRIu64,
                 c->name, s->id, s->session_epoch, c->epoch);
        return;
    }
    if (st == NULL || !gw_id_ok(s->id)) {
        conn_send_error(c, CLOUD__AGENT__ERROR_CODE__ERROR_CODE_UNSUPPORTED,
                        "InstanceStatus needs an instance id and a state an "
                        "agent can observe");
        return;
    }
    if (gw->npending >= GW_STATUS_QUEUE_MAX) {
        log_warnx("host %s: status queue full (%d reports); dropping the report for %s",
                  c->name, GW_STATUS_QUEUE_MAX, s->id);
        return;
    }
    /* Reasons are libvirt's text: keep them, cut to what the column holds,
     * and replace what is not UTF-8 so jansson takes it. */
    xstrlcpy(reason, s->reason, sizeof(reason));
    item = json_pack("{s:s, s:I, s:s, s:I, s:s, s:i, s:s?, s:I, s:I}", "host",
                     c->host_id, "epoch", (json_int_t)c->epoch, "id", s->id,
                     "generation", (json_int_t)s->generation, "state", st,
                     "exit_code", (int)s->exit_code, "reason",
                     reason[0] ? reason : NULL, "started_ms",
                     (json_int_t)s->started_at_ms, "finished_ms",
                     (json_int_t)s->finished_at_ms);
    if (item == NULL) {
        item = json_pack("{s:s, s:I, s:s, s:I, s:s, s:i, s:s, s:I, s:I}",
                         "host", c->host_id, "epoch", (json_int_t)c->epoch,
                         "id", s->id, "generation", (json_int_t)s->generation,
                         "state", st, "exit_code", (int)s->exit_code,
                         "reason", "(reason not UTF-8)", "started_ms",
                         (json_int_t)s->started_at_ms, "finished_ms",
                         (json_int_t)s->finished_at_ms);
        if (item == NULL)
            return;
    }
    /* Guest channel reports (migrations/0009): acked config version, ready,
     * addresses (at most 64 of at most 255 bytes; others are dropped). */
    {
        json_t *addrs = json_array();
        size_t k;

        for (k = 0; k < s->n_addresses && json_array_size(addrs) < 64; k++) {
            size_t alen = strlen(s->addresses[k]);
            json_t *a = alen > 0 && alen <= 255
                            ? json_string(s->addresses[k])
                            : NULL;

            if (a != NULL)
                json_array_append_new(addrs, a);
        }
        json_object_set_new(item, "config_version",
                            json_integer((json_int_t)(s->config_version_acked &
                                                      INT64_MAX)));
        json_object_set_new(item, "ready", json_boolean(s->ready));
        json_object_set_new(item, "addresses", addrs);
    }
    if (gw->npending == gw->cap_pending) {
        gw->cap_pending = gw->cap_pending ? gw->cap_pending * 2 : 64;
        gw->pending =
            xrealloc(gw->pending, gw->cap_pending * sizeof(*gw->pending));
    }
    gw->pending[gw->npending].item = item;
    gw->pending[gw->npending].conn = conn_ref(c);
    gw->npending++;
    log_debug("host %s: instance %s %s", c->name, s->id, st);
    gw_status_flush(gw);
}

void
gw_status_items_free(struct gw_status *v, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        json_decref(v[i].item);
        conn_unref(v[i].conn);
    }
    free(v);
}

static void status_send(struct gateway *gw);

void
gw_status_retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    status_send(arg);
}

static void
on_status_done(const PGresult *res, const struct db_error *err, void *arg)
{
    struct gateway *gw = arg;
    int i, n;

    if (err != NULL) {
        if (gw->closed) {
            gw_status_items_free(gw->inflight, gw->ninflight);
            gw->inflight = NULL;
            gw->ninflight = 0;
            return;
        }
        if (err->status == 503) {
            /* No database right now: keep the batch, try again soon. */
            struct timeval tv = {GW_RETRY_MS / 1000, 0};

            log_warnx("cannot store %zu instance status reports, retrying: %s",
                      gw->ninflight, err->message);
            evtimer_add(gw->status_retry, &tv);
            return;
        }
        if (!gw->status_safe) {
            gw->status_safe = 1;
            status_send(gw);
            return;
        }
        log_warnx("dropping %zu instance status reports: %s", gw->ninflight,
                  err->message);
    } else {
        n = PQntuples(res);
        for (i = 0; i < n; i++) {
            long idx = strtol(PQgetvalue(res, i, AGENT_STATUS_IDX), NULL, 10);
            const char *why = PQgetvalue(res, i, AGENT_STATUS_REFUSED);
            struct gw_conn *c;

            if (idx < 0 || (size_t)idx >= gw->ninflight)
                continue;
            c = gw->inflight[idx].conn;
            log_info("host %s: instance status refused: %s", c->name, why);
            if (c->state == GW_READY)
                conn_send_error(c, CLOUD__AGENT__ERROR_CODE__ERROR_CODE_NOT_FOUND,
                                why);
        }
    }
    gw_status_items_free(gw->inflight, gw->ninflight);
    gw->inflight = NULL;
    gw->ninflight = 0;
    gw->status_safe = 0;
    if (!gw->closed)
        gw_status_flush(gw);
}

static void
status_send(struct gateway *gw)
{
    const char *vals[2];
    json_t *arr = json_array();
    char *js;
    size_t i;

    for (i = 0; i < gw->ninflight; i++)
        json_array_append(arr, gw->inflight[i].item);
    js = json_dumps(arr, JSON_COMPACT);
    json_decref(arr);
    if (js == NULL)
        fatalx("cannot serialise a JSON array");
    vals[0] = js;
    vals[1] = gw->status_safe ? "true" : "false";
    db_query(gw->db, store_stmt(ST_AGENT_STATUS), vals, on_status_done, gw);
    free(js);
}

/* Sends what is queued unless a batch is in flight (then its reply will). */
static void
gw_status_flush(struct gateway *gw)
{
    size_t n;

    if (gw->ninflight > 0 || gw->npending == 0)
        return;
    n = gw->npending < GW_STATUS_BATCH_MAX ? gw->npending : GW_STATUS_BATCH_MAX;
    gw->inflight = xcalloc(n, sizeof(*gw->inflight));
    memcpy(gw->inflight, gw->pending, n * sizeof(*gw->pending));
    gw->ninflight = n;
    memmove(gw->pending, gw->pending + n,
            (gw->npending - n) * sizeof(*gw->pending));
    gw->npending -= n;
    gw->status_safe = 0;
    status_send(gw);
}

/* ---- heartbeats (one statement per interval) ------------------------- */

/* The settings columns of a registration or heartbeat flush (seconds). */
void
gw_settings_note(struct gateway *gw, const PGresult *res, int down_col,
                 int fence_col)
{
    unsigned long down = strtoul(PQgetvalue(res, 0, down_col), NULL, 10);
    unsigned long fence = strtoul(PQgetvalue(res, 0, fence_col), NULL, 10);

    if (down * 1000 != gw->down_after_ms || fence * 1000 != gw->fence_after_ms)
        log_info("agents are told down_after %lu s, fence_after %lu s", down,
                 fence);
    gw->down_after_ms = (unsigned)down * 1000;
    gw->fence_after_ms = (unsigned)fence * 1000;
}

/*
 * The heartbeats of the flush are stored: each agent that asked gets a
 * HeartbeatAck of the seq the flush stored (its fence clock runs on them;
 * docs/agent.md "Fencing"). A failed flush acks nothing.
 */
static void
on_heartbeats_done(const PGresult *res, const struct db_error *err, void *arg)
{
    struct gateway *gw = arg;
    struct gw_conn *c;
    int ok = err == NULL && PQntuples(res) == 1;

    gw->hb_inflight = 0;
    if (err != NULL)
        log_warnx("cannot store heartbeats: %s", err->message);
    if (ok)
        gw_settings_note(gw, res, AGENT_HEARTBEATS_DOWN_AFTER,
                         AGENT_HEARTBEATS_FENCE_AFTER);
    for (c = gw->conns; c != NULL; c = c->next) {
        Cloud__Agent__Envelope env = CLOUD__AGENT__ENVELOPE__INIT;
        Cloud__Agent__HeartbeatAck ack = CLOUD__AGENT__HEARTBEAT_ACK__INIT;

        if (!c->hb_flushing)
            continue;
        c->hb_flushing = 0;
        if (!ok || c->state != GW_READY || !c->hb_acks)
            continue;
        ack.session_epoch = c->epoch;
        ack.seq = c->hb_flush_seq;
        ack.down_after_ms = gw->down_after_ms;
        ack.fence_after_ms = gw->fence_after_ms;
        ack.stored_after_ms = (uint32_t)c->hb_flush_wait;
        env.msg_case = CLOUD__AGENT__ENVELOPE__MSG_HEARTBEAT_ACK;
        env.heartbeat_ack = &ack;
        (void)conn_send(c, &env);
    }
}

void
gw_hb_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct gateway *gw = arg;
    const char *vals[1];
    struct gw_conn *c;
    json_t *arr;
    char *js;

    (void)fd;
    (void)what;
    if (gw->hb_inflight)
        return; /* the database is slow: the flags stay set for next time */
    arr = json_array();
    for (c = gw->conns; c != NULL; c = c->next) {
        if (c->state != GW_READY || !c->hb_pending)
            continue;
        c->hb_pending = 0;
        c->hb_flushing = 1;
        c->hb_flush_seq = c->hb_seq;
        c->hb_flush_wait = mono_ms() - c->hb_recv_ms;
        json_array_append_new(arr, json_pack("{s:s, s:I}", "id", c->host_id,
                                             "epoch", (json_int_t)c->epoch));
    }
    if (json_array_size(arr) == 0) {
        json_decref(arr);
        return;
    }
    js = json_dumps(arr, JSON_COMPACT);
    json_decref(arr);
    if (js == NULL)
        fatalx("cannot serialise a JSON array");
    vals[0] = js;
    gw->hb_inflight = 1;
    db_query(gw->hb_db, store_stmt(ST_AGENT_HEARTBEATS), vals, on_heartbeats_done,
             gw);
    free(js);
}

void
conn_on_heartbeat(struct gw_conn *c, const Cloud__Agent__Heartbeat *hb)
{
    if (hb->session_epoch != c->epoch) {
        conn_send_error(c, CLOUD__AGENT__ERROR_CODE__ERROR_CODE_STALE_EPOCH,
                        "Heartbeat carries a stale session epoch");
        conn_shutdown(c, "heartbeat for session %" PRIu64 ", current %" PRIu64,
                      hb->session_epoch, c->epoch);
        return;
    }
    c->hb_pending = 1;
    c->hb_seq = hb->seq;
    c->hb_recv_ms = mono_ms();
    /* The agent applied less than it was sent long ago: resend. */
    if (hb->applied_revision < c->revision && hb->seq % 8 == 7) {
        free(c->last_set);
        c->last_set = NULL;
        c->last_set_len = 0;
        c->dirty = 1;
        gw_kick(c->gw);
    }
}

