"""kill -9 in the middle of a burst of writes: every acknowledged change survives, nothing
half-done appears, the database is intact, the stale socket is reclaimed, and a second
daemon on the same state dir is refused."""

import os
import random
import sqlite3
import subprocess
import threading
import time
import unittest

import harness

THREADS = 6
ROUNDS = 3
BURST_SECONDS = 0.4
LABELS = ["red", "orange", "yellow", "green", "gray", "blue", "purple", "black"]


class Unknown(Exception):
    """The call got no reply: the daemon died before or after committing it."""


def apply(state, op):
    """The model of one thread's qubes after op: {name: {label, memory, feature}}."""
    state = {k: dict(v) for k, v in state.items()}
    kind, name, value = op
    if kind == "create":
        state[name] = {"label": value, "memory": "400", "feature": None}
    elif kind == "remove":
        del state[name]
    elif kind == "label":
        state[name]["label"] = value
    elif kind == "memory":
        state[name]["memory"] = value
    elif kind == "feature":
        state[name]["feature"] = value
    return state


class Writer(threading.Thread):
    """Creates, changes and removes its own qubes until the daemon stops answering.
    Its qubes are named w<id>-<n>, so threads never touch each other's."""

    def __init__(self, daemon, ident, start_state, seq_start):
        super().__init__(daemon=True)
        self.d, self.wid = daemon, ident
        self.state = start_state          # after every acknowledged op
        self.pending = None               # the op in flight when the daemon died
        self.seq = seq_start
        self.rng = random.Random(ident * 1000 + seq_start)
        self.acked = 0
        self.error = None

    def call(self, method, arg, dest, payload=b""):
        data = self.d.call(method, arg, dest, payload, timeout=5)
        if not data:
            raise Unknown()
        r = harness.parse_reply(data)
        if not r.ok:
            raise AssertionError("%s+%s on %s refused: %r" % (method, arg, dest, r))

    def next_op(self):
        names = sorted(self.state)
        roll = self.rng.random()
        if not names or roll < 0.35:
            self.seq += 1
            return ("create", "w%d-%d" % (self.wid, self.seq), self.rng.choice(LABELS))
        name = self.rng.choice(names)
        if roll < 0.5:
            return ("remove", name, None)
        if roll < 0.65:
            return ("label", name, self.rng.choice(LABELS))
        if roll < 0.8:
            return ("memory", name, str(self.rng.randint(100, 9000)))
        return ("feature", name, "v%d" % self.rng.randint(0, 10 ** 6))

    TEMPLATE = "tpl"

    def perform(self, op):
        """One op through self.call (test_chaos's writer does the same ops)."""
        kind, name, value = op
        if kind == "create":
            self.call("admin.vm.Create.AppVM", self.TEMPLATE, "dom0",
                      ("name=%s label=%s" % (name, value)).encode())
        elif kind == "remove":
            self.call("admin.vm.Remove", "", name)
        elif kind in ("label", "memory"):
            self.call("admin.vm.property.Set", kind, name, value.encode())
        else:
            self.call("admin.vm.feature.Set", "f", name, value.encode())

    def run(self):
        while True:
            op = self.next_op()
            try:
                self.perform(op)
            except (Unknown, OSError):
                self.pending = op
                return
            except AssertionError as e:  # a valid op refused: reported by the test
                self.error = str(e)
                return
            self.state = apply(self.state, op)
            self.acked += 1


def actual_state(d, prefix):
    """The same model, read back through the API, for the qubes named prefix*."""
    out = {}
    for name in harness_names(d):
        if not name.startswith(prefix):
            continue
        props = harness.parse_getall(harness.ok_content(d, "admin.vm.property.GetAll", "", name))
        feats = harness.ok_content(d, "admin.vm.feature.List", "", name).split()
        out[name] = {"label": props["label"][2], "memory": props["memory"][2],
                     "feature": harness.ok_content(d, "admin.vm.feature.Get", "f", name).decode()
                     if b"f" in feats else None}
    return out


def harness_names(d):
    return [l.split(b" ")[0].decode()
            for l in harness.ok_content(d, "admin.vm.List").splitlines()]


def integrity_check(db_path):
    con = sqlite3.connect("file:%s?mode=ro" % db_path, uri=True)
    try:
        return con.execute("PRAGMA integrity_check").fetchall()
    finally:
        con.close()


class CrashRecovery(unittest.TestCase):
    def setUp(self):
        self.d = harness.Daemon()
        self.addCleanup(self.d.cleanup)
        self.d.start()
        harness.ok_content(self.d, "admin.vm.Create.TemplateVM", "", "dom0",
                           b"name=tpl label=black")

    def check_no_half_done_qubes(self):
        for name in harness_names(self.d):
            props = harness.parse_getall(
                harness.ok_content(self.d, "admin.vm.property.GetAll", "", name))
            self.assertIn(props["label"][2], LABELS, name)
            if name.startswith("w"):
                self.assertEqual((False, "vm", "tpl"), props["template"], name)
                self.assertEqual("AppVM", props["klass"][2], name)
                self.assertEqual(b"created-by-dom0\n",
                                 harness.ok_content(self.d, "admin.vm.tag.List", "", name))

    def test_kill_during_burst(self):
        states = {i: {} for i in range(THREADS)}
        total_acked = 0
        for rnd in range(ROUNDS):
            writers = [Writer(self.d, i, states[i], rnd * 10000) for i in range(THREADS)]
            for w in writers:
                w.start()
            time.sleep(BURST_SECONDS)
            self.d.kill()
            for w in writers:
                w.join(10)
                self.assertFalse(w.is_alive())
                self.assertIsNone(w.error)
            total_acked += sum(w.acked for w in writers)
            # the killed daemon left its socket file: the restart must reclaim it
            self.assertTrue(os.path.exists(self.d.socket))
            self.assertEqual([("ok",)], integrity_check(self.d.db_path))
            self.d.start()
            self.check_no_half_done_qubes()
            for w in writers:
                got = actual_state(self.d, "w%d-" % w.wid)
                acceptable = [w.state]
                if w.pending:
                    acceptable.append(apply(w.state, w.pending))
                self.assertIn(got, acceptable, "writer %d, pending %r" % (w.wid, w.pending))
                states[w.wid] = got
        self.assertGreater(total_acked, 50, "the burst was too small to mean anything")
        self.d.stop()
        self.assertEqual([("ok",)], integrity_check(self.d.db_path))


class SingleInstance(unittest.TestCase):
    def setUp(self):
        self.d = harness.Daemon()
        self.addCleanup(self.d.cleanup)
        self.d.start()

    def test_second_daemon_on_same_state_dir_is_refused(self):
        other = harness.Daemon(state_dir=self.d.state_dir)
        self.addCleanup(other.cleanup)
        other.spawn()
        self.assertNotEqual(0, other.proc.wait(10))
        self.assertIn("in use", other.log())
        self.assertFalse(os.path.exists(other.socket))
        self.assertTrue(harness.ok_content(self.d, "admin.vm.List").startswith(b"dom0 "))

    def test_second_daemon_on_same_socket_is_refused(self):
        other = harness.Daemon(socket_path=self.d.socket)
        self.addCleanup(other.cleanup)
        other.spawn()
        self.assertNotEqual(0, other.proc.wait(10))
        # the first one still owns and serves its socket
        self.assertTrue(harness.ok_content(self.d, "admin.vm.List").startswith(b"dom0 "))

    def test_stale_socket_file_is_reclaimed(self):
        self.d.kill()
        self.assertTrue(os.path.exists(self.d.socket))
        self.d.start()
        self.assertTrue(harness.ok_content(self.d, "admin.vm.List").startswith(b"dom0 "))

    def test_clean_stop_removes_socket(self):
        self.assertEqual(0, self.d.stop())
        self.assertFalse(os.path.exists(self.d.socket))

    def test_detached_start(self):
        """Without --foreground the parent returns 0 once the socket answers."""
        self.d.stop()
        cmd = [harness.DISPENSERD, "--state-dir", self.d.state_dir, "--runtime-dir",
               self.d.runtime_dir, "--socket", self.d.socket]
        env = dict(os.environ)
        env.pop("NOTIFY_SOCKET", None)
        rc = subprocess.run(cmd, env=env, timeout=20).returncode
        self.assertEqual(0, rc)
        try:
            self.assertTrue(harness.ok_content(self.d, "admin.vm.List").startswith(b"dom0 "))
        finally:
            pid = self.find_daemon_pid()
            if pid:
                os.kill(pid, 15)
                deadline = time.monotonic() + 10
                while os.path.exists("/proc/%d" % pid) and time.monotonic() < deadline:
                    time.sleep(0.02)

    def find_daemon_pid(self):
        """The detached daemon is the process holding our state dir's lock file."""
        lock = os.path.join(self.d.state_dir, "dispenserd.lock")
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                for fd in os.listdir("/proc/%s/fd" % pid):
                    if os.readlink("/proc/%s/fd/%s" % (pid, fd)) == lock:
                        return int(pid)
            except OSError:
                continue
        return None


if __name__ == "__main__":
    unittest.main()
