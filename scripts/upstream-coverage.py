#!/usr/bin/env python3
"""Measures how much of Qubes' admin client works unchanged on dispenserd (issue 18's
figures; docs/admin-api.md "Coverage"):

1. Typical invocations of upstream's 27 tools (qubes-core-admin-client, run from its
   source, unmodified: only its socket and qrexec-client paths point here) against a
   private daemon with a busybox template and a few qubes; an invocation works when it
   exits 0 (those expected to fail, e.g. `qvm-check --running` of a halted qube, are
   written so that success is exit 0 here too).
2. Admin API call families: qubesd's methods (its Makefile's ADMIN_API_METHODS_SIMPLE
   plus admin.vm.Console, admin.vm.volume.Import/ImportWithSize, admin.vm.Suspend/
   Resume), with the four device classes folded into one family per operation and
   Create.<class>, CreateInPool.<class> into one each; a family is implemented when the
   daemon answers it with anything but QubesNotImplementedError or "no such method".

Usage: scripts/upstream-coverage.py CLIENT_SRC CORE_ADMIN_SRC [BUILD_DIR]
(CLIENT_SRC holds qubesadmin/, CORE_ADMIN_SRC qubes-core-admin's Makefile). Root, as the
integration tests."""

import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIENT, CORE = sys.argv[1], sys.argv[2]
BUILD = sys.argv[3] if len(sys.argv) > 3 else os.path.join(ROOT, "build")
os.environ.setdefault("DISPENSER_BUILD_DIR", BUILD)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import harness  # noqa: E402
from test_engine import build_template  # noqa: E402

# Debian's python3, with the client's dependencies as Debian packages (python3-tqdm,
# python3-lxml, python3-xcffib), as dom0 has them
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

RUNNER = """
import sys
sys.path[:0] = [%r, %r]
import qubesadmin.config
qubesadmin.config.QUBESD_SOCKET = %r
qubesadmin.config.QREXEC_CLIENT = %r
import qubesadmin, qubesadmin.app
qubesadmin.Qubes = qubesadmin.app.QubesLocal  # chosen at import, before the path was set
import importlib
import inspect
tool = importlib.import_module("qubesadmin.tools." + sys.argv[1].replace("-", "_"))
if inspect.signature(tool.main).parameters:
    sys.exit(tool.main(sys.argv[2:]) or 0)
sys.argv[1:] = sys.argv[2:]  # a main() that reads sys.argv itself
sys.exit(tool.main() or 0)
"""

# (tool, arguments): what a Qubes user types most, per tool.
INVOCATIONS = [
    ("qvm-ls", []), ("qvm-ls", ["--running"]), ("qvm-ls", ["--raw-list"]),
    ("qvm-ls", ["-O", "name,state,class,label"]), ("qvm-ls", ["--format", "disk"]),
    ("qvm-ls", ["--tags", "created-by-dom0"]),
    ("qvm-prefs", ["work"]), ("qvm-prefs", ["work", "memory"]),
    ("qvm-prefs", ["work", "memory", "500"]), ("qvm-prefs", ["-D", "work", "memory"]),
    ("qvm-prefs", ["--help-properties", "work"]),
    ("qubes-prefs", []), ("qubes-prefs", ["default_template"]),
    ("qubes-prefs", ["default_pool"]),
    ("qvm-features", ["work"]), ("qvm-features", ["work", "f1", "v1"]),
    ("qvm-features", ["work", "f1"]), ("qvm-features", ["--unset", "work", "f1"]),
    ("qvm-tags", ["work"]), ("qvm-tags", ["work", "add", "t1"]),
    ("qvm-tags", ["work", "del", "t1"]),
    ("qvm-service", ["work"]), ("qvm-service", ["work", "cups", "on"]),
    ("qvm-service", ["--unset", "work", "cups"]),
    ("qvm-check", ["work"]), ("qvm-check", ["--template", "bb"]),
    ("qvm-create", ["-t", "bb", "-l", "red", "new1"]),
    ("qvm-create", ["--class", "DispVM", "-t", "dvm", "-l", "red", "new2"]),
    ("qvm-create", ["-P", "ram", "--class", "DispVM", "-t", "dvm", "-l", "red", "new3"]),
    ("qvm-create", ["-t", "bb", "-l", "red", "-p", "volatile=ram", "new4"]),
    ("qvm-clone", ["work", "work-clone"]),
    ("qvm-start", ["work"]), ("qvm-check", ["--running", "work"]),
    ("qvm-run", ["-p", "work", "echo hello"]),
    ("qvm-run", ["-p", "--no-shell", "work", "true"]),
    ("qvm-run", ["--dispvm", "dvm", "-p", "echo hi"]),
    ("qvm-pause", ["work"]), ("qvm-check", ["--paused", "work"]), ("qvm-unpause", ["work"]),
    ("qvm-shutdown", ["--wait", "work"]), ("qvm-start", ["work"]), ("qvm-kill", ["work"]),
    ("qvm-volume", []), ("qvm-volume", ["info", "work:private"]),
    ("qvm-volume", ["resize", "work:private", "3GiB"]),
    ("qvm-volume", ["config", "work:private", "revisions_to_keep", "2"]),
    ("qvm-pool", []), ("qvm-pool", ["drivers"]), ("qvm-pool", ["info", "dispenser"]),
    ("qvm-pool", ["add", "ram2", "ram", "-o", "size=16M"]), ("qvm-pool", ["remove", "ram2"]),
    ("qvm-pool", ["set", "ram", "-o", "revisions_to_keep=2"]),
    ("qvm-notes", ["work", "--set", "a note"]), ("qvm-notes", ["work", "--print"]),
    ("qvm-firewall", ["work"]), ("qvm-firewall", ["work", "add", "accept", "dsthost=1.1.1.1"]),
    ("qvm-firewall", ["work", "reset"]),
    ("qvm-device", ["block", "list"]), ("qvm-device", ["pci", "list"]),
    ("qvm-template", ["list", "--installed"]),
    ("qvm-remove", ["-f", "new1"]),
    ("qvm-backup", ["--help"]), ("qvm-backup-restore", ["--help"]),
    ("qvm-start-daemon", ["--help"]), ("qvm-template-postprocess", ["--help"]),
    ("qvm-pool-legacy", ["--help"]),
]


def metadata_dir():
    """The package metadata the client reads its version from (pip would write it)."""
    version = "4.4.0"
    if os.path.exists(os.path.join(CLIENT, "version")):
        with open(os.path.join(CLIENT, "version")) as f:
            version = f.read().strip()
    top = tempfile.mkdtemp()
    info = os.path.join(top, "qubesadmin-%s.dist-info" % version)
    os.mkdir(info)
    with open(os.path.join(info, "METADATA"), "w") as f:
        f.write("Metadata-Version: 2.1\nName: qubesadmin\nVersion: %s\n" % version)
    return top


def call(d, method, arg="", dest="dom0", payload=b""):
    return harness.parse_reply(harness.call(d.socket, method, arg, dest, payload, timeout=5))


def families(core):
    with open(os.path.join(core, "Makefile")) as f:
        text = f.read()
    simple = text.split("ADMIN_API_METHODS_SIMPLE = ", 1)[1].split("\n\n", 1)[0]
    methods = set(re.findall(r"admin\.[A-Za-z0-9_.]+", simple))
    methods |= {"admin.vm.Console", "admin.vm.volume.Import", "admin.vm.volume.ImportWithSize",
                "admin.vm.Suspend", "admin.vm.Resume"}
    out = {}
    for m in methods:
        fam = re.sub(r"^admin\.vm\.device\.(pci|block|usb|mic)\.", "admin.vm.device.<class>.", m)
        fam = re.sub(r"^admin\.vm\.(Create|CreateInPool)\.\w+$", r"admin.vm.\1.<class>", fam)
        out.setdefault(fam, []).append(m)
    return out


def implemented(d, methods):
    """Asked of dom0, so that nothing is changed: a method the daemon has answers with
    its result or its checks' error, one it lacks with QubesNotImplementedError (an
    upstream name) or "no such method"."""
    for m in methods:
        try:
            r = call(d, m, "", "dom0")
        except (TimeoutError, OSError):
            return True  # taken and still at work (admin.Events streams until closed)
        if r.ok or (r.exc != "QubesNotImplementedError" and not (
                r.exc == "ProtocolError" and "no such method" in (r.message or ""))):
            return True
    return False


def main():
    d = harness.Daemon()
    d.start()
    try:
        build_template(d, "bb")
        for args in (["-t", "bb", "-l", "red", "work"],
                     ["-t", "bb", "-l", "red", "--prop", "template_for_dispvms=True", "dvm"]):
            harness.run_tool(d, "qvm-create", *args)
        call(d, "admin.pool.Add", "ram", "dom0", b"name=ram\nsize=64M\n")
        meta = metadata_dir()
        with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
            f.write(RUNNER % (CLIENT, meta, d.socket, os.path.join(harness.QVM_BIN_DIR,
                                                                    "qrexec-client")))
        ok = 0
        for tool, args in INVOCATIONS:
            r = subprocess.run([PYTHON, f.name, tool] + args, capture_output=True,
                               text=True, timeout=60, env=dict(d.env(), HOME="/root"),
                               stdin=subprocess.DEVNULL)
            ok += r.returncode == 0
            print("%-4s %s %s%s" % ("ok" if r.returncode == 0 else "FAIL", tool, " ".join(args),
                                    "" if r.returncode == 0 else
                                    "  <- " + (r.stderr.strip().splitlines() or ["?"])[-1]))
        fams = families(CORE)
        done = sorted(f for f, ms in fams.items() if implemented(d, ms))
        missing = sorted(set(fams) - set(done))
        print("\ninvocations: %d of %d work (%.0f%%)" % (ok, len(INVOCATIONS),
                                                        100.0 * ok / len(INVOCATIONS)))
        print("call families: %d of %d implemented; missing: %s" % (len(done), len(fams),
                                                                    ", ".join(missing)))
    finally:
        for line in call(d, "admin.vm.List").content.decode().splitlines():
            call(d, "admin.vm.Kill", "", line.split()[0])
            if line.split()[0] != "dom0":
                call(d, "admin.vm.Remove", "", line.split()[0])
        call(d, "admin.pool.Remove", "ram")
        d.cleanup()


if __name__ == "__main__":
    main()
