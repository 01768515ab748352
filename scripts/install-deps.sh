#!/bin/sh
# Installs every Debian package dispenser needs to build, test and run.
set -eu
export DEBIAN_FRONTEND=noninteractive
PACKAGES="
  gcc libc6-dev clang libclang-rt-14-dev meson ninja-build pkg-config
  libsystemd-dev libsqlite3-dev libcmocka-dev libseccomp-dev libcap-dev
  libmnl-dev libnftables-dev iproute2 nftables
  python3 sqlite3 systemd busybox-static debootstrap bubblewrap musl-tools
  gnuplot-nox clang-format
  qemu-system-x86 erofs-utils e2fsprogs libjson-c-dev
  xpra xvfb xterm x11-utils x11-apps xdotool xclip
"
apt-get update
# shellcheck disable=SC2086
apt-get install -y --no-install-recommends $PACKAGES

# The guest kernel of virt_mode=qemu qubes: downloaded and unpacked into a cache, never
# installed on the host. Without it (no network to the archive), qemu qubes are unavailable
# and their tests skip; nothing else depends on it.
"$(dirname "$0")/fetch-vm-kernel.sh" || echo "install-deps: no guest kernel for virt_mode=qemu" >&2
