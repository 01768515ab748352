#!/usr/bin/env python3
"""Fixed vs auto-sized preload pools on a model host: the sizing logic without the noise.

bench/pools.py replays a trace against the real daemon; on a shared 2-vCPU machine its
figures move with the other jobs' load from one run to the next (fixed and auto run one
after the other, under different load). This replays the same traces (pools.make_trace,
same seeds, same warm-up burst not counted) against a model of the host, with the
daemon's own sizing code: src/daemon/preload_demand.c is compiled into a shared library
and called through ctypes (demand_note_request, demand_note_refill, demand_target), so
the rule measured is the one the daemon runs, not a copy.

The model host: a start (a preload's, or a cold disposable's) takes BASE seconds that
starts do not share (default 0.3: waits on the kernel, the agent's first answer), then
WORK CPU-seconds (default 0.05) of CPUS (default 1: half of two shared vCPUs) shared
equally by the starts at that stage (processor sharing). The defaults give what
bench/pools.py measured here: a refill time of ~0.3-0.6 s with ten preloads starting
together; --work 0.25 is a host that cannot keep up with a dense burst. A
request takes a ready preload (a hit, HIT_MS), else waits for the starting preload
closest to ready, else starts a cold disposable and waits for it. The pool is sized
every STEP: fixed keeps FIXED ready + starting; auto keeps demand_target's (trimming the
newest first, as the daemon trims the list's tail). A preload's time from its start to
ready feeds demand_note_refill, as in the daemon. RAM-seconds: (ready + starting) x MEM.
Deliberately left out: the daemon's one-piece-of-work-per-loop refill steps, the hold
while calls run, the disposables' own use of CPU after the hand-out."""

import argparse
import ctypes
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from pools import make_trace, percentile  # noqa: E402

STEP = 0.01
HIT_MS = 15.0


class Demand(ctypes.Structure):
    _fields_ = [("rate", ctypes.c_double), ("burst", ctypes.c_double),
                ("burst_rate", ctypes.c_double), ("current", ctypes.c_uint),
                ("burst_start", ctypes.c_double), ("last", ctypes.c_double),
                ("refill_s", ctypes.c_double), ("refill_low_s", ctypes.c_double),
                ("requests", ctypes.c_uint64),
                ("hits", ctypes.c_uint64)]


def load_demand_lib():
    src = os.path.join(HERE, "..", "src", "daemon", "preload_demand.c")
    out = os.path.join(tempfile.mkdtemp(prefix="pools-model-"), "libdemand.so")
    subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", out, src, "-lm"], check=True)
    lib = ctypes.CDLL(out)
    d, dbl = ctypes.POINTER(Demand), ctypes.c_double
    lib.demand_init.argtypes = [d]
    lib.demand_note_request.argtypes = [d, dbl, dbl, ctypes.c_bool]
    lib.demand_note_refill.argtypes = [d, dbl]
    lib.demand_target.argtypes = [d, dbl, dbl, dbl, dbl, ctypes.c_uint]
    lib.demand_target.restype = ctypes.c_uint
    return lib


class Job:
    """One start; compared by identity (two may look alike)."""

    def __init__(self, base, work, now):
        self.wait, self.left, self.since = base, work, now
        self.waiter, self.preload = None, False


class Host:
    """Each start waits BASE seconds (not shared), then needs WORK CPU-seconds of CPUS
    shared equally by the starts at that stage."""

    def __init__(self, cpus, base, work):
        self.cpus, self.base, self.work, self.jobs = cpus, base, work, []

    def start(self, now):
        job = Job(self.base, self.work, now)
        self.jobs.append(job)
        return job

    def step(self, dt):
        busy = [j for j in self.jobs if j.wait <= 0]
        share = min(1.0, self.cpus / len(busy)) * dt if busy else 0
        done = []
        for j in self.jobs:
            if j.wait > 0:
                j.wait -= dt
                continue
            j.left -= share
            if j.left <= 0:
                done.append(j)
        self.jobs = [j for j in self.jobs if j.left > 0]
        return done


def simulate(lib, times, warmup, end, policy, a):
    host, d = Host(a.cpus, a.base, a.work), Demand()
    lib.demand_init(ctypes.byref(d))
    starting, ready, lat = [], 0, []  # preload jobs still starting; ready ones: a count
    hits = served = 0
    ram_s, i, now = 0.0, 0, 0.0
    if policy == "fixed":
        ready = a.fixed  # filled before the trace, as after boot
    while now < end or host.jobs:
        counted = i >= warmup
        while i < len(times) and times[i] <= now:
            counted = i >= warmup
            lib.demand_note_request(ctypes.byref(d), now, a.window, ready > 0)
            if ready > 0:
                ready -= 1
                if counted:
                    hits += 1
                    served += 1
                    lat.append(HIT_MS)
            elif starting:
                job = min(starting, key=lambda j: j.left)
                starting.remove(job)
                job.waiter = (now, counted)
                if counted:
                    served += 1
            else:
                host.start(now).waiter = (now, counted)
            i += 1
        for job in host.step(STEP):
            if job.waiter is not None:
                if job.waiter[1]:
                    lat.append((now + STEP - job.waiter[0]) * 1000)
                if job.preload:
                    lib.demand_note_refill(ctypes.byref(d), now + STEP - job.since)
            elif job.preload:
                starting.remove(job)
                ready += 1
                lib.demand_note_refill(ctypes.byref(d), now + STEP - job.since)
        now += STEP
        if policy == "fixed":
            target = a.fixed
        else:
            target = lib.demand_target(ctypes.byref(d), now, a.window, a.idle, 0, a.ceiling)
        while ready + len(starting) > target:  # the list's tail: the newest first
            if starting:
                job = starting.pop()
                host.jobs.remove(job)
            else:
                ready -= 1
        while ready + len(starting) < target and now < end:
            job = host.start(now)
            job.preload = True
            starting.append(job)
        if i > warmup and now < end:
            ram_s += (ready + len(starting)) * a.mem * STEP
    n = len(times) - warmup
    return {"policy": policy, "requests": n, "hit_ratio": round(hits / n, 3),
            "served_by_preload": round(served / n, 3),
            "p50_ms": round(percentile(lat, 50), 1), "p99_ms": round(percentile(lat, 99), 1),
            "ram_mib_s": round(ram_s)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--fixed", type=int, default=10)
    ap.add_argument("--ceiling", type=int, default=50)
    ap.add_argument("--mem", type=int, default=64)
    ap.add_argument("--cpus", type=float, default=1.0)
    ap.add_argument("--base", type=float, default=0.3)
    ap.add_argument("--work", type=float, default=0.05)
    ap.add_argument("--seeds", default="14,7,3")
    ap.add_argument("--spreads", default="0.2,0.6")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    bursts, idle_gap, a.idle = (4, (8, 12), 30) if a.quick else (8, (20, 40), 60)
    a.window = 60.0
    lib = load_demand_lib()
    rows = []
    for spread in [float(s) for s in a.spreads.split(",")]:
        for seed in [int(s) for s in a.seeds.split(",")]:
            times, first, end = make_trace(bursts, idle_gap, seed, spread)
            for policy in ("fixed", "auto"):
                r = simulate(lib, times, first, end, policy, a)
                r = dict({"spread": spread, "seed": seed}, **r)
                rows.append(r)
                print(json.dumps(r))
    if a.out:
        with open(a.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
