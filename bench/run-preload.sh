#!/bin/sh
# Preloaded disposables against a private daemon, all in one run:
#   a `qvm-run --dispvm -p 'echo hi'` served from a ready preload (max 4, delay 0),
#   the same call with preloading off (a cold disposable each time),
#   the floor (thaw + agent round trip), and 12 back-to-back preloaded calls (each as
#   fast as the first: cleanup and refill stay off the caller's path);
#   the memory charged to one paused preload (busybox; Debian with --debian).
# Usage: bench/run-preload.sh [BUILD_DIR] [ITERATIONS] [--debian]
set -eu
cd "$(dirname "$0")/.."
BUILD=${1:-build}
N=${2:-30}
DEBIAN=${3:-}
. bench/lib.sh
start_private_daemon
"$T/qvm-template" build busybox bench-bb >/dev/null
"$T/qvm-create" -t bench-bb -l red bench-dvm >/dev/null
"$T/qvm-prefs" bench-dvm template_for_dispvms True
"$T/qubes-prefs" default_dispvm bench-dvm
"$T/qvm-create" -t bench-bb -l blue bench-work >/dev/null
"$T/qvm-start" bench-work
wait_full() { # until the template's preload list holds $1 completed preloads
    for _ in $(seq 200); do
        n=0
        for q in $("$T/qvm-features" "$1" preload-dispvm 2>/dev/null); do
            "$T/qvm-features" "$q" preload-dispvm-completed >/dev/null 2>&1 && n=$((n + 1))
        done
        [ "$n" -ge "$2" ] && return 0
        sleep 0.05
    done
    echo "preloads did not complete" >&2; return 1
}
echo "machine: $(nproc) cpus, $(uname -r); $N iterations each"
"$B" qrexec "$N" @dispvm | sed 's/^qrexec /cold dispvm (api)/'
"$B" spawn "$N" "$T/qvm-run" --dispvm -p 'echo hi' | sed 's/^spawn /cold qvm-run --dispvm/'
"$T/qvm-features" bench-dvm preload-dispvm-delay 0
"$T/qvm-features" bench-dvm preload-dispvm-max 4
# one preloaded call at a time, the pool refilled in between (untimed)
i=0; : > "$tmp/pre"
while [ $i -lt "$N" ]; do
    wait_full bench-dvm 4
    "$B" qrexec 1 @dispvm >> "$tmp/pre"
    i=$((i + 1))
done
python3 - "$tmp/pre" <<'PY'
import re, sys
v = sorted(float(re.search(r"median=([0-9.]+)", l).group(1)) for l in open(sys.argv[1]))
print("preloaded dispvm (api) n=%d median=%.3f p95=%.3f min=%.3f max=%.3f ms"
      % (len(v), v[len(v) // 2], v[min(len(v) - 1, len(v) * 95 // 100)], v[0], v[-1]))
PY
wait_full bench-dvm 4
"$B" qrexec 1 @dispvm >/dev/null
wait_full bench-dvm 4
echo "12 back-to-back calls, max 4, delay 0 (ms, in order):"
BENCH_ALL=1 "$B" qrexec 12 @dispvm
"$T/qvm-features" bench-dvm preload-dispvm-delay 3
wait_full bench-dvm 4
echo "12 back-to-back calls, max 4, delay 3 (the default) (ms, in order):"
BENCH_ALL=1 "$B" qrexec 12 @dispvm
sleep 4
wait_full bench-dvm 4
"$B" thaw-echo "$N" bench-work "$run/qubes/bench-work/agent.sock" | sed 's/^thaw-echo /floor: thaw+echo/'
charge() {
    python3 - "$QUBESD_SOCKET" "$1" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
s.sendall(b'admin.vm.CurrentState+ dom0 name ' + sys.argv[2].encode() + b'\0'); s.shutdown(socket.SHUT_WR)
print(b''.join(iter(lambda: s.recv(4096), b''))[2:].decode())
PY
}
first=$("$T/qvm-features" bench-dvm preload-dispvm | cut -d' ' -f1)
echo "one paused busybox preload ($first): $(charge "$first")"
if [ "$DEBIAN" = --debian ]; then
    "$T/qvm-template" build debian bench-deb >/dev/null
    "$T/qvm-create" -t bench-deb -l red bench-deb-dvm >/dev/null
    "$T/qvm-prefs" bench-deb-dvm template_for_dispvms True
    "$T/qvm-features" bench-deb-dvm preload-dispvm-max 1
    wait_full bench-deb-dvm 1
    q=$("$T/qvm-features" bench-deb-dvm preload-dispvm)
    echo "one paused Debian preload ($q): $(charge "$q")"
fi
"$T/qvm-kill" bench-work
