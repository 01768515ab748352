/* uid range slots (src/backend/container/uidslot.c): the lowest free slot, kept per
 * uuid, persisted as symlinks, never handed out twice, released and reused. */
#include "testutil.h"

#include <errno.h>
#include <sys/stat.h>

#include "uidslot.h"

static char *state;

static void link_slot(const char *slot, const char *uuid) {
    char *dir = tu_path(state, "container/uids");
    char *p = tu_path(dir, slot);
    assert_int_equal(symlink(uuid, p), 0);
    free(p), free(dir);
}

static void test_lowest_free_kept_and_persisted(void **unused) {
    struct uid_slots *s = uid_slots_open(state, 4);
    assert_non_null(s);
    assert_int_equal(uid_slots_get(s, "aaa"), 1);
    assert_int_equal(uid_slots_get(s, "bbb"), 2);
    assert_int_equal(uid_slots_get(s, "aaa"), 1); /* kept */
    uid_slots_free(s);
    s = uid_slots_open(state, 4); /* a restarted daemon reads them back */
    assert_int_equal(uid_slots_find(s, "bbb"), 2);
    assert_int_equal(uid_slots_get(s, "ccc"), 3);
    assert_int_equal(uid_slots_get(s, "ddd"), -ENOSPC); /* slot 0 is never a qube's */
    assert_int_equal(uid_slots_in_use(s), 3);
    assert_int_equal(uid_slots_release(s, "aaa"), 0);
    assert_int_equal(uid_slots_find(s, "aaa"), -ENOENT);
    assert_int_equal(uid_slots_get(s, "ddd"), 1); /* a's, free again */
    uid_slots_free(s);
    s = uid_slots_open(state, 4);
    assert_int_equal(uid_slots_find(s, "ddd"), 1);
    assert_int_equal(uid_slots_find(s, "aaa"), -ENOENT);
    uid_slots_free(s);
}

/* A link made on disk behind the table's back (another daemon instance, or a table read
 * before it): the slot is not handed out again. */
static void test_taken_on_disk_is_skipped(void **unused) {
    struct uid_slots *s = uid_slots_open(state, 8);
    assert_int_equal(uid_slots_get(s, "eee"), 4); /* 1-3: ddd, bbb, ccc */
    link_slot("5", "zzz");
    assert_int_equal(uid_slots_get(s, "fff"), 6);
    assert_int_equal(uid_slots_find(s, "zzz"), 5);
    uid_slots_free(s);
}

static bool keep_ddd(void *ctx, const char *uuid) { return strcmp(uuid, "ddd") == 0; }

static void test_sweep_releases_what_is_not_kept(void **unused) {
    struct uid_slots *s = uid_slots_open(state, 8);
    uid_slots_sweep(s, keep_ddd, NULL);
    assert_int_equal(uid_slots_in_use(s), 1);
    uid_slots_free(s);
    s = uid_slots_open(state, 8);
    assert_int_equal(uid_slots_in_use(s), 1);
    assert_int_equal(uid_slots_find(s, "ddd"), 1);
    assert_int_equal(uid_slots_get(s, "bad/uuid"), -EINVAL);
    uid_slots_free(s);
}

int main(void) {
    state = tu_mkdtemp();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lowest_free_kept_and_persisted),
        cmocka_unit_test(test_taken_on_disk_is_skipped),
        cmocka_unit_test(test_sweep_releases_what_is_not_kept),
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    tu_rmdir(state);
    return r;
}
