/*
 * cli: what every cloudctl command shares. The invocation context (where
 * output goes, which server, which output mode), the exit-code convention,
 * the one-line error helpers and the calls to the REST API that print the
 * server's error on failure. Commands live in cmd_*.c, dispatch in main.c.
 */
#ifndef CLOUD_CLI_H
#define CLOUD_CLI_H

#include <stdbool.h>
#include <stdio.h>
#include <time.h>

#include <jansson.h>

#include "args.h"
#include "format.h"

#ifndef CLOUD_VERSION
#define CLOUD_VERSION "0.0.0"
#endif

/* Exit codes: like most Unix tools, 2 means "you called me wrong". */
enum {
    CLI_EXIT_OK = 0,
    CLI_EXIT_FAIL = 1,
    CLI_EXIT_USAGE = 2,
};

/* cli_parse() answers this when --help was asked and printed: exit 0. */
#define CLI_HELP_SHOWN (-1)

struct cli_http;

struct cli_ctx {
    FILE *out;
    FILE *err;
    /* Flags and environment; resolved into server/token by cli_connect(). */
    char *flag_server;
    char *flag_token;
    char *cacert;
    bool insecure;
    enum fmt_mode output;
    bool output_set;
    bool color;    /* ANSI colours on out: a TTY and no NO_COLOR */
    bool progress; /* progress lines on err: a TTY */
    bool help;     /* --help seen while parsing */
    char *server;  /* resolved base URL */
    char *token;   /* resolved bearer token, or NULL */
    struct cli_http *http;
};

/* A command: argv[0] is the command name, the rest its arguments. */
struct cli_cmd {
    const char *name;
    int (*run)(struct cli_ctx *ctx, int argc, char **argv);
    const char *summary;
    const char *help; /* full text for `cloudctl CMD --help` */
};

/* Entry point with injectable streams, so tests can drive the whole CLI. */
int cli_main(int argc, char **argv, FILE *out, FILE *err);

/* Prints "cloudctl: <message>" on err; returns CLI_EXIT_FAIL. */
int cli_fail(struct cli_ctx *ctx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Prints "cloudctl: <cmd>: <message> (see ...)"; returns CLI_EXIT_USAGE. */
int cli_usage(struct cli_ctx *ctx, const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prints a command's full help on out. Returns CLI_EXIT_OK. */
int cli_show_help(struct cli_ctx *ctx, const char *cmd);

/*
 * Option handling shared by all commands. cli_parse() runs the parser over
 * argv[1..] with the command's specs plus the global ones, hands each
 * command option to fn, and collects positionals into pos (array of argc
 * pointers owned by the caller). Returns 0, CLI_EXIT_USAGE (line printed)
 * or CLI_HELP_SHOWN.
 */
typedef int (*cli_opt_fn)(struct cli_ctx *ctx, void *st, int id,
                          const char *val);
int cli_parse(struct cli_ctx *ctx, const char *cmd,
              const struct arg_spec *specs, unsigned flags, int argc,
              char **argv, cli_opt_fn fn, void *st, char ***pos, int *npos);

/*
 * After cli_parse(): checks that there are min to max positionals (max -1:
 * no limit). Too few, or too many when need is set, prints need; too many
 * without need names the first extra one. Returns 0 or CLI_EXIT_USAGE.
 */
int cli_want_args(struct cli_ctx *ctx, const char *cmd, char **pos, int npos,
                  int min, int max, const char *need);

/* Option ids at or above this belong to the global set. */
#define CLI_OPT_GLOBAL 1000
/* --server, --token, -o/--output, -h/--help, --insecure, --cacert. */
extern const struct arg_spec cli_global_specs[];
/* Applies a global option to ctx; returns 0 or CLI_EXIT_USAGE (printed). */
int cli_global_opt(struct cli_ctx *ctx, const char *cmd, int id,
                   const char *val);

/* Resolves server and token (flags, env, context file) and opens the client. */
int cli_connect(struct cli_ctx *ctx);

/*
 * One API call. body may be NULL; *out receives the parsed answer (a JSON
 * value, or NULL for an empty body) on 2xx. On any failure prints the one
 * error line and returns CLI_EXIT_FAIL. With status != NULL, non-2xx answers
 * are not printed but returned: *status holds the HTTP code (0 on transport
 * error, which is printed) and *out the error body.
 */
int cli_api(struct cli_ctx *ctx, const char *method, const char *path,
            json_t *body, json_t **out, int *status);
/* The same with extra request headers ("Name: value", NULL-ended). */
int cli_api_h(struct cli_ctx *ctx, const char *method, const char *path,
              const char *const *headers, json_t *body, json_t **out,
              int *status);

/* Prints the one error line for a non-2xx answer with body (len bytes,
 * as it came); returns CLI_EXIT_FAIL. */
int cli_fail_answer(struct cli_ctx *ctx, int status, const char *body,
                    size_t len, const char *method, const char *path);
/* The same for an answer kept by cli_api() (JSON body, may be NULL). */
void cli_print_api_error(struct cli_ctx *ctx, int status, json_t *body,
                         const char *method, const char *path);

/*
 * GETs every page of a list route (following "next"), returns the items as
 * one array in *items. path may already carry a query string.
 */
int cli_api_list(struct cli_ctx *ctx, const char *path, json_t **items);
/*
 * The same with limit items a page and at most max_pages pages (more is an
 * error). "next" may be a string cursor or a version number.
 */
int cli_api_pages(struct cli_ctx *ctx, const char *path, int limit,
                  int max_pages, json_t **items);

/* Percent-encodes s for a path segment or query value; caller frees. */
char *cli_escape(const char *s);
/* "/v1/<collection>/<name, escaped><suffix>" (suffix may be NULL); caller
 * frees. */
char *cli_object_path(const char *collection, const char *name,
                      const char *suffix);

/* Prints a JSON value indented on out, for -o json and inspect. */
void cli_print_json(struct cli_ctx *ctx, json_t *v);
/* Prints s on out, control characters replaced (fmt_sanitize), and a
 * newline: a name or id the user typed or the server sent. */
void cli_print_line(struct cli_ctx *ctx, const char *s);
/* The string member key of o; NULL when absent, not a string, or o is not
 * an object. */
const char *cli_jstr(const json_t *o, const char *key);

/* Parses "30s", "5m", "1h", "90" (seconds) into seconds; -1 if invalid. */
long cli_parse_duration(const char *s);

/* Sleeps ms milliseconds (polling loops). */
void cli_sleep_ms(long ms);

/* Monotonic seconds, for timeouts and progress. */
double cli_now_mono(void);

/* Commands (cmd_*.c). */
int cmd_run(struct cli_ctx *ctx, int argc, char **argv);
int cmd_ps(struct cli_ctx *ctx, int argc, char **argv);
int cmd_inspect(struct cli_ctx *ctx, int argc, char **argv);
int cmd_logs(struct cli_ctx *ctx, int argc, char **argv);
int cmd_kill(struct cli_ctx *ctx, int argc, char **argv);
int cmd_rm(struct cli_ctx *ctx, int argc, char **argv);
int cmd_stop(struct cli_ctx *ctx, int argc, char **argv);
int cmd_start(struct cli_ctx *ctx, int argc, char **argv);
int cmd_restart(struct cli_ctx *ctx, int argc, char **argv);
int cmd_wait(struct cli_ctx *ctx, int argc, char **argv);
int cmd_scale(struct cli_ctx *ctx, int argc, char **argv);
int cmd_services(struct cli_ctx *ctx, int argc, char **argv);
int cmd_hosts(struct cli_ctx *ctx, int argc, char **argv);
int cmd_images(struct cli_ctx *ctx, int argc, char **argv);
int cmd_events(struct cli_ctx *ctx, int argc, char **argv);
int cmd_config(struct cli_ctx *ctx, int argc, char **argv);
int cmd_endpoints(struct cli_ctx *ctx, int argc, char **argv);
int cmd_version(struct cli_ctx *ctx, int argc, char **argv);

/* Shared by run and scale: waits until a service has its replicas running. */
int cli_wait_service(struct cli_ctx *ctx, const char *name, long timeout_s);

/* The command table (main.c), for help and completion. */
extern const struct cli_cmd cli_commands[];
const struct cli_cmd *cli_find_command(const char *name);

#endif
