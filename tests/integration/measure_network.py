"""Measures what networking costs (docs/network.md), not part of the suite:
    /work/tools/itest.sh BUILD measure_network.py
Cold start with and without a netvm, hand-out to the first TCP reply from the test
server (preloaded and cold), throughput to it through the netvm. Everything inside
namespaces the test makes (test_network.Uplink)."""

import re
import statistics
import sys
import time

import subprocess

import test_network
from test_network import SERVER_IP, TCP_PORT

N = 7


def median_ms(samples):
    return "%.1f ms (min %.1f, n=%d)" % (statistics.median(samples) * 1e3, min(samples) * 1e3,
                                         len(samples))


def report(what, value):
    print("MEASURE %-52s %s" % (what, value), file=sys.stderr)


class Measure(test_network.Preloads):
    def timed(self, fn):
        t0 = time.monotonic()
        fn()
        return time.monotonic() - t0

    def log_ms(self, pattern):
        return [float(m) for m in re.findall(pattern, self.d.log())]

    # only the measurements, not Preloads' own tests again
    test_preload_has_network_when_handed_out = None
    test_netvm_or_firewall_change_outdates_preloads = None

    def test_1_cold_start(self):
        self.start("sys-net")
        for netvm in ("", "sys-net"):
            samples = []
            for i in range(N):
                name = "m%s%d" % ("n" if netvm else "x", i)
                self.create("AppVM", name, template="bb")
                self.set_prop(name, "netvm", netvm)
                samples.append(self.timed(lambda: self.start(name)))
                self.kill(name)
            report("cold start, netvm %s" % (netvm or "none"), median_ms(samples))
        links = self.log_ms(r"mn\d: network link ([\d.]+) ms")
        fws = self.log_ms(r"mn\d: firewall in sys-net ([\d.]+) ms")
        report("  of which the veth link (netlink)", median_ms([x / 1e3 for x in links]))
        report("  of which the client's rules (libnftables)", median_ms([x / 1e3 for x in fws]))

    def first_reply(self, name):
        r = self.qrun(name, "nc -w 3 %s %d </dev/null" % (SERVER_IP, TCP_PORT))
        self.assertEqual(b"hello-from-uplink-8000\n", r.stdout)

    def test_2_hand_out_to_first_reply(self):
        self.new_dvm(max=1, netvm="sys-net")
        pre, cold = [], []
        for i in range(N):
            self.wait_filled("pdvm", 1)
            t0 = time.monotonic()
            name = self.create_disposable()
            self.first_reply(name)
            pre.append(time.monotonic() - t0)
            self.kill(name)
        self.set_feature("pdvm", "preload-dispvm-max", 0)
        self.settled(lambda: self.assertEqual([], self.plist("pdvm")), 10)
        for i in range(N):
            t0 = time.monotonic()
            name = self.create_disposable()
            self.start(name)
            self.first_reply(name)
            cold.append(time.monotonic() - t0)
            self.kill(name)
        report("hand-out -> first TCP reply, preloaded", median_ms(pre))
        report("create+start -> first TCP reply, cold", median_ms(cold))

    def test_3_throughput(self):
        self.new_appvm("tput")
        self.set_prop("tput", "netvm", "sys-net")
        self.start("tput")
        mib = 256
        t = self.timed(lambda: self.assertEqual(
            b"%d\n" % (mib << 20),
            self.qrun("tput", "dd if=/dev/zero bs=65536 count=%d 2>/dev/null | nc %s 8002"
                      % (mib * 16, SERVER_IP), timeout=120).stdout))
        report("throughput qube -> uplink server (%d MiB)" % mib, "%.0f MiB/s" % (mib / t))
        # the same busybox dd | nc inside the uplink namespace itself (no veth, no netvm)
        t0 = time.monotonic()
        out = subprocess.run(["ip", "netns", "exec", self.uplink.name, "sh", "-c",
                              "dd if=/dev/zero bs=65536 count=%d 2>/dev/null | busybox nc %s 8002"
                              % (mib * 16, SERVER_IP)], capture_output=True, timeout=120).stdout
        t = time.monotonic() - t0
        self.assertEqual(b"%d\n" % (mib << 20), out)
        report("  the same inside the uplink namespace (baseline)", "%.0f MiB/s" % (mib / t))


if __name__ == "__main__":
    import unittest
    unittest.main()
