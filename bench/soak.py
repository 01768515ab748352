"""The soak: CALLERS concurrent callers doing `qvm-run --dispvm=dvm -p 'echo hi'` against a
preload pool for SECONDS, with SUBSCRIBERS admin.Events subscribers connected throughout.

Reports calls, failures, latency percentiles, the daemon's RSS and open descriptors at the
start and the end (after the same settling), and checks afterwards: every subscriber is
still connected and has every event the daemon sent (each sees the same count, and a
marker sent last), nothing is left (no stray disposable, no process, mount or cgroup of a
qube that does not run). Exit status 1 if any call failed or any check did not hold.

Run by bench/soak.sh (which sets the build's paths)."""

import argparse
import json
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

import harness  # noqa: E402
from test_engine import (build_template, cgroup_group, mounts_referencing,  # noqa: E402
                         own_cgroup_bases, range_processes)

DVM = "dvm"


def daemon_rss_kib(d):
    with open("/proc/%d/status" % d.pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def timed_call(d, method, arg="", dest="dom0", payload=b""):
    """A call while the daemon may still be busy with the soak's aftermath: a generous
    timeout, and the slowest answer kept as a figure (is the daemon responsive?)."""
    t0 = time.monotonic()
    r = harness.parse_reply(d.call(method, arg, dest, payload, timeout=120))
    SLOWEST_CALL[0] = max(SLOWEST_CALL[0], time.monotonic() - t0)
    return r


def feature(d, vm, name):
    r = timed_call(d, "admin.vm.feature.Get", name, vm)
    return r.content.decode() if r.ok else ""


SLOWEST_CALL = [0.0]  # the longest answer while settling: is the daemon responsive?


def listing(d):
    out = {}
    r = timed_call(d, "admin.vm.List")
    if not r.ok:
        raise AssertionError("admin.vm.List: %s" % r.message)
    text = r.content.decode()
    for line in text.splitlines():
        fields = line.split(" ")
        out[fields[0]] = dict(f.split("=", 1) for f in fields[1:])
    return out


def settle(d, pool, timeout=120):
    """Until the pool is full and paused and no other disposable exists. A refill the
    memory threshold held back waits for the next trigger (spec/preload.md: n = 0 means
    wait): once the callers' disposables are gone, one more call is that trigger."""
    deadline = time.monotonic() + timeout
    triggered = False
    while time.monotonic() < deadline:
        names = feature(d, DVM, "preload-dispvm").split()
        qubes = listing(d)
        others = [n for n, q in qubes.items() if q["class"] == "DispVM" and n not in names]
        if len(names) == pool and not others and all(
                qubes.get(n, {}).get("state") == "Paused" for n in names):
            return True
        if not others and len(names) < pool and not triggered:
            harness.run_tool(d, "qvm-run", "--dispvm=" + DVM, "-p", "true", timeout=60)
            triggered = True
        time.sleep(0.2)
    return False


class Caller(threading.Thread):
    def __init__(self, d, deadline):
        super().__init__(daemon=True)
        self.d, self.deadline = d, deadline
        self.times, self.failures = [], []

    def run(self):
        while time.monotonic() < self.deadline:
            t0 = time.monotonic()
            try:
                r = harness.run_tool(self.d, "qvm-run", "--dispvm=" + DVM, "-p", "echo hi",
                                     timeout=120)
                ok = r.returncode == 0 and r.stdout == "hi\n"
                why = "exit %d: %s" % (r.returncode, r.stderr.strip()[-200:])
            except Exception as e:  # a timeout is a failed call
                ok, why = False, repr(e)
            if ok:
                self.times.append(time.monotonic() - t0)
            else:
                self.failures.append(why)


def leftovers(d):
    qubes = listing(d)
    live = {n for n, q in qubes.items() if q["state"] in ("Running", "Paused")}
    found = []
    group = cgroup_group(d.state_dir)
    for base in own_cgroup_bases():
        g = os.path.join(base, group)
        if os.path.isdir(g):
            found += ["cgroup %s/%s" % (g, e) for e in os.listdir(g)
                      if os.path.isdir(os.path.join(g, e)) and e not in live]
    found += ["mount " + m.strip() for m in mounts_referencing(d.state_dir, d.runtime_dir)]
    known = ["/%s/%s" % (group, n) for n in live]
    for pid in range_processes(d):
        try:
            with open("/proc/%d/cgroup" % pid) as f:
                cg = f.read()
        except FileNotFoundError:
            continue
        if not any(k + "\n" in cg or k + "/" in cg for k in known):
            found.append("process %d" % pid)
    return found


def percentile(values, p):
    if not values:
        return 0.0
    v = sorted(values)
    return v[min(len(v) - 1, int(p / 100.0 * len(v)))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=int, default=600)
    ap.add_argument("--callers", type=int, default=100)
    ap.add_argument("--subscribers", type=int, default=200)
    ap.add_argument("--pool", type=int, default=4)
    ap.add_argument("--out", help="write the figures as JSON here")
    ap.add_argument("--keep-log", help="copy the daemon's log here at the end")
    a = ap.parse_args()

    d = harness.Daemon(log_level="debug" if a.keep_log else "info")
    d.start()
    try:
        return soak(d, a)
    finally:
        if a.keep_log:
            with open(a.keep_log, "w") as f:
                f.write(d.log())
        d.cleanup()


def soak(d, a):
    build_template(d, "bb")
    harness.ok_content(d, "admin.vm.Create.AppVM", "bb", "dom0", b"name=%s label=red" % DVM.encode())
    harness.ok_content(d, "admin.vm.property.Set", "template_for_dispvms", DVM, b"True")
    harness.ok_content(d, "admin.vm.feature.Set", "preload-dispvm-max", DVM, str(a.pool).encode())
    if not settle(d, a.pool):
        print("soak: the pool never filled", file=sys.stderr)
        return 1
    subscribers = [harness.EventStream(d.socket) for _ in range(a.subscribers)]
    time.sleep(1)
    rss0, fds0 = daemon_rss_kib(d), d.open_fds()
    print("soak: %d callers, %d subscribers, pool %d, %d s" % (a.callers, a.subscribers, a.pool,
                                                                a.seconds))
    t0 = time.monotonic()
    callers = [Caller(d, t0 + a.seconds) for _ in range(a.callers)]
    for c in callers:
        c.start()
    for c in callers:
        c.join()
    elapsed = time.monotonic() - t0
    settled = settle(d, a.pool)
    timed_call(d, "admin.vm.feature.Set", "soak-marker", "dom0", b"end")
    got_marker = [s.wait_for(lambda evs: any(e[1].startswith("domain-feature-set")
                                             and e[0] == "dom0" for e in evs), timeout=30)
                  for s in subscribers]
    counts = {len(s.snapshot()) for s in subscribers}
    dropped = sum(1 for s in subscribers if s.closed)
    # the daemon ends qubes after answering (nobody waits for cleanup): give it time
    deadline = time.monotonic() + 30
    while leftovers(d) and time.monotonic() < deadline:
        time.sleep(0.5)
    left = leftovers(d)
    rss1, fds1 = daemon_rss_kib(d), d.open_fds()
    for s in subscribers:
        s.close()
    times = [t for c in callers for t in c.times]
    failures = [f for c in callers for f in c.failures]
    fig = {
        "seconds": round(elapsed, 1), "callers": a.callers, "subscribers": a.subscribers,
        "pool": a.pool, "calls": len(times) + len(failures), "failed": len(failures),
        "calls_per_s": round(len(times) / elapsed, 1),
        "p50_ms": round(percentile(times, 50) * 1000, 1),
        "p99_ms": round(percentile(times, 99) * 1000, 1),
        "daemon_rss_kib": [rss0, rss1], "daemon_fds": [fds0, fds1],
        "subscribers_dropped": dropped,
        "subscribers_missing_marker": sum(1 for g in got_marker if not g),
        "subscriber_event_counts": sorted(counts), "leftovers": left, "pool_settled": settled,
        "slowest_call_after_ms": round(SLOWEST_CALL[0] * 1000, 1),
    }
    if len(left) > 10:
        fig["leftovers"] = left[:10] + ["... %d in all" % len(left)]
    print("soak: " + json.dumps(fig))
    for f in failures[:5]:
        print("soak: failed call: " + f, file=sys.stderr)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(fig, f, indent=1)
    ok = (not failures and not left and settled and not dropped
          and not fig["subscribers_missing_marker"] and len(counts) == 1)
    print("soak: %s" % ("ok" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
