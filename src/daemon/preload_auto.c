/* Pools that follow demand (docs/preload.md, "Following demand"): with
 * `preload-dispvm-auto` set on a disposable template, its pool holds what its requests
 * call for, between 0 and that ceiling, and nothing once it has been idle for
 * `preload-dispvm-idle` seconds. Without it, preload-dispvm-max rules as in Qubes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "disposable.h"
#include "preload_internal.h"

#define WINDOW_DEFAULT_S 300.0 /* of the decaying request rate */
#define IDLE_DEFAULT_S 600.0   /* an auto-sized pool empties after this long without use */

static unsigned digits_feature(const struct qube *q, const char *name) {
    const char *v = strmap_get(&q->features, name);
    return v && *v && all_digits_or_empty(v) ? (unsigned)strtoul(v, NULL, 10) : 0;
}

unsigned preload_auto_ceiling(const struct app *app, const struct qube *tpl) {
    (void)app;
    return digits_feature(tpl, "preload-dispvm-auto");
}

unsigned preload_cap(const struct app *app, const struct qube *tpl) {
    unsigned ceiling = preload_auto_ceiling(app, tpl), max = preload_max(app, tpl);
    if (!ceiling)
        return max;
    return preload_max_present(app, tpl) && max < ceiling ? max : ceiling;
}

/* A positive number of seconds, from the template, then dom0, else the default. */
static double seconds_feature(const struct app *app, const struct qube *tpl, const char *name,
                              double fallback) {
    const char *v = app_feature_check(app, tpl, name, FEATURE_FALLBACK_ADMINVM);
    double s = v && *v ? strtod(v, NULL) : fallback;
    return s > 0 ? s : fallback;
}

double preload_window_s(const struct app *app, const struct qube *tpl) {
    return seconds_feature(app, tpl, "preload-dispvm-auto-window", WINDOW_DEFAULT_S);
}

double preload_idle_s(const struct app *app, const struct qube *tpl) {
    return seconds_feature(app, tpl, "preload-dispvm-idle", IDLE_DEFAULT_S);
}

double preload_now(const struct preload *p) {
    uint64_t now = 0;
    sd_event_now(p->loop, CLOCK_MONOTONIC, &now);
    return (double)now / 1e6;
}

struct preload_pool *preload_pool_of(struct preload *p, const char *tpl) {
    for (struct preload_pool *pl = p->pools; pl; pl = pl->next)
        if (strcmp(pl->tpl, tpl) == 0)
            return pl;
    struct preload_pool *pl = xcalloc(1, sizeof(*pl));
    pl->p = p;
    pl->next = p->pools;
    snprintf(pl->tpl, sizeof(pl->tpl), "%s", tpl);
    demand_init(&pl->demand);
    p->pools = pl;
    return pl;
}

unsigned preload_target(struct preload *p, const struct qube *tpl) {
    unsigned ceiling = preload_cap(p->app, tpl);
    if (!preload_auto_ceiling(p->app, tpl) || !ceiling)
        return ceiling;
    const struct preload_pool *pl = preload_pool_of(p, tpl->name);
    return demand_target(&pl->demand, preload_now(p), preload_window_s(p->app, tpl),
                         preload_idle_s(p->app, tpl), preload_delay(p->app, tpl), ceiling);
}

/* A burst ended, or the template was idle for preload-dispvm-idle: the refill that runs
 * now trims the pool to its target. */
static int on_demand_fell(sd_event_source *src, uint64_t usec, void *userdata) {
    struct preload_pool *pl = userdata;
    struct qube *tpl = app_find(pl->p->app, pl->tpl);
    if (tpl && preload_auto_ceiling(pl->p->app, tpl))
        preload_schedule(pl->p, tpl, src == pl->idle ? "it was idle" : "a burst ended", 0);
    return 0;
}

static void arm(struct preload *p, struct preload_pool *pl, sd_event_source **src, double in_s) {
    uint64_t at = (uint64_t)((preload_now(p) + in_s) * 1e6) + 50000;
    if (*src) {
        sd_event_source_set_time(*src, at);
        sd_event_source_set_enabled(*src, SD_EVENT_ONESHOT);
    } else if (sd_event_add_time(p->loop, src, CLOCK_MONOTONIC, at, 0, on_demand_fell, pl) >= 0) {
        sd_event_source_set_priority(*src, SD_EVENT_PRIORITY_IDLE);
    }
}

void preload_note_request(struct preload *p, struct qube *tpl) {
    struct preload_pool *pl = preload_pool_of(p, tpl->name);
    demand_note_request(&pl->demand, preload_now(p), preload_window_s(p->app, tpl), false);
    if (preload_auto_ceiling(p->app, tpl)) {
        arm(p, pl, &pl->idle, preload_idle_s(p->app, tpl));
        arm(p, pl, &pl->burst_end, demand_burst_gap_s(&pl->demand));
    }
}

void preload_note_hit(struct preload *p, const struct qube *tpl) {
    preload_pool_of(p, tpl->name)->demand.hits++;
}

void preload_note_created(struct preload *p, const struct qube *tpl, const char *name) {
    struct preload_pool *pl = preload_pool_of(p, tpl->name);
    size_t slot = 0; /* a free one, else the oldest */
    for (size_t i = 0; i < PRELOAD_LIST_MAX; i++) {
        if (!pl->created[i].name[0]) {
            slot = i;
            break;
        }
        if (pl->created[i].at < pl->created[slot].at)
            slot = i;
    }
    snprintf(pl->created[slot].name, sizeof(pl->created[slot].name), "%s", name);
    pl->created[slot].at = preload_now(p);
}

/* From its creation to ready: queueing, start, warm-up, what a refill really takes. */
void preload_note_ready(struct preload *p, const struct qube *tpl, const char *name) {
    struct preload_pool *pl = preload_pool_of(p, tpl->name);
    for (size_t i = 0; i < PRELOAD_LIST_MAX; i++)
        if (strcmp(pl->created[i].name, name) == 0) {
            demand_note_refill(&pl->demand, preload_now(p) - pl->created[i].at);
            pl->created[i].name[0] = '\0';
            return;
        }
}

static void pool_free(struct preload_pool *pl) {
    sd_event_source_disable_unref(pl->idle);
    sd_event_source_disable_unref(pl->burst_end);
    free(pl);
}

void preload_pools_free(struct preload *p) {
    while (p->pools) {
        struct preload_pool *pl = p->pools;
        p->pools = pl->next;
        pool_free(pl);
    }
}

/* A template removed: what it learned goes with it (a new one of the same name starts
 * from nothing, not from its predecessor's bursts). */
void preload_pool_forget(struct preload *p, const char *tpl) {
    for (struct preload_pool **pp = &p->pools; *pp; pp = &(*pp)->next)
        if (strcmp((*pp)->tpl, tpl) == 0) {
            struct preload_pool *pl = *pp;
            *pp = pl->next;
            pool_free(pl);
            return;
        }
}

void preload_shed(struct preload *p, struct qube *tpl, struct qube *q, const char *reason) {
    struct wire_kv kv[] = {{"dispvm", q->name}, {"reason", reason}};
    app_emit(p->app, tpl, "domain-preload-dispvm-discard", kv, 2);
    preload_discard(p, q, reason);
}
