/* The agent protocol body codec, the qubes.VMExec argument codec, the agent's own
 * passwd/group parsing and qrexec-client-vm's pure helpers (src/shared/agent_proto.c,
 * src/agent/vmexec.c, passwd.c, client_vm_pure.c). */
#include "testutil.h"

#include <errno.h>

#include "agent_proto.h"
#include "client_vm.h"
#include "passwd.h"
#include "qrexec_proto.h"
#include "strbuf.h"
#include "vmexec.h"

static void test_body_roundtrip(void **state) {
    struct agent_request_body in = {"qubes.VMShell", "", "work", "@dispvm:dvm", "user", "echo hi"};
    char buf[256];
    long len = agent_body_encode(&in, buf, sizeof(buf));
    assert_bytes_equal(buf, (size_t)len,
                       BYTES("qubes.VMShell\0\0work\0@dispvm:dvm\0user\0echo hi\0"));
    struct agent_request_body out;
    assert_int_equal(agent_body_decode(buf, (size_t)len, &out), 0);
    assert_string_equal(out.service, "qubes.VMShell");
    assert_string_equal(out.argument, "");
    assert_string_equal(out.source, "work");
    assert_string_equal(out.target, "@dispvm:dvm");
    assert_string_equal(out.user, "user");
    assert_string_equal(out.command, "echo hi");
}

static void test_body_null_fields(void **state) {
    struct agent_request_body in = {.service = "s"};
    char buf[16];
    long len = agent_body_encode(&in, buf, sizeof(buf));
    assert_bytes_equal(buf, (size_t)len, BYTES("s\0\0\0\0\0\0"));
}

static void test_body_too_big(void **state) {
    struct agent_request_body in = {.service = "qubes.VMShell", .command = "0123456789"};
    char buf[20];
    assert_int_equal(agent_body_encode(&in, buf, sizeof(buf)), -1);
    char *huge = malloc(AGENT_MAX_BODY + 1);
    memset(huge, 'x', AGENT_MAX_BODY);
    huge[AGENT_MAX_BODY] = '\0';
    char *big = malloc(AGENT_MAX_BODY * 2);
    in.command = huge;
    assert_int_equal(agent_body_encode(&in, big, AGENT_MAX_BODY * 2), -1);
    free(huge);
    free(big);
}

static void test_body_malformed(void **state) {
    struct agent_request_body out;
    char five[] = "a\0b\0c\0d\0e"; /* only five strings */
    assert_int_equal(agent_body_decode(five, sizeof(five), &out), -1);
    char seven[] = "a\0b\0c\0d\0e\0f\0g"; /* trailing garbage */
    assert_int_equal(agent_body_decode(seven, sizeof(seven), &out), -1);
    char unterminated[] = {'a', 0, 'b', 0, 'c', 0, 'd', 0, 'e', 0, 'f'};
    assert_int_equal(agent_body_decode(unterminated, sizeof(unterminated), &out), -1);
    assert_int_equal(agent_body_decode(NULL, 0, &out), -1);
}

/* Decodes and checks the argv against a NULL-terminated expectation. */
static void decodes_to(const char *enc, const char *const *want) {
    char **argv = NULL;
    assert_int_equal(vmexec_decode(enc, &argv), 0);
    size_t i = 0;
    for (; want[i]; i++) {
        assert_non_null(argv[i]);
        assert_string_equal(argv[i], want[i]);
    }
    assert_null(argv[i]);
    free(argv);
}

static void test_vmexec_decode(void **state) {
    decodes_to("ls", (const char *[]){"ls", NULL});
    decodes_to("ls+-2Dl+--a", (const char *[]){"ls", "-l", "-a", NULL});
    decodes_to("echo+hello-20world", (const char *[]){"echo", "hello world", NULL});
    decodes_to("printf+-25s-0a", (const char *[]){"printf", "%s\n", NULL});
    decodes_to("x+caf-C3-A9", (const char *[]){"x", "caf\xc3\xa9", NULL});
    decodes_to("x++y", (const char *[]){"x", "", "y", NULL});
    decodes_to("a.b_c+----", (const char *[]){"a.b_c", "--", NULL});
}

static void test_vmexec_decode_refused(void **state) {
    static const char *const bad[] = {"",       "+x",   "ls+-",   "ls+-2", "ls+-zz",
                                      "ls+a b", "ls/x", "ls+-00", "ls+a~"};
    for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
        char **argv = NULL;
        assert_int_equal(vmexec_decode(bad[i], &argv), -EINVAL);
        assert_null(argv);
    }
    char **argv = NULL;
    assert_int_equal(vmexec_decode(NULL, &argv), -EINVAL);
}

static void test_vmexec_encode_roundtrip(void **state) {
    char *argv[] = {"/bin/echo", "a b", "-n", "--x", "caf\xc3\xa9", "+", "", NULL};
    struct strbuf sb = STRBUF_INIT;
    vmexec_encode(argv, &sb);
    assert_string_equal(strbuf_str(&sb), "-2Fbin-2Fecho+a-20b+--n+----x+caf-C3-A9+-2B+");
    char **back = NULL;
    assert_int_equal(vmexec_decode(strbuf_str(&sb), &back), 0);
    for (size_t i = 0; argv[i]; i++)
        assert_string_equal(back[i], argv[i]);
    assert_null(back[7]);
    free(back);
    strbuf_free(&sb);
}

static char *write_file(const char *dir, const char *name, const char *text) {
    char *path = tu_path(dir, name);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    return path;
}

static void test_passwd_lookup(void **state) {
    char *dir = tu_mkdtemp();
    char *path = write_file(dir, "passwd",
                            "root:x:0:0:root:/root:/bin/sh\n"
                            "broken line\n"
                            "bad:x:abc:1:::\n"
                            "user:x:1000:1000:User,,,:/home/user:/bin/bash\n"
                            "nohome:x:1001:1001::::\n"
                            "last:x:5:6::/l:/bin/false");
    struct passwd_entry e = {0};
    assert_int_equal(passwd_lookup(path, "user", &e), 0);
    assert_int_equal(e.uid, 1000);
    assert_int_equal(e.gid, 1000);
    assert_string_equal(e.home, "/home/user");
    assert_string_equal(e.shell, "/bin/bash");
    passwd_entry_free(&e);
    assert_int_equal(passwd_lookup(path, "last", &e), 0); /* no final newline */
    assert_int_equal(e.gid, 6);
    passwd_entry_free(&e);
    assert_int_equal(passwd_lookup(path, "nohome", &e), 0);
    assert_string_equal(e.home, "");
    passwd_entry_free(&e);
    assert_int_equal(passwd_lookup(path, "bad", &e), -ENOENT);
    assert_int_equal(passwd_lookup(path, "us", &e), -ENOENT);
    assert_int_equal(passwd_lookup(path, "broken line", &e), -ENOENT);
    char *missing = tu_path(dir, "nope");
    assert_int_equal(passwd_lookup(missing, "root", &e), -ENOENT);
    free(missing);
    free(path);
    tu_rmdir(dir);
}

static void test_group_list(void **state) {
    char *dir = tu_mkdtemp();
    char *path = write_file(dir, "group",
                            "root:x:0:\n"
                            "user:x:1000:\n"
                            "audio:x:29:pulse,user\n"
                            "video:x:44:user\n"
                            "users:x:100:username,xuser\n"
                            "junk\n"
                            "wheel:x:10:root,user,user\n");
    gid_t gids[8];
    size_t n = group_list(path, "user", 1000, gids, 8);
    assert_int_equal(n, 4);
    assert_int_equal(gids[0], 1000);
    assert_int_equal(gids[1], 29);
    assert_int_equal(gids[2], 44);
    assert_int_equal(gids[3], 10);
    assert_int_equal(group_list(path, "user", 1000, gids, 2), 2); /* bounded */
    assert_int_equal(group_list(path, "user", 29, gids, 8), 3);   /* no duplicates */
    char *missing = tu_path(dir, "nope");
    assert_int_equal(group_list(missing, "user", 7, gids, 8), 1);
    assert_int_equal(gids[0], 7);
    free(missing);
    free(path);
    tu_rmdir(dir);
}

static void test_replace_chars(void **state) {
    char buf[] = "ok \t\n\r\b\a~ \x1b[0m\x7f\x01\xc3\xa9\0end";
    qrexec_replace_chars(buf, sizeof(buf) - 1);
    assert_bytes_equal(buf, sizeof(buf) - 1, BYTES("ok \t\n\r\b\a~ _[0m_____end"));
}

static void test_exit_status(void **state) {
    assert_int_equal(qrexec_exit_status(QREXEC_EXITED, 0), 0);
    assert_int_equal(qrexec_exit_status(QREXEC_EXITED, 42), 42);
    assert_int_equal(qrexec_exit_status(QREXEC_EXITED, 256 + 3), 3);
    assert_int_equal(qrexec_exit_status(QREXEC_SIGNALED, 9), 137);
    assert_int_equal(qrexec_exit_status(QREXEC_REFUSED, 0), 126);
    assert_int_equal(qrexec_exit_status(QREXEC_FAILED, 0), 125);
    assert_int_equal(qrexec_exit_status(99, 0), 125); /* unknown kinds: a failure */
}

static void test_target_normalize(void **state) {
    char a[] = "$dispvm:dvm", b[] = "", c[] = "work", d[] = "$default";
    assert_string_equal(qrexec_target_normalize(a), "@dispvm:dvm");
    assert_string_equal(qrexec_target_normalize(b), "@default");
    assert_string_equal(qrexec_target_normalize(c), "work");
    assert_string_equal(qrexec_target_normalize(d), "@default");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_body_roundtrip),
        cmocka_unit_test(test_body_null_fields),
        cmocka_unit_test(test_body_too_big),
        cmocka_unit_test(test_body_malformed),
        cmocka_unit_test(test_vmexec_decode),
        cmocka_unit_test(test_vmexec_decode_refused),
        cmocka_unit_test(test_vmexec_encode_roundtrip),
        cmocka_unit_test(test_passwd_lookup),
        cmocka_unit_test(test_group_list),
        cmocka_unit_test(test_replace_chars),
        cmocka_unit_test(test_exit_status),
        cmocka_unit_test(test_target_normalize),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
