/* The tmpfs behind each ram pool: mounted at STATE/pools/<name> when the pool is added
 * and at every daemon start, unmounted when it is removed. A mount that is already
 * there (a daemon restarted while qubes ran from it) is kept as it is: a second tmpfs
 * over it would hide their files from the next start. */
#include "pool_mount.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "log.h"

int pool_path(const struct app *app, const char *name, char *buf, size_t size) {
    if (!app->pools_dir)
        return -1;
    snprintf(buf, size, "%s/%s", app->pools_dir, name);
    return 0;
}

static bool is_mountpoint(const char *path) {
    char parent[4096];
    struct stat st, pst;
    snprintf(parent, sizeof(parent), "%s/..", path);
    return stat(path, &st) == 0 && stat(parent, &pst) == 0 && st.st_dev != pst.st_dev;
}

int pool_mount(const struct app *app, const struct pool *p, struct qerr *err) {
    char path[4096], opts[64];
    if (p->driver != POOL_RAM || pool_path(app, p->name, path, sizeof(path)) < 0)
        return 0;
    if ((mkdir(app->pools_dir, 0700) < 0 && errno != EEXIST) ||
        (mkdir(path, 0700) < 0 && errno != EEXIST))
        return qerr_set(err, EXC_QUBES, "Cannot make the directory of pool '%s': %s", p->name,
                        strerror(errno));
    if (is_mountpoint(path))
        return 0;
    snprintf(opts, sizeof(opts), "size=%" PRIu64 ",mode=0700", p->size);
    if (mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, opts) < 0) {
        int e = errno;
        rmdir(path);
        return qerr_set(err, EXC_QUBES, "Cannot mount the tmpfs of pool '%s': %s", p->name,
                        strerror(e));
    }
    log_info("pool %s: tmpfs of %" PRIu64 " bytes mounted on %s", p->name, p->size, path);
    return 0;
}

int pool_unmount(const struct app *app, const struct pool *p, struct qerr *err) {
    char path[4096];
    if (p->driver != POOL_RAM || pool_path(app, p->name, path, sizeof(path)) < 0)
        return 0;
    if (is_mountpoint(path) && umount2(path, 0) < 0)
        return qerr_set(err, "QubesPoolInUseError",
                        "Storage pool is in use: '%s' (its tmpfs cannot be unmounted: %s)", p->name,
                        strerror(errno));
    rmdir(path);
    return 0;
}

void pool_mount_all(const struct app *app) {
    for (size_t i = 0; i < app->n_pools; i++) {
        struct qerr err = {0};
        if (pool_mount(app, &app->pools[i], &err) < 0)
            log_error("%s", err.msg);
    }
}

int pool_usage(const struct app *app, const struct pool *p, uint64_t *size, uint64_t *used) {
    char path[4096];
    struct statvfs sv;
    if (p->driver == POOL_RAM) {
        if (pool_path(app, p->name, path, sizeof(path)) < 0)
            return -1;
    } else if (pool_dir_path(app, path, sizeof(path)) < 0) {
        return -1;
    }
    if (statvfs(path, &sv) < 0)
        return -1;
    *size = (uint64_t)sv.f_frsize * sv.f_blocks;
    *used = (uint64_t)sv.f_frsize * (sv.f_blocks - sv.f_bfree);
    return 0;
}

int pool_dir_path(const struct app *app, char *buf, size_t size) {
    if (!app->pools_dir)
        return -1;
    const char *slash = strrchr(app->pools_dir, '/');
    int len = slash ? (int)(slash - app->pools_dir) : 0;
    snprintf(buf, size, "%.*s/volumes", len, app->pools_dir);
    return 0;
}
