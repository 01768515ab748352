/* Networking of qubes (Qubes' netvm model, docs/network.md): a qube whose netvm is set
 * gets a routed link to it before its init runs; the netvm forwards, NATs and enforces
 * each client's firewall with nftables in its own network namespace, which the qubes
 * themselves cannot change (it belongs to the host's user namespace). Engine-neutral: the
 * engines make the links (backend.h, struct backend_net), this module decides. */
#pragma once
#include <stdbool.h>

#include "app.h"
#include "backend.h"
#include "strbuf.h"

struct dispatcher;

/* What a starting qube's engine gets: net is NULL for a qube without a netvm. */
struct network_link {
    struct backend_net net;
    char ifname[16], ip[16], gateway[16], mac[18], dns[64];
    int netvm_netns; /* ours: closed by network_link_release */
};

/* For a qube about to start (power already Transient): the netvm's rules with this qube
 * in them, then the link's description. The netvm must be running. */
int network_link_prepare(struct dispatcher *disp, const struct qube *q, struct network_link *link,
                         const struct backend_net **net, struct qerr *err);
void network_link_release(struct network_link *link);

/* A network-providing qube has started: forwarding, NAT, DNS, its uplink, its rules, and
 * the links of clients that run already (Qubes reconnects them too). */
void network_netvm_started(struct dispatcher *disp, struct qube *netvm);
/* A qube halted: its chain goes from its netvm's rules. */
void network_qube_halted(struct dispatcher *disp, struct qube *q);
/* Qubes refuses to shut down a netvm that running qubes use, unless forced. */
int network_check_shutdown(struct dispatcher *disp, const struct qube *q, bool force,
                           struct qerr *err);
/* After a daemon restart: every running netvm's rules again (clients gone meanwhile
 * lose their chains). */
void network_recover(struct dispatcher *disp);

/* Before a running qube's netvm changes: Qubes refuses a netvm that is not running. */
int network_check_netvm_change(struct dispatcher *disp, const struct qube *q, const char *newvalue,
                               struct qerr *err);
/* After it changed: unlink from the old netvm, link to the new one (none: unlinked). */
int network_netvm_changed(struct dispatcher *disp, struct qube *q, const char *old_netvm,
                          struct qerr *err);
/* A change that may move many running qubes (default_netvm): what their netvms are
 * before (begin), whether the new default can take them (check: it must run), and the
 * moves once the change is made (end frees it). */
struct network_moves;
struct network_moves *network_moves_begin(struct dispatcher *disp);
int network_moves_check(struct dispatcher *disp, const struct network_moves *m,
                        const char *new_default, struct qerr *err);
void network_moves_end(struct dispatcher *disp, struct network_moves *m);
/* The firewall of q changed (Set, Reload): its netvm's rules again, if both run. */
int network_firewall_changed(struct dispatcher *disp, struct qube *q, struct qerr *err);

/* The whole nftables script of a netvm: pure, for tests. dns_target is where the
 * virtual DNS servers are forwarded to ("" for nowhere). */
void network_render_netvm(const struct app *app, const struct qube *netvm, const char *dns_target,
                          struct strbuf *out);
/* The nft commands that add (or replace) a client's chain and map entry, or remove them. */
void network_render_client(const struct app *app, const struct qube *c, struct strbuf *out);
void network_render_client_gone(const struct qube *c, struct strbuf *out);
/* One firewall rule as nft matches and a verdict, or false when it cannot be (a
 * dsthost name: left out when accepting, a broader drop when dropping). */
struct fw_rule;
bool network_render_rule(const struct fw_rule *r, struct strbuf *out);
/* The same with a dsthost= name's addresses as nft set elements (NULL: none known). */
bool network_render_rule_resolved(const struct fw_rule *r, const char *addrs, struct strbuf *out);
/* A running netvm's rules written again (a name it resolved changed). */
void network_reapply(struct dispatcher *disp, const char *netvm_name);
