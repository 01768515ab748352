"""qvm-template: root file systems built into a plain directory (the hidden --staging-dir,
no daemon), and the whole flow against a private daemon with the container engine.
Needs root. The Debian build (debootstrap, network, ~30 s) runs only with
DISPENSER_TEST_DEBIAN=1."""

import io
import json
import os
import re
import shutil
import stat
import subprocess
import tarfile
import tempfile
import unittest

import harness
from harness import DaemonTestCase

AGENT = os.environ.get("AGENT", os.path.join(harness.BUILD_DIR, "src", "agent",
                                             "dispenser-agent"))
TOOL = harness.tool_path("qvm-template")
HAVE_TOOL = os.access(TOOL, os.X_OK)
IS_ROOT = os.geteuid() == 0
HAVE_BUSYBOX = os.access("/bin/busybox", os.X_OK)
CHROOT = shutil.which("chroot") or "/usr/sbin/chroot"


def run(*args, env=None, timeout=120):
    return subprocess.run([TOOL] + list(args), capture_output=True, text=True,
                          env=env, timeout=timeout)


def chroot_sh(root, script):
    return subprocess.run(["chroot", root, "/bin/sh", "-c", script], capture_output=True,
                          text=True, timeout=30)


@unittest.skipUnless(HAVE_TOOL and IS_ROOT, "needs root and the qvm-template tool")
class StagingDir(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="dispenser-tpl-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.root = os.path.join(self.tmp, "root")

    @unittest.skipUnless(HAVE_BUSYBOX, "busybox-static not installed")
    def test_busybox_root_runs(self):
        r = run("build", "busybox", "x", "--staging-dir", self.root)
        self.assertEqual(0, r.returncode, r.stderr)
        sh = chroot_sh(self.root, "echo ok; id -un; cat /etc/os-release; ls /usr/bin/awk")
        self.assertEqual(0, sh.returncode, sh.stderr)
        self.assertIn("ok\nroot\n", sh.stdout)
        self.assertIn("ID=busybox", sh.stdout)
        user = chroot_sh(self.root, "su user -c 'id -u; echo $HOME'")
        self.assertEqual("1000\n/home/user\n", user.stdout, user.stderr)

    @unittest.skipUnless(HAVE_BUSYBOX, "busybox-static not installed")
    def test_busybox_layout(self):
        self.assertEqual(0, run("build", "busybox", "x", "--staging-dir", self.root).returncode)
        modes = {"tmp": 0o1777, "var/tmp": 0o1777, "root": 0o700, "home/user": 0o755,
                 "rw": 0o755, "etc/qubes-rpc": 0o755, "etc/dispenser/startup.d": 0o755}
        for rel, mode in modes.items():
            st = os.lstat(os.path.join(self.root, rel))
            self.assertEqual(mode, stat.S_IMODE(st.st_mode), rel)
        self.assertEqual(1000, os.lstat(os.path.join(self.root, "home/user")).st_uid)
        self.assertEqual("/bin/busybox", os.readlink(os.path.join(self.root, "bin/sh")))
        with open(os.path.join(self.root, "etc/hostname")) as f:
            self.assertEqual("", f.read())

    @unittest.skipUnless(HAVE_BUSYBOX, "busybox-static not installed")
    def test_import_tar(self):
        self.assertEqual(0, run("build", "busybox", "x", "--staging-dir", self.root).returncode)
        os.chmod(os.path.join(self.root, "bin/busybox"), 0o4755)
        archive = os.path.join(self.tmp, "rootfs.tar.gz")
        with tarfile.open(archive, "w:gz") as t:
            t.add(self.root, arcname=".")
        dest = os.path.join(self.tmp, "imported")
        r = run("import", "y", archive, "--staging-dir", dest)
        self.assertEqual(0, r.returncode, r.stderr)
        self.assertEqual(0o4755, stat.S_IMODE(os.lstat(os.path.join(dest, "bin/busybox")).st_mode))
        self.assertEqual(1000, os.lstat(os.path.join(dest, "home/user")).st_uid)
        self.assertEqual("ok\n", chroot_sh(dest, "echo ok").stdout)

    @unittest.skipUnless(HAVE_BUSYBOX, "busybox-static not installed")
    def test_busybox_qrexec_services(self):
        """qubes.Filecopy, qubes.OpenInVM, qubes.GetDate and the qrexec-client-vm link,
        run in the busybox root as the qube's user with the agent's environment."""
        self.assertEqual(0, run("build", "busybox", "x", "--staging-dir", self.root).returncode)
        for name in ("qubes.Filecopy", "qubes.OpenInVM", "qubes.GetDate"):
            st = os.lstat(os.path.join(self.root, "etc/qubes-rpc", name))
            self.assertEqual((0o755, 0, 0), (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid))
        self.assertEqual("/run/dispenser/bin/qrexec-client-vm",
                         os.readlink(os.path.join(self.root, "usr/bin/qrexec-client-vm")))

        def service(name, data=b"", arg="", handler=None):
            env = {"PATH": "/usr/bin:/bin", "HOME": "/home/user",
                   "QREXEC_REMOTE_DOMAIN": "work", "QREXEC_SERVICE_ARGUMENT": arg}
            return subprocess.run([CHROOT, "--userspec=1000:1000", self.root,
                                   "/etc/qubes-rpc/" + name], input=data, env=env,
                                  capture_output=True, timeout=30)

        def tar_of(members):
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w") as t:
                for name, content in members:
                    info = tarfile.TarInfo(name)
                    info.size = len(content)
                    t.addfile(info, io.BytesIO(content))
            return buf.getvalue()

        incoming = os.path.join(self.root, "home/user/QubesIncoming/work")
        r = service("qubes.Filecopy", tar_of([("a.txt", b"A"), ("d/b.txt", b"B")]))
        self.assertEqual(0, r.returncode, r.stderr)
        with open(os.path.join(incoming, "d/b.txt"), "rb") as f:
            self.assertEqual(b"B", f.read())
        r = service("qubes.Filecopy", tar_of([("a.txt", b"again")]))
        self.assertNotEqual(0, r.returncode)   # never overwritten
        with open(os.path.join(incoming, "a.txt"), "rb") as f:
            self.assertEqual(b"A", f.read())
        for bad in ("../escape.txt", "/abs.txt", "d/../../x.txt"):
            r = service("qubes.Filecopy", tar_of([("ok2.txt", b"x"), (bad, b"evil")]))
            self.assertNotEqual(0, r.returncode, bad)
            self.assertIn(b"unsafe", r.stderr)
            self.assertFalse(os.path.exists(os.path.join(incoming, "ok2.txt")), bad)
        self.assertFalse(os.path.exists(os.path.join(self.root, "home/user/QubesIncoming/escape.txt")))
        self.assertEqual([], [n for n in os.listdir(os.path.dirname(incoming))
                              if n.startswith(".filecopy")], "staging dir left behind")

        r = service("qubes.OpenInVM", b"hello file\n", arg="notes.txt")
        self.assertEqual(0, r.returncode, r.stderr)
        self.assertIn(b"name: notes.txt\nsize: 11 bytes\n", r.stdout)
        self.assertIn(b"hello file", r.stdout)
        handler = os.path.join(self.root, "etc/dispenser/open-handler")
        with open(handler, "w") as f:
            f.write('#!/bin/sh\necho "handled $(basename "$1"): $(cat "$1")"\nexit 3\n')
        os.chmod(handler, 0o755)
        r = service("qubes.OpenInVM", b"data", arg="x.bin")
        self.assertEqual((3, b"handled x.bin: data\n"), (r.returncode, r.stdout))
        self.assertEqual([], [n for n in os.listdir(os.path.join(self.root, "tmp"))
                              if n.startswith("openinvm.")], "temp dir left behind")

        r = service("qubes.GetDate")
        self.assertEqual(0, r.returncode, r.stderr)
        self.assertRegex(r.stdout.decode(), r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\n$")

    def test_usage_errors(self):
        self.assertEqual(2, run().returncode)
        self.assertEqual(2, run("nonsense").returncode)
        self.assertEqual(2, run("build", "alpine", "x").returncode)
        self.assertEqual(2, run("build", "busybox").returncode)
        self.assertEqual(2, run("build", "busybox", "x", "--suite", "sid").returncode)
        self.assertEqual(0, run("--help").returncode)
        self.assertEqual(0, run("build", "--help").returncode)
        r = run("import", "x", os.path.join(self.tmp, "missing.tar"), "--staging-dir", self.root)
        self.assertEqual(1, r.returncode)
        self.assertIn("cannot read", r.stderr)

    @unittest.skipUnless(os.environ.get("DISPENSER_TEST_DEBIAN") == "1",
                         "set DISPENSER_TEST_DEBIAN=1 (debootstrap, network, ~30 s)")
    def test_debian(self):
        r = run("-q", "build", "debian", "x", "--packages", "less", "--staging-dir", self.root,
                timeout=900)
        self.assertEqual(0, r.returncode, r.stderr)
        sh = chroot_sh(self.root, "su user -c id; command -v less; ls /var/cache/apt/archives")
        self.assertIn("uid=1000(user)", sh.stdout)
        self.assertIn("/usr/bin/less", sh.stdout)
        self.assertNotIn(".deb", sh.stdout)


FAKE_DEBOOTSTRAP = r"""#!/bin/sh
# debootstrap without the network: the few files the build step after it needs
echo "I: Retrieving InRelease"
echo "I: Base system installed successfully."
eval dir=\${$(($# - 1))}
if [ -n "$FAKE_DEBOOTSTRAP_FAIL" ]; then
    echo "E: Couldn't download packages: base-files"
    exit 1
fi
mkdir -p "$dir/etc/skel" "$dir/var/cache/apt/archives" "$dir/var/lib/apt/lists" "$dir/bin"
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$dir/etc/passwd"
printf 'root:x:0:\n' > "$dir/etc/group"
printf 'root:*:19000:0:99999:7:::\n' > "$dir/etc/shadow"
printf 'root:*::\n' > "$dir/etc/gshadow"
printf 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nVERSION_ID="12"\nID=debian\n' \
    > "$dir/etc/os-release"
"""


def fake_debootstrap_env(tmp, fail=False):
    """PATH with a fake debootstrap first (the real one must be installed: the tool
    looks for it in the system's directories before it runs it through PATH)."""
    bindir = os.path.join(tmp, "fakebin")
    os.makedirs(bindir, exist_ok=True)
    path = os.path.join(bindir, "debootstrap")
    with open(path, "w") as f:
        f.write(FAKE_DEBOOTSTRAP)
    os.chmod(path, 0o755)
    env = dict(os.environ, PATH=bindir + ":" + os.environ.get("PATH", "/usr/bin:/bin"))
    if fail:
        env["FAKE_DEBOOTSTRAP_FAIL"] = "1"
    return env


HAVE_DEBOOTSTRAP = any(os.access(os.path.join(d, "debootstrap"), os.X_OK)
                       for d in ("/usr/sbin", "/usr/bin", "/sbin", "/bin"))


@unittest.skipUnless(HAVE_TOOL and IS_ROOT and HAVE_DEBOOTSTRAP,
                     "needs root, qvm-template and debootstrap installed")
class DebootstrapOutput(unittest.TestCase):
    """debootstrap's output only with -v, or when it fails (no network: a fake one)."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="dispenser-tpl-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def build(self, *opts, fail=False):
        return run(*opts, "build", "debian", "x", "--staging-dir",
                   os.path.join(self.tmp, "root"), env=fake_debootstrap_env(self.tmp, fail))

    def test_quiet_unless_verbose(self):
        r = self.build()
        self.assertEqual(0, r.returncode, r.stderr)
        self.assertNotIn("I: Retrieving", r.stdout + r.stderr)
        self.assertIn("Root file system", r.stdout)
        shutil.rmtree(os.path.join(self.tmp, "root"))
        r = self.build("-v")
        self.assertEqual(0, r.returncode, r.stderr)
        self.assertIn("I: Retrieving", r.stdout)

    def test_failure_shows_the_output(self):
        r = self.build(fail=True)
        self.assertEqual(1, r.returncode)
        self.assertIn("E: Couldn't download packages: base-files", r.stderr)
        self.assertIn("debootstrap failed with exit status 1", r.stderr)


class EngineDaemon(harness.Daemon):
    """A private daemon that can run qubes (the harness's default has no agent)."""

    def spawn(self):
        self._log_file = open(self.log_path, "ab")
        cmd = [harness.DISPENSERD, "--state-dir", self.state_dir, "--runtime-dir", self.runtime_dir,
               "--socket", self.socket, "--foreground", "--log-level", self.log_level,
               "--agent", AGENT]
        env = dict(os.environ)
        env.pop("NOTIFY_SOCKET", None)
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._log_file,
                                     stderr=subprocess.STDOUT, env=env)
        harness._live_daemons.add(self)
        return self.proc


@unittest.skipUnless(HAVE_TOOL and IS_ROOT and HAVE_BUSYBOX and os.access(AGENT, os.X_OK),
                     "needs root, busybox-static, the agent and qvm-template")
class ThroughDaemon(DaemonTestCase):
    def setUp(self):
        self.d = EngineDaemon()
        self.addCleanup(self.d.cleanup)
        self.d.start()
        self.addCleanup(self._dump_log_on_failure)

    def tool(self, *args, input_=None):
        return subprocess.run([TOOL] + list(args), capture_output=True, text=True,
                              env=self.d.env(), timeout=120, input=input_)

    def test_build_list_remove(self):
        r = self.tool("build", "busybox", "bb", "--label", "green")
        self.assertEqual(0, r.returncode, r.stderr)
        self.assertEqual(b"green", self.ok("admin.vm.property.Get", "label", "bb").split()[-1])
        for feature, value in [("qrexec", b"1"), ("os", b"Linux"),
                               ("supported-rpc.qubes.WaitForRunningSystem", b"1"),
                               ("supported-rpc.qubes.WaitForSession", b"1"),
                               ("template-builder", b"busybox")]:
            self.assertEqual(value, self.ok("admin.vm.feature.Get", feature, "bb"))
        listing = self.tool("list").stdout.splitlines()
        self.assertEqual(["NAME", "REVISION", "SIZE", "BUILDER"], listing[0].split())
        self.assertEqual(["bb", "1"], listing[1].split()[:2])
        self.assertEqual("busybox", listing[1].split()[3])

        self.ok("admin.vm.Create.AppVM", "bb", "dom0", b"name=work label=red")
        r = self.tool("remove", "bb")
        self.assertEqual(1, r.returncode)
        self.assertIn("in use", r.stderr)
        self.assertEqual(1, self.tool("remove", "work").returncode)  # not a template
        self.ok("admin.vm.Remove", "", "work")
        self.assertEqual(0, self.tool("remove", "bb").returncode)
        self.assertEqual(1, len(self.tool("list").stdout.splitlines()))

    def feature(self, vm, name):
        r = self.reply("admin.vm.feature.Get", name, vm)
        return r.content.decode() if r.ok else None

    def test_features_for_upstream_tools(self):
        """What upstream's qvm-run (vmexec) and qvm-template list read."""
        self.assertEqual(0, self.tool("build", "busybox", "bb").returncode)
        for feature, value in [("vmexec", "1"), ("supported-rpc.qubes.VMExec", "1"),
                               ("supported-rpc.qubes.Filecopy", "1"),
                               ("supported-rpc.qubes.GetDate", "1"),
                               ("os-distribution", "busybox"), ("template-name", "bb"),
                               ("template-epoch", "0"), ("template-reponame", "@build-busybox"),
                               ("template-license", "GPL-2.0-only")]:
            self.assertEqual(value, self.feature("bb", feature), feature)
        self.assertIsNone(self.feature("bb", "supported-rpc.qubes.VMRootExec"))
        self.assertRegex(self.feature("bb", "template-buildtime"),
                         r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")
        self.assertRegex(self.feature("bb", "template-release"), r"^\d{12}$")
        for name in ["template-version", "template-installtime", "template-url",
                     "template-summary", "template-description"]:
            self.assertTrue(self.feature("bb", name), name)

    def test_vmexec_as_upstream_qvm_run_no_shell_calls_it(self):
        """vmexec=1 makes upstream `qvm-run --no-shell work echo 'a b'` call
        qubes.VMExec+echo+a-20b through qrexec-client: that call works."""
        self.assertEqual(0, self.tool("build", "busybox", "bb").returncode)
        self.ok("admin.vm.Create.AppVM", "bb", "dom0", b"name=work label=red")
        self.ok("admin.vm.Start", "", "work")
        try:
            service = "qubes.VMExec+" + harness.vmexec_encode(["echo", "a b"])
            r = subprocess.run([harness.tool_path("qrexec-client"), "-d", "work",
                                "DEFAULT:QUBESRPC %s dom0" % service], env=self.d.env(),
                               capture_output=True, text=True, timeout=30, input="")
            self.assertEqual((0, "a b\n"), (r.returncode, r.stdout), r.stderr)
        finally:
            self.ok("admin.vm.Kill", "", "work")

    @unittest.skipUnless(HAVE_DEBOOTSTRAP, "debootstrap not installed")
    def test_debian_features(self):
        env = dict(fake_debootstrap_env(self.d.workdir), **{
            k: v for k, v in self.d.env().items() if k != "PATH"})
        r = run("build", "debian", "deb", "--suite", "bookworm", env=env)
        self.assertEqual(0, r.returncode, r.stderr)
        self.assertNotIn("I: Retrieving", r.stdout)
        for feature, value in [("os-distribution", "debian"), ("os-version", "12"),
                               ("template-version", "12"), ("template-name", "deb"),
                               ("template-reponame", "@build-debian"),
                               ("template-builder", "debian")]:
            self.assertEqual(value, self.feature("deb", feature), feature)

    def test_list_machine_readable(self):
        self.assertEqual(0, self.tool("build", "busybox", "bb").returncode)
        self.assertEqual(0, self.tool("build", "busybox", "other").returncode)
        self.ok("admin.vm.Create.TemplateVM", "", "dom0", b"name=handmade label=red")
        r = self.tool("list", "--installed", "--machine-readable")
        self.assertEqual(0, r.returncode, r.stderr)
        lines = r.stdout.splitlines()
        self.assertEqual(2, len(lines), r.stdout)   # handmade is not qvm-template's
        self.assertRegex(lines[0], r"^installed\|bb\|0:[^|]+-\d{12}\|@build-busybox$")
        r = self.tool("list", "--machine-readable-json", "o*")
        self.assertEqual(0, r.returncode, r.stderr)
        data = json.loads(r.stdout)
        self.assertEqual(["other"], [t["name"] for t in data["installed"]])
        self.assertEqual({"name", "evr", "reponame"}, set(data["installed"][0]))
        r = self.tool("list", "--machine-readable", "nomatch*")
        self.assertEqual(2, r.returncode)
        self.assertIn("No matching templates to list", r.stderr)
        listing = self.tool("list", "b*").stdout.splitlines()
        self.assertEqual(["NAME", "bb"], [line.split()[0] for line in listing])

    def test_install_explains(self):
        r = self.tool("install", "debian-12-minimal")
        self.assertEqual(1, r.returncode)
        self.assertIn("qvm-template build debian debian-12-minimal --suite bookworm", r.stderr)
        self.assertNotIn("invalid choice", r.stderr)
        r = self.tool("install", "fedora-41-xfce")
        self.assertEqual(1, r.returncode)
        self.assertIn("qvm-template import fedora-41-xfce", r.stderr)

    def test_remove_disassoc(self):
        self.assertEqual(0, self.tool("build", "busybox", "bb").returncode)
        self.ok("admin.vm.Create.AppVM", "bb", "dom0", b"name=work label=red")
        self.ok("admin.property.Set", "default_template", "dom0", b"bb")
        r = self.tool("remove", "--disassoc", "bb", input_="n\n")
        self.assertEqual(1, r.returncode)
        self.assertIn(b"bb", self.ok("admin.vm.List"))
        r = self.tool("remove", "--disassoc", "--yes", "bb")
        self.assertEqual(0, r.returncode, r.stderr)
        self.assertIn("Property 'template' of 'work' set to 'dummy'.", r.stderr)
        self.assertIn("Global property 'default_template' set to ''.", r.stderr)
        names = self.ok("admin.vm.List").decode()
        self.assertNotIn("bb ", names)
        self.assertEqual("1", self.feature("dummy", "template-dummy"))
        self.assertEqual("dummy", self.get_prop("work", "template")[2])

    def test_purge(self):
        self.assertEqual(0, self.tool("build", "busybox", "bb").returncode)
        self.assertEqual(0, self.tool("build", "busybox", "keep").returncode)
        self.ok("admin.vm.Create.AppVM", "bb", "dom0", b"name=a label=red")
        self.ok("admin.vm.Create.AppVM", "bb", "dom0", b"name=dvm label=red")
        self.ok("admin.vm.property.Set", "template_for_dispvms", "dvm", b"True")
        self.ok("admin.vm.Create.DispVM", "dvm", "dom0", b"name=d1 label=red")
        self.ok("admin.vm.property.Set", "default_dispvm", "a", b"dvm")
        self.ok("admin.vm.Create.AppVM", "keep", "dom0", b"name=other label=red")
        self.ok("admin.property.Set", "default_dispvm", "dom0", b"dvm")
        r = self.tool("purge", "bb", input_="\n")
        self.assertEqual(1, r.returncode)
        self.assertIn("command cancelled", r.stdout)
        self.assertIn(b"d1 ", self.ok("admin.vm.List"))
        r = self.tool("purge", "-y", "bb")
        self.assertEqual(0, r.returncode, r.stderr)
        names = [line.split()[0] for line in self.ok("admin.vm.List").decode().splitlines()]
        self.assertEqual(["dom0", "keep", "other"], sorted(names))
        self.assertEqual((False, "vm", ""), self.get_global("default_dispvm"))

    def test_failed_import_leaves_nothing(self):
        bad = os.path.join(self.d.workdir, "bad.tar")
        with open(bad, "w") as f:
            f.write("not a tar archive\n")
        r = self.tool("import", "broken", bad)
        self.assertEqual(1, r.returncode)
        self.assertNotIn(b"broken", self.ok("admin.vm.List"))
        self.assertEqual(2, self.tool("remove", "broken").returncode)


if __name__ == "__main__":
    unittest.main()
