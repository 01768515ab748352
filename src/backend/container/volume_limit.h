/* A volume's size (admin.vm.volume.Resize) enforced: the writer of a volume that has a
 * size gets its upper on a filesystem of its own, an ext4 in an image file of the room
 * left (size minus what the current revision uses) on a loop device, mounted on
 * VOLDIR/upper-<id>.fs with the upper and work dirs in it (u, w). A write past it fails
 * with ENOSPC in the qube. At commit the upper is copied (cp -a) into the usual
 * VOLDIR/upper-<id> and the filesystem goes away, so the layers stay plain directories.
 *
 * Why an image and not a project quota: quotas need a filesystem made and mounted for
 * them (ext4 -O project and prjquota, or XFS), which the state dir usually is not, and
 * overlayfs writes with its mounter's credentials, whose CAP_SYS_RESOURCE passes over
 * quota limits and reserved blocks alike. An ext4 made with no reserved blocks has no
 * such exception: full is full. */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* The smallest room a writer gets (a volume already at its size can still start). */
#define VOLUME_LIMIT_MIN_ROOM (8ULL << 20)

/* Makes the filesystem of `bytes` for writer `id` of voldir; *upper and *work
 * (malloc'd) are its u (owned by owner, 0755) and w (root, 0700). -errno. */
int volume_limit_begin(const char *voldir, uint64_t id, uint64_t bytes, uid_t owner, char **upper,
                       char **work);
/* Whether upper/work are writer `id`'s on such a filesystem. */
bool volume_limit_paths(const char *voldir, uint64_t id, const char *upper, const char *work);
/* Copies the upper into VOLDIR/upper-<id> (an empty directory), then releases. -errno. */
int volume_limit_settle(const char *voldir, uint64_t id);
/* Unmounts and removes writer id's filesystem and image, if there are any. */
void volume_limit_release(const char *voldir, uint64_t id);
