/* Decaying averages of a template's demand (preload_demand.h). */
#include "preload_demand.h"

#include <math.h>

#define BURST_WEIGHT 0.5 /* of the burst that just ended, in the average of burst sizes */
#define BURST_GAP_MIN_S 1.0

void demand_init(struct demand *d) { *d = (struct demand){.last = -1}; }

double demand_refill_s(const struct demand *d) {
    return d->refill_s > 0 ? d->refill_s : DEMAND_REFILL_GUESS_S;
}

/* Rate as a sum of decaying impulses: each request adds 1/window and decays with the
 * time constant window, so that a steady rate r averages r. */
static double decayed_rate(const struct demand *d, double now, double window_s) {
    if (d->last < 0 || window_s <= 0)
        return 0;
    double dt = now > d->last ? now - d->last : 0;
    return d->rate * exp(-dt / window_s);
}

double demand_burst_gap_s(const struct demand *d) {
    double gap = demand_refill_s(d);
    return gap < BURST_GAP_MIN_S ? BURST_GAP_MIN_S : gap;
}

bool demand_in_burst(const struct demand *d, double now) {
    return d->last >= 0 && now - d->last <= demand_burst_gap_s(d);
}

void demand_note_request(struct demand *d, double now, double window_s, bool hit) {
    if (demand_in_burst(d, now)) {
        d->current++;
    } else {
        if (d->current) /* the burst before ended: into the average */
            d->burst = d->burst > 0 ? BURST_WEIGHT * d->current + (1 - BURST_WEIGHT) * d->burst
                                    : d->current;
        d->current = 1;
    }
    d->rate = decayed_rate(d, now, window_s) + (window_s > 0 ? 1.0 / window_s : 0);
    d->last = now;
    d->requests++;
    d->hits += hit;
}

void demand_note_refill(struct demand *d, double seconds) {
    if (seconds < 0)
        return;
    d->refill_s = d->refill_s > 0 ? 0.7 * d->refill_s + 0.3 * seconds : seconds;
}

double demand_rate_per_min(const struct demand *d, double now, double window_s) {
    return decayed_rate(d, now, window_s) * 60;
}

double demand_burst(const struct demand *d) {
    return d->current > d->burst ? d->current : d->burst;
}

unsigned demand_target(const struct demand *d, double now, double window_s, double idle_s,
                       double delay_s, unsigned ceiling) {
    if (d->last < 0 || now - d->last > idle_s)
        return 0;
    double over = demand_refill_s(d) + (delay_s > 0 ? delay_s : 0);
    double need = decayed_rate(d, now, window_s) * over;
    if (demand_in_burst(d, now) && demand_burst(d) > need)
        need = demand_burst(d);
    double want = ceil(need - 1e-9);
    return want >= ceiling ? ceiling : want <= 0 ? 0 : (unsigned)want;
}
