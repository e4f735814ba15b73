/*
 * channel: the guest channel of each running instance (virtio-serial port
 * org.cloud.config.0, DESIGN.md "Guest channel", docs/agent.md). QEMU binds
 * a unix socket under the agent's state dir (domxml channel_path); the
 * agent connects to it as a client from its event loop, retrying while the
 * domain boots, and speaks JSON lines:
 *
 *   down  {"env":{...},"args":[...]}   the boot line: the instance's env
 *         and args, fixed for its life; on every connect and at every
 *         new run, before the config line
 *         {"version":N,"config":{...}}   one line per config version: on
 *         every connect (the current one) and whenever a higher version
 *         is learnt; never a version at or below one already written on
 *         the connection, except the current one again when the guest
 *         starts a new run (a second {"ready":...} on the connection)
 *   up    {"ack":N}                  the guest applied version N
 *         {"ready":true|false}       the guest's readiness in this run
 *         {"exit":CODE}              0..255: the coming poweroff is an exit
 *                                    with this code
 *         {"addr":"ip[:port]"} or {"addr":[...]}  the guest's addresses
 *
 * Lines are bounded: down CHANNEL_LINE_MAX (sized for the largest line
 * the controller's limits allow, common/cmdline.h), up CHANNEL_IN_LINE_MAX;
 * a malformed guest line is logged and ignored, a longer one closes the
 * connection (and it is dialled again).
 * The set owns one struct chan per instance it has heard of; every change
 * the guest reports calls ops->changed so the daemon resends the status.
 */
#ifndef CLOUD_AGENT_CHANNEL_H
#define CLOUD_AGENT_CHANNEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "cmdline.h"

/* agent -> guest: what the controller's limits allow (cmdline.h) */
#define CHANNEL_LINE_MAX GUEST_LINE_MAX
/* guest -> agent: acks, readiness, exit codes, addresses */
#define CHANNEL_IN_LINE_MAX 65536
#define CHANNEL_ADDR_MAX 255   /* bytes of one address */
#define CHANNEL_ADDRS_MAX 16   /* addresses per report */

/* ---- the line codec (pure; tests/unit/test_channel.c) ------------------ */

/* What one guest line says. A line may carry several keys. */
struct channel_msg {
    bool has_ack, has_ready, has_exit, has_addrs;
    uint64_t ack;
    bool ready;
    int exit_code;
    char *addrs[CHANNEL_ADDRS_MAX];
    size_t naddrs;
};

/*
 * Parses one line (without its newline) from the guest. Returns 0 with m
 * filled (free it with channel_msg_clear), or -1 with err set when the line
 * is not a JSON object, a known key has a bad value, or it has no known key.
 */
int channel_parse_line(const char *line, size_t len, struct channel_msg *m,
                       char *err, size_t errlen);
void channel_msg_clear(struct channel_msg *m);

/* 0 if s is "IP" or "IP:PORT" ("[IPv6]:PORT"), -1 if not. */
int channel_addr_valid(const char *s);

/*
 * The line for config version `version`: {"version":N,"config":{...}}
 * followed by a newline, compact, keys of config sorted. config must be an
 * object (NULL: empty). Returns a new string, or NULL when config cannot be
 * encoded or the line would exceed CHANNEL_LINE_MAX.
 */
char *channel_format_config(uint64_t version, const json_t *config);

/*
 * The boot line {"env":{...},"args":[...]} followed by a newline, compact,
 * keys of env sorted. env an object of strings and args an array of
 * strings (NULL: empty). NULL when they cannot be encoded or the line
 * would exceed CHANNEL_LINE_MAX.
 */
char *channel_format_boot(const json_t *env, const json_t *args);

/* ---- the connections ---------------------------------------------------- */

struct event_base;
struct chset;

/* What the guest of one instance reported, as InstanceStatus carries it. */
struct channel_view {
    uint64_t acked;     /* highest {"ack":N} */
    bool ready;         /* {"ready":...} in the current run */
    bool have_exit;     /* {"exit":CODE} seen in the current run */
    int exit_code;
    char *const *addrs; /* the guest's {"addr"} report */
    size_t naddrs;
};

struct chset_ops {
    /* The guest's report for instance id changed (ack, ready, exit, addr). */
    void (*changed)(void *arg, const char *id);
};

struct chset *chset_new(struct event_base *base, const struct chset_ops *ops,
                        void *arg);
void chset_free(struct chset *cs);

/*
 * The instance runs and its domain has a channel at path: connect (now,
 * then with back-off until it succeeds) and keep connected while attached.
 * Attaching again with the same path changes nothing.
 */
void chset_attach(struct chset *cs, const char *id, const char *path);

/*
 * The instance stopped running: reads what is still buffered in the socket
 * (an {"exit"} written just before the poweroff), closes the connection,
 * and ends the run: ready false, the exit report returned through
 * *exit_code (true) and forgotten. The config version is kept.
 */
bool chset_detach(struct chset *cs, const char *id, int *exit_code);

/* The instance is gone from the desired set and from libvirt: forget it. */
void chset_forget(struct chset *cs, const char *id);

/*
 * A config version for the instance (DesiredState or ConfigUpdate). Lower
 * or equal versions than the one known are ignored (returns 0); a higher
 * one is kept and, when connected, written at once. config: an object of
 * strings (borrowed). Returns 1 when it was new, -1 when it cannot be encoded.
 */
int chset_config(struct chset *cs, const char *id, uint64_t version,
                 const json_t *config);

/*
 * The instance's env and args (DesiredState). Kept as the boot line, which
 * is written on every connect and at every new run of the guest, before
 * the config line; a change is kept for the next connect or run (env and
 * args are what a run boots with). 0, or -1 (logged) when it cannot be
 * encoded.
 */
int chset_boot(struct chset *cs, const char *id, const json_t *env,
               const json_t *args);

/* The boot line of the instance (a new string), NULL if none. */
char *chset_boot_line(struct chset *cs, const char *id);

/* The current config line of the instance (a new string), NULL if none. */
char *chset_config_line(struct chset *cs, const char *id);

/* The guest's report for id; false (view zeroed) if the set has none. */
bool chset_view(struct chset *cs, const char *id, struct channel_view *v);

#endif
