/* Qubes' volumes as directories: layered, versioned, copy-on-write through overlayfs.
 *
 * A persistent volume (a template's or standalone's root, any non-disposable's private)
 * lives in STATE/volumes/<uuid>/<volume>/:
 *   layers/<id>/   content directories, files owned by the qubes' uid range
 *   current        "revision <n>\nlayers <top-id> ... <bottom-id>\n" (atomically replaced)
 *   upper-<rev>/   the writable layer of a running qube (becomes a layer on commit)
 * Revision n is a stack of layers. A qube that writes to the volume gets a fresh upper
 * layer over the current stack; at shutdown, if the upper holds changes, revision n+1 =
 * upper + stack becomes current, else the upper is discarded. Qubes that started from
 * revision n keep seeing n (their lowerdirs do not change), so a template can be updated
 * while qubes based on it run. Stacks deeper than VOLUME_MAX_LAYERS are squashed into
 * one layer (a copy of the merged view) when committed.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define VOLUME_MAX_LAYERS 16

struct volume_stack {
    uint64_t revision;
    size_t n_layers;
    char **layers; /* absolute paths, top first */
};

void volume_stack_free(struct volume_stack *s);

/* Reads the current revision of STATE/volumes/<uuid>/<name>; revision 0 and no layers if
 * the volume has never been written. */
int volume_current(const char *state_dir, const char *uuid, const char *name,
                   struct volume_stack *out);
/* Creates a fresh empty upper (and overlay work dir beside it) for a writer, owned by
 * `owner` (the range's root). Paths returned in upper/work (malloc'd). */
int volume_begin_write(const char *state_dir, const char *uuid, const char *name, uid_t owner,
                       char **upper, char **work);
/* Turns the writer's upper into the next revision if it has changes, else removes it.
 * The upper is stacked on the revision that was current at volume_begin_write (the one
 * the writer saw). Returns 1 if a new revision became current, 0 if there was nothing to
 * commit, -errno on failure. */
int volume_commit(const char *state_dir, const char *uuid, const char *name, const char *upper,
                  const char *work);
/* Throws a writer's upper and work dir away without committing (a start that failed). */
int volume_abort_write(const char *state_dir, const char *uuid, const char *name, const char *upper,
                       const char *work);
/* A volume never written gets its first revision from `fill`, which puts the content
 * into `dir` (an empty directory, owned by `owner`; `scratch` is an empty directory it
 * may mount on). Content that every first start would make anyway (a private volume's
 * home, seeded from the template) is then no change of the volume: a start and stop that
 * writes nothing more leaves the revision alone, and disposables made from it stay
 * current. Returns 1 if revision 1 was made, 0 if the volume had been written already
 * (or fill left dir empty), -errno. */
typedef int (*volume_fill_fn)(void *ctx, const char *dir, const char *scratch);
int volume_seed(const char *state_dir, const char *uuid, const char *name, uid_t owner,
                volume_fill_fn fill, void *ctx);
/* Copies directory `sub` (relative) of the merged view of `stack` into the existing
 * directory `dest`, as `cp -a stack/sub/. dest` would. `mnt` is an empty directory to
 * mount the view on (in a child's private mount namespace). -ENOENT if sub is absent. */
int volume_copy_out(const struct volume_stack *stack, const char *mnt, const char *sub,
                    const char *dest);
/* Import for qvm-template: a staging dir to fill, then shift ownership into the range and
 * make it the single layer of a new revision (or throw it away). */
int volume_import_begin(const char *state_dir, const char *uuid, const char *name, char *path,
                        size_t size);
int volume_import_end(const char *state_dir, const char *uuid, const char *name, bool commit,
                      uid_t uid_base, uid_t uid_count);
/* Removes layers no revision and no running qube (`in_use`, NULL-terminated list of
 * layer paths, may be NULL) refers to, and leftovers of interrupted operations. Layers
 * under a running writer's upper are kept too. Returns the number of layers removed.
 * Calls for one volume must not run concurrently (the daemon is single-threaded). */
int volume_gc(const char *state_dir, const char *uuid, const char *name, const char *const *in_use);
int volume_remove_all(const char *state_dir, const char *uuid);
/* Bytes allocated on disk by the current revision's layers (du -s; hard links once). */
uint64_t volume_usage_bytes(const char *state_dir, const char *uuid, const char *name);

/* Revisions kept for revert (rev-<n> files, see volume.c) and what the user configured. */
#define VOLUME_DEFAULT_KEEP 1
struct volume_config {
    uint64_t revisions_to_keep;
    uint64_t size; /* bytes; 0: never set */
};
struct volume_revision {
    uint64_t revision;
    int64_t time; /* when it stopped being current (seconds since the epoch) */
};
int volume_get_config(const char *state_dir, const char *uuid, const char *name,
                      struct volume_config *out);
/* Forgets kept revisions beyond the new count at once. */
int volume_set_revisions_to_keep(const char *state_dir, const char *uuid, const char *name,
                                 uint64_t keep);
int volume_set_size(const char *state_dir, const char *uuid, const char *name, uint64_t size);
/* The kept revisions, oldest first; *out (malloc'd) holds *n entries. */
int volume_revisions(const char *state_dir, const char *uuid, const char *name,
                     struct volume_revision **out, size_t *n);
/* Kept revision `revision` becomes current again (as the next revision); -ENOENT if it
 * is not kept. The current content is dropped, as Qubes' revert does. */
int volume_revert(const char *state_dir, const char *uuid, const char *name, uint64_t revision);
/* The next revision is empty (one empty layer whose root `owner` owns). */
int volume_clear(const char *state_dir, const char *uuid, const char *name, uid_t owner);
/* The next revision of uuid's volume is a copy of src_uuid's current one (of the same
 * name): one new layer, so the two never share a file. */
int volume_clone(const char *state_dir, const char *src_uuid, const char *uuid, const char *name,
                 uid_t owner);

/* Changes the owner of every file below `dir` from host ids (0..count-1) to
 * base+id, keeping set-id bits and file capabilities that chown clears. Idempotent: ids
 * already in [base, base+count) stay; others map to base+65534 (nobody). Needs
 * base >= count (disjoint ranges) unless base is 0 (nothing to do). */
int uidshift_tree(const char *dir, uid_t base, uid_t count);
/* Moves every file below `dir` owned by an id of from..from+count-1 to the same offset
 * in to..to+count-1 (uid and gid, with the same care for set-id bits and capabilities;
 * a v3 capability's rootid in the range moves too); every other id stays (host root's
 * overlay whiteouts, say). Idempotent. The ranges must not overlap. */
int uidshift_range(const char *dir, uid_t from, uid_t to, uid_t count);
