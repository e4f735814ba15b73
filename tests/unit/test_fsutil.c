/*
 * Unit tests for common/fsutil.c: mkdir -p (modes, existing directories,
 * something else in the way), atomic file replacement (content, exact mode
 * whatever the umask, no temporary file left, failure leaves the old file)
 * and the commit of a streamed file.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"
#include "mem.h"
#include "unit_tmpdir.h"

static char *root;

static int
setup(void **state)
{
    (void)state;
    root = unit_tmpdir_new("test_fsutil");
    return root == NULL ? -1 : 0;
}

static int
teardown(void **state)
{
    (void)state;
    unit_tmpdir_free(root);
    return 0;
}

static mode_t
mode_of(const char *path)
{
    struct stat st;

    assert_int_equal(stat(path, &st), 0);
    return st.st_mode & 07777;
}

static char *
slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    char *buf = xcalloc(1, 4096);

    assert_non_null(f);
    assert_true(fread(buf, 1, 4095, f) < 4095);
    fclose(f);
    return buf;
}

static int
not_dots(const struct dirent *de)
{
    return strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
}

/* How many names dir holds besides . and .. */
static int
entries(const char *dir)
{
    struct dirent **list;
    int n = scandir(dir, &list, not_dots, NULL);

    assert_true(n >= 0);
    for (int i = 0; i < n; i++)
        free(list[i]);
    free(list);
    return n;
}

static void
test_mkdir_p_modes_and_existing(void **state)
{
    char *leaf = xasprintf("%s/a//b/c/", root);
    char *a = xasprintf("%s/a", root), *c = xasprintf("%s/a/b/c", root);
    mode_t old = umask(022);

    (void)state;
    assert_int_equal(fsutil_mkdir_p(leaf, 0700), 0);
    assert_int_equal(mode_of(a), 0755);
    assert_int_equal(mode_of(c), 0700);
    /* All there already: fine, and the mode of what exists is kept. */
    assert_int_equal(fsutil_mkdir_p(c, 0750), 0);
    assert_int_equal(mode_of(c), 0700);
    errno = 0;
    assert_int_equal(fsutil_mkdir_p("", 0755), -1);
    assert_int_equal(errno, ENOENT);
    umask(old);
    free(leaf);
    free(a);
    free(c);
}

static void
test_mkdir_p_refuses_a_file_in_the_way(void **state)
{
    char *file = xasprintf("%s/file", root);
    char *under = xasprintf("%s/file/sub", root);

    (void)state;
    assert_int_equal(fsutil_write_atomic(file, 0644, "x", 1), 0);
    errno = 0;
    assert_int_equal(fsutil_mkdir_p(file, 0755), -1);
    assert_int_equal(errno, ENOTDIR);
    errno = 0;
    assert_int_equal(fsutil_mkdir_p(under, 0755), -1);
    assert_int_equal(errno, ENOTDIR);
    free(file);
    free(under);
}

static void
test_write_atomic_replaces_with_exact_mode(void **state)
{
    char *dir = xasprintf("%s/w", root), *path = xasprintf("%s/w/key.pem", root);
    char *stale = xasprintf("%s/w/.key.pem.tmp", root), *got;
    mode_t old = umask(077);

    (void)state;
    assert_int_equal(fsutil_mkdir_p(dir, 0755), 0);
    assert_int_equal(fsutil_write_atomic(path, 0644, "first\n", 6), 0);
    assert_int_equal(mode_of(path), 0644); /* not 0600 under umask 077 */
    /* A crashed writer's leftover does not stop the next one. */
    assert_int_equal(fsutil_write_atomic(stale, 0600, "junk", 4), 0);
    assert_int_equal(fsutil_write_atomic(path, 0600, "second\n", 7), 0);
    umask(old);
    got = slurp(path);
    assert_string_equal(got, "second\n");
    assert_int_equal(mode_of(path), 0600);
    assert_int_equal(access(stale, F_OK), -1);
    assert_int_equal(entries(dir), 1);
    /* Empty content is a file too. */
    assert_int_equal(fsutil_write_atomic(path, 0600, "", 0), 0);
    free(got);
    got = slurp(path);
    assert_string_equal(got, "");
    free(got);
    free(dir);
    free(path);
    free(stale);
}

static void
test_write_atomic_failure_keeps_the_old_file(void **state)
{
    char *dir = xasprintf("%s/ro", root), *path = xasprintf("%s/ro/f", root);
    char *missing = xasprintf("%s/nodir/f", root), *got;

    (void)state;
    errno = 0;
    assert_int_equal(fsutil_write_atomic(missing, 0644, "x", 1), -1);
    assert_int_equal(errno, ENOENT);
    assert_int_equal(fsutil_mkdir_p(dir, 0755), 0);
    assert_int_equal(fsutil_write_atomic(path, 0644, "old", 3), 0);
    /* The target is a directory: rename fails, the temporary goes. */
    assert_int_equal(fsutil_write_atomic(dir, 0644, "new", 3), -1);
    got = slurp(path);
    assert_string_equal(got, "old");
    assert_int_equal(entries(dir), 1);
    assert_int_equal(entries(root) >= 1, 1);
    {
        char *tmp = xasprintf("%s/.ro.tmp", root);

        assert_int_equal(access(tmp, F_OK), -1);
        free(tmp);
    }
    free(got);
    free(dir);
    free(path);
    free(missing);
}

static void
test_commit_of_a_streamed_file(void **state)
{
    char *tmp = xasprintf("%s/.upload-1", root), *path = xasprintf("%s/blob", root);
    char *got;
    int fd;

    (void)state;
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "data", 4), 4);
    assert_int_equal(fsutil_commit(fd, tmp, path), 0);
    assert_int_equal(close(fd), 0);
    assert_int_equal(access(tmp, F_OK), -1);
    got = slurp(path);
    assert_string_equal(got, "data");
    /* tmp is gone now: a second commit fails and says why. */
    fd = open(path, O_RDONLY | O_CLOEXEC);
    errno = 0;
    assert_int_equal(fsutil_commit(fd, tmp, path), -1);
    assert_int_equal(errno, ENOENT);
    close(fd);
    assert_int_equal(fsutil_sync_dir_of(path), 0);
    assert_int_equal(fsutil_sync_dir_of("/nonexistent-dir/x"), -1);
    free(got);
    free(tmp);
    free(path);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mkdir_p_modes_and_existing),
        cmocka_unit_test(test_mkdir_p_refuses_a_file_in_the_way),
        cmocka_unit_test(test_write_atomic_replaces_with_exact_mode),
        cmocka_unit_test(test_write_atomic_failure_keeps_the_old_file),
        cmocka_unit_test(test_commit_of_a_streamed_file),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
