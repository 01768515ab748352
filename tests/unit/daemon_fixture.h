/* What the daemon's unit tests share: a real model (SQLite in a temp dir) with its events
 * recorded, an sd-event loop, and the dispatcher's table of engines filled with fake engines
 * (src/backend/fake). The loop is run until a condition holds, never longer than
 * DF_TIMEOUT_USEC: a broken daemon makes a test fail, not hang. */
#pragma once
#include "testutil.h"

#include <errno.h>
#include <systemd/sd-event.h>

#include "app.h"
#include "disposable.h"
#include "dispatcher.h"
#include "fake_backend.h"
#include "monoclock.h"
#include "strbuf.h"

#define DF_TIMEOUT_USEC 3000000ULL
#define DF_MAX_ENGINES 4

struct df {
    char *dir, *db;
    struct app app;
    sd_event *loop;
    struct dispatcher *dispatcher;
    struct backend *fakes[DF_MAX_ENGINES]; /* owned by the dispatcher */
    size_t n_fakes;
    struct strbuf events; /* "subject|event|k=v,k=v\n" per emitted event */
};

static void df_record_event(void *ctx, const char *subject, const char *event,
                            const struct wire_kv *kv, size_t n_kv) {
    struct strbuf *sb = ctx;
    strbuf_printf(sb, "%s|%s|", subject, event);
    for (size_t i = 0; i < n_kv; i++)
        strbuf_printf(sb, "%s%s=%s", i ? "," : "", kv[i].key, kv[i].value);
    strbuf_putc(sb, '\n');
}

/* A model and a loop; engines named in `names` (NULL-terminated) become fakes, in order. */
static struct df *df_new(const char *const *names) {
    struct df *f = calloc(1, sizeof(*f));
    f->dir = tu_mkdtemp();
    assert_non_null(f->dir);
    f->db = tu_path(f->dir, "qubes.db");
    struct qerr err = {0};
    f->app = (struct app){.host_mem_mib = 4096};
    assert_int_equal(app_open(&f->app, f->db, &err), 0);
    f->app.emit = df_record_event;
    f->app.emit_ctx = &f->events;
    strbuf_puts(&f->events, "");
    assert_int_equal(sd_event_new(&f->loop), 0);
    for (size_t i = 0; names && names[i] && i < DF_MAX_ENGINES; i++)
        f->fakes[f->n_fakes++] = fake_backend_new(f->loop, names[i]);
    f->dispatcher = dispatcher_new(&f->app, f->fakes, f->n_fakes);
    return f;
}

static void df_free(struct df *f) {
    dispatcher_free(f->dispatcher);
    f->app.emit = NULL;
    app_close(&f->app);
    sd_event_unref(f->loop);
    strbuf_free(&f->events);
    free(f->db);
    tu_rmdir(f->dir);
    free(f);
}

static const char *df_events(struct df *f) { return strbuf_str(&f->events); }

static bool df_has_event(struct df *f, const char *line) {
    return strstr(df_events(f), line) != NULL;
}

/* Runs the loop until cond(ctx) holds; false on timeout. */
static bool df_run_until(struct df *f, bool (*cond)(void *ctx), void *ctx) {
    int64_t deadline = mono_ns() + (int64_t)DF_TIMEOUT_USEC * 1000;
    while (!cond(ctx)) {
        if (mono_ns() >= deadline)
            return false;
        sd_event_run(f->loop, 10000);
    }
    return true;
}

/* Runs the loop for a while, whatever happens (to see that something does NOT happen). */
static void df_run_for(struct df *f, uint64_t usec) {
    int64_t deadline = mono_ns() + (int64_t)usec * 1000;
    while (mono_ns() < deadline)
        sd_event_run(f->loop, 10000);
}

static struct qube *df_create(struct df *f, enum qube_class klass, const char *name,
                              const char *tpl) {
    struct qube *q = NULL;
    struct qerr err = {0};
    struct qube_spec spec = {klass, name, "red", tpl, "created-by-dom0"};
    assert_int_equal(app_create(&f->app, &spec, &q, &err), 0);
    return q;
}

static void df_set_prop(struct df *f, const char *qube, const char *prop, const char *value) {
    struct qerr err = {0};
    struct qube *q = app_find(&f->app, qube);
    assert_non_null(q);
    const struct prop_def *def = app_prop_def(q, prop, &err);
    assert_non_null(def);
    if (app_prop_set(&f->app, q, def, value, &err) < 0)
        fail_msg("%s.%s=%s: %s", qube, prop, value, err.msg);
}

static void df_set_feature(struct df *f, const char *qube, const char *name, const char *value) {
    struct qerr err = {0};
    struct qube *q = app_find(&f->app, qube);
    assert_non_null(q);
    assert_int_equal(app_feature_set(&f->app, q, name, value, &err), 0);
}

/* tpl (TemplateVM), work (AppVM on tpl), dvm (AppVM on tpl, a disposable template). */
static void df_make_qubes(struct df *f) {
    df_create(f, QUBE_TEMPLATEVM, "tpl", NULL);
    df_create(f, QUBE_APPVM, "work", "tpl");
    df_create(f, QUBE_APPVM, "dvm", "tpl");
    df_set_prop(f, "dvm", "template_for_dispvms", "True");
    /* what preload-dispvm-max needs to be accepted (Qubes' checks) */
    df_set_feature(f, "tpl", "qrexec", "1");
    df_set_feature(f, "tpl", "supported-rpc.qubes.WaitForRunningSystem", "1");
    df_set_feature(f, "tpl", "supported-rpc.qubes.WaitForSession", "1");
}

static const char *df_power(struct df *f, const char *name) {
    struct qube *q = app_find(&f->app, name);
    return q ? power_state_name(q->power) : "(gone)";
}

/* Condition helpers for df_run_until. */
struct df_power_want {
    struct df *f;
    const char *name, *state;
};

static bool df_power_is(void *ctx) {
    struct df_power_want *w = ctx;
    return strcmp(df_power(w->f, w->name), w->state) == 0;
}

#define DF_WAIT_POWER(f, name, state)                                                        \
    do {                                                                                     \
        struct df_power_want w_ = {(f), (name), (state)};                                    \
        if (!df_run_until((f), df_power_is, &w_))                                            \
            fail_msg("%s: still %s, waited for %s", (name), df_power((f), (name)), (state)); \
    } while (0)

/* A done callback that records what it got. */
struct df_done {
    int calls, r;
    char msg[512];
};

static void df_done_cb(void *userdata, int r, const struct qerr *err) {
    struct df_done *d = userdata;
    d->calls++;
    d->r = r;
    snprintf(d->msg, sizeof(d->msg), "%s", err ? err->msg : "");
}

static bool df_done_called(void *ctx) { return ((struct df_done *)ctx)->calls > 0; }
