"""Storage pools through the Admin API (admin.pool.*, admin.vm.CreateInPool.*) and the C
tools (qvm-pool, qvm-create -P/-p, qvm-volume), on the container engine: the on-disk pool
`dispenser`, ram pools (a tmpfs the daemon mounts) that keep a disposable's writes off
the disk, the pools in the database across a restart. Bad input gets qubesd's exception
and changes nothing."""

import os
import subprocess
import unittest

from harness import run_tool
from test_engine import EngineTestCase, engine_skip_reason

MiB = 1 << 20


def mounted_at(path):
    """The filesystem type mounted exactly at path, or None."""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4] == path:
                return line.split(" - ")[1].split()[0]
    return None


def info_dict(content):
    return [tuple(line.split("=", 1)) for line in content.decode().splitlines()]


@unittest.skipIf(engine_skip_reason(), engine_skip_reason())
class Pools(EngineTestCase):

    def pool_dir(self, name):
        return os.path.join(self.d.state_dir, "pools", name)

    def add_ram_pool(self, name, size="32M"):
        self.ok("admin.pool.Add", "ram", "dom0", ("name=%s\nsize=%s\n" % (name, size)).encode())
        self.addCleanup(self.remove_pool_quietly, name)

    def remove_pool_quietly(self, name):
        """Clean-up (after the qubes' own, which run first): no tmpfs left behind."""
        self.d.call("admin.pool.Remove", name)
        if mounted_at(self.pool_dir(name)):
            subprocess.run(["umount", "-l", self.pool_dir(name)], check=False)

    def pools(self):
        return self.ok("admin.pool.List").decode().splitlines()

    def create_in(self, klass, name, payload, template=""):
        self.ok("admin.vm.CreateInPool." + klass, template, "dom0",
                ("name=%s label=red %s" % (name, payload)).encode())
        self.addCleanup(self.remove_quietly, name)

    def new_dvm(self, name, payload=""):
        self.create_in("AppVM", name, payload, self.TEMPLATE)
        self.set_prop(name, "template_for_dispvms", "True")

    def test_default_pool_in_qubesd_format(self):
        self.assertEqual(["dispenser"], self.pools())
        self.assertEqual(b"dir dir_path revisions_to_keep ephemeral_volatile\n"
                         b"ram size revisions_to_keep ephemeral_volatile\n",
                         self.ok("admin.pool.ListDrivers"))
        info = info_dict(self.ok("admin.pool.Info", "dispenser"))
        keys = [k for k, _ in info]
        # the configuration sorted by key, then size and usage (as qubesd)
        self.assertEqual(["dir_path", "driver", "ephemeral_volatile", "name",
                          "revisions_to_keep", "size", "usage"], keys)
        values = dict(info)
        self.assertEqual(os.path.join(self.d.state_dir, "volumes"), values["dir_path"])
        self.assertEqual("dir", values["driver"])
        self.assertEqual("1", values["revisions_to_keep"])
        st = os.statvfs(self.d.state_dir)
        self.assertEqual(st.f_frsize * st.f_blocks, int(values["size"]))
        usage = dict(info_dict(self.ok("admin.pool.UsageDetails", "dispenser")))
        self.assertEqual(["data_size", "data_usage"], sorted(usage))
        self.assertEqual(values["size"], usage["data_size"])
        self.new_appvm("plain")
        for vol in ("root", "private", "volatile"):
            self.assertEqual("dispenser", self.volume_info("plain", vol)["pool"])
        uuid = self.qube_uuid("plain")
        self.assertIn("%s/private" % uuid,
                      self.ok("admin.pool.volume.List", "dispenser").decode().splitlines())
        for m in ("admin.pool.Info", "admin.pool.UsageDetails", "admin.pool.volume.List",
                  "admin.pool.Remove"):
            self.err(m, "nosuch", exc="PermissionDenied")
        # the on-disk pool holds every qube's volumes and is the default
        r = self.err("admin.pool.Remove", "dispenser", exc="QubesPoolInUseError")
        self.assertIn("Storage pool is in use", r.message)

    def test_add_bad_input_changes_nothing(self):
        before = self.pools()
        cases = [("nosuchdriver", b"name=x\nsize=1M\n", "PermissionDenied"),
                 ("ram", b"size=16M\n", "ProtocolError"),            # no name
                 ("ram", b"name=a b\nsize=16M\n", "ProtocolError"),  # not in the safe set
                 ("ram", b"name=../x\nsize=16M\n", "ProtocolError"),
                 ("ram", b"name=x\nsize=16M\nsize=1M\n", "ProtocolError"),  # twice
                 ("ram", b"name=x\nsize16M\n", "ProtocolError"),     # no '='
                 ("ram", b"name=x\nsize=16M\nthin_pool=y\n", "ProtocolError"),
                 ("ram", b"name=x\n", "QubesException"),             # size is required
                 ("ram", b"name=x\nsize=lots\n", "QubesValueError"),
                 ("ram", b"name=x\nsize=1K\n", "QubesValueError"),   # below 1M
                 ("ram", b"name=x\nsize=16M\nrevisions_to_keep=-2\n", "QubesValueError"),
                 ("ram", b"name=x\nsize=16M\nephemeral_volatile=False\n",
                  "QubesNotImplementedError"),
                 ("dir", b"name=x\ndir_path=/srv\n", "QubesNotImplementedError"),
                 ("ram", b"name=dispenser\nsize=16M\n", "QubesPoolInUseError")]
        for driver, payload, exc in cases:
            with self.subTest(driver=driver, payload=payload):
                self.err("admin.pool.Add", driver, "dom0", payload, exc=exc)
        r = self.err("admin.pool.Add", "ram", "dom0", b"name=x\n", exc="QubesException")
        self.assertEqual("missing required driver options: size", r.message)
        self.assertEqual(before, self.pools())
        self.assertEqual([], os.listdir(os.path.join(self.d.state_dir, "pools"))
                         if os.path.isdir(os.path.join(self.d.state_dir, "pools")) else [])

    def test_ram_pool_is_a_tmpfs_kept_across_a_restart(self):
        self.add_ram_pool("ram1", "48M")
        self.assertEqual(["dispenser", "ram1"], self.pools())
        self.assertEqual("tmpfs", mounted_at(self.pool_dir("ram1")))
        self.assertEqual(48 * MiB, os.statvfs(self.pool_dir("ram1")).f_blocks *
                         os.statvfs(self.pool_dir("ram1")).f_frsize)
        info = dict(info_dict(self.ok("admin.pool.Info", "ram1")))
        self.assertEqual({"driver": "ram", "ephemeral_volatile": "True", "name": "ram1",
                          "revisions_to_keep": "1", "size": str(48 * MiB)},
                         {k: v for k, v in info.items() if k != "usage"})
        self.ok("admin.pool.Set.revisions_to_keep", "ram1", "dom0", b"3")
        self.err("admin.pool.Set.revisions_to_keep", "ram1", "dom0", b"-2",
                 exc="ProtocolError")
        self.err("admin.pool.Set.revisions_to_keep", "ram1", "dom0", b"x", exc="ProtocolError")
        self.ok("admin.pool.Set.ephemeral_volatile", "ram1", "dom0", b"True")
        self.err("admin.pool.Set.ephemeral_volatile", "ram1", "dom0", b"False",
                 exc="QubesNotImplementedError")
        self.d.restart()
        self.assertEqual(["dispenser", "ram1"], self.pools())
        self.assertEqual("3", dict(info_dict(self.ok("admin.pool.Info", "ram1")))
                         ["revisions_to_keep"])
        # still one tmpfs, not a second one over the first
        with open("/proc/self/mountinfo") as f:
            self.assertEqual(1, sum(1 for line in f if line.split()[4] == self.pool_dir("ram1")))
        self.ok("admin.pool.Remove", "ram1")
        self.assertIsNone(mounted_at(self.pool_dir("ram1")))
        self.assertFalse(os.path.exists(self.pool_dir("ram1")))
        self.assertEqual(["dispenser"], self.pools())

    def test_disposable_in_a_ram_pool_writes_to_ram_only(self):
        self.add_ram_pool("ramp", "24M")
        self.new_dvm("dvm1")
        self.create_in("DispVM", "rd1", "pool=ramp", "dvm1")
        for vol in ("root", "private", "volatile"):
            self.assertEqual("ramp", self.volume_info("rd1", vol)["pool"])
        self.start("rd1")
        self.qrun("rd1", "echo mark > /home/user/in-private; echo mark > /etc/in-root",
                  user="root")
        scratch = os.path.join(self.d.state_dir, "volatile", "rd1")
        self.assertTrue(os.path.islink(scratch))
        on_tmpfs = os.path.join(self.pool_dir("ramp"), "rd1")
        self.assertEqual(on_tmpfs, os.readlink(scratch))
        found = [os.path.join(dp, f) for dp, _, fs in os.walk(on_tmpfs) for f in fs]
        self.assertTrue(any(p.endswith("/home/user/in-private") for p in found), found)
        self.assertTrue(any(p.endswith("/etc/in-root") for p in found), found)
        # the pool's size is the limit: writing past it fails inside the qube
        r = self.qrun("rd1", "dd if=/dev/zero of=/home/user/big bs=1M count=40", user="root",
                      check=False)
        self.assertNotEqual(0, r.returncode)
        self.assertIn(b"No space left on device", r.stderr + r.stdout)
        r = self.err("admin.pool.Remove", "ramp", exc="QubesPoolInUseError")
        self.assertIn("rd1", r.message)
        self.kill("rd1")
        def gone():
            self.assertFalse(os.path.exists(on_tmpfs))
            self.assertFalse(os.path.lexists(scratch))
        self.settled(gone)
        self.ok("admin.vm.Remove", dest="rd1")

    def test_unnamed_disposables_inherit_the_volatile_pool(self):
        self.add_ram_pool("ramv", "32M")
        self.new_dvm("dvm2", "pool:volatile=ramv")
        self.assertEqual("ramv", self.volume_info("dvm2", "volatile")["pool"])
        self.assertEqual("ramv", self.volume_info("dvm2", "root")["pool"])  # a view
        self.assertEqual("dispenser", self.volume_info("dvm2", "private")["pool"])
        name = self.ok("admin.vm.CreateDisposable", dest="dvm2").decode()
        self.addCleanup(self.remove_quietly, name)
        for vol in ("root", "private", "volatile"):
            self.assertEqual("ramv", self.volume_info(name, vol)["pool"])

    def test_pool_rules_at_creation(self):
        self.add_ram_pool("ramr")
        names = self.vm_names()
        # a saved volume cannot be in ram; bad options are qubesd's errors
        for klass, payload, exc in [
                ("AppVM", "pool=ramr", "QubesValueError"),
                ("AppVM", "pool:private=ramr", "QubesValueError"),
                ("TemplateVM", "pool:root=ramr", "QubesValueError"),
                ("AppVM", "pool=nosuch", "QubesException"),
                ("AppVM", "pool=ramr pool:volatile=ramr", "ProtocolError"),
                ("AppVM", "pool:swap=ramr", "ProtocolError"),
                ("AppVM", "pool:volatile=ramr pool:volatile=ramr", "ProtocolError"),
                ("AppVM", "pool:root=dispenser pool:volatile=ramr", "QubesValueError")]:
            with self.subTest(payload=payload):
                template = self.TEMPLATE if klass == "AppVM" else ""
                self.err("admin.vm.CreateInPool." + klass, template, "dom0",
                         ("name=bad label=red " + payload).encode(), exc=exc)
        r = self.err("admin.vm.CreateInPool.AppVM", self.TEMPLATE, "dom0",
                     b"name=bad label=red pool=nosuch", exc="QubesException")
        self.assertEqual("Unknown storage pool nosuch", r.message)
        self.err("admin.vm.Create.AppVM", self.TEMPLATE, "dom0", b"name=bad label=red pool=ramr",
                 exc="ProtocolError")
        self.assertEqual(names, self.vm_names())
        # the default_pool* properties take effect; a ram pool only for volatile
        self.err("admin.property.Set", "default_pool", "dom0", b"ramr",
                 exc="QubesPropertyValueError")
        self.err("admin.property.Set", "default_pool_private", "dom0", b"ramr",
                 exc="QubesPropertyValueError")
        self.err("admin.property.Set", "default_pool_volatile", "dom0", b"nosuch",
                 exc="QubesPropertyValueError")
        self.ok("admin.property.Set", "default_pool_volatile", "dom0", b"ramr")
        self.addCleanup(self.d.call, "admin.property.Reset", "default_pool_volatile")
        self.new_appvm("byglobal")
        self.assertEqual("ramr", self.volume_info("byglobal", "volatile")["pool"])
        self.assertEqual("dispenser", self.volume_info("byglobal", "private")["pool"])
        r = self.err("admin.pool.Remove", "ramr", exc="QubesPoolInUseError")
        self.assertIn("byglobal", r.message)
        self.ok("admin.vm.Remove", dest="byglobal")
        r = self.err("admin.pool.Remove", "ramr", exc="QubesPoolInUseError")
        self.assertEqual("Storage pool is in use: set as default_pool_volatile", r.message)
        self.ok("admin.property.Reset", "default_pool_volatile")
        self.ok("admin.pool.Remove", "ramr")

    def test_qvm_pool_and_creation_tools(self):
        r = self.tool("qvm-pool")
        self.assertEqual("NAME       DRIVER\ndispenser  dir\n", r.stdout)
        r = self.tool("qvm-pool", "drivers")
        self.assertEqual("DRIVER  OPTIONS\n"
                         "dir     dir_path, revisions_to_keep, ephemeral_volatile\n"
                         "ram     size, revisions_to_keep, ephemeral_volatile\n", r.stdout)
        self.tool("qvm-pool", "add", "rt", "ram", "-o", "size=16M")
        self.addCleanup(self.remove_pool_quietly, "rt")
        self.assertEqual("NAME       DRIVER\ndispenser  dir\nrt         ram\n",
                         self.tool("qvm-pool", "ls").stdout)
        self.tool("qvm-pool", "set", "rt", "-o", "revisions_to_keep=2")
        out = self.tool("qvm-pool", "info", "rt").stdout.splitlines()
        self.assertEqual(["name                rt", "driver              ram",
                          "ephemeral_volatile  True", "revisions_to_keep   2",
                          "size                16777216"], out[:5])
        self.assertTrue(out[5].startswith("usage "), out)
        r = run_tool(self.d, "qvm-pool", "set", "rt", "-o", "dir_path=/x")
        self.assertEqual((1, "qvm-pool: error: Setting option dir_path is not supported for "
                          "pool rt\n\n"), (r.returncode, r.stderr))
        r = run_tool(self.d, "qvm-pool", "info", "nosuch")
        self.assertEqual(2, r.returncode)
        self.assertIn("No such pools: ['nosuch']", r.stderr)
        r = run_tool(self.d, "qvm-pool", "add", "rt", "ram", "-o", "size=16M")
        self.assertEqual(1, r.returncode)
        self.assertIn("qvm-pool: error: Failed to add pool rt: Storage pool is in use", r.stderr)
        r = run_tool(self.d, "qvm-pool", "frob")
        self.assertEqual(2, r.returncode)
        # qvm-create -P and -p VOLUME=POOL, shown by qvm-volume
        self.new_dvm("dvm3")
        self.tool("qvm-create", "--class", "DispVM", "-t", "dvm3", "-l", "red", "-P", "rt", "td1")
        self.addCleanup(self.remove_quietly, "td1")
        self.assertEqual("rt\n", self.tool("qvm-volume", "info", "td1:private", "pool").stdout)
        self.tool("qvm-create", "-t", self.TEMPLATE, "-l", "red", "-p", "volatile=rt", "ta1")
        self.addCleanup(self.remove_quietly, "ta1")
        self.assertEqual("rt\n", self.tool("qvm-volume", "info", "ta1:volatile", "pool").stdout)
        listed = self.tool("qvm-volume", "list", "-p", "rt").stdout.splitlines()[1:]
        self.assertEqual(sorted(["td1 private", "td1 root", "td1 volatile", "ta1 root",
                                 "ta1 volatile"]),
                         sorted(" ".join(line.split()[1:3]) for line in listed))
        self.assertTrue(all(line.startswith("rt:") for line in listed), listed)
        r = run_tool(self.d, "qvm-pool", "remove", "rt")
        self.assertEqual(1, r.returncode)
        self.assertIn("Failed to remove pool rt: Storage pool is in use", r.stderr)
        self.ok("admin.vm.Remove", dest="td1")
        self.ok("admin.vm.Remove", dest="ta1")
        self.tool("qvm-pool", "rm", "rt")
        self.assertEqual(["dispenser"], self.pools())


if __name__ == "__main__":
    unittest.main()
