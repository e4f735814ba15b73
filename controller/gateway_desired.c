/*
 * gateway_desired: the agents' desired sets (see gateway.h; what the
 * gateway files share is gateway_priv.h). A host's set is re-read when an
 * event names one of its instances (the watch observer here), when a
 * config change concerns it (config events), after every LISTEN reconnect
 * and periodically, and is sent, in parts if large, only when it differs
 * from what the agent has.
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

#include "evbuf.h"
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

static const char *
col_or_null(const PGresult *res, int row, int c)
{
    return PQgetisnull(res, row, c) ? NULL : PQgetvalue(res, row, c);
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
        s->id = (char *)col(res, r, AGENT_DESIRED_ID);
        s->name = (char *)col(res, r, AGENT_DESIRED_NAME);
        s->generation = col_u64(res, r, AGENT_DESIRED_GENERATION);
        s->desired_state = desired_of(col(res, r, AGENT_DESIRED_DESIRED_STATE));
        s->stop_signal =
            strcmp(col(res, r, AGENT_DESIRED_STOP_SIGNAL), "KILL") == 0
                ? CLOUD__AGENT__STOP_SIGNAL__STOP_SIGNAL_KILL
                : CLOUD__AGENT__STOP_SIGNAL__STOP_SIGNAL_TERM;
        s->vcpus = (uint32_t)col_u64(res, r, AGENT_DESIRED_VCPUS);
        s->memory_mib = col_u64(res, r, AGENT_DESIRED_MEMORY_MIB);
        s->disk_gib = col_u64(res, r, AGENT_DESIRED_DISK_GIB);
        im->kind = strcmp(col(res, r, AGENT_DESIRED_IMAGE_KIND), "disk") == 0
                       ? CLOUD__AGENT__IMAGE_KIND__IMAGE_KIND_DISK
                       : CLOUD__AGENT__IMAGE_KIND__IMAGE_KIND_KERNEL;
        im->kernel_digest = (char *)col(res, r, AGENT_DESIRED_KERNEL_DIGEST);
        im->initrd_digest = (char *)col(res, r, AGENT_DESIRED_INITRD_DIGEST);
        im->disk_digest = (char *)col(res, r, AGENT_DESIRED_DISK_DIGEST);
        im->cmdline = (char *)col(res, r, AGENT_DESIRED_CMDLINE);
        s->image = im;
        s->partition_policy =
            strcmp(col(res, r, AGENT_DESIRED_PARTITION_POLICY), "stop") == 0
                ? CLOUD__AGENT__PARTITION_POLICY__PARTITION_POLICY_STOP
                : CLOUD__AGENT__PARTITION_POLICY__PARTITION_POLICY_KEEP;
        s->restart_count = col_u64(res, r, AGENT_DESIRED_RESTART_COUNT);
        s->stop_grace_period_ms =
            (uint32_t)col_u64(res, r, AGENT_DESIRED_STOP_GRACE_MS);
        gwcfg_fill(cfgs, i, s, col_u64(res, r, AGENT_DESIRED_CONFIG_VERSION),
                   col_or_null(res, r, AGENT_DESIRED_CONFIG));
        gwcfg_fill_boot(cfgs, i, s, col_or_null(res, r, AGENT_DESIRED_ENV),
                        col_or_null(res, r, AGENT_DESIRED_ARGS));
        pspecs[i] = s;
    }
    /* Remember which instances this host holds, for event routing. */
    conn_forget_ids(c);
    c->ids = xcalloc((size_t)n + 1, sizeof(*c->ids));
    for (i = 0; i < (size_t)n; i++) {
        struct gw_conn *prev;

        c->ids[i] = xstrdup(col(res, (int)i, AGENT_DESIRED_ID));
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
    /* A read left undone at the cap (of any host), or this host's again. */
    if (c->dirty || gw->desired_capped)
        gw_kick(gw);
    conn_unref(c);
}

/*
 * Starts a read of each dirty host's set, at most GW_DESIRED_INFLIGHT_MAX
 * at a time, round robin: a kick stopped by the cap resumes where it
 * stopped, not at the head of the list. From the head each time, hosts
 * near the head that events kept dirty were read again and again while
 * those at the tail waited: 100,000 instances scaled down on 1,000 hosts
 * reached some hosts 190 s late (issue 13).
 */
void
gw_kick_cb(evutil_socket_t fd, short what, void *arg)
{
    struct gateway *gw = arg;
    struct gw_conn *c;
    const char *vals[1];
    size_t n = 0, start, i;

    (void)fd;
    (void)what;
    gw->desired_capped = 0;
    for (c = gw->conns; c != NULL; c = c->next)
        n++;
    if (n == 0)
        return;
    start = gw->kick_from % n;
    for (c = gw->conns, i = 0; i < start; i++)
        c = c->next;
    for (i = 0; i < n; i++, c = c->next != NULL ? c->next : gw->conns) {
        if (gw->desired_inflight >= GW_DESIRED_INFLIGHT_MAX) {
            gw->desired_capped = 1; /* the next completion kicks again */
            gw->kick_from = (start + i) % n;
            break;
        }
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

void
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

void
gw_resync_cb(evutil_socket_t fd, short what, void *arg)
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

void
gw_cfg_clear(struct gateway *gw)
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
        gw_cfg_clear(gw);
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
        const char *id = PQgetvalue(res, i, CONFIG_PUSH_INSTANCE_ID);
        const char *host = PQgetvalue(res, i, CONFIG_PUSH_HOST_ID);
        uint64_t version = col_u64(res, i, CONFIG_PUSH_CONFIG_VERSION);
        const char *json = col_or_null(res, i, CONFIG_PUSH_CONFIG);
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

void
gw_cfg_settle_cb(evutil_socket_t fd, short what, void *arg)
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
/* The keys of m as a PostgreSQL text[] literal ({a,b,c}); the caller
 * frees it. gw_id_ok() admitted only [A-Za-z0-9_-]: no quoting needed. */
static char *
keys_literal(const struct strmap *m)
{
    struct evbuffer *b = evbuf_new();
    char *lit;
    size_t i;
    int first = 1;

    evbuffer_add(b, "{", 1);
    for (i = 0; i < m->cap; i++) {
        if (m->keys[i] == NULL)
            continue;
        evbuffer_add_printf(b, "%s%s", first ? "" : ",", m->keys[i]);
        first = 0;
    }
    evbuffer_add(b, "}", 1);
    lit = evbuf_drain_string(b, NULL);
    evbuffer_free(b);
    return lit;
}

static void
cfg_flush(struct gateway *gw)
{
    const char *vals[1];
    char *lit;

    if (gw->cfg_services.len == 0 || gw->cfg_inflight)
        return;
    lit = keys_literal(&gw->cfg_services);
    gw_cfg_clear(gw);
    vals[0] = lit;
    gw->cfg_inflight = 1;
    db_query(gw->db, store_stmt(ST_CONFIG_PUSH), vals, on_cfg_push, gw);
    free(lit);
}

/*
 * Whether an instance event of this type leaves every desired set as it
 * was: what an agent reports (instance.state: the observed state, exit
 * code, times; instance.guest: acked config version, ready, addresses;
 * cloud_agent_status) is no column of ST_AGENT_DESIRED. Re-reading the
 * host's set for each made half the reads of a scale-up (each instance is
 * scheduled, then reported running) and a config change acked by 100
 * guests re-read every set. instance.deleted does move a set: the row goes.
 */
static int
moves_no_set(const char *type)
{
    return type != NULL && (strcmp(type, "instance.guest") == 0 ||
                            strcmp(type, "instance.state") == 0);
}

void
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
    /* a host joined, came back or got a subnet: the overlay's peers */
    if (!gw->closed && object != NULL && type != NULL &&
        strcmp(object, "host") == 0 &&
        (strcmp(type, "host.registered") == 0 ||
         strcmp(type, "host.network") == 0))
        gw_net_changed(gw);
    if (!gw->closed && object != NULL && object_id != NULL &&
        strcmp(object, "config") == 0 && gw_id_ok(object_id)) {
        cfg_note(gw, object_id); /* config events (gateway_config.h) */
        return;
    }
    if (gw->closed || object == NULL || object_id == NULL ||
        strcmp(object, "instance") != 0 || !gw_id_ok(object_id))
        return;
    if (moves_no_set(type))
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

/* The hub's row names the host of an instance event's instance (store.h
 * EVENT_HUB_HOST_ID), read with the event: that host's set is re-read with
 * no ST_AGENT_HOSTS_OF round trip. NULL: unplaced or gone, no set names it
 * (the query would have found no host either). */
void
gw_on_event_row(void *arg, long long id, const char *type, const char *object,
                const char *object_id, const PGresult *res, int row)
{
    struct gateway *gw = arg;
    struct gw_conn *c;

    if (gw->closed || object_id == NULL || strcmp(object, "instance") != 0 ||
        PQnfields(res) <= EVENT_HUB_HOST_ID) {
        gw_on_event(arg, id, type, object, object_id);
        return;
    }
    if (moves_no_set(type))
        return;
    if (strmap_get(&gw->owner, object_id) != NULL)
        gw_on_event(arg, id, type, object, object_id); /* its old host */
    if (!PQgetisnull(res, row, EVENT_HUB_HOST_ID)) {
        c = strmap_get(&gw->by_host, PQgetvalue(res, row, EVENT_HUB_HOST_ID));
        if (c != NULL)
            c->dirty = 1;
    }
}

void
gw_on_batch(void *arg)
{
    struct gateway *gw = arg;
    const char *vals[1];
    char *lit;

    if (gw->closed)
        return;
    gw_kick(gw);
    cfg_flush(gw);
    if (gw->unknown.len == 0 || gw->hosts_inflight)
        return;
    lit = keys_literal(&gw->unknown);
    unknown_clear(gw);
    vals[0] = lit;
    gw->hosts_inflight = 1;
    db_query(gw->db, store_stmt(ST_AGENT_HOSTS_OF), vals, on_hosts_of, gw);
    free(lit);
}

void
gw_on_reconnect(void *arg)
{
    struct gateway *gw = arg;

    if (!gw->closed)
        gw_mark_all(gw);
}

