#!/bin/sh
# Checks a unit file with systemd-analyze verify, ExecStart pointed at the build.
# verify exits 0 on mere warnings (e.g. an unparsable setting that is ignored), so any
# line it prints counts as a failure.
set -eu
unit=$1 daemon=$2
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
copy="$dir/$(basename "$unit")"
sed "s|^ExecStart=[^ ]*|ExecStart=$daemon|" "$unit" > "$copy"
out=$(systemd-analyze verify --man=no "$copy" 2>&1) || { echo "$out" >&2; exit 1; }
if [ -n "$out" ]; then
    echo "$out" >&2
    exit 1
fi
echo "unit OK: $(basename "$unit")"
