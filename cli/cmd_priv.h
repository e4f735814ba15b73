/*
 * cmd_priv: helpers the command modules share and the unit tests reach:
 * number and size parsing, the spec options common to `run` and
 * `services update`, progress lines and the --wait polling loops.
 */
#ifndef CLOUD_CLI_CMD_PRIV_H
#define CLOUD_CLI_CMD_PRIV_H

#include <stdbool.h>

#include <jansson.h>

#include "cli.h"

/* Parses a base-10 integer within [min, max]; -1 when it is not one. */
int cli_parse_int(const char *s, long long min, long long max, long long *out);
/* A --timeout value ("90s", "5m", "1h") into *seconds; a usage error
 * naming cmd otherwise. */
int cli_parse_timeout(struct cli_ctx *ctx, const char *cmd, const char *val,
                      long *seconds);
/* "256", "256M", "2G", "1Ti"... into MiB (bare numbers are MiB). */
int cli_parse_size_mib(const char *s, long long *mib);
/* Adds "K=V" (or K from the environment) to a JSON object. */
int cli_add_env(struct cli_ctx *ctx, const char *cmd, json_t *obj,
                const char *kv);

/* Adds "K=V" to a labels object (the server checks the rules). */
int cli_add_label(struct cli_ctx *ctx, const char *cmd, json_t *obj,
                  const char *kv);
/*
 * list.c: the shape every `ls`-style command shares. A filter is a flag
 * whose value becomes a query parameter (repeatable ones, like label
 * selectors, may be given several times). cli_list_run() parses the
 * flags, fetches every page of route and prints the API's list (-o json)
 * or print's table.
 */
#define CLI_LIST_MAX_FILTERS 8
typedef void (*cli_list_print_fn)(FILE *out, const json_t *items,
                                  enum fmt_mode mode, time_t now, bool color);
struct cli_list_filter {
    const char *long_name;
    char short_name;
    const char *key; /* the query parameter */
    bool repeatable;
};
struct cli_list {
    const char *cmd;   /* for usage lines */
    const char *route; /* e.g. "/v1/hosts" */
    const struct cli_list_filter *filters; /* ends with long_name NULL */
    cli_list_print_fn print;
};
int cli_list_run(struct cli_ctx *ctx, const struct cli_list *l, int argc,
                 char **argv);
/* Appends "?key=<escaped val>" (or "&..."); NULL val leaves path as is.
 * Takes path and returns the new one. */
char *cli_list_query(char *path, const char *key, const char *val);
/* Appends "label=<escaped>" for each selector term (a JSON array). */
char *cli_add_selectors(char *path, json_t *selectors);
/* -o json: {"items":[...],"next":null}; else print's table. Returns 0. */
int cli_list_print(struct cli_ctx *ctx, json_t *items, cli_list_print_fn print);
/*
 * list.c: inspect or an action on each named object of a collection, the
 * other shape `hosts`, `images` and `services` share. cli_each_run() calls
 * method on /v1/<collection>/<NAME><suffix> for each NAME argument (at
 * least one; none is a usage error naming need). GET prints the objects
 * as JSON (one, or an array of several); another method prints each
 * answer as JSON with -o json when json_answers is set, else calls done,
 * which prints the line the user sees (NULL: the NAME as given). The
 * first failure ends the run, unless keep_going: then every NAME is
 * tried and the exit status says one failed.
 */
struct cli_each {
    const char *cmd;        /* for usage lines */
    const char *collection; /* e.g. "hosts" */
    const char *need;       /* e.g. "a host NAME is required" */
    bool json_answers;
    void (*done)(struct cli_ctx *ctx, const char *name, json_t *answer);
    bool keep_going;
};
int cli_each_run(struct cli_ctx *ctx, const struct cli_each *e,
                 const char *method, const char *suffix, int argc, char **argv);
/*
 * list.c: a resource command (`hosts`, `images`, `services`): ls (also
 * list, and the command alone or with flags only, like `docker ps`),
 * inspect (also get),
 * the actions (cli_each_run with their method and suffix), one other
 * subcommand with its own handler, and a usage error naming subs for
 * anything else.
 */
struct cli_action {
    const char *name, *alias; /* alias may be NULL */
    const char *method;
    const char *suffix; /* may be NULL */
};
struct cli_resource {
    const struct cli_list *list;
    const struct cli_each *each;
    const struct cli_action *actions; /* ends with name NULL */
    const char *other;                /* NULL: none */
    int (*other_run)(struct cli_ctx *ctx, int argc, char **argv);
    const char *subs; /* e.g. "ls, inspect, push, rm" */
};
int cli_resource_run(struct cli_ctx *ctx, const struct cli_resource *r,
                     int argc, char **argv);
/* Options that shape an instance spec, shared by run and services update. */
enum {
    CLI_SPEC_CPUS = 1,
    CLI_SPEC_MEMORY,
    CLI_SPEC_DISK,
    CLI_SPEC_RESTART,
    CLI_SPEC_CONSTRAINT,
    CLI_SPEC_SPREAD,
    CLI_SPEC_BINPACK,
    CLI_SPEC_ENV,
    CLI_SPEC_MAX_PER_HOST,
    CLI_SPEC_STOP_GRACE,
};

/* Their flags, the same in the option tables of run and services update. */
/* clang-format off */
#define CLI_SPEC_ARG_SPECS                                                     \
    {"cpus", 0, true, CLI_SPEC_CPUS},                                          \
    {"memory", 'm', true, CLI_SPEC_MEMORY},                                    \
    {"disk", 0, true, CLI_SPEC_DISK},                                          \
    {"restart", 0, true, CLI_SPEC_RESTART},                                    \
    {"constraint", 0, true, CLI_SPEC_CONSTRAINT},                              \
    {"spread", 0, false, CLI_SPEC_SPREAD},                                     \
    {"binpack", 0, false, CLI_SPEC_BINPACK},                                   \
    {"env", 'e', true, CLI_SPEC_ENV},                                          \
    {"max-per-host", 0, true, CLI_SPEC_MAX_PER_HOST},                          \
    {"stop-grace", 0, true, CLI_SPEC_STOP_GRACE}
/* clang-format on */

struct cli_spec {
    json_t *body; /* the request being built */
    json_t *resources;
    json_t *constraints;
    json_t *env;
    bool env_set;
    const char *strategy;
    long long max_per_host; /* -1: not given */
};

void cli_spec_init(struct cli_spec *sp);
/* Applies one of the options above (id is its CLI_SPEC_*). */
int cli_spec_opt(struct cli_ctx *ctx, const char *cmd, struct cli_spec *sp,
                 int id, const char *val);
/* Moves resources/placement/env into body; fill_defaults completes a
 * partial resources object with the API's documented defaults. */
void cli_spec_finish(struct cli_spec *sp, bool fill_defaults);
void cli_spec_free(struct cli_spec *sp);

/*
 * Parses `run` arguments into the request body. Returns 0, CLI_EXIT_USAGE
 * or CLI_HELP_SHOWN; no network.
 */
int cli_run_build(struct cli_ctx *ctx, int argc, char **argv, json_t **body,
                  bool *is_service, bool *wait, long *timeout);

/* One rewritable progress line on stderr, only on a terminal. */
void cli_progress(struct cli_ctx *ctx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void cli_progress_done(struct cli_ctx *ctx);
/* Sleeps *delay_ms between two polls, then doubles it up to a ceiling. */
void cli_poll_sleep(long *delay_ms);

/* One poll of an instance: GET path, its state and its name (id when it
 * has none). NULL after printing why the GET failed; else caller frees. */
json_t *cli_poll_instance(struct cli_ctx *ctx, const char *path, const char *id,
                          const char **state, const char **name);
/* Polls an instance until running (or exited 0); a failure prints why.
 * *final gets the last object seen (may be NULL). timeout_s 0 = none. */
int cli_wait_instance_running(struct cli_ctx *ctx, const char *id,
                              long timeout_s, json_t **final);

/* Parses `services update NAME ...` into a PATCH body; no network.
 * *link and *unlink get the --link/--unlink names (arrays, maybe empty):
 * they edit the current links, so the caller reads the service first. */
int cli_services_update_build(struct cli_ctx *ctx, int argc, char **argv,
                              json_t **body, char **name, bool *wait,
                              long *timeout, json_t **link, json_t **unlink);

/* Follows a Server-Sent Events route until the server fails; raw prints
 * each event's data as it is instead of as an API event. */
int cli_watch(struct cli_ctx *ctx, const char *path, bool raw);
/* The same loop with callbacks: on_ev gets every event (instead of the
 * printing above), on_connect runs when a (re)connected stream first
 * answers. A non-zero return from either ends the watch with that code
 * (the callback printed why). Either may be NULL. */
typedef int (*cli_watch_event_fn)(struct cli_ctx *ctx, void *arg,
                                  const char *event, const char *data);
typedef int (*cli_watch_connect_fn)(struct cli_ctx *ctx, void *arg);
int cli_watch_cb(struct cli_ctx *ctx, const char *path, bool raw,
                 cli_watch_event_fn on_ev, cli_watch_connect_fn on_connect,
                 void *arg);

/* Keeps live instances (all of them with all), newest first. */
int cli_ps_filter(json_t *items, bool all, json_t **out);

#endif
