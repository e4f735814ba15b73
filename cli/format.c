/*
 * format: tables and one-liners for humans (see format.h). Output must be
 * byte-for-byte stable: golden files in tests/golden/cli/ pin it, and
 * scripts that parse `cloudctl ps` columns rely on it too.
 */
#include "format.h"

#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"

/* Column gap: like docker ps, wide enough to see where a column ends. */
#define FMT_GAP 3
/* Error and event text from a server is cut there: one terminal line. */
#define FMT_MESSAGE_MAX 1024

int
fmt_mode_parse(const char *s)
{
    static const char *const names[] = {
        [FMT_TABLE] = "table",
        [FMT_WIDE] = "wide",
        [FMT_JSON] = "json",
        [FMT_NAME] = "name",
    };

    if (s == NULL || *s == '\0')
        return FMT_TABLE;
    for (size_t m = 0; m < sizeof(names) / sizeof(names[0]); m++)
        if (strcmp(s, names[m]) == 0)
            return (int)m;
    return -1;
}

char *
fmt_sanitize(const char *s, size_t max)
{
    size_t len = strlen(s);
    if (max != 0 && len > max)
        len = max;
    char *r = xstrndup(s, len);
    for (char *p = r; *p != '\0'; p++) {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20 || c == 0x7f)
            *p = (c == '\t' || c == '\n' || c == '\r') ? ' ' : '?';
    }
    return r;
}

/* ---- tables ---------------------------------------------------------- */

struct fmt_table {
    size_t ncols;
    size_t nrows;
    size_t cap;
    char **cells; /* nrows+1 rows (header first) of ncols */
    enum fmt_color *colors;
};

static void
table_append(struct fmt_table *t, const char *const *cells,
             const enum fmt_color *colors)
{
    if (t->nrows + 1 >= t->cap) {
        t->cap = t->cap ? t->cap * 2 : 16;
        t->cells = xrealloc(t->cells, t->cap * t->ncols * sizeof(char *));
        t->colors =
            xrealloc(t->colors, t->cap * t->ncols * sizeof(enum fmt_color));
    }
    size_t base = t->nrows * t->ncols;
    for (size_t c = 0; c < t->ncols; c++) {
        const char *v = cells[c];
        t->cells[base + c] =
            fmt_sanitize(v != NULL && *v != '\0' ? v : "-", FMT_MESSAGE_MAX);
        t->colors[base + c] = colors ? colors[c] : FMT_PLAIN;
    }
    t->nrows++;
}

struct fmt_table *
fmt_table_new(size_t ncols, const char *const *headers)
{
    struct fmt_table *t = xcalloc(1, sizeof(*t));
    t->ncols = ncols;
    table_append(t, headers, NULL);
    return t;
}

void
fmt_table_row(struct fmt_table *t, const char *const *cells,
              const enum fmt_color *colors)
{
    table_append(t, cells, colors);
}

/* Display width: UTF-8 continuation bytes take no column. */
static size_t
text_width(const char *s)
{
    size_t w = 0;
    for (; *s != '\0'; s++)
        if (((unsigned char)*s & 0xC0) != 0x80)
            w++;
    return w;
}

static const char *
color_on(enum fmt_color c)
{
    switch (c) {
    case FMT_GREEN:
        return "\033[32m";
    case FMT_YELLOW:
        return "\033[33m";
    case FMT_RED:
        return "\033[31m";
    case FMT_BOLD:
        return "\033[1m";
    case FMT_PLAIN:
        break;
    }
    return "";
}

void
fmt_table_print(const struct fmt_table *t, FILE *out, bool color)
{
    size_t *width = xcalloc(t->ncols, sizeof(size_t));

    for (size_t r = 0; r < t->nrows; r++)
        for (size_t c = 0; c < t->ncols; c++) {
            size_t w = text_width(t->cells[r * t->ncols + c]);
            if (w > width[c])
                width[c] = w;
        }
    for (size_t r = 0; r < t->nrows; r++) {
        for (size_t c = 0; c < t->ncols; c++) {
            const char *cell = t->cells[r * t->ncols + c];
            enum fmt_color col = t->colors[r * t->ncols + c];
            bool paint = color && col != FMT_PLAIN;
            fprintf(out, "%s%s%s", paint ? color_on(col) : "", cell,
                    paint ? "\033[0m" : "");
            /* No trailing blanks: golden files and `cut` stay clean. */
            if (c + 1 < t->ncols)
                fprintf(out, "%*s",
                        (int)(width[c] - text_width(cell) + FMT_GAP), "");
        }
        fputc('\n', out);
    }
    free(width);
}

void
fmt_table_free(struct fmt_table *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->nrows * t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
    free(t->colors);
    free(t);
}

/* ---- time ------------------------------------------------------------ */

static int
parse_digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9')
            return -1;
        v = v * 10 + (c - '0');
    }
    *p += n;
    *out = v;
    return 0;
}

int
fmt_parse_time(const char *s, time_t *out)
{
    struct tm tm;
    int year, mon, day, hour, min, sec;
    const char *p = s;

    if (s == NULL)
        return -1;
    memset(&tm, 0, sizeof(tm));
    if (parse_digits(&p, 4, &year) < 0 || *p++ != '-' ||
        parse_digits(&p, 2, &mon) < 0 || *p++ != '-' ||
        parse_digits(&p, 2, &day) < 0 || (*p != 'T' && *p != 't' && *p != ' '))
        return -1;
    p++;
    if (parse_digits(&p, 2, &hour) < 0 || *p++ != ':' ||
        parse_digits(&p, 2, &min) < 0 || *p++ != ':' ||
        parse_digits(&p, 2, &sec) < 0)
        return -1;
    if (mon < 1 || mon > 12 || day < 1 || day > 31 || hour > 23 || min > 59 ||
        sec > 60)
        return -1;
    if (*p == '.')
        for (p++; *p >= '0' && *p <= '9'; p++)
            ;
    long offset = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh, om;
        int sign = *p == '-' ? -1 : 1;
        p++;
        if (parse_digits(&p, 2, &oh) < 0 || *p++ != ':' ||
            parse_digits(&p, 2, &om) < 0)
            return -1;
        offset = sign * (oh * 3600L + om * 60L);
    } else {
        return -1;
    }
    if (*p != '\0')
        return -1;
    tm.tm_year = year - 1900;
    tm.tm_mon = mon - 1;
    tm.tm_mday = day;
    tm.tm_hour = hour;
    tm.tm_min = min;
    tm.tm_sec = sec;
    *out = timegm(&tm) - offset;
    return 0;
}

void
fmt_duration(long long s, char *buf, size_t n)
{
    if (s < 0)
        s = 0; /* clock skew between client and server */
    if (s < 120)
        snprintf(buf, n, "%llds", s);
    else if (s < 600 && s % 60 != 0)
        snprintf(buf, n, "%lldm%llds", s / 60, s % 60);
    else if (s < 3 * 3600)
        snprintf(buf, n, "%lldm", s / 60);
    else if (s < 8 * 3600 && (s / 60) % 60 != 0)
        snprintf(buf, n, "%lldh%lldm", s / 3600, (s / 60) % 60);
    else if (s < 48 * 3600)
        snprintf(buf, n, "%lldh", s / 3600);
    else if (s < 8 * 86400 && (s / 3600) % 24 != 0)
        snprintf(buf, n, "%lldd%lldh", s / 86400, (s / 3600) % 24);
    else if (s < 2 * 365 * 86400LL)
        snprintf(buf, n, "%lldd", s / 86400);
    else
        snprintf(buf, n, "%lldy", s / (365 * 86400LL));
}

char *
fmt_age(const char *ts, time_t now)
{
    time_t t;
    char buf[32];

    if (ts == NULL || fmt_parse_time(ts, &t) < 0)
        return xstrdup("-");
    fmt_duration((long long)(now - t), buf, sizeof(buf));
    return xstrdup(buf);
}

/* ---- values ---------------------------------------------------------- */

static const char *
jstr(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

static long long
jint(const json_t *o, const char *key)
{
    return json_integer_value(json_object_get(o, key));
}

bool
fmt_state_is_final(const char *state)
{
    return state != NULL &&
           (strcmp(state, "exited") == 0 || strcmp(state, "failed") == 0 ||
            strcmp(state, "lost") == 0);
}

char *
fmt_instance_state(const json_t *inst)
{
    const char *state = jstr(inst, "state");
    const char *desired = jstr(inst, "desired_state");
    json_t *code = json_object_get(inst, "exit_code");

    if (state == NULL)
        return xstrdup("-");
    if (fmt_state_is_final(state)) {
        if (json_is_integer(code))
            return xasprintf("%s (%" JSON_INTEGER_FORMAT ")", state,
                             json_integer_value(code));
        return xstrdup(state);
    }
    /* Show where a live instance is heading, like kubectl's Terminating. */
    if (desired != NULL && strcmp(desired, "deleted") == 0)
        return xasprintf("%s (deleting)", state);
    if (desired != NULL && strcmp(desired, "stopped") == 0 &&
        strcmp(state, "stopping") != 0)
        return xasprintf("%s (stopping)", state);
    return xstrdup(state);
}

enum fmt_color
fmt_instance_color(const json_t *inst)
{
    const char *state = jstr(inst, "state");

    if (state == NULL)
        return FMT_PLAIN;
    if (strcmp(state, "running") == 0)
        return FMT_GREEN;
    if (strcmp(state, "failed") == 0 || strcmp(state, "lost") == 0)
        return FMT_RED;
    if (strcmp(state, "exited") == 0)
        return jint(inst, "exit_code") == 0 ? FMT_PLAIN : FMT_RED;
    return FMT_YELLOW;
}

static enum fmt_color
host_color(const char *state)
{
    if (state == NULL)
        return FMT_PLAIN;
    if (strcmp(state, "ready") == 0)
        return FMT_GREEN;
    if (strcmp(state, "down") == 0)
        return FMT_RED;
    return FMT_YELLOW;
}

/* One decimal below 100 units ("1.5Gi", "15.5Gi"), none above, and none
 * when it would be ".0": allocations near capacity must not round up to
 * look full. */
static char *
scaled(long long v, long long unit, const char *suffix)
{
    if (v / unit >= 100)
        return xasprintf("%lld%s", v / unit, suffix);
    long long tenths = (v * 10) / unit;
    if (tenths % 10 == 0)
        return xasprintf("%lld%s", tenths / 10, suffix);
    return xasprintf("%lld.%lld%s", tenths / 10, tenths % 10, suffix);
}

char *
fmt_mib(long long mib)
{
    if (mib >= 1024 * 1024)
        return scaled(mib, 1024 * 1024, "Ti");
    if (mib >= 1024)
        return scaled(mib, 1024, "Gi");
    return xasprintf("%lldMi", mib);
}

char *
fmt_bytes(long long n)
{
    if (n >= 1024LL * 1024 * 1024)
        return scaled(n, 1024LL * 1024 * 1024, "GiB");
    if (n >= 1024 * 1024)
        return scaled(n, 1024 * 1024, "MiB");
    if (n >= 1024)
        return scaled(n, 1024, "KiB");
    return xasprintf("%lldB", n);
}

/* "k=v,k2=v2" from an object of strings, keys sorted for stable output. */
static char *
join_labels(const json_t *obj)
{
    size_t n = json_object_size(obj);
    const char **keys;
    const char *key;
    json_t *v;
    size_t i = 0;
    char *r = xstrdup("");

    if (!json_is_object(obj) || n == 0)
        return r;
    keys = xcalloc(n, sizeof(*keys));
    json_object_foreach((json_t *)obj, key, v) keys[i++] = key;
    for (size_t a = 1; a < n; a++)
        for (size_t b = a; b > 0 && strcmp(keys[b - 1], keys[b]) > 0; b--) {
            const char *tmp = keys[b];
            keys[b] = keys[b - 1];
            keys[b - 1] = tmp;
        }
    for (i = 0; i < n; i++) {
        const char *sv = jstr(obj, keys[i]);
        char *next =
            xasprintf("%s%s%s=%s", r, i ? "," : "", keys[i], sv ? sv : "");
        free(r);
        r = next;
    }
    free(keys);
    return r;
}

/* "a,b,c" from an array of strings (ports: "http:8080/tcp"). */
static char *
join_array(const json_t *arr)
{
    char *r = xstrdup("");
    size_t i;
    json_t *v;

    json_array_foreach((json_t *)arr, i, v)
    {
        char *item;
        if (json_is_string(v))
            item = xstrdup(json_string_value(v));
        else if (json_is_object(v) && json_object_get(v, "port"))
            item =
                xasprintf("%s%s%lld/%s", jstr(v, "name") ? jstr(v, "name") : "",
                          jstr(v, "name") ? ":" : "", jint(v, "port"),
                          jstr(v, "protocol") ? jstr(v, "protocol") : "tcp");
        else if (json_is_object(v) && jstr(v, "address"))
            item = xstrdup(jstr(v, "address"));
        else
            item = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        char *next = xasprintf("%s%s%s", r, i ? "," : "", item ? item : "");
        free(item);
        free(r);
        r = next;
    }
    return r;
}

static char *
int_str(const json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v))
        return xstrdup("-");
    return xasprintf("%" JSON_INTEGER_FORMAT, json_integer_value(v));
}

/* An image's name:tag, from "ref" or built from name and tag. */
static char *
image_ref(const json_t *img)
{
    if (jstr(img, "ref") != NULL)
        return xstrdup(jstr(img, "ref"));
    if (jstr(img, "name") == NULL)
        return xstrdup(jstr(img, "id") ? jstr(img, "id") : "-");
    return xasprintf("%s:%s", jstr(img, "name"),
                     jstr(img, "tag") ? jstr(img, "tag") : "latest");
}

static void
print_names(FILE *out, const json_t *items, const char *key)
{
    size_t i;
    json_t *it;
    json_array_foreach((json_t *)items, i, it)
    {
        char *v = key == NULL      ? image_ref(it)
                  : jstr(it, key)  ? xstrdup(jstr(it, key))
                  : jstr(it, "id") ? xstrdup(jstr(it, "id"))
                                   : NULL;
        if (v != NULL) {
            char *s = fmt_sanitize(v, 0);
            fprintf(out, "%s\n", s);
            free(s);
        }
        free(v);
    }
}

/* Frees every string in cells[0..n). */
static void
free_cells(char **cells, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(cells[i]);
}

/* A table of API objects: its columns, plain and wide, and how one object
 * becomes a row. FMT_NAME prints name_key of each (NULL: image refs). */
struct list_layout {
    void (*row)(struct fmt_table *t, const json_t *it, bool wide, time_t now);
    const char *name_key;
    const char *const *head;
    size_t ncols;
    const char *const *whead;
    size_t nwcols;
};

static void
print_list(FILE *out, const json_t *items, const struct list_layout *l,
           enum fmt_mode mode, time_t now, bool color)
{
    bool wide = mode == FMT_WIDE;
    struct fmt_table *t;
    size_t i;
    json_t *it;

    if (mode == FMT_NAME) {
        print_names(out, items, l->name_key);
        return;
    }
    t = wide ? fmt_table_new(l->nwcols, l->whead)
             : fmt_table_new(l->ncols, l->head);
    json_array_foreach((json_t *)items, i, it)
    {
        l->row(t, it, wide, now);
    }
    fmt_table_print(t, out, color);
    fmt_table_free(t);
}

#define NCOLS(a) (sizeof(a) / sizeof((a)[0]))

/* ---- instances ------------------------------------------------------- */

static void
instance_row(struct fmt_table *t, const json_t *it, bool wide, time_t now)
{
    const char *id = jstr(it, "id");
    char *state = fmt_instance_state(it);
    char *age = fmt_age(jstr(it, "created_at"), now);
    enum fmt_color sc = fmt_instance_color(it);
    if (wide) {
        char *cells[4];
        cells[0] = int_str(it, "restart_count");
        cells[1] = join_array(json_object_get(it, "addresses"));
        cells[2] = join_labels(json_object_get(it, "labels"));
        const char *reason = jstr(it, "reason");
        if (reason == NULL)
            reason = jstr(it, "pending_reason");
        const char *row[] = {id,
                             jstr(it, "name"),
                             jstr(it, "service"),
                             jstr(it, "image"),
                             state,
                             jstr(it, "desired_state"),
                             jstr(it, "host"),
                             cells[0],
                             cells[1],
                             age,
                             reason,
                             cells[2]};
        enum fmt_color cols[12] = {[4] = sc};
        fmt_table_row(t, row, cols);
        free_cells(cells, 3);
    } else {
        /* 12 characters, like docker: unique in practice, and any
         * unique prefix is accepted back by the server. */
        char shortid[13] = "";
        if (id != NULL)
            xstrlcpy(shortid, id, sizeof(shortid));
        const char *row[] = {shortid, jstr(it, "name"), jstr(it, "service"),
                             state,   jstr(it, "host"), age};
        enum fmt_color cols[6] = {[3] = sc};
        fmt_table_row(t, row, cols);
    }
    free(state);
    free(age);
}

void
fmt_instances(FILE *out, const json_t *items, enum fmt_mode mode, time_t now,
              bool color)
{
    static const char *const head[] = {"ID",    "NAME", "SERVICE",
                                       "STATE", "HOST", "AGE"};
    static const char *const whead[] = {
        "ID",   "NAME",     "SERVICE",   "IMAGE", "STATE",  "DESIRED",
        "HOST", "RESTARTS", "ADDRESSES", "AGE",   "REASON", "LABELS"};
    static const struct list_layout layout = {
        instance_row, "name", head, NCOLS(head), whead, NCOLS(whead)};

    print_list(out, items, &layout, mode, now, color);
}

/* ---- services -------------------------------------------------------- */

/* "2/3": running of desired instances, as kubectl's READY; "-/3" from a
 * controller that does not report running. */
static char *
running_pair(const json_t *svc, bool *short_of)
{
    json_t *run = json_object_get(svc, "running");
    long long want = jint(svc, "replicas");

    *short_of = !json_is_integer(run) || json_integer_value(run) != want;
    if (json_is_integer(run))
        return xasprintf("%lld/%lld", (long long)json_integer_value(run), want);
    return xasprintf("-/%lld", want);
}

static void
service_row(struct fmt_table *t, const json_t *it, bool wide, time_t now)
{
    const char *state = jstr(it, "state");
    enum fmt_color sc =
        state && strcmp(state, "active") != 0 ? FMT_YELLOW : FMT_PLAIN;
    char *c[8];
    bool short_of;
    c[0] = running_pair(it, &short_of);
    enum fmt_color rc = short_of ? FMT_YELLOW : FMT_PLAIN;
    c[1] = int_str(it, "generation");
    c[2] = fmt_age(jstr(it, "created_at"), now);
    if (wide) {
        json_t *res = json_object_get(it, "resources");
        json_t *pl = json_object_get(it, "placement");
        c[3] = int_str(res, "vcpus");
        c[4] = json_is_integer(json_object_get(res, "memory_mib"))
                   ? fmt_mib(jint(res, "memory_mib"))
                   : xstrdup("-");
        c[5] = join_array(json_object_get(pl, "constraints"));
        c[6] = join_array(json_object_get(it, "ports"));
        c[7] = join_labels(json_object_get(it, "labels"));
        const char *row[] = {jstr(it, "name"),
                             jstr(it, "id"),
                             jstr(it, "image"),
                             c[0],
                             jstr(it, "restart"),
                             c[1],
                             c[3],
                             c[4],
                             jstr(pl, "strategy"),
                             c[5],
                             c[6],
                             state,
                             c[2],
                             c[7]};
        enum fmt_color cols[14] = {[3] = rc, [11] = sc};
        fmt_table_row(t, row, cols);
        free_cells(c, 8);
    } else {
        const char *row[] = {jstr(it, "name"),
                             jstr(it, "image"),
                             c[0],
                             jstr(it, "restart"),
                             c[1],
                             state,
                             c[2]};
        enum fmt_color cols[7] = {[2] = rc, [5] = sc};
        fmt_table_row(t, row, cols);
        free_cells(c, 3);
    }
}

void
fmt_services(FILE *out, const json_t *items, enum fmt_mode mode, time_t now,
             bool color)
{
    static const char *const head[] = {"NAME", "IMAGE", "RUNNING", "RESTART",
                                       "GEN",  "STATE", "AGE"};
    static const char *const whead[] = {
        "NAME",  "ID",    "IMAGE",  "RUNNING",  "RESTART",
        "GEN",   "CPUS",  "MEMORY", "STRATEGY", "CONSTRAINTS",
        "PORTS", "STATE", "AGE",    "LABELS"};
    static const struct list_layout layout = {
        service_row, "name", head, NCOLS(head), whead, NCOLS(whead)};

    print_list(out, items, &layout, mode, now, color);
}

/* ---- hosts ----------------------------------------------------------- */

/* "2/16" style allocated/capacity pairs. */
static char *
alloc_pair(const json_t *host, const char *key, bool mib)
{
    json_t *a = json_object_get(json_object_get(host, "allocated"), key);
    json_t *c = json_object_get(json_object_get(host, "capacity"), key);
    char *as, *cs, *r;

    if (!json_is_integer(c))
        return xstrdup("-");
    if (mib) {
        as = json_is_integer(a) ? fmt_mib(json_integer_value(a)) : xstrdup("0");
        cs = fmt_mib(json_integer_value(c));
    } else {
        as = xasprintf("%" JSON_INTEGER_FORMAT,
                       json_is_integer(a) ? json_integer_value(a) : 0);
        cs = xasprintf("%" JSON_INTEGER_FORMAT, json_integer_value(c));
    }
    r = xasprintf("%s/%s", as, cs);
    free(as);
    free(cs);
    return r;
}

static void
host_row(struct fmt_table *t, const json_t *it, bool wide, time_t now)
{
    const char *state = jstr(it, "state");
    char *c[7];
    c[0] = alloc_pair(it, "vcpus", false);
    c[1] = alloc_pair(it, "memory_mib", true);
    c[2] = int_str(it, "instances");
    c[3] = fmt_age(jstr(it, "last_seen"), now);
    if (wide) {
        char *disk = alloc_pair(it, "disk_gib", false);
        c[4] = xasprintf("%sGi", disk);
        free(disk);
        c[5] = join_labels(json_object_get(it, "labels"));
        c[6] = int_str(it, "session_epoch");
        const char *row[] = {jstr(it, "name"),
                             jstr(it, "id"),
                             state,
                             jstr(it, "address"),
                             c[0],
                             c[1],
                             c[4],
                             c[2],
                             c[5],
                             jstr(it, "hypervisor"),
                             jstr(it, "arch"),
                             c[6],
                             c[3]};
        enum fmt_color cols[13] = {[2] = host_color(state)};
        fmt_table_row(t, row, cols);
        free_cells(c, 7);
    } else {
        const char *row[] = {jstr(it, "name"),
                             state,
                             jstr(it, "address"),
                             c[0],
                             c[1],
                             c[2],
                             c[3]};
        enum fmt_color cols[7] = {[1] = host_color(state)};
        fmt_table_row(t, row, cols);
        free_cells(c, 4);
    }
}

void
fmt_hosts(FILE *out, const json_t *items, enum fmt_mode mode, time_t now,
          bool color)
{
    static const char *const head[] = {
        "NAME", "STATE", "ADDRESS", "CPUS", "MEMORY", "INSTANCES", "LAST SEEN"};
    static const char *const whead[] = {
        "NAME",   "ID",    "STATE",     "ADDRESS", "CPUS",
        "MEMORY", "DISK",  "INSTANCES", "LABELS",  "HYPERVISOR",
        "ARCH",   "EPOCH", "LAST SEEN"};
    static const struct list_layout layout = {
        host_row, "name", head, NCOLS(head), whead, NCOLS(whead)};

    print_list(out, items, &layout, mode, now, color);
}

/* ---- images ---------------------------------------------------------- */

/* "sha256:0123456789ab" from a full digest: enough to tell blobs apart. */
static char *
short_digest(const char *d)
{
    if (d == NULL)
        return xstrdup("-");
    return xstrndup(d, strncmp(d, "sha256:", 7) == 0 ? 7 + 12 : 12);
}

static void
image_row(struct fmt_table *t, const json_t *it, bool wide, time_t now)
{
    const char *id = jstr(it, "id");
    char shortid[13] = "";
    char *c[5];
    char *ref = image_ref(it);
    if (id != NULL)
        xstrlcpy(shortid, id, sizeof(shortid));
    c[0] = json_is_integer(json_object_get(it, "size"))
               ? fmt_bytes(jint(it, "size"))
               : xstrdup("-");
    c[1] = fmt_age(jstr(it, "created_at"), now);
    if (wide) {
        c[2] = short_digest(jstr(it, "kernel_digest"));
        c[3] = short_digest(jstr(it, "initrd_digest"));
        c[4] = short_digest(jstr(it, "disk_digest"));
        const char *row[] = {ref,  shortid, jstr(it, "kind"),    c[0], c[2],
                             c[3], c[4],    jstr(it, "cmdline"), c[1]};
        fmt_table_row(t, row, NULL);
        free_cells(c, 5);
    } else {
        const char *row[] = {ref, shortid, jstr(it, "kind"), c[0], c[1]};
        fmt_table_row(t, row, NULL);
        free_cells(c, 2);
    }
    free(ref);
}

void
fmt_images(FILE *out, const json_t *items, enum fmt_mode mode, time_t now,
           bool color)
{
    static const char *const head[] = {"REF", "ID", "KIND", "SIZE", "AGE"};
    static const char *const whead[] = {"REF",  "ID",      "KIND",
                                        "SIZE", "KERNEL",  "INITRD",
                                        "DISK", "CMDLINE", "AGE"};
    static const struct list_layout layout = {image_row,   NULL,  head,
                                              NCOLS(head), whead, NCOLS(whead)};

    print_list(out, items, &layout, mode, now, color);
}

/* ---- events ---------------------------------------------------------- */

static enum fmt_color
event_color(const char *type)
{
    const char *verb = type ? strrchr(type, '.') : NULL;
    if (verb == NULL)
        return FMT_PLAIN;
    verb++;
    if (strcmp(verb, "created") == 0 || strcmp(verb, "uncordoned") == 0)
        return FMT_GREEN;
    if (strcmp(verb, "deleted") == 0 || strcmp(verb, "killed") == 0 ||
        strcmp(verb, "failed") == 0 || strcmp(verb, "lost") == 0 ||
        strcmp(verb, "down") == 0)
        return FMT_RED;
    if (strcmp(verb, "cordoned") == 0 || strcmp(verb, "draining") == 0)
        return FMT_YELLOW;
    return FMT_PLAIN;
}

void
fmt_event_line(FILE *out, const json_t *ev, bool color)
{
    const char *type = jstr(ev, "type");
    const char *name = jstr(ev, "name");
    char *msg = fmt_sanitize(jstr(ev, "message") ? jstr(ev, "message") : "",
                             FMT_MESSAGE_MAX);
    char *stype = fmt_sanitize(type ? type : "-", 64);
    char *sname = fmt_sanitize(
        name ? name : (jstr(ev, "object_id") ? jstr(ev, "object_id") : "-"),
        128);
    char *stime = fmt_sanitize(jstr(ev, "time") ? jstr(ev, "time") : "-", 64);
    enum fmt_color c = color ? event_color(type) : FMT_PLAIN;

    /* Padded, not tabulated: a stream cannot know later widths. */
    fprintf(out, "%-24s  %s%-20s%s  %-16s  %s\n", stime, color_on(c), stype,
            c != FMT_PLAIN ? "\033[0m" : "", sname, msg);
    free(msg);
    free(stype);
    free(sname);
    free(stime);
}

void
fmt_events(FILE *out, const json_t *items, enum fmt_mode mode, bool color)
{
    size_t i;
    json_t *it;

    json_array_foreach((json_t *)items, i, it)
    {
        if (mode == FMT_NAME)
            fprintf(out, "%" JSON_INTEGER_FORMAT "\n", jint(it, "id"));
        else
            fmt_event_line(out, it, color);
    }
}

/* ---- errors ---------------------------------------------------------- */

static const char *
status_text(int status)
{
    switch (status) {
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 409:
        return "Conflict";
    case 412:
        return "Precondition Failed";
    case 413:
        return "Payload Too Large";
    case 415:
        return "Unsupported Media Type";
    case 422:
        return "Unprocessable Entity";
    case 429:
        return "Too Many Requests";
    case 500:
        return "Internal Server Error";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return "";
    }
}

char *
fmt_error_line(int status, const char *body, size_t len, const char *method,
               const char *path)
{
    json_t *root = NULL;
    const char *msg = NULL, *field = NULL;
    char *line;

    if (body != NULL && len > 0)
        root = json_loadb(body, len, JSON_DECODE_ANY, NULL);
    json_t *err = json_object_get(root, "error");
    msg = json_string_value(json_object_get(err, "message"));
    field = json_string_value(json_object_get(err, "field"));

    if (msg != NULL && *msg != '\0') {
        char *m = fmt_sanitize(msg, FMT_MESSAGE_MAX);
        /* Name the field only if the sentence does not already. */
        if (field != NULL && strstr(m, field) == NULL) {
            char *f = fmt_sanitize(field, 128);
            line = xasprintf("cloudctl: %s (field %s)", m, f);
            free(f);
        } else {
            line = xasprintf("cloudctl: %s", m);
        }
        free(m);
    } else {
        /* Not our API's error object (a proxy, an old server): describe
         * the status and keep the first line of a short text body. */
        char *first = NULL;
        if (root == NULL && body != NULL && len > 0 && len < 512) {
            char *b = xstrndup(body, len);
            b[strcspn(b, "\r\n")] = '\0';
            first = fmt_sanitize(b, 200);
            free(b);
        }
        line = xasprintf("cloudctl: %s %s: server answered %d%s%s%s%s", method,
                         path, status, *status_text(status) ? " " : "",
                         status_text(status), first && *first ? ": " : "",
                         first ? first : "");
        free(first);
    }
    json_decref(root);
    return line;
}
