/*
 * worker: the libvirt thread of the agent (see worker.h). Owns the libvirt
 * connection, the instance table (id -> struct winst) and the result
 * queue. Shared with the event loop only through struct worker's mutex:
 * the desired set handed over, the ids libvirt events named, and results.
 *
 * Per instance the worker remembers the phase it drove the domain to and
 * the "run token" (generation, restart_count) of the last start, so an
 * instance that exited stays exited until the controller asks for a new
 * run: restart policies are the controller's, not the agent's.
 */
#define LOG_MODULE "worker"

#include "worker_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "cmdline.h"
#include "domxml.h"
#include "fence.h"
#include "fsutil.h"
#include "log.h"
#include "mem.h"
#include "monotime.h"
#include "strmap.h"

#define WORKER_RESYNC_MS 10000
/* NIC addresses: first ask, then every 2 s for 3 min until one shows, then
 * every 15 s. */
#define WORKER_ADDR_FIRST_MS 1000
#define WORKER_ADDR_EAGER_MS 2000
#define WORKER_ADDR_EAGER_FOR_MS 180000
#define WORKER_ADDR_SLOW_MS 15000
#define WORKER_RECONNECT_MIN_MS 500
#define WORKER_RECONNECT_MAX_MS 15000
/* A TERM stop presses the power button again this often until its grace
 * period ends (a guest still booting at the first press misses it). */
#define WORKER_ACPI_REPEAT_MS 2000


void
worker_spec_clear(struct worker_spec *s)
{
    if (s == NULL)
        return;
    free(s->id);
    free(s->name);
    free(s->kernel_digest);
    free(s->initrd_digest);
    free(s->disk_digest);
    free(s->cmdline);
    free(s->config_line);
    for (size_t i = 0; i < s->nargs; i++)
        free(s->args[i]);
    free(s->args);
    free(s->boot_line);
    memset(s, 0, sizeof(*s));
}

void
worker_facts_clear(struct worker_facts *f)
{
    size_t i;

    free(f->hostname);
    free(f->arch);
    free(f->libvirt_version);
    for (i = 0; i < f->ntypes; i++)
        free(f->types[i]);
    free(f->types);
    memset(f, 0, sizeof(*f));
}

void
worker_result_free(struct worker_result *r)
{
    while (r != NULL) {
        struct worker_result *next = r->next;

        worker_facts_clear(&r->facts);
        free(r->status.id);
        free(r->status.reason);
        free(r->status.channel);
        virt_addrs_free(r->status.addrs, r->status.naddrs);
        free(r);
        r = next;
    }
}

/* ---- results to the event loop -------------------------------------- */

static void
post(struct worker *w, struct worker_result *r)
{
    pthread_mutex_lock(&w->mu);
    if (w->res_tail)
        w->res_tail->next = r;
    else
        w->res_head = r;
    w->res_tail = r;
    pthread_mutex_unlock(&w->mu);
    w->notify(w->notify_arg);
}

struct worker_result *
worker_take(struct worker *w)
{
    struct worker_result *r;

    pthread_mutex_lock(&w->mu);
    r = w->res_head;
    w->res_head = w->res_tail = NULL;
    pthread_mutex_unlock(&w->mu);
    return r;
}

/* Posts the instance's status if it differs from the last one posted. */
static void
report(struct worker *w, struct winst *in, enum worker_state st, int code,
       const char *reason)
{
    struct worker_result *r;

    if (reason == NULL)
        reason = "";
    if (in->reported && in->rep_state == st && in->rep_code == code &&
        strcmp(in->rep_reason, reason) == 0 && !in->addrs_dirty)
        return;
    in->addrs_dirty = false;
    if (st != WS_RUNNING && st != WS_STOPPING) {
        /* The run is over: its addresses go with it. */
        virt_addrs_free(in->addrs, in->naddrs);
        in->addrs = NULL;
        in->naddrs = 0;
        in->addr_next_ms = in->addr_since_ms = 0;
    }
    in->reported = true;
    in->rep_state = st;
    in->rep_code = code;
    free(in->rep_reason);
    in->rep_reason = xstrdup(reason);
    if (st == WS_EXITED || st == WS_FAILED)
        in->finished_ms = wall_ms();
    r = xcalloc(1, sizeof(*r));
    r->kind = WR_STATUS;
    r->status.id = xstrdup(in->id);
    r->status.generation =
        in->in_set ? in->spec.generation : in->generation;
    r->status.state = st;
    r->status.exit_code = code;
    r->status.reason = xstrdup(reason);
    r->status.started_ms = in->started_ms;
    r->status.finished_ms =
        (st == WS_EXITED || st == WS_FAILED) ? in->finished_ms : 0;
    r->status.channel = in->channel ? xstrdup(in->channel) : NULL;
    if (in->naddrs > 0) {
        size_t i;

        r->status.addrs = xcalloc(in->naddrs, sizeof(char *));
        for (i = 0; i < in->naddrs; i++)
            r->status.addrs[i] = xstrdup(in->addrs[i]);
        r->status.naddrs = in->naddrs;
    }
    log_info("instance %s: %s%s%s", in->id,
             st == WS_RUNNING    ? "running"
             : st == WS_STOPPING ? "stopping"
             : st == WS_EXITED   ? "exited"
             : st == WS_FAILED   ? "failed"
             : st == WS_REMOVED  ? "removed"
                                 : "starting",
             reason[0] ? ": " : "", reason);
    post(w, r);
}

/* ---- the instance table --------------------------------------------- */

static struct winst *
inst_get(struct worker *w, const char *id)
{
    struct winst *in = strmap_get(&w->insts, id);

    if (in == NULL) {
        in = xcalloc(1, sizeof(*in));
        in->id = xstrdup(id);
        in->rep_reason = xstrdup("");
        strmap_put(&w->insts, in->id, in);
    }
    return in;
}

static void
inst_free(struct winst *in)
{
    if (in == NULL)
        return;
    worker_spec_clear(&in->spec);
    free(in->rep_reason);
    free(in->fenced);
    free(in->channel);
    virt_addrs_free(in->addrs, in->naddrs);
    free(in->id);
    free(in);
}

static void
inst_drop(struct worker *w, struct winst *in)
{
    if (in->stop_policy || in->fenced != NULL)
        w->fence_dirty = true;
    strmap_del(&w->insts, in->id);
    inst_free(in);
}

/* When a TERM stop next needs the worker: a press of the button or the
 * end of the grace period. */
static int64_t
stop_next_ms(const struct winst *in)
{
    return in->stop_press_ms < in->stop_deadline_ms ? in->stop_press_ms
                                                    : in->stop_deadline_ms;
}

/* ---- addresses (--network) -------------------------------------------- */

/* A running instance whose NIC addresses the worker polls. */
static bool
addr_watched(const struct worker *w, const struct winst *in)
{
    return w->network != NULL && w->o.drv->addresses != NULL &&
           in->in_set && in->spec.desired == WORKER_RUN &&
           in->phase == P_RUNNING;
}

static bool
addrs_same(char **a, size_t na, char **b, size_t nb)
{
    size_t i;

    if (na != nb)
        return false;
    for (i = 0; i < na; i++)
        if (strcmp(a[i], b[i]) != 0)
            return false;
    return true;
}

/* Asks libvirt for the instance's addresses when due; a change is
 * reported with the next status. Often until the first answer, then
 * seldom (a DHCP lease rarely moves). */
static void
addr_poll(struct worker *w, struct winst *in)
{
    char **addrs = NULL;
    size_t n = 0;
    int64_t now = mono_ms();

    if (!addr_watched(w, in) || now < in->addr_next_ms)
        return;
    if (in->addr_since_ms == 0)
        in->addr_since_ms = now;
    if (w->o.drv->addresses(w->conn, in->id, &addrs, &n) < 0) {
        in->addr_next_ms = now + WORKER_ADDR_SLOW_MS; /* logged */
        return;
    }
    in->addr_next_ms =
        now + (n == 0 && now - in->addr_since_ms < WORKER_ADDR_EAGER_FOR_MS
                   ? WORKER_ADDR_EAGER_MS
                   : WORKER_ADDR_SLOW_MS);
    if (addrs_same(in->addrs, in->naddrs, addrs, n)) {
        virt_addrs_free(addrs, n);
        return;
    }
    virt_addrs_free(in->addrs, in->naddrs);
    in->addrs = addrs;
    in->naddrs = n;
    in->addrs_dirty = true;
    log_info("instance %s: %zu address%s on network %s%s%s", in->id, n,
             n == 1 ? "" : "es", w->network, n ? ": " : "", n ? addrs[0] : "");
}

/* ---- reconciling one instance ---------------------------------------- */

static bool
is_up(enum virt_state st)
{
    return st == VIRT_STATE_RUNNING || st == VIRT_STATE_PAUSED ||
           st == VIRT_STATE_STOPPING;
}

/* The exit of a domain that stopped on its own. */
static void
exit_by_reason(enum virt_state st, enum virt_reason r, int *code,
               const char **why)
{
    if (st == VIRT_STATE_ABSENT) {
        *code = 137;
        *why = "the domain disappeared from libvirt";
        return;
    }
    switch (r) {
    case VIRT_REASON_SHUTDOWN:
        *code = 0;
        *why = "";
        break;
    case VIRT_REASON_DESTROYED:
        *code = 137;
        *why = "the domain was destroyed outside the agent";
        break;
    case VIRT_REASON_CRASHED:
        *code = 1;
        *why = "the guest crashed";
        break;
    case VIRT_REASON_FAILED:
        *code = 1;
        *why = "the hypervisor process failed";
        break;
    default:
        *code = 1;
        *why = "the domain stopped for an unknown reason";
        break;
    }
}

static bool
token_current(const struct winst *in)
{
    return in->have_token && in->tok_gen == in->spec.generation &&
           in->tok_restart >= in->spec.restart_count;
}

/* An instance not in the desired set: only observed until the controller
 * has sent a set, then stopped and forgotten. 0: done. */
static int
reconcile_absent(struct worker *w, struct winst *in, enum virt_state st,
                 enum virt_reason rsn)
{
    const char *reason;
    int code;

    if (!w->have_set) {
        /* Until the controller speaks, only observe. */
        if (is_up(st)) {
            in->phase = P_RUNNING;
            report(w, in, WS_RUNNING, 0, NULL);
        } else if (st != VIRT_STATE_ABSENT) {
            exit_by_reason(st, rsn, &code, &reason);
            if (in->phase == P_RUNNING || in->phase == P_NONE) {
                in->phase = P_DONE;
                report(w, in, WS_EXITED, code, reason);
            }
        }
        return 0;
    }
    /* Not wanted here (any more): stop and forget it. */
    if (st != VIRT_STATE_ABSENT) {
        log_info("instance %s: not in the desired set; removing its domain",
                 in->id);
        if (w->o.drv->destroy(w->conn, in->id) < 0 ||
            w->o.drv->undefine(w->conn, in->id) < 0)
            return 0; /* logged; the next resync retries */
    }
    wdom_overlay_delete(w, in->id);
    inst_drop(w, in);
    return 0;
}

/* An instance to run: adopt it if it runs, report its exit, or start a new
 * run when its generation or restart count asks for one. 0: done. */
static int
reconcile_run(struct worker *w, struct winst *in, enum virt_state st,
              enum virt_reason rsn)
{
    char why[1024];
    const char *reason;
    int code;

    if (is_up(st)) {
        if (in->phase != P_RUNNING) {
            in->phase = P_RUNNING;
            if (!in->have_token) {
                /* Re-adopted after an agent restart. */
                in->have_token = true;
                in->tok_gen = in->spec.generation;
                in->tok_restart = in->spec.restart_count;
            }
            if (in->started_ms == 0)
                in->started_ms = wall_ms();
        }
        addr_poll(w, in);
        report(w, in, WS_RUNNING, 0, NULL);
        return 0;
    }
    if (in->phase == P_RUNNING || in->phase == P_STOPPING ||
        (in->phase == P_NONE && st != VIRT_STATE_ABSENT &&
         in->adopted)) {
        exit_by_reason(st, rsn, &code, &reason);
        in->phase = P_DONE;
        if (!in->have_token) {
            in->have_token = true;
            in->tok_gen = in->spec.generation;
            in->tok_restart = in->spec.restart_count;
        }
        report(w, in, WS_EXITED, code, reason);
        return 0;
    }
    if (in->phase == P_DONE && token_current(in))
        return 0;
    /* A new run. */
    if (in->fenced != NULL) {
        free(in->fenced);
        in->fenced = NULL;
        w->fence_dirty = true;
    }
    {
        struct winst prev = *in;
        int rc;

        in->have_token = true;
        in->tok_gen = in->spec.generation;
        in->tok_restart = in->spec.restart_count;
        in->destroyed = false;
        in->stop_kill = false;
        rc = wdom_start(w, in, why, sizeof(why));
        if (rc > 0) {
            /* An image blob is on its way: not a run yet. The
             * blob cache kicks us when it is there. */
            in->have_token = prev.have_token;
            in->tok_gen = prev.tok_gen;
            in->tok_restart = prev.tok_restart;
            report(w, in, WS_STARTING, 0, why);
            return 0;
        }
        if (rc < 0) {
            in->phase = P_DONE;
            report(w, in, WS_FAILED, 0, why);
            return 0;
        }
    }
    in->phase = P_RUNNING;
    in->started_ms = wall_ms();
    /* A NIC has an address once the guest asked DHCP: soon. */
    in->addr_since_ms = 0;
    in->addr_next_ms = mono_ms() + WORKER_ADDR_FIRST_MS;
    report(w, in, WS_RUNNING, 0, NULL);
    return 0;
}

/* An instance to stop or delete: ACPI shutdown, pressed again while the
 * grace lasts, destroyed after it (or at once for a kill); the exit
 * reported once it is down, then the domain undefined for a delete.
 * 0: done; 1: a step was taken, read the state again. */
static int
reconcile_stop(struct worker *w, struct winst *in, enum virt_state st,
               enum virt_reason rsn)
{
    const struct virt_driver *drv = w->o.drv;
    const char *reason;
    int code;

    if (is_up(st)) {
        if (in->phase != P_STOPPING ||
            (in->spec.kill && !in->stop_kill)) {
            in->phase = P_STOPPING;
            in->stop_kill = in->spec.kill;
            if (in->stop_kill) {
                if (drv->destroy(w->conn, in->id) < 0)
                    return 0;
                in->destroyed = true;
                return 1; /* read the state again */
            }
            in->stop_begin_ms = mono_ms();
            in->stop_deadline_ms = in->stop_begin_ms + in->spec.grace_ms;
            if (drv->shutdown(w->conn, in->id) < 0) {
                /* No ACPI (or refused): it has to be destroyed. */
                if (drv->destroy(w->conn, in->id) < 0)
                    return 0;
                in->destroyed = true;
                return 1;
            }
            in->stop_press_ms = in->stop_begin_ms + WORKER_ACPI_REPEAT_MS;
            log_info("instance %s: ACPI shutdown sent; destroying it if it is still up in %u ms",
                     in->id, in->spec.grace_ms);
            report(w, in, WS_STOPPING, 0, NULL);
            return 1;
        }
        /* A new grace for this stop (a second kill with its own
         * grace_seconds) counts from the ACPI shutdown. */
        in->stop_deadline_ms = in->stop_begin_ms + in->spec.grace_ms;
        if (!in->destroyed && mono_ms() >= in->stop_deadline_ms) {
            log_info("instance %s: no poweroff within %u ms of the ACPI shutdown; destroying it",
                     in->id, in->spec.grace_ms);
            if (drv->destroy(w->conn, in->id) < 0)
                return 0;
            in->destroyed = true;
            return 1;
        }
        /* A guest that was still booting when the button was first
         * pressed (no ACPI handler yet) may answer a later press, as
         * a person would press it again: every WORKER_ACPI_REPEAT_MS
         * until the deadline. A failed press is not an error here:
         * the deadline still holds. */
        if (!in->destroyed && mono_ms() >= in->stop_press_ms) {
            (void)drv->shutdown(w->conn, in->id);
            in->stop_press_ms = mono_ms() + WORKER_ACPI_REPEAT_MS;
            return 1; /* read the state again */
        }
        return 0; /* waiting for the guest */
    }
    /* down (or gone) */
    if (in->phase == P_STOPPING) {
        if (in->stop_kill) {
            code = 137;
            reason = "killed (SIGKILL: destroyed)";
        } else if (in->destroyed) {
            code = 143;
            reason = "terminated (SIGTERM: destroyed after the grace period)";
        } else {
            exit_by_reason(st, rsn, &code, &reason);
            if (rsn == VIRT_REASON_SHUTDOWN)
                reason = "";
        }
        in->phase = P_DONE;
        report(w, in, WS_EXITED, code, reason);
    } else if (in->phase == P_RUNNING ||
               (in->phase == P_NONE && st != VIRT_STATE_ABSENT)) {
        exit_by_reason(st, rsn, &code, &reason);
        in->phase = P_DONE;
        report(w, in, WS_EXITED, code, reason);
    } else if (in->phase == P_NONE) {
        in->phase = P_DONE;
        report(w, in, WS_EXITED, in->spec.kill ? 137 : 143,
               "stopped before it started");
    }
    if (in->spec.desired == WORKER_DELETE && in->phase != P_REMOVED) {
        if (st != VIRT_STATE_ABSENT && drv->undefine(w->conn, in->id) < 0)
            return 0; /* the next resync retries */
        if (in->spec.disk_image)
            wdom_overlay_delete(w, in->id);
        in->phase = P_REMOVED;
        report(w, in, WS_REMOVED, 0, NULL);
    }
    return 0;
}

/* Returns -1 when libvirt failed in a way that needs a reconnect check. */
static int
reconcile_one(struct worker *w, struct winst *in)
{
    const struct virt_driver *drv = w->o.drv;
    enum virt_state st;
    enum virt_reason rsn;

    for (int round = 0; round < 3; round++) {
        if (drv->state_reason(w->conn, in->id, &st, &rsn) < 0)
            return -1;
        if (!in->in_set)
            return reconcile_absent(w, in, st, rsn);
        if (in->spec.desired == WORKER_RUN)
            return reconcile_run(w, in, st, rsn);
        if (reconcile_stop(w, in, st, rsn) == 0)
            return 0;
    }
    return 0;
}

/* ---- the thread ------------------------------------------------------ */

static void
on_virt_event(void *arg, const char *instance_id)
{
    struct worker *w = arg;

    pthread_mutex_lock(&w->mu);
    if (instance_id == NULL) {
        w->conn_lost = true;
    } else if (strmap_get(&w->touched, instance_id) == NULL) {
        char *k = xstrdup(instance_id);

        strmap_put(&w->touched, k, k);
    }
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static uint64_t
disk_gib(const char *dir)
{
    struct statvfs sv;

    if (dir == NULL || statvfs(dir, &sv) < 0)
        return 0;
    return (uint64_t)sv.f_blocks * sv.f_frsize / (1024ull * 1024 * 1024);
}

static int
worker_connect(struct worker *w)
{
    struct hv_probe_opts popts = {.override = w->o.hv_override};
    struct virt_host_info info;
    struct worker_result *r;
    size_t i;

    w->conn = w->o.drv->open(w->uri);
    if (w->conn == NULL)
        return -1;
    memset(&info, 0, sizeof(info));
    hv_facts_clear(&w->facts);
    if (w->o.drv->host_info(w->conn, &info) < 0 ||
        hv_probe(info.caps_xml, &popts, &w->facts) < 0 ||
        w->o.drv->watch(w->conn, on_virt_event, w) < 0) {
        virt_host_info_clear(&info);
        w->o.drv->close(w->conn);
        w->conn = NULL;
        return -1;
    }
    r = xcalloc(1, sizeof(*r));
    r->kind = WR_FACTS;
    r->facts.hostname = xstrdup(info.hostname);
    r->facts.arch = xstrdup(w->facts.arch ? w->facts.arch : "x86_64");
    r->facts.libvirt_version = xstrdup(info.libvirt_version);
    r->facts.types = xcalloc(w->facts.ntypes + 1, sizeof(char *));
    for (i = 0; i < w->facts.ntypes; i++)
        r->facts.types[i] = xstrdup(w->facts.types[i]);
    r->facts.ntypes = w->facts.ntypes;
    r->facts.kvm_usable = w->facts.kvm_usable;
    r->facts.domain_type = w->facts.chosen;
    r->facts.vcpus = info.cpus;
    r->facts.memory_mib = info.memory_mib;
    r->facts.disk_gib = disk_gib(w->state_dir ? w->state_dir : "/");
    log_info("connected to libvirt at %s: %s, %u cpus, %" PRIu64
             " MiB, domain type %s",
             w->uri, info.hostname, info.cpus, info.memory_mib,
             hv_type_name(w->facts.chosen));
    virt_host_info_clear(&info);
    /* Posted after the first reconcile, so Hello lists what was adopted. */
    w->pending_facts = r;
    return 0;
}

/* Lists libvirt's domains into the table (adoption), then reconciles all. */
static int
reconcile_all(struct worker *w)
{
    struct virt_domain *doms = NULL;
    struct winst **all;
    size_t n = 0, i, k = 0;
    int ret = 0;

    if (w->o.drv->list(w->conn, &doms, &n) < 0)
        return -1;
    for (i = 0; i < n; i++) {
        struct winst *in = strmap_get(&w->insts, doms[i].instance_id);

        if (domxml_owner_check(w->cluster_id, w->owner, doms[i].cluster,
                               doms[i].owner) == DOMXML_FOREIGN) {
            /* Another cluster's or agent's on the same libvirt. */
            log_debug("domain of instance %s belongs to %s/%s; leaving it alone",
                      doms[i].instance_id, doms[i].cluster, doms[i].owner);
            continue;
        }
        if (in == NULL) {
            in = inst_get(w, doms[i].instance_id);
            in->adopted = true;
            in->generation = doms[i].generation;
            in->channel = wdom_channel_path(w, in->id);
        }
    }
    virt_domains_free(doms, n);
    /* reconcile_one may drop entries: iterate over a snapshot. */
    all = xcalloc(w->insts.len + 1, sizeof(*all));
    for (i = 0; i < w->insts.cap; i++)
        if (w->insts.keys[i] != NULL)
            all[k++] = w->insts.vals[i];
    for (i = 0; i < k; i++) {
        all[i]->dirty = false; /* see worker_main */
        if (reconcile_one(w, all[i]) < 0) {
            all[i]->dirty = true;
            ret = -1;
        }
    }
    free(all);
    return ret;
}

static bool
str_eq(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") == 0;
}

static bool
args_eq(const struct worker_spec *a, const struct worker_spec *b)
{
    if (a->nargs != b->nargs)
        return false;
    for (size_t i = 0; i < a->nargs; i++)
        if (!str_eq(a->args[i], b->args[i]))
            return false;
    return true;
}

/* True if b asks for nothing a does not (same run, same stop, same image). */
static bool
spec_same(const struct worker_spec *a, const struct worker_spec *b)
{
    return a->generation == b->generation &&
           a->restart_count == b->restart_count && a->desired == b->desired &&
           a->kill == b->kill && a->grace_ms == b->grace_ms &&
           a->vcpus == b->vcpus && a->memory_mib == b->memory_mib &&
           a->disk_image == b->disk_image &&
           str_eq(a->kernel_digest, b->kernel_digest) &&
           str_eq(a->initrd_digest, b->initrd_digest) &&
           str_eq(a->disk_digest, b->disk_digest) &&
           str_eq(a->cmdline, b->cmdline) && args_eq(a, b);
}

/*
 * Installs a new desired set into the table, marking dirty the instances
 * whose spec changed, that are new, or that left the set.
 */
static void
apply_set(struct worker *w, struct worker_spec *specs, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        struct winst *in = inst_get(w, specs[i].id);

        if (!in->in_set || !spec_same(&in->spec, &specs[i]))
            in->dirty = true;
        worker_spec_clear(&in->spec);
        in->spec = specs[i];
        in->stop_policy = in->spec.fence;
        in->spec_new = true;
        memset(&specs[i], 0, sizeof(specs[i]));
    }
    for (i = 0; i < w->insts.cap; i++) {
        struct winst *in = w->insts.keys[i] ? w->insts.vals[i] : NULL;

        if (in == NULL)
            continue;
        if (in->spec_new) {
            in->in_set = true;
            in->spec_new = false;
        } else if (in->in_set) {
            worker_spec_clear(&in->spec);
            in->in_set = false;
            in->stop_policy = false;
            in->dirty = true;
        }
    }
    free(specs);
    w->have_set = true;
    w->fence_dirty = true;
}

/* ---- self-fencing (fence.h) ------------------------------------------ */

/* The run an instance is at, as the record names it. */
static void
fence_token(const struct winst *in, uint64_t *gen, uint64_t *restart)
{
    *gen = in->in_set ? in->spec.generation : in->rec_gen;
    *restart = in->in_set ? in->spec.restart_count : in->rec_restart;
}

/*
 * Destroys every running "stop" instance and reports it exited 137 with
 * the reason; it stays down (P_DONE at its current run) until the
 * controller asks for a new run. Desired stopped or deleted ones are
 * destroyed at once too (a kill). An instance libvirt failed on (logged)
 * does not hold up the others. 0, or -1 when one failed: tried again at
 * the worker's next turn.
 */
static int
fence_apply(struct worker *w, const char *reason)
{
    const struct virt_driver *drv = w->o.drv;
    size_t i, n = 0;
    int rc = 0;

    w->fence_dirty = true;
    for (i = 0; i < w->insts.cap; i++) {
        struct winst *in = w->insts.keys[i] ? w->insts.vals[i] : NULL;
        enum virt_state st;
        enum virt_reason rsn;

        if (in == NULL || !in->stop_policy || in->fenced != NULL)
            continue;
        if (drv->state_reason(w->conn, in->id, &st, &rsn) < 0) {
            rc = -1;
            continue;
        }
        if (in->in_set && in->spec.desired != WORKER_RUN) {
            /* Being stopped anyway: no grace left to wait for. */
            in->spec.kill = true;
            in->dirty = true;
            continue;
        }
        if (!is_up(st) && in->phase != P_RUNNING)
            continue; /* not running: nothing to fence */
        if (is_up(st) && drv->destroy(w->conn, in->id) < 0) {
            rc = -1;
            continue;
        }
        in->destroyed = true;
        in->phase = P_DONE;
        in->have_token = true;
        fence_token(in, &in->tok_gen, &in->tok_restart);
        in->fenced = xstrdup(reason);
        log_warnx("instance %s: fenced (destroyed): %s", in->id, reason);
        report(w, in, WS_EXITED, 137, reason);
        n++;
    }
    log_info("fence: %zu instances of partition_policy \"stop\" destroyed",
             n);
    return rc;
}

/* Entries sorted by id: the same table always gives the same text. */
static int
cmp_entry(const void *a, const void *b)
{
    return strcmp(((const struct fence_entry *)a)->id,
                  ((const struct fence_entry *)b)->id);
}

/* Writes the fence record when what it would hold changed. */
static void
fence_sync(struct worker *w)
{
    struct fence_entry *e;
    size_t i, n = 0;
    char *text;

    if (w->state_dir == NULL || !w->fence_dirty)
        return;
    e = xcalloc(w->insts.len + 1, sizeof(*e));
    for (i = 0; i < w->insts.cap; i++) {
        struct winst *in = w->insts.keys[i] ? w->insts.vals[i] : NULL;

        if (in == NULL || (!in->stop_policy && in->fenced == NULL))
            continue;
        e[n].id = in->id;
        fence_token(in, &e[n].generation, &e[n].restart_count);
        e[n].fenced = in->fenced;
        n++;
    }
    qsort(e, n, sizeof(*e), cmp_entry);
    text = fence_record_text(e, n);
    free(e); /* the strings are the table's */
    if (w->fence_text != NULL && strcmp(text, w->fence_text) == 0) {
        free(text);
        w->fence_dirty = false;
        return;
    }
    if (fence_record_save(w->state_dir, text) < 0) {
        free(text);
        return; /* logged; tried again at the next turn */
    }
    free(w->fence_text);
    w->fence_text = text;
    w->fence_dirty = false;
}

/* At start: the record's instances, before libvirt or a controller says
 * anything; the fenced ones report their exit again. */
static void
fence_load(struct worker *w)
{
    struct fence_entry *e;
    size_t n, i;

    if (w->state_dir == NULL || fence_record_load(w->state_dir, &e, &n) < 0)
        return;
    for (i = 0; i < n; i++) {
        struct winst *in = inst_get(w, e[i].id);

        in->adopted = true; /* a domain of an earlier run of the agent */
        in->generation = e[i].generation;
        in->rec_gen = e[i].generation;
        in->rec_restart = e[i].restart_count;
        in->stop_policy = true;
        if (e[i].fenced != NULL) {
            in->fenced = xstrdup(e[i].fenced);
            in->phase = P_DONE;
            in->have_token = true;
            in->tok_gen = e[i].generation;
            in->tok_restart = e[i].restart_count;
            report(w, in, WS_EXITED, 137, in->fenced);
        }
    }
    if (n > 0)
        log_info("fence record: %zu instances of partition_policy \"stop\"",
                 n);
    fence_entries_free(e, n);
    w->fence_dirty = true; /* written again once the table is known */
}

static void
conn_drop(struct worker *w)
{
    if (w->conn == NULL)
        return;
    w->o.drv->close(w->conn);
    w->conn = NULL;
}

static void *
worker_main(void *arg)
{
    struct worker *w = arg;

    w->reconnect_backoff_ms = WORKER_RECONNECT_MIN_MS;
    for (;;) {
        struct worker_spec *specs = NULL;
        size_t nspecs = 0, i;
        bool new_set, first_set, lost, full, kicked;
        struct strmap touched;
        int64_t now = mono_ms(), wake;

        pthread_mutex_lock(&w->mu);
        for (;;) {
            if (w->quit || w->have_new_set || w->conn_lost || w->kicked ||
                w->fence_req != NULL ||
                (w->touched.len > 0 && w->conn != NULL))
                break;
            now = mono_ms();
            wake = w->conn == NULL ? w->next_reconnect_ms : w->next_resync_ms;
            for (i = 0; w->conn != NULL && i < w->insts.cap; i++) {
                struct winst *in = w->insts.keys[i] ? w->insts.vals[i] : NULL;

                if (in && in->phase == P_STOPPING && !in->destroyed &&
                    stop_next_ms(in) < wake)
                    wake = stop_next_ms(in);
                if (in && addr_watched(w, in) && in->addr_next_ms < wake)
                    wake = in->addr_next_ms;
            }
            if (now >= wake)
                break;
            {
                struct timespec ts;
                int64_t left = wake - now;

                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_sec += left / 1000;
                ts.tv_nsec += (left % 1000) * 1000000;
                if (ts.tv_nsec >= 1000000000) {
                    ts.tv_sec++;
                    ts.tv_nsec -= 1000000000;
                }
                pthread_cond_timedwait(&w->cv, &w->mu, &ts);
            }
        }
        if (w->quit) {
            pthread_mutex_unlock(&w->mu);
            break;
        }
        new_set = w->have_new_set;
        if (new_set) {
            specs = w->new_specs;
            nspecs = w->nnew;
            w->new_specs = NULL;
            w->nnew = 0;
            w->have_new_set = false;
        }
        lost = w->conn_lost;
        w->conn_lost = false;
        kicked = w->kicked;
        w->kicked = false;
        if (w->fence_req != NULL) {
            free(w->fence_todo);
            w->fence_todo = w->fence_req;
            w->fence_req = NULL;
        }
        touched = w->touched;
        strmap_init(&w->touched);
        pthread_mutex_unlock(&w->mu);

        first_set = new_set && !w->have_set;
        if (new_set)
            apply_set(w, specs, nspecs);
        if (lost || (w->conn != NULL && !w->o.drv->alive(w->conn))) {
            log_warnx("lost the libvirt connection to %s; reconnecting",
                      w->uri);
            conn_drop(w);
            w->next_reconnect_ms = mono_ms();
        }
        /* A later set reconciles only what it changed (dirty), not every
         * domain on the host: a push costs libvirt calls for the instances
         * it concerns, whatever else runs here. The first set (which ends
         * observing), a (re)connect and the resync reconcile everything. */
        full = first_set || kicked;
        if (w->conn == NULL) {
            if (mono_ms() < w->next_reconnect_ms)
                goto next;
            if (worker_connect(w) < 0) {
                w->next_reconnect_ms = mono_ms() + w->reconnect_backoff_ms;
                w->reconnect_backoff_ms *= 2;
                if (w->reconnect_backoff_ms > WORKER_RECONNECT_MAX_MS)
                    w->reconnect_backoff_ms = WORKER_RECONNECT_MAX_MS;
                goto next;
            }
            w->reconnect_backoff_ms = WORKER_RECONNECT_MIN_MS;
            full = true;
        }
        if (w->fence_todo != NULL) {
            /* Before anything else: the margin to down_after is small. */
            if (fence_apply(w, w->fence_todo) == 0) {
                free(w->fence_todo);
                w->fence_todo = NULL;
            } else if (!w->o.drv->alive(w->conn)) {
                conn_drop(w);
                w->next_reconnect_ms = mono_ms();
                goto next;
            }
        }
        if (mono_ms() >= w->next_resync_ms)
            full = true;
        if (full) {
            w->next_resync_ms = mono_ms() + WORKER_RESYNC_MS;
            if (reconcile_all(w) < 0 && !w->o.drv->alive(w->conn)) {
                conn_drop(w);
                w->next_reconnect_ms = mono_ms();
            }
            if (w->pending_facts != NULL) {
                post(w, w->pending_facts);
                w->pending_facts = NULL;
            }
        } else {
            /* Libvirt events and grace-period deadlines. */
            struct winst **due = xcalloc(w->insts.len + 1, sizeof(*due));
            size_t k = 0;

            for (i = 0; i < w->insts.cap; i++) {
                struct winst *in = w->insts.keys[i] ? w->insts.vals[i] : NULL;

                if (in == NULL)
                    continue;
                if (in->dirty || strmap_get(&touched, in->id) != NULL ||
                    (in->phase == P_STOPPING && !in->destroyed &&
                     mono_ms() >= stop_next_ms(in)) ||
                    (addr_watched(w, in) && mono_ms() >= in->addr_next_ms))
                    due[k++] = in;
            }
            for (i = 0; i < k; i++) {
                /* reconcile_one may free it, but not when it fails. */
                due[i]->dirty = false;
                if (reconcile_one(w, due[i]) < 0) {
                    due[i]->dirty = true;
                    break;
                }
            }
            free(due);
        }
    next:
        fence_sync(w);
        for (i = 0; i < touched.cap; i++)
            if (touched.keys[i] != NULL)
                free(touched.vals[i]);
        strmap_fini(&touched);
    }
    return NULL;
}

struct worker *
worker_start(const struct worker_opts *o, void (*notify)(void *arg),
             void *arg)
{
    struct worker *w = xcalloc(1, sizeof(*w));
    int rc;

    w->o = *o;
    w->uri = xstrdup(o->uri);
    w->images_dir = o->images_dir ? xstrdup(o->images_dir) : NULL;
    w->state_dir = o->state_dir ? xstrdup(o->state_dir) : NULL;
    w->network = o->network ? xstrdup(o->network) : NULL;
    w->o.network = w->network;
    if (o->cluster_id != NULL && o->owner != NULL) {
        w->cluster_id = xstrdup(o->cluster_id);
        w->owner = xstrdup(o->owner);
    }
    w->o.cluster_id = w->cluster_id;
    w->o.owner = w->owner;
    w->o.uri = w->uri;
    w->o.images_dir = w->images_dir;
    w->o.state_dir = w->state_dir;
    w->test_channels = getenv("CLOUD_AGENT_TEST_CHANNELS") != NULL &&
                       strcmp(getenv("CLOUD_AGENT_TEST_CHANNELS"), "1") == 0;
    w->notify = notify;
    w->notify_arg = arg;
    strmap_init(&w->touched);
    strmap_init(&w->insts);
    if (pthread_mutex_init(&w->mu, NULL) != 0 ||
        pthread_cond_init(&w->cv, NULL) != 0)
        fatalx("cannot initialise the worker's lock");
    fence_load(w);
    if (w->state_dir != NULL) {
        char *run = xasprintf("%s/run", w->state_dir);

        if ((mkdir(w->state_dir, 0755) < 0 && errno != EEXIST) ||
            (mkdir(run, 0755) < 0 && errno != EEXIST))
            log_warn("cannot create %s", run);
        free(run);
    }
    rc = pthread_create(&w->thread, NULL, worker_main, w);
    if (rc != 0) {
        errno = rc;
        fatal("cannot start the libvirt worker thread");
    }
    return w;
}

void
worker_kick(struct worker *w)
{
    pthread_mutex_lock(&w->mu);
    w->kicked = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

void
worker_kick_cb(void *w)
{
    worker_kick(w);
}

void
worker_set_desired(struct worker *w, struct worker_spec *specs, size_t n)
{
    size_t i;

    pthread_mutex_lock(&w->mu);
    if (w->have_new_set) {
        for (i = 0; i < w->nnew; i++)
            worker_spec_clear(&w->new_specs[i]);
        free(w->new_specs);
    }
    w->new_specs = specs;
    w->nnew = n;
    w->have_new_set = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

void
worker_fence(struct worker *w, const char *reason)
{
    pthread_mutex_lock(&w->mu);
    free(w->fence_req);
    w->fence_req = xstrdup(reason);
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

void
worker_stop(struct worker *w)
{
    struct winst *in;
    void *v;
    size_t i = 0;

    if (w == NULL)
        return;
    pthread_mutex_lock(&w->mu);
    w->quit = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    conn_drop(w);
    hv_facts_clear(&w->facts);
    while ((in = strmap_next(&w->insts, &i)) != NULL)
        inst_free(in);
    strmap_fini(&w->insts);
    i = 0;
    while ((v = strmap_next(&w->touched, &i)) != NULL)
        free(v);
    strmap_fini(&w->touched);
    if (w->have_new_set) {
        for (i = 0; i < w->nnew; i++)
            worker_spec_clear(&w->new_specs[i]);
        free(w->new_specs);
    }
    worker_result_free(w->res_head);
    worker_result_free(w->pending_facts);
    free(w->fence_req);
    free(w->fence_todo);
    free(w->fence_text);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w->uri);
    free(w->images_dir);
    free(w->state_dir);
    free(w->network);
    free(w->cluster_id);
    free(w->owner);
    free(w);
}
