"""Chaos: dispenserd is killed with SIGKILL at random moments while drivers do mixed work
on real container qubes (creations, property and feature sets, removals, starts, kills,
`qvm-run --dispvm` calls served by a preload pool, pool resizes and refreshes). After each
kill the daemon restarts and reconciles; then the invariants must hold:

- every acknowledged write is in the database, and no qube is half made;
- every qube the daemon reports running still runs (adopted), every halted one left nothing;
- the preload list is consistent: no name twice, none missing, pool back to its max;
- nothing leaked: processes, mounts, cgroups, runtime and volatile directories, disposables,
  uid range slots.

Besides the daemon, an assassin kills at random the init of a running qube, the agent of a
disposable serving a call (that call may fail; nothing else may), and the daemon's reaper
process (the daemon then cleans up by itself): the same invariants hold after each cycle.

CHAOS_CYCLES sets the number of kills (CI's short mode: 30; `bench/chaos.sh` runs 500 and
prints the figures docs/reliability.md records). CHAOS_SEED replays a run."""

import os
import random
import re
import threading
import time
import unittest

import harness
from harness import run_tool
from test_crash import Unknown, apply, actual_state, harness_names, integrity_check
from test_crash import Writer as CrashWriter
from test_engine import (EngineTestCase, build_template, cgroup_group, mounts_referencing,
                         own_cgroup_bases, range_processes)

CYCLES = int(os.environ.get("CHAOS_CYCLES", "30"))
SEED = int(os.environ.get("CHAOS_SEED", str(int(time.time()))))
LABELS = ["red", "orange", "yellow", "green", "gray", "blue", "purple", "black"]
RUNNERS = ["r0", "r1", "r2"]
DVM = "dvm"
SETTLE_SECONDS = 60


class Driver(threading.Thread):
    """Does its kind of work until the daemon stops answering; remembers what was
    acknowledged, and the one operation whose outcome the kill made unknown."""

    def __init__(self, d, rng):
        super().__init__(daemon=True)
        self.d, self.rng = d, rng
        self.error = None
        self.acked = 0

    def call(self, method, arg, dest, payload=b"", accept=()):
        data = self.d.call(method, arg, dest, payload, timeout=10)
        if not data:
            raise Unknown()
        r = harness.parse_reply(data)
        if not r.ok and r.exc not in accept:
            raise AssertionError("%s+%s on %s refused: %s %s" % (method, arg, dest, r.exc,
                                                                 r.message))
        return r

    def run(self):
        try:
            while True:
                self.step()
                self.acked += 1
        except (Unknown, OSError, ConnectionError):
            return
        except AssertionError as e:
            if self.d.running():  # a refusal from a live daemon is a finding
                self.error = str(e)


class ModelWriter(Driver):
    """Creates, changes and removes its own AppVMs (c-*), as test_crash's writers do."""

    def __init__(self, d, rng, state, seq):
        super().__init__(d, rng)
        self.state, self.pending, self.seq = state, None, seq

    def next_op(self):
        names = sorted(self.state)
        roll = self.rng.random()
        if len(names) < 3 or roll < 0.3:
            self.seq += 1
            return ("create", "c-%d" % self.seq, self.rng.choice(LABELS))
        name = self.rng.choice(names)
        if roll < 0.45:
            return ("remove", name, None)
        if roll < 0.65:
            return ("label", name, self.rng.choice(LABELS))
        if roll < 0.8:
            return ("memory", name, str(self.rng.randint(100, 900)))
        return ("feature", name, "v%d" % self.rng.randint(0, 10 ** 6))

    TEMPLATE = "bb"
    perform = CrashWriter.perform  # the same ops as test_crash's writers

    def step(self):
        op = self.next_op()
        self.pending = op
        self.perform(op)
        self.state = apply(self.state, op)
        self.pending = None


class LifeCycler(Driver):
    """Starts, kills and shuts down the runners; pauses and unpauses them."""

    def step(self):
        name = self.rng.choice(RUNNERS)
        method = self.rng.choice(["admin.vm.Start", "admin.vm.Start", "admin.vm.Kill",
                                  "admin.vm.Pause", "admin.vm.Unpause"])
        # a wrong-state call is a valid refusal
        self.call(method, "", name, accept=("QubesVMNotStartedError", "QubesVMNotHaltedError",
                                            "QubesVMNotRunningError", "QubesVMNotPausedError",
                                            "QubesVMError"))


class DispvmCaller(Driver):
    """Calls into disposables of the pool's template, and now and then resizes the pool
    or changes the template (its preloads become outdated and are refreshed)."""

    def __init__(self, d, rng, shared):
        super().__init__(d, rng)
        self.shared = shared

    def step(self):
        roll = self.rng.random()
        if roll < 0.15:
            self.call("admin.vm.feature.Set", "preload-dispvm-max", DVM,
                      str(self.rng.randint(1, 2)).encode())
            return
        if roll < 0.25:
            self.call("admin.vm.property.Set", "memory", DVM,
                      str(self.rng.randint(200, 400)).encode())
            return
        killed = self.shared["dispvm_kills"]
        # a slow call now and then gives the assassin time to find its agent
        cmd = "sleep 0.5; echo hi" if roll < 0.5 else "echo hi"
        r = run_tool(self.d, "qvm-run", "--dispvm=" + DVM, "-p", cmd, timeout=30)
        if r.returncode != 0 and self.shared["dispvm_kills"] != killed:
            return  # the assassin killed this call's agent (or another call's): may fail
        if r.returncode != 0 or r.stdout != "hi\n":
            time.sleep(0.5)  # a daemon being killed closes its sockets before it is reaped
            if not self.d.running():
                raise Unknown()
            # the daemon may have died and come back between the tool's start and now
            raise AssertionError("qvm-run --dispvm: %d %r %r" % (r.returncode, r.stdout,
                                                                 r.stderr))


def proc_status(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
    except OSError:
        return {}


class Assassin(Driver):
    """Kills what the daemon does not control: a running runner's init, a calling
    disposable's agent, the reaper. `dispvm_kills` counts the agents it killed, so that the
    caller may fail the call whose disposable lost its agent."""

    def __init__(self, d, rng, listing, shared):
        super().__init__(d, rng)
        self.listing, self.shared = listing, shared
        self.kills = {"init": 0, "agent": 0, "reaper": 0}

    def step(self):
        time.sleep(self.rng.uniform(0.1, 0.4))
        if not self.d.running():
            raise Unknown()
        what = self.rng.choice(["init", "agent", "reaper"])
        try:
            pid = getattr(self, "find_" + what)()
        except harness.MalformedReply:
            raise Unknown()  # an empty answer: the daemon is being killed
        if pid is None:
            return
        if what == "agent":
            self.shared["dispvm_kills"] += 1
        try:
            os.kill(pid, 9)
            self.kills[what] += 1
        except ProcessLookupError:
            pass

    def qubes(self, klass, state):
        return [n for n, q in self.listing().items()
                if q["class"] == klass and q["state"] == state]

    def find_init(self):
        """The process that is pid 1 of a running runner."""
        for name in self.rng.sample(RUNNERS, len(RUNNERS)):
            if name not in self.qubes("AppVM", "Running"):
                continue
            for pid in range_processes(self.d, name):
                if proc_status(pid).get("NSpid", "").split("\t")[-1] == "1":
                    return pid
        return None

    def find_agent(self):
        """The agent of a running disposable that is not a preload: a caller's."""
        pool = set(self.shared["pool"]())
        names = [n for n in self.qubes("DispVM", "Running") if n not in pool]
        for name in names:
            for pid in range_processes(self.d, name):
                if proc_status(pid).get("Name") == "dispenser-agent":
                    return pid
        return None

    def find_reaper(self):
        for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
            st = proc_status(pid)
            if st.get("Name") == "dispenser-reap" and st.get("PPid") == str(self.d.pid):
                return pid
        return None


class Chaos(EngineTestCase):
    """One daemon, killed CYCLES times."""

    PER_CLASS = False

    @classmethod
    def populate(cls, d):
        build_template(d, "bb")
        for name in RUNNERS + [DVM]:
            harness.ok_content(d, "admin.vm.Create.AppVM", "bb", "dom0",
                               ("name=%s label=red" % name).encode())
        harness.ok_content(d, "admin.vm.property.Set", "template_for_dispvms", DVM, b"True")
        harness.ok_content(d, "admin.vm.feature.Set", "preload-dispvm-max", DVM, b"2")

    def test_kill_at_random_moments(self):
        rng = random.Random(SEED)
        print("\nchaos: seed %d, %d cycles" % (SEED, CYCLES))
        model, seq, acked, t0 = {}, 0, 0, time.monotonic()
        shared = {"dispvm_kills": 0,
                  "pool": lambda: self.feature(DVM, "preload-dispvm").split()}
        kills = {"init": 0, "agent": 0, "reaper": 0}
        run_tool(self.d, "dispenser-preload", "refill", timeout=60)
        self.settle_pool()
        for cycle in range(CYCLES):
            writer = ModelWriter(self.d, random.Random(rng.random()), model, seq)
            assassin = Assassin(self.d, random.Random(rng.random()), self.listing, shared)
            drivers = [writer, LifeCycler(self.d, random.Random(rng.random())),
                       DispvmCaller(self.d, random.Random(rng.random()), shared), assassin]
            for drv in drivers:
                drv.start()
            time.sleep(rng.uniform(0.05, 1.0))
            self.d.kill()
            for drv in drivers:
                drv.join(40)
                self.assertFalse(drv.is_alive(), "a driver hangs after the kill")
                self.assertIsNone(drv.error, "cycle %d (seed %d)" % (cycle, SEED))
            acked += sum(drv.acked for drv in drivers if drv is not assassin)
            for what, n in assassin.kills.items():
                kills[what] += n
            self.assertEqual([("ok",)], integrity_check(self.d.db_path))
            self.d.start()
            # as the boot unit does (a restart alone makes no new preloads: spec/preload.md)
            r = run_tool(self.d, "dispenser-preload", "refill", timeout=60)
            self.assertEqual(0, r.returncode, r.stderr)
            model = self.check_model(writer, cycle)
            seq = writer.seq
            self.settle_pool()
            self.settled(self.check_nothing_leaked, timeout=20)
            if (cycle + 1) % 25 == 0:  # how far a long run got, should it be cut short
                print("chaos: %d cycles survived, %d acknowledged operations, %.0f s"
                      % (cycle + 1, acked, time.monotonic() - t0), flush=True)
        print("chaos: %d kills survived, %d acknowledged operations, %.0f s, leaks 0; "
              "also killed: %d qube inits, %d disposable agents, %d reapers"
              % (CYCLES, acked, time.monotonic() - t0, kills["init"], kills["agent"],
                 kills["reaper"]))
        self.assertGreater(acked, CYCLES, "the drivers did too little to mean anything")

    # --- invariants ---

    def check_model(self, writer, cycle):
        got = actual_state(self.d, "c-")
        acceptable = [writer.state]
        if writer.pending:
            acceptable.append(apply(writer.state, writer.pending))
        self.assertIn(got, acceptable, "cycle %d (seed %d): pending %r" % (cycle, SEED,
                                                                          writer.pending))
        for name in harness_names(self.d):  # no half-made qube
            props = harness.parse_getall(harness.ok_content(self.d, "admin.vm.property.GetAll",
                                                            "", name))
            self.assertIn(props["label"][2], LABELS, name)
        return got

    def feature(self, vm, name):
        r = harness.parse_reply(self.d.call("admin.vm.feature.Get", name, vm))
        return r.content.decode() if r.ok else ""

    def listing(self):
        out = {}
        for line in harness.ok_content(self.d, "admin.vm.List").decode().splitlines():
            fields = line.split(" ")
            out[fields[0]] = dict(f.split("=", 1) for f in fields[1:])
        return out

    def settle_pool(self):
        """The pool back to its max, every preload completed and paused, no name twice."""
        deadline = time.monotonic() + SETTLE_SECONDS
        while True:
            want = int(self.feature(DVM, "preload-dispvm-max") or "0")
            names = self.feature(DVM, "preload-dispvm").split()
            qubes = self.listing()
            ready = [n for n in names if qubes.get(n, {}).get("state") == "Paused"
                     and self.feature(n, "preload-dispvm-completed")]
            if len(names) == len(set(names)) == want and len(ready) == want:
                return names
            if time.monotonic() > deadline:
                self.fail("pool of %s not back to %d (seed %d): %r, states %r" % (
                    DVM, want, SEED, names, {n: qubes.get(n) for n in names}))
            time.sleep(0.1)

    def check_nothing_leaked(self):
        qubes = self.listing()
        pool = self.feature(DVM, "preload-dispvm").split()
        for name in pool:
            self.assertEqual("DispVM", qubes.get(name, {}).get("class"), name)
        # every disposable is a preload of the pool: the callers' ones went with their calls
        strays = [n for n, q in qubes.items() if q["class"] == "DispVM" and n not in pool]
        self.assertEqual([], strays, "disposables left (seed %d)" % SEED)
        live = {n for n, q in qubes.items() if q["state"] in ("Running", "Paused")}
        for name, q in qubes.items():
            if q["class"] == "AdminVM":
                continue
            procs = range_processes(self.d, name)
            if name in live:
                self.assertNotEqual([], procs, "%s is %s with no process" % (name, q["state"]))
            else:
                self.assertEqual([], procs, "%s is %s but runs" % (name, q["state"]))
        self.assertEqual([], mounts_referencing(self.d.state_dir, self.d.runtime_dir))
        # uid ranges: a slot only for a qube that exists, and no two qubes on one
        uuids = {q.get("uuid") for q in qubes.values()}
        slots_dir = os.path.join(self.d.state_dir, "container", "uids")
        owners = [os.readlink(os.path.join(slots_dir, n)) for n in os.listdir(slots_dir)] \
            if os.path.isdir(slots_dir) else []
        self.assertEqual(set(), set(owners) - uuids, "uid range slots of removed qubes")
        self.assertEqual(len(owners), len(set(owners)), "a qube with two uid ranges")
        group = cgroup_group(self.d.state_dir)
        for base in own_cgroup_bases():
            g = os.path.join(base, group)
            subdirs = {e for e in os.listdir(g) if os.path.isdir(os.path.join(g, e))} \
                if os.path.isdir(g) else set()
            self.assertEqual(set(), subdirs - live, "cgroups left in %s" % g)
        for sub in (os.path.join(self.d.runtime_dir, "qubes"),
                    os.path.join(self.d.state_dir, "volatile")):
            left = set(os.listdir(sub)) if os.path.isdir(sub) else set()
            self.assertEqual(set(), left - live, "left in %s" % sub)
        # processes of qubes this daemon does not know at all
        known = {"/%s/%s" % (group, n) for n in live}
        for pid in range_processes(self.d):
            try:
                with open("/proc/%d/cgroup" % pid) as f:
                    cg = f.read()
            except FileNotFoundError:
                continue  # ended since it was listed (a qube that was being killed)
            self.assertTrue(any(k + "\n" in cg or k + "/" in cg for k in known),
                            "pid %d belongs to no running qube: %s" % (pid, cg.strip()))


if __name__ == "__main__":
    unittest.main()
