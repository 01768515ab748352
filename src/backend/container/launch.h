/* Launching a qube's init: a process in new mount, pid, net, ipc, uts, cgroup and user
 * namespaces, with its volumes mounted, its root pivoted, its privileges reduced, exec'ing
 * the agent as PID 1.
 *
 * Order matters, and differs from most container runtimes: every mount is made while
 * the child is still privileged in the initial user namespace (so overlayfs uses trusted
 * xattrs, needs no userxattr and the template layers stay owned by the qubes' uid range),
 * and the user namespace is entered last, after pivot_root. The mount namespace therefore
 * belongs to the initial user namespace: root inside the qube holds no capability over it
 * and can neither mount nor unmount anything, even before seccomp is loaded. The same goes
 * for the net, uts and ipc namespaces (loopback only, hostname fixed).
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <systemd/sd-event.h>

#include "backend.h"

struct launch_overlay {
    const char *target; /* inside the new root, e.g. "/" or "/rw" */
    char **lowers;      /* top first */
    size_t n_lowers;
    const char *upper;
    const char *work;
    bool throwaway; /* the upper is discarded at shutdown (a disposable's, an AppVM's
                     * root): mounted `volatile`, never synced to the disk */
};

#define LAUNCH_GUI_FD 6
#define LAUNCH_GUI_FD_ENV "DISPENSER_GUI_FD=6" /* the same number, for the agent */

struct launch_spec {
    const char *hostname;
    const char *root_mountpoint; /* an empty host directory the root overlay goes on */
    const char *links_dir;       /* scratch for the overlays' short names (mount_overlay) */
    struct launch_overlay root;
    struct launch_overlay private_vol; /* mounted at /rw; /rw/home is bound onto /home */
    uid_t uid_base, uid_count;         /* the qube's own range: its root is host uid uid_base */
    /* -1: the layers are used as they are (owned by uid_base's range). Else a user
     * namespace mapping the canonical range, which owns the layers on disk, to the
     * qube's: each lower layer and the upper's directory are idmapped clones (idmap.h) */
    int idmap_fd;
    int agent_fd;  /* the agent binary (a sealed memfd), exec'ed with execveat and
                             * bound read-only into the qube's /run as qrexec-client-vm */
    int listen_fd; /* becomes fd 3 of the agent */
    int log_fd;    /* becomes stdout and stderr of the agent */
    bool host_usr; /* the host's /usr read-only instead of the template's */
    int gui_fd;    /* -1, or a GUI qube's listening window channel (gui.c): becomes
                    * LAUNCH_GUI_FD of the agent, named in its DISPENSER_GUI_FD */
    /* Called in the child with pid 0 ("myself") before it does anything else, so that
     * every process of the qube is born inside its cgroups. In the child, not the parent:
     * moving a task between cgroups waits for an RCU grace period (the threadgroup
     * rwsem), milliseconds the daemon's loop should not spend. */
    int (*attach)(void *ctx, pid_t pid);
    void *attach_ctx;
    /* Called in the parent once the child's namespaces exist and before it may go on to
     * the agent (the network link: no moment without it); < 0 fails the launch. */
    int (*before_exec)(void *ctx, pid_t pid, struct backend_why *why);
    void *before_exec_ctx;
    char *const *argv;
    char *const *envp;
    /* Qubes' services (backend_qube.services): the enabled ones become empty files in
     * the qube's /run/qubes-service before its agent (and so anything of the qube) runs */
    const struct backend_option *services;
    size_t n_services;
};

struct launch_op;
/* r = 0: the agent has been exec'ed; -EIO: the child failed (why says why) and was
 * SIGKILLed; the caller reaps it through its pidfd. */
typedef void (*launch_done_fn)(void *userdata, int r, const char *why);

/* Creates the child now (pid and a CLOEXEC pidfd are the caller's from here on) and
 * drives the rest from the event loop, calling `done` once. Returns -1 with nothing left
 * running if the child cannot even be made. */
int launch_qube_async(sd_event *loop, const struct launch_spec *spec, launch_done_fn done,
                      void *userdata, pid_t *pid, int *pidfd, struct launch_op **op,
                      struct backend_why *why);
/* Finishes the launch now, blocking (someone waits for this qube: a cold start). */
/* A launch nobody waits for (a preload) steps aside for whatever else is pending. */
void launch_set_priority(struct launch_op *op, int64_t priority);
void launch_wait(struct launch_op *op);
/* Gives up a launch in flight (the qube is being killed): no callback. */
void launch_cancel(struct launch_op *op);
