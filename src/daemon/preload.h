/* Preloaded disposables (spec/preload.md): per disposable template, a FIFO of disposables
 * started in the background, waited until ready, paused, and handed out on request in
 * about the time of a thaw. The list lives in the template's `preload-dispvm` feature, so
 * it survives restarts with the qubes themselves. */
#pragma once
#include <stdbool.h>

#include "app.h"
#include "dispatcher.h"
#include "memory.h"

struct preload;
struct strbuf;

struct preload *preload_new(sd_event *loop, struct app *app, struct dispatcher *dispatcher,
                            const struct memory_source *mem);
void preload_free(struct preload *p);

/* Admin API hooks. validate runs before a feature is set (QubesValueError etc.);
 * changed runs after a feature or property changed, and fires refills or discards. */
int preload_validate_feature(struct preload *p, const struct qube *q, const char *name,
                             const char *value, struct qerr *err);
void preload_feature_changed(struct preload *p, struct qube *q, const char *name);
void preload_property_changed(struct preload *p, struct qube *q, const char *prop);
/* Refuses what must wait for non-preload disposables (template, template_for_dispvms). */
int preload_validate_property(struct preload *p, const struct qube *q, const char *prop,
                              struct qerr *err);
/* A qube halted (engine); a template or disposable template may have new revisions. */
void preload_qube_halted(struct preload *p, const char *name);

/* A disposable of tpl for caller: a ready preload (thawed, tagged, out of the list), or
 * through `got` later if the oldest one is still starting. Returns 1 if `got` was called
 * or will be, 0 if there is none (the caller makes a fresh disposable; a refill follows). */
typedef void (*preload_got_fn)(void *userdata, struct qube *disp, const struct qerr *err);
int preload_request(struct preload *p, struct qube *tpl, const char *caller, preload_got_fn got,
                    void *userdata);
/* admin.vm.CreateDisposable+preload, the boot unit, host resume. */
void preload_refill(struct preload *p, struct qube *tpl, const char *reason);
void preload_refill_all(struct preload *p, const char *reason);
/* Before host suspend: paused environments do not survive it. */
void preload_discard_all(struct preload *p);
/* After a restart: drop what is gone or half-done, keep completed paused preloads. */
void preload_recover(struct preload *p);
/* qvm-unpause of a preload by hand: it counts as used. */
void preload_unpaused_by_hand(struct preload *p, struct qube *q);
bool preload_is_preload(const struct app *app, const struct qube *q);
/* Hibernated: its engine saved it to disk (no process, ~no memory: docs/preload.md). */
bool preload_is_hibernated(const struct app *app, const struct qube *q);
/* A preload of a template with preload-dispvm-hibernated: started so that it can be. */
bool preload_may_hibernate(const struct app *app, const struct qube *q);
/* Around a call made in a handed-out preload: refills wait until it has been answered
 * (briefly: they are never held back for long). */
void preload_hold(struct preload *p);
void preload_release(struct preload *p);
/* dispenser.preload.Status: one line per disposable template (only: that one, which
 * must be one), "NAME max=N local=V global=V ready=N starting=N state=S refill_in=SECS
 * delay=SECS mem_free=MIB threshold=MIB each=MIB target=N auto=V rate=PER_MIN burst=N
 * refill_time=SECS hits=N requests=N pressure=low|high failure=TEXT" (TEXT to the line's
 * end; "-" for what is not set or not pending). States: off, full, pressure, filling,
 * delay, threshold, failed, idle (docs/preload.md). */
int preload_status(struct preload *p, const struct qube *only, struct strbuf *out,
                   struct qerr *err);
/* All preloads of a disposable template, discarded (it is being removed). */
void preload_discard_of(struct preload *p, struct qube *tpl);
