/* The preload life cycle: queued -> startup -> paused -> requested -> used, and discard
 * from any state (spec/preload.md). */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "disposable.h"
#include "preload_internal.h"

#define MARK_IN_PROGRESS "preload-dispvm-in-progress"
#define MARK_COMPLETED "preload-dispvm-completed"
/* what the preload was made from (fingerprint()), kept apart from the markers, which
 * hold "1" as Qubes' do */
#define MARK_ORIGIN "preload-dispvm-origin"

struct preload_waiter {
    struct preload *p;
    struct preload_waiter *next;
    char name[32], caller[32], tpl[32];
    preload_got_fn got;
    void *userdata;
    sd_event_source *timeout;
};

bool preload_is_preload(const struct app *app, const struct qube *q) {
    return q->klass == QUBE_DISPVM && q->props[P_IS_PRELOAD] &&
           strcmp(q->props[P_IS_PRELOAD], "True") == 0;
}

static struct qube *template_of(const struct app *app, const struct qube *q) {
    return q->props[P_TEMPLATE] ? app_find(app, q->props[P_TEMPLATE]) : NULL;
}

static uint64_t hash_str(uint64_t h, const char *v) { /* FNV-1a, with an end mark */
    for (const char *c = v; *c; c++)
        h = (h ^ (unsigned char)*c) * 1099511628211ULL;
    return (h ^ 0xff) * 1099511628211ULL;
}

/* What a disposable is made from, besides its volumes, hashed: the properties it
 * inherits from its template (memory, vcpus, kernel, timeouts, virt_mode, the template
 * itself, its netvm), its engine's options, the `<virt_mode>-KEY` features read along the
 * template chain (dispatcher_qube_options), and its services (service.* features, which
 * a disposable copies from it when made: dispatcher_qube_services).
 * A preload made before a change of any of these is outdated; nothing else makes it so
 * (docs/preload.md, "Never stale"). */
static void fingerprint(struct preload *p, const struct qube *tpl, char out[17]) {
    const struct app *app = p->app;
    uint64_t h = 1469598103934665603ULL;
    for (int i = 0; i < PROP_COUNT; i++) {
        if (!(PROP_DEFS[i].flags & PF_INHERIT) && i != P_TEMPLATE)
            continue;
        char buf[1024];
        bool is_default;
        h = hash_str(h, app_prop_get(app, tpl, &PROP_DEFS[i], buf, sizeof(buf), &is_default));
    }
    struct backend_option opts[DISPATCHER_OPTIONS_MAX];
    size_t n = dispatcher_qube_options(app, tpl, opts, DISPATCHER_OPTIONS_MAX);
    for (size_t i = 0; i < n; i++) { /* in feature order: the same options, the same hash */
        h = hash_str(h, opts[i].key);
        h = hash_str(h, opts[i].value);
    }
    struct backend_option services[DISPATCHER_SERVICES_MAX];
    n = dispatcher_qube_services(tpl, services, DISPATCHER_SERVICES_MAX);
    for (size_t i = 0; i < n; i++) {
        h = hash_str(h, services[i].key);
        h = hash_str(h, services[i].value);
    }
    /* its firewall is a copy of the template's, made when it was created */
    h = hash_str(h, tpl->firewall ? tpl->firewall : "default");
    h = hash_str(h, dispatcher_qube_gui(app, tpl) ? "gui" : ""); /* a GUI agent or not */
    snprintf(out, 17, "%016llx", (unsigned long long)h);
}

static bool volume_outdated(struct preload *p, const struct qube *q, const char *vol) {
    struct backend_volume_info vi = {0}; /* no usage: that walks the whole volume */
    struct qerr err = {0};
    if (dispatcher_volume_info(p->dispatcher, q, vol, &vi, &err) < 0)
        return true;
    return vi.in_use && vi.used_revision != vi.revision;
}

/* Exact: only a changed root or private revision, or a changed inherited property (fp:
 * the template's fingerprint now, computed once by the caller for its whole list). */
static bool outdated(struct preload *p, const struct qube *q, const char *fp) {
    const char *origin = strmap_get(&q->features, MARK_ORIGIN);
    if (!origin || strcmp(origin, fp) != 0)
        return true;
    return q->power != POWER_HALTED &&
           (volume_outdated(p, q, "root") || volume_outdated(p, q, "private"));
}

/* Gone from every state: out of the list, killed (auto_cleanup removes it) or removed. */
void preload_discard(struct preload *p, struct qube *q, const char *why) {
    struct qube *tpl = template_of(p->app, q);
    char name[32];
    snprintf(name, sizeof(name), "%s", q->name);
    log_info("preload: discarding %s: %s", name, why);
    if (tpl)
        preload_list_remove(p, tpl, name);
    struct qerr err = {0};
    bool batch = app_batch_begin_ephemeral(p->app, &err) == 0;
    int r = q->power != POWER_HALTED ? dispatcher_kill(p->dispatcher, q, &err)
                                     : dispatcher_remove(p->dispatcher, q, &err);
    if (r < 0)
        log_warning("preload: cannot discard %s: %s", name, err.msg);
    if (batch && app_batch_end(p->app, &err) < 0)
        log_error("preload: %s: discard not saved: %s", name, err.msg);
}

/* ---- refill ---- */

static void set_mark(struct preload *p, struct qube *q, const char *name, const char *value) {
    struct qerr err = {0};
    if (value ? app_feature_set(p->app, q, name, value, &err) < 0
              : (strmap_get(&q->features, name) && app_feature_remove(p->app, q, name, &err) < 0))
        log_warning("preload: %s: cannot update %s: %s", q->name, name, err.msg);
}

void preload_set_mark(struct preload *p, struct qube *q, const char *name, const char *value) {
    set_mark(p, q, name, value);
}

static void on_preload_started(void *userdata, int r, const struct qerr *err);

struct start_ctx {
    struct preload *p;
    char name[32];
};

static bool is_starting(const struct qube *q) { return q->power == POWER_TRANSIENT; }

static bool is_queued(const struct qube *q) {
    return q->power == POWER_HALTED && strmap_get(&q->features, MARK_IN_PROGRESS);
}

static int start_preload(struct preload *p, struct qube *q) {
    struct qerr err = {0};
    struct start_ctx *ctx = xcalloc(1, sizeof(*ctx));
    *ctx = (struct start_ctx){p, ""};
    snprintf(ctx->name, sizeof(ctx->name), "%s", q->name);
    if (dispatcher_start_background(p->dispatcher, q, on_preload_started, ctx, &err) < 0) {
        free(ctx);
        log_warning("preload: %s: %s", q->name, err.msg);
        struct qube *tpl = template_of(p->app, q);
        if (tpl)
            preload_note_failure(p, tpl->name, err.msg);
        preload_discard(p, q, "it could not be started");
        return -1;
    }
    return 0;
}

/* Starts the oldest queued preload of the list: 1 started, 0 none queued, -1 the start
 * failed (it was discarded). The n of a refill all start, concurrently (the spec): a step
 * each, so that a call arriving meanwhile waits for one at most. */
static int start_next(struct preload *p, struct qube *tpl) {
    char names[PRELOAD_LIST_MAX][32];
    size_t n = preload_list(tpl, names, PRELOAD_LIST_MAX);
    for (size_t i = 0; i < n; i++) {
        struct qube *q = app_find(p->app, names[i]);
        if (q && is_queued(q))
            return start_preload(p, q) == 0 ? 1 : -1;
    }
    return 0;
}

/* Marked and listed at once (queued), so that concurrent refills never exceed max. */
static void create_one(struct preload *p, struct qube *tpl, const char *fp) {
    struct qerr err = {0};
    if (app_batch_begin_ephemeral(p->app, &err) < 0) { /* one commit, qube and marks */
        log_error("preload: %s: %s", tpl->name, err.msg);
        return;
    }
    struct qube *q = disposable_create(p->app, tpl, NULL, &err);
    if (q) {
        char names[PRELOAD_LIST_MAX][32];
        size_t n = preload_list(tpl, names, PRELOAD_LIST_MAX);
        snprintf(names[n < PRELOAD_LIST_MAX ? n++ : n - 1], 32, "%s", q->name);
        set_mark(p, q, MARK_IN_PROGRESS, "1");
        set_mark(p, q, MARK_ORIGIN, fp);
        preload_note_created(p, tpl, q->name);
        set_mark(p, q, "internal", "1");
        app_prop_set_system(p->app, q, &PROP_DEFS[P_IS_PRELOAD], "True", &err);
        preload_list_store(p, tpl, names, n);
    } else {
        log_warning("preload: %s: %s", tpl->name, err.msg);
        preload_note_failure(p, tpl->name, err.msg);
    }
    if (app_batch_end(p->app, &err) < 0)
        log_error("preload: %s: not saved: %s", tpl->name, err.msg);
}

/* Keeps the oldest `max`, discards the rest (newest first). */
static size_t trim(struct preload *p, struct qube *tpl, unsigned max) {
    char names[PRELOAD_LIST_MAX][32];
    size_t n = preload_list(tpl, names, PRELOAD_LIST_MAX);
    bool autosized = preload_auto_ceiling(p->app, tpl) > 0;
    for (size_t i = n; i > max; i--) {
        struct qube *q = app_find(p->app, names[i - 1]);
        if (q && autosized && max < preload_cap(p->app, tpl))
            preload_shed(p, tpl, q, "demand fell");
        else if (q)
            preload_discard(p, q, "the maximum was lowered");
        else
            preload_list_remove(p, tpl, names[i - 1]);
    }
    return n > max ? max : n;
}

unsigned preload_affordable(struct preload *p, const struct qube *tpl, unsigned want,
                            struct preload_memory *m) {
    char buf[32];
    bool is_default;
    m->each_mib = strtoll(app_prop_get(p->app, tpl, &PROP_DEFS[P_MEMORY], buf, sizeof(buf),
                                       &is_default),
                          NULL, 10);
    m->free_mib = memory_free_mib(&p->mem, p->app, p->dispatcher);
    m->threshold_mib = (int64_t)preload_threshold_mib(p->app);
    int64_t avail = m->free_mib - m->threshold_mib;
    unsigned can = m->each_mib <= 0 ? want : avail <= 0 ? 0 : (unsigned)(avail / m->each_mib);
    return can < want ? can : want;
}

static unsigned affordable(struct preload *p, struct qube *tpl, unsigned want) {
    struct preload_memory m;
    unsigned can = preload_affordable(p, tpl, want, &m);
    int64_t avail = m.free_mib - m.threshold_mib, tmem = m.each_mib;
    if (can < want)
        log_warning("preload: %s: not preloading %u disposable(s) due to insufficient memory "
                    "(%lld MiB free after the threshold, %lld MiB each)",
                    tpl->name, want - can, (long long)avail, (long long)tmem);
    return can < want ? can : want;
}

/* Names of qubes that are gone, and preloads that are outdated, leave the list first:
 * so every refill is also the eager outdated check. */
static void prune(struct preload *p, struct qube *tpl, const char *fp) {
    char names[PRELOAD_LIST_MAX][32];
    size_t n = preload_list(tpl, names, PRELOAD_LIST_MAX);
    for (size_t i = 0; i < n; i++) {
        struct qube *q = app_find(p->app, names[i]);
        if (!q)
            preload_list_remove(p, tpl, names[i]);
        else if (outdated(p, q, fp))
            preload_discard(p, q, "it is outdated");
    }
}

/* What a pending refill will do. */
enum refill_kind {
    CONTINUE, /* go on creating what an announced refill counted (its budget) */
    TRIGGER,  /* a new cause: count, announce (event), create */
};

static void schedule(struct preload *p, const struct qube *tpl, const char *reason, double delay,
                     enum refill_kind kind, unsigned budget);

/* One piece of work (a creation or a start) per loop iteration, at idle priority: a burst
 * of them would hold up, for milliseconds, a hand-out that arrives meanwhile. */
static void refill_step(struct preload *p, struct qube *tpl, const char *reason, double delay,
                        enum refill_kind kind, unsigned budget) {
    if (!disposable_template_ok(p->app, tpl))
        return;
    char fp[17];
    fingerprint(p, tpl, fp);
    prune(p, tpl, fp);
    preload_trim_tier(p, tpl);
    unsigned max = preload_target(p, tpl) + preload_hibernated_target(p, tpl);
    size_t n = trim(p, tpl, max);
    /* under memory pressure nothing new: the watch sheds, and refills once it is calm */
    unsigned want = max > n && !preload_pressure_high(p) ? max - (unsigned)n : 0;
    unsigned can = want ? affordable(p, tpl, want) : 0;
    /* a continuing refill creates no more than its trigger counted: a preload that failed
     * to start meanwhile left a gap for the next trigger, not for the next step (that
     * would create and start one after another as fast as they fail) */
    budget = (kind == TRIGGER || budget > can) ? can : budget;
    if (can && kind == TRIGGER) {
        char delay_s[32];
        snprintf(delay_s, sizeof(delay_s), "%.1f", delay);
        struct wire_kv kv[] = {{"reason", reason}, {"delay", delay_s}};
        app_emit(p->app, tpl, "domain-preload-dispvm-start", kv, 2);
        log_info("preload: %s: preloading %u qube(s) because %s", tpl->name, can, reason);
    }
    /* one piece of work per step: a start first (it brings a ready preload closer); a
     * failed start ends the refill: its gap waits for the next trigger, no retry loop */
    int started = start_next(p, tpl);
    if (started != 0 || !budget) {
        if (started > 0 && budget)
            schedule(p, tpl, reason, 0, CONTINUE, budget);
        return;
    }
    create_one(p, tpl, fp);
    schedule(p, tpl, reason, 0, CONTINUE, budget - 1); /* to start it, or create the next */
}

void preload_do_refill(struct preload *p, struct qube *tpl, const char *reason, double delay) {
    refill_step(p, tpl, reason, delay, TRIGGER, 0);
}

/* ---- when refills run: after the reply that triggered them, or after a delay ---- */

struct preload_timer {
    struct preload *p;
    struct preload_timer *next;
    char tpl[32], reason[128];
    double delay;
    enum refill_kind kind;
    unsigned budget;     /* CONTINUE: how many more it may create */
    uint64_t held_since; /* when a hold first postponed it (0: never) */
    /* A later trigger that arrived while this continuing fill was due first: the fill's
     * budget did not count its gap, so it is scheduled again when the fill moves on. */
    bool later_trigger;
    char later_reason[128];
    uint64_t later_due;
    sd_event_source *src;
};

static void timer_free(struct preload_timer *t) {
    for (struct preload_timer **pp = &t->p->timers; *pp; pp = &(*pp)->next)
        if (*pp == t) {
            *pp = t->next;
            break;
        }
    sd_event_source_disable_unref(t->src);
    free(t);
}

#define HOLD_RETRY_USEC 2000
#define HOLD_MAX_USEC 200000
#define LOW_WATER 1 /* at most this many ready: refill even while calls run */

size_t preload_ready_count(struct preload *p, const struct qube *tpl) {
    char names[PRELOAD_LIST_MAX][32];
    size_t n = preload_list(tpl, names, PRELOAD_LIST_MAX), ready = 0;
    for (size_t i = 0; i < n; i++) {
        const struct qube *q = app_find(p->app, names[i]);
        ready += q && strmap_get(&q->features, MARK_COMPLETED);
    }
    return ready;
}

/* While a handed-out disposable's call runs, its reply must not wait behind a refill
 * (each creation takes the loop for a millisecond or so): refills wait for the calls to
 * end, but never more than HOLD_MAX_USEC, so steady traffic cannot starve them; and not
 * at all once the list is nearly empty, or the next caller would find nothing ready. */
static bool postponed(struct preload_timer *t, uint64_t now) {
    struct preload *p = t->p;
    const struct qube *tpl = app_find(p->app, t->tpl);
    if (p->holds == 0 || !tpl || preload_ready_count(p, tpl) <= LOW_WATER)
        return false;
    if (!t->held_since)
        t->held_since = now;
    if (now - t->held_since >= HOLD_MAX_USEC)
        return false;
    sd_event_source_set_time(t->src, now + HOLD_RETRY_USEC);
    sd_event_source_set_enabled(t->src, SD_EVENT_ONESHOT);
    return true;
}

bool preload_refill_pending(const struct preload *p, const char *tpl, double *in_s) {
    uint64_t now = 0, due = 0;
    sd_event_now(p->loop, CLOCK_MONOTONIC, &now);
    for (const struct preload_timer *t = p->timers; t; t = t->next) {
        if (strcmp(t->tpl, tpl) != 0)
            continue;
        sd_event_source_get_time(t->src, &due);
        *in_s = due > now ? (double)(due - now) / 1e6 : 0;
        return true;
    }
    return false;
}

void preload_hold(struct preload *p) { p->holds++; }

void preload_release(struct preload *p) {
    if (p->holds > 0)
        p->holds--;
}

static int on_refill_timer(sd_event_source *src, uint64_t usec, void *userdata) {
    struct preload_timer *t = userdata;
    struct preload *p = t->p;
    if (postponed(t, usec))
        return 0;
    char reason[128], later_reason[128], name[32];
    double delay = t->delay;
    enum refill_kind kind = t->kind;
    unsigned budget = t->budget;
    bool later = t->later_trigger;
    double later_delay = t->later_due > usec ? (double)(t->later_due - usec) / 1e6 : 0;
    snprintf(reason, sizeof(reason), "%s", t->reason);
    snprintf(later_reason, sizeof(later_reason), "%s", t->later_reason);
    snprintf(name, sizeof(name), "%s", t->tpl);
    struct qube *tpl = app_find(p->app, name);
    timer_free(t);
    if (tpl)
        refill_step(p, tpl, reason, delay, kind, budget);
    if (later && (tpl = app_find(p->app, name)))
        schedule(p, tpl, later_reason, later_delay, TRIGGER, 0);
    return 0;
}

/* One pending refill per template, due at the earliest of its triggers: a later trigger
 * neither postpones an earlier one nor is held back by a slower one (a use with delay 0
 * right after a request that found a gap must refill now, not in 5 s). Refills run at
 * idle priority: a call that is waiting at the same moment goes first. */
static void schedule(struct preload *p, const struct qube *tpl, const char *reason, double delay,
                     enum refill_kind kind, unsigned budget) {
    uint64_t usec = delay > 0 ? (uint64_t)(fabs(delay) * 1e6) : 0, now = 0;
    sd_event_now(p->loop, CLOCK_MONOTONIC, &now);
    for (struct preload_timer *t = p->timers; t; t = t->next) {
        if (strcmp(t->tpl, tpl->name) != 0)
            continue;
        uint64_t due = 0;
        sd_event_source_get_time(t->src, &due);
        bool sooner = now + usec < due;
        /* the cause announced is that of the refill that runs next: a sooner one, or the
         * latest of those due now (a continuing refill goes on filling without one) */
        if (kind == TRIGGER && (sooner || (usec == 0 && due <= now))) {
            snprintf(t->reason, sizeof(t->reason), "%s", reason);
            t->delay = delay;
            t->kind = TRIGGER;
        } else if (kind == TRIGGER && t->kind == CONTINUE &&
                   (!t->later_trigger || now + usec < t->later_due)) {
            t->later_trigger = true;
            t->later_due = now + usec;
            snprintf(t->later_reason, sizeof(t->later_reason), "%s", reason);
        }
        if (sooner)
            sd_event_source_set_time(t->src, now + usec);
        if (budget > t->budget)
            t->budget = budget;
        return;
    }
    struct preload_timer *t = xcalloc(1, sizeof(*t));
    *t = (struct preload_timer){
        .p = p, .next = p->timers, .delay = delay, .kind = kind, .budget = budget};
    snprintf(t->tpl, sizeof(t->tpl), "%s", tpl->name);
    snprintf(t->reason, sizeof(t->reason), "%s", reason);
    if (sd_event_add_time(p->loop, &t->src, CLOCK_MONOTONIC, now + usec, 0, on_refill_timer, t) <
        0) {
        free(t);
        return;
    }
    sd_event_source_set_priority(t->src, SD_EVENT_PRIORITY_IDLE);
    p->timers = t;
}

void preload_schedule(struct preload *p, const struct qube *tpl, const char *reason, double delay) {
    schedule(p, tpl, reason, delay, TRIGGER, 0);
}

void preload_refill(struct preload *p, struct qube *tpl, const char *reason) {
    preload_schedule(p, tpl, reason, 0);
}

/* ---- start-up, pause ---- */

static struct preload_waiter *waiter_for(struct preload *p, const char *name) {
    for (struct preload_waiter *w = p->waiters; w; w = w->next)
        if (strcmp(w->name, name) == 0)
            return w;
    return NULL;
}

static void waiter_free(struct preload_waiter *w) {
    for (struct preload_waiter **pp = &w->p->waiters; *pp; pp = &(*pp)->next)
        if (*pp == w) {
            *pp = w->next;
            break;
        }
    sd_event_source_disable_unref(w->timeout);
    free(w);
}

static int hand_out(struct preload *p, struct qube *q, struct qube *tpl, const char *caller);

/* A started preload goes to the caller waiting for it (running, never paused), or is
 * made small and paused for the next one. */
static void settle(struct preload *p, struct qube *q) {
    struct preload_waiter *w = waiter_for(p, q->name);
    struct qube *tpl = template_of(p->app, q);
    if (tpl)
        preload_note_ready(p, tpl, q->name);
    if (w && tpl) {
        set_mark(p, q, MARK_COMPLETED, "1");
        preload_got_fn got = w->got;
        void *ud = w->userdata;
        (void)hand_out(p, q, tpl, w->caller); /* running, never paused: nothing to fail */
        waiter_free(w);
        got(ud, q, NULL);
        return;
    }
    if (w) { /* no template any more: the caller makes a fresh disposable */
        preload_got_fn got = w->got;
        void *ud = w->userdata;
        waiter_free(w);
        got(ud, NULL, NULL);
    }
    if (q->power != POWER_RUNNING)
        return; /* stopped meanwhile: its end is handled as a stopped preload's */
    struct qerr perr = {0};
    dispatcher_reclaim(p->dispatcher, q); /* a paused preload should cost as little as it can */
    if (dispatcher_pause(p->dispatcher, q, &perr) < 0)
        log_warning("preload: cannot pause %s: %s", q->name, perr.msg);
    else if (tpl && preload_hibernate_if_wanted(p, q, tpl) == 0)
        return; /* completed once saved */
    bool batch = app_batch_begin_ephemeral(p->app, &perr) == 0;
    set_mark(p, q, MARK_COMPLETED, "1");
    set_mark(p, q, MARK_IN_PROGRESS, NULL);
    if (batch && app_batch_end(p->app, &perr) < 0)
        log_error("preload: %s: completion not saved: %s", q->name, perr.msg);
}

static void on_warmed_up(void *userdata, enum backend_call_end how, int status,
                         const char *reason) {
    struct start_ctx *ctx = userdata;
    struct qube *q = app_find(ctx->p->app, ctx->name);
    if (how != BACKEND_CALL_EXITED || status != 0)
        log_debug("preload: %s: warm-up call ended %d/%d: %s", ctx->name, (int)how, status,
                  reason ? reason : "");
    if (q)
        settle(ctx->p, q);
    free(ctx);
}

/* The first call into a freshly booted qube pays for what nothing has touched yet (the
 * shell and its libraries paged in, under TCG translated): measured 166-303 ms for a VM
 * against ~30 ms for the calls after it. The preload makes that call itself, as its
 * default user, before it is paused, so that a hand-out is one of the later kind.
 * Qubes' readiness step (qubes.WaitForRunningSystem) is the engine's start already. */
static void warm_up(struct preload *p, struct qube *q) {
    struct start_ctx *ctx = xcalloc(1, sizeof(*ctx));
    *ctx = (struct start_ctx){p, ""};
    snprintf(ctx->name, sizeof(ctx->name), "%s", q->name);
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    struct backend_service_call call = {"qubes.VMShell",    "",   "dom0", q->name, "", "true",
                                        {null, null, null}, false};
    struct qerr err = {0};
    int r = null < 0 ? -1 : dispatcher_exec(p->dispatcher, q, &call, on_warmed_up, ctx, &err);
    if (null >= 0)
        close(null);
    if (r < 0) {
        log_debug("preload: %s: no warm-up call: %s", q->name, err.msg);
        free(ctx);
        settle(p, q);
    }
}

static void on_preload_started(void *userdata, int r, const struct qerr *err) {
    struct start_ctx *ctx = userdata;
    struct preload *p = ctx->p;
    struct qube *q = app_find(p->app, ctx->name);
    struct preload_waiter *w = waiter_for(p, ctx->name);
    free(ctx);
    if (!q)
        return;
    struct qube *tpl = template_of(p->app, q);
    if (r < 0) { /* a gap: filled at the next trigger, never in a tight loop */
        log_warning("preload: %s failed to start: %s", q->name, err ? err->msg : "?");
        if (tpl)
            preload_note_failure(p, tpl->name, err ? err->msg : "it failed to start");
        preload_discard(p, q, "it failed to start");
        if (w) { /* its preload failed: the caller makes a fresh disposable */
            preload_got_fn got = w->got;
            void *ud = w->userdata;
            waiter_free(w);
            got(ud, NULL, NULL);
        }
        return;
    }
    if (tpl)
        preload_clear_failure(p, tpl->name);
    if (w) /* requested while starting: straight to its caller */
        settle(p, q);
    else
        warm_up(p, q);
}

/* ---- hand-out ---- */

/* After use: a refill after the delay; a negative delay refills only an empty list. */
static void refill_after_use(struct preload *p, struct qube *tpl, const char *used) {
    double delay = preload_delay(p->app, tpl);
    char names[PRELOAD_LIST_MAX][32];
    if (delay < 0 && preload_list(tpl, names, PRELOAD_LIST_MAX) > 0)
        return;
    char delay_s[32];
    snprintf(delay_s, sizeof(delay_s), "%.1f", delay);
    struct wire_kv kv[] = {{"dispvm", used}, {"delay", delay_s}};
    app_emit(p->app, tpl, "domain-preload-dispvm-used", kv, 2);
    preload_schedule(p, tpl, "a preloaded disposable was used", fabs(delay));
}

/* The caller sees an ordinary disposable: thawed, visible, tagged as its own. One
 * transaction for all the bookkeeping: this is the hand-out's hot path. -1 (nothing
 * handed out) if the engine cannot thaw it: a frozen disposable serves nobody. */
static int hand_out(struct preload *p, struct qube *q, struct qube *tpl, const char *caller) {
    struct qerr err = {0};
    char tag[64], name[32];
    snprintf(name, sizeof(name), "%s", q->name);
    int fr = dispatcher_foreground(p->dispatcher, q);
    if (fr < 0 && fr != -ENOTSUP) /* ENOTSUP: no cpu controller, it never was idle */
        log_warning("preload: %s keeps the idle CPU class: %s", name, strerror(-fr));
    /* resume: a preload someone suspended (admin.vm.Suspend) wakes as a paused one does */
    if (q->power == POWER_PAUSED && dispatcher_resume(p->dispatcher, q, &err) < 0) {
        log_warning("preload: cannot unpause %s: %s", name, err.msg);
        return -1;
    }
    if (app_batch_begin_ephemeral(p->app, &err) == 0) {
        if (!strmap_get(&tpl->features, "internal"))
            set_mark(p, q, "internal", NULL);
        app_prop_reset_system(p->app, q, &PROP_DEFS[P_IS_PRELOAD], &err);
        set_mark(p, q, MARK_IN_PROGRESS, NULL);
        snprintf(tag, sizeof(tag), "created-by-%s", caller);
        app_tag_add(p->app, q, tag, &err);
        snprintf(tag, sizeof(tag), "disp-created-by-%s", caller);
        app_tag_add(p->app, q, tag, &err);
        if (app_batch_end(p->app, &err) < 0)
            log_error("preload: %s: hand-out not saved: %s", name, err.msg);
    }
    log_info("preload: %s handed out to %s", name, caller);
    refill_after_use(p, tpl, name);
    return 0;
}

void preload_hand_out_woken(struct preload *p, struct qube *q, struct qube *tpl,
                            const char *caller) {
    (void)hand_out(p, q, tpl, caller); /* running: nothing to thaw, nothing to fail */
}

static int on_waiter_timeout(sd_event_source *src, uint64_t usec, void *userdata) {
    struct preload_waiter *w = userdata;
    struct preload *p = w->p;
    preload_got_fn got = w->got;
    void *ud = w->userdata;
    char name[32];
    snprintf(name, sizeof(name), "%s", w->name);
    waiter_free(w);
    struct qube *q = app_find(p->app, name);
    log_warning("preload: %s did not finish preloading in time; a fresh disposable instead", name);
    const struct qube *tpl = q ? template_of(p->app, q) : NULL;
    if (tpl)
        preload_note_failure(p, tpl->name, "a preload did not become ready in time");
    if (q)
        preload_discard(p, q, "it did not become ready in time");
    got(ud, NULL, NULL);
    return 0;
}

static int wait_for_start(struct preload *p, struct qube *q, const char *caller, preload_got_fn got,
                          void *userdata) {
    char buf[32];
    bool is_default;
    long timeout = strtol(app_prop_get(p->app, q, &PROP_DEFS[P_QREXEC_TIMEOUT], buf, sizeof(buf),
                                       &is_default),
                          NULL, 10);
    struct preload_waiter *w = xcalloc(1, sizeof(*w));
    *w = (struct preload_waiter){.p = p, .next = p->waiters, .got = got, .userdata = userdata};
    snprintf(w->name, sizeof(w->name), "%s", q->name);
    snprintf(w->caller, sizeof(w->caller), "%s", caller);
    dispatcher_foreground(p->dispatcher, q); /* someone waits for it now: ahead of other preloads */
    /* as Qubes: 1.2 x qrexec_timeout, then a fresh disposable */
    if (sd_event_add_time_relative(p->loop, &w->timeout, CLOCK_MONOTONIC,
                                   (uint64_t)timeout * 1200000ULL, 0, on_waiter_timeout, w) < 0) {
        free(w);
        return 0;
    }
    p->waiters = w;
    return 1;
}

/* A request finding fewer than max fills the gap, a little later (Qubes: max(5, delay));
 * an auto-sized pool at once: the request told it that demand is there. */
static void fill_gap(struct preload *p, struct qube *tpl, size_t n) {
    double delay = preload_delay(p->app, tpl);
    if (n < preload_target(p, tpl) + preload_hibernated_target(p, tpl) && !(delay < 0 && n > 0))
        preload_schedule(p, tpl, "there is a gap",
                         preload_auto_ceiling(p->app, tpl) ? 0
                         : delay > 5                       ? delay
                                                           : 5);
}

int preload_request(struct preload *p, struct qube *tpl, const char *caller, preload_got_fn got,
                    void *userdata) {
    char names[PRELOAD_LIST_MAX][32];
    size_t n = preload_list(tpl, names, PRELOAD_LIST_MAX);
    struct qube *starting = NULL, *queued = NULL, *hibernated = NULL;
    char fp[17];
    fingerprint(p, tpl, fp);
    preload_note_request(p, tpl);
    fill_gap(p, tpl, n); /* as Qubes: the list as found; a full one has no gap */
    for (size_t i = 0; i < n; i++) {
        struct qube *q = app_find(p->app, names[i]);
        if (!q) {
            preload_list_remove(p, tpl, names[i]);
            continue;
        }
        if (outdated(p, q, fp)) { /* the lazy check: never hand out a stale one */
            preload_discard(p, q, "it is outdated");
            continue;
        }
        if (preload_is_hibernated(p->app, q)) { /* woken only if no paused one is there */
            if (!hibernated)
                hibernated = q;
            continue;
        }
        if (strmap_get(&q->features, MARK_COMPLETED) && !strmap_get(&q->features, MARK_SAVED)) {
            /* out of the list and handed out in one transaction: one commit on the
             * hand-out path, not two */
            struct qerr err = {0};
            bool batch = app_batch_begin_ephemeral(p->app, &err) == 0;
            preload_list_remove(p, tpl, names[i]);
            int r = hand_out(p, q, tpl, caller);
            if (r < 0) /* the next one, or a fresh disposable */
                preload_discard(p, q, "it could not be unpaused");
            if (batch && app_batch_end(p->app, &err) < 0) {
                /* memory took the hand-out back: q is a listed preload again, and
                 * handing it out now could hand it out twice */
                log_error("preload: %s: hand-out not saved: %s", names[i], err.msg);
                if (r == 0)
                    preload_discard(p, q, "its hand-out could not be saved");
                r = -1;
            }
            if (r < 0)
                continue;
            preload_note_hit(p, tpl);
            got(userdata, q, NULL);
            return 1;
        }
        if (!starting && is_starting(q))
            starting = q;
        else if (!queued && is_queued(q))
            queued = q;
    }
    /* none paused: a hibernated one is woken (its image loaded: seconds, not a boot) */
    if (hibernated && preload_wake(p, hibernated, tpl, caller, got, userdata) == 0)
        return 1; /* else it is gone: other qubes found are still there */
    /* none ready: the one closest to ready, in the foreground from now on */
    struct qube *q = starting ? starting : queued;
    if (q) {
        log_debug("preload: %s: none ready; %s waits for %s (%s)", tpl->name, caller, q->name,
                  q == starting ? "starting" : "queued");
        preload_list_remove(p, tpl, q->name);
        if (q != queued || start_preload(p, q) == 0)
            return wait_for_start(p, q, caller, got, userdata);
    }
    fill_gap(p, tpl, 0); /* none usable: the list is empty now */
    return 0;
}

/* Daemon exit: pending refills and waiting requests are dropped (preloads keep running
 * and are adopted by the next daemon). */
void preload_cancel_all(struct preload *p) {
    while (p->timers)
        timer_free(p->timers);
    while (p->waiters)
        waiter_free(p->waiters);
}
