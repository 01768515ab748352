/* Shared by the agent link's files. */
#pragma once
#include "agent_link.h"

/* A connected, non-blocking descriptor with a bodyless request sent, or -errno. */
int agent_link_request_async(const struct agent_link *link, int type);
void agent_calls_free(struct agent_hub *hub);

/* ---- calls out of a qube whose link carries no descriptors (agent_link_upcopy.c) ---- */

/* A call on an uplink: the qube it came from, its id there and that uplink's generation. */
struct agent_upcall_id {
    char qube[32];
    uint32_t id;
    unsigned generation;
};

/* agent_link_uplink.c: the result of a call that never reached the router, if its uplink
 * is still the same. */
void agent_uplink_answer(struct agent_link *link, const struct agent_upcall_id *who, uint32_t kind,
                         const char *msg);
/* Hands the call to the daemon's router with these stdio (taken; closed on failure);
 * `copy` is told the reply. false if the body is malformed (nothing delivered). */
bool agent_uplink_deliver(struct agent_link *link, const struct agent_upcall_id *who,
                          const char *body, uint32_t body_len, const int stdio[3],
                          struct upcopy *copy);
/* A copy relay goes: its upcall, if any, no longer points at it. */
void agent_uplink_forget_copy(struct agent_hub *hub, struct upcopy *copy);

/* Opens the call's data connection; the call goes to the router once the agent relays.
 * 0, or -errno with nothing under way (the caller answers the call). */
int upcopy_begin(struct agent_link *link, const struct agent_upcall_id *who, const char *body,
                 uint32_t body_len);
/* The call was answered: the service's last output, its end and the agent_reply go down,
 * then the relay is freed. */
void upcopy_finish(struct upcopy *copy);
/* The link's uplink closes: relays not yet delivered go (the agent fails their calls). */
void upcopy_link_closed(struct agent_link *link);
void upcopy_free_all(struct agent_hub *hub);
