/* Starting a VM: images, cgroup, QEMU paused (-S), then, from the event loop, its sockets,
 * `cont`, dispenser-vmux and the agent's readiness (qemu_link.c). Nothing here waits for
 * QEMU or the guest: a preload's boot (seconds under TCG) never holds up the daemon. */
#include "qemu.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "container/volume.h"
#include "fsutil.h"
#include "image.h"
#include "log.h"
#include "monoclock.h"
#include "qemu_balloon.h"
#include "strbuf.h"

#define QEMU_UP_TIMEOUT_MS 30000 /* QEMU's own start (~35 ms idle; a loaded host, more) */
#define QEMU_UP_POLL_US 5000
#define QEMU_LOG_ROTATE_BYTES (1024 * 1024)
#define QMP_TIMEOUT_MS 5000
/* QEMU's own memory beyond the guest's: code, the TCG translation cache, device state */
#define QEMU_OVERHEAD_MIB 384

static struct qemu_run *run_new(struct qemu_backend *qb, const struct backend_qube *q) {
    struct qemu_run *run = xcalloc(1, sizeof(*run));
    run->qb = qb;
    run->name = xstrdup(q->name);
    run->uuid = xstrdup(q->uuid);
    run->kind = q->kind;
    run->accel = qb->accel;
    run->pidfd = run->control_fd = run->qmp.fd = run->vmux_pidfd = -1;
    run->hibernate_fd = run->wake_fd = -1;
    run->power = BACKEND_RUNNING;
    run->shutdown_timeout = q->shutdown_timeout;
    run->hibernatable = q->hibernatable && q->kind == BACKEND_DISPVM;
    qemu_hibernate_claim(run);
    run->cpu_weight = 100 * (q->vcpus ? q->vcpus : 1);
    run->start_priority = q->background ? SD_EVENT_PRIORITY_IDLE : SD_EVENT_PRIORITY_NORMAL;
    qemu_link_init(run);
    return run;
}

/* The template's root image of the revision current now, in `image`; *stack_out (when
 * the image is still to be built) says what from. */
static int prepare_root(struct qemu_backend *qb, const struct backend_qube *q, char *image,
                        size_t size, struct volume_stack *stack, struct backend_why *why) {
    int r = volume_current(qb->state_dir, q->root_source, "root", stack);
    if (r < 0)
        return backend_fail(why, r, "cannot read the root volume of '%s': %s", q->name,
                            strerror(-r));
    if (stack->n_layers == 0)
        return backend_fail(why, -EIO,
                            "'%s' has no root filesystem: its template was never "
                            "built (see qvm-template build)",
                            q->name);
    image_root_path(qb->state_dir, q->root_source, stack->revision, image, size);
    return 0;
}

/* An AppVM's own private image; a disposable writes over its template's (if it has one)
 * into a throwaway overlay, a hibernatable one into a copy of its own (qemu_hibernate.c). */
static int prepare_private(struct qemu_run *run, const struct backend_qube *q, char *image,
                           size_t size, bool *throwaway, struct backend_why *why) {
    struct qemu_backend *qb = run->qb;
    *throwaway = q->kind == BACKEND_DISPVM && !run->hibernatable;
    if (run->hibernatable)
        return qemu_hibernate_private(run, q, image, size, why);
    if (q->kind == BACKEND_DISPVM) {
        image_private_path(qb->state_dir, q->private_source, image, size);
        if (access(image, F_OK) < 0)
            *image = '\0';
        return 0;
    }
    image_private_path(qb->state_dir, q->uuid, image, size);
    return image_private_ensure(qb->state_dir, q->uuid, why);
}

static const char *option_or(const struct backend_qube *q, const char *key, const char *dflt) {
    const char *v = backend_option(q->options, q->n_options, key);
    return v && *v ? v : dflt;
}

/* KIND: console, the guest's serial console; qemu, QEMU's own messages; vmux,
 * dispenser-vmux's. A failed start quotes what came after *start. */
int qemu_open_log(struct qemu_backend *qb, const char *name, const char *kind, char **path,
                  off_t *start) {
    char buf[4096], old[4200];
    qemu_log_path(qb, name, kind, buf, sizeof(buf));
    struct stat st;
    snprintf(old, sizeof(old), "%s.1", buf);
    if (stat(buf, &st) == 0 && st.st_size > QEMU_LOG_ROTATE_BYTES)
        rename(buf, old);
    int fd = open(buf, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    free(*path);
    *path = xstrdup(buf);
    *start = fd >= 0 ? lseek(fd, 0, SEEK_END) : 0;
    return fd;
}

/* stdin /dev/null, stdout and stderr the log, the jail's descriptors as 3, 4, ... and
 * nothing else (each first moved above them, so none overwrites another) but, until the
 * exec, the pidfd whose namespaces the jail joins (or the network namespace it joins):
 * returned (-1: none). */
static int child_fds(int log_fd, const struct qemu_jail *jail) {
    int high[QEMU_JAIL_FDS + 1];
    size_t n = jail ? jail->n_fds : 0;
    for (size_t i = 0; i < n; i++)
        if ((high[i] = fcntl(jail->fds[i], F_DUPFD_CLOEXEC, 64)) < 0)
            _exit(125);
    int ns_src = !jail                ? -1
                 : jail->ns_pidfd > 0 ? jail->ns_pidfd
                 : jail->netns_fd > 0 ? jail->netns_fd
                                      : -1;
    int ns_fd = ns_src >= 0 ? fcntl(ns_src, F_DUPFD_CLOEXEC, 64) : -1;
    int log_high = fcntl(log_fd, F_DUPFD_CLOEXEC, 64);
    int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (log_high < 0 || devnull < 0 || dup2(devnull, 0) < 0 || dup2(log_high, 1) < 0 ||
        dup2(log_high, 2) < 0)
        _exit(125);
    for (size_t i = 0; i < n; i++)
        if (dup2(high[i], 3 + (int)i) < 0)
            _exit(125);
    if (ns_fd < 0) {
        syscall(SYS_close_range, 3 + (unsigned)n, ~0U, 0);
        return -1;
    }
    int keep = dup2(ns_fd, 3 + (int)n); /* and CLOEXEC again: gone at the exec */
    if (keep < 0 || fcntl(keep, F_SETFD, FD_CLOEXEC) < 0)
        _exit(125);
    syscall(SYS_close_range, (unsigned)keep + 1, ~0U, 0);
    return keep;
}

int qemu_spawn(struct qemu_run *run, char **argv, int log_fd, const struct qemu_jail *jail,
               pid_t *pid_out) {
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        if (run->cg && cgroup_qube_attach(run->cg, 0) < 0) /* none: an adopted VM's is gone */
            _exit(125);
        setsid();
        int ns_fd = child_fds(log_fd, jail);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        if (jail && qemu_confine(jail, ns_fd) < 0)
            _exit(125);
        if (jail && jail->env)
            execve(argv[0], argv, jail->env);
        else
            execv(argv[0], argv);
        dprintf(2, "dispenser: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    *pid_out = pid;
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

/* The last line written to a log since `from`. */
static void last_log_line(const char *path, off_t from, char *buf, size_t size) {
    char tail[1024];
    *buf = '\0';
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || st.st_size <= from)
        return;
    off_t at = st.st_size - from > (off_t)sizeof(tail) - 1 ? st.st_size - (off_t)sizeof(tail) + 1
                                                           : from;
    ssize_t n = pread(fd, tail, sizeof(tail) - 1, at);
    if (n <= 0)
        return;
    tail[n] = '\0';
    while (n > 0 && (tail[n - 1] == '\n' || tail[n - 1] == '\r'))
        tail[--n] = '\0';
    char *line = strrchr(tail, '\n');
    snprintf(buf, size, "%s", line ? line + 1 : tail);
}

static int check_kind(const struct backend_qube *q, struct backend_why *why) {
    if (q->kind == BACKEND_TEMPLATEVM || q->kind == BACKEND_STANDALONEVM)
        return backend_fail(why, -EIO,
                            "virt_mode=qemu runs AppVMs and disposables only for "
                            "now: '%s' has a root of its own (keep virt_mode=container for it)",
                            q->name);
    if (!q->root_source)
        return backend_fail(why, -EIO, "'%s' has no template to boot from", q->name);
    if (q->scratch_dir) /* its throwaway images are files beside the others */
        return backend_fail(why, -EOPNOTSUPP,
                            "virt_mode=qemu cannot keep the volatile data of '%s' in a ram pool "
                            "yet: create it with its volumes in the on-disk pool",
                            q->name);
    return 0;
}

static int check_file(const char *what, const char *path, struct backend_why *why) {
    if (access(path, R_OK) < 0)
        return backend_fail(why, -errno, "the guest %s %s cannot be read: %s", what, path,
                            strerror(errno));
    return 0;
}

/* The qube's guest: its `kernel` property names a directory of the kernels dir (as
 * Qubes' names one of /var/lib/qubes/vm-kernels), never a path: whoever may set a qube's
 * properties must not make QEMU read any host file into a guest. The model refuses a path;
 * checked again here, where it matters. "" is the engine's default guest. */
static int guest_files(const struct qemu_backend *qb, const struct backend_qube *q, char *kernel,
                       char *initrd, size_t size, struct backend_why *why) {
    const char *name = q->kernel;
    if (!name || !*name) {
        snprintf(kernel, size, "%s", qb->kernel);
        snprintf(initrd, size, "%s", qb->initrd);
    } else if (strchr(name, '/') || name[0] == '.') {
        return backend_fail(why, -EINVAL,
                            "kernel %s: a kernel is a directory name in %s, not a path", name,
                            qb->kernels_dir);
    } else {
        snprintf(kernel, size, "%s/%s/vmlinux", qb->kernels_dir, name);
        snprintf(initrd, size, "%s/%s/initramfs.cpio", qb->kernels_dir, name);
    }
    if (check_file("kernel", kernel, why) < 0 || check_file("initramfs", initrd, why) < 0)
        return -1;
    return 0;
}

/* The images QEMU gets as descriptors: the root read-only; the private one read-write
 * and read-only (QEMU opens it both ways), or read-only alone when its writes go to a
 * throwaway overlay. fds: root, private, private read-only (-1: none). */
static int open_images(const char *root, const char *private, bool throwaway, int fds[3],
                       struct backend_why *why) {
    const char *path = root;
    fds[0] = open(root, O_RDONLY | O_CLOEXEC);
    if (fds[0] >= 0 && private) {
        path = private;
        fds[1] = open(private, (throwaway ? O_RDONLY : O_RDWR) | O_CLOEXEC);
        if (fds[1] >= 0 && !throwaway)
            fds[2] = open(private, O_RDONLY | O_CLOEXEC);
    }
    if (fds[0] < 0 || (private && fds[1] < 0) || (private && !throwaway && fds[2] < 0))
        return backend_fail(why, -errno, "cannot open %s: %s", path, strerror(errno));
    return 0;
}

/* QEMU in its jail: the descriptors at 3 (console log), 4 (root image) and on (the
 * private image's, if any, then restore mode's guest RAM, then its NIC's tap), as
 * qemu_argv names them. */
static int spawn_confined(struct qemu_run *run, struct qemu_launch *l, const char *dir, int log_fd,
                          int con_fd, const int images[3]) {
    struct qemu_backend *qb = run->qb;
    char root[4200], scratch[4200], tmpdir[4300];
    snprintf(root, sizeof(root), "%s/root", dir);
    qemu_scratch_path(qb, run->name, scratch, sizeof(scratch));
    /* its temporary files (a disposable's overlay) in its scratch dir, nothing else */
    snprintf(tmpdir, sizeof(tmpdir), "TMPDIR=%s", scratch);
    char *env[] = {"PATH=/usr/bin:/bin", tmpdir, NULL};
    struct qemu_jail jail = {
        .uid = run->uid,
        .root = root,
        .rundir = dir,
        .scratch = scratch,
        .files = {qb->binary, l->kernel, l->initrd, NULL},
        .kvm = run->accel == QEMU_ACCEL_KVM,
        .fds = {con_fd, images[0]},
        .n_fds = 2,
        .env = env,
    };
    l->console_fd = 3;
    l->root_fd = 4;
    for (int i = 1; i < 3; i++)
        if (images[i] >= 0)
            jail.fds[jail.n_fds++] = images[i];
    l->private_fd = images[1] >= 0 ? 5 : 0;
    l->private_ro_fd = images[2] >= 0 ? 6 : 0;
    if (l->ram_fd > 0) { /* the golden's memfd: QEMU maps it as /proc/self/fd/N */
        jail.fds[jail.n_fds++] = l->ram_fd;
        l->ram_fd = 3 + (int)jail.n_fds - 1;
    }
    if (run->net && run->net->tap_fd >= 0) { /* its NIC's tap, next (qemu_net.c) */
        l->tap_fd = 3 + (int)jail.n_fds;
        l->net = run->net;
        jail.fds[jail.n_fds++] = run->net->tap_fd;
        jail.netns_fd = run->net->vm_netns; /* where the tap was made */
    }
    char **argv = qemu_argv(qb, run->name, l);
    run->pidfd = qemu_spawn(run, argv, log_fd, &jail, &run->pid);
    qemu_argv_free(argv);
    qemu_net_spawned(run);
    return run->pidfd;
}

static void close_all(int *fds, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (fds[i] >= 0)
            close(fds[i]);
}

/* A uid of its own, its runtime and scratch directories. */
static int prepare_jail(struct qemu_run *run, char *dir, size_t size, struct backend_why *why) {
    run->uid = qemu_pick_uid(run->qb);
    if (run->uid == (uid_t)-1)
        return backend_fail(why, -EAGAIN, "no free uid for QEMU in qemu.uid-base's range");
    int r = qemu_jail_prepare(run, dir, size);
    if (r < 0)
        return backend_fail(why, r, "cannot prepare the directories of '%s': %s", run->name,
                            strerror(-r));
    return 0;
}

/* What a boot of the qube would run: its guest, images and size (strings in the
 * caller's buffers). */
static int boot_launch(const struct qemu_backend *qb, const struct backend_qube *q,
                       const char *root, const char *private, bool throwaway, char *kernel,
                       char *initrd, size_t size, struct qemu_launch *l, struct backend_why *why) {
    if (guest_files(qb, q, kernel, initrd, size, why) < 0)
        return -1;
    *l = (struct qemu_launch){
        .kernel = kernel,
        .initrd = initrd,
        .kernelopts = q->kernelopts,
        .init = option_or(q, "init", NULL),
        .root_image = root,
        .private_image = *private ? private : NULL,
        .private_throwaway = throwaway,
        .memory_mib = q->memory_mib,
        .vcpus = q->vcpus,
        .gui = q->gui,
    };
    return 0;
}

/* Spawns QEMU for the run as `base` says, confined, in a fresh runtime directory. */
static int launch(struct qemu_run *run, const struct qemu_launch *base, struct backend_why *why) {
    struct qemu_backend *qb = run->qb;
    char dir[4096];
    if (prepare_jail(run, dir, sizeof(dir), why) < 0)
        return -1;
    _cleanup_close_ int con_fd = qemu_open_log(qb, run->name, "console", &run->console_log,
                                               &run->console_log_start);
    _cleanup_close_ int log_fd = qemu_open_log(qb, run->name, "qemu", &run->qemu_log,
                                               &run->qemu_log_start);
    if (log_fd < 0 || con_fd < 0)
        return backend_fail(why, -EIO, "cannot open the logs of '%s'", run->name);
    int images[3] = {-1, -1, -1};
    if (open_images(base->root_image, base->private_image, base->private_throwaway, images, why) <
        0) {
        close_all(images, 3);
        return -1;
    }
    struct qemu_launch l = *base;
    l.rundir = dir;
    l.console_log = run->console_log;
    l.balloon = run->balloon != QEMU_BALLOON_OFF;
    int r = spawn_confined(run, &l, dir, log_fd, con_fd, images);
    close_all(images, 3);
    if (r < 0)
        return backend_fail(why, -errno, "cannot start QEMU: %s", strerror(errno));
    run->starttime = backend_proc_starttime(run->pid);
    run->launched_ms = mono_ms();
    return 0;
}

static struct cgroup_limits limits_of(const struct backend_qube *q) {
    uint64_t mib = q->maxmem_mib > q->memory_mib ? q->maxmem_mib : q->memory_mib;
    return (struct cgroup_limits){
        .memory_max_bytes = (mib + QEMU_OVERHEAD_MIB) << 20,
        .pids_max = 1024, /* QEMU's threads */
        .cpu_weight = 100 * (q->vcpus ? q->vcpus : 1),
        .cpu_idle = q->background,
    };
}

void qemu_abort_start(struct qemu_run *run, const char *reason) {
    log_warning("%s: start failed: %s", run->name, reason);
    backend_done_fn done = TAKE_PTR(run->start_done);
    void *userdata = run->start_userdata;
    char why[sizeof(((struct backend_why *)0)->msg)];
    snprintf(why, sizeof(why), "Start of qube '%s' failed: %s", run->name, reason);
    qemu_kill_and_wait(run);
    qemu_teardown(run, false, 0);
    if (done)
        done(userdata, -EIO, why);
}

void qemu_start_failure(const struct qemu_run *run, char *buf, size_t size) {
    char line[400];
    last_log_line(run->qemu_log, run->qemu_log_start, line, sizeof(line));
    if (*line) {
        snprintf(buf, size, "QEMU did not start: %s", line);
        return;
    }
    last_log_line(run->console_log, run->console_log_start, line, sizeof(line));
    if (*line)
        snprintf(buf, size,
                 "QEMU exited during the guest's start-up; its console's last line: "
                 "%s",
                 line);
    else
        snprintf(buf, size, "QEMU exited during start-up");
}

static bool exited_within(const struct qemu_run *run, int ms) {
    struct pollfd pfd = {.fd = run->pidfd, .events = POLLIN};
    return poll(&pfd, 1, ms) > 0;
}

/* The guest runs: dispenser-vmux on the agent's port, then the agent's readiness. */
int qemu_continue_start(struct qemu_run *run, struct backend_why *err) {
    if (qmp_execute(&run->qmp, "cont", NULL, QMP_TIMEOUT_MS, NULL, 0, err) < 0 ||
        qemu_vmux_spawn(run, err) < 0)
        return -1;
    log_debug("%s: QEMU up in %.1f ms", run->name, mono_ms() - run->launched_ms);
    qemu_link_wait_ready(run);
    return 0;
}

/* QEMU is up once its QMP socket exists: connect to it and to the control port, let the
 * guest run (a clone loads its saved state first), start dispenser-vmux on the agent's
 * port and ask the agent for readiness. Its sockets exist before it loads the kernel, so
 * a connection that fails may be a QEMU on its way out: its log then says why. */
static void bring_up(struct qemu_run *run) {
    struct backend_why err = {{0}};
    if (qemu_connect(run, &err) == 0) {
        if (run->golden && !run->golden_vm) {
            qemu_golden_restore(run);
            return;
        }
        if (run->wake_fd >= 0) {
            qemu_hibernate_restore(run);
            return;
        }
        if (qemu_continue_start(run, &err) == 0)
            return;
    }
    char why[512];
    if (exited_within(run, 1000))
        qemu_start_failure(run, why, sizeof(why));
    else
        snprintf(why, sizeof(why), "%s", err.msg);
    qemu_abort_start(run, why);
}

static int on_up_poll(sd_event_source *src, uint64_t usec, void *userdata) {
    struct qemu_run *run = userdata;
    char dir[4096], qmp[4200];
    qemu_rundir(run->qb, run->name, dir, sizeof(dir));
    snprintf(qmp, sizeof(qmp), "%s/qmp.sock", dir);
    if (access(qmp, F_OK) == 0) {
        run->up_timer = sd_event_source_disable_unref(run->up_timer);
        bring_up(run);
    } else if (mono_ms() > run->up_deadline_ms) {
        qemu_abort_start(run, "QEMU did not open its QMP socket in time");
    } else {
        sd_event_source_set_time_relative(src, QEMU_UP_POLL_US);
        sd_event_source_set_enabled(src, SD_EVENT_ONESHOT);
    }
    return 0;
}

static int on_ready_timeout(sd_event_source *src, uint64_t usec, void *userdata) {
    qemu_abort_start(userdata, "the agent did not report readiness within qrexec_timeout");
    return 0;
}

void qemu_start_priority(struct qemu_run *run, int64_t priority) {
    run->start_priority = priority;
    if (run->up_timer)
        sd_event_source_set_priority(run->up_timer, priority);
    if (run->ready_timer)
        sd_event_source_set_priority(run->ready_timer, priority);
    if (run->link_timer)
        sd_event_source_set_priority(run->link_timer, priority);
    agent_link_ready_set_priority(&run->link, priority);
}

/* Polls for QEMU's QMP socket (it appears ~35 ms after exec), and bounds the whole start
 * by qrexec_timeout. */
static int watch_start(struct qemu_run *run, unsigned qrexec_timeout) {
    sd_event *loop = run->qb->base.loop;
    run->up_deadline_ms = mono_ms() + QEMU_UP_TIMEOUT_MS;
    run->ready_deadline_ms = mono_ms() + qrexec_timeout * 1000.0;
    if (sd_event_add_time_relative(loop, &run->up_timer, CLOCK_MONOTONIC, QEMU_UP_POLL_US, 0,
                                   on_up_poll, run) < 0 ||
        sd_event_add_time_relative(loop, &run->ready_timer, CLOCK_MONOTONIC,
                                   (uint64_t)qrexec_timeout * 1000000ULL, 0, on_ready_timeout,
                                   run) < 0)
        return -1;
    qemu_start_priority(run, run->start_priority);
    return 0;
}

/* QEMU runs, watched; its start goes on in the loop. On failure nothing of it is left. */
int qemu_run_launch(struct qemu_run *run, const struct qemu_launch *l, unsigned qrexec_timeout,
                    struct backend_why *why) {
    if (launch(run, l, why) < 0)
        return -1;
    if (qemu_state_save(run) < 0 || qemu_watch(run) < 0 || watch_start(run, qrexec_timeout) < 0)
        return backend_fail(why, -EIO, "cannot watch QEMU of '%s'", run->name);
    return 0;
}

/* Booted, or restored from its template's golden VM (restore mode, qemu_golden.c). */
static int launch_watched(struct qemu_run *run, const struct backend_qube *q, const char *root,
                          struct backend_why *failed) {
    char private[4096], kernel[4096], initrd[4096];
    bool throwaway;
    struct qemu_launch base;
    int r = -1;
    run->balloon = qemu_balloon_mode_of(option_or(q, "balloon", NULL));
    if (prepare_private(run, q, private, sizeof(private), &throwaway, failed) == 0 &&
        boot_launch(run->qb, q, root, private, throwaway, kernel, initrd, sizeof(kernel), &base,
                    failed) == 0)
        r = 0;
    base.incoming = run->wake_fd >= 0; /* woken: its hibernation image, not a boot */
    if (r == 0)
        r = qemu_golden_wanted(q) && !run->hibernatable
                ? qemu_golden_start(run, q, &base, failed)
                : qemu_run_launch(run, &base, q->qrexec_timeout, failed);
    if (r < 0) {
        if (!*failed->msg)
            snprintf(failed->msg, sizeof(failed->msg), "cannot watch QEMU of '%s'", q->name);
        return -EIO;
    }
    log_info("%s: QEMU started (pid %d, %s: %s)", q->name, run->pid, qemu_accel_name(run->accel),
             run->qb->accel_why);
    return 0;
}

void qemu_launch_pending(struct qemu_run *run) {
    struct backend_qube *q = TAKE_PTR(run->pending);
    char root[4096];
    struct volume_stack stack = {0};
    struct backend_why why = {{0}};
    /* the revision current now: the template may have changed while its image was built */
    if (prepare_root(run->qb, q, root, sizeof(root), &stack, &why) == 0)
        run->root_revision = stack.revision;
    if (!*why.msg && access(root, F_OK) < 0) {
        run->build = qemu_build_root(run->qb, q->root_source, &stack, &why);
        if (run->build) {
            run->pending = q;
            volume_stack_free(&stack);
            return;
        }
    }
    volume_stack_free(&stack);
    if (*why.msg || launch_watched(run, q, root, &why) < 0)
        qemu_abort_start(run, why.msg);
    backend_qube_free(q);
}

static struct qemu_run *run_prepared(struct qemu_backend *qb, const struct backend_qube *q,
                                     struct backend_why *why) {
    struct qemu_run *run = run_new(qb, q);
    struct cgroup_limits limits = limits_of(q);
    run->cg = cgroup_qube_create(qb->cgroups, q->name, &limits);
    if (!run->cg) {
        backend_fail(why, -errno, "cannot create the cgroups of '%s': %s", q->name,
                     strerror(errno));
        qemu_run_free(run);
        return NULL;
    }
    run->next = qb->runs;
    qb->runs = run;
    return run;
}

struct qemu_run *qemu_run_create(struct qemu_backend *qb, const struct backend_qube *q,
                                 struct backend_why *why) {
    return run_prepared(qb, q, why);
}

/* A revision's first start waits for its root image in the background (qemu_build.c):
 * the daemon's loop never runs mkfs. */
int qemu_start(struct backend *b, const struct backend_qube *q, backend_done_fn done,
               void *userdata, struct backend_why *why) {
    struct qemu_backend *qb = (struct qemu_backend *)b;
    if (qemu_find(qb, q->name))
        return backend_fail(why, -EBUSY, "Domain is not powered off: '%s'", q->name);
    char root[4096];
    struct volume_stack stack = {0};
    int r = check_kind(q, why);
    if (r == 0)
        r = prepare_root(qb, q, root, sizeof(root), &stack, why);
    struct qemu_run *run = r == 0 ? run_prepared(qb, q, why) : NULL;
    if (run && qemu_net_prepare(run, q->net, why) < 0) { /* now: q->net is borrowed */
        qemu_kill_and_wait(run);
        qemu_teardown(run, false, 0);
        run = NULL, r = -EIO;
    }
    if (!run) {
        volume_stack_free(&stack);
        return r < 0 ? r : -EIO;
    }
    run->root_revision = stack.revision; /* its root is outdated once the template moves on */
    if (access(root, F_OK) < 0) {
        run->build = qemu_build_root(qb, q->root_source, &stack, why);
        run->pending = run->build ? backend_qube_dup(q) : NULL;
        r = run->build ? 0 : -EIO;
    } else {
        struct backend_why failed = {{0}};
        if (launch_watched(run, q, root, &failed) < 0)
            r = backend_fail(why, -EIO, "Start of qube '%s' failed: %s", q->name, failed.msg);
    }
    volume_stack_free(&stack);
    if (r < 0) {
        qemu_kill_and_wait(run);
        qemu_teardown(run, false, 0);
        return r;
    }
    run->start_done = done;
    run->start_userdata = userdata;
    return 0;
}
