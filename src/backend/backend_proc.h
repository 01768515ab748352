/* What every engine needs about its own processes and their waiters: telling a recorded
 * pid from a reused one after a daemon restart, and the callers waiting for a qube's end. */
#pragma once
#include <stdbool.h>
#include <sys/types.h>

#include "backend.h"

/* /proc/<pid>/stat's start time (field 22), 0 if unknown: a pid and its start time name
 * one process, whatever reuses the pid later. */
unsigned long long backend_proc_starttime(pid_t pid);

/* Is the recorded process (pid, starttime) still that process, and alive? *pidfd gets its
 * pidfd once one could be opened, also when the answer is no (a zombie that is no longer
 * our child is readable at once): the caller closes it. */
bool backend_proc_alive(pid_t pid, unsigned long long starttime, int *pidfd);

/* Callers waiting for a qube to be gone (a shutdown with --wait); one list per run. */
struct backend_waiter;
void backend_waiter_add(struct backend_waiter **list, backend_done_fn done, void *userdata);
/* A shutdown asked of a qube: the kill after timeout_s seconds armed once (a second
 * request keeps the first deadline), and `done` (if any) told when the qube is gone. */
void backend_shutdown_watch(sd_event *loop, sd_event_source **stop_timer, unsigned timeout_s,
                            sd_event_time_handler_t on_timeout, void *run,
                            struct backend_waiter **waiters, backend_done_fn done, void *userdata);
/* Tells each waiter that the qube is gone and empties the list. */
void backend_waiters_tell(struct backend_waiter **list);
/* Empties the list without telling anyone (daemon exit: nobody is left to tell). */
void backend_waiters_free(struct backend_waiter **list);
