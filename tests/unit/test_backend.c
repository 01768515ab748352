/* What all engines share (src/backend/backend.c): option lookup and the engine that
 * stands in for one that cannot run on this host. */
#include "testutil.h"

#include "backend.h"

static void test_option_lookup(void **state) {
    const struct backend_option opts[] = {{"init", "/sbin/init"}, {"uid-base", "7"}};
    assert_string_equal(backend_option(opts, 2, "init"), "/sbin/init");
    assert_string_equal(backend_option(opts, 2, "uid-base"), "7");
    assert_null(backend_option(opts, 2, "ini"));
    assert_null(backend_option(opts, 0, "init"));
}

static void done_never(void *userdata, int r, const struct qerr *err) {
    fail_msg("an unavailable engine completes nothing");
}

/* Every operation refuses with the engine's name and the reason; nothing runs. */
static void test_unavailable_engine_refuses_with_its_reason(void **state) {
    sd_event *loop = NULL;
    assert_int_equal(sd_event_new(&loop), 0);
    struct backend *b = backend_unavailable_new(loop, "qemu", "no /usr/bin/qemu-system-x86_64");
    assert_string_equal(b->ops->name, "qemu");
    const char *want = "virt_mode=qemu is not available: no /usr/bin/qemu-system-x86_64";
    struct backend_qube q = {.name = "vm", .uuid = "u", .kind = BACKEND_APPVM};
    struct qerr err = {0};
    assert_int_equal(b->ops->start(b, &q, done_never, NULL, &err), -1);
    assert_string_equal(err.exc, EXC_QUBES);
    assert_string_equal(err.msg, want);
    err = (struct qerr){0};
    assert_int_equal(b->ops->pause(b, "vm", &err), -1);
    assert_string_equal(err.msg, want);
    err = (struct qerr){0};
    assert_int_equal(b->ops->remove_volumes(b, &q, &err), -1);
    assert_string_equal(err.msg, want);
    assert_int_equal(b->ops->state(b, "vm"), BACKEND_HALTED);
    assert_int_equal(b->ops->adopt(b, &q), -1);
    struct backend_stats st;
    assert_true(b->ops->stats(b, "vm", &st) < 0);
    assert_null(b->ops->reclaim);
    b->ops->free(b);
    sd_event_unref(loop);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_option_lookup),
        cmocka_unit_test(test_unavailable_engine_refuses_with_its_reason),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
