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
    double gap = demand_sizing_refill_s(d); /* not the average: it grows in a burst */
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

#define LOW_RISE 0.1 /* of the way from the low refill time up to a longer one */

void demand_note_refill(struct demand *d, double seconds) {
    if (seconds < 0)
        return;
    d->refill_s = d->refill_s > 0 ? 0.7 * d->refill_s + 0.3 * seconds : seconds;
    if (d->refill_low_s <= 0 || seconds < d->refill_low_s)
        d->refill_low_s = seconds;
    else
        d->refill_low_s += LOW_RISE * (seconds - d->refill_low_s);
}

double demand_sizing_refill_s(const struct demand *d) {
    return d->refill_low_s > 0 ? d->refill_low_s : DEMAND_REFILL_GUESS_S;
}

double demand_rate_per_min(const struct demand *d, double now, double window_s) {
    return decayed_rate(d, now, window_s) * 60;
}

double demand_burst(const struct demand *d) {
    return d->current > d->burst ? d->current : d->burst;
}

/* The averages of burst size and pace with the last burst in, once it ended: it enters
 * them only at the next request, but the pool is sized for the next burst now. */
static void settled_bursts(const struct demand *d, double now, double *size, double *pace) {
    *size = d->burst;
    *pace = d->burst_rate;
    if (d->current && !demand_in_burst(d, now)) {
        *size = average(d->burst, d->current);
        double r = current_burst_rate(d);
        if (r > 0)
            *pace = average(d->burst_rate, r);
    }
}

/* What the next burst asks for before a refill started at its first request can be
 * ready: the learned pace x one refill time, no more than an average burst. 0 before a
 * burst's pace was learned (requests one by one: the rate covers them) and before a
 * refill time was measured (the guess is long: it would fill the pool for nothing). */
double demand_burst_floor(const struct demand *d, double now, double over_s) {
    double size, pace;
    settled_bursts(d, now, &size, &pace);
    if (size <= 0 || pace <= 0 || over_s <= 0 || d->refill_s <= 0)
        return 0;
    double floor = pace * over_s;
    return floor < size ? floor : size;
}

/* While a burst goes on: its pace x one refill time in flight, and as much again ready
 * (Little's law: what is in flight arrives one refill time later, the ready ones serve
 * meanwhile), no more than an average burst or this one so far if larger. Not what is
 * left of the burst: the target would fall mid-burst and discard preloads still
 * starting, to start them again if the burst goes on. The burst's size so far while no
 * pace or no refill time is known yet (a first burst on a guessed refill time would
 * start the whole ceiling at once, and starting that many together is slower than the
 * burst). */
static double in_burst_need(const struct demand *d, double over_s) {
    double pace = demand_burst_rate(d), most = demand_burst(d);
    double need = pace > 0 && d->refill_s > 0 ? 2 * pace * over_s : most;
    return need > most ? most : need;
}

unsigned demand_target(const struct demand *d, double now, double window_s, double idle_s,
                       double delay_s, unsigned ceiling) {
    if (d->last < 0 || now - d->last > idle_s)
        return 0;
    double over = demand_sizing_refill_s(d) + (delay_s > 0 ? delay_s : 0);
    double need = decayed_rate(d, now, window_s) * over;
    double floor = demand_burst_floor(d, now, over);
    if (floor > need)
        need = floor;
    if (demand_in_burst(d, now)) {
        double in_burst = in_burst_need(d, over);
        if (in_burst > need)
            need = in_burst;
    }
    double want = ceil(need - 1e-9);
    return want >= ceiling ? ceiling : want <= 0 ? 0 : (unsigned)want;
}
