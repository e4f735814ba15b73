/*
 * link: the agent daemon's event loop and controller connection (see
 * link.h). Owns the TLS context, the connection and its session (through
 * ctlconn.h), the latest status of every instance (re-sent after each
 * Welcome, so a controller that missed reports while the link was down
 * learns them), and the worker.
 *
 * Connection states: IDLE (waiting to dial) -> CONNECTING (TCP + TLS) ->
 * WELCOME (Hello sent) -> READY.
 *
 * Several controllers (ctlist.h): a connection that fails or ends moves to
 * the next address after LINK_BACKOFF_MIN_MS; the back-off grows only
 * once every address failed in a row. A controller that stores no
 * heartbeat for LINK_ACK_SILENCE heartbeat intervals is left for the next
 * one, and the fence clock (fence.h) runs on the heartbeats stored.
 */
#define LOG_MODULE "link"

#include "link.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/util.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <systemd/sd-daemon.h>

#include "channel.h"
#include "blobcache.h"
#include "conlog.h"
#include "ctlconn.h"
#include "ctlist.h"
#include "dsparts.h"
#include "fence.h"
#include "frame.h"
#include "hostnet.h"
#include "ident.h"
#include "log.h"
#include "mem.h"
#include "monotime.h"
#include "strmap.h"
#include "tlsctx.h"
#include "virt.h"
#include "worker.h"

#define LINK_BACKOFF_MIN_MS 500
#define LINK_BACKOFF_MAX_MS 30000
#define LINK_WELCOME_TIMEOUT_S 15
#define LINK_MAX_LABELS 64
/* The host network's devices (hostnet.h, docs/network-overlay.md). */
#define LINK_BRIDGE "cloudbr0"
#define LINK_VXLAN "cloudvx0"
/* Heartbeat intervals without a HeartbeatAck before the link is left. */
#define LINK_ACK_SILENCE 5
/* Send times of the last heartbeats, by seq (HeartbeatAck names one). */
#define LINK_HB_RING 32

struct label {
    char *key, *value;
};

struct link {
    const struct link_opts *o;
    struct event_base *base;
    SSL_CTX *ssl;
    struct ctaddr *addrs; /* --controller, in order (ctlist.h) */
    size_t naddrs, cur;   /* cur: the address dialled or to dial */
    size_t failed;        /* failures in a row since the last Welcome */
    struct label labels[LINK_MAX_LABELS];
    size_t nlabels;
    struct worker *worker;
    int efd;
    struct event *efd_ev, *sigint, *sigterm;
    /* the connection and its session (ctlconn.h) */
    struct ctlconn c;
    unsigned backoff_ms;
    char *host_id;
    /* Fencing (fence.h): when Hello and each heartbeat went out, and the
     * last HeartbeatAck (0: the controller sends none, Welcome said so). */
    bool acks;
    long long hello_ms, hb_sent[LINK_HB_RING], last_ack_ms;
    struct fence *fence;
    /* what the worker told us */
    bool have_facts;
    struct worker_facts facts;
    struct strmap status; /* id -> struct worker_status */
    struct conlog *conlog; /* console log streams (LogRequest) */
    struct blobcache *cache; /* image blobs (blobcache.h); NULL: --images only */
    struct chset *chans;     /* guest channels (channel.h) */
};

static void
status_free(struct worker_status *s)
{
    if (s == NULL)
        return;
    free(s->id);
    free(s->reason);
    free(s->channel);
    virt_addrs_free(s->addrs, s->naddrs);
    free(s);
}

/* ---- sending ---------------------------------------------------------- */

static void
link_send_status(struct link *l, const struct worker_status *s)
{
    Cloud__Agent__Envelope env = CLOUD__AGENT__ENVELOPE__INIT;
    Cloud__Agent__InstanceStatus st = CLOUD__AGENT__INSTANCE_STATUS__INIT;

    st.session_epoch = l->c.epoch;
    st.id = s->id;
    st.generation = s->generation;
    st.state = (Cloud__Agent__ObservedInstanceState)s->state;
    st.exit_code = s->exit_code;
    st.reason = s->reason;
    st.started_at_ms = s->started_ms;
    st.finished_at_ms = s->finished_ms;
    st.observed_at_ms = wall_ms();
    /* What the guest said on its channel rides along in every status. */
    {
        struct channel_view v;

        if (l->chans != NULL && chset_view(l->chans, s->id, &v)) {
            st.config_version_acked = v.acked;
            st.ready = v.ready && s->state == WS_RUNNING;
            st.addresses = (char **)v.addrs;
            st.n_addresses = v.naddrs;
        }
        st.exit_from_guest = s->exit_from_guest;
        /* libvirt's view of the NICs wins over what the guest says. */
        if (s->naddrs > 0) {
            st.addresses = s->addrs;
            st.n_addresses = s->naddrs;
        }
    }
    env.msg_case = CLOUD__AGENT__ENVELOPE__MSG_INSTANCE_STATUS;
    env.instance_status = &st;
    (void)ctlconn_send(&l->c, &env);
}

/* Sends every status we hold; forgets removed instances once sent. */
static void
link_send_all_status(struct link *l)
{
    struct worker_status **gone, *s;
    size_t i = 0, n = 0;

    gone = xcalloc(l->status.len + 1, sizeof(*gone));
    while ((s = strmap_next(&l->status, &i)) != NULL) {
        link_send_status(l, s);
        if (s->state == WS_REMOVED)
            gone[n++] = s;
    }
    for (i = 0; i < n; i++) {
        strmap_del(&l->status, gone[i]->id);
        status_free(gone[i]);
    }
    free(gone);
}

/* ---- connection life cycle ------------------------------------------- */

/* ctlconn: the connection failed or ended. */
static void
link_lost(void *arg, const char *why)
{
    struct link *l = arg;
    unsigned delay = LINK_BACKOFF_MIN_MS;

    /* The next address at once (after the least back-off); the back-off
     * grows once every address failed in a row. */
    l->failed++;
    if (l->failed >= l->naddrs) {
        delay = l->backoff_ms;
        l->failed = 0;
        l->backoff_ms *= 2;
        if (l->backoff_ms > LINK_BACKOFF_MAX_MS)
            l->backoff_ms = LINK_BACKOFF_MAX_MS;
    }
    log_warnx("controller %s: %s; trying %s in %u ms", l->addrs[l->cur].text,
              why, l->addrs[(l->cur + 1) % l->naddrs].text, delay);
    l->cur = (l->cur + 1) % l->naddrs;
    /* Log streams belong to the connection: the controller ended them. */
    if (l->conlog)
        conlog_drop_all(l->conlog);
    if (l->cache)
        blobcache_link_down(l->cache);
    ctlconn_close(&l->c, delay);
}

/* The underlay address Hello gives: --underlay-address, else the local
 * IPv4 address of the connection to the controller ("" if it has none:
 * the controller refuses the Hello, and says why). */
static char *
link_underlay(struct link *l, char *buf, size_t len)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    evutil_socket_t fd = l->c.bev ? bufferevent_getfd(l->c.bev) : -1;

    if (l->o->underlay != NULL) {
        snprintf(buf, len, "%s", l->o->underlay);
        return buf;
    }
    buf[0] = '\0';
    if (fd < 0 || getsockname(fd, (struct sockaddr *)&ss, &sl) < 0 ||
        ss.ss_family != AF_INET ||
        inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, buf,
                  (socklen_t)len) == NULL) {
        log_warnx("host network: the connection to the controller is not "
                  "IPv4; give --underlay-address");
        buf[0] = '\0';
    }
    return buf;
}

/* HostNetwork: make the bridge and the overlay match the controller's plan
 * (hostnet.h; a few netlink round trips, on the loop). */
static void
on_host_network(struct link *l, const Cloud__Agent__HostNetwork *hn)
{
    struct hostnet_peer *peers;
    struct hostnet_plan plan;
    char why[512], underlay[INET_ADDRSTRLEN];
    int n;

    if (!l->o->host_network)
        return;
    if (hn->subnet[0] == '\0' || hn->gateway[0] == '\0') {
        log_warnx("host network: the controller has no subnet for this host "
                  "yet (cluster_cidr %s is full); nothing built",
                  hn->cluster_cidr);
        return;
    }
    peers = xcalloc(hn->n_peers + 1, sizeof(*peers));
    for (size_t i = 0; i < hn->n_peers; i++) {
        peers[i].underlay = hn->peers[i]->underlay;
        peers[i].subnet = hn->peers[i]->subnet;
    }
    memset(&plan, 0, sizeof(plan));
    plan.bridge = LINK_BRIDGE;
    plan.vxlan = LINK_VXLAN;
    plan.gateway = hn->gateway;
    plan.cluster_cidr = hn->cluster_cidr;
    plan.vni = hn->vni;
    plan.underlay = link_underlay(l, underlay, sizeof(underlay));
    plan.peers = peers;
    plan.npeers = hn->n_peers;
    n = hostnet_apply(&plan, why, sizeof(why));
    if (n < 0)
        log_warnx("host network: %s", why);
    else if (n > 0)
        log_info("host network: %s %s, %s over %s, %zu peers: %d changes",
                 LINK_BRIDGE, hn->gateway, LINK_VXLAN, plan.underlay,
                 hn->n_peers, n);
    free(peers);
}

/* ctlconn: TLS is up. */
static void
link_send_hello(void *arg)
{
    struct link *l = arg;
    Cloud__Agent__Hello h = CLOUD__AGENT__HELLO__INIT;
    Cloud__Agent__Resources cap = CLOUD__AGENT__RESOURCES__INIT;
    Cloud__Agent__HostFacts f = CLOUD__AGENT__HOST_FACTS__INIT;
    Cloud__Agent__Hello__LabelsEntry *lab = NULL, **plab = NULL;
    Cloud__Agent__InstanceRef *refs = NULL;
    struct worker_status *s;
    char underlay[INET_ADDRSTRLEN];
    size_t i;

    h.host_name = (char *)(l->o->name ? l->o->name : "");
    h.agent_version = (char *)l->o->version;
    h.heartbeat_acks = true;
    if (l->o->host_network) {
        h.host_network = true;
        h.underlay_address = link_underlay(l, underlay, sizeof(underlay));
    }
    l->hello_ms = mono_ms();
    cap.vcpus = l->o->cap_vcpus ? l->o->cap_vcpus : l->facts.vcpus;
    cap.memory_mib =
        l->o->cap_memory_mib ? l->o->cap_memory_mib : l->facts.memory_mib;
    cap.disk_gib = l->facts.disk_gib;
    h.capacity = &cap;
    f.arch = l->facts.arch;
    f.hypervisor_types = l->facts.types;
    f.n_hypervisor_types = l->facts.ntypes;
    f.kvm_usable = l->facts.kvm_usable;
    f.domain_type = (char *)hv_type_name(l->facts.domain_type);
    f.libvirt_version = l->facts.libvirt_version;
    h.facts = &f;
    lab = xcalloc(l->nlabels + 1, sizeof(*lab));
    plab = xcalloc(l->nlabels + 1, sizeof(*plab));
    for (i = 0; i < l->nlabels; i++) {
        cloud__agent__hello__labels_entry__init(&lab[i]);
        lab[i].key = l->labels[i].key;
        lab[i].value = l->labels[i].value;
        plab[i] = &lab[i];
    }
    h.labels = plab;
    h.n_labels = l->nlabels;
    refs = xcalloc(l->status.len + 1, sizeof(*refs));
    h.instances = xcalloc(l->status.len + 1, sizeof(*h.instances));
    i = 0;
    while ((s = strmap_next(&l->status, &i)) != NULL) {
        if (s->state == WS_REMOVED)
            continue;
        ctlconn_hello_ref(&h, &refs[h.n_instances], s->id, s->generation,
                          (Cloud__Agent__ObservedInstanceState)s->state);
    }
    ctlconn_send_hello(&l->c, &h);
    free(lab);
    free(plab);
    free(refs);
    free(h.instances);
}

/* ctlconn's heartbeat timer, READY. */
static void
on_heartbeat(void *arg)
{
    struct link *l = arg;

    if (l->acks &&
        mono_ms() - l->last_ack_ms > (long long)l->c.hb_ms * LINK_ACK_SILENCE) {
        ctlconn_down(&l->c, "no heartbeat stored for %lld ms",
                     mono_ms() - l->last_ack_ms);
        return;
    }
    /* A controller without acks: being connected is all we can know. */
    if (!l->acks)
        fence_heard(l->fence, mono_ms());
    /* When the heartbeat of the next seq goes out. */
    l->hb_sent[(l->c.hb_seq + 1) % LINK_HB_RING] = mono_ms();
    ctlconn_heartbeat(&l->c);
}

/* ctlconn: the session w names started. */
static void
on_welcome(void *arg, const Cloud__Agent__Welcome *w)
{
    struct link *l = arg;

    free(l->host_id);
    l->host_id = xstrdup(w->host_id);
    l->backoff_ms = LINK_BACKOFF_MIN_MS;
    l->failed = 0;
    /* The registration stored a last_seen after our Hello went out. */
    l->acks = w->heartbeat_acks;
    l->last_ack_ms = mono_ms();
    fence_set_after(l->fence, w->fence_after_ms);
    fence_heard(l->fence, l->hello_ms);
    log_info("registered with %s as host %s, session %" PRIu64
             ", heartbeat every %u ms, fence_after %u ms%s",
             l->addrs[l->cur].text, l->host_id, l->c.epoch, l->c.hb_ms,
             w->fence_after_ms,
             l->acks ? "" : " (the controller acknowledges no heartbeat)");
    /* systemd's view (a no-op without NOTIFY_SOCKET): readiness came at
     * start, registration is only status (docs/install.md). */
    (void)sd_notifyf(0, "STATUS=registered with %s as host %s",
                     l->addrs[l->cur].text, l->host_id);
    link_send_all_status(l);
    if (l->cache)
        blobcache_link_up(l->cache);
}

/* The controller stored our heartbeats up to seq. */
static void
on_heartbeat_ack(struct link *l, const Cloud__Agent__HeartbeatAck *a)
{
    if (l->c.state != CTLCONN_READY || a->session_epoch != l->c.epoch ||
        a->seq == 0 || a->seq > l->c.hb_seq ||
        l->c.hb_seq - a->seq >= LINK_HB_RING)
        return; /* another session's, or too old to date */
    l->last_ack_ms = mono_ms();
    fence_set_after(l->fence, a->fence_after_ms);
    /* last_seen was stored no earlier than this (agent.proto). */
    fence_heard(l->fence,
                l->hb_sent[a->seq % LINK_HB_RING] + a->stored_after_ms);
}

/* fence.h: no controller stored a heartbeat of ours for fence_after. */
static void
on_fence(void *arg, long long silent_ms, unsigned after_ms)
{
    struct link *l = arg;
    char *why = xasprintf("fenced: no controller heard from this host for %lld s (fence_after %u s, partition_policy stop)",
                          silent_ms / 1000, after_ms / 1000);

    log_warnx("%s; destroying the instances of partition_policy \"stop\"",
              why);
    worker_fence(l->worker, why);
    free(why);
    /* The host may be marked down before we are heard again: register
     * anew then, so the controller learns in one transaction that the host
     * is back and what still runs there (cloud_agent_register), rather than
     * from a heartbeat on a connection that outlived the partition. */
    if (l->c.state != CTLCONN_IDLE)
        ctlconn_down(&l->c,
                     "no controller heard for fence_after; registering again");
}

/* A config map (InstanceSpec.config, ConfigUpdate.config; InstanceSpec.env
 * too, as what "config") as a JSON object; NULL (logged) when a key or
 * value is not UTF-8. The entry types are the same message shape. */
static json_t *
map_json(const char *id, const char *what,
         Cloud__Agent__InstanceSpec__ConfigEntry **e, size_t n)
{
    json_t *o = json_object();
    size_t i;

    for (i = 0; i < n; i++) {
        json_t *v = json_string(e[i]->value);

        if (v == NULL || json_object_set_new(o, e[i]->key, v) < 0) {
            log_warnx("instance %s: %s key %.64s has a key or value that is not UTF-8; %s not sent",
                      id, what, e[i]->key, what);
            json_decref(o);
            return NULL;
        }
    }
    return o;
}

static void
on_config_update(struct link *l, const Cloud__Agent__ConfigUpdate *u)
{
    json_t *cfg;

    if (l->c.state != CTLCONN_READY) {
        log_warnx("ConfigUpdate before Welcome ignored");
        return;
    }
    if (u->instance_id == NULL || u->instance_id[0] == '\0' ||
        u->version == 0) {
        log_warnx("ConfigUpdate without an instance id or a version ignored");
        return;
    }
    cfg = map_json(u->instance_id, "config",
                   (Cloud__Agent__InstanceSpec__ConfigEntry **)u->config,
                   u->n_config);
    if (cfg == NULL)
        return;
    if (chset_config(l->chans, u->instance_id, u->version, cfg) > 0)
        log_info("instance %s: config version %" PRIu64 " received",
                 u->instance_id, u->version);
    json_decref(cfg);
}

/* ctlconn: a whole desired set, for the worker. */
static void
apply_desired(void *arg, const struct dsparts_set *set)
{
    struct link *l = arg;
    Cloud__Agent__InstanceSpec *const *instances = set->instances;
    uint64_t revision = set->revision;
    size_t i, n = set->n, nparts = set->nenvs;
    struct worker_spec *specs;

    specs = xcalloc(n + 1, sizeof(*specs));
    for (i = 0; i < n; i++) {
        const Cloud__Agent__InstanceSpec *s = instances[i];
        struct worker_spec *w = &specs[i];

        w->id = xstrdup(s->id);
        w->name = xstrdup(s->name);
        w->generation = s->generation;
        w->restart_count = s->restart_count;
        switch (s->desired_state) {
        case CLOUD__AGENT__DESIRED_INSTANCE_STATE__DESIRED_INSTANCE_STATE_RUNNING:
            w->desired = WORKER_RUN;
            break;
        case CLOUD__AGENT__DESIRED_INSTANCE_STATE__DESIRED_INSTANCE_STATE_STOPPED:
            w->desired = WORKER_STOP;
            break;
        default:
            w->desired = WORKER_DELETE;
            break;
        }
        w->kill = s->stop_signal == CLOUD__AGENT__STOP_SIGNAL__STOP_SIGNAL_KILL;
        w->fence = s->partition_policy ==
                   CLOUD__AGENT__PARTITION_POLICY__PARTITION_POLICY_STOP;
        w->grace_ms = s->stop_grace_period_ms ? s->stop_grace_period_ms : 10000;
        w->vcpus = s->vcpus;
        w->memory_mib = s->memory_mib;
        w->disk_gib = s->disk_gib;
        if (s->image != NULL) {
            w->disk_image = s->image->kind == CLOUD__AGENT__IMAGE_KIND__IMAGE_KIND_DISK;
            w->kernel_digest = xstrdup(s->image->kernel_digest);
            w->initrd_digest = xstrdup(s->image->initrd_digest);
            w->disk_digest = xstrdup(s->image->disk_digest);
            w->cmdline = xstrdup(s->image->cmdline);
        }
        /* The boot line: env and args (issue 11). */
        {
            json_t *env = map_json(
                s->id, "env",
                (Cloud__Agent__InstanceSpec__ConfigEntry **)s->env, s->n_env);
            json_t *args = json_array();
            size_t j;

            w->args = xcalloc(s->n_args + 1, sizeof(*w->args));
            for (j = 0; j < s->n_args; j++) {
                json_t *a = json_string(s->args[j]);

                if (a == NULL) {
                    log_warnx("instance %s: args[%zu] is not UTF-8; sent as \"\"",
                              s->id, j);
                    a = json_string("");
                }
                json_array_append_new(args, a);
                w->args[j] = xstrdup(json_string_value(a));
            }
            w->nargs = s->n_args;
            if (env != NULL)
                (void)chset_boot(l->chans, s->id, env, args);
            json_decref(env);
            json_decref(args);
            w->boot_line = chset_boot_line(l->chans, s->id);
        }
        if (s->config_version > 0) {
            json_t *cfg = map_json(s->id, "config", s->config, s->n_config);

            if (cfg != NULL)
                (void)chset_config(l->chans, s->id, s->config_version, cfg);
            json_decref(cfg);
            w->config_version = s->config_version;
            w->config_line = chset_config_line(l->chans, s->id);
        }
    }
    l->c.revision = revision;
    if (nparts > 1)
        log_info("desired set revision %" PRIu64 ": %zu instances in %zu parts",
                 revision, n, nparts);
    else
        log_info("desired set revision %" PRIu64 ": %zu instances", revision,
                 n);
    if (l->cache)
        blobcache_note_set(l->cache, specs, n);
    worker_set_desired(l->worker, specs, n);
}

/* ---- image blobs (blobcache.c) ----------------------------------------- */

static int
cache_send(void *arg, const frame_envelope *env)
{
    struct link *l = arg;

    if (l->c.state != CTLCONN_READY)
        return -1;
    return ctlconn_send(&l->c, env);
}

/* ---- console logs (conlog.c) ------------------------------------------ */

static int
log_send_chunk(void *arg, uint64_t request_id, const uint8_t *data,
               size_t len, uint64_t offset, bool eof, const char *error)
{
    struct link *l = arg;
    Cloud__Agent__Envelope env = CLOUD__AGENT__ENVELOPE__INIT;
    Cloud__Agent__LogChunk ch = CLOUD__AGENT__LOG_CHUNK__INIT;

    if (l->c.state != CTLCONN_READY)
        return -1;
    ch.request_id = request_id;
    ch.data.data = (uint8_t *)data;
    ch.data.len = len;
    ch.eof = eof;
    ch.offset = offset;
    ch.error = (char *)(error ? error : "");
    env.msg_case = CLOUD__AGENT__ENVELOPE__MSG_LOG_CHUNK;
    env.log_chunk = &ch;
    return ctlconn_send(&l->c, &env);
}

static size_t
log_backlog(void *arg)
{
    struct link *l = arg;

    if (l->c.bev == NULL)
        return SIZE_MAX;
    return evbuffer_get_length(bufferevent_get_output(l->c.bev));
}

static void
on_log_request(struct link *l, const Cloud__Agent__LogRequest *q)
{
    struct conlog_request req;

    if (l->c.state != CTLCONN_READY) {
        log_warnx("LogRequest before Welcome ignored");
        return;
    }
    if (q->cancel) {
        conlog_cancel(l->conlog, q->request_id);
        return;
    }
    memset(&req, 0, sizeof(req));
    req.id = q->request_id;
    req.instance_id = q->instance_id;
    req.offset = q->offset;
    req.tail_bytes = q->tail_bytes;
    req.tail_lines = q->tail_lines;
    req.follow = q->follow;
    conlog_start(l->conlog, &req);
}

/* ctlconn: a message that is not the session's own. */
static void
on_message(void *arg, const frame_envelope *env)
{
    struct link *l = arg;

    switch (env->msg_case) {
    case CLOUD__AGENT__ENVELOPE__MSG_HEARTBEAT_ACK:
        on_heartbeat_ack(l, env->heartbeat_ack);
        break;
    case CLOUD__AGENT__ENVELOPE__MSG_CONFIG_UPDATE:
        on_config_update(l, env->config_update);
        break;
    case CLOUD__AGENT__ENVELOPE__MSG_LOG_REQUEST:
        on_log_request(l, env->log_request);
        break;
    case CLOUD__AGENT__ENVELOPE__MSG_HOST_NETWORK:
        on_host_network(l, env->host_network);
        break;
    case CLOUD__AGENT__ENVELOPE__MSG_BLOB_CHUNK:
        if (l->cache != NULL && l->c.state == CTLCONN_READY)
            blobcache_on_chunk(l->cache, env->blob_chunk);
        break;
    default:
        log_info("%s message from the controller ignored (not supported yet)",
                 frame_msg_name(env));
        break;
    }
}

/* ctlconn: time to dial (the first facts from the worker, a redial). */
static void
link_connect(void *arg)
{
    struct link *l = arg;
    SSL *ssl;
    const struct ctaddr *a = &l->addrs[l->cur];
    int port = (int)strtol(a->port, NULL, 10);

    ssl = SSL_new(l->ssl);
    if (ssl == NULL) {
        ctlconn_down(&l->c, "cannot create a TLS session");
        return;
    }
    /* Check the controller's certificate names what we dialled. */
    if (tlsctx_client_host(ssl, a->host) < 0) {
        SSL_free(ssl);
        ctlconn_down(&l->c, "cannot set the controller %s %s to verify",
                     tlsctx_host_is_ip(a->host) ? "address" : "name", a->host);
        return;
    }
    ctlconn_dial(&l->c, ssl, a->host, port);
}

static const struct ctlconn_ops link_ctlconn_ops = {
    .dial = link_connect,
    .connected = link_send_hello,
    .welcome = on_welcome,
    .desired = apply_desired,
    .message = on_message,
    .down = link_lost,
    .heartbeat = on_heartbeat,
};

/* ---- worker results ---------------------------------------------------- */

static void
notify_worker(void *arg)
{
    struct link *l = arg;
    uint64_t one = 1;

    /* An eventfd write only fails when the counter would overflow. */
    if (write(l->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        log_warn("cannot wake the event loop");
}

/*
 * Keeps the guest channel in step with the instance: connected while it
 * runs; when it ends, a clean poweroff the guest announced with
 * {"exit":N} becomes exit code N.
 */
static void
link_channel_follow(struct link *l, struct worker_status *s)
{
    int code;

    switch (s->state) {
    case WS_RUNNING:
    case WS_STOPPING:
        if (s->channel != NULL)
            chset_attach(l->chans, s->id, s->channel);
        break;
    case WS_EXITED:
    case WS_FAILED:
        if (chset_detach(l->chans, s->id, &code) && s->state == WS_EXITED &&
            s->exit_code == 0 && s->reason[0] == '\0') {
            s->exit_code = code;
            s->exit_from_guest = true;
            /* A clean exit 0 needs no reason, as a plain poweroff has none. */
            if (code != 0) {
                free(s->reason);
                s->reason = xasprintf("guest reported exit code %d", code);
            }
        }
        break;
    case WS_REMOVED:
        (void)chset_detach(l->chans, s->id, NULL);
        chset_forget(l->chans, s->id);
        break;
    default:
        break;
    }
}

/* The guest said something new: the controller hears it at once. */
static void
on_guest_changed(void *arg, const char *id)
{
    struct link *l = arg;
    struct worker_status *s = strmap_get(&l->status, id);

    if (s != NULL && l->c.state == CTLCONN_READY)
        link_send_status(l, s);
}

static void
efd_cb(evutil_socket_t fd, short what, void *arg)
{
    struct link *l = arg;
    struct worker_result *res, *r;
    uint64_t v;

    (void)what;
    if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
        log_warn("cannot read the worker's eventfd");
    res = worker_take(l->worker);
    for (r = res; r != NULL; r = r->next) {
        if (r->kind == WR_FACTS) {
            bool first = !l->have_facts;

            {
                struct worker_facts tmp = l->facts;

                l->facts = r->facts;
                r->facts = tmp; /* freed with the result */
            }
            l->have_facts = true;
            if (first)
                link_connect(l);
            continue;
        }
        {
            struct worker_status *s = xcalloc(1, sizeof(*s)), *old;

            *s = r->status;
            memset(&r->status, 0, sizeof(r->status));
            link_channel_follow(l, s);
            old = strmap_put(&l->status, s->id, s);
            status_free(old);
            if (s->state == WS_REMOVED)
                conlog_instance_gone(l->conlog, s->id);
            if (l->c.state == CTLCONN_READY) {
                link_send_status(l, s);
                if (s->state == WS_REMOVED) {
                    strmap_del(&l->status, s->id);
                    status_free(s);
                }
            }
        }
    }
    worker_result_free(res);
}

/* ---- set-up ------------------------------------------------------------ */

static int
parse_labels(struct link *l, const char *spec)
{
    char *copy, *tok, *save = NULL;
    int ret = 0;

    if (spec == NULL || spec[0] == '\0')
        return 0;
    copy = xstrdup(spec);
    for (tok = strtok_r(copy, ",", &save); tok != NULL;
         tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');

        if (eq == NULL || eq == tok || l->nlabels == LINK_MAX_LABELS) {
            log_warnx("--labels takes up to %d KEY=VALUE pairs separated by commas, not %s",
                      LINK_MAX_LABELS, spec);
            ret = -1;
            break;
        }
        l->labels[l->nlabels].key = xstrndup(tok, (size_t)(eq - tok));
        l->labels[l->nlabels].value = xstrdup(eq + 1);
        l->nlabels++;
    }
    free(copy);
    return ret;
}

/* The controller's certificate must chain to our CA and be for serverAuth
 * (tlsctx.h): an agent's (clientAuth only, same CA) cannot pose as a
 * controller. */
static SSL_CTX *
client_ctx(const struct link_opts *o)
{
    struct tlsctx_opts to = {.role = TLSCTX_CLIENT,
                             .peer = TLSCTX_PEER_CA,
                             .cert = o->cert,
                             .key = o->key,
                             .ca = o->ca};
    char why[TLSCTX_WHY_MAX];
    SSL_CTX *ctx = tlsctx_new(&to, why, sizeof(why));

    if (ctx == NULL)
        log_warnx("cannot set up TLS for the controller link: %s", why);
    return ctx;
}

static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    log_info("signal %d: stopping (guests keep running)", (int)sig);
    (void)sd_notify(0, "STOPPING=1\nSTATUS=stopping (guests keep running)");
    event_base_loopexit(arg, NULL);
}

int
link_run(const struct link_opts *o)
{
    struct worker_opts wo = {
        .uri = o->uri,
        .hv_override = o->hypervisor,
        .images_dir = o->images_dir,
        .state_dir = o->state_dir,
        .network = o->network,
        .drv = &virt_libvirt_driver,
    };
    struct link l;
    char why[512];
    char *cluster_id = NULL, *owner = NULL, *cache_dir = NULL;
    struct worker_status *s;
    size_t i;
    int rc = 1;

    memset(&l, 0, sizeof(l));
    l.o = o;
    l.efd = -1;
    l.backoff_ms = LINK_BACKOFF_MIN_MS;
    strmap_init(&l.status);
    if (ctlist_parse(o->controller, &l.addrs, &l.naddrs, why, sizeof(why)) <
        0) {
        log_warnx("%s", why);
        goto cleanup;
    }
    if (o->ca == NULL || o->cert == NULL || o->key == NULL) {
        log_warnx("run needs --ca, --cert and --key (cloud-controller issue-agent-cert makes them)");
        goto cleanup;
    }
    if (parse_labels(&l, o->labels) < 0)
        goto cleanup;
    l.ssl = client_ctx(o);
    if (l.ssl == NULL)
        goto cleanup;
    /* The owner written into our domains; see agent/ident.h. */
    if (ident_load(o->ca, o->cert, &cluster_id, &owner) < 0)
        goto cleanup;
    wo.cluster_id = cluster_id;
    wo.owner = owner;
    log_info("agent identity: cluster %s, host %s", cluster_id, owner);
    srandom((unsigned)getpid() ^ (unsigned)wall_ms());
    l.base = event_base_new();
    if (l.base == NULL)
        fatalx("cannot create the event loop");
    l.efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (l.efd < 0)
        fatal("eventfd");
    l.efd_ev = event_new(l.base, l.efd, EV_READ | EV_PERSIST, efd_cb, &l);
    l.sigint = evsignal_new(l.base, SIGINT, on_signal, l.base);
    l.sigterm = evsignal_new(l.base, SIGTERM, on_signal, l.base);
    if (l.efd_ev == NULL || l.sigint == NULL || l.sigterm == NULL ||
        ctlconn_init(&l.c, l.base, &link_ctlconn_ops, &l, "",
                     LINK_WELCOME_TIMEOUT_S) < 0 ||
        event_add(l.efd_ev, NULL) < 0 || evsignal_add(l.sigint, NULL) < 0 ||
        evsignal_add(l.sigterm, NULL) < 0)
        fatalx("cannot set up the agent's events");
    {
        struct conlog_ops lops = {.send = log_send_chunk,
                                  .backlog = log_backlog};

        l.conlog = conlog_new(l.base, o->state_dir, &lops, &l);
    }
    {
        struct chset_ops cops = {.changed = on_guest_changed};

        l.chans = chset_new(l.base, &cops, &l);
    }
    l.fence = fence_new(l.base, o->state_dir, on_fence, &l);
    /*
     * Image blobs come from the controller into the cache. On libvirt's
     * test driver, which reads no file, only with an explicit --cache-dir
     * (the simulated hosts of tests and benches skip the transfers).
     */
    if (o->cache_dir != NULL || strncmp(o->uri, "test:", 5) != 0) {
        struct blobcache_opts bo = {
            .dir = cache_dir = o->cache_dir
                                   ? xstrdup(o->cache_dir)
                                   : xasprintf("%s/cache", o->state_dir),
            .images_dir = o->images_dir,
            .max_bytes = (uint64_t)o->cache_max_mib << 20,
        };

        l.cache = blobcache_new(l.base, &bo, cache_send, &l);
        if (l.cache == NULL)
            goto cleanup;
        wo.resolve = blobcache_resolve_cb;
        wo.resolve_arg = l.cache;
    }
    /* libvirt's events must have their loop before the first open. */
    if (virt_event_loop_start() < 0)
        goto cleanup;
    /* The first facts from the worker start the controller link. */
    l.worker = worker_start(&wo, notify_worker, &l);
    if (l.cache)
        blobcache_set_kick(l.cache, worker_kick_cb, l.worker);
    log_info("cloud-agent %s: libvirt %s, controller %s", o->version, o->uri,
             o->controller);
    /*
     * Ready for systemd (Type=notify) once running, not once registered:
     * the agent keeps its guests and its fence clock whether or not a
     * controller answers, and a start that waited for one would fail the
     * unit (and restart it) while controllers are down.
     */
    (void)sd_notifyf(0, "READY=1\nSTATUS=connecting to %s", o->controller);
    event_base_dispatch(l.base);
    rc = 0;

cleanup:
    worker_stop(l.worker);
    blobcache_free(l.cache);
    free(cache_dir);
    conlog_free(l.conlog);
    chset_free(l.chans);
    fence_free(l.fence);
    ctlconn_fini(&l.c);
    if (l.efd_ev)
        event_free(l.efd_ev);
    if (l.sigint)
        event_free(l.sigint);
    if (l.sigterm)
        event_free(l.sigterm);
    if (l.efd >= 0)
        close(l.efd);
    if (l.base)
        event_base_free(l.base);
    SSL_CTX_free(l.ssl);
    i = 0;
    while ((s = strmap_next(&l.status, &i)) != NULL)
        status_free(s);
    strmap_fini(&l.status);
    for (i = 0; i < l.nlabels; i++) {
        free(l.labels[i].key);
        free(l.labels[i].value);
    }
    worker_facts_clear(&l.facts);
    ctlist_free(l.addrs, l.naddrs);
    free(l.host_id);
    free(cluster_id);
    free(owner);
    return rc;
}
