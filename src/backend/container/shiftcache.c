/* Chowned copies of layers for qubes without idmapped mounts (shiftcache.h). */
#include "shiftcache.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fsutil.h"
#include "log.h"
#include "macro.h"
#include "monoclock.h"
#include "strbuf.h"
#include "volume.h"

#define EMPTY_KEY "empty"
#define TMP_PREFIX ".tmp-"

/* "<state>/volumes/<uuid>/<vol>/layers/<id>" -> "<uuid>.<vol>.<id>";
 * "<state>/empty-layer" -> "empty". Anything else has no copy. */
static int key_of(const char *state_dir, const char *layer, char *key, size_t size) {
    size_t n = strlen(state_dir);
    if (strncmp(layer, state_dir, n) != 0 || layer[n] != '/')
        return -EINVAL;
    const char *rel = layer + n + 1;
    if (strcmp(rel, "empty-layer") == 0) {
        snprintf(key, size, EMPTY_KEY);
        return 0;
    }
    char uuid[128], vol[64], id[32], tail;
    if (sscanf(rel, "volumes/%127[^/]/%63[^/]/layers/%31[^/]%c", uuid, vol, id, &tail) != 3 ||
        strchr(uuid, '.') || strchr(vol, '.'))
        return -EINVAL;
    snprintf(key, size, "%s.%s.%s", uuid, vol, id);
    return 0;
}

/* The layer a copy was made of (the inverse of key_of). */
static void layer_of(const char *state_dir, const char *key, char *path, size_t size) {
    char uuid[128], vol[64], id[32];
    if (strcmp(key, EMPTY_KEY) == 0)
        snprintf(path, size, "%s/empty-layer", state_dir);
    else if (sscanf(key, "%127[^.].%63[^.].%31s", uuid, vol, id) == 3)
        snprintf(path, size, "%s/volumes/%s/%s/layers/%s", state_dir, uuid, vol, id);
    else
        snprintf(path, size, "%s/nonexistent", state_dir); /* not ours: goes */
}

static void slot_dir(const char *state_dir, unsigned slot, char *buf, size_t size) {
    snprintf(buf, size, "%s/container/shifted/%u", state_dir, slot);
}

/* cp -a keeps modes, times, hard links, xattrs (file capabilities, overlayfs' opaque
 * marks) and device nodes (overlayfs' whiteouts); --reflink=auto shares the data blocks
 * where the file system can. */
static int copy_layer(const char *from, const char *to) {
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        execl("/bin/cp", "cp", "-a", "--reflink=auto", "-T", "--", from, to, (char *)NULL);
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -errno;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        log_error("shifted copies: cp -a %s %s failed (status 0x%x)", from, to, (unsigned)status);
        return -EIO;
    }
    return 0;
}

static int make_copy(const char *layer, const char *dir, const char *key, uid_t canonical,
                     uid_t slot_base, uid_t count, const char *dest) {
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s/" TMP_PREFIX "%s", dir, key);
    remove_recursive(tmp); /* a crash's leftover */
    double t0 = mono_ms();
    int r = copy_layer(layer, tmp);
    if (r == 0)
        r = uidshift_range(tmp, canonical, slot_base, count);
    if (r == 0 && rename(tmp, dest) < 0)
        r = -errno;
    if (r < 0) {
        remove_recursive(tmp);
        return r;
    }
    log_debug("shifted copy %s made in %.2f ms", dest, mono_ms() - t0);
    return 0;
}

void shiftcache_paths_free(char **paths) {
    for (size_t i = 0; paths && paths[i]; i++)
        free(paths[i]);
    free(paths);
}

int shiftcache_get(const char *state_dir, unsigned slot, uid_t canonical, uid_t slot_base,
                   uid_t count, char *const *layers, size_t n, char ***out) {
    char dir[4096], key[256], dest[4400];
    snprintf(dir, sizeof(dir), "%s/container/shifted", state_dir);
    if (make_owned_dir(dir, 0, 0700) < 0)
        return -errno;
    slot_dir(state_dir, slot, dir, sizeof(dir));
    if (make_owned_dir(dir, 0, 0700) < 0)
        return -errno;
    char **paths = xcalloc(n + 1, sizeof(char *));
    for (size_t i = 0; i < n; i++) {
        int r = key_of(state_dir, layers[i], key, sizeof(key));
        snprintf(dest, sizeof(dest), "%s/%s", dir, key);
        if (r == 0 && access(dest, F_OK) < 0)
            r = make_copy(layers[i], dir, key, canonical, slot_base, count, dest);
        if (r < 0) {
            log_error("no shifted copy of %s for uid range slot %u: %s", layers[i], slot,
                      strerror(-r));
            shiftcache_paths_free(paths);
            return r;
        }
        paths[i] = xstrdup(dest);
    }
    *out = paths;
    return 0;
}

void shiftcache_drop_owner(const char *state_dir, unsigned slot, const char *uuid) {
    char dir[4096], path[4400];
    slot_dir(state_dir, slot, dir, sizeof(dir));
    size_t n = strlen(uuid);
    DIR *d = opendir(dir);
    for (struct dirent *e; d && n && (e = readdir(d));) {
        if (strncmp(e->d_name, uuid, n) != 0 || e->d_name[n] != '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        log_debug("removing %s: its owner gives the slot back", path);
        remove_recursive(path);
    }
    if (d)
        closedir(d);
}

static bool in_list(const char *const *list, const char *s) {
    for (; list && *list; list++)
        if (strcmp(*list, s) == 0)
            return true;
    return false;
}

static bool copy_stale(const char *state_dir, const char *name, const char *path,
                       const char *const *in_use) {
    char layer[4400];
    if (strncmp(name, TMP_PREFIX, strlen(TMP_PREFIX)) == 0)
        return true; /* copies are made within one call: a crash's leftover */
    if (in_list(in_use, path))
        return false;
    layer_of(state_dir, name, layer, sizeof(layer));
    return access(layer, F_OK) < 0;
}

static void sweep_slot(const char *state_dir, const char *dir, const char *const *in_use) {
    char path[4400];
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        if (!copy_stale(state_dir, e->d_name, path, in_use))
            continue;
        log_debug("removing %s: its layer is gone", path);
        remove_recursive(path);
    }
    if (d)
        closedir(d);
}

void shiftcache_sweep(const char *state_dir, const char *const *in_use,
                      bool (*held)(void *ctx, unsigned slot), void *ctx) {
    /* held NULL: slots free now keep their copies of others' layers for their next qube */
    char top[4096], dir[4400];
    snprintf(top, sizeof(top), "%s/container/shifted", state_dir);
    DIR *d = opendir(top);
    for (struct dirent *e; d && (e = readdir(d));) {
        if (e->d_name[0] == '.')
            continue;
        char *end;
        unsigned long slot = strtoul(e->d_name, &end, 10);
        snprintf(dir, sizeof(dir), "%s/%s", top, e->d_name);
        if (*end || end == e->d_name || (held && !held(ctx, (unsigned)slot))) {
            log_info("removing %s: no qube holds the slot", dir);
            remove_recursive(dir);
        } else {
            sweep_slot(state_dir, dir, in_use);
        }
    }
    if (d)
        closedir(d);
}
