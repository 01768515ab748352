#!/bin/sh
# Admin API throughput against a private daemon: admin.vm.List with 10 and 1,000 qubes,
# admin.vm.property.Get and admin.vm.feature.Set, from 1 and from 8 concurrent clients.
# Usage: bench/run-api.sh [BUILD_DIR] [SECONDS]   (prints one line per measurement)
set -eu
cd "$(dirname "$0")/.."
BUILD=${1:-build}
SECS=${2:-3}
[ -x "$BUILD/bench/api_bench" ] || { echo "build first: ninja -C $BUILD" >&2; exit 1; }
. bench/lib.sh
start_private_daemon
B="$BUILD/bench/api_bench"
create() { python3 - "$QUBESD_SOCKET" "$1" "$2" <<'PY'
import socket, sys
path, start, end = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def call(req):
    s = socket.socket(socket.AF_UNIX); s.connect(path); s.sendall(req); s.shutdown(socket.SHUT_WR)
    out = b''.join(iter(lambda: s.recv(65536), b''))
    assert out.startswith(b'0\0'), out
if start == 0:
    call(b'admin.vm.Create.TemplateVM+ dom0 name dom0\0name=bench-tpl label=black')
    start = 1
for i in range(start, end):
    call(b'admin.vm.Create.AppVM+bench-tpl dom0 name dom0\0name=bench-%d label=red' % i)
PY
}
echo "machine: $(nproc) cpus, $(uname -r), $(awk '/MemTotal/{print int($2/1024)" MiB"}' /proc/meminfo)"
t0=$(date +%s%N); create 0 9; t1=$(date +%s%N)
echo "created 10 qubes in $(( (t1 - t0) / 1000000 )) ms"
"$B" -m admin.vm.List -s "$SECS" -c 1 | sed 's/^/qubes=10 /'
"$B" -m admin.vm.List -s "$SECS" -c 8 | sed 's/^/qubes=10 /'
for c in 1 8; do
    "$B" -m admin.vm.property.Get -a memory -d bench-1 -s "$SECS" -c $c
    "$B" -m admin.vm.feature.Set -a bench -d bench-1 -p value -s "$SECS" -c $c
done
t0=$(date +%s%N); create 9 1000; t1=$(date +%s%N)
echo "created 990 more qubes in $(( (t1 - t0) / 1000000 )) ms"
"$B" -m admin.vm.List -s "$SECS" -c 1 | sed 's/^/qubes=1000 /'
"$B" -m admin.vm.List -s "$SECS" -c 8 | sed 's/^/qubes=1000 /'
"$B" -m admin.vm.property.Get -a memory -d bench-500 -s "$SECS" -c 1 | sed 's/^/qubes=1000 /'
