/* The volumes of VM qubes as the daemon sees them (image.h has the files): removal,
 * volume info, and no import (a VM's root comes from a container template). */
#include "qemu.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "container/volume.h"
#include "fsutil.h"
#include "image.h"

/* A removed qube's logs go with it (a disposable's too). */
static void remove_logs(struct qemu_backend *qb, const char *name) {
    static const char *const kinds[] = {"console", "qemu", "vmux"};
    for (size_t i = 0; i < ELEMENTSOF(kinds); i++) {
        char path[4096], old[4200];
        qemu_log_path(qb, name, kinds[i], path, sizeof(path));
        snprintf(old, sizeof(old), "%s.1", path);
        unlink(path);
        unlink(old);
    }
}

int qemu_remove_volumes(struct backend *b, const struct backend_qube *q, struct backend_why *why) {
    struct qemu_backend *qb = (struct qemu_backend *)b;
    char path[4096];
    if (qemu_find(qb, q->name))
        return backend_fail(why, -EBUSY, "Domain is not powered off: '%s'", q->name);
    snprintf(path, sizeof(path), "%s/qemu/volumes/%s", qb->state_dir, q->uuid);
    int r = remove_recursive(path);
    snprintf(path, sizeof(path), "%s/qemu/images/%s", qb->state_dir, q->uuid);
    if (r == 0)
        r = remove_recursive(path);
    remove_logs(qb, q->name);
    qemu_golden_remove(qb, q->uuid);
    if (r < 0)
        return backend_fail(why, -errno, "cannot remove the volumes of '%s': %s", q->name,
                            strerror(errno));
    return 0;
}

/* root: a view of the template's current revision; private: the qube's own image (one
 * revision: an image is changed in place), or a disposable's throwaway view of its
 * template's. */
int qemu_volume_info(struct backend *b, const struct backend_qube *q, const char *volume,
                     struct backend_volume_info *out, struct backend_why *why) {
    struct qemu_backend *qb = (struct qemu_backend *)b;
    bool is_root = strcmp(volume, "root") == 0;
    const char *source = is_root                     ? q->root_source
                         : q->kind == BACKEND_DISPVM ? q->private_source
                                                     : NULL;
    struct volume_stack cur = {0};
    uint64_t revision = 0;
    if (is_root && source) {
        if (volume_current(qb->state_dir, source, "root", &cur) < 0)
            return backend_fail(why, -EIO, "cannot read volume root of '%s'", q->name);
        revision = cur.revision;
        volume_stack_free(&cur);
    } else {
        char image[4096];
        image_private_path(qb->state_dir, source ? source : q->uuid, image, sizeof(image));
        revision = access(image, F_OK) == 0 ? 1 : 0;
    }
    struct qemu_run *run = qemu_find(qb, q->name);
    bool in_use = run != NULL;
    /* the root it booted: the template's may have moved on since (an outdated preload);
     * not known for a VM started before the engine recorded it */
    uint64_t used = in_use && is_root && run->root_revision ? run->root_revision : revision;
    *out = (struct backend_volume_info){
        .revision = revision,
        .used_revision = in_use ? used : 0,
        .in_use = in_use,
        .save_on_stop = !source,
        .snap_on_start = source != NULL,
    };
    snprintf(out->source_uuid, sizeof(out->source_uuid), "%s", source ? source : "");
    return 0;
}

static int no_import(struct backend_why *why) {
    return backend_fail(why, -EIO,
                        "virt_mode=qemu qubes take their root from a template of "
                        "the container engine: import into that template");
}

int qemu_import_begin(struct backend *b, const struct backend_qube *q, const char *volume,
                      char *path, size_t size, struct backend_why *why) {
    return no_import(why);
}

int qemu_import_end(struct backend *b, const struct backend_qube *q, const char *volume,
                    bool commit, struct backend_why *why) {
    return no_import(why);
}
