/*
 * hollow: many simulated hosts in one process, as Kubernetes' kubemark
 * "hollow nodes" do (cloud-hollow, bench/scale_bench.sh). Private to
 * bench/: hollow_main.c parses the options and owns the process (event
 * loop, TLS context, signals, the periodic summary); hollow_host.c owns
 * each host: its certificate, its mutual-TLS connection to the agent
 * gateway and its session; hollow_inst.c the instances it pretends to run.
 *
 * A host speaks proto/agent.proto in proto/frame.h frames as cloud-agent
 * does (agent/link.c) and answers desired sets (in parts too, through
 * agent/dsparts.c) with the statuses agent/worker.c reports on a
 * hypervisor where every start and stop is instant: running; stopping,
 * exited 0 and removed for an ACPI stop; exited 137 for a kill.
 *
 * Host connection states are the agent's (agent/ctlconn.h); any failure
 * goes back to IDLE with an exponential back-off.
 */
#ifndef CLOUD_BENCH_HOLLOW_H
#define CLOUD_BENCH_HOLLOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "ctlconn.h"
#include "frame.h"
#include "strmap.h"

struct event;
struct event_base;

struct hollow_opts {
    const char *controller; /* HOST:PORT */
    const char *ca;
    const char *certs_dir; /* DIR/<name>/{cert,key}.pem */
    const char *prefix;
    unsigned hosts;
    unsigned vcpus;
    uint64_t memory_mib;
    uint64_t disk_gib;
    const char *hypervisor; /* domain type announced: test, qemu, kvm */
    unsigned start_delay_ms; /* desired running -> reported running */
    const char *arrivals;    /* --arrivals FILE, or NULL */
};

/* What the process shares with its hosts. */
struct hollow {
    const struct hollow_opts *o;
    struct event_base *base;
    SSL_CTX *ssl; /* no certificate: each host sets its own per SSL */
    char *host, *port; /* the controller, split */
    bool sni;          /* host is a name, not an address: sent as SNI */
    /* counters for the summary line */
    unsigned ready;          /* hosts in READY */
    uint64_t running;        /* instances reported running */
    uint64_t statuses_sent;  /* InstanceStatus frames */
    uint64_t sets_applied;   /* whole desired sets */
    uint64_t disconnects;
    /* --arrivals: "ID MS R HOST" when an instance first arrives wanted
     * running on HOST, "ID MS D HOST" when it is first wanted gone there
     * (wall clock, ms) */
    FILE *arrivals;
};

enum hi_phase { HI_NONE = 0, HI_STARTING, HI_RUNNING, HI_DONE, HI_REMOVED };

/* Observed states, as agent.proto numbers them (agent/worker.h). */
#define ST_RUNNING CLOUD__AGENT__OBSERVED_INSTANCE_STATE__OBSERVED_INSTANCE_STATE_RUNNING
#define ST_STOPPING CLOUD__AGENT__OBSERVED_INSTANCE_STATE__OBSERVED_INSTANCE_STATE_STOPPING
#define ST_EXITED CLOUD__AGENT__OBSERVED_INSTANCE_STATE__OBSERVED_INSTANCE_STATE_EXITED
#define ST_REMOVED CLOUD__AGENT__OBSERVED_INSTANCE_STATE__OBSERVED_INSTANCE_STATE_REMOVED

/* One instance of a host (hollow_inst.c). */
struct hinst {
    char *id;
    struct hhost *h;
    /* the spec of the latest set */
    bool in_set;
    uint64_t generation, restart_count;
    Cloud__Agent__DesiredInstanceState desired;
    bool kill;
    /* the run: which (generation, restart_count) it was started for */
    enum hi_phase phase;
    bool have_token;
    uint64_t tok_gen, tok_restart;
    int64_t started_ms, finished_ms;
    struct event *start_ev; /* while STARTING */
    /* the last status reported (state 0: none yet) */
    Cloud__Agent__ObservedInstanceState rep_state;
    int rep_code;
    const char *rep_reason; /* a literal */
    bool rep_unsent;        /* REMOVED not yet sent: the link was down */
};

/* One simulated host (hollow_host.c). */
struct hhost {
    struct hollow *hw;
    char *name;
    X509 *cert;
    EVP_PKEY *key;
    char *prefix;     /* "host NAME: ", of the connection's log lines */
    struct ctlconn c; /* the connection and its session, as the agent's */
    unsigned backoff_ms;
    struct strmap insts; /* id -> struct hinst */
};

/*
 * A host named name, reading DIR/name/cert.pem and key.pem. NULL (logged)
 * when they cannot be read. Dials first after first_dial_ms.
 */
struct hhost *hhost_new(struct hollow *hw, const char *name,
                        unsigned first_dial_ms);
void hhost_free(struct hhost *h);
/* Queues one frame on h's connection (nothing when it is down). */
void hh_send(struct hhost *h, const frame_envelope *env);

/* Applies a whole desired set: reports what changed, forgets what left. */
void hinst_apply_set(struct hhost *h, uint64_t revision,
                     Cloud__Agent__InstanceSpec *const *specs, size_t n);
/* Sends in's last status on h's session. */
void hinst_send_status(struct hhost *h, const struct hinst *in);
void hinst_free(struct hinst *in);

#endif
