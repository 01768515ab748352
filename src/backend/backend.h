/* The driver interface between dispenserd and an isolation engine.
 *
 * The daemon describes a qube with plain data (struct backend_qube) and learns about it
 * through callbacks; it never sees a mount, a cgroup file or a namespace. Engines never
 * see the qube model or the Admin API. Every operation is non-blocking from the daemon's
 * point of view: waiting happens in the shared sd-event loop.
 */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

#include "macro.h"

enum backend_kind {
    BACKEND_TEMPLATEVM,   /* own root (versioned), own private */
    BACKEND_APPVM,        /* root: CoW of its template's root, discarded; own private */
    BACKEND_DISPVM,       /* root and private: CoW of its template's (and its template's) */
    BACKEND_STANDALONEVM, /* own root, own private, like a template nobody is based on */
};

struct backend_option {
    const char *key, *value;
};

/* A qube's link to the qube that routes for it (its netvm). The engine makes the qube's
 * end (a container: a veth whose end `eth0` is in the qube's network namespace; a VM: a
 * tap its NIC uses) and puts the other end, named `netvm_ifname`, into the netvm's
 * network namespace with `gateway` on it and a route to `ip`: all before the qube's
 * init runs, so it never sees a moment without its network (or its firewall, which the
 * daemon has put in the netvm before). backend_net.h has the shared pieces. */
struct backend_net {
    int netvm_netns;          /* the netvm's network namespace (borrowed: dup what you keep) */
    const char *netvm_ifname; /* "vif12" */
    const char *ip;           /* the qube's address (a /32) */
    const char *gateway;      /* the netvm's address as the qube sees it */
    const char *mac;          /* of the qube's end */
    const char *dns;          /* its DNS servers, blank-separated (Qubes' virtual ones) */
};

struct backend_qube {
    const char *name;
    const char *uuid; /* volumes are keyed by uuid: names can be reused */
    enum backend_kind kind;
    const char *root_source;    /* uuid whose root an AppVM/DispVM starts from, else NULL */
    const char *private_source; /* DispVM: uuid of its disposable template, else NULL */
    uint64_t memory_mib;        /* what it starts with */
    uint64_t maxmem_mib;        /* hard limit; 0 = memory_mib */
    unsigned vcpus;
    unsigned qrexec_timeout; /* seconds to wait for readiness */
    unsigned shutdown_timeout;
    /* Qubes' `kernel` (a name in the engine's kernels directory, never a path: the model
     * checks it; "" = the engine's default guest) and `kernelopts` (added to the guest's
     * command line). Engines without a kernel of their own ignore both. */
    const char *kernel, *kernelopts;
    /* The engine's own knobs: the qube's features named "<virt_mode>-KEY" (the nearest
     * along the template chain wins), as KEY=value; read them with backend_option. */
    const struct backend_option *options;
    size_t n_options;
    /* Qubes' services (qvm-service): the qube's service.NAME features as NAME and "1"
     * (enabled) or "0" (disabled), names already checked (no '/', not "." or "..", at
     * most 48 bytes). An engine shows the enabled ones to the qube as Qubes' agent does,
     * as files /run/qubes-service/NAME present before anything of the qube runs. */
    const struct backend_option *services;
    size_t n_services;
    bool background;               /* nobody waits (a preload): the start must not hold up the
                              * daemon's other work, even if it takes a little longer */
    const struct backend_net *net; /* NULL: loopback only (netvm none) */
    /* A directory on a tmpfs (a ram storage pool) for what a stop of the qube discards:
     * its volatile data and the copy-on-write layers of its views (an AppVM's root, a
     * disposable's root and private). NULL: the engine's own place on the disk. An
     * engine that cannot keep them there refuses the start. */
    const char *scratch_dir;
    /* The qube gets a GUI agent (its own X server and an xpra server, docs/gui.md),
     * started before readiness; the engine creates the channel to it (gui_socket).
     * false: nothing of the GUI is started or created (headless qubes pay nothing). */
    bool gui;
    /* A preload that may be hibernated (ops.hibernate) once ready: its engine keeps what
     * must outlive the engine's process for a wake (a VM's disk writes) from the start. */
    bool hibernatable;
};

enum backend_power { BACKEND_HALTED, BACKEND_RUNNING, BACKEND_PAUSED };

struct backend_stats {
    uint64_t memory_bytes; /* charged to the qube now (a VM: QEMU's own resident memory,
                            * not the file pages every VM shares) */
    uint64_t cpu_ns;       /* CPU time used since start */
    /* How the qube's CPU runs, for engines where it is a choice ("kvm", "tcg"); ""
     * where it is not (a container runs on the host's CPU). */
    char accel[16];
};

/* Per-volume facts for admin.vm.volume.Info. */
struct backend_volume_info {
    uint64_t revision;          /* current revision of the volume (0: none yet) */
    uint64_t used_revision;     /* revision a running qube started with (if in_use) */
    bool in_use;                /* a running qube has a view: revision 0 is a real one too */
    uint64_t usage_bytes;       /* only when want_usage was set by the caller (it walks files) */
    bool want_usage;            /* in: compute usage_bytes */
    bool save_on_stop;          /* changes kept at shutdown (private of a non-disposable) */
    bool snap_on_start;         /* a CoW view of another volume */
    char source_uuid[40];       /* the volume it is a view of, or "": a copy, as the qube's
                             * description it was read from is gone by the time it is used */
    uint64_t size_bytes;        /* the size the user gave it (Resize), 0: the engine's default */
    uint64_t revisions_to_keep; /* older revisions kept for revert */
};

/* One revision of a volume kept for revert (admin.vm.volume.ListSnapshots). */
struct backend_volume_revision {
    uint64_t revision;
    int64_t time; /* when it stopped being current, seconds since the epoch */
};

/* A change to a qube's own (save_on_stop) volume, for volume_change. The qube is halted
 * (-EBUSY otherwise); a volume that is a view of another qube's is refused (-EINVAL). */
enum backend_volume_op {
    BACKEND_VOLUME_CLONE,                 /* its next revision: a copy of `src`'s volume */
    BACKEND_VOLUME_REVERT,                /* kept revision `value` is current again */
    BACKEND_VOLUME_CLEAR,                 /* its next revision is empty */
    BACKEND_VOLUME_SET_SIZE,              /* `value` bytes */
    BACKEND_VOLUME_SET_REVISIONS_TO_KEEP, /* `value`; older kept ones are forgotten */
};
struct backend_volume_change {
    enum backend_volume_op op;
    const char *volume;
    uint64_t value;
    const struct backend_qube *src; /* CLONE: whose volume of the same name */
};

/* A host block device given to a running qube (Qubes' block devices: docs/devices.md).
 * The daemon picked the device and checked it is not the host's own; the engine makes
 * it appear in the qube as /dev/<frontend_dev> and the qube alone may open it. */
struct backend_block {
    unsigned major, minor;
    const char *frontend_dev; /* "xvdi": checked, [a-z0-9], at most 15 bytes */
    bool read_only;           /* the qube may only read it, whatever it does */
};

struct backend;
struct backend_run; /* one running (or paused) qube */

/* A qrexec service call into a qube. stdio are the caller's descriptors: the engine
 * hands them to the agent (container) or copies between them and its channel (VM). The
 * engine duplicates what it keeps; the caller closes its own. */
struct backend_service_call {
    const char *service, *argument;
    const char *source;  /* the caller as the service sees it: QREXEC_REMOTE_DOMAIN */
    const char *target;  /* as requested: QREXEC_REQUESTED_TARGET */
    const char *user;    /* "" = the qube's default user */
    const char *command; /* qubes.VMShell: a command instead of a script on stdin */
    int stdio[3];
    bool pty; /* a terminal in the qube (AGENT_F_PTY); stdio[2] is its window
                          * size channel */
};

enum backend_call_end { BACKEND_CALL_EXITED, BACKEND_CALL_SIGNALED, BACKEND_CALL_FAILED };
typedef void (*backend_call_done_fn)(void *userdata, enum backend_call_end how, int status,
                                     const char *reason);

/* A call made from inside a qube (qrexec-client-vm), for the daemon's router to decide
 * and run; answered exactly once with upcall_reply. */
struct backend_upcall {
    const char *source; /* the qube it came from: the engine knows, the qube cannot lie */
    const char *target, *service, *user, *command;
    int stdio[3];         /* the caller's; they belong to the daemon from the upcall on */
    struct backend *from; /* the engine it came up through: it gets the reply */
    void *handle;         /* the engine's */
};

/* What the engine tells the daemon. */
struct backend_events {
    void *userdata;
    /* The qube's init exited or was killed; its run handle is freed after this returns. */
    void (*exited)(void *userdata, const char *name, int status);
    /* A qube asked for a qrexec call. */
    void (*upcall)(void *userdata, struct backend_upcall *call);
    /* The process inside the qube that made that call went away before its answer (the
     * call is still answered, once, with upcall_reply). Optional. */
    void (*upcall_cancel)(void *userdata, struct backend_upcall *call);
};

/* One error convention across the seam: every operation returns 0 or a negative errno,
 * and may say why in words for the user. Engines know nothing of Qubes' exceptions; the
 * dispatcher (src/daemon/dispatcher.c) alone maps them:
 *   -ESRCH    the qube does not run at all      QubesVMNotStartedError
 *   -EAGAIN   it does not run now (paused too)  QubesVMNotRunningError
 *   -EBUSY    it runs and must not              QubesVMNotHaltedError
 *   -EALREADY it is not paused                  QubesVMNotPausedError
 *   -EINVAL   a request the engine refuses      QubesValueError
 *   -ENODEV   the engine cannot run here        QubesException, naming the qube
 *   other     a failure                         QubesException with the words as they are */
struct backend_why {
    char msg[256];
};

/* Fills why (if not NULL) and returns r: `return backend_fail(why, -EIO, "...", ...);` */
int backend_fail(struct backend_why *why, int r, const char *fmt, ...) _printf_(3, 4);

/* Completion of an asynchronous operation: r = 0 or -errno, why = words or NULL. */
typedef void (*backend_done_fn)(void *userdata, int r, const char *why);

struct backend_ops {
    const char *name; /* "container", "qemu": the virt_mode value */
    /* Start: prepare volumes, launch, then wait for readiness (bounded by
     * qrexec_timeout). `done` is called exactly once; on failure nothing is left. */
    int (*start)(struct backend *b, const struct backend_qube *q, backend_done_fn done,
                 void *userdata, struct backend_why *why);
    int (*pause)(struct backend *b, const char *name, struct backend_why *why);
    /* Optional (NULL: nothing to give back). Gives back what the qube can spare before a
     * long pause (a preload): called right before that pause; best effort: -ENOTSUP where
     * the host cannot. Where the qube must run on to give
     * it back (a VM's balloon), the pause that follows counts at once, nothing more is
     * asked of the qube, and the engine freezes it itself within a bounded time; an
     * unpause meanwhile drops the rest and gives its memory back. */
    int (*reclaim)(struct backend *b, const char *name);
    int (*unpause)(struct backend *b, const char *name, struct backend_why *why);
    /* Optional (NULL: background starts are not deprioritised). A qube started in the
     * background now serves someone: its full CPU share back. */
    int (*foreground)(struct backend *b, const char *name);
    /* Orderly shutdown (agent, then SIGTERM to init), kill after shutdown_timeout;
     * `done` when it is gone. */
    int (*shutdown)(struct backend *b, const char *name, bool force, backend_done_fn done,
                    void *userdata, struct backend_why *why);
    int (*kill)(struct backend *b, const char *name, struct backend_why *why);
    /* Kills without waiting: the exit is reported through events.exited as usual. For
     * disposables whose call is over: nobody should wait for them to go. */
    int (*kill_nowait)(struct backend *b, const char *name, struct backend_why *why);
    enum backend_power (*state)(struct backend *b, const char *name);
    int (*stats)(struct backend *b, const char *name, struct backend_stats *out);
    /* Optional: memory its qubes may still take under the limits the host put on the
     * engine (a cgroup limit above the qubes'), in bytes; -ENOENT when nothing limits it
     * but the host's own memory. */
    int (*memory_headroom)(struct backend *b, uint64_t *bytes);
    /* Remove every volume of a qube that is being deleted, and its logs. */
    int (*remove_volumes)(struct backend *b, const struct backend_qube *q, struct backend_why *why);
    int (*volume_info)(struct backend *b, const struct backend_qube *q, const char *volume,
                       struct backend_volume_info *out, struct backend_why *why);
    /* Optional (NULL: QubesNotImplementedError). The revisions of q's volume kept for
     * revert, oldest first, into out (at most max; *n is how many there are). */
    int (*volume_revisions)(struct backend *b, const struct backend_qube *q, const char *volume,
                            struct backend_volume_revision *out, size_t max, size_t *n,
                            struct backend_why *why);
    /* Optional (NULL: QubesNotImplementedError); -EOPNOTSUPP where the engine's volume
     * cannot do that one change. -ENOENT: REVERT to a revision not kept. */
    int (*volume_change)(struct backend *b, const struct backend_qube *q,
                         const struct backend_volume_change *change, struct backend_why *why);
    /* Template import (qvm-template): a staging directory the caller fills as root, then
     * commit (uid shift, new revision) or abort. */
    int (*import_begin)(struct backend *b, const struct backend_qube *q, const char *volume,
                        char *path, size_t size, struct backend_why *why);
    int (*import_end)(struct backend *b, const struct backend_qube *q, const char *volume,
                      bool commit, struct backend_why *why);
    /* Optional (NULL: no engine GUI). The host end of a GUI qube's window channel: a
     * Unix socket, created by the engine for the qube alone, that the host's GUI daemon
     * connects to (never the other way round: the qube reaches no host socket). -ENOENT
     * when the qube has none (headless, or not running). */
    int (*gui_socket)(struct backend *b, const char *name, char *path, size_t size);
    /* Runs a service in a running qube; `done` when it has ended (or could not start). */
    int (*exec)(struct backend *b, const char *name, const struct backend_service_call *call,
                backend_call_done_fn done, void *userdata, struct backend_why *why);
    /* Answers an upcall (and frees it): how it ended, with a reason shown to the caller
     * when refused or failed. */
    void (*upcall_reply)(struct backend *b, struct backend_upcall *call, enum backend_call_end how,
                         int status, const char *reason);
    /* Optional (NULL: its qubes cannot provide network). Opens (O_CLOEXEC) the network
     * namespace a running qube's traffic lives in: for a netvm, where its clients' links
     * end, its uplink starts and the daemon puts the firewall. -EAGAIN if not running. */
    int (*netns_open)(struct backend *b, const char *name, int *fd);
    /* Optional (NULL: the netvm of a running qube cannot change). Links a running qube to
     * a netvm as start does (net), or unlinks it (net NULL): Qubes' attach-network and
     * detach-network. */
    int (*net_attach)(struct backend *b, const char *name, const struct backend_net *net,
                      struct backend_why *why);
    /* Optional (NULL: this engine cannot give its qubes block devices). Gives a running
     * or paused qube a host block device, and takes it back: -EBUSY when the frontend
     * name is taken (attach) or the qube still has the device open (detach), -ENOTSUP
     * when the host lacks what enforces it. */
    int (*block_attach)(struct backend *b, const char *name, const struct backend_block *dev,
                        struct backend_why *why);
    int (*block_detach)(struct backend *b, const char *name, const struct backend_block *dev,
                        struct backend_why *why);
    /* Optional (NULL: this engine cannot hibernate: docs/preload.md "A hibernated tier").
     * Saves a paused qube that was started `hibernatable` to a file of the engine's
     * (0600, root's, in its state dir) and ends its process: it holds no memory, no
     * process and no uid, stays PAUSED to the daemon (unpause refuses it; kill and
     * shutdown remove the file) and is adopted as such after a restart. `done` once saved;
     * on failure the qube is stopped for good (the daemon discards it). */
    int (*hibernate)(struct backend *b, const char *name, backend_done_fn done, void *userdata,
                     struct backend_why *why);
    /* Starts a hibernated qube again from its file (q described as for start); the file
     * is used once: unlinked before it is loaded. `done` when it runs and is ready, as
     * after start; on failure it is gone, files and all (not reported through
     * events.exited: the daemon takes the failure for its end). */
    int (*wake)(struct backend *b, const struct backend_qube *q, backend_done_fn done,
                void *userdata, struct backend_why *why);
    /* After a daemon restart: take over a qube that is still running. 0 if adopted,
     * -1 if it is not running (its leftovers are then cleaned up). Called for every
     * qube of this engine before cleanup: the engine's logs of qubes it was not called
     * for are leftovers. */
    int (*adopt)(struct backend *b, const struct backend_qube *q);
    /* Remove runtime leftovers of qubes not in `keep` (uuids, NULL-terminated). */
    void (*cleanup)(struct backend *b, const char *const *keep);
    void (*free)(struct backend *b);
};

struct backend {
    const struct backend_ops *ops;
    sd_event *loop;
    struct backend_events events;
};

struct backend_config {
    const char *state_dir;
    const char *runtime_dir;
    const char *agent_path; /* the static agent binary on the host; also bound read-only
                             * into every qube at AGENT_BIN_DIR for qrexec-client-vm */
    /* The daemon's --engine-option ENGINE.KEY=VALUE settings of this engine, as KEY=VALUE
     * (e.g. container's uid-base). An engine refuses keys it does not know. */
    const struct backend_option *options;
    size_t n_options;
};

/* An engine's constructor, one per row of the registry (registry.c). NULL with err set
 * when the engine cannot run on this host; the registry then puts an unavailable engine
 * in its place. */
typedef struct backend *(*backend_open_fn)(sd_event *loop, const struct backend_config *cfg,
                                           struct backend_why *why);

/* An engine whose every operation fails with "virt_mode=NAME is not available: WHY". It
 * stands in for an engine that cannot run here, so the daemon never checks for one. */
struct backend *backend_unavailable_new(sd_event *loop, const char *name, const char *why);

/* A deep copy of a description, for an engine that acts on it after the call returns
 * (the daemon's own points into its model and is not kept). Free with backend_qube_free. */
struct backend_qube *backend_qube_dup(const struct backend_qube *q);
void backend_qube_free(struct backend_qube *q);
/* The value of an option (a qube's or a config's), or NULL. */
const char *backend_option(const struct backend_option *opts, size_t n, const char *key);
