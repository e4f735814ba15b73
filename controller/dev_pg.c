/*
 * dev_pg: dev mode's own PostgreSQL (see dev_pg.h). Child processes are run
 * with fork/execv and an argument vector: no shell sees any path.
 */
#define LOG_MODULE "devpg"
#include "dev_pg.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <netinet/in.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "log.h"
#include "mem.h"

char *
dev_pg_find_bindir(void)
{
    DIR *d = opendir("/usr/lib/postgresql");
    struct dirent *e;
    long best = -1;
    char *dir = NULL;

    if (d == NULL)
        return NULL;
    while ((e = readdir(d)) != NULL) {
        char *end, *p;
        long v = strtol(e->d_name, &end, 10);
        if (*end != '\0' || end == e->d_name || v <= best)
            continue;
        p = xasprintf("/usr/lib/postgresql/%s/bin/initdb", e->d_name);
        if (access(p, X_OK) == 0) {
            best = v;
            free(dir);
            dir = xasprintf("/usr/lib/postgresql/%s/bin", e->d_name);
        }
        free(p);
    }
    closedir(d);
    return dir;
}

/* Runs argv as the cluster owner; output goes to logfile. Returns exit code. */
static int
run_as_owner(char *const argv[], const char *logfile)
{
    pid_t pid = fork();
    int status;

    if (pid < 0) {
        log_warn("fork");
        return -1;
    }
    if (pid == 0) {
        int fd = open(logfile, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, STDOUT_FILENO);
            dup2(fd, STDERR_FILENO);
            close(fd);
        }
        fd = open("/dev/null", O_RDONLY);
        if (fd >= 0) {
            dup2(fd, STDIN_FILENO);
            close(fd);
        }
        /* Keep ^C in the terminal from reaching PostgreSQL directly: the
         * controller stops it in order. */
        setpgid(0, 0);
        if (geteuid() == 0) {
            struct passwd *pw = getpwnam("postgres");
            if (pw == NULL || setgroups(0, NULL) < 0 ||
                setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0)
                _exit(126);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int
free_port(void)
{
    struct sockaddr_in sa;
    socklen_t sl = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;

    if (fd < 0)
        return -1;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &sl) == 0)
        port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

static int
mkdir_owned(const char *dir)
{
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        log_warn("cannot create %s", dir);
        return -1;
    }
    if (geteuid() == 0) {
        struct passwd *pw = getpwnam("postgres");
        if (pw == NULL) {
            log_warnx("running as root needs the postgres system user "
                      "(install the postgresql package)");
            return -1;
        }
        if (chown(dir, pw->pw_uid, pw->pw_gid) < 0) {
            log_warn("cannot give %s to postgres", dir);
            return -1;
        }
    }
    return 0;
}

/* Which of u, g, o must gain x for pw on st: the class pw falls in. */
static const char *
perm_class(const struct stat *st, const struct passwd *pw)
{
    struct group *gr;

    if (st->st_uid == pw->pw_uid)
        return "u";
    if (st->st_gid == pw->pw_gid)
        return "g";
    gr = getgrgid(st->st_gid);
    for (char **m = gr ? gr->gr_mem : NULL; m && *m; m++)
        if (strcmp(*m, pw->pw_name) == 0)
            return "g";
    return "o";
}

/*
 * As root the cluster runs as pw (postgres): every directory from / down to
 * the cluster must let that user search it, and the cluster be writable by
 * it, or initdb fails with the cause only in its log. A child takes pw's
 * ids and asks access(), so the answer is that user's exactly (groups and
 * ACLs included); it reports how long the prefix of dir that fails is.
 * Returns 0 when pw can reach dir, else -1 after saying which directory is
 * closed to it and how to open it.
 */
static int
check_owner_reach(const char *dir, const struct passwd *pw)
{
    struct { int how; size_t len; } r = {0, 0};
    char path[PATH_MAX], *bad = NULL, owner[64];
    struct passwd *opw;
    struct stat st;
    int fds[2] = {-1, -1}, status, rc = -1;
    pid_t pid;

    if (realpath(dir, path) == NULL) {
        log_warn("cannot resolve %s", dir);
        return -1;
    }
    if (pipe(fds) < 0) {
        log_warn("pipe");
        goto out;
    }
    pid = fork();
    if (pid < 0) {
        log_warn("fork");
        goto out;
    }
    if (pid == 0) {
        close(fds[0]);
        if (initgroups(pw->pw_name, pw->pw_gid) < 0 ||
            setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0)
            _exit(3);
        /* "/", "/a", "/a/b", ... and dir itself: each needs x. */
        if (access("/", X_OK) < 0 && errno == EACCES) {
            r.how = 1;
            r.len = 1;
        }
        for (size_t i = 1; r.how == 0 && path[i - 1] != '\0'; i++) {
            char save = path[i];

            if (save != '/' && save != '\0')
                continue;
            path[i] = '\0';
            if (access(path, X_OK) < 0 && errno == EACCES) {
                r.how = 1;
                r.len = i;
            }
            path[i] = save;
        }
        if (r.how == 0 && access(path, W_OK) < 0 && errno == EACCES) {
            r.how = 2;
            r.len = strlen(path);
        }
        if (write(fds[1], &r, sizeof(r)) != (ssize_t)sizeof(r))
            _exit(4);
        _exit(0);
    }
    close(fds[1]);
    fds[1] = -1;
    if (read(fds[0], &r, sizeof(r)) != (ssize_t)sizeof(r))
        r.how = -1;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            break;
    if (r.how < 0 || r.len > strlen(path)) {
        log_errx("cannot check whether user %s can reach %s (could not take "
                 "its user and group ids)",
                 pw->pw_name, path);
        goto out;
    }
    if (r.how == 0) {
        rc = 0;
        goto out;
    }
    bad = xstrndup(path, r.len);
    if (stat(bad, &st) < 0) {
        log_warn("cannot stat %s", bad);
        goto out;
    }
    opw = getpwuid(st.st_uid);
    if (opw != NULL)
        snprintf(owner, sizeof(owner), "%s", opw->pw_name);
    else
        snprintf(owner, sizeof(owner), "%u", (unsigned)st.st_uid);
    log_errx("%s is not %s by user %s (mode %04o, owner %s), so the private "
             "PostgreSQL cannot reach %s; use a --data-dir that user can "
             "reach (the default /var/lib/cloud/dev), or chmod %s+%s %s",
             bad, r.how == 1 ? "searchable" : "writable", pw->pw_name,
             (unsigned)(st.st_mode & 07777), owner, dir, perm_class(&st, pw),
             r.how == 1 ? "x" : "w", bad);
out:
    if (fds[0] >= 0)
        close(fds[0]);
    if (fds[1] >= 0)
        close(fds[1]);
    free(bad);
    return rc;
}

static int
create_database(struct dev_pg *pg)
{
    char *ci = xasprintf("postgresql://postgres@127.0.0.1:%d/postgres",
                         pg->port);
    PGconn *c = PQconnectdb(ci);
    PGresult *res;
    int rc = -1;

    free(ci);
    if (PQstatus(c) != CONNECTION_OK) {
        log_errx("cannot connect to the dev PostgreSQL: %s",
                 PQerrorMessage(c));
        goto out;
    }
    res = PQexec(c, "SELECT 1 FROM pg_database WHERE datname = 'cloud'");
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
        PQclear(res);
        rc = 0;
        goto out;
    }
    PQclear(res);
    res = PQexec(c, "CREATE DATABASE cloud");
    if (PQresultStatus(res) == PGRES_COMMAND_OK)
        rc = 0;
    else
        log_errx("cannot create database cloud: %s",
                 PQresultErrorMessage(res));
    PQclear(res);
out:
    PQfinish(c);
    return rc;
}

int
dev_pg_start(struct dev_pg *pg, const char *datadir)
{
    char *initdb = NULL, *pgctl = NULL, *opts = NULL, *logf = NULL,
         *ver = NULL;
    int rc = -1;

    memset(pg, 0, sizeof(*pg));
    pg->bindir = dev_pg_find_bindir();
    if (pg->bindir == NULL) {
        log_errx("no PostgreSQL server found under /usr/lib/postgresql; "
                 "run scripts/setup.sh");
        return -1;
    }
    if (strpbrk(datadir, " '\"\\$`") != NULL) {
        log_errx("data directory %s has spaces or quotes; pick a plain path",
                 datadir);
        return -1;
    }
    pg->dir = xasprintf("%s/pg", datadir);
    logf = xasprintf("%s/postgresql.log", datadir);
    initdb = xasprintf("%s/initdb", pg->bindir);
    pgctl = xasprintf("%s/pg_ctl", pg->bindir);
    ver = xasprintf("%s/PG_VERSION", pg->dir);
    if (mkdir_owned(pg->dir) < 0)
        goto out;
    /* The log file lives beside the cluster and must be writable by it. */
    if (geteuid() == 0) {
        struct passwd *pw = getpwnam("postgres");
        int fd = open(logf, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd < 0 || pw == NULL || fchown(fd, pw->pw_uid, pw->pw_gid) < 0) {
            log_warn("cannot prepare %s", logf);
            if (fd >= 0)
                close(fd);
            goto out;
        }
        close(fd);
        if (check_owner_reach(pg->dir, pw) < 0)
            goto out;
    }
    if (access(ver, F_OK) != 0) {
        char *argv[] = {initdb, "-D", pg->dir, "-U", "postgres",
                        "-A", "trust", "-E", "UTF8", "--no-instructions",
                        NULL};
        log_info("creating a private PostgreSQL cluster in %s", pg->dir);
        if (run_as_owner(argv, logf) != 0) {
            log_errx("initdb failed; see %s", logf);
            goto out;
        }
    }
    pg->port = free_port();
    if (pg->port < 0) {
        log_warn("cannot find a free port");
        goto out;
    }
    opts = xasprintf("-p %d -k %s -c listen_addresses=127.0.0.1 "
                     "-c max_connections=200",
                     pg->port, pg->dir);
    {
        char *argv[] = {pgctl, "start", "-w", "-t", "60", "-D", pg->dir,
                        "-l", logf, "-o", opts, NULL};
        if (run_as_owner(argv, logf) != 0) {
            log_errx("pg_ctl start failed; see %s", logf);
            goto out;
        }
    }
    pg->started = 1;
    if (create_database(pg) < 0)
        goto out;
    pg->conninfo =
        xasprintf("postgresql://postgres@127.0.0.1:%d/cloud", pg->port);
    log_info("private PostgreSQL is up on 127.0.0.1:%d (data in %s)",
             pg->port, pg->dir);
    rc = 0;
out:
    free(initdb);
    free(pgctl);
    free(opts);
    free(logf);
    free(ver);
    if (rc < 0)
        dev_pg_stop(pg);
    return rc;
}

void
dev_pg_stop(struct dev_pg *pg)
{
    if (pg->started) {
        char *pgctl = xasprintf("%s/pg_ctl", pg->bindir);
        char *argv[] = {pgctl, "stop", "-w", "-m", "fast", "-D", pg->dir,
                        NULL};
        if (run_as_owner(argv, "/dev/null") != 0)
            log_warnx("pg_ctl stop failed for %s", pg->dir);
        else
            log_info("private PostgreSQL stopped");
        free(pgctl);
        pg->started = 0;
    }
    free(pg->dir);
    free(pg->bindir);
    free(pg->conninfo);
    pg->dir = pg->bindir = pg->conninfo = NULL;
}
