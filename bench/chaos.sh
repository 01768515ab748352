#!/bin/sh
# The chaos test's long mode: dispenserd killed with SIGKILL CYCLES times (default 500)
# while drivers create, change, start, kill and call into disposables of a preload pool;
# after each restart every invariant is checked (tests/integration/test_chaos.py). Prints
# the figures docs/reliability.md records. CHAOS_SEED=N replays a run.
#   usage: bench/chaos.sh [CYCLES] [BUILD_DIR]
set -eu
cycles=${1:-500}
root=$(cd "$(dirname "$0")/.." && pwd)
build=${2:-$root/build}
[ -f "$build/build.ninja" ] || meson setup "$build" "$root"
build=$(cd "$build" && pwd) # the test runs from tests/integration
ninja -C "$build"
cd "$root/tests/integration"
export CHAOS_CYCLES="$cycles" \
    DISPENSERD="$build/src/daemon/dispenserd" QVM_BIN_DIR="$build/src/cli" \
    AGENT="$build/src/agent/dispenser-agent" AGENT_CLIENT="$build/src/agent/dispenser-agent-client" \
    VMUX="$build/src/backend/vmux/dispenser-vmux" PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
exec python3 -m unittest -v test_chaos
