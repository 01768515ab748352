/* The daemon's side of the isolation engines: turns qubes of the model into the plain
 * descriptions engines take, picks the engine by virt_mode, keeps power states and
 * events in step with what the engines report. Knows nothing of mounts or cgroups. */
#pragma once
#include <stdbool.h>

#include "app.h"
#include "backend.h"

struct dispatcher;

/* Takes over the engines (one per virt_mode, by their ops' name; an engine that cannot
 * run here is an unavailable one, see backend.h) and frees them with dispatcher_free. */
struct dispatcher *dispatcher_new(struct app *app, struct backend *const *backends, size_t n);
void dispatcher_free(struct dispatcher *e);

/* A qube's engine options: its `<virt_mode>-KEY` features, the nearest along the template
 * chain winning, as KEY=value pointing into the model (used at once, never kept). */
#define DISPATCHER_OPTIONS_MAX 32
size_t dispatcher_qube_options(const struct app *app, const struct qube *q,
                               struct backend_option *out, size_t max);
/* A qube's Qubes services (backend_qube.services): its service.NAME features as NAME and
 * "1"/"0", in feature order, pointing into the model. */
#define DISPATCHER_SERVICES_MAX 128
size_t dispatcher_qube_services(const struct qube *q, struct backend_option *out, size_t max);
/* Is `feature` named like an option of one of the engines (`<virt_mode>-KEY`)? */
bool dispatcher_is_option_feature(const struct dispatcher *e, const char *feature);

/* After a restart: adopt the qubes that still run, remove what is left of the others. */
void dispatcher_recover(struct dispatcher *e);

typedef void (*dispatcher_done_fn)(void *userdata, int r, const struct qerr *err);

int dispatcher_start(struct dispatcher *e, struct qube *q, dispatcher_done_fn done, void *userdata,
                     struct qerr *err);
/* The same for a qube nobody waits for (a preload): never holds up other calls. */
int dispatcher_start_background(struct dispatcher *e, struct qube *q, dispatcher_done_fn done,
                                void *userdata, struct qerr *err);
int dispatcher_shutdown(struct dispatcher *e, struct qube *q, bool force, dispatcher_done_fn done,
                        void *userdata, struct qerr *err);
int dispatcher_kill(struct dispatcher *e, struct qube *q, struct qerr *err);
/* Signals the kill and returns; the qube halts (and an unnamed disposable goes) soon. */
int dispatcher_kill_nowait(struct dispatcher *e, struct qube *q, struct qerr *err);
int dispatcher_pause(struct dispatcher *e, struct qube *q, struct qerr *err);
int dispatcher_reclaim(struct dispatcher *e, const struct qube *q);
/* A preload handed out: it runs with its full CPU share from now on. */
int dispatcher_foreground(struct dispatcher *e, const struct qube *q);
int dispatcher_unpause(struct dispatcher *e, struct qube *q, struct qerr *err);
/* admin.vm.Suspend/Resume: reclaim then freeze, shown as "Suspended"; Resume thaws it
 * (or unpauses a paused qube, as qubesd does). */
int dispatcher_suspend(struct dispatcher *e, struct qube *q, struct qerr *err);
int dispatcher_resume(struct dispatcher *e, struct qube *q, struct qerr *err);
/* Hibernation (backend.h hibernate/wake): whether q's engine can; a paused preload saved
 * to its engine's file (done when saved; it stays paused to the model); woken from it
 * (done when it runs; on failure it is gone, as after an exit: q may be freed by then,
 * and by the time a failed call returns). */
bool dispatcher_can_hibernate(struct dispatcher *e, const struct qube *q);
int dispatcher_hibernate(struct dispatcher *e, struct qube *q, dispatcher_done_fn done,
                         void *userdata, struct qerr *err);
int dispatcher_wake(struct dispatcher *e, struct qube *q, dispatcher_done_fn done, void *userdata,
                    struct qerr *err);
int dispatcher_stats(struct dispatcher *e, const struct qube *q, struct backend_stats *out);
/* The tightest of the engines' memory headrooms (MiB), -1 if none is limited. */
int64_t dispatcher_memory_headroom_mib(struct dispatcher *e);
/* Removes the qube from the model, then its volumes. */
int dispatcher_remove(struct dispatcher *e, struct qube *q, struct qerr *err);
int dispatcher_volume_info(struct dispatcher *e, const struct qube *q, const char *volume,
                           struct backend_volume_info *out, struct qerr *err);
/* The revisions kept for revert (none where the engine keeps none). */
int dispatcher_volume_revisions(struct dispatcher *e, const struct qube *q, const char *volume,
                                struct backend_volume_revision *out, size_t max, size_t *n,
                                struct qerr *err);
/* Clone (from src's volume), revert, clear or configure a volume of q (backend.h);
 * QubesNotImplementedError where its engine cannot. */
int dispatcher_volume_change(struct dispatcher *e, const struct qube *q,
                             const struct backend_volume_change *change, const struct qube *src,
                             struct qerr *err);
int dispatcher_import_begin(struct dispatcher *e, const struct qube *q, const char *volume,
                            char *path, size_t size, struct qerr *err);
int dispatcher_import_end(struct dispatcher *e, const struct qube *q, const char *volume,
                          bool commit, struct qerr *err);

/* Networking (network.c): the model it works on, a running qube's network namespace
 * (O_CLOEXEC, the caller closes it), and a link made or removed while it runs. */
struct app *dispatcher_app(struct dispatcher *e);
int dispatcher_netns_open(struct dispatcher *e, const struct qube *q, int *fd, struct qerr *err);
int dispatcher_net_attach(struct dispatcher *e, const struct qube *q, const struct backend_net *net,
                          struct qerr *err);

/* Block devices given to running qubes (docs/devices.md): kept until detached or until
 * the qube halts; dom0 is the only backend. */
struct block_attachment {
    char frontend[32];               /* the qube */
    char port_id[32], device_id[64]; /* the host's device (block_host.h) */
    char frontend_dev[16];           /* its name in the qube: "xvdi" */
    bool read_only;
    unsigned major, minor;
};
/* -1 with err: QubesVMNotRunningError, QubesNotImplementedError (an engine without block
 * devices), QubesException (the engine's words). */
int dispatcher_block_attach(struct dispatcher *e, struct qube *q, const struct block_attachment *a,
                            struct qerr *err);
int dispatcher_block_detach(struct dispatcher *e, struct qube *q, const char *port_id,
                            struct qerr *err);
/* Can q's engine give it block devices? If not, false with err QubesNotImplementedError. */
bool dispatcher_can_take_blocks(struct dispatcher *e, const struct qube *q, struct qerr *err);
/* Every attachment now (valid until the next change), and their count. */
const struct block_attachment *dispatcher_block_attachments(const struct dispatcher *e, size_t *n);

/* qrexec: a service call into a running qube, and calls coming up from qubes. */
int dispatcher_exec(struct dispatcher *e, const struct qube *q,
                    const struct backend_service_call *call, backend_call_done_fn done,
                    void *userdata, struct qerr *err);
/* Told whenever a qube halted, before an unnamed disposable is removed (the preload
 * pool checks for new template revisions, and takes a stopped preload off its list). */
typedef void (*dispatcher_halted_fn)(void *userdata, const char *name);
void dispatcher_set_halted_hook(struct dispatcher *e, dispatcher_halted_fn fn, void *userdata);
typedef void (*dispatcher_upcall_fn)(void *userdata, struct backend_upcall *call);
/* fn gets the calls made inside qubes; cancel (may be NULL) hears that the caller of one
 * went away before its answer. */
void dispatcher_set_upcall_handler(struct dispatcher *e, dispatcher_upcall_fn fn,
                                   dispatcher_upcall_fn cancel, void *userdata);
/* status < 0: refused (reason says why); else how the call ended. */
void dispatcher_upcall_reply(struct dispatcher *e, struct backend_upcall *call,
                             enum backend_call_end how, int status, const char *reason);

/* The GUI (docs/gui.md): whether the qube gets a GUI agent (feature `gui`), and the host
 * end of a running GUI qube's window channel (-ENOENT none, -ENOTSUP engine without). */
bool dispatcher_qube_gui(const struct app *app, const struct qube *q);
int dispatcher_gui_socket(struct dispatcher *e, const struct qube *q, char *path, size_t size);
