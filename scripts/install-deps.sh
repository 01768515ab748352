#!/bin/sh
# Installs every Debian package dispenser needs to build, test and run.
set -eu
export DEBIAN_FRONTEND=noninteractive
PACKAGES="
  gcc libc6-dev clang libclang-rt-14-dev meson ninja-build pkg-config
  libsystemd-dev libsqlite3-dev libcmocka-dev libseccomp-dev libcap-dev
  python3 sqlite3 systemd busybox-static debootstrap bubblewrap musl-tools
  gnuplot-nox clang-format
"
apt-get update
# shellcheck disable=SC2086
apt-get install -y --no-install-recommends $PACKAGES
