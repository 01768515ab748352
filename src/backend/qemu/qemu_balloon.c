/* virtio-balloon of a VM: the shrink before a preload's pause, the give-back on unpause
 * (see qemu_balloon.h). The device is on the command line unless qemu-balloon=0
 * (qemu_argv.c); its id is "balloon", its guest statistics are polled every second. */
#include "qemu_balloon.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "log.h"
#include "monoclock.h"
#include "qemu.h"

#define QMP_TIMEOUT_MS 5000
#define MIB (UINT64_C(1) << 20)
/* free memory the guest keeps through the pause: the hand-out's first calls run before
 * the balloon has given the rest back */
#define SHRINK_MARGIN (24 * MIB)
#define SHRINK_FLOOR (64 * MIB)
#define SHRINK_SLACK (4 * MIB)
#define SHRINK_POLL_US 50000
#define SHRINK_STALL_MS 2000.0 /* no progress that long: the guest gives no more */
/* a pause is never held up longer: a preload still boots in the idle CPU class, so on a
 * busy host its guest fills the balloon slowly, but on nobody else's time */
#define SHRINK_MAX_MS 10000.0
/* A hand-out's first call runs before the guest deflates its balloon (under TCG that
 * takes the guest hundreds of milliseconds of CPU): the memory comes back when that call
 * ends, or this long after the unpause if it runs on */
#define GIVE_BACK_DELAY_US 1000000
#define BALLOON_QOM_PATH "/machine/peripheral/balloon"

enum qemu_balloon_mode qemu_balloon_mode_of(const char *value) {
    if (!value)
        return QEMU_BALLOON_SHRINK;
    if (strcmp(value, "0") == 0 || strcmp(value, "off") == 0 || strcmp(value, "false") == 0 ||
        strcmp(value, "no") == 0)
        return QEMU_BALLOON_OFF;
    return strcmp(value, "report") == 0 ? QEMU_BALLOON_REPORT : QEMU_BALLOON_SHRINK;
}

uint64_t qemu_balloon_target(uint64_t memory, int64_t stat_total, int64_t stat_free) {
    if (stat_total <= 0 || stat_free < 0 || (uint64_t)stat_free > memory)
        return 0;
    uint64_t spare = (uint64_t)stat_free > SHRINK_MARGIN ? (uint64_t)stat_free - SHRINK_MARGIN : 0;
    uint64_t target = memory - spare;
    if (target < SHRINK_FLOOR)
        target = SHRINK_FLOOR;
    return target < memory ? target : 0; /* nothing to take: no shrink */
}

bool qemu_balloon_settled(uint64_t actual, uint64_t target, double stalled_ms) {
    return actual <= target + SHRINK_SLACK || stalled_ms >= SHRINK_STALL_MS;
}

static bool get_i64(json_object *obj, const char *key, int64_t *out) {
    json_object *v;
    if (!obj || !json_object_object_get_ex(obj, key, &v) ||
        !(json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double)))
        return false;
    *out = json_object_get_int64(v);
    return true;
}

bool qemu_balloon_parse_stats(const char *json, int64_t *total, int64_t *free_bytes) {
    json_object *root = json_tokener_parse(json), *stats = NULL;
    bool ok = root && json_object_object_get_ex(root, "stats", &stats) &&
              get_i64(stats, "stat-total-memory", total) &&
              get_i64(stats, "stat-free-memory", free_bytes) && *total > 0 && *free_bytes >= 0;
    json_object_put(root);
    return ok;
}

uint64_t qemu_balloon_parse_u64(const char *json, const char *key) {
    json_object *root = json_tokener_parse(json);
    int64_t v = 0;
    bool ok = get_i64(root, key, &v);
    json_object_put(root);
    return ok && v > 0 ? (uint64_t)v : 0;
}

struct qemu_rss qemu_rss_parse(const char *status) {
    struct qemu_rss rss = {0};
    unsigned long long kb;
    for (const char *line = status; line && *line;
         line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
        if (sscanf(line, "VmRSS: %llu kB", &kb) == 1)
            rss.total = (uint64_t)kb * 1024;
        else if (sscanf(line, "RssAnon: %llu kB", &kb) == 1 ||
                 sscanf(line, "RssShmem: %llu kB", &kb) == 1)
            rss.own += (uint64_t)kb * 1024;
    }
    return rss;
}

struct qemu_rss qemu_rss_of(pid_t pid) {
    char path[64], buf[4096];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "re");
    size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
    if (f)
        fclose(f);
    buf[n] = '\0';
    return qemu_rss_parse(buf);
}

/* ---- QMP ---- */

static uint64_t query_u64(struct qemu_run *run, const char *command, const char *key) {
    char out[512];
    struct backend_why ignored = {{0}};
    if (qmp_execute(&run->qmp, command, NULL, QMP_TIMEOUT_MS, out, sizeof(out), &ignored) < 0)
        return 0;
    return qemu_balloon_parse_u64(out, key);
}

static int set_size(struct qemu_run *run, uint64_t bytes, struct backend_why *why) {
    char args[64];
    snprintf(args, sizeof(args), "{\"value\": %" PRIu64 "}", bytes);
    return qmp_execute(&run->qmp, "balloon", args, QMP_TIMEOUT_MS, NULL, 0, why);
}

bool qemu_balloon_present(struct qemu_run *run) {
    return query_u64(run, "query-balloon", "actual") > 0;
}

int qemu_balloon_shrink(struct qemu_run *run) {
    if (run->balloon != QEMU_BALLOON_SHRINK)
        return -ENOTSUP;
    run->give_back_src = sd_event_source_disable_unref(run->give_back_src); /* stale now */
    char out[2048];
    struct backend_why why = {{0}};
    int64_t total = 0, free_bytes = 0;
    if (qmp_execute(&run->qmp, "qom-get",
                    "{\"path\": \"" BALLOON_QOM_PATH "\", \"property\": \"guest-stats\"}",
                    QMP_TIMEOUT_MS, out, sizeof(out), &why) < 0 ||
        !qemu_balloon_parse_stats(out, &total, &free_bytes)) {
        log_info("%s: no memory statistics from the guest yet: paused at full size%s%s", run->name,
                 *why.msg ? ": " : "", why.msg);
        return -ENOTSUP;
    }
    uint64_t memory = query_u64(run, "query-memory-size-summary", "base-memory");
    uint64_t target = qemu_balloon_target(memory, total, free_bytes);
    if (!target || set_size(run, target, &why) < 0) {
        if (*why.msg)
            log_warning("%s: cannot shrink: %s", run->name, why.msg);
        return -ENOTSUP;
    }
    run->shrink_target = target;
    run->shrink_memory = memory;
    log_debug("%s: shrinking to %" PRIu64 " MiB of %" PRIu64 " MiB (guest: %" PRId64
              " MiB free of %" PRId64 ")",
              run->name, target / MIB, memory / MIB, free_bytes / (int64_t)MIB,
              total / (int64_t)MIB);
    return 0;
}

/* RUNDIR/pausing while the guest shrinks: a pause the daemon already counts, which the
 * next daemon finishes if this one dies before it could (qemu_balloon_adopt). */
static void pausing_path(const struct qemu_run *run, char *buf, size_t size) {
    char dir[4096];
    qemu_rundir(run->qb, run->name, dir, sizeof(dir));
    snprintf(buf, size, "%s/pausing", dir);
}

static void set_pausing(const struct qemu_run *run, bool on) {
    char path[4200];
    pausing_path(run, path, sizeof(path));
    if (!on) {
        unlink(path);
        return;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd >= 0)
        close(fd);
}

static void stop_now(struct qemu_run *run, uint64_t actual) {
    run->shrink_timer = sd_event_source_disable_unref(run->shrink_timer);
    run->shrink_target = 0;
    set_pausing(run, false);
    struct backend_why why = {{0}};
    if (qmp_execute(&run->qmp, "stop", NULL, QMP_TIMEOUT_MS, NULL, 0, &why) < 0) {
        log_warning("%s: %s", run->name, why.msg);
        return;
    }
    struct qemu_rss rss = qemu_rss_of(run->pid);
    log_info("%s: paused small after %.0f ms: QEMU's RSS %" PRIu64 " MiB, its own %" PRIu64
             " MiB, memory %" PRIu64 " MiB (balloon: guest at %" PRIu64 " MiB)",
             run->name, mono_ms() - run->shrink_started_ms, rss.total / MIB, rss.own / MIB,
             run->shrink_memory / MIB, actual / MIB);
}

static int on_shrink_poll(sd_event_source *src, uint64_t usec, void *userdata) {
    struct qemu_run *run = userdata;
    uint64_t actual = query_u64(run, "query-balloon", "actual");
    double now = mono_ms();
    if (actual != run->shrink_last_actual) {
        run->shrink_last_actual = actual;
        run->shrink_progress_ms = now;
    }
    if (!actual ||
        qemu_balloon_settled(actual, run->shrink_target, now - run->shrink_progress_ms) ||
        now - run->shrink_started_ms >= SHRINK_MAX_MS) {
        stop_now(run, actual);
        return 0;
    }
    sd_event_source_set_time_relative(src, SHRINK_POLL_US);
    sd_event_source_set_enabled(src, SD_EVENT_ONESHOT);
    return 0;
}

void qemu_balloon_stop_when_small(struct qemu_run *run) {
    run->shrink_started_ms = run->shrink_progress_ms = mono_ms();
    run->shrink_last_actual = 0;
    set_pausing(run, true);
    if (sd_event_add_time_relative(run->qb->base.loop, &run->shrink_timer, CLOCK_MONOTONIC,
                                   SHRINK_POLL_US, 0, on_shrink_poll, run) < 0)
        stop_now(run, 0);
}

void qemu_balloon_cancel(struct qemu_run *run) {
    if (run->shrink_timer)
        set_pausing(run, false);
    run->shrink_timer = sd_event_source_disable_unref(run->shrink_timer);
    run->shrink_target = 0;
}

bool qemu_balloon_adopt(struct qemu_run *run) {
    char path[4200];
    pausing_path(run, path, sizeof(path));
    if (access(path, F_OK) < 0)
        return false;
    run->shrink_started_ms = mono_ms();
    run->shrink_memory = query_u64(run, "query-memory-size-summary", "base-memory");
    stop_now(run, query_u64(run, "query-balloon", "actual"));
    return true;
}

/* The balloon lets go (QMP balloon to the whole memory), without waiting for QEMU's
 * answer: the guest deflates while it runs. */
static void give_back(struct qemu_run *run, const char *when) {
    run->give_back_src = sd_event_source_disable_unref(run->give_back_src);
    uint64_t memory = run->shrink_memory
                          ? run->shrink_memory
                          : query_u64(run, "query-memory-size-summary", "base-memory");
    char args[64];
    snprintf(args, sizeof(args), "{\"value\": %" PRIu64 "}", memory);
    struct backend_why why = {{0}};
    if (memory && qmp_send(&run->qmp, "balloon", args, &why) < 0)
        log_warning("%s: memory not given back: %s", run->name, why.msg);
    else
        log_debug("%s: memory given back %s", run->name, when);
}

void qemu_balloon_give_back_now(struct qemu_run *run) {
    if (run->give_back_src)
        give_back(run, "after its first call");
}

static int on_give_back(sd_event_source *src, uint64_t usec, void *userdata) {
    give_back(userdata, "1 s after the unpause");
    return 0;
}

void qemu_balloon_give_back(struct qemu_run *run) {
    if (run->balloon != QEMU_BALLOON_SHRINK || run->give_back_src)
        return;
    if (sd_event_add_time_relative(run->qb->base.loop, &run->give_back_src, CLOCK_MONOTONIC,
                                   GIVE_BACK_DELAY_US, 0, on_give_back, run) < 0)
        log_warning("%s: memory not given back: no timer", run->name);
}
