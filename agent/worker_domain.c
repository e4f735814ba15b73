/*
 * worker_domain: building and starting an instance's domain, on the
 * worker thread (worker_priv.h): its kernel, initrd or disk image from the
 * image directory or the blob cache, a qcow2 overlay for a disk image, the
 * boot config file and the guest channel socket, the domain XML
 * (domxml.h), then define and start.
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
void
wdom_overlay_delete(struct worker *w, const char *id)
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
char *
wdom_channel_path(struct worker *w, const char *id)
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
int
wdom_start(struct worker *w, struct winst *in, char *why, size_t whylen)
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
