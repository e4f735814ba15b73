/*
 * cli: helpers every command uses (see cli.h): option parsing with the
 * global flags, server/token resolution, API calls that print the server's
 * error as one line, paginated lists, and small utilities.
 */
#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http.h"
#include "mem.h"

#define CLI_DEFAULT_URL "http://127.0.0.1:7070"
/* Safety net against a server that hands back the same cursor forever. */
#define CLI_MAX_PAGES 100000
/* Items asked for a page of a list route. */
#define CLI_PAGE 1000

enum {
    G_SERVER = CLI_OPT_GLOBAL,
    G_TOKEN,
    G_OUTPUT,
    G_HELP,
    G_INSECURE,
    G_CACERT,
};

const struct arg_spec cli_global_specs[] = {
    {"server", 0, true, G_SERVER},
    {"token", 0, true, G_TOKEN},
    {"output", 'o', true, G_OUTPUT},
    {"help", 'h', false, G_HELP},
    {"insecure", 0, false, G_INSECURE},
    {"cacert", 0, true, G_CACERT},
    {NULL, 0, false, 0},
};

/* The message fmt and ap make, control characters replaced (fmt_sanitize). */
static char *sanitized_message(const char *fmt, va_list ap)
    __attribute__((format(printf, 1, 0)));

static char *
sanitized_message(const char *fmt, va_list ap)
{
    char *msg = xvasprintf(fmt, ap);
    char *clean = fmt_sanitize(msg, 0);

    free(msg);
    return clean;
}

int
cli_fail(struct cli_ctx *ctx, const char *fmt, ...)
{
    va_list ap;
    char *clean;

    va_start(ap, fmt);
    clean = sanitized_message(fmt, ap);
    va_end(ap);
    fprintf(ctx->err, "cloudctl: %s\n", clean);
    free(clean);
    return CLI_EXIT_FAIL;
}

int
cli_usage(struct cli_ctx *ctx, const char *cmd, const char *fmt, ...)
{
    va_list ap;
    char *clean;

    va_start(ap, fmt);
    clean = sanitized_message(fmt, ap);
    va_end(ap);
    if (cmd != NULL)
        fprintf(ctx->err, "cloudctl: %s: %s (see 'cloudctl %s --help')\n", cmd,
                clean, cmd);
    else
        fprintf(ctx->err, "cloudctl: %s (see 'cloudctl --help')\n", clean);
    free(clean);
    return CLI_EXIT_USAGE;
}

/* A flag given twice: the last one counts. */
static int
replace_string(char **dst, const char *val)
{
    free(*dst);
    *dst = xstrdup(val);
    return 0;
}

int
cli_global_opt(struct cli_ctx *ctx, const char *cmd, int id, const char *val)
{
    int m;

    switch (id) {
    case G_SERVER:
        return replace_string(&ctx->flag_server, val);
    case G_TOKEN:
        return replace_string(&ctx->flag_token, val);
    case G_OUTPUT:
        m = fmt_mode_parse(val);
        if (m < 0)
            return cli_usage(
                ctx, cmd,
                "output format \"%s\" is not one of table, wide, json, name",
                val);
        ctx->output = (enum fmt_mode)m;
        ctx->output_set = true;
        return 0;
    case G_HELP:
        ctx->help = true;
        return 0;
    case G_INSECURE:
        ctx->insecure = true;
        return 0;
    case G_CACERT:
        return replace_string(&ctx->cacert, val);
    }
    return cli_usage(ctx, cmd, "internal error: option %d unhandled", id);
}

int
cli_parse(struct cli_ctx *ctx, const char *cmd, const struct arg_spec *specs,
          unsigned flags, int argc, char **argv, cli_opt_fn fn, void *st,
          char ***pos, int *npos)
{
    struct args_iter it;
    const char *val;
    int id, rc;

    *pos = xcalloc((size_t)argc + 1, sizeof(char *));
    *npos = 0;
    args_init(&it, argc, argv, 1, specs, cli_global_specs, flags);
    while ((id = args_next(&it, &val)) != ARGS_END) {
        if (id == ARGS_ERROR)
            return cli_usage(ctx, cmd, "%s", it.error);
        if (id == ARGS_POSITIONAL) {
            (*pos)[(*npos)++] = (char *)val;
            continue;
        }
        if (id >= CLI_OPT_GLOBAL)
            rc = cli_global_opt(ctx, cmd, id, val);
        else
            rc = fn != NULL ? fn(ctx, st, id, val) : 0;
        if (rc != 0)
            return rc;
    }
    if (ctx->help) {
        cli_show_help(ctx, cmd);
        return CLI_HELP_SHOWN;
    }
    return 0;
}

int
cli_want_args(struct cli_ctx *ctx, const char *cmd, char **pos, int npos,
              int min, int max, const char *need)
{
    if (npos >= min && (max < 0 || npos <= max))
        return 0;
    if (max >= 0 && npos > max && need == NULL)
        return cli_usage(ctx, cmd, "unexpected argument \"%s\"", pos[max]);
    return cli_usage(ctx, cmd, "%s", need);
}

/* ---- server and token ------------------------------------------------ */

static char *
context_path(void)
{
    const char *xdg = getenv("XDG_CONFIG_HOME");
    const char *home = getenv("HOME");

    if (xdg != NULL && *xdg != '\0')
        return xasprintf("%s/cloud/context.json", xdg);
    if (home != NULL && *home != '\0')
        return xasprintf("%s/.config/cloud/context.json", home);
    return NULL;
}

static const char *
nonempty_env(const char *name)
{
    const char *v = getenv(name);
    return v != NULL && *v != '\0' ? v : NULL;
}

int
cli_connect(struct cli_ctx *ctx)
{
    char *path = NULL, *err = NULL;
    json_t *file = NULL;
    const char *url, *token, *file_url = NULL;
    int rc = CLI_EXIT_FAIL;

    if (ctx->http != NULL)
        return 0;
    path = context_path();
    if (path != NULL && access(path, F_OK) == 0) {
        json_error_t jerr;
        file = json_load_file(path, 0, &jerr);
        if (file == NULL || !json_is_object(file)) {
            cli_fail(ctx, "context file %s is not a JSON object: %s", path,
                     file ? "wrong type" : jerr.text);
            goto out;
        }
        file_url = cli_jstr(file, "url");
    }

    url = ctx->flag_server;
    if (url == NULL)
        url = nonempty_env("CLOUD_URL");
    if (url == NULL)
        url = file_url;
    if (url == NULL)
        url = CLI_DEFAULT_URL;

    token = ctx->flag_token;
    if (token == NULL)
        token = nonempty_env("CLOUD_TOKEN");
    /* The file's token belongs to the file's server: never send it to a
     * different URL given by flag or environment. */
    if (token == NULL && file != NULL &&
        (file_url == NULL || strcmp(file_url, url) == 0))
        token = cli_jstr(file, "token");

    ctx->server = xstrdup(url);
    ctx->token = token ? xstrdup(token) : NULL;
    ctx->http =
        cli_http_new(ctx->server, ctx->token, ctx->cacert, ctx->insecure, &err);
    if (ctx->http == NULL) {
        cli_fail(ctx, "%s", err);
        goto out;
    }
    rc = 0;
out:
    free(err);
    free(path);
    json_decref(file);
    return rc;
}

/* ---- API calls ------------------------------------------------------- */

int
cli_api(struct cli_ctx *ctx, const char *method, const char *path, json_t *body,
        json_t **out, int *status)
{
    return cli_api_h(ctx, method, path, NULL, body, out, status);
}

int
cli_api_h(struct cli_ctx *ctx, const char *method, const char *path,
          const char *const *headers, json_t *body, json_t **out, int *status)
{
    struct cli_http_resp r;
    char *b = NULL;
    json_t *parsed = NULL;
    int rc = CLI_EXIT_FAIL;

    *out = NULL;
    if (status != NULL)
        *status = 0;
    if (cli_connect(ctx) != 0)
        return CLI_EXIT_FAIL;
    if (body != NULL)
        b = json_dumps(body, JSON_COMPACT);
    if (cli_http_request(ctx->http, method, path, b, headers, &r) < 0) {
        cli_fail(ctx, "%s", r.error);
        goto out;
    }
    if (status != NULL)
        *status = r.status;
    if (r.len > 0)
        parsed = json_loadb(r.body, r.len, JSON_DECODE_ANY, NULL);
    if (r.status >= 200 && r.status < 300) {
        if (r.len > 0 && parsed == NULL) {
            cli_fail(ctx, "%s %s: the server's answer is not JSON", method,
                     path);
            goto out;
        }
        *out = parsed;
        parsed = NULL;
        rc = 0;
        goto out;
    }
    if (status != NULL) {
        /* The caller decides; it may print cli_error_line() later. */
        *out = parsed;
        parsed = NULL;
    } else {
        cli_fail_answer(ctx, r.status, r.body, r.len, method, path);
    }
out:
    json_decref(parsed);
    free(b);
    cli_http_resp_clear(&r);
    return rc;
}

/* A page's "next": a string cursor or a version number; NULL at the end. */
static char *
next_cursor(const json_t *ans)
{
    json_t *next = json_object_get(ans, "next");

    if (json_is_integer(next))
        return xasprintf("%" JSON_INTEGER_FORMAT, json_integer_value(next));
    if (json_is_string(next) && *json_string_value(next) != '\0')
        return xstrdup(json_string_value(next));
    return NULL;
}

int
cli_api_pages(struct cli_ctx *ctx, const char *path, int limit, int max_pages,
              json_t **items)
{
    char *cursor = NULL;
    json_t *all = json_array();
    int rc = CLI_EXIT_FAIL;

    *items = NULL;
    for (int page = 0; page < max_pages; page++) {
        json_t *ans = NULL;
        char *esc = cursor ? cli_escape(cursor) : NULL;
        char *p =
            xasprintf("%s%climit=%d%s%s", path, strchr(path, '?') ? '&' : '?',
                      limit, esc ? "&after=" : "", esc ? esc : "");
        free(esc);
        rc = cli_api(ctx, "GET", p, NULL, &ans, NULL);
        free(p);
        if (rc != 0)
            goto out;
        json_t *arr = json_object_get(ans, "items");
        if (!json_is_array(arr)) {
            json_decref(ans);
            rc = cli_fail(ctx, "GET %s: the server's answer has no items list",
                          path);
            goto out;
        }
        json_array_extend(all, arr);
        char *next = next_cursor(ans);
        json_decref(ans);
        if (next == NULL || (cursor != NULL && strcmp(next, cursor) == 0)) {
            free(next);
            *items = all;
            all = NULL;
            rc = 0;
            goto out;
        }
        free(cursor);
        cursor = next;
    }
    rc = cli_fail(ctx, "GET %s: the list did not end after %d pages", path,
                  max_pages);
out:
    free(cursor);
    json_decref(all);
    return rc;
}

int
cli_api_list(struct cli_ctx *ctx, const char *path, json_t **items)
{
    return cli_api_pages(ctx, path, CLI_PAGE, CLI_MAX_PAGES, items);
}

int
cli_fail_answer(struct cli_ctx *ctx, int status, const char *body, size_t len,
                const char *method, const char *path)
{
    char *line = fmt_error_line(status, body, len, method, path);

    fprintf(ctx->err, "%s\n", line);
    free(line);
    return CLI_EXIT_FAIL;
}

void
cli_print_api_error(struct cli_ctx *ctx, int status, json_t *body,
                    const char *method, const char *path)
{
    char *b = body ? json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;

    cli_fail_answer(ctx, status, b, b ? strlen(b) : 0, method, path);
    free(b);
}

char *
cli_escape(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(s);
    char *r = xmalloc(n * 3 + 1), *p = r;

    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
            (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' ||
            c == '~' || c == ':') {
            *p++ = (char)c;
        } else {
            *p++ = '%';
            *p++ = hex[c >> 4];
            *p++ = hex[c & 15];
        }
    }
    *p = '\0';
    return r;
}

char *
cli_object_path(const char *collection, const char *name, const char *suffix)
{
    char *esc = cli_escape(name);
    char *p = xasprintf("/v1/%s/%s%s", collection, esc, suffix ? suffix : "");

    free(esc);
    return p;
}

void
cli_print_json(struct cli_ctx *ctx, json_t *v)
{
    char *s =
        json_dumps(v, JSON_INDENT(2) | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);
    if (s != NULL)
        fprintf(ctx->out, "%s\n", s);
    free(s);
}

void
cli_print_line(struct cli_ctx *ctx, const char *s)
{
    char *clean = fmt_sanitize(s, 0);

    fprintf(ctx->out, "%s\n", clean);
    free(clean);
}

const char *
cli_jstr(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

long
cli_parse_duration(const char *s)
{
    char *end;
    long mult = 1;

    if (s == NULL || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || v < 0)
        return -1;
    if (strcmp(end, "s") == 0 || *end == '\0')
        mult = 1;
    else if (strcmp(end, "m") == 0)
        mult = 60;
    else if (strcmp(end, "h") == 0)
        mult = 3600;
    else
        return -1;
    if (v > 100L * 365 * 86400 / mult)
        return -1;
    return v * mult;
}

void
cli_sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000,
                          .tv_nsec = (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

double
cli_now_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}
