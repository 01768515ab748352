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
/* A tap device for a VM's NIC, made in the netvm's namespace as net->netvm_ifname with the
 * gateway address and a route to net->ip (the netvm's end of the link, as for a veth): the
 * VM's end is its virtio-net device on *tap_fd, whose closing (the VM's QEMU ending)
 * removes the device. On failure nothing of it is left. */
int backend_net_tap_link(const struct backend_net *net, int *tap_fd, struct backend_why *why);
