/* Building the block images QEMU attaches (image.h). */
#include "image.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fsutil.h"
#include "log.h"
#include "macro.h"
#include "monoclock.h"
#include "strbuf.h"

void image_root_path(const char *state_dir, const char *uuid, uint64_t revision, char *buf,
                     size_t size) {
    snprintf(buf, size, "%s/qemu/images/%s/root-%llu.erofs", state_dir, uuid,
             (unsigned long long)revision);
}

void image_private_path(const char *state_dir, const char *uuid, char *buf, size_t size) {
    snprintf(buf, size, "%s/qemu/volumes/%s/private.img", state_dir, uuid);
}

static int make_parents(const char *state_dir, const char *sub, const char *uuid) {
    char path[4096];
    snprintf(path, sizeof(path), "%s/qemu", state_dir);
    make_owned_dir(path, 0, 0700);
    snprintf(path, sizeof(path), "%s/qemu/%s", state_dir, sub);
    make_owned_dir(path, 0, 0700);
    snprintf(path, sizeof(path), "%s/qemu/%s/%s", state_dir, sub, uuid);
    return make_owned_dir(path, 0, 0700);
}

static int write_map(pid_t pid, const char *file, unsigned base, unsigned count) {
    char path[64], map[64];
    snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
    int n = snprintf(map, sizeof(map), "0 %u %u\n", base, count);
    _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
    return fd >= 0 && write(fd, map, (size_t)n) == n ? 0 : -1;
}

/* In the child's own mount namespace: the tree to export (the single layer, or the
 * layers' merged view with whiteouts applied, on a read-only overlay) at WORK/tree and
 * the output file at WORK/image. WORK is a fresh directory under /tmp: inside the user
 * namespace the state dir's root-owned ancestors cannot be searched, and mkfs.erofs
 * resolves its paths (realpath) from /. */
static int mount_inputs(char *const *layers, size_t n, const char *work, const char *out) {
    char tree[4200], image[4200];
    snprintf(tree, sizeof(tree), "%s/tree", work);
    snprintf(image, sizeof(image), "%s/image", work);
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        return -1;
    if (n == 1) {
        if (mount(layers[0], tree, NULL, MS_BIND, NULL) < 0)
            return -1;
    } else {
        _cleanup_strbuf_ struct strbuf opts = STRBUF_INIT;
        strbuf_puts(&opts, "lowerdir=");
        for (size_t i = 0; i < n; i++)
            strbuf_printf(&opts, "%s%s", i ? ":" : "", layers[i]);
        if (mount("overlay", tree, "overlay", MS_RDONLY, strbuf_str(&opts)) < 0)
            return -1;
    }
    return mount(out, image, NULL, MS_BIND, NULL);
}

/* Child: mounts its inputs, enters a user namespace (the parent writes its maps), becomes
 * its root and runs mkfs.erofs. */
static _Noreturn void mkfs_child(char *const *layers, size_t n, const char *work, const char *out,
                                 const struct image_confine *confine, int ready_w, int go_r) {
    if ((confine && confine->attach(confine->ctx, 0) < 0) || unshare(CLONE_NEWNS) < 0 ||
        mount_inputs(layers, n, work, out) < 0 || unshare(CLONE_NEWUSER) < 0) {
        fprintf(stderr, "image: cannot mount the layers: %s\n", strerror(errno));
        _exit(126);
    }
    char c = 0, tree[4200], image[4200];
    if (write(ready_w, &c, 1) != 1 || read(go_r, &c, 1) != 1)
        _exit(126);
    if (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0)
        _exit(126);
    snprintf(tree, sizeof(tree), "%s/tree", work);
    snprintf(image, sizeof(image), "%s/image", work);
    execlp("mkfs.erofs", "mkfs.erofs", "--quiet", "-T0", image, tree, (char *)NULL);
    fprintf(stderr, "image: cannot run mkfs.erofs: %s\n", strerror(errno));
    _exit(127);
}

static int run_mkfs(char *const *layers, size_t n, const char *work, const char *out,
                    const struct image_confine *confine, uid_t uid_base, uid_t uid_count) {
    int ready[2], go[2];
    if (pipe2(ready, O_CLOEXEC) < 0)
        return -1;
    if (pipe2(go, O_CLOEXEC) < 0) {
        close(ready[0]), close(ready[1]);
        return -1;
    }
    pid_t pid = fork();
    if (pid == 0)
        mkfs_child(layers, n, work, out, confine, ready[1], go[0]);
    close(ready[1]);
    close(go[0]);
    char c = 0;
    bool mapped = pid > 0 && read(ready[0], &c, 1) == 1 &&
                  write_map(pid, "uid_map", uid_base, uid_count) == 0 &&
                  write_map(pid, "gid_map", uid_base, uid_count) == 0;
    if (mapped && write(go[1], &c, 1) != 1)
        mapped = false;
    close(ready[0]);
    close(go[1]);
    if (pid < 0)
        return -1;
    if (!mapped)
        kill(pid, SIGKILL);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return mapped && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

/* WORK/tree and WORK/image, the mount points of mkfs_child's inputs. */
static int make_work_dir(char *work, size_t size) {
    char path[4200];
    snprintf(work, size, "/tmp/dispenser-erofs-XXXXXX");
    if (!mkdtemp(work) || chmod(work, 0755) < 0)
        return -1;
    snprintf(path, sizeof(path), "%s/tree", work);
    mkdir(path, 0755);
    snprintf(path, sizeof(path), "%s/image", work);
    _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    return fd < 0 ? -1 : 0;
}

static void remove_work_dir(const char *work) {
    char path[4200];
    snprintf(path, sizeof(path), "%s/tree", work);
    rmdir(path);
    snprintf(path, sizeof(path), "%s/image", work);
    unlink(path);
    rmdir(work);
}

/* Old revisions' images go once a new one exists (a running qube keeps its open file). */
static void remove_other_revisions(const char *state_dir, const char *uuid, const char *keep) {
    char dir[4096], path[8192];
    snprintf(dir, sizeof(dir), "%s/qemu/images/%s", state_dir, uuid);
    const char *keep_name = strrchr(keep, '/') + 1;
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));) {
        if (strncmp(e->d_name, "root-", 5) != 0 || strcmp(e->d_name, keep_name) == 0 ||
            strstr(e->d_name, ".tmp")) /* another revision's builder at work */
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        unlink(path);
    }
    if (d)
        closedir(d);
}

int image_root_ensure(const char *state_dir, const char *uuid, uint64_t revision,
                      char *const *layers, size_t n_layers, const struct image_confine *confine,
                      struct backend_why *why) {
    char path[4096], tmp[4200], work[64];
    struct stat st;
    if (stat(layers[n_layers - 1], &st) < 0)
        return backend_fail(why, -errno, "cannot read the root layer %s: %s", layers[n_layers - 1],
                            strerror(errno));
    uid_t uid_base = st.st_uid, uid_count = 65536;
    image_root_path(state_dir, uuid, revision, path, sizeof(path));
    if (access(path, F_OK) == 0)
        return 0;
    if (make_parents(state_dir, "images", uuid) < 0)
        return backend_fail(why, -errno, "cannot create the image directory of %s: %s", uuid,
                            strerror(errno));
    double t0 = mono_ms();
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    _cleanup_close_ int fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    /* owned by the range's root: mkfs writes it as that user */
    int r = fd < 0 || fchown(fd, uid_base, uid_base) < 0 || make_work_dir(work, sizeof(work)) < 0
                ? -1
                : run_mkfs(layers, n_layers, work, tmp, confine, uid_base, uid_count);
    remove_work_dir(work);
    if (r == 0 && rename(tmp, path) < 0)
        r = -1;
    if (r < 0) {
        unlink(tmp);
        return backend_fail(why, -EIO,
                            "cannot build the root image of template %s revision "
                            "%llu (mkfs.erofs from erofs-utils)",
                            uuid, (unsigned long long)revision);
    }
    if (chown(path, 0, 0) < 0)
        log_warning("qemu: %s stays owned by the qubes' range: %s", path, strerror(errno));
    remove_other_revisions(state_dir, uuid, path);
    log_info("qemu: root image %s built in %.0f ms", path, mono_ms() - t0);
    return 0;
}

int image_private_ensure(const char *state_dir, const char *uuid, struct backend_why *why) {
    char path[4096], tmp[4200];
    image_private_path(state_dir, uuid, path, sizeof(path));
    if (access(path, F_OK) == 0)
        return 0;
    if (make_parents(state_dir, "volumes", uuid) < 0)
        return backend_fail(why, -errno, "cannot create the volume directory of %s: %s", uuid,
                            strerror(errno));
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    _cleanup_close_ int fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int r = fd < 0 || ftruncate(fd, (off_t)QEMU_PRIVATE_SIZE) < 0 ? -1 : 0;
    if (r == 0) {
        pid_t pid = fork();
        if (pid == 0) {
            int devnull = open("/dev/null", O_RDWR);
            dup2(devnull, 1);
            execlp("mkfs.ext4", "mkfs.ext4", "-q", "-F", "-L", "private", "-E",
                   "lazy_itable_init=1,lazy_journal_init=1", tmp, (char *)NULL);
            _exit(127);
        }
        int status = 0;
        while (pid > 0 && waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
        r = pid > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
    }
    if (r == 0 && rename(tmp, path) < 0)
        r = -1;
    if (r < 0) {
        unlink(tmp);
        return backend_fail(why, -EIO, "cannot create the private image %s (mkfs.ext4)", path);
    }
    return 0;
}
