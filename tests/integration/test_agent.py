"""The in-qube agent run on the host (`dispenser-agent --listen`, not PID 1) and driven by
dispenser-agent-client: services through passed descriptors and through the copy path,
VMExec argument decoding, /etc/qubes-rpc services, the QREXEC_* environment, concurrency,
large streams, EOF propagation, start-up readiness, --init and shutdown; and calls out of
the qube: qrexec-client-vm (the agent binary under that name) through the agent's qrexec
socket up a fake uplink standing in for dispenserd's router.

Binaries come from AGENT and AGENT_CLIENT (set by meson); run by hand they fall back to
the build dir (DISPENSER_BUILD_DIR, default ../../build)."""

import hashlib
import errno
import os
import shutil
import signal
import socket
import errno
import struct
import subprocess
import tempfile
import threading
import time
import unittest

import harness
from harness import vmexec_encode

AGENT = os.environ.get("AGENT", os.path.join(harness.BUILD_DIR, "src", "agent",
                                             "dispenser-agent"))
CLIENT = os.environ.get("AGENT_CLIENT", os.path.join(harness.BUILD_DIR, "src", "agent",
                                                     "dispenser-agent-client"))
USER = "root" if os.geteuid() == 0 else os.environ.get("USER", "")



def write_script(path, text, mode=0o755):
    with open(path, "w") as f:
        f.write("#!/bin/sh\n" + text)
    os.chmod(path, mode)


class Agent:
    """A private agent on a socket in its own temp dir."""

    def __init__(self, startup=None, extra_args=(), conf=None):
        self.dir = tempfile.mkdtemp(prefix="dispenser-agent-it-")
        self.socket = os.path.join(self.dir, "agent.sock")
        self.rpc_dir = os.path.join(self.dir, "qubes-rpc")
        self.startup_dir = os.path.join(self.dir, "startup.d")
        self.conf_dir = os.path.join(self.dir, "conf")
        for d in (self.rpc_dir, self.startup_dir, self.conf_dir):
            os.mkdir(d)
        for name, text in (startup or {}).items():
            write_script(os.path.join(self.startup_dir, name), text)
        for name, text in (conf or {}).items():
            with open(os.path.join(self.conf_dir, name), "w") as f:
                f.write(text)
        self.log_path = os.path.join(self.dir, "agent.log")
        self.qrexec_socket = os.path.join(self.dir, "run", "qrexec.sock")
        env = dict(os.environ, DISPENSER_QUBE="test-qube",
                   DISPENSER_AGENT_QREXEC_SOCKET=self.qrexec_socket,
                   DISPENSER_AGENT_RPC_DIR=self.rpc_dir,
                   DISPENSER_AGENT_STARTUP_DIR=self.startup_dir,
                   DISPENSER_AGENT_CONF_DIR=self.conf_dir,
                   DISPENSER_AGENT_RC_LOCAL=os.path.join(self.dir, "rc.local"))
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([AGENT, "--listen", self.socket, *extra_args],
                                     stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 5
        while not self._accepts():  # the path appears at bind(), before listen()
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("agent did not listen:\n" + self.log())
            time.sleep(0.005)

    def _accepts(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(self.socket)
            return True
        except OSError:
            return False
        finally:
            s.close()

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def client(self, *args, fds=True, user=USER, **kw):
        cmd = [CLIENT, "--socket", self.socket, "--user", user]
        if not fds:
            cmd.append("--no-fds")
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        kw.setdefault("timeout", 30)
        return subprocess.run(cmd + list(args), **kw)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class AgentTestCase(unittest.TestCase):
    """One agent shared by the tests of the class (they leave nothing behind)."""

    @classmethod
    def setUpClass(cls):
        cls.agent = Agent()

    @classmethod
    def tearDownClass(cls):
        cls.agent.close()

    def both_paths(self):
        for fds in (True, False):
            with self.subTest(fds=fds):
                yield fds


class TestShell(AgentTestCase):
    def test_stdin_script_and_exit_codes(self):
        for fds in self.both_paths():
            r = self.agent.client(fds=fds, input=b"echo out; echo err >&2; exit 3\n")
            self.assertEqual((r.returncode, r.stdout, r.stderr), (3, b"out\n", b"err\n"))
            r = self.agent.client(fds=fds, input=b"echo fine\n")
            self.assertEqual((r.returncode, r.stdout), (0, b"fine\n"))

    def test_command_form(self):
        for fds in self.both_paths():
            r = self.agent.client("--", "echo", "a", "b;", "echo", "$0", fds=fds,
                                  input=b"")
            self.assertEqual((r.returncode, r.stdout), (0, b"a b\n/bin/sh\n"))

    def test_signalled(self):
        for fds in self.both_paths():
            r = self.agent.client("--", "kill -TERM $$", fds=fds, input=b"")
            self.assertEqual(r.returncode, 128 + signal.SIGTERM)
            r = self.agent.client("--", "kill -KILL $$", fds=fds, input=b"")
            self.assertEqual(r.returncode, 128 + signal.SIGKILL)

    def test_own_session(self):
        r = self.agent.client("--", "ps -o sid= -p $$; echo $$", input=b"")
        sid, pid = r.stdout.split()
        self.assertEqual(sid, pid)

    def test_orphans_reaped(self):
        """A service's background child outlives it; the agent (as init, or as subreaper
        here) reaps it: no zombie is left."""
        r = self.agent.client("--", "sleep 0.2 >/dev/null 2>&1 & echo $!", input=b"")
        orphan = int(r.stdout)
        deadline = time.monotonic() + 5
        while os.path.exists("/proc/%d" % orphan) and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertFalse(os.path.exists("/proc/%d" % orphan), "orphan not reaped")

    def test_unknown_user(self):
        r = self.agent.client("--", "true", user="no-such-user", input=b"")
        self.assertEqual(r.returncode, 127)
        self.assertIn(b"refused", r.stderr)

    def test_start_failure(self):
        enc = vmexec_encode(["/nonexistent/program"])
        r = self.agent.client("--service", "qubes.VMExec+" + enc, input=b"")
        self.assertEqual(r.returncode, 127)
        self.assertIn(b"could not start", r.stderr)


class TestVMExec(AgentTestCase):
    ARGS = ["a b", "-x", "--", "--long=1", "caf\u00e9 \u2603", "+plus+", "", "x\ty\nz",
            "$HOME", "'\"\\"]

    def test_encoded_argv(self):
        prog = ["/bin/sh", "-c", 'for a in "$@"; do printf "[%s]" "$a"; done', "sh"]
        enc = vmexec_encode(prog + self.ARGS)
        for fds in self.both_paths():
            r = self.agent.client("--service", "qubes.VMExec+" + enc, fds=fds, input=b"")
            self.assertEqual(r.returncode, 0, r.stderr)
            want = "".join("[%s]" % a for a in self.ARGS).encode()
            self.assertEqual(r.stdout, want)

    def test_path_search_no_shell(self):
        r = self.agent.client("--service", "qubes.VMExec+echo+-24HOME+-2A", input=b"")
        self.assertEqual(r.stdout, b"$HOME *\n")

    def test_malformed(self):
        for bad in ("echo+-zz", "echo+-", ""):
            r = self.agent.client("--service", "qubes.VMExec+" + bad, input=b"")
            self.assertEqual(r.returncode, 126, bad)


class TestRpcServices(AgentTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        rpc = cls.agent.rpc_dir
        write_script(os.path.join(rpc, "test.Env"),
                     'echo "argv=$#:$*"\n'
                     'env | grep -E "^(QREXEC_|USER=|HOME=|PATH=|SHELL=|DISPENSER_)" '
                     '| sort\n')
        write_script(os.path.join(rpc, "test.Env+special"), 'echo "special $1"\n')
        write_script(os.path.join(rpc, "test.NotExec"), "echo no\n", mode=0o644)
        write_script(os.path.join(rpc, "test.Cat"), "exec cat\n")

    def env_of(self, *args):
        r = self.agent.client(*args, input=b"")
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.decode().splitlines()
        return lines[0], dict(line.split("=", 1) for line in lines[1:])

    def test_environment(self):
        argv, env = self.env_of("--service", "test.Env+some.arg", "--source", "work",
                                "--target", "@dispvm:dvm")
        self.assertEqual(argv, "argv=1:some.arg")
        self.assertEqual(env["QREXEC_REMOTE_DOMAIN"], "work")
        self.assertEqual(env["QREXEC_SERVICE_ARGUMENT"], "some.arg")
        self.assertEqual(env["QREXEC_REQUESTED_TARGET"], "@dispvm:dvm")
        self.assertEqual(env["QREXEC_SERVICE_FULL_NAME"], "test.Env+some.arg")
        self.assertEqual(env["QREXEC_AGENT_PID"], str(self.agent.proc.pid))
        self.assertEqual(env["USER"], USER)
        self.assertEqual(env["DISPENSER_QUBE"], "test-qube")
        self.assertIn("/usr/bin", env["PATH"])
        self.assertIn("/run/dispenser/bin", env["PATH"].split(":"))  # qrexec-client-vm
        self.assertIn("HOME", env)
        self.assertIn("SHELL", env)

    def test_no_argument(self):
        argv, env = self.env_of("--service", "test.Env")
        self.assertEqual(argv, "argv=0:")
        self.assertEqual(env["QREXEC_REMOTE_DOMAIN"], "dom0")

    def test_specific_file_wins(self):
        r = self.agent.client("--service", "test.Env+special", input=b"")
        self.assertEqual(r.stdout, b"special special\n")

    def test_missing_and_invalid(self):
        for name, code in (("test.Missing", 127), ("test.NotExec", 127),
                           ("../test.Env", 126), ("test/Env", 126), ("test.Env+a/b", 126),
                           ("test.Env+a b", 126), (".hidden", 126)):
            r = self.agent.client("--service", name, input=b"")
            self.assertEqual(r.returncode, code, name)
            self.assertIn(b"refused", r.stderr)

    def test_wait_for_running_system(self):
        for fds in self.both_paths():
            r = self.agent.client("--service", "qubes.WaitForRunningSystem", fds=fds,
                                  input=b"")
            self.assertEqual(r.returncode, 0)


class TestStreams(AgentTestCase):
    SIZE = 64 << 20

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.data_path = os.path.join(cls.agent.dir, "data")
        with open(cls.data_path, "wb") as f:
            for _ in range(cls.SIZE >> 20):
                f.write(os.urandom(1 << 20))
        with open(cls.data_path, "rb") as f:
            cls.digest = hashlib.sha256(f.read()).hexdigest()

    def test_64mib_through_cat(self):
        for fds in self.both_paths():
            with open(self.data_path, "rb") as src:
                r = self.agent.client("--", "cat", fds=fds, stdin=src, timeout=120)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(len(r.stdout), self.SIZE)
            self.assertEqual(hashlib.sha256(r.stdout).hexdigest(), self.digest)

    def test_stdout_and_stderr_interleaved_volume(self):
        script = b"i=0; while [ $i -lt 2000 ]; do echo out$i; echo err$i >&2; i=$((i+1)); done\n"
        for fds in self.both_paths():
            r = self.agent.client(fds=fds, input=script)
            self.assertEqual(r.stdout.decode().split(), ["out%d" % i for i in range(2000)])
            self.assertEqual(r.stderr.decode().split(), ["err%d" % i for i in range(2000)])

    def test_eof_propagation(self):
        """`cat` ends when the caller closes its stdin, while the call is running."""
        for fds in self.both_paths():
            p = subprocess.Popen([CLIENT, "--socket", self.agent.socket, "--user", USER]
                                 + ([] if fds else ["--no-fds"]) + ["--", "cat; echo done"],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            p.stdin.write(b"first\n")
            p.stdin.flush()
            time.sleep(0.2)
            self.assertIsNone(p.poll(), "cat ended before stdin was closed")
            p.stdin.close()
            self.assertEqual(p.wait(timeout=10), 0)
            self.assertEqual(p.stdout.read(), b"first\ndone\n")
            p.stdout.close()

    def test_service_closing_stdin_early(self):
        """The service stops reading: the caller's remaining input is discarded."""
        for fds in self.both_paths():
            with open(self.data_path, "rb") as src:
                r = self.agent.client("--", "head -c 10 >/dev/null; exec <&-; echo ok",
                                      fds=fds, stdin=src)
            self.assertEqual((r.returncode, r.stdout), (0, b"ok\n"))

    def test_copy_client_gone_hangs_up_service(self):
        marker = os.path.join(self.agent.dir, "hup")
        # PIPE ignored: the shell reports the hung-up `sleep` on its closed stderr first.
        script = ("trap '' PIPE; trap 'echo hup > %s; exit 0' HUP; echo started; "
                  "while :; do sleep 0.05; done" % marker)
        p = subprocess.Popen([CLIENT, "--socket", self.agent.socket, "--user", USER,
                              "--no-fds", "--", script],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.assertEqual(p.stdout.readline(), b"started\n")
        p.kill()
        p.wait()
        deadline = time.monotonic() + 5
        while not os.path.exists(marker) and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertTrue(os.path.exists(marker), "service not hung up")
        p.stdin.close()
        p.stdout.close()

    def test_concurrent_calls(self):
        results = {}

        def call(i):
            r = self.agent.client("--", "sleep 0.5; echo %d; echo e%d >&2; exit %d"
                                  % (i, i, i % 7), fds=i % 2 == 0, input=b"")
            results[i] = r

        start = time.monotonic()
        threads = [threading.Thread(target=call, args=(i,)) for i in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - start
        for i in range(20):
            r = results[i]
            self.assertEqual((r.returncode, r.stdout, r.stderr),
                             (i % 7, b"%d\n" % i, b"e%d\n" % i))
        self.assertLess(elapsed, 5.0, "calls were not served concurrently")


class TestStartup(unittest.TestCase):
    def test_wait_ready_after_slow_startup(self):
        agent = None
        try:
            t0 = time.monotonic()
            agent = Agent(startup={
                "10-slow": "sleep 1; echo slow > \"$0.done\"\n",
                "20-fails": "echo failing >&2; exit 4\n",
                "30-after": "echo after > \"$0.done\"\n",
                ".hidden": "exit 1\n",
            })
            write_script(os.path.join(agent.startup_dir, "25-not-executable"),
                         "touch \"$0.done\"\n", mode=0o644)
            # Served while start-up runs.
            r = agent.client("--", "echo early", input=b"")
            self.assertEqual(r.stdout, b"early\n")
            self.assertLess(time.monotonic() - t0, 0.9)
            waiters = [subprocess.Popen([CLIENT, "--socket", agent.socket, *args])
                       for args in (["--wait-ready"],
                                    ["--service", "qubes.WaitForRunningSystem", "--no-fds"],
                                    ["--user", USER, "--service",
                                     "qubes.WaitForRunningSystem"])]
            for w in waiters:
                self.assertEqual(w.wait(timeout=10), 0)
            self.assertGreaterEqual(time.monotonic() - t0, 1.0)
            done = sorted(f for f in os.listdir(agent.startup_dir) if f.endswith(".done"))
            self.assertEqual(done, ["10-slow.done", "30-after.done"])
            log = agent.log()
            self.assertIn("failing", log)
            self.assertIn("20-fails failed", log)
            self.assertRegex(log, r"dispenser-agent: ready")
        finally:
            if agent:
                agent.close()

    def test_init_mode_ready_command(self):
        """--init: the parent execs the template's init, the child serves; readiness is
        the ready command succeeding."""
        agent = None
        try:
            flag = tempfile.mktemp(prefix="dispenser-agent-flag-")
            init = tempfile.NamedTemporaryFile("w", delete=False, suffix=".sh")
            init.write("#!/bin/sh\nexec sleep 1000\n")
            init.close()
            os.chmod(init.name, 0o755)
            agent = Agent(extra_args=["--init", init.name],
                          conf={"ready-command": "test -e %s\n" % flag})
            w = subprocess.Popen([CLIENT, "--socket", agent.socket, "--wait-ready"])
            time.sleep(0.4)
            self.assertIsNone(w.poll(), "ready before the ready command succeeded")
            open(flag, "w").close()
            self.assertEqual(w.wait(timeout=5), 0)
            r = agent.client("--", "echo $QREXEC_AGENT_PID", input=b"")
            agent_pid = int(r.stdout)
            self.assertNotEqual(agent_pid, agent.proc.pid)
            with open("/proc/%d/cmdline" % agent.proc.pid, "rb") as f:
                self.assertIn(b"sleep", f.read())   # the "init" took over the pid
            r = agent.client("--shutdown")
            self.assertEqual(r.returncode, 0)
            agent.proc.wait(timeout=5)          # init asked to power off (SIGRTMIN+4)
            os.kill(agent_pid, signal.SIGTERM)  # init gone: the agent follows on TERM
            deadline = time.monotonic() + 5
            while os.path.exists("/proc/%d" % agent_pid) and time.monotonic() < deadline:
                try:
                    os.waitpid(agent_pid, os.WNOHANG)
                except ChildProcessError:
                    pass
                time.sleep(0.02)
        finally:
            for p in (flag, init.name):
                if os.path.exists(p):
                    os.unlink(p)
            if agent:
                agent.close()


class TestShutdown(unittest.TestCase):
    def test_shutdown_request_terms_services(self):
        agent = Agent()
        try:
            long_call = subprocess.Popen([CLIENT, "--socket", agent.socket, "--user", USER,
                                          "--", "sleep 100"], stdin=subprocess.DEVNULL)
            copy_call = subprocess.Popen([CLIENT, "--socket", agent.socket, "--user", USER,
                                          "--no-fds", "--", "sleep 100"],
                                         stdin=subprocess.DEVNULL)
            time.sleep(0.3)
            t0 = time.monotonic()
            r = agent.client("--shutdown")
            self.assertEqual(r.returncode, 0)
            self.assertEqual(agent.proc.wait(timeout=8), 0)
            self.assertLess(time.monotonic() - t0, 3.0)
            self.assertEqual(long_call.wait(timeout=5), 128 + signal.SIGTERM)
            self.assertIn(copy_call.wait(timeout=5), (128 + signal.SIGTERM, 125))
            self.assertFalse(os.path.exists(agent.socket))
            r = subprocess.run([CLIENT, "--socket", agent.socket, "--wait-ready"],
                               stderr=subprocess.PIPE)
            self.assertEqual(r.returncode, 125)
        finally:
            agent.close()

    def test_sigterm_kills_stubborn_service_after_grace(self):
        agent = Agent()
        try:
            stubborn = subprocess.Popen(
                [CLIENT, "--socket", agent.socket, "--user", USER, "--",
                 "trap '' TERM; echo up; while :; do sleep 0.1; done"],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
            self.assertEqual(stubborn.stdout.readline(), b"up\n")
            t0 = time.monotonic()
            agent.proc.send_signal(signal.SIGTERM)
            self.assertEqual(agent.proc.wait(timeout=10), 0)
            elapsed = time.monotonic() - t0
            self.assertGreaterEqual(elapsed, 4.5)
            self.assertLess(elapsed, 8.0)
            self.assertEqual(stubborn.wait(timeout=5), 128 + signal.SIGKILL)
            stubborn.stdout.close()
            self.assertIn("killing", agent.log())
        finally:
            agent.close()

    def test_stray_signals_ignored(self):
        agent = Agent()
        try:
            for sig in (signal.SIGHUP, signal.SIGUSR1, signal.SIGALRM, signal.SIGPIPE):
                agent.proc.send_signal(sig)
            time.sleep(0.1)
            self.assertIsNone(agent.proc.poll())
            r = agent.client("--wait-ready")
            self.assertEqual(r.returncode, 0)
        finally:
            agent.close()


class TestProtocolAbuse(AgentTestCase):
    def test_garbage_and_early_close(self):
        for data in (b"", b"xx", b"\x00" * 12, b"1PSD" + b"\x01\x00\x00\x00" + b"\xff" * 4):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(self.agent.socket)
            s.sendall(data)
            s.close()
        r = self.agent.client("--", "echo alive", input=b"")
        self.assertEqual(r.stdout, b"alive\n")


# ---- calls out of the qube: qrexec-client-vm, the qrexec socket and the uplink ----

AGENT_MAGIC = 0x44535031
AGENT_REQ_UPLINK = 4
AGENT_REQ_UPCALL_IO = 6
AGENT_F_COPY = 4
AGENT_REFUSED = 3
QREXEC_MAGIC = 0x51524531
QREXEC_F_FDS = 1
QREXEC_F_COPY = 8
AGENT_REPLY = struct.Struct("=IIi")    # magic, kind, status
FRAME = struct.Struct("=II")           # stream, len
EXITED, SIGNALED, REFUSED, FAILED = range(4)
AGENT_REQ = struct.Struct("=IHHI")     # magic, type, flags, body_len
QREXEC_REQ = struct.Struct("=IIII")    # magic, id, flags, body_len
QREXEC_RES = struct.Struct("=IIIiI")   # magic, id, kind, status, msg_len


def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError("connection closed after %d of %d bytes" % (len(data), n))
        data += chunk
    return data


def read_fd_all(fd):
    out = b""
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return out
        out += chunk


class Call:
    """A call as it arrives on the uplink."""

    def __init__(self, id_, flags, body, fds):
        self.id, self.flags, self.fds = id_, flags, fds
        fields = body.split(b"\0")
        assert len(fields) == 5 and fields[4] == b"", body
        self.target, self.service, self.user, self.command = (f.decode() for f in fields[:4])

    def close_fds(self):
        for fd in self.fds:
            os.close(fd)
        self.fds = []


class FakeUplink:
    """dispenserd's router as the agent sees it: connects with AGENT_REQ_UPLINK, then
    receives qrexec_requests (+ descriptors) and answers with qrexec_results."""

    def __init__(self, agent, flags=0):
        connected = agent.log().count("qrexec uplink connected")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(agent.socket)
        body = b"\0" * 6   # what agent_client_send() sends for an empty body
        self.sock.sendall(AGENT_REQ.pack(AGENT_MAGIC, AGENT_REQ_UPLINK, flags, len(body)) + body)
        deadline = time.monotonic() + 5   # no reply to UPLINK: the log says when it is in
        while agent.log().count("qrexec uplink connected") <= connected:
            if time.monotonic() > deadline:
                raise RuntimeError("uplink not adopted:\n" + agent.log())
            time.sleep(0.005)

    def recv_call(self):
        data, fds, _, _ = socket.recv_fds(self.sock, QREXEC_REQ.size, 4)
        if not data:
            raise EOFError("uplink closed")
        data += recv_exact(self.sock, QREXEC_REQ.size - len(data))
        magic, id_, flags, body_len = QREXEC_REQ.unpack(data)
        assert magic == QREXEC_MAGIC, hex(magic)
        return Call(id_, flags, recv_exact(self.sock, body_len), fds)

    def answer(self, call_id, kind, status=0, msg=b""):
        self.sock.sendall(QREXEC_RES.pack(QREXEC_MAGIC, call_id, kind, status, len(msg)) + msg)

    def close(self):
        self.sock.close()


class QrexecTestCase(unittest.TestCase):
    """A fresh agent per test (the uplink is per agent) and qrexec-client-vm as a symlink
    to the agent binary, as the engine installs it in every qube."""

    def setUp(self):
        self.agent = Agent()
        self.addCleanup(self.agent.close)
        self.bin_dir = os.path.join(self.agent.dir, "bin")
        os.mkdir(self.bin_dir)
        self.cvm_path = os.path.join(self.bin_dir, "qrexec-client-vm")
        os.symlink(os.path.abspath(AGENT), self.cvm_path)
        self.env = dict(os.environ, DISPENSER_AGENT_QREXEC_SOCKET=self.agent.qrexec_socket)
        # the agent binds its qubes' socket after its own: on a busy host, a moment later
        deadline = time.monotonic() + 10
        while not os.path.exists(self.agent.qrexec_socket):
            self.assertLess(time.monotonic(), deadline, "no qrexec socket:\n" + self.agent.log())
            time.sleep(0.005)
        self.procs = []
        self.addCleanup(self._reap)

    def _reap(self):
        # not communicate(): a failed test may still hold copies of the pipes' ends
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()
            for f in (p.stdin, p.stdout, p.stderr):
                if f:
                    f.close()

    def cvm(self, *args, **kw):
        """Starts qrexec-client-vm; returns the Popen."""
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        p = subprocess.Popen([self.cvm_path, *args], env=self.env, **kw)
        self.procs.append(p)
        return p

    def finish(self, p, timeout=10):
        if p.stdin and p.stdin.closed:   # written and closed by the test
            p.stdin = None
        out, err = p.communicate(timeout=timeout)
        return p.returncode, out, err

    def uplink(self):
        u = FakeUplink(self.agent)
        self.addCleanup(u.close)
        return u

    def raw_call(self, header, body=b"", fds=None):
        """Speaks the qrexec socket's protocol directly; returns (result, msg) or None if
        the agent hung up."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(self.agent.qrexec_socket)
        with s:
            if fds:
                socket.send_fds(s, [header + body], fds)
            else:
                s.sendall(header + body)
            try:
                res = recv_exact(s, QREXEC_RES.size)
            except (EOFError, ConnectionResetError):
                return None
            res = QREXEC_RES.unpack(res)
            return res, recv_exact(s, res[4])


class TestQrexecSocket(QrexecTestCase):
    def test_socket_mode_and_multicall_help(self):
        self.assertEqual(os.stat(self.agent.qrexec_socket).st_mode & 0o777, 0o666)
        r = subprocess.run([self.cvm_path, "--help"], capture_output=True)
        self.assertEqual(r.returncode, 0)
        self.assertIn(b"TARGET SERVICE", r.stdout)
        r = subprocess.run([self.cvm_path, "only-target"], capture_output=True)
        self.assertEqual(r.returncode, 2)
        self.assertIn(b"usage", r.stderr)

    def test_no_uplink_fails_at_once(self):
        rc, out, err = self.finish(self.cvm("work", "test.Svc"))
        self.assertEqual(rc, 125)
        self.assertIn(b"qrexec is not connected to dispenserd", err)

    def test_no_socket(self):
        r = subprocess.run([self.cvm_path, "--agent-socket",
                            os.path.join(self.agent.dir, "nope.sock"), "work", "test.Svc"],
                           capture_output=True, env=self.env)
        self.assertEqual(r.returncode, 125)
        self.assertIn(b"cannot connect", r.stderr)

    def test_forwarding_and_descriptors(self):
        up = self.uplink()
        p = self.cvm("work", "test.Svc+some.arg", stdin=subprocess.PIPE)
        p.stdin.write(b"to the service\n")
        p.stdin.close()
        call = up.recv_call()
        self.assertEqual((call.target, call.service, call.user, call.command),
                         ("work", "test.Svc+some.arg", "", ""))
        self.assertEqual(call.flags, QREXEC_F_FDS)
        self.assertEqual(len(call.fds), 3)
        # the descriptors are the client's own stdio: data goes through them directly
        self.assertEqual(read_fd_all(call.fds[0]), b"to the service\n")
        os.write(call.fds[1], b"service out\n")
        os.write(call.fds[2], b"service err\n")
        call.close_fds()
        up.answer(call.id, EXITED, 7)
        rc, out, err = self.finish(p)
        self.assertEqual((rc, out, err), (7, b"service out\n", b"service err\n"))
        # the agent kept no copy: the client's stdout pipe ended with the client
        self.assertNotIn("bad", self.agent.log())

    def test_target_spellings(self):
        up = self.uplink()
        for given, sent in (("$dispvm:dvm", "@dispvm:dvm"), ("", "@default"),
                            ("@dispvm", "@dispvm"), ("dom0", "dom0")):
            p = self.cvm(given, "test.Svc")
            call = up.recv_call()
            self.assertEqual(call.target, sent)
            call.close_fds()
            up.answer(call.id, EXITED, 0)
            self.assertEqual(self.finish(p)[0], 0)

    def test_outcomes_and_exit_codes(self):
        up = self.uplink()
        for kind, status, msg, want_rc, want_err in (
                (EXITED, 0, b"", 0, b""),
                (EXITED, 42, b"", 42, b""),
                (SIGNALED, signal.SIGKILL, b"", 128 + signal.SIGKILL, b""),
                (REFUSED, 0, b"denied by policy", 126, b"Request refused: denied by policy\n"),
                (FAILED, 0, b"no such qube: x", 125, b"qrexec-client-vm: no such qube: x\n")):
            p = self.cvm("work", "test.Svc")
            call = up.recv_call()
            call.close_fds()
            up.answer(call.id, kind, status, msg)
            rc, out, err = self.finish(p)
            self.assertEqual((rc, err), (want_rc, want_err), (kind, status, msg))

    def test_concurrent_calls_keep_their_ids(self):
        up = self.uplink()
        procs = [self.cvm("work", "test.Svc+n%d" % i) for i in range(12)]
        calls = [up.recv_call() for _ in procs]
        self.assertEqual(len({c.id for c in calls}), len(calls), "ids must differ")
        for c in reversed(calls):   # answered out of order
            n = int(c.service.split("+n")[1])
            os.write(c.fds[1], b"call %d\n" % n)
            c.close_fds()
            up.answer(c.id, EXITED, n)
        for i, p in enumerate(procs):
            rc, out, _ = self.finish(p)
            self.assertEqual((rc, out), (i, b"call %d\n" % i))

    def test_unknown_result_id_ignored(self):
        up = self.uplink()
        p = self.cvm("work", "test.Svc")
        call = up.recv_call()
        call.close_fds()
        up.answer(call.id + 1000, EXITED, 9)
        up.answer(call.id, EXITED, 3)
        self.assertEqual(self.finish(p)[0], 3)
        self.assertIn("unknown call", self.agent.log())

    def test_uplink_lost_mid_call(self):
        up = self.uplink()
        p = self.cvm("work", "test.Svc")
        call = up.recv_call()
        call.close_fds()
        up.close()
        rc, _, err = self.finish(p)
        self.assertEqual(rc, 125)
        self.assertIn(b"dispenserd", err)
        rc, _, err = self.finish(self.cvm("work", "test.Svc"))
        self.assertEqual(rc, 125)
        self.assertIn(b"not connected to dispenserd", err)

    def test_uplink_replaced(self):
        old = self.uplink()
        pending = self.cvm("work", "test.Svc")
        old.recv_call().close_fds()
        new = self.uplink()   # the daemon restarted
        rc, _, err = self.finish(pending)
        self.assertEqual(rc, 125, "a call on the old uplink can no longer be answered")
        self.assertIn(b"dispenserd", err)
        self.assertEqual(old.sock.recv(1), b"", "old uplink not closed")
        p = self.cvm("work", "test.Svc")
        call = new.recv_call()
        call.close_fds()
        new.answer(call.id, EXITED, 4)
        self.assertEqual(self.finish(p)[0], 4)

    def test_malformed_result_drops_uplink(self):
        up = self.uplink()
        p = self.cvm("work", "test.Svc")
        call = up.recv_call()
        call.close_fds()
        up.sock.sendall(QREXEC_RES.pack(0xdeadbeef, call.id, EXITED, 0, 0))
        rc, _, err = self.finish(p)
        self.assertEqual(rc, 125)
        self.assertEqual(up.sock.recv(1), b"")
        self.assertIn("malformed result", self.agent.log())
        up2 = self.uplink()
        p = self.cvm("work", "test.Svc")
        call = up2.recv_call()
        call.close_fds()
        up2.sock.sendall(QREXEC_RES.pack(QREXEC_MAGIC, call.id, EXITED, 0, 100000))
        self.assertEqual(self.finish(p)[0], 125, "oversized msg_len accepted")

    def test_broken_local_clients_disturb_nobody(self):
        up = self.uplink()
        good = self.cvm("work", "test.Svc", stdin=subprocess.PIPE)
        good_call = up.recv_call()
        body = b"work\0test.Svc\0\0\0"
        hdr = lambda magic=QREXEC_MAGIC, flags=QREXEC_F_FDS, blen=len(body): \
            QREXEC_REQ.pack(magic, 77, flags, blen)
        # bad magic, oversized body: hung up on without a word
        self.assertIsNone(self.raw_call(hdr(magic=0x12345678), body))
        self.assertIsNone(self.raw_call(hdr(blen=1 << 20), body))
        # early close, garbage
        for junk in (b"", b"QRE", b"\xff" * 40):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(self.agent.qrexec_socket)
            s.sendall(junk)
            s.close()
        # no descriptors, bad body, unknown flags: refused with the reason, own id echoed
        res, msg = self.raw_call(hdr(flags=0), body)
        self.assertEqual((res[1], res[2]), (77, REFUSED))
        self.assertIn(b"stdin, stdout and stderr", msg)
        r, w = os.pipe()
        try:
            res, msg = self.raw_call(hdr(blen=5), b"work\0", fds=[r, w, w])
            self.assertEqual((res[2], msg), (REFUSED, b"malformed call"))
            res, msg = self.raw_call(hdr(flags=3), body, fds=[r, w, w])
            self.assertEqual(res[2], REFUSED)
            # two descriptors only: hung up on (reset, as its body is left unread)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(10)
                s.connect(self.agent.qrexec_socket)
                socket.send_fds(s, [hdr() + body], [r, w])
                try:
                    self.assertEqual(s.recv(1), b"")
                except ConnectionResetError:
                    pass
            # a valid raw call, with its id translated both ways
            res = [None]
            t = threading.Thread(target=lambda: res.__setitem__(
                0, self.raw_call(hdr(), body, fds=[r, w, w])))
            t.start()
            raw = up.recv_call()
            raw.close_fds()
            self.assertNotEqual(raw.id, good_call.id)
            up.answer(raw.id, EXITED, 5, b"fine")
            t.join(10)
            (magic, rid, kind, status, _), msg = res[0]
            self.assertEqual((magic, rid, kind, status, msg), (QREXEC_MAGIC, 77, EXITED, 5, b"fine"))
        finally:
            os.close(r)
            os.close(w)
        # the first call went on undisturbed
        good.stdin.write(b"still here\n")
        good.stdin.close()
        self.assertEqual(read_fd_all(good_call.fds[0]), b"still here\n")
        good_call.close_fds()
        up.answer(good_call.id, EXITED, 0)
        self.assertEqual(self.finish(good)[0], 0)

    def test_escape_filter(self):
        up = self.uplink()
        for opts, want_out, want_err in (
                ([], b"\x1b[31mred\x07\n", b"\x1b]0;t\x07\n"),       # not terminals: raw
                (["-t"], b"_[31mred\x07\n", b"\x1b]0;t\x07\n"),
                (["-t", "-T"], b"_[31mred\x07\n", b"_]0;t\x07\n"),
                (["--filter-escape-chars-stdout", "--no-filter-escape-chars-stdout"],
                 b"\x1b[31mred\x07\n", b"\x1b]0;t\x07\n")):
            p = self.cvm(*opts, "work", "test.Svc")
            call = up.recv_call()
            os.write(call.fds[1], b"\x1b[31mred\x07\n")
            os.write(call.fds[2], b"\x1b]0;t\x07\n")
            call.close_fds()
            up.answer(call.id, EXITED, 0)
            self.assertEqual(self.finish(p), (0, want_out, want_err), opts)

    def test_local_program(self):
        """LOCAL_PROGRAM's stdin/stdout are the service's; its exit status is ours; our
        stderr is its stderr."""
        up = self.uplink()
        script = 'echo to-service; read reply; echo "local got $reply" >&2; exit 5'
        p = self.cvm("work", "test.Svc", "/bin/sh", "-c", script, stdin=subprocess.PIPE)
        call = up.recv_call()
        f = os.fdopen(call.fds[0], "rb", buffering=0)
        self.assertEqual(f.readline(), b"to-service\n")
        os.write(call.fds[1], b"from-service\n")
        os.write(call.fds[2], b"service stderr\n")
        self.assertEqual(f.read(), b"")   # the local program exited: EOF
        f.close()
        os.close(call.fds[1])
        os.close(call.fds[2])
        up.answer(call.id, EXITED, 0)
        rc, out, err = self.finish(p)
        self.assertEqual(rc, 5)
        self.assertEqual(out, b"")
        self.assertIn(b"local got from-service\n", err)
        self.assertIn(b"service stderr\n", err)

    def test_local_program_path_and_signal(self):
        up = self.uplink()
        p = self.cvm("work", "test.Svc", "sh", "-c", "kill -TERM $$")   # PATH lookup
        call = up.recv_call()
        call.close_fds()
        up.answer(call.id, EXITED, 0)
        self.assertEqual(self.finish(p)[0], 128 + signal.SIGTERM)
        p = self.cvm("work", "test.Svc", "/nonexistent/prog")
        call = up.recv_call()
        call.close_fds()
        up.answer(call.id, EXITED, 0)
        rc, _, err = self.finish(p)
        self.assertEqual(rc, 127)
        self.assertIn(b"cannot run", err)

    def test_local_program_stopped_when_refused(self):
        up = self.uplink()
        marker = os.path.join(self.agent.dir, "local-ran-on")
        p = self.cvm("work", "test.Svc", "/bin/sh", "-c",
                     "trap 'exit 0' TERM; sleep 0.5; touch %s" % marker)
        call = up.recv_call()
        call.close_fds()
        up.answer(call.id, REFUSED, 0, b"nope")
        rc, _, err = self.finish(p)
        self.assertEqual(rc, 126)
        self.assertIn(b"Request refused: nope", err)
        time.sleep(0.7)
        self.assertFalse(os.path.exists(marker), "local program not stopped")

    def test_from_a_service(self):
        """A service run by the agent finds qrexec-client-vm through PATH (here: the test's
        bin dir standing in for /run/dispenser/bin) and calls out through its agent."""
        up = self.uplink()
        write_script(os.path.join(self.agent.rpc_dir, "test.CallOut"),
                     'PATH="%s:$PATH" DISPENSER_AGENT_QREXEC_SOCKET="%s" '
                     'qrexec-client-vm other test.Inner; echo "inner=$?"\n'
                     % (self.bin_dir, self.agent.qrexec_socket))
        p = subprocess.Popen([CLIENT, "--socket", self.agent.socket, "--user", USER,
                              "--service", "test.CallOut"], stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.procs.append(p)
        call = up.recv_call()
        self.assertEqual((call.target, call.service), ("other", "test.Inner"))
        os.write(call.fds[1], b"inner says hi\n")
        call.close_fds()
        up.answer(call.id, EXITED, 6)
        rc, out, _ = self.finish(p)
        self.assertEqual((rc, out), (0, b"inner says hi\ninner=6\n"))



# ---- a restored VM clone's refresh (AGENT_REQ_REFRESH) ----

AGENT_REQ_REFRESH = 5
AGENT_REFUSED = 3  # agent_reply_kind
AGENT_REPLY = struct.Struct("=IIi")  # magic, kind, status


class TestRefresh(AgentTestCase):
    """Only malformed refreshes here: this agent runs on the host, whose hostname,
    machine-id and clock a valid one would set (the VM test checks those)."""

    def refresh(self, name, machine_id, seed, when=""):
        body = b"".join(f.encode() + b"\0" for f in (name, machine_id, "", "", when, seed))
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(self.agent.socket)
        with s:
            s.sendall(AGENT_REQ.pack(AGENT_MAGIC, AGENT_REQ_REFRESH, 0, len(body)) + body)
            return AGENT_REPLY.unpack(recv_exact(s, AGENT_REPLY.size))

    def test_malformed_refresh_is_refused_and_changes_nothing(self):
        host = socket.gethostname()  # a refresh that went through would keep it the same
        seed = "ab" * 64
        for name, machine_id, entropy in ((host, "not-hex", seed),
                                          (host, "0123", seed),
                                          ("", "nope", seed),
                                          (host, "z" * 32, "zz" * 64),
                                          (host, "y" * 32, "ab" * 8)):  # too little
            with self.subTest(machine_id=machine_id, seed=entropy[:8]):
                self.assertEqual((AGENT_MAGIC, AGENT_REFUSED, errno.EINVAL),
                                 self.refresh(name, machine_id, entropy))
        self.assertEqual(host, socket.gethostname())
        self.assertIn("refresh refused", self.agent.log())
        r = self.agent.client("--", "echo alive", input=b"")  # still serving
        self.assertEqual(r.stdout, b"alive\n")


if __name__ == "__main__":
    unittest.main()


class TestCopyUplink(QrexecTestCase):
    """An uplink that cannot carry descriptors (a VM's stream): calls come up without
    them, the caller's stdio cross on a data connection the daemon opens per call
    (AGENT_REQ_UPCALL_IO), and the result waits until the output is all out."""

    def io_connect(self, call_id):
        """The daemon's side of the data connection: (socket, the agent's first reply)."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(self.agent.socket)
        self.addCleanup(s.close)
        body = b"\0" + str(call_id).encode() + b"\0" + b"\0" * 4
        s.sendall(AGENT_REQ.pack(AGENT_MAGIC, AGENT_REQ_UPCALL_IO, 0, len(body)) + body)
        return s, AGENT_REPLY.unpack(recv_exact(s, AGENT_REPLY.size))

    def test_stdio_cross_on_the_data_connection_and_the_result_waits_for_them(self):
        up = FakeUplink(self.agent, AGENT_F_COPY)
        self.addCleanup(up.close)
        p = self.cvm("work", "test.Svc", stdin=subprocess.PIPE)
        p.stdin.write(b"to the service\n")
        p.stdin.close()
        call = up.recv_call()
        self.assertEqual((call.flags, call.fds, call.target), (QREXEC_F_COPY, [], "work"))
        io, attached = self.io_connect(call.id)
        self.assertEqual((AGENT_MAGIC, EXITED, 0), attached)
        got = b""   # stream 0: the caller's stdin, then its end
        while not got.endswith(FRAME.pack(0, 0)):
            got += io.recv(65536)
        self.assertEqual(FRAME.pack(0, 15) + b"to the service\n" + FRAME.pack(0, 0), got)
        out = os.urandom(300000)   # more than a pipe holds
        frames = FRAME.pack(2, 4) + b"err\n" + b"".join(
            FRAME.pack(1, len(out[i:i + 65536])) + out[i:i + 65536]
            for i in range(0, len(out), 65536)) + FRAME.pack(1, 0) + FRAME.pack(2, 0)
        # the result overtakes the output: the caller gets it only after the output
        up.answer(call.id, EXITED, 7)
        time.sleep(0.3)
        self.assertIsNone(p.poll())
        sender = threading.Thread(target=io.sendall, args=(
            frames + AGENT_REPLY.pack(AGENT_MAGIC, EXITED, 7),))
        sender.start()
        rc, stdout, stderr = self.finish(p)
        sender.join()
        self.assertEqual((7, len(out), b"err\n"), (rc, len(stdout), stderr))
        self.assertEqual(out, stdout)
        # a second data connection for the same call, or one for no call, is refused
        _, again = self.io_connect(call.id)
        self.assertEqual((AGENT_MAGIC, AGENT_REFUSED, errno.ENOENT), again)
        _, unknown = self.io_connect(12345)
        self.assertEqual((AGENT_MAGIC, AGENT_REFUSED, errno.ENOENT), unknown)

    def test_refused_call_and_broken_data_connection(self):
        up = FakeUplink(self.agent, AGENT_F_COPY)
        self.addCleanup(up.close)
        p = self.cvm("work", "test.Svc")
        call = up.recv_call()
        up.answer(call.id, REFUSED, 0, b"denied")   # no data connection ever came
        self.assertEqual((126, b"", b"Request refused: denied\n"), self.finish(p))
        p = self.cvm("work", "test.Svc")
        call = up.recv_call()
        io, _ = self.io_connect(call.id)
        io.sendall(FRAME.pack(1, 3) + b"par")
        io.close()   # the daemon's side broke: the relay ends, the result still counts
        up.answer(call.id, FAILED, 0, b"the qube went away")
        rc, out, err = self.finish(p)
        self.assertEqual((125, b"par"), (rc, out))
        self.assertIn(b"the qube went away", err)
