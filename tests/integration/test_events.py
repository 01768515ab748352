"""admin.Events: the stream's framing and content, per-qube filtering, and that slow,
dead and many subscribers never hurt the daemon or each other."""

import socket
import threading
import time
import unittest

import harness
from harness import DaemonTestCase, EventStream


def kv(event):
    return dict(event[2])


class EventCase(DaemonTestCase):
    @classmethod
    def populate(cls, d):
        harness.ok_content(d, "admin.vm.Create.TemplateVM", "", "dom0", b"name=tpl label=black")
        harness.ok_content(d, "admin.vm.Create.AppVM", "tpl", "dom0", b"name=work label=red")

    def subscribe(self, dest="dom0", read=True):
        ev = EventStream(self.d.socket, dest, read=read)
        self.addCleanup(ev.close)
        if read:
            ev.wait_event("connection-established")
        return ev

    def events_after(self, ev, marker_vm="work"):
        """Ends a sequence with a marker write and returns everything before it."""
        self.ok("admin.vm.feature.Set", "marker", marker_vm, b"1")
        ev.wait_event("domain-feature-set:marker")
        evs = ev.snapshot()
        end = [i for i, e in enumerate(evs) if e[1] == "domain-feature-pre-set:marker"][-1]
        return evs[1:end]


class Stream(EventCase):
    def test_connection_established_first(self):
        ev = self.subscribe()
        self.assertEqual(b"1\x00\x00connection-established\x00\x00", bytes(ev.raw))
        self.assertEqual([("", "connection-established", [])], ev.snapshot())

    def test_domain_add_and_delete(self):
        ev = self.subscribe()
        self.create("AppVM", "new", "blue", "tpl")
        added = ev.wait_event("domain-add")
        self.assertEqual(("", "domain-add", [("vm", "new")]), added)
        self.ok("admin.vm.Remove", "", "new")
        deleted = ev.wait_event("domain-delete")
        self.assertEqual(("", "domain-delete", [("vm", "new")]), deleted)
        names = ev.names()
        self.assertLess(names.index("domain-add"), names.index("domain-delete"))

    def test_refused_calls_emit_nothing(self):
        ev = self.subscribe()
        self.err("admin.vm.Create.AppVM", "tpl", "dom0", b"name=work label=red")
        self.err("admin.vm.Remove", "", "tpl")
        self.err("admin.vm.property.Set", "memory", "work", b"x")
        self.err("admin.vm.tag.Remove", "nosuch", "work")
        self.assertEqual([], self.events_after(ev))

    def test_property_set(self):
        ev = self.subscribe()
        self.ok("admin.vm.property.Set", "memory", "work", b"800")
        self.assertEqual([("work", "property-pre-set:memory",
                           [("name", "memory"), ("newvalue", "800"), ("oldvalue", "400")]),
                          ("work", "property-set:memory",
                           [("name", "memory"), ("newvalue", "800"), ("oldvalue", "400")])],
                         self.events_after(ev))

    def test_vm_property_none_is_sent_as_None(self):
        self.ok("admin.vm.property.Set", "template_for_dispvms", "work", b"True")
        ev = self.subscribe()
        self.ok("admin.property.Set", "default_dispvm", "dom0", b"work")
        self.ok("admin.property.Reset", "default_dispvm", "dom0")
        evs = self.events_after(ev)
        self.assertIn(("", "property-set:default_dispvm",
                       [("name", "default_dispvm"), ("newvalue", "work"),
                        ("oldvalue", "None")]), evs)
        self.assertIn(("", "property-reset:default_dispvm",
                       [("name", "default_dispvm"), ("oldvalue", "work")]), evs)

    def test_property_reset(self):
        self.ok("admin.vm.property.Set", "memory", "work", b"800")
        ev = self.subscribe()
        self.ok("admin.vm.property.Reset", "memory", "work")
        evs = self.events_after(ev)
        resets = [e for e in evs if e[1] == "property-reset:memory"]
        self.assertEqual(1, len(resets), evs)
        self.assertEqual("work", resets[0][0])
        self.assertEqual("memory", kv(resets[0])["name"])
        self.assertEqual("800", kv(resets[0]).get("oldvalue"))
        self.assertNotIn("newvalue", kv(resets[0]))

    def test_features(self):
        ev = self.subscribe()
        self.ok("admin.vm.feature.Set", "foo", "work", b"bar")
        self.ok("admin.vm.feature.Set", "foo", "work", b"baz")
        self.ok("admin.vm.feature.Remove", "foo", "work")
        evs = [e for e in self.events_after(ev) if "-pre-" not in e[1]]
        self.assertEqual([
            ("work", "domain-feature-set:foo", [("feature", "foo"), ("value", "bar")]),
            ("work", "domain-feature-set:foo", [("feature", "foo"), ("value", "baz"),
                                                ("oldvalue", "bar")]),
            ("work", "domain-feature-delete:foo", [("feature", "foo")]),
        ], evs)

    def test_tags(self):
        ev = self.subscribe()
        self.ok("admin.vm.tag.Set", "t1", "work")
        self.ok("admin.vm.tag.Set", "t1", "work")  # already there: no event
        self.ok("admin.vm.tag.Remove", "t1", "work")
        self.assertEqual([("work", "domain-tag-add:t1", [("tag", "t1")]),
                          ("work", "domain-tag-delete:t1", [("tag", "t1")])],
                         self.events_after(ev))

    def test_global_property_events_have_empty_subject(self):
        ev = self.subscribe()
        self.ok("admin.property.Set", "default_qrexec_timeout", "dom0", b"90")
        evs = [e for e in self.events_after(ev) if e[1] == "property-set:default_qrexec_timeout"]
        self.assertEqual([("", "property-set:default_qrexec_timeout",
                           [("name", "default_qrexec_timeout"), ("newvalue", "90"),
                            ("oldvalue", "60")])], evs)

    def test_per_qube_subscription(self):
        mine = self.subscribe("work")
        everything = self.subscribe("dom0")
        self.ok("admin.vm.feature.Set", "x", "tpl", b"1")
        self.ok("admin.vm.property.Set", "memory", "tpl", b"500")
        self.create("AppVM", "other", "red", "tpl")
        self.ok("admin.property.Set", "default_qrexec_timeout", "dom0", b"90")
        self.ok("admin.vm.property.Set", "memory", "work", b"600")
        evs = self.events_after(mine)
        self.assertTrue(evs)
        self.assertEqual({"work"}, {e[0] for e in evs}, evs)
        self.assertEqual(["property-pre-set:memory", "property-set:memory"],
                         [e[1] for e in evs])
        everything.wait_event("domain-feature-set:marker")
        subjects = {e[0] for e in everything.snapshot()}
        self.assertEqual({"", "tpl", "work"}, subjects)

    def test_subscription_to_missing_qube(self):
        r = harness.parse_reply(self.d.call("admin.Events", "", "nosuch"))
        self.assertEqual("QubesVMNotFoundError", r.exc)

    def test_stream_ends_when_daemon_stops(self):
        ev = self.subscribe()
        self.d.stop()
        self.assertTrue(ev.wait_closed(5))


class Robustness(EventCase):
    def small_buffer_subscriber(self):
        """A raw admin.Events connection with a 4 KiB receive buffer that reads only
        when the test does: a burst leaves it behind at once."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(sock.close)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(self.d.socket)
        sock.sendall(harness.format_request("admin.Events", "", "dom0"))
        sock.shutdown(socket.SHUT_WR)
        return sock

    def test_slow_subscriber_is_dropped(self):
        slow = self.small_buffer_subscriber()
        healthy = self.subscribe()
        value = b"v" * 60000
        worst = 0.0
        def big_events(evs):
            return len([e for e in evs if e[1].endswith(":big")])
        # ~120 KB of events per call; 40 calls is far beyond the 1 MiB backlog
        for i in range(40):
            t = time.monotonic()
            self.ok("admin.vm.feature.Set", "big", "work", value + str(i).encode())
            worst = max(worst, time.monotonic() - t)
        self.assertLess(worst, 0.5, "a call took %.3fs while a subscriber lagged" % worst)
        # dropped once it has taken nothing for EVENTS_STALL_USEC (5 s)
        deadline = time.monotonic() + 15
        while "dropping a subscriber" not in self.d.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertIn("it stopped reading", self.d.log())
        # the healthy subscriber got everything
        self.assertEqual(80, healthy.wait_for(lambda evs: big_events(evs) == 80 and 80, 10))
        # the slow one: whatever was queued in the socket, then EOF, and well under 2 MiB
        slow.settimeout(5)
        total = 0
        while True:
            chunk = slow.recv(65536)
            if not chunk:
                break
            total += len(chunk)
        self.assertLess(total, 2 * 1024 * 1024)
        self.assertGreater(total, 0)

    def test_slow_but_steady_reader_is_kept(self):
        """A reader that keeps reading, however slowly (a busy machine), is never dropped,
        even when a burst leaves it megabytes behind."""
        slow = self.small_buffer_subscriber()
        value = b"w" * 60000
        for i in range(20):  # ~4.8 MB queued for it at once (each value is sent twice)
            self.ok("admin.vm.feature.Set", "steady", "work", value + str(i).encode())
        received = b""
        slow.settimeout(10)
        deadline = time.monotonic() + 60
        while received.count(b"domain-feature-set:steady") < 20 and time.monotonic() < deadline:
            chunk = slow.recv(65536)  # about 640 KB/s: over 1 MiB behind for more than 5 s
            if not chunk:
                break
            received += chunk
            time.sleep(0.1)
        self.assertEqual(20, received.count(b"domain-feature-set:steady"))
        self.assertNotIn("dropping a subscriber", self.d.log())

    @unittest.skipIf(harness.sanitized_build(), "RSS under ASan's quarantine means nothing")
    def test_lagging_reader_gives_its_memory_back(self):
        """A reader a burst left megabytes behind holds the daemon's memory only while it
        is behind: once it has caught up, its queue's memory is returned (200 readers that
        once lagged kept ~20 MiB in the soak)."""
        def rss_kib():
            with open("/proc/%d/status" % self.d.pid) as f:
                return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
        lagging = self.small_buffer_subscriber()
        before = rss_kib()
        value = b"m" * 60000
        for i in range(30):  # ~3.6 MB queued for it (each value is sent twice)
            self.ok("admin.vm.feature.Set", "lag", "work", value + str(i).encode())
        behind = rss_kib()
        received, deadline = b"", time.monotonic() + 30
        lagging.settimeout(10)
        while received.count(b"domain-feature-set:lag") < 30 and time.monotonic() < deadline:
            received += lagging.recv(1 << 20)
        self.assertEqual(30, received.count(b"domain-feature-set:lag"))
        self.ok("admin.vm.feature.Set", "lag", "work", b"small")  # one more, after the drain
        time.sleep(0.2)
        after = rss_kib()
        self.assertGreater(behind - before, 2048, "the queue did not show (%d -> %d KiB)"
                           % (before, behind))
        self.assertLess(after - before, 1024, "kept after the drain: %d -> %d -> %d KiB"
                        % (before, behind, after))

    def test_dead_subscriber_is_dropped(self):
        baseline = self.d.open_fds()
        evs = [self.subscribe() for _ in range(5)]
        self.assertEqual(baseline + 5, self.d.open_fds())
        for ev in evs:
            ev.close()
        # noticed without any event being sent
        deadline = time.monotonic() + 5
        while self.d.open_fds() > baseline and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertEqual(baseline, self.d.open_fds())
        self.ok("admin.vm.feature.Set", "after", "work", b"1")
        self.assertEqual(b"1", self.ok("admin.vm.feature.Get", "after", "work"))

    def test_subscriber_that_vanishes_mid_stream(self):
        baseline = self.d.open_fds()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(self.d.socket)
        s.sendall(harness.format_request("admin.Events", "", "dom0"))
        s.shutdown(socket.SHUT_WR)
        s.close()  # without reading connection-established
        for i in range(20):
            self.ok("admin.vm.feature.Set", "f%d" % i, "work", b"x" * 1000)
        deadline = time.monotonic() + 5
        while self.d.open_fds() > baseline and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertEqual(baseline, self.d.open_fds())

    def test_many_calls_with_many_subscribers(self):
        everything = [self.subscribe() for _ in range(3)]
        per_qube = self.subscribe("work")
        idle = self.subscribe("tpl")
        threads, errors = [], []
        n_threads, n_calls = 8, 40

        def worker(t):
            try:
                for i in range(n_calls):
                    if i % 2:
                        c = harness.ok_content(self.d, "admin.vm.feature.Set", "t%d" % t,
                                               "work", str(i).encode())
                        assert c == b"", c
                    else:
                        c = harness.ok_content(self.d, "admin.vm.property.Get", "memory",
                                               "work")
                        assert c == b"default=True type=int 400", c
            except Exception as e:  # reported below, in the main thread
                errors.append(repr(e))

        for t in range(n_threads):
            threads.append(threading.Thread(target=worker, args=(t,)))
            threads[-1].start()
        for th in threads:
            th.join(60)
        self.assertEqual([], errors)
        sets = n_threads * n_calls // 2
        want = 2 * sets  # pre-set and set for each write

        def feature_events(evs):
            return len([e for e in evs if e[1].startswith("domain-feature-")])
        for ev in everything + [per_qube]:
            self.assertEqual(want, ev.wait_for(lambda evs: feature_events(evs) == want
                                               and want, 10) or feature_events(ev.snapshot()))
        self.assertEqual(["connection-established"], idle.names())
        # every subscriber saw the same sequence
        first = everything[0].snapshot()
        for ev in everything[1:] + [per_qube]:
            self.assertEqual(first, ev.snapshot())
        # and each thread's values arrived in the order they were written
        for t in range(n_threads):
            values = [kv(e)["value"] for e in first if e[1] == "domain-feature-set:t%d" % t]
            self.assertEqual([str(i) for i in range(1, n_calls, 2)], values)


if __name__ == "__main__":
    unittest.main()
