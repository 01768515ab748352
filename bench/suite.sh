# Sourced by bench/run.sh: the scenarios. Every timed call is a row of $out/calls.csv
# (group,workload,origin,target,max,callers, then dispvm_bench's columns).
# Qubes: bench-bb (busybox template), bench-dvm (its disposable template), bench-work
# (running, the baseline of `echo`); bench-py (Debian + resident Python), bench-py-dvm,
# bench-py-work (running: the baseline of the sandbox, and the caller "from a qube").

step() { echo "== $* ($(date +%T))"; }

machine_description() {
    echo "date: $(date -u +%FT%TZ)"
    echo "host: $(uname -srm); $(. /etc/os-release && echo "$PRETTY_NAME")"
    echo "cpus: $(nproc) x $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1)"
    echo "virtualisation: $(systemd-detect-virt 2>/dev/null || echo unknown)"
    echo "memory: $(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
    echo "cgroup: $(stat -fc %T /sys/fs/cgroup)"
    echo "load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "dispenser: $(git rev-parse --short HEAD 2>/dev/null || echo unknown), buildtype" \
        "$(python3 -c 'import json, sys; print(next(o["value"] for o in json.load(open(sys.argv[1])) if o["name"] == "buildtype"))' \
            "$BUILD/meson-info/intro-buildoptions.json" 2>/dev/null || echo unknown)"
    echo "bwrap: $(bwrap --version)"
    echo "iterations: N=$N back-to-back=$B2B burst=$BURST pools={$POOLS} callers={$CALLERS}"
}

row() { # row LABEL DISPVM_BENCH_ARGS...
    label=$1; shift
    "$D" -l "$label" "$@" >>"$out/calls.csv"
}

# The newest root layer of a template: the rootfs bwrap runs in (the same bytes).
rootfs_of() {
    uuid=$("$T/qvm-prefs" "$1" uuid)
    ls -d "$tmp/state/volumes/$uuid/root/layers/"* | sort -n -t/ -k1 | tail -1
}

setup_qubes() {
    "$T/qvm-template" build busybox bench-bb >/dev/null
    build_py_template bench-py
    for t in bb py; do
        tpl=bench-$t dvm=bench-dvm work=bench-work
        [ $t = py ] && dvm=bench-py-dvm work=bench-py-work
        "$T/qvm-create" -t "$tpl" -l red "$dvm" >/dev/null
        "$T/qvm-prefs" "$dvm" template_for_dispvms True
        "$T/qvm-create" -t "$tpl" -l blue "$work" >/dev/null
        "$T/qvm-start" "$work"
    done
    "$T/qubes-prefs" default_dispvm bench-dvm
    bb_root=$(rootfs_of bench-bb)
    py_root_vol=$(rootfs_of bench-py)
    echo 'print(sum(i * i for i in range(1000)))' >"$tmp/code.py"
    echo 'echo hi' >"$tmp/echo.sh"
    # the caller qube (Debian: its date has nanoseconds) keeps the inputs in its /tmp
    "$T/qvm-run" -p bench-py-work 'cat >/tmp/code.py' <"$tmp/code.py"
    "$T/qvm-run" -p bench-py-work 'cat >/tmp/echo.sh' <"$tmp/echo.sh"
    cat >"$tmp/policy/30-bench.policy" <<'EOF'
qubes.VMShell       *  bench-py-work  @dispvm:bench-dvm     allow
dispenser.PySandbox *  bench-py-work  @dispvm:bench-py-dvm  allow
qubes.VMShell       *  bench-py-work  @dispvm:bench-vm-dvm  allow
EOF
    kill -HUP "$daemon_pid"
    policy_in_force
}

# The daemon reloads its policy asynchronously: wait until the qube's call is allowed.
policy_in_force() {
    for _ in $(seq 100); do
        "$T/qvm-run" -p bench-py-work 'qrexec-client-vm @dispvm:bench-dvm qubes.VMShell </tmp/echo.sh' \
            >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "bench: the policy for calls from bench-py-work never came into force" >&2
    return 1
}

# pool DVM MAX DELAY: an empty pool, no disposable of earlier scenarios left (their
# teardown would land on this scenario's calls; and while they run, the memory they may
# still grow into leaves none for preloads: a refill finding none waits for the next
# trigger), then the new pool, filled.
pool() {
    "$T/qvm-features" "$1" preload-dispvm-max 0
    for _ in $(seq 600); do
        n=$("$T/qvm-ls" --raw-list | grep -c '^disp' || true)
        [ "$n" -eq 0 ] && break
        sleep 0.05
    done
    [ "$n" -eq 0 ] || { echo "bench: $n disposables of earlier scenarios are still there" >&2; return 1; }
    "$T/qvm-features" "$1" preload-dispvm-delay "$3"
    "$T/qvm-features" "$1" preload-dispvm-max "$2"
    [ "$2" -eq 0 ] || "$D" ${pool_wait:-} wait "$1:$2"
}

# Per workload: the disposable template, the running qube, the service and its input.
workload() {
    case $1 in
    echo) dvm=bench-dvm work=bench-work svc=qubes.VMShell input=$tmp/echo.sh ;;
    py) dvm=bench-py-dvm work=bench-py-work svc=dispenser.PySandbox input=$tmp/code.py ;;
    esac
}

# The service, as the driver calls it: VMShell gets `echo hi` as its command.
call() { # LABEL [DRIVER OPTIONS] MODE ARGS...
    label=$1; shift
    if [ "$svc" = qubes.VMShell ]; then row "$label" "$@"
    else row "$label" -s "$svc" -i "$input" "$@"; fi
}

qvm_run_dispvm() { # LABEL ITERATIONS WAIT
    if [ "$svc" = qubes.VMShell ]; then
        row "$1" -n "$2" $3 spawn "$T/qvm-run" --dispvm="$dvm" -p 'echo hi'
    else
        row "$1" -n "$2" $3 -i "$input" spawn "$T/qvm-run" --dispvm="$dvm" -p --service "$svc"
    fi
}

bwrap_same() { # LABEL: the same work in the same rootfs, under bwrap --unshare-all
    set -- "$1" bwrap --unshare-all --ro-bind
    if [ "$svc" = qubes.VMShell ]; then
        row "$1" -n "$N" spawn "$2" "$3" "$4" "$bb_root" / --proc /proc --dev /dev /bin/sh -c 'echo hi'
    else # a new interpreter, the same imports, the same code: what a cold sandbox pays
        row "$1" -n "$N" -i "$input" spawn "$2" "$3" "$4" "$py_root_vol" / --proc /proc \
            --dev /dev --tmpfs /tmp /usr/local/lib/pysandbox/server.py --once
    fi
}

# From a qube: `qrexec-client-vm @dispvm:T` run inside bench-py-work, timed there with
# date +%s%N (one date fork, ~1 ms, included: see the `clock` row). One qvm-run per call
# so the pool can be waited for between calls. The rows' group: $group (default seq).
from_qube() { # TARGET MAX ITERATIONS
    for i in $(seq 0 $(($3 - 1))); do
        if [ "$2" -gt 0 ]; then "$D" ${pool_wait:-} wait "$dvm:$2" || return 1; fi
        if [ "$1" = clock ]; then
            cmd='t0=$(date +%s%N); t1=$(date +%s%N)'
        else
            cmd="t0=\$(date +%s%N); qrexec-client-vm @dispvm:$dvm $svc <$( [ "$svc" = qubes.VMShell ] && echo /tmp/echo.sh || echo /tmp/code.py) >/dev/null || exit 1; t1=\$(date +%s%N)"
        fi
        us=$("$T/qvm-run" -p bench-py-work "$cmd; echo \$(( (t1 - t0) / 1000 ))") || return 1
        echo "${group:-seq},$w,qube,$1,$2,1,$i,0,,,,,,$(echo "$us" | awk '{printf "%.3f", $1 / 1000}')" >>"$out/calls.csv"
    done
}

sequential() { # WORKLOAD
    w=$1; workload "$w"
    call "seq,$w,host,floor,-,1" -n "$N" thaw "$work" "$run/qubes/$work/agent.sock"
    call "seq,$w,host-router,running,-,1" -n "$N" router "$work"
    bwrap_same "seq,$w,host,bwrap,-,1"
    [ "$w" = echo ] && from_qube clock 0 "$N"
    # normal, then preloaded with the default refill delay (3 s): every call finds a
    # full pool (waited for, untimed) and no refill running
    for m in 0 4; do
        pool "$dvm" "$m" 3
        tgt=normal wait=
        [ "$m" -gt 0 ] && tgt=preload wait="-w $dvm:$m"
        call "seq,$w,host-router,$tgt,$m,1" -n "$N" $wait router "@dispvm:$dvm"
        qvm_run_dispvm "seq,$w,host-qvm-run,$tgt,$m,1" "$N" "$wait"
        call "seq,$w,admin-api,$tgt,$m,1" -n "$N" $wait api "$dvm"
        from_qube "$tgt" "$m" "$N"
    done
    # delay 0: the refill starts at the hand-out, on the daemon's one event loop, while
    # the caller's call (or its next Admin API request) is still going on
    pool "$dvm" 4 0
    call "seq,$w,host-router,preload-d0,4,1" -n "$N" -w "$dvm:4" router "@dispvm:$dvm"
    qvm_run_dispvm "seq,$w,host-qvm-run,preload-d0,4,1" "$N" "-w $dvm:4"
    call "seq,$w,admin-api,preload-d0,4,1" -n "$N" -w "$dvm:4" api "$dvm"
    pool "$dvm" 0 0
}

# max 4, B2B calls in a row with no pause: does the n-th cost what the first did?
back_to_back() { # WORKLOAD
    w=$1; workload "$w"
    for d in 3 0 -1; do
        pool "$dvm" 4 "$d"
        call "b2b-d$d,$w,host-router,preload,4,1" -n "$B2B" router "@dispvm:$dvm"
    done
    pool "$dvm" 0 0
}

concurrent() { # WORKLOAD: 4 callers, each making N calls back to back
    w=$1; workload "$w"
    for m in 0 4; do
        pool "$dvm" "$m" 0
        tgt=normal; [ "$m" -gt 0 ] && tgt=preload
        call "conc4,$w,host-router,$tgt,$m,4" -c 4 -n "$N" router "@dispvm:$dvm"
    done
    pool "$dvm" 0 0
}

burst() { # BURST callers released at once, one call each; normal, then max 8
    w=echo; workload echo
    for m in 0 8; do
        pool "$dvm" "$m" 0
        tgt=normal; [ "$m" -gt 0 ] && tgt=preload
        call "burst,$w,host-router,$tgt,$m,$BURST" -c "$BURST" -n 1 router "@dispvm:$dvm"
    done
    pool "$dvm" 0 0
}

# Where the CPU goes during a scaling point (ticks): the daemon itself, the children it
# reaped (launchers), and the host's busy and total time (all CPUs; other work included).
cpu_ticks() {
    awk '{printf "%d %d ", $14 + $15, $16 + $17}' "/proc/$daemon_pid/stat"
    awk '/^cpu / {printf "%d %d", $2 + $3 + $4 + $7 + $8, $2 + $3 + $4 + $5 + $6 + $7 + $8}' /proc/stat
}

# Pool size x callers: each caller makes calls back to back (delay 0: refill at once);
# at least SCALE_CALLS calls per point, at least 2 per caller.
scaling() {
    w=echo; workload echo
    for m in $POOLS; do
        for c in $CALLERS; do
            pool "$dvm" "$m" 0
            k=$(((SCALE_CALLS + c - 1) / c)); [ "$k" -lt 2 ] && k=2
            tgt=normal; [ "$m" -gt 0 ] && tgt=preload
            before=$(cpu_ticks)
            call "scale,$w,host-router,$tgt,$m,$c" -c "$c" -n "$k" router "@dispvm:$dvm"
            echo "$m,$c,$before,$(cpu_ticks)" | tr ' ' , >>"$out/cpu.csv"
        done
    done
    pool "$dvm" 0 0
}

memavail_kib() { awk '/^MemAvailable/ {print $2}' /proc/meminfo; }

charge_kib() { # what admin.vm.CurrentState reports as the qube's memory (KiB)
    python3 - "$QUBESD_SOCKET" "$1" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
s.sendall(b'admin.vm.CurrentState+ dom0 name ' + sys.argv[2].encode() + b'\0'); s.shutdown(socket.SHUT_WR)
reply = b''.join(iter(lambda: s.recv(4096), b''))[2:].decode()
print(dict(kv.split('=', 1) for kv in reply.split())['mem'])
PY
}

# MemAvailable before and after filling a pool of MEM_POOL, and one preload's charge.
memory() { # DVM NAME
    pool "$1" 0 0
    sync; sleep 1
    before=$(memavail_kib)
    pool "$1" "$MEM_POOL" 0
    sleep 1
    after=$(memavail_kib)
    first=$("$T/qvm-features" "$1" preload-dispvm | cut -d' ' -f1)
    echo "$2,$MEM_POOL,$before,$after,$(charge_kib "$first")" >>"$out/memory.csv"
    pool "$1" 0 0
}
