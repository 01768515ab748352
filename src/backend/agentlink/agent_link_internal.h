/* Shared by the agent link's files. */
#pragma once
#include "agent_link.h"

/* A connected, non-blocking descriptor with a bodyless request sent, or -errno. */
int agent_link_request_async(const struct agent_link *link, int type);
void agent_calls_free(struct agent_hub *hub);
