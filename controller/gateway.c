/*
 * gateway: agent connections (see gateway.h). Owns the TLS listener, the
 * connections (reference counted: database callbacks hold a reference and
 * a connection is freed from a deferred event, never inside its own
 * callback), the heartbeat and status batches, and the map from instance id
 * to the connection whose desired set holds it.
 *
 * Connection states: HANDSHAKE -> HELLO (TLS up, CN known) -> REGISTERING
 * (register query in flight, reads paused) -> READY -> CLOSING.
 */
#define LOG_MODULE "gateway"

#include "gateway.h"

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

#define GW_HELLO_TIMEOUT_S 15
#define GW_FIRST_FRAME_MS 10000 /* default of cfg.first_frame_ms */
#define GW_MAX_OUTPUT (64u * 1024u * 1024u) /* a slower agent is dropped */
#define GW_STATUS_BATCH_MAX 2000
#define GW_STATUS_QUEUE_MAX 200000
#define GW_DESIRED_INFLIGHT_MAX 32
#define GW_UNKNOWN_MAX 10000
#define GW_LABELS_MAX 64
#define GW_RETRY_MS 1000
#define GW_LOG_CHUNK_MAX (256u * 1024u) /* agents send <= 64 KiB */
/* After a config push, the hosts' desired sets catch up this much later
 * (off the push's path; see on_cfg_push). */
#define GW_CFG_SETTLE_MS 300
/* A desired set over this (packed) goes in parts of at most this much each
 * (agent.proto DesiredState.part/parts), well under FRAME_MAX: one
 * instance larger than that (inline configs) goes alone in its part. */
#define GW_DESIRED_PART_MAX (1024u * 1024u)
/* What a part adds beside its instances: session_epoch, revision,
 * leader_epoch, part, parts, the envelope's tag and length. */
#define GW_DESIRED_PART_OVERHEAD 64u

enum gw_state {
    GW_HANDSHAKE = 0,
    GW_HELLO,
    GW_JOIN, /* TLS up without a client certificate: one JoinRequest */
    GW_REGISTERING,
    GW_READY,
    GW_CLOSING,
};

struct gw_conn {
    int refs;
    struct gateway *gw;
    struct gw_conn *prev, *next; /* gw->conns: every connection not freed */
    struct bufferevent *bev;
    struct event *close_ev;
    enum gw_state state;
    char addr[INET6_ADDRSTRLEN];
    char *name; /* certificate CN: the only host this agent speaks for */
    char *serial;              /* its serial (revocation, join.c) */
    struct join_issue *join;   /* GW_JOIN: the certificate being recorded */
    struct event *deadline_ev; /* first frame (Hello/JoinRequest) deadline */
    char *host_id;
    uint64_t epoch;
    /* desired set */
    int dirty, desired_inflight;
    uint64_t revision;
    uint8_t *last_set; /* packed instances of the last set sent */
    size_t last_set_len;
    /* Hello.desired_set_max: most bytes of a set in parts the agent takes;
     * 0 for an agent before parts, which gets only one-frame sets */
    uint64_t set_max;
    char **ids; /* instance ids of the last set read (owners in gw->owner) */
    size_t nids;
    /* heartbeats */
    int hb_pending;
    uint64_t hb_seq;
    int nlogs; /* console log streams through this agent */
    struct gwblobs *blobs; /* blob downloads (gateway_blobs.c), or NULL */
    int cfg_stale; /* ConfigUpdates pushed: the set is re-read later */
};

/* A console log stream (gateway_log_open). */
struct gw_log {
    struct gw_log *prev, *next; /* gw->logs */
    uint64_t id;
    struct gw_conn *conn; /* not referenced: dropped in conn_shutdown */
    struct gateway_log_sink sink;
    void *arg;
};

struct gw_status {
    json_t *item;
    struct gw_conn *conn; /* referenced */
};

struct gateway {
    struct event_base *base;
    struct db_pool *db;
    struct gateway_config cfg;
    SSL_CTX *ssl;
    struct evconnlistener *listener;
    struct join *join; /* enrolment and the revocation set (join.c) */
    unsigned short port; /* bound */
    struct gw_conn *conns;
    struct strmap by_host; /* host id -> READY conn (key: conn->host_id) */
    struct strmap owner;   /* instance id -> conn (key: a conn->ids entry) */
    struct strmap unknown; /* instance ids seen in events, owner unknown */
    /* services whose effective config changed (config events), pending a
     * lookup of their hosts (gateway_config.h) */
    struct strmap cfg_services;
    int cfg_inflight;
    struct event *hb_timer, *resync_timer, *kick_ev, *status_retry;
    struct event *cfg_settle; /* re-reads the sets of cfg_stale hosts */
    int hb_inflight, hosts_inflight, desired_inflight;
    /* status group commit */
    struct gw_status *pending, *inflight;
    size_t npending, cap_pending, ninflight;
    int status_safe;
    int closed;
    /* console log streams */
    struct gw_log *logs;
    int nlogs;
    uint64_t next_log_id;
};

static void conn_shutdown(struct gw_conn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void conn_logs_lost(struct gw_conn *c, const char *why);
static void gw_kick(struct gateway *gw);
static void gw_status_flush(struct gateway *gw);
static void conn_on_join(struct gw_conn *c, const frame_envelope *env);
static void conn_arm_deadline(struct gw_conn *c);
static void gw_on_revocations(void *arg);

/* ---- connections ---------------------------------------------------- */

static struct gw_conn *
conn_ref(struct gw_conn *c)
{
    c->refs++;
    return c;
}

static void
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

static void
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

static void
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
    if (c->host_id && strmap_get(&c->gw->by_host, c->host_id) == c)
        strmap_del(&c->gw->by_host, c->host_id);
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

static int
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

static void
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
    X509_NAME *subj;
    const ASN1_STRING *s;
    char *cn = NULL;
    int idx, len;

    if (peer == NULL) {
        log_warnx("agent at %s: no client certificate", c->addr);
        return NULL;
    }
    subj = X509_get_subject_name(peer);
    idx = X509_NAME_get_index_by_NID(subj, NID_commonName, -1);
    if (idx < 0 ||
        X509_NAME_get_index_by_NID(subj, NID_commonName, idx) >= 0) {
        log_warnx("agent at %s: the client certificate needs exactly one CN",
                  c->addr);
        goto cleanup;
    }
    s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, idx));
    len = ASN1_STRING_length(s);
    if (len <= 0 || len > 253 ||
        memchr(ASN1_STRING_get0_data(s), '\0', (size_t)len) != NULL) {
        log_warnx("agent at %s: the client certificate CN is not a host name",
                  c->addr);
        goto cleanup;
    }
    cn = xstrndup((const char *)ASN1_STRING_get0_data(s), (size_t)len);
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
    epoch = strtoull(PQgetvalue(res, 0, 1), &end, 10);
    if (*end != '\0') {
        conn_shutdown(c, "registration returned a bad epoch");
        goto done;
    }
    c->host_id = xstrdup(PQgetvalue(res, 0, 0));
    c->epoch = epoch;
    old = strmap_get(&gw->by_host, c->host_id);
    if (old != NULL && old != c)
        conn_shutdown(old, "superseded by session %" PRIu64 " from %s",
                      c->epoch, c->addr);
    strmap_put(&gw->by_host, c->host_id, c);
    w.host_id = c->host_id;
    w.session_epoch = c->epoch;
    w.heartbeat_interval_ms = gw->cfg.heartbeat_ms;
    w.down_after_ms = gw->cfg.down_after_ms;
    w.fence_after_ms = gw->cfg.fence_after_ms;
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

done:
    conn_unref(c);
}

static void
conn_on_hello(struct gw_conn *c, const Cloud__Agent__Hello *h)
{
    const char *hv;
    const char *vals[1];
    json_t *p, *labels;
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
    p = json_pack("{s:s, s:s, s:I, s:I, s:I, s:s, s:s, s:o}", "name", c->name,
                  "address", c->addr, "vcpus", (json_int_t)h->capacity->vcpus,
                  "memory_mib", (json_int_t)h->capacity->memory_mib,
                  "disk_gib", (json_int_t)h->capacity->disk_gib,
                  "hypervisor", hv, "arch", h->facts->arch, "labels", labels);
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
    c->state = GW_REGISTERING;
    bufferevent_disable(c->bev, EV_READ);
    vals[0] = js;
    db_query(c->gw->db, store_stmt(ST_AGENT_REGISTER), vals, on_registered,
             conn_ref(c));
    free(js);
}

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

static int
id_ok(const char *id)
{
    size_t n = strlen(id);

    if (n == 0 || n > 64)
        return 0;
    return strspn(id, "0123456789abcdefghijklmnopqrstuvwxyz"
                      "ABCDEFGHIJKLMNOPQRSTUVWXYZ_-") == n;
}

static void
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
    if (st == NULL || !id_ok(s->id)) {
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

static void
status_items_free(struct gw_status *v, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        json_decref(v[i].item);
        conn_unref(v[i].conn);
    }
    free(v);
}

static void status_send(struct gateway *gw);

static void
status_retry_cb(evutil_socket_t fd, short what, void *arg)
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
            status_items_free(gw->inflight, gw->ninflight);
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
            long idx = strtol(PQgetvalue(res, i, 0), NULL, 10);
            const char *why = PQgetvalue(res, i, 1);
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
    status_items_free(gw->inflight, gw->ninflight);
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

static void
on_heartbeats_done(const PGresult *res, const struct db_error *err, void *arg)
{
    struct gateway *gw = arg;

    (void)res;
    gw->hb_inflight = 0;
    if (err != NULL)
        log_warnx("cannot store heartbeats: %s", err->message);
}

static void
hb_timer_cb(evutil_socket_t fd, short what, void *arg)
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
    db_query(gw->db, store_stmt(ST_AGENT_HEARTBEATS), vals, on_heartbeats_done,
             gw);
    free(js);
}

static void
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
    /* The agent applied less than it was sent long ago: resend. */
    if (hb->applied_revision < c->revision && hb->seq % 8 == 7) {
        free(c->last_set);
        c->last_set = NULL;
        c->last_set_len = 0;
        c->dirty = 1;
        gw_kick(c->gw);
    }
}

/* ---- desired state --------------------------------------------------- */

static Cloud__Agent__DesiredInstanceState
desired_of(const char *s)
{
    if (strcmp(s, "running") == 0)
        return CLOUD__AGENT__DESIRED_INSTANCE_STATE__DESIRED_INSTANCE_STATE_RUNNING;
    if (strcmp(s, "stopped") == 0)
        return CLOUD__AGENT__DESIRED_INSTANCE_STATE__DESIRED_INSTANCE_STATE_STOPPED;
    return CLOUD__AGENT__DESIRED_INSTANCE_STATE__DESIRED_INSTANCE_STATE_DELETED;
}

static const char *
col(const PGresult *res, int row, int c)
{
    return PQgetisnull(res, row, c) ? "" : PQgetvalue(res, row, c);
}

static uint64_t
col_u64(const PGresult *res, int row, int c)
{
    return strtoull(col(res, row, c), NULL, 10);
}

static size_t
varint_len(size_t v)
{
    size_t n = 1;

    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

/*
 * Sends ds (revision set, instances filled) to c: in one frame when it is
 * at most GW_DESIRED_PART_MAX packed (every small set: the frame is the
 * one a controller before parts sent), else in parts of at most that much
 * each, cut between instances, to an agent that takes parts. Returns the
 * number of frames sent, or -1 (logged) when the set was not sent.
 */
static int
desired_send(struct gw_conn *c, Cloud__Agent__DesiredState *ds)
{
    Cloud__Agent__Envelope env = CLOUD__AGENT__ENVELOPE__INIT;
    Cloud__Agent__InstanceSpec **all = ds->instances;
    size_t n = ds->n_instances, *ends = NULL, nparts = 0, size = 0, sum = 0;
    size_t i, start;
    int rc = -1;

    env.msg_case = CLOUD__AGENT__ENVELOPE__MSG_DESIRED_STATE;
    env.desired_state = ds;
    size = cloud__agent__desired_state__get_packed_size(ds);
    if (size <= GW_DESIRED_PART_MAX ||
        (c->set_max == 0 &&
         cloud__agent__envelope__get_packed_size(&env) <= FRAME_MAX))
        return conn_send(c, &env) < 0 ? -1 : 1;
    if (c->set_max == 0) {
        log_warnx("host %s: desired set revision %" PRIu64 " (%zu instances, "
                  "%zu bytes) is over one frame and its agent, a build "
                  "before sets in parts, takes only one; not sent (upgrade "
                  "the agent)",
                  c->name, ds->revision, n, size);
        return -1;
    }
    /* Where each part ends: instances while they fit, at least one. */
    ends = xcalloc(n + 1, sizeof(*ends));
    size = 0;
    for (i = 0; i < n; i++) {
        size_t one = cloud__agent__instance_spec__get_packed_size(all[i]);

        one += 1 + varint_len(one);
        if (size > 0 &&
            size + one > GW_DESIRED_PART_MAX - GW_DESIRED_PART_OVERHEAD) {
            ends[nparts++] = i;
            size = 0;
        }
        size += one;
    }
    ends[nparts++] = n;
    /* The agent's bound, as it counts: the parts' packed sizes. */
    ds->parts = (uint32_t)nparts;
    for (i = 0, start = 0; i < nparts; start = ends[i++]) {
        ds->part = (uint32_t)i;
        ds->instances = all + start;
        ds->n_instances = ends[i] - start;
        sum += cloud__agent__desired_state__get_packed_size(ds);
    }
    if (sum > c->set_max) {
        log_warnx("host %s: desired set revision %" PRIu64 " (%zu instances) "
                  "is %zu bytes in %zu parts; its agent takes at most %" PRIu64
                  "; not sent",
                  c->name, ds->revision, n, sum, nparts, c->set_max);
        goto cleanup;
    }
    for (i = 0, start = 0; i < nparts; start = ends[i++]) {
        ds->part = (uint32_t)i;
        ds->instances = all + start;
        ds->n_instances = ends[i] - start;
        if (conn_send(c, &env) < 0)
            goto cleanup;
    }
    rc = (int)nparts;

cleanup:
    ds->instances = all;
    ds->n_instances = n;
    ds->part = ds->parts = 0;
    free(ends);
    return rc;
}

static void
on_desired(const PGresult *res, const struct db_error *err, void *arg)
{
    struct gw_conn *c = arg;
    struct gateway *gw = c->gw;
    Cloud__Agent__DesiredState ds = CLOUD__AGENT__DESIRED_STATE__INIT;
    Cloud__Agent__InstanceSpec *specs = NULL, **pspecs = NULL;
    Cloud__Agent__ImageSpec *imgs = NULL;
    struct gwcfg_set *cfgs = NULL;
    uint8_t *packed = NULL;
    size_t len, i;
    int n = 0, nframes;

    gw->desired_inflight--;
    c->desired_inflight = 0;
    if (c->state != GW_READY)
        goto done;
    if (err != NULL) {
        log_warnx("host %s: cannot read the desired set: %s", c->name,
                  err->message);
        c->dirty = 1; /* the periodic resync or the next event retries */
        goto done;
    }
    n = PQntuples(res);
    specs = xcalloc((size_t)n + 1, sizeof(*specs));
    pspecs = xcalloc((size_t)n + 1, sizeof(*pspecs));
    imgs = xcalloc((size_t)n + 1, sizeof(*imgs));
    cfgs = gwcfg_set_new((size_t)n);
    for (i = 0; i < (size_t)n; i++) {
        Cloud__Agent__InstanceSpec *s = &specs[i];
        Cloud__Agent__ImageSpec *im = &imgs[i];
        int r = (int)i;

        cloud__agent__instance_spec__init(s);
        cloud__agent__image_spec__init(im);
        s->id = (char *)col(res, r, 0);
        s->name = (char *)col(res, r, 1);
        s->generation = col_u64(res, r, 2);
        s->desired_state = desired_of(col(res, r, 3));
        s->stop_signal = strcmp(col(res, r, 4), "KILL") == 0
                             ? CLOUD__AGENT__STOP_SIGNAL__STOP_SIGNAL_KILL
                             : CLOUD__AGENT__STOP_SIGNAL__STOP_SIGNAL_TERM;
        s->vcpus = (uint32_t)col_u64(res, r, 5);
        s->memory_mib = col_u64(res, r, 6);
        s->disk_gib = col_u64(res, r, 7);
        im->kind = strcmp(col(res, r, 8), "disk") == 0
                       ? CLOUD__AGENT__IMAGE_KIND__IMAGE_KIND_DISK
                       : CLOUD__AGENT__IMAGE_KIND__IMAGE_KIND_KERNEL;
        im->kernel_digest = (char *)col(res, r, 9);
        im->initrd_digest = (char *)col(res, r, 10);
        im->disk_digest = (char *)col(res, r, 11);
        im->cmdline = (char *)col(res, r, 12);
        s->image = im;
        s->partition_policy =
            strcmp(col(res, r, 13), "stop") == 0
                ? CLOUD__AGENT__PARTITION_POLICY__PARTITION_POLICY_STOP
                : CLOUD__AGENT__PARTITION_POLICY__PARTITION_POLICY_KEEP;
        s->restart_count = col_u64(res, r, 14);
        s->stop_grace_period_ms = (uint32_t)col_u64(res, r, 17);
        gwcfg_fill(cfgs, i, s, col_u64(res, r, 15),
                   PQgetisnull(res, r, 16) ? NULL : PQgetvalue(res, r, 16));
        gwcfg_fill_boot(cfgs, i, s,
                        PQgetisnull(res, r, 18) ? NULL : PQgetvalue(res, r, 18),
                        PQgetisnull(res, r, 19) ? NULL : PQgetvalue(res, r, 19));
        pspecs[i] = s;
    }
    /* Remember which instances this host holds, for event routing. */
    conn_forget_ids(c);
    c->ids = xcalloc((size_t)n + 1, sizeof(*c->ids));
    for (i = 0; i < (size_t)n; i++) {
        struct gw_conn *prev;

        c->ids[i] = xstrdup(col(res, (int)i, 0));
        prev = strmap_put(&gw->owner, c->ids[i], c);
        if (prev != NULL && prev != c) {
            prev->dirty = 1; /* it moved away from there */
            gw_kick(gw);
        }
    }
    c->nids = (size_t)n;
    /* Compare without the revision: send only what changed. */
    ds.session_epoch = c->epoch;
    ds.n_instances = (size_t)n;
    ds.instances = pspecs;
    len = cloud__agent__desired_state__get_packed_size(&ds);
    packed = xmalloc(len + 1);
    cloud__agent__desired_state__pack(&ds, packed);
    if (c->last_set != NULL && len == c->last_set_len &&
        memcmp(packed, c->last_set, len) == 0)
        goto done;
    ds.revision = ++c->revision;
    /* Too big with every config inline: the set without them (in parts
     * if need be), then one ConfigUpdate per instance (gateway_config.h). */
    if (len > GWCFG_INLINE_MAX)
        gwcfg_strip(cfgs, pspecs, (size_t)n);
    nframes = desired_send(c, &ds);
    if (nframes < 0)
        goto done;
    for (i = 0; len > GWCFG_INLINE_MAX && i < (size_t)n; i++) {
        Cloud__Agent__Envelope cenv = CLOUD__AGENT__ENVELOPE__INIT;
        Cloud__Agent__ConfigUpdate cu;

        if (gwcfg_update(cfgs, i, &cu) < 0)
            continue;
        cenv.msg_case = CLOUD__AGENT__ENVELOPE__MSG_CONFIG_UPDATE;
        cenv.config_update = &cu;
        if (conn_send(c, &cenv) < 0)
            goto done;
    }
    log_debug("host %s: desired set revision %" PRIu64 " with %d instances "
              "in %d frames",
              c->name, c->revision, n, nframes);
    free(c->last_set);
    c->last_set = packed;
    c->last_set_len = len;
    packed = NULL;

done:
    free(packed);
    free(specs);
    free(pspecs);
    free(imgs);
    gwcfg_set_free(cfgs);
    if (c->dirty)
        gw_kick(gw);
    conn_unref(c);
}

static void
kick_cb(evutil_socket_t fd, short what, void *arg)
{
    struct gateway *gw = arg;
    struct gw_conn *c;
    const char *vals[1];

    (void)fd;
    (void)what;
    for (c = gw->conns; c != NULL; c = c->next) {
        if (gw->desired_inflight >= GW_DESIRED_INFLIGHT_MAX)
            break; /* completions kick again */
        if (c->state != GW_READY || !c->dirty || c->desired_inflight)
            continue;
        c->dirty = 0;
        c->desired_inflight = 1;
        gw->desired_inflight++;
        vals[0] = c->host_id;
        db_query(gw->db, store_stmt(ST_AGENT_DESIRED), vals, on_desired,
                 conn_ref(c));
    }
}

static void
gw_kick(struct gateway *gw)
{
    if (!gw->closed)
        event_active(gw->kick_ev, EV_TIMEOUT, 0);
}

static void
gw_mark_all(struct gateway *gw)
{
    struct gw_conn *c;

    for (c = gw->conns; c != NULL; c = c->next)
        if (c->state == GW_READY)
            c->dirty = 1;
    gw_kick(gw);
}

static void
resync_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    gw_mark_all(arg);
}

/* ---- watch observer: which hosts an event concerns ------------------- */

static void
unknown_clear(struct gateway *gw)
{
    size_t i;

    for (i = 0; i < gw->unknown.cap; i++)
        if (gw->unknown.keys[i] != NULL)
            free(gw->unknown.vals[i]);
    strmap_fini(&gw->unknown);
    strmap_init(&gw->unknown);
}

static void
on_hosts_of(const PGresult *res, const struct db_error *err, void *arg)
{
    struct gateway *gw = arg;
    int i, n;

    gw->hosts_inflight = 0;
    if (gw->closed)
        return;
    if (err != NULL) {
        log_warnx("cannot find the hosts of changed instances: %s",
                  err->message);
        gw_mark_all(gw);
        return;
    }
    n = PQntuples(res);
    for (i = 0; i < n; i++) {
        struct gw_conn *c = strmap_get(&gw->by_host, PQgetvalue(res, i, 0));

        if (c != NULL)
            c->dirty = 1;
    }
    gw_kick(gw);
}

/* ---- config events: which hosts a config change concerns ------------ */

static void
cfg_clear(struct gateway *gw)
{
    for (size_t i = 0; i < gw->cfg_services.cap; i++)
        if (gw->cfg_services.keys[i] != NULL)
            free(gw->cfg_services.vals[i]);
    strmap_fini(&gw->cfg_services);
    strmap_init(&gw->cfg_services);
}

static void
cfg_note(struct gateway *gw, const char *service_id)
{
    char *key;

    if (gw->by_host.len == 0 ||
        strmap_get(&gw->cfg_services, service_id) != NULL)
        return;
    if (gw->cfg_services.len >= GW_UNKNOWN_MAX) {
        cfg_clear(gw);
        gw_mark_all(gw);
        return;
    }
    key = xstrdup(service_id);
    strmap_put(&gw->cfg_services, key, key);
}

/*
 * The instances whose effective config changed, each with its host and the
 * config (ST_CONFIG_PUSH, computed once per service): one ConfigUpdate per
 * instance to the connection whose desired set holds it, instead of a
 * re-read and re-send of each host's whole set. An instance no connection
 * holds yet (or held by another host's connection) gets its host's set
 * re-read: DesiredState carries the config, so a late instance or a
 * reconnect still receives it; the agent takes only versions above the one
 * it has, so a set read before the change and sent after does no harm.
 */
static void
on_cfg_push(const PGresult *res, const struct db_error *err, void *arg)
{
    struct gateway *gw = arg;
    struct gwcfg_set *one = NULL;
    Cloud__Agent__InstanceSpec spec;
    Cloud__Agent__ConfigUpdate cu;
    const char *cur = NULL;
    uint64_t cur_version = 0;
    int have = 0, sent = 0;

    gw->cfg_inflight = 0;
    if (gw->closed)
        return;
    if (err != NULL) {
        log_warnx("cannot read the changed configs: %s", err->message);
        gw_mark_all(gw);
        return;
    }
    for (int i = 0; i < PQntuples(res); i++) {
        const char *id = PQgetvalue(res, i, 0);
        const char *host = PQgetvalue(res, i, 1);
        uint64_t version = col_u64(res, i, 2);
        const char *json = PQgetisnull(res, i, 3) ? NULL : PQgetvalue(res, i, 3);
        struct gw_conn *c = strmap_get(&gw->owner, id);
        Cloud__Agent__Envelope env = CLOUD__AGENT__ENVELOPE__INIT;

        if (c == NULL || c->state != GW_READY || c->host_id == NULL ||
            strcmp(c->host_id, host) != 0) {
            c = strmap_get(&gw->by_host, host);
            if (c != NULL)
                c->dirty = 1;
            continue;
        }
        if (version == 0 || json == NULL)
            continue;
        /* Rows come ordered by service: parse each config once. */
        if (one == NULL || cur_version != version || strcmp(cur, json) != 0) {
            gwcfg_set_free(one);
            one = gwcfg_set_new(1);
            cloud__agent__instance_spec__init(&spec);
            spec.id = (char *)id;
            gwcfg_fill(one, 0, &spec, version, json);
            have = gwcfg_update(one, 0, &cu) == 0;
            cur = json;
            cur_version = version;
        }
        if (!have)
            continue;
        cu.instance_id = (char *)id;
        env.msg_case = CLOUD__AGENT__ENVELOPE__MSG_CONFIG_UPDATE;
        env.config_update = &cu;
        if (conn_send(c, &env) == 0) {
            sent++;
            c->cfg_stale = 1;
        }
    }
    /* The sets catch up a little later (the agent's cache and restarts see
     * the new config; the agent ignores a version it already has). */
    if (sent > 0 && !evtimer_pending(gw->cfg_settle, NULL)) {
        struct timeval tv = {GW_CFG_SETTLE_MS / 1000,
                             (GW_CFG_SETTLE_MS % 1000) * 1000};

        if (evtimer_add(gw->cfg_settle, &tv) < 0)
            gw_mark_all(gw);
    }
    gwcfg_set_free(one);
    log_debug("config push: %d instances, %d updates sent", PQntuples(res),
              sent);
    gw_kick(gw);
}

static void
cfg_settle_cb(evutil_socket_t fd, short what, void *arg)
{
    struct gateway *gw = arg;
    struct gw_conn *c;

    (void)fd;
    (void)what;
    for (c = gw->conns; c != NULL; c = c->next) {
        if (c->cfg_stale && c->state == GW_READY)
            c->dirty = 1;
        c->cfg_stale = 0;
    }
    gw_kick(gw);
}

/* After a batch of events: one query for the instances of every service
 * whose effective config changed (ST_CONFIG_PUSH), pushed by on_cfg_push. */
static void
cfg_flush(struct gateway *gw)
{
    struct evbuffer *b;
    const char *vals[1];
    char *lit;
    size_t i, len;
    int first = 1;

    if (gw->cfg_services.len == 0 || gw->cfg_inflight)
        return;
    b = evbuffer_new();
    if (b == NULL)
        fatalx("cannot allocate a buffer");
    evbuffer_add(b, "{", 1);
    for (i = 0; i < gw->cfg_services.cap; i++) {
        if (gw->cfg_services.keys[i] == NULL)
            continue;
        /* id_ok() admitted only [A-Za-z0-9_-]: no quoting needed. */
        evbuffer_add_printf(b, "%s%s", first ? "" : ",",
                            gw->cfg_services.keys[i]);
        first = 0;
    }
    evbuffer_add(b, "}", 2); /* with the NUL */
    len = evbuffer_get_length(b);
    lit = xmalloc(len);
    if (evbuffer_remove(b, lit, len) != (int)len)
        fatalx("cannot read a buffer");
    evbuffer_free(b);
    cfg_clear(gw);
    vals[0] = lit;
    gw->cfg_inflight = 1;
    db_query(gw->db, store_stmt(ST_CONFIG_PUSH), vals, on_cfg_push, gw);
    free(lit);
}

static void
gw_on_event(void *arg, long long id, const char *type, const char *object,
            const char *object_id)
{
    struct gateway *gw = arg;
    struct gw_conn *c;
    char *key;

    (void)id;
    if (object != NULL && type != NULL && strcmp(object, "host") == 0 &&
        strcmp(type, "host.cert_revoked") == 0)
        join_refresh(gw->join);
    if (!gw->closed && object != NULL && object_id != NULL &&
        strcmp(object, "config") == 0 && id_ok(object_id)) {
        cfg_note(gw, object_id); /* config events (gateway_config.h) */
        return;
    }
    if (gw->closed || object == NULL || object_id == NULL ||
        strcmp(object, "instance") != 0 || !id_ok(object_id))
        return;
    /* A guest-only change (acked config version, ready, addresses: the
     * status path, migrations 0009/0013) moves nothing a desired set holds:
     * no re-read (a config change acked by 100 guests re-read every set). */
    if (type != NULL && strcmp(type, "instance.guest") == 0)
        return;
    c = strmap_get(&gw->owner, object_id);
    if (c != NULL) {
        c->dirty = 1;
        return;
    }
    if (gw->by_host.len == 0 || strmap_get(&gw->unknown, object_id) != NULL)
        return;
    if (gw->unknown.len >= GW_UNKNOWN_MAX) {
        unknown_clear(gw);
        gw_mark_all(gw);
        return;
    }
    key = xstrdup(object_id);
    strmap_put(&gw->unknown, key, key);
}

/* The hub's row names the host of an instance event's instance (watch.h
 * WATCH_COL_HOST_ID), read with the event: that host's set is re-read with
 * no ST_AGENT_HOSTS_OF round trip. NULL: unplaced or gone, no set names it
 * (the query would have found no host either). */
static void
gw_on_event_row(void *arg, long long id, const char *type, const char *object,
                const char *object_id, const PGresult *res, int row)
{
    struct gateway *gw = arg;
    struct gw_conn *c;

    if (gw->closed || object_id == NULL || strcmp(object, "instance") != 0 ||
        PQnfields(res) <= WATCH_COL_HOST_ID) {
        gw_on_event(arg, id, type, object, object_id);
        return;
    }
    /* Guest-only changes re-read no set (as in gw_on_event). */
    if (type != NULL && strcmp(type, "instance.guest") == 0)
        return;
    if (strmap_get(&gw->owner, object_id) != NULL)
        gw_on_event(arg, id, type, object, object_id); /* its old host */
    if (!PQgetisnull(res, row, WATCH_COL_HOST_ID)) {
        c = strmap_get(&gw->by_host, PQgetvalue(res, row, WATCH_COL_HOST_ID));
        if (c != NULL)
            c->dirty = 1;
    }
}

static void
gw_on_batch(void *arg)
{
    struct gateway *gw = arg;
    struct evbuffer *b;
    const char *vals[1];
    char *lit;
    size_t i, len;
    int first = 1;

    if (gw->closed)
        return;
    gw_kick(gw);
    cfg_flush(gw);
    if (gw->unknown.len == 0 || gw->hosts_inflight)
        return;
    b = evbuffer_new();
    if (b == NULL)
        fatalx("cannot allocate a buffer");
    evbuffer_add(b, "{", 1);
    for (i = 0; i < gw->unknown.cap; i++) {
        if (gw->unknown.keys[i] == NULL)
            continue;
        /* id_ok() admitted only [A-Za-z0-9_-]: no quoting needed. */
        evbuffer_add_printf(b, "%s%s", first ? "" : ",", gw->unknown.keys[i]);
        first = 0;
    }
    evbuffer_add(b, "}", 2); /* with the NUL */
    len = evbuffer_get_length(b);
    lit = xmalloc(len);
    if (evbuffer_remove(b, lit, len) != (int)len)
        fatalx("cannot read a buffer");
    evbuffer_free(b);
    unknown_clear(gw);
    vals[0] = lit;
    gw->hosts_inflight = 1;
    db_query(gw->db, store_stmt(ST_AGENT_HOSTS_OF), vals, on_hosts_of, gw);
    free(lit);
}

static void
gw_on_reconnect(void *arg)
{
    struct gateway *gw = arg;

    if (!gw->closed)
        gw_mark_all(gw);
}

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
static void
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

static void
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
conn_by_name(struct gateway *gw, const char *name)
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
                 "the agent of host %s is not connected to this controller "
                 "(a controller serves logs only of the agents connected to "
                 "it)",
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
        c->blobs = gwblobs_new(c->gw->base, c->bev, c->gw->cfg.blob_dir,
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
    gw->hb_timer = event_new(base, -1, EV_PERSIST, hb_timer_cb, gw);
    gw->resync_timer = event_new(base, -1, EV_PERSIST, resync_cb, gw);
    gw->kick_ev = event_new(base, -1, 0, kick_cb, gw);
    gw->status_retry = evtimer_new(base, status_retry_cb, gw);
    gw->cfg_settle = evtimer_new(base, cfg_settle_cb, gw);
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
    status_items_free(gw->pending, gw->npending);
    status_items_free(gw->inflight, gw->ninflight);
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
    cfg_clear(gw);
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
