#include "memory.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "preload.h"

static int64_t meminfo_available_mib(const char *path) {
    FILE *f = fopen(path ? path : "/proc/meminfo", "re");
    if (!f)
        return 0;
    char line[256];
    long long kib = -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "MemAvailable: %lld kB", &kib) == 1)
            break;
    fclose(f);
    return kib < 0 ? 0 : kib / 1024;
}

static long long read_number(const char *path) {
    FILE *f = fopen(path, "re");
    long long v = -1;
    char buf[64];
    if (f && fgets(buf, sizeof(buf), f))
        v = strncmp(buf, "max", 3) == 0 ? -1 : strtoll(buf, NULL, 10);
    if (f)
        fclose(f);
    return v;
}

/* Headroom left under the daemon's own memory cgroup, v2 or v1; -1 if unlimited. */
static int64_t cgroup_headroom_mib(void) {
    FILE *f = fopen("/proc/self/cgroup", "re");
    char line[512], path[1024];
    long long limit = -1, usage = -1;
    while (f && fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\n")] = '\0';
        char *p = strchr(line, ':'), *q = p ? strchr(p + 1, ':') : NULL;
        if (!q)
            continue;
        if (strncmp(line, "0::", 3) == 0) {
            snprintf(path, sizeof(path), "/sys/fs/cgroup%s/memory.max", q + 1);
            limit = read_number(path);
            snprintf(path, sizeof(path), "/sys/fs/cgroup%s/memory.current", q + 1);
        } else if (strstr(p, ":memory:") == p) {
            snprintf(path, sizeof(path), "/sys/fs/cgroup/memory%s/memory.limit_in_bytes", q + 1);
            limit = read_number(path);
            snprintf(path, sizeof(path), "/sys/fs/cgroup/memory%s/memory.usage_in_bytes", q + 1);
        } else {
            continue;
        }
        usage = read_number(path);
        if (limit > 0 && limit < (1LL << 60) && usage >= 0)
            break;
        limit = -1;
    }
    if (f)
        fclose(f);
    return limit > 0 && usage >= 0 ? (limit > usage ? (limit - usage) >> 20 : 0) : -1;
}

/* What running qubes were promised and have not used yet; and all of it for a preload
 * that is queued (created, waiting for its turn to start). */
static int64_t promised_mib(const struct app *app, struct engine *engine) {
    int64_t total = 0;
    for (size_t i = 0; i < app->n_qubes; i++) {
        const struct qube *q = app->qubes[i];
        struct backend_stats st = {0};
        bool queued = preload_is_preload(app, q) && strcmp(q->power_state, "Halted") == 0;
        if (q->klass == QUBE_ADMINVM || (!queued && engine_stats(engine, q, &st) < 0))
            continue;
        char buf[32];
        bool is_default;
        int64_t mem = strtoll(app_prop_get(app, q, &PROP_DEFS[P_MEMORY], buf, sizeof(buf),
                                           &is_default), NULL, 10);
        int64_t used = (int64_t)(st.memory_bytes >> 20);
        total += mem > used ? mem - used : 0;
    }
    return total;
}

int64_t memory_free_mib(const struct memory_source *src, const struct app *app,
                        struct engine *engine) {
    int64_t avail = meminfo_available_mib(src->meminfo_path);
    int64_t headroom = src->use_cgroup_limit ? cgroup_headroom_mib() : -1;
    if (headroom >= 0 && headroom < avail)
        avail = headroom;
    avail -= promised_mib(app, engine);
    return avail > 0 ? avail : 0;
}
