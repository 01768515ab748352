/* Firewall rules naming a host (dsthost=NAME) are resolved as Qubes resolves them: by the
 * netvm, with its own resolver (qubes-firewall's getaddrinfo there), each time a client
 * starts or its rules change. The daemon asks the netvm's agent (`dispenser-agent
 * --resolve4`) and never resolves a name itself; until the answer is in, or if the name
 * does not resolve, the client's chain drops everything it sends (as qubes-firewall
 * blocks a qube whose rules it cannot apply). */
#pragma once
#include <stdbool.h>

#include "app.h"

struct dispatcher;

/* What netvm resolved host to, as nft set elements ("1.2.3.4, 5.6.7.8"), or NULL when it
 * has not (not asked yet, the answer not in, or the name did not resolve). */
const char *network_name_addrs(const char *netvm, const char *host);
/* Asks netvm to resolve every dsthost= name of client's rules again; when an answer
 * changes what a name resolves to, the netvm's rules are written again. */
void network_names_request(struct dispatcher *disp, const struct qube *netvm,
                           const struct qube *client);
