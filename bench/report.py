#!/usr/bin/env python3
"""Aggregates one run of bench/run.sh (stdlib only).

    bench/report.py RESULTS_DIR

Reads calls.csv (one row per call), memory.csv and machine.txt, and the VM rows'
vm.txt, vm-memory.csv and vm-refill.csv where the run has them; writes summary.json
(per scenario: n, median, p95, min, max, stage medians, throughput, ratios against the
floor and bwrap; memory; the VM figures; the targets), table.md (the markdown for
docs/benchmarks.md) and the .dat files bench/plots.gp draws.
"""
import csv
import json
import math
import os
import statistics
import sys

KEY = ("group", "workload", "origin", "target", "max", "callers")
STAGES = ("create_ms", "start_ms", "exec_ms", "cleanup_ms")


def pct(values, p):
    """Nearest-rank percentile of a non-empty list."""
    v = sorted(values)
    return v[max(0, math.ceil(p / 100 * len(v)) - 1)]


def load_calls(path):
    scen = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            scen.setdefault(tuple(row[k] for k in KEY), []).append(row)
    return scen


def throughput(rows):
    """Calls per second over the span of the run (from the first start to the last end)."""
    if not rows[0]["t_start_ms"]:
        return None
    start = min(float(r["t_start_ms"]) for r in rows)
    end = max(float(r["t_start_ms"]) + float(r["total_ms"]) for r in rows)
    return len(rows) / ((end - start) / 1e3) if end > start else None


def describe(key, rows):
    total = [float(r["total_ms"]) for r in rows]
    s = dict(zip(KEY, key))
    s.update(n=len(total), median=statistics.median(total), p95=pct(total, 95),
             p25=pct(total, 25), p75=pct(total, 75), lo=min(total), hi=max(total),
             mean=statistics.fmean(total), throughput=throughput(rows))
    if rows[0]["create_ms"]:
        s["stages_median"] = {st[:-3]: statistics.median(float(r[st]) for r in rows)
                              for st in STAGES}
    if key[0].startswith("b2b"):  # in call order: does the n-th cost what the first did?
        s["in_order"] = [float(r["total_ms"]) for r in sorted(rows, key=lambda r: int(r["iteration"]))]
    return s


def name(s):
    return "/".join(s[k] for k in KEY)


def add_ratios(summary):
    by = {name(s): s for s in summary}
    for s in summary:
        for ref in ("floor", "bwrap"):
            r = by.get(f"{s['group']}/{s['workload']}/host/{ref}/-/1")
            if r and s["group"] in ("seq", "vm"):
                s[f"x_{ref}"] = s["median"] / r["median"]
    return by


def load_memory(path):
    mem = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            n = int(r["pool"])
            mem.append({"template": r["template"], "pool": n,
                        "memavail_before_kib": int(r["memavail_before_kib"]),
                        "memavail_after_kib": int(r["memavail_after_kib"]),
                        "per_preload_kib": (int(r["memavail_before_kib"]) - int(r["memavail_after_kib"])) / n,
                        "charge_one_kib": int(r["charge_one_kib"])})
    return mem


def add_cpu(path, by):
    """Scaling points: the daemon's CPU per call and how busy the host was (all CPUs)."""
    if not os.path.exists(path):
        return
    tick_ms = 1000 / os.sysconf("SC_CLK_TCK")
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            s = by.get(f"scale/echo/host-router/{'normal' if r['max'] == '0' else 'preload'}/{r['max']}/{r['callers']}")
            if not s:
                continue
            d = {k: int(r[k + "1"]) - int(r[k + "0"]) for k in ("daemon", "children", "busy", "total")}
            s["daemon_cpu_ms_per_call"] = d["daemon"] * tick_ms / s["n"]
            s["launcher_cpu_ms_per_call"] = d["children"] * tick_ms / s["n"]
            s["host_busy_pct"] = 100 * d["busy"] / d["total"] if d["total"] else None


def targets(by):
    def med(n):
        return by[n]["median"] if n in by else None

    t = {}
    # the floor is measured warm (one thaw after another): so is the preloaded call it is
    # compared with (refill delay 0: the pool is full again within milliseconds, no idle
    # seconds before the call); after the default 3 s delay's idle wait, see the next one
    floor = med("seq/echo/host/floor/-/1")
    for key, row in (("preloaded_qvm_run_vs_floor", "preload-d0"),
                     ("preloaded_qvm_run_after_idle_vs_floor", "preload")):
        pre = med(f"seq/echo/host-qvm-run/{row}/4/1")
        if pre and floor:
            t[key] = {"ratio": pre / floor, "goal": "<= 2", "met": pre / floor <= 2,
                      "preloaded_ms": pre, "floor_ms": floor}
    cold, bw = med("seq/echo/host-router/normal/0/1"), med("seq/echo/host/bwrap/-/1")
    if cold and bw:
        t["cold_busybox_vs_bwrap"] = {"ratio": cold / bw, "goal": "<= 1", "met": cold / bw <= 1,
                                      "cold_ms": cold, "bwrap_ms": bw}
    api = by.get("seq/echo/admin-api/normal/0/1")
    if api and bw:
        st = api["stages_median"]
        t["cold_create_start_vs_bwrap"] = {"ratio": (st["create"] + st["start"]) / bw, "goal": "(context)",
                                           "create_start_ms": st["create"] + st["start"], "bwrap_ms": bw}
    for d in ("3", "0", "-1"):
        s = by.get(f"b2b-d{d}/echo/host-router/preload/4/1")
        if s:
            v = s["in_order"]
            slow = sum(1 for x in v if x > 2 * v[0])
            t[f"back_to_back_delay_{d}"] = {"first_ms": v[0], "worst_ms": max(v), "slower_than_2x_first": slow,
                                            "goal": "each as fast as the first", "met": slow == 0}
    return t


def load_vm(d):
    """The VM rows' side files: notes (vm.txt), paused preloads' RSS, refill times."""
    vm = {"notes": [], "memory": [], "refill": {}}
    path = os.path.join(d, "vm.txt")
    if not os.path.exists(path):
        return None
    vm["notes"] = [l.strip() for l in open(path) if l.strip()]
    vm["skipped"] = any(n.startswith("VM rows skipped") for n in vm["notes"])
    vm["failed"] = [n[len("failed: "):] for n in vm["notes"] if n.startswith("failed: ")]
    vm["accel"] = next((n.split(": ", 1)[1].split()[0] for n in vm["notes"]
                        if n.startswith("accelerator: ")), None)
    path = os.path.join(d, "vm-memory.csv")
    if os.path.exists(path):
        with open(path, newline="") as f:
            for r in csv.DictReader(f):
                vm["memory"].append({"mode": r["mode"], "name": r["name"], "state": r["state"],
                                     "memory_mib": int(r["memory_mib"]), "rss_kib": int(r["rss_kib"]),
                                     "fraction": int(r["rss_kib"]) / (int(r["memory_mib"]) * 1024)})
    path = os.path.join(d, "vm-refill.csv")
    if os.path.exists(path):
        with open(path, newline="") as f:
            for r in csv.DictReader(f):  # per target: boot mode (preload), restore mode
                vm["refill"].setdefault(r["target"], []).append(float(r["refill_ms"]))
    return vm


def vm_targets(by, vm, t):
    """The issue's VM targets, in the same run: preloaded >= 100x faster than cold, within
    3x of the VM floor; a paused preload's RSS <= 60 % of its memory."""
    def med(n):
        return by[n]["median"] if n in by else None

    floor = med("vm/vm-echo/host/floor/-/1")
    for origin in ("host-router", "host-qvm-run", "qube"):
        cold = med(f"vm/vm-echo/{origin}/normal/0/1")
        pre = next((s["median"] for k, s in by.items()
                    if k.startswith(f"vm/vm-echo/{origin}/preload/")), None)
        if cold and pre:
            t[f"vm_cold_vs_preloaded_{origin}"] = {"ratio": cold / pre, "goal": ">= 100", "met": cold / pre >= 100,
                                                   "cold_ms": cold, "preloaded_ms": pre}
        if pre and floor and origin != "qube":
            t[f"vm_preloaded_vs_floor_{origin}"] = {"ratio": pre / floor, "goal": "<= 3", "met": pre / floor <= 3,
                                                    "preloaded_ms": pre, "floor_ms": floor}
    for mode in sorted({m["mode"] for m in vm["memory"]}):
        worst = max((m for m in vm["memory"] if m["mode"] == mode), key=lambda m: m["fraction"])
        t[f"vm_paused_rss_{mode}"] = {"ratio": worst["fraction"], "goal": "<= 0.60", "met": worst["fraction"] <= 0.6,
                                      "rss_kib": worst["rss_kib"], "memory_mib": worst["memory_mib"]}


def ms(x):
    return "—" if x is None else f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def ratio(x):
    return "—" if x is None else f"{x:.2f}"


SEQ_ORDER = [("host", "floor"), ("host-router", "running"), ("host", "bwrap"),
             ("host-router", "normal"), ("host-router", "preload"), ("host-router", "preload-d0"),
             ("host-qvm-run", "normal"), ("host-qvm-run", "preload"), ("host-qvm-run", "preload-d0"),
             ("admin-api", "normal"), ("admin-api", "preload"), ("admin-api", "preload-d0"),
             ("qube", "normal"), ("qube", "preload"), ("qube", "clock")]
LABELS = {
    ("host", "floor"): "floor: thaw + agent round trip",
    ("host-router", "running"): "already running qube (router)",
    ("host", "bwrap"): "`bwrap --unshare-all`, same rootfs",
    ("host-router", "normal"): "`@dispvm` from the host (router), normal",
    ("host-router", "preload"): "`@dispvm` from the host (router), preloaded",
    ("host-router", "preload-d0"): "`@dispvm` from the host (router), preloaded, refill delay 0",
    ("admin-api", "preload-d0"): "Admin API staged, preloaded, refill delay 0",
    ("host-qvm-run", "normal"): "`qvm-run --dispvm -p`, normal",
    ("host-qvm-run", "preload"): "`qvm-run --dispvm -p`, preloaded",
    ("host-qvm-run", "preload-d0"): "`qvm-run --dispvm -p`, preloaded, refill delay 0",
    ("admin-api", "normal"): "Admin API staged, normal",
    ("admin-api", "preload"): "Admin API staged, preloaded",
    ("qube", "normal"): "from a qube (`qrexec-client-vm`), normal",
    ("qube", "preload"): "from a qube (`qrexec-client-vm`), preloaded",
    ("qube", "clock"): "from a qube: the timing's own cost (two `date`)",
}


def seq_rows(summary, w):
    out = []
    for origin, target in SEQ_ORDER:
        for s in summary:
            if (s["group"], s["workload"], s["origin"], s["target"]) == ("seq", w, origin, target):
                out.append(s)
    return out


def table_seq(summary, w):
    lines = [f"| {'`echo hi`' if w == 'echo' else 'Python sandbox'} | n | median ms | p95 ms | x floor | x bwrap |",
             "|---|---:|---:|---:|---:|---:|"]
    for s in seq_rows(summary, w):
        lines.append(f"| {LABELS[(s['origin'], s['target'])]} | {s['n']} | {ms(s['median'])} | {ms(s['p95'])} "
                     f"| {ratio(s.get('x_floor'))} | {ratio(s.get('x_bwrap'))} |")
    return lines


def table_stages(summary):
    lines = ["| Admin API stages (medians, ms) | create | start | exec | cleanup | total |",
             "|---|---:|---:|---:|---:|---:|"]
    for s in summary:
        if "stages_median" in s:
            st = s["stages_median"]
            lines.append(f"| {s['workload']}, {s['target'].replace('preload', 'preloaded')} | {ms(st['create'])} | {ms(st['start'])} "
                         f"| {ms(st['exec'])} | {ms(st['cleanup'])} | {ms(s['median'])} |")
    return lines


def table_concurrent(summary, groups):
    lines = ["| scenario | workload | pool max | callers | calls | median ms | p95 ms | calls/s |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for s in summary:
        if s["group"] in groups:
            lines.append(f"| {s['group']} {s['target']} | {s['workload']} | {s['max']} | {s['callers']} | {s['n']} "
                         f"| {ms(s['median'])} | {ms(s['p95'])} | {ms(s['throughput'])} |")
    return lines


def table_scaling(summary):
    lines = ["| pool max | callers | calls | median ms | p95 ms | calls/s | daemon CPU ms/call "
             "| launcher CPU ms/call | host CPU busy |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in summary:
        if s["group"] == "scale":
            busy = s.get("host_busy_pct")
            lines.append(f"| {s['max']} | {s['callers']} | {s['n']} | {ms(s['median'])} | {ms(s['p95'])} "
                         f"| {ms(s['throughput'])} | {ms(s.get('daemon_cpu_ms_per_call'))} "
                         f"| {ms(s.get('launcher_cpu_ms_per_call'))} | {'—' if busy is None else f'{busy:.0f} %'} |")
    return lines


def table_b2b(summary):
    lines = ["| max 4, calls back to back | first | median | worst | each call in order (ms) |",
             "|---|---:|---:|---:|---|"]
    for s in summary:
        if "in_order" in s:
            v = s["in_order"]
            lines.append(f"| {s['workload']}, delay {s['group'][5:]} | {ms(v[0])} | {ms(s['median'])} "
                         f"| {ms(max(v))} | {' '.join(ms(x) for x in v)} |")
    return lines


def table_memory(mem):
    lines = ["| template | pool | MemAvailable drop per preload | charge of one paused preload |",
             "|---|---:|---:|---:|"]
    for m in mem:
        lines.append(f"| {m['template']} | {m['pool']} | {m['per_preload_kib'] / 1024:.1f} MiB "
                     f"| {m['charge_one_kib']} KiB |")
    return lines


def table_targets(t):
    lines = ["| target | measured | verdict |", "|---|---|---|"]
    for key, how in (("preloaded_qvm_run_vs_floor", "warm, as the floor"),
                     ("preloaded_qvm_run_after_idle_vs_floor", "after the 3 s refill delay's idle wait")):
        if key in t:
            x = t[key]
            lines.append(f"| preloaded `qvm-run --dispvm -p 'echo hi'` within 2x of the floor ({how}) | "
                         f"{ms(x['preloaded_ms'])} ms / {ms(x['floor_ms'])} ms = {x['ratio']:.2f} | "
                         f"{'met' if x['met'] else 'missed'} |")
    if "cold_busybox_vs_bwrap" in t:
        x = t["cold_busybox_vs_bwrap"]
        lines.append(f"| cold busybox disposable no slower than bwrap | {ms(x['cold_ms'])} ms / "
                     f"{ms(x['bwrap_ms'])} ms = {x['ratio']:.2f} | {'met' if x['met'] else 'missed'} |")
    if "cold_create_start_vs_bwrap" in t:
        x = t["cold_create_start_vs_bwrap"]
        lines.append(f"| (context) cold disposable created + started until its agent answers, vs bwrap's whole `echo` "
                     f"| {ms(x['create_start_ms'])} ms / {ms(x['bwrap_ms'])} ms = {x['ratio']:.2f} | — |")
    for d in ("3", "0", "-1"):
        x = t.get(f"back_to_back_delay_{d}")
        if x:
            lines.append(f"| max 4, back-to-back calls each as fast as the first (delay {d}) | first {ms(x['first_ms'])} ms, "
                         f"worst {ms(x['worst_ms'])} ms, {x['slower_than_2x_first']} calls > 2x the first "
                         f"| {'met' if x['met'] else 'missed'} |")
    return lines


def headline(by):
    lines = ["| a disposable answering the call | cold | preloaded | speed-up |", "|---|---:|---:|---:|"]
    for w, what in (("echo", "`echo hi` (busybox)"), ("py", "Python sandbox (Debian, resident interpreter)")):
        for origin, how in (("host-router", "through the router"), ("host-qvm-run", "`qvm-run --dispvm -p`")):
            c, p = by.get(f"seq/{w}/{origin}/normal/0/1"), by.get(f"seq/{w}/{origin}/preload/4/1")
            if c and p:
                lines.append(f"| {what}, {how} | {ms(c['median'])} ms | {ms(p['median'])} ms "
                             f"| {c['median'] / p['median']:.1f}x |")
    for origin, how in (("host-router", "through the router"), ("host-qvm-run", "`qvm-run --dispvm -p`")):
        c, p = by.get(f"vm/vm-echo/{origin}/normal/0/1"), by.get(f"vm/vm-echo/{origin}/preload/2/1")
        if c and p:
            lines.append(f"| `echo hi`, VM (QEMU), {how} | {ms(c['median'])} ms | {ms(p['median'])} ms "
                         f"| {c['median'] / p['median']:.0f}x |")
    return lines


VM_ORDER = [("host-qvm-start", "boot"), ("host", "floor-first"), ("host", "floor"), ("host-router", "running"),
            ("host-router", "normal"), ("host-router", "preload"), ("host-qvm-run", "normal"),
            ("host-qvm-run", "preload"), ("host-qvm-run", "preload-restore"), ("qube", "normal"),
            ("qube", "preload")]
VM_LABELS = {
    ("host-qvm-start", "boot"): "`qvm-start` of a VM (boot until its agent answers)",
    ("host", "floor-first"): "a VM's first call after its boot: unpause + agent round trip",
    ("host", "floor"): "VM floor: unpause (QMP `cont`) + agent round trip",
    ("host-router", "running"): "already running VM (router)",
    ("host-router", "normal"): "`@dispvm` from the host (router), cold VM",
    ("host-router", "preload"): "`@dispvm` from the host (router), preloaded VM",
    ("host-qvm-run", "normal"): "`qvm-run --dispvm -p`, cold VM",
    ("host-qvm-run", "preload"): "`qvm-run --dispvm -p`, preloaded VM",
    ("host-qvm-run", "preload-restore"): "`qvm-run --dispvm -p`, preloaded VM restored from a golden VM",
    ("qube", "normal"): "from a qube (`qrexec-client-vm`), cold VM",
    ("qube", "preload"): "from a qube (`qrexec-client-vm`), preloaded VM",
}


def table_vm(summary, vm):
    """One table (no blank line: publish.py splits table.md on them)."""
    if vm is None:
        return ["| VM disposables | |", "|---|---|", "| not run (this run has no vm.txt) | |"]
    if vm["skipped"]:
        return ["| VM disposables | |", "|---|---|"] + [f"| {n} | |" for n in vm["notes"]]
    lines = [f"| VM disposables (QEMU, {vm['accel'] or 'accelerator unknown'}), `echo hi` "
             "| n | median ms | p95 ms | min ms | max ms | x VM floor |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for origin, target in VM_ORDER:
        for s in summary:
            if (s["group"], s["origin"], s["target"]) == ("vm", origin, target):
                lines.append(f"| {VM_LABELS[(origin, target)]} | {s['n']} | {ms(s['median'])} | {ms(s['p95'])} "
                             f"| {ms(s['lo'])} | {ms(s['hi'])} | {ratio(s.get('x_floor'))} |")
    how = {"preload": "delay 3 s + a boot", "preload-restore": "delay 3 s + a restore from the golden VM"}
    for target, r in sorted(vm["refill"].items()):
        lines.append(f"| refill: hand-out until the pool is full again ({how.get(target, target)}) | {len(r)} "
                     f"| {ms(statistics.median(r))} | {ms(pct(r, 95))} | {ms(min(r))} | {ms(max(r))} | |")
    for f in vm["failed"]:
        lines.append(f"| **failed**: {f} | | | | | | |")
    return lines


def table_vm_memory(vm):
    lines = ["| paused VM preload | state | `memory` | host RSS (QEMU) | RSS / memory |",
             "|---|---|---:|---:|---:|"]
    if not vm or vm["skipped"]:
        return lines + ["| (VM rows skipped) | | | | |"]
    for m in vm["memory"]:
        lines.append(f"| {m['name']} ({m['mode']}) | {m['state']} | {m['memory_mib']} MiB "
                     f"| {m['rss_kib'] / 1024:.0f} MiB | {100 * m['fraction']:.0f} % |")
    if not vm["memory"]:
        lines.append("| **failed**: no paused preload measured | | | | |")
    return lines


def table_vm_targets(t, vm):
    lines = ["| VM target | measured | verdict |", "|---|---|---|"]
    if not vm or vm["skipped"]:
        return lines + ["| (VM rows skipped) | — | — |"]
    how = {"host-router": "through the router", "host-qvm-run": "`qvm-run --dispvm -p`",
           "qube": "from a qube"}
    for origin in ("host-router", "host-qvm-run", "qube"):
        x = t.get(f"vm_cold_vs_preloaded_{origin}")
        if x:
            lines.append(f"| preloaded VM hand-out >= 100x faster than a cold VM disposable ({how[origin]}) "
                         f"| {ms(x['cold_ms'])} ms / {ms(x['preloaded_ms'])} ms = {x['ratio']:.0f}x "
                         f"| {'met' if x['met'] else 'missed'} |")
        x = t.get(f"vm_preloaded_vs_floor_{origin}")
        if x:
            lines.append(f"| preloaded VM hand-out within 3x of the VM floor ({how[origin]}) "
                         f"| {ms(x['preloaded_ms'])} ms / {ms(x['floor_ms'])} ms = {x['ratio']:.2f} "
                         f"| {'met' if x['met'] else 'missed'} |")
    for key, x in t.items():
        if key.startswith("vm_paused_rss_"):
            lines.append(f"| paused VM preload's host RSS <= 60 % of its `memory` ({key[len('vm_paused_rss_'):]}; "
                         f"the largest) | {x['rss_kib'] / 1024:.0f} MiB / {x['memory_mib']} MiB = "
                         f"{100 * x['ratio']:.0f} % | {'met' if x['met'] else 'missed'} |")
    return lines


def write_table(path, summary, by, mem, t, machine, vm):
    parts = [["Machine: " + "; ".join(machine)], headline(by), table_seq(summary, "echo"),
             table_seq(summary, "py"), table_stages(summary), table_b2b(summary),
             table_concurrent(summary, ("conc4", "burst")), table_scaling(summary),
             table_memory(mem), table_targets(t), table_vm(summary, vm), table_vm_memory(vm),
             table_vm_targets(t, vm)]
    with open(path, "w") as f:
        f.write("\n\n".join("\n".join(p) for p in parts) + "\n")


# ---- data for bench/plots.gp ----

SHORT = {("host", "floor"): "floor", ("host-router", "running"): "running", ("host", "bwrap"): "bwrap",
         ("host-router", "normal"): "router", ("host-router", "preload"): "router",
         ("host-router", "preload-d0"): "router d0", ("admin-api", "preload-d0"): "API d0",
         ("host-qvm-run", "normal"): "qvm-run", ("host-qvm-run", "preload"): "qvm-run",
         ("host-qvm-run", "preload-d0"): "qvm-run d0",
         ("admin-api", "normal"): "admin API", ("admin-api", "preload"): "admin API",
         ("qube", "normal"): "from qube", ("qube", "preload"): "from qube"}
KIND = {"floor": 0, "running": 0, "bwrap": 0, "normal": 1, "preload": 2, "preload-d0": 2}


def write_dist(d, summary, w):
    """x, label, kind (0 reference, 1 normal, 2 preloaded), min p25 median p75 p95."""
    with open(os.path.join(d, f"dist-{w}.dat"), "w") as f:
        x = 0
        for s in seq_rows(summary, w):
            if s["target"] == "clock":
                continue
            x += 1
            f.write(f'{x} "{SHORT[(s["origin"], s["target"])]}" {KIND[s["target"]]} {s["lo"]} {s["p25"]} '
                    f'{s["median"]} {s["p75"]} {s["p95"]}\n')


def write_scaling(d, summary):
    pools = []
    for s in summary:
        if s["group"] == "scale":
            if s["max"] not in pools:
                pools.append(s["max"])
            with open(os.path.join(d, f"scale-m{s['max']}.dat"), "a") as f:
                f.write(f"{s['callers']} {s['median']} {s['p95']} {s['throughput']}\n")
    return pools


def write_b2b(d, summary):
    with open(os.path.join(d, "b2b.dat"), "w") as f:
        for s in summary:
            if "in_order" in s and s["workload"] == "echo":
                f.write(f'"delay {s["group"][5:]}"\n')
                f.writelines(f"{i + 1} {v}\n" for i, v in enumerate(s["in_order"]))
                f.write("\n\n")


def write_memory(d, mem):
    with open(os.path.join(d, "memory.dat"), "w") as f:
        for i, m in enumerate(mem):
            f.write(f'{i} "{m["template"]}" {m["charge_one_kib"] / 1024} {m["per_preload_kib"] / 1024}\n')


def main():
    d = sys.argv[1]
    for old in os.listdir(d):  # a re-run of the report starts from clean data files
        if old.endswith(".dat"):
            os.remove(os.path.join(d, old))
    scen = load_calls(os.path.join(d, "calls.csv"))
    summary = [describe(k, rows) for k, rows in scen.items()]
    by = add_ratios(summary)
    mem = load_memory(os.path.join(d, "memory.csv"))
    add_cpu(os.path.join(d, "cpu.csv"), by)
    t = targets(by)
    vm = load_vm(d)
    if vm and not vm["skipped"]:
        vm_targets(by, vm, t)
    machine = [l.strip() for l in open(os.path.join(d, "machine.txt"))]
    with open(os.path.join(d, "summary.json"), "w") as f:
        json.dump({"machine": machine, "scenarios": summary, "memory": mem, "vm": vm, "targets": t},
                  f, indent=1)
    write_table(os.path.join(d, "table.md"), summary, by, mem, t, machine, vm)
    for w in ("echo", "py"):
        write_dist(d, summary, w)
    pools = write_scaling(d, summary)
    write_b2b(d, summary)
    write_memory(d, mem)
    with open(os.path.join(d, "plotvars.gp"), "w") as f:
        f.write(f'pools = "{" ".join(pools)}"\n')
    print("\n".join(headline(by)))
    print("\n".join(table_targets(t)))
    print("\n".join(table_vm(summary, vm)))
    print("\n".join(table_vm_memory(vm)))
    print("\n".join(table_vm_targets(t, vm)))


if __name__ == "__main__":
    main()
