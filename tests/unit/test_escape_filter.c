/* The escape filter (src/shared/escape_filter.c): Qubes' qrexec-client -t/-T rule. */
#include "testutil.h"

#include <stdbool.h>

#include "escape_filter.h"

static void filtered(const char *in, size_t len, const char *want) {
    char buf[256];
    memcpy(buf, in, len);
    escape_filter(buf, len);
    assert_memory_equal(buf, want, len);
}

static void test_printable_and_allowed_controls_pass(void **state) {
    filtered("a Z~\t\n\r\b\a", 9, "a Z~\t\n\r\b\a");
}

static void test_escape_sequences_are_defused(void **state) {
    filtered("\033]0;pwned\007", 10, "_]0;pwned\007");
    filtered("\033[2J\033c", 6, "_[2J_c");
}

static void test_other_controls_del_and_high_bytes(void **state) {
    filtered("\0\001\013\014\177\200\233\377", 8, "________");
}

static void test_every_byte(void **state) {
    char buf[256];
    for (int i = 0; i < 256; i++)
        buf[i] = (char)i;
    escape_filter(buf, sizeof(buf));
    for (int i = 0; i < 256; i++) {
        bool keep = (i >= 0x20 && i <= 0x7e) || i == '\t' || i == '\n' || i == '\r' || i == '\b' ||
                    i == '\a';
        assert_int_equal((unsigned char)buf[i], keep ? i : '_');
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_printable_and_allowed_controls_pass),
        cmocka_unit_test(test_escape_sequences_are_defused),
        cmocka_unit_test(test_other_controls_del_and_high_bytes),
        cmocka_unit_test(test_every_byte),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
