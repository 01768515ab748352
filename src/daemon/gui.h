/* The host side of the GUI (docs/gui.md): an `xpra attach` per running GUI qube on the
 * display dispenserd was given (--gui-display, else $DISPLAY), fed by the model's events.
 * Without a display, GUI qubes still run their GUI agent and nothing is attached. */
#pragma once
#include <stddef.h>
#include <systemd/sd-event.h>

#include "app.h"
#include "dispatcher.h"
#include "wire.h"

struct gui;

struct gui *gui_new(sd_event *loop, struct app *app, struct dispatcher *disp, const char *display,
                    const char *runtime_dir);
/* Matches app_emit_fn's arguments: every model event passes here. */
void gui_on_event(struct gui *g, const char *subject, const char *event, const struct wire_kv *kv,
                  size_t n_kv);
void gui_free(struct gui *g);
