# Sourced by the bench scripts: a private dispenserd in temp dirs (runtime state on tmpfs,
# as /run/dispenser is), stopped and removed on exit. Needs BUILD set.
# Sets: tmp, run, T (the tools), B (engine_bench), QUBESD_SOCKET, DISPENSER_QREXEC_SOCKET.
start_private_daemon() {
    tmp=$(mktemp -d)
    run=$(mktemp -d /run/dispenser-bench-XXXXXX)
    export QUBESD_SOCKET="$tmp/qubesd.sock" DISPENSER_QREXEC_SOCKET="$run/qrexec.sock"
    mkdir "$tmp/policy"
    "$BUILD/src/daemon/dispenserd" --foreground --state-dir "$tmp/state" --runtime-dir "$run" \
        --socket "$QUBESD_SOCKET" --agent "$BUILD/src/agent/dispenser-agent" \
        --policy-dir "$tmp/policy" --log-level ${BENCH_LOG_LEVEL:-warning} ${BENCH_LOG_TIME:+--log-timestamps} 2>"$tmp/log" &
    daemon_pid=$!
    trap 'kill "$daemon_pid" 2>/dev/null; wait "$daemon_pid" 2>/dev/null; rm -rf "$tmp" "$run"' EXIT
    while [ ! -S "$QUBESD_SOCKET" ]; do sleep 0.05; done
    T="$BUILD/src/cli"
    B="$BUILD/bench/engine_bench"
}
