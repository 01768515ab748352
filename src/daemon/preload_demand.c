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

static double average(double avg, double value) {
    return avg > 0 ? BURST_WEIGHT * value + (1 - BURST_WEIGHT) * avg : value;
}

/* Requests per second of the burst going on (from its second request). */
static double current_burst_rate(const struct demand *d) {
    double span = d->last - d->burst_start;
    return d->current >= 2 && span > 0 ? (d->current - 1) / span : 0;
}

static void close_burst(struct demand *d) {
    d->burst = average(d->burst, d->current);
    double r = current_burst_rate(d);
    if (r > 0)
        d->burst_rate = average(d->burst_rate, r);
}

double demand_burst_rate(const struct demand *d) {
    double r = current_burst_rate(d);
    return r > d->burst_rate ? r : d->burst_rate;
}

void demand_note_request(struct demand *d, double now, double window_s, bool hit) {
    if (demand_in_burst(d, now)) {
        d->current++;
    } else {
        if (d->current) /* the burst before ended: into the averages */
            close_burst(d);
        d->current = 1;
        d->burst_start = now;
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
    if (demand_in_burst(d, now)) {
        /* what the burst asks for over one refill time, no more than is left of an
         * average burst (while it is below one); the burst's size while its pace is not
         * known yet */
        double pace = demand_burst_rate(d), in_burst = pace > 0 ? pace * over : demand_burst(d);
        double left = d->burst - d->current;
        if (left >= 1 && in_burst > left)
            in_burst = left;
        if (in_burst > need)
            need = in_burst;
    }
    double want = ceil(need - 1e-9);
    return want >= ceiling ? ceiling : want <= 0 ? 0 : (unsigned)want;
}
