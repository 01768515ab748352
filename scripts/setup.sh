#!/bin/sh
# One command from a fresh Debian 12 machine to a working dispenser: installs the
# build dependencies, builds, installs, starts dispenserd and shows it working.
set -eu
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "setup.sh: run as root (it installs packages and a daemon)" >&2; exit 1; }

scripts/install-deps.sh
rm -rf build
meson setup build --prefix=/usr/local >/dev/null
ninja -C build
meson install -C build --quiet
ldconfig

# Start the daemon: through systemd when it runs the machine, by hand otherwise.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl enable --now dispenserd.service
elif ! qvm-ls --raw-list >/dev/null 2>&1; then
    mkdir -p /var/log/dispenser
    /usr/local/sbin/dispenserd 2>>/var/log/dispenser/dispenserd.log
fi

echo "== dispenserd is up; creating a template and a qube =="
qvm-ls --raw-list | grep -qx demo-template || qvm-create --class TemplateVM --label black demo-template
qvm-ls --raw-list | grep -qx demo-work || qvm-create --template demo-template --label blue demo-work
qvm-prefs demo-work memory 512
qvm-features demo-work demo yes
qvm-ls
