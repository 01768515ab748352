/* STATE/log/guest-<name>.log: what a qube's agent and init write to stderr. It lives as
 * long as its qube (a disposable's goes with it), is rotated at start once it is over
 * GUEST_LOG_ROTATE_BYTES (one old file, .log.1, is kept), and the tail of the log of a
 * start that failed is kept in log/failed-start/ (the newest FAILED_START_KEEP), since
 * the qube of a failed disposable start is removed at once. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "container.h"
#include "log.h"
#include "strbuf.h"

#define GUEST_LOG_ROTATE_BYTES (1024 * 1024)
#define FAILED_START_KEEP 16
#define FAILED_START_TAIL (64 * 1024)

static void log_path(const struct container_backend *cb, char *buf, size_t size, const char *name,
                     const char *suffix) {
    container_path(cb, buf, size, "%s/log/guest-%s.log%s", cb->state_dir, name, suffix);
}

static void rotate_if_big(const struct container_backend *cb, const char *name) {
    char path[4096], old[4096];
    log_path(cb, path, sizeof(path), name, "");
    struct stat st;
    if (stat(path, &st) < 0 || st.st_size <= GUEST_LOG_ROTATE_BYTES)
        return;
    log_path(cb, old, sizeof(old), name, ".1");
    if (rename(path, old) < 0)
        log_warning("%s: cannot rotate its log: %s", name, strerror(errno));
}

int guest_log_open(struct container_backend *cb, const char *name) {
    char path[4096];
    container_path(cb, path, sizeof(path), "%s/log", cb->state_dir);
    mkdir(path, 0750);
    rotate_if_big(cb, name);
    log_path(cb, path, sizeof(path), name, "");
    return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
}

void guest_log_remove(struct container_backend *cb, const char *name) {
    char path[4096];
    log_path(cb, path, sizeof(path), name, "");
    unlink(path);
    log_path(cb, path, sizeof(path), name, ".1");
    unlink(path);
}

/* ---- failed starts ---- */

struct aged {
    char name[256];
    time_t mtime;
};

static int newest_first(const void *a, const void *b) {
    const struct aged *x = a, *y = b;
    return x->mtime < y->mtime ? 1 : x->mtime > y->mtime ? -1 : strcmp(y->name, x->name);
}

/* Keeps the newest FAILED_START_KEEP files of dir. */
static void prune_failed_starts(const char *dir) {
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct aged *v = NULL;
    size_t n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        struct stat st;
        if (e->d_name[0] == '.' || fstatat(dirfd(d), e->d_name, &st, 0) < 0)
            continue;
        v = xrealloc(v, (n + 1) * sizeof(*v));
        snprintf(v[n].name, sizeof(v[n].name), "%s", e->d_name);
        v[n++].mtime = st.st_mtime;
    }
    qsort(v, n, sizeof(*v), newest_first);
    for (size_t i = FAILED_START_KEEP; i < n; i++)
        unlinkat(dirfd(d), v[i].name, 0);
    closedir(d);
    free(v);
}

/* Copies the last `max` bytes of in to out. */
static int copy_tail(int in, int out, off_t max) {
    struct stat st;
    if (fstat(in, &st) < 0)
        return -1;
    if (st.st_size > max && lseek(in, st.st_size - max, SEEK_SET) < 0)
        return -1;
    char buf[16384];
    for (ssize_t n; (n = read(in, buf, sizeof(buf))) > 0;)
        if (write(out, buf, (size_t)n) != n)
            return -1;
    return 0;
}

void guest_log_keep_failed_start(struct container_backend *cb, const char *name) {
    char src[4096], dir[4096], dst[4200], stamp[32];
    log_path(cb, src, sizeof(src), name, "");
    _cleanup_close_ int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return;
    container_path(cb, dir, sizeof(dir), "%s/log/failed-start", cb->state_dir);
    mkdir(dir, 0750);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct tm tm;
    strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%S", gmtime_r(&now.tv_sec, &tm));
    snprintf(dst, sizeof(dst), "%s/%s-%s.%09ld.log", dir, name, stamp, now.tv_nsec);
    _cleanup_close_ int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (out < 0 || copy_tail(in, out, FAILED_START_TAIL) < 0)
        log_warning("%s: cannot keep the log of its failed start in %s", name, dir);
    else
        log_info("%s: the log of its failed start is in %s", name, dst);
    prune_failed_starts(dir);
}

/* ---- leftovers ---- */

void guest_log_note_qube(struct container_backend *cb, const char *name) {
    cb->log_owners = xrealloc(cb->log_owners, (cb->n_log_owners + 1) * sizeof(char *));
    cb->log_owners[cb->n_log_owners++] = xstrdup(name);
}

static bool has_owner(const struct container_backend *cb, const char *name) {
    for (size_t i = 0; i < cb->n_log_owners; i++)
        if (strcmp(cb->log_owners[i], name) == 0)
            return true;
    return false;
}

/* "guest-<name>.log" or "guest-<name>.log.1": the qube name, or false. */
static bool owner_of(const char *file, char *name, size_t size) {
    size_t len = strlen(file);
    if (strncmp(file, "guest-", 6) != 0)
        return false;
    const char *end = len > 6 + 6 && strcmp(file + len - 6, ".log.1") == 0 ? file + len - 6
                      : len > 6 + 4 && strcmp(file + len - 4, ".log") == 0 ? file + len - 4
                                                                           : NULL;
    if (!end || (size_t)(end - file - 6) >= size)
        return false;
    snprintf(name, size, "%.*s", (int)(end - file - 6), file + 6);
    return true;
}

void guest_log_sweep(struct container_backend *cb) {
    char dir[4096], owner[256];
    container_path(cb, dir, sizeof(dir), "%s/log", cb->state_dir);
    DIR *d = opendir(dir);
    if (!d)
        return;
    size_t removed = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (owner_of(e->d_name, owner, sizeof(owner)) && !has_owner(cb, owner) &&
            unlinkat(dirfd(d), e->d_name, 0) == 0)
            removed++;
    closedir(d);
    if (removed)
        log_info("removed %zu logs of qubes that no longer exist", removed);
}

void guest_log_owners_free(struct container_backend *cb) {
    for (size_t i = 0; i < cb->n_log_owners; i++)
        free(cb->log_owners[i]);
    free(cb->log_owners);
    cb->log_owners = NULL;
    cb->n_log_owners = 0;
}
