/*
 * labels: the rules for service and instance labels (Kubernetes-shaped
 * keys and values), their canonical text form kept by the read cache, and
 * the label selectors of list requests (?label=k=v, ?label=k).
 */
#ifndef CLOUD_LABELS_H
#define CLOUD_LABELS_H

#include <jansson.h>
#include <stddef.h>

#define LABELS_MAX 64
#define LABEL_NAME_MAX 63
#define LABEL_PREFIX_MAX 253
#define LABEL_VALUE_MAX 63
#define LABEL_SEL_MAX 16

/* [prefix/]name: prefix a DNS subdomain of at most 253 characters, name
 * 1..63 of [A-Za-z0-9._-] starting and ending with a letter or digit. */
int labels_key_ok(const char *k);
/* Empty, or 1..63 of [A-Za-z0-9._-] starting and ending alphanumeric. */
int labels_value_ok(const char *v);

/* Checks a labels object; on failure writes the offending field
 * ("labels" or "labels.<key>") and a sentence, and returns -1. */
int labels_check(json_t *labels, char *field, size_t fieldlen, char *msg,
                 size_t msglen);

/* "\nk1=v1\nk2=v2\n" (keys sorted), or NULL for no labels. Keys and
 * values hold neither '\n' nor '=' so a term matches by substring. */
char *labels_canon(json_t *labels);
/* The same from the labels' JSON text; NULL for "{}" or bad JSON. */
char *labels_canon_text(const char *json);

struct label_term {
    char *key;
    char *value; /* NULL: the key only has to be present */
};

struct label_sel {
    int n;
    int never; /* the same key asked with two values: matches nothing */
    struct label_term t[LABEL_SEL_MAX];
};

/* Adds one selector expression "k=v[,k2=v2|k2...]"; -1 with msg. */
int labels_sel_add(struct label_sel *s, const char *expr, char *msg,
                   size_t msglen);
int labels_sel_match(const struct label_sel *s, const char *canon);
/* For SQL: the equality terms as a JSON object and the bare keys as a
 * JSON array (caller frees both). */
void labels_sel_sql(const struct label_sel *s, char **eq, char **keys);
void labels_sel_free(struct label_sel *s);

#endif
