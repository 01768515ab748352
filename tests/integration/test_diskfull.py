"""A full state disk: the daemon's state dir on a small tmpfs that the test fills up.
Every call that needs to write fails with a clear error and changes nothing; the database
stays intact; the daemon keeps answering; once space is back, everything works again and
nothing half-made is left from the failed calls."""

import os
import subprocess
import tempfile
import time
import unittest

import harness
from harness import run_tool
from test_crash import integrity_check
from test_engine import EngineTestCase, build_template, range_processes

TMPFS_SIZE = "64m"


def fill(path):
    """Writes zeros into `path` until the file system has no block left."""
    chunk = b"\0" * (1 << 20)
    with open(path, "wb", buffering=0) as f:
        for size in (1 << 20, 4096, 1):
            chunk = b"\0" * size
            try:
                while True:
                    f.write(chunk)
            except OSError:
                pass


class DiskFull(EngineTestCase):
    PER_CLASS = False

    def setUp(self):
        self.mnt = tempfile.mkdtemp(prefix="dispenser-full-")
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=" + TMPFS_SIZE, "tmpfs",
                        self.mnt], check=True)
        self.addCleanup(os.rmdir, self.mnt)
        self.addCleanup(subprocess.run, ["umount", "-l", self.mnt], check=True)
        orig = harness.Daemon

        def daemon_on_tmpfs(*a, **kw):
            kw["state_dir"] = os.path.join(self.mnt, "state")
            return orig(*a, **kw)
        harness.Daemon = daemon_on_tmpfs
        try:
            super().setUp()
        finally:
            harness.Daemon = orig

    @classmethod
    def populate(cls, d):
        build_template(d, "bb")
        for name in ("a", "dvm"):
            harness.ok_content(d, "admin.vm.Create.AppVM", "bb", "dom0",
                               ("name=%s label=red" % name).encode())
        harness.ok_content(d, "admin.vm.property.Set", "template_for_dispvms", "dvm", b"True")

    def names(self):
        return sorted(l.split(" ")[0] for l in self.ok("admin.vm.List").decode().splitlines())

    def assert_clear_error(self, reply, what):
        self.assertFalse(reply.ok, "%s succeeded on a full disk" % what)
        self.assertIn(reply.exc, ("QubesException", "QubesVMError", "StoragePoolException"),
                      what)
        msg = reply.message or ""
        self.assertRegex(msg.lower(), r"no space|disk is full|full", "%s: %r" % (what, msg))

    def test_full_state_disk(self):
        before = self.names()
        label = self.get_prop("a", "label")
        filler = os.path.join(self.mnt, "filler")
        fill(filler)

        r = self.reply("admin.vm.Create.AppVM", "bb", "dom0", b"name=new label=red")
        self.assert_clear_error(r, "admin.vm.Create.AppVM")
        r = self.reply("admin.vm.property.Set", "label", "a", b"blue")
        self.assert_clear_error(r, "admin.vm.property.Set")
        r = self.reply("admin.vm.feature.Set", "f", "a", b"v")
        self.assert_clear_error(r, "admin.vm.feature.Set")
        r = run_tool(self.d, "qvm-run", "--dispvm=dvm", "-p", "echo hi", timeout=60)
        self.assertNotEqual(0, r.returncode, "a disposable started on a full disk")
        self.assertNotEqual("", r.stderr.strip())
        print("\nqvm-run --dispvm on a full disk: %s" % r.stderr.strip())

        # a start may work (a qube writes to its own upper layer) or fail clearly; either
        # way a kill leaves nothing running
        r = self.reply("admin.vm.Start", "", "a")
        print("admin.vm.Start on a full disk: %s" % ("ok" if r.ok else r.message))
        if r.ok:
            self.kill("a")
        self.assertEqual([], range_processes(self.d, "a"))

        # nothing changed, nothing half-made, the daemon answers
        self.assertTrue(self.d.running())
        self.assertEqual(before, self.names())
        self.assertEqual(label, self.get_prop("a", "label"))
        self.err("admin.vm.feature.Get", "f", "a", exc="QubesFeatureNotFoundError")
        self.assertEqual([("ok",)], integrity_check(self.d.db_path))
        self.assertEqual([], [n for n in self.names() if n.startswith("disp")])

        # space back: everything works again
        os.unlink(filler)
        self.ok("admin.vm.Create.AppVM", "bb", "dom0", b"name=new label=red")
        self.ok("admin.vm.property.Set", "label", "a", b"blue")
        self.assertEqual("blue", self.get_prop("a", "label")[2])
        r = run_tool(self.d, "qvm-run", "--dispvm=dvm", "-p", "echo hi", timeout=60)
        self.assertEqual((0, "hi\n"), (r.returncode, r.stdout), r.stderr)
        self.start("a")
        self.kill("a")
        self.assertEqual([], range_processes(self.d, "a"))

    def pool(self):
        r = self.reply("admin.vm.feature.Get", "preload-dispvm", "dvm")
        return r.content.decode().split() if r.ok else []

    def settled_pool(self, want):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            names = self.pool()
            states = {l.split(" ")[0]: l for l in self.ok("admin.vm.List").decode().splitlines()}
            if len(names) == want and all("state=Paused" in states.get(n, "") for n in names):
                return names
            time.sleep(0.1)
        self.fail("pool not at %d: %r" % (want, self.pool()))

    def test_preloads_on_a_full_disk(self):
        self.ok("admin.vm.feature.Set", "preload-dispvm-max", "dvm", b"1")
        self.settled_pool(1)
        filler = os.path.join(self.mnt, "filler")
        fill(filler)
        # the hand-out records who got the preload: on a full disk that fails clearly, or
        # the call is served; either way the daemon stays consistent
        r = run_tool(self.d, "qvm-run", "--dispvm=dvm", "-p", "echo hi", timeout=60)
        print("\npreloaded qvm-run --dispvm on a full disk: %d %r" % (r.returncode,
                                                                 r.stderr.strip()))
        if r.returncode == 0:
            self.assertEqual("hi\n", r.stdout)
        time.sleep(1)  # refills that fail must not spin or leave half-made qubes
        self.assertEqual([("ok",)], integrity_check(self.d.db_path))
        disps = [n for n in self.names() if n.startswith("disp")]
        self.assertLessEqual(set(disps), set(self.pool()), "disposables outside the pool")
        os.unlink(filler)
        r = run_tool(self.d, "qvm-run", "--dispvm=dvm", "-p", "echo hi", timeout=60)
        self.assertEqual((0, "hi\n"), (r.returncode, r.stdout), r.stderr)
        self.settled_pool(1)


if __name__ == "__main__":
    unittest.main()
