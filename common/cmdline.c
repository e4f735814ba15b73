/*
 * cmdline: instance args on a kernel command line (see cmdline.h). The
 * quoting is the one the kernel's next_arg() undoes: a word that starts
 * with '"' runs to the next '"', spaces included, and the quotes go.
 */
#include "cmdline.h"

#include <stdio.h>
#include <string.h>

#include "mem.h"

static int
needs_quotes(const char *arg)
{
    return arg[0] == '\0' || strchr(arg, ' ') != NULL;
}

int
cmdline_arg_check(const char *arg, char *why, size_t whylen)
{
    for (const unsigned char *p = (const unsigned char *)arg; *p; p++) {
        if (*p == '"') {
            snprintf(why, whylen,
                     "contains a double quote, which a kernel command line "
                     "cannot carry inside an argument");
            return -1;
        }
        if (*p < 0x20 || *p == 0x7f) {
            snprintf(why, whylen,
                     "contains control character 0x%02x, which a kernel "
                     "command line cannot carry",
                     (unsigned)*p);
            return -1;
        }
    }
    return 0;
}

size_t
cmdline_arg_len(const char *arg)
{
    return strlen(arg) + (needs_quotes(arg) ? 2 : 0);
}

char *
cmdline_join(const char *image, const char *const *args, size_t nargs,
             size_t max, char *why, size_t whylen)
{
    size_t len = image ? strlen(image) : 0, i, off;
    char *out;

    for (i = 0; i < nargs; i++) {
        char r[160];

        if (cmdline_arg_check(args[i], r, sizeof(r)) < 0) {
            snprintf(why, whylen, "args[%zu] %s", i, r);
            return NULL;
        }
        len += (len > 0 ? 1 : 0) + cmdline_arg_len(args[i]);
    }
    if (len > max) {
        snprintf(why, whylen,
                 "the kernel command line would be %zu bytes; at most %zu",
                 len, max);
        return NULL;
    }
    out = xmalloc(len + 1);
    off = 0;
    if (image && image[0]) {
        memcpy(out, image, strlen(image));
        off = strlen(image);
    }
    for (i = 0; i < nargs; i++) {
        size_t n = strlen(args[i]);
        int q = needs_quotes(args[i]);

        if (off > 0)
            out[off++] = ' ';
        if (q)
            out[off++] = '"';
        memcpy(out + off, args[i], n);
        off += n;
        if (q)
            out[off++] = '"';
    }
    out[off] = '\0';
    return out;
}
