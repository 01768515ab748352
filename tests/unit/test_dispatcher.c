/* The dispatcher, the daemon's side of the engines (src/daemon/dispatcher.c), against fake engines: power
 * states and events, the choice of engine by virt_mode, exits, guards, removal and
 * restart recovery. The contract every engine must keep is what these tests assume. */
#include "daemon_fixture.h"

static const char *const ONE[] = {"container", NULL};
static const char *const TWO[] = {"container", "qemu", NULL};

static int setup_one(void **state) {
    struct df *f = df_new(ONE);
    df_make_qubes(f);
    *state = f;
    return 0;
}

static int setup_two(void **state) {
    struct df *f = df_new(TWO);
    df_make_qubes(f);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    df_free(*state);
    return 0;
}

static struct qube *qube(struct df *f, const char *name) {
    struct qube *q = app_find(&f->app, name);
    assert_non_null(q);
    return q;
}

static void start_and_wait(struct df *f, const char *name) {
    struct qerr err = {0};
    struct df_done d = {0};
    assert_int_equal(dispatcher_start(f->dispatcher, qube(f, name), df_done_cb, &d, &err), 0);
    assert_true(df_run_until(f, df_done_called, &d));
    assert_int_equal(d.r, 0);
    assert_string_equal(df_power(f, name), "Running");
}

/* ---- start ---- */

static void test_start_runs_with_events(void **state) {
    struct df *f = *state;
    struct qerr err = {0};
    struct df_done d = {0};
    assert_int_equal(dispatcher_start(f->dispatcher, qube(f, "work"), df_done_cb, &d, &err), 0);
    /* under way until the engine says it is ready */
    assert_string_equal(df_power(f, "work"), "Transient");
    assert_true(df_has_event(f, "work|domain-pre-start|start_guid=False\n"));
    assert_false(df_has_event(f, "work|domain-start|"));
    assert_true(df_run_until(f, df_done_called, &d));
    assert_int_equal(d.calls, 1);
    assert_int_equal(d.r, 0);
    assert_string_equal(df_power(f, "work"), "Running");
    assert_true(df_has_event(f, "work|domain-start|start_guid=False\n"));
    assert_int_equal(fake_calls(f->fakes[0], FAKE_START, "work"), 1);
    assert_int_equal(fake_power(f->fakes[0], "work"), BACKEND_RUNNING);
    assert_false(fake_started_background(f->fakes[0], "work"));
}

/* A container start that someone waits for completes inside start(): the same result. */
static void test_start_done_before_return(void **state) {
    struct df *f = *state;
    struct qerr err = {0};
    struct df_done d = {0};
    fake_plan_start(f->fakes[0], FAKE_START_OK_SYNC, NULL);
    assert_int_equal(dispatcher_start(f->dispatcher, qube(f, "work"), df_done_cb, &d, &err), 0);
    assert_int_equal(d.calls, 1);
    assert_string_equal(df_power(f, "work"), "Running");
    assert_true(df_has_event(f, "work|domain-start|"));
}

/* An engine that cannot link its qubes (no net_attach: the fake, qemu today) starts a
 * qube whose netvm is set, without network, its netvm first; it is not refused. */
static void test_netvm_on_an_engine_without_links(void **state) {
    struct df *f = *state;
    df_create(f, QUBE_APPVM, "net", "tpl");
    df_set_prop(f, "net", "provides_network", "True");
    df_set_prop(f, "work", "netvm", "net");
    start_and_wait(f, "work");
    assert_string_equal(df_power(f, "net"), "Running");
    assert_int_equal(fake_calls(f->fakes[0], FAKE_START, "net"), 1);
}

static void test_start_fails_later(void **state) {
    struct df *f = *state;
    struct qerr err = {0};
    struct df_done d = {0};
    fake_plan_start(f->fakes[0], FAKE_START_FAIL, "the agent did not answer in time");
    assert_int_equal(dispatcher_start(f->dispatcher, qube(f, "work"), df_done_cb, &d, &err), 0);
    assert_true(df_run_until(f, df_done_called, &d));
    assert_int_equal(d.r, -1);
    assert_string_equal(d.msg, "the agent did not answer in time");
    assert_string_equal(df_power(f, "work"), "Halted");
    assert_true(df_has_event(f, "work|domain-start-failed|reason=the agent did not answer in "
                                "time\n"));
    assert_false(df_has_event(f, "work|domain-start|"));
    assert_int_equal(fake_power(f->fakes[0], "work"), BACKEND_HALTED);
}

static void test_start_refused_at_once(void **state) {
    struct df *f = *state;
    struct qerr err = {0};
    struct df_done d = {0};
    fake_fail_next(f->fakes[0], FAKE_START, "cannot prepare the volumes");
    assert_int_equal(dispatcher_start(f->dispatcher, qube(f, "work"), df_done_cb, &d, &err), -1);
    assert_string_equal(err.exc, EXC_QUBES);
    assert_string_equal(err.msg, "cannot prepare the volumes");
    assert_int_equal(d.calls, 0); /* a refusal is returned, never also called back */
    assert_string_equal(df_power(f, "work"), "Halted");
    assert_true(df_has_event(f, "work|domain-pre-start|"));
    assert_true(df_has_event(f, "work|domain-start-failed|reason=cannot prepare the volumes\n"));
    /* and it can be started afterwards */
    start_and_wait(f, "work");
}

static void test_start_twice_refused(void **state) {
    struct df *f = *state;
    struct qerr err = {0};
    fake_plan_start(f->fakes[0], FAKE_START_HANG, NULL);
    assert_int_equal(dispatcher_start(f->dispatcher, qube(f, "work"), NULL, NULL, &err), 0);
    assert_int_equal(dispatcher_start(f->dispatcher, qube(f, "work"), NULL, NULL, &err), -1);
    assert_string_equal(err.exc, EXC_VM_NOT_HALTED);
    assert_int_equal(fake_calls(f->fakes[0], FAKE_START, "work"), 1);
    /* a start that hangs holds the qube in Transient until the engine answers */
    df_run_for(f, 50000);
    assert_string_equal(df_power(f, "work"), "Transient");
    assert_int_equal(fake_finish_start(f->fakes[0], "work", 0, NULL), 0);
    assert_string_equal(df_power(f, "work"), "Running");
}

/* The engine gets the qube's "<virt_mode>-KEY" features as options, nearest first. */
static void test_start_passes_engine_options(void **state) {
    struct df *f = *state;
    df_set_feature(f, "tpl", "container-init", "/sbin/init");
    df_set_feature(f, "tpl", "container-x", "from-tpl");
    df_set_feature(f, "work", "container-x", "own");
    df_set_feature(f, "work", "qemu-kernel", "not-mine");
    start_and_wait(f, "work");
    const char *opts = fake_last_options(f->fakes[0], "work");
    assert_non_null(opts);
    assert_non_null(strstr(opts, "init=/sbin/init"));
    assert_non_null(strstr(opts, "x=own"));
    assert_null(strstr(opts, "from-tpl"));
    assert_null(strstr(opts, "kernel"));
}

/* ---- the engine by virt_mode ---- */

static void test_virt_mode_selects_engine(void **state) {
    struct df *f = *state;
    struct backend *container = f->fakes[0], *qemu = f->fakes[1];
    df_set_prop(f, "work", "virt_mode", "qemu");
    start_and_wait(f, "work");
    start_and_wait(f, "dvm");
    assert_int_equal(fake_calls(qemu, FAKE_START, "work"), 1);
    assert_int_equal(fake_calls(container, FAKE_START, "work"), 0);
    assert_int_equal(fake_calls(container, FAKE_START, "dvm"), 1);
    assert_int_equal(fake_calls(qemu, FAKE_START, "dvm"), 0);
    /* every later call about it goes to the same engine */
    struct qerr err = {0};
    assert_int_equal(dispatcher_pause(f->dispatcher, qube(f, "work"), &err), 0);
    assert_int_equal(fake_calls(qemu, FAKE_PAUSE, "work"), 1);
    assert_int_equal(fake_calls(container, FAKE_PAUSE, NULL), 0);
    assert_int_equal(dispatcher_kill(f->dispatcher, qube(f, "work"), &err), 0);
    assert_int_equal(fake_calls(qemu, FAKE_KILL, "work"), 1);
    assert_int_equal(fake_calls(container, FAKE_KILL, NULL), 0);
    assert_string_equal(df_power(f, "work"), "Halted");
}

/* A disposable inherits its template's virt_mode, and with it the engine. */
static void test_virt_mode_inherited_by_disposable(void **state) {
    struct df *f = *state;
    df_set_prop(f, "dvm", "virt_mode", "qemu");
    struct qerr err = {0};
    struct qube *disp = disposable_create(&f->app, qube(f, "dvm"), "work", &err);
    assert_non_null(disp);
    char name[32];
    snprintf(name, sizeof(name), "%s", disp->name);
    start_and_wait(f, name);
    assert_int_equal(fake_calls(f->fakes[1], FAKE_START, name), 1);
    assert_int_equal(fake_calls(f->fakes[0], FAKE_START, NULL), 0);
}

static void test_virt_mode_without_engine(void **state) {
    struct df *f = *state; /* only "container" here */
    df_set_prop(f, "work", "virt_mode", "qemu");
    struct qerr err = {0};
    struct df_done d = {0};
    assert_int_equal(dispatcher_start(f->dispatcher, qube(f, "work"), df_done_cb, &d, &err), -1);
    assert_string_equal(err.exc, EXC_QUBES);
    assert_string_equal(err.msg, "Qube 'work': virt_mode=qemu is not available: this "
                                 "dispenserd has no such engine");
    assert_int_equal(d.calls, 0);
    assert_string_equal(df_power(f, "work"), "Halted");
    assert_int_equal(fake_calls(f->fakes[0], FAKE_START, NULL), 0);
    struct backend_volume_info vi = {0};
    assert_int_equal(dispatcher_volume_info(f->dispatcher, qube(f, "work"), "root", &vi, &err), -1);
    assert_non_null(strstr(err.msg, "virt_mode=qemu is not available"));
    /* removal still works: the definition goes, no engine has volumes to remove */
    assert_int_equal(dispatcher_remove(f->dispatcher, qube(f, "work"), &err), 0);
    assert_null(app_find(&f->app, "work"));
    assert_int_equal(fake_calls(f->fakes[0], FAKE_REMOVE_VOLUMES, NULL), 0);
}

/* An engine that cannot run here refuses with its reason, named after the qube. */
static void test_unavailable_engine(void **state) {
    struct df *f = df_new(NULL);
    struct backend *table[] = {fake_backend_new(f->loop, "container"),
                               backend_unavailable_new(f->loop, "qemu", "no /dev/kvm")};
    dispatcher_free(f->dispatcher);
    f->dispatcher = dispatcher_new(&f->app, table, 2);
    df_make_qubes(f);
    df_set_prop(f, "work", "virt_mode", "qemu");
    struct qerr err = {0};
    assert_int_equal(dispatcher_start(f->dispatcher, qube(f, "work"), NULL, NULL, &err), -1);
    assert_string_equal(err.msg, "Qube 'work': virt_mode=qemu is not available: no /dev/kvm");
    assert_string_equal(df_power(f, "work"), "Halted");
    assert_true(df_has_event(f, "work|domain-start-failed|reason=Qube 'work': virt_mode=qemu "
                                "is not available: no /dev/kvm\n"));
    start_and_wait(f, "dvm"); /* the other engine is unaffected */
    df_free(f);
}

/* ---- exits ---- */

struct halted_log {
    struct app *app;
    char names[256];
    bool present; /* the qube was still in the model when the hook ran */
};

static void on_halted(void *userdata, const char *name) {
    struct halted_log *h = userdata;
    snprintf(h->names + strlen(h->names), sizeof(h->names) - strlen(h->names), "%s ", name);
    h->present = app_find(h->app, name) != NULL;
}

static void test_exit_halts(void **state) {
    struct df *f = *state;
    struct halted_log h = {&f->app, "", false};
    dispatcher_set_halted_hook(f->dispatcher, on_halted, &h);
    start_and_wait(f, "work");
    assert_int_equal(fake_crash(f->fakes[0], "work", 139), 0);
    assert_string_equal(df_power(f, "work"), "Halted");
    assert_true(df_has_event(f, "work|domain-shutdown|\n"));
    assert_string_equal(h.names, "work ");
    assert_non_null(app_find(&f->app, "work")); /* a named qube stays */
    start_and_wait(f, "work");                  /* and starts again */
}

static void test_exit_removes_unnamed_disposable(void **state) {
    struct df *f = *state;
    struct halted_log h = {&f->app, "", false};
    dispatcher_set_halted_hook(f->dispatcher, on_halted, &h);
    struct qerr err = {0};
    struct qube *disp = disposable_create(&f->app, qube(f, "dvm"), "work", &err);
    assert_non_null(disp);
    char name[32];
    snprintf(name, sizeof(name), "%s", disp->name);
    start_and_wait(f, name);
    assert_int_equal(fake_crash(f->fakes[0], name, 137), 0);
    assert_null(app_find(&f->app, name));
    assert_int_equal(fake_calls(f->fakes[0], FAKE_REMOVE_VOLUMES, name), 1);
    char line[64];
    snprintf(line, sizeof(line), "%s|domain-shutdown|\n", name);
    assert_true(df_has_event(f, line));
    snprintf(line, sizeof(line), "%s ", name);
    assert_string_equal(h.names, line);
    assert_true(h.present); /* told while it is still there (a preload is seen as one) */
}

/* An init that dies during start-up failed to start; it did not shut down. */
static void test_exit_during_start_is_a_failed_start(void **state) {
    struct df *f = *state;
    struct qerr err = {0};
    struct df_done d = {0};
    fake_plan_start(f->fakes[0], FAKE_START_HANG, NULL);
    assert_int_equal(dispatcher_start(f->dispatcher, qube(f, "work"), df_done_cb, &d, &err), 0);
    assert_int_equal(fake_crash(f->fakes[0], "work", 1), 0);
    assert_int_equal(d.calls, 1);
    assert_int_equal(d.r, -1);
    assert_string_equal(df_power(f, "work"), "Halted");
    assert_true(df_has_event(f, "work|domain-start-failed|"));
    assert_false(df_has_event(f, "work|domain-shutdown|"));
}

static void test_shutdown(void **state) {
    struct df *f = *state;
    struct qerr err = {0};
    struct df_done d = {0};
    assert_int_equal(dispatcher_shutdown(f->dispatcher, qube(f, "work"), false, NULL, NULL, &err),
                     -1);
    assert_string_equal(err.exc, EXC_VM_NOT_STARTED);
    start_and_wait(f, "work");
    assert_int_equal(dispatcher_shutdown(f->dispatcher, qube(f, "work"), false, df_done_cb, &d,
                                         &err),
                     0);
    assert_string_equal(df_power(f, "work"), "Halting");
    assert_true(df_has_event(f, "work|domain-pre-shutdown|force=False\n"));
    assert_true(df_run_until(f, df_done_called, &d));
    assert_int_equal(d.r, 0);
    assert_string_equal(df_power(f, "work"), "Halted");
    assert_true(df_has_event(f, "work|domain-shutdown|\n"));
}

/* A refused shutdown changes nothing. */
static void test_shutdown_refused(void **state) {
    struct df *f = *state;
    struct qerr err = {0};
    start_and_wait(f, "work");
    fake_fail_next(f->fakes[0], FAKE_SHUTDOWN, "the agent is gone");
    assert_int_equal(dispatcher_shutdown(f->dispatcher, qube(f, "work"), true, NULL, NULL, &err),
                     -1);
    assert_string_equal(err.msg, "the agent is gone");
    assert_string_equal(df_power(f, "work"), "Running");
}

/* ---- state guards ---- */

static void test_pause_unpause_kill_guards(void **state) {
    struct df *f = *state;
    struct backend *b = f->fakes[0];
    struct qerr err = {0};
    struct qube *work = qube(f, "work");
    assert_int_equal(dispatcher_pause(f->dispatcher, work, &err), -1);
    assert_string_equal(err.exc, EXC_VM_NOT_RUNNING);
    assert_int_equal(dispatcher_unpause(f->dispatcher, work, &err), -1);
    assert_string_equal(err.exc, EXC_VM_NOT_PAUSED);
    assert_int_equal(dispatcher_kill(f->dispatcher, work, &err), -1);
    assert_string_equal(err.exc, EXC_VM_NOT_STARTED);
    assert_int_equal(dispatcher_kill_nowait(f->dispatcher, work, &err), -1);
    assert_string_equal(err.exc, EXC_VM_NOT_STARTED);
    /* the guards answer before the engine is asked */
    assert_int_equal(fake_calls(b, FAKE_PAUSE, NULL) + fake_calls(b, FAKE_UNPAUSE, NULL) +
                         fake_calls(b, FAKE_KILL, NULL) + fake_calls(b, FAKE_KILL_NOWAIT, NULL),
                     0);

    start_and_wait(f, "work");
    assert_int_equal(dispatcher_unpause(f->dispatcher, work, &err), -1);
    assert_string_equal(err.exc, EXC_VM_NOT_PAUSED);
    assert_int_equal(dispatcher_pause(f->dispatcher, work, &err), 0);
    assert_string_equal(power_state_name(work->power), "Paused");
    assert_true(df_has_event(f, "work|domain-paused|\n"));
    assert_int_equal(fake_power(b, "work"), BACKEND_PAUSED);
    assert_int_equal(dispatcher_pause(f->dispatcher, work, &err), -1);
    assert_string_equal(err.exc, EXC_VM_NOT_RUNNING);
    assert_int_equal(dispatcher_unpause(f->dispatcher, work, &err), 0);
    assert_string_equal(power_state_name(work->power), "Running");
    assert_true(df_has_event(f, "work|domain-unpaused|\n"));

    /* the engine refuses: the state stays, no event */
    fake_fail_next(b, FAKE_PAUSE, "cannot freeze");
    assert_int_equal(dispatcher_pause(f->dispatcher, work, &err), -1);
    assert_string_equal(err.msg, "cannot freeze");
    assert_string_equal(power_state_name(work->power), "Running");

    assert_int_equal(dispatcher_kill(f->dispatcher, work, &err), 0);
    assert_string_equal(power_state_name(work->power), "Halted"); /* kill waits: halted on return */
    assert_true(df_has_event(f, "work|domain-shutdown|\n"));
}

static void test_kill_nowait_halts_later(void **state) {
    struct df *f = *state;
    struct qerr err = {0};
    start_and_wait(f, "work");
    assert_int_equal(dispatcher_kill_nowait(f->dispatcher, qube(f, "work"), &err), 0);
    assert_string_equal(df_power(f, "work"), "Running");
    DF_WAIT_POWER(f, "work", "Halted");
}

/* A paused qube can be killed; stats are for running qubes only. */
static void test_kill_paused_and_stats(void **state) {
    struct df *f = *state;
    struct qerr err = {0};
    struct backend_stats st;
    assert_int_equal(dispatcher_stats(f->dispatcher, qube(f, "work"), &st), -1);
    start_and_wait(f, "work");
    fake_set_memory_usage(f->fakes[0], 123 << 20);
    assert_int_equal(dispatcher_stats(f->dispatcher, qube(f, "work"), &st), 0);
    assert_int_equal(st.memory_bytes, 123 << 20);
    assert_int_equal(dispatcher_pause(f->dispatcher, qube(f, "work"), &err), 0);
    assert_int_equal(dispatcher_kill(f->dispatcher, qube(f, "work"), &err), 0);
    assert_string_equal(df_power(f, "work"), "Halted");
}

/* ---- volumes ---- */

static void test_remove_asks_own_engine(void **state) {
    struct df *f = *state;
    struct qerr err = {0};
    df_set_prop(f, "work", "virt_mode", "qemu");
    assert_int_equal(dispatcher_remove(f->dispatcher, qube(f, "work"), &err), 0);
    assert_null(app_find(&f->app, "work"));
    assert_int_equal(fake_calls(f->fakes[1], FAKE_REMOVE_VOLUMES, "work"), 1);
    assert_int_equal(fake_calls(f->fakes[0], FAKE_REMOVE_VOLUMES, NULL), 0);
    assert_int_equal(dispatcher_remove(f->dispatcher, qube(f, "dvm"), &err), 0);
    assert_int_equal(fake_calls(f->fakes[0], FAKE_REMOVE_VOLUMES, "dvm"), 1);
    assert_int_equal(fake_calls(f->fakes[1], FAKE_REMOVE_VOLUMES, "dvm"), 0);
}

/* The definition is gone even when the engine fails to remove the volumes (they belong
 * to no qube now: the next cleanup takes them). */
static void test_remove_volumes_failure_keeps_removal(void **state) {
    struct df *f = *state;
    struct qerr err = {0};
    fake_fail_next(f->fakes[0], FAKE_REMOVE_VOLUMES, "busy");
    assert_int_equal(dispatcher_remove(f->dispatcher, qube(f, "work"), &err), 0);
    assert_null(app_find(&f->app, "work"));
}

static void test_remove_in_use_refused(void **state) {
    struct df *f = *state;
    struct qerr err = {0};
    assert_int_equal(dispatcher_remove(f->dispatcher, qube(f, "tpl"), &err), -1);
    assert_string_equal(err.exc, EXC_VM_IN_USE);
    assert_int_equal(fake_calls(f->fakes[0], FAKE_REMOVE_VOLUMES, NULL), 0);
}

/* A DispVM's views: root from its template's template, private from its disposable
 * template; a new revision there makes a running one's views outdated. */
static void test_volume_info_views(void **state) {
    struct df *f = *state;
    struct qerr err = {0};
    struct qube *disp = disposable_create(&f->app, qube(f, "dvm"), "work", &err);
    char name[32];
    snprintf(name, sizeof(name), "%s", disp->name);
    start_and_wait(f, name);
    struct backend_volume_info vi = {0};
    assert_int_equal(dispatcher_volume_info(f->dispatcher, qube(f, name), "root", &vi, &err), 0);
    assert_true(vi.snap_on_start);
    assert_string_equal(vi.source_uuid, qube(f, "tpl")->uuid);
    assert_true(vi.in_use);
    assert_int_equal(vi.used_revision, vi.revision);
    assert_int_equal(dispatcher_volume_info(f->dispatcher, qube(f, name), "private", &vi, &err), 0);
    assert_string_equal(vi.source_uuid, qube(f, "dvm")->uuid);
    fake_bump_revision(f->fakes[0], qube(f, "dvm")->uuid, "private");
    assert_int_equal(dispatcher_volume_info(f->dispatcher, qube(f, name), "private", &vi, &err), 0);
    assert_int_equal(vi.revision, vi.used_revision + 1);
}

/* Template import: only into a halted qube; a commit makes a new revision. */
static void test_import(void **state) {
    struct df *f = *state;
    struct qerr err = {0};
    char path[256];
    struct backend_volume_info before = {0}, after = {0};
    assert_int_equal(dispatcher_volume_info(f->dispatcher, qube(f, "tpl"), "root", &before, &err),
                     0);
    start_and_wait(f, "tpl");
    assert_int_equal(dispatcher_import_begin(f->dispatcher, qube(f, "tpl"), "root", path,
                                             sizeof(path), &err),
                     -1);
    assert_string_equal(err.exc, EXC_VM_NOT_HALTED);
    assert_int_equal(fake_calls(f->fakes[0], FAKE_IMPORT_BEGIN, NULL), 0);
    assert_int_equal(dispatcher_kill(f->dispatcher, qube(f, "tpl"), &err), 0);
    assert_int_equal(dispatcher_import_begin(f->dispatcher, qube(f, "tpl"), "root", path,
                                             sizeof(path), &err),
                     0);
    assert_int_equal(dispatcher_import_end(f->dispatcher, qube(f, "tpl"), "root", true, &err), 0);
    assert_int_equal(dispatcher_volume_info(f->dispatcher, qube(f, "tpl"), "root", &after, &err),
                     0);
    assert_int_equal(after.revision, before.revision + 1);
}

/* ---- restart ---- */

static void test_recover_adopts_through_own_engine(void **state) {
    struct df *f = *state;
    struct backend *container = f->fakes[0], *qemu = f->fakes[1];
    struct qerr err = {0};
    df_set_prop(f, "work", "virt_mode", "qemu");
    struct qube *disp = disposable_create(&f->app, qube(f, "dvm"), "work", &err);
    char gone[32];
    snprintf(gone, sizeof(gone), "%s", disp->name);
    /* what still runs after a daemon restart: work (qemu, paused) and dvm (container);
     * the disposable died while the daemon was away; "stray" belongs to no qube */
    fake_set_running(qemu, "work", BACKEND_PAUSED);
    fake_set_running(container, "dvm", BACKEND_RUNNING);
    fake_set_running(container, "stray", BACKEND_RUNNING);
    dispatcher_recover(f->dispatcher);
    assert_string_equal(df_power(f, "work"), "Paused");
    assert_string_equal(df_power(f, "dvm"), "Running");
    assert_string_equal(df_power(f, "tpl"), "Halted");
    assert_int_equal(fake_calls(qemu, FAKE_ADOPT, "work"), 1);
    assert_int_equal(fake_calls(container, FAKE_ADOPT, "work"), 0);
    assert_int_equal(fake_calls(container, FAKE_ADOPT, "dvm"), 1);
    assert_int_equal(fake_calls(qemu, FAKE_ADOPT, "dvm"), 0);
    assert_int_equal(fake_calls(container, FAKE_ADOPT, "dom0"), 0);
    /* every engine cleans up, keeping every qube's uuid (whatever its engine) */
    assert_int_equal(fake_calls(container, FAKE_CLEANUP, NULL), 1);
    assert_int_equal(fake_calls(qemu, FAKE_CLEANUP, NULL), 1);
    assert_non_null(strstr(fake_last_cleanup_keep(container), qube(f, "work")->uuid));
    assert_non_null(strstr(fake_last_cleanup_keep(qemu), qube(f, "dvm")->uuid));
    assert_int_equal(fake_power(container, "stray"), BACKEND_HALTED);
    /* the dead disposable went the way it would have */
    assert_null(app_find(&f->app, gone));
    assert_int_equal(fake_calls(container, FAKE_REMOVE_VOLUMES, gone), 1);
    /* adopted qubes are driven as any other */
    assert_int_equal(dispatcher_unpause(f->dispatcher, qube(f, "work"), &err), 0);
    assert_int_equal(fake_calls(qemu, FAKE_UNPAUSE, "work"), 1);
}

/* ---- optional ops ---- */

static void test_optional_ops_missing(void **state) {
    struct df *f = *state;
    struct backend *b = f->fakes[0];
    fake_drop_optional(b);
    fake_drop_optional(f->fakes[1]);
    start_and_wait(f, "work");
    assert_int_equal(dispatcher_reclaim(f->dispatcher, qube(f, "work")), -ENOTSUP);
    assert_int_equal(dispatcher_foreground(f->dispatcher, qube(f, "work")), -ENOTSUP);
    assert_int_equal(dispatcher_memory_headroom_mib(f->dispatcher), -1);
    assert_int_equal(fake_calls(b, FAKE_RECLAIM, NULL) + fake_calls(b, FAKE_FOREGROUND, NULL), 0);
}

/* Suspend: reclaim then pause, shown as "Suspended"; Unpause refuses it, Resume wakes it;
 * a halt forgets it. */
static void test_suspend_resume(void **state) {
    struct df *f = *state;
    struct backend *b = f->fakes[0];
    struct qerr err = {0};
    struct qube *q = qube(f, "work");
    assert_int_equal(dispatcher_suspend(f->dispatcher, q, &err), -1);
    assert_string_equal(err.exc, EXC_VM_NOT_RUNNING);
    start_and_wait(f, "work");
    assert_int_equal(dispatcher_suspend(f->dispatcher, q, &err), 0);
    assert_int_equal(fake_calls(b, FAKE_RECLAIM, "work"), 1);
    assert_int_equal(fake_calls(b, FAKE_PAUSE, "work"), 1);
    assert_string_equal(qube_power_name(q), "Suspended");
    assert_int_equal(dispatcher_unpause(f->dispatcher, q, &err), -1);
    assert_string_equal(err.exc, EXC_VM_NOT_PAUSED);
    assert_int_equal(dispatcher_suspend(f->dispatcher, q, &err), -1);
    assert_int_equal(dispatcher_resume(f->dispatcher, q, &err), 0);
    assert_string_equal(qube_power_name(q), "Running");
    assert_int_equal(dispatcher_resume(f->dispatcher, q, &err), -1); /* not paused */
    assert_string_equal(err.exc, EXC_VM_NOT_PAUSED);
    assert_int_equal(dispatcher_suspend(f->dispatcher, q, &err), 0);
    assert_int_equal(dispatcher_kill(f->dispatcher, q, &err), 0);
    assert_string_equal(qube_power_name(q), "Halted");
}

/* An engine without block devices says so (QubesNotImplementedError), a halted qube is
 * not running; nothing is recorded either way. */
static void test_block_devices_unsupported(void **state) {
    struct df *f = *state;
    struct qerr err = {0};
    struct qube *q = qube(f, "work");
    struct block_attachment a = {.frontend = "work", .port_id = "loop0", .frontend_dev = "xvdi"};
    size_t n;
    assert_int_equal(dispatcher_block_attach(f->dispatcher, q, &a, &err), -1);
    assert_string_equal(err.exc, EXC_VM_NOT_RUNNING);
    start_and_wait(f, "work");
    assert_int_equal(dispatcher_block_attach(f->dispatcher, q, &a, &err), -1);
    assert_string_equal(err.exc, EXC_NOT_IMPLEMENTED);
    assert_int_equal(dispatcher_block_detach(f->dispatcher, q, "loop0", &err), -1);
    assert_string_equal(err.exc, EXC_DEVICE_NOT_ASSIGNED);
    dispatcher_block_attachments(f->dispatcher, &n);
    assert_int_equal(n, 0);
}

static void test_memory_headroom_tightest(void **state) {
    struct df *f = *state;
    assert_int_equal(dispatcher_memory_headroom_mib(f->dispatcher), -1); /* none limited */
    fake_set_headroom(f->fakes[0], 2048LL << 20);
    assert_int_equal(dispatcher_memory_headroom_mib(f->dispatcher), 2048);
    fake_set_headroom(f->fakes[1], 512LL << 20);
    assert_int_equal(dispatcher_memory_headroom_mib(f->dispatcher), 512);
    fake_drop_optional(f->fakes[1]);
    assert_int_equal(dispatcher_memory_headroom_mib(f->dispatcher), 2048);
}

/* ---- upcalls ---- */

static void test_upcall_without_router(void **state) {
    struct df *f = *state;
    start_and_wait(f, "work");
    assert_int_equal(fake_inject_upcall(f->fakes[0], "work", "dvm", "qubes.Filecopy"), 0);
    assert_string_equal(fake_upcall_replies(f->fakes[0]),
                        "failed -1 this dispenserd routes no qrexec calls\n");
}

#define ONE_(fn) cmocka_unit_test_setup_teardown(fn, setup_one, teardown)
#define TWO_(fn) cmocka_unit_test_setup_teardown(fn, setup_two, teardown)
int main(void) {
    const struct CMUnitTest tests[] = {
        ONE_(test_start_runs_with_events),
        ONE_(test_start_done_before_return),
        ONE_(test_netvm_on_an_engine_without_links),
        ONE_(test_start_fails_later),
        ONE_(test_start_refused_at_once),
        ONE_(test_start_twice_refused),
        ONE_(test_start_passes_engine_options),
        TWO_(test_virt_mode_selects_engine),
        TWO_(test_virt_mode_inherited_by_disposable),
        ONE_(test_virt_mode_without_engine),
        cmocka_unit_test(test_unavailable_engine),
        ONE_(test_exit_halts),
        ONE_(test_exit_removes_unnamed_disposable),
        ONE_(test_exit_during_start_is_a_failed_start),
        ONE_(test_shutdown),
        ONE_(test_shutdown_refused),
        ONE_(test_pause_unpause_kill_guards),
        ONE_(test_kill_nowait_halts_later),
        ONE_(test_kill_paused_and_stats),
        TWO_(test_remove_asks_own_engine),
        ONE_(test_remove_volumes_failure_keeps_removal),
        ONE_(test_remove_in_use_refused),
        ONE_(test_volume_info_views),
        ONE_(test_import),
        TWO_(test_recover_adopts_through_own_engine),
        TWO_(test_optional_ops_missing),
        TWO_(test_memory_headroom_tightest),
        ONE_(test_suspend_resume),
        ONE_(test_block_devices_unsupported),
        ONE_(test_upcall_without_router),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
