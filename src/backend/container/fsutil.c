#include "fsutil.h"

#include <stdarg.h>

#include <string.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw) {
    int r = (type == FTW_DP) ? rmdir(path) : unlink(path);
    return r < 0 && errno != ENOENT ? -1 : 0;
}

int remove_recursive(const char *path) {
    struct stat st;
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : -1;
    return nftw(path, remove_entry, 32, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

int remove_scratch(const char *path) {
    char target[4096];
    ssize_t n = readlink(path, target, sizeof(target) - 1);
    if (n > 0 && target[0] == '/') {
        target[n] = '\0';
        if (remove_recursive(target) < 0)
            return -1;
    }
    return remove_recursive(path);
}

int make_owned_dir(const char *path, uid_t owner, mode_t mode) {
    if (mkdir(path, mode) < 0 && errno != EEXIST)
        return -1;
    if (chown(path, owner, owner) < 0 || chmod(path, mode) < 0)
        return -1;
    return 0;
}

int sealed_memfd_copy(const char *path, const char *name) {
    int src = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (src < 0 || fstat(src, &st) < 0) {
        int r = -errno;
        if (src >= 0)
            close(src);
        return r;
    }
    int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
    off_t off = 0;
    while (fd >= 0 && off < st.st_size) {
        ssize_t n = sendfile(fd, src, &off, (size_t)(st.st_size - off));
        if (n <= 0) {
            close(fd);
            fd = -1;
            errno = n == 0 ? EIO : errno;
        }
    }
    int r = fd < 0 ? -errno : 0;
    close(src);
    if (r == 0 &&
        (fchmod(fd, 0555) < 0 ||
         fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0)) {
        r = -errno;
        close(fd);
    }
    return r < 0 ? r : fd;
}

void vformat_errno(char *buf, size_t size, int saved_errno, const char *fmt, va_list ap) {
    int n = vsnprintf(buf, size, fmt, ap);
    if (saved_errno && n > 0 && (size_t)n < size)
        snprintf(buf + n, size - (size_t)n, ": %s", strerror(saved_errno));
}
