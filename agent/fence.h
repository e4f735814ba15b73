/*
 * fence: the agent's self-fencing (docs/agent.md "Fencing",
 * docs/decisions.md §28). An agent that has heard from no controller for
 * fence_after destroys the instances of partition_policy "stop" services,
 * before the controller may mark its host down (down_after > fence_after
 * + 3 s) and replace them: at most one copy runs.
 *
 * Two halves:
 *  - the clock, on the event loop: the moment the agent sent the last
 *    heartbeat a controller has stored (HeartbeatAck; Welcome for the
 *    Hello), and fence_after. When fence_after has passed since, it fires
 *    once, until a controller is heard again. Kept in
 *    <state-dir>/fence/clock, so an agent restarted during a partition
 *    fences as early as the one before it would have (CLOCK_MONOTONIC
 *    runs from boot: it holds across a restart of the process; guests do
 *    not outlive a reboot of the host).
 *  - the record, written on the worker thread:
 *    <state-dir>/fence/instances.json, the "stop" instances (with the run
 *    they are at) and those fenced (with the reason), replaced atomically
 *    and durably when it changes, so a restarted agent knows both before
 *    any controller speaks, and reports the fenced ones' exit when one
 *    does.
 */
#ifndef CLOUD_AGENT_FENCE_H
#define CLOUD_AGENT_FENCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct fence;

/* Called once per silence: silent_ms since the last heartbeat stored. */
typedef void (*fence_fire_fn)(void *arg, long long silent_ms,
                              unsigned after_ms);

/* NULL state_dir: nothing is kept on disk. Never fails (errors logged). */
struct fence *fence_new(struct event_base *base, const char *state_dir,
                        fence_fire_fn fire, void *arg);
/* A controller stored what the agent sent at sent_ms (mono_ms()). */
void fence_heard(struct fence *f, long long sent_ms);
/* fence_after as the controller tells it (Welcome, HeartbeatAck). */
void fence_set_after(struct fence *f, unsigned after_ms);
void fence_free(struct fence *f);

/* One instance of the record. */
struct fence_entry {
    char *id;
    uint64_t generation, restart_count;
    char *fenced; /* the reason it was fenced; NULL: not fenced */
};

/* Reads the record (no file: 0 entries). 0, or -1 logged (0 entries). */
int fence_record_load(const char *state_dir, struct fence_entry **out,
                      size_t *n);
/* The record's text for entries (sorted by the caller); never NULL. */
char *fence_record_text(const struct fence_entry *e, size_t n);
/* Replaces the record with text. 0, or -1 logged. */
int fence_record_save(const char *state_dir, const char *text);
void fence_entries_free(struct fence_entry *e, size_t n);

#endif
