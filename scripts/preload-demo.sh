#!/bin/sh
# The preloading demo of scripts/setup.sh: a cold disposable of DVM, then, on a machine
# with the memory for it, preloading turned on for DVM and a preloaded disposable; the
# two `time`d calls side by side.
#
# Threshold: 15 GiB of RAM (MemTotal, 15360 MiB), about where Qubes' installer turns
# preloading on. Below it the demo shows the cold call and how to turn preloading on.
# DISPENSER_MEMINFO (a file in /proc/meminfo's format) stands in for the host's (tests).
set -eu
dvm=${1:?usage: preload-demo.sh DISPOSABLE_TEMPLATE}
min_mib=15360
count=2
mem_mib=$(awk '$1 == "MemTotal:" { print int($2 / 1024) }' "${DISPENSER_MEMINFO:-/proc/meminfo}")

# The real time of one call in seconds, by bash's `time`; the call's stderr stays stderr.
timed() {
    bash -c 'TIMEFORMAT=%3R; { time "$@" >/dev/null 2>&3; } 3>&2 2>&1' timed "$@"
}
call() { timed qvm-run --dispvm="$dvm" -p 'echo hi'; }

qvm-features --unset "$dvm" preload-dispvm-max >/dev/null 2>&1 || true # cold: none ready
cold=$(call)
if [ "$mem_mib" -lt "$min_mib" ]; then
    echo "cold disposable (qvm-run --dispvm=$dvm): $cold s"
    echo "preloading not enabled: $mem_mib MiB of RAM, under the threshold of $min_mib MiB" \
         "(15 GiB); turn it on with: qvm-features $dvm preload-dispvm-max $count"
    exit 0
fi
qvm-features "$dvm" preload-dispvm-max "$count"
# READY of the pool view (dispenser-preload(8))
ready() { dispenser-preload status "$dvm" | awk -v t="$dvm" '$1 == t { print $5 }'; }
# one ready is enough for the call (a container's takes milliseconds, a VM's seconds)
tries=0
until [ "$(ready)" -gt 0 ] 2>/dev/null; do
    tries=$((tries + 1))
    if [ "$tries" -gt 600 ]; then
        echo "preload-demo.sh: no preloaded disposable of $dvm after 60 s:" >&2
        dispenser-preload status "$dvm" >&2
        break
    fi
    sleep 0.1
done
warm=$(call)
echo "qvm-run --dispvm=$dvm -p 'echo hi' (real time; $mem_mib MiB of RAM >= $min_mib: preloading on, $count kept ready):"
printf '  %-40s %s\n' "cold (created, started, used, removed)" "preloaded (a ready one handed out)"
printf '  %-40s %s\n' "$cold s" "$warm s"
