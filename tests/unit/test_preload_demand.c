/* The demand estimator (src/daemon/preload_demand.c): the decaying request rate, burst
 * sizes, the refill time, and the pool size they call for. Times are given, not taken. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "preload_demand.h"

#define WINDOW 60.0
#define IDLE 120.0

static void test_nothing_learned_is_zero(void **state) {
    struct demand d;
    demand_init(&d);
    assert_int_equal(demand_target(&d, 10, WINDOW, IDLE, 0, 8), 0);
    assert_true(demand_rate_per_min(&d, 10, WINDOW) == 0);
    assert_true(demand_refill_s(&d) == DEMAND_REFILL_GUESS_S);
}

/* A steady rate r averages r: one request every 2 s is 30 per minute. */
static void test_steady_rate_converges(void **state) {
    struct demand d;
    demand_init(&d);
    for (int i = 0; i < 1000; i++)
        demand_note_request(&d, i * 2.0, WINDOW, false);
    double rate = demand_rate_per_min(&d, 1998.0 + 1.0, WINDOW);
    assert_true(fabs(rate - 30.0) < 1.0);
}

/* It decays: after one window without requests, 1/e of it. */
static void test_rate_decays_while_idle(void **state) {
    struct demand d;
    demand_init(&d);
    for (int i = 0; i < 1000; i++)
        demand_note_request(&d, i * 2.0, WINDOW, false);
    double at = demand_rate_per_min(&d, 1998.0, WINDOW);
    double later = demand_rate_per_min(&d, 1998.0 + WINDOW, WINDOW);
    assert_true(fabs(later - at / M_E) < 0.01);
}

/* Requests closer than one refill time are one burst; the next one far apart closes it. */
static void test_bursts_are_averaged(void **state) {
    struct demand d;
    demand_init(&d);
    demand_note_refill(&d, 2.0);
    for (int i = 0; i < 10; i++) /* a burst of 10 */
        demand_note_request(&d, 100 + i * 0.1, WINDOW, false);
    assert_true(demand_burst(&d) == 10); /* the one going on */
    for (int i = 0; i < 20; i++)         /* a burst of 20, 100 s later */
        demand_note_request(&d, 200 + i * 0.1, WINDOW, false);
    for (int i = 0; i < 2; i++) /* a small one closes it: 10 and 20 average to 15 */
        demand_note_request(&d, 300 + i * 0.1, WINDOW, false);
    assert_true(fabs(demand_burst(&d) - 15.0) < 1e-9);
    assert_int_equal(d.requests, 32);
}

/* The target covers what is expected over one refill time, within the ceiling: in a
 * burst twice its pace x that time (no more than an average burst), between
 * bursts what the next burst asks for before a refill can be ready, and nothing once
 * idle. */
static void test_target_between_zero_and_ceiling(void **state) {
    struct demand d;
    demand_init(&d);
    demand_note_refill(&d, 2.0);
    assert_int_equal(demand_target(&d, 5, WINDOW, IDLE, 0, 8), 0); /* nothing asked yet */
    demand_note_request(&d, 10, WINDOW, false);
    /* a first burst's first request: its pace unknown, its size so far (1) */
    assert_int_equal(demand_target(&d, 10, WINDOW, IDLE, 0, 8), 1);
    for (int i = 1; i < 6; i++)
        demand_note_request(&d, 10 + i * 0.2, WINDOW, false);
    /* 5 per s x 2 s refill time = 10 in flight, as many ready: 20, but no more than
     * the burst so far (no average yet): 6 */
    assert_true(fabs(demand_burst_rate(&d) - 5.0) < 1e-9);
    assert_int_equal(demand_target(&d, 11.5, WINDOW, IDLE, 0, 32), 6);
    assert_int_equal(demand_target(&d, 11.5, WINDOW, IDLE, 0, 4), 4);          /* the ceiling */
    assert_int_equal(demand_target(&d, 11 + IDLE + 1, WINDOW, IDLE, 0, 8), 0); /* idle */
    /* the burst over (more than a refill time since the last request): the next burst's
     * pace x the refill time (10), but no more than an average burst (6) */
    assert_false(demand_in_burst(&d, 14));
    assert_int_equal(demand_target(&d, 14, WINDOW, IDLE, 0, 16), 6);
    /* the next burst's first request: twice its pace x the refill time (20), but no more
     * than an average burst (6) */
    demand_note_request(&d, 50, WINDOW, false);
    assert_int_equal(demand_target(&d, 50, WINDOW, IDLE, 0, 16), 6);
    /* a high steady rate over a long refill time: rate x time wins over bursts of 1 */
    struct demand s;
    demand_init(&s);
    demand_note_refill(&s, 10.0);
    for (int i = 0; i < 2000; i++) /* 1 per 11 s: each its own burst; 60/11 per minute */
        demand_note_request(&s, i * 11.0, 600.0, false);
    /* 1/11 per s x (10 s + 20 s delay) = 2.7: 3 */
    assert_int_equal(demand_target(&s, 1999 * 11.0, 600.0, IDLE, 20.0, 8), 3);
    assert_int_equal(demand_target(&s, 1999 * 11.0, 600.0, IDLE, 0, 8), 1);
}

/* A burst of n requests at `pace` per second from `at`. */
static void burst(struct demand *d, double at, int n, double pace) {
    for (int i = 0; i < n; i++)
        demand_note_request(d, at + i / pace, WINDOW, false);
}

/* Between bursts the pool holds what the next one asks for before a refill started at
 * its first request can be ready (pace x refill time), not what the rate calls for (1):
 * bursts of 30 at 10 per s, 0.5 s refill time: 5. */
static void test_floor_covers_a_refill_time_of_the_next_burst(void **state) {
    struct demand d;
    demand_init(&d);
    demand_note_refill(&d, 0.5);
    burst(&d, 100, 30, 10);
    double after = 100 + 29 / 10.0 + 2; /* the burst ended (gap 1 s) */
    assert_false(demand_in_burst(&d, after));
    assert_true(fabs(demand_burst_floor(&d, after, 0.5) - 5.0) < 1e-9);
    assert_int_equal(demand_target(&d, after, WINDOW, IDLE, 0, 50), 5);
    /* held all through the gap, as long as the template is not idle */
    assert_int_equal(demand_target(&d, 100 + IDLE, WINDOW, IDLE, 0, 50), 5);
    assert_int_equal(demand_target(&d, 103 + IDLE, WINDOW, IDLE, 0, 50), 0);
    /* the ceiling caps it; the delay before a refill lengthens the time to cover */
    assert_int_equal(demand_target(&d, after, WINDOW, IDLE, 0, 3), 3);
    assert_int_equal(demand_target(&d, after, WINDOW, IDLE, 0.5, 50), 10);
}

/* Never more than an average burst: bursts of 3 at 10 per s with a 2 s refill time ask
 * for 20 over a refill time, but there are only 3. */
static void test_floor_at_most_an_average_burst(void **state) {
    struct demand d;
    demand_init(&d);
    demand_note_refill(&d, 2.0);
    burst(&d, 100, 3, 10);
    burst(&d, 200, 3, 10);
    assert_int_equal(demand_target(&d, 250, WINDOW, IDLE, 0, 50), 3);
}

/* A burst's target is no larger than an average burst, or this one so far: bursts of 3
 * at 10 per s with a 2 s refill time ask for 40 over two refill times. */
static void test_burst_target_at_most_a_burst(void **state) {
    struct demand d;
    demand_init(&d);
    demand_note_refill(&d, 2.0);
    burst(&d, 100, 3, 10);
    burst(&d, 200, 3, 10);
    demand_note_request(&d, 300, WINDOW, false);
    assert_int_equal(demand_target(&d, 300, WINDOW, IDLE, 0, 50), 3);
    burst(&d, 300.1, 4, 10); /* larger than the average: this one so far */
    assert_int_equal(demand_target(&d, 300.4, WINDOW, IDLE, 0, 50), 5);
}

/* Requests one by one learn no pace: no floor, the rate alone sizes the pool. */
static void test_no_floor_without_a_pace(void **state) {
    struct demand d;
    demand_init(&d);
    demand_note_refill(&d, 0.5);
    for (int i = 0; i < 5; i++)
        demand_note_request(&d, 100 + i * 10.0, WINDOW, false);
    assert_true(demand_burst_floor(&d, 200, 0.5) == 0);
    assert_int_equal(demand_target(&d, 200, WINDOW, IDLE, 0, 50), 1);
}

/* A burst's first request grows the pool to twice the pace x the refill time (what is in
 * flight and as much ready), at once; when the burst ends it shrinks to the floor. */
static void test_burst_start_grows_then_shrinks(void **state) {
    struct demand d;
    demand_init(&d);
    demand_note_refill(&d, 0.5);
    burst(&d, 100, 30, 10);
    burst(&d, 200, 30, 10);
    demand_note_request(&d, 300, WINDOW, false);
    assert_true(demand_in_burst(&d, 300));
    assert_int_equal(demand_target(&d, 300, WINDOW, IDLE, 0, 50), 10);
    assert_int_equal(demand_target(&d, 300, WINDOW, IDLE, 0, 8), 8);
    /* near its expected end the same: a target falling mid-burst would discard preloads
     * still starting */
    burst(&d, 300.1, 27, 10);
    assert_int_equal(demand_target(&d, 302.8, WINDOW, IDLE, 0, 50), 10);
    /* a burst larger than the average keeps its pace covered */
    burst(&d, 302.8, 10, 10);
    assert_int_equal(demand_target(&d, 303.8, WINDOW, IDLE, 0, 50), 10);
    /* over: back to the floor (bursts of 30 and 38 at 10 per s: 5) */
    assert_int_equal(demand_target(&d, 310, WINDOW, IDLE, 0, 50), 5);
}

static void test_refill_time_is_averaged(void **state) {
    struct demand d;
    demand_init(&d);
    demand_note_refill(&d, 1.0);
    assert_true(demand_refill_s(&d) == 1.0);
    demand_note_refill(&d, 2.0);
    assert_true(fabs(demand_refill_s(&d) - 1.3) < 1e-9);
    demand_note_refill(&d, -1); /* not a time */
    assert_true(fabs(demand_refill_s(&d) - 1.3) < 1e-9);
}

/* The refill time that sizes the pool follows a shorter one at once and a longer one by a
 * tenth: starts crowded by the pool's own do not grow it to the ceiling. */
static void test_sizing_refill_time_rises_slowly(void **state) {
    struct demand d;
    demand_init(&d);
    assert_true(demand_sizing_refill_s(&d) == DEMAND_REFILL_GUESS_S);
    demand_note_refill(&d, 0.5);
    demand_note_refill(&d, 2.5);
    assert_true(fabs(demand_sizing_refill_s(&d) - 0.7) < 1e-9);
    assert_true(fabs(demand_refill_s(&d) - 1.1) < 1e-9); /* the average, for status */
    demand_note_refill(&d, 0.3);
    assert_true(fabs(demand_sizing_refill_s(&d) - 0.3) < 1e-9);
    /* bursts of 30 at 10 per s: a floor of 10 x 0.3 s = 3, not 10 x the average */
    burst(&d, 100, 30, 10);
    burst(&d, 200, 30, 10);
    assert_int_equal(demand_target(&d, 250, WINDOW, IDLE, 0, 50), 3);
}

static void test_hits_counted(void **state) {
    struct demand d;
    demand_init(&d);
    demand_note_request(&d, 1, WINDOW, true);
    demand_note_request(&d, 2, WINDOW, false);
    assert_int_equal(d.hits, 1);
    assert_int_equal(d.requests, 2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nothing_learned_is_zero),
        cmocka_unit_test(test_steady_rate_converges),
        cmocka_unit_test(test_rate_decays_while_idle),
        cmocka_unit_test(test_bursts_are_averaged),
        cmocka_unit_test(test_target_between_zero_and_ceiling),
        cmocka_unit_test(test_refill_time_is_averaged),
        cmocka_unit_test(test_hits_counted),
        cmocka_unit_test(test_floor_covers_a_refill_time_of_the_next_burst),
        cmocka_unit_test(test_floor_at_most_an_average_burst),
        cmocka_unit_test(test_no_floor_without_a_pace),
        cmocka_unit_test(test_burst_start_grows_then_shrinks),
        cmocka_unit_test(test_burst_target_at_most_a_burst),
        cmocka_unit_test(test_sizing_refill_time_rises_slowly),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
