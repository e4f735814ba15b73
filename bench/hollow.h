/*
 * hollow: many simulated hosts in one process, as Kubernetes' kubemark
 * "hollow nodes" do (cloud-hollow, bench/scale_bench.sh). Private to
 * bench/: hollow_main.c parses the options and owns the process (event
 * loop, TLS context, signals, the periodic summary); hollow_host.c owns
 * each host: its certificate, its mutual-TLS connection to the agent
 * gateway, its session and the instances it pretends to run.
 *
 * A host speaks proto/agent.proto in proto/frame.h frames as cloud-agent
 * does (agent/link.c) and answers desired sets (in parts too, through
 * agent/dsparts.c) with the statuses agent/worker.c reports on a
 * hypervisor where every start and stop is instant: running; stopping,
 * exited 0 and removed for an ACPI stop; exited 137 for a kill.
 *
 * Host connection states: IDLE (waiting to dial) -> CONNECTING (TCP +
 * TLS) -> WELCOME (Hello sent) -> READY; any failure goes back to IDLE
 * with an exponential back-off.
 */
#ifndef CLOUD_BENCH_HOLLOW_H
#define CLOUD_BENCH_HOLLOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

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
};

struct hhost;

/*
 * A host named name, reading DIR/name/cert.pem and key.pem. NULL (logged)
 * when they cannot be read. Dials first after first_dial_ms.
 */
struct hhost *hhost_new(struct hollow *hw, const char *name,
                        unsigned first_dial_ms);
void hhost_free(struct hhost *h);

#endif
