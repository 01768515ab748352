/* SQLite persistence (src/core/store.c): schema, writes, transactions, reloading. */
#include "testutil.h"

#include <sqlite3.h>

#include "store.h"
#include "strbuf.h"

struct fixture {
    char *dir;
    char *db;
    struct store *s;
};

static int setup(void **state) {
    struct fixture *f = calloc(1, sizeof(*f));
    f->dir = tu_mkdtemp();
    assert_non_null(f->dir);
    f->db = tu_path(f->dir, "qubes.db");
    struct qerr err = {0};
    assert_int_equal(store_open(f->db, &f->s, &err), 0);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    struct fixture *f = *state;
    store_close(f->s);
    free(f->db);
    tu_rmdir(f->dir);
    free(f);
    return 0;
}

/* Every row store_load hands out, one line each ("Q 0 dom0 AdminVM <uuid>"). */
static int rec_qube(void *ctx, int qid, const char *name, const char *klass, const char *uuid) {
    strbuf_printf(ctx, "Q %d %s %s %s\n", qid, name, klass, uuid);
    return 0;
}
static int rec_prop(void *ctx, int qid, const char *name, const char *value) {
    strbuf_printf(ctx, "P %d %s=%s\n", qid, name, value);
    return 0;
}
static int rec_feature(void *ctx, int qid, const char *name, const char *value) {
    strbuf_printf(ctx, "F %d %s=%s\n", qid, name, value);
    return 0;
}
static int rec_tag(void *ctx, int qid, const char *tag) {
    strbuf_printf(ctx, "T %d %s\n", qid, tag);
    return 0;
}
static int rec_global(void *ctx, const char *name, const char *value) {
    strbuf_printf(ctx, "G %s=%s\n", name, value);
    return 0;
}

static void load_all(struct store *s, struct strbuf *sb) {
    strbuf_reset(sb);
    struct store_loader l = {sb, rec_qube, rec_prop, rec_feature, rec_tag, rec_global};
    assert_int_equal(store_load(s, &l), 0);
    strbuf_str(sb);
}

static const char DOM0_ROWS[] =
    "Q 0 dom0 AdminVM 00000000-0000-0000-0000-000000000000\nP 0 label=black\n";
static const char WORK_UUID[] = "91dc2676-0d35-45e6-9bce-175469b59c14";

static int user_version(const char *path) {
    sqlite3 *db;
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static void insert_work(struct store *s) {
    assert_int_equal(store_begin(s), 0);
    assert_int_equal(store_insert_qube(s, 1, "work", "AppVM", WORK_UUID), 0);
    assert_int_equal(store_put_prop(s, 1, "label", "red"), 0);
    assert_int_equal(store_put_feature(s, 1, "foo", "bar"), 0);
    assert_int_equal(store_put_tag(s, 1, "created-by-dom0", true), 0);
    assert_int_equal(store_put_global(s, "default_template", "tpl"), 0);
    assert_int_equal(store_commit(s), 0);
}

static void test_schema_version(void **state) {
    struct fixture *f = *state;
    assert_int_equal(user_version(f->db), STORE_SCHEMA_VERSION);
}

static void test_fresh_db_has_dom0(void **state) {
    struct fixture *f = *state;
    _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
    load_all(f->s, &sb);
    assert_string_equal(sb.data, DOM0_ROWS);
}

static void test_insert_and_load(void **state) {
    struct fixture *f = *state;
    _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
    insert_work(f->s);
    load_all(f->s, &sb);
    assert_non_null(strstr(sb.data, "Q 1 work AppVM 91dc2676-0d35-45e6-9bce-175469b59c14\n"));
    assert_non_null(strstr(sb.data, "P 1 label=red\n"));
    assert_non_null(strstr(sb.data, "F 1 foo=bar\n"));
    assert_non_null(strstr(sb.data, "T 1 created-by-dom0\n"));
    assert_non_null(strstr(sb.data, "G default_template=tpl\n"));
}

static void test_put_replaces(void **state) {
    struct fixture *f = *state;
    _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
    insert_work(f->s);
    assert_int_equal(store_begin(f->s), 0);
    assert_int_equal(store_put_prop(f->s, 1, "label", "blue"), 0);
    assert_int_equal(store_put_feature(f->s, 1, "foo", "baz"), 0);
    assert_int_equal(store_put_tag(f->s, 1, "created-by-dom0", true), 0); /* idempotent */
    assert_int_equal(store_commit(f->s), 0);
    load_all(f->s, &sb);
    assert_null(strstr(sb.data, "label=red"));
    assert_non_null(strstr(sb.data, "P 1 label=blue\n"));
    assert_non_null(strstr(sb.data, "F 1 foo=baz\n"));
    assert_ptr_equal(strstr(sb.data, "T 1"), strrchr(sb.data, 'T'));
}

static void test_put_null_deletes(void **state) {
    struct fixture *f = *state;
    _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
    insert_work(f->s);
    assert_int_equal(store_begin(f->s), 0);
    assert_int_equal(store_put_prop(f->s, 1, "label", NULL), 0);
    assert_int_equal(store_put_feature(f->s, 1, "foo", NULL), 0);
    assert_int_equal(store_put_tag(f->s, 1, "created-by-dom0", false), 0);
    assert_int_equal(store_put_global(f->s, "default_template", NULL), 0);
    assert_int_equal(store_commit(f->s), 0);
    load_all(f->s, &sb);
    assert_string_equal(sb.data, "Q 0 dom0 AdminVM 00000000-0000-0000-0000-000000000000\n"
                                 "Q 1 work AppVM 91dc2676-0d35-45e6-9bce-175469b59c14\n"
                                 "P 0 label=black\n");
}

static void test_delete_cascades(void **state) {
    struct fixture *f = *state;
    _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
    insert_work(f->s);
    assert_int_equal(store_begin(f->s), 0);
    assert_int_equal(store_delete_qube(f->s, 1), 0);
    assert_int_equal(store_commit(f->s), 0);
    load_all(f->s, &sb);
    assert_string_equal(sb.data, "Q 0 dom0 AdminVM 00000000-0000-0000-0000-000000000000\n"
                                 "P 0 label=black\nG default_template=tpl\n");
}

static void test_rollback_leaves_nothing(void **state) {
    struct fixture *f = *state;
    _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
    assert_int_equal(store_begin(f->s), 0);
    assert_int_equal(store_insert_qube(f->s, 1, "work", "AppVM", WORK_UUID), 0);
    assert_int_equal(store_put_prop(f->s, 1, "label", "red"), 0);
    assert_int_equal(store_put_global(f->s, "default_template", "work"), 0);
    store_rollback(f->s);
    store_rollback(f->s); /* harmless outside a transaction */
    load_all(f->s, &sb);
    assert_string_equal(sb.data, DOM0_ROWS);
}

/* Throwaway state commits without an fsync (NORMAL), durable state with one (FULL): the
 * outermost transaction decides, and FULL is back once it is over, even after a
 * rollback. The commit itself is as real as any other. */
static void test_ephemeral_transactions(void **state) {
    struct fixture *f = *state;
    _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
    assert_int_equal(store_synchronous(f->s), 2);
    assert_int_equal(store_begin_ephemeral(f->s), 0);
    assert_int_equal(store_begin(f->s), 0); /* nested: takes the outer's level */
    assert_int_equal(store_insert_qube(f->s, 1, "work", "AppVM", WORK_UUID), 0);
    assert_int_equal(store_commit(f->s), 0);
    assert_int_equal(store_synchronous(f->s), 1);
    assert_int_equal(store_commit(f->s), 0);
    assert_int_equal(store_synchronous(f->s), 2);
    load_all(f->s, &sb);
    assert_non_null(strstr(sb.data, "Q 1 work AppVM"));

    assert_int_equal(store_begin(f->s), 0); /* durable outside, ephemeral inside: durable */
    assert_int_equal(store_begin_ephemeral(f->s), 0);
    assert_int_equal(store_synchronous(f->s), 2);
    assert_int_equal(store_put_prop(f->s, 1, "label", "red"), 0);
    assert_int_equal(store_commit(f->s), 0);
    assert_int_equal(store_commit(f->s), 0);

    assert_int_equal(store_begin_ephemeral(f->s), 0);
    assert_int_equal(store_put_prop(f->s, 1, "label", "blue"), 0);
    store_rollback(f->s);
    assert_int_equal(store_synchronous(f->s), 2);
    load_all(f->s, &sb);
    assert_non_null(strstr(sb.data, "P 1 label=red\n"));
}

static void test_constraint_failure(void **state) {
    struct fixture *f = *state;
    _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
    assert_int_equal(store_begin(f->s), 0);
    assert_int_equal(store_insert_qube(f->s, 1, "work", "AppVM", WORK_UUID), 0);
    assert_int_equal(store_insert_qube(f->s, 2, "work", "AppVM", "other-uuid"), -1);
    assert_int_equal(store_put_prop(f->s, 77, "label", "red"), -1); /* no such qube */
    store_rollback(f->s);
    load_all(f->s, &sb);
    assert_string_equal(sb.data, DOM0_ROWS);
}

static void test_reopen_is_idempotent(void **state) {
    struct fixture *f = *state;
    _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
    struct qerr err = {0};
    insert_work(f->s);
    for (int i = 0; i < 2; i++) {
        store_close(f->s);
        f->s = NULL;
        assert_int_equal(store_open(f->db, &f->s, &err), 0);
    }
    assert_int_equal(user_version(f->db), STORE_SCHEMA_VERSION);
    load_all(f->s, &sb);
    assert_non_null(strstr(sb.data, "Q 1 work AppVM"));
    assert_null(strstr(strstr(sb.data, "Q 0 ") + 1, "Q 0 ")); /* dom0 once */
}

static void test_newer_schema_refused(void **state) {
    struct fixture *f = *state;
    char *path = tu_path(f->dir, "newer.db");
    sqlite3 *db;
    char sql[64];
    snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", STORE_SCHEMA_VERSION + 1);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    struct store *s = NULL;
    struct qerr err = {0};
    assert_int_equal(store_open(path, &s, &err), -1);
    assert_null(s);
    assert_string_equal(err.exc, EXC_QUBES);
    assert_non_null(strstr(err.msg, "newer"));
    assert_int_equal(user_version(path), STORE_SCHEMA_VERSION + 1); /* left untouched */
    free(path);
}

static int rec_assignment(void *ctx, int qid, const struct store_assignment *a) {
    strbuf_printf(ctx, "A %d %s %s+%s+%s %s [%s]\n", qid, a->devclass, a->backend, a->port_id,
                  a->device_id, a->mode, a->options);
    return 0;
}

/* Device assignments: kept, replaced by device, deleted, gone with their qube. */
static void test_device_assignments(void **state) {
    struct fixture *f = *state;
    _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
    insert_work(f->s);
    struct store_assignment a = {"block", "dom0", "sdb1", ":1", "required", " _read-only='yes'"};
    struct store_assignment b = {"block", "dom0", "*", "abc", "auto-attach", ""};
    assert_int_equal(store_begin(f->s), 0);
    assert_int_equal(store_put_assignment(f->s, 1, &a), 0);
    assert_int_equal(store_put_assignment(f->s, 1, &b), 0);
    a.mode = "auto-attach";
    assert_int_equal(store_put_assignment(f->s, 1, &a), 0); /* the same device: replaced */
    assert_int_equal(store_commit(f->s), 0);
    struct store_loader l = {.ctx = &sb,
                             .qube = rec_qube,
                             .prop = rec_prop,
                             .feature = rec_feature,
                             .tag = rec_tag,
                             .global = rec_global,
                             .assignment = rec_assignment};
    assert_int_equal(store_load(f->s, &l), 0);
    assert_non_null(strstr(strbuf_str(&sb),
                           "A 1 block dom0+*+abc auto-attach []\n"
                           "A 1 block dom0+sdb1+:1 auto-attach [ _read-only='yes']\n"));
    b.mode = NULL;
    assert_int_equal(store_begin(f->s), 0);
    assert_int_equal(store_put_assignment(f->s, 1, &b), 0);
    assert_int_equal(store_commit(f->s), 0);
    strbuf_reset(&sb);
    assert_int_equal(store_load(f->s, &l), 0);
    assert_null(strstr(strbuf_str(&sb), "dom0+*+abc"));
    assert_int_equal(store_begin(f->s), 0);
    assert_int_equal(store_delete_qube(f->s, 1), 0);
    assert_int_equal(store_commit(f->s), 0);
    strbuf_reset(&sb);
    assert_int_equal(store_load(f->s, &l), 0);
    assert_null(strstr(strbuf_str(&sb), "A "));
}

static void test_open_unreachable_path(void **state) {
    struct fixture *f = *state;
    char *path = tu_path(f->dir, "no/such/dir/qubes.db");
    struct store *s = NULL;
    struct qerr err = {0};
    assert_int_equal(store_open(path, &s, &err), -1);
    assert_string_equal(err.exc, EXC_QUBES);
    free(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_schema_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fresh_db_has_dom0, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ephemeral_transactions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_insert_and_load, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_replaces, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_null_deletes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_cascades, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rollback_leaves_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_constraint_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_is_idempotent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_newer_schema_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_unreachable_path, setup, teardown),
        cmocka_unit_test_setup_teardown(test_device_assignments, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
