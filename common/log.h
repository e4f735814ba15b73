/*
 * log: OpenBSD log.c style logging for every daemon and tool.
 * One JSON object per line on stderr when stderr is not a TTY, readable text
 * on a TTY. The module prefix names where a line comes from.
 */
#ifndef CLOUD_LOG_H
#define CLOUD_LOG_H

#include <stdarg.h>

enum log_level { LOG_LVL_DEBUG = 0, LOG_LVL_INFO, LOG_LVL_WARN, LOG_LVL_ERR };

/*
 * Sets the program name and minimum level; json < 0 means "auto": JSON
 * unless stderr is a terminal, where lines are text (log_format_text).
 */
void log_init(const char *progname, enum log_level min, int json);
void log_set_level(enum log_level min);
/* Forces the format after log_init: 1 JSON, 0 text, < 0 auto again. */
void log_set_json(int json);
/* "json" -> 1, "text" -> 0 into *json; else -1 (nothing said: the caller
 * names its option in the error). */
int log_format_parse(const char *s, int *json);

#define CLOUD_PRINTF(a, b) __attribute__((format(printf, a, b)))

void log_msg(enum log_level lvl, const char *module, int errnum,
             const char *fmt, ...) CLOUD_PRINTF(4, 5);
void log_vmsg(enum log_level lvl, const char *module, int errnum,
              const char *fmt, va_list ap) CLOUD_PRINTF(4, 0);
_Noreturn void log_fatal(const char *module, int errnum, const char *fmt, ...)
    CLOUD_PRINTF(3, 4);

#ifndef LOG_MODULE
#define LOG_MODULE "main"
#endif

/*
 * A noisy call site's budget (one struct per site, zeroed; not locked: use
 * it from one thread). log_rate_ok says whether this line may be logged:
 * at most per_sec lines in each second; the lines refused meanwhile are
 * counted and *dropped says, on the next line allowed, how many went
 * unlogged since the previous one, so the line can say so. Used where one
 * failure repeats for every request (a database failover: a 503 per
 * request, thousands a second).
 */
struct log_rate {
    long long window_ms; /* start of the current second */
    unsigned n;          /* lines allowed in it */
    unsigned dropped;    /* lines refused since the last one allowed */
};
int log_rate_ok(struct log_rate *lr, unsigned per_sec, unsigned *dropped);
/* The same at a given monotonic time (tests). */
int log_rate_ok_at(struct log_rate *lr, unsigned per_sec, long long now_ms,
                   unsigned *dropped);

/* log_warn appends strerror(errno); log_warnx does not. */
#define log_debug(...) log_msg(LOG_LVL_DEBUG, LOG_MODULE, 0, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LVL_INFO, LOG_MODULE, 0, __VA_ARGS__)
#define log_warnx(...) log_msg(LOG_LVL_WARN, LOG_MODULE, 0, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LVL_WARN, LOG_MODULE, errno, __VA_ARGS__)
#define log_errx(...) log_msg(LOG_LVL_ERR, LOG_MODULE, 0, __VA_ARGS__)
#define fatal(...) log_fatal(LOG_MODULE, errno, __VA_ARGS__)
#define fatalx(...) log_fatal(LOG_MODULE, 0, __VA_ARGS__)

#endif
