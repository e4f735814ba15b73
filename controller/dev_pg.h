/*
 * dev_pg: the private PostgreSQL cluster of dev mode. Creates it under a data
 * directory on first use (initdb), starts it on a free loopback port, creates
 * the database, and stops it cleanly on exit. As root it runs PostgreSQL as
 * the `postgres` system user, since initdb refuses to run as root.
 */
#ifndef CLOUD_DEV_PG_H
#define CLOUD_DEV_PG_H

struct dev_pg {
    char *dir;      /* the cluster: <data-dir>/pg */
    char *bindir;   /* PostgreSQL's server binaries */
    int port;
    char *conninfo; /* postgresql://... of the "cloud" database */
    int started;
};

/* Finds the newest /usr/lib/postgresql/<v>/bin with initdb; NULL if none. */
char *dev_pg_find_bindir(void);
int dev_pg_start(struct dev_pg *pg, const char *datadir);
void dev_pg_stop(struct dev_pg *pg);

#endif
