/* Internals shared by the container engine's files. */
#pragma once
#include <stdbool.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

#include "agent_link.h"
#include "backend.h"
#include "backend_proc.h"
#include "cgroup.h"
#include "volume.h"

/* One writable or CoW volume of a running qube. */
struct run_volume {
    struct volume_stack stack; /* the layers it was started on */
    char *upper, *work;
    bool persistent;        /* commit the upper at stop (own volume), else discard */
    const char *owner_uuid; /* whose volume the upper belongs to when persistent */
    char **shifted;         /* on copies: chowned copies of stack.layers, in the same order,
                     * NULL-terminated (shiftcache.h), mounted instead of them; else NULL */
};

struct container_backend;

/* The link a starting qube gets to its netvm (made before its init runs). */
struct run_net {
    bool on;
    int netvm_fd; /* our duplicate, until the link is made */
    char ifname[16], ip[16], gateway[16], mac[18], dns[64];
};

struct run {
    struct container_backend *cb;
    struct run *next;
    char *name, *uuid;
    enum backend_kind kind;
    pid_t pid;
    unsigned long long starttime; /* /proc/<pid>/stat field 22: tells a reused pid apart */
    int pidfd;
    sd_event_source *exit_src;
    struct cgroup_qube *cg;
    enum backend_power power;
    struct run_volume root, priv;
    unsigned shutdown_timeout;
    unsigned cpu_weight; /* restored when a preload is handed out */
    bool background;     /* a preload: its start steps aside for calls */
    /* start: waiting for the agent to report readiness (link.ready) */
    struct launch_op *launch; /* while the child sets itself up (launch.c) */
    char *sync_failure;       /* a waiting container_start's buffer for a launch failure */
    unsigned qrexec_timeout;
    double launched_ms; /* CLOCK_MONOTONIC, for the debug log */
    backend_done_fn start_done;
    void *start_userdata;
    struct run_net net;
    uid_t uid_base;    /* host uid of its root: its slot's range (uidslot.h) */
    int idmap_fd;      /* the slot's id-mapping user namespace (cb's), or -1 */
    bool release_slot; /* its volumes were removed while it was ending: free the slot */
    bool copies;       /* stands on chowned copies of its layers, its uppers in its own range */
    struct agent_link link; /* its agent at RUNDIR/agent.sock: readiness, calls, uplink */
    /* shutdown: waiting for the qube to go; every `--wait` caller is told */
    sd_event_source *stop_timer;
    struct backend_waiter *stop_waiters;
};

struct container_backend {
    struct backend base;
    char *state_dir, *runtime_dir, *agent_path;
    uid_t uid_base, uid_count; /* the canonical range: what volumes are owned by */
    /* per-qube ranges (uidslot.h, idmap.h); !per_qube: every qube runs as the canonical
     * range (container.uid-ranges=shared) */
    struct uid_slots *slots;
    unsigned n_slots;
    bool per_qube;                   /* starts take a slot of their own */
    struct idmap_probe *idmap_probe; /* still running: decides per_qube at the first start */
    bool per_qube_required;          /* container.uid-ranges=per-qube: no fallback */
    char *uid_ranges_failure;        /* required and impossible: why every start fails */
    int *idmap_ns; /* per slot: its id-mapping user namespace, made at its first start */
    bool copies;   /* per_qube without idmapped mounts (none here, or uid-ranges=copies):
                  * each qube stands on chowned copies of its layers (shiftcache.h) */
    int agent_fd;
    struct cgroup_system *cgroups;
    struct run *runs;
    struct run *dying;           /* ended, their volumes and directories not yet settled */
    struct agent_hub agents;     /* the links' service calls in flight, their uplinks */
    struct run *retiring;        /* handed to the reaper, not yet acknowledged */
    struct reaper *reaper;       /* the helper process that removes disposables' remains */
    sd_event_source *settle_src; /* settles `dying` on the next loop iteration */
    char **log_owners;           /* qubes adopt() heard of: their logs survive the sweep */
    size_t n_log_owners;
};

struct run *container_find(struct container_backend *cb, const char *name);
void container_path(const struct container_backend *cb, char *buf, size_t size, const char *fmt,
                    ...) __attribute__((format(printf, 4, 5)));
/* The qube's init is gone (or never came): remove its cgroups, tell the daemon
 * (report=true), and queue the volume and directory work (container_settle). */
void container_teardown(struct run *run, bool report, int status);
/* Finishes every queued teardown now. */
void container_settle(struct container_backend *cb);
void container_settle_writers(struct container_backend *cb);
void container_settle_name(struct container_backend *cb, const char *name);
int container_watch_exit(struct run *run);

/* container_net.c: the qube's end of its network link (backend.h, struct backend_net) */
void container_net_keep(struct run *run, const struct backend_net *net);
void container_net_drop(struct run *run);
int container_net_before_exec(void *ctx, pid_t pid, struct backend_why *why);
/* Block devices (blockdev.c). */
int container_block_attach(struct backend *b, const char *name, const struct backend_block *dev,
                           struct backend_why *why);
int container_block_detach(struct backend *b, const char *name, const struct backend_block *dev,
                           struct backend_why *why);
int container_netns_open(struct backend *b, const char *name, int *fd);
int container_net_attach(struct backend *b, const char *name, const struct backend_net *net,
                         struct backend_why *why);

/* state file: RUNTIME/qubes/<name>/state, what a restarted daemon needs to adopt */
int run_state_save(const struct run *run);
struct run *run_state_load(struct container_backend *cb, const char *name);
void run_volume_free(struct run_volume *v);

int container_adopt(struct backend *b, const struct backend_qube *q);

/* Frees uuid's uid range slot, its chowned copies of its own layers first. */
void container_release_slot(struct container_backend *cb, const char *uuid);
/* Removes the chowned copies no qube needs any more (shiftcache_sweep); at_start: also
 * those of slots no qube holds. */
void container_sweep_copies(struct container_backend *cb, bool at_start);

/* container_volume.c: the volume operations beyond start and stop */
/* The uuid whose volume q's `volume` is a view of, or NULL: q's own. */
const char *container_volume_source(const struct backend_qube *q, const char *volume);
int container_volume_revisions(struct backend *b, const struct backend_qube *q, const char *volume,
                               struct backend_volume_revision *out, size_t max, size_t *n,
                               struct backend_why *why);
int container_volume_change(struct backend *b, const struct backend_qube *q,
                            const struct backend_volume_change *change, struct backend_why *why);

/* guest logs (guest_log.c): STATE/log/guest-<name>.log */
int guest_log_open(struct container_backend *cb, const char *name); /* rotates if big */
void guest_log_remove(struct container_backend *cb, const char *name);
/* Keeps the tail of the log of a start that failed in log/failed-start/. */
void guest_log_keep_failed_start(struct container_backend *cb, const char *name);
/* The sweep at daemon start removes the logs of qubes adopt() was not called for. */
void guest_log_note_qube(struct container_backend *cb, const char *name);
void guest_log_sweep(struct container_backend *cb);
void guest_log_owners_free(struct container_backend *cb);
void container_cleanup(struct backend *b, const char *const *keep);

/* the agent link (container_link.c; src/backend/agentlink/) */
void container_link_init(struct run *run); /* descriptor passing, RUNDIR/agent.sock */
int container_exec(struct backend *b, const char *name, const struct backend_service_call *call,
                   backend_call_done_fn done, void *userdata, struct backend_why *why);
/* status < 0 means refused (reason says why) */
void container_upcall_reply(struct backend *b, struct backend_upcall *call,
                            enum backend_call_end how, int status, const char *reason);

/* The GUI channel (gui.c): a listening socket at RUNDIR/gui.sock for a GUI qube. */
int bind_agent_socket(const char *path); /* root-only (0600) listening socket, or -errno */
int container_gui_bind(struct run *run);
int container_gui_socket(struct backend *b, const char *name, char *path, size_t size);
