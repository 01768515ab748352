/* Internals shared by the QEMU engine's files. */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

#include "agent_link.h"
#include "backend.h"
#include "backend_proc.h"
#include "cgroup.h"
#include "qemu_balloon.h"
#include "qmp.h"

/* What a qube runs on: KVM where it works, else QEMU's own translator. */
enum qemu_accel { QEMU_ACCEL_TCG, QEMU_ACCEL_KVM };

struct qemu_backend;

/* One running (or paused, or starting) VM. Its files are in RUNTIME/qemu/<name>/:
 * state (what an adopting daemon needs), qmp.sock, control.sock (our "poweroff" to the
 * guest's init), serial.sock (the agent's port, dispenser-vmux's stream) and agent.sock
 * (dispenser-vmux's: one connection per agent request, the agent link's socket). */
struct qemu_run {
    struct qemu_backend *qb;
    struct qemu_run *next;
    char *name, *uuid;
    enum backend_kind kind;
    enum qemu_accel accel;
    uint64_t root_revision; /* the template's root revision it booted (0: not known) */
    pid_t pid;
    unsigned long long starttime; /* tells a reused pid apart */
    uid_t uid;                    /* QEMU's and its dispenser-vmux's (qemu_confine.c) */
    int pidfd;
    sd_event_source *exit_src;
    struct cgroup_qube *cg;
    enum backend_power power;
    struct qmp qmp;
    sd_event_source *qmp_src; /* drops QMP events between commands */
    int control_fd;
    sd_event_source *control_src;
    unsigned shutdown_timeout;
    unsigned cpu_weight;
    /* the agent: dispenser-vmux (a child of ours, or of the daemon before a restart) in
     * the VM's cgroup, and the link to the agent through it */
    pid_t vmux_pid;
    unsigned long long vmux_starttime;
    int vmux_pidfd;
    sd_event_source *vmux_src;
    struct agent_link link;
    /* start: QEMU's sockets (up_timer), then the agent's readiness (link_timer while
     * dispenser-vmux binds agent.sock); ready_timer bounds it all by qrexec_timeout */
    double launched_ms, up_deadline_ms, ready_deadline_ms;
    int64_t start_priority;
    sd_event_source *up_timer, *ready_timer, *link_timer;
    char *qemu_log, *console_log; /* and where this start's lines begin in them */
    off_t qemu_log_start, console_log_start;
    backend_done_fn start_done;
    void *start_userdata;
    /* the start waits for its root image (qemu_build.c): the builder, and the qube's
     * description kept for the launch after it */
    struct qemu_build *build;
    struct backend_qube *pending;
    /* memory (qemu_balloon.c): what its balloon does; a shrink asked before the pause (its
     * target, 0 if none), then the poll that stops the VM once the balloon settled */
    enum qemu_balloon_mode balloon;
    uint64_t shrink_target, shrink_memory, shrink_last_actual;
    double shrink_started_ms, shrink_progress_ms;
    sd_event_source *shrink_timer, *give_back_src;
    /* shutdown */
    sd_event_source *stop_timer;
    struct backend_waiter *stop_waiters;
    /* restore mode (qemu_golden.c): the golden this run is (golden_vm) or is started from
     * (a clone, until it is ready); its wait for the saved state to load */
    struct qemu_golden *golden;
    bool golden_vm;
    sd_event_source *restore_timer;
    double restore_deadline_ms;
    struct qemu_net *net; /* NULL: no netvm (qemu_net.c) */
    /* hibernation (qemu_hibernate.c): started to be hibernatable (its private image a
     * copy of its own in STATE/qemu/hibernate/<uuid>/); being saved (hibernate_done);
     * saved, no QEMU (hibernated); started from its image (wake_fd until it is loaded,
     * woken until it is ready) */
    bool hibernatable, hibernated, woken, keep_hibernation;
    backend_done_fn hibernate_done;
    void *hibernate_userdata;
    sd_event_source *hibernate_timer;
    int hibernate_fd, wake_fd;
    double hibernate_deadline_ms;
};

/* A VM's link to its netvm: the tap, until QEMU holds it, and what its guest is told;
 * the VM's own network namespace (QEMU's, where the tap was made) and the netvm's the tap
 * is in now (-1: none, the tap is in the VM's own), held while the tap is there so that
 * the netvm's halt cannot take the device with its namespace (qemu_net_attach moves it
 * back first). */
struct qemu_net {
    int tap_fd, vm_netns, netvm_netns;
    char ifname[16], ip[16], gateway[16], mac[18], dns[64];
};
int qemu_net_prepare(struct qemu_run *run, const struct backend_net *net, struct backend_why *why);
void qemu_net_spawned(struct qemu_run *run);
void qemu_net_free(struct qemu_run *run);
int qemu_net_attach(struct backend *b, const char *name, const struct backend_net *net,
                    struct backend_why *why);

struct qemu_backend {
    struct backend base;
    char *state_dir, *runtime_dir, *agent_path;
    char *binary;          /* qemu-system-x86_64 */
    char *vmux;            /* dispenser-vmux */
    char *kernel, *initrd; /* the default guest: GUEST_DIR/{vmlinux,initramfs.cpio} */
    char *kernels_dir;     /* other guests, by name: KERNELS_DIR/NAME/{vmlinux,initramfs.cpio} */
    enum qemu_accel accel;
    char accel_why[128]; /* for the log: why this accelerator */
    unsigned tsc_khz;    /* the host's TSC, for the guest's command line (see qemu_argv) */
    uid_t uid_base;      /* the VMs' uids: one per running VM from here (qemu.uid-base) */
    struct cgroup_system *cgroups;
    struct qemu_run *runs;
    struct qemu_build *builds;   /* root images being built (qemu_build.c) */
    struct agent_hub agents;     /* the service calls in flight */
    struct qemu_golden *goldens; /* restore mode: one per disposable template in use */
    /* a wake under way: the image the next start of that qube loads (qemu_hibernate.c) */
    char *waking;
    int waking_fd;
};

const char *qemu_accel_name(enum qemu_accel a);
struct qemu_run *qemu_find(struct qemu_backend *qb, const char *name);
void qemu_rundir(const struct qemu_backend *qb, const char *name, char *buf, size_t size);
/* STATE/log/qemu/NAME.KIND.log (its directory made): KIND console or qemu. Apart from the
 * container engine's guest-NAME.log, whose sweep would take them for its own leftovers. */
void qemu_log_path(const struct qemu_backend *qb, const char *name, const char *kind, char *buf,
                   size_t size);
void qemu_run_free(struct qemu_run *run);
/* Tells the start's caller, once. */
void qemu_finish_start(struct qemu_run *run, int r, const char *reason);
void qemu_kill_and_wait(struct qemu_run *run);
/* The VM is gone (or never came up): close everything, remove its runtime directory and
 * cgroup, tell the daemon if `report`. Frees run. */
void qemu_teardown(struct qemu_run *run, bool report, int status);
int qemu_watch(struct qemu_run *run);

/* start (qemu_start.c) */
int qemu_start(struct backend *b, const struct backend_qube *q, backend_done_fn done,
               void *userdata, struct backend_why *why);
/* Why a start failed, from QEMU's log or else the guest's console, since the start. */
void qemu_start_failure(const struct qemu_run *run, char *buf, size_t size);
/* A preload's start steps aside for other work (idle) or no longer (normal). */
void qemu_start_priority(struct qemu_run *run, int64_t priority);
/* A registered run in its own cgroup, not launched yet (NULL with why set). */
struct qemu_run *qemu_run_create(struct qemu_backend *qb, const struct backend_qube *q,
                                 struct backend_why *why);
/* QEMU launched for the run as l says (rundir and console log filled in here), watched,
 * its start bounded by qrexec_timeout. */
struct qemu_launch;
int qemu_run_launch(struct qemu_run *run, const struct qemu_launch *l, unsigned qrexec_timeout,
                    struct backend_why *why);
/* QEMU is connected and the guest may run: `cont`, dispenser-vmux, the agent's readiness. */
int qemu_continue_start(struct qemu_run *run, struct backend_why *err);
/* The guest runs and the agent said it is ready: the start is over. */
void qemu_got_ready(struct qemu_run *run);
/* The caller hears of the failure once nothing of the VM is left. */
void qemu_abort_start(struct qemu_run *run, const char *reason);
/* The start that waited for its root image goes on (its builder is done). */
void qemu_launch_pending(struct qemu_run *run);
/* fork+exec argv in the VM's cgroup, confined by jail (qemu_confine.c), its output to
 * log_fd: a pidfd (and *pid), or -1 */
struct qemu_jail;
int qemu_spawn(struct qemu_run *run, char **argv, int log_fd, const struct qemu_jail *jail,
               pid_t *pid);
/* STATE/log/qemu/NAME.KIND.log opened for appending, rotated once past 1 MiB; its path and
 * current end in *path and *start. */
int qemu_open_log(struct qemu_backend *qb, const char *name, const char *kind, char **path,
                  off_t *start);

/* the agent (qemu_link.c) */
void qemu_link_init(struct qemu_run *run);
/* Starts dispenser-vmux for the VM (QEMU runs: its serial.sock exists). */
int qemu_vmux_spawn(struct qemu_run *run, struct backend_why *why);
/* After a restart: the recorded dispenser-vmux watched if it still runs, else a new one. */
int qemu_vmux_adopt(struct qemu_run *run, struct backend_why *why);
/* The VM is gone: its dispenser-vmux too (killed if need be, reaped if ours). */
void qemu_vmux_end(struct qemu_run *run);
/* The start's last step: the agent's WAIT_READY through dispenser-vmux. */
void qemu_link_wait_ready(struct qemu_run *run);
int qemu_exec(struct backend *b, const char *name, const struct backend_service_call *call,
              backend_call_done_fn done, void *userdata, struct backend_why *why);
void qemu_upcall_reply(struct backend *b, struct backend_upcall *call, enum backend_call_end how,
                       int status, const char *reason);

/* The command line (qemu_argv.c); NULL-terminated, free with qemu_argv_free. */
struct qemu_launch {
    const char *rundir, *console_log;
    const char *kernel, *initrd, *kernelopts, *init;
    const char *root_image;    /* read-only */
    const char *private_image; /* NULL: none (a tmpfs /rw) */
    /* > 0: the image or log is this descriptor QEMU inherits (/dev/fdset/N), not its path;
     * private_ro_fd > 0: a read-only one of the private image in the same set */
    int root_fd, private_fd, private_ro_fd, console_fd;
    int tap_fd; /* > 0: a virtio-net device on this tap (and net) */
    const struct qemu_net *net;
    bool private_throwaway; /* writes go to a temporary overlay QEMU discards */
    uint64_t memory_mib;
    unsigned vcpus;
    bool balloon; /* virtio-balloon with free page reporting (qemu-balloon not 0) */
    /* restore mode (qemu_golden.c): > 0, the guest's RAM is this memfd (the daemon's
     * descriptor until spawn, then QEMU's, mapped as /proc/self/fd/N), shared (the golden
     * VM, whose RAM is saved there) or private (a clone: copy-on-write of the sealed
     * memfd); a clone waits for the golden's device state (-incoming defer), no boot */
    int ram_fd;
    bool ram_shared, incoming;
    /* a GUI qube: the port dispenser.gui, whose host end RUNDIR/gui.sock is the window
     * channel (qemu_gui.c) */
    bool gui;
};
char **qemu_argv(const struct qemu_backend *qb, const char *name, const struct qemu_launch *l);
void qemu_argv_free(char **argv);

/* GUI (qemu_gui.c) */
int qemu_gui_socket(struct backend *b, const char *name, char *path, size_t size);

/* volumes (qemu_volumes.c) */
int qemu_remove_volumes(struct backend *b, const struct backend_qube *q, struct backend_why *why);
int qemu_volume_info(struct backend *b, const struct backend_qube *q, const char *volume,
                     struct backend_volume_info *out, struct backend_why *why);
int qemu_import_begin(struct backend *b, const struct backend_qube *q, const char *volume,
                      char *path, size_t size, struct backend_why *why);
int qemu_import_end(struct backend *b, const struct backend_qube *q, const char *volume,
                    bool commit, struct backend_why *why);

/* state file and adoption (qemu_state.c) */
int qemu_state_save(const struct qemu_run *run);
int qemu_adopt(struct backend *b, const struct backend_qube *q);
void qemu_cleanup(struct backend *b, const char *const *keep);
/* QMP and the control port of a VM already running (start, adoption) */
int qemu_connect(struct qemu_run *run, struct backend_why *why);

/* root images built off the daemon's loop (qemu_build.c) */
struct volume_stack;
/* The builder of that revision's image: a new one, or the one already at work. */
struct qemu_build *qemu_build_root(struct qemu_backend *qb, const char *uuid,
                                   const struct volume_stack *stack, struct backend_why *why);
void qemu_builds_forget(struct qemu_backend *qb);

/* confinement (qemu_confine.c) */
#define QEMU_JAIL_FILES 4
#define QEMU_JAIL_FDS 7
struct qemu_jail {
    uid_t uid;                          /* and gid: the VM's own */
    const char *root;                   /* RUNDIR/root: the empty mount point of the jail's root */
    const char *rundir;                 /* bound read-write: the sockets */
    const char *scratch;                /* bound read-write: QEMU's temporary files; NULL: none */
    const char *files[QEMU_JAIL_FILES]; /* bound read-only at their paths (NULL ends) */
    bool kvm;                           /* /dev/kvm too */
    int ns_pidfd;           /* > 0: a process whose network, IPC and UTS namespaces to join */
    int netns_fd;           /* else > 0: the network namespace to join (the VM's, its tap's) */
    int fds[QEMU_JAIL_FDS]; /* the program gets them as 3, 4, ... */
    size_t n_fds;
    char *const *env; /* NULL: the daemon's */
};
/* In the child before exec: 0, or -errno (said on stderr). ns_fd: the child's copy of
 * j->ns_pidfd, or -1. */
int qemu_confine(const struct qemu_jail *j, int ns_fd);
/* A uid for a new VM, (uid_t)-1 if the range is full. */
uid_t qemu_pick_uid(const struct qemu_backend *qb);
/* The runtime directory of run (made anew, QEMU's group may add to it) in rundir, and its
 * scratch directory. 0 or -errno. */
int qemu_jail_prepare(struct qemu_run *run, char *rundir, size_t size);
void qemu_scratch_path(const struct qemu_backend *qb, const char *name, char *buf, size_t size);
void qemu_scratch_remove(const struct qemu_backend *qb, const char *name);

/* restore mode (qemu_golden.c): a disposable template's preloads restored copy-on-write
 * from one saved, booted VM per template revision (feature qemu-preload-mode=restore) */
bool qemu_golden_wanted(const struct backend_qube *q);
/* Launches the registered run from its template's golden: at once if it is saved, else
 * once it is (booting the golden VM if nobody does yet); base: what a boot would run. */
int qemu_golden_start(struct qemu_run *run, const struct backend_qube *q,
                      const struct qemu_launch *base, struct backend_why *why);
/* A clone's QEMU is connected: its saved state is loaded, then qemu_continue_start. */
void qemu_golden_restore(struct qemu_run *run);
/* A clone's agent is ready: it gets its own identity (then qemu_got_ready). */
void qemu_golden_refresh(struct qemu_run *run);
/* The run ends: it no longer waits for nor uses its golden. */
void qemu_golden_detach(struct qemu_run *run);
/* The golden files of a removed disposable template; all of them at start-up (their RAM
 * died with the previous daemon). */
void qemu_golden_remove(struct qemu_backend *qb, const char *template_uuid);
void qemu_golden_cleanup(struct qemu_backend *qb, const char *const *keep);
void qemu_golden_free_all(struct qemu_backend *qb);

/* hibernation (qemu_hibernate.c): a preload's state saved to a file, its QEMU gone, and
 * started again from it (-incoming) on demand */
int qemu_hibernate(struct backend *b, const char *name, backend_done_fn done, void *userdata,
                   struct backend_why *why);
int qemu_wake(struct backend *b, const struct backend_qube *q, backend_done_fn done, void *userdata,
              struct backend_why *why);
/* STATE/qemu/hibernate/<uuid>/FILE */
void qemu_hibernate_path(const struct qemu_backend *qb, const char *uuid, const char *file,
                         char *buf, size_t size);
/* A hibernatable disposable's private image: a copy of its template's, its own (the
 * page cache a saved state holds must agree with its disk), in *image ("" : none). */
int qemu_hibernate_private(struct qemu_run *run, const struct backend_qube *q, char *image,
                           size_t size, struct backend_why *why);
/* A new run of the qube being woken takes its image (run_new). */
void qemu_hibernate_claim(struct qemu_run *run);
/* QEMU of a woken run is connected: its state is loaded, then qemu_continue_start. */
void qemu_hibernate_restore(struct qemu_run *run);
/* The run ends (teardown): a save under way fails; its files go unless kept. */
void qemu_hibernate_end(struct qemu_run *run);
/* After a restart: a hibernated qube (its image, no QEMU) taken over; -1 if none. */
int qemu_hibernate_adopt(struct qemu_backend *qb, const struct backend_qube *q);
/* shared with restore mode (qemu_golden.c) */
int qemu_copy_sparse(const char *from, const char *to);
int qemu_quiesce_agent_port(struct qemu_run *vm, struct backend_why *why);

/* accelerator choice (qemu_accel.c) */
void qemu_accel_detect(struct qemu_backend *qb, const char *forced);
