/* volume_limit.h: a sized volume's writer on an ext4 image of the room left. */
#include "volume_limit.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/loop.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fsutil.h"
#include "log.h"
#include "strbuf.h"

_printf_(1, 2) static char *xasprintf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0)
        abort(); /* as strbuf: no memory, nothing sensible to do */
    return s;
}

static char *fs_dir(const char *voldir, uint64_t id) {
    return xasprintf("%s/upper-%" PRIu64 ".fs", voldir, id);
}

static char *image_path(const char *voldir, uint64_t id) {
    return xasprintf("%s/upper-%" PRIu64 ".img", voldir, id);
}

static int run_wait(pid_t pid) {
    int status;
    if (pid < 0)
        return -errno;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -errno;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -EIO;
}

/* No reserved blocks (root's exception), no journal (the upper is thrown away or copied
 * at the end of the run; a journal would take several MiB of a small room). */
static int make_fs(const char *image) {
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        dup2(null, 1);
        static const char *const paths[] = {"/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4"};
        for (size_t i = 0; i < ELEMENTSOF(paths); i++)
            execl(paths[i], "mkfs.ext4", "-q", "-F", "-m", "0", "-O", "^has_journal", "-E",
                  "nodiscard", image, (char *)NULL);
        _exit(127);
    }
    return run_wait(pid);
}

/* A free loop device backed by image, released when its filesystem is unmounted. */
static int attach_loop(const char *image, char *dev, size_t size) {
    int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
    int img = open(image, O_RDWR | O_CLOEXEC);
    int r = -EBUSY;
    for (int tries = 0; ctl >= 0 && img >= 0 && r == -EBUSY && tries < 8; tries++) {
        int n = ioctl(ctl, LOOP_CTL_GET_FREE);
        if (n < 0) {
            r = -errno;
            break;
        }
        snprintf(dev, size, "/dev/loop%d", n);
        if (access(dev, F_OK) < 0) /* no udev here to make the node */
            mknod(dev, S_IFBLK | 0600, makedev(7, (unsigned)n));
        int fd = open(dev, O_RDWR | O_CLOEXEC);
        struct loop_config cfg = {.fd = (unsigned)img, .info = {.lo_flags = LO_FLAGS_AUTOCLEAR}};
        r = fd < 0 ? -errno : ioctl(fd, LOOP_CONFIGURE, &cfg) < 0 ? -errno : fd;
        if (r < 0 && fd >= 0)
            close(fd);
    }
    if (ctl >= 0)
        close(ctl);
    if (img >= 0)
        close(img);
    return ctl < 0 || img < 0 ? -errno : r;
}

static int make_dirs(const char *fs, uid_t owner, char **upper, char **work) {
    char *u = xasprintf("%s/u", fs), *w = xasprintf("%s/w", fs);
    if (mkdir(u, 0755) < 0 || chown(u, owner, owner) < 0 || chmod(u, 0755) < 0 ||
        mkdir(w, 0700) < 0) {
        int r = -errno;
        free(u);
        free(w);
        return r;
    }
    *upper = u;
    *work = w;
    return 0;
}

static int mount_new_fs(const char *image, const char *fs) {
    char dev[64];
    int r = make_fs(image);
    if (r < 0) {
        log_error("volume: cannot make a filesystem in %s (mkfs.ext4, e2fsprogs)", image);
        return r;
    }
    int loop = attach_loop(image, dev, sizeof(dev));
    if (loop < 0)
        return loop;
    r = mkdir(fs, 0700) < 0 && errno != EEXIST ? -errno : 0;
    if (r == 0 && mount(dev, fs, "ext4", MS_NOSUID | MS_NOATIME, "") < 0)
        r = -errno;
    if (r < 0)
        ioctl(loop, LOOP_CLR_FD, 0);
    close(loop); /* the mount holds it now; autoclear frees it at the unmount */
    return r;
}

int volume_limit_begin(const char *voldir, uint64_t id, uint64_t bytes, uid_t owner, char **upper,
                       char **work) {
    _cleanup_free_ char *fs = fs_dir(voldir, id), *image = image_path(voldir, id);
    int fd = open(image, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    int r = fd < 0 ? -errno : ftruncate(fd, (off_t)bytes) < 0 ? -errno : 0;
    if (fd >= 0)
        close(fd);
    if (r == 0)
        r = mount_new_fs(image, fs);
    if (r == 0)
        r = make_dirs(fs, owner, upper, work);
    if (r < 0)
        volume_limit_release(voldir, id);
    else
        log_debug("volume: %s: writer %" PRIu64 " limited to %" PRIu64 " bytes", voldir, id, bytes);
    return r;
}

bool volume_limit_paths(const char *voldir, uint64_t id, const char *upper, const char *work) {
    _cleanup_free_ char *fs = fs_dir(voldir, id);
    _cleanup_free_ char *u = xasprintf("%s/u", fs), *w = xasprintf("%s/w", fs);
    return streq(u, upper) && streq(w, work);
}

int volume_limit_settle(const char *voldir, uint64_t id) {
    _cleanup_free_ char *fs = fs_dir(voldir, id);
    _cleanup_free_ char *from = xasprintf("%s/u", fs);
    _cleanup_free_ char *to = xasprintf("%s/upper-%" PRIu64, voldir, id);
    pid_t pid = fork();
    if (pid == 0) {
        /* -a keeps owners, modes, times, hard links, xattrs (overlayfs' opaque marks)
         * and device nodes (its whiteouts) */
        execl("/bin/cp", "cp", "-a", "-T", "--", from, to, (char *)NULL);
        _exit(127);
    }
    int r = run_wait(pid);
    if (r < 0) {
        log_error("volume: cannot copy %s to %s", from, to);
        return r;
    }
    volume_limit_release(voldir, id);
    return 0;
}

void volume_limit_release(const char *voldir, uint64_t id) {
    _cleanup_free_ char *fs = fs_dir(voldir, id), *image = image_path(voldir, id);
    if (umount2(fs, 0) < 0 && errno == EBUSY)
        umount2(fs, MNT_DETACH);
    if (rmdir(fs) < 0 && errno != ENOENT)
        log_warning("volume: cannot remove %s: %s", fs, strerror(errno));
    unlink(image);
}
