#include "fdpass.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Control data aligned for struct cmsghdr, big enough for the most descriptors. */
union fdpass_control {
    char buf[CMSG_SPACE(sizeof(int) * FDPASS_MAX_FDS)];
    struct cmsghdr align;
};

ssize_t fdpass_sendv(int sock, const struct iovec *iov, size_t iovcnt, const int *fds, size_t n_fds,
                     int flags) {
    union fdpass_control control;
    struct msghdr msg = {.msg_iov = (struct iovec *)iov, .msg_iovlen = iovcnt};
    if (n_fds > FDPASS_MAX_FDS)
        return -EINVAL;
    if (n_fds > 0) {
        memset(&control, 0, sizeof(control));
        msg.msg_control = control.buf;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * n_fds);
        struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int) * n_fds);
        memcpy(CMSG_DATA(cm), fds, sizeof(int) * n_fds);
    }
    ssize_t n;
    do
        n = sendmsg(sock, &msg, flags | MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : n;
}

ssize_t fdpass_send(int sock, const void *buf, size_t len, const int *fds, size_t n_fds,
                    int flags) {
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    return fdpass_sendv(sock, &iov, 1, fds, n_fds, flags);
}

void fdpass_close(int *fds, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (fds[i] >= 0)
            close(fds[i]), fds[i] = -1;
}

/* Stores what fits in fds, closes the rest; with `all_bad` closes everything. */
static size_t take_rights(struct msghdr *msg, int *fds, size_t max_fds, bool all_bad) {
    size_t stored = 0;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(msg); cm; cm = CMSG_NXTHDR(msg, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
            continue;
        size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        const unsigned char *data = CMSG_DATA(cm);
        for (size_t i = 0; i < k; i++) {
            int fd;
            memcpy(&fd, data + i * sizeof(int), sizeof(int));
            if (!all_bad && stored < max_fds)
                fds[stored++] = fd;
            else
                close(fd);
        }
    }
    return stored;
}

ssize_t fdpass_recv(int sock, void *buf, size_t len, int *fds, size_t max_fds, size_t *n_fds,
                    int flags) {
    union fdpass_control control;
    struct iovec iov = {.iov_base = buf, .iov_len = len};
    struct msghdr msg = {.msg_iov = &iov,
                         .msg_iovlen = 1,
                         .msg_control = control.buf,
                         .msg_controllen = sizeof(control.buf)};
    *n_fds = 0;
    if (max_fds > FDPASS_MAX_FDS)
        max_fds = FDPASS_MAX_FDS;
    ssize_t n = recvmsg(sock, &msg, flags | MSG_CMSG_CLOEXEC);
    if (n < 0)
        return -errno;
    bool truncated = msg.msg_flags & MSG_CTRUNC;
    *n_fds = take_rights(&msg, fds, max_fds, truncated);
    return truncated ? -EBADMSG : n;
}
