/*
 * test_worker: the agent's instance state machine (agent/worker.c) driven
 * through the virt driver table with a fake hypervisor, so the cases that
 * libvirt's test driver cannot show are covered: a guest that ignores the
 * ACPI shutdown (TERM -> destroyed after the grace period -> 143), a guest
 * that powers off by itself (0), KILL (137), a start failure (failed with
 * the driver's error text), no restart of an exited instance until the
 * restart count moves, and domains outside the desired set removed only
 * once a set has arrived.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <pthread.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mem.h"
#include "worker.h"

/* ---- a fake hypervisor ------------------------------------------------ */

#define FAKE_MAX 16

struct fake_dom {
    char id[64];
    enum virt_state st;
    enum virt_reason reason;
    int starts, destroys, shutdowns, undefines;
    int polls; /* state_reason calls */
    uint64_t gen;
    const char *cluster, *owner; /* metadata owner; NULL: none */
};

static pthread_mutex_t fk_mu = PTHREAD_MUTEX_INITIALIZER;
static struct fake_dom fk[FAKE_MAX];
static int fk_n;
static int fk_fail_start;
static int fk_deaf_presses; /* presses a guest misses (still booting); -1: all */
static int fk_lists; /* list calls */
static char fk_last_xml[8192]; /* the last domain XML defined */
static virt_event_cb fk_cb;
static void *fk_arg;

struct virt_conn {
    int dummy;
};
static struct virt_conn fk_conn;

static struct fake_dom *
fk_find(const char *id, int create)
{
    int i;

    for (i = 0; i < fk_n; i++)
        if (strcmp(fk[i].id, id) == 0)
            return &fk[i];
    if (!create || fk_n == FAKE_MAX)
        return NULL;
    memset(&fk[fk_n], 0, sizeof(fk[fk_n]));
    xstrlcpy(fk[fk_n].id, id, sizeof(fk[fk_n].id));
    fk[fk_n].st = VIRT_STATE_ABSENT;
    return &fk[fk_n++];
}

static struct virt_conn *
fk_open(const char *uri)
{
    (void)uri;
    return &fk_conn;
}

static void
fk_close(struct virt_conn *c)
{
    (void)c;
}

static const char *
fk_last_error(struct virt_conn *c)
{
    (void)c;
    return "fake: no such kernel";
}

static int
fk_host_info(struct virt_conn *c, struct virt_host_info *info)
{
    (void)c;
    memset(info, 0, sizeof(*info));
    info->hostname = xstrdup("fake");
    info->caps_xml = xstrdup(
        "<capabilities><host><cpu><arch>x86_64</arch></cpu></host>"
        "<guest><os_type>hvm</os_type><arch name='x86_64'>"
        "<domain type='test'/></arch></guest></capabilities>");
    info->libvirt_version = xstrdup("0.0.0");
    info->cpus = 4;
    info->memory_mib = 4096;
    return 0;
}

static int
fk_define_start(struct virt_conn *c, const char *id, const char *xml)
{
    struct fake_dom *d;
    int rc = 0;

    (void)c;
    assert_non_null(strstr(xml, id));
    pthread_mutex_lock(&fk_mu);
    xstrlcpy(fk_last_xml, xml, sizeof(fk_last_xml));
    if (fk_fail_start) {
        rc = -1;
    } else {
        d = fk_find(id, 1);
        d->st = VIRT_STATE_RUNNING;
        d->reason = VIRT_REASON_NONE;
        d->starts++;
    }
    pthread_mutex_unlock(&fk_mu);
    return rc;
}

static int
fk_shutdown(struct virt_conn *c, const char *id)
{
    struct fake_dom *d;

    (void)c;
    pthread_mutex_lock(&fk_mu);
    d = fk_find(id, 0);
    if (d) {
        d->shutdowns++;
        /* By default the guest ignores ACPI; with fk_deaf_presses >= 0 it
         * powers off at the press after that many. */
        if (fk_deaf_presses >= 0 && d->shutdowns > fk_deaf_presses) {
            d->st = VIRT_STATE_SHUTOFF;
            d->reason = VIRT_REASON_SHUTDOWN;
        }
    }
    pthread_mutex_unlock(&fk_mu);
    return 0;
}

static int
fk_destroy(struct virt_conn *c, const char *id)
{
    struct fake_dom *d;

    (void)c;
    pthread_mutex_lock(&fk_mu);
    d = fk_find(id, 0);
    if (d && d->st != VIRT_STATE_ABSENT) {
        d->destroys++;
        d->st = VIRT_STATE_SHUTOFF;
        d->reason = VIRT_REASON_DESTROYED;
    }
    pthread_mutex_unlock(&fk_mu);
    return 0;
}

static int
fk_undefine(struct virt_conn *c, const char *id)
{
    struct fake_dom *d;

    (void)c;
    pthread_mutex_lock(&fk_mu);
    d = fk_find(id, 0);
    if (d) {
        d->undefines++;
        d->st = VIRT_STATE_ABSENT;
    }
    pthread_mutex_unlock(&fk_mu);
    return 0;
}

static int
fk_state_reason(struct virt_conn *c, const char *id, enum virt_state *st,
                enum virt_reason *r)
{
    struct fake_dom *d;

    (void)c;
    pthread_mutex_lock(&fk_mu);
    d = fk_find(id, 0);
    *st = d ? d->st : VIRT_STATE_ABSENT;
    *r = d ? d->reason : VIRT_REASON_NONE;
    if (d)
        d->polls++;
    pthread_mutex_unlock(&fk_mu);
    return 0;
}

static int
fk_state(struct virt_conn *c, const char *id, enum virt_state *st)
{
    enum virt_reason r;

    return fk_state_reason(c, id, st, &r);
}

static int
fk_list(struct virt_conn *c, struct virt_domain **domsp, size_t *np)
{
    struct virt_domain *doms;
    size_t n = 0;
    int i;

    (void)c;
    pthread_mutex_lock(&fk_mu);
    fk_lists++;
    doms = xcalloc((size_t)fk_n + 1, sizeof(*doms));
    for (i = 0; i < fk_n; i++) {
        if (fk[i].st == VIRT_STATE_ABSENT)
            continue;
        doms[n].instance_id = xstrdup(fk[i].id);
        doms[n].generation = fk[i].gen;
        doms[n].state = fk[i].st;
        doms[n].cluster = fk[i].cluster ? xstrdup(fk[i].cluster) : NULL;
        doms[n].owner = fk[i].owner ? xstrdup(fk[i].owner) : NULL;
        n++;
    }
    pthread_mutex_unlock(&fk_mu);
    *domsp = doms;
    *np = n;
    return 0;
}

static int
fk_watch(struct virt_conn *c, virt_event_cb cb, void *arg)
{
    (void)c;
    fk_cb = cb;
    fk_arg = arg;
    return 0;
}

static int
fk_alive(struct virt_conn *c)
{
    (void)c;
    return 1;
}

static const struct virt_driver fake_driver = {
    .name = "fake",
    .open = fk_open,
    .close = fk_close,
    .last_error = fk_last_error,
    .host_info = fk_host_info,
    .define_start = fk_define_start,
    .shutdown = fk_shutdown,
    .destroy = fk_destroy,
    .undefine = fk_undefine,
    .state = fk_state,
    .list = fk_list,
    .state_reason = fk_state_reason,
    .watch = fk_watch,
    .alive = fk_alive,
};

/* ---- harness ----------------------------------------------------------- */

static void
notify(void *arg)
{
    (void)arg;
}

struct seen {
    char id[64];
    enum worker_state state;
    int code;
    char reason[256];
};
static struct seen seen[256];
static int nseen;

static void
drain(struct worker *w)
{
    struct worker_result *res = worker_take(w), *r;

    for (r = res; r != NULL; r = r->next) {
        if (r->kind != WR_STATUS || nseen == 256)
            continue;
        xstrlcpy(seen[nseen].id, r->status.id, sizeof(seen[nseen].id));
        seen[nseen].state = r->status.state;
        seen[nseen].code = r->status.exit_code;
        xstrlcpy(seen[nseen].reason, r->status.reason,
                 sizeof(seen[nseen].reason));
        nseen++;
    }
    worker_result_free(res);
}

/* Waits up to 3 s for a status of id in state st; returns it or NULL. */
static const struct seen *
wait_for(struct worker *w, const char *id, enum worker_state st)
{
    int i, tries;

    for (tries = 0; tries < 300; tries++) {
        drain(w);
        for (i = nseen - 1; i >= 0; i--)
            if (strcmp(seen[i].id, id) == 0 && seen[i].state == st)
                return &seen[i];
        usleep(10 * 1000);
    }
    return NULL;
}

static struct worker_spec
spec(const char *id, enum worker_desired d, bool kill, uint64_t restart)
{
    struct worker_spec s;

    memset(&s, 0, sizeof(s));
    s.id = xstrdup(id);
    s.name = xstrdup(id);
    s.generation = 1;
    s.restart_count = restart;
    s.desired = d;
    s.kill = kill;
    s.grace_ms = 200;
    s.vcpus = 1;
    s.memory_mib = 64;
    s.kernel_digest = xstrdup(
        "sha256:0000000000000000000000000000000000000000000000000000000000000000");
    s.cmdline = xstrdup("");
    return s;
}

static void
set1(struct worker *w, struct worker_spec a)
{
    struct worker_spec *v = xcalloc(1, sizeof(*v));

    v[0] = a;
    worker_set_desired(w, v, 1);
}

static struct worker *
start(void)
{
    struct worker_opts o = {
        .uri = "fake:///",
        .hv_override = HV_TYPE_TEST,
        .drv = &fake_driver,
    };

    pthread_mutex_lock(&fk_mu);
    fk_n = 0;
    fk_fail_start = 0;
    fk_deaf_presses = -1;
    pthread_mutex_unlock(&fk_mu);
    nseen = 0;
    return worker_start(&o, notify, NULL);
}

static void
poweroff(const char *id)
{
    struct fake_dom *d;

    pthread_mutex_lock(&fk_mu);
    d = fk_find(id, 0);
    d->st = VIRT_STATE_SHUTOFF;
    d->reason = VIRT_REASON_SHUTDOWN;
    pthread_mutex_unlock(&fk_mu);
    fk_cb(fk_arg, id);
}

/* ---- tests ------------------------------------------------------------- */

static void
test_term_ignored_is_destroyed_143(void **state)
{
    struct worker *w = start();
    const struct seen *s;

    (void)state;
    set1(w, spec("a1", WORKER_RUN, false, 0));
    assert_non_null(wait_for(w, "a1", WS_RUNNING));
    set1(w, spec("a1", WORKER_STOP, false, 0));
    assert_non_null(wait_for(w, "a1", WS_STOPPING));
    s = wait_for(w, "a1", WS_EXITED);
    assert_non_null(s);
    assert_int_equal(s->code, 143);
    assert_int_equal(fk_find("a1", 0)->shutdowns, 1);
    assert_int_equal(fk_find("a1", 0)->destroys, 1);
    worker_stop(w);
}

/* A kill with its own grace while the stop runs: the destroy waits for the
 * new grace, counted from the ACPI shutdown. */
static void
test_grace_from_a_new_set_counts(void **state)
{
    struct worker *w = start();
    struct worker_spec st;
    const struct seen *s;
    struct timespec t0, t1;
    long ms;

    (void)state;
    set1(w, spec("g1", WORKER_RUN, false, 0));
    assert_non_null(wait_for(w, "g1", WS_RUNNING));
    clock_gettime(CLOCK_MONOTONIC, &t0);
    set1(w, spec("g1", WORKER_STOP, false, 0)); /* grace 200 ms */
    assert_non_null(wait_for(w, "g1", WS_STOPPING));
    st = spec("g1", WORKER_STOP, false, 0);
    st.grace_ms = 1500;
    set1(w, st);
    usleep(600 * 1000);
    assert_int_equal(fk_find("g1", 0)->destroys, 0);
    s = wait_for(w, "g1", WS_EXITED);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_non_null(s);
    assert_int_equal(s->code, 143);
    ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    assert_true(ms >= 1400);
    assert_int_equal(fk_find("g1", 0)->shutdowns, 1);
    assert_int_equal(fk_find("g1", 0)->destroys, 1);
    worker_stop(w);
}

/* A guest still booting misses the first press of the power button: the
 * agent presses it again during the grace period, and the guest that
 * answers the second press exits 0, not 143. */
static void
test_term_pressed_again_while_booting(void **state)
{
    struct worker *w = start();
    struct worker_spec st;
    const struct seen *s;

    (void)state;
    set1(w, spec("b1", WORKER_RUN, false, 0));
    assert_non_null(wait_for(w, "b1", WS_RUNNING));
    pthread_mutex_lock(&fk_mu);
    fk_deaf_presses = 1;
    pthread_mutex_unlock(&fk_mu);
    st = spec("b1", WORKER_STOP, false, 0);
    st.grace_ms = 8000;
    set1(w, st);
    for (int k = 0; k < 3 && (s = wait_for(w, "b1", WS_EXITED)) == NULL; k++)
        ;
    assert_non_null(s);
    assert_int_equal(s->code, 0);
    assert_int_equal(fk_find("b1", 0)->shutdowns, 2);
    assert_int_equal(fk_find("b1", 0)->destroys, 0);
    worker_stop(w);
}

/* A guest kernel panic: libvirt ends the domain (on_crash destroy) with
 * reason crashed, and the instance exits 1, "the guest crashed". */
static void
test_crash_is_exit_1(void **state)
{
    struct worker *w = start();
    struct fake_dom *d;
    const struct seen *s;

    (void)state;
    set1(w, spec("c1", WORKER_RUN, false, 0));
    assert_non_null(wait_for(w, "c1", WS_RUNNING));
    pthread_mutex_lock(&fk_mu);
    d = fk_find("c1", 0);
    d->st = VIRT_STATE_SHUTOFF;
    d->reason = VIRT_REASON_CRASHED;
    pthread_mutex_unlock(&fk_mu);
    fk_cb(fk_arg, "c1");
    s = wait_for(w, "c1", WS_EXITED);
    assert_non_null(s);
    assert_int_equal(s->code, 1);
    assert_string_equal(s->reason, "the guest crashed");
    worker_stop(w);
}

static void
test_kill_is_137_and_poweroff_is_0(void **state)
{
    struct worker *w = start();
    struct worker_spec *v = xcalloc(2, sizeof(*v));
    const struct seen *s;

    (void)state;
    v[0] = spec("k1", WORKER_RUN, false, 0);
    v[1] = spec("p1", WORKER_RUN, false, 0);
    worker_set_desired(w, v, 2);
    assert_non_null(wait_for(w, "k1", WS_RUNNING));
    assert_non_null(wait_for(w, "p1", WS_RUNNING));
    v = xcalloc(2, sizeof(*v));
    v[0] = spec("k1", WORKER_STOP, true, 0);
    v[1] = spec("p1", WORKER_RUN, false, 0);
    worker_set_desired(w, v, 2);
    s = wait_for(w, "k1", WS_EXITED);
    assert_non_null(s);
    assert_int_equal(s->code, 137);
    poweroff("p1");
    s = wait_for(w, "p1", WS_EXITED);
    assert_non_null(s);
    assert_int_equal(s->code, 0);
    assert_string_equal(s->reason, "");
    /* Exited stays exited: the same set again starts nothing ... */
    v = xcalloc(2, sizeof(*v));
    v[0] = spec("k1", WORKER_STOP, true, 0);
    v[1] = spec("p1", WORKER_RUN, false, 0);
    worker_set_desired(w, v, 2);
    usleep(200 * 1000);
    assert_int_equal(fk_find("p1", 0)->starts, 1);
    /* ... a new restart count does. */
    v = xcalloc(2, sizeof(*v));
    v[0] = spec("k1", WORKER_STOP, true, 0);
    v[1] = spec("p1", WORKER_RUN, false, 1);
    worker_set_desired(w, v, 2);
    nseen = 0;
    assert_non_null(wait_for(w, "p1", WS_RUNNING));
    assert_int_equal(fk_find("p1", 0)->starts, 2);
    worker_stop(w);
}

static void
test_start_failure_and_delete(void **state)
{
    struct worker *w = start();
    const struct seen *s;

    (void)state;
    pthread_mutex_lock(&fk_mu);
    fk_fail_start = 1;
    pthread_mutex_unlock(&fk_mu);
    set1(w, spec("f1", WORKER_RUN, false, 0));
    s = wait_for(w, "f1", WS_FAILED);
    assert_non_null(s);
    assert_string_equal(s->reason, "fake: no such kernel");
    pthread_mutex_lock(&fk_mu);
    fk_fail_start = 0;
    pthread_mutex_unlock(&fk_mu);
    set1(w, spec("d1", WORKER_RUN, false, 0));
    assert_non_null(wait_for(w, "d1", WS_RUNNING));
    set1(w, spec("d1", WORKER_DELETE, true, 0));
    assert_non_null(wait_for(w, "d1", WS_REMOVED));
    assert_int_equal(fk_find("d1", 0)->undefines, 1);
    worker_stop(w);
}

/* args go on the kernel command line quoted (common/cmdline.h); one that
 * cannot (a double quote, or too long) fails the instance with why. */
static void
test_args_quoted_on_the_cmdline(void **state)
{
    struct worker *w = start();
    struct worker_spec a = spec("q1", WORKER_RUN, false, 0);
    const struct seen *s;
    char *big;

    (void)state;
    free(a.cmdline);
    a.cmdline = xstrdup("console=ttyS0");
    a.nargs = 4;
    a.args = xcalloc(4, sizeof(*a.args));
    a.args[0] = xstrdup("--");
    a.args[1] = xstrdup("two words");
    a.args[2] = xstrdup("");
    a.args[3] = xstrdup("k=v w");
    set1(w, a);
    assert_non_null(wait_for(w, "q1", WS_RUNNING));
    pthread_mutex_lock(&fk_mu);
    if (strstr(fk_last_xml,
               "<cmdline>console=ttyS0 -- \"two words\" \"\" \"k=v w\"</cmdline>") == NULL)
        fail_msg("cmdline not quoted in:\n%s", fk_last_xml);
    pthread_mutex_unlock(&fk_mu);

    a = spec("q2", WORKER_RUN, false, 0);
    a.nargs = 1;
    a.args = xcalloc(1, sizeof(*a.args));
    a.args[0] = xstrdup("say \"hi\"");
    set1(w, a);
    s = wait_for(w, "q2", WS_FAILED);
    assert_non_null(s);
    assert_non_null(strstr(s->reason, "args[0] contains a double quote"));

    /* An image cmdline from before its limit, with args: over 2047. */
    a = spec("q3", WORKER_RUN, false, 0);
    big = xmalloc(2001);
    memset(big, 'c', 2000);
    big[2000] = '\0';
    free(a.cmdline);
    a.cmdline = big;
    a.nargs = 1;
    a.args = xcalloc(1, sizeof(*a.args));
    a.args[0] = xstrdup("x" "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
    set1(w, a);
    s = wait_for(w, "q3", WS_FAILED);
    assert_non_null(s);
    assert_non_null(strstr(s->reason, "2057 bytes; at most 2047"));
    worker_stop(w);
}

static void
test_adopted_kept_until_a_set_arrives(void **state)
{
    struct worker *w;
    struct fake_dom *d;

    (void)state;
    w = start();
    worker_stop(w);
    /* A domain left by an earlier agent, running. */
    pthread_mutex_lock(&fk_mu);
    d = fk_find("old", 1);
    d->st = VIRT_STATE_RUNNING;
    d->gen = 1;
    pthread_mutex_unlock(&fk_mu);
    nseen = 0;
    {
        struct worker_opts o = {.uri = "fake:///",
                                .hv_override = HV_TYPE_TEST,
                                .drv = &fake_driver};
        w = worker_start(&o, notify, NULL);
    }
    /* Re-adopted and reported, not touched. */
    assert_non_null(wait_for(w, "old", WS_RUNNING));
    assert_int_equal(fk_find("old", 0)->destroys, 0);
    assert_int_equal(fk_find("old", 0)->starts, 0);
    /* The controller's set does not want it: destroyed and undefined. */
    worker_set_desired(w, xcalloc(1, sizeof(struct worker_spec)), 0);
    {
        int tries;

        for (tries = 0; tries < 300 && fk_find("old", 0)->undefines == 0; tries++)
            usleep(10 * 1000);
    }
    assert_int_equal(fk_find("old", 0)->destroys, 1);
    assert_int_equal(fk_find("old", 0)->undefines, 1);
    worker_stop(w);
}

/*
 * Two agents on one libvirt: an agent adopts and removes only the domains
 * of its own cluster and identity, and those without an owner (made before
 * ownership); another cluster's or another host's domains are not
 * reported, not stopped, not undefined.
 */
static void
test_foreign_domains_left_alone(void **state)
{
    static const struct {
        const char *id, *cluster, *owner;
    } doms[] = {
        {"mine", "c1", "h1"},
        {"legacy", NULL, NULL},
        {"othercluster", "c2", "h1"},
        {"otherhost", "c1", "h2"},
    };
    struct worker_opts o = {.uri = "fake:///",
                            .hv_override = HV_TYPE_TEST,
                            .drv = &fake_driver,
                            .cluster_id = "c1",
                            .owner = "h1"};
    struct worker *w;
    size_t i;
    int tries, j;

    (void)state;
    w = start();
    worker_stop(w);
    pthread_mutex_lock(&fk_mu);
    for (i = 0; i < sizeof(doms) / sizeof(doms[0]); i++) {
        struct fake_dom *d = fk_find(doms[i].id, 1);

        d->st = VIRT_STATE_RUNNING;
        d->gen = 1;
        d->cluster = doms[i].cluster;
        d->owner = doms[i].owner;
    }
    pthread_mutex_unlock(&fk_mu);
    nseen = 0;
    w = worker_start(&o, notify, NULL);
    assert_non_null(wait_for(w, "mine", WS_RUNNING));
    assert_non_null(wait_for(w, "legacy", WS_RUNNING));
    /* A libvirt event for a foreign domain changes nothing either. */
    fk_cb(fk_arg, "othercluster");
    /* An empty set: ours go, the others stay. */
    worker_set_desired(w, xcalloc(1, sizeof(struct worker_spec)), 0);
    for (tries = 0; tries < 300 && (fk_find("mine", 0)->undefines == 0 ||
                                    fk_find("legacy", 0)->undefines == 0);
         tries++)
        usleep(10 * 1000);
    assert_int_equal(fk_find("mine", 0)->undefines, 1);
    assert_int_equal(fk_find("legacy", 0)->undefines, 1);
    usleep(100 * 1000);
    assert_int_equal(fk_find("othercluster", 0)->destroys, 0);
    assert_int_equal(fk_find("othercluster", 0)->undefines, 0);
    assert_int_equal(fk_find("otherhost", 0)->destroys, 0);
    assert_int_equal(fk_find("otherhost", 0)->undefines, 0);
    assert_int_equal(fk_find("othercluster", 0)->st, VIRT_STATE_RUNNING);
    drain(w);
    for (j = 0; j < nseen; j++) {
        assert_string_not_equal(seen[j].id, "othercluster");
        assert_string_not_equal(seen[j].id, "otherhost");
    }
    worker_stop(w);
}

/*
 * A desired set after the first reconciles only the instances it changed:
 * adding one instance to a host running others lists nothing and asks
 * libvirt nothing about the others (a push must not cost a call per domain
 * on the host). Unchanged ones are still looked at by the periodic resync.
 */
static void
test_new_set_touches_only_changes(void **state)
{
    struct worker *w = start();
    struct worker_spec *v;
    int lists, polls_o1, polls_o2, i;

    (void)state;
    v = xcalloc(2, sizeof(*v));
    v[0] = spec("o1", WORKER_RUN, false, 0);
    v[1] = spec("o2", WORKER_RUN, false, 0);
    worker_set_desired(w, v, 2);
    assert_non_null(wait_for(w, "o1", WS_RUNNING));
    assert_non_null(wait_for(w, "o2", WS_RUNNING));
    pthread_mutex_lock(&fk_mu);
    lists = fk_lists;
    polls_o1 = fk_find("o1", 0)->polls;
    polls_o2 = fk_find("o2", 0)->polls;
    pthread_mutex_unlock(&fk_mu);

    v = xcalloc(3, sizeof(*v));
    v[0] = spec("o1", WORKER_RUN, false, 0);
    v[1] = spec("o2", WORKER_RUN, false, 0);
    v[2] = spec("n1", WORKER_RUN, false, 0);
    worker_set_desired(w, v, 3);
    assert_non_null(wait_for(w, "n1", WS_RUNNING));
    pthread_mutex_lock(&fk_mu);
    assert_int_equal(fk_lists, lists);
    assert_int_equal(fk_find("o1", 0)->polls, polls_o1);
    assert_int_equal(fk_find("o2", 0)->polls, polls_o2);
    pthread_mutex_unlock(&fk_mu);

    /* A changed spec (stop o1) and one gone from the set (o2) are acted on. */
    v = xcalloc(2, sizeof(*v));
    v[0] = spec("o1", WORKER_STOP, true, 0);
    v[1] = spec("n1", WORKER_RUN, false, 0);
    worker_set_desired(w, v, 2);
    assert_non_null(wait_for(w, "o1", WS_EXITED));
    for (i = 0; i < 300 && fk_find("o2", 0)->undefines == 0; i++)
        usleep(10 * 1000);
    assert_int_equal(fk_find("o2", 0)->destroys, 1);
    assert_int_equal(fk_find("o2", 0)->undefines, 1);
    assert_int_equal(fk_find("n1", 0)->starts, 1);
    worker_stop(w);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_term_ignored_is_destroyed_143),
        cmocka_unit_test(test_kill_is_137_and_poweroff_is_0),
        cmocka_unit_test(test_grace_from_a_new_set_counts),
        cmocka_unit_test(test_term_pressed_again_while_booting),
        cmocka_unit_test(test_crash_is_exit_1),
        cmocka_unit_test(test_start_failure_and_delete),
        cmocka_unit_test(test_args_quoted_on_the_cmdline),
        cmocka_unit_test(test_adopted_kept_until_a_set_arrives),
        cmocka_unit_test(test_foreign_domains_left_alone),
        cmocka_unit_test(test_new_set_touches_only_changes),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
