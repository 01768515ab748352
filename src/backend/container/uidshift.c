/* Shifting a root file system into a qube's uid range (volume.h: uidshift_tree).
 *
 * A qube's root maps to host uid `base`; a template tree made by host root must be owned
 * by base+id to be usable inside (host-owned files appear as nobody there and overlay
 * copy-up fails). chown has two side effects that must be undone:
 *  - it clears set-user-ID and set-group-ID on non-directories: the mode is set again;
 *  - it removes security.capability: the xattr is read before and written back after.
 * File capabilities: a v2 xattr has no owner and is honoured in every user namespace
 * (the kernel treats its root as host root, an ancestor of every namespace), so it is
 * written back as it was: ping keeps cap_net_raw inside the qube, relative to the
 * qube's namespace as always. A v3 xattr names the uid that is root of the namespace it
 * applies in (rootid); whatever it named in the source (a foreign range, or 0), in the
 * qube that root is `base`, so rootid becomes base. Host root can write either form.
 * POSIX ACLs with named users/groups are not shifted (root file systems rarely have them).
 */
#include <endian.h>
#include <errno.h>
#include <ftw.h>
#include <linux/capability.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "log.h"
#include "volume.h"

#define NOBODY_ID 65534u
#define CAPS_XATTR "security.capability"

/* nftw has no user pointer; the walk is synchronous, so thread-local state will do. */
static __thread struct {
    uid_t base, count;
    bool ranged; /* uidshift_range: ids in [from, from+count) move, all others stay */
    uid_t from;
    bool warned_foreign;
    int error;
} shift;

static bool in_from_range(uid_t id) { return id >= shift.from && id - shift.from < shift.count; }

static uid_t shift_id(uid_t id, const char *path) {
    if (shift.ranged)
        return in_from_range(id) ? shift.base + (id - shift.from) : id;
    if (id < shift.count)
        return shift.base + id;
    if (id >= shift.base && id - shift.base < shift.count)
        return id; /* shifted before: shifting is idempotent */
    if (!shift.warned_foreign) {
        log_warning("uidshift: %s is owned by id %u, outside 0..%u; mapping such ids to "
                    "nobody (reported once)",
                    path, (unsigned)id, (unsigned)shift.count - 1);
        shift.warned_foreign = true;
    }
    return shift.base + (shift.count > NOBODY_ID ? NOBODY_ID : shift.count - 1);
}

static int caps_restore(const char *path, unsigned char *caps, ssize_t len) {
    if (len == (ssize_t)XATTR_CAPS_SZ_3) {
        struct vfs_ns_cap_data d;
        memcpy(&d, caps, sizeof(d));
        uid_t rootid = le32toh(d.rootid);
        if ((le32toh(d.magic_etc) & VFS_CAP_REVISION_MASK) == VFS_CAP_REVISION_3 &&
            (!shift.ranged || in_from_range(rootid))) {
            d.rootid = htole32(shift.ranged ? shift.base + (rootid - shift.from) : shift.base);
            memcpy(caps, &d, sizeof(d));
        }
    }
    return lsetxattr(path, CAPS_XATTR, caps, (size_t)len, 0) < 0 ? -errno : 0;
}

static int shift_fail(const char *what, const char *path) {
    shift.error = errno ? errno : EIO;
    log_error("uidshift: %s %s: %s", what, path, strerror(shift.error));
    return -1; /* stops the walk */
}

static int shift_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    if (flag == FTW_NS || flag == FTW_DNR)
        return shift_fail("cannot read", path);
    uid_t uid = shift_id(st->st_uid, path);
    gid_t gid = shift_id(st->st_gid, path);
    if (uid == st->st_uid && gid == st->st_gid)
        return 0;
    unsigned char caps[XATTR_CAPS_SZ_3 + 8];
    ssize_t caps_len = -1;
    if (S_ISREG(st->st_mode)) {
        caps_len = lgetxattr(path, CAPS_XATTR, caps, sizeof(caps));
        if (caps_len < 0 && errno != ENODATA && errno != ENOTSUP)
            return shift_fail("cannot read capabilities of", path);
    }
    if (lchown(path, uid, gid) < 0)
        return shift_fail("cannot chown", path);
    if (!S_ISLNK(st->st_mode) && (st->st_mode & (S_ISUID | S_ISGID)) &&
        chmod(path, st->st_mode & 07777) < 0)
        return shift_fail("cannot restore the mode of", path);
    if (caps_len > 0 && caps_restore(path, caps, caps_len) < 0)
        return shift_fail("cannot restore capabilities of", path);
    return 0;
}

static int shift_walk(const char *dir) {
    shift.warned_foreign = false;
    shift.error = 0;
    /* FTW_MOUNT: never chown whatever is mounted below (a builder's /proc, say) */
    if (nftw(dir, shift_entry, 64, FTW_PHYS | FTW_MOUNT) != 0)
        return -(shift.error ? shift.error : errno ? errno : EIO);
    return 0;
}

int uidshift_tree(const char *dir, uid_t base, uid_t count) {
    if (!dir || count == 0)
        return -EINVAL;
    if (base == 0)
        return 0;
    /* overlapping ranges would make "already shifted" ambiguous */
    if (base < count)
        return -EINVAL;
    shift.base = base;
    shift.count = count;
    shift.ranged = false;
    return shift_walk(dir);
}

int uidshift_range(const char *dir, uid_t from, uid_t to, uid_t count) {
    if (!dir || count == 0 || (from < to ? to - from : from - to) < count)
        return -EINVAL; /* overlapping ranges: "already moved" would be ambiguous */
    shift.base = to;
    shift.count = count;
    shift.ranged = true;
    shift.from = from;
    return shift_walk(dir);
}
