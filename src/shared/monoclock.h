/* CLOCK_MONOTONIC for deadlines, back-offs and the debug log's timings: one definition
 * for the daemon, the engines, the tools and the in-qube agent (header-only, so the static
 * agent needs no extra source). */
#pragma once
#include <stdint.h>
#include <time.h>

static inline int64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static inline double mono_ms(void) { return (double)mono_ns() / 1e6; }
