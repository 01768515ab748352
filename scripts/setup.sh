#!/bin/sh
# One command from a fresh Debian 12 machine to a working dispenser: installs the
# build dependencies, builds, installs, starts dispenserd, builds a template and starts a
# qube, and runs a command inside it; then times a cold and a preloaded disposable
# (preloading is turned on for demo-dvm where the machine has 15 GiB of RAM or more,
# scripts/preload-demo.sh).
#
# --network (opt-in: it changes the host's network, see scripts/net-uplink.sh): also
# creates `sys-net`, a network-providing qube whose uplink is the host's network through
# a NATed namespace, and makes it the default netvm (docs/network.md).
set -eu
cd "$(dirname "$0")/.."
network=no
case ${1:-} in
--network) network=yes ;;
"") ;;
*) echo "usage: setup.sh [--network]" >&2; exit 2 ;;
esac
[ "$(id -u)" = 0 ] || { echo "setup.sh: run as root (it installs packages and a daemon)" >&2; exit 1; }

scripts/install-deps.sh
rm -rf build
meson setup build --prefix=/usr/local >/dev/null
ninja -C build
meson install -C build --quiet
ldconfig
# the initramfs of virt_mode=qemu qubes, with the agent just installed (skipped, with the
# reason, where the guest kernel could not be fetched)
scripts/build-vm-guest.sh /usr/local/libexec/dispenser/dispenser-agent \
    /usr/local/libexec/dispenser/vm || echo "setup.sh: virt_mode=qemu will be unavailable" >&2

# (Re)start the daemon: through systemd when it runs the machine, by hand otherwise.
# Qubes keep running across the restart; the new daemon adopts them.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl enable dispenserd.service
    systemctl restart dispenserd.service
else
    if [ -f /run/dispenser/dispenserd.pid ]; then
        kill "$(cat /run/dispenser/dispenserd.pid)" 2>/dev/null || true
        while qvm-ls --raw-list >/dev/null 2>&1; do sleep 0.1; done
    fi
    mkdir -p /var/log/dispenser
    /usr/local/sbin/dispenserd 2>>/var/log/dispenser/dispenserd.log
fi

echo "== dispenserd is up: a busybox template, a disposable template, a disposable answering a command =="
# (re)build the template unless it already has a root filesystem (revision > 0)
rev=$(qvm-template list | awk '$1 == "demo-template" { print $2 }')
if [ "${rev:-0}" = 0 ] || [ "$rev" = - ]; then
    for q in demo-work demo-dvm demo-template; do
        qvm-ls --raw-list | grep -qx "$q" && qvm-remove -f "$q"
    done
    qvm-template build busybox demo-template
fi
qvm-ls --raw-list | grep -qx demo-dvm || {
    qvm-create --template demo-template --label red demo-dvm
    qvm-prefs demo-dvm template_for_dispvms True
}
qubes-prefs default_dispvm demo-dvm
qvm-ls --raw-list | grep -qx demo-work || qvm-create --template demo-template --label blue demo-work
# the main job: a fresh disposable runs a command and is gone afterwards
qvm-run --dispvm -p 'echo "hello from $(hostname), a disposable: uid $(id -u), kernel $(uname -r)"'
qvm-run -p demo-work 'echo "hello from $(hostname), a qube that keeps running"'
echo "== a cold and a preloaded disposable (preloading on with 15 GiB of RAM or more) =="
scripts/preload-demo.sh demo-dvm
qvm-ls

if [ "$network" = yes ]; then
    echo "== networking: sys-net, the default netvm, its uplink the host's network =="
    scripts/net-uplink.sh up dispenser-uplink
    qvm-ls --raw-list | grep -qx sys-net || {
        qvm-create --template demo-template --label red sys-net
        qvm-prefs sys-net provides_network True
    }
    qvm-features sys-net net.uplink-netns /run/netns/dispenser-uplink
    # the netvm forwards the virtual DNS servers to the host's first non-loopback one
    dns=$(awk '$1 == "nameserver" && $2 !~ /^127\./ && $2 !~ /:/ { print $2; exit }' /etc/resolv.conf)
    if [ -n "$dns" ]; then
        qvm-features sys-net net.uplink-dns "$dns"
    else
        echo "setup.sh: no non-loopback DNS server in /etc/resolv.conf: set it with" \
             "qvm-features sys-net net.uplink-dns ADDRESS" >&2
    fi
    qubes-prefs default_netvm sys-net
    qvm-run --dispvm -p 'ip -4 addr show eth0; cat /etc/resolv.conf'
fi
