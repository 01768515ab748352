/* The qube model (src/core/app*.c) on a private database. */
#include "testutil.h"

#include <sqlite3.h>

#include "app.h"
#include "strbuf.h"

struct fixture {
    char *dir;
    char *db;
    struct app app;
    struct strbuf events; /* "subject|event|k=v,k=v\n" per emitted event */
};

static void record_event(void *ctx, const char *subject, const char *event,
                         const struct wire_kv *kv, size_t n_kv) {
    struct strbuf *sb = ctx;
    strbuf_printf(sb, "%s|%s|", subject, event);
    for (size_t i = 0; i < n_kv; i++)
        strbuf_printf(sb, "%s%s=%s", i ? "," : "", kv[i].key, kv[i].value);
    strbuf_putc(sb, '\n');
}

static void open_app(struct fixture *f) {
    struct qerr err = {0};
    f->app = (struct app){.host_mem_mib = 4096};
    assert_int_equal(app_open(&f->app, f->db, &err), 0);
    f->app.emit = record_event;
    f->app.emit_ctx = &f->events;
}

static int setup(void **state) {
    struct fixture *f = calloc(1, sizeof(*f));
    f->dir = tu_mkdtemp();
    assert_non_null(f->dir);
    f->db = tu_path(f->dir, "qubes.db");
    open_app(f);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    struct fixture *f = *state;
    app_close(&f->app);
    strbuf_free(&f->events);
    free(f->db);
    tu_rmdir(f->dir);
    free(f);
    return 0;
}

static void reopen(struct fixture *f) {
    app_close(&f->app);
    open_app(f);
}

static const char *events(struct fixture *f) { return f->events.len ? strbuf_str(&f->events) : ""; }

static struct qube *create(struct fixture *f, enum qube_class klass, const char *name,
                           const char *label, const char *tpl) {
    struct qube *q = NULL;
    struct qerr err = {0};
    struct qube_spec spec = {klass, name, label, tpl, "created-by-dom0"};
    assert_int_equal(app_create(&f->app, &spec, &q, &err), 0);
    assert_non_null(q);
    return q;
}

/* Effective value of a property, with its is_default flag checked. */
static void assert_prop(struct fixture *f, struct qube *q, const char *name, const char *want,
                        bool want_default) {
    struct qerr err = {0};
    const struct prop_def *def = app_prop_def(q, name, &err);
    assert_non_null(def);
    char buf[256];
    bool is_default;
    assert_string_equal(app_prop_get(&f->app, q, def, buf, sizeof(buf), &is_default), want);
    assert_int_equal(is_default, want_default);
}

static int set_prop(struct fixture *f, struct qube *q, const char *name, const char *value,
                    struct qerr *err) {
    const struct prop_def *def = app_prop_def(q, name, err);
    return def ? app_prop_set(&f->app, q, def, value, err) : -1;
}

static void set_global(struct fixture *f, const char *name, const char *value) {
    struct qerr err = {0};
    assert_int_equal(app_global_set(&f->app, app_global_def(name, &err), value, &err), 0);
}

/* tpl (TemplateVM), work (AppVM on tpl, disposable template), disp (DispVM of work). */
static void make_family(struct fixture *f) {
    struct qerr err = {0};
    create(f, QUBE_TEMPLATEVM, "tpl", "black", NULL);
    struct qube *work = create(f, QUBE_APPVM, "work", "red", "tpl");
    assert_int_equal(set_prop(f, work, "template_for_dispvms", "True", &err), 0);
    create(f, QUBE_DISPVM, "disp", "green", "work");
    strbuf_reset(&f->events);
}

static void test_fresh_has_dom0(void **state) {
    struct fixture *f = *state;
    assert_int_equal(f->app.n_qubes, 1);
    struct qube *dom0 = app_dom0(&f->app);
    assert_non_null(dom0);
    assert_int_equal(dom0->qid, 0);
    assert_int_equal(dom0->klass, QUBE_ADMINVM);
    assert_string_equal(power_state_name(dom0->power), "Running");
    assert_prop(f, dom0, "label", "black", false);
    assert_prop(f, dom0, "maxmem", "4096", true);
}

static void test_lookup_errors(void **state) {
    struct fixture *f = *state;
    struct qerr err = {0};
    assert_null(app_lookup(&f->app, "nosuch", &err));
    assert_string_equal(err.exc, EXC_VM_NOT_FOUND);
    assert_string_equal(err.msg, "No such domain: 'nosuch'");
    assert_null(app_lookup(&f->app, "1bad", &err));
    assert_string_equal(err.exc, EXC_VALUE);
}

static void test_create_templatevm(void **state) {
    struct fixture *f = *state;
    struct qube *tpl = create(f, QUBE_TEMPLATEVM, "tpl", "black", NULL);
    assert_int_equal(tpl->qid, 1);
    assert_int_equal(strlen(tpl->uuid), 36);
    assert_string_equal(power_state_name(tpl->power), "Halted");
    assert_non_null(strmap_get(&tpl->tags, "created-by-dom0"));
    assert_prop(f, tpl, "updateable", "True", true);
    assert_prop(f, tpl, "icon", "templatevm-black", true);
    struct qerr err = {0};
    assert_null(app_prop_def(tpl, "template", &err));
    assert_string_equal(err.exc, EXC_NO_SUCH_PROPERTY);
    assert_string_equal(events(f), "|domain-add|vm=tpl\n");
}

static void test_create_appvm_defaults(void **state) {
    struct fixture *f = *state;
    create(f, QUBE_TEMPLATEVM, "tpl", "black", NULL);
    set_global(f, "default_template", "tpl");
    struct qube *work = create(f, QUBE_APPVM, "work", "red", NULL);
    assert_int_equal(work->qid, 2);
    assert_prop(f, work, "template", "tpl", false);
    assert_prop(f, work, "memory", "400", true);
    assert_prop(f, work, "maxmem", "0", true);
    assert_prop(f, work, "vcpus", "2", true);
    assert_prop(f, work, "qrexec_timeout", "60", true);
    assert_prop(f, work, "shutdown_timeout", "60", true);
    assert_prop(f, work, "netvm", "", true);
    assert_prop(f, work, "virt_mode", "container", true);
    assert_prop(f, work, "include_in_backups", "True", true);
    assert_prop(f, work, "updateable", "False", true);
    assert_prop(f, work, "icon", "appvm-red", true);
    assert_prop(f, work, "name", "work", false);
    assert_prop(f, work, "qid", "2", false);
}

static void test_create_dispvm_defaults(void **state) {
    struct fixture *f = *state;
    make_family(f);
    struct qube *disp = app_find(&f->app, "disp");
    assert_non_null(disp);
    assert_int_equal(disp->klass, QUBE_DISPVM);
    assert_prop(f, disp, "template", "work", false);
    assert_prop(f, disp, "default_dispvm", "work", true);
    assert_prop(f, disp, "auto_cleanup", "False", true);
    assert_non_null(disp->props[P_DISPID]);
    assert_true(atoi(disp->props[P_DISPID]) > 0);
}

static void test_create_refusals(void **state) {
    struct fixture *f = *state;
    struct qerr err = {0};
    struct qube_spec appvm_no_tpl = {QUBE_APPVM, "work", "red", NULL, NULL};
    assert_int_equal(app_create(&f->app, &appvm_no_tpl, NULL, &err), -1);
    assert_string_equal(err.exc, EXC_VALUE);
    struct qube_spec dup = {QUBE_TEMPLATEVM, "dom0", "red", NULL, NULL};
    assert_int_equal(app_create(&f->app, &dup, NULL, &err), -1);
    assert_string_equal(err.exc, EXC_VM_EXISTS);
    struct qube_spec badlabel = {QUBE_TEMPLATEVM, "tpl", "pink", NULL, NULL};
    assert_int_equal(app_create(&f->app, &badlabel, NULL, &err), -1);
    assert_string_equal(err.exc, EXC_LABEL_NOT_FOUND);
    struct qube_spec dispvm_of_tpl = {QUBE_DISPVM, "d", "red", "dom0", NULL};
    assert_int_equal(app_create(&f->app, &dispvm_of_tpl, NULL, &err), -1);
    assert_string_equal(err.exc, EXC_PROPERTY_VALUE);
    assert_int_equal(f->app.n_qubes, 1);
    assert_string_equal(events(f), "");
}

static void test_prop_set_reset(void **state) {
    struct fixture *f = *state;
    make_family(f);
    struct qube *work = app_find(&f->app, "work");
    struct qerr err = {0};
    assert_int_equal(set_prop(f, work, "memory", "800", &err), 0);
    assert_prop(f, work, "memory", "800", false);
    assert_int_equal(set_prop(f, work, "debug", "on", &err), 0);
    assert_prop(f, work, "debug", "True", false);
    const struct prop_def *def = app_prop_def(work, "memory", &err);
    assert_int_equal(app_prop_reset(&f->app, work, def, &err), 0);
    assert_prop(f, work, "memory", "400", true);
}

static void test_prop_write_refusals(void **state) {
    struct fixture *f = *state;
    make_family(f);
    struct qube *work = app_find(&f->app, "work");
    struct qerr err = {0};
    assert_int_equal(set_prop(f, work, "name", "other", &err), -1);
    assert_string_equal(err.exc, EXC_PROPERTY_VALUE);
    assert_int_equal(set_prop(f, work, "netvm", "tpl", &err), -1);
    assert_int_equal(set_prop(f, work, "template", "nosuch", &err), -1);
    assert_string_equal(err.exc, EXC_PROPERTY_VALUE);
    assert_int_equal(app_prop_reset(&f->app, work, &PROP_DEFS[P_TEMPLATE], &err), -1);
    assert_int_equal(set_prop(f, work, "template_for_dispvms", "False", &err), -1);
    assert_string_equal(err.exc, EXC_VM_IN_USE);
    assert_string_equal(events(f), "");
}

static void test_globals(void **state) {
    struct fixture *f = *state;
    make_family(f);
    struct qerr err = {0};
    const struct prop_def *def = app_global_def("default_dispvm", &err);
    char buf[64];
    bool is_default;
    assert_string_equal(app_global_get(&f->app, def, buf, sizeof(buf), &is_default), "");
    assert_true(is_default);
    assert_int_equal(app_global_set(&f->app, def, "tpl", &err), -1); /* not a dvm template */
    set_global(f, "default_dispvm", "work");
    assert_string_equal(app_global_get(&f->app, def, buf, sizeof(buf), &is_default), "work");
    assert_false(is_default);
    assert_prop(f, app_find(&f->app, "tpl"), "default_dispvm", "work", true);
    assert_null(app_global_def("nosuch", &err));
    assert_string_equal(err.exc, EXC_NO_SUCH_PROPERTY);
}

static void test_remove_refused_for_dependents(void **state) {
    struct fixture *f = *state;
    make_family(f);
    set_global(f, "default_dispvm", "work");
    strbuf_reset(&f->events);
    struct qerr err = {0};
    assert_int_equal(app_remove(&f->app, app_find(&f->app, "tpl"), &err), -1);
    assert_string_equal(err.exc, EXC_VM_IN_USE);
    assert_non_null(strstr(err.msg, "work:template"));
    assert_int_equal(app_remove(&f->app, app_find(&f->app, "work"), &err), -1);
    assert_non_null(strstr(err.msg, "@GLOBAL:default_dispvm"));
    assert_non_null(strstr(err.msg, "disp:template"));
    assert_int_equal(app_remove(&f->app, app_dom0(&f->app), &err), -1);
    assert_string_equal(err.exc, EXC_VM_IN_USE);
    assert_int_equal(f->app.n_qubes, 4);
    assert_string_equal(events(f), "");
}

static void test_remove(void **state) {
    struct fixture *f = *state;
    make_family(f);
    struct qerr err = {0};
    assert_int_equal(app_remove(&f->app, app_find(&f->app, "disp"), &err), 0);
    assert_null(app_find(&f->app, "disp"));
    assert_string_equal(events(f), "|domain-pre-delete|vm=disp\n|domain-delete|vm=disp\n");
    reopen(f);
    assert_null(app_find(&f->app, "disp"));
    assert_int_equal(f->app.n_qubes, 3);
}

static void test_events_property_set(void **state) {
    struct fixture *f = *state;
    make_family(f);
    struct qerr err = {0};
    assert_int_equal(set_prop(f, app_find(&f->app, "work"), "label", "green", &err), 0);
    assert_string_equal(events(f),
                        "work|property-pre-set:label|name=label,newvalue=green,oldvalue=red\n"
                        "work|property-reset:icon|name=icon\n"
                        "work|property-set:label|name=label,newvalue=green,oldvalue=red\n");
}

static void test_events_property_reset_vm(void **state) {
    struct fixture *f = *state;
    make_family(f);
    struct qube *work = app_find(&f->app, "work");
    struct qerr err = {0};
    assert_int_equal(set_prop(f, work, "default_dispvm", "work", &err), -1); /* own */
    assert_int_equal(set_prop(f, app_find(&f->app, "tpl"), "default_dispvm", "work", &err), 0);
    strbuf_reset(&f->events);
    const struct prop_def *def = app_prop_def(app_find(&f->app, "tpl"), "default_dispvm", &err);
    assert_int_equal(app_prop_reset(&f->app, app_find(&f->app, "tpl"), def, &err), 0);
    assert_string_equal(events(f),
                        "tpl|property-pre-reset:default_dispvm|name=default_dispvm,oldvalue=work\n"
                        "tpl|property-reset:default_dispvm|name=default_dispvm,oldvalue=work\n");
}

static void test_events_features_tags(void **state) {
    struct fixture *f = *state;
    make_family(f);
    struct qube *work = app_find(&f->app, "work");
    struct qerr err = {0};
    assert_int_equal(app_feature_set(&f->app, work, "foo", "bar", &err), 0);
    assert_int_equal(app_feature_set(&f->app, work, "foo", "baz", &err), 0);
    assert_int_equal(app_feature_remove(&f->app, work, "foo", &err), 0);
    assert_int_equal(app_feature_remove(&f->app, work, "foo", &err), -1);
    assert_string_equal(err.exc, EXC_FEATURE_NOT_FOUND);
    assert_int_equal(app_tag_add(&f->app, work, "t1", &err), 0);
    assert_int_equal(app_tag_add(&f->app, work, "t1", &err), 0); /* no second event */
    assert_int_equal(app_tag_remove(&f->app, work, "t1", &err), 0);
    assert_string_equal(events(f),
                        "work|domain-feature-pre-set:foo|feature=foo,value=bar\n"
                        "work|domain-feature-set:foo|feature=foo,value=bar\n"
                        "work|domain-feature-pre-set:foo|feature=foo,value=baz,oldvalue=bar\n"
                        "work|domain-feature-set:foo|feature=foo,value=baz,oldvalue=bar\n"
                        "work|domain-feature-pre-delete:foo|feature=foo\n"
                        "work|domain-feature-delete:foo|feature=foo\n"
                        "work|domain-tag-add:t1|tag=t1\n"
                        "work|domain-tag-delete:t1|tag=t1\n");
}

static void test_feature_check_with_template(void **state) {
    struct fixture *f = *state;
    make_family(f);
    struct qerr err = {0};
    assert_int_equal(app_feature_set(&f->app, app_find(&f->app, "tpl"), "a", "T", &err), 0);
    assert_int_equal(app_feature_set(&f->app, app_dom0(&f->app), "b", "D", &err), 0);
    struct qube *disp = app_find(&f->app, "disp");
    assert_string_equal(app_feature_check(&f->app, disp, "a", FEATURE_FALLBACK_TEMPLATE), "T");
    assert_null(app_feature_check(&f->app, disp, "a", 0));
    assert_null(app_feature_check(&f->app, disp, "b", FEATURE_FALLBACK_TEMPLATE));
    assert_string_equal(app_feature_check(&f->app, disp, "b",
                                          FEATURE_FALLBACK_TEMPLATE | FEATURE_FALLBACK_ADMINVM),
                        "D");
}

static void test_failed_validation_changes_nothing(void **state) {
    struct fixture *f = *state;
    make_family(f);
    struct qube *work = app_find(&f->app, "work");
    struct qerr err = {0};
    assert_int_equal(set_prop(f, work, "memory", "abc", &err), -1);
    assert_string_equal(err.exc, EXC_VALUE);
    assert_int_equal(set_prop(f, work, "label", "pink", &err), -1);
    assert_int_equal(set_prop(f, work, "virt_mode", "xen", &err), -1);
    assert_int_equal(set_prop(f, work, "nosuch", "1", &err), -1);
    assert_string_equal(events(f), "");
    reopen(f);
    work = app_find(&f->app, "work");
    assert_prop(f, work, "memory", "400", true);
    assert_prop(f, work, "label", "red", false);
    assert_prop(f, work, "virt_mode", "container", true);
}

static void test_reopen_restores_everything(void **state) {
    struct fixture *f = *state;
    make_family(f);
    struct qube *work = app_find(&f->app, "work");
    struct qerr err = {0};
    char uuid[37];
    memcpy(uuid, work->uuid, sizeof(uuid));
    assert_int_equal(set_prop(f, work, "memory", "1234", &err), 0);
    assert_int_equal(app_feature_set(&f->app, work, "foo", "bar", &err), 0);
    assert_int_equal(app_tag_add(&f->app, work, "t1", &err), 0);
    set_global(f, "default_dispvm", "work");
    reopen(f);
    work = app_find(&f->app, "work");
    assert_non_null(work);
    assert_string_equal(work->uuid, uuid);
    assert_int_equal(work->qid, 2);
    assert_prop(f, work, "memory", "1234", false);
    assert_prop(f, work, "template_for_dispvms", "True", false);
    assert_string_equal(strmap_get(&work->features, "foo"), "bar");
    assert_non_null(strmap_get(&work->tags, "t1"));
    assert_string_equal(f->app.globals[G_DEFAULT_DISPVM], "work");
    assert_int_equal(app_find(&f->app, "disp")->klass, QUBE_DISPVM);
    assert_int_equal(f->app.n_qubes, 4);
}

static void test_qid_reused_after_remove(void **state) {
    struct fixture *f = *state;
    struct qerr err = {0};
    create(f, QUBE_TEMPLATEVM, "a", "red", NULL);
    create(f, QUBE_TEMPLATEVM, "b", "red", NULL);
    assert_int_equal(app_remove(&f->app, app_find(&f->app, "a"), &err), 0);
    struct qube *c = create(f, QUBE_TEMPLATEVM, "c", "red", NULL);
    assert_int_equal(c->qid, 1);
    assert_int_equal(c->features.n, 0);
}

/* app_open closes the app itself when loading fails, and dispenserd's error path
 * closes it again: the second close must be harmless. */
static void test_app_close_after_failed_open_is_safe(void **state) {
    struct fixture *f = *state;
    set_global(f, "default_qrexec_timeout", "30");
    app_close(&f->app);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "DELETE FROM qubes WHERE qid = 0", NULL, NULL, NULL), 0);
    sqlite3_close(db);
    struct qerr err = {0};
    f->app = (struct app){0};
    assert_int_equal(app_open(&f->app, f->db, &err), -1);
    assert_string_equal(err.exc, EXC_QUBES);
    bool all_reset = true;
    for (int i = 0; i < GPROP_COUNT; i++) {
        if (f->app.globals[i])
            all_reset = false;
        f->app.globals[i] = NULL; /* already freed: keep the teardown from freeing again */
    }
    assert_true(all_reset);
}

/* A batch whose commit fails leaves memory as the database has it: what the batch
 * created is gone, what it removed is back, features, tags and properties are as before
 * (the failure here: a write for a qube the database does not have, which aborts the
 * whole transaction as a full disk would). */
static void check_as_before(struct fixture *f) {
    assert_null(app_find(&f->app, "n"));
    struct qube *a = app_find(&f->app, "a"), *b = app_find(&f->app, "b");
    assert_non_null(a);
    assert_non_null(b);
    assert_null(strmap_get(&a->features, "f"));
    assert_string_equal(strmap_get(&a->features, "kept"), "old");
    assert_null(strmap_get(&a->tags, "tg"));
    assert_non_null(strmap_get(&a->tags, "created-by-dom0"));
    assert_prop(f, a, "label", "red", false);
}

static void test_failed_batch_is_taken_back(void **state) {
    struct fixture *f = *state;
    struct qerr err = {0};
    create(f, QUBE_TEMPLATEVM, "t", "black", NULL);
    struct qube *a = create(f, QUBE_APPVM, "a", "red", "t");
    struct qube *b = create(f, QUBE_APPVM, "b", "red", "t");
    assert_int_equal(app_feature_set(&f->app, a, "kept", "old", &err), 0);

    assert_int_equal(app_batch_begin_ephemeral(&f->app, &err), 0);
    create(f, QUBE_APPVM, "n", "green", "t");
    assert_int_equal(app_feature_set(&f->app, a, "f", "1", &err), 0);
    assert_int_equal(app_feature_remove(&f->app, a, "kept", &err), 0);
    assert_int_equal(app_tag_add(&f->app, a, "tg", &err), 0);
    assert_int_equal(app_tag_remove(&f->app, a, "created-by-dom0", &err), 0);
    assert_int_equal(app_prop_set(&f->app, a, app_prop_def(a, "label", &err), "blue", &err), 0);
    assert_int_equal(app_remove(&f->app, b, &err), 0);
    struct qube ghost = {.qid = 4242, .name = "ghost"};
    assert_int_equal(app_feature_set(&f->app, &ghost, "x", "y", &err), -1);
    strmap_free(&ghost.features);
    assert_int_equal(app_batch_end(&f->app, &err), -1);
    assert_string_equal(err.exc, EXC_QUBES);

    check_as_before(f);
    assert_non_null(strstr(events(f), "|domain-delete|vm=n\n"));
    reopen(f); /* the database agrees */
    check_as_before(f);
}

/* The same batch saved: the removed qube is freed at the commit, not before. */
static void test_saved_batch_keeps_its_changes(void **state) {
    struct fixture *f = *state;
    struct qerr err = {0};
    create(f, QUBE_TEMPLATEVM, "t", "black", NULL);
    struct qube *a = create(f, QUBE_APPVM, "a", "red", "t");
    struct qube *b = create(f, QUBE_APPVM, "b", "red", "t");
    assert_int_equal(app_batch_begin(&f->app, &err), 0);
    create(f, QUBE_APPVM, "n", "green", "t");
    assert_int_equal(app_feature_set(&f->app, a, "f", "1", &err), 0);
    assert_int_equal(app_remove(&f->app, b, &err), 0);
    assert_int_equal(app_batch_end(&f->app, &err), 0);
    reopen(f);
    assert_non_null(app_find(&f->app, "n"));
    assert_null(app_find(&f->app, "b"));
    assert_string_equal(strmap_get(&app_find(&f->app, "a")->features, "f"), "1");
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
int main(void) {
    const struct CMUnitTest tests[] = {
        T(test_fresh_has_dom0),
        T(test_lookup_errors),
        T(test_create_templatevm),
        T(test_create_appvm_defaults),
        T(test_create_dispvm_defaults),
        T(test_create_refusals),
        T(test_prop_set_reset),
        T(test_prop_write_refusals),
        T(test_globals),
        T(test_remove_refused_for_dependents),
        T(test_remove),
        T(test_events_property_set),
        T(test_events_property_reset_vm),
        T(test_events_features_tags),
        T(test_feature_check_with_template),
        T(test_failed_validation_changes_nothing),
        T(test_reopen_restores_everything),
        T(test_qid_reused_after_remove),
        T(test_app_close_after_failed_open_is_safe),
        T(test_failed_batch_is_taken_back),
        T(test_saved_batch_keeps_its_changes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
