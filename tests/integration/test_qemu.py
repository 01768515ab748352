"""virt_mode=qemu: real micro-VMs under QEMU (TCG here: no /dev/kvm), booting Debian's
kernel with our initramfs and a root image built from the busybox template.

Each boot costs seconds of CPU under TCG, so the tests boot few VMs and do several steps
on each. They skip, saying why, where QEMU or the guest kernel is not installed
(scripts/install-deps.sh installs both)."""
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

import harness
from harness import Daemon
from test_engine import EngineTestCase, build_template, cgroup_group, own_cgroup_bases

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPTS = os.path.join(HERE, "..", "..", "scripts")
KERNEL_CACHE = os.environ.get("DISPENSER_VM_KERNEL", "/var/cache/dispenser/vm-kernel")
QEMU = shutil.which("qemu-system-x86_64")
VMUX = os.environ.get("VMUX", os.path.join(harness.BUILD_DIR, "src", "backend", "vmux",
                                           "dispenser-vmux"))  # meson sets VMUX
MEMORY = 400 << 20  # bytes: the default `memory` of a qube
# in the guest: waits (up to ~10 s) for MemFree above N kB, then prints it
WAIT_MEMFREE = ("i=0; while [ $i -lt 100 ]; do set -- $(grep MemFree: /proc/meminfo); "
                "[ $2 -gt %d ] && break; i=$((i+1)); sleep 0.1; done; echo $2")
BOOT_TIMEOUT = 240  # seconds: a TCG boot on two shared, loaded cores


def missing():
    if not QEMU:
        return "qemu-system-x86_64 is not installed (Debian: qemu-system-x86)"
    if not os.path.exists(os.path.join(KERNEL_CACHE, "vmlinux")):
        return "no guest kernel in %s (scripts/fetch-vm-kernel.sh)" % KERNEL_CACHE
    if not shutil.which("mkfs.erofs"):
        return "mkfs.erofs is not installed (Debian: erofs-utils)"
    return None


def build_guest(out):
    subprocess.run([os.path.join(SCRIPTS, "build-vm-guest.sh"), harness.AGENT, out,
                    KERNEL_CACHE], check=True, capture_output=True, timeout=120)


def host_tsc_khz():
    """As the engine reads it: without it a microvm guest under TCG can hang calibrating
    its TSC (the probe test did, once in a few runs)."""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("cpu MHz"):
                return int(float(line.split(":")[1]) * 1000)
    return 0


def qemu_cgroup_group(state_dir):
    return cgroup_group(state_dir).replace("dispenser-", "dispenser-qemu-")


def qemu_pid(d, name):
    path = os.path.join(d.runtime_dir, "qemu", name, "state")
    with open(path) as f:
        return int(dict(l.split(" ", 1) for l in f.read().splitlines())["pid"])


def vmux_pid(d, name):
    path = os.path.join(d.runtime_dir, "qemu", name, "state")
    with open(path) as f:
        return int(dict(l.split(" ", 1) for l in f.read().splitlines())["vmux_pid"])


def proc_status(pid):
    with open("/proc/%d/status" % pid) as f:
        return dict(l.split(":", 1) for l in f.read().splitlines() if ":" in l)


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open("/proc/%d/stat" % pid) as f:
        return f.read().split(") ")[1][0] != "Z"


@unittest.skipIf(missing(), missing() or "")
class QemuTestCase(EngineTestCase):
    """One daemon for the class, the busybox template `bb` built, the guest in a temp dir."""

    @classmethod
    def setUpClass(cls):
        cls.guest_dir = tempfile.mkdtemp(prefix="dispenser-vm-guest-")
        try:
            build_guest(cls.guest_dir)
            super().setUpClass()
        except BaseException:  # tearDownClass does not run then
            shutil.rmtree(cls.guest_dir, ignore_errors=True)
            raise

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        shutil.rmtree(cls.guest_dir, ignore_errors=True)

    @classmethod
    def daemon_args(cls):
        return ["--engine-option", "qemu.guest-dir=" + cls.guest_dir,
                "--engine-option", "qemu.vmux=" + VMUX]

    def new_vm(self, name):
        self.new_appvm(name)
        self.ok("admin.vm.property.Set", "virt_mode", name, "qemu")
        self.ok("admin.vm.property.Set", "qrexec_timeout", name, str(BOOT_TIMEOUT))
        self.ok("admin.vm.property.Set", "shutdown_timeout", name, "20")

    def start_vm(self, name):
        r = harness.run_tool(self.d, "qvm-start", name, timeout=BOOT_TIMEOUT + 30)
        self.assertEqual(0, r.returncode, "qvm-start %s: %s%s" % (name, r.stdout, r.stderr))

    def run_ok(self, name, command, stdout, user=None):
        r = harness.run_tool(self.d, "qvm-run", "-p", *(["-u", user] if user else []), name,
                             command, timeout=60)
        self.assertEqual((0, stdout), (r.returncode, r.stdout), r.stderr)

    def assert_confined(self, pid, what):
        """A process of a VM (QEMU, its dispenser-vmux) as the host sees it: a uid of its
        own, no capabilities, no way to gain any, a mount namespace of its own whose root
        holds nothing of the daemon's."""
        st = proc_status(pid)
        uid = int(st["Uid"].split()[0])
        self.assertNotEqual(0, uid, what)
        self.assertEqual([str(uid)] * 4, st["Uid"].split(), what)
        self.assertEqual([str(uid)] * 4, st["Gid"].split(), what)
        self.assertEqual("", st["Groups"].strip(), what)
        for caps in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
            self.assertEqual(0, int(st[caps], 16), "%s: %s" % (what, caps))
        self.assertEqual("1", st["NoNewPrivs"].strip(), what)
        # dumpable again after its exec: what the engine's search for a free uid sees
        self.assertEqual(uid, os.stat("/proc/%d" % pid).st_uid, what)
        with open("/proc/%d/limits" % pid) as f:
            self.assertRegex(f.read(), r"Max core file size\s+0\s+0\s")
        for ns in ("mnt", "net"):
            self.assertNotEqual(os.readlink("/proc/self/ns/" + ns),
                                os.readlink("/proc/%d/ns/%s" % (pid, ns)), "%s: %s" % (what, ns))
        root = "/proc/%d/root" % pid
        for host_path in ("/root", "/home", "/etc/passwd", "/var", self.d.socket,
                          os.path.join(self.d.state_dir, "qubes.db"),
                          os.path.join(self.d.state_dir, "qemu", "images"),
                          os.path.join(self.d.state_dir, "qemu", "volumes"),
                          os.path.join(self.d.state_dir, "log")):
            self.assertFalse(os.path.lexists(root + host_path), "%s sees %s" % (what, host_path))
        return uid

    def assert_nothing_left(self, name, pid=None):
        if pid:
            deadline = time.monotonic() + 10
            while alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            self.assertFalse(alive(pid), "QEMU of %s still runs" % name)
        self.assertFalse(os.path.exists(os.path.join(self.d.runtime_dir, "qemu", name)))
        self.assertFalse(os.path.exists(os.path.join(self.d.state_dir, "qemu", "scratch", name)))
        for base in own_cgroup_bases():
            self.assertFalse(os.path.exists(os.path.join(base, qemu_cgroup_group(
                self.d.state_dir), name)), "cgroup of %s left in %s" % (name, base))


class Lifecycle(QemuTestCase):

    def test_start_pause_unpause_adopt_shutdown_then_kill(self):
        self.new_vm("vm1")
        self.ok("admin.vm.property.Set", "kernelopts", "vm1", "dispenser.test=opts42")
        t0 = time.monotonic()
        self.start_vm("vm1")
        boot = time.monotonic() - t0
        self.assert_state("vm1", "Running")
        pid = qemu_pid(self.d, "vm1")
        self.assertTrue(alive(pid))
        self.assertIn("vm1: QEMU started (pid %d, tcg" % pid, self.d.log())
        self.assertEqual("tcg", self.current_state("vm1")["accel"])  # as the log says
        # the root image was built once, for the template's current revision
        images = os.listdir(os.path.join(self.d.state_dir, "qemu", "images"))
        self.assertEqual(1, len(images))
        # its dispenser-vmux runs in the VM's cgroup
        vmux = vmux_pid(self.d, "vm1")
        with open("/proc/%d/cgroup" % vmux) as f, open("/proc/%d/cgroup" % pid) as g:
            self.assertEqual(g.read(), f.read())
        self.check_calls("vm1")
        self.assertIn("dispenser.test=opts42", self.tool("qvm-run", "-p", "vm1",
                                                         "cat /proc/cmdline").stdout)
        uid = self.check_confined("vm1", pid, vmux)
        self.check_guest_isolated("vm1")
        self.tool("qvm-pause", "vm1")
        self.assert_state("vm1", "Paused")
        rss = self.qube_memory_kib("vm1")
        self.tool("qvm-unpause", "vm1")
        self.assert_state("vm1", "Running")
        print("\nqemu: boot to ready %.1f s under TCG, paused RSS %d MiB" % (boot, rss // 1024))

        # the daemon dies; the VM does not, and the next daemon adopts it, paused or not
        self.tool("qvm-pause", "vm1")
        self.d.kill()
        self.assertTrue(alive(pid))
        self.d.start()
        self.assertIn("vm1: adopted (QEMU pid %d, paused" % pid, self.d.log())
        self.assert_state("vm1", "Paused")
        self.tool("qvm-unpause", "vm1")
        self.assert_state("vm1", "Running")
        self.run_ok("vm1", "echo adopted", "adopted\n")  # the old dispenser-vmux serves
        self.assertTrue(alive(vmux))
        # and a running one: its guest sees the host side of its ports go and come back,
        # the agent's too (its dispenser-vmux died meanwhile: the adopting daemon starts one)
        self.d.kill()
        os.kill(vmux, signal.SIGKILL)
        time.sleep(2)
        self.d.start()
        self.assertIn("vm1: adopted (QEMU pid %d, running" % pid, self.d.log())
        self.assertIn("vm1: its dispenser-vmux is gone; starting a new one", self.d.log())
        self.assert_state("vm1", "Running")
        self.run_ok("vm1", "echo again", "again\n")
        vmux = vmux_pid(self.d, "vm1")

        # its template moves on: the root it booted is outdated (as a preload's would be),
        # known across the adoptions above (the state file has it)
        self.assertEqual("False", self.volume_info("vm1", "root")["is_outdated"])
        self.start("bb")
        self.qrun("bb", "echo v2 > /etc/qemu-mark", user="root")
        self.shutdown("bb")  # its new root revision is committed right after the answer
        self.settled(lambda: self.assertEqual(
            "True", self.volume_info("vm1", "root")["is_outdated"]), timeout=20)
        self.assertEqual(uid, self.assert_confined(vmux, "the new dispenser-vmux"))
        self.assertEqual(os.readlink("/proc/%d/ns/net" % pid),
                         os.readlink("/proc/%d/ns/net" % vmux))

        # the orderly shutdown reaches the guest through the adopting daemon's connection
        r = harness.run_tool(self.d, "qvm-shutdown", "--wait", "vm1", timeout=90)
        self.assertEqual(0, r.returncode, r.stderr)
        self.assert_state("vm1", "Halted")
        self.assert_nothing_left("vm1", pid)
        self.assertFalse(alive(vmux))
        self.assertNotIn("vm1: still running after shutdown_timeout", self.d.log())

        # a second boot: the private image persists; kill
        self.assertTrue(os.path.exists(os.path.join(
            self.d.state_dir, "qemu", "volumes", self.uuid_of("vm1"), "private.img")))
        self.start_vm("vm1")
        pid = qemu_pid(self.d, "vm1")
        # the first boot's write to / went to its throwaway root overlay
        self.run_ok("vm1", "test -e /dispenser-written && echo there || echo gone", "gone\n",
                    user="root")
        self.tool("qvm-kill", "vm1")
        self.assert_state("vm1", "Halted")
        self.assert_nothing_left("vm1", pid)

    def check_confined(self, name, pid, vmux):
        """QEMU and its dispenser-vmux run jailed (qemu_confine.c), with the VM's uid."""
        uid = self.assert_confined(pid, "QEMU")
        self.assertEqual("2", proc_status(pid)["Seccomp"].strip())  # -sandbox on
        self.assertEqual(uid, self.assert_confined(vmux, "dispenser-vmux"))
        # the mux shares its QEMU's (empty) network namespace, not its mounts
        ns = lambda p, kind: os.readlink("/proc/%d/ns/%s" % (p, kind))
        self.assertEqual(ns(pid, "net"), ns(vmux, "net"))
        self.assertNotEqual(ns(pid, "mnt"), ns(vmux, "mnt"))
        # QEMU's root: the tmpfs the engine built, with the host's /usr, its sockets and
        # its kernel; its images only as descriptors, never by a path
        root = "/proc/%d/root" % pid
        self.assertNotEqual(os.stat("/").st_dev, os.stat(root).st_dev)
        self.assertTrue(os.path.exists(root + "/usr/bin/true"))
        self.assertTrue(os.path.exists(os.path.join(root + self.d.runtime_dir, "qemu", name,
                                                    "qmp.sock")))
        self.assertTrue(os.path.exists(root + os.path.join(self.guest_dir, "vmlinux")))
        images = os.path.join(self.d.state_dir, "qemu", "images")
        image = os.path.join(images, os.listdir(images)[0])
        self.assertFalse(os.path.lexists(root + image))
        self.assertIn(os.path.realpath(os.path.join(image, os.listdir(image)[0])),
                      [os.path.realpath("/proc/%d/fd/%s" % (pid, fd))
                       for fd in os.listdir("/proc/%d/fd" % pid)])
        with open(os.path.join(self.d.runtime_dir, "qemu", name, "state")) as f:
            self.assertIn("uid %d\n" % uid, f.read())  # what an adopting daemon reuses
        return uid

    def check_guest_isolated(self, name):
        """From inside: nothing of the host's files, a template image it cannot write, no
        network device."""
        marker = tempfile.NamedTemporaryFile(prefix="dispenser-host-marker-", dir="/tmp")
        self.addCleanup(marker.close)
        self.run_ok(name, "test -e %s && echo seen || echo unseen" % marker.name, "unseen\n",
                    user="root")
        self.run_ok(name, "ip -o link | cut -d: -f2",
                    " lo\n", user="root")
        # the root disk (its serial says which) is read-only to the guest's root too
        find_root = ("mkdir -p /tmp/sys && mount -t sysfs sysfs /tmp/sys && "
                     "for s in /tmp/sys/block/vd*/serial; do read -r v < $s; "
                     "[ \"$v\" = root ] && d=${s%/serial}; done; ")
        self.run_ok(name, find_root + "cat $d/ro; dd if=/dev/zero of=/dev/${d##*/} count=1 "
                    "2>/dev/null && echo written || echo refused; umount /tmp/sys",
                    "1\nrefused\n", user="root")
        # a write to / lands in the root's throwaway overlay (gone at the next boot)
        self.run_ok(name, "echo x > /dispenser-written && cat /dispenser-written", "x\n",
                    user="root")

    def check_calls(self, name):
        """qrexec into the running VM: its agent over virtio-serial, stdio copied."""
        r = harness.run_tool(self.d, "qvm-run", "-p", name,
                             "echo out; echo err >&2; echo $QREXEC_REMOTE_DOMAIN; exit 9",
                             timeout=60)
        self.assertEqual((9, "out\ndom0\n", "err\n"), (r.returncode, r.stdout, r.stderr))
        data = os.urandom(1 << 20)
        want = hashlib.md5(data).hexdigest()
        r = subprocess.run([harness.tool_path("qvm-run"), "-p", name, "md5sum"], input=data,
                           capture_output=True, env=self.d.env(), timeout=120)
        self.assertEqual((0, want), (r.returncode, r.stdout.decode().split()[0]), r.stderr)
        r = subprocess.run([harness.tool_path("qrexec-client"), "-d", name,
                            "DEFAULT:QUBESRPC qubes.VMShell dom0"],
                           input=b"md5sum; exit\n" + data, capture_output=True,
                           env=self.d.env(), timeout=120)
        self.assertEqual((0, want), (r.returncode, r.stdout.decode().split()[0]), r.stderr)
        r = subprocess.run([harness.tool_path("qvm-run"), "-p", name, "head -c 1048576 /dev/zero"],
                           capture_output=True, env=self.d.env(), timeout=120)
        self.assertEqual((0, b"\0" * (1 << 20)), (r.returncode, r.stdout), r.stderr)
        # calls at once, each on a channel of its own
        procs = [subprocess.Popen([harness.tool_path("qvm-run"), "-p", name, "echo %d" % i],
                                  stdout=subprocess.PIPE, env=self.d.env()) for i in range(6)]
        self.assertEqual(["%d\n" % i for i in range(6)],
                         [p.communicate(timeout=60)[0].decode() for p in procs])
        times = []
        for _ in range(5):
            t0 = time.monotonic()
            self.run_ok(name, "true", "")
            times.append(time.monotonic() - t0)
        print("\nqemu: qvm-run -p %s true: median %.0f ms (tool start-up included)"
              % (name, sorted(times)[2] * 1000))

    def qube_memory_kib(self, name):
        pid = qemu_pid(self.d, name)
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def uuid_of(self, name):
        return self.get_prop(name, "uuid")[2]


class Disposable(QemuTestCase):

    def test_disposable_writes_over_its_templates_private_and_leaves_it_intact(self):
        self.new_vm("dvm")
        self.ok("admin.vm.property.Set", "template_for_dispvms", "dvm", "True")
        # the disposable template's private image, as its own boot would have made it
        vol = os.path.join(self.d.state_dir, "qemu", "volumes", self.get_prop("dvm", "uuid")[2])
        os.makedirs(vol)
        image = os.path.join(vol, "private.img")
        subprocess.run(["truncate", "-s", "64M", image], check=True)
        subprocess.run(["mkfs.ext4", "-q", "-F", image], check=True)
        with open(image, "rb") as f:
            before = f.read()
        self.ok("admin.vm.Create.DispVM", "dvm", "dom0", "name=disp1 label=red")
        self.addCleanup(self.remove_quietly, "disp1")
        self.assertEqual("qemu", self.get_prop("disp1", "virt_mode")[2])  # from its template
        self.ok("admin.vm.property.Set", "qrexec_timeout", "disp1", str(BOOT_TIMEOUT))
        self.start_vm("disp1")
        self.assert_state("disp1", "Running")
        pid = qemu_pid(self.d, "disp1")
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            cmdline = f.read().split(b"\0")
        drive = [a for a in cmdline if b"id=private" in a and b"if=none" in a]
        self.assertEqual(1, len(drive), cmdline)
        self.assertIn(b"snapshot=on", drive[0])
        # QEMU, jailed, holds its template's image read-only and cannot name it: even a
        # QEMU taken over by its guest cannot write to it; its overlay is in its scratch dir
        self.assertFalse(os.path.lexists("/proc/%d/root%s" % (pid, image)))
        fds = [fd for fd in os.listdir("/proc/%d/fd" % pid)
               if os.path.realpath("/proc/%d/fd/%s" % (pid, fd)) == os.path.realpath(image)]
        self.assertTrue(fds)
        for fd in fds:
            with open("/proc/%d/fdinfo/%s" % (pid, fd)) as f:
                flags = int(re.search(r"flags:\s+(\d+)", f.read()).group(1), 8)
            self.assertEqual(os.O_RDONLY, flags & os.O_ACCMODE)
        self.assertNotEqual(0, int(proc_status(pid)["Uid"].split()[0]))
        scratch = os.path.join(self.d.state_dir, "qemu", "scratch", "disp1")
        self.assertTrue(os.path.isdir(scratch))
        self.tool("qvm-kill", "disp1")
        self.assert_nothing_left("disp1", pid)
        logs = os.path.join(self.d.state_dir, "log", "qemu")
        self.assertIn("disp1.console.log", os.listdir(logs))
        self.ok("admin.vm.Remove", "", "disp1")
        self.assertEqual([], [f for f in os.listdir(logs) if f.startswith("disp1.")])
        with open(image, "rb") as f:
            self.assertTrue(before == f.read(), "the disposable wrote to its template's image")


class DisposableCalls(QemuTestCase):

    def disposables(self):
        return [l.split()[0] for l in self.tool("qvm-ls", "--raw-list").stdout.split()
                if re.match(r"disp\d+$", l)]

    def test_qvm_run_dispvm_answers_and_is_gone(self):
        self.new_vm("qdvm")
        self.ok("admin.vm.property.Set", "template_for_dispvms", "qdvm", "True")
        t0 = time.monotonic()
        r = harness.run_tool(self.d, "qvm-run", "--dispvm=qdvm", "-p",
                             "echo hi; hostname; exit 3", timeout=BOOT_TIMEOUT + 30)
        cold = time.monotonic() - t0
        self.assertEqual(3, r.returncode, r.stderr)
        hi, disp = r.stdout.split()
        self.assertEqual("hi", hi)
        self.assertRegex(disp, r"^disp\d+$")
        self.assertIn("%s: QEMU started" % disp, self.d.log())
        # gone: the qube, its QEMU, its runtime dir, its cgroup, its logs
        deadline = time.monotonic() + 30
        while self.disposables() and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual([], self.disposables())
        self.assert_nothing_left(disp)
        self.assertEqual([], [f for f in os.listdir(os.path.join(
            self.d.state_dir, "log", "qemu")) if f.startswith(disp + ".")])
        print("\nqemu: cold qvm-run --dispvm -p 'echo hi' %.1f s under TCG" % cold)

        # preloaded: a pool of 2 booted in the background, each made small (its balloon
        # took what the guest does not use) and paused; a call is handed one (unpaused, no
        # boot) and the pool refills to 2 off the caller's path
        self.ok("admin.vm.feature.Set", "preload-dispvm-max", "qdvm", "2")
        pool = self.wait_preloaded("qdvm", 2)
        guest, rss = self.paused_small(pool[0])
        self.assertLess(guest, MEMORY, "the balloon took nothing")
        self.assertLess(rss["total"], 0.8 * MEMORY, "paused preload's RSS %d MiB" % (
            rss["total"] >> 20))
        # the daemon shows its own part (not the shared kernel image and QEMU's code) as
        # the qube's memory use
        self.assertAlmostEqual(rss["own"] >> 10, self.current_state(pool[0])["mem"],
                               delta=4096)
        # handed out: the guest gets its memory back (what it does not use is free again)
        t0 = time.monotonic()
        p = subprocess.Popen([harness.tool_path("qvm-run"), "--dispvm=qdvm", "-p",
                              "hostname; " + WAIT_MEMFREE % (MEMORY // 2 >> 10)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=self.d.env())
        first = p.stdout.readline()
        warm = time.monotonic() - t0
        out, err = p.stdout.read(), p.stderr.read()  # communicate() drops what readline buffered
        self.assertEqual(0, p.wait(timeout=60), err)
        self.assertEqual(pool[0] + "\n", first)
        free_kib = int(out.split()[-1])
        self.assertGreater(free_kib, MEMORY // 2 >> 10, "MemFree in the guest after hand-out")
        # the guest deflated while that call ran on: the give-back came 1 s after the
        # unpause, not with the unpause (the guest's CPU goes to the call first)
        self.assertIn("%s: memory given back 1 s after the unpause" % pool[0], self.d.log())
        print("qemu: preloaded qvm-run --dispvm -p hostname %.0f ms; the paused preload: "
              "guest ballooned to %d MiB, QEMU's RSS %d MiB (%.0f%% of memory=%d MiB), its "
              "own %d MiB (%.0f%%); MemFree in the guest after hand-out %d MiB"
              % (warm * 1000, guest >> 20, rss["total"] >> 20, 100.0 * rss["total"] / MEMORY,
                 MEMORY >> 20, rss["own"] >> 20, 100.0 * rss["own"] / MEMORY, free_kib >> 10))
        refilled = self.wait_preloaded("qdvm", 2)
        self.assertEqual(pool[1], refilled[0])
        self.assertNotIn(pool[0], refilled)
        self.assertIn("%s: QEMU started" % refilled[1], self.d.log())
        # the daemon dies (the new preload's guest may still be filling its balloon: paused
        # for the daemon, not yet stopped); its paused preloads do not: the next one adopts
        # them as the pool, stopped, and hands them out
        self.d.kill()
        self.d.start()
        self.assertEqual(refilled, self.wait_preloaded("qdvm", 2))
        self.assertIn("%s: paused small" % refilled[1], self.d.log())
        r = harness.run_tool(self.d, "qvm-run", "--dispvm=qdvm", "-p", "hostname", timeout=60)
        self.assertEqual((0, refilled[0] + "\n"), (r.returncode, r.stdout), r.stderr)
        # its memory comes back once that first call ended (or 1 s after the unpause, if a
        # loaded host made the call take longer)
        self.settled(lambda: self.assertRegex(self.d.log(), "%s: memory given back (after its "
                                              "first call|1 s after the unpause)" % refilled[0]),
                     timeout=10)
        self.ok("admin.vm.feature.Set", "preload-dispvm-max", "qdvm", "0")  # the pool goes
        deadline = time.monotonic() + 60
        while self.disposables() and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual([], self.disposables())
        for name in pool + refilled:
            self.assert_nothing_left(name)

    def paused_small(self, name):
        """Once the engine stopped the shrunk preload (its log says when): the guest's
        size the balloon left (bytes), and QEMU's RSS: all of it, its own part."""
        deadline = time.monotonic() + 30
        pattern = r"%s: paused small .*balloon: guest at (\d+) MiB" % name
        while not re.search(pattern, self.d.log()) and time.monotonic() < deadline:
            time.sleep(0.1)
        m = re.search(pattern, self.d.log())
        self.assertTrue(m, "no shrink before the pause of %s" % name)
        with open("/proc/%d/status" % qemu_pid(self.d, name)) as f:
            kib = dict(re.findall(r"^(\w+):\s+(\d+) kB", f.read(), re.M))
        return int(m.group(1)) << 20, {
            "total": int(kib["VmRSS"]) << 10,
            "own": (int(kib["RssAnon"]) + int(kib["RssShmem"])) << 10}

    def feature(self, vm, name):
        r = harness.parse_reply(self.d.call("admin.vm.feature.Get", name, vm))
        return r.content.decode() if r.ok else ""

    def wait_preloaded(self, dvm, n):
        """The n preloads of dvm, once every one is completed and paused."""
        deadline = time.monotonic() + BOOT_TIMEOUT
        while time.monotonic() < deadline:
            names = self.feature(dvm, "preload-dispvm").split()
            if len(names) == n and all(self.api_state(name) == "Paused" and self.feature(
                    name, "preload-dispvm-completed") for name in names):
                return names
            time.sleep(0.2)
        self.fail("no %d preloads of %s within %d s: %s" % (n, dvm, BOOT_TIMEOUT,
                                                            self.d.log()[-3000:]))


CALLS_OUT_POLICY = """\
test.Echo       *  vmc  work  allow
test.Cat        *  vmc  work  allow
qubes.Filecopy  *  vmc  work  allow
"""
ECHO_SERVICE = "#!/bin/sh\necho \"from=$QREXEC_REMOTE_DOMAIN\"; cat; echo err >&2; exit 3\n"


class CallsOut(QemuTestCase):
    """qrexec-client-vm inside a VM: the call goes up the agent's stream (no descriptors
    cross), the router decides by policy with the VM as the caller, the stdio are copied.

    The same VM has the feature gui (one TCG boot for both): its window channel (docs/gui.md)
    is the port dispenser.gui, QEMU's socket RUNDIR/gui.sock as its host end, the guest
    agent's bridge to the qube's GUI socket, which its GUI agent hands to "xpra". A guest
    root with xpra, Xvfb and Python would take minutes to start under TCG: the template's
    xpra is a stand-in (gui_echo.c) that the real launcher starts the same way and that
    echoes lines, so what is tested is the channel, both ways, and a second connection
    after the first went."""

    @classmethod
    def setUpClass(cls):
        cls.policy_dir = tempfile.mkdtemp(prefix="dispenser-vm-policy-")
        with open(os.path.join(cls.policy_dir, "30-vm.policy"), "w") as f:
            f.write(CALLS_OUT_POLICY)
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        shutil.rmtree(cls.policy_dir, ignore_errors=True)

    @classmethod
    def daemon_args(cls):
        return super().daemon_args() + ["--policy-dir", cls.policy_dir]

    @staticmethod
    def stand_in_xpra():
        with tempfile.TemporaryDirectory() as tmp:
            exe = os.path.join(tmp, "xpra")
            subprocess.run(["cc", "-static", "-O1", "-o", exe, os.path.join(HERE, "gui_echo.c")],
                           check=True, capture_output=True, timeout=120)
            with open(exe, "rb") as f:
                return f.read()

    @staticmethod
    def exchange(sock, line):
        """line through the window channel's host end; what comes back, up to a newline."""
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(120)
            s.connect(sock)
            s.sendall(line.encode() + b"\n")
            got = b""
            while not got.endswith(b"\n"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
            return got.decode()

    def vm_sh(self, command, timeout=120):
        """A shell command in the VM: (exit status, stdout, stderr) as text."""
        r = harness.run_tool(self.d, "qvm-run", "-p", "vmc", command, timeout=timeout)
        return r.returncode, r.stdout, r.stderr

    def test_vm_calls_a_qube_by_policy_with_its_stdio_copied(self):
        # the services, in the template both qubes start from (the VM's image is built
        # from this revision)
        self.start("bb")
        self.qrun("bb", "cat > /etc/qubes-rpc/test.Echo && chmod 755 /etc/qubes-rpc/test.Echo "
                  "&& printf '#!/bin/sh\\nexec cat\\n' > /etc/qubes-rpc/test.Cat && "
                  "chmod 755 /etc/qubes-rpc/test.Cat", user="root", input=ECHO_SERVICE.encode())
        self.qrun("bb", "cat > /usr/bin/xpra && chmod 0755 /usr/bin/xpra", user="root",
                  input=self.stand_in_xpra())
        self.shutdown("bb")
        self.new_appvm("work")
        self.new_vm("vmc")
        self.ok("admin.vm.feature.Set", "gui", "vmc", b"1")
        self.start_vm("vmc")

        # allowed: the target sees the VM as its caller; stdin, stdout, stderr, exit status
        rc, out, err = self.vm_sh("echo hello | qrexec-client-vm work test.Echo; echo rc=$?")
        self.assertEqual((0, "from=vmc\nhello\nrc=3\n", "err\n"), (rc, out, err))
        self.assertIn("qrexec: vmc -> work test.Echo+ allowed", self.d.log())
        # 1 MiB each way, through the VM's stream and the daemon's pipes
        rc, out, err = self.vm_sh("head -c 1048576 /dev/urandom > /tmp/d; md5sum < /tmp/d; "
                                  "qrexec-client-vm work test.Cat < /tmp/d | md5sum")
        self.assertEqual(0, rc, err)
        sums = out.split("\n")
        self.assertEqual(sums[0], sums[1])
        # denied by default: no rule allows it
        rc, out, err = self.vm_sh("qrexec-client-vm work test.Denied; echo rc=$?")
        self.assertEqual((0, "rc=126\n"), (rc, out))
        self.assertIn("Request refused", err)
        self.assertIn("qrexec: vmc -> work test.Denied+ refused", self.d.log())
        # a file copied out of the VM, qvm-copy style: it lands under the VM's name
        rc, out, err = self.vm_sh("mkdir -p /tmp/s && echo from-the-vm > /tmp/s/note && "
                                  "tar -cf - -C /tmp/s note | qrexec-client-vm work "
                                  "qubes.Filecopy; echo rc=$?")
        self.assertEqual((0, "rc=0\n"), (rc, out), err)
        self.assertEqual(b"from-the-vm\n",
                         self.qrun("work", "cat ~/QubesIncoming/vmc/note").stdout)

        # the window channel: the GUI agent started "xpra" before the VM was ready
        self.assertEqual((0, "xpra is ready (a stand-in)\nDISPLAY=:0\n"),
                         self.vm_sh("cat /tmp/.dispenser-gui.log; echo DISPLAY=$DISPLAY")[:2])
        sock = os.path.join(self.d.runtime_dir, "qemu", "vmc", "gui.sock")
        self.assertEqual("echo:hello through the port\n",
                         self.exchange(sock, "hello through the port"))
        # the host's GUI daemon went (a daemon restart): the next one gets through too
        self.assertEqual("echo:again\n", self.exchange(sock, "again"))
        self.tool("qvm-kill", "vmc")
        self.kill("work")


class BackgroundBuild(QemuTestCase):
    """A template revision's root image is built by a builder process beside the daemon,
    never in its loop: a big template takes seconds to export, and every other qube's
    calls (and preload hand-outs) must not wait for it."""

    def test_daemon_answers_while_the_image_builds_and_kill_ends_the_wait(self):
        self.new_vm("bigvm")
        self.start(self.TEMPLATE)  # a template revision with 300 MiB more to export
        self.tool("qvm-run", "-u", "root", "-p", self.TEMPLATE,
                  "head -c 314572800 /dev/urandom > /big")
        self.shutdown(self.TEMPLATE)
        images = os.path.join(self.d.state_dir, "qemu", "images",
                              self.get_prop(self.TEMPLATE, "uuid")[2])
        start = subprocess.Popen([harness.tool_path("qvm-start"), "bigvm"], env=self.d.env(),
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.addCleanup(start.kill)
        self.addCleanup(start.stdout.close)
        deadline = time.monotonic() + 60
        while not self.partial_images(images) and time.monotonic() < deadline:
            time.sleep(0.01)
        self.assertTrue(self.partial_images(images), "no build began: " + self.d.log()[-2000:])
        # the daemon answers while the builder works (a build in the loop would hold this
        # call until the image was renamed into place)
        self.assertIn(b"bigvm ", self.ok("admin.vm.List"))
        self.assertTrue(self.partial_images(images), "the build ended before the call")
        self.assertIn("building root image", self.d.log())
        # a kill ends the waiting start; nothing of the qube is left, the image completes
        self.kill("bigvm")
        self.assertNotEqual(0, start.wait(timeout=30))
        self.assert_state("bigvm", "Halted")
        self.assert_nothing_left("bigvm")
        deadline = time.monotonic() + 120
        while self.partial_images(images) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual([], self.partial_images(images))
        self.assertEqual(1, len(os.listdir(images)), os.listdir(images))
        self.assertIn("ready in", self.d.log())

    @staticmethod
    def partial_images(images):
        return [f for f in os.listdir(images) if f.endswith(".tmp")] if os.path.isdir(images) \
            else []


@unittest.skipIf(missing(), missing() or "")
class KvmProbeGuest(unittest.TestCase):
    """The guest half of the engine's KVM probe, run under TCG (no /dev/kvm here): with
    dispenser.probe=1 the initramfs prints its marker and resets at once, so the probe
    tells "boots" from "hangs" without a root image."""

    def test_probe_guest_prints_its_marker_and_ends(self):
        out = tempfile.mkdtemp(prefix="dispenser-vm-guest-")
        self.addCleanup(shutil.rmtree, out, True)
        build_guest(out)
        r = subprocess.run([QEMU, "-M", "microvm", "-accel", "tcg", "-m", "128", "-nodefaults",
                            "-no-user-config", "-nographic", "-no-reboot", "-serial", "stdio",
                            "-kernel", os.path.join(out, "vmlinux"),
                            "-initrd", os.path.join(out, "initramfs.cpio"),
                            "-append", "console=ttyS0 quiet panic=-1 reboot=t pci=off "
                            "tsc=reliable no_timer_check tsc_early_khz=%d dispenser.probe=1"
                            % host_tsc_khz()],
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
        self.assertIn(b"dispenser-probe-ok", r.stdout)
        self.assertEqual(0, r.returncode, r.stderr)


class Failures(QemuTestCase):

    def test_kernel_path_is_refused(self):
        """A property must not make QEMU read any host file into a guest: a kernel is a
        name in the kernels dir, as Qubes' `kernel` property is."""
        self.new_vm("pathk")
        r = harness.parse_reply(self.d.call("admin.vm.property.Set", "kernel", "pathk",
                                            b"/etc/shadow"))
        self.assertEqual("QubesPropertyValueError", r.exc)
        self.assertIn("not a path", r.message)
        self.assertTrue(self.get_prop("pathk", "kernel")[0])  # unchanged: still the default
        self.assert_state("pathk", "Halted")
        self.assert_nothing_left("pathk")

    def test_missing_kernel_leaves_nothing(self):
        self.new_vm("badk")
        self.ok("admin.vm.property.Set", "kernel", "badk", "nosuchkernel")
        r = harness.run_tool(self.d, "qvm-start", "badk", timeout=60)
        self.assertNotEqual(0, r.returncode)
        self.assertIn(os.path.join(self.guest_dir, "kernels", "nosuchkernel", "vmlinux"),
                      r.stdout + r.stderr)
        self.assert_state("badk", "Halted")
        self.assert_nothing_left("badk")

    def test_kernel_qemu_cannot_load_leaves_nothing(self):
        self.new_vm("junk")
        kdir = os.path.join(self.guest_dir, "kernels", "junk")
        os.makedirs(kdir)
        self.addCleanup(shutil.rmtree, kdir, True)
        with open(os.path.join(kdir, "vmlinux"), "wb") as f:
            f.write(b"\0" * 4096)
        shutil.copy(os.path.join(self.guest_dir, "initramfs.cpio"), kdir)
        self.ok("admin.vm.property.Set", "kernel", "junk", "junk")
        r = harness.run_tool(self.d, "qvm-start", "junk", timeout=60)
        self.assertNotEqual(0, r.returncode)
        self.assertIn("QEMU did not start", r.stdout + r.stderr)
        self.assert_state("junk", "Halted")
        self.assert_nothing_left("junk")

    def test_template_in_qemu_mode_is_refused(self):
        self.ok("admin.vm.property.Set", "virt_mode", self.TEMPLATE, "qemu")
        self.addCleanup(self.ok, "admin.vm.property.Reset", "virt_mode", self.TEMPLATE)
        r = harness.run_tool(self.d, "qvm-start", self.TEMPLATE, timeout=30)
        self.assertNotEqual(0, r.returncode)
        self.assertIn("AppVMs and disposables only", r.stdout + r.stderr)
        self.assert_state(self.TEMPLATE, "Halted")


if __name__ == "__main__":
    unittest.main()
