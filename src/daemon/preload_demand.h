/* The demand a disposable template sees, learned from its requests (docs/preload.md,
 * "Following demand"): decaying averages of the request rate and of the burst size, the
 * time a preload takes to get ready, and from these the pool size that covers what is
 * expected over one refill time. Pure arithmetic on times in seconds: the caller gives
 * the clock (tests give theirs). */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#define DEMAND_REFILL_GUESS_S 5.0 /* a preload's time to ready before one was measured */

struct demand {
    double rate;         /* requests per second, decayed to `last` */
    double burst;        /* average size of the bursts that ended; 0: none yet */
    double burst_rate;   /* average pace within those bursts, requests per second */
    unsigned current;    /* requests of the burst going on */
    double burst_start;  /* time of its first request */
    double last;         /* time of the last request; < 0: none yet */
    double refill_s;     /* average time from a preload's start to ready; 0: none yet */
    double refill_low_s; /* the same when starts do not crowd each other (below) */
    uint64_t requests;   /* all requests */
    uint64_t hits;       /* requests served by a ready preload */
};

void demand_init(struct demand *d);
/* One request at `now` (hit: a ready preload served it). Requests closer together than
 * one refill time make one burst: the pool could not have refilled in between. */
void demand_note_request(struct demand *d, double now, double window_s, bool hit);
/* A preload took `seconds` from its start to ready. */
void demand_note_refill(struct demand *d, double seconds);
double demand_refill_s(const struct demand *d);
/* The refill time that sizes the pool: the shortest measured, rising by a tenth of the
 * way to each longer one. Not the average: the pool's own starts, started together,
 * lengthen each other's, and a pool sized from that would start more, which lengthens
 * them more, up to the ceiling. DEMAND_REFILL_GUESS_S while none was measured. */
double demand_sizing_refill_s(const struct demand *d);
/* The rate at `now`, per minute (it decays while nothing comes). */
double demand_rate_per_min(const struct demand *d, double now, double window_s);
/* The burst to prepare for: the average of past bursts, or the one going on if larger. */
double demand_burst(const struct demand *d);
/* Requests closer together than this are one burst: one (sizing) refill time, at least
 * 1 s. */
double demand_burst_gap_s(const struct demand *d);
/* The last request came less than a burst gap ago: a burst may be going on. */
bool demand_in_burst(const struct demand *d, double now);
/* The pace within bursts, requests per second: the average of past bursts', or the one
 * going on if faster; 0 while unknown. */
double demand_burst_rate(const struct demand *d);
/* Between bursts, what the next one asks for before a refill can be ready: the learned
 * pace x over_s (one refill time), at most an average burst (a burst that ended before
 * `now` counted in); 0 while no pace is known. */
double demand_burst_floor(const struct demand *d, double now, double over_s);
/* How many preloads cover the demand expected over one refill time (delay_s added, the
 * wait before a refill starts), rounded up, at most `ceiling`, the largest of: rate x
 * that time; the burst floor (above), held between bursts as long as the template is not
 * idle; and while a burst goes on (from its first request) twice its pace x that time
 * (one refill time's worth in flight, as much ready), no more than an average burst or
 * this one so far if larger (this one's size so far while its pace or the refill time is
 * unknown). 0 before the first request, and once `idle_s` passed without one. */
unsigned demand_target(const struct demand *d, double now, double window_s, double idle_s,
                       double delay_s, unsigned ceiling);
