/*
 * format: everything cloudctl prints for humans, kept free of I/O other than
 * the FILE it is handed and of the clock (callers pass "now"), so golden
 * tests can feed fixture JSON and compare the bytes: aligned tables, ages,
 * the instance state column, sizes, event lines and error lines.
 */
#ifndef CLOUD_CLI_FORMAT_H
#define CLOUD_CLI_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <time.h>

#include <jansson.h>

enum fmt_mode { FMT_TABLE = 0, FMT_WIDE, FMT_JSON, FMT_NAME };

enum fmt_color { FMT_PLAIN = 0, FMT_GREEN, FMT_YELLOW, FMT_RED, FMT_BOLD };

/* Parses "table" (or ""), "wide", "json", "name"; -1 when unknown. */
int fmt_mode_parse(const char *s);

/* A table: columns padded to the widest cell, three spaces apart. */
struct fmt_table;
struct fmt_table *fmt_table_new(size_t ncols, const char *const *headers);
/* cells[ncols] (NULL prints "-"); colors may be NULL. Cells are copied. */
void fmt_table_row(struct fmt_table *t, const char *const *cells,
                   const enum fmt_color *colors);
void fmt_table_print(const struct fmt_table *t, FILE *out, bool color);
void fmt_table_free(struct fmt_table *t);

/* RFC 3339 (UTC "Z" or a +hh:mm offset, optional fraction) to time_t. */
int fmt_parse_time(const char *s, time_t *out);
/* kubectl-style compact duration: 45s, 3m12s, 25m, 5h10m, 3d, 2y. */
void fmt_duration(long long secs, char *buf, size_t n);
/* Age of a timestamp relative to now; "-" when absent or unparseable. */
char *fmt_age(const char *rfc3339, time_t now);

/* "running", "exited (143)", "running (stopping)"... caller frees. */
char *fmt_instance_state(const json_t *inst);
enum fmt_color fmt_instance_color(const json_t *inst);
/* True for exited, failed and lost: the instance will not run again. */
bool fmt_state_is_final(const char *state);

/* 256 -> "256Mi", 1536 -> "1.5Gi". */
char *fmt_mib(long long mib);
/* 12345678 -> "11.8MiB". */
char *fmt_bytes(long long n);

/* Tables of API objects (items is a JSON array); FMT_JSON is not handled. */
void fmt_instances(FILE *out, const json_t *items, enum fmt_mode mode,
                   time_t now, bool color);
void fmt_services(FILE *out, const json_t *items, enum fmt_mode mode,
                  time_t now, bool color);
void fmt_hosts(FILE *out, const json_t *items, enum fmt_mode mode, time_t now,
               bool color);
void fmt_images(FILE *out, const json_t *items, enum fmt_mode mode, time_t now,
                bool color);
/* format_config.c: a service's config object (table KEY VALUE sorted by
 * key; FMT_NAME prints the keys), its history items (VERSION AGE KEYS
 * CONFIG) and an endpoints object (NAME ADDR; FMT_NAME prints addrs). */
void fmt_config(FILE *out, const json_t *cfg, enum fmt_mode mode);
void fmt_config_history(FILE *out, const json_t *items, enum fmt_mode mode,
                        time_t now);
void fmt_endpoints(FILE *out, const json_t *eps, enum fmt_mode mode);
/* One line per event: TIME TYPE NAME MESSAGE. */
void fmt_event_line(FILE *out, const json_t *ev, bool color);
void fmt_events(FILE *out, const json_t *items, enum fmt_mode mode, bool color);

/*
 * The one error line for a non-2xx answer: "cloudctl: <message>" using the
 * server's error.message, or a description of the status when the body is
 * not the API's error object. No trailing newline; caller frees.
 */
char *fmt_error_line(int status, const char *body, size_t len,
                     const char *method, const char *path);

/* Copies s replacing control characters, so server text cannot drive the
 * terminal; max bytes kept (0 = no limit). Caller frees. */
char *fmt_sanitize(const char *s, size_t max);

#endif
