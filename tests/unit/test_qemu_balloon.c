/* The QEMU engine's balloon decisions (src/backend/qemu/qemu_balloon.c): the feature's
 * values, the size a shrink asks for, when a shrink is over, QMP replies read; and the
 * QMP client's matching of answers to commands (qmp.c), which the give-back relies on. */
#include "testutil.h"

#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "qemu_balloon.h"
#include "qmp.h"

#define MIB (UINT64_C(1) << 20)

static void test_feature_shrinks_unless_switched_off(void **state) {
    assert_int_equal(qemu_balloon_mode_of(NULL), QEMU_BALLOON_SHRINK);
    assert_int_equal(qemu_balloon_mode_of(""), QEMU_BALLOON_SHRINK);
    assert_int_equal(qemu_balloon_mode_of("1"), QEMU_BALLOON_SHRINK);
    assert_int_equal(qemu_balloon_mode_of("on"), QEMU_BALLOON_SHRINK);
    assert_int_equal(qemu_balloon_mode_of("report"), QEMU_BALLOON_REPORT);
    assert_int_equal(qemu_balloon_mode_of("0"), QEMU_BALLOON_OFF);
    assert_int_equal(qemu_balloon_mode_of("off"), QEMU_BALLOON_OFF);
    assert_int_equal(qemu_balloon_mode_of("false"), QEMU_BALLOON_OFF);
    assert_int_equal(qemu_balloon_mode_of("no"), QEMU_BALLOON_OFF);
}

/* The guest keeps what it uses and a margin; the balloon takes the rest of its free
 * memory (memory the guest never sees, the kernel's own, is not free: never taken). */
static void test_target_is_what_the_guest_uses_plus_a_margin(void **state) {
    /* 400 MiB VM, the guest sees 345 and has 300 free: 276 of them go */
    assert_int_equal(qemu_balloon_target(400 * MIB, 345 * MIB, 300 * MIB), 124 * MIB);
    /* little free: nothing to take, no shrink */
    assert_int_equal(qemu_balloon_target(400 * MIB, 345 * MIB, 20 * MIB), 0);
    /* a guest that uses almost nothing still keeps the floor */
    assert_int_equal(qemu_balloon_target(128 * MIB, 120 * MIB, 118 * MIB), 64 * MIB);
}

static void test_target_without_statistics_is_no_shrink(void **state) {
    assert_int_equal(qemu_balloon_target(400 * MIB, -1, -1), 0);
    assert_int_equal(qemu_balloon_target(400 * MIB, 345 * MIB, -1), 0);
    assert_int_equal(qemu_balloon_target(400 * MIB, 0, 10 * MIB), 0);
    /* nonsense (more free than the VM has) is not believed */
    assert_int_equal(qemu_balloon_target(400 * MIB, 345 * MIB, 500 * MIB), 0);
}

static void test_settled_at_target_or_when_stalled(void **state) {
    assert_true(qemu_balloon_settled(124 * MIB, 124 * MIB, 0));
    assert_true(qemu_balloon_settled(127 * MIB, 124 * MIB, 0)); /* within the slack */
    assert_false(qemu_balloon_settled(200 * MIB, 124 * MIB, 100));
    assert_false(qemu_balloon_settled(200 * MIB, 124 * MIB, 1000));
    assert_true(qemu_balloon_settled(200 * MIB, 124 * MIB, 2000)); /* gives no more */
}

static void test_qmp_replies_are_read(void **state) {
    int64_t total = 0, free_bytes = 0;
    assert_true(qemu_balloon_parse_stats(
        "{\"stats\": {\"stat-total-memory\": 361758720, \"stat-free-memory\": 314572800, "
        "\"stat-available-memory\": 320000000}, \"last-update\": 12}",
        &total, &free_bytes));
    assert_int_equal(total, 361758720);
    assert_int_equal(free_bytes, 314572800);
    /* before the guest's first report QEMU answers -1 for each */
    assert_false(qemu_balloon_parse_stats(
        "{\"stats\": {\"stat-total-memory\": -1, \"stat-free-memory\": -1}, \"last-update\": 0}",
        &total, &free_bytes));
    assert_false(qemu_balloon_parse_stats("{}", &total, &free_bytes));
    assert_false(qemu_balloon_parse_stats("not json", &total, &free_bytes));
    assert_int_equal(qemu_balloon_parse_u64("{\"actual\": 419430400}", "actual"), 400 * MIB);
    assert_int_equal(qemu_balloon_parse_u64("{\"base-memory\": 419430400, \"plugged-memory\": 0}",
                                            "base-memory"),
                     400 * MIB);
    assert_int_equal(qemu_balloon_parse_u64("{}", "actual"), 0);
    assert_int_equal(qemu_balloon_parse_u64("[1]", "actual"), 0);
}

/* All of QEMU's RSS, and its own part: not the file pages (the mapped kernel image and
 * QEMU's code, page cache every VM shares) */
static void test_rss_and_its_own_part(void **state) {
    struct qemu_rss rss = qemu_rss_parse("Name:\tqemu-system-x86\nVmPeak:\t 1000 kB\n"
                                         "VmRSS:\t  267884 kB\nRssAnon:\t  77732 kB\n"
                                         "RssFile:\t   86648 kB\nRssShmem:\t  102888 kB\n"
                                         "VmData:\t 5000 kB\n");
    assert_int_equal(rss.total, 267884ULL << 10);
    assert_int_equal(rss.own, (77732ULL + 102888ULL) << 10);
    rss = qemu_rss_parse("");
    assert_int_equal(rss.total, 0);
    assert_int_equal(rss.own, 0);
    /* a process that is gone */
    rss = qemu_rss_of(-1);
    assert_int_equal(rss.total, 0);
}

/* What the client sent on the fake QEMU's end. */
static void read_sent(int peer, char *buf, size_t size) {
    ssize_t n = recv(peer, buf, size - 1, MSG_DONTWAIT);
    buf[n > 0 ? n : 0] = '\0';
}

static void say(int peer, const char *text) {
    assert_int_equal(write(peer, text, strlen(text)), (ssize_t)strlen(text));
}

/* A command QEMU answers late (a timeout under load), or one sent without waiting: its
 * answer is not taken for the next command's. */
static void test_qmp_answers_are_matched_by_id(void **state) {
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    struct qmp q = {.fd = sv[0]};
    struct backend_why why = {{0}};
    char out[256], sent[1024];
    assert_true(qmp_execute(&q, "cont", NULL, 10, NULL, 0, &why) < 0); /* no answer */
    assert_int_equal(qmp_send(&q, "balloon", "{\"value\": 1}", &why), 0);
    read_sent(sv[1], sent, sizeof(sent));
    assert_non_null(strstr(sent, "\"execute\": \"cont\", \"id\": 1}"));
    assert_non_null(
        strstr(sent, "\"execute\": \"balloon\", \"arguments\": {\"value\": 1}, \"id\": 2}"));
    say(sv[1], "{\"return\": {\"late\": true}, \"id\": 1}\n"
               "{\"event\": \"STOP\"}\n"
               "{\"error\": {\"desc\": \"no balloon\"}, \"id\": 2}\n"
               "{\"return\": {\"fresh\": true}, \"id\": 3}\n");
    assert_int_equal(qmp_execute(&q, "query-status", NULL, 1000, out, sizeof(out), &why), 0);
    assert_string_equal(out, "{\"fresh\":true}");
    close(sv[0]);
    close(sv[1]);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_feature_shrinks_unless_switched_off),
        cmocka_unit_test(test_target_is_what_the_guest_uses_plus_a_margin),
        cmocka_unit_test(test_target_without_statistics_is_no_shrink),
        cmocka_unit_test(test_settled_at_target_or_when_stalled),
        cmocka_unit_test(test_qmp_replies_are_read),
        cmocka_unit_test(test_rss_and_its_own_part),
        cmocka_unit_test(test_qmp_answers_are_matched_by_id),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
