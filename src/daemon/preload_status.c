/* What the preload pool is doing, for dispenser.preload.Status (dispenser-preload
 * status): per disposable template its maxima, what is ready and starting, and why a
 * gap is not being filled: the memory threshold, a failure waiting for the next trigger,
 * or the delay of a pending refill. From the pool's own state, never from logs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "disposable.h"
#include "preload_internal.h"

/* ---- failures: the last one per template ---- */

static struct preload_failure **failure_slot(struct preload *p, const char *tpl) {
    struct preload_failure **pp = &p->failures;
    while (*pp && strcmp((*pp)->tpl, tpl) != 0)
        pp = &(*pp)->next;
    return pp;
}

void preload_note_failure(struct preload *p, const char *tpl, const char *why) {
    struct preload_failure **pp = failure_slot(p, tpl);
    if (!*pp) {
        *pp = xcalloc(1, sizeof(**pp));
        snprintf((*pp)->tpl, sizeof((*pp)->tpl), "%s", tpl);
    }
    snprintf((*pp)->why, sizeof((*pp)->why), "%s", why);
    for (char *c = (*pp)->why; *c; c++) /* one line of the reply */
        if (*c == '\n' || *c == '\r')
            *c = ' ';
}

void preload_clear_failure(struct preload *p, const char *tpl) {
    struct preload_failure **pp = failure_slot(p, tpl), *f = *pp;
    if (f) {
        *pp = f->next;
        free(f);
    }
}

const char *preload_last_failure(const struct preload *p, const char *tpl) {
    for (const struct preload_failure *f = p->failures; f; f = f->next)
        if (strcmp(f->tpl, tpl) == 0)
            return f->why;
    return NULL;
}

/* ---- the status lines ---- */

struct pool_counts {
    size_t ready, starting; /* in the list: completed (paused), and queued or starting */
    size_t hibernated;      /* completed, saved to disk (or being saved) */
};

static struct pool_counts count_pool(struct preload *p, const struct qube *tpl) {
    char names[PRELOAD_LIST_MAX][32];
    size_t n = preload_list(tpl, names, PRELOAD_LIST_MAX);
    struct pool_counts c = {preload_ready_count(p, tpl), 0};
    for (size_t i = 0; i < n; i++)
        c.starting += app_find(p->app, names[i]) != NULL;
    c.starting -= c.ready;
    for (size_t i = 0; i < n; i++) { /* the tier: saved (completed) or being saved */
        const struct qube *q = app_find(p->app, names[i]);
        const char *v = q ? strmap_get(&q->features, MARK_SAVED) : NULL;
        if (!v)
            continue;
        c.hibernated++;
        if (strcmp(v, "1") == 0)
            c.ready--;
        else
            c.starting--;
    }
    return c;
}

/* Why the list is not (being) filled to max, in the order that decides it: nothing
 * wanted, nothing missing, a refill pending (now or after the delay), not enough memory
 * above the threshold, the last attempt failed (its gap waits for a trigger), or no
 * trigger yet. */
static const char *pool_state(struct preload *p, const struct qube *tpl, unsigned max, size_t have,
                              unsigned can, double *refill_in) {
    *refill_in = -1;
    if (preload_cap(p->app, tpl) == 0 && max == 0)
        return "off";
    if (have >= max)
        return "full";
    if (preload_pressure_high(p))
        return "pressure";
    if (preload_refill_pending(p, tpl->name, refill_in))
        return *refill_in > 0 ? "delay" : "filling";
    if (can < max - have)
        return "threshold";
    if (preload_last_failure(p, tpl->name))
        return "failed";
    return "idle";
}

static const char *feature_or_dash(const struct qube *q, const char *name) {
    const char *v = strmap_get(&q->features, name);
    return v && *v ? v : "-";
}

/* What the pool learned of its demand, and what it aims at (preload_auto.c). */
static void demand_fields(struct preload *p, const struct qube *tpl, unsigned target,
                          struct strbuf *out) {
    const struct demand *d = &preload_pool_of(p, tpl->name)->demand;
    unsigned ceiling = preload_auto_ceiling(p->app, tpl);
    strbuf_printf(out, " target=%u auto=", target);
    if (ceiling)
        strbuf_printf(out, "%u", ceiling);
    else
        strbuf_puts(out, "-");
    strbuf_printf(out, " rate=%.2f burst=%.1f refill_time=%.1f hits=%llu requests=%llu pressure=%s",
                  demand_rate_per_min(d, preload_now(p), preload_window_s(p->app, tpl)),
                  demand_burst(d), demand_refill_s(d), (unsigned long long)d->hits,
                  (unsigned long long)d->requests, preload_pressure_high(p) ? "high" : "low");
}

static void status_line(struct preload *p, const struct qube *tpl, struct strbuf *out) {
    unsigned target = preload_target(p, tpl), tier = preload_hibernated_target(p, tpl);
    unsigned max = target + tier;
    struct pool_counts c = count_pool(p, tpl);
    size_t have = c.ready + c.starting + c.hibernated;
    struct preload_memory m;
    unsigned can = preload_affordable(p, tpl, max > have ? max - (unsigned)have : 0, &m);
    double refill_in;
    const char *state = pool_state(p, tpl, max, have, can, &refill_in);
    const char *global = preload_global_applies(p->app, tpl)
                             ? feature_or_dash(app_dom0(p->app), "preload-dispvm-max")
                             : "-";
    const char *failure = preload_last_failure(p, tpl->name);
    strbuf_printf(out, "%s max=%u local=%s global=%s ready=%zu starting=%zu state=%s refill_in=",
                  tpl->name, preload_cap(p->app, tpl), feature_or_dash(tpl, "preload-dispvm-max"),
                  global, c.ready, c.starting, state);
    if (refill_in >= 0)
        strbuf_printf(out, "%.1f", refill_in);
    else
        strbuf_puts(out, "-");
    strbuf_printf(out, " delay=%.1f mem_free=%lld threshold=%lld each=%lld",
                  preload_delay(p->app, tpl), (long long)m.free_mib, (long long)m.threshold_mib,
                  (long long)m.each_mib);
    demand_fields(p, tpl, target, out);
    strbuf_printf(out, " hibernated=%zu hibernated_max=", c.hibernated);
    if (tier || !preload_hibernated_max(p->app, tpl))
        strbuf_printf(out, "%u", tier);
    else
        strbuf_puts(out, "ignored"); /* its engine cannot hibernate */
    strbuf_printf(out, " failure=%s\n", failure ? failure : "");
}

int preload_status(struct preload *p, const struct qube *only, struct strbuf *out,
                   struct qerr *err) {
    if (only) {
        if (!disposable_template_ok(p->app, only))
            return qerr_set(err, EXC_VALUE,
                            "'%s' is not a disposable template (template_for_dispvms is not set)",
                            only->name);
        status_line(p, only, out);
        return 0;
    }
    for (size_t i = 0; i < p->app->n_qubes; i++)
        if (disposable_template_ok(p->app, p->app->qubes[i]))
            status_line(p, p->app->qubes[i], out);
    return 0;
}
