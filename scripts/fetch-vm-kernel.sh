#!/bin/sh
# Fetches the guest kernel of virt_mode=qemu qubes WITHOUT installing it on the host:
# Debian's linux-image-amd64 package is downloaded and unpacked into a cache directory,
# the uncompressed vmlinux is extracted from its bzImage (a PVH boot skips the
# decompressor: ~2 s instead of ~5 s to userspace under TCG), and the few modules the guest
# needs are kept with their dependencies, in load order.
#   usage: fetch-vm-kernel.sh [CACHE_DIR]   (default /var/cache/dispenser/vm-kernel)
# Output: CACHE_DIR/vmlinux, CACHE_DIR/modules/*.ko, CACHE_DIR/modules.order, CACHE_DIR/version
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cache=${1:-/var/cache/dispenser/vm-kernel}
# virtio transport and devices of a -M microvm guest (the balloon: a paused preload gives
# its free memory back; virtio_rng: the host's entropy for restore-mode clones), its
# filesystems, its network card (a qube with a netvm: a tap)
WANTED="virtio_mmio virtio_blk virtio_console virtio_balloon virtio_rng crc32c_generic erofs ext4 overlay virtio_net"

# the exact image package the metapackage points at (e.g. linux-image-6.1.0-57-amd64)
pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
[ -n "$pkg" ] || { echo "fetch-vm-kernel: linux-image-amd64 names no image package (apt-get update?)" >&2; exit 1; }
# a cache of the same kernel is fetched again when it lacks a module wanted now
# (virtio_balloon and virtio_rng came later than the others)
if [ -f "$cache/version" ] && [ "$(cat "$cache/version")" = "$pkg" ] && [ -f "$cache/vmlinux" ] &&
   [ "$(cat "$cache/wanted" 2>/dev/null)" = "$WANTED" ]; then
    echo "fetch-vm-kernel: $pkg already in $cache"
    exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download "$pkg" >/dev/null 2>&1) || {
    echo "fetch-vm-kernel: cannot download $pkg" >&2; exit 1; }
dpkg-deb -x "$work"/*.deb "$work/x"
kver=$(ls "$work/x/lib/modules")
rm -rf "$cache.new"
mkdir -p "$cache.new/modules"
python3 "$here/extract-vmlinux.py" "$work/x/boot/vmlinuz-$kver" "$cache.new/vmlinux"
cp "$work/x/boot/config-$kver" "$cache.new/config"
# each wanted module after its dependencies
moddir="$work/x/lib/modules/$kver"
python3 "$here/vm-modules.py" "$moddir" $WANTED > "$work/order"
: > "$cache.new/modules.order"
while read -r path; do
    cp "$moddir/$path" "$cache.new/modules/"
    basename "$path" >> "$cache.new/modules.order"
done < "$work/order"
echo "$pkg" > "$cache.new/version"
echo "$WANTED" > "$cache.new/wanted"
rm -rf "$cache"
mv "$cache.new" "$cache"
echo "fetch-vm-kernel: $pkg ($kver) in $cache: $(wc -l < "$cache/modules.order") modules"
