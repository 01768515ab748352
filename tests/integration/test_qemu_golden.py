"""virt_mode=qemu preloads in restore mode (feature qemu-preload-mode=restore): one golden
VM per disposable template revision is booted and saved, each preload is restored from it
copy-on-write, and each clone is made itself (hostname, machine-id, entropy, its own
writes). Real VMs under TCG: one golden boot for the whole class."""
import os
import re
import subprocess
import time
import unittest

import harness
from test_qemu import BOOT_TIMEOUT, KERNEL_CACHE, QemuTestCase, missing, qemu_pid

PROBE = ("hostname; cat /etc/machine-id; head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n';"
         " echo; mkdir -p /tmp/sys; mount -t sysfs sys /tmp/sys;"
         " cat /tmp/sys/class/misc/hw_random/rng_current; umount /tmp/sys; rmdir /tmp/sys;"
         " ls /home /tmp; echo mine > /home/clone-mark; echo mine > /tmp/clone-mark")


def guest_has_virtio_rng():
    """Kernel caches made before virtio_rng was added to fetch-vm-kernel.sh lack it."""
    with open(os.path.join(KERNEL_CACHE, "modules.order")) as f:
        return "virtio-rng.ko" in f.read().split()


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

    def test_preloads_are_restored_clones_each_fresh_and_the_golden_goes_with_its_template(self):
        self.new_vm("gdvm")
        self.ok("admin.vm.property.Set", "template_for_dispvms", "gdvm", "True")
        self.private_image("gdvm")
        uuid = self.get_prop("gdvm", "uuid")[2]
        self.ok("admin.vm.feature.Set", "qemu-preload-mode", "gdvm", "restore")
        t0 = time.monotonic()
        # preloads that wait for the golden VM (they have no QEMU yet) can be discarded
        self.ok("admin.vm.feature.Set", "preload-dispvm-max", "gdvm", "2")
        deadline = time.monotonic() + 30
        while len(self.feature("gdvm", "preload-dispvm").split()) < 2:
            self.assertLess(time.monotonic(), deadline, self.d.log()[-3000:])
            time.sleep(0.05)
        self.ok("admin.vm.feature.Set", "preload-dispvm-max", "gdvm", "0")
        self.wait_no_disposables()
        self.ok("admin.vm.feature.Set", "preload-dispvm-max", "gdvm", "2")
        first, second = self.wait_preloads("gdvm", 2)
        filled = time.monotonic() - t0
        log = self.d.log()
        for p in (first, second):
            self.assertIn("%s: restoring from golden VM" % p, log)
            self.assertIn("%s: restored from golden VM" % p, log)
        self.assertEqual(1, len(re.findall(r"golden VM @golden-[0-9a-f]+ saved in", log)),
                         log[-3000:])
        golden = os.path.join(self.d.runtime_dir, "qemu-golden", uuid)
        [fp] = os.listdir(golden)
        self.assertEqual(["private.img", "ram", "state"], sorted(os.listdir(
            os.path.join(golden, fp))))
        rss = [rss_kib(qemu_pid(self.d, p)) for p in (first, second)]
        ram = os.stat(os.path.join(golden, fp, "ram")).st_blocks // 2
        print("\nqemu restore mode: 2 preloads (golden boot + save + 2 restores) in %.1f s;"
              " paused clone RSS %s KiB; the golden's RAM file %d KiB" % (filled, rss, ram))

        # each clone is itself: name, machine-id, RNG; and sees none of another's writes
        seen = []
        for _ in range(3):  # the first two preloads, then a refill restored from the golden
            host, machine_id, random, rng, *rest = self.dispvm_call("gdvm")
            if guest_has_virtio_rng():  # the host's entropy keeps coming after the reseed
                self.assertEqual("virtio_rng.0", rng)
            self.assertRegex(host, r"^disp\d+$")
            self.assertRegex(machine_id, r"^[0-9a-f]{32}$")
            self.assertRegex(random, r"^[0-9a-f]{32}$")
            self.assertNotIn("clone-mark", " ".join(rest))
            seen.append((host, machine_id, random))
            if len(seen) < 3:
                self.wait_preloads("gdvm", 2)  # the refill, restored too
        self.assertEqual({first, second}, {seen[0][0], seen[1][0]})
        for i in range(3):  # no two alike
            self.assertEqual(3, len({s[i] for s in seen}), seen)
        self.assertEqual(1, self.d.log().count(" saved in "))  # refills reuse the golden

        # the template is updated: the preloads are outdated, and so is the golden; the next
        # golden boots from the new root and the old one's files go
        self.start("bb")
        self.qrun("bb", "echo v2 > /etc/golden-mark", user="root")
        self.shutdown("bb")
        deadline = time.monotonic() + BOOT_TIMEOUT
        while len(os.listdir(golden)) != 1 or os.listdir(golden)[0] == fp:
            self.assertLess(time.monotonic(), deadline, self.d.log()[-3000:])
            time.sleep(0.2)
        old_fp, [fp] = fp, os.listdir(golden)
        self.wait_preloads("gdvm", 2)
        r = harness.run_tool(self.d, "qvm-run", "--dispvm=gdvm", "-p", "cat /etc/golden-mark",
                             timeout=120)
        self.assertEqual((0, "v2\n"), (r.returncode, r.stdout), r.stderr)
        self.assertEqual(2, len(re.findall(r"golden VM @golden-[0-9a-f]+ saved in", self.d.log())))
        logs = os.path.join(self.d.state_dir, "log", "qemu")
        self.assertNotIn("@golden-%s.console.log" % old_fp, os.listdir(logs))

        # the template goes: its preloads, then its golden files
        self.ok("admin.vm.feature.Set", "preload-dispvm-max", "gdvm", "0")
        self.wait_no_disposables()
        self.assertTrue(os.path.exists(golden))
        self.assertIn("@golden-%s.console.log" % fp, os.listdir(logs))
        self.ok("admin.vm.Remove", "", "gdvm")
        self.assertFalse(os.path.exists(golden))
        self.assertEqual([], [f for f in os.listdir(logs) if f.startswith("@golden-")])

    def test_orphaned_golden_files_are_swept_at_daemon_start(self):
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
