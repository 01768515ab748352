#!/bin/sh
# The soak (bench/soak.py): 100 concurrent `qvm-run --dispvm` callers against a preload
# pool for 10 minutes with 200 admin.Events subscribers connected; --quick: 1 minute (CI).
# Prints calls, failures, latency, the daemon's RSS and descriptors at start and end;
# exits non-zero if a call failed, a subscriber fell behind or anything was left over.
#   usage: bench/soak.sh [--quick] [BUILD_DIR]
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
seconds=600
build=$root/build
for a in "$@"; do
    case $a in
    --quick) seconds=60 ;;
    *) build=$a ;;
    esac
done
ninja -C "$build" >/dev/null
build=$(cd "$build" && pwd)
mkdir -p "$root/bench/results"
export DISPENSERD="$build/src/daemon/dispenserd" QVM_BIN_DIR="$build/src/cli" \
    AGENT="$build/src/agent/dispenser-agent" AGENT_CLIENT="$build/src/agent/dispenser-agent-client" \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
exec python3 "$root/bench/soak.py" --seconds "$seconds" \
    --out "$root/bench/results/soak-$(date -u +%Y%m%d-%H%M%S).json"
