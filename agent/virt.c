/*
 * virt: the libvirt backend of the hypervisor driver (see virt.h). Owns the
 * libvirt connection and the copy of the last libvirt error text. Every
 * libvirt return value is checked; failures are logged here, once, with
 * libvirt's own message appended.
 */
#define LOG_MODULE "virt"

#include "virt.h"
#include "virt_priv.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <libxml/tree.h>

#include "domxml.h"
#include "log.h"
#include "mem.h"

struct virt_watch {
    virt_event_cb cb;
    void *arg;
};

struct virt_conn {
    virConnectPtr conn;
    char *uri;
    char err[1024];
    struct virt_watch *watch; /* set by watch(); freed at close */
    int watch_id;             /* lifecycle callback id, -1 if none */
    int close_registered;
};

static const char *const virt_state_names[] = {
    [VIRT_STATE_UNKNOWN] = "unknown", [VIRT_STATE_RUNNING] = "running",
    [VIRT_STATE_PAUSED] = "paused",   [VIRT_STATE_STOPPING] = "stopping",
    [VIRT_STATE_SHUTOFF] = "shutoff", [VIRT_STATE_CRASHED] = "crashed",
    [VIRT_STATE_ABSENT] = "absent",
};

static const char *const virt_reason_names[] = {
    [VIRT_REASON_NONE] = "none",       [VIRT_REASON_SHUTDOWN] = "shutdown",
    [VIRT_REASON_DESTROYED] = "destroyed", [VIRT_REASON_CRASHED] = "crashed",
    [VIRT_REASON_FAILED] = "failed",   [VIRT_REASON_OTHER] = "other",
};

const char *
virt_reason_name(enum virt_reason r)
{
    if ((size_t)r >= sizeof(virt_reason_names) / sizeof(virt_reason_names[0]))
        return "other";
    return virt_reason_names[r];
}

const char *
virt_state_name(enum virt_state s)
{
    if ((size_t)s >= sizeof(virt_state_names) / sizeof(virt_state_names[0]))
        return "unknown";
    return virt_state_names[s];
}

/* libvirt prints every error to stderr by default; we log them ourselves. */
static void
virt_silent_error(void *data, virErrorPtr err)
{
    (void)data;
    (void)err;
}

static pthread_once_t virt_once = PTHREAD_ONCE_INIT;
static int virt_init_rc;

static void
virt_global_init(void)
{
    virt_init_rc = virInitialize();
    virSetErrorFunc(NULL, virt_silent_error);
}

/*
 * Records "<what>: <libvirt's last error>" as the connection's last error
 * and logs it. Call right after the failing libvirt call, before any other.
 */
static void virt_fail(struct virt_conn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
virt_fail(struct virt_conn *c, const char *fmt, ...)
{
    char what[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    snprintf(c->err, sizeof(c->err), "%s: %s", what, virGetLastErrorMessage());
    log_warnx("%s", c->err);
}

/* As virt_fail, for a failure of this file's own, not of a libvirt call. */
static void virt_failx(struct virt_conn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
virt_failx(struct virt_conn *c, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(c->err, sizeof(c->err), fmt, ap);
    va_end(ap);
    log_warnx("%s", c->err);
}

static void
virt_close_cb(virConnectPtr conn, int reason, void *opaque)
{
    struct virt_watch *w = opaque;

    (void)conn;
    log_warnx("the libvirt connection closed (reason %d)", reason);
    w->cb(w->arg, NULL);
}

static struct virt_conn *
virt_lv_open(const char *uri)
{
    struct virt_conn *c;

    pthread_once(&virt_once, virt_global_init);
    if (virt_init_rc < 0) {
        log_warnx("cannot initialise libvirt: %s", virGetLastErrorMessage());
        return NULL;
    }
    c = xcalloc(1, sizeof(*c));
    c->watch_id = -1;
    c->uri = xstrdup(uri);
    c->conn = virConnectOpen(uri);
    if (c->conn == NULL) {
        log_warnx("cannot connect to libvirt at %s: %s", uri,
                  virGetLastErrorMessage());
        free(c->uri);
        free(c);
        return NULL;
    }
    return c;
}

static void
virt_lv_close(struct virt_conn *c)
{
    if (c == NULL)
        return;
    if (c->conn != NULL && c->watch_id >= 0 &&
        virConnectDomainEventDeregisterAny(c->conn, c->watch_id) < 0)
        log_debug("cannot deregister the domain event callback: %s",
                  virGetLastErrorMessage());
    if (c->conn != NULL && c->close_registered &&
        virConnectUnregisterCloseCallback(c->conn, virt_close_cb) < 0)
        log_debug("cannot deregister the close callback: %s",
                  virGetLastErrorMessage());
    free(c->watch);
    if (c->conn != NULL && virConnectClose(c->conn) < 0)
        log_warnx("closing libvirt connection %s: %s", c->uri,
                  virGetLastErrorMessage());
    free(c->uri);
    free(c);
}

static const char *
virt_lv_last_error(struct virt_conn *c)
{
    return c->err;
}

static int
virt_lv_host_info(struct virt_conn *c, struct virt_host_info *info)
{
    virNodeInfo node;
    unsigned long ver;
    int ret = -1;

    memset(info, 0, sizeof(*info));
    info->hostname = virConnectGetHostname(c->conn);
    if (info->hostname == NULL) {
        virt_fail(c, "cannot read the host name from libvirt");
        goto cleanup;
    }
    info->caps_xml = virConnectGetCapabilities(c->conn);
    if (info->caps_xml == NULL) {
        virt_fail(c, "cannot read libvirt capabilities");
        goto cleanup;
    }
    if (virNodeGetInfo(c->conn, &node) < 0) {
        virt_fail(c, "cannot read node info from libvirt");
        goto cleanup;
    }
    info->cpus = node.cpus;
    info->memory_mib = node.memory / 1024; /* libvirt reports KiB */
    if (virConnectGetLibVersion(c->conn, &ver) < 0) {
        virt_fail(c, "cannot read the libvirt version");
        goto cleanup;
    }
    info->libvirt_version =
        xasprintf("%lu.%lu.%lu", ver / 1000000, ver / 1000 % 1000, ver % 1000);
    ret = 0;

cleanup:
    if (ret < 0)
        virt_host_info_clear(info);
    return ret;
}

/*
 * Looks up the domain of an instance. Returns 1 with *domp set, 0 if there
 * is no such domain, -1 on failure (recorded).
 */
static int
virt_lookup(struct virt_conn *c, const char *instance_id, virDomainPtr *domp)
{
    char *name = domxml_domain_name(instance_id);
    int ret = 1;

    *domp = virDomainLookupByName(c->conn, name);
    if (*domp == NULL) {
        if (virGetLastErrorCode() == VIR_ERR_NO_DOMAIN) {
            ret = 0;
        } else {
            virt_fail(c, "instance %s: cannot look up domain %s", instance_id,
                      name);
            ret = -1;
        }
    }
    free(name);
    return ret;
}

static int
virt_lv_define_start(struct virt_conn *c, const char *instance_id,
                     const char *xml)
{
    virDomainPtr dom;
    int active, ret = -1;

    dom = virDomainDefineXML(c->conn, xml);
    if (dom == NULL) {
        virt_fail(c, "instance %s: cannot define the domain", instance_id);
        return -1;
    }
    active = virDomainIsActive(dom);
    if (active < 0) {
        virt_fail(c, "instance %s: cannot tell whether the domain runs",
                  instance_id);
        goto cleanup;
    }
    if (active) {
        /* Already running: the new definition applies at the next start. */
        ret = 0;
        goto cleanup;
    }
    if (virDomainCreate(dom) < 0) {
        virt_fail(c, "instance %s: cannot start the domain", instance_id);
        /* Keep the start error as the reason; an undefine failure only
         * gets logged, and a later undefine retries. */
        if (virDomainUndefine(dom) < 0)
            log_warnx(
                "instance %s: cannot undefine the domain after a failed start: %s",
                instance_id, virGetLastErrorMessage());
        goto cleanup;
    }
    ret = 0;

cleanup:
    virDomainFree(dom);
    return ret;
}

/*
 * Runs op on the instance's domain, then frees the domain. Without a
 * domain: 0, or, when absent names what could not be done, -1 with that
 * recorded. A failed lookup is -1 (recorded).
 */
static int
virt_with_domain(struct virt_conn *c, const char *instance_id,
                 int (*op)(struct virt_conn *c, virDomainPtr dom,
                           const char *instance_id, void *arg),
                 void *arg, const char *absent)
{
    virDomainPtr dom;
    int found, ret;

    found = virt_lookup(c, instance_id, &dom);
    if (found < 0)
        return -1;
    if (found == 0) {
        if (absent == NULL)
            return 0;
        virt_failx(c, "instance %s: %s", instance_id, absent);
        return -1;
    }
    ret = op(c, dom, instance_id, arg);
    virDomainFree(dom);
    return ret;
}

/* A libvirt call on a domain and what it failed to do, for virt_dom_call. */
struct virt_call {
    int (*fn)(virDomainPtr dom);
    const char *what;
};

static int
virt_dom_call(struct virt_conn *c, virDomainPtr dom, const char *instance_id,
              void *arg)
{
    const struct virt_call *call = arg;

    if (call->fn(dom) < 0) {
        virt_fail(c, "instance %s: %s", instance_id, call->what);
        return -1;
    }
    return 0;
}

static int
virt_lv_shutdown(struct virt_conn *c, const char *instance_id)
{
    struct virt_call call = {virDomainShutdown,
                             "cannot request an ACPI shutdown"};

    return virt_with_domain(c, instance_id, virt_dom_call, &call,
                            "no domain to shut down");
}

/* A running domain stays running as a transient one; callers destroy
 * first when they mean "gone". */
static int
virt_lv_undefine(struct virt_conn *c, const char *instance_id)
{
    struct virt_call call = {virDomainUndefine, "cannot undefine the domain"};

    return virt_with_domain(c, instance_id, virt_dom_call, &call, NULL);
}

static int
virt_dom_destroy(struct virt_conn *c, virDomainPtr dom, const char *instance_id,
                 void *arg)
{
    int active = virDomainIsActive(dom);

    (void)arg;
    if (active < 0) {
        virt_fail(c, "instance %s: cannot tell whether the domain runs",
                  instance_id);
        return -1;
    }
    /* It may have stopped on its own between the two calls. */
    if (active && virDomainDestroy(dom) < 0 &&
        virGetLastErrorCode() != VIR_ERR_OPERATION_INVALID) {
        virt_fail(c, "instance %s: cannot destroy the domain", instance_id);
        return -1;
    }
    return 0;
}

static int
virt_lv_destroy(struct virt_conn *c, const char *instance_id)
{
    return virt_with_domain(c, instance_id, virt_dom_destroy, NULL, NULL);
}

static enum virt_state
virt_map_state(int st)
{
    switch (st) {
    case VIR_DOMAIN_RUNNING:
    case VIR_DOMAIN_BLOCKED:
        return VIRT_STATE_RUNNING;
    case VIR_DOMAIN_PAUSED:
    case VIR_DOMAIN_PMSUSPENDED:
        return VIRT_STATE_PAUSED;
    case VIR_DOMAIN_SHUTDOWN:
        return VIRT_STATE_STOPPING;
    case VIR_DOMAIN_SHUTOFF:
        return VIRT_STATE_SHUTOFF;
    case VIR_DOMAIN_CRASHED:
        return VIRT_STATE_CRASHED;
    default:
        return VIRT_STATE_UNKNOWN;
    }
}

static int
virt_dom_state(struct virt_conn *c, virDomainPtr dom, const char *instance_id,
               enum virt_state *statep)
{
    int st, reason;

    if (virDomainGetState(dom, &st, &reason, 0) < 0) {
        virt_fail(c, "instance %s: cannot read the domain state", instance_id);
        return -1;
    }
    *statep = virt_map_state(st);
    return 0;
}

static int
virt_dom_state_op(struct virt_conn *c, virDomainPtr dom,
                  const char *instance_id, void *statep)
{
    return virt_dom_state(c, dom, instance_id, statep);
}

static int
virt_lv_state(struct virt_conn *c, const char *instance_id,
              enum virt_state *statep)
{
    *statep = VIRT_STATE_ABSENT;
    return virt_with_domain(c, instance_id, virt_dom_state_op, statep, NULL);
}

/*
 * Reads one domain's metadata into d. Returns 1 if it is ours and valid,
 * 0 to skip it (logged), -1 on a libvirt failure.
 */
static int
virt_adopt(struct virt_conn *c, virDomainPtr dom, const char *name,
           struct virt_domain *d)
{
    char *md, *id = NULL, *want = NULL, *cluster = NULL, *owner = NULL;
    uint64_t gen;
    int ret = 0;

    md = virDomainGetMetadata(dom, VIR_DOMAIN_METADATA_ELEMENT,
                              DOMXML_METADATA_NS, 0);
    if (md == NULL) {
        if (virGetLastErrorCode() == VIR_ERR_NO_DOMAIN_METADATA) {
            log_warnx("domain %s has no instance metadata; leaving it alone",
                      name);
            return 0;
        }
        virt_fail(c, "cannot read the metadata of domain %s", name);
        return -1;
    }
    if (domxml_metadata_parse(md, &id, &gen) < 0 ||
        domxml_metadata_owner(md, &cluster, &owner) < 0) {
        log_warnx("domain %s has unusable instance metadata; leaving it alone",
                  name);
        goto cleanup;
    }
    want = domxml_domain_name(id);
    if (strcmp(want, name) != 0) {
        log_warnx(
            "domain %s carries the metadata of instance %s; leaving it alone",
            name, id);
        goto cleanup;
    }
    if (virt_dom_state(c, dom, id, &d->state) < 0) {
        ret = -1;
        goto cleanup;
    }
    d->instance_id = id;
    d->generation = gen;
    d->cluster = cluster;
    d->owner = owner;
    id = cluster = owner = NULL;
    ret = 1;

cleanup:
    free(md);
    free(id);
    free(want);
    free(cluster);
    free(owner);
    return ret;
}

static int
virt_lv_list(struct virt_conn *c, struct virt_domain **domsp, size_t *ndomsp)
{
    virDomainPtr *all = NULL;
    struct virt_domain *doms = NULL;
    size_t n = 0;
    int i, nall, ret = -1;

    nall = virConnectListAllDomains(c->conn, &all, 0);
    if (nall < 0) {
        virt_fail(c, "cannot list domains");
        return -1;
    }
    doms = xcalloc((size_t)nall + 1, sizeof(*doms));
    for (i = 0; i < nall; i++) {
        const char *name = virDomainGetName(all[i]);
        int r;

        if (name == NULL) {
            virt_fail(c, "cannot read a domain name");
            goto cleanup;
        }
        if (strncmp(name, DOMXML_NAME_PREFIX, strlen(DOMXML_NAME_PREFIX)) != 0)
            continue; /* not ours */
        r = virt_adopt(c, all[i], name, &doms[n]);
        if (r < 0)
            goto cleanup;
        if (r > 0)
            n++;
    }
    *domsp = doms;
    *ndomsp = n;
    doms = NULL;
    ret = 0;

cleanup:
    virt_domains_free(doms, n);
    for (i = 0; i < nall; i++)
        virDomainFree(all[i]);
    free(all);
    return ret;
}

void
virt_domains_free(struct virt_domain *doms, size_t n)
{
    size_t i;

    if (doms == NULL)
        return;
    for (i = 0; i < n; i++) {
        free(doms[i].instance_id);
        free(doms[i].cluster);
        free(doms[i].owner);
    }
    free(doms);
}

void
virt_host_info_clear(struct virt_host_info *info)
{
    if (info == NULL)
        return;
    free(info->hostname);
    free(info->caps_xml);
    free(info->libvirt_version);
    memset(info, 0, sizeof(*info));
}

static enum virt_reason
virt_map_reason(int st, int reason)
{
    if (st == VIR_DOMAIN_CRASHED)
        return VIRT_REASON_CRASHED;
    if (st != VIR_DOMAIN_SHUTOFF)
        return VIRT_REASON_NONE;
    switch (reason) {
    case VIR_DOMAIN_SHUTOFF_SHUTDOWN:
        return VIRT_REASON_SHUTDOWN;
    case VIR_DOMAIN_SHUTOFF_DESTROYED:
        return VIRT_REASON_DESTROYED;
    case VIR_DOMAIN_SHUTOFF_CRASHED:
        return VIRT_REASON_CRASHED;
    case VIR_DOMAIN_SHUTOFF_FAILED:
        return VIRT_REASON_FAILED;
    default:
        return VIRT_REASON_OTHER;
    }
}

struct virt_state_reason {
    enum virt_state *state;
    enum virt_reason *reason;
};

static int
virt_dom_state_reason(struct virt_conn *c, virDomainPtr dom,
                      const char *instance_id, void *arg)
{
    struct virt_state_reason *out = arg;
    int st, reason;

    if (virDomainGetState(dom, &st, &reason, 0) < 0) {
        if (virGetLastErrorCode() == VIR_ERR_NO_DOMAIN)
            return 0; /* gone since the lookup: still absent */
        virt_fail(c, "instance %s: cannot read the domain state", instance_id);
        return -1;
    }
    *out->state = virt_map_state(st);
    *out->reason = virt_map_reason(st, reason);
    return 0;
}

static int
virt_lv_state_reason(struct virt_conn *c, const char *instance_id,
                     enum virt_state *statep, enum virt_reason *reasonp)
{
    struct virt_state_reason out = {statep, reasonp};

    *statep = VIRT_STATE_ABSENT;
    *reasonp = VIRT_REASON_NONE;
    return virt_with_domain(c, instance_id, virt_dom_state_reason, &out, NULL);
}

static int
virt_lifecycle_cb(virConnectPtr conn, virDomainPtr dom, int event, int detail,
                  void *opaque)
{
    struct virt_watch *w = opaque;
    const char *name = virDomainGetName(dom);

    (void)conn;
    if (name == NULL ||
        strncmp(name, DOMXML_NAME_PREFIX, strlen(DOMXML_NAME_PREFIX)) != 0)
        return 0;
    log_debug("domain %s: lifecycle event %d detail %d", name, event, detail);
    w->cb(w->arg, name + strlen(DOMXML_NAME_PREFIX));
    return 0;
}

static int
virt_lv_watch(struct virt_conn *c, virt_event_cb cb, void *arg)
{
    if (c->watch != NULL) {
        snprintf(c->err, sizeof(c->err), "domain events are already watched");
        log_warnx("%s", c->err);
        return -1;
    }
    c->watch = xcalloc(1, sizeof(*c->watch));
    c->watch->cb = cb;
    c->watch->arg = arg;
    c->watch_id = virConnectDomainEventRegisterAny(
        c->conn, NULL, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
        VIR_DOMAIN_EVENT_CALLBACK(virt_lifecycle_cb), c->watch, NULL);
    if (c->watch_id < 0) {
        virt_fail(c, "cannot watch domain lifecycle events");
        return -1;
    }
    /* Local drivers (test:///) have no close callback; that is fine. */
    if (virConnectRegisterCloseCallback(c->conn, virt_close_cb, c->watch,
                                        NULL) == 0)
        c->close_registered = 1;
    return 0;
}

static int
virt_lv_alive(struct virt_conn *c)
{
    return virConnectIsAlive(c->conn) == 1;
}

static void *
virt_event_thread(void *arg)
{
    (void)arg;
    for (;;) {
        if (virEventRunDefaultImpl() < 0)
            log_warnx("libvirt event loop: %s", virGetLastErrorMessage());
    }
    return NULL;
}

int
virt_event_loop_start(void)
{
    pthread_t t;
    int rc;

    pthread_once(&virt_once, virt_global_init);
    if (virEventRegisterDefaultImpl() < 0) {
        log_warnx("cannot register libvirt's event loop: %s",
                  virGetLastErrorMessage());
        return -1;
    }
    rc = pthread_create(&t, NULL, virt_event_thread, NULL);
    if (rc != 0) {
        errno = rc;
        log_warn("cannot start the libvirt event thread");
        return -1;
    }
    if (pthread_detach(t) != 0)
        log_warnx("cannot detach the libvirt event thread");
    return 0;
}

/* ---- disk overlays (libvirt storage API) ------------------------------ */

/*
 * Pool and volume XML are built with libxml2's tree API, as domxml.c builds
 * the domain XML: text through xmlNewTextChild() and attributes through
 * xmlNewProp(), so that the library escapes every path, never this file.
 */
static xmlNodePtr
virt_xml_elem(xmlNodePtr parent, const char *name)
{
    return xmlNewChild(parent, NULL, (const xmlChar *)name, NULL);
}

static xmlNodePtr
virt_xml_text(xmlNodePtr parent, const char *name, const char *content)
{
    return xmlNewTextChild(parent, NULL, (const xmlChar *)name,
                           (const xmlChar *)content);
}

static void
virt_xml_prop(xmlNodePtr node, const char *name, const char *value)
{
    xmlNewProp(node, (const xmlChar *)name, (const xmlChar *)value);
}

/* A new document whose root element is called name. */
static xmlDocPtr
virt_xml_doc(const char *name, xmlNodePtr *rootp)
{
    xmlDocPtr doc = xmlNewDoc((const xmlChar *)"1.0");

    if (doc == NULL)
        fatalx("cannot allocate an XML document");
    *rootp = xmlNewNode(NULL, (const xmlChar *)name);
    if (*rootp == NULL)
        fatalx("cannot allocate an XML element");
    xmlDocSetRootElement(doc, *rootp);
    return doc;
}

/* The document as indented text with a final newline (xmalloc'd), or NULL
 * if libxml2 cannot write it; frees the document either way. */
static char *
virt_xml_finish(xmlDocPtr doc)
{
    xmlBufferPtr buf = xmlBufferCreate();
    char *out = NULL;

    if (buf == NULL)
        fatalx("cannot allocate an XML buffer");
    if (xmlNodeDump(buf, doc, xmlDocGetRootElement(doc), 0, 1) >= 0)
        out = xasprintf("%s\n", (const char *)xmlBufferContent(buf));
    xmlBufferFree(buf);
    xmlFreeDoc(doc);
    return out;
}

char *
virt_pool_xml(const char *name, const char *dir)
{
    xmlNodePtr pool, target;
    xmlDocPtr doc = virt_xml_doc("pool", &pool);

    virt_xml_prop(pool, "type", "dir");
    virt_xml_text(pool, "name", name);
    target = virt_xml_elem(pool, "target");
    virt_xml_text(target, "path", dir);
    virt_xml_text(virt_xml_elem(target, "permissions"), "mode", "0755");
    return virt_xml_finish(doc);
}

char *
virt_volume_xml(const char *name, uint64_t capacity, const char *backing,
                const char *backing_fmt)
{
    xmlNodePtr vol, n;
    xmlDocPtr doc = virt_xml_doc("volume", &vol);
    char num[32];

    virt_xml_text(vol, "name", name);
    snprintf(num, sizeof(num), "%" PRIu64, capacity);
    virt_xml_prop(virt_xml_text(vol, "capacity", num), "unit", "bytes");
    n = virt_xml_elem(vol, "target");
    virt_xml_prop(virt_xml_elem(n, "format"), "type", "qcow2");
    virt_xml_text(virt_xml_elem(n, "permissions"), "mode", "0644");
    n = virt_xml_elem(vol, "backingStore");
    virt_xml_text(n, "path", backing);
    virt_xml_prop(virt_xml_elem(n, "format"), "type", backing_fmt);
    return virt_xml_finish(doc);
}

/* One pool per directory: its name comes from the path (FNV-1a). */
static char *
virt_pool_name(const char *dir)
{
    uint32_t h = 2166136261u;

    for (const char *p = dir; *p; p++) {
        h ^= (unsigned char)*p;
        h *= 16777619u;
    }
    return xasprintf("cloud-disks-%08x", h);
}

/* The agent's dir pool over dir, defined, built and started if needed. */
static virStoragePoolPtr
virt_pool(struct virt_conn *c, const char *dir, int create)
{
    char *name = virt_pool_name(dir), *xml = NULL;
    virStoragePoolPtr pool;
    int active;

    pool = virStoragePoolLookupByName(c->conn, name);
    if (pool == NULL && !create) {
        free(name);
        return NULL;
    }
    if (pool == NULL) {
        xml = virt_pool_xml(name, dir);
        if (xml == NULL) {
            virt_failx(c, "cannot write the XML of storage pool %s over %s",
                       name, dir);
            goto out;
        }
        pool = virStoragePoolDefineXML(c->conn, xml, 0);
        if (pool == NULL) {
            virt_fail(c, "cannot define the storage pool %s over %s", name,
                      dir);
            goto out;
        }
        if (virStoragePoolBuild(pool, 0) < 0) {
            virt_fail(c, "cannot build the storage pool %s over %s", name,
                      dir);
            virStoragePoolUndefine(pool);
            virStoragePoolFree(pool);
            pool = NULL;
            goto out;
        }
        if (virStoragePoolSetAutostart(pool, 1) < 0)
            log_warnx("storage pool %s: cannot set autostart: %s", name,
                      virGetLastErrorMessage());
    }
    active = virStoragePoolIsActive(pool);
    if (active == 0 && create && virStoragePoolCreate(pool, 0) < 0) {
        virt_fail(c, "cannot start the storage pool %s over %s", name, dir);
        virStoragePoolFree(pool);
        pool = NULL;
    } else if (active < 0) {
        virt_fail(c, "cannot check the storage pool %s", name);
        virStoragePoolFree(pool);
        pool = NULL;
    } else if (active == 0 && !create) {
        virStoragePoolFree(pool);
        pool = NULL;
    }
out:
    free(name);
    free(xml);
    return pool;
}

static int
virt_lv_overlay_create(struct virt_conn *c, const char *pool_dir,
                       const char *instance_id, const char *backing,
                       const char *backing_fmt, uint64_t capacity,
                       char **pathp)
{
    virStoragePoolPtr pool;
    virStorageVolPtr vol;
    char *vname, *xml = NULL, *path;
    int ret = -1;

    *pathp = NULL;
    pool = virt_pool(c, pool_dir, 1);
    if (pool == NULL)
        return -1;
    vname = xasprintf("cloud-%s.qcow2", instance_id);
    /* Kept across restarts of the instance: its disk is its state. */
    vol = virStorageVolLookupByName(pool, vname);
    if (vol == NULL) {
        xml = virt_volume_xml(vname, capacity, backing, backing_fmt);
        if (xml == NULL) {
            virt_failx(c, "cannot write the XML of overlay %s over %s", vname,
                       backing);
            goto out;
        }
        vol = virStorageVolCreateXML(pool, xml, 0);
        if (vol == NULL) {
            virt_fail(c, "cannot create the overlay %s over %s", vname,
                      backing);
            goto out;
        }
        log_info("instance %s: overlay %s over %s (%s, %llu bytes)",
                 instance_id, vname, backing, backing_fmt,
                 (unsigned long long)capacity);
    }
    path = virStorageVolGetPath(vol);
    if (path == NULL) {
        virt_fail(c, "cannot get the path of volume %s", vname);
        goto out;
    }
    *pathp = xstrdup(path);
    free(path);
    ret = 0;

out:
    if (vol != NULL)
        virStorageVolFree(vol);
    virStoragePoolFree(pool);
    free(vname);
    free(xml);
    return ret;
}

static int
virt_lv_overlay_delete(struct virt_conn *c, const char *pool_dir,
                       const char *instance_id)
{
    virStoragePoolPtr pool = virt_pool(c, pool_dir, 0);
    virStorageVolPtr vol;
    char *vname;
    int ret = 0;

    if (pool == NULL)
        return 0; /* no pool: no overlay */
    vname = xasprintf("cloud-%s.qcow2", instance_id);
    vol = virStorageVolLookupByName(pool, vname);
    if (vol != NULL) {
        if (virStorageVolDelete(vol, 0) < 0) {
            virt_fail(c, "cannot delete the overlay %s", vname);
            ret = -1;
        } else {
            log_info("instance %s: overlay %s deleted", instance_id, vname);
        }
        virStorageVolFree(vol);
    }
    virStoragePoolFree(pool);
    free(vname);
    return ret;
}

void
virt_addrs_free(char **addrs, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        free(addrs[i]);
    free(addrs);
}

static int
virt_lv_addresses(struct virt_conn *c, const char *instance_id,
                  char ***addrsp, size_t *np)
{
    static const unsigned int sources[] = {
        VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE,
        VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT,
        VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_ARP,
    };
    virDomainPtr dom;
    char **addrs;
    size_t k, n = 0;
    int found, i, j;

    *addrsp = NULL;
    *np = 0;
    found = virt_lookup(c, instance_id, &dom);
    if (found <= 0)
        return found;
    addrs = xcalloc(VIRT_ADDRS_MAX, sizeof(*addrs));
    for (k = 0; k < sizeof(sources) / sizeof(sources[0]) && n == 0; k++) {
        virDomainInterfacePtr *ifaces = NULL;
        int nif = virDomainInterfaceAddresses(dom, &ifaces, sources[k], 0);

        if (nif < 0) {
            /* This source cannot tell (no guest agent, no lease file): the
             * next one may; not a failure of the domain. */
            log_debug("instance %s: interface addresses from source %u: %s",
                      instance_id, sources[k],
                      virGetLastErrorMessage());
            virResetLastError();
            continue;
        }
        for (i = 0; i < nif; i++) {
            for (j = 0; j < (int)ifaces[i]->naddrs && n < VIRT_ADDRS_MAX; j++)
                if (ifaces[i]->addrs[j].addr != NULL)
                    addrs[n++] = xstrdup(ifaces[i]->addrs[j].addr);
            virDomainInterfaceFree(ifaces[i]);
        }
        free(ifaces);
    }
    virDomainFree(dom);
    if (n == 0) {
        free(addrs);
        addrs = NULL;
    }
    *addrsp = addrs;
    *np = n;
    return 0;
}

const struct virt_driver virt_libvirt_driver = {
    .name = "libvirt",
    .open = virt_lv_open,
    .close = virt_lv_close,
    .last_error = virt_lv_last_error,
    .host_info = virt_lv_host_info,
    .define_start = virt_lv_define_start,
    .shutdown = virt_lv_shutdown,
    .destroy = virt_lv_destroy,
    .undefine = virt_lv_undefine,
    .state = virt_lv_state,
    .list = virt_lv_list,
    .state_reason = virt_lv_state_reason,
    .watch = virt_lv_watch,
    .alive = virt_lv_alive,
    .overlay_create = virt_lv_overlay_create,
    .overlay_delete = virt_lv_overlay_delete,
    .addresses = virt_lv_addresses,
};
