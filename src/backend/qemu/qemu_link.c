/* The agent of a VM: dispenser-vmux turns the virtio-serial port `dispenser.agent`
 * (RUNDIR/serial.sock, QEMU's end) into RUNDIR/agent.sock, one connection per request,
 * and the engine's agent link (src/backend/agentlink/) speaks to it in COPY mode: the
 * caller's stdio cross the stream as frames, relayed on the daemon's loop. The start ends
 * with the agent's WAIT_READY answer; a service call is agent_link_exec. */
#include "qemu.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "monoclock.h"
#include "strbuf.h"

#define LINK_RETRY_US 5000 /* dispenser-vmux binds agent.sock a few ms after its exec */
#define VMUX_LISTEN_WAIT_MS 3000

static void socket_path(const struct qemu_run *run, const char *file, char *buf, size_t size) {
    char dir[4096];
    qemu_rundir(run->qb, run->name, dir, sizeof(dir));
    snprintf(buf, size, "%s/%s", dir, file);
}

void qemu_link_init(struct qemu_run *run) {
    char sock[4200];
    socket_path(run, "agent.sock", sock, sizeof(sock));
    agent_link_init(&run->link, &run->qb->agents, AGENT_LINK_COPY, run->name, sock);
}

/* ---- dispenser-vmux ---- */

/* QEMU alive: the mux should be too. QEMU gone: the mux ends with the stream, and the
 * VM's own end (on the pidfd of QEMU) says the rest. */
static bool qemu_alive(const struct qemu_run *run) {
    struct pollfd pfd = {.fd = run->pidfd, .events = POLLIN};
    return run->pidfd >= 0 && poll(&pfd, 1, 0) == 0;
}

static int on_vmux_exit(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
    struct qemu_run *run = userdata;
    siginfo_t si = {0};
    int status = -1; /* an adopted mux is not our child: the host's init reaps it */
    if (waitid(P_PIDFD, (id_t)fd, &si, WEXITED | WNOHANG) == 0 && si.si_pid)
        status = si.si_code == CLD_EXITED ? si.si_status : 128 + si.si_status;
    run->vmux_src = sd_event_source_disable_unref(run->vmux_src);
    close(run->vmux_pidfd);
    run->vmux_pidfd = -1;
    run->vmux_pid = 0;
    if (!qemu_alive(run))
        return 0;
    char why[160];
    snprintf(why, sizeof(why), "dispenser-vmux exited (status %d): see %s.vmux.log", status,
             run->name);
    if (run->start_done)
        qemu_abort_start(run, why);
    else
        log_warning("%s: %s; calls into it fail until it restarts", run->name, why);
    return 0;
}

static int watch_vmux(struct qemu_run *run) {
    return sd_event_add_io(run->qb->base.loop, &run->vmux_src, run->vmux_pidfd, EPOLLIN,
                           on_vmux_exit, run);
}

int qemu_vmux_spawn(struct qemu_run *run, struct backend_why *why) {
    char serial[4200], agent[4200];
    socket_path(run, "serial.sock", serial, sizeof(serial));
    socket_path(run, "agent.sock", agent, sizeof(agent));
    _cleanup_free_ char *log_path = NULL;
    off_t ignored;
    _cleanup_close_ int log_fd = qemu_open_log(run->qb, run->name, "vmux", &log_path, &ignored);
    if (log_fd < 0)
        return backend_fail(why, -EIO, "cannot open the dispenser-vmux log of '%s'", run->name);
    char *argv[] = {run->qb->vmux, "--connect", serial, "--listen", agent, NULL};
    char dir[4096], root[4200];
    qemu_rundir(run->qb, run->name, dir, sizeof(dir));
    snprintf(root, sizeof(root), "%s/root", dir);
    mkdir(root, 0700); /* missing in the directory of a VM started before jails */
    /* jailed as its QEMU, with its uid and in its network namespace: it sees the
     * sockets and nothing else */
    struct qemu_jail jail = {.uid = run->uid,
                             .root = root,
                             .rundir = dir,
                             .files = {run->qb->vmux, NULL},
                             .ns_pidfd = run->pidfd};
    run->vmux_pidfd = qemu_spawn(run, argv, log_fd, &jail, &run->vmux_pid);
    if (run->vmux_pidfd < 0)
        return backend_fail(why, -errno, "cannot start dispenser-vmux: %s", strerror(errno));
    run->vmux_starttime = backend_proc_starttime(run->vmux_pid);
    if (watch_vmux(run) < 0 || qemu_state_save(run) < 0)
        return backend_fail(why, -EIO, "cannot watch dispenser-vmux of '%s'", run->name);
    return 0;
}

/* The recorded mux, still the same process (pids are reused) and alive. */
static bool vmux_alive(struct qemu_run *run) {
    return backend_proc_alive(run->vmux_pid, run->vmux_starttime, &run->vmux_pidfd);
}

/* An adopted VM serves calls as soon as the daemon listens: the new mux's socket should
 * be there by then (it binds a few ms after its exec; longer on a loaded host). Bounded:
 * a mux that does not come up is reported by its exit. */
static void wait_listening(struct qemu_run *run) {
    double deadline = mono_ms() + VMUX_LISTEN_WAIT_MS;
    while (access(run->link.socket_path, F_OK) < 0 && mono_ms() < deadline && qemu_alive(run)) {
        struct timespec pause = {0, LINK_RETRY_US * 1000L};
        nanosleep(&pause, NULL);
    }
}

int qemu_vmux_adopt(struct qemu_run *run, struct backend_why *why) {
    if (vmux_alive(run))
        return watch_vmux(run) < 0 ? backend_fail(why, -EIO, "cannot watch dispenser-vmux") : 0;
    if (run->vmux_pidfd >= 0)
        close(run->vmux_pidfd);
    run->vmux_pidfd = -1;
    log_info("%s: its dispenser-vmux is gone; starting a new one", run->name);
    unlink(run->link.socket_path); /* the dead one's: refuses, and would end the wait */
    if (qemu_vmux_spawn(run, why) < 0)
        return -1;
    wait_listening(run);
    return 0;
}

void qemu_vmux_end(struct qemu_run *run) {
    if (run->vmux_pidfd < 0)
        return;
    run->vmux_src = sd_event_source_disable_unref(run->vmux_src);
    syscall(SYS_pidfd_send_signal, run->vmux_pidfd, SIGKILL, NULL, 0);
    struct pollfd pfd = {.fd = run->vmux_pidfd, .events = POLLIN};
    if (poll(&pfd, 1, 2000) <= 0)
        log_warning("%s: dispenser-vmux still alive 2 s after SIGKILL", run->name);
    siginfo_t si;
    waitid(P_PIDFD, (id_t)run->vmux_pidfd, &si, WEXITED | WNOHANG);
    close(run->vmux_pidfd);
    run->vmux_pidfd = -1;
}

/* ---- readiness ---- */

static void on_link_ready(void *userdata, int r, const char *reason) {
    struct qemu_run *run = userdata;
    if (r < 0)
        qemu_abort_start(run, reason);
    else if ((run->golden && !run->golden_vm) || run->woken)
        qemu_golden_refresh(run); /* a restored clone (or woken VM) becomes itself first */
    else
        qemu_got_ready(run);
}

static int on_link_retry(sd_event_source *src, uint64_t usec, void *userdata) {
    struct qemu_run *run = userdata;
    run->link_timer = sd_event_source_disable_unref(run->link_timer);
    qemu_link_wait_ready(run);
    return 0;
}

/* The request waits in the stream until the guest's end of the port is up (QEMU reads
 * nothing before): the whole boot. ready_timer (qrexec_timeout) bounds it; the link's own
 * timeout is the time left, as a backstop. */
void qemu_link_wait_ready(struct qemu_run *run) {
    double left_ms = run->ready_deadline_ms - mono_ms();
    unsigned timeout_s = left_ms > 1000 ? (unsigned)(left_ms / 1000) + 1 : 1;
    int r = agent_link_wait_ready(&run->link, timeout_s, run->start_priority, on_link_ready, run);
    if (r == -ENOENT || r == -ECONNREFUSED) { /* the mux does not listen yet */
        r = sd_event_add_time_relative(run->qb->base.loop, &run->link_timer, CLOCK_MONOTONIC,
                                       LINK_RETRY_US, 0, on_link_retry, run);
        if (r >= 0) {
            sd_event_source_set_priority(run->link_timer, run->start_priority);
            return;
        }
    }
    if (r < 0) {
        char why[300];
        snprintf(why, sizeof(why), "cannot reach the agent through %s: %s", run->link.socket_path,
                 strerror(-r));
        qemu_abort_start(run, why);
    }
}

/* ---- service calls ---- */

/* The first call after an unpause whose balloon has not let go yet (a preload's
 * hand-out): its end gives the memory back (qemu_balloon_give_back). */
struct first_call {
    struct qemu_backend *qb;
    backend_call_done_fn done;
    void *userdata;
    char *qube;
};

static void on_first_call_end(void *userdata, enum backend_call_end how, int status,
                              const char *reason) {
    struct first_call fc = *(struct first_call *)userdata;
    free(userdata);
    struct qemu_run *run = qemu_find(fc.qb, fc.qube);
    free(fc.qube);
    if (run)
        qemu_balloon_give_back_now(run);
    fc.done(fc.userdata, how, status, reason);
}

int qemu_exec(struct backend *b, const char *name, const struct backend_service_call *call,
              backend_call_done_fn done, void *userdata, struct backend_why *why) {
    struct qemu_run *run = qemu_find((struct qemu_backend *)b, name);
    if (!run || run->power != BACKEND_RUNNING || run->start_done)
        return backend_fail(why, -EAGAIN,
                            "Domain not running (either powered off or "
                            "paused): '%s'",
                            name);
    if (!run->give_back_src)
        return agent_link_exec(&run->link, call, done, userdata, why);
    struct first_call *fc = xcalloc(1, sizeof(*fc));
    *fc = (struct first_call){(struct qemu_backend *)b, done, userdata, xstrdup(name)};
    if (agent_link_exec(&run->link, call, on_first_call_end, fc, why) < 0) {
        free(fc->qube);
        free(fc);
        return -1;
    }
    return 0;
}

/* Calls out of the VM come up its uplink without descriptors; their stdio cross on data
 * connections of their own (agent_link_upcopy.c). A VM gone meanwhile: the link frees
 * the upcall unanswered. */
void qemu_upcall_reply(struct backend *b, struct backend_upcall *call, enum backend_call_end how,
                       int status, const char *reason) {
    struct qemu_run *run = qemu_find((struct qemu_backend *)b, call->source);
    agent_link_upcall_reply(run ? &run->link : NULL, call, how, status, reason);
}
