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

#include "worker.h"

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

enum phase {
    P_NONE = 0, /* nothing done or seen yet */
    P_RUNNING,
    P_STOPPING, /* ACPI shutdown sent (TERM) or destroy issued (KILL) */
    P_DONE,     /* exited or failed; stays so until a new run token */
    P_REMOVED,
};

struct winst {
    char *id;
    struct worker_spec spec; /* valid when in_set */
    bool in_set;
    bool adopted; /* found in libvirt, not started by this process */
    /* Its spec changed (or it left the set) in the last desired set and it
     * has not been reconciled since: a new set reconciles only these. */
    bool dirty;
    bool spec_new; /* apply_set's mark: named by the set being applied */
    enum phase phase;
    bool have_token;
    uint64_t tok_gen, tok_restart;
    bool stop_kill, destroyed;
    int64_t stop_begin_ms, stop_deadline_ms; /* ACPI shutdown sent; destroy after */
    int64_t stop_press_ms; /* the next press of the power button */
    int64_t started_ms, finished_ms;
    /* the last status posted */
    bool reported;
    enum worker_state rep_state;
    int rep_code;
    char *rep_reason;
    uint64_t generation;
    char *channel; /* the domain's guest channel socket, NULL if none */
    /* libvirt's addresses of its NICs (--network), polled while running */
    char **addrs;
    size_t naddrs;
    bool addrs_dirty;                  /* changed since the last report */
    int64_t addr_next_ms, addr_since_ms;
    /* Self-fencing (fence.h): partition_policy "stop" (from the set, or
     * the fence record before the first set), and the reason it was
     * fenced (NULL: it was not) until a new run. */
    bool stop_policy;
    uint64_t rec_gen, rec_restart; /* the run the record names (no set) */
    char *fenced;
};

struct worker {
    struct worker_opts o;
    char *uri, *images_dir, *state_dir;
    char *network; /* NULL: domains get no NIC */
    char *cluster_id, *owner; /* NULL: no identity (see worker_opts) */
    /*
     * CLOUD_AGENT_TEST_CHANNELS=1: on libvirt's test driver too, give each
     * domain a run dir and a guest channel socket path as with QEMU, and
     * connect to it; nothing binds it unless a bench or test plays QEMU
     * and the guest there (bench/config_bench.sh).
     */
    bool test_channels;
    void (*notify)(void *);
    void *notify_arg;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* under mu */
    bool quit;
    bool have_new_set;
    struct worker_spec *new_specs;
    size_t nnew;
    struct strmap touched; /* ids named by libvirt events (key = value) */
    bool conn_lost;
    bool kicked; /* worker_kick: reconcile everything */
    char *fence_req; /* worker_fence: the reason */
    struct worker_result *res_head, *res_tail;
    /* worker thread only */
    struct virt_conn *conn;
    struct hv_facts facts;
    bool have_set; /* a desired set has arrived since start */
    struct strmap insts; /* id -> struct winst */
    int64_t next_reconnect_ms, reconnect_backoff_ms, next_resync_ms;
    struct worker_result *pending_facts;
    char *fence_todo; /* a fence waiting for the libvirt connection */
    char *fence_text; /* the fence record as last written */
    /* The table changed in a way the record may show (a set, a fence, a
     * new run, an instance gone): fence_sync compares and writes. */
    bool fence_dirty;
};

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

/* ---- building a domain ---------------------------------------------- */

/* Path of a blob in the local image directory, or NULL (reason set). */
static char *
blob_path(struct worker *w, const char *digest, char *why, size_t whylen)
{
    const char *hex = digest;
    char *p;

    if (strncmp(digest, "sha256:", 7) == 0)
        hex = digest + 7;
    if (strlen(hex) != 64 || strspn(hex, "0123456789abcdef") != 64) {
        snprintf(why, whylen, "image blob %.80s is not a sha256 digest",
                 digest);
        return NULL;
    }
    if (w->facts.chosen == HV_TYPE_TEST) {
        /* libvirt's test driver boots nothing and reads no file. */
        return xasprintf("%s/sha256:%s",
                         w->images_dir ? w->images_dir : "/nonexistent", hex);
    }
    if (w->images_dir == NULL) {
        snprintf(why, whylen, "image blob %s: the agent has no --images directory",
                 digest);
        return NULL;
    }
    p = xasprintf("%s/sha256:%s", w->images_dir, hex);
    if (access(p, R_OK) == 0)
        return p;
    free(p);
    p = xasprintf("%s/%s", w->images_dir, hex);
    if (access(p, R_OK) == 0)
        return p;
    free(p);
    snprintf(why, whylen,
             "image blob %s is not in %s (without a blob cache the agent reads blobs only from --images)",
             digest, w->images_dir);
    return NULL;
}

/*
 * Where an image blob is: 1 with *pathp, 0 while the blob cache fetches it
 * (why says so), -1 with why.
 */
static int
image_blob(struct worker *w, const char *digest, char **pathp, char *why,
           size_t whylen)
{
    if (w->o.resolve != NULL)
        return w->o.resolve(w->o.resolve_arg, digest, pathp, why, whylen);
    *pathp = blob_path(w, digest, why, whylen);
    return *pathp != NULL ? 1 : -1;
}

/*
 * The format of a disk blob from its header ("qcow2" or "raw") and the
 * size the guest sees. 0, or -1 with why.
 */
static int
disk_probe(const char *path, const char **fmtp, uint64_t *vsizep, char *why,
           size_t whylen)
{
    unsigned char h[32];
    struct stat st;
    ssize_t n;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0 || fstat(fd, &st) < 0) {
        snprintf(why, whylen, "cannot read the disk image %s: %s", path,
                 strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    n = pread(fd, h, sizeof(h), 0);
    close(fd);
    if (n == (ssize_t)sizeof(h) && memcmp(h, "QFI\xfb", 4) == 0) {
        uint64_t v = 0;

        for (int i = 24; i < 32; i++) /* big-endian virtual size */
            v = (v << 8) | h[i];
        *fmtp = "qcow2";
        *vsizep = v;
        return 0;
    }
    *fmtp = "raw";
    *vsizep = (uint64_t)st.st_size;
    return 0;
}

/*
 * The instance's copy-on-write overlay over the cached base disk, made
 * through libvirt's storage API (kept across restarts of the instance,
 * deleted with it). 0 with *pathp, or -1 with why.
 */
static int
disk_overlay(struct worker *w, struct winst *in, const char *base,
             char **pathp, char *why, size_t whylen)
{
    const char *fmt;
    uint64_t vsize, want;
    char *pool;
    int rc;

    if (w->o.drv->overlay_create == NULL || w->state_dir == NULL) {
        snprintf(why, whylen,
                 "disk images need the libvirt storage API and --state-dir");
        return -1;
    }
    if (w->facts.chosen == HV_TYPE_TEST && access(base, R_OK) < 0) {
        fmt = "qcow2"; /* the test driver reads no file */
        vsize = 0;
    } else if (disk_probe(base, &fmt, &vsize, why, whylen) < 0) {
        return -1;
    }
    want = in->spec.disk_gib << 30;
    if (want < vsize)
        want = vsize;
    if (want == 0)
        want = 1ull << 30;
    pool = xasprintf("%s/disks", w->state_dir);
    rc = w->o.drv->overlay_create(w->conn, pool, in->id, base, fmt, want,
                                  pathp);
    free(pool);
    if (rc < 0) {
        snprintf(why, whylen, "cannot make the disk overlay: %s",
                 w->o.drv->last_error(w->conn));
        return -1;
    }
    return 0;
}

/* Deletes the instance's disk overlay, if any (logged on failure). */
static void
disk_overlay_delete(struct worker *w, const char *id)
{
    char *pool;

    if (w->o.drv->overlay_delete == NULL || w->state_dir == NULL)
        return;
    pool = xasprintf("%s/disks", w->state_dir);
    (void)w->o.drv->overlay_delete(w->conn, pool, id);
    free(pool);
}

/*
 * Writes the boot config (fw_cfg opt/org.cloud/config, read by guests
 * without virtio-serial) next to the console log: the lines the channel
 * starts with, the boot line (env, args) then the config line, each
 * optional; replaced atomically and durably (fsutil.h), readable by
 * QEMU's user.
 * Returns its path, or NULL with why.
 */
static char *
write_boot_config(const char *run, const char *boot, const char *line,
                  char *why, size_t whylen)
{
    char *path = xasprintf("%s/config.json", run);
    char *data = xasprintf("%s%s", boot ? boot : "", line ? line : "");

    if (fsutil_write_atomic(path, 0644, data, strlen(data)) < 0) {
        snprintf(why, whylen, "cannot write the boot config %s: %s", path,
                 strerror(errno));
        free(path);
        path = NULL;
    }
    free(data);
    return path;
}

/* The guest channel socket of an adopted domain, if QEMU bound one. */
static char *
channel_path_found(struct worker *w, const char *id)
{
    struct stat st;
    char *p;

    if (w->state_dir == NULL ||
        (w->facts.chosen == HV_TYPE_TEST && !w->test_channels))
        return NULL;
    p = xasprintf("%s/run/%s/channel.sock", w->state_dir, id);
    if (stat(p, &st) == 0 && S_ISSOCK(st.st_mode))
        return p;
    free(p);
    return NULL;
}

/*
 * Defines and starts the domain of in. 0; 1 while an image blob is being
 * fetched (why says so); -1 with why filled.
 */
static int
start_domain(struct worker *w, struct winst *in, char *why, size_t whylen)
{
    const struct worker_spec *s = &in->spec;
    struct domxml_spec d = {0};
    char *sock = NULL, *bootcfg = NULL;
    char *kernel = NULL, *initrd = NULL, *disk = NULL, *run = NULL;
    char *log = NULL, *xml = NULL, *cmdline = NULL;
    int ret = -1, rb;

    if (!s->disk_image &&
        (s->kernel_digest == NULL || s->kernel_digest[0] == '\0')) {
        snprintf(why, whylen, "the image has no kernel blob");
        return -1;
    }
    if (s->disk_image &&
        (s->disk_digest == NULL || s->disk_digest[0] == '\0')) {
        snprintf(why, whylen, "the disk image has no disk blob");
        return -1;
    }
    /* A disk image may bring a kernel too (direct boot, root on the disk). */
    if (s->kernel_digest != NULL && s->kernel_digest[0] != '\0') {
        rb = image_blob(w, s->kernel_digest, &kernel, why, whylen);
        if (rb <= 0)
            goto blob_missing;
    }
    if (kernel != NULL && s->initrd_digest && s->initrd_digest[0]) {
        rb = image_blob(w, s->initrd_digest, &initrd, why, whylen);
        if (rb <= 0)
            goto blob_missing;
    }
    if (s->disk_image) {
        char *base = NULL;

        rb = image_blob(w, s->disk_digest, &base, why, whylen);
        if (rb <= 0)
            goto blob_missing;
        rb = disk_overlay(w, in, base, &disk, why, whylen);
        free(base);
        if (rb < 0)
            goto cleanup;
    }
    if ((w->facts.chosen != HV_TYPE_TEST || w->test_channels) &&
        w->state_dir != NULL) {
        run = xasprintf("%s/run/%s", w->state_dir, in->id);
        if ((mkdir(run, 0755) < 0 && errno != EEXIST) ||
            chmod(run, 0777) < 0) {
            snprintf(why, whylen, "cannot create %s: %s", run,
                     strerror(errno));
            goto cleanup;
        }
        log = xasprintf("%s/console.log", run);
        sock = xasprintf("%s/channel.sock", run);
        if (strlen(sock) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
            log_warnx("instance %s: guest channel path %s is too long for a unix socket; booting without the channel",
                      in->id, sock);
            free(sock);
            sock = NULL;
        } else {
            /* QEMU binds it: a stale one from an earlier run is in the way. */
            (void)unlink(sock);
        }
        if ((s->boot_line != NULL || s->config_line != NULL) &&
            (bootcfg = write_boot_config(run, s->boot_line, s->config_line,
                                         why, whylen)) == NULL)
            goto cleanup;
    }
    d.instance_id = in->id;
    d.generation = s->generation;
    d.type = w->facts.chosen;
    d.vcpus = s->vcpus ? s->vcpus : 1;
    d.memory_mib = s->memory_mib ? s->memory_mib : 128;
    d.arch = w->facts.arch;
    d.kernel = kernel;
    d.initrd = initrd;
    /* A kernel gets the args on its command line, quoted; a disk booted
     * through the BIOS has them in the boot line only (channel, fw_cfg). */
    if (kernel != NULL) {
        cmdline = cmdline_join(s->cmdline, (const char *const *)s->args,
                               s->nargs, CMDLINE_MAX, why, whylen);
        if (cmdline == NULL)
            goto cleanup;
    }
    d.cmdline = cmdline && cmdline[0] ? cmdline : NULL;
    d.disk = disk;
    d.console_log = log;
    d.channel_path = sock;
    d.network = w->network;
    d.boot_config_file = bootcfg;
    d.cluster = w->cluster_id;
    d.owner = w->owner;
    xml = domxml_build(&d);
    if (xml == NULL) {
        snprintf(why, whylen, "cannot build the domain XML (see the agent log)");
        goto cleanup;
    }
    if (w->o.drv->define_start(w->conn, in->id, xml) < 0) {
        snprintf(why, whylen, "%s", w->o.drv->last_error(w->conn));
        goto cleanup;
    }
    free(in->channel);
    in->channel = sock;
    sock = NULL;
    ret = 0;
    goto cleanup;

blob_missing:
    ret = rb == 0 ? 1 : -1; /* 0: being fetched */

cleanup:
    free(sock);
    free(cmdline);
    free(bootcfg);
    free(kernel);
    free(initrd);
    free(disk);
    free(run);
    free(log);
    free(xml);
    return ret;
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
    disk_overlay_delete(w, in->id);
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
        rc = start_domain(w, in, why, sizeof(why));
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
            disk_overlay_delete(w, in->id);
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
            in->channel = channel_path_found(w, in->id);
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
    size_t i;

    if (w == NULL)
        return;
    pthread_mutex_lock(&w->mu);
    w->quit = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    conn_drop(w);
    hv_facts_clear(&w->facts);
    for (i = 0; i < w->insts.cap; i++)
        if (w->insts.keys[i] != NULL)
            inst_free(w->insts.vals[i]);
    strmap_fini(&w->insts);
    for (i = 0; i < w->touched.cap; i++)
        if (w->touched.keys[i] != NULL)
            free(w->touched.vals[i]);
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
