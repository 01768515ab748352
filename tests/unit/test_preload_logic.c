/* The preload pool (src/daemon/preload*.c) against a fake engine: refills up to
 * preload-dispvm-max, hand-outs, waiting for a preload still starting, failed starts,
 * outdated preloads, memory limits, suspend and restart. Timings are not tested, only
 * what happens (and what must not happen: a tight retry loop). */
#include "daemon_fixture.h"

#include "api.h"
#include "memory.h"
#include "preload.h"

static const char *const ONE[] = {"container", NULL};

struct pf {
    struct df *f;
    struct preload *p;
    struct backend *fake;
    char *meminfo;
    bool use_cgroup_limit;
};

static void write_meminfo(struct pf *t, unsigned long long avail_mib) {
    FILE *fp = fopen(t->meminfo, "we");
    assert_non_null(fp);
    fprintf(fp, "MemTotal:       %llu kB\nMemAvailable:   %llu kB\n", 65536ULL * 1024,
            avail_mib * 1024);
    fclose(fp);
}

static void on_halted(void *userdata, const char *name) { preload_qube_halted(userdata, name); }

static void preload_start(struct pf *t) {
    struct memory_source mem = {t->meminfo, t->use_cgroup_limit};
    t->p = preload_new(t->f->loop, &t->f->app, t->f->dispatcher, &mem);
    dispatcher_set_halted_hook(t->f->dispatcher, on_halted, t->p);
    preload_recover(t->p);
}

static int setup(void **state) {
    struct pf *t = calloc(1, sizeof(*t));
    t->f = df_new(ONE);
    t->fake = t->f->fakes[0];
    df_make_qubes(t->f);
    /* refill right after a use: the default 3 s would only slow the tests down */
    df_set_feature(t->f, "dvm", "preload-dispvm-delay", "0");
    t->meminfo = tu_path(t->f->dir, "meminfo");
    write_meminfo(t, 32768);
    preload_start(t);
    *state = t;
    return 0;
}

static int teardown(void **state) {
    struct pf *t = *state;
    preload_free(t->p);
    free(t->meminfo);
    df_free(t->f);
    free(t);
    return 0;
}

static struct qube *qube(struct pf *t, const char *name) {
    struct qube *q = app_find(&t->f->app, name);
    assert_non_null(q);
    return q;
}

/* As admin.vm.feature.Set does it: validated, set, then the engine told. */
static void set_max(struct pf *t, const char *value) {
    struct qerr err = {0};
    struct qube *dvm = qube(t, "dvm");
    assert_int_equal(preload_validate_feature(t->p, dvm, "preload-dispvm-max", value, &err), 0);
    assert_int_equal(app_feature_set(&t->f->app, dvm, "preload-dispvm-max", value, &err), 0);
    preload_feature_changed(t->p, dvm, "preload-dispvm-max");
}

static const char *list_of(struct pf *t) {
    const char *v = strmap_get(&qube(t, "dvm")->features, "preload-dispvm");
    return v ? v : "";
}

static size_t list_names(struct pf *t, char names[][32], size_t max) {
    size_t n = 0;
    char buf[1024];
    snprintf(buf, sizeof(buf), "%s", list_of(t));
    for (char *save, *tok = strtok_r(buf, " ", &save); tok && n < max;
         tok = strtok_r(NULL, " ", &save))
        snprintf(names[n++], 32, "%s", tok);
    return n;
}

/* n preloads listed, each completed and paused. */
struct ready_want {
    struct pf *t;
    size_t n;
};

static bool n_ready(void *ctx) {
    struct ready_want *w = ctx;
    char names[16][32];
    size_t n = list_names(w->t, names, 16);
    if (n != w->n)
        return false;
    for (size_t i = 0; i < n; i++) {
        struct qube *q = app_find(&w->t->f->app, names[i]);
        if (!q || q->power != POWER_PAUSED || !strmap_get(&q->features, "preload-dispvm-completed"))
            return false;
    }
    return true;
}

#define WAIT_READY(t, count)                                                            \
    do {                                                                                \
        struct ready_want w_ = {(t), (count)};                                          \
        if (!df_run_until((t)->f, n_ready, &w_))                                        \
            fail_msg("not %d ready preloads: list '%s'; engine log:\n%s", (int)(count), \
                     list_of(t), fake_log((t)->fake));                                  \
    } while (0)

struct got {
    int calls;
    char name[32];
};

static void on_got(void *userdata, struct qube *disp, const struct qerr *err) {
    struct got *g = userdata;
    g->calls++;
    snprintf(g->name, sizeof(g->name), "%s", disp ? disp->name : "");
}

static bool got_called(void *ctx) { return ((struct got *)ctx)->calls > 0; }

struct gone_want {
    struct pf *t;
    const char *name;
};

static bool is_gone(void *ctx) {
    struct gone_want *w = ctx;
    return app_find(&w->t->f->app, w->name) == NULL;
}

#define WAIT_GONE(t, qname)                                                \
    do {                                                                   \
        struct gone_want g_ = {(t), (qname)};                              \
        if (!df_run_until((t)->f, is_gone, &g_))                           \
            fail_msg("%s is still there: list '%s'", (qname), list_of(t)); \
    } while (0)

/* ---- refill ---- */

static void test_fills_up_to_max(void **state) {
    struct pf *t = *state;
    set_max(t, "2");
    WAIT_READY(t, 2);
    char names[4][32];
    assert_int_equal(list_names(t, names, 4), 2);
    assert_int_equal(fake_calls(t->fake, FAKE_START, NULL), 2);
    for (int i = 0; i < 2; i++) {
        struct qube *q = qube(t, names[i]);
        assert_true(preload_is_preload(&t->f->app, q));
        assert_string_equal(strmap_get(&q->features, "internal"), "1");
        assert_true(fake_started_background(t->fake, names[i])); /* nobody waits for it */
        assert_int_equal(fake_calls(t->fake, FAKE_PAUSE, names[i]), 1);
        assert_int_equal(fake_calls(t->fake, FAKE_RECLAIM, names[i]), 1);
        assert_int_equal(fake_power(t->fake, names[i]), BACKEND_PAUSED);
    }
    assert_true(df_has_event(t->f, "dvm|domain-preload-dispvm-start|reason=local feature was "
                                   "set to '2',delay=0.0\n"));
    /* full: nothing more happens */
    df_run_for(t->f, 100000);
    assert_int_equal(fake_calls(t->fake, FAKE_START, NULL), 2);
}

/* The first call into a fresh qube is the slow one (a VM pages in and, under TCG,
 * translates its shell): the preload makes it itself, before its pause. */
static void test_warmed_up_before_pause(void **state) {
    struct pf *t = *state;
    set_max(t, "1");
    WAIT_READY(t, 1);
    char names[2][32], exec_line[64], pause_line[64], want[128];
    list_names(t, names, 2);
    assert_int_equal(fake_calls(t->fake, FAKE_EXEC, names[0]), 1);
    snprintf(want, sizeof(want), "qubes.VMShell+ in %s from dom0 for %s user=", names[0], names[0]);
    assert_string_equal(fake_last_exec(t->fake), want);
    snprintf(exec_line, sizeof(exec_line), "exec %s\n", names[0]);
    snprintf(pause_line, sizeof(pause_line), "pause %s\n", names[0]);
    const char *log = fake_log(t->fake);
    assert_non_null(strstr(log, exec_line));
    assert_true(strstr(log, exec_line) < strstr(log, pause_line));
}

static void test_max_lowered_discards_newest(void **state) {
    struct pf *t = *state;
    set_max(t, "3");
    WAIT_READY(t, 3);
    char names[4][32];
    list_names(t, names, 4);
    set_max(t, "1");
    WAIT_READY(t, 1);
    assert_string_equal(list_of(t), names[0]); /* the oldest stays */
    assert_null(app_find(&t->f->app, names[1]));
    assert_null(app_find(&t->f->app, names[2]));
    assert_int_equal(fake_calls(t->fake, FAKE_START, NULL), 3);
}

/* ---- hand-out ---- */

static void test_handout_takes_oldest_and_refills(void **state) {
    struct pf *t = *state;
    set_max(t, "2");
    WAIT_READY(t, 2);
    char names[4][32];
    list_names(t, names, 4);
    struct got g = {0};
    assert_int_equal(preload_request(t->p, qube(t, "dvm"), "work", on_got, &g), 1);
    assert_int_equal(g.calls, 1); /* a ready one: at once */
    assert_string_equal(g.name, names[0]);
    struct qube *q = qube(t, g.name);
    assert_string_equal(power_state_name(q->power), "Running");
    assert_false(preload_is_preload(&t->f->app, q));
    assert_null(strmap_get(&q->features, "internal"));
    assert_non_null(strmap_get(&q->tags, "created-by-work"));
    assert_non_null(strmap_get(&q->tags, "disp-created-by-work"));
    assert_int_equal(fake_calls(t->fake, FAKE_UNPAUSE, g.name), 1);
    assert_int_equal(fake_calls(t->fake, FAKE_FOREGROUND, g.name), 1);
    assert_int_equal(fake_power(t->fake, g.name), BACKEND_RUNNING);
    assert_string_equal(list_of(t), names[1]);
    char line[128];
    snprintf(line, sizeof(line), "dvm|domain-preload-dispvm-used|dispvm=%s,delay=0.0\n", g.name);
    assert_true(df_has_event(t->f, line));
    /* the refill that follows a use */
    WAIT_READY(t, 2);
    assert_int_equal(fake_calls(t->fake, FAKE_START, NULL), 3);
    char now[4][32];
    list_names(t, now, 4);
    assert_string_equal(now[0], names[1]);
    assert_string_not_equal(now[1], g.name);
}

/* The disposable handed out is the caller's: at its end it goes, as any unnamed one. */
static void test_handed_out_disposable_removed_at_exit(void **state) {
    struct pf *t = *state;
    set_max(t, "1");
    WAIT_READY(t, 1);
    struct got g = {0};
    assert_int_equal(preload_request(t->p, qube(t, "dvm"), "work", on_got, &g), 1);
    assert_int_equal(fake_crash(t->fake, g.name, 0), 0);
    assert_null(app_find(&t->f->app, g.name));
    WAIT_READY(t, 1);
}

/* A preload the engine cannot thaw serves nobody: it is discarded, and the next one goes
 * to the caller (or, with none left, a fresh disposable: request returns 0). */
static void test_handout_unpause_failure(void **state) {
    struct pf *t = *state;
    set_max(t, "2");
    WAIT_READY(t, 2);
    char names[4][32];
    list_names(t, names, 4);
    fake_fail_next(t->fake, FAKE_UNPAUSE, "cannot thaw");
    struct got g = {0};
    assert_int_equal(preload_request(t->p, qube(t, "dvm"), "work", on_got, &g), 1);
    assert_string_equal(g.name, names[1]);
    assert_string_equal(power_state_name(qube(t, g.name)->power), "Running");
    assert_null(app_find(&t->f->app, names[0]));
    WAIT_READY(t, 2);
    list_names(t, names, 4);
    fake_fail_next(t->fake, FAKE_UNPAUSE, "cannot thaw");
    fake_fail_next(t->fake, FAKE_KILL, "cannot kill either"); /* and it stays frozen */
    struct got h = {0};
    assert_int_equal(preload_request(t->p, qube(t, "dvm"), "work", on_got, &h), 1);
    assert_string_equal(h.name, names[1]);
    assert_string_equal(power_state_name(qube(t, names[0])->power), "Paused");
    assert_null(strstr(list_of(t), names[0])); /* out of the list: never handed out */
}

static void test_request_without_preloads(void **state) {
    struct pf *t = *state;
    struct got g = {0};
    assert_int_equal(preload_request(t->p, qube(t, "dvm"), "work", on_got, &g), 0);
    assert_int_equal(g.calls, 0);
    assert_int_equal(fake_calls(t->fake, FAKE_START, NULL), 0);
}

static bool one_start_pending(void *ctx) { return fake_pending_starts(ctx) == 1; }

/* None ready: the request waits for the one starting, which goes to it unpaused. */
static void test_request_waits_for_starting_one(void **state) {
    struct pf *t = *state;
    fake_plan_start(t->fake, FAKE_START_HANG, NULL);
    set_max(t, "1");
    assert_true(df_run_until(t->f, one_start_pending, t->fake));
    char names[2][32];
    assert_int_equal(list_names(t, names, 2), 1);
    struct got g = {0};
    assert_int_equal(preload_request(t->p, qube(t, "dvm"), "work", on_got, &g), 1);
    assert_int_equal(g.calls, 0);
    assert_int_equal(fake_calls(t->fake, FAKE_FOREGROUND, names[0]), 1); /* someone waits */
    fake_plan_start(t->fake, FAKE_START_OK, NULL);
    assert_int_equal(fake_finish_start(t->fake, names[0], 0, NULL), 0);
    assert_int_equal(g.calls, 1);
    assert_string_equal(g.name, names[0]);
    assert_string_equal(power_state_name(qube(t, names[0])->power), "Running");
    assert_int_equal(fake_calls(t->fake, FAKE_PAUSE, names[0]), 0);
    assert_non_null(strmap_get(&qube(t, names[0])->tags, "created-by-work"));
}

/* A preload used while the pool is still filling: its refill (due after the delay) must
 * not be swallowed by the fill under way, whose budget counted only the first gaps (found
 * by the soak: a pool of 4 stayed at 3). */
static bool list_not_empty(void *ctx) {
    char names[1][32];
    return list_names(ctx, names, 1) > 0;
}

static void test_use_during_fill_is_refilled(void **state) {
    struct pf *t = *state;
    df_set_feature(t->f, "dvm", "preload-dispvm-delay", "0.05");
    set_max(t, "4");
    /* asked for once the first is created, before it started: it waits for it (queued) */
    assert_true(df_run_until(t->f, list_not_empty, t));
    struct got g = {0};
    assert_int_equal(preload_request(t->p, qube(t, "dvm"), "work", on_got, &g), 1);
    assert_true(df_run_until(t->f, got_called, &g));
    assert_true(*g.name);
    WAIT_READY(t, 4);
    assert_int_equal(fake_calls(t->fake, FAKE_START, NULL), 5);
}

/* The preload it waits for fails: the caller gets none (and makes a fresh one). */
static void test_request_waiting_for_failed_start(void **state) {
    struct pf *t = *state;
    fake_plan_start(t->fake, FAKE_START_HANG, NULL);
    set_max(t, "1");
    assert_true(df_run_until(t->f, one_start_pending, t->fake));
    char names[2][32];
    list_names(t, names, 2);
    struct got g = {0};
    assert_int_equal(preload_request(t->p, qube(t, "dvm"), "work", on_got, &g), 1);
    assert_int_equal(fake_finish_start(t->fake, names[0], -1, "no agent"), 0);
    assert_int_equal(g.calls, 1);
    assert_string_equal(g.name, "");
    assert_null(app_find(&t->f->app, names[0]));
}

/* Waiting is bounded (1.2 x qrexec_timeout): then the caller gets none, and the
 * preload that did not become ready is discarded. */
static void test_request_wait_times_out(void **state) {
    struct pf *t = *state;
    df_set_prop(t->f, "dvm", "qrexec_timeout", "1");
    fake_plan_start(t->fake, FAKE_START_HANG, NULL);
    set_max(t, "1");
    assert_true(df_run_until(t->f, one_start_pending, t->fake));
    char names[2][32];
    list_names(t, names, 2);
    struct got g = {0};
    assert_int_equal(preload_request(t->p, qube(t, "dvm"), "work", on_got, &g), 1);
    assert_true(df_run_until(t->f, got_called, &g));
    assert_string_equal(g.name, "");
    assert_null(app_find(&t->f->app, names[0]));
    assert_int_equal(fake_pending_starts(t->fake), 0);
}

/* ---- failures ---- */

struct starts_want {
    struct pf *t;
    unsigned n;
};

static bool n_starts_done(void *ctx) {
    struct starts_want *w = ctx;
    return fake_calls(w->t->fake, FAKE_START, NULL) >= w->n && fake_pending_starts(w->t->fake) == 0;
}

static void wait_starts(struct pf *t, unsigned n) {
    struct starts_want w = {t, n};
    if (!df_run_until(t->f, n_starts_done, &w))
        fail_msg("not %u starts: engine log:\n%s", n, fake_log(t->fake));
}

static void test_failed_start_not_retried_in_a_loop(void **state) {
    struct pf *t = *state;
    fake_plan_start(t->fake, FAKE_START_FAIL, "the agent did not answer");
    set_max(t, "2");
    wait_starts(t, 2); /* the two the trigger counted, each tried once */
    assert_true(df_has_event(t->f, "|domain-start-failed|reason=the agent did not answer\n"));
    df_run_for(t->f, 300000); /* and then left for the next trigger */
    assert_int_equal(fake_calls(t->fake, FAKE_START, NULL), 2);
    /* failed preloads are gone from the model and the list */
    for (size_t i = 0; i < t->f->app.n_qubes; i++)
        assert_false(preload_is_preload(&t->f->app, t->f->app.qubes[i]));
    /* the next trigger fills the gap */
    fake_plan_start(t->fake, FAKE_START_OK, NULL);
    preload_refill(t->p, qube(t, "dvm"), "a test asked");
    WAIT_READY(t, 2);
}

static void test_refused_start_not_retried_in_a_loop(void **state) {
    struct pf *t = *state;
    fake_fail_next(t->fake, FAKE_START, "cannot prepare the volumes");
    set_max(t, "1");
    wait_starts(t, 1);
    df_run_for(t->f, 300000);
    assert_int_equal(fake_calls(t->fake, FAKE_START, NULL), 1);
    assert_string_equal(list_of(t), "");
    preload_refill(t->p, qube(t, "dvm"), "a test asked");
    WAIT_READY(t, 1);
}

/* ---- outdated preloads ---- */

/* The lazy check: a preload whose volumes have a new revision is never handed out. */
static void test_outdated_never_handed_out(void **state) {
    struct pf *t = *state;
    set_max(t, "1");
    WAIT_READY(t, 1);
    char old[32];
    snprintf(old, sizeof(old), "%s", list_of(t));
    fake_bump_revision(t->fake, qube(t, "dvm")->uuid, "private");
    struct got g = {0};
    assert_int_equal(preload_request(t->p, qube(t, "dvm"), "work", on_got, &g), 0);
    assert_int_equal(g.calls, 0);
    assert_null(app_find(&t->f->app, old));
}

/* The eager check: a refill replaces preloads of an old root revision. */
static void test_refill_replaces_outdated(void **state) {
    struct pf *t = *state;
    set_max(t, "2");
    WAIT_READY(t, 2);
    char old[4][32];
    list_names(t, old, 4);
    fake_bump_revision(t->fake, qube(t, "tpl")->uuid, "root");
    preload_refill(t->p, qube(t, "dvm"), "a test asked");
    WAIT_GONE(t, old[0]);
    WAIT_GONE(t, old[1]);
    WAIT_READY(t, 2);
    assert_int_equal(fake_calls(t->fake, FAKE_START, NULL), 4);
}

/* An inherited property changed on the disposable template: its preloads are replaced. */
static void test_property_change_replaces(void **state) {
    struct pf *t = *state;
    set_max(t, "1");
    WAIT_READY(t, 1);
    char old[32];
    snprintf(old, sizeof(old), "%s", list_of(t));
    df_set_prop(t->f, "dvm", "memory", "500");
    preload_property_changed(t->p, qube(t, "dvm"), "memory");
    WAIT_GONE(t, old);
    WAIT_READY(t, 1);
    assert_int_equal(fake_calls(t->fake, FAKE_START, NULL), 2);
}

/* An engine option (a "<virt_mode>-KEY" feature) is part of what a preload is made from:
 * changing it on the template replaces the preloads; the new ones get the new value. */
static void test_engine_option_change_replaces(void **state) {
    struct pf *t = *state;
    set_max(t, "1");
    WAIT_READY(t, 1);
    char old[32];
    snprintf(old, sizeof(old), "%s", list_of(t));
    df_set_feature(t->f, "tpl", "container-init", "/sbin/init");
    preload_feature_changed(t->p, qube(t, "tpl"), "container-init");
    WAIT_GONE(t, old);
    WAIT_READY(t, 1);
    const char *opts = fake_last_options(t->fake, list_of(t));
    assert_non_null(opts);
    assert_non_null(strstr(opts, "init=/sbin/init"));
}

/* An unrelated change (label) keeps them. */
static void test_unrelated_change_keeps(void **state) {
    struct pf *t = *state;
    set_max(t, "1");
    WAIT_READY(t, 1);
    df_set_prop(t->f, "dvm", "label", "blue");
    preload_property_changed(t->p, qube(t, "dvm"), "label");
    df_run_for(t->f, 100000);
    WAIT_READY(t, 1);
    assert_int_equal(fake_calls(t->fake, FAKE_START, NULL), 1);
}

/* A preload that stopped by itself leaves the list at once, and its place is refilled
 * (after preload-dispvm-delay, 0 here). */
static void test_stopped_preload_leaves_list_and_refills(void **state) {
    struct pf *t = *state;
    set_max(t, "2");
    WAIT_READY(t, 2);
    char names[4][32];
    list_names(t, names, 4);
    assert_int_equal(fake_crash(t->fake, names[0], 1), 0);
    assert_null(app_find(&t->f->app, names[0])); /* an unnamed disposable: gone */
    assert_string_equal(list_of(t), names[1]);
    WAIT_READY(t, 2);
    assert_int_equal(fake_calls(t->fake, FAKE_START, NULL), 3);
    char now[4][32];
    list_names(t, now, 4);
    assert_string_equal(now[0], names[1]);
}

/* A preload that stopped by itself is never handed out. */
static void test_stopped_preload_not_handed_out(void **state) {
    struct pf *t = *state;
    set_max(t, "2");
    WAIT_READY(t, 2);
    char names[4][32];
    list_names(t, names, 4);
    assert_int_equal(fake_crash(t->fake, names[0], 1), 0);
    assert_null(app_find(&t->f->app, names[0])); /* an unnamed disposable: gone */
    struct got g = {0};
    assert_int_equal(preload_request(t->p, qube(t, "dvm"), "work", on_got, &g), 1);
    assert_string_equal(g.name, names[1]);
}

/* qvm-unpause of a preload by hand uses it: out of the list, visible, refilled. */
static void test_unpaused_by_hand_counts_as_used(void **state) {
    struct pf *t = *state;
    set_max(t, "1");
    WAIT_READY(t, 1);
    char name[32];
    snprintf(name, sizeof(name), "%s", list_of(t));
    struct qerr err = {0};
    struct qube *q = qube(t, name);
    assert_int_equal(dispatcher_unpause(t->f->dispatcher, q, &err), 0);
    preload_unpaused_by_hand(t->p, q); /* as admin.vm.Unpause does */
    assert_false(preload_is_preload(&t->f->app, q));
    assert_null(strmap_get(&q->features, "internal"));
    assert_null(strstr(list_of(t), name));
    WAIT_READY(t, 1);
    assert_string_equal(power_state_name(qube(t, name)->power), "Running");
}

/* The disposable template is being removed: its preloads go first. */
static void test_discard_of_template(void **state) {
    struct pf *t = *state;
    set_max(t, "2");
    WAIT_READY(t, 2);
    char names[4][32];
    list_names(t, names, 4);
    preload_discard_of(t->p, qube(t, "dvm"));
    assert_string_equal(list_of(t), "");
    assert_null(app_find(&t->f->app, names[0]));
    assert_null(app_find(&t->f->app, names[1]));
}

/* ---- memory ---- */

static void test_no_preloads_without_memory(void **state) {
    struct pf *t = *state;
    write_meminfo(t, 300); /* less than one qube's 400 MiB */
    set_max(t, "2");
    df_run_for(t->f, 200000);
    assert_int_equal(fake_calls(t->fake, FAKE_START, NULL), 0);
    assert_string_equal(list_of(t), "");
}

/* The engines' own limit counts when tighter than the host's. */
static void test_engine_headroom_limits_preloads(void **state) {
    struct pf *t = *state;
    preload_free(t->p);
    t->use_cgroup_limit = true;
    preload_start(t);
    fake_set_headroom(t->fake, 1000LL << 20); /* two of 400 MiB, not three */
    set_max(t, "3");
    WAIT_READY(t, 2);
    df_run_for(t->f, 100000);
    assert_int_equal(fake_calls(t->fake, FAKE_START, NULL), 2);
}

/* A running preload counts its whole memory, however little its engine says it uses (a
 * VM whose balloon took most of its memory): the host's MemAvailable lacks only what it
 * uses, the rest is still promised to it. */
static void test_running_preload_counts_its_memory(void **state) {
    struct pf *t = *state;
    write_meminfo(t, 1000); /* room for two of 400 MiB */
    fake_set_memory_usage(t->fake, 1 << 20);
    set_max(t, "1");
    WAIT_READY(t, 1);
    set_max(t, "3");
    WAIT_READY(t, 2);
    df_run_for(t->f, 100000);
    assert_int_equal(fake_calls(t->fake, FAKE_START, NULL), 2);
}

/* ... and all of it while its engine cannot measure it. */
static void test_unmeasured_preload_counts_its_memory(void **state) {
    struct pf *t = *state;
    write_meminfo(t, 1000);
    fake_set_memory_usage(t->fake, 1 << 20);
    set_max(t, "1");
    WAIT_READY(t, 1);
    fake_set_stats_unavailable(t->fake, true);
    set_max(t, "3");
    WAIT_READY(t, 2);
    df_run_for(t->f, 100000);
    assert_int_equal(fake_calls(t->fake, FAKE_START, NULL), 2);
}

/* ---- engines without the optional ops ---- */

static void test_engine_without_optional_ops(void **state) {
    struct pf *t = *state;
    fake_drop_optional(t->fake);
    set_max(t, "1");
    WAIT_READY(t, 1);
    struct got g = {0};
    assert_int_equal(preload_request(t->p, qube(t, "dvm"), "work", on_got, &g), 1);
    assert_string_equal(power_state_name(qube(t, g.name)->power), "Running");
    WAIT_READY(t, 1);
    assert_int_equal(fake_calls(t->fake, FAKE_RECLAIM, NULL) +
                         fake_calls(t->fake, FAKE_FOREGROUND, NULL),
                     0);
}

/* ---- suspend, restart ---- */

static void test_discard_all_before_suspend(void **state) {
    struct pf *t = *state;
    set_max(t, "2");
    WAIT_READY(t, 2);
    preload_discard_all(t->p);
    assert_string_equal(list_of(t), "");
    for (size_t i = 0; i < t->f->app.n_qubes; i++)
        assert_false(preload_is_preload(&t->f->app, t->f->app.qubes[i]));
    preload_refill_all(t->p, "system resumed");
    WAIT_READY(t, 2);
}

/* After a restart, a paused completed preload still running is kept; one that died
 * while the daemon was away is dropped. */
static void test_restart_keeps_paused_preloads(void **state) {
    struct pf *t = *state;
    set_max(t, "2");
    WAIT_READY(t, 2);
    char names[4][32];
    list_names(t, names, 4);
    preload_free(t->p);
    dispatcher_free(t->f->dispatcher);
    /* a new daemon reads the model afresh (every qube Halted until adopted) */
    struct qerr err = {0};
    app_close(&t->f->app);
    t->f->app = (struct app){.host_mem_mib = 4096,
                             .emit = df_record_event,
                             .emit_ctx = &t->f->events};
    assert_int_equal(app_open(&t->f->app, t->f->db, &err), 0);
    /* its engine: only names[0] survived */
    t->fake = t->f->fakes[0] = fake_backend_new(t->f->loop, "container");
    fake_set_running(t->fake, names[0], BACKEND_PAUSED);
    t->f->dispatcher = dispatcher_new(&t->f->app, t->f->fakes, 1);
    dispatcher_recover(t->f->dispatcher);
    preload_start(t); /* preload_recover */
    assert_string_equal(list_of(t), names[0]);
    assert_string_equal(power_state_name(qube(t, names[0])->power), "Paused");
    assert_null(app_find(&t->f->app, names[1]));
    struct got g = {0};
    assert_int_equal(preload_request(t->p, qube(t, "dvm"), "work", on_got, &g), 1);
    assert_string_equal(g.name, names[0]);
    assert_int_equal(fake_calls(t->fake, FAKE_UNPAUSE, names[0]), 1);
}

/* ---- through the Admin API ---- */

struct sink_log {
    struct strbuf replies;
};

static void on_reply(void *ctx, const struct strbuf *reply) {
    struct sink_log *s = ctx;
    if (reply)
        strbuf_append(&s->replies, reply->data, reply->len);
}

static enum api_result api(struct pf *t, struct sink_log *s, const char *req, size_t len,
                           struct strbuf *out) {
    uint8_t *buf = malloc(len);
    memcpy(buf, req, len);
    struct wire_request r;
    assert_int_equal(wire_parse_request(buf, len, &r), 0);
    struct api_env env = {&t->f->app, t->f->dispatcher, 0, t->p};
    struct api_sink sink = {on_reply, s};
    strbuf_reset(out);
    enum api_result res = api_dispatch_env(&env, &r, out, &sink);
    free(buf);
    return res;
}

/* admin.vm.feature.Set of preload-dispvm-max fills; CreateDisposable hands one out. */
static void test_admin_api_path(void **state) {
    struct pf *t = *state;
    struct sink_log s = {STRBUF_INIT};
    struct strbuf out = STRBUF_INIT;
    assert_int_equal(api(t, &s,
                         BYTES("admin.vm.feature.Set+preload-dispvm-max dom0 name "
                               "dvm\0"
                               "1"),
                         &out),
                     API_REPLIED);
    assert_bytes_equal(out.data, out.len, BYTES("0\0"));
    WAIT_READY(t, 1);
    char name[32];
    snprintf(name, sizeof(name), "%s", list_of(t));
    assert_int_equal(api(t, &s, BYTES("admin.vm.CreateDisposable+ dom0 name dvm\0"), &out),
                     API_REPLIED);
    char want[64];
    int n = snprintf(want, sizeof(want), "0%c%s", '\0', name);
    assert_bytes_equal(out.data, out.len, want, (size_t)n);
    assert_string_equal(power_state_name(qube(t, name)->power), "Running");
    /* a bad value changes nothing */
    assert_int_equal(api(t, &s,
                         BYTES("admin.vm.feature.Set+preload-dispvm-max dom0 name "
                               "dvm\0"
                               "x"),
                         &out),
                     API_REPLIED);
    assert_non_null(memmem(out.data, out.len, BYTES("QubesValueError")));
    assert_string_equal(strmap_get(&qube(t, "dvm")->features, "preload-dispvm-max"), "1");
    strbuf_free(&out);
    strbuf_free(&s.replies);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
int main(void) {
    const struct CMUnitTest tests[] = {
        T(test_fills_up_to_max),
        T(test_max_lowered_discards_newest),
        T(test_handout_takes_oldest_and_refills),
        T(test_handed_out_disposable_removed_at_exit),
        T(test_handout_unpause_failure),
        T(test_request_without_preloads),
        T(test_use_during_fill_is_refilled),
        T(test_warmed_up_before_pause),
        T(test_request_waits_for_starting_one),
        T(test_request_waiting_for_failed_start),
        T(test_request_wait_times_out),
        T(test_failed_start_not_retried_in_a_loop),
        T(test_refused_start_not_retried_in_a_loop),
        T(test_outdated_never_handed_out),
        T(test_refill_replaces_outdated),
        T(test_property_change_replaces),
        T(test_unrelated_change_keeps),
        T(test_stopped_preload_leaves_list_and_refills),
        T(test_stopped_preload_not_handed_out),
        T(test_engine_option_change_replaces),
        T(test_unpaused_by_hand_counts_as_used),
        T(test_discard_of_template),
        T(test_no_preloads_without_memory),
        T(test_engine_headroom_limits_preloads),
        T(test_running_preload_counts_its_memory),
        T(test_unmeasured_preload_counts_its_memory),
        T(test_engine_without_optional_ops),
        T(test_discard_all_before_suspend),
        T(test_restart_keeps_paused_preloads),
        T(test_admin_api_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
