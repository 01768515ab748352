/* Idmapped mounts for per-qube uid ranges (idmap.h). */
#include "idmap.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/mount.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fsutil.h"
#include "macro.h"
#include "strbuf.h"

static int write_map(pid_t pid, const char *file, const char *map) {
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/%s", pid, file);
    _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
    size_t len = strlen(map);
    return fd >= 0 && write(fd, map, len) == (ssize_t)len ? 0 : -errno;
}

/* A helper child holds nothing of the daemon's and dies with it. Forked, it has copies of
 * every descriptor, the daemon's listening socket among them: a helper that outlived a
 * killed daemon kept that socket answering, and the next daemon refused to start
 * ("Address already in use", found by test_chaos). `keep` (or -1) stays open. */
static void detach_from_daemon(pid_t daemon, int keep) {
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != daemon)
        _exit(1);
    if (keep > 0)
        close_range(0, (unsigned)keep - 1, 0);
    close_range(keep >= 0 ? (unsigned)keep + 1 : 0, ~0U, 0);
}

/* The child is made inside its new user namespace by clone3 itself, so its maps can be
 * written at once, without waiting for it to be scheduled (on a loaded host that wait
 * is tens of milliseconds). It never runs anything but pause. */
int idmap_userns_open(uid_t from, uid_t to, uid_t count, int *helper_pidfd) {
    int pidfd = -1;
    struct clone_args args = {
        .flags = CLONE_NEWUSER | CLONE_PIDFD,
        .pidfd = (uint64_t)(uintptr_t)&pidfd,
        .exit_signal = SIGCHLD,
    };
    pid_t daemon = getpid();
    pid_t pid = (pid_t)syscall(SYS_clone3, &args, sizeof(args));
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        detach_from_daemon(daemon, -1);
        for (;;)
            pause();
    }
    char map[96], path[64];
    snprintf(map, sizeof(map), "0 0 1\n%u %u %u\n", from, to, count);
    int r = write_map(pid, "uid_map", map);
    if (r == 0)
        r = write_map(pid, "gid_map", map);
    int fd = -1;
    if (r == 0) {
        snprintf(path, sizeof(path), "/proc/%d/ns/user", pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            r = -errno;
    }
    syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
    *helper_pidfd = pidfd;
    return r < 0 ? r : fd;
}

int idmap_mount(const char *src, const char *dst, int userns_fd) {
    int tree = (int)syscall(SYS_open_tree, AT_FDCWD, src, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
    if (tree < 0)
        return -1;
    struct mount_attr attr = {.attr_set = MOUNT_ATTR_IDMAP, .userns_fd = (uint64_t)userns_fd};
    int r = (int)syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH, &attr, sizeof(attr));
    if (r == 0)
        r = (int)syscall(SYS_move_mount, tree, "", AT_FDCWD, dst, MOVE_MOUNT_F_EMPTY_PATH);
    int saved = errno;
    close(tree);
    errno = saved;
    return r;
}

/* ---- the probe ---- */

_printf_(2, 3) static _Noreturn void probe_fail(int report, const char *fmt, ...) {
    char msg[256];
    int saved = errno;
    va_list ap;
    va_start(ap, fmt);
    vformat_errno(msg, sizeof(msg), saved, fmt, ap);
    va_end(ap);
    (void)!write(report, msg, strlen(msg));
    _exit(1);
}

static void probe_mkdir(int report, const char *top, const char *rel, uid_t owner) {
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", top, rel);
    errno = 0;
    if (make_owned_dir(path, owner, 0755) < 0)
        probe_fail(report, "cannot create %s", path);
}

/* What a qube's start does, in small: an overlay over an idmapped lower layer and an
 * idmapped upper, a file created and chowned through it, ids checked on both sides. */
static _Noreturn void probe_child(int report, const char *top, uid_t base, uid_t count) {
    char a[4200], b[4200], opts[9000];
    if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) < 0)
        probe_fail(report, "cannot make a mount namespace");
    probe_mkdir(report, top, "lower", base);
    probe_mkdir(report, top, "up", 0);
    probe_mkdir(report, top, "up/upper", base);
    probe_mkdir(report, top, "up/work", 0);
    probe_mkdir(report, top, "ml", 0);
    probe_mkdir(report, top, "mu", 0);
    probe_mkdir(report, top, "merged", 0);
    int helper = -1;
    int ns = idmap_userns_open(base, base + count, count, &helper);
    if (ns < 0) {
        errno = -ns;
        probe_fail(report, "cannot make an id-mapping user namespace");
    }
    snprintf(a, sizeof(a), "%s/lower", top);
    snprintf(b, sizeof(b), "%s/ml", top);
    if (idmap_mount(a, b, ns) < 0)
        probe_fail(report, "no idmapped mount of %s", a);
    snprintf(a, sizeof(a), "%s/up", top);
    snprintf(b, sizeof(b), "%s/mu", top);
    if (idmap_mount(a, b, ns) < 0)
        probe_fail(report, "no idmapped mount of %s", a);
    snprintf(opts, sizeof(opts), "lowerdir=%s/ml,upperdir=%s/mu/upper,workdir=%s/mu/work", top, top,
             top);
    snprintf(a, sizeof(a), "%s/merged", top);
    if (mount("overlay", a, "overlay", MS_NOSUID, opts) < 0)
        probe_fail(report, "no overlay over idmapped layers");
    struct stat st;
    snprintf(a, sizeof(a), "%s/merged/f", top);
    int fd = open(a, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0 || fchown(fd, base + count + 1, base + count + 1) < 0 || fstat(fd, &st) < 0)
        probe_fail(report, "cannot write through an overlay over idmapped layers");
    snprintf(b, sizeof(b), "%s/up/upper/f", top);
    struct stat disk;
    if (stat(b, &disk) < 0 || st.st_uid != base + count + 1 || disk.st_uid != base + 1)
        probe_fail(report, "idmapped overlay: a file shows uid %u, on disk %u", (unsigned)st.st_uid,
                   (unsigned)disk.st_uid);
    _exit(0); /* the helper, SIGKILLed, is reaped by whoever inherits it */
}

struct idmap_probe {
    pid_t pid;
    int report;
    char top[4096];
    char early[256]; /* a failure before the child ran */
};

struct idmap_probe *idmap_probe_start(const char *dir, uid_t base, uid_t count) {
    struct idmap_probe *p = xcalloc(1, sizeof(*p));
    p->pid = -1;
    p->report = -1;
    snprintf(p->top, sizeof(p->top), "%s/idmap-probe.XXXXXX", dir);
    int report[2];
    if (!mkdtemp(p->top)) {
        snprintf(p->early, sizeof(p->early), "cannot prepare the probe in %s: %s", dir,
                 strerror(errno));
        p->top[0] = '\0';
        return p;
    }
    if (pipe2(report, O_CLOEXEC) < 0) {
        snprintf(p->early, sizeof(p->early), "pipe: %s", strerror(errno));
        return p;
    }
    pid_t daemon = getpid();
    p->pid = fork();
    if (p->pid == 0) {
        detach_from_daemon(daemon, report[1]);
        probe_child(report[1], p->top, base, count);
    }
    if (p->pid < 0)
        snprintf(p->early, sizeof(p->early), "fork: %s", strerror(errno));
    close(report[1]);
    p->report = report[0];
    return p;
}

bool idmap_probe_finish(struct idmap_probe *p, char *why, size_t why_size) {
    char msg[256] = "";
    ssize_t n = p->report >= 0 ? read(p->report, msg, sizeof(msg) - 1) : -1;
    if (p->report >= 0)
        close(p->report);
    int status = -1;
    if (p->pid > 0)
        while (waitpid(p->pid, &status, 0) < 0 && errno == EINTR)
            ;
    if (p->top[0])
        remove_recursive(p->top);
    bool ok = p->pid > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (!ok)
        snprintf(why, why_size, "%s", p->early[0] ? p->early : n > 0 ? msg : "the probe failed");
    free(p);
    return ok;
}
