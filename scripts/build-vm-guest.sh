#!/bin/sh
# Builds what a virt_mode=qemu qube boots: OUT_DIR/vmlinux (the cached kernel, linked)
# and OUT_DIR/initramfs.cpio (busybox, the guest's modules, the static agent, our /init).
# Uncompressed: under TCG, unpacking a compressed initramfs costs more boot time than
# reading a few more megabytes.
#   usage: build-vm-guest.sh AGENT OUT_DIR [KERNEL_CACHE]
#   (KERNEL_CACHE from fetch-vm-kernel.sh, default /var/cache/dispenser/vm-kernel)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
agent=$1
out=$2
kernel=${3:-/var/cache/dispenser/vm-kernel}
busybox=/bin/busybox
[ -f "$kernel/vmlinux" ] || { echo "build-vm-guest: no kernel in $kernel (run scripts/fetch-vm-kernel.sh)" >&2; exit 1; }
[ -x "$agent" ] || { echo "build-vm-guest: no agent binary at $agent" >&2; exit 1; }
file -L "$busybox" 2>/dev/null | grep -q 'statically linked' || [ ! -x /usr/bin/file ] || {
    echo "build-vm-guest: $busybox is not static (install busybox-static)" >&2; exit 1; }
tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT
mkdir -p "$tree/bin" "$tree/lib/modules" "$tree/dev" "$tree/proc" "$tree/sys"
cp "$busybox" "$tree/bin/busybox"
cp "$kernel"/modules/*.ko "$tree/lib/modules/"
cp "$kernel/modules.order" "$tree/modules.order"
cp "$agent" "$tree/dispenser-agent"
cp "$here/../src/backend/qemu/guest/init" "$tree/init"
chmod 0755 "$tree/init" "$tree/bin/busybox" "$tree/dispenser-agent"
mkdir -p "$out"
(cd "$tree" && find . | LC_ALL=C sort | busybox cpio -o -H newc -R 0:0 2>/dev/null) > "$out/initramfs.cpio.tmp"
mv "$out/initramfs.cpio.tmp" "$out/initramfs.cpio"
ln -sf "$kernel/vmlinux" "$out/vmlinux"
echo "build-vm-guest: $out/initramfs.cpio ($(du -k "$out/initramfs.cpio" | cut -f1) KiB), kernel $(cat "$kernel/version")"
