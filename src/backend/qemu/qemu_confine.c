/* QEMU (and dispenser-vmux) confined, as a careful distributor runs it: in the child,
 * between fork and exec, a mount namespace of its own whose root is an empty read-only
 * tmpfs holding only what the program needs, each at its host path so the command line's
 * paths hold (the host's /usr read-only, the loader's cache, a few device nodes, its
 * guest's kernel and initramfs, its runtime directory, a scratch directory); network, IPC
 * and UTS namespaces of their own (QEMU has no network device: nothing to reach from it);
 * then a uid of its own without capabilities, groups or a way to gain privileges. The
 * images and the console log are not in that root at all: the engine opens them and QEMU
 * gets the descriptors (-add-fd, /dev/fdset/N). QEMU's own seccomp sandbox (-sandbox on,
 * qemu_argv.c) comes on top. */
#include "qemu.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "fsutil.h"
#include "log.h"

/* The host's directories a dynamically linked program needs (merged /usr: the others
 * are symlinks, made again as such). */
static const char *const SYSTEM_DIRS[] = {"/usr",    "/lib", "/lib64", "/lib32",
                                          "/libx32", "/bin", "/sbin"};
static const char *const SYSTEM_FILES[] = {"/etc/ld.so.cache"};
static const char *const DEVICES[] = {"/dev/null", "/dev/zero", "/dev/full", "/dev/random",
                                      "/dev/urandom"};

/* The child reports on its stderr (the log the engine quotes on a failed start). */
static int fail(const char *what, const char *path) {
    int e = errno;
    dprintf(2, "dispenser: cannot build the jail: %s %s: %s\n", what, path ? path : "",
            strerror(e));
    return -e;
}

/* mkdir -p of PATH's directories under ROOT (PATH absolute), each 0755. */
static int make_parents(const char *root, const char *path) {
    char buf[4096];
    int n = snprintf(buf, sizeof(buf), "%s%s", root, path);
    if (n < 0 || (size_t)n >= sizeof(buf))
        return -ENAMETOOLONG;
    for (char *p = buf + strlen(root) + 1; (p = strchr(p, '/')); p++) {
        *p = '\0';
        if (mkdir(buf, 0755) < 0 && errno != EEXIST)
            return fail("mkdir", buf);
        *p = '/';
    }
    return 0;
}

/* SRC bound at the same path under ROOT (a directory or a file, its mount point made),
 * read-only unless `writable`. Never setuid, never devices unless `dev`. */
static int bind_at(const char *root, const char *src, bool writable, bool dev) {
    char dst[4096];
    struct stat st;
    if (stat(src, &st) < 0)
        return fail("stat", src);
    snprintf(dst, sizeof(dst), "%s%s", root, src);
    int r = make_parents(root, src);
    if (r < 0)
        return r;
    if (S_ISDIR(st.st_mode) ? mkdir(dst, 0755) < 0 && errno != EEXIST
                            : mknod(dst, S_IFREG | 0644, 0) < 0 && errno != EEXIST)
        return fail("mount point", dst);
    if (mount(src, dst, NULL, MS_BIND, NULL) < 0)
        return fail("bind", src);
    unsigned long flags = MS_BIND | MS_REMOUNT | MS_NOSUID | (writable ? 0 : MS_RDONLY) |
                          (dev ? 0 : MS_NODEV);
    if (mount(NULL, dst, NULL, flags, NULL) < 0)
        return fail("remount", dst);
    return 0;
}

/* A host path the jail holds: a directory bound read-only, a symlink made again. */
static int add_system_path(const char *root, const char *path) {
    struct stat st;
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : fail("lstat", path);
    if (!S_ISLNK(st.st_mode))
        return bind_at(root, path, false, false);
    char target[4096], dst[4096];
    ssize_t n = readlink(path, target, sizeof(target) - 1);
    if (n < 0)
        return fail("readlink", path);
    target[n] = '\0';
    snprintf(dst, sizeof(dst), "%s%s", root, path);
    return symlink(target, dst) < 0 ? fail("symlink", dst) : 0;
}

static bool under_usr(const char *path) { return strncmp(path, "/usr/", 5) == 0; }

static int add_devices(const char *root, bool kvm) {
    int r = 0;
    for (size_t i = 0; r == 0 && i < sizeof(DEVICES) / sizeof(*DEVICES); i++)
        if (access(DEVICES[i], F_OK) == 0)
            r = bind_at(root, DEVICES[i], true, true);
    if (r == 0 && kvm)
        r = bind_at(root, "/dev/kvm", true, true);
    return r;
}

/* Its own processes only: a proc instance that shows no other uid's and no system
 * files. Mounted before the old root goes (the kernel wants a full proc visible). */
static int add_proc(const char *root) {
    char dst[4096];
    snprintf(dst, sizeof(dst), "%s/proc", root);
    if (mkdir(dst, 0555) < 0 && errno != EEXIST)
        return fail("mkdir", dst);
    if (mount("proc", dst, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC,
              "hidepid=invisible,subset=pid") < 0)
        return fail("mount proc on", dst);
    return 0;
}

static int build_root(const struct qemu_jail *j) {
    const char *root = j->root;
    if (mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m") < 0)
        return fail("mount tmpfs on", root);
    int r = 0;
    for (size_t i = 0; r == 0 && i < sizeof(SYSTEM_DIRS) / sizeof(*SYSTEM_DIRS); i++)
        r = add_system_path(root, SYSTEM_DIRS[i]);
    for (size_t i = 0; r == 0 && i < sizeof(SYSTEM_FILES) / sizeof(*SYSTEM_FILES); i++)
        if (access(SYSTEM_FILES[i], F_OK) == 0)
            r = bind_at(root, SYSTEM_FILES[i], false, false);
    for (size_t i = 0; r == 0 && i < QEMU_JAIL_FILES && j->files[i]; i++)
        if (!under_usr(j->files[i]))
            r = bind_at(root, j->files[i], false, false);
    if (r == 0)
        r = add_devices(root, j->kvm);
    if (r == 0)
        r = bind_at(root, j->rundir, true, false);
    if (r == 0 && j->scratch)
        r = bind_at(root, j->scratch, true, false);
    if (r == 0)
        r = add_proc(root);
    if (r == 0 && mount(NULL, root, NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) < 0)
        r = fail("remount read-only", root);
    return r;
}

/* The jail's root becomes / and the host's is detached. */
static int enter_root(const char *root) {
    if (chdir(root) < 0)
        return fail("chdir", root);
    if (syscall(SYS_pivot_root, ".", ".") < 0)
        return fail("pivot_root into", root);
    if (umount2(".", MNT_DETACH) < 0 || chdir("/") < 0)
        return fail("detach the host's root", NULL);
    return 0;
}

/* uid = gid = j->uid; no supplementary group but /dev/kvm's where the accelerator needs
 * it; an empty bounding set and no_new_privs, so nothing executed later gains any;
 * setresuid away from 0 clears the permitted, effective and ambient sets. No core dumps. */
static int drop_privileges(const struct qemu_jail *j, gid_t kvm_gid) {
    gid_t groups[1] = {kvm_gid};
    if (setgroups(kvm_gid ? 1 : 0, groups) < 0)
        return fail("setgroups", NULL);
    if (setresgid(j->uid, j->uid, j->uid) < 0)
        return fail("setresgid", NULL);
    for (int cap = 0; prctl(PR_CAPBSET_READ, cap, 0, 0, 0) >= 0; cap++)
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0)
            return fail("drop the capability bounding set", NULL);
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return fail("no_new_privs", NULL);
    if (setresuid(j->uid, j->uid, j->uid) < 0)
        return fail("setresuid", NULL);
    /* a crash must not write the guest's memory out to the host's disk */
    if (setrlimit(RLIMIT_CORE, &(struct rlimit){0, 0}) < 0)
        return fail("setrlimit", NULL);
    return 0;
}

/* /dev/kvm's group if the jailed uid could not open it otherwise (0: none needed). */
static gid_t kvm_group(bool kvm) {
    struct stat st;
    if (!kvm || stat("/dev/kvm", &st) < 0 || (st.st_mode & 0006) == 0006)
        return 0;
    return st.st_gid;
}

/* A new network namespace costs ~0.5 ms, and up to ~20 ms while the kernel is still
 * taking down those of VMs gone: dispenser-vmux joins its QEMU's instead. */
static int own_namespaces(int ns_fd, bool netns_only) {
    const int shared = CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS;
    int joined = ns_fd < 0 ? 0 : netns_only ? CLONE_NEWNET : shared;
    if (joined && setns(ns_fd, joined) < 0)
        return fail(netns_only ? "join the VM's network namespace" : "join the namespaces of QEMU",
                    NULL);
    if (ns_fd >= 0)
        close(ns_fd);
    if (unshare(CLONE_NEWNS | (shared & ~joined)) < 0)
        return fail("unshare", NULL);
    return 0;
}

int qemu_confine(const struct qemu_jail *j, int ns_fd) {
    gid_t kvm_gid = kvm_group(j->kvm);
    int r = own_namespaces(ns_fd, j->ns_pidfd <= 0 && j->netns_fd > 0);
    if (r < 0)
        return r;
    /* nothing mounted here reaches the host, nothing the host mounts later reaches here */
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        return fail("make / private", NULL);
    r = build_root(j);
    if (r == 0)
        r = enter_root(j->root);
    if (r == 0) {
        umask(077);
        r = drop_privileges(j, kvm_gid);
    }
    return r;
}

/* ---- the host's side: uids, the runtime directory, the scratch directory ---- */

#define QEMU_UID_COUNT 65536u

/* The uids of [base, base + QEMU_UID_COUNT) some process on the host runs as (a VM of
 * another daemon, or anything else that chose the range). /proc/PID belongs to the
 * process's euid unless it is not dumpable, which a jailed QEMU is again after its exec
 * (its binary is readable, its uids all the same): a stat per process, ~0.6 ms for 170
 * of them here, where reading each status file took ~13 ms on the daemon's loop. */
static void uids_in_use(uid_t base, unsigned char *used) {
    DIR *d = opendir("/proc");
    for (struct dirent *e; d && (e = readdir(d));) {
        struct stat st;
        if (e->d_name[0] < '1' || e->d_name[0] > '9' || fstatat(dirfd(d), e->d_name, &st, 0) < 0)
            continue;
        if (st.st_uid >= base && st.st_uid - base < QEMU_UID_COUNT)
            used[(st.st_uid - base) / 8] |= (unsigned char)(1u << ((st.st_uid - base) % 8));
    }
    if (d)
        closedir(d);
}

static uint32_t hash_str(const char *p) {
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    return h;
}

/* A uid no VM of ours holds and no host process runs as. Daemons sharing the range start
 * their search at different places (by their state dir), so they rarely race for one. */
uid_t qemu_pick_uid(const struct qemu_backend *qb) {
    static unsigned char used[QEMU_UID_COUNT / 8];
    memset(used, 0, sizeof(used));
    uids_in_use(qb->uid_base, used);
    for (const struct qemu_run *r = qb->runs; r; r = r->next)
        if (r->uid >= qb->uid_base && r->uid - qb->uid_base < QEMU_UID_COUNT)
            used[(r->uid - qb->uid_base) / 8] |= (unsigned char)(1u
                                                                 << ((r->uid - qb->uid_base) % 8));
    uint32_t start = hash_str(qb->state_dir) % QEMU_UID_COUNT;
    for (uint32_t i = 0; i < QEMU_UID_COUNT; i++) {
        uint32_t slot = (start + i) % QEMU_UID_COUNT;
        if (!(used[slot / 8] & (1u << (slot % 8))))
            return qb->uid_base + slot;
    }
    return (uid_t)-1;
}

void qemu_scratch_path(const struct qemu_backend *qb, const char *name, char *buf, size_t size) {
    snprintf(buf, size, "%s/qemu/scratch/%s", qb->state_dir, name);
}

/* The runtime directory: root's, but QEMU's group may make its sockets there; sticky,
 * so QEMU cannot remove or replace what the engine keeps there (its state file). In it,
 * `root`, the empty mount point of the jail's root. The scratch directory (the
 * throwaway overlay of a disposable's private image) is QEMU's alone, on the state
 * dir's disk, not in memory. */
int qemu_jail_prepare(struct qemu_run *run, char *rundir, size_t size) {
    struct qemu_backend *qb = run->qb;
    char path[4200];
    qemu_rundir(qb, run->name, rundir, size);
    remove_recursive(rundir); /* a stale one's sockets would refuse the new ones */
    if (mkdir(rundir, 0700) < 0 || chown(rundir, 0, run->uid) < 0 || chmod(rundir, 01770) < 0)
        return -errno;
    snprintf(path, sizeof(path), "%s/root", rundir);
    if (mkdir(path, 0700) < 0)
        return -errno;
    snprintf(path, sizeof(path), "%s/qemu", qb->state_dir);
    mkdir(path, 0700);
    snprintf(path, sizeof(path), "%s/qemu/scratch", qb->state_dir);
    if (mkdir(path, 0700) < 0 && errno != EEXIST)
        return -errno;
    qemu_scratch_path(qb, run->name, path, sizeof(path));
    remove_recursive(path);
    if (make_owned_dir(path, run->uid, 0700) < 0)
        return -errno;
    return 0;
}

/* After QEMU is gone (its cgroup killed: nothing of its uid runs to race the removal). */
void qemu_scratch_remove(const struct qemu_backend *qb, const char *name) {
    char path[4200];
    qemu_scratch_path(qb, name, path, sizeof(path));
    remove_recursive(path);
}
