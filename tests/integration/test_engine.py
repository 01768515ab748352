"""The container engine's life cycle, driven through the Admin API and the qvm-* tools
against a private dispenserd (as root): AppVM, TemplateVM and StandaloneVM start, pause,
unpause, shutdown and kill with their states and events; CurrentState; start failures
that leave no trace; a qube powering itself off; template revisions; the private volume;
kill -9 of the daemon while qubes run, adoption and the clean-up of leftovers.

Also the shared machinery of test_isolation.py (EngineTestCase, trace checks)."""

import os
import re
import shutil
import signal
import sqlite3
import subprocess
import time
import unittest

import harness
from harness import Daemon, EventStream, parse_reply, run_tool

RANGE_BASE = 0x60000000  # the canonical range: what volumes are owned by on disk
RANGE_COUNT = 65536
RANGE_SLOTS = 1024  # a qube's root is host uid RANGE_BASE + slot * RANGE_COUNT, slot >= 1
LIFE_EVENTS = ("domain-pre-start", "domain-start", "domain-start-failed", "domain-paused",
               "domain-unpaused", "domain-pre-shutdown", "domain-shutdown")


def engine_skip_reason():
    if os.geteuid() != 0:
        return "the container engine needs root"
    for path in (harness.DISPENSERD, harness.AGENT, harness.AGENT_CLIENT,
                 harness.tool_path("qvm-template")):
        if not os.access(path, os.X_OK):
            return "%s is not built" % path
    return None


# --- what a qube leaves on the host ---

def cgroup_group(state_dir):
    """The engine's per-state-dir cgroup directory name (FNV-1a of the real path)."""
    h = 2166136261
    for b in os.path.realpath(state_dir).encode():
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return "dispenser-%08x" % h


def own_cgroup_bases():
    """Hierarchy directories of our own cgroups, where the daemon (our child) puts its
    group: the unified one and the v1 controllers the engine uses."""
    bases = []
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if controllers == "":
                root = "/sys/fs/cgroup/unified"
                if not os.path.isdir(root):
                    root = "/sys/fs/cgroup"
            elif set(controllers.split(",")) & {"memory", "pids", "cpu"}:
                root = "/sys/fs/cgroup/" + controllers
            else:
                continue
            bases.append(os.path.normpath(root + path))
    return bases


def qube_cgroup_dirs(d, name):
    group = cgroup_group(d.state_dir)
    return [os.path.join(b, group, name) for b in own_cgroup_bases()]


def unified_cgroup_dir(d, name):
    return qube_cgroup_dirs(d, name)[0]


def proc_uid(pid):
    """Real uid of a live process; None when gone or a zombie. A zombie holds nothing but
    its pid, and the init of an adopted qube (no longer the daemon's child) is reaped by
    the host's init whenever that gets to it."""
    try:
        with open("/proc/%s/status" % pid) as f:
            for line in f:
                if line.startswith("State:") and line.split()[1] in ("Z", "X"):
                    return None
                if line.startswith("Uid:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return None


def proc_cgroup2(pid):
    try:
        with open("/proc/%s/cgroup" % pid) as f:
            for line in f:
                if line.startswith("0::"):
                    return line[3:].strip()
    except (FileNotFoundError, ProcessLookupError):
        pass
    return ""


def range_processes(d, name=None):
    """Host pids running as a qube uid that are this daemon's (of qube `name`, or of any
    qube), or in no daemon's group at all. Other daemons' qubes (tests run side by side
    and share the uid range) are told apart by their cgroup. A process in no group is
    looked at again a moment later: one that another daemon is launching has its qube's
    uid before it is moved into its qube's group, and one that ended meanwhile is none."""
    group = cgroup_group(d.state_dir)
    mine = "/%s/%s" % (group, name) if name else "/%s/" % group

    def in_range(pid):
        uid = proc_uid(pid)
        return uid is not None and RANGE_BASE <= uid < RANGE_BASE + RANGE_SLOTS * RANGE_COUNT

    out, groupless = [], []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or not in_range(pid):
            continue
        cg = proc_cgroup2(pid)
        if mine in cg + "/":
            out.append(int(pid))
        elif "/dispenser-" not in cg and os.path.exists("/proc/" + pid):
            groupless.append(pid)
    if groupless:
        time.sleep(0.3)
        out += [int(pid) for pid in groupless
                if in_range(pid) and "/dispenser-" not in proc_cgroup2(pid)
                and os.path.exists("/proc/" + pid)]
    return sorted(out)


def mounts_referencing(*paths):
    real = [os.path.realpath(p) for p in paths]
    with open("/proc/self/mountinfo") as f:
        return [l for l in f if any(p in l for p in real)]


# --- the test case base ---

@unittest.skipIf(engine_skip_reason(), engine_skip_reason())
class EngineTestCase(harness.DaemonTestCase):
    """One daemon per class with the busybox template `bb` built."""

    PER_CLASS = True
    TEMPLATE = "bb"

    @classmethod
    def populate(cls, d):
        build_template(d, cls.TEMPLATE)

    # Qubes outlive their daemon by design: every daemon's qubes are killed before it
    # stops, whatever a test left running, or they would run on after the test.
    def setUp(self):
        super().setUp()
        if not self.shared:
            self.addCleanup(kill_all_qubes, self.d)  # runs before the daemon's clean-up

    @classmethod
    def tearDownClass(cls):
        leftovers = kill_all_qubes(cls.shared) if cls.shared else []
        super().tearDownClass()
        if leftovers:
            raise AssertionError("processes left after killing every qube: %s" % leftovers)

    # --- calls ---

    def start(self, name):
        self.ok("admin.vm.Start", dest=name)

    def start_err(self, name):
        return self.err("admin.vm.Start", dest=name, exc="QubesException")

    def shutdown(self, name):
        self.ok("admin.vm.Shutdown", "wait", name)

    def kill(self, name):
        self.ok("admin.vm.Kill", dest=name)

    def set_prop(self, vm, prop, value):
        self.ok("admin.vm.property.Set", prop, vm, str(value).encode())

    def api_state(self, name):
        for line in self.ok("admin.vm.List").decode().splitlines():
            fields = line.split(" ")
            if fields[0] == name:
                return dict(f.split("=", 1) for f in fields[1:])["state"]
        self.fail("%s not in admin.vm.List" % name)

    def ls_state(self, name):
        r = run_tool(self.d, "qvm-ls")
        self.assertEqual(0, r.returncode, r.stderr)
        for line in r.stdout.splitlines()[1:]:
            cols = line.split()
            if cols and cols[0] == name:
                return cols[1]
        self.fail("%s not in qvm-ls:\n%s" % (name, r.stdout))

    def assert_state(self, name, state):
        self.assertEqual(state, self.api_state(name))
        self.assertEqual(state, self.ls_state(name))

    def current_state(self, name):
        text = self.ok("admin.vm.CurrentState", dest=name).decode()
        out = dict(kv.split("=", 1) for kv in text.split(" "))
        return {k: (v if k in ("power_state", "accel") else int(v)) for k, v in out.items()}

    def volume_info(self, name, volume="root"):
        text = self.ok("admin.vm.volume.Info", volume, name).decode()
        return dict(line.split("=", 1) for line in text.splitlines())

    def tool(self, name, *args):
        r = run_tool(self.d, name, *args)
        self.assertEqual(0, r.returncode, "%s %s: %s%s" % (name, args, r.stdout, r.stderr))
        return r

    def qrun(self, name, command, user=None, input=None, check=True, timeout=20):
        """Runs a shell command inside the qube; returns CompletedProcess (bytes)."""
        r = qrun(self.d, name, command, user, input, timeout)
        if check:
            self.assertEqual(0, r.returncode, "%r in %s: %r %r" % (command, name, r.stdout,
                                                                   r.stderr))
        return r

    def qout(self, name, command, user=None):
        return self.qrun(name, command, user).stdout.decode()

    def new_appvm(self, name, template=None):
        self.create("AppVM", name, template=template or self.TEMPLATE)
        self.addCleanup(self.remove_quietly, name)

    def remove_quietly(self, name):
        """Clean-up: kill if running, remove; tolerant, the test may have done it."""
        self.d.call("admin.vm.Kill", dest=name)
        self.d.call("admin.vm.Remove", dest=name)

    def events(self):
        ev = EventStream(self.d.socket)
        self.addCleanup(ev.close)
        self.assertTrue(ev.wait_for(lambda evs: any(e[1] == "connection-established"
                                                    for e in evs), 5))
        return ev

    def wait_state(self, name, state, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.api_state(name) == state:
                return
            time.sleep(0.01)
        self.assertEqual(state, self.api_state(name))

    def qube_uuid(self, name):
        for line in self.ok("admin.vm.List").decode().splitlines():
            if line.split(" ")[0] == name:
                return re.search(r"uuid=(\S+)", line).group(1)
        self.fail("%s not in admin.vm.List" % name)

    def root_layers(self, name):
        """Host directories of the current revision of a qube's own root volume."""
        root = os.path.join(self.d.state_dir, "volumes", self.qube_uuid(name), "root")
        with open(os.path.join(root, "current")) as f:
            fields = dict(line.split(" ", 1) for line in f.read().splitlines() if " " in line)
        return [os.path.join(root, "layers", i) for i in fields["layers"].split()]

    # --- nothing left on the host ---

    def settled(self, check, timeout=3.0):
        """Runs an assertion until it holds: the daemon removes a qube's volumes and
        directories right after it has answered (nobody waits for cleanup)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return check()
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def assert_no_trace(self, name, d=None):
        self.settled(lambda: self._assert_no_trace(name, d))

    def assert_nothing_runs(self, d=None):
        """No qube of this daemon has anything left at all."""
        self.settled(lambda: self._assert_nothing_runs(d))

    def _assert_no_trace(self, name, d=None):
        d = d or self.d
        self.assertEqual([], mounts_referencing(d.state_dir, d.runtime_dir),
                         "mounts left by %s" % name)
        for cg in qube_cgroup_dirs(d, name):
            self.assertFalse(os.path.exists(cg), "cgroup left: %s" % cg)
        self.assertEqual([], range_processes(d, name), "processes left by %s" % name)
        for path in (os.path.join(d.runtime_dir, "qubes", name),
                     os.path.join(d.state_dir, "volatile", name)):
            self.assertFalse(os.path.exists(path), "directory left: %s" % path)

    def _assert_nothing_runs(self, d=None):
        d = d or self.d
        self.assertEqual([], mounts_referencing(d.state_dir, d.runtime_dir))
        group = cgroup_group(d.state_dir)
        for base in own_cgroup_bases():
            g = os.path.join(base, group)
            subdirs = [e for e in os.listdir(g) if os.path.isdir(os.path.join(g, e))] \
                if os.path.isdir(g) else []
            self.assertEqual([], subdirs, "qube cgroups left in %s" % g)
        self.assertEqual([], range_processes(d))
        for sub in (os.path.join(d.runtime_dir, "qubes"), os.path.join(d.state_dir, "volatile")):
            self.assertEqual([], os.listdir(sub) if os.path.isdir(sub) else [], sub)


def kill_all_qubes(d):
    """Kills every running qube of a live daemon; returns the processes left after."""
    if not d.running():
        return []
    try:
        listing = harness.ok_content(d, "admin.vm.List").decode()
    except (OSError, AssertionError):
        return []
    for line in listing.splitlines():
        name = line.split(" ")[0]
        if "class=AdminVM" not in line and "state=Halted" not in line:
            d.call("admin.vm.Kill", dest=name)
    return range_processes(d)


def build_template(d, name, flavour="busybox"):
    r = run_tool(d, "qvm-template", "build", flavour, name, timeout=60)
    if r.returncode != 0:
        raise AssertionError("qvm-template build %s %s: %s%s" % (flavour, name, r.stdout,
                                                                r.stderr))


def qrun(d, name, command, user=None, input=None, timeout=20):
    sock = os.path.join(d.runtime_dir, "qubes", name, "agent.sock")
    cmd = [harness.AGENT_CLIENT, "--socket", sock]
    if user:
        cmd += ["--user", user]
    cmd += ["--", command]
    return subprocess.run(cmd, input=input, capture_output=True, timeout=timeout,
                          stdin=None if input is not None else subprocess.DEVNULL)


def life_events(ev, name):
    return [e[1] for e in ev.snapshot() if e[0] == name and e[1] in LIFE_EVENTS]


# --- life cycle ---

class LifeCycle(EngineTestCase):

    def test_appvm_start_pause_unpause_shutdown_kill(self):
        ev = self.events()
        self.new_appvm("work")
        self.assert_state("work", "Halted")
        self.tool("qvm-start", "work")
        self.assert_state("work", "Running")
        self.assertEqual("hello work\n", self.qout("work", "echo hello $(hostname)"))
        self.assertEqual("1000\n", self.qout("work", "id -u"))
        self.assertEqual("0\n", self.qout("work", "id -u", user="root"))

        self.tool("qvm-pause", "work")
        self.assert_state("work", "Paused")
        self.assertEqual("Paused", self.current_state("work")["power_state"])
        self.tool("qvm-unpause", "work")
        self.assert_state("work", "Running")
        self.assertEqual("still\n", self.qout("work", "echo still"))

        self.tool("qvm-shutdown", "--wait", "work")
        self.assert_state("work", "Halted")
        self.assert_no_trace("work")
        self.assertEqual(["domain-pre-start", "domain-start", "domain-paused",
                          "domain-unpaused", "domain-pre-shutdown", "domain-shutdown"],
                         life_events(ev, "work"))

        # kill: Halted when the call returns, with its event
        self.tool("qvm-start", "work")
        self.tool("qvm-kill", "work")
        self.assert_state("work", "Halted")
        self.assert_no_trace("work")
        ev.wait_for(lambda evs: life_events(ev, "work").count("domain-shutdown") == 2)
        self.assertEqual(["domain-pre-start", "domain-start", "domain-shutdown"],
                         life_events(ev, "work")[6:])

    def test_start_time_and_xid(self):
        """Set for each run (Qubes' stateless properties), cleared when the qube halts."""
        self.new_appvm("timed")
        self.assertEqual((True, "str", ""), self.get_prop("timed", "start_time"))
        self.assertEqual((True, "int", "-1"), self.get_prop("timed", "xid"))
        before = time.time()
        self.start("timed")
        started = float(self.get_prop("timed", "start_time")[2])
        self.assertLessEqual(before - 0.01, started)
        self.assertLessEqual(started, time.time())
        first_xid = int(self.get_prop("timed", "xid")[2])
        self.assertGreater(first_xid, 0)
        self.kill("timed")
        self.assertEqual((True, "str", ""), self.get_prop("timed", "start_time"))
        self.assertEqual((True, "int", "-1"), self.get_prop("timed", "xid"))
        self.start("timed")
        self.assertGreater(int(self.get_prop("timed", "xid")[2]), first_xid)
        self.assertGreaterEqual(float(self.get_prop("timed", "start_time")[2]), started)
        self.kill("timed")

    def test_wrong_state_calls(self):
        self.new_appvm("idle")
        self.err("admin.vm.Pause", dest="idle", exc="QubesVMNotRunningError")
        self.err("admin.vm.Unpause", dest="idle", exc="QubesVMNotPausedError")
        self.err("admin.vm.Kill", dest="idle", exc="QubesVMNotStartedError")
        self.err("admin.vm.Shutdown", dest="idle", exc="QubesVMNotStartedError")
        self.start("idle")
        self.err("admin.vm.Start", dest="idle", exc="QubesVMNotHaltedError")
        self.err("admin.vm.Unpause", dest="idle", exc="QubesVMNotPausedError")
        self.kill("idle")
        self.assert_no_trace("idle")

    def test_paused_qube_shuts_down(self):
        self.new_appvm("frozen")
        self.start("frozen")
        self.ok("admin.vm.Pause", dest="frozen")
        self.shutdown("frozen")
        self.assert_state("frozen", "Halted")
        self.assert_no_trace("frozen")

    def test_templatevm(self):
        ev = self.events()
        before = self.volume_info("bb")
        self.tool("qvm-start", "bb")
        self.assert_state("bb", "Running")
        self.assertEqual("0 bb\n", self.qout("bb", "echo $(id -u) $(hostname)", user="root"))
        self.assertEqual(before["revision"], self.volume_info("bb")["used_revision"])
        self.tool("qvm-pause", "bb")
        self.assert_state("bb", "Paused")
        self.tool("qvm-unpause", "bb")
        self.tool("qvm-shutdown", "--wait", "bb")
        self.assert_state("bb", "Halted")
        self.assert_no_trace("bb")
        # nothing written: no new revision
        self.assertEqual(before["revision"], self.volume_info("bb")["revision"])
        self.assertEqual(["domain-pre-start", "domain-start", "domain-paused",
                          "domain-unpaused", "domain-pre-shutdown", "domain-shutdown"],
                         life_events(ev, "bb"))

    def test_template_with_its_own_init(self):
        # a template asks for its init with the container-init feature: init is PID 1,
        # the agent runs beside it, and a shutdown goes through that init
        self.create("AppVM", "withinit", "red", "bb")
        self.ok("admin.vm.feature.Set", "container-init", "withinit", b"/sbin/init")
        self.start("withinit")
        out = self.qout("withinit", "ps -o pid,comm | awk '$1 == 1 {print $2}'; "
                                    "echo agent-pid=$(pidof dispenser-agent)")
        self.assertIn("init", out.splitlines()[0])
        self.assertNotIn("agent-pid=1\n", out)
        t = time.monotonic()
        self.shutdown("withinit")
        self.assertLess(time.monotonic() - t, 20)
        self.assert_state("withinit", "Halted")
        self.assert_no_trace("withinit")

    def test_standalonevm(self):
        ev = self.events()
        self.create("StandaloneVM", "alone")
        self.addCleanup(self.remove_quietly, "alone")
        r = self.start_err("alone")
        self.assertIn("root filesystem", r.message)
        self.assert_state("alone", "Halted")
        self.assert_no_trace("alone")
        ev.wait_event("domain-start-failed")
        self.assertEqual(["domain-pre-start", "domain-start-failed"], life_events(ev, "alone"))
        reason = [dict(e[2]) for e in ev.snapshot() if e[1] == "domain-start-failed"][0]
        self.assertIn("root filesystem", reason["reason"])

        # import a root (a copy of a fresh template's) and it starts, with its own root
        build_template(self.d, "rootsrc")
        self.addCleanup(self.remove_quietly, "rootsrc")
        self.import_root_from_template("alone", "rootsrc")
        self.start("alone")
        self.qrun("alone", "echo mine > /etc/standalone-mark", user="root")
        self.shutdown("alone")
        self.assert_no_trace("alone")
        self.start("alone")
        self.assertEqual("mine\n", self.qout("alone", "cat /etc/standalone-mark"))
        self.kill("alone")
        self.assert_no_trace("alone")

    def import_root_from_template(self, name, template):
        staging = self.ok("internal.vm.volume.ImportBegin", "root", name).decode().strip()
        self.assertTrue(os.path.isdir(staging), staging)
        layers = self.root_layers(template)
        self.assertEqual(1, len(layers), "a freshly built template has one layer")
        subprocess.run(["cp", "-a", layers[0] + "/.", staging], check=True)
        self.ok("internal.vm.volume.ImportEnd", "root", name, b"ok")

    def test_current_state_memory_and_cputime(self):
        self.new_appvm("busy")
        self.start("busy")
        s0 = self.current_state("busy")
        self.assertEqual("Running", s0["power_state"])
        self.assertGreater(s0["mem"], 0)
        self.assertEqual(400 * 1024, s0["mem_static_max"])  # default maxmem (MiB -> KiB)
        self.qrun("busy", "i=0; while [ $i -lt 30000 ]; do i=$((i+1)); done")
        self.qrun("busy", "dd if=/dev/zero of=/tmp/fill bs=1M count=32 2>/dev/null")
        s1 = self.current_state("busy")
        self.assertGreater(s1["cputime"] - s0["cputime"], 20 * 1000 * 1000)  # ns
        self.assertGreater(s1["mem"] - s0["mem"], 24 * 1024)  # tmpfs is charged: KiB
        self.kill("busy")
        halted = self.current_state("busy")
        self.assertEqual((0, 0, "Halted"), (halted["mem"], halted["cputime"],
                                            halted["power_state"]))


# --- start failures ---

class StartFailures(EngineTestCase):

    def test_template_never_built(self):
        ev = self.events()
        self.create("TemplateVM", "unbuilt")
        self.addCleanup(self.remove_quietly, "unbuilt")
        self.new_appvm("orphan", template="unbuilt")
        for name in ("unbuilt", "orphan", "orphan"):  # twice: a failure leaves it startable
            r = self.start_err(name)
            self.assertIn("never built", r.message)
            self.assert_state(name, "Halted")
            self.assert_no_trace(name)
        ev.wait_for(lambda evs: life_events(ev, "orphan").count("domain-start-failed") == 2)
        self.assertEqual(["domain-pre-start", "domain-start-failed"] * 2,
                         life_events(ev, "orphan"))

    def test_readiness_timeout(self):
        build_template(self.d, "slow")
        self.addCleanup(self.remove_quietly, "slow")
        self.start("slow")
        self.qrun("slow", "mkdir -p /etc/dispenser/startup.d && "
                          "printf '#!/bin/sh\\nsleep 5\\n' > /etc/dispenser/startup.d/50-slow && "
                          "chmod 755 /etc/dispenser/startup.d/50-slow", user="root")
        self.shutdown("slow")
        self.new_appvm("late", template="slow")
        self.set_prop("late", "qrexec_timeout", 1)
        ev = self.events()
        for _ in range(2):  # the second start must not trip over the first one's remains
            t0 = time.monotonic()
            r = self.start_err("late")
            elapsed = time.monotonic() - t0
            self.assertIn("readiness", r.message)
            self.assertLess(elapsed, 3.0)
            self.assertGreaterEqual(elapsed, 0.9)
            self.assert_state("late", "Halted")
            self.assert_no_trace("late")
        self.assertEqual(["domain-pre-start", "domain-start-failed"] * 2,
                         life_events(ev, "late"))

    def test_agent_missing(self):
        d = Daemon(agent="/nonexistent/dispenser-agent")
        self.addCleanup(d.cleanup)
        d.start()
        r = parse_reply(d.call("admin.vm.Create.StandaloneVM", "", "dom0",
                               b"name=noagent label=red"))
        self.assertTrue(r.ok, r)
        r = parse_reply(d.call("admin.vm.Start", dest="noagent"))
        self.assertFalse(r.ok)
        self.assertEqual("QubesException", r.exc)
        self.assertIn("not available", r.message)
        self.assertIn("noagent", r.message)
        self.assertIn("state=Halted", d.call("admin.vm.List", dest="noagent").decode())
        self.assert_no_trace("noagent", d)



# --- the table of engines: one per virt_mode, each with its own options ---

class Engines(EngineTestCase):

    @classmethod
    def daemon_args(cls):
        # the QEMU engine without its guest: it cannot run here, whatever is installed
        return ["--engine-option", "qemu.guest-dir=/nonexistent/vm-guest"]

    def test_virt_mode_whose_engine_cannot_run(self):
        self.new_appvm("vm1", template="bb")
        self.set_prop("vm1", "virt_mode", "qemu")
        r = self.start_err("vm1")
        # built in: it says why it cannot run; not built in (no json-c): no such engine
        self.assertRegex(r.message, "^Qube 'vm1': virt_mode=qemu is not available: "
                         "(no guest kernel and initramfs in /nonexistent/vm-guest"
                         "|qemu-system-x86_64 is not installed|this dispenserd has no such "
                         "engine)")
        self.assert_state("vm1", "Halted")
        self.set_prop("vm1", "virt_mode", "container")  # the same qube, its own engine
        self.start("vm1")
        self.assert_state("vm1", "Running")

    def test_engine_option_reaches_its_engine(self):
        d = Daemon(extra_args=["--engine-option", "container.uid-base=0x50000000"])
        self.addCleanup(d.cleanup)
        d.start()
        self.addCleanup(kill_all_qubes, d)
        build_template(d, "bb")
        r = parse_reply(d.call("admin.vm.Create.AppVM", "bb", "dom0",
                               b"name=shifted label=red"))
        self.assertTrue(r.ok, r)
        self.assertTrue(parse_reply(d.call("admin.vm.Start", dest="shifted")).ok)
        r = qrun(d, "shifted", "cat /proc/self/uid_map")
        self.assertEqual(0, r.returncode, r.stderr)
        # its first qube: slot 1 above the new base
        self.assertEqual(["0", str(0x50000000 + RANGE_COUNT), str(RANGE_COUNT)],
                         r.stdout.decode().split())

    def test_option_an_engine_refuses_makes_it_unavailable(self):
        d = Daemon(extra_args=["--engine-option", "container.no-such=1"])
        self.addCleanup(d.cleanup)
        d.start()
        r = parse_reply(d.call("admin.vm.Create.StandaloneVM", "", "dom0",
                               b"name=opt label=red"))
        self.assertTrue(r.ok, r)
        r = parse_reply(d.call("admin.vm.Start", dest="opt"))
        self.assertEqual("QubesException", r.exc)
        self.assertEqual("Qube 'opt': virt_mode=container is not available: container.no-such:"
                         " no such option (known: uid-base, uid-count, uid-ranges, uid-slots)", r.message)

    def test_option_for_no_engine_is_a_usage_error(self):
        cases = {"nosuch.key=1": "engine option 'nosuch.key' names no engine",
                 "container-uid-base=1": "--engine-option wants ENGINE.KEY=VALUE",
                 "container.uid-base": "--engine-option wants ENGINE.KEY=VALUE"}
        for arg, message in cases.items():
            p = subprocess.run([harness.DISPENSERD, "--engine-option", arg, "--foreground",
                                "--socket", "/nonexistent/never-made.sock"],
                               capture_output=True, text=True, timeout=10)
            self.assertEqual(2, p.returncode, arg)  # a usage error, as for any bad option
            self.assertIn(message, p.stderr)


# --- a qube that ends by itself ---

class SelfPoweroff(EngineTestCase):

    def check_ends_by_itself(self, name, command):
        ev = self.events()
        self.new_appvm(name)
        self.start(name)
        t0 = time.monotonic()
        self.qrun(name, command, user="root", check=False)
        ev.wait_event("domain-shutdown", timeout=2.0)
        self.assertLess(time.monotonic() - t0, 1.5)
        self.assert_state(name, "Halted")
        self.assert_no_trace(name)
        self.assertEqual(["domain-pre-start", "domain-start", "domain-shutdown"],
                         life_events(ev, name))
        self.start(name)  # and it starts again
        self.kill(name)

    def test_poweroff_inside(self):
        self.check_ends_by_itself("pw", "poweroff")

    def test_kill_init_inside(self):
        self.check_ends_by_itself("k1", "kill 1")


# --- template revisions and volumes ---

class Revisions(EngineTestCase):

    def test_template_revisions(self):
        rev = int(self.volume_info("bb")["revision"])
        self.new_appvm("old")
        self.start("old")
        info = self.volume_info("old")
        self.assertEqual((str(rev), str(rev), "False"),
                         (info["revision"], info["used_revision"], info["is_outdated"]))

        self.start("bb")
        self.qrun("bb", "echo v2 > /etc/revision-mark", user="root")
        self.shutdown("bb")
        self.assertEqual(str(rev + 1), self.volume_info("bb")["revision"])

        info = self.volume_info("old")
        self.assertEqual((str(rev + 1), str(rev), "True"),
                         (info["revision"], info["used_revision"], info["is_outdated"]))
        self.assertEqual(1, self.qrun("old", "cat /etc/revision-mark", check=False).returncode)

        self.shutdown("old")
        self.start("old")
        self.assertEqual("v2\n", self.qout("old", "cat /etc/revision-mark"))
        info = self.volume_info("old")
        self.assertEqual((str(rev + 1), str(rev + 1), "False"),
                         (info["revision"], info["used_revision"], info["is_outdated"]))
        self.kill("old")

    def overlay_options(self, name):
        """{mount point inside the qube: super options} of the qube's overlays."""
        with open(os.path.join(unified_cgroup_dir(self.d, name), "cgroup.procs")) as f:
            pid = int(f.read().split()[0])
        with open("/proc/%d/mountinfo" % pid) as f:
            lines = [line.split() for line in f if " - overlay " in line]
        return {fields[4]: fields[-1] for fields in lines}

    def test_throwaway_uppers_are_volatile(self):
        # an upper discarded at shutdown is never synced to the disk (overlay `volatile`:
        # without it, each qube's end synced the whole host filesystem); one committed as
        # a new revision (a template's root, an AppVM's private) is an ordinary upper
        self.new_appvm("keeper")
        self.start("keeper")
        self.start(self.TEMPLATE)
        mine, tpl = self.overlay_options("keeper"), self.overlay_options(self.TEMPLATE)
        self.kill("keeper")
        self.kill(self.TEMPLATE)
        def volatile(opts):  # shown as `volatile`, or `fsync=volatile` since 6.x
            return bool({"volatile", "fsync=volatile"} & set(opts.split(",")))
        self.assertTrue(volatile(mine["/"]), mine)
        self.assertFalse(volatile(mine["/rw"]), mine)
        self.assertFalse(volatile(tpl["/"]), tpl)

    def test_private_persists_root_discarded(self):
        self.new_appvm("keeper")
        self.start("keeper")
        self.qrun("keeper", "echo kept > /home/user/notes && mkdir -p /home/user/d && "
                            "echo deep > /home/user/d/f")
        self.qrun("keeper", "echo gone > /etc/scratch-mark && rm /bin/busybox.sh 2>/dev/null;"
                            "echo x > /usr/scratch-file", user="root")
        self.shutdown("keeper")
        self.start("keeper")
        self.assertEqual("kept\ndeep\n",
                         self.qout("keeper", "cat /home/user/notes /home/user/d/f"))
        self.assertEqual("absent absent\n", self.qout(
            "keeper", "for f in /etc/scratch-mark /usr/scratch-file; do "
                      "[ -e $f ] && printf present || printf absent; "
                      "[ $f = /etc/scratch-mark ] && printf ' '; done; echo"))
        self.kill("keeper")
        self.assertEqual("0", self.volume_info("keeper", "root")["used_revision"])

    def test_fresh_private_first_start_is_no_change(self):
        # a disposable of a disposable template never started, then the template's first
        # start and stop with nothing written: the disposable's private stays current
        self.new_appvm("fresh")
        self.set_prop("fresh", "template_for_dispvms", True)
        disp = self.ok("admin.vm.CreateDisposable", "", "fresh").decode()
        self.addCleanup(self.remove_quietly, disp)
        self.start(disp)
        self.start("fresh")
        self.assertEqual("1000\n", self.qout("fresh", "stat -c %u /home/user"))
        self.shutdown("fresh")
        info = self.volume_info(disp, "private")
        self.assertEqual((info["revision"], "False"), (info["used_revision"],
                                                       info["is_outdated"]))
        self.start("fresh")  # and again: the same revision
        self.shutdown("fresh")
        self.assertEqual(info["revision"], self.volume_info("fresh", "private")["revision"])
        # a write is a change
        self.start("fresh")
        self.qrun("fresh", "echo x > /home/user/x")
        self.shutdown("fresh")
        self.assertEqual("True", self.volume_info(disp, "private")["is_outdated"])
        self.kill(disp)


# --- the daemon killed and restarted ---

@unittest.skipIf(engine_skip_reason(), engine_skip_reason())
class DaemonRestart(EngineTestCase):
    PER_CLASS = False  # each test kills its daemon

    def qube_pids(self, name):
        with open(os.path.join(unified_cgroup_dir(self.d, name), "cgroup.procs")) as f:
            return [int(p) for p in f.read().split()]

    def restart_after_kill9(self):
        self.d.kill()
        self.d.start()

    def test_kill9_adopts_running_and_paused(self):
        self.new_appvm("runner")
        self.new_appvm("sleeper")
        self.start("runner")
        self.start("sleeper")
        self.qrun("sleeper", "echo before > /home/user/f")
        self.ok("admin.vm.Pause", dest="sleeper")
        pids = {n: self.qube_pids(n) for n in ("runner", "sleeper")}
        old_daemon = self.d.pid

        self.restart_after_kill9()
        self.assertNotEqual(old_daemon, self.d.pid)
        for name, ps in pids.items():
            for pid in ps:
                self.assertIsNotNone(proc_uid(pid), "%s lost pid %d" % (name, pid))
        self.assert_state("runner", "Running")
        self.assert_state("sleeper", "Paused")
        self.assertEqual("alive\n", self.qout("runner", "echo alive"))
        self.assertGreater(self.current_state("runner")["mem"], 0)
        # upstream's keys only: a container has no accelerator to report
        self.assertNotIn("accel", self.current_state("runner"))

        self.ok("admin.vm.Unpause", dest="sleeper")
        self.assertEqual("before\n", self.qout("sleeper", "cat /home/user/f"))
        ev = self.events()
        self.shutdown("runner")
        self.shutdown("sleeper")
        self.assertEqual(["domain-pre-shutdown", "domain-shutdown"],
                         life_events(ev, "runner"))
        self.assert_nothing_runs()
        # the adopted qube's private volume was saved at its shutdown
        self.start("sleeper")
        self.assertEqual("before\n", self.qout("sleeper", "cat /home/user/f"))
        self.kill("sleeper")
        self.assert_nothing_runs()

    def test_qube_died_while_daemon_down(self):
        self.new_appvm("victim")
        self.start("victim")
        pids = self.qube_pids("victim")
        self.d.kill()
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while any(proc_uid(p) is not None for p in pids) and time.monotonic() < deadline:
            time.sleep(0.01)  # dead, perhaps not yet reaped by the host's init
        self.d.start()
        self.assert_state("victim", "Halted")
        self.assert_nothing_runs()
        self.start("victim")
        self.kill("victim")

    def test_qube_removed_while_daemon_down(self):
        self.new_appvm("ghost")
        self.new_appvm("stays")
        self.start("ghost")
        self.start("stays")
        uuid = [l for l in self.ok("admin.vm.List").decode().splitlines()
                if l.startswith("ghost ")][0].split("uuid=")[1]
        volumes = os.path.join(self.d.state_dir, "volumes", uuid)
        self.assertTrue(os.path.isdir(volumes))
        self.d.kill()
        db = sqlite3.connect(self.d.db_path)
        db.execute("PRAGMA foreign_keys = ON")
        db.execute("DELETE FROM qubes WHERE name = 'ghost'")
        db.commit()
        db.close()
        self.d.start()
        self.assertNotIn("ghost", self.vm_names())
        self.assert_no_trace("ghost")
        self.assertFalse(os.path.exists(volumes), "volumes of a removed qube left")
        # the other one was adopted and goes on
        self.assert_state("stays", "Running")
        self.assertEqual("ok\n", self.qout("stays", "echo ok"))
        self.shutdown("stays")
        self.assert_nothing_runs()


if __name__ == "__main__":
    unittest.main()
