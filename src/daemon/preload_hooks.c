/* What sets the preload pool going: feature and property changes, qubes stopping,
 * a restart, suspend and resume. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_checks.h"
#include "disposable.h"
#include "preload_internal.h"

static void discard_all_of(struct preload *p, struct qube *tpl, const char *why) {
    char names[PRELOAD_LIST_MAX][32];
    size_t n = preload_list(tpl, names, PRELOAD_LIST_MAX);
    for (size_t i = 0; i < n; i++) {
        struct qube *q = app_find(p->app, names[i]);
        if (q)
            preload_discard(p, q, why);
    }
    if (n)
        preload_list_store(p, tpl, names, 0);
}

/* Preloads whose template or disposable template has a new revision, or whose inherited
 * properties changed, are replaced (the check itself is exact: see outdated()). */
static void refresh_outdated(struct preload *p, struct qube *tpl, double delay) {
    preload_schedule(p, tpl, "of outdated volume(s)", delay);
}

static void refresh_based_on(struct preload *p, struct qube *q, double delay);

/* The pool of an auto-sized template (or of all, for dom0's values) is sized again. */
static void auto_changed(struct preload *p, struct qube *q, const char *name) {
    const char *v = strmap_get(&q->features, name);
    char reason[160];
    snprintf(reason, sizeof(reason), v ? "%s was set to '%s'" : "%s was deleted", name, v ? v : "");
    for (size_t i = 0; i < p->app->n_qubes; i++) {
        struct qube *d = p->app->qubes[i];
        if ((d == q || q->klass == QUBE_ADMINVM) && disposable_template_ok(p->app, d) &&
            (preload_auto_ceiling(p->app, d) || strcmp(name, "preload-dispvm-auto") == 0))
            preload_schedule(p, d, reason, 0);
    }
}

void preload_feature_changed(struct preload *p, struct qube *q, const char *name) {
    /* made with the old value (an engine option, or with or without a GUI agent): outdated */
    if (dispatcher_is_option_feature(p->dispatcher, name) || strcmp(name, "gui") == 0) {
        refresh_based_on(p, q, 0);
        return;
    }
    /* a disposable's services are its template's when it was made: outdated too */
    if (strncmp(name, SERVICE_FEATURE_PREFIX, strlen(SERVICE_FEATURE_PREFIX)) == 0) {
        if (disposable_template_ok(p->app, q))
            refresh_outdated(p, q, 0);
        return;
    }
    if (q->klass == QUBE_ADMINVM && strcmp(name, "preload-dispvm-pressure") == 0) {
        preload_pressure_configure(p);
        return;
    }
    if (strcmp(name, "preload-dispvm-auto") == 0 || strcmp(name, "preload-dispvm-idle") == 0 ||
        strcmp(name, "preload-dispvm-auto-window") == 0) {
        auto_changed(p, q, name);
        return;
    }
    if (strcmp(name, "preload-dispvm-hibernated") == 0 && disposable_template_ok(p->app, q)) {
        preload_hibernated_changed(p, q);
        return;
    }
    if (strcmp(name, "preload-dispvm-max") != 0)
        return;
    const char *v = strmap_get(&q->features, name);
    char reason[160];
    if (q->klass == QUBE_ADMINVM) {
        struct qube *dvm = preload_default_dispvm(p->app);
        snprintf(reason, sizeof(reason),
                 v ? "global feature was set to '%s'" : "global feature was deleted", v ? v : "");
        if (dvm)
            preload_schedule(p, dvm, reason, 0);
        return;
    }
    if (preload_global_applies(p->app, q))
        return; /* the global value is in force for this template */
    snprintf(reason, sizeof(reason),
             v ? "local feature was set to '%s'" : "local feature was deleted", v ? v : "");
    preload_schedule(p, q, reason, 0);
}

static struct qube *last_default_dispvm;

void preload_property_changed(struct preload *p, struct qube *q, const char *prop) {
    if (q->klass == QUBE_ADMINVM && strcmp(prop, "default_dispvm") == 0) {
        struct qube *now = preload_default_dispvm(p->app);
        if (last_default_dispvm && last_default_dispvm != now &&
            app_find(p->app, last_default_dispvm->name) == last_default_dispvm)
            preload_schedule(p, last_default_dispvm, "it was the default_dispvm", 0);
        if (now)
            preload_schedule(p, now, "it became the default_dispvm", 0);
        last_default_dispvm = now;
        return;
    }
    if (q->klass == QUBE_ADMINVM && strcmp(prop, "default_netvm") == 0) {
        /* the netvm of templates that follow the default changed: exact check of all */
        for (size_t i = 0; i < p->app->n_qubes; i++)
            if (disposable_template_ok(p->app, p->app->qubes[i]))
                refresh_outdated(p, p->app->qubes[i], 0);
        return;
    }
    if (!(CLASS_BIT(q->klass) & PROP_DEFS[P_TEMPLATE_FOR_DISPVMS].classes))
        return;
    if (strcmp(prop, "template_for_dispvms") == 0) {
        if (disposable_template_ok(p->app, q))
            preload_schedule(p, q, "template_for_dispvms was set to True", 0);
        else
            discard_all_of(p, q, "template_for_dispvms was set to False");
    } else if (strcmp(prop, "template") == 0) {
        discard_all_of(p, q, "template will change");
        preload_schedule(p, q, "template has changed", 0);
    } else {
        refresh_outdated(p, q, 0);
    }
}

/* Non-preload disposables block these changes (spec: "Changes of configuration");
 * preloads never do: they are discarded instead. */
int preload_validate_property(struct preload *p, const struct qube *q, const char *prop,
                              struct qerr *err) {
    if (strcmp(prop, "template") != 0 && strcmp(prop, "template_for_dispvms") != 0)
        return 0;
    for (size_t i = 0; i < p->app->n_qubes; i++) {
        const struct qube *d = p->app->qubes[i];
        if (d->klass == QUBE_DISPVM && streq_ptr(d->props[P_TEMPLATE], q->name) &&
            !preload_is_preload(p->app, d) && strcmp(prop, "template") == 0)
            return qerr_set(err, EXC_VM_IN_USE,
                            "Cannot change the template of '%s' while "
                            "its disposable '%s' exists",
                            q->name, d->name);
    }
    return 0;
}

/* A preload that stopped while in the list (killed, shut down, crashed) leaves it, and
 * its place is refilled after the delay, as a used one's is. Those discarded or handed
 * out left the list before: nothing to do for them. */
static void preload_stopped(struct preload *p, struct qube *q) {
    struct qube *tpl = q->props[P_TEMPLATE] ? app_find(p->app, q->props[P_TEMPLATE]) : NULL;
    if (!tpl || !preload_list_remove(p, tpl, q->name))
        return;
    log_info("preload: %s stopped: out of the list of %s", q->name, tpl->name);
    double delay = preload_delay(p->app, tpl);
    char names[PRELOAD_LIST_MAX][32];
    if (delay < 0 && preload_list(tpl, names, PRELOAD_LIST_MAX) > 0)
        return;
    preload_schedule(p, tpl, "a preloaded disposable stopped", delay < 0 ? -delay : delay);
}

/* A template that stopped may have a new root revision, a disposable template a new
 * private one: their preloads are checked (4 s later, as Qubes, to let things settle). */
void preload_qube_halted(struct preload *p, const char *name) {
    struct qube *q = app_find(p->app, name);
    if (!q)
        return;
    if (preload_is_preload(p->app, q))
        preload_stopped(p, q);
    else if (q->klass != QUBE_DISPVM) /* a disposable is nobody's template */
        refresh_based_on(p, q, 4);
}

/* The disposable templates that are q or are based on q: their preloads are checked. */
static void refresh_based_on(struct preload *p, struct qube *q, double delay) {
    for (size_t i = 0; i < p->app->n_qubes; i++) {
        struct qube *d = p->app->qubes[i];
        bool dvm = disposable_template_ok(p->app, d);
        if (dvm && (d == q || streq_ptr(d->props[P_TEMPLATE], q->name)))
            refresh_outdated(p, d, delay);
    }
}

/* qvm-unpause of a preload by hand uses it: out of the list, visible, refilled. */
void preload_unpaused_by_hand(struct preload *p, struct qube *q) {
    struct qube *tpl = q->props[P_TEMPLATE] ? app_find(p->app, q->props[P_TEMPLATE]) : NULL;
    if (!tpl || !preload_is_preload(p->app, q))
        return;
    log_warning("preload: %s was unpaused by hand: it counts as used", q->name);
    dispatcher_foreground(p->dispatcher, q);
    struct qerr err = {0};
    preload_list_remove(p, tpl, q->name);
    if (strmap_get(&q->features, "internal"))
        app_feature_remove(p->app, q, "internal", &err);
    app_prop_reset_system(p->app, q, &PROP_DEFS[P_IS_PRELOAD], &err);
    char delay_s[32];
    double delay = preload_delay(p->app, tpl);
    snprintf(delay_s, sizeof(delay_s), "%.1f", delay);
    struct wire_kv kv[] = {{"dispvm", q->name}, {"delay", delay_s}};
    app_emit(p->app, tpl, "domain-preload-dispvm-used", kv, 2);
    preload_schedule(p, tpl, "a preloaded disposable was used", delay < 0 ? -delay : delay);
}

void preload_discard_of(struct preload *p, struct qube *tpl) {
    preload_clear_failure(p, tpl->name);
    discard_all_of(p, tpl, "template being removed");
    preload_pool_forget(p, tpl->name);
}

/* Names of the templates that have a list. Taken first because discarding removes
 * qubes from the array one would walk, which would skip the qube after a removed one. */
static size_t listing_templates(const struct preload *p, char (**out)[32]) {
    size_t n = 0;
    *out = xcalloc(p->app->n_qubes + 1, sizeof(**out));
    for (size_t i = 0; i < p->app->n_qubes; i++)
        if (strmap_get(&p->app->qubes[i]->features, "preload-dispvm"))
            snprintf((*out)[n++], sizeof((*out)[0]), "%s", p->app->qubes[i]->name);
    return n;
}

void preload_discard_all(struct preload *p) {
    char(*tpls)[32];
    size_t n = listing_templates(p, &tpls);
    for (size_t i = 0; i < n; i++) {
        struct qube *tpl = app_find(p->app, tpls[i]);
        if (tpl)
            discard_all_of(p, tpl, "system wants to suspend");
    }
    free(tpls);
}

void preload_refill_all(struct preload *p, const char *reason) {
    for (size_t i = 0; i < p->app->n_qubes; i++) {
        struct qube *tpl = p->app->qubes[i];
        if (disposable_template_ok(p->app, tpl) && preload_cap(p->app, tpl) > 0)
            preload_schedule(p, tpl, reason, 0);
    }
}

/* After a restart: names of qubes that are gone leave the list; preloads that were still
 * starting, or are no longer running and paused, are discarded; completed paused ones
 * were adopted by the engine and stay. Refresh is not refill. */
static void recover_template(struct preload *p, struct qube *tpl) {
    char names[PRELOAD_LIST_MAX][32];
    size_t n = preload_list(tpl, names, PRELOAD_LIST_MAX);
    for (size_t i = 0; i < n; i++) {
        struct qube *q = app_find(p->app, names[i]);
        if (!q) {
            log_info("preload: %s: dropping absent %s", tpl->name, names[i]);
            preload_list_remove(p, tpl, names[i]);
        } else if (strmap_get(&q->features, "preload-dispvm-in-progress") ||
                   !strmap_get(&q->features, "preload-dispvm-completed") ||
                   q->power != POWER_PAUSED) {
            preload_discard(p, q, "its progress was interrupted");
        }
    }
}

/* Preloads in no list (a crash between creation and listing). */
static void discard_unlisted(struct preload *p) {
    for (size_t i = 0; i < p->app->n_qubes;) {
        struct qube *q = p->app->qubes[i];
        size_t before = p->app->n_qubes;
        struct qube *tpl = q->props[P_TEMPLATE] ? app_find(p->app, q->props[P_TEMPLATE]) : NULL;
        char names[PRELOAD_LIST_MAX][32];
        bool listed = false;
        size_t n = tpl ? preload_list(tpl, names, PRELOAD_LIST_MAX) : 0;
        for (size_t k = 0; k < n; k++)
            listed |= strcmp(names[k], q->name) == 0;
        if (preload_is_preload(p->app, q) && !listed)
            preload_discard(p, q, "it is in no preload list");
        if (p->app->n_qubes == before)
            i++;
    }
}

void preload_recover(struct preload *p) {
    last_default_dispvm = preload_default_dispvm(p->app);
    char(*tpls)[32];
    size_t n = listing_templates(p, &tpls);
    for (size_t i = 0; i < n; i++) {
        struct qube *tpl = app_find(p->app, tpls[i]);
        if (tpl)
            recover_template(p, tpl);
    }
    free(tpls);
    discard_unlisted(p);
}

struct preload *preload_new(sd_event *loop, struct app *app, struct dispatcher *dispatcher,
                            const struct memory_source *mem) {
    struct preload *p = xcalloc(1, sizeof(*p));
    *p = (struct preload){.loop = sd_event_ref(loop),
                          .app = app,
                          .dispatcher = dispatcher,
                          .mem = *mem};
    preload_pressure_configure(p);
    return p;
}

void preload_free(struct preload *p) {
    if (!p)
        return;
    preload_cancel_all(p);
    preload_pools_free(p);
    preload_pressure_free(p);
    while (p->failures)
        preload_clear_failure(p, p->failures->tpl);
    sd_event_unref(p->loop);
    free(p);
}
