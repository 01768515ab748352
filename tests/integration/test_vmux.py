"""The agent reached through one byte stream, as in a VM (src/shared/vmux.h): the real
agent (`dispenser-agent --listen`, as in test_agent.py) with its guest-side mux
(`dispenser-agent --vmux`) on one end, dispenser-vmux listening on RUNDIR/agent.sock on
the other, and between them a stand-in for QEMU's virtio-serial port: two Unix sockets
whose bytes a relay copies, and which, like QEMU before the guest opens its port, reads
nothing from the host end until the guest end is there. The unmodified
dispenser-agent-client drives the agent through RUNDIR/agent.sock (copy path).

Binaries come from AGENT, AGENT_CLIENT and VMUX (set by meson); run by hand they fall
back to the build dir (DISPENSER_BUILD_DIR, default ../../build)."""

import hashlib
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
from test_agent import AGENT, CLIENT, USER, Agent

VMUX = os.environ.get("VMUX", os.path.join(harness.BUILD_DIR, "src", "backend", "vmux",
                                           "dispenser-vmux"))
AGENT_MAGIC = 0x44535031
AGENT_REQ_WAIT_READY = 2


class FakeSerial:
    """QEMU's side of a virtio-serial port: a chardev server socket for the host end
    (serial.sock) and, for the guest end, a socket where the guest's port device would be
    (port.sock). Bytes are relayed once both ends are connected; the stream ends for both
    when either end goes."""

    def __init__(self, rundir):
        self.host_path = os.path.join(rundir, "serial.sock")
        self.guest_path = os.path.join(rundir, "port.sock")
        self.listeners = []
        for path in (self.host_path, self.guest_path):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.bind(path)
            s.listen(1)
            self.listeners.append(s)
        self.conns = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            host, _ = self.listeners[0].accept()
            self.conns.append(host)
            guest, _ = self.listeners[1].accept()  # until then the host's bytes wait
            self.conns.append(guest)
        except OSError:
            return
        pumps = [threading.Thread(target=self._pump, args=(a, b), daemon=True)
                 for a, b in ((host, guest), (guest, host))]
        for p in pumps:
            p.start()

    def _pump(self, src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        self.cut()

    def cut(self):
        """The VM is gone: both ends of the stream end."""
        for s in self.conns + self.listeners:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


class MuxedAgent:
    """An agent behind a guest mux, a fake serial port and dispenser-vmux."""

    def __init__(self, start_guest=True, agent_socket=None, in_agent=False,
                 serial_later=False, host_args=(), **agent_kw):
        """in_agent: the agent forks the guest's end itself (--listen with --vmux).
        serial_later: "QEMU" makes its socket only at start_serial()."""
        self.rundir = tempfile.mkdtemp(prefix="dispenser-vmux-it-")
        self.serial = None if serial_later else FakeSerial(self.rundir)
        serial_path = os.path.join(self.rundir, "serial.sock")
        if in_agent:
            agent_kw["extra_args"] = ["--vmux", os.path.join(self.rundir, "port.sock")]
            start_guest = False
        self.agent = Agent(**agent_kw)
        self.socket = os.path.join(self.rundir, "agent.sock")
        self.agent_socket = agent_socket or self.agent.socket
        self.log_path = os.path.join(self.rundir, "mux.log")
        self._log = open(self.log_path, "ab")
        self.guest = None
        self.host = subprocess.Popen([VMUX, "--connect", serial_path,
                                      "--listen", self.socket, *host_args],
                                     stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 5
        while not os.path.exists(self.socket):
            if time.monotonic() > deadline or self.host.poll() is not None:
                raise RuntimeError("dispenser-vmux did not listen:\n" + self.log())
            time.sleep(0.005)
        if start_guest:
            self.start_guest()

    def start_serial(self):
        self.serial = FakeSerial(self.rundir)

    def start_guest(self):
        self.guest = subprocess.Popen([AGENT, "--vmux", self.serial.guest_path,
                                       "--agent-socket", self.agent_socket],
                                      stdin=subprocess.DEVNULL, stdout=self._log,
                                      stderr=subprocess.STDOUT)

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def command(self, *args, fds=False, user=USER):
        cmd = [CLIENT, "--socket", self.socket, "--user", user]
        if not fds:
            cmd.append("--no-fds")
        return cmd + list(args)

    def client(self, *args, fds=False, user=USER, **kw):
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        kw.setdefault("timeout", 30)
        return subprocess.run(self.command(*args, fds=fds, user=user), **kw)

    def close(self):
        for p in (self.host, self.guest):
            if p and p.poll() is None:
                p.kill()
                p.wait()
        if self.serial:
            self.serial.cut()
        self._log.close()
        self.agent.close()
        shutil.rmtree(self.rundir, ignore_errors=True)


def peak_rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM for %d" % pid)


class MuxTestCase(unittest.TestCase):
    """One muxed agent shared by the tests of the class (they leave nothing behind)."""

    @classmethod
    def setUpClass(cls):
        cls.vm = MuxedAgent()

    @classmethod
    def tearDownClass(cls):
        cls.vm.close()


class TestThroughTheStream(MuxTestCase):
    def test_stdio_and_exit_codes(self):
        r = self.vm.client(input=b"echo out; echo err >&2; exit 3\n")
        self.assertEqual((r.returncode, r.stdout, r.stderr), (3, b"out\n", b"err\n"))
        r = self.vm.client("--", "echo", "a", "b", input=b"")
        self.assertEqual((r.returncode, r.stdout), (0, b"a b\n"))
        r = self.vm.client("--", "kill -TERM $$", input=b"")
        self.assertEqual(r.returncode, 128 + signal.SIGTERM)
        r = self.vm.client("--service", "no.SuchService", input=b"")
        self.assertEqual(r.returncode, 127, r.stderr)

    def test_1mib_each_way_md5(self):
        data = os.urandom(1 << 20)
        r = self.vm.client("--", "tee /dev/stderr", input=data)
        self.assertEqual(r.returncode, 0, r.stderr[-200:])
        want = hashlib.md5(data).hexdigest()
        self.assertEqual(hashlib.md5(r.stdout).hexdigest(), want)
        self.assertEqual(hashlib.md5(r.stderr).hexdigest(), want)

    def test_eight_in_parallel(self):
        inputs = [os.urandom(256 * 1024 + i) for i in range(8)]
        procs = [subprocess.Popen(self.vm.command("--", "cat; exit %d" % (10 + i)),
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE) for i in range(8)]
        results = [None] * 8

        def run(i):
            out, err = procs[i].communicate(inputs[i], timeout=60)
            results[i] = (procs[i].returncode, hashlib.md5(out).hexdigest())

        threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(results, [(10 + i, hashlib.md5(inputs[i]).hexdigest())
                                   for i in range(8)])

    def test_slow_reader_blocks_only_its_channel(self):
        """A caller that does not read holds up its own channel only: its service stalls
        once the window is full, what the muxes hold for it stays within the window (not
        the 32 MiB the service would write), and another call goes through meanwhile."""
        size = 32 << 20
        pidfile = os.path.join(self.vm.rundir, "slow.pid")
        slow = subprocess.Popen(
            self.vm.command("--", "echo $$ > %s; exec head -c %d /dev/zero" % (pidfile, size)),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            self.wait_stalled(pidfile)
            for pid in (self.vm.host.pid, self.vm.guest.pid):
                self.assertLess(peak_rss_kib(pid), 16 * 1024)
            r = self.vm.client("--", "echo quick", input=b"", timeout=20)
            self.assertEqual((r.returncode, r.stdout), (0, b"quick\n"))
            self.assertIsNone(slow.poll(), "the slow caller finished without reading")
            got = 0
            while True:
                chunk = slow.stdout.read(1 << 20)
                if not chunk:
                    break
                got += len(chunk)
            self.assertEqual((slow.wait(timeout=30), got), (0, size))
        finally:
            if slow.poll() is None:
                slow.kill()
            slow.wait()
            slow.stdout.close()
            slow.stderr.close()

    def wait_stalled(self, pidfile):
        """Until the service has written all it can (its write count stands still), or
        has ended (which it may only where nothing holds it back)."""
        deadline = time.monotonic() + 20
        while not os.path.exists(pidfile) or not open(pidfile).read().endswith("\n"):
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.01)
        pid = int(open(pidfile).read())
        last, still = None, 0
        while still < 5 and time.monotonic() < deadline:
            try:
                with open("/proc/%d/io" % pid) as f:
                    wchar = [l for l in f if l.startswith("wchar:")][0]
            except (OSError, IndexError):
                return  # ended
            still = still + 1 if wchar == last else 0
            last = wchar
            time.sleep(0.1)

    def test_half_close_travels(self):
        """A raw connection: the request, then shutdown(SHUT_WR); the reply comes back
        and then EOF (EOF frames in both directions, then CLOSE)."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(self.vm.socket)
        s.sendall(struct.pack("=IHHI", AGENT_MAGIC, AGENT_REQ_WAIT_READY, 0, 0))
        s.shutdown(socket.SHUT_WR)
        data = b""
        while True:
            chunk = s.recv(64)
            if not chunk:
                break
            data += chunk
        s.close()
        self.assertEqual(struct.unpack("=IIi", data), (AGENT_MAGIC, 0, 0))

    def test_descriptors_refused(self):
        """The agent's descriptor path cannot cross a stream: the mux closes what came
        and the agent refuses the request (descriptors announced, none came)."""
        r = self.vm.client(input=b"echo never\n", fds=True, timeout=20)
        self.assertEqual(r.returncode, 126)
        self.assertIn(b"refused", r.stderr)
        self.assertIn(b"use --no-fds", r.stderr)
        self.assertEqual(r.stdout, b"")
        self.assertIn("descriptors cannot cross", self.vm.log())


class TestLifecycle(unittest.TestCase):
    def setUp(self):
        self.vm = None

    def tearDown(self):
        if self.vm:
            self.vm.close()

    def test_wait_ready(self):
        flag = tempfile.mktemp(prefix="dispenser-vmux-flag-")
        self.addCleanup(lambda: os.path.exists(flag) and os.unlink(flag))
        self.vm = MuxedAgent(startup={
            "10-wait": "while [ ! -e %s ]; do sleep 0.02; done\n" % flag})
        waiters = [subprocess.Popen(self.vm.command(*args))
                   for args in (["--wait-ready"],
                                ["--service", "qubes.WaitForRunningSystem"])]
        r = self.vm.client("--", "echo early", input=b"")  # served during start-up
        self.assertEqual(r.stdout, b"early\n")
        for w in waiters:
            self.assertIsNone(w.poll(), "ready before start-up ended")
        open(flag, "w").close()
        for w in waiters:
            self.assertEqual(w.wait(timeout=10), 0)
        # --no-fds holds for WAIT_READY too: nothing for the mux to drop
        self.assertNotIn("descriptors cannot cross", self.vm.log())

    def test_shutdown(self):
        self.vm = MuxedAgent()
        r = self.vm.client("--shutdown")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.vm.agent.proc.wait(timeout=10), 0)
        # The agent is gone: the guest mux refuses the channel, the caller is told.
        r = self.vm.client("--", "echo late", input=b"", timeout=20)
        self.assertEqual(r.returncode, 125)
        self.assertIn("cannot connect", self.vm.log())

    def test_bridge_forked_by_the_agent(self):
        """--listen with --vmux: the agent runs the guest's end as its child; the reply
        to a shutdown request still reaches the caller before that child goes, and the
        stream ends with the agent."""
        self.vm = MuxedAgent(in_agent=True)
        r = self.vm.client("--", "echo inside", input=b"")
        self.assertEqual((r.returncode, r.stdout), (0, b"inside\n"))
        r = self.vm.client("--shutdown")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.vm.agent.proc.wait(timeout=10), 0)
        self.assertEqual(self.vm.host.wait(timeout=10), 0)

    def test_guest_not_ready_yet(self):
        """Calls made before the guest's end is up wait for it, then go through."""
        self.vm = MuxedAgent(start_guest=False)
        early = subprocess.Popen(self.vm.command("--", "echo early"),
                                 stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
        time.sleep(0.3)
        self.assertIsNone(early.poll())
        self.vm.start_guest()
        out, _ = early.communicate(timeout=20)
        self.assertEqual((early.returncode, out), (0, b"early\n"))

    def test_waits_for_qemu_socket(self):
        """QEMU makes its chardev socket a little after it starts: dispenser-vmux
        listens at once and connects when the socket is there; a call made meanwhile
        goes through then."""
        self.vm = MuxedAgent(serial_later=True, start_guest=False)
        early = subprocess.Popen(self.vm.command("--", "echo early"),
                                 stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
        time.sleep(0.3)
        self.assertIsNone(self.vm.host.poll())
        self.vm.start_serial()
        self.vm.start_guest()
        out, _ = early.communicate(timeout=20)
        self.assertEqual((early.returncode, out), (0, b"early\n"))

    def test_gives_up_without_qemu(self):
        self.vm = MuxedAgent(serial_later=True, start_guest=False,
                             host_args=["--connect-timeout", "1"])
        self.assertEqual(self.vm.host.wait(timeout=20), 1)
        self.assertIn("cannot connect to", self.vm.log())
        self.assertFalse(os.path.exists(self.vm.socket))

    def test_agent_not_listening_yet(self):
        """The guest's end opens the port only once the agent listens: a call made
        before waits in the stream instead of being refused."""
        late = os.path.join(tempfile.gettempdir(), "dispenser-vmux-late-%d.sock" % os.getpid())
        self.addCleanup(lambda: os.path.lexists(late) and os.unlink(late))
        self.vm = MuxedAgent(agent_socket=late)
        early = subprocess.Popen(self.vm.command("--", "echo early"),
                                 stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
        time.sleep(0.3)
        self.assertIsNone(early.poll())
        os.symlink(self.vm.agent.socket, late)  # the agent "starts listening" there
        out, _ = early.communicate(timeout=20)
        self.assertEqual((early.returncode, out), (0, b"early\n"))
        self.assertIn("waiting for the agent", self.vm.log())

    def test_stream_end_ends_both(self):
        """The VM is gone (the stream ends): dispenser-vmux exits and removes its socket,
        a call in progress ends, and the guest's end exits too."""
        self.vm = MuxedAgent()
        pending = subprocess.Popen(self.vm.command("--", "sleep 100"),
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        try:
            r = self.vm.client("--", "echo up", input=b"")
            self.assertEqual(r.stdout, b"up\n")
            self.vm.serial.cut()
            self.assertEqual(self.vm.host.wait(timeout=10), 0)
            self.assertFalse(os.path.exists(self.vm.socket))
            self.assertEqual(pending.wait(timeout=10), 125)
            self.assertEqual(self.vm.guest.wait(timeout=10), 0)
        finally:
            if pending.poll() is None:
                pending.kill()
            pending.wait()


if __name__ == "__main__":
    unittest.main()
