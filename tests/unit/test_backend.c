/* What all engines share (src/backend/backend.c): option lookup and the engine that
 * stands in for one that cannot run on this host. */
#include "testutil.h"

#include <errno.h>

#include "backend.h"

static void test_option_lookup(void **state) {
    const struct backend_option opts[] = {{"init", "/sbin/init"}, {"uid-base", "7"}};
    assert_string_equal(backend_option(opts, 2, "init"), "/sbin/init");
    assert_string_equal(backend_option(opts, 2, "uid-base"), "7");
    assert_null(backend_option(opts, 2, "ini"));
    assert_null(backend_option(opts, 0, "init"));
}

static void done_never(void *userdata, int r, const char *why) {
    fail_msg("an unavailable engine completes nothing");
}

/* Every operation refuses with -ENODEV, the engine's name and the reason; nothing runs. */
static void test_unavailable_engine_refuses_with_its_reason(void **state) {
    sd_event *loop = NULL;
    assert_int_equal(sd_event_new(&loop), 0);
    struct backend *b = backend_unavailable_new(loop, "qemu", "no /usr/bin/qemu-system-x86_64");
    assert_string_equal(b->ops->name, "qemu");
    const char *want = "virt_mode=qemu is not available: no /usr/bin/qemu-system-x86_64";
    struct backend_qube q = {.name = "vm", .uuid = "u", .kind = BACKEND_APPVM};
    struct backend_why why = {{0}};
    assert_int_equal(b->ops->start(b, &q, done_never, NULL, &why), -ENODEV);
    assert_string_equal(why.msg, want);
    why = (struct backend_why){{0}};
    assert_int_equal(b->ops->pause(b, "vm", &why), -ENODEV);
    assert_string_equal(why.msg, want);
    why = (struct backend_why){{0}};
    assert_int_equal(b->ops->remove_volumes(b, &q, &why), -ENODEV);
    assert_string_equal(why.msg, want);
    assert_int_equal(b->ops->state(b, "vm"), BACKEND_HALTED);
    assert_int_equal(b->ops->adopt(b, &q), -1);
    struct backend_stats st;
    assert_true(b->ops->stats(b, "vm", &st) < 0);
    assert_null(b->ops->reclaim);
    b->ops->free(b);
    sd_event_unref(loop);
}

static void test_fail_fills_why_and_returns_the_errno(void **state) {
    struct backend_why why = {{0}};
    assert_int_equal(backend_fail(&why, -EBUSY, "Domain is not powered off: '%s'", "w"), -EBUSY);
    assert_string_equal(why.msg, "Domain is not powered off: 'w'");
    assert_int_equal(backend_fail(NULL, -EIO, "nobody asked"), -EIO); /* why is optional */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_option_lookup),
        cmocka_unit_test(test_unavailable_engine_refuses_with_its_reason),
        cmocka_unit_test(test_fail_fills_why_and_returns_the_errno),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
