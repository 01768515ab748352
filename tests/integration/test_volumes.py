"""Volumes and notes through the Admin API and the C tools, on the container engine:
admin.vm.volume.CloneFrom/CloneTo (qvm-clone), kept revisions with ListSnapshots and
Revert (qvm-volume revert), Resize, Clear, Set.*, admin.vm.notes.* (qvm-notes). Bad
input gets the right Qubes exception and changes nothing."""

import os
import subprocess
import unittest

import test_preload

from harness import run_tool, tool_path
from test_engine import EngineTestCase, engine_skip_reason


@unittest.skipIf(engine_skip_reason(), engine_skip_reason())
class Volumes(EngineTestCase):

    def mark(self, name, text, path="/etc/mark"):
        self.start(name)
        self.qrun(name, "echo %s > %s" % (text, path), user="root")
        self.shutdown(name)

    def read_mark(self, name, path="/etc/mark"):
        self.start(name)
        out = self.qrun(name, "cat %s" % path, check=False).stdout.decode()
        self.kill(name)
        return out

    def new_template(self, name):
        self.create("TemplateVM", name)
        self.addCleanup(self.remove_quietly, name)
        token = self.ok("admin.vm.volume.CloneFrom", "root", self.TEMPLATE).decode()
        self.ok("admin.vm.volume.CloneTo", "root", name, token.encode())

    def test_clone_root_makes_an_independent_copy(self):
        self.new_template("t1")
        self.mark("t1", "one")
        self.new_template("t2")  # a copy of bb, not of t1
        self.assertEqual("", self.read_mark("t2"))
        token = self.ok("admin.vm.volume.CloneFrom", "root", "t1").decode()
        self.assertEqual(32, len(token))
        self.ok("admin.vm.volume.CloneTo", "root", "t2", token.encode())
        self.assertEqual("one\n", self.read_mark("t2"))
        self.mark("t2", "two")  # the copy changes alone
        self.assertEqual("one\n", self.read_mark("t1"))
        # a token serves once
        self.err("admin.vm.volume.CloneTo", "root", "t2", token.encode(),
                 exc="QubesVolumeCopyTokenNotFoundError")

    def test_clone_bad_input_changes_nothing(self):
        self.new_template("t3")
        rev = self.volume_info("t3")["revision"]
        self.err("admin.vm.volume.CloneTo", "root", "t3", b"nosuchtoken",
                 exc="QubesVolumeCopyTokenNotFoundError")
        token = self.ok("admin.vm.volume.CloneFrom", "private", self.TEMPLATE).decode()
        self.err("admin.vm.volume.CloneTo", "root", "t3", token.encode(), exc="QubesValueError")
        self.err("admin.vm.volume.CloneFrom", "nosuch", "t3", exc="PermissionDenied")
        self.new_appvm("a1")
        token = self.ok("admin.vm.volume.CloneFrom", "root", "t3").decode()
        # an AppVM's root is a view of its template's
        self.err("admin.vm.volume.CloneTo", "root", "a1", token.encode(), exc="QubesValueError")
        self.start("t3")
        token = self.ok("admin.vm.volume.CloneFrom", "root", self.TEMPLATE).decode()
        self.err("admin.vm.volume.CloneTo", "root", "t3", token.encode(),
                 exc="QubesVMNotHaltedError")
        self.kill("t3")
        self.assertEqual(rev, self.volume_info("t3")["revision"])

    def test_revisions_revert(self):
        self.new_template("r1")
        self.assertEqual("1", self.volume_info("r1")["revisions_to_keep"])
        self.mark("r1", "first")
        self.mark("r1", "second")
        info = self.volume_info("r1")
        snaps = self.ok("admin.vm.volume.ListSnapshots", "root", "r1").decode().split()
        self.assertEqual([str(int(info["revision"]) - 1)], snaps)  # one kept
        self.err("admin.vm.volume.Revert", "root", "r1", b"999",
                 exc="QubesVolumeRevisionNotFoundError")
        self.err("admin.vm.volume.Revert", "root", "r1", b"a/b", exc="PermissionDenied")
        self.ok("admin.vm.volume.Revert", "root", "r1", snaps[0].encode())
        self.assertEqual("first\n", self.read_mark("r1"))
        self.assertEqual(str(int(info["revision"]) + 1), self.volume_info("r1")["revision"])
        # keeping none forgets them at once
        self.ok("admin.vm.volume.Set.revisions_to_keep", "root", "r1", b"0")
        self.mark("r1", "third")
        self.assertEqual(b"", self.ok("admin.vm.volume.ListSnapshots", "root", "r1"))
        self.err("admin.vm.volume.Set.revisions_to_keep", "root", "r1", b"-1",
                 exc="ProtocolError")

    def test_resize_clear_and_fixed_settings(self):
        self.new_appvm("p1")
        self.assertEqual(str(2 << 30), self.volume_info("p1", "private")["size"])
        self.ok("admin.vm.volume.Resize", "private", "p1", b"%d" % (3 << 30))
        self.assertEqual(str(3 << 30), self.volume_info("p1", "private")["size"])
        self.err("admin.vm.volume.Resize", "private", "p1", b"1024", exc="QubesValueError")
        self.err("admin.vm.volume.Resize", "private", "p1", b"12x", exc="ProtocolError")
        self.assertEqual(str(3 << 30), self.volume_info("p1", "private")["size"])
        self.mark("p1", "data", "/home/user/data")
        self.ok("admin.vm.volume.Clear", "private", "p1")
        self.assertEqual("", self.read_mark("p1", "/home/user/data"))
        self.ok("admin.vm.volume.Set.rw", "private", "p1", b"True")
        self.err("admin.vm.volume.Set.rw", "private", "p1", b"False",
                 exc="QubesNotImplementedError")
        self.ok("admin.vm.volume.Set.ephemeral", "volatile", "p1", b"True")
        self.err("admin.vm.volume.Set.rw", "private", "p1", b"maybe", exc="ProtocolError")

    def test_resize_is_enforced_in_the_qube(self):
        self.new_appvm("sz1")
        self.mark("sz1", "seed", "/home/user/seed")
        voldir = os.path.join(self.d.state_dir, "volumes", self.qube_uuid("sz1"), "private")
        self.ok("admin.vm.volume.Resize", "private", "sz1", str(2 << 30).encode())
        self.start("sz1")
        # the writer's upper is a filesystem of the room left: 2 GiB minus what is used
        # (fallocate takes the blocks at once, without writing them)
        r = self.qrun("sz1", "fallocate -l 2200M /home/user/big", check=False)
        self.assertNotEqual(0, r.returncode)
        self.assertIn(b"No space left on device", r.stderr)
        self.qrun("sz1", "fallocate -l 1500M /home/user/big")
        r = self.qrun("sz1", "dd if=/dev/zero of=/home/user/more bs=1M count=600", check=False)
        self.assertNotEqual(0, r.returncode)
        self.assertIn(b"No space left on device", r.stderr)
        self.qrun("sz1", "rm /home/user/big /home/user/more; echo kept > /home/user/note")
        self.shutdown("sz1")
        # the changes became a revision of plain directories, the filesystem is gone
        self.settled(lambda: self.assertEqual(
            [], [n for n in os.listdir(voldir) if n.endswith((".fs", ".img"))]))
        self.assertEqual("kept\n", self.read_mark("sz1", "/home/user/note"))
        self.assertEqual("seed\n", self.read_mark("sz1", "/home/user/seed"))

    def test_notes(self):
        self.new_appvm("n1")
        self.assertEqual(b"", self.ok("admin.vm.notes.Get", dest="n1"))
        self.ok("admin.vm.notes.Set", dest="n1", payload="bank\tonly\nkey ü\x1b[31m".encode())
        self.assertEqual("bank\tonly\nkey ü_[31m".encode(),
                         self.ok("admin.vm.notes.Get", dest="n1"))
        self.err("admin.vm.notes.Set", dest="n1", payload=b"\xff\xfe", exc="ProtocolError")
        # the daemon takes requests of at most 64 KiB: fewer than qubesd's 256000 bytes
        self.err("admin.vm.notes.Set", dest="n1", payload=b"x" * 256001, exc="QubesValueError")
        self.assertIn(b"bank", self.ok("admin.vm.notes.Get", dest="n1"))
        self.err("admin.vm.notes.Get", dest="dom0", exc="ProtocolError")
        self.ok("admin.vm.notes.Set", dest="n1")  # empty: deleted
        self.assertEqual(b"", self.ok("admin.vm.notes.Get", dest="n1"))


@unittest.skipIf(engine_skip_reason(), engine_skip_reason())
class Tools(EngineTestCase):

    def test_qvm_clone_copies_and_rolls_back(self):
        self.new_appvm("c1")
        self.set_prop("c1", "memory", 300)
        self.ok("admin.vm.tag.Set", "work", "c1")
        self.ok("admin.vm.feature.Set", "service.foo", "c1", b"1")
        self.ok("admin.vm.notes.Set", dest="c1", payload=b"n")
        self.start("c1")
        self.qrun("c1", "echo hi > /home/user/f")
        self.shutdown("c1")
        self.addCleanup(self.remove_quietly, "c2")
        self.tool("qvm-clone", "c1", "c2")
        self.assertIn(b"300", self.ok("admin.vm.property.Get", "memory", "c2"))
        self.assertEqual(b"1", self.ok("admin.vm.tag.Get", "work", "c2"))
        self.assertEqual(b"1", self.ok("admin.vm.feature.Get", "service.foo", "c2"))
        self.assertNotIn(b"created-by-c1", self.ok("admin.vm.tag.List", dest="c2"))
        self.start("c2")
        self.assertEqual("hi\n", self.qout("c2", "cat /home/user/f"))
        self.kill("c2")
        # a failure after the creation (here the engine of the copy has no volume
        # clone) leaves no half-made qube
        self.set_prop("c1", "virt_mode", "qemu")
        r = run_tool(self.d, "qvm-clone", "c1", "c3")
        self.assertEqual(1, r.returncode, r.stdout + r.stderr)
        self.assertIn("qvm-clone: error:", r.stderr)
        self.assertNotIn("c3", self.vm_names())
        r = run_tool(self.d, "qvm-clone", "c1")
        self.assertEqual(2, r.returncode)

    def test_qvm_create_standalone_from_template(self):
        self.addCleanup(self.remove_quietly, "s1")
        self.tool("qvm-create", "--class", "StandaloneVM", "--template", self.TEMPLATE,
                  "--label", "red", "s1")
        self.start("s1")  # a root of its own: it starts
        self.qrun("s1", "echo own > /etc/own", user="root")
        self.shutdown("s1")
        self.assertEqual("False", self.volume_info("s1")["snap_on_start"])
        r = run_tool(self.d, "qvm-create", "--class", "StandaloneVM", "--template", "nosuch",
                     "--label", "red", "s2")
        self.assertEqual(1, r.returncode)
        self.assertNotIn("s2", self.vm_names())

    def test_qvm_volume_and_qvm_notes(self):
        self.create("TemplateVM", "v1")
        self.addCleanup(self.remove_quietly, "v1")
        self.tool("qvm-create", "--class", "StandaloneVM", "--template", self.TEMPLATE,
                  "--label", "red", "v2")
        self.addCleanup(self.remove_quietly, "v2")
        self.start("v2")
        self.qrun("v2", "echo a > /etc/m", user="root")
        self.shutdown("v2")
        out = self.tool("qvm-volume", "info", "v2:root").stdout
        self.assertIn("revisions_to_keep  1", out)
        self.assertIn("Available revisions (for revert):\n  ", out)
        self.assertEqual("1\n", self.tool("qvm-volume", "info", "v2:root",
                                          "revisions_to_keep").stdout)
        self.tool("qvm-volume", "revert", "v2:root")
        self.start("v2")
        self.assertEqual(1, self.qrun("v2", "cat /etc/m", check=False).returncode)
        self.kill("v2")
        r = run_tool(self.d, "qvm-volume", "revert", "v2:root")
        self.assertEqual((1, "qvm-volume: error: No snapshots available\n"),
                         (r.returncode, r.stderr))
        self.tool("qvm-volume", "extend", "v2:private", "3GiB")
        self.assertEqual("%d\n" % (3 << 30),
                         self.tool("qvm-volume", "info", "v2:private", "size").stdout)
        self.tool("qvm-volume", "config", "v2:root", "revisions_to_keep", "2")
        r = run_tool(self.d, "qvm-volume", "config", "v2:root", "size", "2")
        self.assertEqual(1, r.returncode)
        out = self.tool("qvm-volume", "list", "v2").stdout.splitlines()
        self.assertEqual(["POOL:VOLUME", "VMNAME", "VOLUME_NAME", "REVERT_POSSIBLE"],
                         out[0].split())
        self.assertEqual(sorted(["private", "root", "volatile"]),
                         sorted(line.split()[2] for line in out[1:]))
        self.assertEqual(out, self.tool("qvm-volume", "ls", "--full", "v2").stdout.splitlines())
        self.assertEqual(1, len(self.tool("qvm-volume", "list", "-p", "other").stdout
                                .splitlines()))
        out = self.tool("qvm-ls", "--raw-data", "-O", "name,priv-max", "v2").stdout
        self.assertEqual("v2|3072\n", out)

        self.tool("qvm-notes", "--set", "first line", "v2")
        self.tool("qvm-notes", "--append", "second", "v2")
        self.assertEqual("first line\nsecond\n", self.tool("qvm-notes", "-p", "v2").stdout)
        env = dict(self.d.env(), EDITOR="sed -i s/first/FIRST/", VISUAL="")
        r = subprocess.run([tool_path("qvm-notes"), "v2"], env=env, capture_output=True,
                           text=True, timeout=20)
        self.assertEqual(0, r.returncode, r.stderr)
        self.assertEqual("FIRST line\nsecond\n", self.tool("qvm-notes", "-p", "v2").stdout)
        r = run_tool(self.d, "qvm-notes", "--delete", "v2", input="n\n")
        self.assertEqual(2, r.returncode)
        self.assertIn("FIRST", self.tool("qvm-notes", "-p", "v2").stdout)
        r = run_tool(self.d, "qvm-notes", "--set", "x", "--print", "v2")
        self.assertEqual(2, r.returncode)
        self.tool("qvm-notes", "--delete", "--force", "v2")
        self.assertEqual("\n", self.tool("qvm-notes", "--print", "v2").stdout)


class ClonePreloads(test_preload.PreloadCase):

    def test_clone_of_a_disposable_template_has_no_preloads_of_its_own(self):
        self.new_dvm("cdvm", max=1)
        old = self.wait_filled("cdvm", 1)
        self.addCleanup(self.remove_dvm, "cdvm2")
        self.tool("qvm-clone", "cdvm", "cdvm2")
        self.assertEqual("1", self.feature("cdvm2", "preload-dispvm-max"))
        for name in old:  # the source's preloads stay the source's
            self.assertNotIn(name, self.plist("cdvm2"))
        self.assertEqual(old, self.plist("cdvm"))
        # the clone's max fills its own pool
        new = self.wait_filled("cdvm2", 1)
        self.assertFalse(set(new) & set(old))
