/* Shared by the preload pool's files. */
#pragma once
#include <stdint.h>

#include "log.h"
#include "preload.h"
#include "preload_demand.h"

#define PRELOAD_LIST_MAX 64

struct preload_waiter; /* a request waiting for a preload still starting */

/* A template's last preloading failure, kept until one of its preloads gets ready: a gap
 * it left waits for the next trigger (no retry loop), and dispenser.preload.Status says
 * so. */
struct preload_failure {
    struct preload_failure *next;
    char tpl[32];
    char why[256];
};

/* What the daemon learns per disposable template (preload_auto.c). */
struct preload_pool {
    struct preload_pool *next;
    struct preload *p;
    char tpl[32];
    struct demand demand;
    struct {
        char name[32];
        double at;
    } created[PRELOAD_LIST_MAX]; /* preloads not ready yet, and when they were made */
    sd_event_source *idle;       /* empties an auto-sized pool once the template was idle */
    sd_event_source *burst_end;  /* and trims it to what the rate calls for after a burst */
};

struct preload_pressure; /* the memory pressure watch (preload_pressure.c) */

struct preload {
    sd_event *loop;
    struct app *app;
    struct dispatcher *dispatcher;
    struct memory_source mem;
    struct preload_waiter *waiters;
    struct preload_timer *timers;
    unsigned holds; /* hand-out calls in flight: refills wait for them (preload_hold) */
    struct preload_failure *failures;
    struct preload_pool *pools;
    struct preload_pressure *pressure;
};

/* Features of the template chain that a qube's start reads (dispatcher.c's describe()):
 * part of what a preload is made from. NULL-terminated. */

struct qube *preload_default_dispvm(const struct app *app);
bool preload_global_applies(const struct app *app, const struct qube *tpl);
unsigned preload_max(const struct app *app, const struct qube *tpl);
/* preload-dispvm-max is there at all (the global one where it applies): "" is 0 */
bool preload_max_present(const struct app *app, const struct qube *tpl);
bool all_digits_or_empty(const char *v);
uint64_t preload_threshold_mib(const struct app *app);
double preload_delay(const struct app *app, const struct qube *tpl);

void preload_note_failure(struct preload *p, const char *tpl, const char *why);
void preload_clear_failure(struct preload *p, const char *tpl);
const char *preload_last_failure(const struct preload *p, const char *tpl);

/* What memory allows: how many of want preloads of tpl fit (the threshold kept free),
 * and the numbers it was decided on. */
struct preload_memory {
    int64_t free_mib, threshold_mib, each_mib;
};
unsigned preload_affordable(struct preload *p, const struct qube *tpl, unsigned want,
                            struct preload_memory *m);
size_t preload_ready_count(struct preload *p, const struct qube *tpl);
/* A refill of tpl is pending: true, with the seconds until it runs (0: now). */
bool preload_refill_pending(const struct preload *p, const char *tpl, double *in_s);

void preload_do_refill(struct preload *p, struct qube *tpl, const char *reason, double delay);
void preload_schedule(struct preload *p, const struct qube *tpl, const char *reason, double delay);
void preload_discard(struct preload *p, struct qube *q, const char *why);
void preload_cancel_all(struct preload *p);

size_t preload_list(const struct qube *tpl, char names[][32], size_t max);
int preload_list_store(struct preload *p, struct qube *tpl, char names[][32], size_t n);
bool preload_list_remove(struct preload *p, struct qube *tpl, const char *name);

/* ---- following demand (preload_auto.c) ---- */
/* preload-dispvm-auto: the ceiling of an auto-sized pool; 0: not auto-sized */
unsigned preload_auto_ceiling(const struct app *app, const struct qube *tpl);
/* The most the pool may hold: the auto ceiling (capped by preload-dispvm-max where that
 * is present), or preload-dispvm-max. */
unsigned preload_cap(const struct app *app, const struct qube *tpl);
/* How many preloads the pool should hold now: preload-dispvm-max, or the demand's. */
unsigned preload_target(struct preload *p, const struct qube *tpl);
struct preload_pool *preload_pool_of(struct preload *p, const char *tpl);
double preload_now(const struct preload *p);
double preload_window_s(const struct app *app, const struct qube *tpl);
double preload_idle_s(const struct app *app, const struct qube *tpl);
void preload_note_request(struct preload *p, struct qube *tpl);
void preload_note_hit(struct preload *p, const struct qube *tpl);
/* A preload was created, got ready: its refill time, from the one to the other. */
void preload_note_created(struct preload *p, const struct qube *tpl, const char *name);
void preload_note_ready(struct preload *p, const struct qube *tpl, const char *name);
void preload_pools_free(struct preload *p);
void preload_pool_forget(struct preload *p, const char *tpl);
/* Discarded for the pool's own reasons (demand, memory pressure): announced on the
 * template as domain-preload-dispvm-discard (dispvm, reason). */
void preload_shed(struct preload *p, struct qube *tpl, struct qube *q, const char *reason);

/* ---- memory pressure (preload_pressure.c) ---- */
void preload_pressure_configure(struct preload *p);
bool preload_pressure_high(const struct preload *p);
void preload_pressure_free(struct preload *p);
int preload_validate_pressure(const char *value, struct qerr *err);

/* ---- the hibernated tier (preload_hibernate.c) ---- */
/* on a preload: "0" while its engine saves it, "1" once saved (hibernated) */
#define MARK_SAVED "preload-dispvm-saved"
/* preload-dispvm-hibernated of tpl; the tier in force (0 where its engine cannot) */
unsigned preload_hibernated_max(const struct app *app, const struct qube *tpl);
unsigned preload_hibernated_target(struct preload *p, const struct qube *tpl);
size_t preload_hibernated_count(struct preload *p, const struct qube *tpl);
void preload_hibernated_changed(struct preload *p, struct qube *tpl);
/* Discards the tier's newest beyond what it may hold now. */
void preload_trim_tier(struct preload *p, const struct qube *tpl);
/* A ready, paused q goes into the tier if wanted (0), else stays paused (-1). */
int preload_hibernate_if_wanted(struct preload *p, struct qube *q, const struct qube *tpl);
/* Out of the list and woken for caller; `got` when it runs (or NULL: a fresh one). 0, or
 * -1 if it could not even begin (q may be gone then). */
int preload_wake(struct preload *p, struct qube *q, struct qube *tpl, const char *caller,
                 preload_got_fn got, void *userdata);
/* preload.c's, for it */
void preload_set_mark(struct preload *p, struct qube *q, const char *name, const char *value);
void preload_hand_out_woken(struct preload *p, struct qube *q, struct qube *tpl,
                            const char *caller);
