/* The daemon's side of the isolation engines: turns qubes of the model into the plain
 * descriptions engines take, picks the engine by virt_mode, keeps power states and
 * events in step with what the engines report. Knows nothing of mounts or cgroups. */
#pragma once
#include <stdbool.h>

#include "app.h"
#include "backend.h"

struct engine;

/* Takes over the engines (one per virt_mode, by their ops' name; an engine that cannot
 * run here is an unavailable one, see backend.h) and frees them with engine_free. */
struct engine *engine_new(struct app *app, struct backend *const *backends, size_t n);
void engine_free(struct engine *e);

/* A qube's engine options: its `<virt_mode>-KEY` features, the nearest along the template
 * chain winning, as KEY=value pointing into the model (used at once, never kept). */
#define ENGINE_OPTIONS_MAX 32
size_t engine_qube_options(const struct app *app, const struct qube *q, struct backend_option *out,
                           size_t max);
/* Is `feature` named like an option of one of the engines (`<virt_mode>-KEY`)? */
bool engine_is_option_feature(const struct engine *e, const char *feature);

/* After a restart: adopt the qubes that still run, remove what is left of the others. */
void engine_recover(struct engine *e);

typedef void (*engine_done_fn)(void *userdata, int r, const struct qerr *err);

int engine_start(struct engine *e, struct qube *q, engine_done_fn done, void *userdata,
                 struct qerr *err);
/* The same for a qube nobody waits for (a preload): never holds up other calls. */
int engine_start_background(struct engine *e, struct qube *q, engine_done_fn done, void *userdata,
                            struct qerr *err);
int engine_shutdown(struct engine *e, struct qube *q, bool force, engine_done_fn done,
                    void *userdata, struct qerr *err);
int engine_kill(struct engine *e, struct qube *q, struct qerr *err);
/* Signals the kill and returns; the qube halts (and an unnamed disposable goes) soon. */
int engine_kill_nowait(struct engine *e, struct qube *q, struct qerr *err);
int engine_pause(struct engine *e, struct qube *q, struct qerr *err);
int engine_reclaim(struct engine *e, const struct qube *q);
/* A preload handed out: it runs with its full CPU share from now on. */
int engine_foreground(struct engine *e, const struct qube *q);
int engine_unpause(struct engine *e, struct qube *q, struct qerr *err);
int engine_stats(struct engine *e, const struct qube *q, struct backend_stats *out);
/* The tightest of the engines' memory headrooms (MiB), -1 if none is limited. */
int64_t engine_memory_headroom_mib(struct engine *e);
/* Removes the qube from the model, then its volumes. */
int engine_remove(struct engine *e, struct qube *q, struct qerr *err);
int engine_volume_info(struct engine *e, const struct qube *q, const char *volume,
                       struct backend_volume_info *out, struct qerr *err);
int engine_import_begin(struct engine *e, const struct qube *q, const char *volume, char *path,
                        size_t size, struct qerr *err);
int engine_import_end(struct engine *e, const struct qube *q, const char *volume, bool commit,
                      struct qerr *err);

/* qrexec: a service call into a running qube, and calls coming up from qubes. */
int engine_exec(struct engine *e, const struct qube *q, const struct backend_service_call *call,
                backend_call_done_fn done, void *userdata, struct qerr *err);
/* Told whenever a qube halted, before an unnamed disposable is removed (the preload
 * engine checks for new template revisions, and takes a stopped preload off its list). */
typedef void (*engine_halted_fn)(void *userdata, const char *name);
void engine_set_halted_hook(struct engine *e, engine_halted_fn fn, void *userdata);
typedef void (*engine_upcall_fn)(void *userdata, struct backend_upcall *call);
void engine_set_upcall_handler(struct engine *e, engine_upcall_fn fn, void *userdata);
/* status < 0: refused (reason says why); else how the call ended. */
void engine_upcall_reply(struct engine *e, struct backend_upcall *call, enum backend_call_end how,
                         int status, const char *reason);
