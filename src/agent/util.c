/* Logging, time, sockets and the epoll bookkeeping of the agent. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "fdpass.h"
#include "monoclock.h"

void agent_log(const char *fmt, ...) {
    /* One write per line: the engine's log file is shared with start-up scripts. */
    char line[512];
    int saved = errno;
    va_list ap;
    va_start(ap, fmt);
    int n = snprintf(line, sizeof(line), "dispenser-agent: ");
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof(line) - 2)
        len = sizeof(line) - 2;
    line[len++] = '\n';
    (void)!write(STDERR_FILENO, line, len);
    errno = saved;
}

int fd_set_nonblock(int fd) {
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
        return -errno;
    return 0;
}

/* Registers, modifies or (events == 0) unregisters; cheap when nothing changes. */
int watch_set(struct agent *a, struct watch *w, uint32_t events) {
    if (w->fd < 0 || events == w->events)
        return 0;
    struct epoll_event ev = {.events = events, .data.ptr = w};
    int op = !w->events ? EPOLL_CTL_ADD : events ? EPOLL_CTL_MOD : EPOLL_CTL_DEL;
    if (epoll_ctl(a->epfd, op, w->fd, &ev) < 0) {
        agent_log("epoll_ctl(%d): %m", w->fd);
        return -errno;
    }
    w->events = events;
    return 0;
}

void watch_close(struct agent *a, struct watch *w) {
    if (w->fd < 0)
        return;
    watch_set(a, w, 0);
    close(w->fd);
    w->fd = -1;
}

ssize_t recv_fds(int sock, void *buf, size_t len, int fds[3]) {
    int got[4]; /* one more than a request may carry: a fourth makes it bad */
    size_t n_got = 0;
    ssize_t n = fdpass_recv(sock, buf, len, got, 4, &n_got, MSG_DONTWAIT);
    if (n < 0 || n_got == 0)
        return n;
    if (fds && n_got == 3 && fds[0] < 0 && fds[1] < 0 && fds[2] < 0) {
        memcpy(fds, got, sizeof(got[0]) * 3);
        return n;
    }
    fdpass_close(got, n_got);
    return -EBADMSG;
}

ssize_t send_fds(int sock, const void *buf, size_t len, const int fds[3]) {
    return fdpass_send(sock, buf, len, fds, fds ? 3 : 0, MSG_DONTWAIT);
}

void close_fds(int fds[3]) { fdpass_close(fds, 3); }
