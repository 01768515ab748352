/* internal.* methods for the host's own tools (root only), as Qubes' qubesd has them:
 * suspend and resume. Before a suspend every preload is discarded (a paused environment
 * does not survive it well); after resume the preload lists are refilled.
 * dispenser.* methods are ours, named apart from Qubes' namespaces: the preload pool's
 * status (read-only, for dispenser-preload status). */
#include <string.h>

#include "api.h"
#include "preload.h"

static int require_root(struct api_call *c) {
    if (c->peer_uid != 0)
        return qerr_set(c->err, EXC_PERMISSION, "internal.* calls are for root only");
    return 0;
}

static int suspend_pre(struct api_call *c) {
    if (require_root(c) < 0)
        return -1;
    if (c->preload)
        preload_discard_all(c->preload);
    return 0;
}

static int suspend_post(struct api_call *c) {
    if (require_root(c) < 0)
        return -1;
    if (c->preload)
        preload_refill_all(c->preload, "system resumed");
    return 0;
}

/* dest dom0: every disposable template; a qube: that one (it must be one). */
static int preload_status_call(struct api_call *c) {
    if (!c->preload)
        return 0;
    return preload_status(c->preload, c->dest->klass == QUBE_ADMINVM ? NULL : c->dest, c->out,
                          c->err);
}

#define GLOBAL (API_NO_ARG | API_NO_PAYLOAD | API_DEST_ADMINVM)
const struct api_method API_INTERNAL_METHODS[] = {
    {"internal.SuspendPre", suspend_pre, GLOBAL},
    {"internal.SuspendPost", suspend_post, GLOBAL},
    {"dispenser.preload.Status", preload_status_call, API_NO_ARG | API_NO_PAYLOAD},
    {NULL, NULL, 0},
};
