/* The reaper: a helper process that removes what an ended disposable leaves behind (its
 * cgroups and directories, a millisecond or more of kernel work), so that the daemon's
 * loop serves the next call instead: cleanup is never on a caller's path.
 *
 * A process, not a thread: the daemon starts qubes with a raw clone3 whose child runs
 * malloc and libcap before it execs the agent. Had the daemon a second thread, a lock that
 * thread held at the moment of the clone would stay locked forever in the child.
 *
 * Jobs run in the order they were queued, and are acknowledged in that order. */
#pragma once
#include <stdbool.h>
#include <systemd/sd-event.h>

#include "cgroup.h"

struct reaper;
/* Jobs done are heard at idle priority, after the calls pending (the end of a used
 * disposable must not hold up the next hand-out); beyond this many queued, at normal
 * priority, so that a loop that never idles still keeps the queue bounded. */
#define REAPER_BACKLOG 8
/* ok = false: the reaper died before finishing the job; the caller does it itself. */
typedef void (*reaper_done_fn)(void *userdata, bool ok);

/* Forks the reaper. Call while the daemon has a single thread. NULL with errno. */
struct reaper *reaper_start(sd_event *loop, struct cgroup_system *cs, const char *state_dir,
                            const char *runtime_dir);
/* Queues the removal of qube `name`'s cgroups (killing what is left in them) and of
 * STATE/volatile/<name> and RUNTIME/qubes/<name>; `done` runs on the loop afterwards.
 * -1 if the reaper is gone: nothing was queued, do it yourself. */
int reaper_retire(struct reaper *r, const char *name, reaper_done_fn done, void *userdata);
/* Returns once every queued job is finished and its `done` has run. */
void reaper_wait_idle(struct reaper *r);
/* Finishes the queued jobs, then ends the process. NULL is fine. */
void reaper_stop(struct reaper *r);
