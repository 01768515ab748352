#include "reaper.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fsutil.h"
#include "log.h"
#include "macro.h"
#include "strbuf.h"

#define NAME_MAX_LEN 64
#define WAIT_MS 10000 /* a job is a few rmdirs and unlinks: far more than enough */

struct reaper_job {
    struct reaper_job *next;
    reaper_done_fn done;
    void *userdata;
    char name[NAME_MAX_LEN];
    bool sent;
};

struct reaper {
    int fd; /* SOCK_SEQPACKET: one message per job, one byte back per job done */
    pid_t pid;
    int pidfd;
    sd_event_source *src;
    /* oldest first: the sent ones, waiting for their acknowledgement, then those whose
     * name is still to be sent (the socket was full) */
    struct reaper_job *head, **tail;
};

/* ---- the reaper process ---- */

static void retire_one(struct cgroup_system *cs, const char *state_dir, const char *runtime_dir,
                       const char *name) {
    struct cgroup_qube *cg = cgroup_qube_open(cs, name);
    if (cg) {
        cgroup_qube_kill(cg); /* init is gone; anything it left behind goes too */
        if (cgroup_qube_destroy(cg) < 0)
            log_warning("reaper: cgroups of %s not removed: %s", name, strerror(errno));
    }
    char path[4096];
    snprintf(path, sizeof(path), "%s/volatile/%s", state_dir, name);
    if (remove_scratch(path) < 0)
        log_warning("reaper: cannot remove %s: %s", path, strerror(errno));
    snprintf(path, sizeof(path), "%s/qubes/%s", runtime_dir, name);
    if (remove_recursive(path) < 0)
        log_warning("reaper: cannot remove %s: %s", path, strerror(errno));
}

static _Noreturn void reaper_main(int fd, struct cgroup_system *cs, const char *state_dir,
                                  const char *runtime_dir) {
    prctl(PR_SET_NAME, "dispenser-reap");
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL); /* the daemon's signalfd mask is not ours */
    char name[NAME_MAX_LEN];
    for (;;) {
        ssize_t n = recv(fd, name, sizeof(name) - 1, 0);
        if (n <= 0) /* the daemon closed its end (or died): the queue is done */
            _exit(0);
        name[n] = '\0';
        retire_one(cs, state_dir, runtime_dir, name);
        if (send(fd, "d", 1, MSG_NOSIGNAL) != 1)
            _exit(0);
    }
}

/* ---- the daemon's side ---- */

static void finish_head(struct reaper *r, bool ok) {
    struct reaper_job *j = r->head;
    r->head = j->next;
    if (!r->head)
        r->tail = &r->head;
    j->done(j->userdata, ok);
    free(j);
}

/* The reaper is gone: stop using it, and let every waiting job be done by its owner. */
static void mark_dead(struct reaper *r) {
    if (r->fd < 0)
        return;
    log_warning("reaper: the helper process is gone; cleanups run in the daemon from now on");
    r->src = sd_event_source_disable_unref(r->src);
    close(r->fd);
    r->fd = -1;
    while (r->head)
        finish_head(r, false);
}

/* Reads the acknowledgements that are there; false once the reaper is gone. */
static bool read_acks(struct reaper *r) {
    char c;
    for (;;) {
        ssize_t n = recv(r->fd, &c, sizeof(c), MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return true;
        if (n != 1 || !r->head || !r->head->sent) { /* EOF, error, or an unasked answer */
            mark_dead(r);
            return false;
        }
        finish_head(r, true);
    }
}

/* Sends the names not sent yet, never blocking: the reaper blocks on its acknowledgements
 * while ours are unread, so a daemon blocked on a full socket would wait for it forever
 * (seen: 100 disposables ending at once). What does not fit waits for EPOLLOUT. */
static bool send_pending(struct reaper *r) {
    bool full = false;
    for (struct reaper_job *j = r->head; j && !full; j = j->next) {
        if (j->sent)
            continue;
        size_t len = strlen(j->name);
        ssize_t n = send(r->fd, j->name, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            full = true;
        } else if (n != (ssize_t)len) {
            mark_dead(r);
            return false;
        } else {
            j->sent = true;
        }
    }
    sd_event_source_set_io_events(r->src, full ? EPOLLIN | EPOLLOUT : EPOLLIN);
    return true;
}

/* Idle priority while the queue is short, normal beyond REAPER_BACKLOG (reaper.h). */
static void follow_backlog(struct reaper *r) {
    size_t n = 0;
    for (struct reaper_job *j = r->head; j && n <= REAPER_BACKLOG; j = j->next)
        n++;
    if (r->src)
        sd_event_source_set_priority(r->src, n > REAPER_BACKLOG ? SD_EVENT_PRIORITY_NORMAL
                                                                : SD_EVENT_PRIORITY_IDLE);
}

static int on_ack(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
    struct reaper *r = userdata;
    if (!read_acks(r))
        return 0;
    if (revents & (EPOLLHUP | EPOLLERR))
        mark_dead(r);
    else
        send_pending(r);
    follow_backlog(r);
    return 0;
}

struct reaper *reaper_start(sd_event *loop, struct cgroup_system *cs, const char *state_dir,
                            const char *runtime_dir) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        return NULL;
    pid_t pid = fork();
    if (pid < 0) {
        close(sv[0]);
        close(sv[1]);
        return NULL;
    }
    if (pid == 0) {
        if (dup2(sv[1], 3) < 0) /* and nothing else of the daemon's: no sockets, no DB */
            _exit(1);
        syscall(SYS_close_range, 4, ~0U, 0);
        reaper_main(3, cs, state_dir, runtime_dir);
    }
    close(sv[1]);
    struct reaper *r = xcalloc(1, sizeof(*r));
    *r = (struct reaper){.fd = sv[0], .pid = pid, .tail = &r->head};
    r->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (sd_event_add_io(loop, &r->src, r->fd, EPOLLIN, on_ack, r) < 0) {
        reaper_stop(r);
        errno = EIO;
        return NULL;
    }
    sd_event_source_set_priority(r->src, SD_EVENT_PRIORITY_IDLE);
    log_debug("reaper: pid %d", (int)pid);
    return r;
}

int reaper_retire(struct reaper *r, const char *name, reaper_done_fn done, void *userdata) {
    size_t len = strlen(name);
    if (!r || r->fd < 0 || len == 0 || len >= NAME_MAX_LEN)
        return -1;
    /* never blocking (send_pending): acknowledgements are read by the loop only, so no
     * job's done runs inside the caller's retire */
    bool queue_behind = false;
    for (struct reaper_job *q = r->head; q; q = q->next)
        queue_behind |= !q->sent;
    struct reaper_job *j = xcalloc(1, sizeof(*j));
    *j = (struct reaper_job){.done = done, .userdata = userdata};
    memcpy(j->name, name, len + 1);
    if (!queue_behind) {
        ssize_t n = send(r->fd, name, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n == (ssize_t)len) {
            j->sent = true;
        } else if (n >= 0 || (errno != EAGAIN && errno != EINTR)) {
            free(j); /* not queued: the caller does the work, as the contract says */
            mark_dead(r);
            return -1;
        }
    }
    *r->tail = j;
    r->tail = &j->next;
    if (!j->sent) /* the socket is full: sent from the loop once there is room */
        sd_event_source_set_io_events(r->src, EPOLLIN | EPOLLOUT);
    follow_backlog(r);
    return 0;
}

void reaper_wait_idle(struct reaper *r) {
    while (r && r->head && r->fd >= 0) {
        if (!send_pending(r))
            return;
        struct pollfd pfd = {.fd = r->fd, .events = POLLIN};
        if (poll(&pfd, 1, WAIT_MS) <= 0) {
            log_warning("reaper: no answer in %d ms", WAIT_MS);
            kill(r->pid, SIGKILL);
            mark_dead(r);
            return;
        }
        read_acks(r);
    }
}

void reaper_stop(struct reaper *r) {
    if (!r)
        return;
    reaper_wait_idle(r);
    r->src = sd_event_source_disable_unref(r->src);
    if (r->fd >= 0)
        close(r->fd); /* EOF: the reaper exits */
    if (r->pidfd >= 0) {
        struct pollfd pfd = {.fd = r->pidfd, .events = POLLIN};
        if (poll(&pfd, 1, WAIT_MS) <= 0)
            kill(r->pid, SIGKILL);
        close(r->pidfd);
    }
    waitpid(r->pid, NULL, 0);
    free(r);
}
