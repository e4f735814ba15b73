/*
 * ratelimit: token buckets per client address in a fixed-size table, and
 * exact open-connection counts per address (see ratelimit.h).
 */
#define LOG_MODULE "ratelimit"
#include "ratelimit.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/random.h>

#include "log.h"
#include "mem.h"

#define RL_WAYS 8

/* ---- addresses --------------------------------------------------------- */

static void
addr_v4(struct rl_addr *a, const void *in4)
{
    memset(a->b, 0, 10);
    a->b[10] = 0xff;
    a->b[11] = 0xff;
    memcpy(a->b + 12, in4, 4);
}

static int
is_v4(const struct rl_addr *a)
{
    static const unsigned char pre[12] = {0, 0, 0, 0, 0, 0,
                                          0, 0, 0, 0, 0xff, 0xff};

    return memcmp(a->b, pre, sizeof(pre)) == 0;
}

static void
addr_v6(struct rl_addr *a, const unsigned char *in6)
{
    memcpy(a->b, in6, 16);
    if (is_v4(a))
        return;
    memset(a->b + 8, 0, 8); /* the /64 */
}

int
rl_addr_from_sockaddr(const struct sockaddr *sa, struct rl_addr *a)
{
    if (sa->sa_family == AF_INET) {
        addr_v4(a, &((const struct sockaddr_in *)sa)->sin_addr);
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        addr_v6(a, ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr);
        return 0;
    }
    return -1;
}

int
rl_addr_parse(const char *text, struct rl_addr *a)
{
    unsigned char buf[16];

    if (inet_pton(AF_INET, text, buf) == 1) {
        addr_v4(a, buf);
        return 0;
    }
    if (inet_pton(AF_INET6, text, buf) == 1) {
        addr_v6(a, buf);
        return 0;
    }
    return -1;
}

void
rl_addr_text(const struct rl_addr *a, char *buf, size_t len)
{
    char t[INET6_ADDRSTRLEN];

    if (is_v4(a)) {
        if (inet_ntop(AF_INET, a->b + 12, t, sizeof(t)) == NULL)
            xstrlcpy(t, "?", sizeof(t));
        snprintf(buf, len, "%s", t);
        return;
    }
    if (inet_ntop(AF_INET6, a->b, t, sizeof(t)) == NULL)
        xstrlcpy(t, "?", sizeof(t));
    snprintf(buf, len, "%s/64", t);
}

double
rl_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- SipHash-2-4 of an address, under a per-process key ---------------- */

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                            \
    do {                                                                    \
        v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32);           \
        v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2;                              \
        v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0;                              \
        v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32);           \
    } while (0)

static uint64_t
le64(const unsigned char *p)
{
    uint64_t v = 0;

    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint64_t
addr_hash(const struct rl_addr *a, const uint64_t k[2])
{
    uint64_t v0 = 0x736f6d6570736575ull ^ k[0];
    uint64_t v1 = 0x646f72616e646f6dull ^ k[1];
    uint64_t v2 = 0x6c7967656e657261ull ^ k[0];
    uint64_t v3 = 0x7465646279746573ull ^ k[1];
    uint64_t m;

    for (int i = 0; i < 2; i++) {
        m = le64(a->b + 8 * i);
        v3 ^= m;
        SIPROUND;
        SIPROUND;
        v0 ^= m;
    }
    m = (uint64_t)16 << 56;
    v3 ^= m;
    SIPROUND;
    SIPROUND;
    v0 ^= m;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

static void
hash_key(uint64_t k[2])
{
    if (getrandom(k, 2 * sizeof(uint64_t), 0) != (ssize_t)(2 * sizeof(uint64_t))) {
        /* Only the spread across sets depends on it, not correctness. */
        log_warn("getrandom failed; the rate limit table uses a clock key");
        k[0] = (uint64_t)(rl_now() * 1e9);
        k[1] = (uint64_t)time(NULL) * 0x9E3779B97F4A7C15ull;
    }
}

/* ---- token buckets ----------------------------------------------------- */

struct bucket {
    struct rl_addr addr;
    double tokens; /* as of last */
    double last;
    int used;
};

struct ratelimit {
    double rate, burst;
    size_t nsets; /* power of two */
    uint64_t key[2];
    struct bucket *b; /* nsets * RL_WAYS */
};

struct ratelimit *
rl_new(double rate, double burst, size_t nentries)
{
    struct ratelimit *rl;
    size_t sets = 1;

    if (rate <= 0)
        return NULL;
    while (sets * RL_WAYS < nentries)
        sets *= 2;
    rl = xcalloc(1, sizeof(*rl));
    rl->rate = rate;
    rl->burst = burst < 1 ? 1 : burst;
    rl->nsets = sets;
    rl->b = xcalloc(sets * RL_WAYS, sizeof(*rl->b));
    hash_key(rl->key);
    return rl;
}

void
rl_free(struct ratelimit *rl)
{
    if (rl == NULL)
        return;
    free(rl->b);
    free(rl);
}

double
rl_rate(const struct ratelimit *rl)
{
    return rl ? rl->rate : 0;
}

double
rl_burst(const struct ratelimit *rl)
{
    return rl ? rl->burst : 0;
}

static double
refilled(const struct ratelimit *rl, const struct bucket *b, double now)
{
    double t;

    if (!b->used)
        return rl->burst;
    t = b->tokens + (now > b->last ? now - b->last : 0) * rl->rate;
    return t > rl->burst ? rl->burst : t;
}

int
rl_take(struct ratelimit *rl, const struct rl_addr *a, double now,
        unsigned *retry_after_s)
{
    struct bucket *set, *b = NULL, *spare = NULL;
    double spare_tokens = -1;

    if (rl == NULL)
        return 0;
    set = rl->b + (addr_hash(a, rl->key) & (rl->nsets - 1)) * RL_WAYS;
    for (int i = 0; i < RL_WAYS; i++) {
        double t;

        if (set[i].used && memcmp(&set[i].addr, a, sizeof(*a)) == 0) {
            b = &set[i];
            break;
        }
        /* The way to reuse: a free one, else the fullest bucket (the one
         * whose address is owed the least). */
        t = refilled(rl, &set[i], now);
        if (t > spare_tokens) {
            spare_tokens = t;
            spare = &set[i];
        }
    }
    if (b == NULL) {
        b = spare;
        b->addr = *a;
        b->used = 1;
        b->tokens = rl->burst;
        b->last = now;
    }
    b->tokens = refilled(rl, b, now);
    b->last = now;
    if (b->tokens >= 1) {
        b->tokens -= 1;
        return 0;
    }
    if (retry_after_s) {
        double s = (1 - b->tokens) / rl->rate;
        unsigned u = s > 86400 ? 86400 : (unsigned)s;

        *retry_after_s = u < s ? u + 1 : u < 1 ? 1 : u;
    }
    return -1;
}

/* ---- connection counts ------------------------------------------------- */

struct count {
    struct rl_addr addr;
    unsigned n; /* 0: free slot */
};

struct rl_counts {
    uint64_t key[2];
    struct count *slots;
    size_t cap, len; /* cap a power of two */
};

struct rl_counts *
rl_counts_new(void)
{
    struct rl_counts *c = xcalloc(1, sizeof(*c));

    c->cap = 64;
    c->slots = xcalloc(c->cap, sizeof(*c->slots));
    hash_key(c->key);
    return c;
}

void
rl_counts_free(struct rl_counts *c)
{
    if (c == NULL)
        return;
    free(c->slots);
    free(c);
}

size_t
rl_counts_len(const struct rl_counts *c)
{
    return c->len;
}

static size_t
count_find(const struct rl_counts *c, const struct rl_addr *a)
{
    size_t i = addr_hash(a, c->key) & (c->cap - 1);

    while (c->slots[i].n != 0 &&
           memcmp(&c->slots[i].addr, a, sizeof(*a)) != 0)
        i = (i + 1) & (c->cap - 1);
    return i;
}

unsigned
rl_counts_get(const struct rl_counts *c, const struct rl_addr *a)
{
    return c->slots[count_find(c, a)].n;
}

static void
counts_grow(struct rl_counts *c)
{
    struct count *old = c->slots;
    size_t oldcap = c->cap;

    c->cap *= 2;
    c->slots = xcalloc(c->cap, sizeof(*c->slots));
    for (size_t i = 0; i < oldcap; i++)
        if (old[i].n != 0)
            c->slots[count_find(c, &old[i].addr)] = old[i];
    free(old);
}

unsigned
rl_counts_add(struct rl_counts *c, const struct rl_addr *a, int delta)
{
    size_t i = count_find(c, a), j;

    if (c->slots[i].n == 0) {
        if (delta <= 0)
            return 0;
        if ((c->len + 1) * 2 > c->cap) {
            counts_grow(c);
            i = count_find(c, a);
        }
        c->slots[i].addr = *a;
        c->len++;
    }
    if (delta < 0 && c->slots[i].n <= (unsigned)-delta) {
        /* Remove; shift the rest of the cluster back (linear probing). */
        c->slots[i].n = 0;
        c->len--;
        for (j = (i + 1) & (c->cap - 1); c->slots[j].n != 0;
             j = (j + 1) & (c->cap - 1)) {
            size_t home = addr_hash(&c->slots[j].addr, c->key) & (c->cap - 1);
            /* Move j to i when its home is not in (i, j] cyclically. */
            if ((j > i && (home <= i || home > j)) ||
                (j < i && (home <= i && home > j))) {
                c->slots[i] = c->slots[j];
                c->slots[j].n = 0;
                i = j;
            }
        }
        return 0;
    }
    c->slots[i].n = (unsigned)((int)c->slots[i].n + delta);
    return c->slots[i].n;
}
