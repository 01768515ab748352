"""Shared machinery for the integration tests: a private dispenserd per test (or per
class) in a temp dir, raw Admin API calls, reply/event parsing, and the CLI tools.

Binaries come from the environment meson sets (DISPENSERD, QVM_BIN_DIR); run by hand,
the tests fall back to ../../build (or DISPENSER_BUILD_DIR)."""

import atexit
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_ROOT = os.path.dirname(os.path.dirname(HERE))
BUILD_DIR = os.environ.get("DISPENSER_BUILD_DIR", os.path.join(SOURCE_ROOT, "build"))
DISPENSERD = os.environ.get("DISPENSERD",
                            os.path.join(BUILD_DIR, "src", "daemon", "dispenserd"))
QVM_BIN_DIR = os.environ.get("QVM_BIN_DIR", os.path.join(BUILD_DIR, "src", "cli"))
# The static in-qube agent and the client tests use to run commands inside a qube.
AGENT = os.environ.get("AGENT", os.path.join(BUILD_DIR, "src", "agent", "dispenser-agent"))
AGENT_CLIENT = os.environ.get("AGENT_CLIENT", os.path.join(BUILD_DIR, "src", "agent",
                                                           "dispenser-agent-client"))

START_TIMEOUT = 10.0
CALL_TIMEOUT = 10.0

UUID_RE = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
DOM0_UUID = b"00000000-0000-0000-0000-000000000000"

# Every daemon still alive at interpreter exit is killed, whatever went wrong.
_live_daemons = set()


@atexit.register
def _kill_leftovers():
    for d in list(_live_daemons):
        d.kill()


class DaemonError(Exception):
    pass


class Daemon:
    """A private dispenserd: own state dir, runtime dir, socket and log file."""

    def __init__(self, workdir=None, state_dir=None, socket_path=None, log_level="debug",
                 agent=None, extra_args=()):
        self.extra_args = list(extra_args)
        self.owns_workdir = workdir is None
        self.workdir = workdir or tempfile.mkdtemp(prefix="dispenser-it-")
        self.state_dir = state_dir or os.path.join(self.workdir, "state")
        self.runtime_dir = os.path.join(self.workdir, "run")
        self.socket = socket_path or os.path.join(self.workdir, "qubesd.sock")
        self.log_path = os.path.join(self.workdir, "daemon.log")
        self.log_level = log_level
        self.agent = agent or AGENT
        self.proc = None
        self._log_file = None

    # --- life cycle ---

    def spawn(self):
        """Starts the process without waiting; returns the Popen."""
        self._log_file = open(self.log_path, "ab")
        cmd = [DISPENSERD, "--state-dir", self.state_dir, "--runtime-dir", self.runtime_dir,
               "--socket", self.socket, "--foreground", "--log-level", self.log_level,
               "--agent", self.agent] + self.extra_args
        env = dict(os.environ)
        env.pop("NOTIFY_SOCKET", None)
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._log_file,
                                     stderr=subprocess.STDOUT, env=env)
        _live_daemons.add(self)
        return self.proc

    def start(self):
        self.spawn()
        self.wait_ready()
        return self

    def wait_ready(self, timeout=START_TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise DaemonError("dispenserd exited with %s before it was ready:\n%s"
                                  % (self.proc.returncode, self.log()))
            try:
                reply = call(self.socket, "admin.vm.List", dest="dom0", timeout=1.0)
                if reply.startswith(b"0\x00"):
                    return
            except OSError:
                pass
            time.sleep(0.01)
        raise DaemonError("dispenserd not ready after %ss:\n%s" % (timeout, self.log()))

    def stop(self, timeout=10.0):
        """SIGTERM and wait; returns the exit status."""
        if not self.proc or self.proc.poll() is not None:
            return self._reap()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise DaemonError("dispenserd ignored SIGTERM for %ss" % timeout)
        return self._reap()

    def kill(self):
        """SIGKILL: no clean-up at all, as in a crash."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        return self._reap()

    def _reap(self):
        _live_daemons.discard(self)
        if self._log_file:
            self._log_file.close()
            self._log_file = None
        return self.proc.returncode if self.proc else None

    def restart(self):
        self.stop()
        return self.start()

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self):
        return self.proc.pid

    def open_fds(self):
        return len(os.listdir("/proc/%d/fd" % self.proc.pid))

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def sanitizer_reports(self):
        """ASan/UBSan/LSan findings in the log (sanitizer builds print them there)."""
        return [l for l in self.log().splitlines()
                if "runtime error:" in l or "Sanitizer" in l]

    def cleanup(self):
        """Stops gracefully when possible, so a sanitizer build reports leaks at exit."""
        try:
            self.stop()
        except DaemonError:
            pass
        self.kill()
        if self.owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    @property
    def db_path(self):
        return os.path.join(self.state_dir, "qubes.db")

    # --- calls ---

    def call(self, method, arg="", dest="dom0", payload=b"", **kw):
        return call(self.socket, method, arg, dest, payload, **kw)

    def raw(self, data, **kw):
        return raw_request(self.socket, data, **kw)

    def env(self):
        env = dict(os.environ)
        env["QUBESD_SOCKET"] = self.socket
        return env


# --- the wire ---

def format_request(method, arg="", dest="dom0", payload=b"", source="dom0"):
    if isinstance(payload, str):
        payload = payload.encode()
    return ("%s+%s %s name %s" % (method, arg, source, dest)).encode() + b"\x00" + payload


def raw_request(sock_path, data, timeout=CALL_TIMEOUT, shutdown=True):
    """Sends data, half-closes, reads to EOF. A reset by the peer counts as EOF."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(sock_path)
        try:
            s.sendall(data)
            if shutdown:
                s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass
        chunks = []
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        s.close()


def call(sock_path, method, arg="", dest="dom0", payload=b"", source="dom0",
         timeout=CALL_TIMEOUT):
    return raw_request(sock_path, format_request(method, arg, dest, payload, source),
                       timeout=timeout)


class Reply:
    def __init__(self, ok, content=b"", exc=None, traceback=b"", message=None):
        self.ok, self.content, self.exc = ok, content, exc
        self.traceback, self.message = traceback, message

    def __repr__(self):
        if self.ok:
            return "Reply(ok, %r)" % self.content
        return "Reply(%s: %r)" % (self.exc, self.message)


class MalformedReply(Exception):
    pass


def parse_reply(data):
    """Strict parse of one reply; raises MalformedReply on anything off-format."""
    if data.startswith(b"0\x00"):
        return Reply(True, data[2:])
    if data.startswith(b"2\x00"):
        parts = data[2:].split(b"\x00")
        # exc, traceback, message, and the empty tail after the required final NUL
        if len(parts) != 4 or parts[3] != b"" or not parts[0]:
            raise MalformedReply("bad error reply: %r" % data)
        return Reply(False, exc=parts[0].decode("ascii"), traceback=parts[1],
                     message=parts[2].decode("utf-8", "replace"))
    raise MalformedReply("not a reply: %r" % data)


def parse_events(buf):
    """Splits a stream buffer into (events, rest). Each event is (subject, name, [(k, v)])."""
    events = []
    while True:
        if not buf.startswith(b"1\x00"):
            if buf and len(buf) >= 2:
                raise MalformedReply("not an event: %r" % buf[:80])
            return events, buf
        fields = []
        pos = 2
        complete = False
        while True:
            nul = buf.find(b"\x00", pos)
            if nul < 0:
                break
            fields.append(buf[pos:nul])
            pos = nul + 1
            # subject, event, then k/v pairs, then an empty key ends it
            if len(fields) >= 3 and len(fields) % 2 == 1 and fields[-1] == b"":
                complete = True
                break
        if not complete:
            return events, buf
        subject, name = fields[0].decode(), fields[1].decode()
        kv = fields[2:-1]
        pairs = [(kv[i].decode(), kv[i + 1].decode()) for i in range(0, len(kv), 2)]
        events.append((subject, name, pairs))
        buf = buf[pos:]


class EventStream:
    """An admin.Events subscriber reading in a background thread."""

    def __init__(self, sock_path, dest="dom0", read=True):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(sock_path)
        self.sock.sendall(format_request("admin.Events", "", dest))
        self.sock.shutdown(socket.SHUT_WR)
        self.raw = bytearray()
        self.events = []
        self.closed = False
        self.cond = threading.Condition()
        self.thread = None
        if read:
            self.thread = threading.Thread(target=self._reader, daemon=True)
            self.thread.start()

    def _reader(self):
        rest = b""
        while True:
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                chunk = b""
            with self.cond:
                if not chunk:
                    self.closed = True
                    self.cond.notify_all()
                    return
                self.raw += chunk
                evs, rest = parse_events(rest + chunk)
                self.events.extend(evs)
                self.cond.notify_all()

    def wait_for(self, predicate, timeout=5.0):
        """Waits until predicate(events) is true; returns it (or the last falsy value)."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                r = predicate(self.events)
                if r or self.closed:
                    return r
                left = deadline - time.monotonic()
                if left <= 0:
                    return r
                self.cond.wait(left)

    def wait_event(self, name, timeout=5.0):
        def find(evs):
            return [e for e in evs if e[1] == name]
        found = self.wait_for(find, timeout)
        if not found:
            raise AssertionError("no %s event within %ss; got %r" % (name, timeout,
                                                                     self.names()))
        return found[-1]

    def wait_closed(self, timeout=5.0):
        deadline = time.monotonic() + timeout
        with self.cond:
            while not self.closed and time.monotonic() < deadline:
                self.cond.wait(deadline - time.monotonic())
            return self.closed

    def names(self):
        with self.cond:
            return [e[1] for e in self.events]

    def snapshot(self):
        with self.cond:
            return list(self.events)

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        if self.thread:
            self.thread.join(2)


# --- the command line tools ---

_sanitized = None


def sanitized_build():
    """Whether dispenserd was built with AddressSanitizer (its allocator keeps freed
    memory in a quarantine: RSS says nothing about what the daemon gave back)."""
    global _sanitized
    if _sanitized is None:
        with open(DISPENSERD, "rb") as f:
            _sanitized = b"__asan_init" in f.read()
    return _sanitized


def tool_path(name):
    return os.path.join(QVM_BIN_DIR, name)


def cli_available():
    return os.access(tool_path("qvm"), os.X_OK) and os.path.exists(tool_path("qvm-ls"))


def run_tool(daemon, name, *args, input=None, timeout=20):
    """Runs a build-tree CLI tool against the daemon; returns CompletedProcess (text)."""
    return subprocess.run([tool_path(name)] + [str(a) for a in args], env=daemon.env(),
                          input=input, capture_output=True, text=True, timeout=timeout)


# --- test case base ---

class DaemonTestCase(unittest.TestCase):
    """One fresh daemon per test (self.d). Subclasses set PER_CLASS = True to share one
    daemon across the class when their tests leave no trace."""

    PER_CLASS = False

    @classmethod
    def setUpClass(cls):
        cls.shared = None
        if cls.PER_CLASS:
            cls.shared = Daemon(extra_args=cls.daemon_args())
            try:
                cls.shared.start()
                cls.populate(cls.shared)
            except BaseException:
                cls.shared.cleanup()
                raise

    @classmethod
    def populate(cls, d):
        """Hook: state every test of the class starts from."""

    @classmethod
    def daemon_args(cls):
        """Hook: extra dispenserd arguments (e.g. an engine's options)."""
        return []

    def setUp(self):
        if self.shared:
            self.d = self.shared
        else:
            self.d = Daemon(extra_args=self.daemon_args())
            self.addCleanup(self._check_sanitizers)
            self.addCleanup(self.d.cleanup)
            self.d.start()
            self.populate(self.d)
        self.addCleanup(self._dump_log_on_failure)

    def _check_sanitizers(self):
        self.assertEqual([], self.d.sanitizer_reports())

    @classmethod
    def tearDownClass(cls):
        if cls.shared:
            cls.shared.cleanup()
            reports = cls.shared.sanitizer_reports()
            if reports:
                raise AssertionError("sanitizer reports:\n" + "\n".join(reports))

    def _dump_log_on_failure(self):
        outcome = getattr(self, "_outcome", None)
        result = getattr(outcome, "result", None)
        errors = getattr(result, "errors", []) + getattr(result, "failures", [])
        if any(t is self for t, _ in errors):
            print("\n--- dispenserd log (%s) ---\n%s" % (self.id(), self.d.log()[-4000:]))

    # --- helpers ---

    def call(self, method, arg="", dest="dom0", payload=b""):
        return self.d.call(method, arg, dest, payload)

    def reply(self, method, arg="", dest="dom0", payload=b""):
        data = self.call(method, arg, dest, payload)
        try:
            return parse_reply(data)
        except MalformedReply as e:
            self.fail("%s+%s on %s: %s" % (method, arg, dest, e))

    def ok(self, method, arg="", dest="dom0", payload=b""):
        r = self.reply(method, arg, dest, payload)
        if not r.ok:
            self.fail("%s+%s on %s failed: %s: %s" % (method, arg, dest, r.exc, r.message))
        return r.content

    def err(self, method, arg="", dest="dom0", payload=b"", exc=None):
        r = self.reply(method, arg, dest, payload)
        if r.ok:
            self.fail("%s+%s on %s with %r succeeded (%r), expected %s"
                      % (method, arg, dest, payload, r.content, exc or "an error"))
        self.assertTrue(r.message, "error reply without a message: %r" % r)
        if exc is not None:
            allowed = (exc,) if isinstance(exc, str) else tuple(exc)
            self.assertIn(r.exc, allowed, "%s+%s on %s: %r" % (method, arg, dest, r))
        return r

    def get_prop(self, vm, prop):
        """(is_default, type, value) of admin.vm.property.Get."""
        return parse_get(self.ok("admin.vm.property.Get", prop, vm))

    def get_global(self, prop):
        return parse_get(self.ok("admin.property.Get", prop, "dom0"))

    def create(self, klass, name, label="red", template=""):
        return self.ok("admin.vm.Create." + klass, template, "dom0",
                       ("name=%s label=%s" % (name, label)).encode())

    def vm_names(self):
        return [line.split(b" ")[0].decode()
                for line in self.ok("admin.vm.List").splitlines()]

    def snapshot(self):
        return snapshot(self.d)


GET_RE = re.compile(rb"\Adefault=(True|False) type=(str|int|bool|vm|label) (.*)\Z", re.S)
GETALL_LINE_RE = re.compile(rb"\A([a-z0-9_]+) default=(True|False) type=(str|int|bool|vm|label) (.*)\Z")



def vmexec_encode(argv):
    """Qubes' qubes.VMExec encoding (the agent decodes it)."""
    out = []
    for arg in argv:
        enc = ""
        for b in arg.encode():
            c = chr(b)
            if c.isascii() and (c.isalnum() or c in "._"):
                enc += c
            elif c == "-":
                enc += "--"
            else:
                enc += "-%02X" % b
        out.append(enc)
    return "+".join(out)


def parse_get(content):
    m = GET_RE.match(content)
    if not m:
        raise AssertionError("bad property.Get reply: %r" % content)
    return m.group(1) == b"True", m.group(2).decode(), m.group(3).decode()


def parse_getall(content):
    """{name: (is_default, type, value)}; asserts every line is well-formed."""
    out = {}
    assert content.endswith(b"\n") or not content, content
    for line in content.split(b"\n")[:-1]:
        m = GETALL_LINE_RE.match(line)
        if not m:
            raise AssertionError("bad GetAll line: %r" % line)
        out[m.group(1).decode()] = (m.group(2) == b"True", m.group(3).decode(),
                                    m.group(4).decode())
    return out


def ok_content(d, method, arg="", dest="dom0", payload=b""):
    r = parse_reply(d.call(method, arg, dest, payload))
    if not r.ok:
        raise AssertionError("%s+%s on %s: %r" % (method, arg, dest, r))
    return r.content


def snapshot(d):
    """Everything the Admin API shows about the model, for before/after comparisons."""
    state = {"list": ok_content(d, "admin.vm.List"),
             "globals": ok_content(d, "admin.property.GetAll")}
    for line in state["list"].splitlines():
        name = line.split(b" ")[0].decode()
        feats = ok_content(d, "admin.vm.feature.List", dest=name)
        state[name] = {
            "props": ok_content(d, "admin.vm.property.GetAll", dest=name),
            "features": {f: ok_content(d, "admin.vm.feature.Get", f.decode(), name)
                         for f in feats.splitlines()},
            "tags": ok_content(d, "admin.vm.tag.List", dest=name),
        }
    return state
