/* Logging, time and the epoll bookkeeping of the agent. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"

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

int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
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
