/* internal.* methods for the host's own tools (root only), as Qubes' qubesd has them:
 * suspend and resume. Before a suspend every preload is discarded (a paused environment
 * does not survive it well); after resume the preload lists are refilled. */
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

#define GLOBAL (API_NO_ARG | API_NO_PAYLOAD | API_DEST_ADMINVM)
const struct api_method API_INTERNAL_METHODS[] = {
    {"internal.SuspendPre", suspend_pre, GLOBAL},
    {"internal.SuspendPost", suspend_post, GLOBAL},
    {NULL, NULL, 0},
};
