/* Per-qube uid range slots, persisted as symlinks (uidslot.h). */
#include "uidslot.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "macro.h"
#include "strbuf.h"

struct uid_slots {
    char *dir;
    unsigned n;
    char **owner; /* owner[slot]: the uuid, or NULL when free; owner[0] stays NULL */
};

static void slot_path(const struct uid_slots *s, unsigned slot, char *buf, size_t size) {
    snprintf(buf, size, "%s/%u", s->dir, slot);
}

static int mkdir_one(const char *path) {
    return mkdir(path, 0700) == 0 || errno == EEXIST ? 0 : -errno;
}

/* One entry of the directory: "<slot>" -> "<uuid>". Anything else is not ours to judge. */
static void load_entry(struct uid_slots *s, const char *name) {
    char *end, path[4096], target[256];
    errno = 0;
    unsigned long slot = strtoul(name, &end, 10);
    if (errno || *end || end == name || slot == 0)
        return;
    if (slot >= s->n) {
        log_warning("uid range slot %lu is beyond uid-slots=%u: left alone", slot, s->n);
        return;
    }
    slot_path(s, (unsigned)slot, path, sizeof(path));
    ssize_t len = readlink(path, target, sizeof(target) - 1);
    if (len <= 0)
        return;
    target[len] = '\0';
    free(s->owner[slot]);
    s->owner[slot] = xstrdup(target);
}

static int load(struct uid_slots *s) {
    DIR *d = opendir(s->dir);
    if (!d)
        return -errno;
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] != '.')
            load_entry(s, e->d_name);
    closedir(d);
    return 0;
}

struct uid_slots *uid_slots_open(const char *state_dir, unsigned n_slots) {
    struct uid_slots *s = xcalloc(1, sizeof(*s));
    s->n = n_slots;
    s->owner = xcalloc(n_slots ? n_slots : 1, sizeof(char *));
    char parent[4096], dir[4200];
    snprintf(parent, sizeof(parent), "%s/container", state_dir);
    snprintf(dir, sizeof(dir), "%s/uids", parent);
    s->dir = xstrdup(dir);
    int r = mkdir_one(parent);
    if (r == 0)
        r = mkdir_one(s->dir);
    if (r == 0)
        r = load(s);
    if (r < 0) {
        uid_slots_free(s);
        errno = -r;
        return NULL;
    }
    return s;
}

void uid_slots_free(struct uid_slots *s) {
    if (!s)
        return;
    for (unsigned i = 0; i < s->n; i++)
        free(s->owner[i]);
    free(s->owner);
    free(s->dir);
    free(s);
}

int uid_slots_find(const struct uid_slots *s, const char *uuid) {
    for (unsigned i = 1; i < s->n; i++)
        if (s->owner[i] && strcmp(s->owner[i], uuid) == 0)
            return (int)i;
    return -ENOENT;
}

int uid_slots_get(struct uid_slots *s, const char *uuid) {
    int slot = uid_slots_find(s, uuid);
    if (slot > 0)
        return slot;
    if (!*uuid || strchr(uuid, '/'))
        return -EINVAL;
    char path[4096];
    for (unsigned i = 1; i < s->n; i++) {
        if (s->owner[i])
            continue;
        slot_path(s, i, path, sizeof(path));
        if (symlink(uuid, path) == 0) {
            s->owner[i] = xstrdup(uuid);
            return (int)i;
        }
        if (errno != EEXIST)
            return -errno;
        load_entry(s, path + strlen(s->dir) + 1); /* taken on disk: learn by whom */
        if (s->owner[i] && strcmp(s->owner[i], uuid) == 0)
            return (int)i;
    }
    return -ENOSPC;
}

int uid_slots_release(struct uid_slots *s, const char *uuid) {
    int slot = uid_slots_find(s, uuid);
    if (slot < 0)
        return 0;
    char path[4096];
    slot_path(s, (unsigned)slot, path, sizeof(path));
    if (unlink(path) < 0 && errno != ENOENT) {
        int r = -errno;
        log_warning("cannot release uid range slot %d of %s: %s", slot, uuid, strerror(-r));
        return r;
    }
    log_debug("uid range slot %d of %s released", slot, uuid);
    free(s->owner[slot]);
    s->owner[slot] = NULL;
    return 0;
}

void uid_slots_sweep(struct uid_slots *s, bool (*keep)(void *ctx, const char *uuid), void *ctx) {
    for (unsigned i = 1; i < s->n; i++) {
        if (!s->owner[i] || keep(ctx, s->owner[i]))
            continue;
        log_info("releasing uid range slot %u of %s: the qube is gone", i, s->owner[i]);
        char *uuid = xstrdup(s->owner[i]);
        uid_slots_release(s, uuid);
        free(uuid);
    }
}

unsigned uid_slots_in_use(const struct uid_slots *s) {
    unsigned n = 0;
    for (unsigned i = 1; i < s->n; i++)
        n += s->owner[i] != NULL;
    return n;
}

const char *uid_slots_owner(const struct uid_slots *s, unsigned slot) {
    return slot > 0 && slot < s->n ? s->owner[slot] : NULL;
}
