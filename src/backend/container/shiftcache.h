/* Chowned copies of layers: per-qube uid ranges where the kernel has no idmapped overlay
 * layers (docs/engine.md, "A host uid range per qube", container.uid-ranges=copies).
 *
 * Volumes stay owned by the canonical range on disk, whatever the mode. Without idmapped
 * mounts a qube of slot s cannot see them as its own, so it gets copies of the lower
 * layers it stands on, chowned into its range (uidshift_range): one per layer and slot,
 *   STATE/container/shifted/<slot>/<key>    key "<uuid>.<volume>.<layer id>", or "empty"
 * made once (a copy in ".tmp-<key>", chowned, then renamed: a crash leaves a temporary,
 * never a half-made copy) and kept for the next qube of the slot (the next disposable
 * of the same template uses the same layers). A layer never changes (ids are never
 * reused), so a copy is current as long as its layer exists. Copies go:
 *  - with their layer: when a revision goes (a commit, a revert, a removal), a sweep
 *    removes the copies whose layer is gone, unless a running qube stands on them;
 *  - with the slot's owner: before a slot is released, the copies of the releasing
 *    qube's own volumes (its private data, chowned to the slot) are removed, so that the
 *    next owner of the slot finds no file of the previous one. Copies of other qubes'
 *    layers (a template's root, a disposable template's private) stay: they are that
 *    template's read-only content, which any qube based on it sees anyway;
 *  - with the slot: a slot no qube holds loses its directory at the daemon's start
 *    (while the daemon runs, a free slot keeps the copies of templates' layers for the
 *    next qube that takes it: the next disposable, typically, on the same layers).
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Copies of `layers` (absolute paths of canonical layers, in order) chowned from
 * canonical..+count to slot_base..+count: *out gets the copies' paths in the same order
 * (malloc'd, NULL-terminated; shiftcache_paths_free). -errno on failure. */
int shiftcache_get(const char *state_dir, unsigned slot, uid_t canonical, uid_t slot_base,
                   uid_t count, char *const *layers, size_t n, char ***out);
void shiftcache_paths_free(char **paths);
/* Before slot `slot` is released by `uuid`: removes the copies of uuid's own layers. */
void shiftcache_drop_owner(const char *state_dir, unsigned slot, const char *uuid);
/* Removes temporaries, copies whose layer is gone unless in `in_use` (NULL-terminated
 * copy paths, may be NULL), and, if `held` is given (at the daemon's start), the
 * directories of slots held() says no qube holds. */
void shiftcache_sweep(const char *state_dir, const char *const *in_use,
                      bool (*held)(void *ctx, unsigned slot), void *ctx);
