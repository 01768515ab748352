"""virt_mode=qemu preloads in restore mode (feature qemu-preload-mode=restore): one golden
VM per disposable template revision is booted and saved (its RAM a memfd the daemon seals),
each preload is restored from it copy-on-write, and each clone is made itself (hostname,
machine-id, entropy, its own writes). Real VMs under TCG: two golden boots in all."""
import ctypes
import fcntl
import hashlib
import mmap
import os
import re
import subprocess
import threading
import time
import unittest

import harness
from test_qemu import BOOT_TIMEOUT, QemuTestCase, missing, qemu_pid

PROBE = ("hostname; echo id=$(cat /etc/machine-id 2>/dev/null); head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n';"
         " echo; mkdir -p /tmp/sys; mount -t sysfs sys /tmp/sys;"
         " echo rng=$(cat /tmp/sys/class/misc/hw_random/rng_current 2>/dev/null); umount /tmp/sys; rmdir /tmp/sys;"
         " ls /home /tmp; echo mine > /home/clone-mark; echo mine > /tmp/clone-mark")


RAM_MEMFD = "dispenser-golden-ram"
SEALS = fcntl.F_SEAL_WRITE | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_SEAL
FALLOC_PUNCH_HOLE = 0x02 | 0x01  # FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
LIBC = ctypes.CDLL(None, use_errno=True)
SAVED = re.compile(r"golden VM @golden-[0-9a-f]+ saved and sealed in")


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


@unittest.skipIf(missing(), missing() or "")
class GoldenRestore(QemuTestCase):

    def feature(self, vm, name):
        r = harness.parse_reply(self.d.call("admin.vm.feature.Get", name, vm))
        return r.content.decode() if r.ok else ""

    def wait_preloads(self, dvm, n):
        """The n preloads of dvm, once completed and paused."""
        deadline = time.monotonic() + BOOT_TIMEOUT
        while time.monotonic() < deadline:
            names = self.feature(dvm, "preload-dispvm").split()
            if len(names) >= n and all(self.api_state(p) == "Paused" and self.feature(
                    p, "preload-dispvm-completed") for p in names):
                return names
            time.sleep(0.2)
        self.fail("no %d preloads of %s within %d s: %s" % (n, dvm, BOOT_TIMEOUT,
                                                            self.d.log()[-3000:]))

    def disposables(self):
        return [l.split()[0] for l in self.tool("qvm-ls", "--raw-list").stdout.split()
                if re.match(r"disp\d+$", l)]

    def wait_no_disposables(self):
        deadline = time.monotonic() + 60
        while self.disposables() and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual([], self.disposables(), self.d.log()[-3000:])

    def private_image(self, dvm):
        vol = os.path.join(self.d.state_dir, "qemu", "volumes", self.get_prop(dvm, "uuid")[2])
        os.makedirs(vol)
        image = os.path.join(vol, "private.img")
        subprocess.run(["truncate", "-s", "64M", image], check=True)
        subprocess.run(["mkfs.ext4", "-q", "-F", image], check=True)

    def dispvm_call(self, dvm):
        r = harness.run_tool(self.d, "qvm-run", "--dispvm=" + dvm, "-u", "root", "-p", PROBE,
                             timeout=120)
        self.assertEqual(0, r.returncode, r.stderr)
        return r.stdout.splitlines()

    def golden_ram_fd(self, pid):
        """The path of the golden's RAM memfd as QEMU `pid` holds it (None: it holds none)."""
        fd_dir = "/proc/%d/fd" % pid
        for fd in os.listdir(fd_dir):
            try:
                if os.readlink(os.path.join(fd_dir, fd)).startswith("/memfd:" + RAM_MEMFD):
                    return os.path.join(fd_dir, fd)
            except FileNotFoundError:
                pass
        return None

    def assert_ram_sealed(self, path):
        """Nothing can write the golden's RAM through its memfd, not even root: every write
        path fails and the seals cannot be changed; a private mapping still can be written."""
        fd = os.open(path, os.O_RDWR)  # QEMU 7.2 opens mem-path so too
        try:
            self.assertEqual(SEALS, fcntl.fcntl(fd, fcntl.F_GET_SEALS) & SEALS)
            size = os.fstat(fd).st_size
            attempts = {
                "pwrite": lambda: os.pwrite(fd, b"x", 0),
                "grow": lambda: os.ftruncate(fd, size + 4096),
                "shrink": lambda: os.ftruncate(fd, 0),
                "shared mapping": lambda: mmap.mmap(fd, 4096, mmap.MAP_SHARED),
                "unseal": lambda: fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_WRITE),
            }
            for what, attempt in attempts.items():
                with self.assertRaises(PermissionError, msg=what):
                    attempt()
            self.assertEqual(-1, LIBC.fallocate(fd, FALLOC_PUNCH_HOLE, ctypes.c_long(0),
                                                ctypes.c_long(4096)), "punch hole")
            private = mmap.mmap(fd, 4096, mmap.MAP_PRIVATE)
            before = os.pread(fd, 16, 0)
            private[0:16] = b"clone was here!!"
            self.assertEqual(before, os.pread(fd, 16, 0))
            private.close()
            return size
        finally:
            os.close(fd)

    def watch_save(self, uuid):
        """A thread that, while the golden VM of uuid is being saved (its state.tmp
        exists), makes Admin API calls: its result says whether one was answered during
        the save (the save does not hold up the daemon's loop)."""
        result = {"answered": 0, "seen": False}
        pattern = os.path.join(self.d.runtime_dir, "qemu-golden", uuid)

        def saving():
            try:
                return any(os.path.exists(os.path.join(pattern, fp, "state.tmp"))
                           for fp in os.listdir(pattern))
            except FileNotFoundError:
                return False

        def watch():
            deadline = time.monotonic() + BOOT_TIMEOUT
            i = 0
            while time.monotonic() < deadline:
                i += 1
                if i % 500 == 0 and SAVED.search(self.d.log()):
                    return
                if not saving():
                    time.sleep(0.001)
                    continue
                result["seen"] = True
                reply = harness.parse_reply(self.d.call("admin.vm.List"))
                if reply.ok and saving():
                    result["answered"] += 1

        thread = threading.Thread(target=watch, daemon=True)
        thread.start()
        return thread, result

    def ram_digest(self, path):
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest()

    def test_preloads_are_restored_clones_each_fresh_and_the_golden_goes_with_its_template(self):
        self.new_vm("gdvm")
        self.ok("admin.vm.property.Set", "template_for_dispvms", "gdvm", "True")
        self.private_image("gdvm")
        uuid = self.get_prop("gdvm", "uuid")[2]
        self.ok("admin.vm.feature.Set", "qemu-preload-mode", "gdvm", "restore")
        # no golden yet: the first preload boots, the golden VM boots beside it
        watcher, during_save = self.watch_save(uuid)
        self.ok("admin.vm.feature.Set", "preload-dispvm-max", "gdvm", "1")
        [booted] = self.wait_preloads("gdvm", 1)
        self.assertIn("%s: no golden VM saved yet: it boots" % booted, self.d.log())
        self.settled(lambda: self.assertEqual(1, len(SAVED.findall(self.d.log()))),
                     timeout=BOOT_TIMEOUT)
        # the save (the guest closing its port, QEMU writing the state) ran on the loop
        # step by step: the daemon answered calls meanwhile
        watcher.join(timeout=30)
        self.assertTrue(during_save["seen"], "the save's state.tmp was never seen")
        self.assertGreater(during_save["answered"], 0, "no call answered during the save")
        golden = os.path.join(self.d.runtime_dir, "qemu-golden", uuid)
        [fp] = os.listdir(golden)
        self.assertEqual(["private.img", "state"], sorted(os.listdir(os.path.join(golden, fp))))
        # the daemon holds the golden's RAM, sealed; nobody else but clones does
        daemon_ram = self.golden_ram_fd(self.d.proc.pid)
        self.assertIsNotNone(daemon_ram)
        self.assert_ram_sealed(daemon_ram)
        digest = self.ram_digest(daemon_ram)
        ram_inode = os.stat(daemon_ram).st_ino

        # each clone is itself: name, machine-id, RNG; and sees none of another's writes
        seen = []
        for i in range(3):  # the booted preload, then two restored from the golden
            if i:
                [clone] = self.wait_preloads("gdvm", 1)
                log = self.d.log()
                self.assertIn("%s: restoring from golden VM" % clone, log)
                self.assertIn("%s: restored from golden VM" % clone, log)
                pid = qemu_pid(self.d, clone)
                self.assert_confined(pid, "a clone's QEMU")
                ram = self.golden_ram_fd(pid)
                self.assertIsNotNone(ram, "%s maps no golden RAM" % clone)
                self.assert_ram_sealed(ram)
                print("\nqemu restore mode: paused clone %s RSS %d KiB" % (clone, rss_kib(pid)))
            host, machine_id, random, rng, *rest = self.dispvm_call("gdvm")
            # a clone's virtio-rng: the host's entropy keeps coming (a booted VM has none)
            self.assertEqual("rng=virtio_rng.0" if i else "rng=none", rng)
            self.assertRegex(host, r"^disp\d+$")
            # a clone's own (the busybox template has none: a booted VM neither)
            self.assertRegex(machine_id, r"^id=[0-9a-f]{32}$" if i else r"^id=$")
            self.assertRegex(random, r"^[0-9a-f]{32}$")
            self.assertNotIn("clone-mark", " ".join(rest))
            seen.append((host, machine_id, random))
        self.assertEqual(booted, seen[0][0])
        for i in range(3):  # no two alike
            self.assertEqual(len(seen[1:]), len({s[i] for s in seen[1:]}), seen)
        self.assertEqual(3, len({s[2] for s in seen}), seen)
        self.assertEqual(1, len(SAVED.findall(self.d.log())))  # refills reuse the golden
        # the clones wrote to their RAM (files in /tmp, the page cache): the golden's is as saved
        self.assertEqual(digest, self.ram_digest(daemon_ram))

        # the template is updated: the preload is outdated, and so is the golden; the next
        # golden boots from the new root and the old one's files and RAM go
        self.start("bb")
        self.qrun("bb", "echo v2 > /etc/golden-mark", user="root")
        self.shutdown("bb")
        self.settled(lambda: self.assertEqual(2, len(SAVED.findall(self.d.log()))),
                     timeout=2 * BOOT_TIMEOUT)
        self.settled(lambda: self.assertNotEqual([fp], os.listdir(golden)), timeout=10)
        old_fp, [fp] = fp, os.listdir(golden)
        self.assertNotEqual(ram_inode, os.stat(self.golden_ram_fd(self.d.proc.pid)).st_ino)
        self.wait_preloads("gdvm", 1)
        r = harness.run_tool(self.d, "qvm-run", "--dispvm=gdvm", "-p", "cat /etc/golden-mark",
                             timeout=120)
        self.assertEqual((0, "v2\n"), (r.returncode, r.stdout), r.stderr)
        logs = os.path.join(self.d.state_dir, "log", "qemu")
        self.assertNotIn("@golden-%s.console.log" % old_fp, os.listdir(logs))

        # the template goes: its preloads, then its golden files and RAM
        self.ok("admin.vm.feature.Set", "preload-dispvm-max", "gdvm", "0")
        self.wait_no_disposables()
        self.assertTrue(os.path.exists(golden))
        self.assertIn("@golden-%s.console.log" % fp, os.listdir(logs))
        self.ok("admin.vm.Remove", "", "gdvm")
        self.assertFalse(os.path.exists(golden))
        self.assertEqual([], [f for f in os.listdir(logs) if f.startswith("@golden-")])
        self.assertIsNone(self.golden_ram_fd(self.d.proc.pid))
        self.assertEqual([], [d for d in os.listdir(os.path.join(self.d.runtime_dir, "qemu"))
                              if d.startswith("@golden-")])

    def test_golden_files_are_swept_at_daemon_start(self):
        """A restarted daemon has no golden RAM: every golden directory goes, a template's
        next preloads boot while a new golden is made."""
        orphan = os.path.join(self.d.runtime_dir, "qemu-golden",
                              "00000000-0000-4000-8000-000000000000", "0123456789abcdef")
        os.makedirs(orphan)
        with open(os.path.join(orphan, "state"), "w") as f:
            f.write("x")
        logs = os.path.join(self.d.state_dir, "log", "qemu")
        os.makedirs(logs, exist_ok=True)
        log = os.path.join(logs, "@golden-0123456789abcdef.console.log")
        open(log, "w").close()
        self.d.restart()
        self.assertFalse(os.path.exists(os.path.dirname(orphan)))
        self.assertFalse(os.path.exists(log))
