/* The container engine's volume operations beyond start and stop (backend.h,
 * volume_revisions and volume_change): clone, revert, clear and configuration of a halted
 * qube's own directory volumes (volume.h has the layout). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "container.h"

const char *container_volume_source(const struct backend_qube *q, const char *volume) {
    bool own_root = q->kind == BACKEND_TEMPLATEVM || q->kind == BACKEND_STANDALONEVM;
    if (strcmp(volume, "root") == 0)
        return own_root ? NULL : q->root_source;
    return q->kind == BACKEND_DISPVM ? q->private_source : NULL;
}

static bool is_persistent_name(const char *volume) {
    return strcmp(volume, "root") == 0 || strcmp(volume, "private") == 0;
}

int container_volume_revisions(struct backend *b, const struct backend_qube *q, const char *volume,
                               struct backend_volume_revision *out, size_t max, size_t *n,
                               struct backend_why *why) {
    struct container_backend *cb = (struct container_backend *)b;
    *n = 0;
    if (!is_persistent_name(volume) || container_volume_source(q, volume))
        return 0;                 /* scratch, or a view: the revisions are its source's */
    container_settle_writers(cb); /* a pending commit keeps the revision before it */
    struct volume_revision *revs = NULL;
    size_t count = 0;
    int r = volume_revisions(cb->state_dir, q->uuid, volume, &revs, &count);
    if (r < 0)
        return backend_fail(why, r, "cannot list the revisions of volume %s of '%s': %s", volume,
                            q->name, strerror(-r));
    for (size_t i = 0; i < count && i < max; i++)
        out[i] = (struct backend_volume_revision){revs[i].revision, revs[i].time};
    *n = count;
    free(revs);
    return 0;
}

/* The source qube's volume of that name: its own, or the one it is a view of. */
static const char *clone_source_uuid(const struct backend_volume_change *c) {
    const char *view = container_volume_source(c->src, c->volume);
    return view ? view : c->src->uuid;
}

static int apply(struct container_backend *cb, const struct backend_qube *q,
                 const struct backend_volume_change *c) {
    const char *sd = cb->state_dir;
    switch (c->op) {
    case BACKEND_VOLUME_CLONE:
        return volume_clone(sd, clone_source_uuid(c), q->uuid, c->volume, cb->uid_base);
    case BACKEND_VOLUME_REVERT: return volume_revert(sd, q->uuid, c->volume, c->value);
    case BACKEND_VOLUME_CLEAR: return volume_clear(sd, q->uuid, c->volume, cb->uid_base);
    case BACKEND_VOLUME_SET_SIZE: return volume_set_size(sd, q->uuid, c->volume, c->value);
    case BACKEND_VOLUME_SET_REVISIONS_TO_KEEP:
        return volume_set_revisions_to_keep(sd, q->uuid, c->volume, c->value);
    }
    return -EOPNOTSUPP;
}

int container_volume_change(struct backend *b, const struct backend_qube *q,
                            const struct backend_volume_change *c, struct backend_why *why) {
    struct container_backend *cb = (struct container_backend *)b;
    if (!is_persistent_name(c->volume))
        return backend_fail(why, -EINVAL,
                            "Volume %s of '%s' is scratch, discarded at every stop: "
                            "nothing to change",
                            c->volume, q->name);
    if (container_volume_source(q, c->volume))
        return backend_fail(why, -EINVAL,
                            "Volume %s of '%s' is a view of another qube's, made afresh at "
                            "every start: change that qube's instead",
                            c->volume, q->name);
    container_settle(cb); /* a previous run's volume commit comes first */
    bool config_only = c->op == BACKEND_VOLUME_SET_SIZE ||
                       c->op == BACKEND_VOLUME_SET_REVISIONS_TO_KEEP;
    if (!config_only && container_find(cb, q->name))
        return backend_fail(why, -EBUSY, "Domain is not powered off: '%s'", q->name);
    int r = apply(cb, q, c);
    if (r == -ENOENT && c->op == BACKEND_VOLUME_REVERT)
        return backend_fail(why, r, "Revision %llu of volume %s of '%s' is not kept",
                            (unsigned long long)c->value, c->volume, q->name);
    if (r < 0)
        return backend_fail(why, r, "cannot change volume %s of '%s': %s", c->volume, q->name,
                            strerror(-r));
    return 0;
}
