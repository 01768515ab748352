"""The host's qrexec clients: qrexec-client, qvm-run, qvm-copy-to-vm, qvm-open-in-dvm.

Two halves:
- ProtocolTests drive the tools against a fake router speaking src/shared/qrexec_proto.h
  (header + body, stdio passed with SCM_RIGHTS, result + message) that runs the
  "service" on this host: they pin what the tools send and how they turn results into
  exit codes and messages, and need neither root nor the engine.
- RouterTests run the same tools against a private dispenserd with the container engine
  and its qrexec router (beside its Admin API socket: QUBESD_SOCKET selects both), as
  root; they skip themselves when that socket does not appear (a daemon without the
  router)."""

import os
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
from harness import Daemon, run_tool
import test_engine

MAGIC = 0x51524531
REQ = struct.Struct("=IIII")     # magic, id, flags, body_len
RES = struct.Struct("=IIIiI")    # magic, id, kind, status, msg_len
F_FDS = 1
EXITED, SIGNALED, REFUSED, FAILED = range(4)


def tool_env(admin_sock):
    """QUBESD_SOCKET alone: the tools find the router beside it."""
    env = dict(os.environ, QUBESD_SOCKET=admin_sock)
    env.pop("DISPENSER_QREXEC_SOCKET", None)
    return env


def run(name, *args, env, input=None, timeout=20):
    return subprocess.run([harness.tool_path(name)] + [str(a) for a in args], env=env,
                          input=input, capture_output=True, text=True, timeout=timeout)


# --- the fake router ---

class FakeRouter:
    """Accepts calls on a socket and runs each "service" here with the caller's stdio.
    Targets "denied" and "broken" are refused / fail; the requests are recorded. It sits
    where the tools look for the router of the daemon at workdir/qubesd.sock."""

    def __init__(self, workdir):
        self.admin_path = os.path.join(workdir, "qubesd.sock")
        self.path = os.path.join(workdir, "qubesd.qrexec.sock")
        self.incoming = os.path.join(workdir, "incoming")
        os.makedirs(self.incoming)
        self.requests = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(16)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def close(self):
        self.sock.close()
        if hasattr(self, "admin"):
            self.admin.close()

    def proxy_admin_to(self, daemon_sock):
        """Serves QUBESD_SOCKET too, passing each Admin API call on to a real daemon."""
        self.admin = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.admin.bind(self.admin_path)
        self.admin.listen(16)
        threading.Thread(target=self._proxy, args=(daemon_sock,), daemon=True).start()

    def _proxy(self, daemon_sock):
        while True:
            try:
                conn, _ = self.admin.accept()
            except OSError:
                return
            with conn:
                request = b"".join(iter(lambda: conn.recv(65536), b""))
                if request:  # the tools' probe sends nothing
                    conn.sendall(harness.raw_request(daemon_sock, request))

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _read_request(self, conn):
        data, fds, _, _ = socket.recv_fds(conn, REQ.size, 3)
        while len(data) < REQ.size:
            data += conn.recv(REQ.size - len(data))
        magic, rid, flags, body_len = REQ.unpack(data)
        body = b""
        while len(body) < body_len:
            chunk = conn.recv(body_len - len(body))
            if not chunk:
                break
            body += chunk
        fields = [f.decode() for f in body.split(b"\0")[:4]]
        return dict(magic=magic, id=rid, flags=flags, fds=len(fds), target=fields[0],
                    service=fields[1], user=fields[2], command=fields[3]), fds

    def _handle(self, conn):
        with conn:
            req, fds = self._read_request(conn)
            self.requests.append(req)
            try:
                kind, status, msg = self._run(req, fds)
            finally:
                for fd in fds:
                    os.close(fd)
            msg = msg.encode()
            conn.sendall(RES.pack(MAGIC, req["id"], kind, status, len(msg)) + msg)

    def _argv(self, req):
        service, _, arg = req["service"].partition("+")
        if service == "qubes.VMShell":
            return ["sh", "-c", req["command"]] if req["command"] else ["sh"]
        if service == "test.Echo":
            return ["cat"]
        if service == "qubes.Filecopy":
            return ["tar", "-x", "-f", "-", "-C", self.incoming]
        if service == "qubes.OpenInVM":
            return ["sh", "-c", 'echo "opened $QREXEC_SERVICE_ARGUMENT: $(wc -c) bytes"']
        return None

    def _run(self, req, fds):
        if req["target"] == "denied":
            return REFUSED, 0, "denied by policy"
        if req["target"] == "broken":
            return FAILED, 0, "qube broken could not be started"
        argv = self._argv(req)
        if argv is None:
            return EXITED, 127, ""
        env = dict(os.environ, QREXEC_REMOTE_DOMAIN="dom0",
                   QREXEC_REQUESTED_TARGET=req["target"],
                   QREXEC_SERVICE_ARGUMENT=req["service"].partition("+")[2])
        p = subprocess.Popen(argv, stdin=fds[0], stdout=fds[1], stderr=fds[2], env=env)
        rc = p.wait()
        return (SIGNALED, -rc, "") if rc < 0 else (EXITED, rc, "")


def protocol_skip_reason():
    if not harness.cli_available():
        return "the CLI is not built"
    if not hasattr(socket, "recv_fds"):
        return "Python without socket.recv_fds"
    return None


@unittest.skipIf(protocol_skip_reason(), protocol_skip_reason())
class ProtocolTests(unittest.TestCase):
    """The tools against the fake router: no daemon, so no qube names (only @dispvm)."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="dispenser-qc-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.router = FakeRouter(self.dir)
        self.addCleanup(self.router.close)
        # no daemon at QUBESD_SOCKET: Admin API calls fail loudly, not reach a real one
        self.env = tool_env(self.router.admin_path)

    def tool(self, name, *args, input=None):
        return run(name, *args, env=self.env, input=input)

    def last(self):
        return self.router.requests[-1]

    # --- qrexec-client ---

    def test_qrexec_client_user_command(self):
        r = self.tool("qrexec-client", "-d", "work", "root:echo hi; echo oops >&2; exit 3")
        self.assertEqual((3, "hi\n", "oops\n"), (r.returncode, r.stdout, r.stderr))
        req = self.last()
        self.assertEqual((MAGIC, F_FDS, 3), (req["magic"], req["flags"], req["fds"]))
        self.assertEqual(("work", "qubes.VMShell", "root", "echo hi; echo oops >&2; exit 3"),
                         (req["target"], req["service"], req["user"], req["command"]))

    def test_qrexec_client_qubesrpc_with_prefix_like_upstream_qvm_run(self):
        # what upstream qubesadmin's run_service passes for "qvm-run -p work CMD"
        r = self.tool("qrexec-client", "-d", "work", "-T", "-w", "5", "-p",
                      "echo got it; exit\n", "DEFAULT:QUBESRPC qubes.VMShell+ dom0",
                      input="ignored\n")
        self.assertEqual((0, "got it\n"), (r.returncode, r.stdout), r.stderr)
        req = self.last()
        self.assertEqual(("qubes.VMShell+", "", ""),
                         (req["service"], req["user"], req["command"]))
        # the prefix comes first, then our stdin
        r = self.tool("qrexec-client", "-d", "work", "--prefix-data=pre:",
                      "DEFAULT:QUBESRPC test.Echo+ dom0", input="line")
        self.assertEqual((0, "pre:line"), (r.returncode, r.stdout), r.stderr)

    def test_qrexec_client_service_stdin_stdout(self):
        r = self.tool("qrexec-client", "-d", "@dispvm:dvm", "DEFAULT:QUBESRPC test.Echo+a.b dom0",
                      input="abc" * 10000)
        self.assertEqual((0, "abc" * 10000), (r.returncode, r.stdout), r.stderr)
        self.assertEqual(("@dispvm:dvm", "test.Echo+a.b"),
                         (self.last()["target"], self.last()["service"]))

    def test_qrexec_client_local_program(self):
        r = self.tool("qrexec-client", "-d", "work", "-l", "echo from-local; exec >&-; cat >&2",
                      "DEFAULT:QUBESRPC test.Echo+ dom0")
        self.assertEqual((0, "", "from-local\n"), (r.returncode, r.stdout, r.stderr))

    def test_qrexec_client_results(self):
        cases = [("denied", "DEFAULT:true", 126, "Request refused: denied by policy\n"),
                 ("broken", "DEFAULT:true", 125, "qube broken could not be started"),
                 ("work", "DEFAULT:QUBESRPC no.Such+ dom0", 127, ""),
                 ("work", "DEFAULT:kill -9 $$", 137, "")]
        for target, cmd, rc, err in cases:
            r = self.tool("qrexec-client", "-d", target, cmd)
            self.assertEqual(rc, r.returncode, (target, cmd, r.stderr))
            self.assertIn(err, r.stderr)

    def test_qrexec_client_no_exit_code_and_just_exec(self):
        r = self.tool("qrexec-client", "-E", "-d", "work", "DEFAULT:exit 5")
        self.assertEqual(0, r.returncode, r.stderr)
        mark = os.path.join(self.dir, "mark")
        start = time.monotonic()
        r = self.tool("qrexec-client", "-e", "-d", "work",
                      "DEFAULT:sleep 1; echo lost; touch %s" % mark)
        self.assertEqual((0, ""), (r.returncode, r.stdout), r.stderr)
        self.assertLess(time.monotonic() - start, 0.9)
        deadline = time.monotonic() + 10
        while not os.path.exists(mark) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertTrue(os.path.exists(mark), "the -e command never ran")

    def test_qrexec_client_usage_and_errors(self):
        for args in ([], ["DEFAULT:true"], ["-d", "work"], ["-d", "work", "-e", "-l", "x", "a:b"],
                     ["-d", "work", "no-colon"], ["-d", "w", "DEFAULT:QUBESRPC x+ work"],
                     ["-d", "w", "-w", "x", "DEFAULT:true"], ["-c", "1,work,3", "-d", "w", "a:b"]):
            r = self.tool("qrexec-client", *args)
            self.assertEqual(1, r.returncode, (args, r.stderr))
        self.assertEqual([], self.router.requests)
        r = self.tool("qrexec-client", "--help")
        self.assertEqual(0, r.returncode)
        self.assertIn("-d TARGET", r.stdout)
        self.env["QUBESD_SOCKET"] = os.path.join(self.dir, "nothing.sock")
        r = self.tool("qrexec-client", "-d", "work", "DEFAULT:true")
        self.assertEqual(125, r.returncode)
        self.assertIn("nothing.qrexec.sock", r.stderr)

    # --- qvm-run ---

    def test_qvm_run_dispvm_passio(self):
        r = self.tool("qvm-run", "--dispvm", "-p", "echo $QREXEC_REQUESTED_TARGET; cat; exit 4",
                      input="in\n")
        self.assertEqual((4, "@dispvm\nin\n", ""), (r.returncode, r.stdout, r.stderr))
        self.assertEqual(("@dispvm", "qubes.VMShell", ""),
                         (self.last()["target"], self.last()["service"], self.last()["user"]))

    def test_qvm_run_dispvm_template_args_and_user(self):
        r = self.tool("qvm-run", "--dispvm=dvm", "-p", "-u", "root", "echo", "a", "b c", "-l")
        self.assertEqual((0, "a b c -l\n"), (r.returncode, r.stdout), r.stderr)
        req = self.last()
        self.assertEqual(("@dispvm:dvm", "root", "echo a 'b c' -l"),
                         (req["target"], req["user"], req["command"]))

    def test_qvm_run_without_passio(self):
        r = self.tool("qvm-run", "--dispvm=dvm", "echo out; echo err >&2; exit 2", input="x")
        self.assertEqual((2, ""), (r.returncode, r.stdout))
        self.assertEqual("Running 'echo out; echo err >&2; exit 2' on @dispvm:dvm\n"
                         "@dispvm:dvm: command failed with code: 2\n", r.stderr)
        r = self.tool("qvm-run", "-q", "--dispvm=dvm", "exit 3")
        self.assertEqual((3, ""), (r.returncode, r.stderr))

    def test_qvm_run_service(self):
        r = self.tool("qvm-run", "-p", "--dispvm=dvm", "--service", "test.Echo+x", input="svc")
        self.assertEqual((0, "svc"), (r.returncode, r.stdout), r.stderr)
        self.assertEqual(("test.Echo+x", ""), (self.last()["service"], self.last()["command"]))

    def test_qvm_run_usage_errors(self):
        cases = [["--dispvm", "echo hi"],             # argparse: "echo hi" is the template
                 ["--localcmd", "cat", "--dispvm=d", "true"],
                 ["--dispvm", "--all", "true"],
                 ["--dispvm=d", "--exclude", "x", "true"],
                 ["--service", "--no-shell", "--dispvm=d", "a.B"],
                 ["--no-filter-escape-chars", "--colour-output", "32", "--dispvm=d", "true"]]
        for args in cases:
            r = self.tool("qvm-run", *args)
            self.assertEqual(2, r.returncode, (args, r.stderr))
            self.assertIn("usage: qvm-run", r.stderr)
        self.assertEqual([], self.router.requests)

    # --- qvm-open-in-dvm ---

    def test_qvm_open_in_dvm(self):
        path = os.path.join(self.dir, "my file (1).txt")
        with open(path, "w") as f:
            f.write("hello")
        r = self.tool("qvm-open-in-dvm", path)
        self.assertEqual((0, "opened my_file__1_.txt: 5 bytes\n"), (r.returncode, r.stdout),
                         r.stderr)
        self.assertEqual(("@dispvm", "qubes.OpenInVM+my_file__1_.txt"),
                         (self.last()["target"], self.last()["service"]))
        r = self.tool("qvm-open-in-dvm", os.path.join(self.dir, "missing"))
        self.assertEqual(1, r.returncode)
        self.assertIn("missing", r.stderr)
        r = self.tool("qvm-open-in-dvm")
        self.assertEqual(1, r.returncode)
        self.assertIn("Usage: qvm-open-in-dvm filename", r.stdout)


# --- with the engine ---

def engine_reason():
    return protocol_skip_reason() or test_engine.engine_skip_reason()


@unittest.skipIf(engine_reason(), engine_reason())
class CopyProtocolTests(test_engine.EngineTestCase):
    """qvm-copy-to-vm needs a real qube name (admin.vm.List, autostart); the fake router
    unpacks the stream so that what was sent can be compared."""

    def test_copy_to_vm_sends_a_tar_stream(self):
        self.create("AppVM", "work", template="bb")
        work = tempfile.mkdtemp(prefix="dispenser-qc-")
        self.addCleanup(shutil.rmtree, work, True)
        router = FakeRouter(work)
        self.addCleanup(router.close)
        src = os.path.join(work, "src")
        os.makedirs(os.path.join(src, "dir", "sub"))
        for rel, data in (("-dash.txt", "d"), ("dir/sub/f", "f" * 100000)):
            with open(os.path.join(src, rel), "w") as f:
                f.write(data)
        router.proxy_admin_to(self.d.socket)
        env = tool_env(router.admin_path)
        r = subprocess.run([harness.tool_path("qvm-copy-to-vm"), "work", "./-dash.txt", "dir"],
                           env=env, cwd=src, capture_output=True, text=True, timeout=30)
        self.assertEqual(0, r.returncode, r.stderr)
        self.assertEqual(("work", "qubes.Filecopy"),
                         (router.requests[-1]["target"], router.requests[-1]["service"]))
        with open(os.path.join(router.incoming, "dir", "sub", "f")) as f:
            self.assertEqual("f" * 100000, f.read())
        self.assertTrue(os.path.exists(os.path.join(router.incoming, "-dash.txt")))
        self.assertEqual("Running", self.api_state("work"))  # autostarted
        r = run("qvm-copy-to-vm", "work", os.path.join(src, "missing"), env=env)
        self.assertEqual(1, r.returncode)
        self.assertIn("missing", r.stderr)
        r = run("qvm-copy-to-vm", "nosuchvm", os.path.join(src, "dir"), env=env)
        self.assertEqual(2, r.returncode)
        self.assertIn("no such domain", r.stderr)
        r = run("qvm-copy-to-vm", "work", env=env)
        self.assertEqual(1, r.returncode)
        self.kill("work")


ROUTER_WAIT = 3.0


@unittest.skipIf(engine_reason(), engine_reason())
class RouterTests(test_engine.EngineTestCase):
    """Against dispenserd's own router: qubes `work` and `work2` (running), `dvm` (the
    default disposable template). One daemon per test: a router failure stays in its test."""

    PER_CLASS = False

    @classmethod
    def populate(cls, d):
        super().populate(d)
        for name in ("work", "work2", "dvm"):
            harness.ok_content(d, "admin.vm.Create.AppVM", "bb", "dom0",
                               ("name=%s label=red" % name).encode())
        harness.ok_content(d, "admin.vm.property.Set", "template_for_dispvms", "dvm", b"True")
        harness.ok_content(d, "admin.property.Set", "default_dispvm", "dom0", b"dvm")

    def setUp(self):
        super().setUp()
        self.sock = os.path.join(self.d.workdir, "qubesd.qrexec.sock")
        deadline = time.monotonic() + ROUTER_WAIT
        while not os.path.exists(self.sock) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not os.path.exists(self.sock):
            self.skipTest("no qrexec router: %s did not appear (dispenserd without it)"
                          % self.sock)
        self.env = tool_env(self.d.socket)

    def tool(self, name, *args, input=None, timeout=60):
        return run(name, *args, env=self.env, input=input, timeout=timeout)

    def names(self):
        return set(self.vm_names())

    def assert_names_back_to(self, before, timeout=5.0):
        """Disposables go right after their call has been answered, not before: poll."""
        deadline = time.monotonic() + timeout
        while self.names() != before and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertEqual(before, self.names())

    def test_run_passio_exit_codes_and_streams(self):
        r = self.tool("qvm-run", "-p", "work", "cat; echo err >&2; exit 7", input="in put")
        self.assertEqual((7, "in put", "err\n"), (r.returncode, r.stdout, r.stderr))
        r = self.tool("qvm-run", "-p", "work", "true")
        self.assertEqual((0, ""), (r.returncode, r.stdout), r.stderr)
        r = self.tool("qvm-run", "work", "exit 3")
        self.assertEqual(3, r.returncode)
        self.assertIn("Running 'exit 3' on work", r.stderr)
        r = self.tool("qvm-run", "-p", "nosuchvm", "true")
        self.assertEqual(2, r.returncode)
        self.assertIn("no such domain", r.stderr)

    def test_run_service_and_user(self):
        r = self.tool("qvm-run", "-p", "--service", "work", "qubes.VMShell", input="echo svc\n")
        self.assertEqual((0, "svc\n"), (r.returncode, r.stdout), r.stderr)
        r = self.tool("qvm-run", "-p", "-u", "root", "work", "id -u")
        self.assertEqual((0, "0\n"), (r.returncode, r.stdout), r.stderr)
        r = self.tool("qvm-run", "-p", "work", "echo $QREXEC_REMOTE_DOMAIN")
        self.assertEqual((0, "dom0\n"), (r.returncode, r.stdout), r.stderr)

    def test_run_dispvm_fresh_each_time_and_gone(self):
        before = self.names()
        seen = []
        for _ in range(2):
            r = self.tool("qvm-run", "--dispvm", "-p", "hostname; exit 5")
            self.assertEqual(5, r.returncode, r.stderr)
            seen.append(r.stdout.strip())
        self.assertNotEqual(seen[0], seen[1])
        r = self.tool("qvm-run", "--dispvm=dvm", "-p", "echo", "x y")
        self.assertEqual((0, "x y\n"), (r.returncode, r.stdout), r.stderr)
        self.assert_names_back_to(before)

    def test_run_all_skips_internal(self):
        self.start("work")
        self.start("work2")
        self.ok("admin.vm.feature.Set", "internal", "work2", b"1")
        try:
            r = self.tool("qvm-run", "--all", "echo marked > /tmp/all-mark")
            self.assertEqual(0, r.returncode, r.stderr)
            self.assertIn("on work\n", r.stderr)
            self.assertNotIn("work2", r.stderr)
            r = self.tool("qvm-run", "-p", "work", "cat /tmp/all-mark")
            self.assertEqual("marked\n", r.stdout, r.stderr)
            r = self.tool("qvm-run", "-p", "work2", "cat /tmp/all-mark 2>/dev/null")
            self.assertEqual("", r.stdout)
        finally:
            self.ok("admin.vm.feature.Remove", "internal", "work2")

    def test_qrexec_client_forms(self):
        r = self.tool("qrexec-client", "-d", "work", "root:id -u")
        self.assertEqual((0, "0\n"), (r.returncode, r.stdout), r.stderr)
        r = self.tool("qrexec-client", "-d", "work", "-p", "echo pre; exit\n",
                      "DEFAULT:QUBESRPC qubes.VMShell+ dom0")
        self.assertEqual((0, "pre\n"), (r.returncode, r.stdout), r.stderr)
        r = self.tool("qrexec-client", "-d", "work", "DEFAULT:QUBESRPC no.SuchService+ dom0")
        self.assertNotEqual(0, r.returncode)
        before = self.names()
        r = self.tool("qrexec-client", "-d", "@dispvm:dvm", "DEFAULT:echo disp")
        self.assertEqual((0, "disp\n"), (r.returncode, r.stdout), r.stderr)
        self.assert_names_back_to(before)

    def test_copy_to_vm_lands_files(self):
        src = tempfile.mkdtemp(prefix="dispenser-qc-")
        self.addCleanup(shutil.rmtree, src, True)
        with open(os.path.join(src, "hello.txt"), "w") as f:
            f.write("copied\n")
        r = self.tool("qvm-copy-to-vm", "work", os.path.join(src, "hello.txt"))
        self.assertEqual(0, r.returncode, r.stderr)
        r = self.tool("qvm-run", "-p", "work", "cat ~/QubesIncoming/dom0/hello.txt")
        self.assertEqual((0, "copied\n"), (r.returncode, r.stdout), r.stderr)

    def test_open_in_dvm(self):
        src = tempfile.mkdtemp(prefix="dispenser-qc-")
        self.addCleanup(shutil.rmtree, src, True)
        path = os.path.join(src, "doc.txt")
        with open(path, "w") as f:
            f.write("content\n")
        before = self.names()
        r = self.tool("qvm-open-in-dvm", path)
        self.assertEqual(0, r.returncode, r.stderr)
        self.assert_names_back_to(before)
        with open(path) as f:
            self.assertEqual("content\n", f.read())  # nothing comes back

    # --- one setting selects one daemon ---

    def other_daemon(self):
        """A second private daemon with no qubes at all (no work, no dvm)."""
        other = Daemon().start()
        self.addCleanup(other.cleanup)
        return other

    def doc(self):
        src = tempfile.mkdtemp(prefix="dispenser-qc-")
        self.addCleanup(shutil.rmtree, src, True)
        path = os.path.join(src, "doc.txt")
        with open(path, "w") as f:
            f.write("content\n")
        return path

    def test_qubesd_socket_alone_selects_the_router(self):
        env = self.d.env()
        env.pop("DISPENSER_QREXEC_SOCKET", None)
        r = run("qvm-run", "-p", "work", "echo mine", env=env)
        self.assertEqual((0, "mine\n"), (r.returncode, r.stdout), r.stderr)
        r = run("qrexec-client", "-d", "@dispvm:dvm", "DEFAULT:echo disp", env=env)
        self.assertEqual((0, "disp\n"), (r.returncode, r.stdout), r.stderr)
        # the other daemon has no dvm and no default_dispvm: its router refuses, and no
        # disposable appears here
        other = self.other_daemon()
        env = other.env()
        env.pop("DISPENSER_QREXEC_SOCKET", None)
        before = self.names()
        for tool, args in (("qvm-run", ["--dispvm=dvm", "-p", "true"]),
                           ("qrexec-client", ["-d", "@dispvm:dvm", "DEFAULT:true"]),
                           ("qvm-open-in-dvm", [self.doc()])):
            with self.subTest(tool=tool):
                r = run(tool, *args, env=env)
                self.assertEqual(126, r.returncode, r.stderr)
        self.assertIn("no such disposable template", other.log())
        r = run("qvm-copy-to-vm", "work", self.doc(), env=env)
        self.assertEqual(2, r.returncode, r.stderr)  # not a qube of the other daemon
        self.assertEqual(before, self.names())

    def test_override_naming_another_daemons_router_refused(self):
        other = self.other_daemon()
        wrong = os.path.join(other.workdir, "qubesd.qrexec.sock")
        deadline = time.monotonic() + ROUTER_WAIT
        while not os.path.exists(wrong) and time.monotonic() < deadline:
            time.sleep(0.05)
        env = self.d.env()
        env["DISPENSER_QREXEC_SOCKET"] = wrong
        for tool, args in (("qvm-run", ["-p", "work", "true"]),
                           ("qrexec-client", ["-d", "work", "DEFAULT:true"]),
                           ("qrexec-client", ["--socket-dir=" + other.runtime_dir, "-d", "work",
                                              "DEFAULT:true"]),
                           ("qvm-copy-to-vm", ["work", self.doc()]),
                           ("qvm-open-in-dvm", [self.doc()])):
            with self.subTest(tool=tool, args=args):
                r = run(tool, *args, env=env)
                self.assertEqual(125, r.returncode, r.stderr)
                self.assertIn("belongs to another dispenserd", r.stderr)
        self.assertNotIn("qrexec:", other.log())  # no call reached it
        # naming the selected daemon's own router (or the link in its runtime dir) works
        for path in (os.path.join(self.d.workdir, "qubesd.qrexec.sock"),
                     os.path.join(self.d.runtime_dir, "qrexec.sock")):
            env["DISPENSER_QREXEC_SOCKET"] = path
            r = run("qvm-run", "-p", "work", "echo ok", env=env)
            self.assertEqual((0, "ok\n"), (r.returncode, r.stdout), r.stderr)
