#!/bin/sh
# The benchmark and scaling suite: normal vs preloaded disposables, in one command.
#   bench/run.sh [--quick] [--publish] [--no-vm | --vm-only] [BUILD_DIR]   (BUILD_DIR: build)
# A private dispenserd (temp dirs, nothing on the host touched) with a busybox template
# (`echo`) and a Debian template running a resident Python interpreter (the code
# sandbox); every call's timings go to bench/results/<time>-<full|quick>/calls.csv,
# then summary.json, table.md (to paste into docs/benchmarks.md) and the PNG plots.
# Then VM disposables (virt_mode=qemu, bench/vm.sh): cold, preloaded, the VM floor,
# paused preloads' RSS, refill times, the accelerator; skipped, saying why, where QEMU
# or the guest kernel is missing (or with --no-vm); --vm-only runs the VM rows alone
# (no container scenarios, no plots).
# Then fixed max vs auto-sized pools on a replayed bursty trace (bench/pools.py:
# $out/pools.json, pools.txt; the same traces on a model host, bench/pools_model.py:
# pools_model.json, pools_model.txt).
# --quick: fewer iterations and callers, every kind of scenario still run once, few VM
# samples, a shorter trace (CI).
# --publish: also copy the plots, summary.json, table.md and machine.txt to docs/bench/
# and replace the tables of docs/benchmarks.md (bench/publish.py); with --vm-only, only
# the VM tables are replaced and no file is copied.
# No timing is asserted: the exit status says whether every call worked.
set -eu
cd "$(dirname "$0")/.."
QUICK=0
PUBLISH=0
VM_ONLY=0
BUILD=build
for a in "$@"; do
    case $a in
    --quick) QUICK=1 ;;
    --publish) PUBLISH=1 ;;
    --no-vm) BENCH_NO_VM=1 ;;
    --vm-only) VM_ONLY=1 ;;
    -h | --help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "bench/run.sh: unknown option $a" >&2; exit 2 ;;
    *) BUILD=$a ;;
    esac
done
[ "$VM_ONLY" = 0 ] || [ "${BENCH_NO_VM:-0}" = 0 ] || { echo "bench/run.sh: --vm-only and --no-vm exclude each other" >&2; exit 2; }
command -v gnuplot >/dev/null || { echo "bench/run.sh: gnuplot not found (apt-get install gnuplot-nox)" >&2; exit 1; }
command -v bwrap >/dev/null || { echo "bench/run.sh: bwrap not found (apt-get install bubblewrap)" >&2; exit 1; }
[ -x "$BUILD/bench/dispvm_bench" ] || { echo "bench/run.sh: build first: ninja -C $BUILD" >&2; exit 1; }

if [ "$QUICK" = 1 ]; then
    N=2 B2B=6 BURST=20 POOLS="0 2" CALLERS="1 4" SCALE_CALLS=8 MEM_POOL=2 kind=quick
    VM_N=5 VM_COLD=1 VM_PRE=3 VM_QUBE_COLD=1 VM_QUBE_PRE=1 VM_BUDGET=120
else
    N=12 B2B=12 BURST=100 POOLS="0 1 2 4 6 8" CALLERS="1 2 4 8 16 32" SCALE_CALLS=128 MEM_POOL=6 kind=full
    VM_N=12 VM_COLD=5 VM_PRE=10 VM_QUBE_COLD=3 VM_QUBE_PRE=5
fi
[ "$VM_ONLY" = 0 ] || kind=$kind-vm
out="$PWD/bench/results/$(date -u +%Y%m%d-%H%M%S)-$kind"
mkdir -p "$out"
ln -sfn "$(basename "$out")" bench/results/latest

. bench/lib.sh
. bench/pytemplate.sh
. bench/suite.sh
. bench/vm.sh
vm_prepare
start_private_daemon
trap 'stop_private_daemon; vm_cleanup' EXIT
D="$BUILD/bench/dispvm_bench"
started=$(date +%s)
machine_description >"$out/machine.txt"
vm_machine_description >>"$out/machine.txt"
echo "results: $out"
echo "group,workload,origin,target,max,callers,iteration,caller,t_start_ms,create_ms,start_ms,exec_ms,cleanup_ms,total_ms" >"$out/calls.csv"
echo "template,pool,memavail_before_kib,memavail_after_kib,charge_one_kib" >"$out/memory.csv"
echo "max,callers,daemon0,children0,busy0,total0,daemon1,children1,busy1,total1" >"$out/cpu.csv"
setup_qubes
if [ "$VM_ONLY" = 0 ]; then
    for w in echo py; do
        step "sequential ($w)"; sequential "$w"
        step "back to back, delays 3, 0, -1 ($w)"; back_to_back "$w"
        step "4 concurrent callers ($w)"; concurrent "$w"
    done
    step "burst of $BURST"; burst
    step "scaling: pools {$POOLS} x callers {$CALLERS}"; scaling
    step "memory"; memory bench-dvm busybox; memory bench-py-dvm python
    step "pools: fixed max vs preload-dispvm-auto, bursty trace"
    python3 bench/pools.py --template bench-bb $([ "$QUICK" = 1 ] && echo --quick) \
        --out "$out/pools.json" >"$out/pools.txt"
    cat "$out/pools.txt"
    step "pools on a model host (the same traces, the daemon's sizing code)"
    python3 bench/pools_model.py $([ "$QUICK" = 1 ] && echo --quick) \
        --out "$out/pools_model.json" >"$out/pools_model.txt"
    cat "$out/pools_model.txt"
fi
vm_suite
echo "suite: $(($(date +%s) - started)) s" >>"$out/machine.txt"
python3 bench/report.py "$out"
[ "$VM_ONLY" = 1 ] || gnuplot -e "dir='$out'" bench/plots.gp
if [ "$PUBLISH" = 1 ]; then
    if [ "$VM_ONLY" = 1 ]; then python3 bench/publish.py "$out" vm vm-memory vm-targets
    else python3 bench/publish.py "$out"; fi
fi
echo "done in $(($(date +%s) - started)) s: $out (table: $out/table.md)"
[ "$vm_failures" = 0 ] || { echo "bench/run.sh: $vm_failures VM measurement(s) failed: see $out/vm.txt" >&2; exit 1; }
