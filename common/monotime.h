/*
 * monotime: the monotonic clock in milliseconds, for timeouts, intervals
 * and durations in logs (CLOCK_MONOTONIC: never steps with the wall clock).
 */
#ifndef CLOUD_MONOTIME_H
#define CLOUD_MONOTIME_H

/* Milliseconds since an arbitrary fixed point (boot); only differences
 * mean anything. */
long long mono_ms(void);

#endif
