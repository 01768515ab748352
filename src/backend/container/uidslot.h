/* A host uid range per qube: slot s is uid-base + s*uid-count .. +uid-count-1.
 *
 * Slot 0 is the canonical range: volumes are owned by it on disk and no qube runs as it.
 * A qube gets the lowest free slot at its first start and keeps it until its volumes
 * are removed; the slot is recorded as a symlink STATE/container/uids/<slot> -> <uuid>,
 * made with symlink(2), which fails if the name exists: a slot is never handed out twice,
 * whenever the daemon is killed. A link whose qube is gone (the daemon killed between the
 * removal of its volumes and the link's) is swept at the next daemon start.
 */
#pragma once
#include <stdbool.h>

struct uid_slots;

/* Loads the table (n_slots including slot 0); NULL with errno if the directory cannot
 * be made or read. */
struct uid_slots *uid_slots_open(const char *state_dir, unsigned n_slots);
void uid_slots_free(struct uid_slots *s);
/* UUID's slot, allocating the lowest free one the first time: >= 1, -ENOSPC when every
 * slot is taken, -errno when the link cannot be made. */
int uid_slots_get(struct uid_slots *s, const char *uuid);
/* UUID's slot, or -ENOENT. */
int uid_slots_find(const struct uid_slots *s, const char *uuid);
/* Frees UUID's slot (nothing if it has none); -errno if the link stays. */
int uid_slots_release(struct uid_slots *s, const char *uuid);
/* Releases every slot whose qube keep() does not want. */
void uid_slots_sweep(struct uid_slots *s, bool (*keep)(void *ctx, const char *uuid), void *ctx);
unsigned uid_slots_in_use(const struct uid_slots *s);
/* The uuid holding `slot`, or NULL. */
const char *uid_slots_owner(const struct uid_slots *s, unsigned slot);
