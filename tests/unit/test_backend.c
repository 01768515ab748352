/* What all engines share (src/backend/backend.c): option lookup and the engine that
 * stands in for one that cannot run on this host. */
#include "testutil.h"

#include <errno.h>

#include "backend.h"
#include "backend_proc.h"

static void test_option_lookup(void **state) {
    const struct backend_option opts[] = {{"init", "/sbin/init"}, {"uid-base", "7"}};
    assert_string_equal(backend_option(opts, 2, "init"), "/sbin/init");
    assert_string_equal(backend_option(opts, 2, "uid-base"), "7");
    assert_null(backend_option(opts, 2, "ini"));
    assert_null(backend_option(opts, 0, "init"));
}

/* A kept description owns its strings: the original may go (the daemon's points into a
 * model that changes) and the copy still reads the same. */
static void test_description_copy_outlives_the_original(void **state) {
    char name[] = "work", opts_key[] = "init", opts_val[] = "/sbin/init", kernel[] = "k1";
    char svc[] = "cups";
    struct backend_option opts[] = {{opts_key, opts_val}};
    struct backend_option services[] = {{svc, "1"}, {"crond", "0"}};
    struct backend_qube q = {.name = name,
                             .uuid = "u-1",
                             .kind = BACKEND_DISPVM,
                             .private_source = "u-2",
                             .memory_mib = 400,
                             .kernel = kernel,
                             .kernelopts = "a=b",
                             .options = opts,
                             .n_options = 1,
                             .services = services,
                             .n_services = 2};
    struct backend_qube *c = backend_qube_dup(&q);
    memset(name, 'x', 4);
    memset(svc, 'x', 4);
    memset(opts_val, 'x', 5);
    memset(kernel, 'x', 2);
    assert_string_equal("work", c->name);
    assert_string_equal("u-2", c->private_source);
    assert_null(c->root_source);
    assert_int_equal(400, c->memory_mib);
    assert_string_equal("k1", c->kernel);
    assert_string_equal("a=b", c->kernelopts);
    assert_string_equal("/sbin/init", backend_option(c->options, c->n_options, "init"));
    assert_int_equal(2, c->n_services);
    assert_string_equal("1", backend_option(c->services, c->n_services, "cups"));
    assert_string_equal("0", backend_option(c->services, c->n_services, "crond"));
    backend_qube_free(c);
    backend_qube_free(NULL);
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

/* A recorded process is ours only while pid and start time both match. */
static void test_recorded_process(void **state) {
    unsigned long long start = backend_proc_starttime(getpid());
    assert_true(start > 0);
    int pidfd = -1;
    assert_true(backend_proc_alive(getpid(), start, &pidfd));
    assert_true(pidfd >= 0);
    close(pidfd);
    pidfd = -1;
    assert_false(backend_proc_alive(getpid(), start + 1, &pidfd)); /* a reused pid */
    assert_int_equal(pidfd, -1);
    assert_false(backend_proc_alive(0, start, &pidfd));
}

static void count_done(void *userdata, int r, const char *why) {
    assert_int_equal(r, 0);
    (*(int *)userdata)++;
}

static void test_waiters_told_once(void **state) {
    struct backend_waiter *list = NULL;
    int told = 0;
    backend_waiter_add(&list, count_done, &told);
    backend_waiter_add(&list, count_done, &told);
    backend_waiters_tell(&list);
    assert_int_equal(told, 2);
    assert_null(list);
    backend_waiters_tell(&list); /* nobody left */
    assert_int_equal(told, 2);
    backend_waiter_add(&list, count_done, &told);
    backend_waiters_free(&list); /* freed untold */
    assert_int_equal(told, 2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_option_lookup),
        cmocka_unit_test(test_description_copy_outlives_the_original),
        cmocka_unit_test(test_unavailable_engine_refuses_with_its_reason),
        cmocka_unit_test(test_fail_fills_why_and_returns_the_errno),
        cmocka_unit_test(test_recorded_process),
        cmocka_unit_test(test_waiters_told_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
