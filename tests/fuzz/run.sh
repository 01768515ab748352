#!/bin/sh
# Build the libFuzzer harnesses with clang in their own build dir and run each for N
# seconds (default 60) on a scratch copy of its seed corpus: fuzz_request (corpus/),
# fuzz_policy (corpus_policy/), fuzz_vmux (corpus_vmux/) and fuzz_proto (corpus_proto/:
# the agent and qrexec call bodies and the copy path's frames). Exits non-zero if any
# harness crashed.
#   usage: tests/fuzz/run.sh [SECONDS] [BUILD_DIR]
set -eu
seconds=${1:-60}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${2:-$root/build-fuzz}

if [ ! -f "$build/build.ninja" ]; then
    CC=clang meson setup "$build" "$root" -Dfuzz=true -Dtests=false -Dbuildtype=debugoptimized
fi
ninja -C "$build" tests/fuzz/fuzz_request tests/fuzz/fuzz_policy tests/fuzz/fuzz_vmux \
    tests/fuzz/fuzz_proto

work=$(mktemp -d "${TMPDIR:-/tmp}/dispenser-fuzz-run-XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM

# run_harness NAME CORPUS_DIR: returns the harness's exit status; reproducers of a crash
# are kept in $build/fuzz-artifacts.
run_harness() {
    name=$1
    mkdir -p "$work/$name/artifacts"
    cp -r "$2" "$work/$name/corpus"
    status=0
    ( cd "$work/$name" && "$build/tests/fuzz/$name" -max_total_time="$seconds" \
        -max_len=4096 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$work/$name/artifacts/" "$work/$name/corpus" ) || status=$?
    if [ "$status" -ne 0 ]; then
        mkdir -p "$build/fuzz-artifacts"
        cp "$work/$name"/artifacts/* "$build/fuzz-artifacts/" 2>/dev/null || true
        echo "$name: crash (exit $status); reproducers in $build/fuzz-artifacts" >&2
        return "$status"
    fi
    echo "$name: no crash in ${seconds}s"
}

failed=0
run_harness fuzz_request "$here/corpus" || failed=$?
run_harness fuzz_policy "$here/corpus_policy" || failed=$?
run_harness fuzz_vmux "$here/corpus_vmux" || failed=$?
run_harness fuzz_proto "$here/corpus_proto" || failed=$?
exit "$failed"
