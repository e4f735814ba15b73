/*
 * dsparts: assembles one desired set from the DesiredState frames it came
 * in (agent.proto DesiredState.part/parts; docs/agent.md "Desired set in
 * parts"). The link checks each frame's session and leader epochs and
 * revision first, then hands it here; the set is handed on only when it is
 * whole. Owns the frames of the one partial set it holds.
 *
 * Bounds, checked before anything is kept: at most DSPARTS_MAX parts,
 * DSPARTS_BYTES_MAX bytes (the sum of the parts' packed DesiredState
 * sizes) and DSPARTS_MEM_MAX bytes of memory (those bytes plus the
 * unpacked structures, which a few packed bytes can stand for) per set.
 * A set over them is refused whole (the link answers with an Error) and
 * the rest of its parts are dropped without another Error.
 */
#ifndef CLOUD_AGENT_DSPARTS_H
#define CLOUD_AGENT_DSPARTS_H

#include <stddef.h>
#include <stdint.h>

#include "frame.h"

#define DSPARTS_MAX 256u
/* Below the controller's 64 MiB output cap (GW_MAX_OUTPUT), so a whole
 * set queued at once never trips it; announced in Hello.desired_set_max. */
#define DSPARTS_BYTES_MAX (32u * 1024u * 1024u)
/* A legitimate set needs some 300 bytes of structures per instance: 100,000
 * small instances fit. */
#define DSPARTS_MEM_MAX (96u * 1024u * 1024u)

enum dsparts_status {
    DSPARTS_REFUSED = -1, /* over a bound or inconsistent: why says so */
    DSPARTS_HELD = 0,     /* kept (or dropped: stale, repeated); not whole */
    DSPARTS_WHOLE = 1,    /* *out holds the whole set */
};

/* A whole set: its instances in part order, pointing into the frames. */
struct dsparts_set {
    uint64_t revision;
    Cloud__Agent__InstanceSpec **instances;
    size_t n;
    frame_envelope **envs; /* owned */
    size_t nenvs;
};

struct dsparts;

struct dsparts *dsparts_new(size_t max_parts, size_t max_bytes, size_t max_mem);
void dsparts_free(struct dsparts *a);
/* Drops the partial set (a new session). */
void dsparts_reset(struct dsparts *a);

/*
 * Takes env (a DesiredState envelope; always consumed). A one-frame set
 * (parts 0 or 1) is whole at once and drops any partial set. A part of
 * the partial set's revision is kept (any order; a repeated part is
 * dropped); one of a newer revision, another session or leader epoch
 * starts a new partial set; one of an older revision of the same session
 * is dropped (stale). On DSPARTS_WHOLE *out is filled (release it with
 * dsparts_set_clear); on DSPARTS_REFUSED a one-line reason is in why.
 */
enum dsparts_status dsparts_add(struct dsparts *a, frame_envelope *env,
                                struct dsparts_set *out, char *why,
                                size_t whylen);
void dsparts_set_clear(struct dsparts_set *s);

#endif
