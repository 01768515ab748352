/* Property descriptors and prop_canonicalize (src/core/props.c). */
#include "testutil.h"

#include "app.h"
#include "props.h"

static char out[64];
static struct qerr err;

static int canon(int id, const char *raw) {
    memset(out, 0, sizeof(out));
    err = (struct qerr){0};
    return prop_canonicalize(&PROP_DEFS[id], raw, out, sizeof(out), &err);
}

static void expect_ok(int id, const char *raw, const char *want) {
    assert_int_equal(canon(id, raw), 0);
    assert_null(err.exc);
    assert_string_equal(out, want);
}

static void expect_err(int id, const char *raw, const char *exc, const char *msg) {
    assert_int_equal(canon(id, raw), -1);
    assert_string_equal(err.exc, exc);
    assert_string_equal(err.msg, msg);
}

static void test_tables_consistent(void **state) {
    for (int i = 0; i < PROP_COUNT; i++) {
        assert_int_equal(PROP_DEFS[i].id, i);
        assert_non_null(PROP_DEFS[i].name);
        assert_true(PROP_DEFS[i].classes != 0);
        if (i > 0) /* alphabetical, so GetAll/List need no sort */
            assert_true(strcmp(PROP_DEFS[i - 1].name, PROP_DEFS[i].name) < 0);
    }
    for (int i = 0; i < GPROP_COUNT; i++) {
        assert_int_equal(GPROP_DEFS[i].id, i);
        if (i > 0)
            assert_true(strcmp(GPROP_DEFS[i - 1].name, GPROP_DEFS[i].name) < 0);
    }
}

static void test_type_names(void **state) {
    assert_string_equal(prop_type_name(PT_STR), "str");
    assert_string_equal(prop_type_name(PT_INT), "int");
    assert_string_equal(prop_type_name(PT_BOOL), "bool");
    assert_string_equal(prop_type_name(PT_VM), "vm");
    assert_string_equal(prop_type_name(PT_LABEL), "label");
}

static void test_int_ok(void **state) {
    expect_ok(P_MEMORY, "400", "400");
    expect_ok(P_MEMORY, " 42\n", "42");
    expect_ok(P_MEMORY, "+7", "7");
    expect_ok(P_MEMORY, "007", "7");
    expect_ok(P_MAXMEM, "0", "0");
    expect_ok(P_VCPUS, "2147483647", "2147483647");
}

static void test_int_parse_errors(void **state) {
    static const char *const bad[] = {
        "abc", "", "12x", "1.5", "2147483648", "0x10", "99999999999999999999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_err(P_MEMORY, bad[i], EXC_VALUE, "Failed to parse property value as int");
}

/* Regression: trailing blanks are skipped before the "no digits"
 * check, so a value made only of blanks parses as 0: maxmem " " is stored as "0".
 * Python's int(" ") raises, and so should we. */
static void test_int_blank_only_is_not_zero(void **state) {
    expect_err(P_MAXMEM, " ", EXC_VALUE, "Failed to parse property value as int");
    expect_err(P_BACKUP_TIMESTAMP, "\n", EXC_VALUE, "Failed to parse property value as int");
}

static void test_int_range_errors(void **state) {
    expect_err(P_MEMORY, "0", EXC_PROPERTY_VALUE, "memory must be positive");
    expect_err(P_VCPUS, "-3", EXC_PROPERTY_VALUE, "vcpus must be positive");
    expect_err(P_MAXMEM, "-1", EXC_PROPERTY_VALUE, "maxmem must be positive or zero");
    expect_err(P_QREXEC_TIMEOUT, "0", EXC_PROPERTY_VALUE, "qrexec_timeout must be positive");
}

static void test_bool(void **state) {
    static const char *const yes[] = {"1", "yes", "true", "on", "True", "YES", "On"};
    static const char *const no[] = {"0", "no", "false", "off", "False", "NO", "oFF"};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
        expect_ok(P_DEBUG, yes[i], "True");
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
        expect_ok(P_DEBUG, no[i], "False");
}

static void test_bool_errors(void **state) {
    expect_err(P_DEBUG, "maybe", EXC_VALUE, "Invalid literal for boolean property: 'maybe'");
    expect_err(P_DEBUG, "", EXC_VALUE, "Invalid literal for boolean property: ''");
    expect_err(P_AUTOSTART, "2", EXC_VALUE, "Invalid literal for boolean property: '2'");
}

static void test_vm(void **state) {
    expect_ok(P_NETVM, "", "");
    expect_ok(P_NETVM, "none", "");
    expect_ok(P_NETVM, "None", "");
    expect_ok(P_TEMPLATE, "tpl", "tpl");
    expect_ok(P_DEFAULT_DISPVM, "dom0", "dom0");
}

static void test_vm_errors(void **state) {
    expect_err(P_TEMPLATE, "1bad", EXC_VALUE,
               "VM name cannot start with hyphen, underscore, dot or numbers");
    expect_err(P_TEMPLATE, "a b", EXC_VALUE, "VM name contains illegal characters");
    expect_err(P_TEMPLATE, "default", EXC_VALUE, "VM name cannot be 'none' nor 'default'");
    expect_err(P_TEMPLATE, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", EXC_VALUE,
               "VM name must be shorter than 32 characters");
}

static void test_label(void **state) {
    expect_ok(P_LABEL, "red", "red");
    expect_ok(P_LABEL, "black", "black");
    expect_err(P_LABEL, "nosuchlabel", EXC_LABEL_NOT_FOUND, "Label does not exist: nosuchlabel");
    expect_err(P_LABEL, "Red", EXC_LABEL_NOT_FOUND, "Label does not exist: Red");
    expect_err(P_LABEL, "", EXC_LABEL_NOT_FOUND, "Label does not exist: ");
}

static void test_str(void **state) {
    expect_ok(P_KERNELOPTS, "", "");
    expect_ok(P_KERNELOPTS, "swiotlb=2048 quiet", "swiotlb=2048 quiet");
    expect_ok(P_KERNELOPTS, "a\tb\nc", "a\tb\nc");
    expect_ok(P_DEFAULT_USER, "100%", "100%");
}

static void test_str_errors(void **state) {
    expect_err(P_KERNELOPTS, "a\x01", EXC_VALUE, "Invalid characters in property value");
    expect_err(P_KERNELOPTS, "\x1b[0m", EXC_VALUE, "Invalid characters in property value");
    expect_err(P_KERNELOPTS, "caf\xc3\xa9", EXC_VALUE, "Non-ASCII bytes in property value");
    expect_err(P_KERNELOPTS, "\x7f", EXC_VALUE, "Non-ASCII bytes in property value");
}

static void test_too_long(void **state) {
    char raw[sizeof(out) + 1];
    memset(raw, 'x', sizeof(raw));
    raw[sizeof(out)] = '\0';
    expect_err(P_KERNELOPTS, raw, EXC_VALUE, "Value of property 'kernelopts' is too long");
    raw[sizeof(out) - 1] = '\0'; /* 63 characters: fits with its terminator */
    assert_int_equal(canon(P_KERNELOPTS, raw), 0);
}

static void test_global_canonicalize(void **state) {
    err = (struct qerr){0};
    assert_int_equal(prop_canonicalize(&GPROP_DEFS[G_DEFAULT_QREXEC_TIMEOUT], "0", out, sizeof(out),
                                       &err),
                     -1);
    assert_string_equal(err.exc, EXC_PROPERTY_VALUE);
    assert_string_equal(err.msg, "default_qrexec_timeout must be positive");
    assert_int_equal(prop_canonicalize(&GPROP_DEFS[G_DEFAULT_TEMPLATE], "None", out, sizeof(out),
                                       &err),
                     0);
    assert_string_equal(out, "");
}

/* The checks that need no model (these validators do not read app or q). */
static int check(int id, const char *value) {
    err = (struct qerr){0};
    return PROP_DEFS[id].validate(NULL, NULL, value, &err);
}

static void test_keyboard_layout(void **state) {
    static const char *const good[] = {"us++", "de+neo+",
                                       "fr+azerty-x_1+grp:alt_shift,ctrl:nocaps"};
    static const char *const bad[][2] = {
        {"us", "invalid number of keyboard layout parameters"},
        {"us+a+b+c", "invalid number of keyboard layout parameters"},
        {"+a+", "Invalid keyboard layout provided"},
        {"u1++", "Invalid keyboard layout provided"},
        {"us+a b+", "Invalid layout variant provided"},
        {"us++a;b", "Invalid layout options provided"},
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        assert_int_equal(check(P_KEYBOARD_LAYOUT, good[i]), 0);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(check(P_KEYBOARD_LAYOUT, bad[i][0]), -1);
        assert_string_equal(err.exc, EXC_PROPERTY_VALUE);
        assert_string_equal(err.msg, bad[i][1]);
    }
}

static void test_devices_denied(void **state) {
    static const char *const good[] = {"", "b******", "u0e0101p******m******", "*******"};
    static const char *const bad[] = {"b", "x******", "bABCDEF", "b12345", "b******u"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        assert_int_equal(check(P_DEVICES_DENIED, good[i]), 0);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(check(P_DEVICES_DENIED, bad[i]), -1);
        assert_string_equal(err.exc, EXC_PROPERTY_VALUE);
    }
}

static void test_read_only_and_help(void **state) {
    static const int vm_ro[] = {P_XID, P_START_TIME, P_BOOTMODE,         P_STUBDOM_XID,
                                P_IP6, P_GATEWAY6,   P_VISIBLE_GATEWAY6, P_VISIBLE_IP6};
    for (size_t i = 0; i < sizeof(vm_ro) / sizeof(vm_ro[0]); i++)
        assert_true(PROP_DEFS[vm_ro[i]].flags & PF_READONLY);
    assert_true(GPROP_DEFS[G_MAXMEM].flags & PF_READONLY);
    assert_true(GPROP_DEFS[G_NO_CPUS].flags & PF_READONLY);
    assert_true(PROP_DEFS[P_MAXMEM].flags & PF_ADMINVM_READONLY);
    for (int i = 0; i < PROP_COUNT; i++)
        assert_true(strlen(prop_help(&PROP_DEFS[i], false)) > 20);
    for (int i = 0; i < GPROP_COUNT; i++)
        assert_true(strlen(prop_help(&GPROP_DEFS[i], true)) > 20);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tables_consistent),
        cmocka_unit_test(test_type_names),
        cmocka_unit_test(test_int_ok),
        cmocka_unit_test(test_int_parse_errors),
        cmocka_unit_test(test_int_range_errors),
        cmocka_unit_test(test_int_blank_only_is_not_zero),
        cmocka_unit_test(test_bool),
        cmocka_unit_test(test_bool_errors),
        cmocka_unit_test(test_vm),
        cmocka_unit_test(test_vm_errors),
        cmocka_unit_test(test_label),
        cmocka_unit_test(test_str),
        cmocka_unit_test(test_str_errors),
        cmocka_unit_test(test_too_long),
        cmocka_unit_test(test_global_canonicalize),
        cmocka_unit_test(test_keyboard_layout),
        cmocka_unit_test(test_devices_denied),
        cmocka_unit_test(test_read_only_and_help),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
