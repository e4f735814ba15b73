/*
 * ctlist: parsing of the controller address list (see ctlist.h).
 */
#include "ctlist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"

static int
addr_parse(const char *item, size_t len, struct ctaddr *a)
{
    char *text = xstrndup(item, len);
    char *colon = strrchr(text, ':');
    size_t hl;

    if (colon == NULL || colon == text || colon[1] == '\0' ||
        strspn(colon + 1, "0123456789") != strlen(colon + 1) ||
        strtol(colon + 1, NULL, 10) < 1 ||
        strtol(colon + 1, NULL, 10) > 65535) {
        free(text);
        return -1;
    }
    hl = (size_t)(colon - text);
    if (text[0] == '[' && hl >= 2 && text[hl - 1] == ']')
        a->host = xstrndup(text + 1, hl - 2);
    else
        a->host = xstrndup(text, hl);
    a->port = xstrdup(colon + 1);
    a->text = text;
    return 0;
}

int
ctlist_parse(const char *spec, struct ctaddr **out, size_t *n, char *why,
             size_t whylen)
{
    struct ctaddr *v = xcalloc(CTLIST_MAX, sizeof(*v));
    const char *p = spec;
    size_t k = 0;

    *out = NULL;
    *n = 0;
    if (spec == NULL || spec[0] == '\0') {
        snprintf(why, whylen, "--controller must be HOST:PORT[,HOST:PORT...]");
        goto fail;
    }
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);

        if (k == CTLIST_MAX) {
            snprintf(why, whylen, "--controller takes at most %d addresses",
                     CTLIST_MAX);
            goto fail;
        }
        if (addr_parse(p, len, &v[k]) < 0) {
            snprintf(why, whylen,
                     "--controller must be HOST:PORT[,HOST:PORT...] with ports 1-65535, not \"%.*s\" in %.200s",
                     (int)(len > 100 ? 100 : len), p, spec);
            goto fail;
        }
        k++;
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    *out = v;
    *n = k;
    return 0;
fail:
    ctlist_free(v, k);
    return -1;
}

void
ctlist_free(struct ctaddr *a, size_t n)
{
    for (size_t i = 0; a != NULL && i < n; i++) {
        free(a[i].text);
        free(a[i].host);
        free(a[i].port);
    }
    free(a);
}
