/*
 * hollow_host: one simulated host of cloud-hollow (see hollow.h). Owns its
 * client certificate and key, its connection (freed from a deferred event,
 * never inside its own callback, as agent/link.c does), its session, the
 * partial desired set (agent/dsparts.c) and the map of its instances
 * (hollow_inst.c). The last status of each instance is re-sent after every
 * Welcome, so a controller that missed reports while the link was down
 * learns them.
 */
#define LOG_MODULE "hollow"

#include "hollow.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/util.h>
#include <openssl/pem.h>

#include "dsparts.h"
#include "frame.h"
#include "log.h"
#include "mem.h"
#include "netopt.h"
#include "strmap.h"
#include "tlsctx.h"
#include "tlsev.h"

#define HH_BACKOFF_MIN_MS 500
#define HH_BACKOFF_MAX_MS 30000
#define HH_WELCOME_TIMEOUT_S 15

/* ---- sending ---------------------------------------------------------- */

void
hh_send(struct hhost *h, const frame_envelope *env)
{
    if (h->bev == NULL)
        return;
    if (frame_encode_evbuffer(bufferevent_get_output(h->bev), env) < 0)
        log_warnx("host %s: cannot encode a %s frame", h->name,
                  frame_msg_name(env));
}

/* ---- messages --------------------------------------------------------- */

static void
send_error(struct hhost *h, const char *msg)
{
    Cloud__Agent__Envelope env = CLOUD__AGENT__ENVELOPE__INIT;
    Cloud__Agent__Error err = CLOUD__AGENT__ERROR__INIT;

    err.code = CLOUD__AGENT__ERROR_CODE__ERROR_CODE_UNSUPPORTED;
    err.message = (char *)msg;
    env.msg_case = CLOUD__AGENT__ENVELOPE__MSG_ERROR;
    env.error = &err;
    hh_send(h, &env);
}

/* Takes env; the checks of agent/link.c on_desired, in its order. */
static void
on_desired(struct hhost *h, frame_envelope *env)
{
    const Cloud__Agent__DesiredState *d = env->desired_state;
    struct dsparts_set set;
    char why[256];

    if (h->state != HH_READY || d->session_epoch != h->epoch) {
        log_warnx("host %s: DesiredState for session %" PRIu64
                  " ignored (ours is %" PRIu64 ")",
                  h->name, d->session_epoch, h->epoch);
        frame_envelope_free(env);
        return;
    }
    if (d->leader_epoch < h->highest_leader_epoch) {
        log_warnx("host %s: DesiredState from leader epoch %" PRIu64
                  " refused: epoch %" PRIu64 " was seen",
                  h->name, d->leader_epoch, h->highest_leader_epoch);
        frame_envelope_free(env);
        return;
    }
    h->highest_leader_epoch = d->leader_epoch;
    if (d->revision <= h->revision) {
        frame_envelope_free(env); /* applied already */
        return;
    }
    switch (dsparts_add(h->parts, env, &set, why, sizeof(why))) {
    case DSPARTS_HELD:
        return;
    case DSPARTS_REFUSED:
        log_warnx("host %s: %s", h->name, why);
        send_error(h, why);
        return;
    case DSPARTS_WHOLE:
        break;
    }
    hinst_apply_set(h, set.revision, set.instances, set.n);
    dsparts_set_clear(&set);
}

static void
send_hello(struct hhost *h)
{
    const struct hollow_opts *o = h->hw->o;
    Cloud__Agent__Envelope env = CLOUD__AGENT__ENVELOPE__INIT;
    Cloud__Agent__Hello hello = CLOUD__AGENT__HELLO__INIT;
    Cloud__Agent__Resources cap = CLOUD__AGENT__RESOURCES__INIT;
    Cloud__Agent__HostFacts f = CLOUD__AGENT__HOST_FACTS__INIT;
    Cloud__Agent__InstanceRef *refs, **prefs;
    char *types[1] = {(char *)o->hypervisor};
    size_t i, n = 0;

    hello.host_name = h->name;
    hello.agent_version = (char *)"hollow";
    hello.protocol_version = CLOUD__AGENT__PROTOCOL_VERSION__PROTOCOL_VERSION_1;
    hello.highest_leader_epoch = h->highest_leader_epoch;
    hello.desired_set_max = DSPARTS_BYTES_MAX;
    cap.vcpus = o->vcpus;
    cap.memory_mib = o->memory_mib;
    cap.disk_gib = o->disk_gib;
    hello.capacity = &cap;
    f.arch = (char *)"x86_64";
    f.hypervisor_types = types;
    f.n_hypervisor_types = 1;
    f.domain_type = (char *)o->hypervisor;
    f.libvirt_version = (char *)"hollow";
    hello.facts = &f;
    /* What a restarted agent re-adopts: every instance not removed. */
    refs = xcalloc(h->insts.len + 1, sizeof(*refs));
    prefs = xcalloc(h->insts.len + 1, sizeof(*prefs));
    for (i = 0; i < h->insts.cap; i++) {
        struct hinst *in;

        if (h->insts.keys[i] == NULL)
            continue;
        in = h->insts.vals[i];
        if (in->rep_state == 0 || in->phase == HI_REMOVED)
            continue;
        cloud__agent__instance_ref__init(&refs[n]);
        refs[n].id = in->id;
        refs[n].generation = in->generation;
        refs[n].state = in->rep_state;
        prefs[n] = &refs[n];
        n++;
    }
    hello.instances = prefs;
    hello.n_instances = n;
    env.msg_case = CLOUD__AGENT__ENVELOPE__MSG_HELLO;
    env.hello = &hello;
    hh_send(h, &env);
    free(refs);
    free(prefs);
}

static void
hb_cb(evutil_socket_t fd, short what, void *arg)
{
    struct hhost *h = arg;
    Cloud__Agent__Envelope env = CLOUD__AGENT__ENVELOPE__INIT;
    Cloud__Agent__Heartbeat hb = CLOUD__AGENT__HEARTBEAT__INIT;

    (void)fd;
    (void)what;
    if (h->state != HH_READY)
        return;
    hb.session_epoch = h->epoch;
    hb.seq = ++h->hb_seq;
    hb.applied_revision = h->revision;
    env.msg_case = CLOUD__AGENT__ENVELOPE__MSG_HEARTBEAT;
    env.heartbeat = &hb;
    hh_send(h, &env);
}

static void
on_welcome(struct hhost *h, const Cloud__Agent__Welcome *w)
{
    struct timeval tv;
    size_t i;

    if (h->state != HH_WELCOME) {
        log_warnx("host %s: Welcome outside the handshake ignored", h->name);
        return;
    }
    h->epoch = w->session_epoch;
    h->revision = 0;
    dsparts_reset(h->parts);
    h->hb_seq = 0;
    h->hb_ms = w->heartbeat_interval_ms ? w->heartbeat_interval_ms : 2000;
    if (h->hb_ms < 100)
        h->hb_ms = 100;
    h->state = HH_READY;
    h->hw->ready++;
    h->backoff_ms = HH_BACKOFF_MIN_MS;
    log_debug("host %s: registered as %s, session %" PRIu64
              ", heartbeat every %u ms",
              h->name, w->host_id, h->epoch, h->hb_ms);
    bufferevent_set_timeouts(h->bev, NULL, NULL);
    tv.tv_sec = h->hb_ms / 1000;
    tv.tv_usec = (h->hb_ms % 1000) * 1000;
    if (evtimer_add(h->hb_ev, &tv) < 0)
        fatalx("cannot arm the heartbeat of host %s", h->name);
    /* Every status we hold, again; removed ones are forgotten once sent. */
    for (i = 0; i < h->insts.cap; i++) {
        struct hinst *in;

        if (h->insts.keys[i] == NULL)
            continue;
        in = h->insts.vals[i];
        if (in->rep_state == 0 ||
            (in->phase == HI_REMOVED && !in->rep_unsent))
            continue;
        hinst_send_status(h, in);
        in->rep_unsent = false;
    }
}

/* Handles env; false when it is to be freed, true when it was kept. */
static bool
on_message(struct hhost *h, frame_envelope *env)
{
    switch (env->msg_case) {
    case CLOUD__AGENT__ENVELOPE__MSG_WELCOME:
        on_welcome(h, env->welcome);
        break;
    case CLOUD__AGENT__ENVELOPE__MSG_DESIRED_STATE:
        on_desired(h, env);
        return true;
    case CLOUD__AGENT__ENVELOPE__MSG_ERROR:
        log_warnx("host %s: controller error %d: %.512s", h->name,
                  (int)env->error->code, env->error->message);
        break;
    default:
        /* Config updates, log requests, blob chunks: nothing to run them. */
        log_debug("host %s: %s message ignored", h->name, frame_msg_name(env));
        break;
    }
    return false;
}

/* ---- connection life cycle ------------------------------------------- */

static void
free_cb(evutil_socket_t fd, short what, void *arg)
{
    struct hhost *h = arg;

    (void)fd;
    (void)what;
    if (h->dead_bev != NULL) {
        bufferevent_free(h->dead_bev);
        h->dead_bev = NULL;
    }
}

static void hh_down(struct hhost *h, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
hh_down(struct hhost *h, const char *fmt, ...)
{
    struct timeval tv;
    char why[512];
    unsigned ms;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    log_warnx("host %s: controller %s: %s; retrying in %u ms", h->name,
              h->hw->o->controller, why, h->backoff_ms);
    dsparts_reset(h->parts);
    if (h->bev != NULL) {
        bufferevent_disable(h->bev, EV_READ | EV_WRITE);
        if (h->dead_bev != NULL)
            bufferevent_free(h->dead_bev);
        h->dead_bev = h->bev;
        h->bev = NULL;
        event_active(h->free_ev, EV_TIMEOUT, 0);
    }
    if (h->state == HH_READY) {
        h->hw->ready--;
        h->hw->disconnects++;
    }
    evtimer_del(h->hb_ev);
    h->state = HH_IDLE;
    ms = h->backoff_ms + (unsigned)(random() % (h->backoff_ms / 4 + 1));
    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    if (evtimer_add(h->retry_ev, &tv) < 0)
        fatalx("cannot arm the reconnect of host %s", h->name);
    h->backoff_ms *= 2;
    if (h->backoff_ms > HH_BACKOFF_MAX_MS)
        h->backoff_ms = HH_BACKOFF_MAX_MS;
}

static void
read_cb(struct bufferevent *bev, void *arg)
{
    struct hhost *h = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    char err[256];

    while (h->bev == bev) {
        frame_envelope *env = NULL;
        enum frame_status st =
            frame_decode_evbuffer(in, NULL, &env, err, sizeof(err));

        if (st == FRAME_NEED_MORE)
            break;
        if (st == FRAME_ERROR) {
            hh_down(h, "bad frame from the controller: %s", err);
            break;
        }
        if (!on_message(h, env))
            frame_envelope_free(env);
    }
}

static void
event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct hhost *h = arg;
    char buf[256] = "";

    if (bev != h->bev)
        return;
    if (what & BEV_EVENT_CONNECTED) {
        struct timeval tv = {HH_WELCOME_TIMEOUT_S, 0};

        h->state = HH_WELCOME;
        bufferevent_set_timeouts(bev, &tv, NULL);
        if (netopt_nodelay(bufferevent_getfd(bev)) < 0)
            log_warn("host %s: cannot set TCP_NODELAY", h->name);
        send_hello(h);
        return;
    }
    tlsev_error(bev, "controller's", buf, sizeof(buf));
    if (what & BEV_EVENT_TIMEOUT)
        hh_down(h, "no Welcome in time");
    else if (what & BEV_EVENT_EOF)
        hh_down(h, "the controller closed the connection");
    else
        hh_down(h, "connection failed: %s",
                buf[0] ? buf
                       : evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
}

static void
hh_connect(struct hhost *h)
{
    struct hollow *hw = h->hw;
    SSL *ssl = SSL_new(hw->ssl); /* checks the controller's name (main) */
    char e[256];

    if (ssl == NULL || SSL_use_certificate(ssl, h->cert) != 1 ||
        SSL_use_PrivateKey(ssl, h->key) != 1 ||
        (hw->sni && SSL_set_tlsext_host_name(ssl, hw->host) != 1)) {
        SSL_free(ssl);
        hh_down(h, "cannot set up a TLS session: %s",
                tlsctx_error(e, sizeof(e)));
        return;
    }
    h->bev = bufferevent_openssl_socket_new(hw->base, -1, ssl,
                                            BUFFEREVENT_SSL_CONNECTING,
                                            BEV_OPT_CLOSE_ON_FREE);
    if (h->bev == NULL) {
        SSL_free(ssl);
        hh_down(h, "cannot create a TLS bufferevent");
        return;
    }
    bufferevent_openssl_set_allow_dirty_shutdown(h->bev, 1);
    bufferevent_setcb(h->bev, read_cb, NULL, event_cb, h);
    bufferevent_enable(h->bev, EV_READ | EV_WRITE);
    h->state = HH_CONNECTING;
    {
        struct timeval tv = {HH_WELCOME_TIMEOUT_S, 0};

        bufferevent_set_timeouts(h->bev, &tv, &tv);
    }
    if (bufferevent_socket_connect_hostname(
            h->bev, NULL, AF_UNSPEC, hw->host,
            (int)strtol(hw->port, NULL, 10)) < 0)
        hh_down(h, "cannot connect");
}

static void
retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    hh_connect(arg);
}

/* ---- set-up ------------------------------------------------------------ */

static int
load_identity(struct hhost *h, const char *dir)
{
    char *cert = xasprintf("%s/%s/cert.pem", dir, h->name);
    char *key = xasprintf("%s/%s/key.pem", dir, h->name);
    char e[256];
    FILE *f;
    int rc = -1;

    f = fopen(cert, "r");
    if (f == NULL) {
        log_warn("host %s: cannot open %s", h->name, cert);
        goto cleanup;
    }
    h->cert = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if (h->cert == NULL) {
        log_warnx("host %s: cannot read the certificate %s: %s", h->name, cert,
                  tlsctx_error(e, sizeof(e)));
        goto cleanup;
    }
    f = fopen(key, "r");
    if (f == NULL) {
        log_warn("host %s: cannot open %s", h->name, key);
        goto cleanup;
    }
    h->key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    if (h->key == NULL) {
        log_warnx("host %s: cannot read the key %s: %s", h->name, key,
                  tlsctx_error(e, sizeof(e)));
        goto cleanup;
    }
    if (X509_check_private_key(h->cert, h->key) != 1) {
        log_warnx("host %s: %s is not the key of %s", h->name, key, cert);
        goto cleanup;
    }
    rc = 0;

cleanup:
    free(cert);
    free(key);
    return rc;
}

struct hhost *
hhost_new(struct hollow *hw, const char *name, unsigned first_dial_ms)
{
    struct hhost *h = xcalloc(1, sizeof(*h));
    struct timeval tv = {first_dial_ms / 1000, (first_dial_ms % 1000) * 1000};

    h->hw = hw;
    h->name = xstrdup(name);
    h->backoff_ms = HH_BACKOFF_MIN_MS;
    strmap_init(&h->insts);
    h->parts = dsparts_new(DSPARTS_MAX, DSPARTS_BYTES_MAX, DSPARTS_MEM_MAX);
    if (load_identity(h, hw->o->certs_dir) < 0) {
        hhost_free(h);
        return NULL;
    }
    h->retry_ev = evtimer_new(hw->base, retry_cb, h);
    h->hb_ev = event_new(hw->base, -1, EV_PERSIST, hb_cb, h);
    h->free_ev = event_new(hw->base, -1, 0, free_cb, h);
    if (h->retry_ev == NULL || h->hb_ev == NULL || h->free_ev == NULL ||
        evtimer_add(h->retry_ev, &tv) < 0)
        fatalx("cannot set up the events of host %s", name);
    return h;
}

void
hhost_free(struct hhost *h)
{
    size_t i;

    if (h == NULL)
        return;
    if (h->bev != NULL)
        bufferevent_free(h->bev);
    if (h->dead_bev != NULL)
        bufferevent_free(h->dead_bev);
    if (h->retry_ev != NULL)
        event_free(h->retry_ev);
    if (h->hb_ev != NULL)
        event_free(h->hb_ev);
    if (h->free_ev != NULL)
        event_free(h->free_ev);
    for (i = 0; i < h->insts.cap; i++)
        if (h->insts.keys[i] != NULL)
            hinst_free(h->insts.vals[i]);
    strmap_fini(&h->insts);
    dsparts_free(h->parts);
    X509_free(h->cert);
    EVP_PKEY_free(h->key);
    free(h->name);
    free(h);
}
