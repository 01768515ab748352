"""The hibernated tier of a VM pool (feature preload-dispvm-hibernated): preloads beyond the
paused ones have their state saved to a file by their engine (QEMU migration to a file)
and their QEMU ended; a request takes a paused preload first, else wakes a hibernated one
(a new QEMU loading the file, used once), else boots. Real VMs under TCG: few boots."""
import os
import re
import stat
import time
import unittest

import harness
from test_qemu import BOOT_TIMEOUT, QemuTestCase, alive, missing


def qemu_pids():
    """Every QEMU process on the host, with its command line."""
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                cmd = f.read().split(b"\0")
        except OSError:
            continue
        if cmd and cmd[0].endswith(b"qemu-system-x86_64"):
            out[int(pid)] = b" ".join(cmd).decode(errors="replace")
    return out


@unittest.skipIf(missing(), missing() or "")
class Hibernated(QemuTestCase):

    def feature(self, vm, name):
        r = harness.parse_reply(self.d.call("admin.vm.feature.Get", name, vm))
        return r.content.decode() if r.ok else ""

    def status(self, dvm):
        line = self.ok("dispenser.preload.Status", "", dvm).decode()
        head, _, _ = line.rstrip("\n").partition(" failure=")
        return dict(f.split("=", 1) for f in head.split(" ")[1:])

    def hib_dir(self, name):
        return os.path.join(self.d.state_dir, "qemu", "hibernate", self.get_prop(name, "uuid")[2])

    def wait_pool(self, dvm, paused, hibernated):
        """The list once it holds `paused` paused and `hibernated` hibernated preloads:
        (paused names, hibernated names)."""
        deadline = time.monotonic() + 2 * BOOT_TIMEOUT
        while time.monotonic() < deadline:
            names = self.feature(dvm, "preload-dispvm").split()
            saved = [n for n in names if self.feature(n, "preload-dispvm-saved") == "1"]
            ready = [n for n in names if n not in saved and self.feature(
                n, "preload-dispvm-completed") and self.api_state(n) == "Paused"]
            if (len(ready), len(saved)) == (paused, hibernated) and len(names) == paused + hibernated:
                return ready, saved
            time.sleep(0.3)
        self.fail("no %d paused + %d hibernated preloads of %s: %s" % (
            paused, hibernated, dvm, self.d.log()[-4000:]))

    def new_dvm(self, name):
        self.new_vm(name)
        self.ok("admin.vm.property.Set", "template_for_dispvms", name, "True")
        # refills wait: the test decides when a preload is made
        self.ok("admin.vm.feature.Set", "preload-dispvm-delay", name, "600")

    def assert_hibernated(self, name):
        """No QEMU, no runtime dir, its image on disk: root's, 0600. Its bytes on disk."""
        self.assertFalse(os.path.exists(os.path.join(self.d.runtime_dir, "qemu", name)))
        self.assertEqual([], [c for c in qemu_pids().values() if "-name %s," % name in c])
        image = os.path.join(self.hib_dir(name), "image")
        st = os.stat(image)
        self.assertEqual((0, 0o600), (st.st_uid, stat.S_IMODE(st.st_mode)))
        self.assertEqual("Paused", self.api_state(name))
        return st.st_blocks * 512

    def dispvm_call(self, dvm, command="echo hi"):
        t0 = time.monotonic()
        r = harness.run_tool(self.d, "qvm-run", "--dispvm=" + dvm, "-p", command, timeout=120)
        took = time.monotonic() - t0
        self.assertEqual(0, r.returncode, r.stderr + self.d.log()[-3000:])
        return r.stdout, took

    def handed_out(self):
        return re.findall(r"preload: (disp\d+) handed out to", self.d.log())

    def test_paused_first_then_the_hibernated_one_wakes_once_even_after_a_restart(self):
        self.new_dvm("hdvm")
        self.ok("admin.vm.feature.Set", "preload-dispvm-max", "hdvm", "1")
        self.ok("admin.vm.feature.Set", "preload-dispvm-hibernated", "hdvm", "1")
        [paused], [hib] = self.wait_pool("hdvm", 1, 1)
        size = self.assert_hibernated(hib)
        hib_dir = self.hib_dir(hib)
        st = self.status("hdvm")
        self.assertEqual(("1", "1", "1", "0", "full"), (st["hibernated"], st["hibernated_max"],
                                                       st["ready"], st["starting"], st["state"]))
        self.assertRegex(harness.run_tool(self.d, "dispenser-preload", "status", "hdvm").stdout,
                         r"hdvm .* 1/1 +full")
        mem = int(self.get_prop(hib, "memory")[2])
        # the daemon dies: the next one adopts both, the hibernated one from its files alone
        before = qemu_pids()
        self.d.kill()
        self.d.start()
        self.assertIn("%s: adopted (hibernated: no QEMU, its image on disk)" % hib, self.d.log())
        self.assertEqual(([paused], [hib]), self.wait_pool("hdvm", 1, 1))
        self.assertEqual(before, qemu_pids())
        # a paused preload first
        out, t_paused = self.dispvm_call("hdvm")
        self.assertEqual("hi\n", out)
        self.assertEqual(paused, self.handed_out()[-1])
        self.assertTrue(os.path.exists(os.path.join(hib_dir, "image")))
        # none paused: the hibernated one wakes, answers, and its image is gone at once
        out, t_woken = self.dispvm_call("hdvm", "echo hi; hostname")
        self.assertEqual("hi\n%s\n" % hib, out)
        self.assertIn("preload: hdvm: waking hibernated %s" % hib, self.d.log())
        self.assertIn("%s: restored from its hibernation image and refreshed" % hib, self.d.log())
        self.settled(lambda: self.assertFalse(os.path.exists(hib_dir)), timeout=30)
        self.settled(lambda: self.assertNotIn(hib, self.tool("qvm-ls", "--raw-list").stdout),
                     timeout=30)
        loaded = re.search(r"%s: state loaded (\d+) ms after QEMU's start" % hib, self.d.log())
        print("\nqemu hibernate: image %d MiB on disk (memory %d MiB); hand-out paused %.2f s, "
              "woken %.2f s (its state loaded %s ms after QEMU's start)"
              % (size >> 20, mem, t_paused, t_woken, loaded.group(1) if loaded else "?"))

    def test_counted_as_no_memory_outdated_and_trimmed_first(self):
        self.new_dvm("rdvm")
        self.ok("admin.vm.feature.Set", "preload-dispvm-hibernated", "rdvm", "1")
        _, [hib] = self.wait_pool("rdvm", 0, 1)
        self.assert_hibernated(hib)
        hib_dir = self.hib_dir(hib)
        # nothing else runs: the free memory the pool counts with is the host's, the
        # hibernated preload's `memory` (400 MiB) is not promised to it
        with open("/proc/meminfo") as f:
            avail = int(re.search(r"MemAvailable:\s+(\d+)", f.read()).group(1)) // 1024
        self.assertLess(abs(avail - int(self.status("rdvm")["mem_free"])), 150)
        # the template moves on: the hibernated preload is outdated, discarded (its files
        # gone), and a new one is made and hibernated
        self.start("bb")
        self.qrun("bb", "echo v2 > /etc/hib-mark", user="root")
        self.shutdown("bb")
        self.settled(lambda: self.assertFalse(os.path.exists(hib_dir)), timeout=60)
        _, [hib2] = self.wait_pool("rdvm", 0, 1)
        self.assertNotEqual(hib, hib2)
        hib_dir = self.hib_dir(hib2)
        # a paused one beside it; then the tier goes: its preload goes, not the paused one
        self.ok("admin.vm.feature.Set", "preload-dispvm-max", "rdvm", "1")
        [paused], _ = self.wait_pool("rdvm", 1, 1)
        self.ok("admin.vm.feature.Remove", "preload-dispvm-hibernated", "rdvm")
        self.assertEqual(([paused], []), self.wait_pool("rdvm", 1, 0))
        self.settled(lambda: self.assertFalse(os.path.exists(hib_dir)), timeout=30)
        out, _ = self.dispvm_call("rdvm", "cat /etc/hib-mark")
        self.assertEqual("v2\n", out)
        # the paused one was started hibernatable (its own private image): gone with it
        self.settled(lambda: self.assertEqual([], os.listdir(os.path.join(
            self.d.state_dir, "qemu", "hibernate"))), timeout=30)
