/* copy_tree (src/backend/container/copytree.c): what `cp -a from/. to` does for a home
 * skeleton, checked against the real filesystem; owners need root. */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "copytree.h"

static char *tmp;

static void write_file(const char *path, const char *text, mode_t mode) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    chmod(path, mode);
}

static char *at(const char *rel) { return tu_path(tmp, rel); }

/* from/: .profile (0644, uid 1000), .ssh/ (0700) with a key (0600), a symlink to a host
 * path (copied as a link, not followed), a fifo (skipped). */
static void make_skeleton(void) {
    char *d;
    mkdir(d = at("from"), 0755), free(d);
    mkdir(d = at("from/.ssh"), 0700), free(d);
    write_file(d = at("from/.profile"), "PATH=/bin\n", 0644), free(d);
    write_file(d = at("from/.ssh/key"), "secret", 0600), free(d);
    assert_int_equal(symlink("/etc/shadow", d = at("from/link")), 0), free(d);
    assert_int_equal(mkfifo(d = at("from/fifo"), 0600), 0), free(d);
    assert_int_equal(lchown(d = at("from/.profile"), 1000, 1000), 0), free(d);
    assert_int_equal(lchown(d = at("from/link"), 1000, 1000), 0), free(d);
    assert_int_equal(chown(d = at("from"), 1000, 1000), 0), free(d);
    mkdir(d = at("to"), 0700), free(d);
}

static void assert_stat(const char *rel, mode_t type, mode_t perm, uid_t uid) {
    char *p = at(rel);
    struct stat st;
    assert_int_equal(lstat(p, &st), 0);
    assert_int_equal(st.st_mode & S_IFMT, type);
    if (type != S_IFLNK)
        assert_int_equal(st.st_mode & 07777, perm);
    assert_int_equal(st.st_uid, uid);
    free(p);
}

static void test_copies_like_cp_a(void **state) {
    make_skeleton();
    char *from = at("from"), *to = at("to");
    assert_int_equal(copy_tree(from, to), 0);
    assert_stat("to", S_IFDIR, 0755, 1000); /* the top takes the source's attributes */
    assert_stat("to/.profile", S_IFREG, 0644, 1000);
    assert_stat("to/.ssh", S_IFDIR, 0700, 0);
    assert_stat("to/.ssh/key", S_IFREG, 0600, 0);
    assert_stat("to/link", S_IFLNK, 0, 1000);
    char buf[64] = "";
    assert_int_equal(tu_read_file(to, ".ssh/key", buf, sizeof(buf)), 6);
    assert_string_equal(buf, "secret");
    char *link = at("to/link");
    ssize_t n = readlink(link, buf, sizeof(buf) - 1);
    assert_true(n > 0);
    buf[n] = '\0';
    assert_string_equal(buf, "/etc/shadow"); /* a link, never the file it names */
    char *fifo = at("to/fifo");
    assert_int_equal(access(fifo, F_OK), -1);
    struct stat a, b;
    char *pa = at("from/.profile"), *pb = at("to/.profile");
    stat(pa, &a), stat(pb, &b);
    assert_int_equal(a.st_mtim.tv_sec, b.st_mtim.tv_sec);
    assert_int_equal(a.st_mtim.tv_nsec, b.st_mtim.tv_nsec);
    free(pa), free(pb), free(fifo), free(link), free(from), free(to);
}

static void test_refuses_to_overwrite(void **state) {
    char *from = at("from"), *to = at("to");
    assert_int_equal(copy_tree(from, to), -EEXIST); /* the first test's copy is there */
    free(from), free(to);
}

static void test_missing_source(void **state) {
    char *from = at("nope"), *to = at("to");
    assert_int_equal(copy_tree(from, to), -ENOENT);
    free(from), free(to);
}

int main(void) {
    if (geteuid() != 0) {
        fprintf(stderr, "test_copytree: needs root for owners, skipped\n");
        return 77;
    }
    tmp = tu_mkdtemp();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_copies_like_cp_a),
        cmocka_unit_test(test_refuses_to_overwrite),
        cmocka_unit_test(test_missing_source),
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    tu_rmdir(tmp);
    return r;
}
