/* The Admin API wire codec (src/shared/wire.c): requests, replies, events. */
#include "testutil.h"

#include <errno.h>

#include "strbuf.h"
#include "wire.h"

/* Copy a literal into a writable buffer (the parsers work in place). */
static int parse_req(const char *lit, size_t len, uint8_t *buf, struct wire_request *out) {
    memcpy(buf, lit, len);
    return wire_parse_request(buf, len, out);
}

/* ---- wire_parse_request ---- */

static void test_request_normal(void **state) {
    uint8_t buf[128];
    struct wire_request r;
    assert_int_equal(parse_req(BYTES("admin.vm.List+ dom0 name dom0\0"), buf, &r), 0);
    assert_string_equal(r.method, "admin.vm.List");
    assert_string_equal(r.arg, "");
    assert_string_equal(r.source, "dom0");
    assert_string_equal(r.dest, "dom0");
    assert_int_equal(r.payload_len, 0);
}

static void test_request_arg_and_payload(void **state) {
    uint8_t buf[128];
    struct wire_request r;
    assert_int_equal(parse_req(BYTES("admin.vm.feature.Set+foo dom0 name work\0b\0ar"), buf, &r),
                     0);
    assert_string_equal(r.method, "admin.vm.feature.Set");
    assert_string_equal(r.arg, "foo");
    assert_string_equal(r.dest, "work");
    assert_int_equal(r.payload_len, 4);
    assert_memory_equal(r.payload, "b\0ar", 4);
}

static void test_request_plus_in_argument(void **state) {
    uint8_t buf[128];
    struct wire_request r;
    assert_int_equal(parse_req(BYTES("admin.vm.Shutdown+force+wait dom0 name work\0"), buf, &r), 0);
    assert_string_equal(r.method, "admin.vm.Shutdown");
    assert_string_equal(r.arg, "force+wait");
}

static void test_request_keyword_adminvm(void **state) {
    uint8_t buf[128];
    struct wire_request r;
    assert_int_equal(parse_req(BYTES("admin.vm.List+ dom0 keyword adminvm\0"), buf, &r), 0);
    assert_string_equal(r.dest, "dom0");
}

static void test_request_bad_keyword(void **state) {
    uint8_t buf[128];
    struct wire_request r;
    assert_int_equal(parse_req(BYTES("admin.vm.List+ dom0 keyword default\0"), buf, &r), -EINVAL);
    assert_int_equal(parse_req(BYTES("admin.vm.List+ dom0 uuid dom0\0"), buf, &r), -EINVAL);
}

static void test_request_missing_nul(void **state) {
    uint8_t buf[128];
    struct wire_request r;
    assert_int_equal(parse_req(BYTES("admin.vm.List+ dom0 name dom0"), buf, &r), -EINVAL);
    assert_int_equal(wire_parse_request(buf, 0, &r), -EINVAL);
}

static void test_request_field_count(void **state) {
    uint8_t buf[128];
    struct wire_request r;
    assert_int_equal(parse_req(BYTES("admin.vm.List+ dom0 name\0"), buf, &r), -EINVAL);
    assert_int_equal(parse_req(BYTES("admin.vm.List+ dom0 name dom0 extra\0"), buf, &r), -EINVAL);
    assert_int_equal(parse_req(BYTES("admin.vm.List+\0"), buf, &r), -EINVAL);
}

static void test_request_empty_fields(void **state) {
    uint8_t buf[128];
    struct wire_request r;
    assert_int_equal(parse_req(BYTES("+ dom0 name dom0\0"), buf, &r), -EINVAL);
    assert_int_equal(parse_req(BYTES("admin.vm.List+  name dom0\0"), buf, &r), -EINVAL);
    assert_int_equal(parse_req(BYTES("admin.vm.List+ dom0 name \0"), buf, &r), -EINVAL);
}

/* qubesd reads a method without '+' as one with an empty argument. */
static void test_request_without_plus(void **state) {
    uint8_t buf[128];
    struct wire_request r;
    assert_int_equal(parse_req(BYTES("admin.vm.List dom0 name dom0\0"), buf, &r), 0);
    assert_string_equal(r.method, "admin.vm.List");
    assert_string_equal(r.arg, "");
}

static void test_request_control_chars_in_method(void **state) {
    uint8_t buf[128];
    struct wire_request r;
    assert_int_equal(parse_req(BYTES("admin.vm\tList+ dom0 name dom0\0"), buf, &r), -EINVAL);
    assert_int_equal(parse_req(BYTES("admin.vm.L\xc3\xa9st+ dom0 name dom0\0"), buf, &r), -EINVAL);
    assert_int_equal(parse_req(BYTES("admin.vm.List\x7f dom0 name dom0\0"), buf, &r), -EINVAL);
}

/* The argument is content (any byte but NUL, spaces too): the API answers a bad one with
 * a Qubes error, where a dropped connection only says "empty response". */
static void test_request_argument_takes_any_byte(void **state) {
    uint8_t buf[128];
    struct wire_request r;
    assert_int_equal(parse_req(BYTES("admin.vm.tag.Set+a b dom0 name work\0"), buf, &r), 0);
    assert_string_equal(r.method, "admin.vm.tag.Set");
    assert_string_equal(r.arg, "a b");
    assert_string_equal(r.source, "dom0");
    assert_string_equal(r.dest, "work");
    assert_int_equal(parse_req(BYTES("admin.vm.List+\t\xc3\xa9 dom0 name dom0\0"), buf, &r), 0);
    assert_string_equal(r.arg, "\t\xc3\xa9");
}

/* So are the names: the API refuses them as qube names (QubesValueError). */
static void test_request_names_are_content(void **state) {
    uint8_t buf[128];
    struct wire_request r;
    assert_int_equal(parse_req(BYTES("admin.vm.List+ dom0 name d\xc3\xb6m0\0"), buf, &r), 0);
    assert_string_equal(r.dest, "d\xc3\xb6m0");
    assert_int_equal(parse_req(BYTES("admin.vm.List+ do\nm0 name dom0\0"), buf, &r), 0);
    assert_string_equal(r.source, "do\nm0");
}

static void test_request_payload_may_hold_anything(void **state) {
    uint8_t buf[128];
    struct wire_request r;
    assert_int_equal(parse_req(BYTES("a+ dom0 name dom0\0\x01\xff\n "), buf, &r), 0);
    assert_int_equal(r.payload_len, 4);
}

static void test_format_request(void **state) {
    _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
    wire_format_request(&sb, "admin.vm.feature.Set", "foo", "work", "bar", 3);
    assert_bytes_equal(sb.data, sb.len, BYTES("admin.vm.feature.Set+foo dom0 name work\0bar"));
    strbuf_reset(&sb);
    wire_format_request(&sb, "admin.vm.List", NULL, "dom0", NULL, 0);
    assert_bytes_equal(sb.data, sb.len, BYTES("admin.vm.List+ dom0 name dom0\0"));
}

/* ---- replies ---- */

static void test_reply_ok(void **state) {
    _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
    wire_reply_ok(&sb, "0xcc0000", 8);
    assert_bytes_equal(sb.data, sb.len,
                       BYTES("0\0"
                             "0xcc0000"));
    strbuf_reset(&sb);
    wire_reply_ok(&sb, NULL, 0);
    assert_bytes_equal(sb.data, sb.len, BYTES("0\0"));
}

static void test_reply_error(void **state) {
    _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
    wire_reply_error(&sb, "QubesLabelNotFoundError", "Label does not exist: nosuch");
    assert_bytes_equal(sb.data, sb.len,
                       BYTES("2\0QubesLabelNotFoundError\0\0Label does not exist: nosuch\0"));
}

static void test_reply_error_escapes_percent(void **state) {
    _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
    wire_reply_error(&sb, "QubesValueError", "100% sure %s %%");
    assert_bytes_equal(sb.data, sb.len,
                       BYTES("2\0QubesValueError\0\0"
                             "100%% sure %%s %%%%\0"));
}

static void test_parse_reply_ok_roundtrip(void **state) {
    _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
    wire_reply_ok(&sb, "a\0b", 3);
    strbuf_reserve(&sb, 1); /* the parser's spare byte */
    struct wire_reply r;
    assert_int_equal(wire_parse_reply(sb.data, sb.len, &r), 0);
    assert_true(r.ok);
    assert_int_equal(r.content_len, 3);
    assert_memory_equal(r.content, "a\0b", 3);
}

static void test_parse_reply_error_roundtrip(void **state) {
    _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
    wire_reply_error(&sb, "QubesVMNotFoundError", "No such domain: '50%'");
    strbuf_reserve(&sb, 1);
    struct wire_reply r;
    assert_int_equal(wire_parse_reply(sb.data, sb.len, &r), 0);
    assert_false(r.ok);
    assert_string_equal(r.exc, "QubesVMNotFoundError");
    assert_string_equal(r.msg, "No such domain: '50%'");
}

static void test_parse_reply_malformed(void **state) {
    char buf[64];
    struct wire_reply r;
    static const struct {
        const char *b;
        size_t n;
    } bad[] = {
        {"", 0},         {"0", 1},          {"1\0x", 3},           {"2\0Exc", 5},
        {"2\0Exc\0", 6}, {"2\0Exc\0\0", 7}, {"2\0Exc\0\0msg", 10}, {"x\0", 2},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memcpy(buf, bad[i].b, bad[i].n);
        assert_int_equal(wire_parse_reply(buf, bad[i].n, &r), -EINVAL);
    }
}

/* ---- events ---- */

static void test_event_encoding(void **state) {
    _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
    struct wire_kv kv[] = {{"name", "label"}, {"newvalue", "green"}, {"oldvalue", "red"}};
    wire_event(&sb, "bench-0", "property-set:label", kv, 3);
    assert_bytes_equal(sb.data, sb.len,
                       BYTES("1\0bench-0\0property-set:label\0name\0label\0newvalue\0green\0"
                             "oldvalue\0red\0\0"));
    strbuf_reset(&sb);
    wire_event(&sb, "", "connection-established", NULL, 0);
    assert_bytes_equal(sb.data, sb.len, BYTES("1\0\0connection-established\0\0"));
}

static void test_parse_event_complete(void **state) {
    char buf[] = "1\0work\0domain-feature-set:foo\0feature\0foo\0value\0bar\0\0";
    struct wire_event_msg ev;
    long n = wire_parse_event(buf, sizeof(buf) - 1, &ev);
    assert_int_equal(n, (long)sizeof(buf) - 1);
    assert_string_equal(ev.subject, "work");
    assert_string_equal(ev.event, "domain-feature-set:foo");
    assert_int_equal(ev.n_kv, 2);
    assert_string_equal(ev.kv[0].key, "feature");
    assert_string_equal(ev.kv[1].value, "bar");
}

static void test_parse_event_incomplete(void **state) {
    static const char full[] = "1\0work\0ev\0k\0v\0\0";
    char buf[sizeof(full)];
    struct wire_event_msg ev;
    for (size_t len = 0; len < sizeof(full) - 1; len++) {
        memcpy(buf, full, sizeof(full));
        assert_int_equal(wire_parse_event(buf, len, &ev), 0);
    }
}

static void test_parse_event_multiple(void **state) {
    char buf[] = "1\0\0connection-established\0\0"
                 "1\0\0domain-add\0vm\0work\0\0"
                 "1\0";
    size_t len = sizeof(buf) - 1, pos = 0;
    struct wire_event_msg ev;
    long n = wire_parse_event(buf, len, &ev);
    assert_int_equal(n, 27);
    assert_string_equal(ev.event, "connection-established");
    assert_int_equal(ev.n_kv, 0);
    pos += (size_t)n;
    n = wire_parse_event(buf + pos, len - pos, &ev);
    assert_true(n > 0);
    assert_string_equal(ev.subject, "");
    assert_string_equal(ev.event, "domain-add");
    assert_string_equal(ev.kv[0].value, "work");
    pos += (size_t)n;
    assert_int_equal(wire_parse_event(buf + pos, len - pos, &ev), 0);
}

static void test_parse_event_malformed(void **state) {
    char buf[] = "2\0x\0y\0\0";
    struct wire_event_msg ev;
    assert_int_equal(wire_parse_event(buf, sizeof(buf) - 1, &ev), -EINVAL);
}

static void test_parse_event_too_many_pairs(void **state) {
    _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
    struct wire_kv kv[33];
    for (size_t i = 0; i < 33; i++)
        kv[i] = (struct wire_kv){"k", "v"};
    wire_event(&sb, "s", "e", kv, 33);
    struct wire_event_msg ev;
    assert_int_equal(wire_parse_event(sb.data, sb.len, &ev), -E2BIG);
    strbuf_reset(&sb);
    wire_event(&sb, "s", "e", kv, 32);
    assert_int_equal(wire_parse_event(sb.data, sb.len, &ev), (long)sb.len);
    assert_int_equal(ev.n_kv, 32);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_normal),
        cmocka_unit_test(test_request_arg_and_payload),
        cmocka_unit_test(test_request_plus_in_argument),
        cmocka_unit_test(test_request_keyword_adminvm),
        cmocka_unit_test(test_request_without_plus),
        cmocka_unit_test(test_request_bad_keyword),
        cmocka_unit_test(test_request_missing_nul),
        cmocka_unit_test(test_request_field_count),
        cmocka_unit_test(test_request_empty_fields),
        cmocka_unit_test(test_request_control_chars_in_method),
        cmocka_unit_test(test_request_argument_takes_any_byte),
        cmocka_unit_test(test_request_names_are_content),
        cmocka_unit_test(test_request_payload_may_hold_anything),
        cmocka_unit_test(test_format_request),
        cmocka_unit_test(test_reply_ok),
        cmocka_unit_test(test_reply_error),
        cmocka_unit_test(test_reply_error_escapes_percent),
        cmocka_unit_test(test_parse_reply_ok_roundtrip),
        cmocka_unit_test(test_parse_reply_error_roundtrip),
        cmocka_unit_test(test_parse_reply_malformed),
        cmocka_unit_test(test_event_encoding),
        cmocka_unit_test(test_parse_event_complete),
        cmocka_unit_test(test_parse_event_incomplete),
        cmocka_unit_test(test_parse_event_multiple),
        cmocka_unit_test(test_parse_event_malformed),
        cmocka_unit_test(test_parse_event_too_many_pairs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
