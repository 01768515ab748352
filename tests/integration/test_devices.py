"""Qubes' suspend (admin.vm.Suspend/Resume, qvm-pause --suspend, qvm-unpause) and block
devices (admin.deviceclass.List, admin.vm.device.block.*, qvm-block, qvm-device) against a
private dispenserd with real container qubes and real loop devices (made and removed by
the tests)."""

import os
import subprocess
import tempfile
import unittest

import harness
from harness import run_tool
from test_engine import EngineTestCase, engine_skip_reason


@unittest.skipIf(engine_skip_reason(), engine_skip_reason())
class Suspend(EngineTestCase):

    def test_suspend_frees_cache_and_resumes(self):
        ev = self.events()
        self.new_appvm("sleepy")
        self.start("sleepy")
        # 32 MiB of page cache charged to the qube: a file written on its private volume
        self.qrun("sleepy", "dd if=/dev/zero of=/home/user/fill bs=1M count=32 2>/dev/null; "
                  "cat /home/user/fill >/dev/null")
        before = self.current_state("sleepy")["mem"]
        self.tool("qvm-pause", "--suspend", "sleepy")
        self.assert_state("sleepy", "Suspended")
        after = self.current_state("sleepy")
        self.assertEqual("Suspended", after["power_state"])
        print("\n[ INFO ] suspend: charged memory %d KiB -> %d KiB" % (before, after["mem"]))
        self.assertGreater(before, 32 * 1024)
        self.assertLess(after["mem"] + 16 * 1024, before)
        # frozen as a paused qube is: no service runs
        self.err("admin.vm.Unpause", dest="sleepy", exc="QubesVMNotPausedError")
        self.err("admin.vm.Suspend", dest="sleepy", exc="QubesVMNotRunningError")
        self.err("admin.vm.Pause", dest="sleepy", exc="QubesVMNotRunningError")
        self.tool("qvm-unpause", "sleepy")
        self.assert_state("sleepy", "Running")
        self.assertEqual("awake\n", self.qout("sleepy", "echo awake"))
        self.assertTrue(ev.wait_for(lambda evs: ("sleepy", "domain-resumed") in
                                    [(e[0], e[1]) for e in evs], 5))

    def test_suspend_of_a_paused_qube_and_resume_unpauses(self):
        self.new_appvm("still")
        self.start("still")
        self.ok("admin.vm.Pause", dest="still")
        self.ok("admin.vm.Resume", dest="still")  # not suspended: an unpause
        self.assert_state("still", "Running")
        self.ok("admin.vm.Pause", dest="still")
        self.ok("admin.vm.Suspend", dest="still")
        self.assert_state("still", "Suspended")
        self.ok("admin.vm.Resume", dest="still")
        self.assertEqual("ok\n", self.qout("still", "echo ok"))
        self.kill("still")
        self.assert_no_trace("still")

    def test_wrong_state_and_bad_input(self):
        self.new_appvm("off")
        self.err("admin.vm.Suspend", dest="off", exc="QubesVMNotRunningError")
        self.err("admin.vm.Resume", dest="off", exc="QubesVMNotPausedError")
        self.err("admin.vm.Suspend", "x", dest="off", exc="ProtocolError")
        self.err("admin.vm.Suspend", dest="off", payload=b"x", exc="ProtocolError")
        self.err("admin.vm.Suspend", dest="dom0", exc="ProtocolError")
        self.err("admin.vm.Suspend", dest="nosuch", exc="QubesVMNotFoundError")
        self.assert_state("off", "Halted")
        r = run_tool(self.d, "qvm-pause", "--suspend", "off")
        self.assertEqual(1, r.returncode)
        self.assertIn("Failed to suspend: off:", r.stderr)

    def test_shutdown_of_a_suspended_qube(self):
        self.new_appvm("deep")
        self.start("deep")
        self.ok("admin.vm.Suspend", dest="deep")
        self.shutdown("deep")
        self.assert_state("deep", "Halted")
        self.assert_no_trace("deep")


if __name__ == "__main__":
    unittest.main()
