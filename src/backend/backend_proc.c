#include "backend_proc.h"

#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "macro.h"
#include "strbuf.h"

unsigned long long backend_proc_starttime(pid_t pid) {
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof(buf) - 1);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    unsigned long long start = 0;
    if (p && sscanf(p + 2,
                    "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d "
                    "%*d %*u %*u %llu",
                    &start) == 1)
        return start;
    return 0;
}

bool backend_proc_alive(pid_t pid, unsigned long long starttime, int *pidfd) {
    if (pid <= 0 || !starttime || backend_proc_starttime(pid) != starttime)
        return false;
    *pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    /* checked again: the pid may have been reused between the first check and the open */
    if (*pidfd < 0 || backend_proc_starttime(pid) != starttime)
        return false;
    struct pollfd pfd = {.fd = *pidfd, .events = POLLIN};
    return poll(&pfd, 1, 0) == 0;
}

struct backend_waiter {
    struct backend_waiter *next;
    backend_done_fn done;
    void *userdata;
};

void backend_waiter_add(struct backend_waiter **list, backend_done_fn done, void *userdata) {
    struct backend_waiter *w = xcalloc(1, sizeof(*w));
    *w = (struct backend_waiter){*list, done, userdata};
    *list = w;
}

void backend_waiters_tell(struct backend_waiter **list) {
    struct backend_waiter *w = TAKE_PTR(*list);
    while (w) {
        struct backend_waiter *next = w->next;
        w->done(w->userdata, 0, NULL);
        free(w);
        w = next;
    }
}

void backend_waiters_free(struct backend_waiter **list) {
    struct backend_waiter *w = TAKE_PTR(*list);
    while (w) {
        struct backend_waiter *next = w->next;
        free(w);
        w = next;
    }
}

void backend_shutdown_watch(sd_event *loop, sd_event_source **stop_timer, unsigned timeout_s,
                            sd_event_time_handler_t on_timeout, void *run,
                            struct backend_waiter **waiters, backend_done_fn done, void *userdata) {
    if (!*stop_timer)
        sd_event_add_time_relative(loop, stop_timer, CLOCK_MONOTONIC,
                                   (uint64_t)timeout_s * 1000000ULL, 0, on_timeout, run);
    if (done)
        backend_waiter_add(waiters, done, userdata);
}
