#!/bin/sh
# GUI disposables (docs/gui.md) against a private daemon and an Xvfb of its own as the host
# display: the time from `qvm-run --dispvm=DVM xmessage` to its window mapped on the host
# display (titled "[dispNNNN] ..."), for a cold GUI disposable and a preloaded one, beside
# the same call to a headless disposable (`true`, cold and preloaded).
# Usage: bench/gui.sh [BUILD_DIR] [ITERATIONS]. Skips (exit 0) without Xvfb/xpra.
set -eu
cd "$(dirname "$0")/.."
BUILD=${1:-build}
N=${2:-5}
for prog in Xvfb xpra xmessage xdotool; do
    command -v "$prog" >/dev/null || { echo "gui bench skipped: no $prog (scripts/install-deps.sh)"; exit 0; }
done
. bench/lib.sh

# the host display: a free number away from :0 (every qube's own display)
d=$((150 + $$ % 300))
while [ -e "/tmp/.X$d-lock" ]; do d=$((d + 1)); done
Xvfb ":$d" -screen 0 1280x1024x24 -nolisten tcp >/dev/null 2>&1 &
xvfb_pid=$!
export DISPLAY=":$d" # dispenserd's --gui-display defaults to it
while [ ! -S "/tmp/.X11-unix/X$d" ]; do sleep 0.05; done
start_private_daemon
trap 'stop_private_daemon; kill $xvfb_pid' EXIT

# the host's /usr in a busybox template (as tests/integration/test_gui.py builds it)
"$T/qvm-template" build busybox bench-gt >/dev/null
"$T/qvm-features" bench-gt container-host-usr 1
"$T/qvm-run" -u root -p bench-gt 'ln -s usr/lib /lib && ln -s usr/lib64 /lib64'
tar -C / -cf - etc/xpra etc/fonts etc/X11 | "$T/qvm-run" -u root -p bench-gt 'tar -C / -xf -'
"$T/qvm-shutdown" --wait bench-gt
for dvm in bench-gdvm bench-hdvm; do
    "$T/qvm-create" -t bench-gt -l blue "$dvm" >/dev/null
    "$T/qvm-prefs" "$dvm" template_for_dispvms True
    "$T/qvm-features" "$dvm" preload-dispvm-delay 0
done
"$T/qvm-features" bench-gdvm gui 1

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# mapped_ms TAG: ms from now until a window titled "[disp...] TAG" is on the display;
# the disposable is then killed (its qvm-run returns)
mapped_ms() {
    t0=$(now_ms)
    "$T/qvm-run" --dispvm=bench-gdvm "xmessage -name $1 $1" >/dev/null 2>&1 &
    run_pid=$!
    for _ in $(seq 3000); do
        w=$(xdotool search --name "^\[disp[0-9]+\] $1\$" 2>/dev/null | head -1)
        [ -n "$w" ] && break
        sleep 0.02
    done
    t1=$(now_ms)
    [ -n "$w" ] || { echo "no window for $1" >&2; exit 1; }
    q=$(xdotool getwindowname "$w" | sed 's/^\[\(disp[0-9]*\)\].*/\1/')
    "$T/qvm-kill" "$q" >/dev/null 2>&1 || true
    wait "$run_pid" 2>/dev/null || true
    echo $((t1 - t0))
}

headless_ms() {
    t0=$(now_ms)
    "$T/qvm-run" --dispvm=bench-hdvm -p true >/dev/null
    echo $(($(now_ms) - t0))
}

# $1: the disposable template; until its one preload is paused and, for a GUI one, the
# host's xpra client (started at the preload's start) has sent its hello: what a preload
# that has been waiting for a while looks like
wait_preloaded() {
    for _ in $(seq 1200); do
        q=$("$T/qvm-features" "$1" preload-dispvm 2>/dev/null || true)
        if [ -n "$q" ] && "$T/qvm-features" "$q" preload-dispvm-completed >/dev/null 2>&1 &&
            [ "$("$T/qvm-ls" --raw-data --fields state "$q" 2>/dev/null)" = Paused ]; then
            [ "$1" != bench-gdvm ] && return 0
            grep -q "desktop size is" "$run/gui/$q.log" 2>/dev/null && return 0
        fi
        sleep 0.1
    done
    echo "no paused preload of $1" >&2; exit 1
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

series() { # $1 label, $2 function, $3 dvm to preload or ""
    : > "$tmp/series"
    i=0
    while [ $i -lt "$N" ]; do
        [ -n "$3" ] && wait_preloaded "$3"
        "$2" "b$i" >> "$tmp/series"
        i=$((i + 1))
    done
    printf '%-40s median %6s ms  (%s)\n' "$1" "$(median < "$tmp/series")" "$(tr '\n' ' ' < "$tmp/series")"
}

echo "machine: $(nproc) cpus, $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg); $N iterations each"
series "headless, cold (qvm-run -p true)" headless_ms ""
series "GUI, cold (window mapped)" mapped_ms ""
"$T/qvm-features" bench-hdvm preload-dispvm-max 1
"$T/qvm-features" bench-gdvm preload-dispvm-max 1
series "headless, preloaded (qvm-run -p true)" headless_ms bench-hdvm
series "GUI, preloaded (window mapped)" mapped_ms bench-gdvm
