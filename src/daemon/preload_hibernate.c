/* The hibernated tier (docs/preload.md): with `preload-dispvm-hibernated` = M on a
 * disposable template whose engine can hibernate, the pool holds its paused preloads
 * (preload-dispvm-max, or the demand's target) and M more whose state its engine saved to
 * disk (no process, no RAM). A preload that gets ready while the paused ones are complete
 * is hibernated instead of kept paused; a request takes a paused one first, else wakes a
 * hibernated one, else waits for one starting or makes a fresh disposable. A hibernating
 * preload is still in progress (not handed out, discarded by a restart); a hibernated one
 * is completed and marked MARK_SAVED, and counts ~0 against the memory threshold. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "preload_internal.h"

#define FEATURE "preload-dispvm-hibernated"

unsigned preload_hibernated_max(const struct app *app, const struct qube *tpl) {
    (void)app;
    const char *v = strmap_get(&tpl->features, FEATURE);
    return v && *v && all_digits_or_empty(v) ? (unsigned)strtoul(v, NULL, 10) : 0;
}

unsigned preload_hibernated_target(struct preload *p, const struct qube *tpl) {
    unsigned m = preload_hibernated_max(p->app, tpl);
    return m && dispatcher_can_hibernate(p->dispatcher, tpl) ? m : 0;
}

/* Said when the feature is set: an engine without hibernation (the container engine: no
 * CRIU in its design) ignores it, and the pool keeps its paused preloads only. */
void preload_hibernated_changed(struct preload *p, struct qube *tpl) {
    unsigned m = preload_hibernated_max(p->app, tpl);
    if (m && !dispatcher_can_hibernate(p->dispatcher, tpl))
        log_info("preload: %s: %s=%u ignored: its engine cannot hibernate a qube "
                 "(docs/preload.md)",
                 tpl->name, FEATURE, m);
    char reason[160];
    snprintf(reason, sizeof(reason), m ? FEATURE " was set to '%u'" : FEATURE " was deleted", m);
    preload_schedule(p, tpl, reason, 0);
}

bool preload_is_hibernated(const struct app *app, const struct qube *q) {
    const char *v = strmap_get(&q->features, MARK_SAVED);
    return v && strcmp(v, "1") == 0 && preload_is_preload(app, q);
}

bool preload_may_hibernate(const struct app *app, const struct qube *q) {
    const struct qube *tpl = q->props[P_TEMPLATE] ? app_find(app, q->props[P_TEMPLATE]) : NULL;
    return tpl && preload_is_preload(app, q) && preload_hibernated_max(app, tpl) > 0;
}

/* Paused ready (completed, not saved) and in the hibernated tier (saved or being saved),
 * of tpl's list. */
static void count(struct preload *p, const struct qube *tpl, size_t *paused, size_t *tier) {
    char names[PRELOAD_LIST_MAX][32];
    size_t n = preload_list(tpl, names, PRELOAD_LIST_MAX);
    *paused = *tier = 0;
    for (size_t i = 0; i < n; i++) {
        const struct qube *q = app_find(p->app, names[i]);
        if (!q)
            continue;
        if (strmap_get(&q->features, MARK_SAVED))
            (*tier)++;
        else if (strmap_get(&q->features, "preload-dispvm-completed"))
            (*paused)++;
    }
}

size_t preload_hibernated_count(struct preload *p, const struct qube *tpl) {
    size_t paused, tier;
    count(p, tpl, &paused, &tier);
    return tier;
}

/* A tier larger than its feature now says: its newest go first, before the pool's own
 * trim (which, from the tail, would take paused ones). */
void preload_trim_tier(struct preload *p, const struct qube *tpl) {
    char names[PRELOAD_LIST_MAX][32];
    size_t n = preload_list(tpl, names, PRELOAD_LIST_MAX), paused, tier;
    count(p, tpl, &paused, &tier);
    unsigned max = preload_hibernated_target(p, tpl);
    for (size_t i = n; i > 0 && tier > max; i--) {
        struct qube *q = app_find(p->app, names[i - 1]);
        if (q && strmap_get(&q->features, MARK_SAVED)) {
            preload_discard(p, q, "the hibernated tier was lowered");
            tier--;
        }
    }
}

/* ---- into the tier ---- */

struct hibernation {
    struct preload *p;
    char name[32];
};

static void on_hibernated(void *userdata, int r, const struct qerr *err) {
    struct hibernation *h = userdata;
    struct preload *p = h->p;
    struct qube *q = app_find(p->app, h->name);
    free(h);
    if (!q)
        return; /* discarded meanwhile */
    if (r < 0) {
        const struct qube *tpl = q->props[P_TEMPLATE] ? app_find(p->app, q->props[P_TEMPLATE])
                                                      : NULL;
        log_warning("preload: %s could not be hibernated: %s", q->name, err ? err->msg : "?");
        if (tpl)
            preload_note_failure(p, tpl->name, err ? err->msg : "it could not be hibernated");
        preload_discard(p, q, "it could not be hibernated");
        return;
    }
    struct qerr perr = {0};
    bool batch = app_batch_begin_ephemeral(p->app, &perr) == 0;
    preload_set_mark(p, q, MARK_SAVED, "1");
    preload_set_mark(p, q, "preload-dispvm-completed", "1");
    preload_set_mark(p, q, "preload-dispvm-in-progress", NULL);
    if (batch && app_batch_end(p->app, &perr) < 0)
        log_error("preload: %s: hibernation not saved: %s", q->name, perr.msg);
    log_info("preload: %s hibernated", q->name);
}

/* q is ready and paused: into the tier if the paused ones are complete and the tier is
 * not. 0 if it is being hibernated (completed once saved), -1 if it stays paused. */
int preload_hibernate_if_wanted(struct preload *p, struct qube *q, const struct qube *tpl) {
    unsigned tier_max = preload_hibernated_target(p, tpl);
    size_t paused, tier;
    count(p, tpl, &paused, &tier);
    if (!tier_max || tier >= tier_max || paused < preload_target(p, tpl))
        return -1;
    struct hibernation *h = xcalloc(1, sizeof(*h));
    h->p = p;
    snprintf(h->name, sizeof(h->name), "%s", q->name);
    preload_set_mark(p, q, MARK_SAVED, "0"); /* in the tier from now on */
    struct qerr err = {0};
    if (dispatcher_hibernate(p->dispatcher, q, on_hibernated, h, &err) < 0) {
        log_warning("preload: %s: not hibernated, kept paused: %s", q->name, err.msg);
        preload_set_mark(p, q, MARK_SAVED, NULL);
        free(h);
        return -1;
    }
    return 0;
}

/* ---- out of it ---- */

struct wake {
    struct preload *p;
    char name[32], tpl[32], caller[32];
    preload_got_fn got;
    void *userdata;
};

static void on_woken(void *userdata, int r, const struct qerr *err) {
    struct wake *w = userdata;
    struct preload *p = w->p;
    struct qube *q = app_find(p->app, w->name), *tpl = app_find(p->app, w->tpl);
    if (r < 0 || !q || !tpl) { /* gone: the caller makes a fresh disposable */
        log_warning("preload: %s could not be woken: %s", w->name, err ? err->msg : "it is gone");
        if (q)
            preload_discard(p, q, "it could not be woken");
        w->got(w->userdata, NULL, NULL);
    } else {
        preload_set_mark(p, q, MARK_SAVED, NULL);
        preload_hand_out_woken(p, q, tpl, w->caller);
        preload_note_hit(p, tpl);
        w->got(w->userdata, q, NULL);
    }
    free(w);
}

int preload_wake(struct preload *p, struct qube *q, struct qube *tpl, const char *caller,
                 preload_got_fn got, void *userdata) {
    struct wake *w = xcalloc(1, sizeof(*w));
    *w = (struct wake){.p = p, .got = got, .userdata = userdata};
    snprintf(w->name, sizeof(w->name), "%s", q->name);
    snprintf(w->tpl, sizeof(w->tpl), "%s", tpl->name);
    snprintf(w->caller, sizeof(w->caller), "%s", caller);
    preload_list_remove(p, tpl, w->name);
    log_info("preload: %s: waking hibernated %s for %s", tpl->name, w->name, caller);
    struct qerr err = {0};
    if (dispatcher_wake(p->dispatcher, q, on_woken, w, &err) < 0) { /* q may be gone */
        log_warning("preload: %s could not be woken: %s", w->name, err.msg);
        if ((q = app_find(p->app, w->name)))
            preload_discard(p, q, "it could not be woken");
        free(w);
        return -1;
    }
    return 0;
}
