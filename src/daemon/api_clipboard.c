/* dispenser.clipboard.*: the global clipboard (clipboard.h), for the host's
 * qvm-clipboard (root only: a qube never reaches these, as in Qubes, where only the GUI
 * daemon in dom0 touches the global clipboard). What goes into and out of a qube's own
 * clipboard is the tool's part; the daemon keeps the copy, applies the size limit and
 * the policy, and empties it after a paste.
 *
 *   dispenser.clipboard.Copy  dest QUBE, payload: QUBE's clipboard -> the global one
 *   dispenser.clipboard.Paste dest QUBE: the content (policy permitting), then empty
 *   dispenser.clipboard.Get   dest dom0: "SOURCE SIZE" or nothing, never the content */
#include "api.h"
#include "clipboard.h"
#include "dispatcher.h"

static int check_call(struct api_call *c) {
    if (c->peer_uid != 0)
        return qerr_set(c->err, EXC_PERMISSION, "dispenser.clipboard.* calls are for root only");
    if (!c->clipboard)
        return qerr_set(c->err, EXC_NOT_IMPLEMENTED, "this daemon keeps no global clipboard");
    return 0;
}

/* A qube has a clipboard of its own only with a GUI: copying from or pasting into one
 * without is a mistake the user hears about. */
static int check_gui_qube(struct api_call *c) {
    if (check_call(c) < 0)
        return -1;
    if (!dispatcher_qube_gui(c->app, c->dest))
        return qerr_set(c->err, EXC_VALUE, "%s has no GUI (feature gui), so no clipboard",
                        c->dest->name);
    if (c->dest->power != POWER_RUNNING)
        return qerr_set(c->err, EXC_VM_NOT_RUNNING, "%s is not running", c->dest->name);
    return 0;
}

static int copy_call(struct api_call *c) {
    if (check_gui_qube(c) < 0)
        return -1;
    return clipboard_copy(c->clipboard, c->app, c->dest, c->req->payload, c->req->payload_len,
                          c->err);
}

static int paste_call(struct api_call *c) {
    if (check_gui_qube(c) < 0)
        return -1;
    return clipboard_paste(c->clipboard, c->dest, c->out, c->err);
}

static int get_call(struct api_call *c) {
    if (check_call(c) < 0)
        return -1;
    clipboard_describe(c->clipboard, c->out);
    return 0;
}

const struct api_method API_CLIPBOARD_METHODS[] = {
    {"dispenser.clipboard.Copy", copy_call, API_NO_ARG | API_DEST_NOT_ADMINVM},
    {"dispenser.clipboard.Paste", paste_call, API_NO_ARG | API_NO_PAYLOAD | API_DEST_NOT_ADMINVM},
    {"dispenser.clipboard.Get", get_call, API_NO_ARG | API_NO_PAYLOAD | API_DEST_ADMINVM},
    {NULL, NULL, 0},
};
