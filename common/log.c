/*
 * log: writes log lines to stderr: one JSON object per line when stderr is
 * not a terminal (what tests and log shippers parse), else readable text
 *   2026-12-07T23:40:01.123Z INFO  gateway  host hv1 registered ...
 * (time in UTC, level, module, message). --log-format forces either. The
 * message is never altered, only escaped: control characters never reach
 * a terminal raw, in either format.
 */
#include "log.h"
#include "log_priv.h"
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
static const char *const level_text[] = {"DEBUG", "INFO", "WARN", "ERROR"};

void
log_init(const char *progname, enum log_level min, int json)
{
    log_prog = progname;
    log_min = min;
    log_set_json(json);
}

void
log_set_level(enum log_level min)
{
    log_min = min;
}

void
log_set_json(int json)
{
    log_json = json < 0 ? !isatty(STDERR_FILENO) : json != 0;
}

int
log_is_json(void)
{
    return log_json;
}

int
log_format_parse(const char *s, int *json)
{
    if (strcmp(s, "json") == 0)
        *json = 1;
    else if (strcmp(s, "text") == 0)
        *json = 0;
    else
        return -1;
    return 0;
}

/*
 * Appends s to buf as a JSON string body (no quotes), escaping as needed.
 * For text (json == 0) only what a terminal would act on is escaped, the
 * same way: C0 controls, DEL and the C1 controls U+0080..U+009F (the
 * UTF-8 pair C2 80..C2 9F; a terminal may take U+009B as CSI); quotes and
 * backslashes stay as they are.
 */
static size_t
msg_escape(char *buf, size_t cap, size_t off, const char *s, int json)
{
    for (; *s && off + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (json && (c == '"' || c == '\\')) {
            buf[off++] = '\\';
            buf[off++] = (char)c;
        } else if (c == '\n') {
            buf[off++] = '\\';
            buf[off++] = 'n';
        } else if (c < 0x20 || (!json && c == 0x7f)) {
            off += (size_t)snprintf(buf + off, cap - off, "\\u%04x", c);
        } else if (!json && c == 0xc2 && (unsigned char)s[1] >= 0x80 &&
                   (unsigned char)s[1] <= 0x9f) {
            off += (size_t)snprintf(buf + off, cap - off, "\\u%04x",
                                    (unsigned char)s[1]);
            s++;
        } else {
            buf[off++] = (char)c;
        }
    }
    buf[off] = '\0';
    return off;
}

size_t
log_format_line(char *buf, size_t cap, int json, const struct timeval *tv,
                enum log_level lvl, const char *prog, const char *module,
                const char *msg)
{
    struct tm tm;
    char ts[40];
    time_t secs = tv->tv_sec;
    size_t off;

    gmtime_r(&secs, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    if (json)
        off = (size_t)snprintf(
            buf, cap,
            "{\"time\":\"%s.%03ldZ\",\"level\":\"%s\",\"prog\":\"%s\","
            "\"module\":\"%s\",\"msg\":\"",
            ts, (long)(tv->tv_usec / 1000), level_names[lvl], prog, module);
    else
        off = (size_t)snprintf(buf, cap, "%s.%03ldZ %-5s %-8s ", ts,
                               (long)(tv->tv_usec / 1000), level_text[lvl],
                               module);
    if (off >= cap - 4)
        off = cap - 4;
    off = msg_escape(buf, cap - 4, off, msg, json);
    if (json) {
        buf[off++] = '"';
        buf[off++] = '}';
    }
    buf[off++] = '\n';
    buf[off] = '\0';
    return off;
}

void
log_vmsg(enum log_level lvl, const char *module, int errnum, const char *fmt,
         va_list ap)
{
    char msg[2048], line[LOG_LINE_MAX];
    struct timeval tv;
    int n;

    if (lvl < log_min)
        return;
    n = vsnprintf(msg, sizeof(msg), fmt, ap);
    if (n < 0)
        return;
    if (errnum != 0 && (size_t)n < sizeof(msg))
        snprintf(msg + n, sizeof(msg) - (size_t)n, ": %s", strerror(errnum));

    gettimeofday(&tv, NULL);
    log_format_line(line, sizeof(line), log_json, &tv, lvl, log_prog, module,
                    msg);
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
