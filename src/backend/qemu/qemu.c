/* The QEMU engine: the backend_ops of virt_mode=qemu. Each qube is a QEMU process (a
 * microvm) in a cgroup of its own, driven through QMP; its agent is reached through
 * dispenser-vmux on a virtio-serial port (qemu_link.c), its init hears "poweroff" on
 * another. */
#include "qemu.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "fsutil.h"
#include "log.h"
#include "monoclock.h"
#include "qemu_backend.h"
#include "qemu_balloon.h"
#include "strbuf.h"
#include "unix_socket.h"

#define QMP_TIMEOUT_MS 5000

static struct qemu_backend *qb_of(struct backend *b) { return (struct qemu_backend *)b; }

const char *qemu_accel_name(enum qemu_accel a) { return a == QEMU_ACCEL_KVM ? "kvm" : "tcg"; }

struct qemu_run *qemu_find(struct qemu_backend *qb, const char *name) {
    for (struct qemu_run *r = qb->runs; r; r = r->next)
        if (strcmp(r->name, name) == 0)
            return r;
    return NULL;
}

void qemu_rundir(const struct qemu_backend *qb, const char *name, char *buf, size_t size) {
    snprintf(buf, size, "%s/qemu/%s", qb->runtime_dir, name);
}

void qemu_log_path(const struct qemu_backend *qb, const char *name, const char *kind, char *buf,
                   size_t size) {
    snprintf(buf, size, "%s/log", qb->state_dir);
    mkdir(buf, 0750);
    snprintf(buf, size, "%s/log/qemu", qb->state_dir);
    mkdir(buf, 0750);
    snprintf(buf, size, "%s/log/qemu/%s.%s.log", qb->state_dir, name, kind);
}

static int not_running(const char *name, struct backend_why *why) {
    return backend_fail(why, -EAGAIN,
                        "Domain not running (either powered off or "
                        "paused): '%s'",
                        name);
}

static int powered_off(const char *name, struct backend_why *why) {
    return backend_fail(why, -ESRCH, "Domain is powered off: '%s'", name);
}

/* ---- the end of a VM ---- */

static void run_unlink(struct qemu_run *run) {
    for (struct qemu_run **p = &run->qb->runs; *p; p = &(*p)->next)
        if (*p == run) {
            *p = run->next;
            return;
        }
}

static void close_channels(struct qemu_run *run) {
    run->qmp_src = sd_event_source_disable_unref(run->qmp_src);
    qmp_close(&run->qmp);
    run->control_src = sd_event_source_disable_unref(run->control_src);
    if (run->control_fd >= 0)
        close(run->control_fd);
    run->control_fd = -1;
}

void qemu_run_free(struct qemu_run *run) {
    close_channels(run);
    qemu_net_free(run);
    agent_link_free(&run->link);
    sd_event_source_disable_unref(run->exit_src);
    sd_event_source_disable_unref(run->vmux_src);
    if (run->vmux_pidfd >= 0)
        close(run->vmux_pidfd);
    sd_event_source_disable_unref(run->ready_timer);
    sd_event_source_disable_unref(run->up_timer);
    sd_event_source_disable_unref(run->link_timer);
    sd_event_source_disable_unref(run->stop_timer);
    sd_event_source_disable_unref(run->shrink_timer);
    sd_event_source_disable_unref(run->give_back_src);
    sd_event_source_disable_unref(run->restore_timer);
    sd_event_source_disable_unref(run->hibernate_timer);
    if (run->hibernate_fd > 0)
        close(run->hibernate_fd);
    if (run->wake_fd > 0)
        close(run->wake_fd);
    free(run->qemu_log);
    free(run->console_log);
    if (run->pidfd >= 0)
        close(run->pidfd);
    if (run->cg)
        cgroup_qube_free(run->cg);
    backend_waiters_free(&run->stop_waiters);
    backend_qube_free(run->pending);
    free(run->name);
    free(run->uuid);
    free(run);
}

void qemu_finish_start(struct qemu_run *run, int r, const char *reason) {
    backend_done_fn done = TAKE_PTR(run->start_done);
    run->ready_timer = sd_event_source_disable_unref(run->ready_timer);
    run->up_timer = sd_event_source_disable_unref(run->up_timer);
    run->link_timer = sd_event_source_disable_unref(run->link_timer);
    agent_link_ready_cancel(&run->link);
    if (!done)
        return;
    char why[sizeof(((struct backend_why *)0)->msg)] = "";
    if (r < 0)
        snprintf(why, sizeof(why), "Start of qube '%s' failed: %s", run->name, reason);
    done(run->start_userdata, r, r < 0 ? why : NULL);
}

static void remove_cgroup(struct qemu_run *run) {
    if (!run->cg)
        return;
    cgroup_qube_kill(run->cg);
    int r = cgroup_qube_destroy(TAKE_PTR(run->cg));
    if (r < 0)
        log_warning("%s: cgroup not removed: %s", run->name, strerror(-r));
}

/* The daemon hears of the end (a failed start's caller, the shutdown's waiters, the
 * exit report) once nothing of the VM is left. */
void qemu_teardown(struct qemu_run *run, bool report, int status) {
    struct qemu_backend *qb = run->qb;
    char dir[4096];
    char start_why[sizeof(((struct backend_why *)0)->msg)] = "";
    backend_done_fn start_done = TAKE_PTR(run->start_done);
    void *start_userdata = run->start_userdata;
    if (start_done) { /* a qube that never finished starting failed to start */
        char why[400];
        qemu_start_failure(run, why, sizeof(why));
        snprintf(start_why, sizeof(start_why), "Start of qube '%s' failed: %s", run->name, why);
    }
    run_unlink(run);
    qemu_golden_detach(run);
    close_channels(run);
    agent_link_free(&run->link); /* its calls in flight end as their connections do */
    remove_cgroup(run);
    qemu_vmux_end(run);
    qemu_rundir(qb, run->name, dir, sizeof(dir));
    remove_recursive(dir);
    qemu_scratch_remove(qb, run->name);
    backend_done_fn hibernate_done = TAKE_PTR(run->hibernate_done);
    void *hibernate_userdata = run->hibernate_userdata;
    qemu_hibernate_end(run);
    struct backend_waiter *waiters = TAKE_PTR(run->stop_waiters);
    char *name = xstrdup(run->name);
    qemu_run_free(run);
    if (start_done)
        start_done(start_userdata, -EIO, start_why);
    backend_waiters_tell(&waiters);
    if (report && !start_done && qb->base.events.exited)
        qb->base.events.exited(qb->base.events.userdata, name, status);
    if (hibernate_done) /* after its end is known: the daemon finds it gone */
        hibernate_done(hibernate_userdata, -EIO, "it stopped while it was being hibernated");
    free(name);
}

static int on_exit_event(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
    struct qemu_run *run = userdata;
    siginfo_t si = {0};
    int status = 0; /* an adopted QEMU is not our child: the host's init reaps it */
    if (waitid(P_PIDFD, (id_t)run->pidfd, &si, WEXITED | WNOHANG) == 0 && si.si_pid)
        status = si.si_code == CLD_EXITED ? si.si_status : 128 + si.si_status;
    log_info("%s: QEMU exited (status %d)", run->name, status);
    qemu_teardown(run, true, status);
    return 0;
}

int qemu_watch(struct qemu_run *run) {
    int r = sd_event_add_io(run->qb->base.loop, &run->exit_src, run->pidfd, EPOLLIN, on_exit_event,
                            run);
    if (r >= 0)
        sd_event_source_set_priority(run->exit_src, SD_EVENT_PRIORITY_IDLE);
    return r;
}

/* SIGKILL, and wait for the process to be gone (bounded). */
void qemu_kill_and_wait(struct qemu_run *run) {
    if (run->pidfd < 0)
        return;
    syscall(SYS_pidfd_send_signal, run->pidfd, SIGKILL, NULL, 0);
    struct pollfd pfd = {.fd = run->pidfd, .events = POLLIN};
    if (poll(&pfd, 1, 5000) <= 0)
        log_warning("%s: QEMU still alive 5 s after SIGKILL", run->name);
    siginfo_t si;
    waitid(P_PIDFD, (id_t)run->pidfd, &si, WEXITED | WNOHANG);
}

/* ---- the channels of a running VM ---- */

static int on_qmp_event(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
    struct qemu_run *run = userdata;
    if (qmp_drain(&run->qmp) < 0) /* QEMU is going: its exit is seen on the pidfd */
        run->qmp_src = sd_event_source_disable_unref(run->qmp_src);
    return 0;
}

void qemu_got_ready(struct qemu_run *run) {
    if (!run->start_done)
        return;
    run->power = BACKEND_RUNNING;
    /* calls out of the VM (qrexec-client-vm); it runs without them if this fails */
    if (agent_link_uplink_open(&run->link) < 0)
        log_warning("%s: no qrexec uplink: %s", run->name, strerror(errno));
    log_info("%s: ready %.0f ms after QEMU's start (%s)", run->name, mono_ms() - run->launched_ms,
             qemu_accel_name(run->accel));
    qemu_finish_start(run, 0, NULL);
}

/* The control port carries our requests to the guest's init; nothing the guest writes
 * there means anything to us (readiness is the agent's answer): read and dropped, so a
 * chatty guest cannot fill the socket. */
static int on_control(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
    struct qemu_run *run = userdata;
    char junk[256];
    ssize_t n = recv(fd, junk, sizeof(junk), MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
        run->control_src = sd_event_source_disable_unref(run->control_src);
    return 0;
}

int qemu_connect(struct qemu_run *run, struct backend_why *why) {
    char dir[4096], path[4200];
    qemu_rundir(run->qb, run->name, dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/qmp.sock", dir);
    if (qmp_open(&run->qmp, path, why) < 0)
        return -1;
    snprintf(path, sizeof(path), "%s/control.sock", dir);
    run->control_fd = unix_connect(path);
    if (run->control_fd < 0) {
        int r = run->control_fd;
        run->control_fd = -1;
        return backend_fail(why, r, "cannot connect to the control port %s: %s", path,
                            strerror(-r));
    }
    sd_event *loop = run->qb->base.loop;
    if (sd_event_add_io(loop, &run->qmp_src, run->qmp.fd, EPOLLIN, on_qmp_event, run) < 0 ||
        sd_event_add_io(loop, &run->control_src, run->control_fd, EPOLLIN, on_control, run) < 0)
        return backend_fail(why, -EIO, "cannot watch the sockets of '%s'", run->name);
    return 0;
}

/* ---- life cycle ---- */

/* After a shrink (reclaim) the guest runs on until its balloon settled (bounded): it
 * counts as paused at once, nothing is asked of it meanwhile. */
static int qemu_pause(struct backend *b, const char *name, struct backend_why *why) {
    struct qemu_run *run = qemu_find(qb_of(b), name);
    if (!run || run->power != BACKEND_RUNNING || run->start_done)
        return not_running(name, why);
    if (run->shrink_target) {
        run->power = BACKEND_PAUSED;
        qemu_balloon_stop_when_small(run);
        return 0;
    }
    if (qmp_execute(&run->qmp, "stop", NULL, QMP_TIMEOUT_MS, NULL, 0, why) < 0)
        return -EIO;
    run->power = BACKEND_PAUSED;
    struct qemu_rss rss = qemu_rss_of(run->pid);
    log_info("%s: paused: QEMU's RSS %llu MiB, its own %llu MiB", run->name,
             (unsigned long long)(rss.total >> 20), (unsigned long long)(rss.own >> 20));
    return 0;
}

static int qemu_unpause(struct backend *b, const char *name, struct backend_why *why) {
    struct qemu_run *run = qemu_find(qb_of(b), name);
    if (!run || run->power != BACKEND_PAUSED)
        return backend_fail(why, -EALREADY, "Domain is not paused: '%s'", name);
    if (run->hibernated || run->hibernate_done)
        return backend_fail(why, -EINVAL,
                            "'%s' is hibernated (no QEMU runs): it wakes when it is handed out",
                            name);
    qemu_balloon_cancel(run); /* still shrinking: `cont` is a no-op then */
    if (qmp_execute(&run->qmp, "cont", NULL, QMP_TIMEOUT_MS, NULL, 0, why) < 0)
        return -EIO;
    run->power = BACKEND_RUNNING;
    qemu_balloon_give_back(run);
    return 0;
}

/* The balloon takes what the guest does not use; the pause that follows waits for it. */
static int qemu_reclaim(struct backend *b, const char *name) {
    struct qemu_run *run = qemu_find(qb_of(b), name);
    if (!run || run->power != BACKEND_RUNNING || run->start_done)
        return -ENOENT;
    return qemu_balloon_shrink(run);
}

static int qemu_foreground(struct backend *b, const char *name) {
    struct qemu_run *run = qemu_find(qb_of(b), name);
    if (!run || !run->cg)
        return -ENOENT;
    qemu_start_priority(run, SD_EVENT_PRIORITY_NORMAL);
    return cgroup_qube_set_idle(run->cg, false, run->cpu_weight);
}

static int qemu_kill(struct backend *b, const char *name, struct backend_why *why) {
    struct qemu_run *run = qemu_find(qb_of(b), name);
    if (!run)
        return powered_off(name, why);
    qemu_kill_and_wait(run);
    qemu_teardown(run, true, 128 + SIGKILL);
    return 0;
}

static int qemu_kill_nowait(struct backend *b, const char *name, struct backend_why *why) {
    struct qemu_run *run = qemu_find(qb_of(b), name);
    if (!run)
        return powered_off(name, why);
    if (run->build || run->hibernated) /* no QEMU: it ends here */
        return qemu_kill(b, name, why);
    syscall(SYS_pidfd_send_signal, run->pidfd, SIGKILL, NULL, 0);
    return 0;
}

static int on_stop_timeout(sd_event_source *src, uint64_t usec, void *userdata) {
    struct qemu_run *run = userdata;
    log_warning("%s: still running after shutdown_timeout; killing it", run->name);
    syscall(SYS_pidfd_send_signal, run->pidfd, SIGKILL, NULL, 0);
    return 0;
}

/* The guest's init hears "poweroff" on its control port and has the agent power off
 * (its exit resets the guest, which ends QEMU); ACPI's power button as well, for a
 * template's own init; a kill after shutdown_timeout whatever happens. */
static void ask_poweroff(struct qemu_run *run) {
    struct backend_why ignored = {{0}};
    qemu_balloon_cancel(run);
    if (run->power == BACKEND_PAUSED)
        qmp_execute(&run->qmp, "cont", NULL, QMP_TIMEOUT_MS, NULL, 0, &ignored);
    run->power = BACKEND_RUNNING;
    if (run->control_fd < 0 || send(run->control_fd, "poweroff\n", 9, MSG_NOSIGNAL) != 9)
        log_info("%s: no control port; ACPI power button only", run->name);
    qmp_execute(&run->qmp, "system_powerdown", NULL, QMP_TIMEOUT_MS, NULL, 0, &ignored);
}

static int qemu_shutdown(struct backend *b, const char *name, bool force, backend_done_fn done,
                         void *userdata, struct backend_why *why) {
    struct qemu_run *run = qemu_find(qb_of(b), name);
    if (!run)
        return powered_off(name, why);
    if (run->build || run->hibernated) { /* no guest to ask: it ends here */
        qemu_kill(b, name, why);
        if (done)
            done(userdata, 0, NULL);
        return 0;
    }
    ask_poweroff(run);
    backend_shutdown_watch(b->loop, &run->stop_timer, run->shutdown_timeout, on_stop_timeout, run,
                           &run->stop_waiters, done, userdata);
    return 0;
}

static enum backend_power qemu_state(struct backend *b, const char *name) {
    struct qemu_run *run = qemu_find(qb_of(b), name);
    return run ? run->power : BACKEND_HALTED;
}

static int qemu_stats(struct backend *b, const char *name, struct backend_stats *out) {
    struct qemu_run *run = qemu_find(qb_of(b), name);
    if (!run)
        return -ENOENT;
    /* what the qube costs the host: its own resident memory, the part the host's
     * MemAvailable does not count (the daemon's free memory adds it back as promised) */
    out->memory_bytes = qemu_rss_of(run->pid).own;
    out->cpu_ns = run->cg ? cgroup_qube_cpu_ns(run->cg) : 0;
    snprintf(out->accel, sizeof(out->accel), "%s", qemu_accel_name(run->accel));
    return 0;
}

static int qemu_memory_headroom(struct backend *b, uint64_t *bytes) {
    return cgroup_system_memory_headroom(qb_of(b)->cgroups, bytes);
}

static void qemu_free(struct backend *b) {
    struct qemu_backend *qb = qb_of(b);
    bool left = qb->runs != NULL;
    while (qb->runs) { /* VMs outlive the daemon: forget them, do not stop them */
        struct qemu_run *run = qb->runs;
        qb->runs = run->next;
        qemu_run_free(run);
    }
    agent_hub_free(&qb->agents);
    qemu_builds_forget(qb);
    qemu_golden_free_all(qb);
    free(qb->waking);
    if (!left && qb->cgroups)
        cgroup_system_remove_group(qb->cgroups);
    cgroup_system_free(qb->cgroups);
    free(qb->state_dir);
    free(qb->runtime_dir);
    free(qb->agent_path);
    free(qb->binary);
    free(qb->vmux);
    free(qb->kernel);
    free(qb->initrd);
    free(qb->kernels_dir);
    sd_event_unref(b->loop);
    free(qb);
}

static const struct backend_ops QEMU_OPS = {
    .name = "qemu",
    .start = qemu_start,
    .pause = qemu_pause,
    .unpause = qemu_unpause,
    .reclaim = qemu_reclaim,
    .foreground = qemu_foreground,
    .shutdown = qemu_shutdown,
    .kill = qemu_kill,
    .kill_nowait = qemu_kill_nowait,
    .state = qemu_state,
    .stats = qemu_stats,
    .memory_headroom = qemu_memory_headroom,
    .remove_volumes = qemu_remove_volumes,
    .volume_info = qemu_volume_info,
    .import_begin = qemu_import_begin,
    .import_end = qemu_import_end,
    .exec = qemu_exec,
    .gui_socket = qemu_gui_socket,
    .net_attach = qemu_net_attach,
    .upcall_reply = qemu_upcall_reply,
    .hibernate = qemu_hibernate,
    .wake = qemu_wake,
    .adopt = qemu_adopt,
    .cleanup = qemu_cleanup,
    .free = qemu_free,
};

/* ---- construction ---- */

/* A program in PATH (QEMU's binary), or NULL. */
static char *find_in_path(const char *prog) {
    if (strchr(prog, '/'))
        return access(prog, X_OK) == 0 ? xstrdup(prog) : NULL;
    const char *path = getenv("PATH");
    _cleanup_free_ char *copy = xstrdup(path && *path ? path : "/usr/bin:/bin");
    char *save = NULL;
    for (char *dir = strtok_r(copy, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
        char full[4096];
        snprintf(full, sizeof(full), "%s/%s", dir, prog);
        if (access(full, X_OK) == 0)
            return xstrdup(full);
    }
    return NULL;
}

/* The host's TSC rate in kHz, from the first "cpu MHz" of /proc/cpuinfo (0 if unknown). */
static unsigned host_tsc_khz(void) {
    FILE *f = fopen("/proc/cpuinfo", "re");
    char line[256];
    double mhz = 0;
    while (f && fgets(line, sizeof(line), f))
        if (sscanf(line, "cpu MHz : %lf", &mhz) == 1)
            break;
    if (f)
        fclose(f);
    return (unsigned)(mhz * 1000);
}

struct qemu_options {
    const char *binary, *guest_dir, *kernels_dir, *accel, *vmux;
};

/* Above the container engine's default range (0x60000000 + 65536): a VM's uid must own
 * nothing a qube's container could, and no host user. */
#define DEFAULT_UID_BASE 0x64000000u

static int parse_uid_base(const char *value, uid_t *out, struct backend_why *why) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(value, &end, 0);
    if (errno || !*value || *end || v == 0 || v > UINT32_MAX / 2)
        return backend_fail(why, -EIO, "qemu.uid-base: '%s' is not a valid id", value);
    *out = (uid_t)v;
    return 0;
}

/* --engine-option qemu.KEY=VALUE */
static int apply_options(struct qemu_backend *qb, const struct backend_config *cfg,
                         struct qemu_options *o, struct backend_why *why) {
    *o = (struct qemu_options){"qemu-system-x86_64", DEFAULT_VM_GUEST_DIR, NULL, "auto",
                               DEFAULT_VMUX};
    qb->uid_base = DEFAULT_UID_BASE;
    for (size_t i = 0; i < cfg->n_options; i++) {
        const char *k = cfg->options[i].key, *v = cfg->options[i].value;
        int r = 0;
        if (strcmp(k, "binary") == 0)
            o->binary = v;
        else if (strcmp(k, "guest-dir") == 0)
            o->guest_dir = v;
        else if (strcmp(k, "kernels-dir") == 0)
            o->kernels_dir = v;
        else if (strcmp(k, "vmux") == 0)
            o->vmux = v;
        else if (strcmp(k, "uid-base") == 0)
            r = parse_uid_base(v, &qb->uid_base, why);
        else if (strcmp(k, "accel") == 0 &&
                 (streq(v, "auto") || streq(v, "kvm") || streq(v, "tcg")))
            o->accel = v;
        else
            r = backend_fail(why, -EIO,
                             "qemu.%s=%s: no such option (known: binary, guest-dir, "
                             "kernels-dir, accel=auto|kvm|tcg, vmux, uid-base)",
                             k, v);
        if (r < 0)
            return -1;
    }
    return 0;
}

/* A path as the jails need it: absolute (they bind files at their host paths, and a
 * relative one would name nothing inside). */
static char *absolute(const char *path) {
    char *real = realpath(path, NULL);
    return real ? real : xstrdup(path);
}

static int find_guest(struct qemu_backend *qb, const struct qemu_options *o,
                      struct backend_why *why) {
    qb->binary = find_in_path(o->binary);
    if (!qb->binary)
        return backend_fail(why, -EIO, "%s is not installed (Debian: qemu-system-x86)", o->binary);
    char path[4096];
    _cleanup_free_ char *guest_dir = absolute(o->guest_dir);
    snprintf(path, sizeof(path), "%s/kernels", guest_dir);
    qb->kernels_dir = o->kernels_dir ? absolute(o->kernels_dir) : xstrdup(path);
    snprintf(path, sizeof(path), "%s/vmlinux", guest_dir);
    qb->kernel = xstrdup(path);
    snprintf(path, sizeof(path), "%s/initramfs.cpio", guest_dir);
    qb->initrd = xstrdup(path);
    if (access(qb->kernel, R_OK) < 0 || access(qb->initrd, R_OK) < 0)
        return backend_fail(why, -EIO,
                            "no guest kernel and initramfs in %s (run "
                            "scripts/fetch-vm-kernel.sh and scripts/build-vm-guest.sh)",
                            o->guest_dir);
    qb->vmux = absolute(o->vmux); /* without it no VM could answer a call, nor get ready */
    if (access(qb->vmux, X_OK) < 0)
        return backend_fail(why, -EIO, "dispenser-vmux cannot be run from %s (qemu.vmux=PATH): %s",
                            qb->vmux, strerror(errno));
    return 0;
}

/* One cgroup group per state dir and engine: the container engine's cleanup must never
 * see a VM's cgroup as its own leftover, nor several daemons each other's. */
static void cgroup_group_name(const char *state_dir, char *buf, size_t size) {
    char real[4096];
    const char *p = realpath(state_dir, real) ? real : state_dir;
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    snprintf(buf, size, "dispenser-qemu-%08x", h);
}

struct backend *qemu_backend_new(sd_event *loop, const struct backend_config *cfg,
                                 struct backend_why *why) {
    struct qemu_backend *qb = xcalloc(1, sizeof(*qb));
    qb->base = (struct backend){&QEMU_OPS, sd_event_ref(loop), {0}};
    agent_hub_init(&qb->agents, &qb->base);
    qb->state_dir = xstrdup(cfg->state_dir);
    qb->runtime_dir = xstrdup(cfg->runtime_dir);
    qb->agent_path = xstrdup(cfg->agent_path);
    struct qemu_options o;
    if (apply_options(qb, cfg, &o, why) < 0 || find_guest(qb, &o, why) < 0) {
        qemu_free(&qb->base);
        return NULL;
    }
    char group[64], path[4096];
    cgroup_group_name(cfg->state_dir, group, sizeof(group));
    qb->cgroups = cgroup_system_open(group);
    if (!qb->cgroups) {
        backend_fail(why, -EIO, "no usable cgroup hierarchy was found");
        qemu_free(&qb->base);
        return NULL;
    }
    snprintf(path, sizeof(path), "%s/qemu", qb->runtime_dir);
    make_owned_dir(path, 0, 0700);
    qb->tsc_khz = host_tsc_khz();
    qemu_accel_detect(qb, o.accel);
    log_info("qemu engine: %s, guest %s, accelerator %s (%s)", qb->binary, qb->kernel,
             qemu_accel_name(qb->accel), qb->accel_why);
    return &qb->base;
}
