# Sourced by bench/run.sh: VM disposables (virt_mode=qemu) beside the container rows.
# Qubes: bench-vm-dvm (a disposable template on the busybox template, virt_mode qemu) and
# bench-vm-work (a running VM: the floor). Rows go to calls.csv (group "vm", workload
# "vm-echo"); vm-memory.csv: host RSS of each paused preload; vm-hibernate.csv: host RSS and
# disk bytes of each hibernated one (VM_HIBERNATE_ONLY=1: only the cold, preloaded and
# hibernated rows); vm-refill.csv: hand-out to
# full pool again (target preload: booted; preload-restore: restored from a golden VM); vm.txt: what ran, the accelerator, and every measurement that failed.
# Where QEMU, the guest kernel or mkfs.erofs is missing the VM rows are skipped and
# vm.txt and the output say why. A failed VM measurement is written to vm.txt and makes
# the run's exit status non-zero; the other VM measurements still run.

VM_KERNEL=${DISPENSER_VM_KERNEL:-/var/cache/dispenser/vm-kernel}
VM_WAIT="-t 900" # a VM preload boots for seconds (more under TCG on loaded cores)
VM_MAX=2         # the VM disposable template's pool
vm_failures=0
vm_guest=

vm_missing() {
    command -v qemu-system-x86_64 >/dev/null ||
        { echo "qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)"; return; }
    [ -f "$VM_KERNEL/vmlinux" ] ||
        { echo "no guest kernel in $VM_KERNEL (scripts/fetch-vm-kernel.sh)"; return; }
    command -v mkfs.erofs >/dev/null ||
        { echo "mkfs.erofs is not installed (apt-get install erofs-utils)"; return; }
    [ -x "$BUILD/src/backend/vmux/dispenser-vmux" ] ||
        echo "no $BUILD/src/backend/vmux/dispenser-vmux (build first)"
}

# Before the daemon starts: the guest (kernel + initramfs with this build's agent) and
# the engine's options. Sets VM_SKIP (empty: VM rows run) and BENCH_DAEMON_ARGS.
vm_prepare() {
    VM_SKIP=
    if [ "${BENCH_NO_VM:-0}" = 1 ]; then VM_SKIP="BENCH_NO_VM=1"; return; fi
    VM_SKIP=$(vm_missing)
    [ -z "$VM_SKIP" ] || return 0
    vm_guest=$(mktemp -d /tmp/dispenser-bench-vm-guest-XXXXXX)
    if ! scripts/build-vm-guest.sh "$BUILD/src/agent/dispenser-agent" "$vm_guest" "$VM_KERNEL" \
        >"$vm_guest.log" 2>&1; then
        VM_SKIP="scripts/build-vm-guest.sh failed: $(tail -1 "$vm_guest.log")"
        return 0
    fi
    BENCH_DAEMON_ARGS="--engine-option qemu.guest-dir=$vm_guest --engine-option qemu.vmux=$BUILD/src/backend/vmux/dispenser-vmux"
}

vm_machine_description() {
    if [ -n "$VM_SKIP" ]; then echo "vm: skipped: $VM_SKIP"; return; fi
    echo "qemu: $(qemu-system-x86_64 --version | head -1); guest kernel $(cat "$VM_KERNEL/version" 2>/dev/null || echo unknown); /dev/kvm: $([ -e /dev/kvm ] && echo present || echo absent)"
    echo "vm iterations: floor=$VM_N cold=$VM_COLD preloaded=$VM_PRE from-qube cold=$VM_QUBE_COLD preloaded=$VM_QUBE_PRE pool max=$VM_MAX"
}

vm_cleanup() { [ -z "$vm_guest" ] || rm -rf "$vm_guest" "$vm_guest.log"; }

vm_note() { echo "$*" >>"$out/vm.txt"; echo "   $*"; }

vm_failed() {
    vm_failures=$((vm_failures + 1))
    echo "failed: $*" >>"$out/vm.txt"
    echo "bench: VM measurement failed: $*" >&2
}

# The quick run's VM rows stay short: past VM_BUDGET seconds (0: none) the rows that
# are not needed for the targets are skipped, and the output and vm.txt say so.
vm_within_budget() { # WHAT
    [ "${VM_BUDGET:-0}" -gt 0 ] || return 0
    [ $(($(date +%s) - vm_started)) -le "$VM_BUDGET" ] && return 0
    vm_note "skipped: $1 (quick mode: the VM rows' budget of $VM_BUDGET s is spent; a loaded machine boots slowly)"
    return 1
}

# vm_try WHAT COMMAND...: a measurement; its failure is recorded, the suite goes on.
vm_try() {
    what=$1; shift
    "$@" || vm_failed "$what"
}

vm_field() { # NAME FIELD: a line of the engine's state file of a running VM
    sed -n "s/^$2 //p" "$run/qemu/$1/state" 2>/dev/null
}

vm_current_state() { # QUBE KEY: one key of admin.vm.CurrentState ("-" if absent)
    python3 - "$QUBESD_SOCKET" "$1" "$2" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
s.sendall(b'admin.vm.CurrentState+ dom0 name ' + sys.argv[2].encode() + b'\0'); s.shutdown(socket.SHUT_WR)
reply = b''.join(iter(lambda: s.recv(4096), b''))[2:].decode()
print(dict(kv.split('=', 1) for kv in reply.split() if '=' in kv).get(sys.argv[3], '-'))
PY
}

vm_rss_kib() { # PID
    awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null
}

vm_setup() {
    "$T/qvm-create" -t bench-bb -l red bench-vm-dvm >/dev/null || return 1
    "$T/qvm-prefs" bench-vm-dvm virt_mode qemu || return 1
    "$T/qvm-prefs" bench-vm-dvm template_for_dispvms True || return 1
    "$T/qvm-prefs" bench-vm-dvm qrexec_timeout 300 || return 1 # its disposables inherit it
    "$T/qvm-create" -t bench-bb -l blue bench-vm-work >/dev/null || return 1
    "$T/qvm-prefs" bench-vm-work virt_mode qemu || return 1
    "$T/qvm-prefs" bench-vm-work qrexec_timeout 300 || return 1
}

# The VM floor: a running VM paused (untimed), then admin.vm.Unpause (QMP cont) and
# `echo hi` through its agent (the copy path through dispenser-vmux), after a first such
# call (its own row); and the same VM running, through the router. The VM's first start builds the template's root image,
# which every later VM of this revision shares (the cold rows do not pay for it).
vm_floor() {
    row "vm,vm-echo,host-qvm-start,boot,-,1" -n 1 spawn "$T/qvm-start" bench-vm-work || return 1
    accel=$(vm_field bench-vm-work accel)
    vm_note "accelerator: ${accel:-unknown} (RUNTIME/qemu/bench-vm-work/state; admin.vm.CurrentState says accel=$(vm_current_state bench-vm-work accel))"
    [ "$accel" = tcg ] && [ ! -e /dev/kvm ] && vm_note "accelerator reason: no /dev/kvm on this host"
    # its first call after the boot, as every preload's hand-out is: the guest has not
    # yet run the shell (not in its page cache, not yet translated under TCG)
    row "vm,vm-echo,host,floor-first,-,1" -C -n 1 thaw bench-vm-work \
        "$run/qemu/bench-vm-work/agent.sock" || return 1
    row "vm,vm-echo,host,floor,-,1" -C -n "$VM_N" thaw bench-vm-work \
        "$run/qemu/bench-vm-work/agent.sock" || return 1
    row "vm,vm-echo,host-router,running,-,1" -n "$VM_N" router bench-vm-work || return 1
    "$T/qvm-kill" bench-vm-work
}

vm_cold() {
    pool bench-vm-dvm 0 3 || return 1
    row "vm,vm-echo,host-router,normal,0,1" -n "$VM_COLD" router @dispvm:bench-vm-dvm || return 1
    row "vm,vm-echo,host-qvm-run,normal,0,1" -n "$VM_COLD" \
        spawn "$T/qvm-run" --dispvm=bench-vm-dvm -p 'echo hi' || return 1
}

vm_cold_from_qube() {
    pool bench-vm-dvm 0 3 || return 1
    group=vm
    from_qube normal 0 "$VM_QUBE_COLD"; r=$?
    group=seq
    return $r
}

# Preloaded, the default refill delay (3 s): before each call the pool is waited for
# (untimed) until full; after it, the time until the pool is full again (the refill:
# the 3 s delay, then a boot) goes to vm-refill.csv.
vm_preloaded() {
    pool bench-vm-dvm "$VM_MAX" 3 || return 1
    row "vm,vm-echo,host-router,preload,$VM_MAX,1" $VM_WAIT -w "bench-vm-dvm:$VM_MAX" \
        -r "$out/vm-refill.csv" -n "$VM_PRE" router @dispvm:bench-vm-dvm || return 1
    row "vm,vm-echo,host-qvm-run,preload,$VM_MAX,1" $VM_WAIT -w "bench-vm-dvm:$VM_MAX" \
        -r "$out/vm-refill.csv" -n "$VM_PRE" spawn "$T/qvm-run" --dispvm=bench-vm-dvm -p 'echo hi' ||
        return 1
}

vm_preloaded_from_qube() {
    pool bench-vm-dvm "$VM_MAX" 3 || return 1
    group=vm
    from_qube preload "$VM_MAX" "$VM_QUBE_PRE"; r=$?
    group=seq
    return $r
}

# Host RSS of each paused preload of a full pool (QEMU's VmRSS) against the qube's
# `memory`. MODE names the setting measured (the default; qemu-balloon=0).
vm_memory() { # MODE
    pool bench-vm-dvm "$VM_MAX" 3 || return 1
    sleep 1
    n=0
    for q in $("$T/qvm-features" bench-vm-dvm preload-dispvm); do
        pid=$(vm_field "$q" pid)
        rss=$([ -n "$pid" ] && vm_rss_kib "$pid")
        mem=$("$T/qvm-prefs" "$q" memory)
        state=$("$T/qvm-ls" --raw-data --fields NAME,STATE "$q" 2>/dev/null | cut -d'|' -f2)
        [ -n "$rss" ] && [ -n "$mem" ] || { echo "bench: no RSS for preload $q (pid '$pid')" >&2; return 1; }
        echo "$1,$q,${state:-?},$mem,$rss" >>"$out/vm-memory.csv"
        n=$((n + 1))
    done
    [ "$n" -gt 0 ]
}

# Restore mode (feature qemu-preload-mode=restore): preloads restored copy-on-write from
# one saved golden VM instead of each booting. Its first preloads boot while the golden
# VM boots and is saved beside them; once it is, the pool is emptied and refilled (all
# clones), then the hand-outs and their refills (restores) are timed and the paused
# clones' RSS measured.
vm_golden_saved() { # no golden VM of this daemon is still booting, and one has its state
    ls "$run"/qemu-golden/*/*/state >/dev/null 2>&1 || return 1
    ! ls -d "$run"/qemu/@golden-* >/dev/null 2>&1
}

vm_restore() {
    pool bench-vm-dvm 0 3 || return 1
    "$T/qvm-features" bench-vm-dvm qemu-preload-mode restore || return 1
    t0=$(date +%s)
    pool bench-vm-dvm "$VM_MAX" 3 || return 1
    while ! vm_golden_saved; do
        [ $(($(date +%s) - t0)) -lt 900 ] || { echo "bench: no golden VM saved in 900 s" >&2; return 1; }
        sleep 0.5
    done
    vm_note "restore mode: the golden VM saved $(($(date +%s) - t0)) s after the pool was asked for (its first preloads booted meanwhile)"
    pool bench-vm-dvm "$VM_MAX" 3 || return 1 # now every preload is a clone
    row "vm,vm-echo,host-qvm-run,preload-restore,$VM_MAX,1" $VM_WAIT -w "bench-vm-dvm:$VM_MAX" \
        -r "$out/vm-refill.csv" -n "$VM_PRE" spawn "$T/qvm-run" --dispvm=bench-vm-dvm -p 'echo hi' ||
        return 1
    vm_memory restore
}

# The hibernated tier (feature preload-dispvm-hibernated): a pool of VM_MAX preloads whose
# state is saved to disk (preload-dispvm-max 0: none paused), so every hand-out wakes one
# (a new QEMU loading its image). Per hibernated preload, to vm-hibernate.csv: its host
# memory (the RSS of QEMU processes named after it: none runs) and its bytes on disk (the
# image, and the private image it keeps).
vm_hibernate_sizes() {
    n=0
    for q in $("$T/qvm-features" bench-vm-dvm preload-dispvm); do
        [ "$("$T/qvm-features" "$q" preload-dispvm-saved)" = 1 ] || continue
        dir="$tmp/state/qemu/hibernate/$("$T/qvm-prefs" "$q" uuid)"
        rss=0
        for pid in $(pgrep -f -- "-name $q,debug-threads" || true); do
            rss=$((rss + $(vm_rss_kib "$pid")))
        done
        image=$(stat -c '%b %B' "$dir/image" | awk '{print $1 * $2}')
        private=$(stat -c '%b %B' "$dir/private.img" 2>/dev/null | awk '{print $1 * $2}')
        echo "$q,$("$T/qvm-prefs" "$q" memory),$rss,$image,${private:-0}" >>"$out/vm-hibernate.csv"
        n=$((n + 1))
    done
    [ "$n" -gt 0 ]
}

vm_hibernated() {
    pool bench-vm-dvm 0 3 || return 1
    "$T/qvm-features" bench-vm-dvm preload-dispvm-hibernated "$VM_MAX" || return 1
    "$D" $VM_WAIT wait "bench-vm-dvm:$VM_MAX" || return 1
    vm_hibernate_sizes || return 1
    row "vm,vm-echo,host-qvm-run,preload-hibernated,$VM_MAX,1" $VM_WAIT -w "bench-vm-dvm:$VM_MAX" \
        -r "$out/vm-refill.csv" -n "$VM_PRE" spawn "$T/qvm-run" --dispvm=bench-vm-dvm -p 'echo hi' ||
        return 1
    "$T/qvm-features" --unset bench-vm-dvm preload-dispvm-hibernated
}

# Ballooning (feature qemu-balloon, 0 = off) is measured both ways where this build
# knows the feature (its name is in the daemon), else the default alone.
vm_suite() {
    if [ -n "$VM_SKIP" ]; then
        vm_note "VM rows skipped: $VM_SKIP"
        return 0
    fi
    [ "$QUICK" = 1 ] && vm_note "quick mode: VM samples cut to floor $VM_N, cold $VM_COLD, preloaded $VM_PRE per origin, from a qube $VM_QUBE_COLD cold / $VM_QUBE_PRE preloaded (a VM boot costs seconds under TCG)"
    echo "group,workload,origin,target,max,callers,iteration,refill_ms" >"$out/vm-refill.csv"
    echo "mode,name,state,memory_mib,rss_kib" >"$out/vm-memory.csv"
    echo "name,memory_mib,rss_kib,image_bytes,private_bytes" >"$out/vm-hibernate.csv"
    vm_started=$(date +%s)
    w=vm-echo dvm=bench-vm-dvm svc=qubes.VMShell input=$tmp/echo.sh pool_wait=$VM_WAIT
    if ! vm_setup; then vm_failed "setting up the VM qubes"; return 0; fi
    if [ "${VM_HIBERNATE_ONLY:-0}" = 1 ]; then # the tier beside what it is compared with
        step "VM disposables, cold (x$VM_COLD)"; vm_try "cold VM disposables" vm_cold
        step "VM disposables, preloaded (max $VM_MAX, x$VM_PRE)"; vm_try "preloaded VM disposables" vm_preloaded
        step "VM disposables, hibernated (x$VM_PRE)"; vm_try "hibernated VM disposables" vm_hibernated
        pool bench-vm-dvm 0 0 || vm_failed "emptying the VM pool"
        return 0
    fi
    step "VM floor: unpause (QMP cont) + agent round trip"; vm_try "VM floor" vm_floor
    step "VM disposables, cold (x$VM_COLD)"; vm_try "cold VM disposables" vm_cold
    step "VM disposables, preloaded (max $VM_MAX, x$VM_PRE)"; vm_try "preloaded VM disposables" vm_preloaded
    step "VM memory: paused preloads' RSS"; vm_try "paused VM preload RSS (default)" vm_memory default
    # the same preloads without the balloon: what shrinking before the pause saves
    if vm_within_budget "paused VM preload RSS with qemu-balloon=0"; then
        "$T/qvm-features" bench-vm-dvm preload-dispvm-max 0
        "$T/qvm-features" bench-vm-dvm qemu-balloon 0
        vm_try "paused VM preload RSS (qemu-balloon=0)" vm_memory qemu-balloon=0
        "$T/qvm-features" --unset bench-vm-dvm qemu-balloon
    fi
    if vm_within_budget "hibernated VM disposables"; then
        step "VM disposables, hibernated (max 0 + hibernated $VM_MAX, x$VM_PRE)"
        vm_try "hibernated VM disposables" vm_hibernated
    fi
    step "VM disposables restored from a golden VM (max $VM_MAX, x$VM_PRE)"
    vm_try "VM preloads restored from a golden VM" vm_restore
    "$T/qvm-features" bench-vm-dvm preload-dispvm-max 0
    "$T/qvm-features" --unset bench-vm-dvm qemu-preload-mode
    if vm_within_budget "VM disposables from a qube"; then
        step "VM disposables, cold, from a qube (x$VM_QUBE_COLD)"
        vm_try "cold VM disposables from a qube" vm_cold_from_qube
        step "VM disposables, preloaded, from a qube (x$VM_QUBE_PRE)"
        vm_try "preloaded VM disposables from a qube" vm_preloaded_from_qube
    fi
    pool bench-vm-dvm 0 0 || vm_failed "emptying the VM pool"
    vm_note "VM rows took $(($(date +%s) - vm_started)) s"
    [ "$vm_failures" = 0 ] || vm_note "VM measurements failed: $vm_failures"
}
