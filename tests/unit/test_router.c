/* The qrexec router's decisions (src/daemon/qrexec_router.c) against a fake engine: which
 * qube runs a call, when it is started, which disposable is made (or handed out) and
 * killed, how refusals and failures reach the caller, and calls coming up from qubes
 * through the policy. The host socket is bound in the test's temp dir; calls are made
 * directly with router_call, as the socket and the engines' uplinks do. */
#include "daemon_fixture.h"

#include <fcntl.h>

#include "memory.h"
#include "preload.h"
#include "qrexec_proto.h"
#include "qrexec_router.h"

static const char *const ONE[] = {"container", NULL};

struct rf {
    struct df *f;
    struct backend *fake;
    struct router *r;
    struct preload *p;
    char *policy_dir, *sock, *meminfo;
};

/* How a call ended, as its caller hears it. */
struct answer {
    int calls;
    uint32_t kind;
    int32_t status;
    char msg[256];
};

static void on_answer(void *ctx, uint32_t kind, int32_t status, const char *msg) {
    struct answer *a = ctx;
    a->calls++;
    a->kind = kind;
    a->status = status;
    snprintf(a->msg, sizeof(a->msg), "%s", msg ? msg : "");
}

static bool answered(void *ctx) { return ((struct answer *)ctx)->calls > 0; }

static void write_file(const char *dir, const char *name, const char *text) {
    char *path = tu_path(dir, name);
    FILE *fp = fopen(path, "we");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
    free(path);
}

static const char POLICY[] = "test.Echo * work dvm allow\n"
                             "test.Echo * work @dispvm:dvm allow\n"
                             "test.Redirect * work @default allow target=dvm user=alice\n"
                             "test.Echo * @anyvm @anyvm deny\n";

static void router_start(struct rf *t, bool with_preload) {
    if (with_preload) {
        struct memory_source mem = {t->meminfo, false};
        t->p = preload_new(t->f->loop, &t->f->app, t->f->dispatcher, &mem);
    }
    struct router_config cfg = {.policy_dir = t->policy_dir,
                                .socket_path = t->sock,
                                .runtime_dir = t->f->dir,
                                .socket_gid = (gid_t)-1,
                                .preload = t->p};
    struct qerr err = {0};
    t->r = router_new(t->f->loop, &t->f->app, t->f->dispatcher, &cfg, &err);
    if (!t->r)
        fail_msg("router_new: %s", err.msg);
}

static int setup(void **state) {
    struct rf *t = calloc(1, sizeof(*t));
    t->f = df_new(ONE);
    t->fake = t->f->fakes[0];
    df_make_qubes(t->f);
    df_set_feature(t->f, "dvm", "preload-dispvm-delay", "0");
    t->policy_dir = tu_path(t->f->dir, "policy");
    assert_int_equal(mkdir(t->policy_dir, 0700), 0);
    write_file(t->policy_dir, "50-test.policy", POLICY);
    t->sock = tu_path(t->f->dir, "qrexec.sock");
    t->meminfo = tu_path(t->f->dir, "meminfo");
    write_file(t->f->dir, "meminfo", "MemTotal: 67108864 kB\nMemAvailable: 33554432 kB\n");
    router_start(t, false);
    *state = t;
    return 0;
}

static int teardown(void **state) {
    struct rf *t = *state;
    router_free(t->r);
    preload_free(t->p);
    df_free(t->f);
    free(t->policy_dir);
    free(t->sock);
    free(t->meminfo);
    free(t);
    return 0;
}

/* A call as the host socket (source dom0) or an uplink (a qube) makes it. */
static void call(struct rf *t, const char *source, const char *target, const char *service,
                 struct answer *a) {
    int stdio[3];
    for (int i = 0; i < 3; i++)
        stdio[i] = open("/dev/null", O_RDWR | O_CLOEXEC);
    struct router_request req = {source, target, service, "", ""};
    router_call(t->r, &req, stdio, on_answer, a);
}

static void call_and_wait(struct rf *t, const char *source, const char *target, const char *service,
                          struct answer *a) {
    call(t, source, target, service, a);
    if (!df_run_until(t->f, answered, a))
        fail_msg("%s -> %s %s: no answer; engine log:\n%s", source, target, service,
                 fake_log(t->fake));
}

static void start_and_wait(struct rf *t, const char *name) {
    struct qerr err = {0};
    struct df_done d = {0};
    assert_int_equal(dispatcher_start(t->f->dispatcher, app_find(&t->f->app, name), df_done_cb, &d,
                                      &err),
                     0);
    assert_true(df_run_until(t->f, df_done_called, &d));
    assert_int_equal(d.r, 0);
}

/* The one disposable of dvm that exists, or "". */
static const char *a_disposable(struct rf *t) {
    for (size_t i = 0; i < t->f->app.n_qubes; i++)
        if (t->f->app.qubes[i]->klass == QUBE_DISPVM)
            return t->f->app.qubes[i]->name;
    return "";
}

static bool no_disposable(void *ctx) { return !*a_disposable(ctx); }

/* dom0 calls test.Echo in a new disposable of dvm, whose service runs until the test ends
 * it (fake_finish_exec); disp: the disposable, running. */
static void held_dispvm_call(struct rf *t, struct answer *a, char disp[32]) {
    fake_plan_exec(t->fake, true, 0);
    call(t, "dom0", "@dispvm:dvm", "test.Echo", a);
    snprintf(disp, 32, "%s", a_disposable(t));
    DF_WAIT_POWER(t->f, disp, "Running");
}

static bool upcall_replied(void *ctx) { return *fake_upcall_replies(ctx) != '\0'; }

#define WAIT_UPCALL_REPLY(t)                                                          \
    do {                                                                              \
        if (!df_run_until((t)->f, upcall_replied, (t)->fake))                         \
            fail_msg("no reply to the upcall; engine log:\n%s", fake_log((t)->fake)); \
    } while (0)

/* ---- from dom0 ---- */

/* (No user asked: the service runs as the target's default_user, "user".) */

static void test_dom0_call_starts_halted_target(void **state) {
    struct rf *t = *state;
    struct answer a = {0};
    fake_plan_exec(t->fake, false, 7);
    call_and_wait(t, "dom0", "work", "test.Echo+arg", &a);
    assert_int_equal(a.kind, QREXEC_EXITED);
    assert_int_equal(a.status, 7);
    assert_int_equal(fake_calls(t->fake, FAKE_START, "work"), 1);
    assert_false(fake_started_background(t->fake, "work")); /* a caller waits */
    assert_int_equal(fake_calls(t->fake, FAKE_EXEC, "work"), 1);
    assert_string_equal(fake_last_exec(t->fake),
                        "test.Echo+arg in work from dom0 for work user=user");
    assert_string_equal(df_power(t->f, "work"), "Running"); /* a named qube keeps running */
    /* running now: no second start */
    struct answer b = {0};
    call_and_wait(t, "dom0", "work", "test.Echo", &b);
    assert_int_equal(fake_calls(t->fake, FAKE_START, "work"), 1);
    assert_int_equal(fake_calls(t->fake, FAKE_EXEC, "work"), 2);
}

static void test_dom0_bad_targets_refused(void **state) {
    struct rf *t = *state;
    struct answer a = {0};
    call_and_wait(t, "dom0", "nosuch", "test.Echo", &a);
    assert_int_equal(a.kind, QREXEC_REFUSED);
    assert_string_equal(a.msg, "No such domain: 'nosuch'");
    struct answer b = {0};
    call_and_wait(t, "dom0", "dom0", "test.Echo", &b);
    assert_int_equal(b.kind, QREXEC_REFUSED);
    struct answer c = {0};
    call_and_wait(t, "dom0", "work", "bad service name with spaces", &c);
    assert_int_equal(c.kind, QREXEC_REFUSED);
    struct answer d = {0};
    call_and_wait(t, "dom0", "@dispvm", "test.Echo", &d); /* dom0 has no default_dispvm */
    assert_int_equal(d.kind, QREXEC_REFUSED);
    assert_int_equal(fake_calls(t->fake, FAKE_START, NULL) + fake_calls(t->fake, FAKE_EXEC, NULL),
                     0);
}

static void test_paused_target_fails(void **state) {
    struct rf *t = *state;
    struct qerr err = {0};
    start_and_wait(t, "work");
    assert_int_equal(dispatcher_pause(t->f->dispatcher, app_find(&t->f->app, "work"), &err), 0);
    struct answer a = {0};
    call_and_wait(t, "dom0", "work", "test.Echo", &a);
    assert_int_equal(a.kind, QREXEC_FAILED);
    assert_string_equal(a.msg, "the target qube is paused or changing state");
    assert_int_equal(fake_calls(t->fake, FAKE_EXEC, NULL), 0);
}

static void test_target_start_failure_reaches_caller(void **state) {
    struct rf *t = *state;
    struct answer a = {0};
    fake_plan_start(t->fake, FAKE_START_FAIL, "the agent did not answer");
    call_and_wait(t, "dom0", "work", "test.Echo", &a);
    assert_int_equal(a.kind, QREXEC_FAILED);
    assert_string_equal(a.msg, "the agent did not answer");
    struct answer b = {0};
    fake_fail_next(t->fake, FAKE_START, "cannot prepare the volumes");
    call_and_wait(t, "dom0", "work", "test.Echo", &b);
    assert_int_equal(b.kind, QREXEC_FAILED);
    assert_string_equal(b.msg, "cannot prepare the volumes");
    assert_int_equal(fake_calls(t->fake, FAKE_EXEC, NULL), 0);
}

/* A fresh disposable for the call: the caller's tags, killed after the call, removed. */
static void test_dispvm_made_for_the_call_and_gone_after(void **state) {
    struct rf *t = *state;
    struct answer a = {0};
    fake_plan_exec(t->fake, true, 0);
    call(t, "dom0", "@dispvm:dvm", "test.Echo", &a);
    char disp[32];
    snprintf(disp, sizeof(disp), "%s", a_disposable(t));
    assert_true(*disp);
    struct qube *q = app_find(&t->f->app, disp);
    assert_non_null(strmap_get(&q->tags, "created-by-dom0"));
    DF_WAIT_POWER(t->f, disp, "Running");
    assert_int_equal(a.calls, 0);
    assert_int_equal(fake_finish_exec(t->fake, disp, 3), 0);
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.kind, QREXEC_EXITED);
    assert_int_equal(a.status, 3);
    assert_int_equal(fake_calls(t->fake, FAKE_KILL_NOWAIT, disp), 1);
    assert_true(df_run_until(t->f, no_disposable, t));
    assert_int_equal(fake_calls(t->fake, FAKE_REMOVE_VOLUMES, disp), 1);
}

static bool call_marked(struct rf *t, const char *name) {
    char rel[64];
    snprintf(rel, sizeof(rel), "calls/%s", name);
    char *path = tu_path(t->f->dir, rel);
    bool marked = access(path, F_OK) == 0;
    free(path);
    return marked;
}

/* The daemon dies mid-call: the call is lost with it, its disposable is not. The next
 * daemon's router kills the disposables the last one's calls were using (their
 * auto_cleanup removes them), instead of leaving them to run forever. */
static void test_disposables_of_calls_the_last_daemon_lost_are_killed(void **state) {
    struct rf *t = *state;
    struct answer a = {0};
    char disp[32];
    held_dispvm_call(t, &a, disp);
    assert_true(call_marked(t, disp));
    /* a call that ends leaves no marker */
    assert_int_equal(fake_finish_exec(t->fake, disp, 0), 0);
    assert_true(df_run_until(t->f, no_disposable, t));
    assert_false(call_marked(t, disp));
    /* as a killed daemon leaves one: the marker, and the qube running on */
    char *mark = tu_path(t->f->dir, "calls/work");
    write_file(t->f->dir, "calls/work", "");
    struct df_done started = {0};
    assert_int_equal(dispatcher_start(t->f->dispatcher, app_find(&t->f->app, "work"), df_done_cb,
                                      &started, &(struct qerr){0}),
                     0);
    DF_WAIT_POWER(t->f, "work", "Running");
    assert_int_equal(fake_calls(t->fake, FAKE_KILL_NOWAIT, "work"), 0);
    router_free(t->r);
    router_start(t, false);
    assert_int_equal(fake_calls(t->fake, FAKE_KILL_NOWAIT, "work"), 1);
    assert_false(call_marked(t, "work"));
    free(mark);
}

/* A disposable that could not be started goes too. */
static void test_dispvm_start_failure_removes_it(void **state) {
    struct rf *t = *state;
    struct answer a = {0};
    fake_plan_start(t->fake, FAKE_START_FAIL, "no agent");
    call_and_wait(t, "dom0", "@dispvm:dvm", "test.Echo", &a);
    assert_int_equal(a.kind, QREXEC_FAILED);
    assert_true(df_run_until(t->f, no_disposable, t));
}

/* The engine cannot run the service: the caller hears why; the disposable goes. */
static void test_exec_failure_reaches_caller(void **state) {
    struct rf *t = *state;
    struct answer a = {0};
    fake_fail_next(t->fake, FAKE_EXEC, "the agent refused the call");
    call_and_wait(t, "dom0", "@dispvm:dvm", "test.Echo", &a);
    assert_int_equal(a.kind, QREXEC_FAILED);
    assert_string_equal(a.msg, "the agent refused the call");
    assert_true(df_run_until(t->f, no_disposable, t));
}

/* The caller went away: the disposable is killed, and the call ends with it. */
static void test_abandoned_call_kills_disposable(void **state) {
    struct rf *t = *state;
    struct answer a = {0};
    char disp[32];
    held_dispvm_call(t, &a, disp);
    router_abandon(t->r, &a);
    assert_int_equal(fake_calls(t->fake, FAKE_KILL_NOWAIT, disp), 1);
    assert_true(df_run_until(t->f, no_disposable, t));
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.kind, QREXEC_FAILED);
}

/* A named qube's service runs on when its caller goes away, as in Qubes. */
static void test_abandoned_call_spares_named_qube(void **state) {
    struct rf *t = *state;
    struct answer a = {0};
    start_and_wait(t, "work");
    fake_plan_exec(t->fake, true, 0);
    call(t, "dom0", "work", "test.Echo", &a);
    router_abandon(t->r, &a);
    df_run_for(t->f, 50000);
    assert_string_equal(df_power(t->f, "work"), "Running");
    assert_int_equal(fake_calls(t->fake, FAKE_KILL_NOWAIT, NULL) +
                         fake_calls(t->fake, FAKE_KILL, NULL),
                     0);
    assert_int_equal(fake_finish_exec(t->fake, "work", 0), 0);
    assert_int_equal(a.calls, 1);
}

/* ---- from qubes: the policy decides ---- */

static void test_upcall_allowed_by_policy(void **state) {
    struct rf *t = *state;
    start_and_wait(t, "work");
    assert_int_equal(fake_inject_upcall(t->fake, "work", "dvm", "test.Echo+x"), 0);
    WAIT_UPCALL_REPLY(t);
    assert_string_equal(df_power(t->f, "dvm"), "Running"); /* autostarted */
    assert_string_equal(fake_upcall_replies(t->fake), "exited 0 \n");
    assert_string_equal(fake_last_exec(t->fake), "test.Echo+x in dvm from work for dvm user=user");
}

static void test_upcall_denied_by_policy(void **state) {
    struct rf *t = *state;
    start_and_wait(t, "work");
    fake_log_clear(t->fake);
    assert_int_equal(fake_inject_upcall(t->fake, "work", "tpl", "test.Echo"), 0);
    assert_int_equal(fake_inject_upcall(t->fake, "work", "dvm", "test.Unknown"), 0);
    assert_string_equal(fake_upcall_replies(t->fake),
                        "failed -1 Request refused\nfailed -1 Request refused\n");
    assert_int_equal(fake_calls(t->fake, FAKE_START, NULL) + fake_calls(t->fake, FAKE_EXEC, NULL),
                     0);
}

/* target= and user= of the rule are what runs. */
static void test_upcall_redirected(void **state) {
    struct rf *t = *state;
    start_and_wait(t, "work");
    assert_int_equal(fake_inject_upcall(t->fake, "work", "", "test.Redirect"), 0);
    WAIT_UPCALL_REPLY(t);
    assert_string_equal(fake_upcall_replies(t->fake), "exited 0 \n");
    assert_string_equal(fake_last_exec(t->fake),
                        "test.Redirect+ in dvm from work for @default user=alice");
}

/* @dispvm:dvm from a qube: the caller stays the caller (remote domain, tags). */
static void test_upcall_to_dispvm_keeps_caller(void **state) {
    struct rf *t = *state;
    start_and_wait(t, "work");
    fake_plan_exec(t->fake, true, 0);
    assert_int_equal(fake_inject_upcall(t->fake, "work", "@dispvm:dvm", "test.Echo"), 0);
    char disp[32];
    snprintf(disp, sizeof(disp), "%s", a_disposable(t));
    assert_true(*disp);
    DF_WAIT_POWER(t->f, disp, "Running");
    struct qube *q = app_find(&t->f->app, disp);
    assert_non_null(strmap_get(&q->tags, "created-by-work"));
    char want[128];
    snprintf(want, sizeof(want), "test.Echo+ in %s from work for @dispvm:dvm user=user", disp);
    assert_string_equal(fake_last_exec(t->fake), want);
    assert_int_equal(fake_finish_exec(t->fake, disp, 0), 0);
    assert_string_equal(fake_upcall_replies(t->fake), "exited 0 \n");
    assert_true(df_run_until(t->f, no_disposable, t));
}

/* ---- with preloads ---- */

static bool one_ready(void *ctx) {
    struct rf *t = ctx;
    const char *list = strmap_get(&app_find(&t->f->app, "dvm")->features, "preload-dispvm");
    struct qube *q = list && *list ? app_find(&t->f->app, list) : NULL;
    return q && q->power == POWER_PAUSED;
}

/* A ready preload serves the call (no new start on the call's path), then a refill. */
static void test_dispvm_call_uses_preload(void **state) {
    struct rf *t = *state;
    router_free(t->r);
    router_start(t, true);
    struct qerr err = {0};
    struct qube *dvm = app_find(&t->f->app, "dvm");
    assert_int_equal(app_feature_set(&t->f->app, dvm, "preload-dispvm-max", "1", &err), 0);
    preload_feature_changed(t->p, dvm, "preload-dispvm-max");
    assert_true(df_run_until(t->f, one_ready, t));
    char preload[32];
    snprintf(preload, sizeof(preload), "%s",
             strmap_get(&app_find(&t->f->app, "dvm")->features, "preload-dispvm"));
    fake_log_clear(t->fake);
    fake_plan_exec(t->fake, true, 0);
    struct answer a = {0};
    call(t, "dom0", "@dispvm:dvm", "test.Echo", &a);
    char want[128];
    snprintf(want, sizeof(want), "test.Echo+ in %s from dom0 for @dispvm:dvm user=user", preload);
    assert_string_equal(fake_last_exec(t->fake), want); /* at once: no start to wait for */
    assert_int_equal(fake_calls(t->fake, FAKE_START, preload), 0);
    assert_int_equal(fake_calls(t->fake, FAKE_UNPAUSE, preload), 1);
    assert_int_equal(fake_finish_exec(t->fake, preload, 0), 0);
    fake_plan_exec(t->fake, false, 0); /* the refill's own warm-up call ends */
    assert_int_equal(a.kind, QREXEC_EXITED);
    assert_int_equal(fake_calls(t->fake, FAKE_KILL_NOWAIT, preload), 1);
    assert_true(df_run_until(t->f, one_ready, t)); /* refilled */
    assert_null(app_find(&t->f->app, preload));
}

int main(void) {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_dom0_call_starts_halted_target),
        T(test_dom0_bad_targets_refused),
        T(test_paused_target_fails),
        T(test_target_start_failure_reaches_caller),
        T(test_dispvm_made_for_the_call_and_gone_after),
        T(test_dispvm_start_failure_removes_it),
        T(test_exec_failure_reaches_caller),
        T(test_abandoned_call_kills_disposable),
        T(test_abandoned_call_spares_named_qube),
        T(test_upcall_allowed_by_policy),
        T(test_upcall_denied_by_policy),
        T(test_upcall_redirected),
        T(test_upcall_to_dispvm_keeps_caller),
        T(test_dispvm_call_uses_preload),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
