"""Guest logs (STATE/log/guest-<name>.log): they go with their qube (a disposable's with
it), are rotated at start past 1 MiB, the tail of a failed start's log is kept in
log/failed-start/ (16 at most), and the logs of qubes that no longer exist are swept when
the daemon starts."""

import os
import re
import time
import unittest

import test_engine
from test_engine import EngineTestCase

MIB = 1024 * 1024


@unittest.skipIf(test_engine.engine_skip_reason(), test_engine.engine_skip_reason())
class Logs(EngineTestCase):
    @classmethod
    def populate(cls, d):
        super().populate(d)
        for vm in (b"dvm", b"work"):
            d.call("admin.vm.Create.AppVM", "bb", "dom0", b"name=" + vm + b" label=red")
        d.call("admin.vm.property.Set", "template_for_dispvms", "dvm", b"True")

    def log_dir(self):
        return os.path.join(self.d.state_dir, "log")

    def log_path(self, name, suffix=""):
        return os.path.join(self.log_dir(), "guest-%s.log%s" % (name, suffix))

    def guest_logs(self):
        d = self.log_dir()
        return sorted(f for f in os.listdir(d) if f.startswith("guest-")) \
            if os.path.isdir(d) else []

    def failed_starts(self):
        d = os.path.join(self.log_dir(), "failed-start")
        return sorted(os.listdir(d)) if os.path.isdir(d) else []

    def test_disposables_take_their_logs_with_them(self):
        names = []
        for _ in range(3):
            name = self.ok("admin.vm.CreateDisposable", "", "dvm").decode()
            names.append(name)
            self.start(name)
            self.assertTrue(os.path.exists(self.log_path(name)), self.guest_logs())
            self.kill(name)
        for name in names:
            self.settled(lambda: self.assertNotIn(name, self.vm_names()))
        self.assertEqual([], [f for f in self.guest_logs() if re.match(r"guest-disp\d+", f)])

    def test_a_removed_qube_takes_its_log(self):
        self.new_appvm("logged")
        self.start("logged")
        self.kill("logged")
        self.assertTrue(os.path.exists(self.log_path("logged")))
        with open(self.log_path("logged", ".1"), "w") as f:
            f.write("an older log\n")
        self.ok("admin.vm.Remove", dest="logged")
        self.assertNotIn("guest-logged.log", self.guest_logs())
        self.assertNotIn("guest-logged.log.1", self.guest_logs())

    def test_rotated_at_start_past_one_mib(self):
        self.new_appvm("chatty")
        os.makedirs(self.log_dir(), exist_ok=True)
        with open(self.log_path("chatty"), "w") as f:
            f.write("old line\n" * (MIB // 9 + 1000))
        big = os.path.getsize(self.log_path("chatty"))
        self.assertGreater(big, MIB)
        self.start("chatty")
        self.kill("chatty")
        self.assertEqual(big, os.path.getsize(self.log_path("chatty", ".1")))
        self.assertLess(os.path.getsize(self.log_path("chatty")), MIB)
        # a log under the limit stays where it is
        small = os.path.getsize(self.log_path("chatty"))
        self.start("chatty")
        self.kill("chatty")
        self.assertGreaterEqual(os.path.getsize(self.log_path("chatty")), small)
        self.assertEqual(big, os.path.getsize(self.log_path("chatty", ".1")))

    def make_unready_qube(self, name):
        """A qube whose start fails: its startup outlasts qrexec_timeout."""
        test_engine.build_template(self.d, "slowtpl")
        self.addCleanup(self.remove_quietly, "slowtpl")
        self.start("slowtpl")
        self.qrun("slowtpl", "mkdir -p /etc/dispenser/startup.d && "
                             "printf '#!/bin/sh\\nsleep 5\\n' > /etc/dispenser/startup.d/50-slow && "
                             "chmod 755 /etc/dispenser/startup.d/50-slow", user="root")
        self.shutdown("slowtpl")
        self.new_appvm(name, template="slowtpl")
        self.set_prop(name, "qrexec_timeout", 1)

    def test_failed_start_keeps_the_tail_of_its_log(self):
        self.make_unready_qube("broken")
        failed_dir = os.path.join(self.log_dir(), "failed-start")
        os.makedirs(failed_dir, exist_ok=True)
        # 20 older ones: only the newest 16 (the new one among them) are kept
        for i in range(20):
            path = os.path.join(failed_dir, "old%02d.log" % i)
            with open(path, "w") as f:
                f.write("old\n")
            os.utime(path, (time.time() - 3600 + i, time.time() - 3600 + i))
        with open(self.log_path("broken"), "w") as f:
            f.write("x" * (200 * 1024) + "\nthe last words before the start\n")
        self.start_err("broken")
        kept = self.failed_starts()
        self.assertEqual(16, len(kept), kept)
        mine = [f for f in kept if f.startswith("broken-")]
        self.assertEqual(1, len(mine), kept)
        self.assertEqual(["old%02d.log" % i for i in range(5, 20)],
                         [f for f in kept if f.startswith("old")])
        with open(os.path.join(failed_dir, mine[0])) as f:
            text = f.read()
        self.assertIn("the last words before the start", text)
        self.assertLessEqual(len(text), 64 * 1024)

    def test_logs_of_qubes_that_are_gone_are_swept_at_daemon_start(self):
        os.makedirs(self.log_dir(), exist_ok=True)
        for f in ("guest-disp9999.log", "guest-gone.log", "guest-gone.log.1", "guest-work.log",
                  "guest-dvm.log.1", "notes.txt"):
            with open(os.path.join(self.log_dir(), f), "w") as out:
                out.write("x\n")
        self.d.restart()
        logs = set(os.listdir(self.log_dir()))
        self.assertEqual(set(), logs & {"guest-disp9999.log", "guest-gone.log",
                                        "guest-gone.log.1"})
        self.assertLessEqual({"guest-work.log", "guest-dvm.log.1", "notes.txt"}, logs)


if __name__ == "__main__":
    unittest.main()
