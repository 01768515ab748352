#include "launch.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <grp.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent_proto.h"
#include "copytree.h"
#include "fsutil.h"
#include "idmap.h"
#include "log.h"
#include "macro.h"
#include "monoclock.h"
#include "sandbox.h"
#include "strbuf.h"

/* Two pipes tie parent and child together: `go` carries one byte per step from the
 * parent, `report` carries the child's "user namespace entered" byte and, on failure, its
 * error text. report is CLOEXEC in the child, so EOF without text means the exec worked. */
struct launch_sync {
    int go[2];
    int report[2];
};

enum { STEP_MAPPED = 'm', STEP_USERNS = 'u' };

_printf_(2, 3) static _Noreturn void child_fail(const struct launch_sync *s, const char *fmt, ...) {
    char msg[512];
    int saved = errno;
    va_list ap;
    va_start(ap, fmt);
    vformat_errno(msg, sizeof(msg), saved, fmt, ap);
    va_end(ap);
    (void)!write(s->report[1], "E", 1);
    (void)!write(s->report[1], msg, strlen(msg));
    _exit(127);
}

static void child_wait_step(const struct launch_sync *s, char step) {
    char c;
    if (read(s->go[0], &c, 1) != 1 || c != step)
        child_fail(s, "launcher went away");
}

/* The overlay's directories by short names: symlinks in links_dir ("<tag>0".. for the
 * lowers, "<tag>u", "<tag>w"), the mount made from there. The kernel follows the links
 * and shows the options as given, so the qube's mountinfo names no host path. */
static void link_as(const char *target, const char *name, struct strbuf *opts) {
    unlink(name);
    if (symlink(target, name) == 0)
        strbuf_puts(opts, name);
    else
        strbuf_puts(opts, target); /* still mounts; only the path shows */
}

/* The same short names, as mount points of idmapped clones (idmap.h). */
static int idmap_as(const char *target, const char *name, int userns_fd, struct strbuf *opts) {
    unlink(name);
    if ((mkdir(name, 0700) < 0 && errno != EEXIST) || idmap_mount(target, name, userns_fd) < 0)
        return -1;
    strbuf_puts(opts, name);
    return 0;
}

/* overlayfs wants upper and work on one mount: their directory is idmapped once (at
 * "<tag>m"), and they are named through short links into it as without idmapping. */
static int idmap_upper_work(const struct launch_overlay *o, char tag, int userns_fd,
                            struct strbuf *opts) {
    const char *u = strrchr(o->upper, '/'), *w = strrchr(o->work, '/');
    if (!u || !w || u - o->upper != w - o->work ||
        strncmp(o->upper, o->work, (size_t)(u - o->upper)) != 0)
        return errno = EINVAL, -1;
    char mapped[32], target[64], name[32];
    snprintf(mapped, sizeof(mapped), "%cm", tag);
    char *parent = xstrndup(o->upper, (size_t)(u - o->upper));
    _cleanup_strbuf_ struct strbuf unused = STRBUF_INIT;
    int r = idmap_as(parent, mapped, userns_fd, &unused);
    free(parent);
    if (r < 0)
        return -1;
    strbuf_puts(opts, ",upperdir=");
    snprintf(name, sizeof(name), "%cu", tag);
    snprintf(target, sizeof(target), "%s%.*s", mapped, (int)(sizeof(target) - 8), u);
    link_as(target, name, opts);
    strbuf_puts(opts, ",workdir=");
    snprintf(name, sizeof(name), "%cw", tag);
    snprintf(target, sizeof(target), "%s%.*s", mapped, (int)(sizeof(target) - 8), w);
    link_as(target, name, opts);
    return 0;
}

/* A throwaway upper is mounted `volatile` (kernel 5.10+): no sync of the upper
 * filesystem, ever. Without it, unmounting an overlay (the qube's end) syncs the whole
 * filesystem its upper lives on (overlayfs' sync_fs), and every disposable's end waited
 * for the host's disk. Older kernels refuse the option: mounted without it then. */
static int mount_overlay(const struct launch_overlay *o, const char *where, const char *links_dir,
                         char tag, int userns_fd) {
    _cleanup_strbuf_ struct strbuf opts = STRBUF_INIT;
    char name[32];
    if (chdir(links_dir) < 0)
        return -1;
    strbuf_puts(&opts, "lowerdir=");
    for (size_t i = 0; i < o->n_lowers; i++) {
        if (i)
            strbuf_putc(&opts, ':');
        snprintf(name, sizeof(name), "%c%zu", tag, i);
        if (userns_fd < 0)
            link_as(o->lowers[i], name, &opts);
        else if (idmap_as(o->lowers[i], name, userns_fd, &opts) < 0)
            return -1;
    }
    if (userns_fd >= 0) {
        if (idmap_upper_work(o, tag, userns_fd, &opts) < 0)
            return -1;
    } else {
        strbuf_puts(&opts, ",upperdir=");
        snprintf(name, sizeof(name), "%cu", tag);
        link_as(o->upper, name, &opts);
        strbuf_puts(&opts, ",workdir=");
        snprintf(name, sizeof(name), "%cw", tag);
        link_as(o->work, name, &opts);
    }
    if (o->throwaway) {
        _cleanup_strbuf_ struct strbuf vol = STRBUF_INIT;
        strbuf_printf(&vol, "%s,volatile", strbuf_str(&opts));
        if (mount("overlay", where, "overlay", MS_NOSUID, strbuf_str(&vol)) == 0)
            return 0;
    }
    return mount("overlay", where, "overlay", MS_NOSUID, strbuf_str(&opts));
}

/* mkdir -p relative to the new root, owned by the range's root, for mount points that
 * the image may lack. Created through the overlay: they land in the qube's upper layer. */
static int make_dir_in(const char *root, const char *rel, uid_t owner, mode_t mode) {
    char path[4096];
    snprintf(path, sizeof(path), "%s%s", root, rel);
    if (mkdir(path, mode) < 0)
        return errno == EEXIST ? 0 : -1;
    return lchown(path, owner, owner);
}

static void mount_tmpfs(const struct launch_sync *s, const char *root, const char *rel,
                        const char *opts, unsigned long flags) {
    char path[4096];
    snprintf(path, sizeof(path), "%s%s", root, rel);
    if (mount("tmpfs", path, "tmpfs", flags, opts) < 0)
        child_fail(s, "cannot mount tmpfs on %s", rel);
}

static void make_devices(const struct launch_sync *s, const char *root, uid_t base) {
    static const struct {
        const char *name;
        unsigned maj, min;
    } nodes[] = {
        {"null", 1, 3},   {"zero", 1, 5},    {"full", 1, 7},
        {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0},
    };
    char path[4096], opts[128];
    snprintf(opts, sizeof(opts), "mode=755,size=64k,uid=%u,gid=%u", base, base);
    mount_tmpfs(s, root, "/dev", opts, MS_NOSUID | MS_NOEXEC);
    for (size_t i = 0; i < ELEMENTSOF(nodes); i++) {
        snprintf(path, sizeof(path), "%s/dev/%s", root, nodes[i].name);
        if (mknod(path, S_IFCHR | 0666, makedev(nodes[i].maj, nodes[i].min)) < 0 ||
            chmod(path, 0666) < 0)
            child_fail(s, "cannot create /dev/%s", nodes[i].name);
    }
    make_dir_in(root, "/dev/pts", base, 0755);
    make_dir_in(root, "/dev/shm", base, 01777);
    snprintf(path, sizeof(path), "%s/dev/pts", root);
    snprintf(opts, sizeof(opts), "newinstance,ptmxmode=0666,mode=0620,gid=%u", base + 5);
    if (mount("devpts", path, "devpts", MS_NOSUID | MS_NOEXEC, opts) < 0)
        child_fail(s, "cannot mount /dev/pts");
    snprintf(opts, sizeof(opts), "mode=1777,uid=%u,gid=%u", base, base);
    mount_tmpfs(s, root, "/dev/shm", opts, MS_NOSUID | MS_NODEV);
    static const char *const links[][2] = {
        {"pts/ptmx", "ptmx"},          {"/proc/self/fd", "fd"},       {"/proc/self/fd/0", "stdin"},
        {"/proc/self/fd/1", "stdout"}, {"/proc/self/fd/2", "stderr"},
    };
    for (size_t i = 0; i < ELEMENTSOF(links); i++) {
        snprintf(path, sizeof(path), "%s/dev/%s", root, links[i][1]);
        if (symlink(links[i][0], path) < 0 || lchown(path, base, base) < 0)
            child_fail(s, "cannot create /dev/%s", links[i][1]);
    }
}

/* What Docker masks too: host firmware tables and kernel internals a qube has no business
 * reading. An empty read-only tmpfs over directories, /dev/null over files. */
static void mask_host_details(const struct launch_sync *s, const char *root) {
    static const char *const dirs[] = {"/sys/firmware", "/proc/acpi", "/proc/scsi"};
    static const char *const files[] = {"/proc/kcore", "/proc/keys", "/proc/timer_list",
                                        "/proc/sched_debug", "/proc/sysrq-trigger"};
    char path[4096];
    for (size_t i = 0; i < ELEMENTSOF(dirs); i++) {
        snprintf(path, sizeof(path), "%s%s", root, dirs[i]);
        if (access(path, F_OK) == 0 &&
            mount("tmpfs", path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                  "size=0,mode=555") < 0)
            child_fail(s, "cannot mask %s", dirs[i]);
    }
    for (size_t i = 0; i < ELEMENTSOF(files); i++) {
        snprintf(path, sizeof(path), "%s%s", root, files[i]);
        if (access(path, F_OK) == 0 && mount("/dev/null", path, NULL, MS_BIND, NULL) < 0)
            child_fail(s, "cannot mask %s", files[i]);
    }
}

/* /proc is mounted while the old root is still attached: the kernel refuses a new proc
 * mount once no fully visible proc remains in the namespace (linux-notes.md). */
static void mount_pseudo_filesystems(const struct launch_sync *s, const char *root, uid_t base) {
    char path[4096], opts[128];
    make_dir_in(root, "/proc", base, 0555);
    snprintf(path, sizeof(path), "%s/proc", root);
    if (mount("proc", path, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
        child_fail(s, "cannot mount /proc");
    make_dir_in(root, "/sys", base, 0555);
    snprintf(path, sizeof(path), "%s/sys", root);
    if (mount("sysfs", path, "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
        child_fail(s, "cannot mount /sys");
    mask_host_details(s, root);
    make_devices(s, root, base);
    make_dir_in(root, "/tmp", base, 01777);
    snprintf(opts, sizeof(opts), "mode=1777,uid=%u,gid=%u", base, base);
    mount_tmpfs(s, root, "/tmp", opts, MS_NOSUID | MS_NODEV);
    make_dir_in(root, "/run", base, 0755);
    snprintf(opts, sizeof(opts), "mode=755,uid=%u,gid=%u", base, base);
    mount_tmpfs(s, root, "/run", opts, MS_NOSUID | MS_NODEV);
}

/* Qubes' agent makes /run/qubes-service/NAME for every enabled service at boot, before
 * the qube's own services start, which test for them; the directory is there even when
 * none is enabled. Names were checked by the daemon (no '/', not "." or ".."). */
static void write_services(const struct launch_sync *s, const struct launch_spec *spec) {
    const char *root = spec->root_mountpoint;
    char path[4096];
    if (make_dir_in(root, "/run/qubes-service", spec->uid_base, 0755) < 0)
        child_fail(s, "cannot create /run/qubes-service");
    for (size_t i = 0; i < spec->n_services; i++) {
        if (strcmp(spec->services[i].value, "1") != 0)
            continue;
        snprintf(path, sizeof(path), "%s/run/qubes-service/%s", root, spec->services[i].key);
        int fd = open(path, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (fd < 0 || fchown(fd, spec->uid_base, spec->uid_base) < 0)
            child_fail(s, "cannot create /run/qubes-service/%s", spec->services[i].key);
        close(fd);
    }
}

/* A private volume's first start: the template's /home/user (its skeleton: dotfiles,
 * Debian's /etc/skel copy) seeds the new home, as Qubes seeds a new private volume. */
static void seed_home(const struct launch_sync *s, const char *root) {
    char from[4096], to[4096];
    snprintf(from, sizeof(from), "%s/home/user", root);
    snprintf(to, sizeof(to), "%s/rw/home/user", root);
    if (access(from, F_OK) < 0)
        return;
    int r = copy_tree(from, to);
    if (r < 0) {
        errno = -r;
        child_fail(s, "cannot seed the new home directory from the template");
    }
}

/* The agent binary, as qrexec-client-vm for the qube's own processes: copied from its
 * sealed memfd (a memfd lives on a kernel-internal mount, which cannot be bound) onto a
 * small tmpfs of its own, then made read-only (root in the qube has no CAP_SYS_ADMIN to
 * remount it). The qube's mount table shows a tmpfs, not where the host keeps it. */
static void install_agent_binary(const struct launch_sync *s, const char *root, uid_t base,
                                 int agent_fd) {
    char dir[4096], path[4200], link[4200], opts[128];
    struct stat st;
    make_dir_in(root, "/run/dispenser", base, 0755);
    make_dir_in(root, AGENT_BIN_DIR, base, 0755);
    snprintf(dir, sizeof(dir), "%s" AGENT_BIN_DIR, root);
    snprintf(opts, sizeof(opts), "mode=755,size=4m,uid=%u,gid=%u", base, base);
    if (fstat(agent_fd, &st) < 0 || mount("tmpfs", dir, "tmpfs", MS_NOSUID | MS_NODEV, opts) < 0)
        child_fail(s, "cannot mount the agent's directory");
    snprintf(path, sizeof(path), "%s/dispenser-agent", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0555);
    off_t off = 0;
    while (fd >= 0 && off < st.st_size)
        if (sendfile(fd, agent_fd, &off, (size_t)(st.st_size - off)) <= 0)
            child_fail(s, "cannot copy the agent binary into the qube");
    if (fd < 0 || fchown(fd, base, base) < 0 || close(fd) < 0) /* open for writing: EBUSY */
        child_fail(s, "cannot create the agent binary in the qube");
    snprintf(link, sizeof(link), "%s/qrexec-client-vm", dir);
    if (symlink("dispenser-agent", link) < 0 || lchown(link, base, base) < 0)
        child_fail(s, "cannot create qrexec-client-vm");
    if (mount(NULL, dir, NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, opts) < 0)
        child_fail(s, "cannot make the agent's directory read-only");
}

/* container-host-usr: the host's /usr, read-only, without set-uid, in place of the
 * template's (docs/gui.md): a template of the host's own programs, GUI ones included,
 * without copying gigabytes into a layer. Files owned by host root show as nobody. */
static void bind_host_usr(const struct launch_sync *s, const char *root, uid_t base) {
    char path[4096];
    make_dir_in(root, "/usr", base, 0755);
    snprintf(path, sizeof(path), "%s/usr", root);
    if (mount("/usr", path, NULL, MS_BIND, NULL) < 0 ||
        mount(NULL, path, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) < 0)
        child_fail(s, "cannot bind the host's /usr into the qube");
}

/* The private volume is Qubes' /rw; its home/ is what the qube sees as /home. A new
 * private volume gets home/user for uid 1000, the template's user. */
static void mount_private(const struct launch_sync *s, const struct launch_spec *spec) {
    const char *root = spec->root_mountpoint;
    uid_t base = spec->uid_base;
    char rw[4096], home[4096], target[4096];
    make_dir_in(root, "/rw", base, 0755);
    snprintf(rw, sizeof(rw), "%s/rw", root);
    if (mount_overlay(&spec->private_vol, rw, spec->links_dir, 'p', spec->idmap_fd) < 0)
        child_fail(s, "cannot mount the private volume");
    make_dir_in(root, "/rw/home", base, 0755);
    char user_home[4096];
    snprintf(user_home, sizeof(user_home), "%s/rw/home/user", root);
    bool fresh = access(user_home, F_OK) < 0;
    if (make_dir_in(root, "/rw/home/user", base + 1000, 0700) < 0)
        child_fail(s, "cannot create /rw/home/user");
    if (fresh)
        seed_home(s, root);
    make_dir_in(root, "/home", base, 0755);
    snprintf(home, sizeof(home), "%s/rw/home", root);
    snprintf(target, sizeof(target), "%s/home", root);
    if (mount(home, target, NULL, MS_BIND, NULL) < 0)
        child_fail(s, "cannot bind /rw/home onto /home");
}

static void bring_up_loopback(const struct launch_sync *s) {
    _cleanup_close_ int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq ifr = {0};
    strcpy(ifr.ifr_name, "lo");
    if (fd < 0 || ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
        child_fail(s, "cannot query the loopback interface");
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
        child_fail(s, "cannot bring up the loopback interface");
}

static void pivot_into(const struct launch_sync *s, const char *root) {
    if (chdir(root) < 0 || syscall(SYS_pivot_root, ".", ".") < 0)
        child_fail(s, "pivot_root into %s failed", root);
    /* the old root is now stacked under the new one: detach it */
    if (umount2(".", MNT_DETACH) < 0 || chdir("/") < 0)
        child_fail(s, "cannot detach the host's root");
}

static void setup_filesystem(const struct launch_sync *s, const struct launch_spec *spec) {
    /* our mounts must never propagate back to the host */
    if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) < 0)
        child_fail(s, "cannot make the mount namespace private");
    if (mkdir(spec->links_dir, 0700) < 0 && errno != EEXIST)
        child_fail(s, "cannot create %s", spec->links_dir);
    if (mount_overlay(&spec->root, spec->root_mountpoint, spec->links_dir, 'r', spec->idmap_fd) < 0)
        child_fail(s, "cannot mount the root volume");
    mount_private(s, spec);
    if (spec->host_usr)
        bind_host_usr(s, spec->root_mountpoint, spec->uid_base);
    mount_pseudo_filesystems(s, spec->root_mountpoint, spec->uid_base);
    write_services(s, spec);
    install_agent_binary(s, spec->root_mountpoint, spec->uid_base, spec->agent_fd);
    pivot_into(s, spec->root_mountpoint);
}

/* Entered last: from here on root is root only inside the qube. */
static void enter_user_namespace(const struct launch_sync *s) {
    if (unshare(CLONE_NEWCGROUP) < 0)
        child_fail(s, "cannot create the cgroup namespace");
    if (unshare(CLONE_NEWUSER) < 0)
        child_fail(s, "cannot create the user namespace");
    if (write(s->report[1], (char[]){STEP_USERNS}, 1) != 1)
        child_fail(s, "launcher went away");
    child_wait_step(s, STEP_MAPPED);
    /* Without this even mkdir on our own tmpfs fails with EOVERFLOW (linux-notes.md). */
    if (setgroups(0, NULL) < 0 || setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0)
        child_fail(s, "cannot become root of the user namespace");
}

/* 0 /dev/null, 1-2 the log, 3 the listening socket, 4 the agent binary and 5 the report
 * pipe (both CLOEXEC), 6 the GUI channel of a GUI qube (LAUNCH_GUI_FD); everything else
 * inherited from the daemon is closed. */
static void place_fds(struct launch_sync *s, struct launch_spec *spec) {
    int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null < 0 || dup2(null, 0) < 0 || dup2(spec->log_fd, 1) < 0 || dup2(spec->log_fd, 2) < 0 ||
        dup2(spec->listen_fd, 3) < 0 || dup3(spec->agent_fd, 4, O_CLOEXEC) < 0 ||
        dup3(s->report[1], 5, O_CLOEXEC) < 0 ||
        (spec->gui_fd >= 0 && dup2(spec->gui_fd, LAUNCH_GUI_FD) < 0))
        child_fail(s, "cannot set up the agent's descriptors");
    spec->agent_fd = 4;
    s->report[1] = 5;
    if (syscall(SYS_close_range, spec->gui_fd >= 0 ? LAUNCH_GUI_FD + 1 : 6, ~0U, 0) < 0)
        child_fail(s, "cannot close the daemon's descriptors");
}

/* The daemon blocks signals for its signalfd and ignores SIGPIPE; exec keeps both, and
 * an agent that cannot receive SIGTERM could not shut down. */
static void reset_signals(void) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            signal(sig, SIG_DFL);
}

/* Moves a descriptor above the 0-3 the agent gets, so the dup2s cannot clobber it. */
static int fd_above_3(const struct launch_sync *s, int fd) {
    int moved = fcntl(fd, F_DUPFD_CLOEXEC, 10);
    if (moved < 0)
        child_fail(s, "cannot move a descriptor");
    return moved;
}

static _Noreturn void child_main(struct launch_sync *s, const struct launch_spec *in) {
    close(s->go[1]);
    close(s->report[0]);
    reset_signals();
    struct launch_spec copy = *in, *spec = &copy;
    copy.agent_fd = fd_above_3(s, in->agent_fd);
    copy.listen_fd = fd_above_3(s, in->listen_fd);
    copy.log_fd = fd_above_3(s, in->log_fd);
    if (in->gui_fd >= 0)
        copy.gui_fd = fd_above_3(s, in->gui_fd);
    s->report[1] = fd_above_3(s, s->report[1]); /* the old one closes with close_range */
    if (spec->attach && spec->attach(spec->attach_ctx, 0) < 0)
        child_fail(s, "cannot place the qube in its cgroups");
    if (sethostname(spec->hostname, strlen(spec->hostname)) < 0)
        child_fail(s, "cannot set the hostname");
    bring_up_loopback(s);
    setup_filesystem(s, spec);
    enter_user_namespace(s);
    place_fds(s, spec);
    if (sandbox_drop_capabilities() < 0)
        child_fail(s, "cannot drop capabilities");
    if (sandbox_load_seccomp() < 0)
        child_fail(s, "cannot load the seccomp filter");
    /* the qube's own read-only copy (install_agent_binary): /proc/1/exe and comm name a
     * path of the qube, not of the host */
    execve(AGENT_BIN_DIR "/dispenser-agent", spec->argv, spec->envp);
    child_fail(s, "cannot execute the agent");
}

/* ---- parent side ---- */

static int write_id_map(pid_t pid, const char *file, uid_t base, uid_t count) {
    char path[64], map[64];
    snprintf(path, sizeof(path), "/proc/%d/%s", pid, file);
    int len = snprintf(map, sizeof(map), "0 %u %u\n", base, count);
    _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
    return fd >= 0 && write(fd, map, (size_t)len) == len ? 0 : -errno;
}

/* The parent's side, driven by the event loop: while the child mounts, the daemon serves
 * other calls (a preload refill must not hold up a hand-out). */
struct launch_op {
    int go, report; /* our ends of the two pipes */
    pid_t pid;
    uid_t base, count;
    int (*before_exec)(void *ctx, pid_t pid, struct backend_why *why);
    void *before_exec_ctx;
    bool mapped; /* uid/gid maps written, waiting for the exec */
    char buf[600];
    size_t len;
    sd_event_source *io, *timer;
    launch_done_fn done;
    void *userdata;
    double t0;
    bool *finished; /* set when the op is gone (launch_wait) */
};

static void op_free(struct launch_op *op) {
    if (op->finished)
        *op->finished = true;
    sd_event_source_disable_unref(op->io);
    sd_event_source_disable_unref(op->timer);
    close(op->go);
    close(op->report);
    free(op);
}

void launch_cancel(struct launch_op *op) {
    if (!op)
        return;
    kill(op->pid, SIGKILL); /* the caller reaps it through its pidfd */
    op_free(op);
}

static void op_finish(struct launch_op *op, const char *failure) {
    launch_done_fn done = op->done;
    void *userdata = op->userdata;
    char why[256] = "";
    if (failure) {
        snprintf(why, sizeof(why), "%s", failure);
        kill(op->pid, SIGKILL);
    } else {
        log_debug("launch: %.2f ms from clone to exec", mono_ms() - op->t0);
    }
    op_free(op);
    done(userdata, failure ? -EIO : 0, failure ? why : NULL);
}

/* The child wrote a step byte ('u': map my ids), its error text ('E...'), or closed
 * the pipe: on exec (success) or on death. */
static int on_report(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
    struct launch_op *op = userdata;
    ssize_t n = read(fd, op->buf + op->len, sizeof(op->buf) - 1 - op->len);
    if (n < 0)
        return errno == EAGAIN || errno == EINTR ? 0 : (op_finish(op, strerror(errno)), 0);
    op->len += (size_t)n;
    op->buf[op->len] = '\0';
    if (n > 0 && op->buf[0] == 'E' && op->len < sizeof(op->buf) - 1)
        return 0; /* the error text: read it to the end */
    if (n > 0 && !op->mapped && op->buf[0] == STEP_USERNS) {
        op->mapped = true;
        op->len = 0;
        struct backend_why why = {{0}};
        if (op->before_exec && op->before_exec(op->before_exec_ctx, op->pid, &why) < 0) {
            op_finish(op, why.msg);
            return 0;
        }
        if (write_id_map(op->pid, "uid_map", op->base, op->count) < 0 ||
            write_id_map(op->pid, "gid_map", op->base, op->count) < 0 ||
            write(op->go, (char[]){STEP_MAPPED}, 1) != 1)
            op_finish(op, "cannot map the qube's user ids");
        return 0;
    }
    if (n == 0 && op->len == 0 && op->mapped)
        op_finish(op, NULL);
    else
        op_finish(op, op->buf[0] == 'E' ? op->buf + 1
                                        : "the qube's init failed before starting the agent");
    return 0;
}

/* A qube someone is waiting for right now: drive the steps here, without going back to
 * the loop in between (each trip costs a wake-up; a cold start is faster this way). */
void launch_wait(struct launch_op *op) {
    bool finished = false;
    op->finished = &finished;
    double deadline = mono_ms() + 10000;
    while (!finished) {
        struct pollfd pfd = {.fd = op->report, .events = POLLIN};
        int left = (int)(deadline - mono_ms());
        if (left <= 0 || poll(&pfd, 1, left) == 0) {
            op_finish(op, "the qube's init did not get to the agent within 10 s");
            return;
        }
        on_report(op->io, op->report, EPOLLIN, op);
    }
}

void launch_set_priority(struct launch_op *op, int64_t priority) {
    sd_event_source_set_priority(op->io, priority);
    sd_event_source_set_priority(op->timer, priority);
}

static int on_launch_timeout(sd_event_source *src, uint64_t usec, void *userdata) {
    op_finish(userdata, "the qube's init did not get to the agent within 10 s");
    return 0;
}

int launch_qube_async(sd_event *loop, const struct launch_spec *spec, launch_done_fn done,
                      void *userdata, pid_t *pid_out, int *pidfd_out, struct launch_op **out,
                      struct backend_why *why) {
    struct launch_sync s;
    if (pipe2(s.go, O_CLOEXEC) < 0)
        return backend_fail(why, -errno, "pipe: %s", strerror(errno));
    if (pipe2(s.report, O_CLOEXEC | O_NONBLOCK) < 0) {
        close(s.go[0]);
        close(s.go[1]);
        return backend_fail(why, -errno, "pipe: %s", strerror(errno));
    }
    int pidfd = -1;
    struct clone_args args = {
        .flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS |
                 CLONE_PIDFD,
        .pidfd = (uint64_t)(uintptr_t)&pidfd,
        .exit_signal = SIGCHLD,
    };
    double t0 = mono_ms();
    pid_t pid = (pid_t)syscall(SYS_clone3, &args, sizeof(args));
    if (pid == 0) {
        fcntl(s.report[1], F_SETFL, 0); /* the child writes blocking */
        child_main(&s, spec);
    }
    log_debug("launch: clone3 %.2f ms", mono_ms() - t0);
    close(s.go[0]);
    close(s.report[1]);
    struct launch_op *op = xcalloc(1, sizeof(*op));
    *op = (struct launch_op){.go = s.go[1],
                             .report = s.report[0],
                             .pid = pid,
                             .base = spec->uid_base,
                             .count = spec->uid_count,
                             .before_exec = spec->before_exec,
                             .before_exec_ctx = spec->before_exec_ctx,
                             .done = done,
                             .userdata = userdata,
                             .t0 = t0};
    const char *failure = NULL;
    if (pid < 0)
        failure = "cannot create the qube's namespaces";
    else if (sd_event_add_io(loop, &op->io, op->report, EPOLLIN, on_report, op) < 0 ||
             sd_event_add_time_relative(loop, &op->timer, CLOCK_MONOTONIC, 10000000, 0,
                                        on_launch_timeout, op) < 0)
        failure = "cannot watch the qube's init";
    if (failure) {
        backend_fail(why, -errno, "%s: %s", failure, strerror(errno));
        if (pid > 0) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            close(pidfd);
        }
        op_free(op);
        return -EIO;
    }
    *pid_out = pid;
    *pidfd_out = pidfd;
    *out = op;
    return 0;
}
