/* Firewall rules (src/core/firewall.c) and their nftables form (src/daemon/network.c). */
#include "testutil.h"

#include "firewall.h"
#include "network.h"

static const char *canonical(const char *line) {
    static char out[512];
    struct fw_rule r;
    struct qerr err = {0};
    if (fw_rule_parse(line, &r, &err) < 0)
        return err.exc;
    struct strbuf sb = STRBUF_INIT;
    fw_rule_format(&r, &sb);
    snprintf(out, sizeof(out), "%s", strbuf_str(&sb));
    strbuf_free(&sb);
    return out;
}

static const char *nft(const char *line) {
    static char out[512];
    struct fw_rule r;
    struct qerr err = {0};
    assert_int_equal(fw_rule_parse(line, &r, &err), 0);
    struct strbuf sb = STRBUF_INIT;
    bool rendered = network_render_rule(&r, &sb);
    snprintf(out, sizeof(out), "%s", rendered ? strbuf_str(&sb) : "(none)");
    strbuf_free(&sb);
    return out;
}

/* Qubes' api_rule: action, expire, destination, proto, specialtarget, ports, icmp, comment */
static void test_canonical_order(void **state) {
    assert_string_equal(canonical("action=accept"), "action=accept");
    assert_string_equal(canonical("proto=tcp dstports=443 action=accept dst4=1.2.3.4"),
                        "action=accept dst4=1.2.3.4/32 proto=tcp dstports=443-443");
    assert_string_equal(canonical("action=drop proto=udp expire=2099450306"),
                        "action=drop expire=2099450306 proto=udp");
    assert_string_equal(canonical("action=drop proto=icmp icmptype=8 comment=no ping, ok"),
                        "action=drop proto=icmp icmptype=8 comment=no ping, ok");
    assert_string_equal(canonical("specialtarget=dns action=accept"),
                        "action=accept specialtarget=dns");
    assert_string_equal(canonical("action=accept dsthost=example.com"),
                        "action=accept dsthost=example.com");
    assert_string_equal(canonical("action=accept dst6=fd00::/8"), "action=accept dst6=fd00::/8");
    assert_string_equal(canonical("  action=accept  "), "action=accept");
}

static void test_refused(void **state) {
    const char *bad[] = {
        "",
        "proto=tcp",
        "action=maybe",
        "action=accept action=drop",
        "action=accept dst4=1.2.3.4 dsthost=5.6.7.8",
        "action=accept  proto=tcp", /* two blanks: an empty option, as Python splits */
        "action=accept dstports=80",
        "action=accept proto=icmp dstports=80",
        "action=accept proto=tcp icmptype=3",
        "action=accept proto=tcp dstports=70000",
        "action=accept proto=tcp dstports=90-80",
        "action=accept dst4=1.2.3.4/33",
        "action=accept dst4=1.2.3/8",
        "action=accept dsthost=Example.com",
        "action=accept proto=sctp",
        "action=accept specialtarget=ntp",
        "action=accept expire=soon",
        "action=accept foo=bar",
        "action=accept proto=tcp$",
        "action=accept comment=a\"b",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
        assert_string_equal(canonical(bad[i]), EXC_VALUE);
}

static void test_rules_parse_drops_expired(void **state) {
    struct strbuf sb = STRBUF_INIT;
    struct qerr err = {0};
    int n = fw_rules_parse("action=drop expire=100\naction=accept proto=tcp\r\n", &sb, NULL, 1000,
                           &err);
    assert_int_equal(n, 1);
    assert_string_equal(strbuf_str(&sb), "action=accept proto=tcp\n");
    strbuf_reset(&sb);
    assert_int_equal(fw_rules_parse("action=accept\nbogus\n", &sb, NULL, 1000, &err), -1);
    strbuf_free(&sb);
}

static void test_nft_form(void **state) {
    assert_string_equal(nft("action=accept"), " accept");
    assert_string_equal(nft("action=drop dst4=10.0.0.0/8 proto=tcp dstports=80-90"),
                        " ip daddr 10.0.0.0/8 meta l4proto tcp th dport 80-90 drop");
    assert_string_equal(nft("action=accept proto=icmp icmptype=8"),
                        " meta l4proto icmp icmp type 8 accept");
    assert_string_equal(nft("action=accept specialtarget=dns"),
                        " ip daddr { 10.139.1.1, 10.139.1.2 } meta l4proto { tcp, udp } th "
                        "dport 53 accept");
    /* never more open than asked: an unresolved name accepts nothing, drops everything */
    assert_string_equal(nft("action=accept dsthost=example.com"), "(none)");
    assert_string_equal(nft("action=drop dsthost=example.com proto=tcp"), " meta l4proto tcp drop");
    assert_string_equal(nft("action=accept dst6=fd00::/8"), "(none)");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_canonical_order),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_rules_parse_drops_expired),
        cmocka_unit_test(test_nft_form),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
