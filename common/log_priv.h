/*
 * log internals the unit tests reach (tests/unit/test_log.c): one line of
 * either format built into a buffer, for a given time.
 */
#ifndef CLOUD_LOG_PRIV_H
#define CLOUD_LOG_PRIV_H

#include <stddef.h>
#include <sys/time.h>

#include "log.h"

/* Longest line written, newline included; a longer message is cut. */
#define LOG_LINE_MAX 4600

/* Builds one line ending in '\n' into buf (at least LOG_LINE_MAX bytes):
 * JSON when json is non-zero, else text. Returns its length. */
size_t log_format_line(char *buf, size_t cap, int json, const struct timeval *tv,
                       enum log_level lvl, const char *prog,
                       const char *module, const char *msg);
/* 1 when lines are JSON now, 0 when text. */
int log_is_json(void);

#endif
