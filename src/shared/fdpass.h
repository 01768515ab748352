/* Descriptors over Unix sockets (SCM_RIGHTS): the one place that builds and parses the
 * control data. Used by the daemon, the tools and the static in-qube agent (no glibc-only
 * calls here). */
#pragma once
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

/* The most descriptors one message may carry; a message with more is truncated by the
 * kernel (the excess is closed by it) and fdpass_recv() reports an error. */
#define FDPASS_MAX_FDS 32

/* One sendmsg of iov, with n_fds descriptors (0: none) riding on its first byte.
 * MSG_NOSIGNAL is always added to flags (e.g. MSG_DONTWAIT); EINTR is retried.
 * Returns the bytes sent (possibly fewer than asked: the descriptors went with them),
 * or -errno. */
ssize_t fdpass_sendv(int sock, const struct iovec *iov, size_t iovcnt, const int *fds, size_t n_fds,
                     int flags);
ssize_t fdpass_send(int sock, const void *buf, size_t len, const int *fds, size_t n_fds, int flags);

/* One recvmsg of up to len bytes (flags e.g. MSG_DONTWAIT; EINTR is not retried) and of
 * the descriptors that came with them, received close-on-exec. The first max_fds (at most
 * FDPASS_MAX_FDS) are stored in fds and counted in *n_fds; any beyond them are closed.
 * Returns the bytes received (0 at the end of the stream) or -errno; -EBADMSG when the
 * control data was truncated (descriptors were lost on the way): nothing is stored then
 * and whatever did arrive is closed. */
ssize_t fdpass_recv(int sock, void *buf, size_t len, int *fds, size_t max_fds, size_t *n_fds,
                    int flags);

/* Closes the n descriptors of fds that are >= 0 and sets them to -1. */
void fdpass_close(int *fds, size_t n);
