"""qrexec end to end against a private dispenserd with the container engine (as root):
every service the agent and the busybox template serve, stream EOF both ways, 1 GiB
through `cat`, concurrency, the policy for calls made inside qubes (allow, deny,
redirect, @dispvm resolution, @tag/@type, include files, broken files, reload on
change and on SIGHUP), the caller preserved into disposables, disposables that leave no
trace, that power themselves off mid-call, and 50 of them at once.

Host calls go through the router socket beside the Admin API socket (no policy, as dom0
in Qubes); calls from inside a qube are made with qrexec-client-vm in a qube that the
host reached with `qvm-run -p`, so the inner call is checked with the qube as its
source."""

import hashlib
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
import unittest

import harness
from harness import Daemon, vmexec_encode
import test_engine
from test_engine import EngineTestCase, kill_all_qubes, unified_cgroup_dir

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_POLICY = os.path.join(harness.SOURCE_ROOT, "policy", "50-dispenser-default.policy")
ROUTER_WAIT = 3.0
RELOAD_WAIT = 5.0

# Services written into the template `bb` (every qube here is based on it).
SERVICES = r"""
set -e
mkdir -p /etc/qubes-rpc /etc/dispenser
cat > /etc/qubes-rpc/test.Where <<'EOF'
#!/bin/sh
echo "remote=$QREXEC_REMOTE_DOMAIN target=$QREXEC_REQUESTED_TARGET arg=$QREXEC_SERVICE_ARGUMENT argv1=${1-} qube=$(hostname) file=plain"
EOF
cat > /etc/qubes-rpc/test.Where+special <<'EOF'
#!/bin/sh
echo "remote=$QREXEC_REMOTE_DOMAIN target=$QREXEC_REQUESTED_TARGET arg=$QREXEC_SERVICE_ARGUMENT argv1=${1-} qube=$(hostname) file=special"
EOF
cat > /etc/qubes-rpc/test.Id <<'EOF'
#!/bin/sh
echo "uid=$(id -u) user=$USER home=$HOME"
EOF
cat > /etc/qubes-rpc/test.Echo <<'EOF'
#!/bin/sh
exec cat
EOF
cat > /etc/qubes-rpc/test.Sleep <<'EOF'
#!/bin/sh
exec sleep 60 </dev/null >/dev/null 2>&1
EOF
cat > /etc/qubes-rpc/test.Hold <<'EOF'
#!/bin/sh
echo "$(hostname) remote=$QREXEC_REMOTE_DOMAIN target=$QREXEC_REQUESTED_TARGET"
cat >/dev/null
echo released
EOF
cat > /etc/qubes-rpc/test.CloseOut <<'EOF'
#!/bin/sh
echo early
exec >&-
read x
echo "got $x" >&2
EOF
cat > /etc/dispenser/open-handler <<'EOF'
#!/bin/sh
echo "handler: ${1##*/} $(wc -c < "$1" | tr -d ' ') bytes in $(hostname): $(tr a-z A-Z < "$1")"
EOF
chmod 755 /etc/qubes-rpc/test.* /etc/dispenser/open-handler
"""



class PolicyDaemon(Daemon):
    """A private dispenserd with its own qrexec policy directory."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.policy_dir = os.path.join(self.workdir, "policy")
        os.makedirs(self.policy_dir, exist_ok=True)

    def spawn(self):
        self._log_file = open(self.log_path, "ab")
        cmd = [harness.DISPENSERD, "--state-dir", self.state_dir, "--runtime-dir",
               self.runtime_dir, "--socket", self.socket, "--foreground", "--log-level",
               self.log_level, "--agent", self.agent, "--policy-dir", self.policy_dir]
        env = dict(os.environ)
        env.pop("NOTIFY_SOCKET", None)
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._log_file,
                                     stderr=subprocess.STDOUT, env=env)
        harness._live_daemons.add(self)
        return self.proc

    @property
    def qrexec_socket(self):
        """Beside the Admin API socket: QUBESD_SOCKET alone selects both."""
        return self.socket[:-len(".sock")] + ".qrexec.sock"

    def tool_env(self):
        return self.env()


def run_tool(d, name, *args, input=None, timeout=30, text=True):
    return subprocess.run([harness.tool_path(name)] + [str(a) for a in args],
                          env=d.tool_env(), input=input, capture_output=True, text=text,
                          timeout=timeout)


def popen_tool(d, name, *args, **kw):
    return subprocess.Popen([harness.tool_path(name)] + [str(a) for a in args],
                            env=d.tool_env(), **kw)


@unittest.skipIf(test_engine.engine_skip_reason(), test_engine.engine_skip_reason())
class QrexecCase(EngineTestCase):
    """A daemon per class with a policy dir, the template `bb` carrying the test services,
    qubes `work` and `work2` and the disposable template `dvm` (the global default_dispvm).
    Every test kills every qube it started."""

    POLICY = {}  # file name -> text, written before the daemon starts

    @classmethod
    def setUpClass(cls):
        cls.shared = PolicyDaemon()
        try:
            for name, text in cls.POLICY.items():
                with open(os.path.join(cls.shared.policy_dir, name), "w") as f:
                    f.write(text)
            cls.shared.start()
            cls.populate(cls.shared)
        except BaseException:
            cls.shared.cleanup()
            raise

    @classmethod
    def populate(cls, d):
        super().populate(d)
        deadline = time.monotonic() + ROUTER_WAIT
        while not os.path.exists(d.qrexec_socket) and time.monotonic() < deadline:
            time.sleep(0.02)
        r = run_tool(d, "qvm-run", "-u", "root", "-p", "bb", "sh", input=SERVICES)
        if r.returncode != 0:
            raise AssertionError("installing the test services: %s" % r.stderr)
        harness.ok_content(d, "admin.vm.Shutdown", "wait", "bb")
        for name in ("work", "work2", "dvm"):
            harness.ok_content(d, "admin.vm.Create.AppVM", "bb", "dom0",
                               ("name=%s label=red" % name).encode())
        harness.ok_content(d, "admin.vm.property.Set", "template_for_dispvms", "dvm", b"True")
        harness.ok_content(d, "admin.property.Set", "default_dispvm", "dom0", b"dvm")

    def setUp(self):
        super().setUp()
        self.addCleanup(self.check_nothing_left)

    def check_nothing_left(self):
        leftovers = kill_all_qubes(self.d)
        self.assertEqual([], leftovers, "processes left after killing every qube")
        self.assertEqual([], [n for n in self.vm_names() if re.match(r"disp\d+$", n)],
                         "disposables left")
        self.assert_nothing_runs()

    # --- calls ---

    def cli(self, *args, **kw):
        return run_tool(self.d, *args, **kw)

    def qvm_run(self, *args, input=None, timeout=30):
        return run_tool(self.d, "qvm-run", *args, input=input, timeout=timeout)

    def passio(self, qube, command, input=None, user=None, timeout=30):
        args = ["-u", user] if user else []
        return self.qvm_run(*(args + ["-p", qube, command]), input=input, timeout=timeout)

    def out(self, qube, command, input=None, user=None):
        r = self.passio(qube, command, input, user)
        self.assertEqual(0, r.returncode, "%r in %s: %r %r" % (command, qube, r.stdout,
                                                               r.stderr))
        return r.stdout

    def call_from(self, source, target, service, input="", extra=""):
        """qrexec-client-vm inside `source`: (exit status, stdout, stderr) of the inner
        call, through the outer qvm-run's exit status."""
        r = self.passio(source, "qrexec-client-vm '%s' '%s' %s" % (target, service, extra),
                        input=input)
        return r.returncode, r.stdout, r.stderr

    def assert_refused(self, source, target, service):
        rc, out, err = self.call_from(source, target, service)
        self.assertEqual(126, rc, (source, target, service, out, err))
        self.assertIn("Request refused", err)
        self.assertEqual("", out)

    def where(self, source, target, service="test.Where"):
        rc, out, err = self.call_from(source, target, service)
        self.assertEqual(0, rc, (source, target, service, out, err))
        return dict(kv.split("=", 1) for kv in out.split())

    def disposables(self):
        return [n for n in self.vm_names() if re.match(r"disp\d+$", n)]

    def volume_dirs(self):
        path = os.path.join(self.d.state_dir, "volumes")
        return sorted(os.listdir(path)) if os.path.isdir(path) else []

    def assert_disposable_gone(self, name):
        self.settled(lambda: self.assertNotIn(name, self.vm_names()))
        self.assert_no_trace(name)

    # --- policy files ---

    def log_count(self, needle):
        return self.d.log().count(needle)

    def wait_log(self, needle, before, timeout=RELOAD_WAIT):
        deadline = time.monotonic() + timeout
        while self.log_count(needle) <= before:
            if time.monotonic() > deadline:
                self.fail("no new %r in the log within %ss" % (needle, timeout))
            time.sleep(0.02)

    def write_policy(self, name, text, expect="rules loaded"):
        """Writes (atomically) one file of the policy dir and waits for the reload."""
        before = self.log_count(expect)
        tmp = os.path.join(self.d.workdir, ".policy-tmp")
        with open(tmp, "w") as f:
            f.write(text)
        path = os.path.join(self.d.policy_dir, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.rename(tmp, path)
        self.wait_log(expect, before)

    def remove_policy(self, name):
        before = self.log_count("rules loaded")
        os.unlink(os.path.join(self.d.policy_dir, name))
        self.wait_log("rules loaded", before)


# --- services, from the host ---

class Services(QrexecCase):

    def test_vmshell_script_on_stdin_and_command(self):
        r = self.qvm_run("-p", "--service", "work", "qubes.VMShell",
                         input="echo from-script $(hostname)\nexit 4\n")
        self.assertEqual((4, "from-script work\n"), (r.returncode, r.stdout), r.stderr)
        r = self.passio("work", "echo out; echo err >&2; echo $QREXEC_REMOTE_DOMAIN; exit 9")
        self.assertEqual((9, "out\ndom0\n", "err\n"), (r.returncode, r.stdout, r.stderr))
        r = self.passio("work", "id -u", user="root")
        self.assertEqual((0, "0\n"), (r.returncode, r.stdout), r.stderr)

    # Upstream qvm-run -p sends "CMD; exit\n" to qubes.VMShell and then the caller's data
    # on the same stream: the shell must not read past that line (dash and busybox ash
    # read ahead on a pipe and swallowed the data).
    def test_vmshell_leaves_data_after_the_command_line(self):
        data = os.urandom(1 << 20)
        want = hashlib.md5(data).hexdigest()
        for target in ("work", "@dispvm:dvm"):
            with self.subTest(target=target):
                r = subprocess.run([harness.tool_path("qrexec-client"), "-d", target,
                                    "DEFAULT:QUBESRPC qubes.VMShell dom0"],
                                   input=b"md5sum; exit\n" + data, capture_output=True,
                                   env=self.d.tool_env(), timeout=60)
                self.assertEqual(0, r.returncode, r.stderr)
                self.assertEqual(want, r.stdout.decode().split()[0])
        r = self.qvm_run("-p", "--service", "work", "qubes.VMShell",
                         input="for i in 1 2; do\n echo $i\ndone; head -c 3; exit 5\nabcdef")
        self.assertEqual((5, "1\n2\nabc"), (r.returncode, r.stdout), r.stderr)

    def test_vmexec_with_encoded_args(self):
        argv = ["printf", "[%s]\\n", "two words", "-dash", "--double", "semi;colon",
                "ü-é", "a+b", "$HOME", ""]
        r = self.qvm_run("-p", "--service", "work", "qubes.VMExec+" + vmexec_encode(argv))
        self.assertEqual(0, r.returncode, r.stderr)
        self.assertEqual("[two words]\n[-dash]\n[--double]\n[semi;colon]\n[ü-é]\n[a+b]\n"
                         "[$HOME]\n[]\n", r.stdout)
        r = self.qvm_run("-p", "--service", "work",
                         "qubes.VMExec+" + vmexec_encode(["sh", "-c", "exit 6"]))
        self.assertEqual(6, r.returncode, r.stderr)

    def test_wait_for_running_system(self):
        r = self.qvm_run("-p", "--service", "work2", "qubes.WaitForRunningSystem")
        self.assertEqual(0, r.returncode, r.stderr)
        self.assertEqual("Running", self.api_state("work2"))  # started for the call

    def test_filecopy_lands_file_with_content(self):
        src = tempfile.mkdtemp(prefix="dispenser-qx-")
        self.addCleanup(shutil.rmtree, src, True)
        data = os.urandom(300000)
        with open(os.path.join(src, "blob.bin"), "wb") as f:
            f.write(data)
        r = self.cli("qvm-copy-to-vm", "work", os.path.join(src, "blob.bin"))
        self.assertEqual(0, r.returncode, r.stderr)
        out = self.out("work", "sha256sum ~/QubesIncoming/dom0/blob.bin")
        self.assertEqual(hashlib.sha256(data).hexdigest(), out.split()[0])
        # the service itself, with a tar stream: a second copy is not overwritten
        with open(os.path.join(src, "blob.bin"), "wb") as f:
            f.write(b"second")
        tar = subprocess.run(["tar", "-cf", "-", "-C", src, "blob.bin"], capture_output=True,
                             check=True).stdout
        r = run_tool(self.d, "qvm-run", "-p", "--service", "work", "qubes.Filecopy",
                     input=tar, text=False)
        self.assertEqual(1, r.returncode, r.stderr)
        self.assertIn(b"not overwritten", r.stderr)
        out = self.out("work", "sha256sum ~/QubesIncoming/dom0/blob.bin")
        self.assertEqual(hashlib.sha256(data).hexdigest(), out.split()[0])

    def test_open_in_dvm_handler_output_comes_back(self):
        src = tempfile.mkdtemp(prefix="dispenser-qx-")
        self.addCleanup(shutil.rmtree, src, True)
        path = os.path.join(src, "letter.txt")
        with open(path, "w") as f:
            f.write("dear qube")
        before = set(self.vm_names())
        r = self.cli("qvm-open-in-dvm", path)
        self.assertEqual(0, r.returncode, r.stderr)
        m = re.fullmatch(r"handler: letter\.txt 9 bytes in (disp\d+): DEAR QUBE\n", r.stdout)
        self.assertTrue(m, r.stdout)
        # the disposable goes right after the answer, without the caller waiting for it
        self.settled(lambda: self.assertEqual(before, set(self.vm_names())))
        self.assert_disposable_gone(m.group(1))
        with open(path) as f:
            self.assertEqual("dear qube", f.read())  # nothing came back
        # the service straight into a named qube: argument = the file name
        r = self.qvm_run("-p", "--service", "work", "qubes.OpenInVM+x.txt", input="abc")
        self.assertEqual((0, "handler: x.txt 3 bytes in work: ABC\n"), (r.returncode, r.stdout),
                         r.stderr)

    def test_custom_service_with_argument(self):
        r = self.qvm_run("-p", "--service", "work", "test.Where+special")
        self.assertEqual(0, r.returncode, r.stderr)
        self.assertEqual("remote=dom0 target=work arg=special argv1=special qube=work "
                         "file=special\n", r.stdout)
        r = self.qvm_run("-p", "--service", "work", "test.Where+other")
        self.assertEqual("remote=dom0 target=work arg=other argv1=other qube=work file=plain\n",
                         r.stdout, r.stderr)
        r = self.qvm_run("-p", "--service", "work", "test.Where")
        self.assertEqual("remote=dom0 target=work arg= argv1= qube=work file=plain\n",
                         r.stdout, r.stderr)
        r = self.cli("qrexec-client", "-d", "work", "DEFAULT:QUBESRPC test.Where+special dom0")
        self.assertEqual((0, "remote=dom0 target=work arg=special argv1=special qube=work "
                             "file=special\n"), (r.returncode, r.stdout), r.stderr)
        # a service only in one qube's root, for that run only
        self.out("work2", "printf '#!/bin/sh\\necho mine $1\\n' > /etc/qubes-rpc/test.Own && "
                          "chmod 755 /etc/qubes-rpc/test.Own", user="root")
        r = self.qvm_run("-p", "--service", "work2", "test.Own+a.b")
        self.assertEqual((0, "mine a.b\n"), (r.returncode, r.stdout), r.stderr)
        r = self.qvm_run("-p", "--service", "work", "test.Own+a.b")
        self.assertEqual(127, r.returncode, r.stderr)

    def test_unknown_service_127(self):
        for args in (["-p", "--service", "work", "no.Such"],
                     ["-p", "--service", "work", "no.Such+arg"]):
            r = self.qvm_run(*args)
            self.assertEqual(127, r.returncode, (args, r.stdout, r.stderr))
        r = self.cli("qrexec-client", "-d", "work", "DEFAULT:QUBESRPC no.Such+ dom0")
        self.assertEqual(127, r.returncode, r.stderr)
        r = self.qvm_run("-p", "work", "exit 127")
        self.assertEqual(127, r.returncode)

    def test_get_date(self):
        r = self.qvm_run("-p", "--service", "work", "qubes.GetDate")
        self.assertEqual(0, r.returncode, r.stderr)
        self.assertRegex(r.stdout, r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\n$")


# --- streams ---

class Streams(QrexecCase):

    def test_stdin_eof_ends_cat(self):
        p = popen_tool(self.d, "qvm-run", "-p", "work", "cat; echo after-eof",
                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = p.communicate(b"some input\n", timeout=20)
        self.assertEqual((0, b"some input\nafter-eof\n"), (p.returncode, out), err)

    # qvm-run/qrexec-client swap their own stdin/stdout for /dev/null once handed over, as
    # qrexec-client-vm does (Policy.test_stdout_closed_early_between_qubes).
    def test_stdout_closed_early_reaches_caller(self):
        # the service closes its stdout and stays: the caller sees EOF on stdout at once,
        # the service still reads stdin and writes stderr, and its status comes after
        p = popen_tool(self.d, "qvm-run", "-p", "work",
                       "echo early; exec >&-; read x; echo \"got $x\" >&2; exit 3",
                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.addCleanup(p.kill)
        got = []
        t = threading.Thread(target=lambda: got.append(p.stdout.read()), daemon=True)
        t.start()
        t.join(3)
        self.assertFalse(t.is_alive(), "stdout never reached EOF while the service ran")
        self.assertEqual([b"early\n"], got)
        self.assertIsNone(p.poll())  # still waiting for its stdin
        p.stdin.write(b"line\n")
        p.stdin.close()
        err = p.stderr.read()
        self.assertEqual(3, p.wait(10))
        self.assertEqual(b"got line\n", err)

    def test_stderr_closed_and_stdin_unread(self):
        # a service that never reads its stdin and exits: the caller is not stuck on a
        # stdin it still holds open
        p = popen_tool(self.d, "qvm-run", "-p", "work", "exec 2>&-; echo done",
                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.addCleanup(p.kill)
        try:
            out, err = p.communicate(timeout=10)  # stdin closed only by communicate
        except subprocess.TimeoutExpired:
            self.fail("caller hung after the service exited")
        self.assertEqual((0, b"done\n", b""), (p.returncode, out, err))

    def test_one_gib_through_cat(self):
        block = os.urandom(1 << 20)
        total = 1 << 30
        h_in, h_out = hashlib.sha256(), hashlib.sha256()
        p = popen_tool(self.d, "qvm-run", "-p", "work", "cat", stdin=subprocess.PIPE,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
        self.addCleanup(p.kill)
        errors = []

        def feed():
            try:
                for i in range(total >> 20):
                    chunk = i.to_bytes(8, "little") + block[8:]  # no two blocks alike
                    h_in.update(chunk)
                    p.stdin.write(chunk)
                p.stdin.close()
            except BaseException as e:  # noqa: B902 - reported below
                errors.append(e)

        t0 = time.monotonic()
        writer = threading.Thread(target=feed, daemon=True)
        writer.start()
        n = 0
        while True:
            chunk = p.stdout.read(1 << 20)
            if not chunk:
                break
            h_out.update(chunk)
            n += len(chunk)
        writer.join(30)
        rc = p.wait(30)
        elapsed = time.monotonic() - t0
        self.assertEqual([], errors)
        self.assertEqual((0, total), (rc, n), p.stderr.read())
        self.assertEqual(h_in.hexdigest(), h_out.hexdigest())
        print("\n1 GiB through cat in a qube: %.2f s, %.0f MiB/s" % (elapsed, 1024 / elapsed))
        self.assertLess(elapsed, 60)

    def test_qube_side_checksum(self):
        # the bytes the service read are the bytes sent (hashed inside the qube)
        data = os.urandom(16 << 20)
        r = run_tool(self.d, "qvm-run", "-p", "work", "sha256sum", input=data, text=False)
        self.assertEqual(0, r.returncode, r.stderr)
        self.assertEqual(hashlib.sha256(data).hexdigest(), r.stdout.split()[0].decode())

    def test_twenty_concurrent_calls_into_one_qube(self):
        self.start("work")
        results = {}

        def one(i):
            payload = ("payload-%d-" % i) * 1000
            r = self.passio("work", "sleep 0.2; echo start-%d; cat; echo end-%d >&2; exit %d"
                            % (i, i, i % 7), input=payload)
            results[i] = (r.returncode, r.stdout, r.stderr, payload)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(20, len(results))
        for i, (rc, out, err, payload) in sorted(results.items()):
            self.assertEqual((i % 7, "start-%d\n%s" % (i, payload), "end-%d\n" % i),
                             (rc, out, err), i)
        self.assertLess(time.monotonic() - t0, 20)


# --- the policy for calls made inside qubes ---

BASE_POLICY = """\
# the tests' rules: before the shipped default
test.Where   +allowed  work   work2        allow
test.Where   +denied   work   work2        deny
test.Where   +asked    work   work2        ask
test.Where   +redir    work   @default     allow target=work2
test.Where   +todisp   work   @default     allow target=@dispvm:dvm
test.Where   +todisp2  work   work2        allow target=@dispvm
test.Where   *         @anyvm @dispvm      allow
test.Where   *         @anyvm @dispvm:dvm  allow
test.Where   *         @anyvm @dispvm:work2 allow
test.Where   +tagged   @tag:trusted  work2 allow
test.Where   +typed    work   @type:AppVM  allow
test.Hold    *         work   @dispvm:dvm  allow
test.Hold    *         work   @dispvm      allow
test.Sleep   *         work   @dispvm:dvm  allow
test.Echo    *         work   work2        allow
test.CloseOut *        work   work2        allow
qubes.Filecopy *       work   work2        allow
"""


class Policy(QrexecCase):

    POLICY = {"30-tests.policy": BASE_POLICY}

    @classmethod
    def setUpClass(cls):
        cls.POLICY = dict(cls.POLICY)
        with open(DEFAULT_POLICY) as f:
            cls.POLICY["50-dispenser-default.policy"] = f.read()
        super().setUpClass()

    def tearDown(self):
        # every test starts from the class's policy
        changed = False
        for name in os.listdir(self.d.policy_dir):
            if name not in self.POLICY:
                p = os.path.join(self.d.policy_dir, name)
                shutil.rmtree(p) if os.path.isdir(p) else os.unlink(p)
                changed = True
        with open(os.path.join(self.d.policy_dir, "30-tests.policy")) as f:
            changed |= f.read() != BASE_POLICY
        if changed:
            self.write_policy("30-tests.policy", BASE_POLICY)
        super().tearDown()

    def test_allow_deny_ask(self):
        self.assertEqual({"remote": "work", "target": "work2", "arg": "allowed",
                          "argv1": "allowed", "qube": "work2", "file": "plain"},
                         self.where("work", "work2", "test.Where+allowed"))
        self.assert_refused("work", "work2", "test.Where+denied")
        self.assert_refused("work", "work2", "test.Where+asked")
        self.assert_refused("work", "work2", "test.Where+nomatch")  # default deny
        self.assert_refused("work2", "work", "test.Where+allowed")  # wrong source
        self.assert_refused("work", "dom0", "test.Where+allowed")
        self.assert_refused("work", "nosuchqube", "test.Where+allowed")
        self.assertIn("work -> work2 test.Where+denied refused", self.d.log())
        # a refused call starts nothing
        self.ok("admin.vm.Kill", dest="work2")
        self.assert_refused("work", "work2", "test.Where+denied")
        self.assertEqual("Halted", self.api_state("work2"))

    def test_streams_between_qubes(self):
        # EOF both ways through two hops: host -> work -> work2 and back
        out = self.out("work", "head -c 100000 /dev/zero | tr '\\0' x | "
                               "qrexec-client-vm work2 test.Echo+ | wc -c; echo rc=$?")
        self.assertEqual("100000\nrc=0\n", out)
        p = popen_tool(self.d, "qvm-run", "-p", "work", "qrexec-client-vm work2 test.Echo",
                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = p.communicate(b"through two hops\n", timeout=20)
        self.assertEqual((0, b"through two hops\n"), (p.returncode, out), err)

    def test_stdout_closed_early_between_qubes(self):
        # test.CloseOut in work2 prints a line, closes its stdout and waits for stdin: the
        # reader of qrexec-client-vm's stdout in work sees EOF while the service still runs
        p = popen_tool(self.d, "qvm-run", "-p", "work",
                       "qrexec-client-vm work2 test.CloseOut | "
                       "{ read l; echo \"line:$l\"; cat; echo stdout-eof; }",
                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True)
        self.addCleanup(p.kill)
        lines = []

        def reader():
            for _ in range(2):
                lines.append(p.stdout.readline())

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        t.join(10)
        self.assertEqual(["line:early\n", "stdout-eof\n"], lines)
        self.assertIsNone(p.poll())  # the service still waits for its stdin
        p.stdin.write("go\n")
        p.stdin.close()
        self.assertEqual(0, p.wait(10))
        self.assertEqual("got go\n", p.stderr.read())

    def test_filecopy_between_qubes(self):
        out = self.out("work", "mkdir -p /tmp/s && echo qube-data > /tmp/s/note && "
                               "tar -cf - -C /tmp/s note | qrexec-client-vm work2 "
                               "qubes.Filecopy; echo rc=$?")
        self.assertEqual("rc=0\n", out)
        self.assertEqual("qube-data\n", self.out("work2", "cat ~/QubesIncoming/work/note"))
        out = self.out("work2", "tar -cf - -C /etc hostname | qrexec-client-vm work "
                                "qubes.Filecopy; echo rc=$?")
        self.assertEqual("rc=126\n", out)  # not the other way round

    def test_redirect(self):
        w = self.where("work", "@default", "test.Where+redir")
        self.assertEqual(("work", "work2"), (w["remote"], w["qube"]))
        w = self.where("work", "", "test.Where+redir")
        self.assertEqual("work2", w["qube"])
        w = self.where("work", "@default", "test.Where+todisp")
        self.assertRegex(w["qube"], r"^disp\d+$")
        self.assertEqual("work", w["remote"])
        self.assert_disposable_gone(w["qube"])
        w = self.where("work", "work2", "test.Where+todisp2")  # target=@dispvm: work's default
        self.assertRegex(w["qube"], r"^disp\d+$")
        self.assert_disposable_gone(w["qube"])

    def test_dispvm_resolution(self):
        # @dispvm = the caller's default_dispvm (the global one, dvm)
        w = self.where("work", "@dispvm")
        self.assertRegex(w["qube"], r"^disp\d+$")
        self.assertEqual(("work", "@dispvm"), (w["remote"], w["target"]))
        self.assert_disposable_gone(w["qube"])
        # its own default_dispvm wins over the global one
        self.create("AppVM", "dvm2", template="bb")
        self.addCleanup(self.remove_quietly, "dvm2")
        self.ok("admin.vm.property.Set", "template_for_dispvms", "dvm2", b"True")
        self.ok("admin.vm.property.Set", "default_dispvm", "work", b"dvm2")
        self.addCleanup(self.ok, "admin.vm.property.Reset", "default_dispvm", "work")
        self.write_policy("20-dvm2.policy", "test.Hold * work @dispvm:dvm2 allow\n")
        p = popen_tool(self.d, "qvm-run", "-p", "work", "qrexec-client-vm @dispvm test.Hold",
                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True)
        self.addCleanup(p.kill)
        name = p.stdout.readline().split()[0]
        self.assertEqual("dvm2", self.get_prop(name, "template")[2])
        p.stdin.close()
        self.assertEqual("released\n", p.stdout.read())
        self.assertEqual(0, p.wait(10))
        self.assert_disposable_gone(name)
        # none at all: refused
        self.ok("admin.vm.property.Set", "default_dispvm", "work", b"")
        self.assert_refused("work", "@dispvm", "test.Where")
        self.assertEqual([], self.disposables())

    def test_dispvm_of_a_non_template_refused(self):
        self.assert_refused("work", "@dispvm:work2", "test.Where")
        self.assert_refused("work", "@dispvm:nosuch", "test.Where")
        self.assertEqual([], self.disposables())
        r = self.qvm_run("--dispvm=work2", "-p", "true")
        self.assertNotEqual(0, r.returncode)
        self.assertIn("work2", r.stderr)

    def test_tag_and_type_rules(self):
        self.assert_refused("work", "work2", "test.Where+tagged")
        self.ok("admin.vm.tag.Set", "trusted", "work")
        self.addCleanup(self.d.call, "admin.vm.tag.Remove", "trusted", "work")
        self.assertEqual("work2", self.where("work", "work2", "test.Where+tagged")["qube"])
        self.assert_refused("dvm", "work2", "test.Where+tagged")
        # @type:AppVM target: any AppVM, not the template
        self.assertEqual("dvm", self.where("work", "dvm", "test.Where+typed")["qube"])
        self.assert_refused("work", "bb", "test.Where+typed")
        self.assertEqual("Halted", self.api_state("bb"))

    def test_include_files(self):
        self.assert_refused("work", "work2", "test.Where+inc1")
        self.assert_refused("work", "work2", "test.Where+inc2")
        os.makedirs(os.path.join(self.d.policy_dir, "incdir"))
        with open(os.path.join(self.d.policy_dir, "included.rules"), "w") as f:
            f.write("test.Where +inc1 work work2 allow\n")
        with open(os.path.join(self.d.policy_dir, "incdir", "10-a.policy"), "w") as f:
            f.write("test.Where +inc2 work work2 allow\n")
        with open(os.path.join(self.d.policy_dir, "incdir", "20-b.policy"), "w") as f:
            f.write("test.Where +inc3 work work2 deny\n")
        self.write_policy("20-includes.policy", "!include included.rules\n"
                                                "!include-dir incdir\n"
                                                "test.Where +inc3 work work2 allow\n")
        self.assertEqual("work2", self.where("work", "work2", "test.Where+inc1")["qube"])
        self.assertEqual("work2", self.where("work", "work2", "test.Where+inc2")["qube"])
        self.assert_refused("work", "work2", "test.Where+inc3")  # the included deny first
        # a broken included file is reported under its own name and line
        with open(os.path.join(self.d.policy_dir, "incdir", "30-c.policy"), "w") as f:
            f.write("# ok\n\ntest.Where +inc4 work\n")
        self.write_policy("20-includes.policy", "!include-dir incdir\n",
                          expect="keeping the policy in force")
        self.assertRegex(self.d.log(), r"incdir/30-c\.policy:3: ")
        self.assertEqual("work2", self.where("work", "work2", "test.Where+inc1")["qube"])

    def test_broken_file_keeps_old_policy_then_fix(self):
        self.assertEqual("work2", self.where("work", "work2", "test.Where+allowed")["qube"])
        self.write_policy("40-broken.policy",
                          "# fine\ntest.Where +x work work2 allow\nthis line is broken\n",
                          expect="keeping the policy in force")
        self.assertRegex(self.d.log(), r"40-broken\.policy:3: .*keeping the policy in force")
        # old policy: allowed still allowed, denied still denied, broken file's rule absent
        self.assertEqual("work2", self.where("work", "work2", "test.Where+allowed")["qube"])
        self.assert_refused("work", "work2", "test.Where+denied")
        self.assert_refused("work", "work2", "test.Where+x")
        # a broken file that would allow everything loosens nothing either
        self.write_policy("10-open.policy", "* * @anyvm @anyvm allow\n* * broken\n",
                          expect="keeping the policy in force")
        self.assertRegex(self.d.log(), r"10-open\.policy:2: ")
        self.assert_refused("work", "work2", "test.Where+denied")
        os.unlink(os.path.join(self.d.policy_dir, "10-open.policy"))
        # fixed: the new policy applies
        self.write_policy("40-broken.policy", "# fine\ntest.Where +x work work2 allow\n")
        self.assertEqual("work2", self.where("work", "work2", "test.Where+x")["qube"])

    def test_sighup_reload(self):
        # a file in an included dir, changed without the daemon being told by inotify
        # necessarily; SIGHUP reloads everything
        os.makedirs(os.path.join(self.d.policy_dir, "incdir"))
        inc = os.path.join(self.d.policy_dir, "incdir", "10-a.policy")
        with open(inc, "w") as f:
            f.write("test.Where +hup work work2 deny\n")
        self.write_policy("20-includes.policy", "!include-dir incdir\n")
        self.assert_refused("work", "work2", "test.Where+hup")
        with open(inc, "w") as f:
            f.write("test.Where +hup work work2 allow\n")
        before = self.log_count("rules loaded")
        self.d.proc.send_signal(signal.SIGHUP)
        self.wait_log("rules loaded", before)
        self.assertEqual("work2", self.where("work", "work2", "test.Where+hup")["qube"])
        self.assertTrue(self.d.running())

    # --- the caller preserved into its disposable ---

    def test_caller_preserved_env_and_tags(self):
        ev = self.events()
        p = popen_tool(self.d, "qvm-run", "-p", "work", "qrexec-client-vm @dispvm:dvm test.Hold",
                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True)
        self.addCleanup(p.kill)
        line = p.stdout.readline().split()
        self.assertEqual(3, len(line), line)
        name = line[0]
        self.assertRegex(name, r"^disp\d+$")
        self.assertEqual(["remote=work", "target=@dispvm:dvm"], line[1:])
        # while the service runs: the disposable's tags and properties, from the host
        tags = self.ok("admin.vm.tag.List", dest=name).decode().split()
        self.assertIn("created-by-work", tags)
        self.assertIn("disp-created-by-work", tags)
        self.assertNotIn("created-by-dom0", tags)
        self.assertEqual("dvm", self.get_prop(name, "template")[2])
        self.assertEqual("True", self.get_prop(name, "auto_cleanup")[2])
        self.assertEqual("Running", self.api_state(name))
        p.stdin.close()  # EOF through both hops ends the service
        self.assertEqual("released\n", p.stdout.read())
        self.assertEqual(0, p.wait(10), p.stderr.read())
        self.assert_disposable_gone(name)
        # the events saw it made, tagged and gone
        # (global events have an empty subject, as upstream's)
        ev.wait_for(lambda evs: any(e[0] == "" and e[1] == "domain-delete" for e in evs))
        names = [(e[0], e[1], dict(e[2])) for e in ev.snapshot()]
        self.assertTrue(any(s == "" and n == "domain-add" and kv.get("vm") == name
                            for s, n, kv in names), names)
        self.assertTrue(any(s == "" and n == "domain-delete" and kv.get("vm") == name
                            for s, n, kv in names), names)
        # @dispvm as asked
        w = self.where("work", "@dispvm", "test.Where")
        self.assertEqual(("work", "@dispvm"), (w["remote"], w["target"]))

    def test_caller_in_a_qube_dying_mid_call_ends_its_disposable(self):
        """A service that never looks at its stdio: when the qube's caller dies, the call
        is cancelled and the disposable made for it goes, not when the service ends."""
        before = set(self.disposables())
        pid = self.out("work", "setsid qrexec-client-vm @dispvm:dvm test.Sleep "
                               "</dev/null >/dev/null 2>&1 & echo $!").strip()
        deadline = time.monotonic() + 10
        while not set(self.disposables()) - before and time.monotonic() < deadline:
            time.sleep(0.05)
        new = set(self.disposables()) - before
        self.assertEqual(1, len(new), "no disposable for the call")
        name = new.pop()
        self.settled(lambda: self.assertEqual("Running", self.api_state(name)))
        self.out("work", "kill -KILL %s" % pid)
        self.assert_disposable_gone(name)

    def test_dispvm_call_from_qube_leaves_no_trace(self):
        vols = self.volume_dirs()
        seen = []
        for _ in range(3):
            w = self.where("work", "@dispvm:dvm")
            seen.append(w["qube"])
            self.assert_disposable_gone(w["qube"])
        self.assertEqual(3, len(set(seen)))
        self.settled(lambda: self.assertEqual(vols, self.volume_dirs()))


# --- disposables from the host ---

class Disposables(QrexecCase):

    def test_no_trace_after_call(self):
        vols = self.volume_dirs()
        before = set(self.vm_names())
        for flags in (["--dispvm"], ["--dispvm=dvm"]):
            r = self.qvm_run(*flags, "-p", "echo $(hostname) $QREXEC_REMOTE_DOMAIN; "
                                           "echo x > /home/user/f; exit 3")
            self.assertEqual(3, r.returncode, r.stderr)
            name, remote = r.stdout.split()
            self.assertEqual("dom0", remote)
            self.assertRegex(name, r"^disp\d+$")
            self.assert_disposable_gone(name)
        self.assertEqual(before, set(self.vm_names()))
        self.settled(lambda: self.assertEqual(vols, self.volume_dirs()))
        # dvm itself never ran nor changed
        self.assertEqual("Halted", self.api_state("dvm"))

    def check_self_poweroff(self, command):
        vols = self.volume_dirs()
        p = popen_tool(self.d, "qvm-run", "--dispvm=dvm", "-u", "root", "-p",
                       "hostname; " + command + "; sleep 60; echo never",
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
        self.addCleanup(p.kill)
        name = p.stdout.readline().strip()
        self.assertRegex(name, r"^disp\d+$")
        t0 = time.monotonic()
        try:
            out, err = p.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.fail("the caller hung after %s powered itself off" % name)
        elapsed = time.monotonic() - t0
        self.assertLess(elapsed, 5)
        self.assertNotEqual(0, p.returncode)
        self.assertNotIn("never", out)
        self.assert_disposable_gone(name)
        self.settled(lambda: self.assertEqual(vols, self.volume_dirs()))
        return p.returncode, err

    def test_poweroff_mid_call(self):
        rc, err = self.check_self_poweroff("poweroff")
        self.assertEqual(128 + signal.SIGTERM, rc, err)  # the service got init's SIGTERM

    def test_kill_init_mid_call(self):
        rc, err = self.check_self_poweroff("kill -TERM 1")
        self.assertEqual(128 + signal.SIGTERM, rc, err)

    def test_killed_from_the_host_mid_call(self):
        # (busybox's poweroff -f is refused in a qube: reboot(2) is not permitted there)
        p = popen_tool(self.d, "qvm-run", "--dispvm=dvm", "-p", "hostname; sleep 60",
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
        self.addCleanup(p.kill)
        name = p.stdout.readline().strip()
        self.assertRegex(name, r"^disp\d+$")
        self.kill(name)
        out, err = p.communicate(timeout=5)
        self.assertEqual(125, p.returncode, err)
        self.assertIn("went away", err)
        self.assert_disposable_gone(name)

    def test_caller_killed_mid_call(self):
        # a service that never looks at its stdio: the disposable made for a caller that
        # died goes with it, not when the service ends (its disposable template's own
        # volumes may appear: a fresh private volume is seeded at its first use)
        vols = sorted(set(self.volume_dirs()) | {self.qube_uuid("dvm")})
        p = popen_tool(self.d, "qvm-run", "--dispvm=dvm", "-p", "hostname; sleep 60",
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL, text=True)
        self.addCleanup(p.kill)
        name = p.stdout.readline().strip()
        self.assertRegex(name, r"^disp\d+$")
        p.kill()
        p.wait()
        p.stdout.close()
        self.assert_disposable_gone(name)
        self.settled(lambda: self.assertEqual(vols, self.volume_dirs()))
        # a named qube's service runs on, as in Qubes
        p = popen_tool(self.d, "qvm-run", "-p", "work", "echo up; sleep 1; touch /tmp/ran-on",
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL, text=True)
        self.assertEqual("up\n", p.stdout.readline())
        p.kill()
        p.wait()
        p.stdout.close()
        self.settled(lambda: self.assertEqual("yes\n", self.out(
            "work", "[ -e /tmp/ran-on ] && echo yes || echo no")), timeout=5)
        self.assertEqual("Running", self.api_state("work"))

    def test_dispvm_exit_codes(self):
        # what test_clients.py does not pin: qvm-run --dispvm's exit status
        r = self.qvm_run("--dispvm", "-p", "kill -9 $$")
        self.assertEqual(137, r.returncode, r.stderr)
        r = self.qvm_run("--dispvm=dvm", "exit 42")
        self.assertEqual(42, r.returncode, r.stderr)
        self.assertIn("command failed with code: 42", r.stderr)
        r = self.qvm_run("--dispvm=dvm", "--service", "-p", "no.Such")
        self.assertEqual(127, r.returncode, r.stderr)
        r = self.qvm_run("--dispvm=nosuch", "-p", "true")
        self.assertNotIn(r.returncode, (0, 127), r.stderr)
        self.assertIn("nosuch", r.stderr)
        r = self.qvm_run("--dispvm=work", "-p", "true")  # not a disposable template
        self.assertNotIn(r.returncode, (0, 127), r.stderr)
        self.assertIn("work", r.stderr)
        self.ok("admin.property.Set", "default_dispvm", "dom0", b"")
        self.addCleanup(self.ok, "admin.property.Set", "default_dispvm", "dom0", b"dvm")
        r = self.qvm_run("--dispvm", "-p", "true")
        self.assertNotIn(r.returncode, (0, 127), r.stderr)
        self.assertIn("default_dispvm", r.stderr)
        self.assertEqual([], self.disposables())

    def test_fifty_concurrent_dispvms(self):
        vols = self.volume_dirs()
        before = set(self.vm_names())
        results = {}

        def one(i):
            r = self.qvm_run("--dispvm", "-p", "echo $(hostname)", timeout=120)
            results[i] = r

        threads = [threading.Thread(target=one, args=(i,)) for i in range(50)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        elapsed = time.monotonic() - t0
        self.assertEqual(50, len(results))
        failed = {i: (r.returncode, r.stderr) for i, r in results.items() if r.returncode}
        self.assertEqual({}, failed)
        names = [r.stdout.strip() for r in results.values()]
        self.assertTrue(all(re.match(r"^disp\d+$", n) for n in names), names)
        self.assertEqual(50, len(set(names)))
        print("\n50 concurrent qvm-run --dispvm: %.2f s" % elapsed)
        self.settled(lambda: self.assertEqual(before, set(self.vm_names())), timeout=10)
        for n in names:
            self.assert_no_trace(n)
        self.settled(lambda: self.assertEqual(vols, self.volume_dirs()), timeout=10)
        self.assert_nothing_runs()


if __name__ == "__main__":
    unittest.main()


# --- who a service runs as ---

USER_POLICY = """\
test.Id  *  work2  work         allow
test.Id  *  work2  dvm          allow user=root
test.Id  *  work2  @dispvm:dvm  allow
qubes.VMShell  *  work2  work   allow
"""
QREXEC_REQ = struct.Struct("=IIII")    # magic, id, flags, body_len (qrexec_proto.h)
QREXEC_RES = struct.Struct("=IIIiI")   # magic, id, kind, status, msg_len
QREXEC_MAGIC, QREXEC_F_FDS = 0x51524531, 1


def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError("short read")
        data += chunk
    return data


class DefaultUser(QrexecCase):
    """Commands without a user, DEFAULT:, services and Filecopy run as the target's
    default_user (Qubes: `user` unless set); a qube calling another cannot choose the
    user: the policy's user= or the target's default_user decide."""

    POLICY = {"30-user.policy": USER_POLICY}

    def set_user(self, vm, user):
        self.ok("admin.vm.property.Set", "default_user", vm, user.encode())
        self.addCleanup(self.d.call, "admin.vm.property.Reset", "default_user", vm)

    def ids(self, out):
        return dict(kv.split("=", 1) for kv in out.split())

    def where_id(self, source, target):
        rc, out, err = self.call_from(source, target, "test.Id")
        self.assertEqual(0, rc, (out, err))
        return self.ids(out)

    def test_host_commands_and_services_run_as_default_user(self):
        self.assertEqual("user\n", self.out("work", "id -un"))
        self.set_user("work", "root")
        self.assertEqual("0\n", self.out("work", "id -u"))
        r = self.cli("qrexec-client", "-d", "work", "DEFAULT:id -un")
        self.assertEqual((0, "root\n"), (r.returncode, r.stdout), r.stderr)
        r = self.cli("qrexec-client", "-d", "work", "DEFAULT:QUBESRPC test.Id dom0")
        self.assertEqual((0, {"uid": "0", "user": "root", "home": "/root"}),
                         (r.returncode, self.ids(r.stdout)), r.stderr)
        r = self.cli("qvm-run", "-p", "--service", "work", "test.Id")
        self.assertEqual("0", self.ids(r.stdout)["uid"], r.stderr)
        # an explicit user still wins
        self.assertEqual("user\n", self.out("work", "id -un", user="user"))
        r = self.cli("qrexec-client", "-d", "work", "user:id -un")
        self.assertEqual((0, "user\n"), (r.returncode, r.stdout), r.stderr)

    def test_filecopy_lands_in_the_default_users_home(self):
        self.set_user("work", "root")
        src = tempfile.mkdtemp(prefix="dispenser-qx-")
        self.addCleanup(shutil.rmtree, src, True)
        with open(os.path.join(src, "note.txt"), "w") as f:
            f.write("for root")
        r = self.cli("qvm-copy-to-vm", "work", os.path.join(src, "note.txt"))
        self.assertEqual(0, r.returncode, r.stderr)
        self.assertEqual("for root", self.out("work", "cat /root/QubesIncoming/dom0/note.txt"))

    def test_disposable_runs_as_its_templates_default_user(self):
        self.set_user("dvm", "root")
        r = self.qvm_run("--dispvm=dvm", "-p", "id -un")
        self.assertEqual((0, "root\n"), (r.returncode, r.stdout), r.stderr)
        r = self.qvm_run("--dispvm", "-p", "id -un")  # the default one: dvm too
        self.assertEqual((0, "root\n"), (r.returncode, r.stdout), r.stderr)

    def test_calls_between_qubes_run_as_the_targets_default_user(self):
        self.assertEqual("user", self.where_id("work2", "work")["user"])
        self.set_user("work", "root")
        self.assertEqual("root", self.where_id("work2", "work")["user"])
        self.set_user("dvm", "root")
        self.assertEqual("root", self.where_id("work2", "@dispvm:dvm")["user"])

    def test_policy_user_wins_over_default_user(self):
        self.assertEqual("root", self.where_id("work2", "dvm")["user"])

    def test_user_and_command_sent_by_a_qube_are_ignored(self):
        """qrexec-client-vm sends neither, but any process in a qube can speak to its
        agent's socket: a user or a command in its request must change nothing."""
        self.out("work2", "true")  # running
        self.start("work")
        with open(os.path.join(unified_cgroup_dir(self.d, "work2"), "cgroup.procs")) as f:
            pid = f.read().split()[0]
        path = "/proc/%s/root/run/dispenser/qrexec.sock" % pid
        for service, command in (("test.Id", ""), ("qubes.VMShell", ""),
                                 ("qubes.VMShell", "echo uid=0 user=root")):
            with self.subTest(service=service, command=command):
                out = self.raw_call_in(path, "work", service, "root", command,
                                       b"echo uid=$(id -u) user=$USER\n")
                self.assertEqual("user", self.ids(out).get("user"), out)
                self.assertNotEqual("0", self.ids(out).get("uid"), out)

    def raw_call_in(self, path, target, service, user, command, stdin):
        body = b"\0".join(x.encode() for x in (target, service, user, command)) + b"\0"
        rin, win = os.pipe()
        rout, wout = os.pipe()
        os.write(win, stdin)
        os.close(win)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(20)
        with s:
            s.connect(path)
            socket.send_fds(s, [QREXEC_REQ.pack(QREXEC_MAGIC, 7, QREXEC_F_FDS, len(body))
                                + body], [rin, wout, 2])
            os.close(rin)
            os.close(wout)
            _, _, kind, status, msg_len = QREXEC_RES.unpack(recv_exact(s, QREXEC_RES.size))
            msg = recv_exact(s, msg_len)
        with os.fdopen(rout) as f:
            out = f.read()
        self.assertEqual((0, 0), (kind, status), msg)
        return out
