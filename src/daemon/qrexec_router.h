/* The qrexec router: every service call, from the host (the socket beside the Admin API
 * socket: dom0) or from a qube (its agent's uplink), is decided here and run in its target
 * as the user dom0 asked for, else the policy's user=, else the target's default_user.
 *
 *   dom0 calls bypass the policy, as in Qubes (qrexec-client in dom0 is trusted);
 *   calls from qubes are checked against the policy (default deny);
 *   "@dispvm[:T]" targets get a fresh disposable, started for the call and killed after
 *   it, with the caller preserved: the service sees the caller as its remote domain and
 *   the disposable carries created-by-<caller> tags;
 *   a halted target qube is started first (Qubes' autostart).
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

#include "app.h"
#include "dispatcher.h"

struct router;

struct router_config {
    const char *policy_dir;
    const char *socket_path; /* the host socket */
    const char *runtime_dir; /* RUNTIME/calls: the disposables calls are using */
    gid_t socket_gid;
    struct preload *preload; /* hands out preloaded disposables for @dispvm; may be NULL */
};

struct router *router_new(sd_event *loop, struct app *app, struct dispatcher *dispatcher,
                          const struct router_config *cfg, struct qerr *err);
void router_free(struct router *r);
/* Re-reads the policy; a broken one is reported and the one in force stays. */
int router_reload_policy(struct router *r);

/* How a call ended, for whoever made it: a qrexec_result kind and status, and a reason. */
typedef void (*router_reply_fn)(void *ctx, uint32_t kind, int32_t status, const char *msg);

struct router_request {
    const char *source;  /* who calls: "dom0" or a qube, from where the call came */
    const char *target;  /* as requested */
    const char *service; /* with "+argument" */
    const char *user, *command;
    bool pty; /* a terminal in the qube (QREXEC_F_PTY, host calls only) */
};

/* Takes the three stdio descriptors (closes them when done). */
void router_call(struct router *r, const struct router_request *req, int stdio[3],
                 router_reply_fn reply, void *ctx);
/* The caller of the call made with ctx went away before its reply: a disposable made for
 * the call is killed (the call then ends as any other, its reply going nowhere); a named
 * qube's service runs on, as in Qubes. No-op for a call that has ended. */
void router_abandon(struct router *r, void *ctx);
/* Whether the policy in force allows service from source to exactly target (a named
 * qube; a rule redirecting elsewhere counts as no), for actions that the host makes on
 * behalf of a qube without a call, such as a clipboard paste (qubes.ClipboardPaste). why
 * gets the deciding rule or the reason, for the log. */
bool router_policy_allows(struct router *r, const char *service, const char *source,
                          const char *target, char *why, size_t why_size);
