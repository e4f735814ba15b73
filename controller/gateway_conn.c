/*
 * gateway_conn: agent connections (see gateway.h; what the gateway files
 * share is gateway_priv.h). Owns the TLS listener and the connections
 * (reference counted: database callbacks hold a reference and a connection
 * is freed from a deferred event, never inside its own callback): TLS
 * identity, Hello -> register -> Welcome, reading frames, join and
 * revocation, blob requests, and the gateway's life cycle. Status and
 * heartbeats are gateway_status.c, desired sets gateway_desired.c, console
 * logs gateway_logs.c.
 *
 * Connection states: HANDSHAKE -> HELLO (TLS up, CN known) -> REGISTERING
 * (register query in flight, reads paused) -> READY -> CLOSING.
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

static void conn_on_join(struct gw_conn *c, const frame_envelope *env);
static void conn_arm_deadline(struct gw_conn *c);
static void gw_on_revocations(void *arg);

/* ---- connections ---------------------------------------------------- */

struct gw_conn *
conn_ref(struct gw_conn *c)
{
    c->refs++;
    return c;
}

void
conn_forget_ids(struct gw_conn *c)
{
    size_t i;

    for (i = 0; i < c->nids; i++) {
        if (strmap_get(&c->gw->owner, c->ids[i]) == c)
            strmap_del(&c->gw->owner, c->ids[i]);
        free(c->ids[i]);
    }
    free(c->ids);
    c->ids = NULL;
    c->nids = 0;
}

void
conn_unref(struct gw_conn *c)
{
    if (c == NULL || --c->refs > 0)
        return;
    if (c->prev)
        c->prev->next = c->next;
    else
        c->gw->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    gwblobs_free(c->blobs);
    if (c->bev)
        bufferevent_free(c->bev);
    if (c->close_ev)
        event_free(c->close_ev);
    conn_forget_ids(c);
    if (c->deadline_ev)
        event_free(c->deadline_ev);
    join_issue_clear(c->join);
    free(c->join);
    free(c->serial);
    free(c->name);
    free(c->host_id);
    free(c->last_set);
    free(c);
}

/* Deferred: frees the bufferevent (closing the socket) outside callbacks. */
static void
conn_close_cb(evutil_socket_t fd, short what, void *arg)
{
    struct gw_conn *c = arg;

    (void)fd;
    (void)what;
    if (c->bev) {
        bufferevent_free(c->bev);
        c->bev = NULL;
    }
    conn_unref(c); /* the reference the connection held on itself */
}

static void
conn_close_soon(struct gw_conn *c, int after_ms)
{
    struct timeval tv = {after_ms / 1000, (after_ms % 1000) * 1000};

    if (c->close_ev == NULL)
        c->close_ev = evtimer_new(c->gw->base, conn_close_cb, c);
    if (c->close_ev == NULL)
        fatalx("cannot allocate a timer");
    evtimer_add(c->close_ev, &tv);
}

static void
conn_drained_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    conn_close_soon(arg, 0);
}

void
conn_shutdown(struct gw_conn *c, const char *fmt, ...)
{
    char why[512];
    va_list ap;

    if (c->state == GW_CLOSING)
        return;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    log_info("agent %s (%s): closing: %s", c->name ? c->name : "?", c->addr,
             why);
    c->state = GW_CLOSING;
    if (c->host_id && strmap_get(&c->gw->by_host, c->host_id) == c) {
        strmap_del(&c->gw->by_host, c->host_id);
        if (c->gw->on_links)
            c->gw->on_links(c->gw->links_arg);
    }
    conn_forget_ids(c);
    conn_logs_lost(c, why);
    gwblobs_stop(c->blobs);
    if (c->bev == NULL) {
        conn_close_soon(c, 0);
        return;
    }
    bufferevent_disable(c->bev, EV_READ);
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) {
        conn_close_soon(c, 0);
    } else {
        /* Let an Error frame reach the agent, but not forever. */
        bufferevent_setcb(c->bev, NULL, conn_drained_cb, NULL, c);
        conn_close_soon(c, 2000);
    }
}

int
conn_send(struct gw_conn *c, const frame_envelope *env)
{
    struct evbuffer *out;

    if (c->state == GW_CLOSING || c->bev == NULL)
        return -1;
    out = bufferevent_get_output(c->bev);
    if (evbuffer_get_length(out) > GW_MAX_OUTPUT) {
        conn_shutdown(c, "agent does not read: over %u bytes queued",
                      GW_MAX_OUTPUT);
        return -1;
    }
    if (frame_encode_evbuffer(out, env) < 0) {
        log_warnx("agent %s: cannot encode a %s frame", c->name,
                  frame_msg_name(env));
        return -1;
    }
    return 0;
}

void
conn_send_error(struct gw_conn *c, Cloud__Agent__ErrorCode code,
                const char *msg)
{
    Cloud__Agent__Envelope env = CLOUD__AGENT__ENVELOPE__INIT;
    Cloud__Agent__Error err = CLOUD__AGENT__ERROR__INIT;

    err.code = code;
    err.message = (char *)msg;
    env.msg_case = CLOUD__AGENT__ENVELOPE__MSG_ERROR;
    env.error = &err;
    (void)conn_send(c, &env);
}

/* ---- TLS: identity from the client certificate ----------------------- */

/* The certificate's CN as a new string, NULL (logged) if unusable. */
static char *
conn_peer_cn(struct gw_conn *c, SSL *ssl)
{
    X509 *peer = SSL_get1_peer_certificate(ssl);
    const char *why;
    char *cn = NULL;

    if (peer == NULL) {
        log_warnx("agent at %s: no client certificate", c->addr);
        return NULL;
    }
    cn = pki_only_cn(X509_get_subject_name(peer), &why);
    if (cn == NULL) {
        log_warnx("agent at %s: the client certificate %s", c->addr, why);
        goto cleanup;
    }
    if (pki_name_valid(cn) < 0) {
        log_warnx("agent at %s: certificate CN %s is not a valid host name",
                  c->addr, cn);
        free(cn);
        cn = NULL;
    }

cleanup:
    X509_free(peer);
    return cn;
}

/* ---- Hello -> register -> Welcome ------------------------------------- */

static const char *
hv_name_ok(const char *t)
{
    static const char *const ok[] = {"kvm", "qemu", "xen", "test"};
    size_t i;

    for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        if (t != NULL && strcmp(t, ok[i]) == 0)
            return ok[i];
    return NULL;
}

static void
on_registered(const PGresult *res, const struct db_error *err, void *arg)
{
    struct gw_conn *c = arg, *old;
    Cloud__Agent__Envelope env = CLOUD__AGENT__ENVELOPE__INIT;
    Cloud__Agent__Welcome w = CLOUD__AGENT__WELCOME__INIT;
    struct gateway *gw = c->gw;
    unsigned long long epoch;
    char *end;

    if (c->state != GW_REGISTERING)
        goto done;
    if (err != NULL || PQntuples(res) != 1) {
        log_warnx("host %s: cannot register: %s", c->name,
                  err ? err->message : "no row");
        conn_send_error(c, CLOUD__AGENT__ERROR_CODE__ERROR_CODE_INTERNAL,
                        "cannot register the host; try again");
        conn_shutdown(c, "registration failed");
        goto done;
    }
    epoch =
        strtoull(PQgetvalue(res, 0, AGENT_REGISTER_SESSION_EPOCH), &end, 10);
    if (*end != '\0') {
        conn_shutdown(c, "registration returned a bad epoch");
        goto done;
    }
    c->host_id = xstrdup(PQgetvalue(res, 0, AGENT_REGISTER_HOST_ID));
    c->epoch = epoch;
    old = strmap_get(&gw->by_host, c->host_id);
    if (old != NULL && old != c)
        conn_shutdown(old, "superseded by session %" PRIu64 " from %s",
                      c->epoch, c->addr);
    strmap_put(&gw->by_host, c->host_id, c);
    w.host_id = c->host_id;
    w.session_epoch = c->epoch;
    w.heartbeat_interval_ms = gw->cfg.heartbeat_ms;
    gw_settings_note(gw, res, AGENT_REGISTER_DOWN_AFTER,
                     AGENT_REGISTER_FENCE_AFTER);
    w.down_after_ms = gw->down_after_ms;
    w.fence_after_ms = gw->fence_after_ms;
    w.heartbeat_acks = c->hb_acks;
    w.protocol_version = CLOUD__AGENT__PROTOCOL_VERSION__PROTOCOL_VERSION_1;
    env.msg_case = CLOUD__AGENT__ENVELOPE__MSG_WELCOME;
    env.welcome = &w;
    if (conn_send(c, &env) < 0) {
        conn_shutdown(c, "cannot send Welcome");
        goto done;
    }
    c->state = GW_READY;
    log_info("host %s (%s) registered from %s, session %" PRIu64, c->name,
             c->host_id, c->addr, c->epoch);
    if (gw->on_links)
        gw->on_links(gw->links_arg);
    {
        /* Three missed heartbeats end the session. */
        unsigned ms = gw->cfg.heartbeat_ms * 3 < 10000 ? 10000
                                                       : gw->cfg.heartbeat_ms * 3;
        struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

        bufferevent_set_timeouts(c->bev, &tv, NULL);
    }
    bufferevent_enable(c->bev, EV_READ);
    c->dirty = 1;
    gw_kick(gw);
    gw_net_send(c);

done:
    conn_unref(c);
}

static void
conn_on_hello(struct gw_conn *c, const Cloud__Agent__Hello *h)
{
    const char *hv;
    const char *vals[1];
    json_t *p, *labels, *running;
    struct in_addr ua;
    char *js;
    size_t i;

    if (h->protocol_version !=
        CLOUD__AGENT__PROTOCOL_VERSION__PROTOCOL_VERSION_1) {
        conn_send_error(c,
                        CLOUD__AGENT__ERROR_CODE__ERROR_CODE_PROTOCOL_VERSION,
                        "this controller speaks protocol version 1");
        conn_shutdown(c, "protocol version %d", (int)h->protocol_version);
        return;
    }
    if (h->host_name[0] != '\0' && strcmp(h->host_name, c->name) != 0) {
        conn_send_error(c,
                        CLOUD__AGENT__ERROR_CODE__ERROR_CODE_UNAUTHENTICATED,
                        "the host name differs from the certificate's CN");
        conn_shutdown(c, "Hello names host %.64s but the certificate is for %s",
                      h->host_name, c->name);
        return;
    }
    hv = hv_name_ok(h->facts ? h->facts->domain_type : NULL);
    if (h->capacity == NULL || hv == NULL || h->n_labels > GW_LABELS_MAX ||
        h->capacity->vcpus > 1000000 ||
        h->capacity->memory_mib > (1ull << 40) ||
        h->capacity->disk_gib > (1ull << 40)) {
        conn_send_error(c, CLOUD__AGENT__ERROR_CODE__ERROR_CODE_UNSUPPORTED,
                        "Hello needs capacity, a domain type of kvm, qemu, "
                        "xen or test, and at most 64 labels");
        conn_shutdown(c, "unusable Hello");
        return;
    }
    labels = json_object();
    for (i = 0; i < h->n_labels; i++) {
        const char *k = h->labels[i]->key, *v = h->labels[i]->value;

        if (k[0] == '\0' || strlen(k) > 63 || strlen(v) > 255) {
            json_decref(labels);
            conn_send_error(c,
                            CLOUD__AGENT__ERROR_CODE__ERROR_CODE_UNSUPPORTED,
                            "label keys are 1..63 bytes, values up to 255");
            conn_shutdown(c, "bad label");
            return;
        }
        json_object_set_new(labels, k, json_string(v));
    }
    /* What runs there: lost instances of the host that still run are
     * taken back at registration (cloud_agent_register, partition_policy
     * keep), the others retired. */
    running = json_array();
    for (i = 0; i < h->n_instances; i++) {
        const Cloud__Agent__InstanceRef *ref = h->instances[i];

        if (ref->state == CLOUD__AGENT__OBSERVED_INSTANCE_STATE__OBSERVED_INSTANCE_STATE_RUNNING &&
            gw_id_ok(ref->id))
            json_array_append_new(running, json_string(ref->id));
    }
    /* The overlay's tunnel end: an IPv4 address, or none from an agent
     * that does not build the host network (docs/network.md). */
    if (h->host_network ? inet_pton(AF_INET, h->underlay_address, &ua) != 1
                        : h->underlay_address[0] != '\0') {
        json_decref(labels);
        json_decref(running);
        conn_send_error(c, CLOUD__AGENT__ERROR_CODE__ERROR_CODE_UNSUPPORTED,
                        "Hello.underlay_address must be the IPv4 address of "
                        "a host that builds the host network, and empty "
                        "otherwise");
        conn_shutdown(c, "bad underlay address %.64s", h->underlay_address);
        return;
    }
    p = json_pack("{s:s, s:s, s:I, s:I, s:I, s:s, s:s, s:o, s:o, s:s}", "name", c->name,
                  "address", c->addr, "vcpus", (json_int_t)h->capacity->vcpus,
                  "memory_mib", (json_int_t)h->capacity->memory_mib,
                  "disk_gib", (json_int_t)h->capacity->disk_gib,
                  "hypervisor", hv, "arch", h->facts->arch, "labels", labels,
                  "running", running, "underlay", h->underlay_address);
    if (p == NULL) {
        /* Not UTF-8: jansson refuses the string. */
        conn_send_error(c, CLOUD__AGENT__ERROR_CODE__ERROR_CODE_UNSUPPORTED,
                        "Hello strings must be UTF-8");
        conn_shutdown(c, "Hello strings are not UTF-8");
        return;
    }
    js = json_dumps(p, JSON_COMPACT);
    json_decref(p);
    if (js == NULL)
        fatalx("cannot serialise a JSON object");
    log_info("host %s: Hello from %s (agent %.32s, %s, %u vcpus, %" PRIu64
             " MiB, %zu instances found)",
             c->name, c->addr, h->agent_version, hv, h->capacity->vcpus,
             h->capacity->memory_mib, h->n_instances);
    c->set_max = h->desired_set_max;
    c->hb_acks = h->heartbeat_acks;
    c->hostnet = h->host_network;
    c->state = GW_REGISTERING;
    bufferevent_disable(c->bev, EV_READ);
    vals[0] = js;
    db_query(c->gw->db, store_stmt(ST_AGENT_REGISTER), vals, on_registered,
             conn_ref(c));
    free(js);
}


/* ---- blob downloads (gateway_blobs.c) --------------------------------- */

static int
blob_send(void *conn, const frame_envelope *env)
{
    return conn_send(conn, env);
}

static void
conn_on_blob_request(struct gw_conn *c, const Cloud__Agent__BlobRequest *q)
{
    if (c->state != GW_READY || c->bev == NULL)
        return; /* only a registered agent's session fetches blobs */
    if (c->gw->cfg.blob_dir == NULL) {
        conn_send_error(c, CLOUD__AGENT__ERROR_CODE__ERROR_CODE_UNSUPPORTED,
                        "this controller has no blob store");
        return;
    }
    if (c->blobs == NULL)
        c->blobs = gwblobs_new(c->gw->base, c->bev, c->gw->cfg.blob_store,
                               c->name, blob_send, c);
    gwblobs_request(c->blobs, q);
}

/* ---- join and revocation (join.c) ----------------------------------- */

static void
conn_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    struct gw_conn *c = arg;

    (void)fd;
    (void)what;
    if (c->state == GW_HANDSHAKE || c->state == GW_HELLO ||
        c->state == GW_JOIN)
        conn_shutdown(c, "no Hello or JoinRequest within %u ms of connecting",
                      c->gw->cfg.first_frame_ms);
}

/* Unlike the idle read timeout, not reset by every byte (slow clients). */
static void
conn_arm_deadline(struct gw_conn *c)
{
    unsigned ms = c->gw->cfg.first_frame_ms ? c->gw->cfg.first_frame_ms
                                            : GW_FIRST_FRAME_MS;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

    c->gw->cfg.first_frame_ms = ms;
    c->deadline_ev = evtimer_new(c->gw->base, conn_deadline_cb, c);
    if (c->deadline_ev == NULL || evtimer_add(c->deadline_ev, &tv) < 0)
        fatalx("cannot start a connection deadline");
}

static void
on_joined(const PGresult *res, const struct db_error *err, void *arg)
{
    struct gw_conn *c = arg;
    Cloud__Agent__Envelope env = CLOUD__AGENT__ENVELOPE__INIT;
    Cloud__Agent__JoinResponse jr = CLOUD__AGENT__JOIN_RESPONSE__INIT;
    struct join_issue *is = c->join;

    if (c->state == GW_CLOSING || is == NULL)
        goto done;
    if (err != NULL || PQntuples(res) != 1) {
        log_warnx("agent at %s: cannot record the join of %s: %s", c->addr,
                  is->host, err ? err->message : "no row");
        conn_send_error(c, CLOUD__AGENT__ERROR_CODE__ERROR_CODE_INTERNAL,
                        "cannot record the join; try again");
        conn_shutdown(c, "join not recorded");
        goto done;
    }
    if (!PQgetisnull(res, 0, 0)) {
        conn_send_error(c, CLOUD__AGENT__ERROR_CODE__ERROR_CODE_UNAUTHENTICATED,
                        PQgetvalue(res, 0, 0));
        conn_shutdown(c, "join of %s refused: %s", is->host,
                      PQgetvalue(res, 0, 0));
        goto done;
    }
    jr.cert_pem = is->cert_pem;
    jr.ca_pem = is->ca_pem;
    jr.host_name = is->host;
    env.msg_case = CLOUD__AGENT__ENVELOPE__MSG_JOIN_RESPONSE;
    env.join_response = &jr;
    if (conn_send(c, &env) < 0) {
        conn_shutdown(c, "cannot send JoinResponse");
        goto done;
    }
    log_info("host %s joined from %s: certificate %s valid until %s",
             is->host, c->addr, is->serial, is->not_after);
    conn_shutdown(c, "joined as %s", is->host);

done:
    conn_unref(c);
}

static void
conn_on_join(struct gw_conn *c, const frame_envelope *env)
{
    const Cloud__Agent__JoinRequest *q = env->join_request;
    const char *vals[6];
    char why[256];
    unsigned retry;

    if (env->msg_case != CLOUD__AGENT__ENVELOPE__MSG_JOIN_REQUEST) {
        conn_send_error(c, CLOUD__AGENT__ERROR_CODE__ERROR_CODE_UNAUTHENTICATED,
                        "no client certificate: only a JoinRequest is accepted");
        conn_shutdown(c, "no client certificate and the first message was %s, not join_request",
                      frame_msg_name(env));
        return;
    }
    if (join_admit(c->gw->join, c->addr, &retry, why, sizeof(why)) < 0) {
        Cloud__Agent__Envelope renv = CLOUD__AGENT__ENVELOPE__INIT;
        Cloud__Agent__Error err = CLOUD__AGENT__ERROR__INIT;

        err.code = CLOUD__AGENT__ERROR_CODE__ERROR_CODE_RATE_LIMITED;
        err.message = why;
        err.retry_after_s = retry;
        renv.msg_case = CLOUD__AGENT__ENVELOPE__MSG_ERROR;
        renv.error = &err;
        (void)conn_send(c, &renv);
        conn_shutdown(c, "join refused: %s", why);
        return;
    }
    c->join = xcalloc(1, sizeof(*c->join));
    if (join_prepare(c->gw->join, q->token, q->host_name, q->csr_pem, c->join,
                     why, sizeof(why)) < 0) {
        conn_send_error(c, CLOUD__AGENT__ERROR_CODE__ERROR_CODE_UNAUTHENTICATED,
                        why);
        conn_shutdown(c, "join refused: %s", why);
        return;
    }
    c->state = GW_REGISTERING;
    bufferevent_disable(c->bev, EV_READ);
    vals[0] = c->join->token_id;
    vals[1] = c->join->token_sha;
    vals[2] = c->join->host;
    vals[3] = c->join->serial;
    vals[4] = c->join->not_after;
    vals[5] = c->addr;
    db_query(c->gw->db, store_stmt(ST_JOIN_COMPLETE), vals, on_joined,
             conn_ref(c));
}

/* The revocation set was re-read: drop agents whose certificate is in it. */
static void
gw_on_revocations(void *arg)
{
    struct gateway *gw = arg;
    struct gw_conn *c;

    for (c = gw->conns; c != NULL; c = c->next) {
        if (c->state == GW_CLOSING || !join_revoked(gw->join, c->serial))
            continue;
        conn_send_error(c, CLOUD__AGENT__ERROR_CODE__ERROR_CODE_UNAUTHENTICATED,
                        "this certificate was revoked");
        conn_shutdown(c, "certificate %s was revoked", c->serial);
    }
}

/* ---- reading frames -------------------------------------------------- */

static void
conn_dispatch(struct gw_conn *c, const frame_envelope *env)
{
    if (c->state == GW_JOIN) {
        conn_on_join(c, env);
        return;
    }
    if (c->state == GW_HELLO) {
        if (env->msg_case != CLOUD__AGENT__ENVELOPE__MSG_HELLO) {
            conn_send_error(c, CLOUD__AGENT__ERROR_CODE__ERROR_CODE_UNSUPPORTED,
                            "the first message must be Hello");
            conn_shutdown(c, "first message was %s, not hello",
                          frame_msg_name(env));
            return;
        }
        conn_on_hello(c, env->hello);
        return;
    }
    switch (env->msg_case) {
    case CLOUD__AGENT__ENVELOPE__MSG_HEARTBEAT:
        conn_on_heartbeat(c, env->heartbeat);
        break;
    case CLOUD__AGENT__ENVELOPE__MSG_INSTANCE_STATUS:
        conn_on_status(c, env->instance_status);
        break;
    case CLOUD__AGENT__ENVELOPE__MSG_ERROR:
        log_warnx("host %s: agent reports error %d: %.256s", c->name,
                  (int)env->error->code, env->error->message);
        break;
    case CLOUD__AGENT__ENVELOPE__MSG_LOG_CHUNK:
        conn_on_log_chunk(c, env->log_chunk);
        break;
    case CLOUD__AGENT__ENVELOPE__MSG_BLOB_REQUEST:
        conn_on_blob_request(c, env->blob_request);
        break;
    default:
        conn_send_error(c, CLOUD__AGENT__ERROR_CODE__ERROR_CODE_UNSUPPORTED,
                        "unexpected message");
        log_info("host %s: unexpected %s message ignored", c->name,
                 frame_msg_name(env));
        break;
    }
}

static void
conn_read_cb(struct bufferevent *bev, void *arg)
{
    struct gw_conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    char err[256];

    while (c->state == GW_HELLO || c->state == GW_JOIN ||
           c->state == GW_READY) {
        frame_envelope *env = NULL;
        enum frame_status st =
            frame_decode_evbuffer(in, NULL, &env, err, sizeof(err));

        if (st == FRAME_NEED_MORE)
            break;
        if (st == FRAME_ERROR) {
            conn_send_error(c, CLOUD__AGENT__ERROR_CODE__ERROR_CODE_BAD_FRAME,
                            err);
            conn_shutdown(c, "bad frame: %s", err);
            break;
        }
        conn_dispatch(c, env);
        frame_envelope_free(env);
    }
}

static void
conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct gw_conn *c = arg;
    char buf[256] = "";

    if (what & BEV_EVENT_CONNECTED) {
        SSL *ssl = bufferevent_openssl_get_ssl(bev);

        if (SSL_get0_peer_certificate(ssl) == NULL) {
            /* Verified by OpenSSL if present; without one the only thing
             * this connection may do is join (conn_on_join). */
            c->state = GW_JOIN;
            log_debug("agent at %s: TLS session without a client certificate (%s)",
                      c->addr, SSL_get_version(ssl));
            return;
        }
        c->name = conn_peer_cn(c, ssl);
        if (c->name == NULL) {
            conn_shutdown(c, "no usable client certificate");
            return;
        }
        c->serial = xmalloc(PIN_SERIAL_MAX);
        if (pin_serial(SSL_get0_peer_certificate(ssl), c->serial,
                       PIN_SERIAL_MAX) < 0) {
            conn_shutdown(c, "the client certificate's serial is unusable");
            return;
        }
        if (join_revoked(c->gw->join, c->serial)) {
            conn_send_error(c, CLOUD__AGENT__ERROR_CODE__ERROR_CODE_UNAUTHENTICATED,
                            "this certificate is revoked");
            conn_shutdown(c, "certificate %s is revoked", c->serial);
            return;
        }
        c->state = GW_HELLO;
        log_debug("agent %s: TLS session from %s (%s)", c->name, c->addr,
                  SSL_get_version(ssl));
        return;
    }
    tlsev_error(bev, "client", buf, sizeof(buf));
    if (what & BEV_EVENT_TIMEOUT)
        conn_shutdown(c, c->state == GW_READY
                             ? "no heartbeat for three intervals"
                             : "no Hello in time");
    else if (what & BEV_EVENT_EOF)
        conn_shutdown(c, "agent closed the connection");
    else
        conn_shutdown(c, "connection error: %s",
                      buf[0] ? buf : evutil_socket_error_to_string(
                                         EVUTIL_SOCKET_ERROR()));
}

static void
accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
          int salen, void *arg)
{
    struct gateway *gw = arg;
    struct gw_conn *c;
    struct timeval tv = {GW_HELLO_TIMEOUT_S, 0};
    SSL *ssl;

    (void)l;
    (void)salen;
    ssl = SSL_new(gw->ssl);
    if (ssl == NULL) {
        log_warnx("cannot create a TLS session for an agent");
        evutil_closesocket(fd);
        return;
    }
    /* Frames are small and latency matters (a config line to a guest). */
    if (netopt_nodelay(fd) < 0)
        log_warn("cannot set TCP_NODELAY on an agent connection");
    c = xcalloc(1, sizeof(*c));
    c->refs = 1;
    c->gw = gw;
    c->state = GW_HANDSHAKE;
    if (sa->sa_family == AF_INET)
        evutil_inet_ntop(AF_INET, &((struct sockaddr_in *)sa)->sin_addr,
                         c->addr, sizeof(c->addr));
    else if (sa->sa_family == AF_INET6)
        evutil_inet_ntop(AF_INET6, &((struct sockaddr_in6 *)sa)->sin6_addr,
                         c->addr, sizeof(c->addr));
    c->next = gw->conns;
    if (gw->conns)
        gw->conns->prev = c;
    gw->conns = c;
    c->bev = bufferevent_openssl_socket_new(gw->base, fd, ssl,
                                            BUFFEREVENT_SSL_ACCEPTING,
                                            BEV_OPT_CLOSE_ON_FREE);
    if (c->bev == NULL) {
        log_warnx("cannot create a TLS bufferevent for %s", c->addr);
        SSL_free(ssl);
        evutil_closesocket(fd);
        conn_shutdown(c, "out of resources");
        return;
    }
    bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
    bufferevent_setcb(c->bev, conn_read_cb, NULL, conn_event_cb, c);
    bufferevent_set_timeouts(c->bev, &tv, NULL);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    conn_arm_deadline(c);
}

static void
listen_error_cb(struct evconnlistener *l, void *arg)
{
    (void)l;
    (void)arg;
    /* EMFILE and friends: libevent keeps listening; say so once per burst. */
    log_warn("agent gateway: accept failed");
}

/* ---- life cycle ------------------------------------------------------ */

/* mTLS (tlsctx.h TLSCTX_PEER_CA): a client certificate must be of our CA;
 * a client without one may only send a JoinRequest (conn_on_join). The CA
 * goes in the chain sent, so that a joining agent can check it against its
 * pin. */
static SSL_CTX *
gw_ssl_ctx(const struct pki_paths *p)
{
    struct tlsctx_opts o = {.role = TLSCTX_SERVER,
                            .peer = TLSCTX_PEER_CA,
                            .cert = p->cert,
                            .key = p->key,
                            .ca = p->ca_cert};
    char why[TLSCTX_WHY_MAX];
    SSL_CTX *ctx = tlsctx_new(&o, why, sizeof(why));

    if (ctx == NULL)
        log_warnx("agent gateway: cannot set up TLS: %s", why);
    return ctx;
}

struct gateway *
gateway_new(struct event_base *base, struct db_pool *db, struct watch *watch,
            const struct gateway_config *cfg)
{
    struct gateway *gw;
    struct timeval hb, rs;
    struct watch_observer obs;

    gw = xcalloc(1, sizeof(*gw));
    gw->base = base;
    gw->db = db;
    gw->hb_db = cfg->hb_db ? cfg->hb_db : db;
    gw->cfg = *cfg;
    gw->ssl = gw_ssl_ctx(cfg->pki);
    if (gw->ssl == NULL) {
        free(gw);
        return NULL;
    }
    gw->join = join_new(base, db, cfg->pki, gw_on_revocations, gw);
    if (gw->join == NULL) {
        SSL_CTX_free(gw->ssl);
        free(gw);
        return NULL;
    }
    strmap_init(&gw->by_host);
    strmap_init(&gw->owner);
    strmap_init(&gw->unknown);
    strmap_init(&gw->cfg_services);
    gw->hb_timer = event_new(base, -1, EV_PERSIST, gw_hb_timer_cb, gw);
    gw->resync_timer = event_new(base, -1, EV_PERSIST, gw_resync_cb, gw);
    gw->kick_ev = event_new(base, -1, 0, gw_kick_cb, gw);
    gw->status_retry = evtimer_new(base, gw_status_retry_cb, gw);
    gw->cfg_settle = evtimer_new(base, gw_cfg_settle_cb, gw);
    if (gw->hb_timer == NULL || gw->resync_timer == NULL ||
        gw->kick_ev == NULL || gw->status_retry == NULL ||
        gw->cfg_settle == NULL)
        fatalx("cannot allocate the gateway's timers");
    hb.tv_sec = cfg->heartbeat_ms / 1000;
    hb.tv_usec = (cfg->heartbeat_ms % 1000) * 1000;
    rs.tv_sec = cfg->resync_ms / 1000;
    rs.tv_usec = (cfg->resync_ms % 1000) * 1000;
    if (evtimer_add(gw->hb_timer, &hb) < 0 ||
        evtimer_add(gw->resync_timer, &rs) < 0)
        fatalx("cannot start the gateway's timers");
    memset(&obs, 0, sizeof(obs));
    obs.on_event = gw_on_event;
    obs.on_event_row = gw_on_event_row;
    obs.on_batch = gw_on_batch;
    obs.on_reconnect = gw_on_reconnect;
    obs.arg = gw;
    watch_observe(watch, &obs);
    return gw;
}

int
gateway_listen(struct gateway *gw, const char *host, unsigned short port,
               unsigned short *bound)
{
    struct sockaddr_storage ss;
    int sslen = sizeof(ss);
    char *spec;
    evutil_socket_t fd;

    memset(&ss, 0, sizeof(ss));
    spec = strchr(host, ':') ? xasprintf("[%s]:%u", host, port)
                             : xasprintf("%s:%u", host, port);
    if (evutil_parse_sockaddr_port(spec, (struct sockaddr *)&ss, &sslen) < 0) {
        log_warnx("agent gateway: %s is not an address", spec);
        free(spec);
        return -1;
    }
    gw->listener = evconnlistener_new_bind(
        gw->base, accept_cb, gw,
        LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC, 128,
        (struct sockaddr *)&ss, sslen);
    if (gw->listener == NULL) {
        log_warn("agent gateway: cannot listen on %s", spec);
        free(spec);
        return -1;
    }
    evconnlistener_set_error_cb(gw->listener, listen_error_cb);
    fd = evconnlistener_get_fd(gw->listener);
    sslen = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, (socklen_t *)&sslen) == 0)
        *bound = ntohs(ss.ss_family == AF_INET6
                           ? ((struct sockaddr_in6 *)&ss)->sin6_port
                           : ((struct sockaddr_in *)&ss)->sin_port);
    else
        *bound = port;
    gw->port = *bound;
    log_info("agent gateway listening on %s (mTLS)", spec);
    free(spec);
    return 0;
}

int
gateway_agents(const struct gateway *gw)
{
    return gw ? (int)gw->by_host.len : 0;
}

struct join *
gateway_join(struct gateway *gw)
{
    return gw ? gw->join : NULL;
}

unsigned short
gateway_port(const struct gateway *gw)
{
    return gw ? gw->port : 0;
}

void
gateway_close(struct gateway *gw)
{
    struct gw_conn *c;

    if (gw == NULL || gw->closed)
        return;
    gw->closed = 1;
    evtimer_del(gw->cfg_settle);
    if (gw->listener) {
        evconnlistener_free(gw->listener);
        gw->listener = NULL;
    }
    for (c = gw->conns; c != NULL; c = c->next) {
        if (c->state != GW_CLOSING)
            conn_shutdown(c, "controller shutting down");
        if (c->bev) {
            bufferevent_free(c->bev);
            c->bev = NULL;
        }
    }
}

void
gateway_free(struct gateway *gw)
{
    struct gw_conn *c;
    size_t i;

    if (gw == NULL)
        return;
    gateway_close(gw);
    gw_status_items_free(gw->pending, gw->npending);
    gw_status_items_free(gw->inflight, gw->ninflight);
    /* The pool has failed every query by now: what is left holds only its
     * own reference (or a few from the status queues just freed). */
    while ((c = gw->conns) != NULL) {
        c->refs = 1;
        conn_unref(c);
    }
    for (i = 0; i < gw->unknown.cap; i++)
        if (gw->unknown.keys[i] != NULL)
            free(gw->unknown.vals[i]);
    strmap_fini(&gw->unknown);
    gw_cfg_clear(gw);
    strmap_fini(&gw->cfg_services);
    strmap_fini(&gw->by_host);
    strmap_fini(&gw->owner);
    event_free(gw->hb_timer);
    event_free(gw->resync_timer);
    event_free(gw->kick_ev);
    event_free(gw->status_retry);
    event_free(gw->cfg_settle);
    SSL_CTX_free(gw->ssl);
    join_free(gw->join);
    free(gw);
}

