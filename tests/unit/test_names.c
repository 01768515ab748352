/* Qubes naming rules (src/shared/names.c). */
#include "testutil.h"

#include "names.h"
#include "qerr.h"

/* Asserts that name is refused with QubesValueError and the given message. */
static void refused(const char *name, const char *msg) {
    struct qerr err = {0};
    assert_int_equal(name_validate_qube(name, &err), -1);
    assert_string_equal(err.exc, EXC_VALUE);
    assert_string_equal(err.msg, msg);
}

static void accepted(const char *name) {
    struct qerr err = {0};
    assert_int_equal(name_validate_qube(name, &err), 0);
    assert_null(err.exc);
}

static void test_qube_name_valid(void **state) {
    accepted("work");
    accepted("a");
    accepted("Work-2.dev_x");
    accepted("dom0");
    accepted("nonex");
    accepted("dm");
    accepted("my-dmz");
}

static void test_qube_name_empty(void **state) { refused("", "VM name cannot be empty"); }

static void test_qube_name_length(void **state) {
    char name[40];
    memset(name, 'a', sizeof(name));
    name[31] = '\0';
    accepted(name);
    name[31] = 'a';
    name[32] = '\0';
    refused(name, "VM name must be shorter than 32 characters");
}

static void test_qube_name_leading_char(void **state) {
    static const char *const bad[] = {"1bad", "_x", ".x", "-x", "0"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        refused(bad[i], "VM name cannot start with hyphen, underscore, dot or numbers");
}

static void test_qube_name_illegal_chars(void **state) {
    static const char *const bad[] = {"a b",  "a/b",         "a+b", "a:b",  "lost+found",
                                      "a\tb", "caf\xc3\xa9", "a%s", "a\\b", "a@b"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        refused(bad[i], "VM name contains illegal characters");
}

/* Bytes are not characters: 16 Cyrillic letters (32 bytes) and a name that starts with a
 * non-ASCII letter are character problems, as Qubes (counting characters) reports them. */
static void test_qube_name_non_ascii_is_not_length(void **state) {
    refused("\xd0\xb1\xd0\xb1\xd0\xb1\xd0\xb1\xd0\xb1\xd0\xb1\xd0\xb1\xd0\xb1"
            "\xd0\xb1\xd0\xb1\xd0\xb1\xd0\xb1\xd0\xb1\xd0\xb1\xd0\xb1\xd0\xb1",
            "VM name contains illegal characters");
    refused("\xc3\xb6rk", "VM name contains illegal characters");
    refused("!x", "VM name contains illegal characters");
}

static void test_qube_name_reserved(void **state) {
    refused("none", "VM name cannot be 'none' nor 'default'");
    refused("default", "VM name cannot be 'none' nor 'default'");
    accepted("None"); /* Qubes compares case-sensitively */
    assert_int_equal(name_validate_qube("Domain-0", NULL), -1); /* Xen's name for dom0 */
}

static void test_qube_name_dm_suffix(void **state) {
    refused("sys-net-dm", "VM name cannot end with -dm");
    refused("a-dm", "VM name cannot end with -dm");
    accepted("a-dmx");
    accepted("adm");
}

static void test_qube_name_null_err_ok(void **state) {
    assert_int_equal(name_validate_qube("1bad", NULL), -1);
    assert_int_equal(name_validate_qube("ok", NULL), 0);
}

static void test_token(void **state) {
    assert_true(name_is_valid_token("foo"));
    assert_true(name_is_valid_token("supported-rpc.qubes.WaitForSession"));
    assert_true(name_is_valid_token("_1.-"));
    assert_false(name_is_valid_token(""));
    assert_false(name_is_valid_token("a b"));
    assert_false(name_is_valid_token("a+b"));
    assert_false(name_is_valid_token("a/b"));
    assert_false(name_is_valid_token("a\nb"));
}

static void test_token_length(void **state) {
    char tok[300];
    memset(tok, 'x', sizeof(tok));
    tok[255] = '\0';
    assert_true(name_is_valid_token(tok));
    tok[255] = 'x';
    tok[256] = '\0';
    assert_false(name_is_valid_token(tok));
}

static void test_printable_ascii(void **state) {
    assert_true(text_is_printable_ascii("", 0));
    assert_true(text_is_printable_ascii(BYTES(" ~abc 123 !%")));
    assert_false(text_is_printable_ascii(BYTES("a\nb")));
    assert_false(text_is_printable_ascii(BYTES("a\tb")));
    assert_false(text_is_printable_ascii(BYTES("a\0b")));
    assert_false(text_is_printable_ascii(BYTES("\x7f")));
    assert_false(text_is_printable_ascii(BYTES("\x80")));
    assert_false(text_is_printable_ascii(BYTES("\xff")));
    assert_false(text_is_printable_ascii(BYTES("\x1f")));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_qube_name_valid),
        cmocka_unit_test(test_qube_name_empty),
        cmocka_unit_test(test_qube_name_length),
        cmocka_unit_test(test_qube_name_leading_char),
        cmocka_unit_test(test_qube_name_illegal_chars),
        cmocka_unit_test(test_qube_name_non_ascii_is_not_length),
        cmocka_unit_test(test_qube_name_reserved),
        cmocka_unit_test(test_qube_name_dm_suffix),
        cmocka_unit_test(test_qube_name_null_err_ok),
        cmocka_unit_test(test_token),
        cmocka_unit_test(test_token_length),
        cmocka_unit_test(test_printable_ascii),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
