/* The network plumbing every engine shares: nftables and sysctls inside a network
 * namespace, and the routed point-to-point link between a qube and its netvm (Qubes'
 * vif: the netvm's end holds the gateway address, the qube's end its /32, no bridge, so
 * qubes of one netvm only meet through its forwarding, where the daemon's rules are). */
#pragma once
#include "backend.h"

/* Writes a sysctl of the namespace ("net/ipv4/ip_forward"): opened from inside it. */
int backend_netns_sysctl(int netns_fd, const char *key, const char *value, struct backend_why *why);
/* An nftables script run in the namespace (libnftables), as one transaction. */
int backend_nft_apply(int netns_fd, const char *script, struct backend_why *why);

/* A veth pair: `eth0` in qube_netns with net->ip, a route to the gateway and the default
 * route through it; net->netvm_ifname in the netvm's namespace with the gateway address
 * and a route to net->ip. On failure nothing of it is left. */
int backend_net_veth_link(int qube_netns, const struct backend_net *net, struct backend_why *why);
/* Removes the qube's link (the netvm's end goes with it); no link is no error. */
int backend_net_veth_unlink(int qube_netns, struct backend_why *why);
/* A network namespace of its own for a VM (its QEMU joins it): empty but for the tap. */
int backend_netns_new(int *fd, struct backend_why *why);
/* A tap device for a VM's NIC, made in the VM's namespace vm_netns (its descriptor keeps
 * that one, not the netvm's, alive) and moved into the netvm's as net->netvm_ifname with
 * the gateway address and a route to net->ip (the netvm's end of the link, as for a
 * veth): the VM's end is its virtio-net device on *tap_fd, whose last closing (the VM's
 * QEMU ending) removes the device. On failure nothing of it is left. */
int backend_net_tap_link(const struct backend_net *net, int vm_netns, int *tap_fd,
                         struct backend_why *why);
/* Qubes' attach-network/detach-network for a running VM: the tap's device (ifname) moved
 * from the namespace it is in to to_ns: a netvm's (net: configured there as at the start)
 * or the VM's own (net NULL: where nothing routes, and its device outlives the netvm's
 * namespace). */
int backend_net_tap_move(const char *ifname, int from_ns, int to_ns, const struct backend_net *net,
                         struct backend_why *why);
