#!/usr/bin/env python3
"""Fixed vs auto-sized preload pools (issue 14) on a replayed bursty trace, against a
running dispenserd (QUBESD_SOCKET) that has the busybox template TEMPLATE.

The trace (seeded, so both policies see the same one): bursts of 10-50 requests, each
request 0-SPREAD s (default 0.2) after the one before, with idle stretches between the bursts (idle
minutes, time-compressed to seconds). Each request is `admin.vm.CreateDisposable`, then
`admin.vm.Start` if what came back is not running (a cold disposable); the hand-out
latency is the time until the disposable runs. Each disposable is used for USE seconds,
then killed (it removes itself).

Policies, each on a disposable template of its own (memory MEM MiB, delay 0):
  fixed: preload-dispvm-max FIXED, filled before the trace starts (as after boot);
  auto:  preload-dispvm-auto CEILING, preload-dispvm-idle IDLE, nothing preloaded at start.
The trace's first burst is a warm-up, for both policies alike: auto learns there what a
long-running daemon knows from the days before; it is replayed but not counted (its hit
ratio is reported apart, as `warmup_hit_ratio`; --no-warmup counts it).
Measured: hit ratio (requests served by a ready preload: the daemon's own count), served
by a preload at all (ready, or one still starting that the request waited for), p50/p99
hand-out latency, and preload RAM-seconds: every 0.1 s, (ready + starting) x MEM MiB.
Writes one JSON object per policy to OUT (and prints them)."""

import argparse
import json
import os
import random
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import harness  # noqa: E402

SOCK = os.environ.get("QUBESD_SOCKET", "/run/qubesd.sock")


def call(method, arg="", dest="dom0", payload=b""):
    r = harness.parse_reply(harness.call(SOCK, method, arg, dest, payload, timeout=120))
    if not r.ok:
        raise RuntimeError("%s %s %s: %s" % (method, arg, dest, r))
    return r.content.decode()


def status(dvm):
    line = call("dispenser.preload.Status", "", dvm)
    head = line.rstrip("\n").partition(" failure=")[0]
    return dict(f.split("=", 1) for f in head.split(" ")[1:])


def make_trace(bursts, idle, seed, spread):
    """Request times, the number of them in the first burst, and the trace's end."""
    rng = random.Random(seed)
    t, times, first = 1.0, [], 0
    for _ in range(bursts):
        for _ in range(rng.randint(10, 50)):
            times.append(t)
            t += rng.uniform(0, spread)
        first = first or len(times)
        t += rng.uniform(*idle)
    return times, first, t


def percentile(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))] if s else 0


class Run:
    def __init__(self, dvm, mem, use):
        self.dvm, self.mem, self.use = dvm, mem, use
        self.lat, self.served, self.errors = [], 0, 0
        self.ram_s, self.lock, self.done, self.counting = 0.0, threading.Lock(), False, True

    def request(self, counted=True):
        t0 = time.monotonic()
        try:
            name = call("admin.vm.CreateDisposable", "", self.dvm)
            state = call("admin.vm.CurrentState", "", name)
            running = "power_state=Running" in state
            if not running:
                call("admin.vm.Start", "", name)
            dt = time.monotonic() - t0
            with self.lock:
                if counted:
                    self.lat.append(dt * 1000)
                    self.served += running
            time.sleep(self.use)
            call("admin.vm.Kill", "", name)
        except RuntimeError as e:
            print("request: %s" % e, file=sys.stderr)
            with self.lock:
                self.errors += 1

    def sample(self):
        last = time.monotonic()
        while not self.done:
            time.sleep(0.1)
            st = status(self.dvm)
            now = time.monotonic()
            if self.counting:
                self.ram_s += (int(st["ready"]) + int(st["starting"])) * self.mem * (now - last)
            last = now

    def replay(self, times, warmup, end):
        """Replays the trace; the first `warmup` requests (and the time until the next
        one) are not counted."""
        self.counting = not warmup
        sampler = threading.Thread(target=self.sample)
        sampler.start()
        first = before = status(self.dvm)
        load0 = os.getloadavg()[0]
        start, threads = time.monotonic(), []
        for i, t in enumerate(times):
            delay = start + t - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if warmup and i == warmup:
                before, self.counting = status(self.dvm), True
            th = threading.Thread(target=self.request, args=(i >= warmup,))
            th.start()
            threads.append(th)
        rest = start + end - time.monotonic()
        if rest > 0:
            time.sleep(rest)
        for th in threads:
            th.join()
        self.done = True
        sampler.join()
        after = status(self.dvm)
        n = len(times) - warmup
        hits = int(after["hits"]) - int(before["hits"])
        warm = {}
        if warmup:
            warm_hits = int(before["hits"]) - int(first["hits"])
            warm = {"warmup_requests": warmup, "warmup_hit_ratio": round(warm_hits / warmup, 3)}
        return dict({"requests": n, "errors": self.errors,
                "hit_ratio": round(hits / n, 3),
                "served_by_preload": round(self.served / n, 3),
                "p50_ms": round(percentile(self.lat, 50), 1),
                "p99_ms": round(percentile(self.lat, 99), 1),
                "ram_mib_s": round(self.ram_s), "seconds": round(time.monotonic() - start, 1),
                "learned": {k: after[k] for k in ("burst", "refill_time", "rate")},
                "load": [round(load0, 1), round(os.getloadavg()[0], 1)]}, **warm)


def make_dvm(name, template, mem, features):
    call("admin.vm.Create.AppVM", template, "dom0", ("name=%s label=red" % name).encode())
    call("admin.vm.property.Set", "memory", name, str(mem).encode())
    call("admin.vm.property.Set", "template_for_dispvms", name, b"True")
    call("admin.vm.feature.Set", "preload-dispvm-delay", name, b"0")
    for k, v in features:
        call("admin.vm.feature.Set", k, name, str(v).encode())


def wait(check, timeout=120):
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out")
        time.sleep(0.1)


def empty_pool(dvm):
    for f in ("preload-dispvm-auto", "preload-dispvm-max"):
        harness.call(SOCK, "admin.vm.feature.Remove", f, dvm)
    wait(lambda: status(dvm)["ready"] == "0" and status(dvm)["starting"] == "0")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--template", default="bench-bb")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--fixed", type=int, default=10)
    ap.add_argument("--ceiling", type=int, default=50)
    ap.add_argument("--mem", type=int, default=64)
    ap.add_argument("--use", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=14)
    ap.add_argument("--spread", type=float, default=0.2,
                    help="most seconds between two requests of a burst (default 0.2)")
    ap.add_argument("--no-warmup", action="store_true",
                    help="count the first burst too (auto starts knowing nothing)")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    bursts, idle_gap, idle_after = (4, (8, 12), 30) if a.quick else (8, (20, 40), 60)
    times, first, end = make_trace(bursts, idle_gap, a.seed, a.spread)
    warmup = 0 if a.no_warmup else first
    print("trace: %d requests in %d bursts over %.0f s (0-%.1f s apart in a burst, seed %d),"
          " %s" % (len(times), bursts, end, a.spread, a.seed,
                   "all counted" if not warmup else
                   "the first burst (%d) a warm-up, not counted" % warmup))
    results = []
    policies = [("fixed", [("preload-dispvm-max", a.fixed)], a.fixed),
                ("auto", [("preload-dispvm-auto", a.ceiling), ("preload-dispvm-idle", idle_after),
                          ("preload-dispvm-auto-window", 60)], 0)]
    for label, features, ready in policies:
        dvm = "pools-%s" % label
        make_dvm(dvm, a.template, a.mem, features)
        wait(lambda: int(status(dvm)["ready"]) >= ready)
        r = Run(dvm, a.mem, a.use).replay(times, warmup, end)
        empty_pool(dvm)
        r = dict({"policy": label, "setting": ", ".join("%s=%s" % kv for kv in features)}, **r)
        print(json.dumps(r))
        results.append(r)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(results, f, indent=1)
    return 1 if any(r["errors"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
