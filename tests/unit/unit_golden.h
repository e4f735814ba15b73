/*
 * unit_golden: golden-file comparison for unit tests (header only: each test
 * program includes it once). UPDATE_GOLDEN=1 in the environment rewrites
 * the file from what the code produces instead; review the diff.
 */
#ifndef CLOUD_UNIT_GOLDEN_H
#define CLOUD_UNIT_GOLDEN_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mem.h"

/* The contents of path as a string (xmalloc'd), or NULL. */
static inline char *
unit_slurp(const char *path)
{
    FILE *fp = fopen(path, "r");
    char *buf;
    long n;

    if (fp == NULL)
        return NULL;
    fseek(fp, 0, SEEK_END);
    n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    buf = xmalloc((size_t)n + 1);
    if (fread(buf, 1, (size_t)n, fp) != (size_t)n) {
        fclose(fp);
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    fclose(fp);
    return buf;
}

/* Fails the test unless dir/name holds exactly got. */
static inline void
unit_golden_check(const char *dir, const char *name, const char *got)
{
    char *path = xasprintf("%s/%s", dir, name);
    const char *upd = getenv("UPDATE_GOLDEN");
    char *want;

    if (upd != NULL && strcmp(upd, "1") == 0) {
        FILE *fp = fopen(path, "w");
        assert_non_null(fp);
        assert_int_equal(fputs(got, fp) >= 0, 1);
        assert_int_equal(fclose(fp), 0);
        fprintf(stderr, "updated %s\n", path);
    } else {
        want = unit_slurp(path);
        if (want == NULL)
            fail_msg("golden file %s is missing; run with UPDATE_GOLDEN=1",
                     path);
        if (strcmp(want, got) != 0) {
            fprintf(stderr, "--- expected %s\n%s--- got\n%s", path, want, got);
            fail_msg("output differs from %s", path);
        }
        free(want);
    }
    free(path);
}

#endif
