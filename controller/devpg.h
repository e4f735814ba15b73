/*
 * devpg: the private PostgreSQL cluster of dev mode. Creates it under a data
 * directory on first use (initdb), starts it on a free loopback port, creates
 * the database, and stops it cleanly on exit. As root it runs PostgreSQL as
 * the `postgres` system user, since initdb refuses to run as root.
 */
#ifndef CLOUD_DEVPG_H
#define CLOUD_DEVPG_H

struct devpg {
    char *dir;      /* the cluster: <data-dir>/pg */
    char *bindir;   /* PostgreSQL's server binaries */
    int port;
    char *conninfo; /* postgresql://... of the "cloud" database */
    int started;
};

/* Finds the newest /usr/lib/postgresql/<v>/bin with initdb; NULL if none. */
char *devpg_find_bindir(void);
int devpg_start(struct devpg *pg, const char *datadir);
void devpg_stop(struct devpg *pg);

#endif
