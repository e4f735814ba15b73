/*
 * unit_tmpdir: a throwaway directory for a unit test group (header only:
 * each test program includes it once).
 */
#ifndef CLOUD_UNIT_TMPDIR_H
#define CLOUD_UNIT_TMPDIR_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>

#include "mem.h"

/* A new directory /tmp/<name>.XXXXXX (malloc'd path), or NULL. */
static inline char *
unit_tmpdir_new(const char *name)
{
    char *tmpl = xasprintf("/tmp/%s.XXXXXX", name);

    if (mkdtemp(tmpl) == NULL) {
        free(tmpl);
        return NULL;
    }
    return tmpl;
}

static inline int
unit_tmpdir_rm_one(const char *path, const struct stat *st, int flag,
                   struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Removes dir and everything in it, and frees dir. */
static inline void
unit_tmpdir_free(char *dir)
{
    if (dir != NULL)
        nftw(dir, unit_tmpdir_rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(dir);
}

#endif
