/*
 * dsparts: a desired set from its parts (see dsparts.h). One partial set
 * at a time: the controller sends a set's parts back to back on one
 * connection, so a part of another set means that set is over.
 */
#define LOG_MODULE "link"

#include "dsparts.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "mem.h"

struct dsparts {
    size_t max_parts, max_bytes, max_mem;
    /* the partial set (nparts > 0) */
    uint64_t session, leader, revision;
    uint32_t nparts, got;
    size_t bytes, mem;
    frame_envelope **envs; /* [nparts], NULL where not yet come */
    /* the last set refused: its other parts are dropped quietly */
    bool refused;
    uint64_t r_session, r_leader, r_revision;
};

struct dsparts *
dsparts_new(size_t max_parts, size_t max_bytes, size_t max_mem)
{
    struct dsparts *a = xcalloc(1, sizeof(*a));

    a->max_parts = max_parts;
    a->max_bytes = max_bytes;
    a->max_mem = max_mem;
    return a;
}

/* Frees envs[0..n) (NULL ones too) and the array. */
static void
envs_free(frame_envelope **envs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        frame_envelope_free(envs[i]);
    free(envs);
}

void
dsparts_reset(struct dsparts *a)
{
    if (a == NULL)
        return;
    envs_free(a->envs, a->nparts);
    a->envs = NULL;
    a->nparts = a->got = 0;
    a->bytes = a->mem = 0;
    a->refused = false;
}

void
dsparts_free(struct dsparts *a)
{
    if (a == NULL)
        return;
    dsparts_reset(a);
    free(a);
}

void
dsparts_set_clear(struct dsparts_set *s)
{
    if (s == NULL)
        return;
    free(s->instances); /* pointers into the envelopes */
    envs_free(s->envs, s->nenvs);
    memset(s, 0, sizeof(*s));
}

/*
 * What a part holds in memory, roughly: its bytes plus the unpacked
 * structures, which a few bytes on the wire can stand for (an empty map
 * entry is 2 bytes packed, some 40 unpacked).
 */
static size_t
part_mem(const Cloud__Agent__DesiredState *d, size_t packed)
{
    size_t m = packed + sizeof(*d);

    for (size_t i = 0; i < d->n_instances; i++) {
        const Cloud__Agent__InstanceSpec *s = d->instances[i];

        m += sizeof(*s) + sizeof(s) + sizeof(Cloud__Agent__ImageSpec) +
             s->n_env * (sizeof(**s->env) + sizeof(*s->env)) +
             s->n_config * (sizeof(**s->config) + sizeof(*s->config)) +
             s->n_args * sizeof(*s->args);
    }
    return m;
}

static bool
same_set(const struct dsparts *a, const Cloud__Agent__DesiredState *d)
{
    return a->nparts > 0 && d->session_epoch == a->session &&
           d->leader_epoch == a->leader && d->revision == a->revision;
}

/* Moves the frames of a whole set (envs[0..n), in part order) to out. */
static void
hand_over(frame_envelope **envs, size_t n, struct dsparts_set *out)
{
    size_t total = 0, k = 0;

    for (size_t i = 0; i < n; i++)
        total += envs[i]->desired_state->n_instances;
    memset(out, 0, sizeof(*out));
    out->revision = envs[0]->desired_state->revision;
    out->instances = xcalloc(total + 1, sizeof(*out->instances));
    for (size_t i = 0; i < n; i++) {
        const Cloud__Agent__DesiredState *d = envs[i]->desired_state;

        for (size_t j = 0; j < d->n_instances; j++)
            out->instances[k++] = d->instances[j];
    }
    out->n = total;
    out->envs = envs;
    out->nenvs = n;
}

static enum dsparts_status
refuse(struct dsparts *a, const Cloud__Agent__DesiredState *d,
       frame_envelope *env, char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

static enum dsparts_status
refuse(struct dsparts *a, const Cloud__Agent__DesiredState *d,
       frame_envelope *env, char *why, size_t whylen, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
    dsparts_reset(a);
    a->refused = true;
    a->r_session = d->session_epoch;
    a->r_leader = d->leader_epoch;
    a->r_revision = d->revision;
    frame_envelope_free(env);
    return DSPARTS_REFUSED;
}

enum dsparts_status
dsparts_add(struct dsparts *a, frame_envelope *env, struct dsparts_set *out,
            char *why, size_t whylen)
{
    const Cloud__Agent__DesiredState *d = env->desired_state;
    frame_envelope **one;
    size_t size, mem;

    if (d->parts <= 1) {
        if (d->part != 0)
            return refuse(a, d, env, why, whylen,
                          "desired set revision %" PRIu64
                          ": part %u of a set of one part",
                          d->revision, d->part);
        dsparts_reset(a);
        one = xcalloc(1, sizeof(*one));
        one[0] = env;
        hand_over(one, 1, out);
        return DSPARTS_WHOLE;
    }
    if (a->refused && d->session_epoch == a->r_session &&
        d->leader_epoch == a->r_leader && d->revision == a->r_revision) {
        frame_envelope_free(env);
        return DSPARTS_HELD;
    }
    if (a->nparts > 0 && !same_set(a, d)) {
        if (d->session_epoch == a->session && d->leader_epoch == a->leader &&
            d->revision < a->revision) {
            log_info("desired set revision %" PRIu64 " part %u dropped: "
                     "revision %" PRIu64 " is being assembled",
                     d->revision, d->part, a->revision);
            frame_envelope_free(env);
            return DSPARTS_HELD;
        }
        log_info("desired set revision %" PRIu64 " dropped with %u of %u "
                 "parts: revision %" PRIu64 " began",
                 a->revision, a->got, a->nparts, d->revision);
        dsparts_reset(a);
    }
    /* Bounds before anything is kept. */
    if (d->parts > a->max_parts)
        return refuse(a, d, env, why, whylen,
                      "desired set revision %" PRIu64 " in %u parts refused: "
                      "this agent assembles at most %zu",
                      d->revision, d->parts, a->max_parts);
    if (d->part >= d->parts)
        return refuse(a, d, env, why, whylen,
                      "desired set revision %" PRIu64 ": part %u of %u parts",
                      d->revision, d->part, d->parts);
    if (a->nparts > 0 && d->parts != a->nparts)
        return refuse(a, d, env, why, whylen,
                      "desired set revision %" PRIu64 ": part %u says %u "
                      "parts, an earlier one %u",
                      d->revision, d->part, d->parts, a->nparts);
    size = cloud__agent__desired_state__get_packed_size(d);
    if (size > a->max_bytes || a->bytes + size > a->max_bytes)
        return refuse(a, d, env, why, whylen,
                      "desired set revision %" PRIu64 " refused: over %zu "
                      "bytes at part %u of %u (this agent assembles at most "
                      "%zu bytes of a set)",
                      d->revision, a->bytes + size, d->part, d->parts,
                      a->max_bytes);
    mem = part_mem(d, size);
    if (mem > a->max_mem || a->mem + mem > a->max_mem)
        return refuse(a, d, env, why, whylen,
                      "desired set revision %" PRIu64 " refused: over %zu "
                      "bytes of memory at part %u of %u (this agent holds at "
                      "most %zu of a set)",
                      d->revision, a->mem + mem, d->part, d->parts, a->max_mem);
    if (a->nparts == 0) {
        a->session = d->session_epoch;
        a->leader = d->leader_epoch;
        a->revision = d->revision;
        a->nparts = d->parts;
        a->envs = xcalloc(d->parts, sizeof(*a->envs));
    }
    if (a->envs[d->part] != NULL) {
        log_info("desired set revision %" PRIu64 " part %u came twice; "
                 "the second dropped",
                 d->revision, d->part);
        frame_envelope_free(env);
        return DSPARTS_HELD;
    }
    a->envs[d->part] = env;
    a->bytes += size;
    a->mem += mem;
    if (++a->got < a->nparts)
        return DSPARTS_HELD;
    hand_over(a->envs, a->nparts, out);
    a->envs = NULL; /* out owns them */
    a->nparts = a->got = 0;
    a->bytes = a->mem = 0;
    return DSPARTS_WHOLE;
}
