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
        # (synced: dirty pages cannot be dropped until written back)
        self.qrun("sleepy", "dd if=/dev/zero of=/home/user/fill bs=1M count=32 2>/dev/null; sync; "
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


def make_loop(test, content=b"hello-block", size=8 << 20):
    """A loop device over a fresh file, removed (and the file) when the test ends."""
    tmp = tempfile.mkdtemp(prefix="dispenser-loop-")
    path = os.path.join(tmp, "disk.img")
    with open(path, "wb") as f:
        f.write(content)
        f.truncate(size)
    dev = subprocess.run(["losetup", "--find", "--show", path], check=True,
                         capture_output=True, text=True).stdout.strip()
    test.addCleanup(lambda: (subprocess.run(["losetup", "-d", dev]), os.unlink(path),
                             os.rmdir(tmp)))
    return os.path.basename(dev), path


def read_host(port, n):
    with open("/dev/" + port, "rb") as f:
        return f.read(n)


def loop_skip_reason():
    if os.geteuid() != 0:
        return "loop devices need root"
    if subprocess.run(["losetup", "--find"], capture_output=True).returncode != 0:
        return "no loop device free"
    return None


@unittest.skipIf(engine_skip_reason() or loop_skip_reason(),
                 engine_skip_reason() or loop_skip_reason())
class BlockDevices(EngineTestCase):

    def available(self, backend="dom0", arg=""):
        text = self.ok("admin.vm.device.block.Available", arg, backend).decode()
        return dict(line.split(" ", 1) for line in text.splitlines())

    def test_device_classes(self):
        self.assertEqual(b"pci\nblock\nusb\nmic\n", self.ok("admin.deviceclass.List"))
        for cls in ("pci", "usb", "mic"):
            self.assertEqual(b"", self.ok("admin.vm.device.%s.Available" % cls))
            self.assertEqual(b"", self.ok("admin.vm.device.%s.Attached" % cls))
        self.err("admin.deviceclass.List", "x", exc="ProtocolError")
        self.new_appvm("cls")
        self.err("admin.deviceclass.List", dest="cls", exc="ProtocolError")

    def test_loop_offered_host_disks_not(self):
        port, path = make_loop(self)
        avail = self.available()
        num = port[len("loop"):]
        self.assertEqual(
            "device_id=':%s' port_id='%s' devclass='block' backend_domain='dom0' "
            "manufacturer='hosted by dom0' name='%s' interfaces='b******'" % (num, port, path),
            avail["%s::%s" % (port, num)])
        self.assertEqual(list(avail), list(self.available(arg=port)))
        self.assertEqual({}, self.available(arg="vda"))
        # the host's own disks (mounted, swap, non-removable) are never offered
        with open("/proc/self/mountinfo") as f:
            mounted = {line.split()[2] for line in f}
        for key in avail:
            p = key.split(":")[0]
            with open("/sys/class/block/%s/dev" % p) as f:
                self.assertNotIn(f.read().strip(), mounted)
            self.assertFalse(p.startswith(("vd", "nvme", "zram", "dm-")), p)
        # another qube offers nothing
        self.new_appvm("nobackend")
        self.assertEqual({}, self.available("nobackend"))

    def test_attach_read_write_detach_and_isolation(self):
        port, _ = make_loop(self)
        num = port[len("loop"):]
        self.new_appvm("usbuser")
        self.new_appvm("bystander")
        self.start("usbuser")
        self.start("bystander")
        arg = "dom0+%s++%s" % (port, num)
        payload = ("device_id=':%s' port_id='%s' devclass='block' backend_domain='dom0' "
                   "mode='manual' frontend_domain='usbuser'" % (num, port)).encode()
        self.ok("admin.vm.device.block.Attach", arg, "usbuser", payload)
        attached = self.ok("admin.vm.device.block.Attached", dest="usbuser").decode()
        self.assertEqual(
            "dom0+%s::%s device_id=':%s' port_id='%s' devclass='block' backend_domain='dom0' "
            "mode='manual' frontend_domain='usbuser' _read-only='no' _frontend-dev='xvdi'\n"
            % (port, num, num, port), attached)
        self.assertIn("attachment='usbuser'", self.available(arg=port)["%s::%s" % (port, num)])
        self.assertEqual(b"", self.ok("admin.vm.device.block.Attached", dest="bystander"))
        self.assertEqual("hello-block",
                         self.qout("usbuser", "head -c 11 /dev/xvdi", user="root"))
        self.qrun("usbuser", "printf WRITTEN | dd of=/dev/xvdi conv=notrunc 2>/dev/null",
                  user="root")
        self.assertEqual(b"WRITTEN", read_host(port, 7))
        # the other qube sees nothing, and its device cgroup allows nothing of it
        r = self.qrun("bystander", "ls /dev/xvdi", user="root", check=False)
        self.assertNotEqual(0, r.returncode)
        self.assert_device_rule("bystander", port, None)
        self.assert_device_rule("usbuser", port, "rw")
        # taken twice: refused, nothing changed
        self.err("admin.vm.device.block.Attach", arg, "bystander", exc="DeviceAlreadyAttached")
        self.err("admin.vm.device.block.Attach", arg, "usbuser", exc="DeviceAlreadyAttached")
        # detached: node and rule gone
        self.ok("admin.vm.device.block.Detach", "dom0+" + port, "usbuser")
        self.assertEqual(b"", self.ok("admin.vm.device.block.Attached", dest="usbuser"))
        r = self.qrun("usbuser", "ls /dev/xvdi", user="root", check=False)
        self.assertNotEqual(0, r.returncode)
        self.assert_device_rule("usbuser", port, None)
        self.err("admin.vm.device.block.Detach", "dom0+" + port, "usbuser",
                 exc="DeviceNotAssigned")

    def test_read_only_attach_cannot_write(self):
        port, _ = make_loop(self)
        self.new_appvm("reader")
        self.start("reader")
        self.ok("admin.vm.device.block.Attach", "dom0+%s" % port, "reader",
                b"mode='manual' _read-only='yes' _frontend-dev='xvdj'")
        self.assertIn("_read-only='yes' _frontend-dev='xvdj'",
                      self.ok("admin.vm.device.block.Attached", dest="reader").decode())
        self.assertEqual("hello-block", self.qout("reader", "head -c 11 /dev/xvdj", user="root"))
        r = self.qrun("reader", "printf EVIL | dd of=/dev/xvdj conv=notrunc", user="root",
                      check=False)
        self.assertNotEqual(0, r.returncode)
        # not even after the qube's root makes the node writable
        r = self.qrun("reader", "chmod 666 /dev/xvdj; printf EVIL >/dev/xvdj", user="root",
                      check=False)
        self.assertNotEqual(0, r.returncode)
        self.assertEqual(b"hello", read_host(port, 5))
        self.assert_device_rule("reader", port, "r")
        # a halted qube has no devices left
        self.kill("reader")
        self.assertEqual(b"", self.ok("admin.vm.device.block.Attached", dest="reader"))
        self.assertNotIn("attachment=", self.available(arg=port).popitem()[1])

    def test_daemon_restart_takes_devices_back(self):
        port, _ = make_loop(self)
        self.new_appvm("survivor")
        self.start("survivor")
        self.ok("admin.vm.device.block.Attach", "dom0+" + port, "survivor", b"")
        self.assert_device_rule("survivor", port, "rw")
        self.d.restart()  # the qube runs on; the new daemon has no record of the device
        self.assertEqual(b"", self.ok("admin.vm.device.block.Attached", dest="survivor"))
        self.assert_device_rule("survivor", port, None)
        r = self.qrun("survivor", "head -c 5 /dev/xvdi", user="root", check=False)
        self.assertNotEqual(0, r.returncode)
        self.assertEqual("ok\n", self.qout("survivor", "echo ok >/dev/null; echo ok"))
        # and it can be given again
        self.qrun("survivor", "rm -f /dev/xvdi", user="root")
        self.ok("admin.vm.device.block.Attach", "dom0+" + port, "survivor", b"")
        self.assertEqual("hello", self.qout("survivor", "head -c 5 /dev/xvdi", user="root"))

    def test_detach_refused_while_open(self):
        port, _ = make_loop(self)
        self.new_appvm("holder")
        self.start("holder")
        self.ok("admin.vm.device.block.Attach", "dom0+" + port, "holder", b"")
        proc = subprocess.Popen(
            [harness.tool_path("qvm-run"), "--pass-io", "-u", "root", "holder",
             "exec 3</dev/xvdi; echo open; sleep 2"],
            stdout=subprocess.PIPE, env=self.d.env())
        self.addCleanup(proc.kill)
        self.assertEqual(b"open\n", proc.stdout.readline())
        self.err("admin.vm.device.block.Detach", "dom0+" + port, "holder", exc="QubesException")
        self.assertIn(port, self.ok("admin.vm.device.block.Attached", dest="holder").decode())
        proc.wait(timeout=20)  # the holder's shell ends by itself, closing the device
        proc.stdout.close()
        self.settled(lambda: self.ok("admin.vm.device.block.Detach", "dom0+" + port, "holder"),
                     timeout=10)
        self.assertEqual(b"", self.ok("admin.vm.device.block.Attached", dest="holder"))

    def test_bad_input_changes_nothing(self):
        port, _ = make_loop(self)
        self.new_appvm("target")
        self.err("admin.vm.device.block.Attach", "dom0+" + port, "target", b"",
                 exc="QubesVMNotRunningError")
        self.start("target")
        for arg, payload, exc in [
                ("nosuch+" + port, b"", "QubesVMNotFoundError"),
                ("dom0+vda", b"", "ProtocolError"),
                ("dom0+nosuch", b"", "ProtocolError"),
                ("dom0", b"", "ProtocolError"),
                ("dom0+%s++99" % port, b"", "ProtocolError"),
                ("dom0+" + port, b"port_id='loop999'", "ProtocolError"),
                ("dom0+" + port, b"devclass='usb'", "ProtocolError"),
                ("dom0+" + port, b"mode='sometimes'", "ProtocolError"),
                ("dom0+" + port, b"bogus='1'", "ProtocolError"),
                ("dom0+" + port, b"_read-only='maybe'", "QubesValueError"),
                ("dom0+" + port, b"_frontend-dev='../etc'", "QubesValueError"),
                ("dom0+" + port, b"_frontend-dev='hda'", "QubesValueError"),
                ("dom0+" + port, b"_devtype='floppy'", "QubesValueError"),
                ("dom0+" + port, b"_colour='red'", "QubesValueError"),
                ("dom0+" + port, b"mode=manual", "ProtocolError"),
                ("dom0+" + port, b"mode='manual", "ProtocolError"),
                ("dom0+" + port, b"mode='\xff'", "ProtocolError"),
        ]:
            with self.subTest(arg=arg, payload=payload):
                self.err("admin.vm.device.block.Attach", arg, "target", payload, exc=exc)
        self.err("admin.vm.device.block.Attach", "", "target", b"", exc="ProtocolError")
        self.err("admin.vm.device.block.Detach", "dom0+" + port, "target", exc="DeviceNotAssigned")
        self.err("admin.vm.device.block.Detach", "dom0+" + port, "target", b"x",
                 exc="ProtocolError")
        self.err("admin.vm.device.pci.Attach", "dom0+00_02.0", "target", b"",
                 exc="ProtocolError")
        self.err("admin.vm.device.block.Assign", "dom0+" + port, "target", b"x",
                 exc="ProtocolError")
        self.assertEqual(b"", self.ok("admin.vm.device.block.Attached", dest="target"))
        self.assertEqual("", self.qout("target", "ls /dev | grep xvd || true", user="root"))

    def assert_device_rule(self, qube, port, access):
        """The qube's v1 device cgroup: `access` for the device, or no rule (None)."""
        with open("/sys/class/block/%s/dev" % port) as f:
            majmin = f.read().strip()
        from test_engine import cgroup_group
        group = cgroup_group(self.d.state_dir)
        rules = None
        with open("/proc/self/cgroup") as f:
            for line in f:
                _, ctl, path = line.rstrip("\n").split(":", 2)
                if ctl == "devices":
                    listing = os.path.join("/sys/fs/cgroup/devices" + path, group, qube,
                                           "devices.list")
                    with open(listing) as lf:
                        rules = lf.read().split("\n")
        if rules is None:
            self.skipTest("no v1 devices controller")
        got = [r.split()[2] for r in rules if r.startswith("b %s " % majmin)]
        self.assertEqual([access] if access else [], got)


@unittest.skipIf(engine_skip_reason() or loop_skip_reason(),
                 engine_skip_reason() or loop_skip_reason())
class BlockAssignments(EngineTestCase):
    """admin.vm.device.block.{Assign,Unassign,Assigned,Set.assignment}: kept in the
    database, applied at every start, gone with the qube."""

    def assign(self, vm, port, devid, mode, options=""):
        payload = ("device_id='%s' port_id='%s' devclass='block' backend_domain='dom0' "
                   "mode='%s' frontend_domain='%s'%s" % (devid, port, mode, vm, options))
        arg = "dom0+%s+%s" % (port.replace("*", "_"), devid.replace(":", "+").replace("*", "_"))
        self.ok("admin.vm.device.block.Assign", arg, vm, payload.encode())
        return arg

    def assigned(self, vm):
        return self.ok("admin.vm.device.block.Assigned", dest=vm).decode()

    def device_events(self, ev, vm):
        return [(e[1], dict(e[2])) for e in ev.snapshot()
                if e[0] == vm and e[1].startswith("device-")]

    def test_required_device_attached_at_start_and_kept(self):
        port, _ = make_loop(self)
        num = port[len("loop"):]
        self.new_appvm("keeper")
        ev = self.events()
        arg = self.assign("keeper", port, ":" + num, "required", " _read-only='yes'")
        line = ("dom0+%s::%s device_id=':%s' port_id='%s' devclass='block' backend_domain='dom0'"
                " mode='required' frontend_domain='keeper' _read-only='yes'\n"
                % (port, num, num, port))
        self.assertEqual(line, self.assigned("keeper"))
        self.assertEqual(line, self.ok("admin.vm.device.block.Assigned", "dom0+" + port,
                                       "keeper").decode())
        self.assertEqual(b"", self.ok("admin.vm.device.block.Assigned", "dom0+loop999",
                                      "keeper"))
        device = "dom0:%s::%s" % (port, num)
        self.assertTrue(ev.wait_for(lambda evs: any(e[1] == "device-assign:block" for e in evs)))
        self.assertEqual([("device-pre-assign:block",
                           {"device": device, "options": "{'read-only': 'yes'}"}),
                          ("device-assign:block",
                           {"device": device, "options": "{'read-only': 'yes'}"})],
                         self.device_events(ev, "keeper"))
        # halted: nothing attached yet; at the start it is there, read-only
        self.assertEqual(b"", self.ok("admin.vm.device.block.Attached", dest="keeper"))
        self.start("keeper")
        attached = self.ok("admin.vm.device.block.Attached", dest="keeper").decode()
        self.assertIn("mode='required' frontend_domain='keeper' _read-only='yes' "
                      "_frontend-dev='xvdi'", attached)
        self.assertEqual("hello-block", self.qout("keeper", "head -c 11 /dev/xvdi", user="root"))
        r = self.qrun("keeper", "printf EVIL | dd of=/dev/xvdi conv=notrunc", user="root",
                      check=False)
        self.assertNotEqual(0, r.returncode)
        self.assertEqual(b"hello", read_host(port, 5))
        self.assertIn(("device-attach:block",
                       {"device": device,
                        "options": "{'read-only': 'yes', 'frontend-dev': 'xvdi'}"}),
                      self.device_events(ev, "keeper"))
        # a required device stays while the qube runs
        self.err("admin.vm.device.block.Detach", "dom0+" + port, "keeper",
                 exc="QubesVMNotHaltedError")
        self.kill("keeper")
        self.assertTrue(ev.wait_for(lambda evs: ("keeper", "device-detach:block",
                                                 [("port", "dom0:" + port)]) in evs))
        # kept across a daemon restart, then changed and removed
        self.d.restart()
        self.assertEqual(line, self.assigned("keeper"))
        ev = self.events()
        self.ok("admin.vm.device.block.Set.assignment", arg, "keeper", b"auto-attach")
        self.assertEqual(line.replace("required", "auto-attach"), self.assigned("keeper"))
        self.ok("admin.vm.device.block.Set.assignment", arg, "keeper", b"auto-attach")
        self.ok("admin.vm.device.block.Unassign", arg, "keeper")
        self.assertEqual("", self.assigned("keeper"))
        self.assertTrue(ev.wait_for(
            lambda evs: any(e[1] == "device-unassign:block" for e in evs)))
        self.assertEqual([("device-pre-assign:block",
                           {"device": device, "options": "{'read-only': 'yes'}"}),
                          ("device-assignment-changed:block", {"device": device}),
                          ("device-unassign:block", {"device": device})],
                         self.device_events(ev, "keeper"))
        self.start("keeper")
        self.assertEqual(b"", self.ok("admin.vm.device.block.Attached", dest="keeper"))

    def test_missing_required_fails_the_start_optional_is_skipped(self):
        self.new_appvm("needy")
        arg = self.assign("needy", "loop999", "*", "required")
        self.assertEqual("dom0+loop999:* device_id='*' port_id='loop999' devclass='block' "
                         "backend_domain='dom0' mode='required' frontend_domain='needy'\n",
                         self.assigned("needy"))
        r = self.start_err("needy")
        self.assertEqual("Block device dom0:loop999:* not available", r.message)
        self.assert_state("needy", "Halted")
        self.assert_no_trace("needy")
        self.ok("admin.vm.device.block.Set.assignment", arg, "needy", b"auto-attach")
        self.start("needy")
        self.assertIn("needy: assigned block device dom0:loop999:* not available, skipping",
                      self.d.log())

    def test_auto_attach_by_identity_and_taken_elsewhere(self):
        port, _ = make_loop(self)
        num = port[len("loop"):]
        self.new_appvm("first")
        self.new_appvm("second")
        # any port, this identity; and the port alone, with a frontend of its own
        self.assign("first", "*", ":" + num, "auto-attach")
        self.assign("second", port, "*", "required", " _frontend-dev='xvdm'")
        self.start("first")
        self.assertIn("dom0+%s::%s " % (port, num),
                      self.ok("admin.vm.device.block.Attached", dest="first").decode())
        self.assertEqual("hello-block", self.qout("first", "head -c 11 /dev/xvdi", user="root"))
        # the device is taken: a required assignment cannot be met
        r = self.start_err("second")
        self.assertEqual("Block device dom0:%s:* not available" % port, r.message)
        self.kill("first")
        self.start("second")
        self.assertEqual("hello-block", self.qout("second", "head -c 11 /dev/xvdm", user="root"))
        # the device is not free at the next start of the other: skipped, the start goes on
        self.start("first")
        self.assertEqual(b"", self.ok("admin.vm.device.block.Attached", dest="first"))

    def test_qemu_qube_with_a_required_device_does_not_start(self):
        port, _ = make_loop(self)
        self.new_appvm("vmq")
        self.set_prop("vmq", "virt_mode", "qemu")
        self.assign("vmq", port, "*", "required")
        r = self.err("admin.vm.Start", dest="vmq", exc="QubesNotImplementedError")
        self.assertEqual("virt_mode=qemu qubes cannot take block devices yet", r.message)
        self.assert_state("vmq", "Halted")

    def test_removed_with_the_qube(self):
        self.new_appvm("gone")
        self.assign("gone", "loop998", "*", "auto-attach")
        self.ok("admin.vm.Remove", dest="gone")
        import sqlite3
        db = sqlite3.connect(self.d.db_path)
        self.addCleanup(db.close)
        self.assertEqual([], db.execute("SELECT * FROM device_assignments").fetchall())
        self.new_appvm("gone")
        self.assertEqual("", self.assigned("gone"))

    def test_bad_input_changes_nothing(self):
        port, _ = make_loop(self)
        self.new_appvm("strict")
        arg = self.assign("strict", port, "*", "auto-attach")
        before = self.assigned("strict")
        base = "device_id='*' port_id='%s' devclass='block' backend_domain='dom0' " % port
        for method, a, payload, exc in [
                ("Assign", arg, base + "mode='auto-attach'", "DeviceAlreadyAssigned"),
                ("Assign", "dom0+loop997", "mode='manual'", "QubesValueError"),
                ("Assign", "dom0+loop997", "", "ProtocolError"),
                ("Assign", "dom0+loop997", "mode='often'", "ProtocolError"),
                ("Assign", "dom0+loop997", "mode='required' _colour='red'", "QubesValueError"),
                ("Assign", "dom0+loop997", "mode='required' _read-only='maybe'",
                 "QubesValueError"),
                ("Assign", "dom0+loop997", "port_id='loop1' mode='required'", "ProtocolError"),
                ("Assign", "dom0+_+_", "mode='required'", "ProtocolError"),
                ("Assign", "nosuch+loop997", "mode='required'", "QubesVMNotFoundError"),
                ("Assign", "strict+loop997", "mode='required'", "QubesValueError"),
                ("Unassign", "dom0+loop997", "", "DeviceNotAssigned"),
                ("Unassign", "dom0+" + port + "+7", "", "DeviceNotAssigned"),
                ("Set.assignment", arg, "manual", "QubesUnrecognizedDeviceAssignmentMode"),
                ("Set.assignment", arg, "", "ProtocolError"),
                ("Set.assignment", "dom0+loop997", "required", "QubesValueError"),
        ]:
            with self.subTest(method=method, arg=a, payload=payload):
                self.err("admin.vm.device.block." + method, a, "strict", payload.encode(),
                         exc=exc)
        self.err("admin.vm.device.block.Assign", arg, "dom0", b"mode='required'",
                 exc="QubesException")
        self.err("admin.vm.device.pci.Assign", "dom0+00_02.0", "strict", b"mode='required'",
                 exc="QubesNotImplementedError")
        self.assertEqual(before, self.assigned("strict"))
        self.assertEqual(b"", self.ok("admin.vm.device.pci.Assigned", dest="strict"))


@unittest.skipIf(engine_skip_reason() or loop_skip_reason() or not harness.cli_available(),
                 engine_skip_reason() or loop_skip_reason() or "the CLI is not built")
class BlockTools(EngineTestCase):
    """qvm-block and qvm-device block: upstream's sub-commands, output and exit codes."""

    def run_ok(self, *args):
        r = run_tool(self.d, *args)
        self.assertEqual(0, r.returncode, "%s: %s%s" % (args, r.stdout, r.stderr))
        self.assertEqual("", r.stderr)
        return r.stdout

    def test_list_attach_detach(self):
        port, path = make_loop(self)
        self.new_appvm("stick")
        self.start("stick")
        row = "dom0:%s  Block_Storage: hosted by dom0 %s" % (port, path)
        listing = self.run_ok("qvm-block")
        self.assertIn(row + "  \n", listing)  # as `column -t`: the empty column padded
        self.assertEqual(listing, self.run_ok("qvm-block", "list"))
        self.assertEqual(listing, self.run_ok("qvm-block", "ls"))
        self.assertEqual(listing, self.run_ok("qvm-device", "block", "list"))
        self.assertEqual("", self.run_ok("qvm-block", "list", "stick"))
        self.assertEqual("", self.run_ok("qvm-device", "usb", "list"))

        self.assertEqual("", self.run_ok("qvm-block", "attach", "--ro", "stick", "dom0:" + port))
        line = [l for l in self.run_ok("qvm-block", "list").splitlines()
                if l.startswith("dom0:%s " % port)][0]
        self.assertEqual(row + "  stick (attached: read-only=yes, frontend-dev=xvdi)", line)
        self.assertIn("dom0:%s " % port, self.run_ok("qvm-block", "list", "stick"))
        self.assertEqual("hello-block", self.qout("stick", "head -c 11 /dev/xvdi", user="root"))
        r = self.qrun("stick", "printf X >/dev/xvdi", user="root", check=False)
        self.assertNotEqual(0, r.returncode)

        self.assertEqual("", self.run_ok("qvm-block", "detach", "stick", "dom0:" + port))
        self.assertEqual(listing, self.run_ok("qvm-block"))
        # -o options, the device with its identity, detach of all
        num = port[len("loop"):]
        self.run_ok("qvm-device", "block", "a", "-o", "frontend-dev=xvdk", "stick",
                    "dom0:%s::%s" % (port, num))
        self.assertEqual("hello-block", self.qout("stick", "head -c 11 /dev/xvdk", user="root"))
        self.assertIn("read-only=no, frontend-dev=xvdk", self.run_ok("qvm-block"))
        self.run_ok("qvm-block", "dt", "stick")
        self.assertEqual(listing, self.run_ok("qvm-block"))

    def test_errors(self):
        port, _ = make_loop(self)
        self.new_appvm("halted")
        for args, code, err in [
                (("qvm-block", "attach", "halted", "dom0:nosuch"), 1,
                 "qvm-block: error: backend vm dom0 doesn't expose block device 'nosuch'\n"),
                (("qvm-block", "attach", "halted", "nosuch:" + port), 1,
                 "qvm-block: error: no such backend vm!\n"),
                (("qvm-block", "attach", "halted", "dom0:" + port), 1,
                 "Error: VM not running, cannot attach device, do you mean `assign`?\n"),
                (("qvm-block", "detach", "halted", "dom0:" + port), 1,
                 "Error: dom0:%s is not attached.\n" % port),
        ]:
            with self.subTest(args=args):
                r = run_tool(self.d, *args)
                self.assertEqual((code, err), (r.returncode, r.stderr))
        r = run_tool(self.d, "qvm-block", "attach", "nosuchvm", "dom0:" + port)
        self.assertEqual(2, r.returncode)
        self.assertIn("no such domain", r.stderr)
        r = run_tool(self.d, "qvm-block", "attach", "halted", "justaname")
        self.assertEqual(2, r.returncode)
        self.assertIn("expected a backend vm, port id", r.stderr)
        r = run_tool(self.d, "qvm-block", "frobnicate")
        self.assertEqual(2, r.returncode)
        self.assertIn("invalid choice: 'frobnicate'", r.stderr)
        self.assertEqual(b"", self.ok("admin.vm.device.block.Attached", dest="halted"))

    def test_assign_list_unassign(self):
        port, path = make_loop(self)
        num = port[len("loop"):]
        self.new_appvm("fixed")
        self.assertEqual("", self.run_ok("qvm-block", "assign", "--ro", "--required", "fixed",
                                         "dom0:" + port))
        self.assertEqual(
            "dom0+%s::%s device_id=':%s' port_id='%s' devclass='block' backend_domain='dom0' "
            "mode='required' frontend_domain='fixed' _read-only='yes'\n" % (port, num, num, port),
            self.ok("admin.vm.device.block.Assigned", dest="fixed").decode())
        row = "dom0:%s  Block_Storage: hosted by dom0 %s" % (port, path)
        self.assertRegex(self.run_ok("qvm-block", "list", "-s"),
                         r"(?m)^dom0:%s  :%s +\*fixed \(required: read-only=yes\)$" % (port, num))
        self.assertNotIn("*fixed", self.run_ok("qvm-block", "list"))
        self.start("fixed")
        self.assertIn(row + "  fixed (attached: read-only=yes, frontend-dev=xvdi)",
                      self.run_ok("qvm-block"))
        self.assertEqual("hello-block", self.qout("fixed", "head -c 11 /dev/xvdi", user="root"))
        r = run_tool(self.d, "qvm-block", "detach", "fixed", "dom0:" + port)
        self.assertEqual((1, "Error: Can not detach a required device from a non halted qube. "
                             "You need to unassign device first.\n"), (r.returncode, r.stderr))
        self.assertEqual("Unassigned. To detach you can now restart domain or run: \n"
                         " \tqvm-block detach fixed dom0:%s\n" % port,
                         self.run_ok("qvm-block", "unassign", "fixed", "dom0:" + port))
        self.assertEqual("", self.run_ok("qvm-block", "detach", "fixed", "dom0:" + port))
        # assigned while running: the hint to attach now; by port alone, ask-to-attach
        self.assertEqual("Assigned. To attach you can now restart domain or run: \n"
                         "\tqvm-block attach -o frontend-dev=xvdn fixed dom0:%s\n" % port,
                         self.run_ok("qvm-block", "s", "--port", "-o", "frontend-dev=xvdn",
                                     "fixed", "dom0:" + port))
        self.assertEqual("", self.run_ok("qvm-block", "assign", "-q", "--ask", "--device",
                                         "fixed", "dom0:" + port))
        listing = self.run_ok("qvm-device", "block", "ls", "--assignments")
        self.assertIn("dom0:%s  any device" % port, listing)
        self.assertIn("*fixed (auto-attach: frontend-dev=xvdn)", listing)
        self.assertIn("dom0:*", listing)
        self.assertIn("*fixed (ask-to-attach)", listing)
        # unassign without a device: all of them
        self.assertEqual("", self.run_ok("qvm-block", "unassign", "fixed"))
        self.assertEqual(b"", self.ok("admin.vm.device.block.Assigned", dest="fixed"))
        # attach --persistent: attached now and assigned as required
        self.run_ok("qvm-block", "attach", "--persistent", "fixed", "dom0:" + port)
        self.assertIn("mode='required'", self.ok("admin.vm.device.block.Attached",
                                                   dest="fixed").decode())
        self.assertIn("mode='required'", self.ok("admin.vm.device.block.Assigned",
                                                   dest="fixed").decode())

    def test_assign_errors(self):
        port, _ = make_loop(self)
        self.new_appvm("picky")
        for args, code, err in [
                (("qvm-block", "assign", "picky", "dom0:loop996"), 1,
                 "Error: backend vm dom0 doesn't expose block device 'loop996'\n"),
                (("qvm-block", "assign", "picky", "nosuch:" + port), 1,
                 "qvm-block: error: no such backend vm!\n"),
                (("qvm-block", "unassign", "picky", "dom0:" + port), 1,
                 "Error: block device dom0:%s::%s not assigned to picky\n"
                 % (port, port[len("loop"):])),
        ]:
            with self.subTest(args=args):
                r = run_tool(self.d, *args)
                self.assertEqual((code, err), (r.returncode, r.stderr))
        self.run_ok("qvm-block", "assign", "picky", "dom0:" + port)
        r = run_tool(self.d, "qvm-block", "assign", "picky", "dom0:" + port)
        self.assertEqual(1, r.returncode)
        self.assertIn("already assigned to picky", r.stderr)
        for args in (("assign", "--ask", "--required", "picky", "dom0:" + port),
                     ("assign", "--port", "--device", "picky", "dom0:" + port),
                     ("assign", "picky")):
            r = run_tool(self.d, "qvm-block", *args)
            self.assertEqual(2, r.returncode, args)
        # the port alone when the device is gone; the assignment stays until unassigned
        self.run_ok("qvm-block", "assign", "--port", "picky", "dom0:loop996")
        self.assertIn("dom0+loop996:*", self.ok("admin.vm.device.block.Assigned",
                                                 dest="picky").decode())
        self.run_ok("qvm-block", "unassign", "--port", "picky", "dom0:loop996")
        self.assertNotIn("loop996", self.ok("admin.vm.device.block.Assigned",
                                             dest="picky").decode())

    def test_list_device_classes(self):
        self.assertEqual("pci\nblock\nusb\nmic\n",
                         self.run_ok("qvm-device", "--list-device-classes"))
        self.assertEqual("pci\nblock\nusb\nmic\n", self.run_ok("qvm-block", "--list-classes"))


if __name__ == "__main__":
    unittest.main()
