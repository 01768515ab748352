"""The daemon's memory after a burst (docs/reliability.md, "Load: the soak"): what a
burst of concurrent clients made the daemon allocate goes back to the system once they
are gone, even when something allocated after them is still alive (it pins the top of
the heap: glibc's free() alone then returns nothing)."""
import socket
import time
import unittest

import harness
from harness import DaemonTestCase, parse_reply

MIB = 1024 * 1024


def rss_kib(d):
    with open("/proc/%d/status" % d.pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class MemoryAfterABurst(DaemonTestCase):
    def wait_for(self, cond, timeout, what):
        deadline = time.monotonic() + timeout
        while not cond():
            self.assertLess(time.monotonic(), deadline, what)
            time.sleep(0.1)

    def burst(self, d):
        conns = []
        for _ in range(200):  # each buffered by the daemon until its end: 60 KB apiece
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(d.socket)
            s.sendall(b"x" * 60000)
            conns.append(s)
        return conns

    @unittest.skipIf(harness.sanitized_build(), "RSS under ASan's quarantine means nothing")
    def test_a_burst_s_memory_goes_back(self):
        d = self.d
        start = rss_kib(d)
        # The first burst's buffers (128 KiB each) are mapped and unmapped one by one;
        # freeing them raises glibc's mmap threshold, so the second's come from the heap.
        for s in self.burst(d):
            s.close()
        self.assertTrue(parse_reply(d.call("admin.vm.List")).ok)
        burst = self.burst(d)
        self.wait_for(lambda: rss_kib(d) > start + 8 * 1024, 20,
                      "the burst never grew the daemon (%d KiB)" % rss_kib(d))
        late = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # alive past the burst
        late.connect(d.socket)
        late.sendall(b"admin.vm.L")
        self.addCleanup(late.close)
        time.sleep(0.5)
        peak = rss_kib(d)
        for s in burst:
            s.close()
        self.assertTrue(parse_reply(d.call("admin.vm.List")).ok)  # every burst connection answered
        try:
            self.wait_for(lambda: rss_kib(d) < start + 3 * 1024, 20, "")
        except AssertionError:
            self.fail("the daemon kept its burst's memory: %d KiB at the start, %d at the "
                      "peak, %d after" % (start, peak, rss_kib(d)))


if __name__ == "__main__":
    unittest.main()
