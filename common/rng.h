/*
 * rng: splitmix64, a small seeded generator for runs that must repeat
 * (property tests, benchmarks), and its finaliser, which also serves as a
 * hash of 64-bit integers (sequential ids do not cluster). Not for secrets.
 */
#ifndef CLOUD_RNG_H
#define CLOUD_RNG_H

#include <stdint.h>

/* splitmix64's finaliser: every input bit affects every output bit. */
static inline uint64_t
rng_mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

struct rng {
    uint64_t s; /* the seed, then the state */
};

static inline uint64_t
rng_next(struct rng *r)
{
    return rng_mix(r->s += 0x9e3779b97f4a7c15ull);
}

/* A number in [0, n), n > 0 (slightly biased: fine for workloads). */
static inline uint32_t
rng_below(struct rng *r, uint32_t n)
{
    return (uint32_t)(rng_next(r) % n);
}

#endif
