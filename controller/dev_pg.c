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
