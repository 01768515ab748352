/* The sorted string map (src/core/strmap.c). */
#include "testutil.h"

#include "strmap.h"

static void test_empty(void **state) {
    struct strmap m = {0};
    assert_null(strmap_get(&m, "a"));
    assert_false(strmap_remove(&m, "a"));
    strmap_free(&m);
}

static void test_set_get(void **state) {
    struct strmap m = {0};
    strmap_set(&m, "b", "2");
    strmap_set(&m, "a", "1");
    strmap_set(&m, "c", "3");
    assert_string_equal(strmap_get(&m, "a"), "1");
    assert_string_equal(strmap_get(&m, "b"), "2");
    assert_string_equal(strmap_get(&m, "c"), "3");
    assert_null(strmap_get(&m, "d"));
    strmap_free(&m);
    assert_int_equal(m.n, 0);
    assert_null(m.e);
}

static void test_sorted(void **state) {
    static const char *const keys[] = {"m", "z", "a", "k", "b", "y", "A", "_"};
    struct strmap m = {0};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        strmap_set(&m, keys[i], keys[i]);
    assert_int_equal(m.n, 8);
    for (size_t i = 1; i < m.n; i++)
        assert_true(strcmp(m.e[i - 1].key, m.e[i].key) < 0);
    strmap_free(&m);
}

static void test_replace_copies(void **state) {
    struct strmap m = {0};
    char key[] = "k", value[] = "v1";
    strmap_set(&m, key, value);
    key[0] = 'x';
    value[1] = '9';
    assert_string_equal(strmap_get(&m, "k"), "v1");
    strmap_set(&m, "k", "v2");
    assert_int_equal(m.n, 1);
    assert_string_equal(strmap_get(&m, "k"), "v2");
    strmap_free(&m);
}

static void test_remove(void **state) {
    struct strmap m = {0};
    strmap_set(&m, "a", "1");
    strmap_set(&m, "b", "2");
    strmap_set(&m, "c", "3");
    assert_true(strmap_remove(&m, "b"));
    assert_false(strmap_remove(&m, "b"));
    assert_int_equal(m.n, 2);
    assert_string_equal(m.e[0].key, "a");
    assert_string_equal(m.e[1].key, "c");
    assert_true(strmap_remove(&m, "c"));
    assert_true(strmap_remove(&m, "a"));
    assert_int_equal(m.n, 0);
    strmap_set(&m, "again", "");
    assert_string_equal(strmap_get(&m, "again"), "");
    strmap_free(&m);
}

static void test_many(void **state) {
    struct strmap m = {0};
    char key[16];
    for (int i = 999; i >= 0; i--) {
        snprintf(key, sizeof(key), "k%04d", i);
        strmap_set(&m, key, key);
    }
    assert_int_equal(m.n, 1000);
    for (int i = 0; i < 1000; i += 37) {
        snprintf(key, sizeof(key), "k%04d", i);
        assert_string_equal(strmap_get(&m, key), key);
    }
    strmap_free(&m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),  cmocka_unit_test(test_set_get),
        cmocka_unit_test(test_sorted), cmocka_unit_test(test_replace_copies),
        cmocka_unit_test(test_remove), cmocka_unit_test(test_many),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
