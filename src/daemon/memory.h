/* What memory preloading may use (spec/preload.md "Free memory"): the host's
 * MemAvailable, or what the daemon's own cgroup still allows if that is tighter, minus
 * what every running qube may still grow into (max(0, memory - its usage now)). */
#pragma once
#include <stdint.h>

#include "app.h"
#include "dispatcher.h"

struct memory_source {
    /* a file in /proc/meminfo's format; NULL = /proc/meminfo. Tests point it at a file
     * of their own to simulate a host low on memory. */
    const char *meminfo_path;
    bool use_cgroup_limit; /* off when the source is simulated */
};

/* Free memory in MiB as defined above (never negative). */
int64_t memory_free_mib(const struct memory_source *src, const struct app *app,
                        struct dispatcher *dispatcher);
