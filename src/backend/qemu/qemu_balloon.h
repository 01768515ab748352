/* A VM's memory while it waits paused (a preload): virtio-balloon. The guest reports
 * the pages it frees (free page reporting) and QEMU drops them; before the pause the
 * balloon takes what the guest does not use, so the paused VM holds little more than
 * what its guest really uses; on unpause it gets its whole `memory` back.
 *
 * Under TCG and KVM alike the guest must run to give pages back: the engine's pause of
 * a qube it was asked to shrink first (qemu_balloon_shrink) stops the VM only once the
 * balloon is full or a bounded time has passed (qemu_balloon_stop_when_small). */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct qemu_run;

enum qemu_balloon_mode {
    QEMU_BALLOON_OFF,    /* no balloon device */
    QEMU_BALLOON_REPORT, /* free page reporting only: no shrink, nothing to give back */
    QEMU_BALLOON_SHRINK, /* and the shrink before a preload's pause (the default) */
};
/* The qube's qemu-balloon feature: "0" (or off, false, no), "report", else the default. */
enum qemu_balloon_mode qemu_balloon_mode_of(const char *value);

/* The guest size (bytes) a shrink asks for: what the guest uses (total - free, from its
 * own statistics) plus a margin it keeps free for the hand-out's first work, never
 * below a floor nor above memory. 0 (no shrink) when the statistics are missing. */
uint64_t qemu_balloon_target(uint64_t memory, int64_t stat_total, int64_t stat_free);

/* Whether the balloon has done what it can: reached the target (within a slack), or
 * made no progress for a while. */
bool qemu_balloon_settled(uint64_t actual, uint64_t target, double stalled_ms);

/* The guest's statistics out of QMP's qom-get guest-stats reply; false if missing. */
bool qemu_balloon_parse_stats(const char *json, int64_t *total, int64_t *free_bytes);
/* A byte count out of a QMP reply's object member (query-balloon's actual,
 * query-memory-size-summary's base-memory); 0 if missing. */
uint64_t qemu_balloon_parse_u64(const char *json, const char *key);

/* Asks the running guest to shrink to what it uses (QMP balloon): 0 when a shrink is
 * under way, -ENOTSUP when the VM does not shrink (qemu-balloon=0 or report) or its guest
 * sent no statistics yet. */
int qemu_balloon_shrink(struct qemu_run *run);
/* The engine's pause after a shrink: the qube counts as paused from now on; QMP stop
 * follows when the balloon has settled, at the latest after a bounded wait. */
void qemu_balloon_stop_when_small(struct qemu_run *run);
/* A pending shrink is dropped (unpause, shutdown, kill): no stop will come. */
void qemu_balloon_cancel(struct qemu_run *run);
/* After a daemon restart: a VM its predecessor had paused while it still shrank is
 * stopped now (true). */
bool qemu_balloon_adopt(struct qemu_run *run);
/* After cont: the guest is given its whole memory back once the first call into it ended
 * (qemu_balloon_give_back_now) or a second after the unpause, whichever comes first:
 * neither the hand-out nor its first call waits for the balloon. Harmless on a VM
 * without a balloon. */
void qemu_balloon_give_back(struct qemu_run *run);
/* A pending give-back, now (QMP without waiting for the answer). */
void qemu_balloon_give_back_now(struct qemu_run *run);

/* Whether the VM has a balloon device (QMP query-balloon answers): for an adopted VM. */
bool qemu_balloon_present(struct qemu_run *run);

/* Resident memory of a QEMU process (/proc/PID/status), bytes: all of it (VmRSS), and
 * its own (RssAnon + RssShmem: guest RAM, the TCG translation cache, QEMU's heap). The
 * rest is file pages (the mapped guest kernel, QEMU's code): page cache shared by every
 * VM, which the host's MemAvailable still counts as available. */
struct qemu_rss {
    uint64_t total, own;
};
struct qemu_rss qemu_rss_of(pid_t pid);
/* The same from the text of a /proc/PID/status. */
struct qemu_rss qemu_rss_parse(const char *status);
