/* Filling a template's root file system for qvm-template: the part that runs as host
 * root on a plain directory and knows nothing about the daemon. Files are created with
 * host ids (root 0, user 1000); the daemon shifts them into the template's uid range. */
#pragma once
#include <stdbool.h>

#include "cli.h"

struct rootfs_debian {
    const char *suite;    /* e.g. "bookworm" */
    const char *packages; /* comma-separated, may be NULL */
    const char *mirror;   /* may be NULL: Debian's default */
};

/* Each returns 0, or -1 with a message in err. `dir` exists and should be empty. */
int rootfs_build_busybox(const char *dir, struct cli_err *err);
int rootfs_build_debian(const char *dir, const struct rootfs_debian *opts, bool quiet,
                        struct cli_err *err);
int rootfs_import_tar(const char *dir, const char *tarball, struct cli_err *err);
