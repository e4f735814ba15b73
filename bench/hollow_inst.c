/*
 * hollow_inst: the instances of one simulated host (see hollow.h): a whole
 * desired set applied, and the statuses agent/worker.c would report for it
 * on a hypervisor where every start and stop is instant. Owns each
 * instance's phase, its start timer (--start-delay-ms) and its last status.
 *
 * Instance phases, as agent/worker.c keeps them: NONE (never run) ->
 * [STARTING while --start-delay-ms runs] -> RUNNING -> DONE (exited) ->
 * REMOVED (deleted, reported, kept until the set drops it).
 */
#define LOG_MODULE "hollow"

#include "hollow.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "log.h"
#include "mem.h"

#define DESIRED_RUNNING                                                       \
    CLOUD__AGENT__DESIRED_INSTANCE_STATE__DESIRED_INSTANCE_STATE_RUNNING

static int64_t
wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* One line of --arrivals (hollow.h). */
static void
arrival(struct hhost *h, const struct hinst *in, char what)
{
    if (h->hw->arrivals != NULL)
        fprintf(h->hw->arrivals, "%s %" PRId64 " %c %s\n", in->id, wall_ms(),
                what, h->name);
}

void
hinst_free(struct hinst *in)
{
    if (in == NULL)
        return;
    if (in->start_ev != NULL)
        event_free(in->start_ev);
    free(in->id);
    free(in);
}

void
hinst_send_status(struct hhost *h, const struct hinst *in)
{
    Cloud__Agent__Envelope env = CLOUD__AGENT__ENVELOPE__INIT;
    Cloud__Agent__InstanceStatus st = CLOUD__AGENT__INSTANCE_STATUS__INIT;
    bool over = in->rep_state == ST_EXITED;

    st.session_epoch = h->c.epoch;
    st.id = in->id;
    st.generation = in->generation;
    st.state = in->rep_state;
    st.exit_code = in->rep_code;
    st.reason = (char *)in->rep_reason;
    st.started_at_ms = in->started_ms;
    st.finished_at_ms = over ? in->finished_ms : 0;
    st.observed_at_ms = wall_ms();
    env.msg_case = CLOUD__AGENT__ENVELOPE__MSG_INSTANCE_STATUS;
    env.instance_status = &st;
    hh_send(h, &env);
    h->hw->statuses_sent++;
}

/* Records a status and sends it when the session is up; a repeat of the
 * last one is not sent (agent/worker.c report()). */
static void
report(struct hinst *in, Cloud__Agent__ObservedInstanceState st, int code,
       const char *reason)
{
    struct hhost *h = in->h;

    if (in->rep_state == st && in->rep_code == code &&
        strcmp(in->rep_reason, reason) == 0)
        return;
    if (in->rep_state == ST_RUNNING && h->hw->running > 0)
        h->hw->running--;
    if (st == ST_RUNNING)
        h->hw->running++;
    if (st == ST_EXITED)
        in->finished_ms = wall_ms();
    in->rep_state = st;
    in->rep_code = code;
    in->rep_reason = reason;
    in->rep_unsent = h->c.state != CTLCONN_READY;
    log_debug("host %s: instance %s: state %d", h->name, in->id, (int)st);
    if (h->c.state == CTLCONN_READY)
        hinst_send_status(h, in);
}

/* ---- instances -------------------------------------------------------- */

static void
start_now(struct hinst *in)
{
    in->phase = HI_RUNNING;
    in->started_ms = wall_ms();
    report(in, ST_RUNNING, 0, "");
}

static void
start_cb(evutil_socket_t fd, short what, void *arg)
{
    struct hinst *in = arg;

    (void)fd;
    (void)what;
    event_free(in->start_ev);
    in->start_ev = NULL;
    start_now(in);
}

static void
inst_run(struct hinst *in)
{
    struct hollow *hw = in->h->hw;

    switch (in->phase) {
    case HI_RUNNING:
        report(in, ST_RUNNING, 0, "");
        return;
    case HI_STARTING:
        return;
    case HI_DONE:
        if (in->have_token && in->tok_gen == in->generation &&
            in->tok_restart >= in->restart_count)
            return; /* exited; stays so until a restart or a new generation */
        break;
    default:
        break;
    }
    in->have_token = true;
    in->tok_gen = in->generation;
    in->tok_restart = in->restart_count;
    if (hw->o->start_delay_ms == 0) {
        start_now(in);
        return;
    }
    {
        struct timeval tv = {hw->o->start_delay_ms / 1000,
                             (hw->o->start_delay_ms % 1000) * 1000};

        in->start_ev = evtimer_new(hw->base, start_cb, in);
        if (in->start_ev == NULL || evtimer_add(in->start_ev, &tv) < 0)
            fatalx("cannot arm the start timer of instance %s", in->id);
        in->phase = HI_STARTING;
    }
}

/* A stop or a delete: what agent/worker.c reconcile_stop reports when the
 * domain goes down at once (ACPI honoured, or destroyed for a kill). */
static void
inst_stop(struct hinst *in)
{
    if (in->phase == HI_STARTING) {
        event_free(in->start_ev);
        in->start_ev = NULL;
        in->phase = HI_NONE;
    }
    if (in->phase == HI_RUNNING) {
        in->phase = HI_DONE;
        if (in->kill) {
            report(in, ST_EXITED, 137, "killed (SIGKILL: destroyed)");
        } else {
            report(in, ST_STOPPING, 0, "");
            report(in, ST_EXITED, 0, "");
        }
    } else if (in->phase == HI_NONE) {
        in->phase = HI_DONE;
        report(in, ST_EXITED, in->kill ? 137 : 143,
               "stopped before it started");
    }
    if (in->desired ==
            CLOUD__AGENT__DESIRED_INSTANCE_STATE__DESIRED_INSTANCE_STATE_DELETED &&
        in->phase != HI_REMOVED) {
        in->phase = HI_REMOVED;
        report(in, ST_REMOVED, 0, "");
    }
}

/* Applies a whole set: instances not in it are forgotten without a word
 * (the real agent destroys and undefines them quietly). */
void
hinst_apply_set(struct hhost *h, uint64_t revision,
          Cloud__Agent__InstanceSpec *const *specs, size_t n)
{
    struct hinst **gone, *in;
    size_t i = 0, ngone = 0;

    while ((in = strmap_next(&h->insts, &i)) != NULL)
        in->in_set = false;
    for (i = 0; i < n; i++) {
        const Cloud__Agent__InstanceSpec *s = specs[i];
        bool running = s->desired_state == DESIRED_RUNNING;

        in = strmap_get(&h->insts, s->id);
        if (s->id == NULL || s->id[0] == '\0')
            continue;
        if (in == NULL) {
            in = xcalloc(1, sizeof(*in));
            in->id = xstrdup(s->id);
            in->h = h;
            in->rep_reason = "";
            strmap_put(&h->insts, in->id, in);
            arrival(h, in, running ? 'R' : 'D');
        } else if (!running && in->desired == DESIRED_RUNNING) {
            arrival(h, in, 'D');
        }
        in->in_set = true;
        in->generation = s->generation;
        in->restart_count = s->restart_count;
        in->desired = s->desired_state;
        in->kill = s->stop_signal == CLOUD__AGENT__STOP_SIGNAL__STOP_SIGNAL_KILL;
    }
    h->c.revision = revision;
    if (h->hw->arrivals != NULL)
        fflush(h->hw->arrivals); /* the benchmark reads it while we run */
    gone = xcalloc(h->insts.len + 1, sizeof(*gone));
    i = 0;
    while ((in = strmap_next(&h->insts, &i)) != NULL) {
        if (!in->in_set)
            gone[ngone++] = in;
        else if (in->desired ==
                 CLOUD__AGENT__DESIRED_INSTANCE_STATE__DESIRED_INSTANCE_STATE_RUNNING)
            inst_run(in);
        else
            inst_stop(in);
    }
    for (i = 0; i < ngone; i++) {
        if (gone[i]->rep_state == ST_RUNNING && h->hw->running > 0)
            h->hw->running--;
        strmap_del(&h->insts, gone[i]->id);
        hinst_free(gone[i]);
    }
    free(gone);
    h->hw->sets_applied++;
    log_debug("host %s: desired set revision %" PRIu64 ": %zu instances",
              h->name, revision, n);
}
