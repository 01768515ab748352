/* Host block devices given to a running container qube (docs/devices.md).
 *
 * Two things make a device the qube's: a node /dev/<frontend> in the qube's own /dev (a
 * tmpfs the launcher mounted as host root, so its nodes work), and a rule of the qube's
 * device control, which denies everything else (cgroup.c: the v1 device cgroup, or on
 * cgroup2 a BPF device program). The rule is what is enforced: the qube's root owns its
 * /dev and could link the node elsewhere, but it opens nothing the rule does not allow,
 * and a read-only device is allowed reads only. Without either (no cgroup2, or the kernel
 * refused the program) nothing would enforce it, so nothing is attached there. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "cgroup.h"
#include "container.h"
#include "macro.h"

#define DISK_GID 6 /* group "disk" inside the qube, as Qubes' /dev/xvd* */

static struct run *running(struct backend *b, const char *name, struct backend_why *why) {
    struct run *run = container_find((struct container_backend *)b, name);
    if (!run || run->pid <= 0 || !run->cg || run->power == BACKEND_HALTED) {
        backend_fail(why, -EAGAIN, "Domain not running: '%s'", name);
        return NULL;
    }
    return run;
}

/* The qube's /dev, reached from the host without following anything the qube could have
 * put there (RESOLVE_IN_ROOT: its symlinks stay inside its root), and checked to be the
 * tmpfs the launcher made. */
static int open_qube_dev(const struct run *run, struct backend_why *why) {
    char root[64];
    snprintf(root, sizeof(root), "/proc/%d/root", (int)run->pid);
    _cleanup_close_ int rootfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0)
        return backend_fail(why, -EAGAIN, "Domain not running: '%s'", run->name);
    struct open_how how = {.flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
                           .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS |
                                      RESOLVE_NO_MAGICLINKS};
    int fd = (int)syscall(SYS_openat2, rootfd, "dev", &how, sizeof(how));
    struct statfs sfs;
    if (fd < 0 || fstatfs(fd, &sfs) < 0 || sfs.f_type != TMPFS_MAGIC) {
        int r = fd < 0 ? -errno : -ENOTDIR;
        if (fd >= 0)
            close(fd);
        return backend_fail(why, r, "cannot reach /dev of '%s'", run->name);
    }
    return fd;
}

int container_block_attach(struct backend *b, const char *name, const struct backend_block *dev,
                           struct backend_why *why) {
    struct run *run = running(b, name, why);
    if (!run)
        return -EAGAIN;
    if (!cgroup_qube_has_device_control(run->cg))
        return backend_fail(why, -ENOTSUP,
                            "block devices need device control on this host: the cgroup v1 "
                            "devices controller, or cgroup2 with a BPF device program");
    _cleanup_close_ int devfd = open_qube_dev(run, why);
    if (devfd < 0)
        return devfd;
    struct stat st;
    if (fstat(devfd, &st) < 0)
        return backend_fail(why, -errno, "cannot reach /dev of '%s'", name);
    if (mknodat(devfd, dev->frontend_dev, S_IFBLK | 0660, makedev(dev->major, dev->minor)) < 0) {
        int r = errno == EEXIST ? -EBUSY : -errno;
        return backend_fail(why, r, "cannot create /dev/%s in '%s': %s", dev->frontend_dev, name,
                            errno == EEXIST ? "the name is taken" : strerror(errno));
    }
    /* owned as the directory is (the qube's root), group disk inside the qube */
    int r = fchownat(devfd, dev->frontend_dev, st.st_uid, st.st_gid + DISK_GID,
                     AT_SYMLINK_NOFOLLOW) < 0
                ? -errno
                : cgroup_qube_device_allow(run->cg, 'b', dev->major, dev->minor, dev->read_only);
    if (r < 0) {
        unlinkat(devfd, dev->frontend_dev, 0);
        return backend_fail(why, r, "cannot give the device to '%s': %s", name, strerror(-r));
    }
    return 0;
}

static void closedirp(DIR **d) {
    if (*d)
        closedir(*d);
}

/* Does a process of the qube hold the device open? Its fds are links to the node. */
static bool pid_has_open(const char *pid, dev_t rdev) {
    char path[64];
    snprintf(path, sizeof(path), "/proc/%s/fd", pid);
    _cleanup_(closedirp) DIR *d = opendir(path);
    if (!d)
        return false;
    for (struct dirent *de; (de = readdir(d));) {
        struct stat st;
        if (de->d_name[0] != '.' && fstatat(dirfd(d), de->d_name, &st, 0) == 0 &&
            S_ISBLK(st.st_mode) && st.st_rdev == rdev)
            return true;
    }
    return false;
}

static bool qube_has_open(const struct run *run, dev_t rdev) {
    const char *dir = cgroup_qube_dir(run->cg, 0);
    char path[4096], pid[32];
    snprintf(path, sizeof(path), "%s/cgroup.procs", dir ? dir : "/nonexistent");
    FILE *f = fopen(path, "re");
    bool open = false;
    while (f && !open && fgets(pid, sizeof(pid), f)) {
        pid[strcspn(pid, "\n")] = '\0';
        open = pid_has_open(pid, rdev);
    }
    if (f)
        fclose(f);
    return open;
}

int container_block_detach(struct backend *b, const char *name, const struct backend_block *dev,
                           struct backend_why *why) {
    struct run *run = running(b, name, why);
    if (!run)
        return -EAGAIN;
    dev_t rdev = makedev(dev->major, dev->minor);
    /* an open descriptor outlives any rule: detaching under it would leave it usable */
    if (qube_has_open(run, rdev))
        return backend_fail(why, -EBUSY, "/dev/%s is in use in '%s': close it first",
                            dev->frontend_dev, name);
    int r = cgroup_qube_device_deny(run->cg, 'b', dev->major, dev->minor);
    if (r < 0)
        return backend_fail(why, r, "cannot take the device from '%s': %s", name, strerror(-r));
    _cleanup_close_ int devfd = open_qube_dev(run, why);
    struct stat st;
    /* the node goes if it is still ours; a qube that moved or removed it has no use of it */
    if (devfd >= 0 && fstatat(devfd, dev->frontend_dev, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
        S_ISBLK(st.st_mode) && st.st_rdev == rdev)
        unlinkat(devfd, dev->frontend_dev, 0);
    return 0;
}
