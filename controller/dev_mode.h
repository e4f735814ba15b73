/*
 * dev_mode: the parts of `cloud-controller --dev` beyond the private
 * PostgreSQL (dev_pg.c): make libvirt answer (starting virtlogd and libvirtd
 * when run as root and they are not running), fall back to libvirt's test
 * driver when QEMU cannot work, issue the local agent's certificate and run
 * `cloud-agent` as a child, supervised as systemd would (reaped when it
 * ends, restarted with back-off), and build and register the sample image
 * as `hello:latest`. Everything it starts it stops; nothing else.
 */
#ifndef CLOUD_DEV_MODE_H
#define CLOUD_DEV_MODE_H

#include <sys/types.h>

struct event;
struct event_base;

/* Restart back-off of the local agent: 1 s, doubling up to 30 s, back to
 * 1 s once an agent has run 60 s. */
#define DEV_AGENT_BACKOFF_MIN_S 1
#define DEV_AGENT_BACKOFF_MAX_S 30
#define DEV_AGENT_STABLE_S 60

struct dev_mode {
    char *uri;          /* libvirt URI the local agent uses */
    char *network;      /* libvirt network for guests' NICs, or NULL */
    char *agent_log;
    pid_t agent_pid;    /* 0 while it is down (waiting to restart) */
    pid_t libvirtd_pid; /* only when we started it */
    pid_t virtlogd_pid;
    /* What the local agent is started with, kept to restart it. */
    char *agent_bin, *data_dir, *gateway, *host;
    /* Supervision (dev_mode_supervise): SIGCHLD and the restart timer. */
    struct event *sigchld, *restart;
    long long agent_started_ms; /* monotonic */
    unsigned backoff_s;         /* the delay of the next restart */
    unsigned restarts;
};

/*
 * Decides the libvirt URI: uri when given (no libvirtd is started and no
 * probe made), else qemu:///system when it answers, else test:///default.
 */
int dev_mode_libvirt(struct dev_mode *d, const char *agent_bin,
                     const char *uri);
/* Issues the agent's certificate and starts it against gateway host:port. */
int dev_mode_start_agent(struct dev_mode *d, const char *agent_bin,
                         const char *data_dir, const char *gateway);
/* From now on, on base's loop: reaps the local agent when it ends, logs why
 * and restarts it after the back-off. Until dev_mode_stop. */
int dev_mode_supervise(struct dev_mode *d, struct event_base *base);
/* Builds images/build-sample.sh into data_dir and registers hello:latest. */
int dev_mode_sample_image(const char *script, const char *data_dir,
                          const char *conninfo);
/* Stops what dev_mode started (the agent, then libvirtd/virtlogd); call it
 * before the supervising event base is freed. */
void dev_mode_stop(struct dev_mode *d);

/* Finds a helper next to this executable (../agent/cloud-agent etc.). */
char *dev_mode_find(const char *rel_to_exe_dir, const char *fallback);

#endif
