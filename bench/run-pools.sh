#!/bin/sh
# Fixed max vs auto-sized pools (preload-dispvm-auto) on a replayed bursty trace, against a
# private daemon (container engine, busybox): hit ratio, p50/p99 hand-out latency and
# preload RAM-seconds of each (bench/pools.py says how each is measured).
# Usage: bench/run-pools.sh [BUILD_DIR] [--quick] [pools.py options...]
set -eu
cd "$(dirname "$0")/.."
BUILD=${1:-build}
[ $# -gt 0 ] && shift
. bench/lib.sh
start_private_daemon
"$T/qvm-template" build busybox bench-bb >/dev/null
python3 bench/pools.py --template bench-bb "$@"
