/*
 * dev_mode: local agent, libvirt and sample image for the dev cluster (see
 * dev_mode.h). Children are started with fork/execv and argument vectors;
 * no shell ever sees a path. Runs before the event loop starts, except
 * dev_mode_stop, which runs after it ends, so blocking there is fine, and
 * the supervision of the local agent, which runs on the loop and never
 * blocks (waitpid WNOHANG, fork and execv).
 *
 * The local agent:  running --(ends: SIGCHLD, reaped)--> down
 *                   down --(back-off timer)--> running (restarted)
 */
#define LOG_MODULE "dev"
#include "dev_mode.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <openssl/evp.h>

#include "blobstore.h" /* BLOBSTORE_CHUNK */
#include "digest.h"
#include "fsutil.h"
#include "log.h"
#include "mem.h"
#include "monotime.h"
#include "pki.h"

#define AGENT_STOP_SECS 10

/* Runs argv to completion with output to logfile (or /dev/null). */
static int
run_wait(char *const argv[], const char *logfile)
{
    pid_t pid = fork();
    int st;

    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open(logfile ? logfile : "/dev/null",
                      O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, STDOUT_FILENO);
            dup2(fd, STDERR_FILENO);
            close(fd);
        }
        setpgid(0, 0); /* ^C on the terminal is the controller's to handle */
        execvp(argv[0], argv);
        _exit(127);
    }
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static pid_t
read_pid(const char *file)
{
    FILE *f = fopen(file, "r");
    long pid = 0;

    if (f == NULL)
        return 0;
    if (fscanf(f, "%ld", &pid) != 1)
        pid = 0;
    fclose(f);
    return (pid_t)pid;
}

static int
alive(const char *pidfile)
{
    pid_t p = read_pid(pidfile);
    return p > 0 && kill(p, 0) == 0;
}

static int
wait_for_file(const char *path, int secs)
{
    for (int i = 0; i < secs * 10; i++) {
        if (access(path, F_OK) == 0)
            return 0;
        usleep(100000);
    }
    return -1;
}

char *
dev_mode_find(const char *rel, const char *fallback)
{
    char exe[PATH_MAX], *slash, *p;
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

    if (n > 0) {
        exe[n] = '\0';
        slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            p = xasprintf("%s/%s", exe, rel);
            if (access(p, R_OK) == 0)
                return p;
            free(p);
        }
    }
    return fallback ? xstrdup(fallback) : NULL;
}

int
dev_mode_libvirt(struct dev_mode *d, const char *agent_bin, const char *uri)
{
    char *probe[] = {(char *)agent_bin, "--connect", "qemu:///system",
                     "facts", NULL};

    memset(d, 0, sizeof(*d));
    if (uri != NULL) {
        d->uri = xstrdup(uri);
        log_info("local agent: libvirt %s (--agent-connect)", uri);
        return 0;
    }
    if (access("/usr/sbin/libvirtd", X_OK) == 0 && geteuid() == 0) {
        if (!alive("/run/virtlogd.pid")) {
            char *argv[] = {"/usr/sbin/virtlogd", "-d", NULL};
            if (run_wait(argv, NULL) == 0 &&
                wait_for_file("/run/virtlogd.pid", 10) == 0)
                d->virtlogd_pid = read_pid("/run/virtlogd.pid");
        }
        if (!alive("/run/libvirtd.pid")) {
            char *argv[] = {"/usr/sbin/libvirtd", "-d", NULL};
            log_info("starting libvirtd (it was not running)");
            if (run_wait(argv, NULL) == 0 &&
                wait_for_file("/run/libvirt/libvirt-sock", 15) == 0)
                d->libvirtd_pid = read_pid("/run/libvirtd.pid");
        }
    }
    if (run_wait(probe, NULL) == 0) {
        /* libvirt's "default" NAT network, when it is up, gives guests an
         * address (DHCP), so linked services see endpoints; it is not
         * started here (dnsmasq, a bridge and firewall rules are the
         * machine owner's to set up). */
        char *net[] = {"sh", "-c",
                       "virsh -q -c qemu:///system net-list --name | "
                       "grep -qx default",
                       NULL};

        d->uri = xstrdup("qemu:///system");
        if (run_wait(net, NULL) == 0)
            d->network = xstrdup("default");
        log_info("local agent: real QEMU guests through qemu:///system%s",
                 d->network ? ", NICs on libvirt's network \"default\""
                            : " (no libvirt network \"default\" up: guests "
                              "get no NIC, services no endpoints)");
    } else {
        d->uri = xstrdup("test:///default");
        log_warnx("libvirt's qemu:///system does not answer (not root, or "
                  "libvirtd missing): the local agent uses libvirt's TEST "
                  "driver, so instances are simulated, not real guests");
    }
    return 0;
}

/* Forks and execs the local agent as d says; its output goes to
 * d->agent_log. Never blocks: it runs on the loop for restarts. */
static int
spawn_agent(struct dev_mode *d)
{
    char vcpus[24];
    char *pki = xasprintf("%s/agent-pki", d->data_dir);
    char *ca = xasprintf("%s/ca.pem", pki), *cert = xasprintf("%s/cert.pem", pki);
    char *key = xasprintf("%s/key.pem", pki);
    char *images = xasprintf("%s/blobs/sha256", d->data_dir);
    char *state = xasprintf("%s/agent", d->data_dir);
    int rc = -1;
    pid_t pid;

    /* A laptop-sized dev host overcommits vCPUs 4:1 (OpenStack's default
     * ratio is 16:1): the sample guests are idle most of the time, and the
     * README walk runs three of them on two cores. */
    snprintf(vcpus, sizeof(vcpus), "%ld",
             4 * (sysconf(_SC_NPROCESSORS_ONLN) > 0
                      ? sysconf(_SC_NPROCESSORS_ONLN)
                      : 1));
    pid = fork();
    if (pid < 0) {
        log_warn("cannot start the local agent: fork");
        goto out;
    }
    if (pid == 0) {
        char *argv[] = {d->agent_bin, "--connect", d->uri, "--name", d->host,
                        "run", "--controller", d->gateway, "--ca", ca,
                        "--cert", cert, "--key", key, "--images", images,
                        "--state-dir", state, "--labels", "dev=true",
                        "--cap-vcpus", vcpus, NULL, NULL, NULL};

        if (d->network != NULL) {
            argv[sizeof(argv) / sizeof(argv[0]) - 3] = "--network";
            argv[sizeof(argv) / sizeof(argv[0]) - 2] = d->network;
        }
        int fd = open(d->agent_log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, STDOUT_FILENO);
            dup2(fd, STDERR_FILENO);
            close(fd);
        }
        /* The controller's sockets (API, gateway, database, the event
         * loop's signal pipe) are not the agent's to hold: a restarted
         * agent that outlived the controller would keep its ports. */
        close_range(3, ~0U, 0);
        setpgid(0, 0);
        execv(d->agent_bin, argv);
        _exit(127);
    }
    d->agent_pid = pid;
    d->agent_started_ms = mono_ms();
    if (d->restarts == 0)
        log_info("local agent %s started (pid %d, log %s)", d->host, (int)pid,
                 d->agent_log);
    else
        log_info("local agent %s restarted (pid %d, restart %u, log %s)",
                 d->host, (int)pid, d->restarts, d->agent_log);
    rc = 0;
out:
    free(pki);
    free(ca);
    free(cert);
    free(key);
    free(images);
    free(state);
    return rc;
}

int
dev_mode_start_agent(struct dev_mode *d, const char *agent_bin,
                     const char *data_dir, const char *gateway)
{
    char host[256];
    char *pki = xasprintf("%s/agent-pki", data_dir);
    int rc = -1;

    if (gethostname(host, sizeof(host)) < 0 || pki_name_valid(host) < 0)
        snprintf(host, sizeof(host), "localhost");
    for (char *p = host; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    if (pki_issue_agent(data_dir, host, pki) < 0)
        goto out;
    d->agent_log = xasprintf("%s/agent.log", data_dir);
    d->agent_bin = xstrdup(agent_bin);
    d->data_dir = xstrdup(data_dir);
    d->gateway = xstrdup(gateway);
    d->host = xstrdup(host);
    d->backoff_s = DEV_AGENT_BACKOFF_MIN_S;
    rc = spawn_agent(d);
out:
    free(pki);
    return rc;
}

/* Says how a child ended: "exited with status 1", "was killed by signal 9
 * (SIGKILL)". */
static void
describe_status(int st, char *buf, size_t cap)
{
    if (WIFEXITED(st)) {
        snprintf(buf, cap, "exited with status %d", WEXITSTATUS(st));
    } else if (WIFSIGNALED(st)) {
        const char *abbrev = sigabbrev_np(WTERMSIG(st));

        snprintf(buf, cap, "was killed by signal %d (SIG%s)%s", WTERMSIG(st),
                 abbrev ? abbrev : "?",
                 WCOREDUMP(st) ? ", core dumped" : "");
    } else {
        snprintf(buf, cap, "ended with wait status 0x%x", (unsigned)st);
    }
}

static void
schedule_restart(struct dev_mode *d, const char *why)
{
    struct timeval tv = {.tv_sec = (time_t)d->backoff_s, .tv_usec = 0};

    log_warnx("local agent %s; restarting it in %u s", why, d->backoff_s);
    if (event_add(d->restart, &tv) < 0)
        log_errx("cannot arm the local agent's restart timer: it stays down");
    d->backoff_s *= 2;
    if (d->backoff_s > DEV_AGENT_BACKOFF_MAX_S)
        d->backoff_s = DEV_AGENT_BACKOFF_MAX_S;
}

/* SIGCHLD (libevent runs this on the loop, not in the handler): reaps the
 * local agent if it was it that ended. Other children (run_wait's) are
 * waited for by pid where they are started, before the loop. */
static void
on_sigchld(evutil_socket_t sig, short what, void *arg)
{
    struct dev_mode *d = arg;
    char how[96], why[192];
    long long ran_ms;
    pid_t pid = d->agent_pid, r;
    int st = 0;

    (void)sig;
    (void)what;
    if (pid <= 0)
        return;
    while ((r = waitpid(pid, &st, WNOHANG)) < 0 && errno == EINTR)
        ;
    if (r == 0)
        return; /* another child */
    if (r < 0) {
        /* ECHILD: reaped elsewhere, which nothing here does; it is gone. */
        snprintf(how, sizeof(how), "ended (waitpid: %s)", strerror(errno));
    } else {
        describe_status(st, how, sizeof(how));
    }
    ran_ms = mono_ms() - d->agent_started_ms;
    d->agent_pid = 0;
    /* An agent that ran a while gets a quick restart again. */
    if (ran_ms >= DEV_AGENT_STABLE_S * 1000LL)
        d->backoff_s = DEV_AGENT_BACKOFF_MIN_S;
    snprintf(why, sizeof(why), "(pid %d) %s after running %lld s", (int)pid,
             how, ran_ms / 1000);
    schedule_restart(d, why);
}

static void
on_restart(evutil_socket_t fd, short what, void *arg)
{
    struct dev_mode *d = arg;

    (void)fd;
    (void)what;
    d->restarts++;
    if (spawn_agent(d) < 0)
        schedule_restart(d, "did not start");
}

int
dev_mode_supervise(struct dev_mode *d, struct event_base *base)
{
    d->sigchld = evsignal_new(base, SIGCHLD, on_sigchld, d);
    d->restart = evtimer_new(base, on_restart, d);
    if (d->sigchld == NULL || d->restart == NULL ||
        evsignal_add(d->sigchld, NULL) < 0) {
        log_errx("cannot watch the local agent (SIGCHLD): it will not be "
                 "restarted if it ends");
        return -1;
    }
    /* It may have ended before the handler was in place. */
    on_sigchld(SIGCHLD, EV_SIGNAL, d);
    return 0;
}

/* sha256:<hex> of a file, or -1. */
static int
file_digest(const char *path, char *out, long long *size)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char buf[65536];
    int fd = open(path, O_RDONLY | O_CLOEXEC), rc = -1;
    ssize_t n;

    *size = 0;
    if (fd < 0 || md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1)
        goto out;
    while ((n = read(fd, buf, sizeof(buf))) > 0) {
        EVP_DigestUpdate(md, buf, (size_t)n);
        *size += n;
    }
    if (n < 0 || digest_final(md, out) < 0)
        goto out;
    rc = 0;
out:
    if (fd >= 0)
        close(fd);
    EVP_MD_CTX_free(md);
    return rc;
}

/* Copies src into the blob store under its digest (atomic rename). */
static int
store_blob(const char *src, const char *data_dir, const char *digest)
{
    char *dst = xasprintf("%s/blobs/sha256/%s", data_dir, digest + 7);
    char *tmp = xasprintf("%s.tmp", dst);
    char buf[65536];
    int in = -1, out = -1, rc = -1;
    ssize_t n;

    if (access(dst, R_OK) == 0) {
        rc = 0;
        goto done;
    }
    in = open(src, O_RDONLY | O_CLOEXEC);
    out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (in < 0 || out < 0)
        goto done;
    while ((n = read(in, buf, sizeof(buf))) > 0)
        if (write(out, buf, (size_t)n) != n)
            goto done;
    if (n < 0 || fsutil_commit(out, tmp, dst) < 0)
        goto done;
    rc = 0;
done:
    if (rc < 0)
        log_warn("cannot store %s as %s", src, dst);
    if (in >= 0)
        close(in);
    if (out >= 0)
        close(out);
    unlink(tmp);
    free(dst);
    free(tmp);
    return rc;
}

/* True when res is a command or rows result; logs what went wrong once and
 * clears res otherwise. */
static int
pq_ok(PGresult *res, const char *what)
{
    ExecStatusType st = PQresultStatus(res);

    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
        return 1;
    log_warnx("%s: %s", what, PQresultErrorMessage(res));
    PQclear(res);
    return 0;
}

/*
 * Registers the file at path as blob digest with its content in PostgreSQL,
 * as an upload does (cloud_blob_put, then chunks of BLOBSTORE_CHUNK bytes,
 * one transaction; docs/decisions.md §29), so any replica can serve it.
 * Blocking libpq: dev mode does this once, before the event loop starts.
 */
static int
put_blob(PGconn *c, const char *path, const char *digest, long long size)
{
    char szs[24], seqs[24];
    const char *v[3] = {digest, szs, NULL};
    int lens[3] = {0, 0, 0}, fmts[3] = {0, 0, 1};
    char *buf = NULL;
    PGresult *res;
    int fd = -1, seq = 0, rc = -1, need;
    ssize_t n = 0;

    snprintf(szs, sizeof(szs), "%lld", size);
    if (!pq_ok(res = PQexec(c, "BEGIN"), "BEGIN"))
        return -1;
    PQclear(res);
    res = PQexecParams(c, "SELECT cloud_blob_put($1, $2::bigint)", 2, NULL, v,
                       NULL, NULL, 0);
    if (!pq_ok(res, "cloud_blob_put"))
        goto out;
    need = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    if (need) {
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            log_warn("cannot read %s", path);
            goto out;
        }
        buf = xmalloc(BLOBSTORE_CHUNK);
        for (;;) {
            size_t got = 0;

            while (got < BLOBSTORE_CHUNK &&
                   (n = read(fd, buf + got, BLOBSTORE_CHUNK - got)) > 0)
                got += (size_t)n;
            if (n < 0) {
                log_warn("cannot read %s", path);
                goto out;
            }
            if (got == 0)
                break;
            snprintf(seqs, sizeof(seqs), "%d", seq++);
            v[1] = seqs;
            v[2] = buf;
            lens[2] = (int)got;
            res = PQexecParams(c,
                               "INSERT INTO blob_chunks (digest, seq, data) "
                               "VALUES ($1, $2::integer, $3)",
                               3, NULL, v, lens, fmts, 0);
            if (!pq_ok(res, "a chunk of the sample image"))
                goto out;
            PQclear(res);
            if (got < BLOBSTORE_CHUNK)
                break;
        }
    }
    rc = 0;
out:
    res = PQexec(c, rc == 0 ? "COMMIT" : "ROLLBACK");
    if (!pq_ok(res, rc == 0 ? "COMMIT" : "ROLLBACK"))
        rc = -1;
    else
        PQclear(res);
    if (fd >= 0)
        close(fd);
    free(buf);
    return rc;
}

int
dev_mode_sample_image(const char *script, const char *data_dir,
                      const char *conninfo)
{
    char *outdir = xasprintf("%s/sample", data_dir);
    char *log = xasprintf("%s/sample-build.log", data_dir);
    char *kernel = xasprintf("%s/vmlinuz", outdir);
    char *initrd = xasprintf("%s/initrd.img", outdir);
    char *cmdf = xasprintf("%s/cmdline", outdir);
    char kd[72], id[72], cmdline[1024] = "console=ttyS0";
    long long ks = 0, is = 0;
    char *argv[] = {"bash", (char *)script, outdir, NULL};
    PGconn *c = NULL;
    PGresult *res;
    char *body = NULL;
    FILE *f;
    int rc = -1;

    log_info("building the sample image (first run takes a few seconds; "
             "log %s)",
             log);
    if (run_wait(argv, log) != 0) {
        log_warnx("the sample image did not build; see %s", log);
        goto out;
    }
    f = fopen(cmdf, "r");
    if (f) {
        if (fgets(cmdline, sizeof(cmdline), f) == NULL)
            snprintf(cmdline, sizeof(cmdline), "console=ttyS0");
        fclose(f);
        cmdline[strcspn(cmdline, "\n")] = '\0';
    }
    if (file_digest(kernel, kd, &ks) < 0 || file_digest(initrd, id, &is) < 0 ||
        store_blob(kernel, data_dir, kd) < 0 ||
        store_blob(initrd, data_dir, id) < 0)
        goto out;
    c = PQconnectdb(conninfo);
    if (PQstatus(c) != CONNECTION_OK) {
        log_warnx("cannot connect to PostgreSQL: %s", PQerrorMessage(c));
        goto out;
    }
    if (put_blob(c, kernel, kd, ks) < 0 || put_blob(c, initrd, id, is) < 0)
        goto out;
    {
        /* hello:latest names the newest sample; an older one is replaced
         * when nothing uses it. */
        const char *ref[1] = {"hello:latest"};
        enum { SAMPLE_KERNEL, SAMPLE_INITRD };

        res = PQexecParams(c,
                           "SELECT kernel_digest, initrd_digest FROM images "
                           "WHERE name = 'hello' AND tag = 'latest'",
                           0, NULL, NULL, NULL, NULL, 0);
        if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
            strcmp(PQgetvalue(res, 0, SAMPLE_KERNEL), kd) == 0 &&
            strcmp(PQgetvalue(res, 0, SAMPLE_INITRD), id) == 0) {
            PQclear(res);
            log_info("sample image hello:latest is up to date");
            rc = 0;
            goto out;
        }
        if (PQntuples(res) == 1) {
            PQclear(res);
            res = PQexecParams(c, "SELECT cloud_image_delete($1, 'dev-mode')",
                               1, NULL, ref, NULL, NULL, 0);
        }
        PQclear(res);
    }
    {
        json_t *j = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "name", "hello",
                              "tag", "latest", "kind", "kernel", "kernel", kd,
                              "initrd", id, "cmdline", cmdline);
        body = json_dumps(j, JSON_COMPACT);
        json_decref(j);
    }
    {
        const char *vals[1] = {body};
        res = PQexecParams(c,
                           "SELECT status FROM cloud_image_create($1::jsonb, "
                           "'dev-mode')",
                           1, NULL, vals, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_TUPLES_OK)
            log_warnx("cannot register the sample image: %s",
                      PQresultErrorMessage(res));
        else
            rc = 0;
        PQclear(res);
    }
    if (rc == 0)
        log_info("sample image pushed as hello:latest");
out:
    if (c)
        PQfinish(c);
    free(body);
    free(outdir);
    free(log);
    free(kernel);
    free(initrd);
    free(cmdf);
    return rc;
}

static void
stop_pid(pid_t pid, const char *what, int reap)
{
    if (pid <= 0 || kill(pid, SIGTERM) < 0)
        return;
    for (int i = 0; i < AGENT_STOP_SECS * 10; i++) {
        if (reap ? waitpid(pid, NULL, WNOHANG) == pid : kill(pid, 0) < 0) {
            log_info("%s stopped", what);
            return;
        }
        usleep(100000);
    }
    log_warnx("%s did not stop in %d s; killing it", what, AGENT_STOP_SECS);
    kill(pid, SIGKILL);
    if (reap)
        waitpid(pid, NULL, 0);
}

void
dev_mode_stop(struct dev_mode *d)
{
    /* No restart from here on; the agent is reaped by stop_pid. */
    if (d->sigchld)
        event_free(d->sigchld);
    if (d->restart)
        event_free(d->restart);
    stop_pid(d->agent_pid, "local agent", 1);
    stop_pid(d->libvirtd_pid, "libvirtd", 0);
    stop_pid(d->virtlogd_pid, "virtlogd", 0);
    free(d->uri);
    free(d->network);
    free(d->agent_log);
    free(d->agent_bin);
    free(d->data_dir);
    free(d->gateway);
    free(d->host);
    memset(d, 0, sizeof(*d));
}
