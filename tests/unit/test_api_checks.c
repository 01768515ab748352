/* Checks of arguments, values and sizes shared by dispenserd and the tools
 * (src/shared/api_checks.c): the exception, and a message that names the field and its
 * rule or limit in printable ASCII whatever the input. */
#include "testutil.h"

#include "api_checks.h"
#include "wire.h"

static void refused(int r, const struct qerr *err, const char *exc, const char *msg) {
    assert_int_equal(r, -1);
    assert_string_equal(err->exc, exc);
    assert_string_equal(err->msg, msg);
}

static void test_feature_name(void **state) {
    struct qerr err = {0};
    assert_int_equal(check_feature_name("a.b_c-D9", &err), 0);
    char name[300];
    memset(name, 'n', sizeof(name));
    name[FEATURE_NAME_MAX] = '\0';
    assert_int_equal(check_feature_name(name, &err), 0);
    name[FEATURE_NAME_MAX] = 'n';
    name[299] = '\0';
    refused(check_feature_name(name, &err), &err, EXC_VALUE,
            "feature name is 299 characters long: the limit is 255");
    refused(check_feature_name("", &err), &err, EXC_VALUE, "feature name is empty");
    refused(check_feature_name("a\nb", &err), &err, EXC_VALUE,
            "feature name contains a disallowed character (byte 0x0a at offset 1): "
            "feature names are made of A-Z a-z 0-9 _ . -");
}

static void test_feature_value(void **state) {
    struct qerr err = {0};
    assert_int_equal(check_feature_value(BYTES(" ~any printable text"), &err), 0);
    assert_int_equal(check_feature_value("", 0, &err), 0);
    refused(check_feature_value(BYTES("ab\0c"), &err), &err, EXC_VALUE,
            "feature value contains a disallowed character (byte 0x00 at offset 2): "
            "values are printable ASCII (0x20-0x7e)");
    refused(check_feature_value(BYTES("\x7f"), &err), &err, EXC_VALUE,
            "feature value contains a disallowed character (byte 0x7f at offset 0): "
            "values are printable ASCII (0x20-0x7e)");
}

static void test_tag(void **state) {
    struct qerr err = {0};
    assert_int_equal(check_tag("created-by-dom0_X", &err), 0);
    refused(check_tag("a.b", &err), &err, EXC_INVALID_TAG,
            "tag contains a disallowed character ('.' at offset 1): "
            "tags are made of A-Z a-z 0-9 _ -");
    refused(check_tag("", &err), &err, EXC_INVALID_TAG, "tag is empty");
}

static void test_argument(void **state) {
    struct qerr err = {0};
    assert_int_equal(check_argument("m", "", &err), 0);
    assert_int_equal(check_argument("m", "force+wait", &err), 0);
    refused(check_argument("admin.vm.property.Get", "\xff", &err), &err, EXC_VALUE,
            "the argument of admin.vm.property.Get contains a disallowed character "
            "(byte 0xff at offset 0): arguments are printable ASCII without spaces");
}

static void test_request_size(void **state) {
    struct qerr err = {0};
    assert_int_equal(check_request_size(WIRE_MAX_REQUEST, "x", &err), 0);
    refused(check_request_size(WIRE_MAX_REQUEST + 1, "the feature value", &err), &err, EXC_VALUE,
            "the feature value makes a request of 65537 bytes: the Admin API takes "
            "at most 65536 bytes per request (header and payload)");
    /* what the tools measure is what wire_format_request makes */
    _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
    wire_format_request(&sb, "admin.vm.feature.Set", "foo", "work", "bar", 3);
    assert_int_equal(wire_request_len("admin.vm.feature.Set", "foo", "work", 3), sb.len);
    strbuf_reset(&sb);
    wire_format_request(&sb, "admin.vm.List", NULL, "dom0", NULL, 0);
    assert_int_equal(wire_request_len("admin.vm.List", NULL, "dom0", 0), sb.len);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_feature_name), cmocka_unit_test(test_feature_value),
        cmocka_unit_test(test_tag),          cmocka_unit_test(test_argument),
        cmocka_unit_test(test_request_size),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
