/*
 * fsutil: mkdir -p and atomic, durable file replacement (see fsutil.h).
 */
#include "fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mem.h"

/* mkdir(p, mode), an existing directory being fine. */
static int
mkdir_one(const char *p, mode_t mode)
{
    struct stat st;

    if (mkdir(p, mode) == 0)
        return 0;
    if (errno != EEXIST)
        return -1;
    if (stat(p, &st) < 0)
        return -1;
    if (!S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return -1;
    }
    return 0;
}

int
fsutil_mkdir_p(const char *path, mode_t mode)
{
    char *p;
    size_t n;
    int rc = 0, saved;

    if (path[0] == '\0') {
        errno = ENOENT;
        return -1;
    }
    p = xstrdup(path);
    n = strlen(p);

    /* "a/b/" is "a/b": its leaf gets mode, not a parent's. */
    while (n > 1 && p[n - 1] == '/')
        p[--n] = '\0';
    for (char *s = p + 1; *s != '\0' && rc == 0; s++) {
        if (*s != '/' || s[-1] == '/')
            continue;
        *s = '\0';
        rc = mkdir_one(p, 0755);
        *s = '/';
    }
    if (rc == 0)
        rc = mkdir_one(p, mode);
    saved = errno;
    free(p);
    errno = saved;
    return rc;
}

/* The directory part of path ("." when it has none). */
static char *
dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');

    if (slash == NULL)
        return xstrdup(".");
    if (slash == path)
        return xstrdup("/");
    return xstrndup(path, (size_t)(slash - path));
}

int
fsutil_sync_dir_of(const char *path)
{
    char *dir = dir_of(path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc = -1, saved;

    if (fd >= 0 && fsync(fd) == 0)
        rc = 0;
    saved = errno;
    if (fd >= 0)
        close(fd);
    free(dir);
    errno = saved;
    return rc;
}

int
fsutil_commit(int fd, const char *tmp, const char *path)
{
    if (fsync(fd) < 0 || rename(tmp, path) < 0)
        return -1;
    return fsutil_sync_dir_of(path);
}

/* ".<name>.tmp" in path's directory. */
static char *
tmp_of(const char *path)
{
    const char *slash = strrchr(path, '/');

    if (slash == NULL)
        return xasprintf(".%s.tmp", path);
    return xasprintf("%.*s/.%s.tmp", (int)(slash - path), path, slash + 1);
}

int
fsutil_write_atomic(const char *path, mode_t mode, const void *data,
                    size_t len)
{
    char *tmp = tmp_of(path);
    const char *p = data;
    size_t off = 0;
    int fd, rc = -1, saved;

    (void)unlink(tmp);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0)
        goto out;
    while (off < len) {
        ssize_t w = write(fd, p + off, len - off);

        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            goto out;
        off += (size_t)w;
    }
    if (fchmod(fd, mode) < 0 || fsutil_commit(fd, tmp, path) < 0)
        goto out;
    rc = 0;

out:
    saved = errno;
    if (fd >= 0 && close(fd) < 0 && rc == 0) {
        saved = errno;
        rc = -1;
    }
    if (rc < 0)
        (void)unlink(tmp);
    free(tmp);
    errno = saved;
    return rc;
}
