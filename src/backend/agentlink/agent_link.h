/* The agent link: the host's end of the agent protocol (src/shared/agent_proto.h) for one
 * qube, engine-neutral, driven by the daemon's sd-event loop. Every engine embeds one per
 * running qube and chooses its transport (`mode`); nothing here blocks.
 *
 * The agent (or a multiplexer standing in for it, dispenser-vmux for a VM) accepts on a
 * Unix socket, `socket_path`, one connection per request. What the link does there:
 *   - agent_link_wait_ready(): AGENT_REQ_WAIT_READY, with a timeout: the start's end;
 *   - agent_link_shutdown(): AGENT_REQ_SHUTDOWN, fire and forget (the engine watches the
 *     qube's end itself);
 *   - agent_link_exec(): AGENT_REQ_EXEC for a service call of the router, its agent_reply
 *     mapped to backend_call_end (a service not found is exit status 127, as in Qubes);
 *   - agent_link_uplink_open(): AGENT_REQ_UPLINK, the connection over which the calls made
 *     inside the qube come up as backend_upcall (to the engine's events.upcall), answered
 *     by agent_link_upcall_reply().
 *
 * Transports (the link's `mode`):
 *   AGENT_LINK_FDPASS  the caller's stdio go to the agent as SCM_RIGHTS (shared/fdpass.h):
 *                      the daemon never sees a byte (container engine);
 *   AGENT_LINK_COPY    the connection carries bytes only (a VM's virtio-serial through
 *                      dispenser-vmux): the link relays the caller's stdio as agent_frame
 *                      streams on the daemon's loop, with flow control both ways. Calls
 *                      out come up without descriptors; each gets a data connection of
 *                      its own whose far end the router sees as pipes
 *                      (agent_link_upcopy.c).
 *
 * Ownership: service calls in flight belong to the engine's `struct agent_hub`, not to a
 * link: a call ends with its connection (the qube's going away fails it), whatever the
 * engine does with its record of the qube meanwhile. Upcalls are answered through the
 * hub's engine, which finds the link by the upcall's source (the qube's name): a reply
 * for a qube gone, or for an uplink since replaced, is dropped. */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "backend.h"

enum agent_link_mode {
    AGENT_LINK_FDPASS, /* stdio as descriptors (containers) */
    AGENT_LINK_COPY,   /* stdio relayed as framed bytes (VMs) */
};

struct agent_call;
struct agent_ready;
struct agent_uplink;
struct upcopy;

/* One per engine: what its links share. */
struct agent_hub {
    struct backend *engine;   /* its loop; upcalls go to its events, `from` is it */
    struct agent_call *calls; /* service calls in flight */
    struct upcall *upcalls;   /* calls from inside qubes not yet answered (a cancel finds
                               * them by qube, id and uplink generation) */
    unsigned uplink_generation;
    struct upcopy *copies; /* data connections of calls out of COPY links */
};

void agent_hub_init(struct agent_hub *hub, struct backend *engine);
/* At the engine's end: the calls in flight are dropped, their callers not told. */
void agent_hub_free(struct agent_hub *hub);

struct agent_link {
    struct agent_hub *hub;
    enum agent_link_mode mode;
    char *qube;                  /* its name: messages, and the source of its upcalls */
    char *socket_path;           /* where the agent accepts, one request per connection */
    struct agent_ready *ready;   /* a readiness wait under way */
    struct agent_uplink *uplink; /* calls made inside come up here */
};

void agent_link_init(struct agent_link *link, struct agent_hub *hub, enum agent_link_mode mode,
                     const char *qube, const char *socket_path);
/* Cancels a readiness wait (its caller is not told) and closes the uplink. */
void agent_link_free(struct agent_link *link);

/* r = 0: ready. r < 0: -ETIMEDOUT (no answer within the timeout) or another -errno (the
 * agent refused or dropped the request), with a reason for the start's error message.
 * Called at most once, after which the wait is over; the callback may free the link. */
typedef void (*agent_ready_fn)(void *userdata, int r, const char *reason);
/* Sends the request (the agent's socket may not accept yet: a socket bound by the engine
 * queues the connection) and waits on the loop at `priority` (SD_EVENT_PRIORITY_IDLE for a
 * start in the background). 0, or -errno with nothing under way. */
int agent_link_wait_ready(struct agent_link *link, unsigned timeout_s, int64_t priority,
                          agent_ready_fn done, void *userdata);
/* A restored clone's AGENT_REQ_REFRESH (agent_proto.h says what the body carries), waited
 * for like readiness: done(0) once the agent has taken it. */
struct agent_request_body;
int agent_link_refresh(struct agent_link *link, const struct agent_request_body *body,
                       unsigned timeout_s, int64_t priority, agent_ready_fn done, void *userdata);
bool agent_link_waiting_ready(const struct agent_link *link);
/* Someone waits for the start now: the wait's event sources at `priority`. */
void agent_link_ready_set_priority(struct agent_link *link, int64_t priority);
/* Ends a readiness wait without calling back. */
void agent_link_ready_cancel(struct agent_link *link);

/* Asks for an orderly power-off and does not wait for an answer: 0 once the request is
 * sent, -errno if the agent cannot be reached (the engine then stops the qube its own
 * way). */
int agent_link_shutdown(struct agent_link *link);

/* Runs a service call in the qube: done is called once, when it ends (exit status, signal,
 * or failure with a reason for the caller). The call's stdio are duplicated (the caller
 * closes its own). -1 with err set if it cannot even start. */
int agent_link_exec(struct agent_link *link, const struct backend_service_call *call,
                    backend_call_done_fn done, void *userdata, struct backend_why *why);

/* Opens (or replaces) the uplink: 0 or -errno (errno set too). */
int agent_link_uplink_open(struct agent_link *link);
void agent_link_uplink_close(struct agent_link *link);
/* Answers an upcall of one of the hub's links and frees it; `link` is the one whose qube
 * is the upcall's source, NULL if that qube is gone. status < 0: refused. */
void agent_link_upcall_reply(struct agent_link *link, struct backend_upcall *call,
                             enum backend_call_end how, int status, const char *reason);
