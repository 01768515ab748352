# Sourced by the bench scripts: a private dispenserd in temp dirs (runtime state on tmpfs,
# as /run/dispenser is), stopped and removed on exit. Needs BUILD set.
# BENCH_DAEMON_ARGS: more options for the daemon (the VM engine's, bench/vm.sh).
# Sets: tmp, run, T (the tools), B (engine_bench), QUBESD_SOCKET (which selects the qrexec
# router too: it listens beside the Admin API socket).
# On exit: stop_private_daemon (below).
start_private_daemon() {
    tmp=$(mktemp -d)
    run=$(mktemp -d /run/dispenser-bench-XXXXXX)
    export QUBESD_SOCKET="$tmp/qubesd.sock"
    mkdir "$tmp/policy"
    "$BUILD/src/daemon/dispenserd" --foreground --state-dir "$tmp/state" --runtime-dir "$run" \
        --socket "$QUBESD_SOCKET" --agent "$BUILD/src/agent/dispenser-agent" \
        --policy-dir "$tmp/policy" ${BENCH_DAEMON_ARGS:-} --log-level ${BENCH_LOG_LEVEL:-warning} ${BENCH_LOG_TIME:+--log-timestamps} 2>"$tmp/log" &
    daemon_pid=$!
    trap stop_private_daemon EXIT
    while [ ! -S "$QUBESD_SOCKET" ] || [ ! -S "$tmp/qubesd.qrexec.sock" ]; do sleep 0.05; done
    T="$BUILD/src/cli"
    B="$BUILD/bench/engine_bench"
}

# Qubes outlive their daemon (a restarted daemon adopts them), so they are stopped
# first: pools emptied (no refill can start behind our back), then every qube killed.
stop_private_daemon() {
    for q in $("$T/qvm-ls" --raw-list 2>/dev/null); do
        [ "$("$T/qvm-prefs" "$q" template_for_dispvms 2>/dev/null)" = True ] &&
            "$T/qvm-features" "$q" preload-dispvm-max 0 2>/dev/null || true
    done
    "$T/qvm-kill" --all >/dev/null 2>&1 || true
    for _ in $(seq 100); do
        [ -z "$("$T/qvm-ls" --raw-list --running --paused 2>/dev/null | grep -v '^dom0$')" ] && break
        sleep 0.05
    done
    kill "$daemon_pid" 2>/dev/null || true
    wait "$daemon_pid" 2>/dev/null || true
    rm -rf "$tmp" "$run"
}
