/*
 * reconcile_priv.h: what the reconciler's files share (libvirt's *_priv.h):
 * the mirror's objects, the pass, and the functions one file offers the
 * others. Not for users of the reconciler: they include reconcile.h.
 *
 *   reconcile_mirror.c  the mirror of hosts, services and instances, its
 *                       indexes and the scheduler model built from it
 *   reconcile_decide.c  decide(): the pure decision step, mirror -> ops
 *   reconcile_loop.c    the pass state machine, queries, leader and watch
 *                       callbacks, lifecycle (reconcile.h)
 *
 * Unit tests (tests/unit/test_reconcile_decide.c) build a mirror through
 * the *_apply functions and call reconcile_decide().
 */
#ifndef CLOUD_RECONCILE_PRIV_H
#define CLOUD_RECONCILE_PRIV_H

#include <stdint.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "db.h"
#include "cloudsched.h"
#include "strmap.h"

struct leader;

/* ---- the mirror ------------------------------------------------------- */

enum ist {
    IS_PENDING = 0,
    IS_SCHEDULED,
    IS_STARTING,
    IS_RUNNING,
    IS_STOPPING,
    IS_EXITED,
    IS_FAILED,
    IS_LOST,
};
extern const char *const ist_names[]; /* by enum ist, NULL-ended */

enum idesired { ID_RUNNING = 0, ID_STOPPED, ID_DELETED };

struct rhost {
    char *id;
    char *name;
    char *state;
    char *labels; /* "k=v\nk=v" */
    char *hypervisor;
    struct sched_resources cap;
    long long version;
    int registered; /* session_epoch > 0: an agent has said hello */
    uint64_t sid;   /* the model's id */
    struct rinst *ihead; /* instances whose host_id is this host */
};

struct rinst;

/* The instances of one service id (the service row may be missing). */
struct sgrp {
    char *svc_id;
    struct rinst *head;
    size_t n;
    unsigned long long defer_pass; /* candidates left over in this pass */
};

struct rsvc {
    char *id;
    char *name;
    char *restart;
    int deleting;
    int replicas;
    int max_unavailable, max_surge;
    long long generation;
    long long version;
    /* rollout progress already reported: generation, updated, old */
    long long ro_gen;
    int ro_updated, ro_old;
};

struct rinst {
    char *id;
    char *name;
    char *svc_id;  /* NULL: one-off */
    char *host_id; /* NULL: unplaced */
    char *restart;
    char *constraints; /* selector text, "" for none */
    char *pending_reason;
    enum ist state;
    enum idesired desired;
    enum sched_strategy strategy;
    int ordinal;
    int exit_code; /* -1: none */
    int restart_count;
    uint32_t max_per_host;
    long long generation;
    long long next_restart_ms; /* 0: none */
    long long finished_ms;
    long long created_ms;
    long long version;
    struct sched_resources res;
    /* model */
    int counted;
    uint64_t counted_sid;
    /* indexes: the host's and the service's lists */
    struct rhost *hlink;
    struct rinst *hnext, *hprev;
    struct sgrp *grp;
    struct rinst *snext, *sprev;
    /* decisions */
    unsigned long long planned_pass;
    unsigned long long cand_pass; /* a placement candidate of this pass */
    long long noted_version; /* "not restarted" reported at this version */
};

/* A placement decided this pass, held in the model until the batch ends. */
struct tentative {
    uint64_t sid;
    struct sched_resources res;
    char *svc;
};

enum phase { PH_LOAD = 0, PH_DIRTY, PH_LIVENESS, PH_DECIDE, PH_DONE };
enum kind { K_HOST = 0, K_SVC, K_INST, K__COUNT };

struct fetchlist {
    char **ids;
    size_t n, cap;
    int all;
    char *after; /* all instances: the next page starts after this id */
};

struct pass {
    enum phase phase;
    unsigned long long term;
    unsigned long long serial;
    struct fetchlist fetch[K__COUNT];
    struct tentative *tent;
    size_t ntent, captent;
};

struct reconciler {
    struct event_base *base;
    struct db_pool *db;
    int load_page; /* instances per page of a full load */
    long long lost_ms; /* when the last term ended; 0: none or dropped */
    struct leader *leader;
    struct event *tick;
    struct event *kick;
    char *actor;
    unsigned long long term;
    long long epoch;
    long long term_start_ms;
    /* mirror: id -> object (the object owns its key) */
    struct strmap hosts, svcs, insts;
    struct rhost **by_sid;
    size_t nsid, capsid;
    struct sched_cluster *model;
    int loaded;
    int need_load;
    long long last_load_ms;
    long long last_liveness_ms;
    /* ids named by events since the last re-read: id -> owned id */
    struct strmap dirty[K__COUNT];
    /* service id -> struct sgrp */
    struct strmap sgrps;
    /* to decide at the next pass (id sets): objects re-read since the
     * last decision, services a pass made decisions for, leftovers of a
     * full batch */
    struct strmap dec[K__COUNT];
    /* pending instances that did not fit: retried when capacity appears */
    struct strmap waiting;
    int retry_waiting;
    /* instances with a deadline: restart back-off, lost-and-deleted keep */
    struct strmap timed;
    int full_decide; /* the next decision covers everything */
    long long last_full_ms;
    /* figures (debug log) */
    unsigned long long passes_decided, full_passes;
    struct pass *p;
    unsigned long long serial;
    int again;
    int inflight;
    int closing;
};

struct qctx {
    struct reconciler *r;
    unsigned long long term;
    enum kind kind;
    char **ids; /* the ids asked for (NULL: all) */
    size_t n;
    int page;   /* a page of a full load of instances */
};

/* ---- reconcile_mirror.c ------------------------------------------------ */

/* Text helpers over nullable strings (NULL equals only NULL). */
int rec_streq(const char *a, const char *b);
char *rec_dup_or_null(const char *s);

/* Id sets: strmap id -> owned id. */
void idset_add(struct strmap *m, const char *id);
void idset_clear(struct strmap *m);
void idset_del(struct strmap *m, const char *id);

/* Exited, failed or lost. */
int inst_finished(const struct rinst *i);

/* Frees the mirror and the model; reinit: ready for a new load. */
void mirror_clear_x(struct reconciler *r, int reinit);
void mirror_clear(struct reconciler *r);

/* Rows of ST_REC_HOSTS, ST_REC_SERVICES and ST_REC_INSTANCES (at column c0
 * for inst_apply_at) into the mirror, under the version guard; *_remove:
 * the row is gone. */
void host_apply(struct reconciler *r, const PGresult *res, int row);
void host_remove(struct reconciler *r, const char *id);
void svc_apply(struct reconciler *r, const PGresult *res, int row);
void svc_remove(struct reconciler *r, const char *id);
void inst_apply_at(struct reconciler *r, const PGresult *res, int row, int c0);
void inst_apply(struct reconciler *r, const PGresult *res, int row);
void inst_remove(struct reconciler *r, const char *id);

/* ---- reconcile_decide.c ------------------------------------------------ */

/*
 * Computes pass p's decisions from the mirror; returns them as a JSON array
 * of operations (ST_REC_APPLY's batch). now_ms: the database clock. Reads
 * and writes only r's mirror, model and id sets: no I/O.
 */
json_t *reconcile_decide(struct reconciler *r, struct pass *p,
                         long long now_ms);

#endif
