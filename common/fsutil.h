/*
 * fsutil: directories and files that survive a crash: mkdir -p, and files
 * replaced atomically and durably (temporary file, fsync, rename, fsync of
 * the directory), so that after a power cut a file holds its old content
 * or its new one, never a mix or nothing.
 *
 * Nothing here logs: each function returns 0, or -1 with errno set, and
 * the caller reports once, naming its object ("cannot write the CA key
 * %s: %s"), in its own way (a daemon's log, a command's stderr).
 */
#ifndef CLOUD_FSUTIL_H
#define CLOUD_FSUTIL_H

#include <stddef.h>
#include <sys/types.h>

/*
 * mkdir -p: creates path and any missing parents. Parents are made 0755,
 * path itself mode (both less the umask). A directory that exists already,
 * path included, is fine and keeps its mode; anything else in the way is
 * ENOTDIR. Stops at the first failure.
 */
int fsutil_mkdir_p(const char *path, mode_t mode);

/*
 * Replaces path with len bytes of data, atomically and durably: writes
 * ".<name>.tmp" beside it with mode (exactly, whatever the umask; a
 * leftover of a crashed writer is replaced), fsyncs it, renames it over
 * path and fsyncs the directory. On failure the temporary file is removed
 * and path is untouched.
 */
int fsutil_write_atomic(const char *path, mode_t mode, const void *data,
                        size_t len);

/*
 * The end of a file written through tmp by the caller (a stream: an
 * upload, a fetch, a copy): fsync(fd), rename(tmp, path), fsync of path's
 * directory. fd stays open and tmp, on failure, in place: both are the
 * caller's to close and remove.
 */
int fsutil_commit(int fd, const char *tmp, const char *path);

/* fsync of the directory that holds path (a rename or unlink there is
 * durable once it returns 0). */
int fsutil_sync_dir_of(const char *path);

#endif
