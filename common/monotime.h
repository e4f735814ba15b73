/*
 * monotime: the monotonic clock in milliseconds, for timeouts, intervals
 * and durations in logs (CLOCK_MONOTONIC: never steps with the wall clock),
 * and the wall clock in milliseconds for times that are sent or shown.
 */
#ifndef CLOUD_MONOTIME_H
#define CLOUD_MONOTIME_H

/* Milliseconds since an arbitrary fixed point (boot); only differences
 * mean anything. */
long long mono_ms(void);

/* Milliseconds since the Unix epoch (CLOCK_REALTIME: may step). */
long long wall_ms(void);

#endif
