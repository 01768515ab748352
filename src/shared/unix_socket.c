#include "unix_socket.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int unix_connect(const char *path) {
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int r = -errno;
        close(fd);
        return r;
    }
    return fd;
}

static int bind_and_listen(int fd, const char *path) {
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strcpy(sa.sun_path, path);
    unlink(path);
    return bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 128) < 0 ? -errno : 0;
}

/* Bound under a temporary name and renamed into place once it listens: whoever sees the
 * path can connect (between bind and listen a connect is refused, and clients that wait
 * for the file to appear would fail in that window). */
int unix_listen(const char *path) {
    char tmp[sizeof(((struct sockaddr_un *)0)->sun_path)];
    if (strlen(path) >= sizeof(tmp))
        return -ENAMETOOLONG;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    int n = snprintf(tmp, sizeof(tmp), "%s.%d~", path, (int)getpid());
    bool staged = n > 0 && (size_t)n < sizeof(tmp);
    int r = bind_and_listen(fd, staged ? tmp : path);
    if (r == 0 && staged && rename(tmp, path) < 0) {
        r = -errno;
        unlink(tmp);
    }
    if (r < 0) {
        close(fd);
        return r;
    }
    return fd;
}

int fd_read_exact(int fd, void *buf, size_t len) {
    char *p = buf;
    while (len > 0) {
        ssize_t n = read(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return -ECONNRESET;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}
