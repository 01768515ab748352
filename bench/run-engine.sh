#!/bin/sh
# Container engine latencies against a private daemon, beside bwrap in the same rootfs.
# Usage: bench/run-engine.sh [BUILD_DIR] [ITERATIONS]
set -eu
cd "$(dirname "$0")/.."
BUILD=${1:-build}
N=${2:-50}
tmp=$(mktemp -d)
run=$(mktemp -d /run/dispenser-bench-XXXXXX) # runtime state on tmpfs, as /run/dispenser is
export QUBESD_SOCKET="$tmp/qubesd.sock"
"$BUILD/src/daemon/dispenserd" --foreground --state-dir "$tmp/state" --runtime-dir "$run" \
    --socket "$QUBESD_SOCKET" --agent "$BUILD/src/agent/dispenser-agent" --log-level warning \
    2>"$tmp/log" &
pid=$!
cleanup() { kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$tmp" "$run"; }
trap cleanup EXIT
while [ ! -S "$QUBESD_SOCKET" ]; do sleep 0.05; done
T="$BUILD/src/cli"
B="$BUILD/bench/engine_bench"
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
