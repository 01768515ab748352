"""The host's terminal never reaches a qube (docs/qrexec.md, "Descriptors"): qvm-run and
qrexec-client run on one end of a pseudo-terminal pair, as under a terminal emulator,
and the host-side terminal settings must come out unchanged whatever the qube does to its
stdio; escape sequences arrive filtered as upstream's qrexec-client -t/-T filter them;
`qvm-run --tty` gets a terminal allocated inside the qube (window size, ^C), restores
the host terminal even when killed, and qvm-console-dispvm opens a shell in a fresh
disposable."""

import fcntl
import os
import select
import signal
import socket
import struct
import subprocess
import termios
import time
import unittest

import harness
import test_engine
from test_qrexec import QrexecCase, popen_tool, run_tool

TITLE = r"printf '\033]0;pwned\007'"
PLAIN = ("--no-colour-output", "--no-colour-stderr")  # qvm-run's own colours off


def set_winsize(fd, rows, cols):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class Pty:
    """A pseudo-terminal pair; the tool runs with the slave as its stdio (and, with
    ctty, as its controlling terminal in a session of its own, as in a shell's
    foreground job)."""

    def __init__(self, rows=24, cols=80):
        self.master, self.slave = os.openpty()
        set_winsize(self.master, rows, cols)
        self.before = termios.tcgetattr(self.slave)
        self.out = b""

    def close(self):
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass

    def spawn(self, d, name, *args, ctty=False):
        def make_ctty():
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        return popen_tool(d, name, *args, stdin=self.slave, stdout=self.slave,
                          stderr=self.slave, start_new_session=ctty,
                          preexec_fn=make_ctty if ctty else None)

    def read_some(self, timeout=0.2):
        r, _, _ = select.select([self.master], [], [], timeout)
        if r:
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return False
            self.out += data
            return bool(data)
        return False

    def wait_for(self, needle, timeout=20.0):
        deadline = time.monotonic() + timeout
        while needle not in self.out and time.monotonic() < deadline:
            self.read_some()
        return needle in self.out

    def finish(self, proc, timeout=30.0):
        deadline = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < deadline:
            self.read_some()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
            raise AssertionError("tool did not finish: %r" % self.out)
        while self.read_some(0.05):
            pass
        return proc.returncode

    def settings(self):
        return termios.tcgetattr(self.slave)


@unittest.skipIf(test_engine.engine_skip_reason(), test_engine.engine_skip_reason())
class TtyCase(QrexecCase):

    def pty(self, rows=24, cols=80):
        p = Pty(rows, cols)
        self.addCleanup(p.close)
        return p

    def run_on_pty(self, name, *args, pty=None):
        p = pty or self.pty()
        proc = p.spawn(self.d, name, *args)
        rc = p.finish(proc)
        return rc, p

    # --- the host terminal is never handed over ---

    def test_stty_in_qube_leaves_host_terminal_alone(self):
        rc, p = self.run_on_pty("qvm-run", "-p", "work",
                                "stty -echo -icanon raw 2>/dev/null; echo done")
        self.assertEqual(0, rc, p.out)
        self.assertIn(b"done", p.out)
        self.assertEqual(p.before, p.settings())

    def test_qube_sees_pipes_not_the_terminal(self):
        rc, p = self.run_on_pty("qvm-run", "-p", *PLAIN, "work",
                                "for i in 0 1 2; do readlink /proc/self/fd/$i; done; "
                                "test -t 0 && echo tty-in; test -t 1 && echo tty-out; true")
        self.assertEqual(0, rc, p.out)
        lines = p.out.decode().split()
        self.assertEqual(3, len([l for l in lines if l.startswith("pipe:")]), p.out)
        self.assertNotIn(b"tty-", p.out)
        self.assertNotIn(b"/dev/pts", p.out)

    def test_socket_stdio_is_relayed(self):
        ours, theirs = socket.socketpair()
        self.addCleanup(ours.close)
        proc = popen_tool(self.d, "qvm-run", "-p", "work",
                          "readlink /proc/self/fd/0; readlink /proc/self/fd/1; cat",
                          stdin=theirs.fileno(), stdout=theirs.fileno(),
                          stderr=subprocess.PIPE)
        theirs.close()
        ours.sendall(b"through-the-socket\n")
        ours.shutdown(socket.SHUT_WR)
        out = b""
        ours.settimeout(20)
        while True:
            data = ours.recv(4096)
            if not data:
                break
            out += data
        self.assertEqual(0, proc.wait(timeout=20), proc.stderr.read())
        proc.stderr.close()
        self.assertNotIn(b"socket:", out)
        self.assertEqual(2, out.count(b"pipe:"), out)
        self.assertIn(b"through-the-socket", out)

    def test_router_refuses_a_terminal_from_the_host_socket(self):
        """A client that speaks the host socket itself cannot hand over a terminal
        either (qrexec_proto.h framing)."""
        p = self.pty()
        body = b"work\0qubes.VMShell\0\0stty -echo\0"
        hdr = struct.pack("=IIII", 0x51524531, 1, 1, len(body))
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(20)
            s.connect(self.d.qrexec_socket)
            socket.send_fds(s, [hdr], [p.slave, p.slave, p.slave])
            s.sendall(body)
            data = b""
            while len(data) < 20:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        magic, _, kind, _, msg_len = struct.unpack("=IIIiI", data[:20])
        self.assertEqual(2, kind, data)  # QREXEC_REFUSED
        self.assertIn(b"terminal", data[20:])
        self.assertEqual(p.before, p.settings())

    def test_pipes_still_pass_all_bytes(self):
        data = bytes(range(256)) * 64
        r = run_tool(self.d, "qvm-run", "-p", "work", "cat", input=data, text=False)
        self.assertEqual(0, r.returncode, r.stderr)
        self.assertEqual(data, r.stdout)  # not a terminal: no filtering by default

    # --- escape filtering ---

    def test_title_sequence_is_filtered_on_a_terminal(self):
        rc, p = self.run_on_pty("qvm-run", "-p", *PLAIN, "work", TITLE + "; " + TITLE + " >&2")
        self.assertEqual(0, rc, p.out)
        self.assertNotIn(b"\033", p.out)
        self.assertEqual(2, p.out.count(b"_]0;pwned\a"), p.out)
        self.assertEqual(p.before, p.settings())

    def test_no_filter_escape_chars_passes_them(self):
        rc, p = self.run_on_pty("qvm-run", "-p", "--no-filter-escape-chars",
                                "--no-colour-stderr", "work", TITLE)
        self.assertEqual(0, rc, p.out)
        self.assertIn(b"\033]0;pwned\a", p.out)
        self.assertEqual(p.before, p.settings())

    def test_filter_escape_chars_on_a_pipe(self):
        r = run_tool(self.d, "qvm-run", "-p", "--filter-escape-chars", "--no-colour-output",
                     "work", r"printf 'a\033b\tc\001\n\377'", text=False)
        self.assertEqual(0, r.returncode, r.stderr)
        self.assertEqual(b"a_b\tc_\n_", r.stdout)

    def test_qrexec_client_t_filters_stdout_and_T_stderr(self):
        cmd = r"DEFAULT:printf 'o\033o'; printf 'e\033e' >&2"
        for opt, out, err in (("-t", b"o_o", b"e\033e"), ("-T", b"o\033o", b"e_e")):
            r = run_tool(self.d, "qrexec-client", "-d", "work", opt, cmd, text=False)
            self.assertEqual(0, r.returncode, r.stderr)
            self.assertEqual(out, r.stdout, opt)
            self.assertEqual(err, r.stderr, opt)

    def test_open_in_dvm_output_is_filtered_on_a_terminal(self):
        path = os.path.join(self.d.workdir, "title.txt")
        with open(path, "wb") as f:
            f.write(b"\033]0;pwned\007")
        rc, p = self.run_on_pty("qvm-open-in-dvm", path)
        self.assertEqual(0, rc, p.out)
        self.assertIn(b"handler: title.txt", p.out)
        self.assertIn(b"_]0;PWNED", p.out)
        self.assertNotIn(b"\033", p.out)
        self.assertEqual(p.before, p.settings())

    # --- a terminal in the qube, on purpose ---

    def test_tty_gives_a_terminal_in_the_qube(self):
        p = self.pty(33, 101)
        rc, p = self.run_on_pty("qvm-run", "-p", "--tty", "work",
                                "tty; stty size; test -t 0 && echo in-is-tty; "
                                "stty -echo; echo done", pty=p)
        self.assertEqual(0, rc, p.out)
        self.assertIn(b"/dev/pts/", p.out)
        self.assertIn(b"33 101", p.out)
        self.assertIn(b"in-is-tty", p.out)
        self.assertEqual(p.before, p.settings())

    def test_tty_with_piped_stdin_leaves_the_pipe_blocking(self):
        r, w = os.pipe()
        os.write(w, b"from-the-pipe\n")
        os.close(w)
        self.addCleanup(os.close, r)
        proc = popen_tool(self.d, "qvm-run", "--tty", "work", "read x; echo \"got $x\"",
                          stdin=r, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = proc.communicate(timeout=30)
        self.assertEqual(0, proc.returncode, err)
        self.assertIn(b"got from-the-pipe", out)
        self.assertTrue(os.get_blocking(r), "the caller's pipe became non-blocking")

    def test_tty_window_size_and_interrupt(self):
        p = self.pty(20, 70)
        proc = p.spawn(self.d, "qvm-run", "-p", "-t", "work",
                       "stty size; read x; stty size; sleep 100; echo after", ctty=True)
        self.assertTrue(p.wait_for(b"20 70"), p.out)
        self.assertNotEqual(p.before, p.settings())  # raw while the call runs
        set_winsize(p.master, 40, 120)  # the kernel sends SIGWINCH to qvm-run
        time.sleep(0.5)
        os.write(p.master, b"go\r")
        self.assertTrue(p.wait_for(b"40 120"), p.out)
        os.write(p.master, b"\x03")  # ^C: the qube's terminal interrupts its job
        rc = p.finish(proc)
        self.assertNotIn(b"after", p.out)
        self.assertEqual(128 + signal.SIGINT, rc, p.out)
        self.assertEqual(p.before, p.settings())

    def test_tty_host_terminal_restored_when_killed(self):
        p = self.pty()
        proc = p.spawn(self.d, "qvm-run", "-p", "--tty", "work", "echo started; sleep 100",
                       ctty=True)
        self.assertTrue(p.wait_for(b"started"), p.out)
        self.assertNotEqual(p.before, p.settings())
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 10
        while p.settings() != p.before and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(p.before, p.settings())
        self.d.call("admin.vm.Kill", dest="work")

    def test_console_dispvm_opens_a_shell_in_a_fresh_disposable(self):
        p = self.pty()
        proc = p.spawn(self.d, "qvm-console-dispvm", "dvm", ctty=True)
        os.write(p.master, b"echo \"in-$(hostname)-$((40+2))\"; exit 3\r")
        rc = p.finish(proc, timeout=60)
        self.assertIn(b"in-disp", p.out)
        self.assertIn(b"-42", p.out)
        self.assertEqual(3, rc, p.out)
        self.assertEqual(p.before, p.settings())


if __name__ == "__main__":
    unittest.main()
