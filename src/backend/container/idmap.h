/* Idmapped mounts: how each qube sees volumes owned by the canonical uid range as owned
 * by its own range (docs/engine.md, "A host uid range per qube").
 *
 * Every volume stays owned on disk by the canonical range (uid-base..+count, what
 * templates are imported into). A qube of slot s runs as uid-base + s*count; its overlay's
 * layers (lowers, and the directory of its upper and work) are idmapped clones whose user
 * namespace maps canonical ids to the qube's range, and host root to itself (overlayfs
 * creates its work directories as the mounter: host root). What the qube writes lands on
 * disk as canonical ids again, so a volume is the same whichever slot its next user has.
 */
#pragma once
#include <stdbool.h>
#include <sys/types.h>

/* A user namespace (O_CLOEXEC fd) whose maps are "0 0 1" and "from to count": made by a
 * short-lived child that is SIGKILLed at once; *helper_pidfd is its pidfd, for the caller
 * to reap (readable once it is gone). -errno on failure. */
int idmap_userns_open(uid_t from, uid_t to, uid_t count, int *helper_pidfd);

/* In a private mount namespace: an idmapped clone of SRC mounted on DST (an existing
 * empty directory), SRC's files seen through USERNS_FD. -1 with errno on failure. */
int idmap_mount(const char *src, const char *dst, int userns_fd);

/* Does this kernel mount an overlay over idmapped lower and upper layers on the file
 * system of DIR (which must exist; a scratch directory is made in it and removed)? The
 * probe runs in a child (no mount reaches the caller) started by idmap_probe_start, so
 * that the daemon's start does not wait for it; idmap_probe_finish waits for its answer:
 * true, or false with why filled in. */
struct idmap_probe;
struct idmap_probe *idmap_probe_start(const char *dir, uid_t base, uid_t count);
bool idmap_probe_finish(struct idmap_probe *p, char *why, size_t why_size);
