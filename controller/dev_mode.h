/*
 * dev_mode: the parts of `cloud-controller --dev` beyond the private
 * PostgreSQL (dev_pg.c): make libvirt answer (starting virtlogd and libvirtd
 * when run as root and they are not running), fall back to libvirt's test
 * driver when QEMU cannot work, issue the local agent's certificate and run
 * `cloud-agent` as a child, and build and register the sample image as
 * `hello:latest`. Everything it starts it stops; nothing else.
 */
#ifndef CLOUD_DEV_MODE_H
#define CLOUD_DEV_MODE_H

#include <sys/types.h>

struct dev_mode {
    char *uri;          /* libvirt URI the local agent uses */
    char *network;      /* libvirt network for guests' NICs, or NULL */
    char *agent_log;
    pid_t agent_pid;
    pid_t libvirtd_pid; /* only when we started it */
    pid_t virtlogd_pid;
};

/* Decides the libvirt URI (qemu:///system, else test:///default). */
int dev_mode_libvirt(struct dev_mode *d, const char *agent_bin);
/* Issues the agent's certificate and starts it against gateway host:port. */
int dev_mode_start_agent(struct dev_mode *d, const char *agent_bin,
                         const char *data_dir, const char *gateway);
/* Builds images/build-sample.sh into data_dir and registers hello:latest. */
int dev_mode_sample_image(const char *script, const char *data_dir,
                          const char *conninfo);
/* Stops what dev_mode started (the agent, then libvirtd/virtlogd). */
void dev_mode_stop(struct dev_mode *d);

/* Finds a helper next to this executable (../agent/cloud-agent etc.). */
char *dev_mode_find(const char *rel_to_exe_dir, const char *fallback);

#endif
