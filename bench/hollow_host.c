/*
 * hollow_host: one simulated host of cloud-hollow (see hollow.h). Owns its
 * client certificate and key, its connection and session (agent/ctlconn.c,
 * as agent/link.c: the partial desired set is agent/dsparts.c's) and the
 * map of its instances
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

#include <event2/event.h>
#include <event2/util.h>
#include <openssl/pem.h>

#include "frame.h"
#include "log.h"
#include "mem.h"
#include "strmap.h"
#include "tlsctx.h"

#define HH_BACKOFF_MIN_MS 500
#define HH_BACKOFF_MAX_MS 30000
#define HH_WELCOME_TIMEOUT_S 15

/* ---- sending ---------------------------------------------------------- */

void
hh_send(struct hhost *h, const frame_envelope *env)
{
    (void)ctlconn_send(&h->c, env);
}

/* ---- messages --------------------------------------------------------- */

/* ctlconn: a whole desired set, checked as the agent's link checks it. */
static void
on_desired(void *arg, const struct dsparts_set *set)
{
    hinst_apply_set(arg, set->revision, set->instances, set->n);
}

/* ctlconn: TLS is up. */
static void
send_hello(void *arg)
{
    struct hhost *h = arg;
    const struct hollow_opts *o = h->hw->o;
    Cloud__Agent__Hello hello = CLOUD__AGENT__HELLO__INIT;
    Cloud__Agent__Resources cap = CLOUD__AGENT__RESOURCES__INIT;
    Cloud__Agent__HostFacts f = CLOUD__AGENT__HOST_FACTS__INIT;
    Cloud__Agent__InstanceRef *refs;
    char *types[1] = {(char *)o->hypervisor};
    struct hinst *in;
    size_t i = 0;

    hello.host_name = h->name;
    hello.agent_version = (char *)"hollow";
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
    hello.instances = xcalloc(h->insts.len + 1, sizeof(*hello.instances));
    while ((in = strmap_next(&h->insts, &i)) != NULL) {
        if (in->rep_state == 0 || in->phase == HI_REMOVED)
            continue;
        ctlconn_hello_ref(&hello, &refs[hello.n_instances], in->id,
                          in->generation, in->rep_state);
    }
    ctlconn_send_hello(&h->c, &hello);
    free(refs);
    free(hello.instances);
}

static void
on_heartbeat(void *arg)
{
    struct hhost *h = arg;

    ctlconn_heartbeat(&h->c);
}

/* ctlconn: the session w names started. */
static void
on_welcome(void *arg, const Cloud__Agent__Welcome *w)
{
    struct hhost *h = arg;
    struct hinst *in;
    size_t i = 0;

    h->hw->ready++;
    h->backoff_ms = HH_BACKOFF_MIN_MS;
    log_debug("host %s: registered as %s, session %" PRIu64
              ", heartbeat every %u ms",
              h->name, w->host_id, h->c.epoch, h->c.hb_ms);
    /* Every status we hold, again; removed ones are forgotten once sent. */
    while ((in = strmap_next(&h->insts, &i)) != NULL) {
        if (in->rep_state == 0 ||
            (in->phase == HI_REMOVED && !in->rep_unsent))
            continue;
        hinst_send_status(h, in);
        in->rep_unsent = false;
    }
}

/* ctlconn: a message that is not the session's own. */
static void
on_message(void *arg, const frame_envelope *env)
{
    struct hhost *h = arg;

    /* Config updates, log requests, blob chunks: nothing to run them. */
    log_debug("host %s: %s message ignored", h->name, frame_msg_name(env));
}

/* ---- connection life cycle ------------------------------------------- */

/* ctlconn: the connection failed or ended. */
static void
hh_lost(void *arg, const char *why)
{
    struct hhost *h = arg;

    log_warnx("host %s: controller %s: %s; retrying in %u ms", h->name,
              h->hw->o->controller, why, h->backoff_ms);
    if (h->c.state == CTLCONN_READY) {
        h->hw->ready--;
        h->hw->disconnects++;
    }
    ctlconn_close(&h->c, h->backoff_ms);
    h->backoff_ms *= 2;
    if (h->backoff_ms > HH_BACKOFF_MAX_MS)
        h->backoff_ms = HH_BACKOFF_MAX_MS;
}

/* ctlconn: time to dial. */
static void
hh_connect(void *arg)
{
    struct hhost *h = arg;
    struct hollow *hw = h->hw;
    SSL *ssl = SSL_new(hw->ssl); /* checks the controller's name (main) */
    char e[256];

    if (ssl == NULL || SSL_use_certificate(ssl, h->cert) != 1 ||
        SSL_use_PrivateKey(ssl, h->key) != 1 ||
        (hw->sni && SSL_set_tlsext_host_name(ssl, hw->host) != 1)) {
        SSL_free(ssl);
        ctlconn_down(&h->c, "cannot set up a TLS session: %s",
                     tlsctx_error(e, sizeof(e)));
        return;
    }
    ctlconn_dial(&h->c, ssl, hw->host, (int)strtol(hw->port, NULL, 10));
}

static const struct ctlconn_ops hh_ctlconn_ops = {
    .dial = hh_connect,
    .connected = send_hello,
    .welcome = on_welcome,
    .desired = on_desired,
    .message = on_message,
    .down = hh_lost,
    .heartbeat = on_heartbeat,
};

/* ---- set-up ------------------------------------------------------------ */

/* Reads h's certificate (cert not NULL) or key from path. 0 or -1 (logged). */
static int
read_pem(struct hhost *h, const char *path, X509 **cert, EVP_PKEY **key)
{
    char e[256];

    switch (tlsctx_read_pem(path, cert, key)) {
    case -1:
        log_warn("host %s: cannot open %s", h->name, path);
        return -1;
    case -2:
        log_warnx("host %s: cannot read the %s %s: %s", h->name,
                  cert != NULL ? "certificate" : "key", path,
                  tlsctx_error(e, sizeof(e)));
        return -1;
    }
    return 0;
}

static int
load_identity(struct hhost *h, const char *dir)
{
    char *cert = xasprintf("%s/%s/cert.pem", dir, h->name);
    char *key = xasprintf("%s/%s/key.pem", dir, h->name);
    int rc = -1;

    if (read_pem(h, cert, &h->cert, NULL) < 0 ||
        read_pem(h, key, NULL, &h->key) < 0)
        goto cleanup;
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

    h->hw = hw;
    h->name = xstrdup(name);
    h->prefix = xasprintf("host %s: ", name);
    h->backoff_ms = HH_BACKOFF_MIN_MS;
    strmap_init(&h->insts);
    if (load_identity(h, hw->o->certs_dir) < 0) {
        hhost_free(h);
        return NULL;
    }
    if (ctlconn_init(&h->c, hw->base, &hh_ctlconn_ops, h, h->prefix,
                     HH_WELCOME_TIMEOUT_S) < 0)
        fatalx("cannot set up the events of host %s", name);
    ctlconn_dial_after(&h->c, first_dial_ms);
    return h;
}

void
hhost_free(struct hhost *h)
{
    struct hinst *in;
    size_t i = 0;

    if (h == NULL)
        return;
    ctlconn_fini(&h->c);
    while ((in = strmap_next(&h->insts, &i)) != NULL)
        hinst_free(in);
    strmap_fini(&h->insts);
    X509_free(h->cert);
    EVP_PKEY_free(h->key);
    free(h->name);
    free(h->prefix);
    free(h);
}
