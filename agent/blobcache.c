/*
 * blobcache: the agent's image cache (see blobcache.h). Owns the cache
 * directory, the fetch table (digest -> struct bc_entry: wanted, fetching,
 * or failed recently), the temporary files and SHA-256 contexts of the
 * fetches, the set of digests the desired set references, and an eventfd
 * through which the worker thread wakes the loop. Everything in the table
 * is under bc->mu: blobcache_resolve() runs on the worker thread.
 */
#define LOG_MODULE "blobcache"

#include "blobcache.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "digest.h"
#include "fsutil.h"
#include "log.h"
#include "mem.h"
#include "monotime.h"
#include "strmap.h"

enum bc_state {
    BC_WANTED = 0, /* asked for; no request on the wire */
    BC_FETCHING,   /* request sent on the current link */
    BC_FAILED,     /* failed at failed_ms; resolve says why until retry */
};

struct bc_entry {
    char digest[72];
    enum bc_state state;
    uint64_t req_id;
    int fd;
    char *tmp;
    EVP_MD_CTX *md;
    uint64_t got, total;
    long long started_ms, failed_ms; /* mono_ms() */
    int kicked_pct;
    long long kicked_ms;
    char *reason; /* BC_FAILED */
};

struct blobcache {
    struct event_base *base;
    char *dir, *images_dir;
    uint64_t max_bytes;
    blobcache_send_fn send;
    void *send_arg;
    void (*kick)(void *);
    void *kick_arg;
    int efd;
    struct event *efd_ev, *timer;
    bool link_up;
    uint64_t next_id;
    uint64_t fetched;
    pthread_mutex_t mu;
    /* under mu */
    struct strmap entries; /* digest -> struct bc_entry */
    struct strmap refs;    /* digests of the desired set (key = value) */
    bool have_set;
};

static void
entry_close(struct bc_entry *e, bool unlink_tmp)
{
    if (e->fd >= 0)
        close(e->fd);
    e->fd = -1;
    if (e->tmp != NULL && unlink_tmp)
        unlink(e->tmp);
    free(e->tmp);
    e->tmp = NULL;
    EVP_MD_CTX_free(e->md);
    e->md = NULL;
    e->got = 0;
}

static void
entry_free(struct bc_entry *e)
{
    if (e == NULL)
        return;
    entry_close(e, true);
    free(e->reason);
    free(e);
}

static void
kick(struct blobcache *bc)
{
    if (bc->kick != NULL)
        bc->kick(bc->kick_arg);
}

static void
send_request(struct blobcache *bc, struct bc_entry *e, bool cancel)
{
    Cloud__Agent__Envelope env = CLOUD__AGENT__ENVELOPE__INIT;
    Cloud__Agent__BlobRequest q = CLOUD__AGENT__BLOB_REQUEST__INIT;

    q.request_id = e->req_id;
    q.digest = e->digest;
    q.offset = e->got;
    q.cancel = cancel;
    env.msg_case = CLOUD__AGENT__ENVELOPE__MSG_BLOB_REQUEST;
    env.blob_request = &q;
    if (bc->send(bc->send_arg, &env) < 0 && !cancel)
        e->state = BC_WANTED; /* sent again when the link is back */
}

/* Under mu. Marks e failed (it stays so for BLOBCACHE_RETRY_MS). */
static void
entry_fail(struct blobcache *bc, struct bc_entry *e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
entry_fail(struct blobcache *bc, struct bc_entry *e, const char *fmt, ...)
{
    char why[700];
    va_list ap;

    (void)bc;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    log_warnx("%s", why);
    entry_close(e, true);
    e->state = BC_FAILED;
    e->failed_ms = mono_ms();
    free(e->reason);
    e->reason = xstrdup(why);
}

static int fetched_count_inflight(struct blobcache *bc);

/* Under mu. Sends requests for wanted digests while there is room. */
static void
pump(struct blobcache *bc)
{
    int inflight = fetched_count_inflight(bc);

    if (!bc->link_up)
        return;
    for (size_t i = 0; i < bc->entries.cap && inflight < BLOBCACHE_FETCHES;
         i++) {
        struct bc_entry *e =
            bc->entries.keys[i] ? bc->entries.vals[i] : NULL;

        if (e == NULL || e->state != BC_WANTED)
            continue;
        if (e->fd < 0) {
            e->tmp = xasprintf("%s/.tmp-%s", bc->dir, e->digest + 7);
            e->fd = open(e->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
                         0644);
            e->md = EVP_MD_CTX_new();
            e->got = 0;
            if (e->fd < 0 || e->md == NULL ||
                EVP_DigestInit_ex(e->md, EVP_sha256(), NULL) != 1) {
                entry_fail(bc, e, "cannot fetch image %s: cannot write %s: %s",
                           e->digest, e->tmp ? e->tmp : bc->dir,
                           strerror(errno));
                kick(bc);
                continue;
            }
            e->started_ms = mono_ms();
        }
        e->req_id = ++bc->next_id;
        e->state = BC_FETCHING;
        log_info("fetching %s from the controller (request %" PRIu64
                 ", from offset %" PRIu64 ")",
                 e->digest, e->req_id, e->got);
        send_request(bc, e, false);
        if (e->state == BC_FETCHING)
            inflight++;
    }
}

static int
fetched_count_inflight(struct blobcache *bc)
{
    int n = 0;

    for (size_t i = 0; i < bc->entries.cap; i++) {
        struct bc_entry *e =
            bc->entries.keys[i] ? bc->entries.vals[i] : NULL;

        if (e != NULL && e->state == BC_FETCHING)
            n++;
    }
    return n;
}

/* Under mu: an entry for digest, made BC_WANTED if new. */
static struct bc_entry *
want(struct blobcache *bc, const char *digest)
{
    struct bc_entry *e = strmap_get(&bc->entries, digest);

    if (e == NULL) {
        e = xcalloc(1, sizeof(*e));
        snprintf(e->digest, sizeof(e->digest), "%s", digest);
        e->fd = -1;
        e->state = BC_WANTED;
        strmap_put(&bc->entries, e->digest, e);
    }
    return e;
}

static char *
cache_path(const struct blobcache *bc, const char *digest)
{
    return xasprintf("%s/%s", bc->dir, digest);
}

/* ---- the worker's side --------------------------------------------- */

int
blobcache_resolve(struct blobcache *bc, const char *digest, char **pathp,
                  char *why, size_t whylen)
{
    struct bc_entry *e;
    char *p;
    int ret;

    *pathp = NULL;
    if (!digest_valid(digest)) {
        snprintf(why, whylen, "image blob %.80s is not a sha256 digest",
                 digest ? digest : "");
        return -1;
    }
    if (bc->images_dir != NULL) {
        p = xasprintf("%s/%s", bc->images_dir, digest);
        if (access(p, R_OK) == 0) {
            *pathp = p;
            return 1;
        }
        free(p);
        p = xasprintf("%s/%s", bc->images_dir, digest + 7);
        if (access(p, R_OK) == 0) {
            *pathp = p;
            return 1;
        }
        free(p);
    }
    p = cache_path(bc, digest);
    /* Under mu: a fetch renames its file into place under mu too, so the
     * file is either seen here or its entry is still in the table. */
    pthread_mutex_lock(&bc->mu);
    if (access(p, R_OK) == 0) {
        pthread_mutex_unlock(&bc->mu);
        /* Used now: eviction goes by this mtime. */
        if (utimensat(AT_FDCWD, p, NULL, 0) < 0)
            log_warn("cannot touch %s", p);
        *pathp = p;
        return 1;
    }
    free(p);
    e = strmap_get(&bc->entries, digest);
    if (e != NULL && e->state == BC_FAILED &&
        mono_ms() - e->failed_ms < BLOBCACHE_RETRY_MS) {
        snprintf(why, whylen, "%s", e->reason);
        ret = -1;
    } else {
        if (e != NULL && e->state == BC_FAILED)
            e->state = BC_WANTED; /* try again */
        e = want(bc, digest);
        if (e->state == BC_FETCHING && e->total > 0)
            snprintf(why, whylen, "fetching image %.19s... (%d%%)", digest,
                     (int)(e->got * 100 / e->total));
        else if (!bc->link_up)
            snprintf(why, whylen,
                     "fetching image %.19s... (waiting for the controller "
                     "link)",
                     digest);
        else
            snprintf(why, whylen, "fetching image %.19s...", digest);
        ret = 0;
    }
    pthread_mutex_unlock(&bc->mu);
    if (ret == 0) {
        uint64_t one = 1;

        if (write(bc->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
            log_warn("cannot wake the event loop");
    }
    return ret;
}

int
blobcache_resolve_cb(void *arg, const char *digest, char **pathp, char *why,
                     size_t whylen)
{
    return blobcache_resolve(arg, digest, pathp, why, whylen);
}

/* ---- the loop's side ------------------------------------------------- */

static void
efd_cb(evutil_socket_t fd, short what, void *arg)
{
    struct blobcache *bc = arg;
    uint64_t v;

    (void)what;
    if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
        log_warn("cannot read the blob cache's eventfd");
    pthread_mutex_lock(&bc->mu);
    pump(bc);
    pthread_mutex_unlock(&bc->mu);
}

static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)blobcache_evict(arg);
}

static bool
blob_present(const struct blobcache *bc, const char *digest)
{
    char *p;
    bool ok;

    if (bc->images_dir != NULL) {
        p = xasprintf("%s/%s", bc->images_dir, digest);
        ok = access(p, R_OK) == 0;
        free(p);
        if (ok)
            return true;
        p = xasprintf("%s/%s", bc->images_dir, digest + 7);
        ok = access(p, R_OK) == 0;
        free(p);
        if (ok)
            return true;
    }
    p = cache_path(bc, digest);
    ok = access(p, R_OK) == 0;
    free(p);
    return ok;
}

static void
ref_add(struct blobcache *bc, const char *d)
{
    if (d == NULL || d[0] == '\0' || strmap_get(&bc->refs, d) != NULL)
        return;
    {
        char *k = xstrdup(d);

        strmap_put(&bc->refs, k, k);
    }
}

void
blobcache_note_set(struct blobcache *bc, const struct worker_spec *specs,
                   size_t n)
{
    pthread_mutex_lock(&bc->mu);
    for (size_t i = 0; i < bc->refs.cap; i++)
        if (bc->refs.keys[i] != NULL)
            free(bc->refs.vals[i]);
    strmap_fini(&bc->refs);
    strmap_init(&bc->refs);
    for (size_t i = 0; i < n; i++) {
        const struct worker_spec *s = &specs[i];
        const char *ds[3] = {s->kernel_digest, s->initrd_digest,
                             s->disk_digest};

        if (s->desired == WORKER_DELETE)
            continue;
        for (int k = 0; k < 3; k++) {
            struct bc_entry *e;

            if (!digest_valid(ds[k]))
                continue;
            ref_add(bc, ds[k]);
            /* Prefetch for what is to run; the worker asks again anyway. */
            if (s->desired != WORKER_RUN || blob_present(bc, ds[k]))
                continue;
            e = strmap_get(&bc->entries, ds[k]);
            if (e != NULL && e->state == BC_FAILED &&
                mono_ms() - e->failed_ms < BLOBCACHE_RETRY_MS)
                continue;
            if (e != NULL && e->state == BC_FAILED)
                e->state = BC_WANTED;
            (void)want(bc, ds[k]);
        }
    }
    bc->have_set = true;
    pump(bc);
    pthread_mutex_unlock(&bc->mu);
}

static struct bc_entry *
entry_by_req(struct blobcache *bc, uint64_t id)
{
    for (size_t i = 0; i < bc->entries.cap; i++) {
        struct bc_entry *e =
            bc->entries.keys[i] ? bc->entries.vals[i] : NULL;

        if (e != NULL && e->state == BC_FETCHING && e->req_id == id)
            return e;
    }
    return NULL;
}

/* Under mu: the last byte arrived. 0 or -1 (e failed). */
static int
entry_finish(struct blobcache *bc, struct bc_entry *e)
{
    char got[DIGEST_TEXT_SIZE], *final;

    if (digest_final(e->md, got) < 0) {
        entry_fail(bc, e, "cannot fetch image %s: SHA-256 failed", e->digest);
        return -1;
    }
    if (strcmp(got, e->digest) != 0) {
        entry_fail(bc, e,
                   "image %s arrived from the controller with digest %s "
                   "(%" PRIu64 " bytes): corrupt, discarded",
                   e->digest, got, e->got);
        return -1;
    }
    final = cache_path(bc, e->digest);
    if (fsutil_commit(e->fd, e->tmp, final) < 0) {
        entry_fail(bc, e, "cannot fetch image %s: store it as %s: %s",
                   e->digest, final, strerror(errno));
        free(final);
        return -1;
    }
    free(final);
    log_info("fetched %s into the cache (%" PRIu64 " bytes in %lld ms)",
             e->digest, e->got, mono_ms() - e->started_ms);
    bc->fetched++;
    free(e->tmp);
    e->tmp = NULL; /* it is the blob now */
    entry_close(e, false);
    strmap_del(&bc->entries, e->digest);
    entry_free(e);
    return 0;
}

void
blobcache_on_chunk(struct blobcache *bc, const Cloud__Agent__BlobChunk *ch)
{
    struct bc_entry *e;
    bool done = false;

    pthread_mutex_lock(&bc->mu);
    e = entry_by_req(bc, ch->request_id);
    if (e == NULL) {
        log_debug("chunk of blob request %" PRIu64 " dropped (not ours now)",
                  ch->request_id);
        goto out;
    }
    if (ch->error != NULL && ch->error[0] != '\0') {
        entry_fail(bc, e, "cannot fetch image %s from the controller: %s",
                   e->digest, ch->error);
        done = true;
        goto out;
    }
    if (ch->offset != e->got) {
        entry_fail(bc, e,
                   "cannot fetch image %s: the controller sent offset %" PRIu64
                   " where %" PRIu64 " was due",
                   e->digest, ch->offset, e->got);
        send_request(bc, e, true);
        done = true;
        goto out;
    }
    if (ch->total_size > bc->max_bytes) {
        entry_fail(bc, e,
                   "image %s has %" PRIu64 " bytes, more than the whole cache "
                   "may hold (--cache-max-mib %" PRIu64 ")",
                   e->digest, ch->total_size, bc->max_bytes >> 20);
        send_request(bc, e, true);
        done = true;
        goto out;
    }
    e->total = ch->total_size;
    if (e->got + ch->data.len > e->total) {
        entry_fail(bc, e,
                   "cannot fetch image %s: the controller sent more than the "
                   "%" PRIu64 " bytes it announced",
                   e->digest, e->total);
        send_request(bc, e, true);
        done = true;
        goto out;
    }
    for (size_t off = 0; off < ch->data.len;) {
        ssize_t n = pwrite(e->fd, ch->data.data + off, ch->data.len - off,
                           (off_t)(e->got + off));

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            entry_fail(bc, e, "cannot fetch image %s: write %s: %s",
                       e->digest, e->tmp, strerror(errno));
            send_request(bc, e, true);
            done = true;
            goto out;
        }
        off += (size_t)n;
    }
    /* Start writeback now, so the fsync at the end has little left. */
    if (ch->data.len > 0 &&
        sync_file_range(e->fd, (off_t)e->got, (off_t)ch->data.len,
                        SYNC_FILE_RANGE_WRITE) < 0)
        log_debug("sync_file_range %s: %s", e->tmp, strerror(errno));
    if (EVP_DigestUpdate(e->md, ch->data.data, ch->data.len) != 1) {
        entry_fail(bc, e, "cannot fetch image %s: SHA-256 failed", e->digest);
        send_request(bc, e, true);
        done = true;
        goto out;
    }
    e->got += ch->data.len;
    if (ch->eof) {
        if (e->got != e->total)
            entry_fail(bc, e,
                       "cannot fetch image %s: the stream ended at %" PRIu64
                       " of %" PRIu64 " bytes",
                       e->digest, e->got, e->total);
        else
            (void)entry_finish(bc, e);
        done = true;
        goto out;
    }
    /* Progress for the instance's reason: a kick per 10%, 2 s apart. */
    if (e->total > 0) {
        int pct = (int)(e->got * 100 / e->total);

        if (pct >= e->kicked_pct + 10 && mono_ms() - e->kicked_ms >= 2000) {
            e->kicked_pct = pct;
            e->kicked_ms = mono_ms();
            pthread_mutex_unlock(&bc->mu);
            kick(bc);
            return;
        }
    }
out:
    if (done)
        pump(bc);
    pthread_mutex_unlock(&bc->mu);
    if (done) {
        kick(bc);
        (void)blobcache_evict(bc);
    }
}

void
blobcache_link_up(struct blobcache *bc)
{
    pthread_mutex_lock(&bc->mu);
    bc->link_up = true;
    pump(bc);
    pthread_mutex_unlock(&bc->mu);
}

void
blobcache_link_down(struct blobcache *bc)
{
    pthread_mutex_lock(&bc->mu);
    bc->link_up = false;
    /* The requests died with the connection; the files and digests stay,
     * so the next link resumes from the offset reached. */
    for (size_t i = 0; i < bc->entries.cap; i++) {
        struct bc_entry *e =
            bc->entries.keys[i] ? bc->entries.vals[i] : NULL;

        if (e != NULL && e->state == BC_FETCHING)
            e->state = BC_WANTED;
    }
    pthread_mutex_unlock(&bc->mu);
}

uint64_t
blobcache_fetched(const struct blobcache *bc)
{
    return bc->fetched;
}

/* ---- eviction -------------------------------------------------------- */

static int
victim_cmp(const void *a, const void *b)
{
    const struct blobcache_file *x = *(const struct blobcache_file *const *)a;
    const struct blobcache_file *y = *(const struct blobcache_file *const *)b;

    if (x->used != y->used)
        return x->used < y->used ? -1 : 1;
    return strcmp(x->name, y->name);
}

size_t
blobcache_pick_victims(const struct blobcache_file *files, size_t n,
                       uint64_t max_bytes, bool *victim)
{
    const struct blobcache_file **order;
    uint64_t total = 0;
    size_t k = 0, nv = 0;

    for (size_t i = 0; i < n; i++) {
        victim[i] = false;
        total += files[i].size;
    }
    if (total <= max_bytes)
        return 0;
    order = xcalloc(n + 1, sizeof(*order));
    for (size_t i = 0; i < n; i++)
        if (!files[i].referenced)
            order[k++] = &files[i];
    qsort(order, k, sizeof(*order), victim_cmp);
    for (size_t i = 0; i < k && total > max_bytes; i++) {
        victim[order[i] - files] = true;
        total -= order[i]->size;
        nv++;
    }
    free(order);
    return nv;
}

int
blobcache_evict(struct blobcache *bc)
{
    struct blobcache_file *files = NULL;
    size_t n = 0, cap = 0, nv;
    bool *victim;
    struct dirent *de;
    DIR *d;
    int removed = 0;

    pthread_mutex_lock(&bc->mu);
    if (!bc->have_set) {
        /* What the instances use is unknown until the first set. */
        pthread_mutex_unlock(&bc->mu);
        return 0;
    }
    d = opendir(bc->dir);
    if (d == NULL) {
        log_warn("cannot read the cache directory %s", bc->dir);
        pthread_mutex_unlock(&bc->mu);
        return 0;
    }
    while ((de = readdir(d)) != NULL) {
        struct stat st;

        if (!digest_valid(de->d_name) ||
            fstatat(dirfd(d), de->d_name, &st, 0) < 0 || !S_ISREG(st.st_mode))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 32;
            files = xrealloc(files, cap * sizeof(*files));
        }
        memset(&files[n], 0, sizeof(files[n]));
        snprintf(files[n].name, sizeof(files[n].name), "%.71s", de->d_name);
        files[n].size = (uint64_t)st.st_size;
        files[n].used = (int64_t)st.st_mtime;
        files[n].referenced = strmap_get(&bc->refs, de->d_name) != NULL ||
                              strmap_get(&bc->entries, de->d_name) != NULL;
        n++;
    }
    victim = xcalloc(n + 1, sizeof(*victim));
    nv = blobcache_pick_victims(files, n, bc->max_bytes, victim);
    for (size_t i = 0; nv > 0 && i < n; i++) {
        if (!victim[i])
            continue;
        if (unlinkat(dirfd(d), files[i].name, 0) < 0) {
            log_warn("cannot evict %s/%s", bc->dir, files[i].name);
            continue;
        }
        log_info("evicted %s from the cache (%" PRIu64 " bytes, unused by "
                 "the desired set; limit %" PRIu64 " MiB)",
                 files[i].name, files[i].size, bc->max_bytes >> 20);
        removed++;
    }
    closedir(d);
    pthread_mutex_unlock(&bc->mu);
    free(victim);
    free(files);
    return removed;
}

/* ---- life cycle ------------------------------------------------------ */

/* Leftovers of fetches a previous run did not finish. */
static void
remove_temps(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;

    if (d == NULL)
        return;
    while ((de = readdir(d)) != NULL)
        if (strncmp(de->d_name, ".tmp-", 5) == 0 &&
            unlinkat(dirfd(d), de->d_name, 0) < 0)
            log_warn("cannot remove %s/%s", dir, de->d_name);
    closedir(d);
}

struct blobcache *
blobcache_new(struct event_base *base, const struct blobcache_opts *o,
              blobcache_send_fn send, void *send_arg)
{
    struct blobcache *bc;
    struct timeval tv = {BLOBCACHE_EVICT_INTERVAL_S, 0};

    if (fsutil_mkdir_p(o->dir, 0755) < 0 || access(o->dir, W_OK) < 0) {
        log_warn("cannot use %s as the image cache", o->dir);
        return NULL;
    }
    bc = xcalloc(1, sizeof(*bc));
    bc->base = base;
    bc->dir = xstrdup(o->dir);
    bc->images_dir = o->images_dir ? xstrdup(o->images_dir) : NULL;
    bc->max_bytes = o->max_bytes;
    bc->send = send;
    bc->send_arg = send_arg;
    strmap_init(&bc->entries);
    strmap_init(&bc->refs);
    if (pthread_mutex_init(&bc->mu, NULL) != 0)
        fatalx("cannot initialise the blob cache's lock");
    remove_temps(bc->dir);
    bc->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (bc->efd < 0)
        fatal("eventfd");
    bc->efd_ev = event_new(base, bc->efd, EV_READ | EV_PERSIST, efd_cb, bc);
    bc->timer = event_new(base, -1, EV_PERSIST, timer_cb, bc);
    if (bc->efd_ev == NULL || bc->timer == NULL ||
        event_add(bc->efd_ev, NULL) < 0 || event_add(bc->timer, &tv) < 0)
        fatalx("cannot set up the blob cache's events");
    log_info("image cache %s, at most %" PRIu64 " MiB%s%s", bc->dir,
             bc->max_bytes >> 20, bc->images_dir ? ", read-only blobs in " : "",
             bc->images_dir ? bc->images_dir : "");
    return bc;
}

void
blobcache_set_kick(struct blobcache *bc, void (*kick_fn)(void *arg), void *arg)
{
    bc->kick = kick_fn;
    bc->kick_arg = arg;
}

void
blobcache_free(struct blobcache *bc)
{
    if (bc == NULL)
        return;
    for (size_t i = 0; i < bc->entries.cap; i++)
        if (bc->entries.keys[i] != NULL)
            entry_free(bc->entries.vals[i]);
    strmap_fini(&bc->entries);
    for (size_t i = 0; i < bc->refs.cap; i++)
        if (bc->refs.keys[i] != NULL)
            free(bc->refs.vals[i]);
    strmap_fini(&bc->refs);
    if (bc->efd_ev)
        event_free(bc->efd_ev);
    if (bc->timer)
        event_free(bc->timer);
    if (bc->efd >= 0)
        close(bc->efd);
    pthread_mutex_destroy(&bc->mu);
    free(bc->dir);
    free(bc->images_dir);
    free(bc);
}
