#!/bin/sh
# Container engine latencies against a private daemon, beside bwrap in the same rootfs.
# Usage: bench/run-engine.sh [BUILD_DIR] [ITERATIONS]
set -eu
cd "$(dirname "$0")/.."
BUILD=${1:-build}
N=${2:-50}
. bench/lib.sh
start_private_daemon
"$T/qvm-template" build busybox bench-bb >/dev/null
"$T/qvm-create" -t bench-bb -l red bench >/dev/null
sock="$run/qubes/bench/agent.sock"
rootfs=$(ls -d "$tmp"/state/volumes/*/root/layers/* | head -1)
echo "machine: $(nproc) cpus, $(uname -r); $N iterations each"
"$B" start "$N" bench
"$B" start-kill "$N" bench
"$B" start-echo-kill "$N" bench "$sock"
"$B" spawn "$N" bwrap --unshare-all --ro-bind "$rootfs" / --proc /proc --dev /dev /bin/true
"$B" spawn "$N" bwrap --unshare-all --ro-bind "$rootfs" / --proc /proc --dev /dev /bin/echo hi
"$T/qvm-start" bench
"$B" echo "$N" bench "$sock"
"$B" pause-unpause "$N" bench
"$T/qvm-pause" bench
echo "idle paused qube: $(python3 - "$QUBESD_SOCKET" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
s.sendall(b'admin.vm.CurrentState+ dom0 name bench\0'); s.shutdown(socket.SHUT_WR)
print(b''.join(iter(lambda: s.recv(4096), b''))[2:].decode())
PY
)"
"$T/qvm-kill" bench
