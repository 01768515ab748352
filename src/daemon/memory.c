#include "memory.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "host.h"
#include "preload.h"

static int64_t meminfo_available_mib(const char *path) {
    unsigned long long total = 0, avail = 0;
    host_meminfo(path, &total, &avail);
    return (int64_t)(avail / 1024);
}

/* What running qubes were promised and have not used yet: memory - what the engine
 * measured it uses (the host's MemAvailable already lacks that part), so each counts its
 * whole `memory`, whatever it uses now (a ballooned VM preload included). A preload
 * counts all of it until its engine has measured it: queued (created, waiting for its
 * turn to start) or not measurable. */
static int64_t promised_mib(const struct app *app, struct dispatcher *dispatcher) {
    int64_t total = 0;
    for (size_t i = 0; i < app->n_qubes; i++) {
        const struct qube *q = app->qubes[i];
        bool preload = preload_is_preload(app, q);
        if (q->klass == QUBE_ADMINVM || (q->power == POWER_HALTED && !preload))
            continue;
        if (preload && preload_is_hibernated(app, q))
            continue; /* saved to disk, no process: it holds no memory and takes none */
        struct backend_stats st = {0};
        bool measured = q->power != POWER_HALTED && dispatcher_stats(dispatcher, q, &st) == 0;
        if (!measured && !preload)
            continue;
        char buf[32];
        bool is_default;
        int64_t mem = strtoll(app_prop_get(app, q, &PROP_DEFS[P_MEMORY], buf, sizeof(buf),
                                           &is_default),
                              NULL, 10);
        int64_t used = (int64_t)(st.memory_bytes >> 20);
        total += mem > used ? mem - used : 0;
    }
    return total;
}

int64_t memory_free_mib(const struct memory_source *src, const struct app *app,
                        struct dispatcher *dispatcher) {
    int64_t avail = meminfo_available_mib(src->meminfo_path);
    /* the engines know where their qubes' limits are (cgroups, for containers) */
    int64_t headroom = src->use_cgroup_limit ? dispatcher_memory_headroom_mib(dispatcher) : -1;
    if (headroom >= 0 && headroom < avail)
        avail = headroom;
    avail -= promised_mib(app, dispatcher);
    return avail > 0 ? avail : 0;
}
