/* An in-memory engine for unit tests: no root, no processes, no files. It keeps each
 * qube's power state and volume revisions, records every call it gets, and does what the
 * test asks: succeed (by default, on the next loop iteration, as a real engine answers
 * through the loop), fail with a given message, or hang until told to finish. The daemon's
 * logic (the dispatcher, the preload pool, the qrexec router) runs against it unchanged, so
 * the same tests can later be pointed at every real engine (container, QEMU).
 *
 * Not an entry of the registry: dispenserd never builds it in. */
#pragma once
#include "backend.h"

enum fake_op {
    FAKE_START,
    FAKE_PAUSE,
    FAKE_UNPAUSE,
    FAKE_RECLAIM,
    FAKE_FOREGROUND,
    FAKE_SHUTDOWN,
    FAKE_KILL,
    FAKE_KILL_NOWAIT,
    FAKE_STATS,
    FAKE_MEMORY_HEADROOM,
    FAKE_REMOVE_VOLUMES,
    FAKE_VOLUME_INFO,
    FAKE_IMPORT_BEGIN,
    FAKE_IMPORT_END,
    FAKE_EXEC,
    FAKE_UPCALL_REPLY,
    FAKE_ADOPT,
    FAKE_CLEANUP,
    FAKE_OP_COUNT
};

/* How starts end, from now on (each start takes the plan in force when it was called). */
enum fake_start_plan {
    FAKE_START_OK,      /* ready on a later loop iteration (after start returned) */
    FAKE_START_OK_SYNC, /* done called before start returns (a waited-for container start) */
    FAKE_START_FAIL,    /* done(-1) with the planned message, on a later iteration */
    FAKE_START_HANG,    /* never done until fake_finish_start */
};

/* An engine named `name` (the virt_mode it serves: "container", "qemu"). Optional ops
 * (reclaim, foreground, memory_headroom) are there; fake_drop_optional removes them. */
struct backend *fake_backend_new(sd_event *loop, const char *name);
/* Sets every optional op to NULL, as an engine that lacks them would. */
void fake_drop_optional(struct backend *b);

/* ---- what it does ---- */

/* The next call of op (any qube) fails at once (-1, or -EIO for ops without an error)
 * with this message, as QubesException. Once. */
void fake_fail_next(struct backend *b, enum fake_op op, const char *msg);
void fake_plan_start(struct backend *b, enum fake_start_plan plan, const char *msg);
/* Ends a hung start now: r = 0 ready, else failed with msg. -1 if none is pending. */
int fake_finish_start(struct backend *b, const char *name, int r, const char *msg);
/* Service calls (exec) end by default on a later iteration, exited with status 0. */
void fake_plan_exec(struct backend *b, bool hang, int status);
/* Ends the oldest hung service call into `name`: exited with status. -1 if none. Calls
 * into a qube that halts end as failed ("the qube went away during the call"). */
int fake_finish_exec(struct backend *b, const char *name, int status);
/* The qube's init died (a crash): it halts and events.exited is reported at once, as a
 * real engine reports from its exit watcher. During a start: the start fails instead. */
int fake_crash(struct backend *b, const char *name, int status);
/* A call from inside a running qube (qrexec-client-vm), through events.upcall; its stdio
 * are /dev/null. The reply is recorded (fake_upcall_replies). */
int fake_inject_upcall(struct backend *b, const char *source, const char *target,
                       const char *service);
/* What headroom memory_headroom reports (bytes); negative: -ENOENT (no limit). */
void fake_set_headroom(struct backend *b, int64_t bytes);
/* What stats report for running qubes. */
void fake_set_memory_usage(struct backend *b, uint64_t bytes);
/* stats fail (-EIO) for every qube while set: an engine that cannot measure them. */
void fake_set_stats_unavailable(struct backend *b, bool unavailable);
/* Marks a qube as running (or paused) before any start: what survives a daemon restart,
 * for adopt. */
void fake_set_running(struct backend *b, const char *name, enum backend_power power);
/* A new revision of a volume ("root", "private") of the qube with this uuid. */
void fake_bump_revision(struct backend *b, const char *uuid, const char *volume);

/* ---- what it saw ---- */

enum backend_power fake_power(struct backend *b, const char *name);
/* How many calls of op it got, for one qube (by name) or for any (NULL). Failed calls
 * count too; stats are not counted (memory accounting asks all the time). */
unsigned fake_calls(struct backend *b, enum fake_op op, const char *qube);
/* Every call, one line each: "start disp12", "remove_volumes work", ... */
const char *fake_log(struct backend *b);
void fake_log_clear(struct backend *b);
/* Was the last start of `name` a background one (a preload)? */
bool fake_started_background(struct backend *b, const char *name);
/* Starts called and not finished yet. */
unsigned fake_pending_starts(struct backend *b);
/* Replies to injected upcalls, one line each: "<how> <status> <reason>" (how: exited,
 * signaled, failed). */
const char *fake_upcall_replies(struct backend *b);
/* The keep list the last cleanup got, space-separated uuids. */
const char *fake_last_cleanup_keep(struct backend *b);
/* The options the last start of `name` got, "KEY=value KEY=value". */
const char *fake_last_options(struct backend *b, const char *name);
/* The last service call: "SERVICE+ARG in QUBE from SOURCE for TARGET user=USER". */
const char *fake_last_exec(struct backend *b);
const char *fake_op_name(enum fake_op op);
