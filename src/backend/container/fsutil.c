#include "fsutil.h"

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw) {
    int r = (type == FTW_DP) ? rmdir(path) : unlink(path);
    return r < 0 && errno != ENOENT ? -1 : 0;
}

int remove_recursive(const char *path) {
    struct stat st;
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : -1;
    return nftw(path, remove_entry, 32, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

int make_owned_dir(const char *path, uid_t owner, mode_t mode) {
    if (mkdir(path, mode) < 0 && errno != EEXIST)
        return -1;
    if (chown(path, owner, owner) < 0 || chmod(path, mode) < 0)
        return -1;
    return 0;
}
