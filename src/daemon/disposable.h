/* Unnamed disposables: created on demand from a disposable template, removed when they
 * shut down (auto_cleanup). Shared by admin.vm.CreateDisposable and the qrexec router. */
#pragma once
#include "app.h"

/* Is q a disposable template (template_for_dispvms=True)? */
bool disposable_template_ok(const struct app *app, const struct qube *q);
/* The disposable template a request for "@dispvm" from `caller` means: its
 * default_dispvm (dom0's is the global one). NULL with err when there is none. */
struct qube *disposable_default_template(const struct app *app, const struct qube *caller,
                                         struct qerr *err);
/* Creates disp<N> from `tpl` for `caller` (tags created-by-<caller> and
 * disp-created-by-<caller>, auto_cleanup). Not started. caller NULL: no tags (a preload). */
struct qube *disposable_create(struct app *app, struct qube *tpl, const char *caller,
                               struct qerr *err);
