#!/bin/sh
# net-uplink.sh up|down [NAME]: the host-side uplink of dispenser's network-providing
# qubes (docs/network.md). NAME (default dispenser-uplink) is a network namespace with a
# veth to the host's namespace; traffic from it is NATed out of the host's own routes.
# A netvm qube reaches it through its feature net.uplink-netns=/run/netns/NAME.
#
# This changes the host's network (net.ipv4.ip_forward=1 and an nftables table
# `ip NAME`): it is opt-in (scripts/setup.sh --network), and `down` takes it back
# (ip_forward is left as it is: other software may rely on it).
set -eu
cmd=${1:-}
name=${2:-dispenser-uplink}
host_if=dsp-h-$(printf %s "$name" | cksum | cut -c1-6)   # at most 15 characters
ns_if=uplink0
host_ip=10.136.255.1
ns_ip=10.136.255.2

up() {
    [ -e "/run/netns/$name" ] || ip netns add "$name"
    ip -n "$name" link set lo up
    if ! ip link show "$host_if" >/dev/null 2>&1; then
        ip link add "$host_if" type veth peer name "$ns_if" netns "$name"
        ip addr add "$host_ip/30" dev "$host_if"
        ip -n "$name" addr add "$ns_ip/30" dev "$ns_if"
    fi
    ip link set "$host_if" up
    ip -n "$name" link set "$ns_if" up
    ip -n "$name" route replace default via "$host_ip"
    # forwarding in the uplink namespace (from the netvms) and on the host (to the world)
    ip netns exec "$name" sh -c 'echo 1 > /proc/sys/net/ipv4/ip_forward'
    echo 1 > /proc/sys/net/ipv4/ip_forward
    # the netvms' own addresses (10.136.x.y) leave the namespace as its address, and that
    # one leaves the host as the host's
    ip netns exec "$name" nft -f - <<NFT
table ip dispenser-uplink
delete table ip dispenser-uplink
table ip dispenser-uplink {
  chain postrouting {
    type nat hook postrouting priority 100; policy accept;
    oifname "$ns_if" masquerade
  }
}
NFT
    nft -f - <<NFT
table ip $name
delete table ip $name
table ip $name {
  chain postrouting {
    type nat hook postrouting priority 100; policy accept;
    ip saddr $ns_ip oifname != "$host_if" masquerade
  }
  chain forward {
    type filter hook forward priority 0; policy accept;
    iifname "$host_if" accept
    oifname "$host_if" ct state established,related accept
    oifname "$host_if" drop
  }
}
NFT
    echo "net-uplink: /run/netns/$name is up (host side $host_if $host_ip)"
}

down() {
    nft delete table ip "$name" 2>/dev/null || true
    ip link del "$host_if" 2>/dev/null || true
    [ -e "/run/netns/$name" ] && ip netns del "$name"
    echo "net-uplink: $name is down"
}

case $cmd in
up) up ;;
down) down ;;
*) echo "usage: net-uplink.sh up|down [NAME]" >&2; exit 2 ;;
esac
