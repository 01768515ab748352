#!/bin/sh
# Build the libFuzzer harness with clang in its own build dir and run it for N seconds
# (default 60) on a scratch copy of the seed corpus. Exits non-zero on a crash.
#   usage: tests/fuzz/run.sh [SECONDS] [BUILD_DIR]
set -eu
seconds=${1:-60}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${2:-$root/build-fuzz}

if [ ! -f "$build/build.ninja" ]; then
    CC=clang meson setup "$build" "$root" -Dfuzz=true -Dtests=false -Dbuildtype=debugoptimized
fi
ninja -C "$build" tests/fuzz/fuzz_request

work=$(mktemp -d "${TMPDIR:-/tmp}/dispenser-fuzz-run-XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
cp -r "$here/corpus" "$work/corpus"
mkdir -p "$work/artifacts"

status=0
( cd "$work" && "$build/tests/fuzz/fuzz_request" -max_total_time="$seconds" \
    -max_len=4096 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$work/artifacts/" "$work/corpus" ) || status=$?

if [ "$status" -ne 0 ]; then
    mkdir -p "$build/fuzz-artifacts"
    cp "$work"/artifacts/* "$build/fuzz-artifacts/" 2>/dev/null || true
    echo "fuzz_request: crash (exit $status); reproducers in $build/fuzz-artifacts" >&2
    exit "$status"
fi
echo "fuzz_request: no crash in ${seconds}s"
