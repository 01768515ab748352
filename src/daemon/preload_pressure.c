/* Memory pressure sheds preloads (docs/preload.md, "Under memory pressure"). With the dom0
 * feature `preload-dispvm-pressure` = "STALL_MS [WINDOW_MS [CALM_S]]", the daemon asks the
 * kernel's pressure stall information (PSI) to wake it when tasks stalled on memory for
 * STALL_MS within WINDOW_MS: a trigger on /proc/pressure/memory and on its own cgroup's
 * memory.pressure (cgroup v2), each an fd that the event loop sees as EPOLLPRI. Each time,
 * half the preloads go, from the tail of the least recently used template's list first;
 * refills wait until CALM_S seconds passed without a wake-up, then all pools refill.
 * Preloads that were requested or handed out are in no list: never touched. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "disposable.h"
#include "preload_internal.h"

#define WINDOW_DEFAULT_MS 1000
#define CALM_DEFAULT_S 30.0
#define PSI_WINDOW_MIN_MS 500
#define PSI_WINDOW_MAX_MS 10000
#define PSI_UNPRIVILEGED_MS 2000 /* windows a kernel accepts without CAP_SYS_RESOURCE */
#define SOURCES 3

struct pressure_level {
    unsigned stall_ms, window_ms;
    double calm_s;
};

struct preload_pressure {
    struct preload *p;
    struct pressure_level level;
    int fds[SOURCES];
    sd_event_source *io[SOURCES];
    sd_event_source *poll; /* no trigger accepted: the stall counter, read every window */
    uint64_t last_total_us;
    sd_event_source *calm;
    bool high;
};

static bool parse_uint(const char **s, unsigned *out) {
    char *end;
    while (**s == ' ')
        (*s)++;
    if (**s < '0' || **s > '9')
        return false;
    errno = 0;
    unsigned long v = strtoul(*s, &end, 10);
    if (errno || v > 1000000)
        return false;
    *out = (unsigned)v;
    *s = end;
    return true;
}

static bool parse_level(const char *v, struct pressure_level *l) {
    *l = (struct pressure_level){0, WINDOW_DEFAULT_MS, CALM_DEFAULT_S};
    unsigned calm = 0;
    if (!parse_uint(&v, &l->stall_ms))
        return false;
    if (*v && !parse_uint(&v, &l->window_ms))
        return false;
    if (*v && parse_uint(&v, &calm))
        l->calm_s = calm;
    else if (*v)
        return false;
    while (*v == ' ')
        v++;
    return !*v && l->stall_ms > 0 && l->stall_ms <= l->window_ms &&
           l->window_ms >= PSI_WINDOW_MIN_MS && l->window_ms <= PSI_WINDOW_MAX_MS &&
           (calm > 0 || l->calm_s == CALM_DEFAULT_S);
}

int preload_validate_pressure(const char *value, struct qerr *err) {
    struct pressure_level l;
    if (*value && !parse_level(value, &l))
        return qerr_set(err, EXC_VALUE,
                        "Invalid preload-dispvm-pressure value: expected 'STALL_MS [WINDOW_MS "
                        "[CALM_S]]', 0 < STALL_MS <= WINDOW_MS, WINDOW_MS in 500..10000, "
                        "CALM_S > 0");
    return 0;
}

bool preload_pressure_high(const struct preload *p) { return p->pressure && p->pressure->high; }

/* ---- shedding ---- */

/* The template whose preloads go first: the one requested least recently (never: first). */
static struct qube *least_recently_used(struct preload *p) {
    struct qube *best = NULL;
    double best_last = 0;
    char names[PRELOAD_LIST_MAX][32];
    for (size_t i = 0; i < p->app->n_qubes; i++) {
        struct qube *tpl = p->app->qubes[i];
        if (!preload_list(tpl, names, PRELOAD_LIST_MAX))
            continue;
        double last = preload_pool_of(p, tpl->name)->demand.last;
        if (!best || last < best_last) {
            best = tpl;
            best_last = last;
        }
    }
    return best;
}

static size_t preloads_listed(struct preload *p) {
    char names[PRELOAD_LIST_MAX][32];
    size_t n = 0;
    for (size_t i = 0; i < p->app->n_qubes; i++)
        n += preload_list(p->app->qubes[i], names, PRELOAD_LIST_MAX);
    return n;
}

static void shed_one(struct preload *p) {
    struct qube *tpl = least_recently_used(p);
    if (!tpl)
        return;
    char names[PRELOAD_LIST_MAX][32];
    size_t n = preload_list(tpl, names, PRELOAD_LIST_MAX);
    struct qube *q = app_find(p->app, names[n - 1]);
    if (q)
        preload_shed(p, tpl, q, "memory pressure");
    else
        preload_list_remove(p, tpl, names[n - 1]);
}

static int on_calm(sd_event_source *src, uint64_t usec, void *userdata) {
    struct preload_pressure *w = userdata;
    w->high = false;
    log_info("preload: memory pressure stayed low for %.0f s: refilling", w->level.calm_s);
    preload_refill_all(w->p, "memory pressure eased");
    return 0;
}

/* The stall level was crossed: half the preloads go (at least one), and refills wait
 * until the pressure stayed low for CALM_S. */
static void pressure_crossed(struct preload_pressure *w) {
    struct preload *p = w->p;
    size_t n = preloads_listed(p), k = (n + 1) / 2;
    if (!w->high || n)
        log_warning("preload: memory pressure (%u ms stalled in %u ms): discarding %zu of %zu "
                    "preload(s)",
                    w->level.stall_ms, w->level.window_ms, k, n);
    w->high = true;
    for (size_t i = 0; i < k; i++)
        shed_one(p);
    uint64_t at = (uint64_t)((preload_now(p) + w->level.calm_s) * 1e6);
    if (w->calm) {
        sd_event_source_set_time(w->calm, at);
        sd_event_source_set_enabled(w->calm, SD_EVENT_ONESHOT);
    } else {
        sd_event_add_time(p->loop, &w->calm, CLOCK_MONOTONIC, at, 0, on_calm, w);
    }
}

/* ---- the sources: PSI triggers, else polling the stall counter ---- */

static int on_trigger(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
    struct preload_pressure *w = userdata;
    if (revents & EPOLLERR) { /* the cgroup went away */
        log_warning("preload: a memory pressure trigger stopped working");
        sd_event_source_set_enabled(src, SD_EVENT_OFF);
        return 0;
    }
    if (revents & EPOLLPRI)
        pressure_crossed(w);
    return 0;
}

/* A trigger "some STALL WINDOW" (microseconds). Kernels refuse windows that are not
 * multiples of 2 s to callers without CAP_SYS_RESOURCE (a daemon in a container): the
 * window is then rounded up to one, the stall scaled with it. */
static int open_trigger(const char *path, const struct pressure_level *l) {
    uint64_t window = (uint64_t)l->window_ms * 1000, stall = (uint64_t)l->stall_ms * 1000;
    for (int attempt = 0; attempt < 2; attempt++) {
        int fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0)
            return -1;
        char buf[64];
        int len = snprintf(buf, sizeof(buf), "some %" PRIu64 " %" PRIu64, stall, window);
        if (write(fd, buf, (size_t)len) == len) {
            log_info("preload: memory pressure trigger on %s: %s", path, buf);
            return fd;
        }
        int e = errno;
        close(fd);
        uint64_t step = PSI_UNPRIVILEGED_MS * 1000;
        if (e != EINVAL || window % step == 0)
            break;
        uint64_t rounded = (window + step - 1) / step * step;
        stall = stall * rounded / window;
        window = rounded;
    }
    log_debug("preload: no memory pressure trigger on %s: %s", path, strerror(errno));
    return -1;
}

/* The daemon's own cgroup v2 memory.pressure, where there is one, and the root cgroup's
 * (the whole host's, where /proc/pressure refuses triggers). */
static bool own_cgroup_pressure(char *out, size_t size, char *root, size_t root_size) {
    char line[4096], mount[1024] = "", cg[2048] = "";
    FILE *f = fopen("/proc/self/cgroup", "re");
    while (f && fgets(line, sizeof(line), f))
        if (strncmp(line, "0::", 3) == 0 && sscanf(line + 3, "%2047s", cg) != 1)
            cg[0] = '\0';
    if (f)
        fclose(f);
    f = fopen("/proc/self/mountinfo", "re");
    while (f && !*mount && fgets(line, sizeof(line), f)) {
        char point[1024];
        const char *sep = strstr(line, " - cgroup2 ");
        if (sep && sscanf(line, "%*s %*s %*s %*s %1023s", point) == 1)
            snprintf(mount, sizeof(mount), "%s", point);
    }
    if (f)
        fclose(f);
    if (!*mount || !*cg)
        return false;
    snprintf(out, size, "%s%s/memory.pressure", mount, strcmp(cg, "/") == 0 ? "" : cg);
    snprintf(root, root_size, "%s/memory.pressure", mount);
    if (strcmp(cg, "/") == 0 || access(root, R_OK | W_OK) != 0)
        root[0] = '\0';
    return access(out, R_OK | W_OK) == 0;
}

static bool read_some_total(uint64_t *total_us) {
    char line[256];
    bool found = false;
    FILE *f = fopen("/proc/pressure/memory", "re");
    while (f && !found && fgets(line, sizeof(line), f)) {
        const char *t = strstr(line, "total=");
        found = strncmp(line, "some ", 5) == 0 && t && sscanf(t, "total=%" SCNu64, total_us) == 1;
    }
    if (f)
        fclose(f);
    return found;
}

static int on_poll(sd_event_source *src, uint64_t usec, void *userdata) {
    struct preload_pressure *w = userdata;
    uint64_t total = 0;
    if (read_some_total(&total)) {
        if (total - w->last_total_us >= (uint64_t)w->level.stall_ms * 1000)
            pressure_crossed(w);
        w->last_total_us = total;
    }
    sd_event_source_set_time(src, usec + (uint64_t)w->level.window_ms * 1000);
    sd_event_source_set_enabled(src, SD_EVENT_ON);
    return 0;
}

static void watch(struct preload_pressure *w) {
    char cgroup[4096], root[1100] = "";
    const char *paths[SOURCES] = {"/proc/pressure/memory",
                                  own_cgroup_pressure(cgroup, sizeof(cgroup), root, sizeof(root))
                                      ? cgroup
                                      : NULL,
                                  root};
    int armed = 0;
    for (int i = 0; i < SOURCES; i++) {
        bool host_watched = i == 2 && w->fds[0] >= 0; /* the root's is the host's too */
        w->fds[i] = paths[i] && *paths[i] && !host_watched ? open_trigger(paths[i], &w->level) : -1;
        if (w->fds[i] >= 0 &&
            sd_event_add_io(w->p->loop, &w->io[i], w->fds[i], EPOLLPRI, on_trigger, w) >= 0)
            armed++;
    }
    if (armed || !read_some_total(&w->last_total_us)) {
        if (!armed)
            log_warning("preload: no memory pressure information on this host: not watched");
        return;
    }
    log_info("preload: no memory pressure trigger accepted: reading the stall counter every "
             "%u ms",
             w->level.window_ms);
    uint64_t now = 0;
    sd_event_now(w->p->loop, CLOCK_MONOTONIC, &now);
    sd_event_add_time(w->p->loop, &w->poll, CLOCK_MONOTONIC,
                      now + (uint64_t)w->level.window_ms * 1000, 0, on_poll, w);
}

void preload_pressure_free(struct preload *p) {
    struct preload_pressure *w = p->pressure;
    if (!w)
        return;
    for (int i = 0; i < SOURCES; i++) {
        sd_event_source_disable_unref(w->io[i]);
        if (w->fds[i] >= 0)
            close(w->fds[i]);
    }
    sd_event_source_disable_unref(w->poll);
    sd_event_source_disable_unref(w->calm);
    free(w);
    p->pressure = NULL;
}

/* At start and whenever dom0's feature changes: absent or "", nothing is watched. */
void preload_pressure_configure(struct preload *p) {
    bool was_high = preload_pressure_high(p);
    preload_pressure_free(p);
    const char *v = strmap_get(&app_dom0(p->app)->features, "preload-dispvm-pressure");
    struct pressure_level level;
    if (v && *v && parse_level(v, &level)) {
        p->pressure = xcalloc(1, sizeof(*p->pressure));
        *p->pressure = (struct preload_pressure){.p = p, .level = level, .fds = {-1, -1, -1}};
        watch(p->pressure);
    }
    if (was_high)
        preload_refill_all(p, "memory pressure is no longer watched");
}
