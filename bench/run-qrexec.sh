#!/bin/sh
# qrexec end to end against a private daemon: `qvm-run --dispvm -p 'echo hi'` (a cold
# disposable: created, started, used, killed and removed), `qvm-run -p` into a running
# qube, and the floor of a hand-out (thaw + agent round trip), all in one run.
# Usage: bench/run-qrexec.sh [BUILD_DIR] [ITERATIONS]
set -eu
cd "$(dirname "$0")/.."
BUILD=${1:-build}
N=${2:-30}
. bench/lib.sh
start_private_daemon
"$T/qvm-template" build busybox bench-bb >/dev/null
"$T/qvm-create" -t bench-bb -l red bench-dvm >/dev/null
"$T/qvm-prefs" bench-dvm template_for_dispvms True
"$T/qubes-prefs" default_dispvm bench-dvm
"$T/qvm-create" -t bench-bb -l blue bench-work >/dev/null
"$T/qvm-start" bench-work
sock="$run/qubes/bench-work/agent.sock"
echo "machine: $(nproc) cpus, $(uname -r); $N iterations each"
"$B" spawn "$N" "$T/qvm-run" --dispvm -p 'echo hi' | sed 's/^spawn /qvm-run --dispvm/'
"$B" spawn "$N" "$T/qvm-run" -p bench-work 'echo hi' | sed 's/^spawn /qvm-run (running)/'
"$B" echo "$N" bench-work "$sock" | sed 's/^echo /agent echo     /'
"$B" thaw-echo "$N" bench-work "$sock" | sed 's/^thaw-echo /floor: thaw+echo/'
"$T/qvm-kill" bench-work
