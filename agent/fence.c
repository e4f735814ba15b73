/*
 * fence: the agent's fence clock and fence record (see fence.h). The clock
 * owns one timer and <state-dir>/fence/clock (rewritten in place, not
 * synced: it only has to outlive the process, not the host); the record
 * functions own the format of <state-dir>/fence/instances.json.
 */
#define LOG_MODULE "fence"

#include "fence.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#include "fsutil.h"
#include "log.h"
#include "mem.h"
#include "monotime.h"

/* The kernel's id of this boot: a clock stamp of another boot means
 * nothing (CLOCK_MONOTONIC starts again at 0). */
#define FENCE_BOOT_ID "/proc/sys/kernel/random/boot_id"

struct fence {
    struct event *timer;
    fence_fire_fn fire;
    void *arg;
    long long base_ms; /* sent time of the last heartbeat stored */
    unsigned after_ms; /* 0: not known yet, nothing to fence against */
    bool fired;        /* fired since base_ms */
    int clock_fd;      /* <state-dir>/fence/clock, -1 if none */
    char boot[40];     /* FENCE_BOOT_ID, "" if unreadable */
};

static void
boot_id(char *buf, size_t len)
{
    FILE *fp = fopen(FENCE_BOOT_ID, "re");

    buf[0] = '\0';
    if (fp == NULL)
        return;
    if (fgets(buf, (int)len, fp) == NULL)
        buf[0] = '\0';
    buf[strcspn(buf, "\n")] = '\0';
    fclose(fp);
}

static char *
fence_dir(const char *state_dir)
{
    return xasprintf("%s/fence", state_dir);
}

/* "base_ms after_ms boot_id\n", padded to a fixed width: one pwrite
 * replaces it. */
static void
clock_save(struct fence *f)
{
    char line[96];
    int n;

    if (f->clock_fd < 0)
        return;
    n = snprintf(line, sizeof(line), "%020lld %010u %-36.36s\n", f->base_ms,
                 f->after_ms, f->boot[0] ? f->boot : "-");
    if (pwrite(f->clock_fd, line, (size_t)n, 0) != n)
        log_warn("cannot write the fence clock");
}

static void
clock_arm(struct fence *f)
{
    long long left;
    struct timeval tv;

    event_del(f->timer);
    if (f->after_ms == 0 || f->fired)
        return;
    left = f->base_ms + f->after_ms - mono_ms();
    if (left < 0)
        left = 0;
    tv.tv_sec = left / 1000;
    tv.tv_usec = (left % 1000) * 1000;
    if (evtimer_add(f->timer, &tv) < 0)
        log_warnx("cannot arm the fence timer");
}

static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct fence *f = arg;
    long long silent = mono_ms() - f->base_ms;

    (void)fd;
    (void)what;
    if (f->after_ms == 0 || f->fired)
        return;
    if (silent < f->after_ms) {
        clock_arm(f);
        return;
    }
    f->fired = true;
    f->fire(f->arg, silent, f->after_ms);
}

struct fence *
fence_new(struct event_base *base, const char *state_dir, fence_fire_fn fire,
          void *arg)
{
    struct fence *f = xcalloc(1, sizeof(*f));

    f->fire = fire;
    f->arg = arg;
    f->clock_fd = -1;
    f->base_ms = mono_ms();
    f->timer = evtimer_new(base, timer_cb, f);
    if (f->timer == NULL)
        fatalx("cannot create the fence timer");
    if (state_dir != NULL) {
        char *dir = fence_dir(state_dir), *path = xasprintf("%s/clock", dir);
        char buf[128], boot[40];
        ssize_t n;

        boot_id(f->boot, sizeof(f->boot));
        if (fsutil_mkdir_p(dir, 0700) < 0)
            log_warn("cannot create %s", dir);
        f->clock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (f->clock_fd < 0)
            log_warn("cannot open %s", path);
        else if ((n = pread(f->clock_fd, buf, sizeof(buf) - 1, 0)) > 0) {
            long long b;
            unsigned a;

            buf[n] = '\0';
            /* A stamp of this boot: the silence it began goes on. */
            if (sscanf(buf, "%lld %u %39s", &b, &a, boot) == 3 &&
                f->boot[0] != '\0' && strcmp(boot, f->boot) == 0 && b > 0 &&
                b <= f->base_ms && a > 0) {
                f->base_ms = b;
                f->after_ms = a;
                log_info("fence clock: last heard from a controller %lld ms ago, fence_after %u ms",
                         mono_ms() - b, a);
            }
        }
        free(path);
        free(dir);
    }
    clock_arm(f);
    return f;
}

void
fence_heard(struct fence *f, long long sent_ms)
{
    /* Only a newer proof moves the clock (or ends a silence). */
    if (sent_ms <= f->base_ms)
        return;
    f->base_ms = sent_ms;
    f->fired = false;
    clock_save(f);
    clock_arm(f);
}

void
fence_set_after(struct fence *f, unsigned after_ms)
{
    if (after_ms == 0 || after_ms == f->after_ms)
        return;
    log_info("fence_after is %u ms", after_ms);
    f->after_ms = after_ms;
    clock_save(f);
    clock_arm(f);
}

void
fence_free(struct fence *f)
{
    if (f == NULL)
        return;
    event_free(f->timer);
    if (f->clock_fd >= 0)
        close(f->clock_fd);
    free(f);
}

/* ---- the record (worker thread) ------------------------------------- */

void
fence_entries_free(struct fence_entry *e, size_t n)
{
    for (size_t i = 0; e != NULL && i < n; i++) {
        free(e[i].id);
        free(e[i].fenced);
    }
    free(e);
}

int
fence_record_load(const char *state_dir, struct fence_entry **out, size_t *n)
{
    char *dir = fence_dir(state_dir);
    char *path = xasprintf("%s/instances.json", dir);
    json_error_t jerr;
    json_t *root = NULL, *arr, *v;
    struct fence_entry *e = NULL;
    size_t i, k = 0;
    int rc = -1;

    *out = NULL;
    *n = 0;
    if (access(path, F_OK) < 0 && errno == ENOENT) {
        rc = 0;
        goto cleanup;
    }
    root = json_load_file(path, 0, &jerr);
    arr = root ? json_object_get(root, "instances") : NULL;
    if (!json_is_array(arr)) {
        log_warnx("%s: not a fence record (%s); ignored", path,
                  root ? "no instances array" : jerr.text);
        goto cleanup;
    }
    e = xcalloc(json_array_size(arr) + 1, sizeof(*e));
    json_array_foreach(arr, i, v) {
        const char *id = json_string_value(json_object_get(v, "id"));
        const char *why = json_string_value(json_object_get(v, "fenced"));

        if (id == NULL)
            continue;
        e[k].id = xstrdup(id);
        e[k].generation =
            (uint64_t)json_integer_value(json_object_get(v, "generation"));
        e[k].restart_count =
            (uint64_t)json_integer_value(json_object_get(v, "restart_count"));
        e[k].fenced = why ? xstrdup(why) : NULL;
        k++;
    }
    *out = e;
    *n = k;
    rc = 0;
cleanup:
    json_decref(root);
    free(path);
    free(dir);
    return rc;
}

char *
fence_record_text(const struct fence_entry *e, size_t n)
{
    json_t *root = json_object(), *arr = json_array();
    char *s;

    for (size_t i = 0; i < n; i++) {
        json_t *o = json_pack("{s:s, s:I, s:I}", "id", e[i].id, "generation",
                              (json_int_t)e[i].generation, "restart_count",
                              (json_int_t)e[i].restart_count);

        if (o == NULL)
            continue; /* an id that is not UTF-8 never comes from the set */
        if (e[i].fenced)
            json_object_set_new(o, "fenced", json_string(e[i].fenced));
        json_array_append_new(arr, o);
    }
    json_object_set_new(root, "instances", arr);
    s = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (s == NULL)
        fatalx("cannot serialise the fence record");
    return s;
}

int
fence_record_save(const char *state_dir, const char *text)
{
    char *dir = fence_dir(state_dir);
    char *path = xasprintf("%s/instances.json", dir);
    int rc = -1;

    if (fsutil_mkdir_p(dir, 0700) < 0) {
        log_warn("cannot create %s", dir);
        goto cleanup;
    }
    if (fsutil_write_atomic(path, 0600, text, strlen(text)) < 0) {
        log_warn("cannot write %s", path);
        goto cleanup;
    }
    rc = 0;
cleanup:
    free(path);
    free(dir);
    return rc;
}
