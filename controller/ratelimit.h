/*
 * ratelimit: per client address token buckets and connection counts
 * (docs/security.md, "Connection and rate limits").
 *
 * A client address is the IPv4 address, or the /64 prefix of an IPv6
 * address (one IPv6 host usually holds a whole /64, so a finer key would
 * give it 2^64 buckets). IPv4-mapped IPv6 addresses count as IPv4.
 *
 * Buckets live in a table of fixed size: 8-way sets, picked by a keyed hash
 * (a random key per process, so a client cannot aim at another's set). A
 * bucket that has refilled is the same as no bucket, so a new address takes
 * the set's fullest bucket when the set is full; memory never grows with
 * the number of addresses seen. Connection counts (rl_counts) are exact and
 * hold only addresses with open connections, so they are bounded by the
 * connection limit.
 */
#ifndef CLOUD_RATELIMIT_H
#define CLOUD_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct rl_addr {
    unsigned char b[16];
};

#define RL_ADDR_TEXT 48 /* "ffff:...:ffff::/64" and "a.b.c.d" fit */

/* The client address of a peer; 0, or -1 for a family other than IPv4/6. */
int rl_addr_from_sockaddr(const struct sockaddr *sa, struct rl_addr *a);
/* The same from the text of an address ("127.0.0.1", "2001:db8::1"). */
int rl_addr_parse(const char *text, struct rl_addr *a);
/* "127.0.0.1", or "2001:db8:1:2::/64". */
void rl_addr_text(const struct rl_addr *a, char *buf, size_t len);

/* Seconds on the monotonic clock. */
double rl_now(void);

struct ratelimit;

/*
 * rate tokens per second, up to burst; room for about nentries addresses.
 * rate <= 0 means no limit: NULL is returned, and rl_take(NULL, ...)
 * always admits.
 */
struct ratelimit *rl_new(double rate, double burst, size_t nentries);
void rl_free(struct ratelimit *rl); /* accepts NULL */
/*
 * Takes one token from a's bucket at time now (rl_now()). 0 if there was
 * one; -1 if not, with *retry_after_s the whole seconds until there is.
 */
int rl_take(struct ratelimit *rl, const struct rl_addr *a, double now,
            unsigned *retry_after_s);
double rl_rate(const struct ratelimit *rl);
double rl_burst(const struct ratelimit *rl);

/* Open connections per address. */
struct rl_counts;
struct rl_counts *rl_counts_new(void);
void rl_counts_free(struct rl_counts *c); /* accepts NULL */
unsigned rl_counts_get(const struct rl_counts *c, const struct rl_addr *a);
/* Adds delta (+1 or -1); returns the count after. An entry that drops to
 * 0 is removed. */
unsigned rl_counts_add(struct rl_counts *c, const struct rl_addr *a,
                       int delta);
size_t rl_counts_len(const struct rl_counts *c); /* addresses with any */

#endif
