/* The idmapped-overlay probe (src/backend/container/idmap.c) on this kernel: yes on the
 * temp dir's file system (ext4 or tmpfs, 5.19+/6.3+), no on ramfs, which has no idmapped
 * mounts: the case where the engine falls back to one shared uid range. Needs root. */
#include "testutil.h"

#include <sys/mount.h>
#include <sys/stat.h>

#include "idmap.h"

#define BASE 0x60000000u
#define COUNT 65536u

static char *tmp;

static void test_probe_succeeds_here(void **unused) {
    char why[256] = "";
    struct idmap_probe *p = idmap_probe_start(tmp, BASE, COUNT);
    bool ok = idmap_probe_finish(p, why, sizeof(why));
    if (!ok)
        fprintf(stderr, "probe: %s\n", why);
    assert_true(ok);
}

static void test_probe_fails_without_idmapped_mounts(void **unused) {
    char *dir = tu_path(tmp, "ramfs");
    assert_int_equal(mkdir(dir, 0700), 0);
    if (mount("ramfs", dir, "ramfs", 0, NULL) < 0) {
        free(dir);
        skip();
    }
    char why[256] = "";
    struct idmap_probe *p = idmap_probe_start(dir, BASE, COUNT);
    assert_false(idmap_probe_finish(p, why, sizeof(why)));
    assert_non_null(strstr(why, "no idmapped mount"));
    umount2(dir, MNT_DETACH);
    rmdir(dir);
    free(dir);
}

int main(void) {
    if (geteuid() != 0) {
        fprintf(stderr, "test_idmap: needs root, skipped\n");
        return 77;
    }
    tmp = tu_mkdtemp();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_probe_succeeds_here),
        cmocka_unit_test(test_probe_fails_without_idmapped_mounts),
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    tu_rmdir(tmp);
    return r;
}
