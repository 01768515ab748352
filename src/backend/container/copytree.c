#include "copytree.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "macro.h"

#define MAX_DEPTH 64 /* a skeleton is shallow; this only stops a runaway recursion */

static int copy_dir(int src, int dst, int depth);

/* Owner, mode (after the owner: chown clears set-id bits) and times of a copied entry. */
static int copy_meta(int dst, const char *name, const struct stat *st) {
    bool link = S_ISLNK(st->st_mode);
    if (fchownat(dst, name, st->st_uid, st->st_gid, AT_SYMLINK_NOFOLLOW) < 0)
        return -errno;
    if (!link && fchmodat(dst, name, st->st_mode & 07777, 0) < 0)
        return -errno;
    struct timespec times[2] = {st->st_atim, st->st_mtim};
    return utimensat(dst, name, times, AT_SYMLINK_NOFOLLOW) < 0 ? -errno : 0;
}

static int copy_bytes(int in, int out) {
    for (;;) {
        ssize_t n = copy_file_range(in, NULL, out, NULL, 1 << 20, 0);
        if (n == 0)
            return 0;
        if (n > 0)
            continue;
        if (errno != EXDEV && errno != ENOSYS && errno != EINVAL)
            return -errno;
        break; /* across filesystems on old kernels: plain reads and writes */
    }
    char buf[65536];
    for (;;) {
        ssize_t n = read(in, buf, sizeof(buf));
        if (n <= 0)
            return n < 0 ? -errno : 0;
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(out, buf + off, (size_t)(n - off));
            if (w < 0)
                return -errno;
            off += w;
        }
    }
}

static int copy_file(int src, int dst, const char *name) {
    _cleanup_close_ int in = openat(src, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (in < 0)
        return -errno;
    _cleanup_close_ int out = openat(dst, name,
                                     O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (out < 0)
        return -errno;
    return copy_bytes(in, out);
}

static int copy_link(int src, int dst, const char *name) {
    char target[PATH_MAX];
    ssize_t n = readlinkat(src, name, target, sizeof(target) - 1);
    if (n < 0)
        return -errno;
    target[n] = '\0';
    return symlinkat(target, dst, name) < 0 ? -errno : 0;
}

static int copy_subdir(int src, int dst, const char *name, int depth) {
    if (depth >= MAX_DEPTH)
        return -ELOOP;
    if (mkdirat(dst, name, 0700) < 0)
        return -errno;
    _cleanup_close_ int s = openat(src, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    _cleanup_close_ int d = openat(dst, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (s < 0 || d < 0)
        return -errno;
    return copy_dir(s, d, depth + 1);
}

static int copy_entry(int src, int dst, const char *name, int depth) {
    struct stat st;
    if (fstatat(src, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return -errno;
    int r = S_ISDIR(st.st_mode)   ? copy_subdir(src, dst, name, depth)
            : S_ISREG(st.st_mode) ? copy_file(src, dst, name)
            : S_ISLNK(st.st_mode) ? copy_link(src, dst, name)
                                  : 1; /* not ours to copy */
    return r == 0 ? copy_meta(dst, name, &st) : r > 0 ? 0 : r;
}

static int copy_dir(int src, int dst, int depth) {
    int fd = dup(src);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        if (fd >= 0)
            close(fd);
        return -errno;
    }
    int r = 0;
    struct dirent *e;
    while (r == 0 && (errno = 0, e = readdir(d)))
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            r = copy_entry(src, dst, e->d_name, depth);
    if (r == 0 && errno)
        r = -errno;
    closedir(d);
    return r;
}

int copy_tree(const char *from, const char *to) {
    _cleanup_close_ int src = open(from, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    _cleanup_close_ int dst = open(to, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (src < 0 || dst < 0)
        return -errno;
    int r = copy_dir(src, dst, 0);
    struct stat st; /* as `cp -a from/. to`: the top takes the source's attributes too */
    if (r == 0 && fstat(src, &st) < 0)
        r = -errno;
    if (r == 0 && (fchown(dst, st.st_uid, st.st_gid) < 0 || fchmod(dst, st.st_mode & 07777) < 0))
        r = -errno;
    struct timespec times[2] = {st.st_atim, st.st_mtim};
    if (r == 0 && futimens(dst, times) < 0)
        r = -errno;
    return r;
}
