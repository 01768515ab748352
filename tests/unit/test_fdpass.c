/* Descriptor passing (src/shared/fdpass.c) over a real socketpair. */
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "fdpass.h"

static int count_open_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n - 1; /* the directory's own descriptor */
}

static void make_pair(int sv[2]) {
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
}

/* n descriptors of one pipe's read end, dup'ed (closed by close_all). */
static void make_fds(int *fds, size_t n, int pipefd[2]) {
    assert_int_equal(pipe2(pipefd, O_CLOEXEC), 0);
    for (size_t i = 0; i < n; i++)
        assert_true((fds[i] = dup(pipefd[0])) >= 0);
}

static void same_file(int a, int b) {
    struct stat sa, sb;
    assert_int_equal(fstat(a, &sa), 0);
    assert_int_equal(fstat(b, &sb), 0);
    assert_int_equal(sa.st_ino, sb.st_ino);
    assert_int_equal(sa.st_dev, sb.st_dev);
}

static void test_fds_arrive_with_bytes(void **state) {
    int sv[2], p[2], sent[3], got[3] = {-1, -1, -1};
    make_pair(sv);
    make_fds(sent, 3, p);
    assert_int_equal(fdpass_send(sv[0], "hello", 5, sent, 3, 0), 5);
    char buf[16];
    size_t n = 99;
    assert_int_equal(fdpass_recv(sv[1], buf, sizeof(buf), got, 3, &n, MSG_DONTWAIT), 5);
    assert_memory_equal(buf, "hello", 5);
    assert_int_equal(n, 3);
    for (int i = 0; i < 3; i++) {
        same_file(got[i], p[0]);
        assert_true(fcntl(got[i], F_GETFD) & FD_CLOEXEC); /* never leaks into a child */
    }
    fdpass_close(got, 3);
    assert_int_equal(got[0], -1);
    fdpass_close(sent, 3);
    close(p[0]), close(p[1]), close(sv[0]), close(sv[1]);
}

static void test_bytes_alone_and_eof(void **state) {
    int sv[2], got[1] = {-1};
    make_pair(sv);
    struct iovec iov[2] = {{"ab", 2}, {"cd", 2}};
    assert_int_equal(fdpass_sendv(sv[0], iov, 2, NULL, 0, 0), 4);
    char buf[8];
    size_t n = 99;
    assert_int_equal(fdpass_recv(sv[1], buf, sizeof(buf), got, 1, &n, 0), 4);
    assert_memory_equal(buf, "abcd", 4);
    assert_int_equal(n, 0);
    assert_int_equal(fdpass_recv(sv[1], buf, sizeof(buf), got, 1, &n, MSG_DONTWAIT), -EAGAIN);
    close(sv[0]);
    assert_int_equal(fdpass_recv(sv[1], buf, sizeof(buf), got, 1, &n, 0), 0);
    close(sv[1]);
}

/* More than the caller takes: the extra ones are closed here, not left open. */
static void test_extra_fds_closed(void **state) {
    int sv[2], p[2], sent[5], got[3] = {-1, -1, -1};
    make_pair(sv);
    make_fds(sent, 5, p);
    assert_int_equal(fdpass_send(sv[0], "x", 1, sent, 5, 0), 1);
    fdpass_close(sent, 5);
    int before = count_open_fds();
    char buf[4];
    size_t n;
    assert_int_equal(fdpass_recv(sv[1], buf, sizeof(buf), got, 3, &n, 0), 1);
    assert_int_equal(n, 3);
    assert_int_equal(count_open_fds(), before + 3);
    fdpass_close(got, 3);
    assert_int_equal(count_open_fds(), before);
    close(p[0]), close(p[1]), close(sv[0]), close(sv[1]);
}

static void test_none_wanted_all_closed(void **state) {
    int sv[2], p[2], sent[2];
    make_pair(sv);
    make_fds(sent, 2, p);
    assert_int_equal(fdpass_send(sv[0], "y", 1, sent, 2, 0), 1);
    fdpass_close(sent, 2);
    int before = count_open_fds();
    char buf[4];
    size_t n = 99;
    assert_int_equal(fdpass_recv(sv[1], buf, sizeof(buf), NULL, 0, &n, 0), 1);
    assert_int_equal(n, 0);
    assert_int_equal(count_open_fds(), before);
    close(p[0]), close(p[1]), close(sv[0]), close(sv[1]);
}

/* More than fits the control data: the kernel truncates it. That is an error, and what
 * did arrive is closed. The sender goes around fdpass_send, which refuses to send that
 * many. */
static void test_truncated_control_is_error(void **state) {
    enum { MANY = FDPASS_MAX_FDS + 8 };
    int sv[2], p[2], sent[MANY], got[FDPASS_MAX_FDS];
    make_pair(sv);
    make_fds(sent, MANY, p);
    assert_int_equal(fdpass_send(sv[0], "z", 1, sent, MANY, 0), -EINVAL);
    union {
        char buf[CMSG_SPACE(sizeof(int) * MANY)];
        struct cmsghdr align;
    } control;
    struct iovec iov = {"z", 1};
    struct msghdr msg = {.msg_iov = &iov,
                         .msg_iovlen = 1,
                         .msg_control = control.buf,
                         .msg_controllen = sizeof(control.buf)};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int) * MANY);
    memcpy(CMSG_DATA(cm), sent, sizeof(sent));
    assert_int_equal(sendmsg(sv[0], &msg, 0), 1);
    fdpass_close(sent, MANY);
    int before = count_open_fds();
    char buf[4];
    size_t n = 99;
    assert_int_equal(fdpass_recv(sv[1], buf, sizeof(buf), got, FDPASS_MAX_FDS, &n, 0), -EBADMSG);
    assert_int_equal(n, 0);
    assert_int_equal(count_open_fds(), before);
    close(p[0]), close(p[1]), close(sv[0]), close(sv[1]);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fds_arrive_with_bytes),
        cmocka_unit_test(test_bytes_alone_and_eof),
        cmocka_unit_test(test_extra_fds_closed),
        cmocka_unit_test(test_none_wanted_all_closed),
        cmocka_unit_test(test_truncated_control_is_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
