/*
 * sched_selector: host labels and the label selectors of requests.
 * Every distinct key=value pair is interned to a small integer; a host keeps
 * a bitset over those integers, so checking a requirement is a few bit tests
 * instead of string compares. Selectors are parsed once (per service, say)
 * into lists of interned pairs.
 */
#include "sched_priv.h"

#include <ctype.h>
#include <string.h>

#include "mem.h"

static bool
is_key_char(int ch)
{
    return isalnum(ch) || ch == '.' || ch == '_' || ch == '/' || ch == '-';
}

static bool
is_value_char(int ch)
{
    return is_key_char(ch) || ch == ':';
}

uint32_t
sched_intern_key(struct sched_cluster *c, const char *key, size_t len)
{
    int64_t k = sched_strmap_get(&c->keys, key, len);
    if (k >= 0)
        return (uint32_t)k;
    uint32_t id = (uint32_t)c->keys.len;
    sched_strmap_put(&c->keys, key, len, id);
    return id;
}

uint32_t
sched_intern_pair(struct sched_cluster *c, const char *key, size_t klen,
                  const char *val, size_t vlen)
{
    char *text = xasprintf("%.*s=%.*s", (int)klen, key, (int)vlen, val);
    size_t tlen = strlen(text);
    int64_t p = sched_strmap_get(&c->pairs_by_text, text, tlen);
    if (p >= 0) {
        free(text);
        return (uint32_t)p;
    }
    if (c->npairs == c->pairs_cap) {
        c->pairs_cap = c->pairs_cap ? c->pairs_cap * 2 : 32;
        c->pairs = xrealloc(c->pairs, c->pairs_cap * sizeof(*c->pairs));
    }
    uint32_t id = (uint32_t)c->npairs++;
    c->pairs[id] = (struct sched_pair){
        .key = sched_intern_key(c, key, klen),
        .text = text,
    };
    sched_strmap_put(&c->pairs_by_text, text, tlen, id);
    return id;
}

int
sched_label_parse(struct sched_cluster *c, const char *label, uint32_t *pair)
{
    const char *eq = label ? strchr(label, '=') : NULL;
    if (eq == NULL || eq == label || eq[1] == '\0') {
        sched_set_error(c, "label \"%s\": expected key=value",
                        label ? label : "(null)");
        return -1;
    }
    for (const char *p = label; p < eq; p++) {
        if (!is_key_char((unsigned char)*p)) {
            sched_set_error(c, "label \"%s\": invalid character '%c' in key",
                            label, *p);
            return -1;
        }
    }
    for (const char *p = eq + 1; *p; p++) {
        if (!is_value_char((unsigned char)*p)) {
            sched_set_error(c, "label \"%s\": invalid character '%c' in value",
                            label, *p);
            return -1;
        }
    }
    *pair = sched_intern_pair(c, label, (size_t)(eq - label), eq + 1,
                              strlen(eq + 1));
    return 0;
}

/* --- selector parser --- */

struct parser {
    struct sched_cluster *c;
    const char *text;
    const char *p;
};

static void
skip_blanks(struct parser *ps)
{
    while (*ps->p == ' ' || *ps->p == '\t')
        ps->p++;
}

static int
parse_error(struct parser *ps, const char *what)
{
    sched_set_error(ps->c, "selector \"%s\": %s at column %zu", ps->text, what,
                    (size_t)(ps->p - ps->text) + 1);
    return -1;
}

/* Reads a run of key or value characters; returns its length (0 = none). */
static size_t
read_word(struct parser *ps, bool value, const char **start)
{
    skip_blanks(ps);
    *start = ps->p;
    while (*ps->p && (value ? is_value_char((unsigned char)*ps->p)
                            : is_key_char((unsigned char)*ps->p)))
        ps->p++;
    return (size_t)(ps->p - *start);
}

static void
req_add_pair(struct sched_req *r, uint32_t pair)
{
    for (uint32_t i = 0; i < r->npairs; i++)
        if (r->pairs[i] == pair)
            return; /* "in (a,a)" means "in (a)" */
    r->pairs = xrealloc(r->pairs, (r->npairs + 1) * sizeof(*r->pairs));
    r->pairs[r->npairs++] = pair;
}

static int
parse_value_list(struct parser *ps, struct sched_req *r, const char *key,
                 size_t klen)
{
    skip_blanks(ps);
    if (*ps->p != '(')
        return parse_error(ps, "expected '(' after in/notin");
    ps->p++;
    for (;;) {
        const char *v;
        size_t vlen = read_word(ps, true, &v);
        if (vlen == 0)
            return parse_error(ps, "expected a label value");
        req_add_pair(r, sched_intern_pair(ps->c, key, klen, v, vlen));
        skip_blanks(ps);
        if (*ps->p == ')') {
            ps->p++;
            return 0;
        }
        if (*ps->p != ',')
            return parse_error(ps, "expected ',' or ')' in value list");
        ps->p++;
    }
}

static char *
req_text(const struct sched_cluster *c, const struct sched_req *r,
         const char *key, size_t klen)
{
    const char *vals[2] = {NULL, NULL};
    if (r->op == SEL_EQ || r->op == SEL_NE) {
        vals[0] = strchr(c->pairs[r->pairs[0]].text, '=') + 1;
        return xasprintf("%.*s%s%s", (int)klen, key,
                         r->op == SEL_EQ ? "=" : "!=", vals[0]);
    }
    char *s = xasprintf("%.*s %s (", (int)klen, key,
                        r->op == SEL_IN ? "in" : "notin");
    for (uint32_t i = 0; i < r->npairs; i++) {
        char *n = xasprintf("%s%s%s", s, i ? "," : "",
                            strchr(c->pairs[r->pairs[i]].text, '=') + 1);
        free(s);
        s = n;
    }
    char *n = xasprintf("%s)", s);
    free(s);
    return n;
}

static int
parse_req(struct parser *ps, struct sched_req *r)
{
    const char *key;
    size_t klen = read_word(ps, false, &key);
    if (klen == 0)
        return parse_error(ps, "expected a label key");
    skip_blanks(ps);
    const char *v;
    size_t vlen;
    if (ps->p[0] == '=' || (ps->p[0] == '!' && ps->p[1] == '=')) {
        r->op = ps->p[0] == '=' ? SEL_EQ : SEL_NE;
        ps->p += ps->p[0] == '!' || ps->p[1] == '=' ? 2 : 1;
        vlen = read_word(ps, true, &v);
        if (vlen == 0)
            return parse_error(ps, "expected a label value");
        req_add_pair(r, sched_intern_pair(ps->c, key, klen, v, vlen));
    } else {
        const char *op;
        size_t olen = read_word(ps, false, &op);
        if (olen == 2 && strncmp(op, "in", 2) == 0) {
            r->op = SEL_IN;
        } else if (olen == 5 && strncmp(op, "notin", 5) == 0) {
            r->op = SEL_NOTIN;
        } else {
            ps->p = op;
            return parse_error(ps, "expected '=', '!=', 'in' or 'notin'");
        }
        if (parse_value_list(ps, r, key, klen) < 0)
            return -1;
    }
    r->text = req_text(ps->c, r, key, klen);
    return 0;
}

/* Requirements that name exactly one value the host must have: the tree of
 * that value holds every candidate, so placement may search it instead. */
static bool
tree_worthy(const struct sched_req *r)
{
    return (r->op == SEL_EQ || r->op == SEL_IN) && r->npairs == 1;
}

struct sched_selector *
sched_selector_parse(struct sched_cluster *c, const char *text)
{
    if (text == NULL)
        text = "";
    struct sched_selector *sel = xcalloc(1, sizeof(*sel));
    sel->c = c;
    struct parser ps = {.c = c, .text = text, .p = text};
    skip_blanks(&ps);
    while (*ps.p != '\0') {
        sel->reqs = xrealloc(sel->reqs, (sel->nreqs + 1) * sizeof(*sel->reqs));
        struct sched_req *r = &sel->reqs[sel->nreqs++];
        memset(r, 0, sizeof(*r));
        if (parse_req(&ps, r) < 0)
            goto fail;
        skip_blanks(&ps);
        if (*ps.p == '\0')
            break;
        if (*ps.p != ',') {
            parse_error(&ps, "expected ',' between requirements");
            goto fail;
        }
        ps.p++;
        skip_blanks(&ps);
        if (*ps.p == '\0') {
            parse_error(&ps, "expected a requirement after ','");
            goto fail;
        }
    }
    sel->text = xstrdup("");
    for (size_t i = 0; i < sel->nreqs; i++) {
        char *n =
            xasprintf("%s%s%s", sel->text, i ? "," : "", sel->reqs[i].text);
        free(sel->text);
        sel->text = n;
    }
    for (size_t i = 0; i < sel->nreqs; i++)
        if (tree_worthy(&sel->reqs[i]))
            sched_pair_track(c, sel->reqs[i].pairs[0]);
    c->nselectors++;
    return sel;

fail:
    sel->c = NULL; /* not counted as live */
    sched_selector_free(sel);
    return NULL;
}

void
sched_selector_free(struct sched_selector *sel)
{
    if (sel == NULL)
        return;
    if (sel->c != NULL) {
        for (size_t i = 0; i < sel->nreqs; i++)
            if (tree_worthy(&sel->reqs[i]))
                sched_pair_untrack(sel->c, sel->reqs[i].pairs[0]);
        sel->c->nselectors--;
    }
    for (size_t i = 0; i < sel->nreqs; i++) {
        free(sel->reqs[i].pairs);
        free(sel->reqs[i].text);
    }
    free(sel->reqs);
    free(sel->text);
    free(sel);
}

const char *
sched_selector_text(const struct sched_selector *sel)
{
    return sel ? sel->text : "";
}

bool
sched_selector_match(const struct sched_selector *sel,
                     const struct sched_host *h, size_t *failed)
{
    for (size_t i = 0; i < sel->nreqs; i++) {
        const struct sched_req *r = &sel->reqs[i];
        bool any = false;
        for (uint32_t j = 0; j < r->npairs && !any; j++)
            any = sched_host_has_pair(h, r->pairs[j]);
        bool want = r->op == SEL_EQ || r->op == SEL_IN;
        if (any != want) {
            if (failed)
                *failed = i;
            return false;
        }
    }
    return true;
}
