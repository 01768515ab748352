# Sourced by bench/run.sh: the code-sandbox template, a Debian bookworm minbase with
# python3 and netcat-openbsd whose start-up runs a resident Python interpreter
# (bench/pysandbox/). Needs T (the tools) and tmp (a scratch dir) set.
#
# debootstrap takes ~35 s and needs the network, so its output is kept in
# $DISPENSER_BENCH_CACHE (default /var/cache/dispenser-bench) and reused; the sandbox
# files are laid over it at every run, so the template always matches bench/pysandbox.
PY_CACHE=${DISPENSER_BENCH_CACHE:-/var/cache/dispenser-bench}
PY_PACKAGES=python3,netcat-openbsd

py_rootfs_cached() {
    py_root="$PY_CACHE/bookworm-$(echo "$PY_PACKAGES" | tr , -)"
    [ -d "$py_root" ] && return 0
    mkdir -p "$PY_CACHE"
    rm -rf "$py_root.tmp"
    "$T/qvm-template" build debian bench-cache --staging-dir "$py_root.tmp" \
        --packages "$PY_PACKAGES" >"$tmp/debootstrap.log" 2>&1 ||
        { tail -20 "$tmp/debootstrap.log" >&2; return 1; }
    mv "$py_root.tmp" "$py_root"
}

py_overlay_sandbox() {
    install -D -m 755 bench/pysandbox/server.py "$py_root/usr/local/lib/pysandbox/server.py"
    install -D -m 755 bench/pysandbox/50-pysandbox "$py_root/etc/dispenser/startup.d/50-pysandbox"
    install -D -m 755 bench/pysandbox/dispenser.PySandbox "$py_root/etc/qubes-rpc/dispenser.PySandbox"
}

# build_py_template NAME: through qvm-template import, as a user would bring a rootfs.
build_py_template() {
    py_rootfs_cached || return 1
    py_overlay_sandbox
    tar -C "$py_root" --numeric-owner -cf "$tmp/py-rootfs.tar" .
    "$T/qvm-template" import "$1" "$tmp/py-rootfs.tar" >/dev/null
    rm -f "$tmp/py-rootfs.tar"
}
