/*
 * log: writes log lines to stderr, JSON when not on a TTY.
 */
#include "log.h"
#include "monotime.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static const char *log_prog = "cloud";
static enum log_level log_min = LOG_LVL_INFO;
static int log_json = -1;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void
log_init(const char *progname, enum log_level min, int json)
{
    log_prog = progname;
    log_min = min;
    log_json = json < 0 ? !isatty(STDERR_FILENO) : json;
}

void
log_set_level(enum log_level min)
{
    log_min = min;
}

/* Appends s to buf as a JSON string body (no quotes), escaping as needed. */
static size_t
json_escape(char *buf, size_t cap, size_t off, const char *s)
{
    for (; *s && off + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            buf[off++] = '\\';
            buf[off++] = (char)c;
        } else if (c == '\n') {
            buf[off++] = '\\';
            buf[off++] = 'n';
        } else if (c < 0x20) {
            off += (size_t)snprintf(buf + off, cap - off, "\\u%04x", c);
        } else {
            buf[off++] = (char)c;
        }
    }
    buf[off] = '\0';
    return off;
}

void
log_vmsg(enum log_level lvl, const char *module, int errnum, const char *fmt,
         va_list ap)
{
    char msg[2048], line[4600];
    struct timeval tv;
    struct tm tm;
    char ts[40];
    int n;

    if (lvl < log_min)
        return;
    n = vsnprintf(msg, sizeof(msg), fmt, ap);
    if (n < 0)
        return;
    if (errnum != 0 && (size_t)n < sizeof(msg))
        snprintf(msg + n, sizeof(msg) - (size_t)n, ": %s", strerror(errnum));

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);

    if (log_json == 1) {
        size_t off = (size_t)snprintf(
            line, sizeof(line),
            "{\"time\":\"%s.%03ldZ\",\"level\":\"%s\",\"prog\":\"%s\","
            "\"module\":\"%s\",\"msg\":\"",
            ts, (long)(tv.tv_usec / 1000), level_names[lvl], log_prog, module);
        off = json_escape(line, sizeof(line) - 4, off, msg);
        memcpy(line + off, "\"}\n", 4);
    } else {
        snprintf(line, sizeof(line), "%s %-5s %s: %s\n", ts + 11,
                 level_names[lvl], module, msg);
    }
    fputs(line, stderr);
}

void
log_msg(enum log_level lvl, const char *module, int errnum, const char *fmt,
        ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_vmsg(lvl, module, errnum, fmt, ap);
    va_end(ap);
}

void
log_fatal(const char *module, int errnum, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_vmsg(LOG_LVL_ERR, module, errnum, fmt, ap);
    va_end(ap);
    exit(1);
}

int
log_rate_ok_at(struct log_rate *lr, unsigned per_sec, long long now_ms,
               unsigned *dropped)
{
    if (lr->n == 0 || now_ms - lr->window_ms >= 1000 ||
        now_ms < lr->window_ms) {
        lr->window_ms = now_ms;
        lr->n = 0;
    }
    if (lr->n >= per_sec) {
        lr->dropped++;
        return 0;
    }
    lr->n++;
    *dropped = lr->dropped;
    lr->dropped = 0;
    return 1;
}

int
log_rate_ok(struct log_rate *lr, unsigned per_sec, unsigned *dropped)
{
    return log_rate_ok_at(lr, per_sec, mono_ms(), dropped);
}
