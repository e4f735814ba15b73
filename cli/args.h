/*
 * args: a small getopt_long replacement for cloudctl. It keeps no global
 * state (tests run many parses in one process), reports errors as text the
 * caller prints on one line, and can stop at the first positional so that
 * `run IMAGE ARGS...` passes the guest's flags through untouched, the way
 * `docker run` does.
 */
#ifndef CLOUD_CLI_ARGS_H
#define CLOUD_CLI_ARGS_H

#include <stdbool.h>
#include <stddef.h>

struct arg_spec {
    const char *long_name; /* without "--"; NULL ends the table */
    char short_name;       /* 0 when none */
    bool takes_value;
    int id; /* > 0 */
};

/* args_next() results besides an option id. */
enum {
    ARGS_END = 0,
    ARGS_POSITIONAL = -1,
    ARGS_ERROR = -2,
};

/* Flags for args_init(). */
enum {
    /* Everything after the first positional is positional too. */
    ARGS_STOP_AT_POSITIONAL = 1u << 0,
};

struct args_iter {
    int argc;
    char **argv;
    int i;              /* next argv index */
    const char *shortp; /* rest of a bundle like -af, or NULL */
    const struct arg_spec *specs[2];
    unsigned flags;
    bool only_positional; /* after "--" or the first positional */
    char error[256];
};

/* Iterates argv[first..argc); specs2 may be NULL (a second table). */
void args_init(struct args_iter *it, int argc, char **argv, int first,
               const struct arg_spec *specs, const struct arg_spec *specs2,
               unsigned flags);

/*
 * Returns an option id (value in *val when it takes one), ARGS_POSITIONAL
 * (*val is the argument), ARGS_END, or ARGS_ERROR (it->error says why).
 */
int args_next(struct args_iter *it, const char **val);

#endif
