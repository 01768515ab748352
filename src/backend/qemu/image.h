/* Block images of qubes' volumes for QEMU.
 *
 *   STATE/qemu/images/<template-uuid>/root-<revision>.erofs
 *       the template's root (a stack of overlay layers, container/volume.h) exported
 *       read-only, built once per revision, shared by every qube based on it;
 *   STATE/qemu/volumes/<uuid>/private.img
 *       an AppVM's private volume: ext4, sparse, its own, persistent.
 *
 * The layers' files belong to the qubes' host id range (uid_base..); the image holds the
 * ids as the guest sees them (0..), so mkfs.erofs runs in a user namespace mapping that
 * range back to 0 (erofs-utils 1.5 has no uid offset). The range starts at the owner of
 * the bottom layer's top directory (the range's root), whatever the container engine's
 * uid-base is.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "backend.h"

#define QEMU_PRIVATE_SIZE (2ULL << 30) /* Qubes' default private volume size */

/* The path of a template revision's root image (may not exist yet). */
void image_root_path(const char *state_dir, const char *uuid, uint64_t revision, char *buf,
                     size_t size);
/* Where the builder runs: called in its child with pid 0 before anything else (a cgroup
 * of its own: mkfs runs as the qubes' range root, and should be counted and confined as
 * qubes are, not as the daemon). */
struct image_confine {
    int (*attach)(void *ctx, pid_t pid);
    void *ctx;
};
/* Builds it from the layers (top first) unless it exists; then removes the template's
 * images of other revisions (a running VM keeps its open file). */
int image_root_ensure(const char *state_dir, const char *uuid, uint64_t revision,
                      char *const *layers, size_t n_layers, const struct image_confine *confine,
                      struct backend_why *why);
void image_private_path(const char *state_dir, const char *uuid, char *buf, size_t size);
/* Creates an empty ext4 private image unless it exists. */
int image_private_ensure(const char *state_dir, const char *uuid, struct backend_why *why);
