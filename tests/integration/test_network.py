"""Networking of qubes (docs/network.md), with real namespaces: a netvm `sys-net` whose
uplink is a network namespace this test makes (never the host's network: every packet
stays inside namespaces the test created), a TCP server and a UDP "DNS" server in it,
client qubes behind sys-net. Shows: netvm none -> only lo; netvm set -> the server
answers (TCP, and UDP through the virtual DNS address); drop/accept rules do exactly what
they name; qubes of one netvm cannot reach each other; changing the netvm of a running
qube; a preloaded disposable has network when handed out; nothing left after the qubes
end or after a kill -9 of the daemon and a restart."""

import os
import subprocess
import sys
import time
import unittest

import harness
import test_engine
import test_preload
from test_engine import EngineTestCase, kill_all_qubes

SERVER_IP = "198.51.100.1"  # TEST-NET-2, on the uplink namespace's loopback
TCP_PORT = 8000
OTHER_PORT = 8001
SERVER = r"""
import socket, sys, threading
def tcp(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(16)
    while True:
        c, _ = s.accept()
        c.sendall(b"hello-from-uplink-%d\n" % port); c.close()
def dns():  # TCP on 53: the qubes' busybox nc has no UDP; the DNAT covers both
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", 53)); s.listen(16)
    while True:
        c, _ = s.accept(); c.sendall(b"dns-answer"); c.close()
def sink(port):  # reads to the end, answers with the count (throughput)
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(16)
    while True:
        c, _ = s.accept(); n = 0
        while True:
            b = c.recv(1 << 16)
            if not b:
                break
            n += len(b)
        c.sendall(b"%d\n" % n); c.close()
def http(port):  # one page for wget
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(16)
    while True:
        c, _ = s.accept(); req = b""
        while b"\r\n\r\n" not in req:
            b = c.recv(4096)
            if not b:
                break
            req += b
        body = b"page from the uplink\n"
        c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        c.close()
for target, args in ((tcp, (8000,)), (tcp, (8001,)), (dns, ()), (sink, (8002,)), (http, (8080,))):
    threading.Thread(target=target, args=args, daemon=True).start()
print("ready", flush=True)
sys.stdin.read()
"""


def ip(*args, check=True):
    return subprocess.run(["ip"] + list(args), capture_output=True, text=True, check=check)


class Uplink:
    """A network namespace standing in for the internet, with the test servers."""

    def __init__(self):
        self.name = "dsp-test-up-%d" % os.getpid()
        self.path = "/run/netns/" + self.name
        ip("netns", "add", self.name)
        ip("-n", self.name, "link", "set", "lo", "up")
        ip("-n", self.name, "addr", "add", SERVER_IP + "/32", "dev", "lo")
        self.server = subprocess.Popen(["ip", "netns", "exec", self.name, sys.executable, "-c",
                                        SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.server.stdout.readline().strip() == b"ready"

    def links(self):
        return ip("-n", self.name, "-o", "link").stdout

    def close(self):
        self.server.kill()
        self.server.wait()
        ip("netns", "del", self.name, check=False)


def namespaces_of(d):
    """Network namespaces of the daemon's qubes (by their init processes)."""
    out = set()
    for pid in test_engine.range_processes(d):
        try:
            out.add(os.readlink("/proc/%s/ns/net" % pid))
        except OSError:
            pass
    return out


@unittest.skipIf(test_engine.engine_skip_reason(), test_engine.engine_skip_reason())
@unittest.skipIf(subprocess.run(["sh", "-c", "command -v ip && command -v nft"],
                                capture_output=True).returncode, "needs ip and nft")
class NetworkCase(EngineTestCase):
    @classmethod
    def populate(cls, d):
        super().populate(d)
        cls.uplink = Uplink()
        ok = lambda *a: harness.ok_content(d, *a)
        ok("admin.vm.Create.AppVM", "bb", "dom0", b"name=sys-net label=red")
        ok("admin.vm.property.Set", "provides_network", "sys-net", b"True")
        ok("admin.vm.feature.Set", "net.uplink-netns", "sys-net", cls.uplink.path.encode())

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            if getattr(cls, "uplink", None):
                cls.uplink.close()

    def client(self, name, netvm="sys-net"):
        self.new_appvm(name)
        self.set_prop(name, "netvm", netvm)
        return name

    def fetch(self, name, port=TCP_PORT, host=SERVER_IP, timeout=3):
        r = self.qrun(name, "nc -w %d %s %d </dev/null" % (timeout, host, port), check=False)
        return r.stdout.decode().strip()

    def reaches(self, name, port=TCP_PORT, host=SERVER_IP, tries=1):
        for _ in range(tries):
            if self.fetch(name, port, host, timeout=2) == "hello-from-uplink-%d" % port:
                return True
        return False

    def assert_reaches(self, name, port=TCP_PORT, host=SERVER_IP):
        """Reached within three tries of 2 s: a connection that must work may be slow on
        a loaded machine (the sanitizer suite runs other tests beside this one)."""
        self.assertTrue(self.reaches(name, port, host, tries=3),
                        "%s does not reach %s:%d" % (name, host, port))

    def set_firewall(self, name, rules):
        self.ok("admin.vm.firewall.Set", dest=name, payload="".join(r + "\n" for r in rules)
                .encode())

    def d_pid_of(self, name):
        with open(os.path.join(self.d.runtime_dir, "qubes", name, "state")) as f:
            for line in f:
                if line.startswith("pid "):
                    return int(line.split()[1])
        self.fail("no pid for %s" % name)

    def netvm_ruleset(self):
        pid = self.d_pid_of("sys-net")
        return subprocess.run(["nsenter", "-t", str(pid), "-n", "nft", "list", "ruleset"],
                              capture_output=True, text=True, check=True).stdout

    def hold_netns(self, name):
        """Keeps the qube's network namespace alive after the qube ends, as the kernel
        does for a while with a dying one (its clean-up is asynchronous): the links in
        it, and their peers in other namespaces, stay meanwhile."""
        fd = os.open("/proc/%d/ns/net" % self.d_pid_of(name), os.O_RDONLY)
        self.addCleanup(os.close, fd)


class Model(NetworkCase):
    def test_addresses_as_in_qubes(self):
        self.client("addr1")
        qid = int(self.get_prop("addr1", "qid")[2])
        netvm_qid = int(self.get_prop("sys-net", "qid")[2])
        self.assertEqual("10.137.0.%d" % qid, self.get_prop("addr1", "ip")[2])
        self.assertEqual("10.137.0.%d" % qid, self.get_prop("addr1", "visible_ip")[2])
        self.assertEqual("10.137.0.%d" % netvm_qid, self.get_prop("addr1", "visible_gateway")[2])
        self.assertEqual("10.137.0.%d" % netvm_qid, self.get_prop("sys-net", "gateway")[2])
        self.assertEqual("", self.get_prop("addr1", "gateway")[2])
        self.assertEqual("10.139.1.1 10.139.1.2", self.get_prop("addr1", "dns")[2])
        self.assertEqual("00:16:3e:5e:6c:00", self.get_prop("addr1", "mac")[2])
        # a disposable's address comes from its dispid, its netvm from its template
        self.set_prop("addr1", "template_for_dispvms", True)
        self.ok("admin.vm.Create.DispVM", "addr1", "dom0", b"name=disp77 label=red")
        self.assertEqual((True, "vm", "sys-net"), self.get_prop("disp77", "netvm"))
        dispid = int(self.get_prop("disp77", "dispid")[2])
        n = dispid - 1  # Qubes' vmid_to_ipv4 above 254: no .0 and no .255
        want = (dispid >> 8, dispid & 255) if dispid < 255 else (n // 254, n % 254 + 1)
        self.assertEqual("10.138.%d.%d" % want, self.get_prop("disp77", "ip")[2])
        self.ok("admin.vm.Remove", dest="disp77")
        self.set_prop("addr1", "netvm", "")
        for prop in ("ip", "visible_gateway", "dns"):
            self.assertEqual("", self.get_prop("addr1", prop)[2])

    def test_netvm_must_provide_network_and_no_loops(self):
        self.client("loop1")
        r = self.err("admin.vm.property.Set", "netvm", "sys-net", b"loop1", exc="QubesValueError")
        self.assertIn("does not provide network", r.message)
        self.set_prop("loop1", "provides_network", True)
        r = self.err("admin.vm.property.Set", "netvm", "sys-net", b"loop1", exc="QubesValueError")
        self.assertIn("Loops in network are unsupported", r.message)
        self.err("admin.vm.property.Set", "netvm", "loop1", b"loop1", exc="QubesValueError")
        r = self.err("admin.vm.property.Set", "provides_network", "sys-net", b"False",
                     exc="QubesValueError")
        self.assertIn("still used by other qubes", r.message)

    def test_netvm_in_use_cannot_be_removed(self):
        self.create("AppVM", "net2", template="bb")
        self.set_prop("net2", "provides_network", True)
        self.client("user2", "net2")
        r = self.err("admin.vm.Remove", dest="net2", exc="QubesVMInUseError")
        self.assertIn("user2", r.message)
        self.set_prop("user2", "netvm", "")
        self.ok("admin.vm.Remove", dest="net2")

    def test_firewall_get_set_as_qubes(self):
        self.client("fw1")
        self.assertEqual(b"action=accept\n", self.ok("admin.vm.firewall.Get", dest="fw1"))
        self.set_firewall("fw1", ["action=accept proto=tcp dstports=1-1024",
                                  "action=drop proto=icmp comment=No ICMP",
                                  "action=drop proto=udp expire=1499450306",
                                  "dst4=10.0.0.0/8 action=accept",
                                  "action=drop expire=2099450306 proto=udp",
                                  "action=accept specialtarget=dns",
                                  "action=drop dsthost=1.2.3.4 proto=tcp dstports=443"])
        self.assertEqual(b"action=accept proto=tcp dstports=1-1024\n"
                         b"action=drop proto=icmp comment=No ICMP\n"
                         b"action=accept dst4=10.0.0.0/8\n"
                         b"action=drop expire=2099450306 proto=udp\n"
                         b"action=accept specialtarget=dns\n"
                         b"action=drop dst4=1.2.3.4/32 proto=tcp dstports=443-443\n",
                         self.ok("admin.vm.firewall.Get", dest="fw1"))
        before = self.ok("admin.vm.firewall.Get", dest="fw1")
        for bad in [b"action=maybe\n", b"proto=tcp\n", b"action=accept dstports=80\n",
                    b"action=accept proto=tcp icmptype=3\n", b"action=accept foo=bar\n",
                    b"action=accept dst4=1.2.3.4/33\n", b"action=accept dstports=70000 proto=tcp\n",
                    b"action=accept action=drop\n", b"action=accept\n\n",
                    b"action=accept comment=caf\xc3\xa9\n"]:
            with self.subTest(bad=bad):
                self.d.call("admin.vm.firewall.Set", dest="fw1", payload=bad)
                r = self.reply("admin.vm.firewall.Set", dest="fw1", payload=bad)
                self.assertFalse(r.ok)
                self.assertEqual(before, self.ok("admin.vm.firewall.Get", dest="fw1"))

    def test_qvm_firewall(self):
        self.client("fwcli")
        self.tool("qvm-firewall", "fwcli", "reset")
        self.tool("qvm-firewall", "fwcli", "add", "drop", "1.2.3.4", "tcp", "443")
        self.tool("qvm-firewall", "fwcli", "add", "--before", "0", "action=accept",
                  "specialtarget=dns", "comment=name service")
        self.tool("qvm-firewall", "fwcli", "add", "accept", "proto=icmp", "icmptype=8")
        self.assertEqual("action=accept specialtarget=dns comment=name service\n"
                         "action=accept\n"
                         "action=drop proto=tcp dsthost=1.2.3.4/32 dstports=443-443\n"
                         "action=accept proto=icmp icmptype=8\n"
                         .replace("dsthost=", "dst4="),
                         self.tool("qvm-firewall", "--raw", "fwcli").stdout)
        table = self.tool("qvm-firewall", "fwcli", "list").stdout.splitlines()
        self.assertEqual(["NO", "ACTION", "HOST", "PROTOCOL", "PORT(S)", "SPECIAL", "TARGET",
                          "ICMP", "TYPE", "EXPIRE", "COMMENT"], table[0].split())
        self.assertEqual(["2", "drop", "1.2.3.4/32", "tcp", "443", "-", "-", "-", "-"],
                         table[3].split())
        self.tool("qvm-firewall", "fwcli", "del", "drop", "1.2.3.4", "tcp", "443")
        self.tool("qvm-firewall", "fwcli", "del", "--rule-no", "0")
        self.assertEqual(b"action=accept\naction=accept proto=icmp icmptype=8\n",
                         self.ok("admin.vm.firewall.Get", dest="fwcli"))
        r = harness.run_tool(self.d, "qvm-firewall", "fwcli", "add", "action=maybe")
        self.assertEqual(1, r.returncode)
        self.assertIn("action", r.stderr)
        self.tool("qvm-firewall", "fwcli", "reset")
        self.assertEqual(b"action=accept\n", self.ok("admin.vm.firewall.Get", dest="fwcli"))

    def test_firewall_survives_a_restart(self):
        self.client("fw2")
        self.set_firewall("fw2", ["action=drop proto=udp", "action=accept"])
        self.d.restart()
        self.assertEqual(b"action=drop proto=udp\naction=accept\n",
                         self.ok("admin.vm.firewall.Get", dest="fw2"))


class Traffic(NetworkCase):
    def test_netvm_none_has_only_loopback(self):
        self.new_appvm("alone1")
        self.start("alone1")
        links = self.qout("alone1", "ip -o link | cut -d: -f2")
        self.assertEqual(["lo"], [l.strip() for l in links.split()])

    def test_client_reaches_the_uplink_server(self):
        self.client("web1")
        self.start("web1")  # starts sys-net first
        self.assertEqual("Running", self.api_state("sys-net"))
        qid = int(self.get_prop("web1", "qid")[2])
        self.assertIn("10.137.0.%d/32" % qid, self.qout("web1", "ip -4 addr show eth0"))
        self.assertEqual("hello-from-uplink-8000", self.fetch("web1"))
        self.assertEqual("nameserver 10.139.1.1\nnameserver 10.139.1.2\n",
                         self.qout("web1", "cat /etc/resolv.conf"))
        # both virtual DNS addresses are forwarded into the uplink (a server on port 53)
        for dns in ("10.139.1.1", "10.139.1.2"):
            r = self.qrun("web1", "nc -w 2 %s 53 </dev/null" % dns, check=False)
            self.assertEqual(b"dns-answer", r.stdout)

    def test_drop_and_accept_rules(self):
        self.client("fw3")
        self.set_firewall("fw3", ["action=accept proto=tcp dst4=%s dstports=%d" %
                                  (SERVER_IP, TCP_PORT), "action=drop"])
        self.start("fw3")
        self.assert_reaches("fw3", TCP_PORT)
        self.assertFalse(self.reaches("fw3", OTHER_PORT))
        # changed while it runs: enforced at once
        self.set_firewall("fw3", ["action=drop proto=tcp dstports=%d" % TCP_PORT,
                                  "action=accept"])
        self.assertFalse(self.reaches("fw3", TCP_PORT))
        self.assert_reaches("fw3", OTHER_PORT)

    def test_a_rule_that_expires_stops_being_enforced(self):
        self.client("exp1")
        self.start("exp1")
        expire = int(time.time()) + 3
        self.set_firewall("exp1", ["action=drop proto=tcp dstports=%d expire=%d"
                                   % (TCP_PORT, expire), "action=accept"])
        self.assertFalse(self.reaches("exp1"))
        time.sleep(max(0, expire + 1.5 - time.time()))
        self.assert_reaches("exp1")
        self.assertEqual(b"action=accept\n", self.ok("admin.vm.firewall.Get", dest="exp1"))

    def test_qubes_of_one_netvm_cannot_reach_each_other(self):
        self.client("qa")
        self.client("qb")
        self.start("qa")
        self.start("qb")
        self.qrun("qb", "(nc -ll -p 9000 -e echo from-b </dev/null >/dev/null 2>&1 &); sleep 0.2")
        ip_b = self.get_prop("qb", "ip")[2]
        # B's server answers on B's address (from B itself) ...
        self.assertIn(b"from-b", self.qrun("qb", "nc -w 2 %s 9000 </dev/null" % ip_b).stdout)
        # ... but not to A through their netvm
        r = self.qrun("qa", "nc -w 2 %s 9000 </dev/null" % ip_b, check=False)
        self.assertNotIn(b"from-b", r.stdout)
        self.assert_reaches("qa")

    def test_clients_started_at_once_wait_for_their_netvm(self):
        import threading
        if self.api_state("sys-net") != "Halted":
            self.ok("admin.vm.Shutdown", "force+wait", "sys-net")
        names = [self.client("many%d" % i) for i in range(3)]
        replies = {}

        def start(name):
            replies[name] = harness.parse_reply(harness.call(self.d.socket, "admin.vm.Start",
                                                             dest=name))
        threads = [threading.Thread(target=start, args=(n,)) for n in names]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for name in names:
            self.assertTrue(replies[name].ok, replies[name])
            self.assert_reaches(name)

    def test_netvm_restarted_before_its_old_namespace_is_gone(self):
        # its uplink's peer (dspupN) lives on in the uplink namespace with the old one: the
        # new start replaces it (it failed with EEXIST: no uplink, clients without network)
        self.start_if_halted("sys-net")
        self.hold_netns("sys-net")
        self.ok("admin.vm.Shutdown", "force+wait", "sys-net")
        self.client("again1")
        self.start("again1")  # starts sys-net first
        self.assert_reaches("again1")

    def test_client_restarted_before_its_old_namespace_is_gone(self):
        # its old link's netvm end (vifN) lives on in the netvm with the old namespace
        self.client("again2")
        self.start("again2")
        self.hold_netns("again2")
        self.kill("again2")
        self.start("again2")
        self.assert_reaches("again2")

    def test_dsthost_names_are_resolved_by_the_netvm(self):
        # as Qubes' qubes-firewall: getaddrinfo in the netvm, here from its own /etc/hosts
        # (a file inside the namespaces this test made; no DNS query leaves them)
        self.start_if_halted("sys-net")
        self.qrun("sys-net", "echo '%s server.test' >> /etc/hosts" % SERVER_IP, user="root")
        self.client("named1")
        self.set_firewall("named1", ["action=accept dsthost=server.test proto=tcp dstports=%d"
                                     % TCP_PORT, "action=drop"])
        self.start("named1")
        self.assert_reaches("named1", TCP_PORT)
        self.assertFalse(self.reaches("named1", OTHER_PORT))
        self.assertIn("ip daddr %s tcp dport" % SERVER_IP, self.netvm_ruleset())
        # a drop naming it, the rest accepted
        self.set_firewall("named1", ["action=drop dsthost=server.test proto=tcp dstports=%d"
                                     % TCP_PORT, "action=accept"])
        self.assertFalse(self.reaches("named1", TCP_PORT))
        self.assert_reaches("named1", OTHER_PORT)
        # a name the netvm cannot resolve blocks the qube, whatever else its rules allow
        self.set_firewall("named1", ["action=accept dsthost=nosuch.invalid", "action=accept"])
        self.settled(lambda: self.assertIn("cannot resolve nosuch.invalid", self.d.log()), 30)
        self.assertFalse(self.reaches("named1", TCP_PORT))

    def test_netvm_in_use_shuts_down_only_when_forced(self):
        self.client("user3")
        self.start("user3")
        r = self.err("admin.vm.Shutdown", "", "sys-net", exc="QubesVMInUseError")
        self.assertIn("user3", r.message)
        self.assertEqual("Running", self.api_state("sys-net"))
        self.ok("admin.vm.Shutdown", "force+wait", "sys-net")
        self.assertEqual("Halted", self.api_state("sys-net"))
        # its client lost the link with it; a new start of the netvm links it again
        self.settled(lambda: self.assertEqual(
            ["lo"], self.qout("user3", "ip -o link | cut -d: -f2").split()))
        self.start("sys-net")
        self.assert_reaches("user3")

    def test_changing_the_netvm_of_a_running_qube(self):
        self.new_appvm("mover")
        self.start("mover")
        self.assertFalse(self.reaches("mover"))
        self.start_if_halted("sys-net")
        self.set_prop("mover", "netvm", "sys-net")
        self.assert_reaches("mover")
        self.set_prop("mover", "netvm", "")
        self.assertFalse(self.reaches("mover"))
        self.assertEqual(["lo"], self.qout("mover", "ip -o link | cut -d: -f2").split())

    def test_default_netvm_moves_running_qubes_that_follow_it(self):
        self.new_appvm("follower")  # netvm: the default, none for now
        self.start("follower")
        self.start_if_halted("sys-net")
        self.ok("admin.property.Set", "default_netvm", "dom0", b"sys-net")
        self.addCleanup(self.d.call, "admin.property.Reset", "default_netvm")
        self.assert_reaches("follower")
        self.ok("admin.property.Reset", "default_netvm")
        self.assertFalse(self.reaches("follower"))
        # a halted new default is refused while a running qube follows the default
        self.ok("admin.vm.Shutdown", "force+wait", "sys-net")
        self.err("admin.property.Set", "default_netvm", "dom0", b"sys-net",
                 exc="QubesVMNotStartedError")
        self.assertEqual((True, "vm", ""), self.get_global("default_netvm"))

    def start_if_halted(self, name):
        if self.api_state(name) == "Halted":
            self.start(name)


class HostUplink(NetworkCase):
    """scripts/net-uplink.sh, run inside a namespace this test makes that stands in for
    the host (it changes the namespace it runs in: never the real host's here)."""

    SCRIPT = os.path.join(harness.SOURCE_ROOT, "scripts", "net-uplink.sh")

    def setUp(self):
        super().setUp()
        self.fakehost = "dsp-test-host-%d" % os.getpid()
        self.uplink_name = "dsp-test-hup-%d" % os.getpid()
        ip("netns", "add", self.fakehost)
        self.addCleanup(ip, "netns", "del", self.fakehost, check=False)
        self.addCleanup(self.script, "down")
        ip("-n", self.fakehost, "link", "set", "lo", "up")

    def script(self, cmd):
        # nsenter, not `ip netns exec`: the namespace the script names must be visible in
        # the host's mount namespace, where the daemon opens it
        return subprocess.run(["nsenter", "--net=/run/netns/" + self.fakehost, "sh",
                               self.SCRIPT, cmd, self.uplink_name], capture_output=True,
                              text=True)

    def test_qube_reaches_the_host_through_the_uplink_script(self):
        r = self.script("up")
        self.assertEqual(0, r.returncode, r.stderr)
        self.assertEqual(0, self.script("up").returncode)  # again: nothing breaks
        server = subprocess.Popen(["ip", "netns", "exec", self.fakehost, sys.executable, "-c",
                                   SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.addCleanup(server.wait)
        self.addCleanup(server.kill)
        self.assertEqual(b"ready", server.stdout.readline().strip())
        self.create("AppVM", "hostnet", template="bb")
        self.set_prop("hostnet", "provides_network", True)
        self.ok("admin.vm.feature.Set", "net.uplink-netns", "hostnet",
                ("/run/netns/" + self.uplink_name).encode())
        self.client("behind", "hostnet")
        self.start("behind")
        self.assert_reaches("behind", TCP_PORT, "10.136.255.1")
        kill_all_qubes(self.d)
        r = self.script("down")
        self.assertEqual(0, r.returncode, r.stderr)
        self.assertFalse(os.path.exists("/run/netns/" + self.uplink_name))
        self.assertNotIn("dsp-h-", ip("-n", self.fakehost, "-o", "link").stdout)


class Leftovers(NetworkCase):
    def host_state(self):
        """Links and nftables tables of ours in the host's own namespace (by their names:
        other jobs on this machine may add their own meanwhile)."""
        links = sorted(name for name in (l.split(":")[1].strip().split("@")[0]
                                         for l in ip("-o", "link").stdout.splitlines())
                       if name.startswith(("vif", "dspup", "dsp-", "eth0")))
        tables = [t for t in subprocess.run(["nft", "list", "tables"], capture_output=True,
                                            text=True).stdout.splitlines() if "dispenser" in t]
        return links, tables

    def test_nothing_left_after_qubes_end(self):
        before, host_before = self.uplink.links(), self.host_state()
        self.client("gone1")
        self.start("gone1")
        self.assert_reaches("gone1")
        self.assertIn("dspup", self.uplink.links())
        self.assertEqual(host_before, self.host_state())  # nothing of it in the host's
        kill_all_qubes(self.d)
        self.settled(lambda: self.assertEqual(before, self.uplink.links()))
        self.assertEqual(host_before, self.host_state())

    def test_kill_9_and_restart(self):
        self.client("k9")
        self.set_firewall("k9", ["action=drop proto=tcp dstports=%d" % OTHER_PORT,
                                 "action=accept"])
        self.start("k9")
        self.client("k9b")
        self.start("k9b")
        self.d.kill()
        self.d.start()
        # the adopted qubes keep their network and firewall
        self.assert_reaches("k9")
        self.assertFalse(self.reaches("k9", OTHER_PORT))
        self.kill("k9b")
        self.settled(lambda: self.assertNotIn("qube-%s" % self.get_prop("k9b", "qid")[2],
                                              self.netvm_ruleset()))
        kill_all_qubes(self.d)
        self.settled(lambda: self.assertNotIn("dspup", self.uplink.links()))




class Preloads(test_preload.PreloadCase):
    """Preloaded disposables start with their network and firewall in place."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.uplink = Uplink()
        ok = lambda *a: harness.ok_content(cls.shared, *a)
        ok("admin.vm.Create.AppVM", "bb", "dom0", b"name=sys-net label=red")
        ok("admin.vm.property.Set", "provides_network", "sys-net", b"True")
        ok("admin.vm.feature.Set", "net.uplink-netns", "sys-net", cls.uplink.path.encode())

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            cls.uplink.close()

    fetch = NetworkCase.fetch
    set_firewall = NetworkCase.set_firewall

    def test_preload_has_network_when_handed_out(self):
        self.new_dvm(max=1, netvm="sys-net")
        old = self.wait_filled("pdvm", 1)
        name = self.create_disposable()
        self.assertEqual(old[0], name)
        self.assertEqual("hello-from-uplink-8000", self.fetch(name))

    def test_qvm_run_dispvm_wget(self):
        # the "done": qvm-prefs dvm netvm sys-net; qvm-run --dispvm=dvm -p 'wget ...'
        self.new_dvm()
        self.tool("qvm-prefs", "pdvm", "netvm", "sys-net")
        r = self.tool("qvm-run", "--dispvm=pdvm", "-p",
                      "wget -qO- http://%s:8080/" % SERVER_IP)
        self.assertEqual("page from the uplink\n", r.stdout)

    def test_netvm_or_firewall_change_outdates_preloads(self):
        self.new_dvm(max=1, netvm="sys-net")
        old = self.wait_filled("pdvm", 1)
        self.set_firewall("pdvm", ["action=drop proto=tcp dstports=%d" % TCP_PORT,
                                   "action=accept"])
        self.settled(lambda: self.assertNotIn(old[0], self.plist("pdvm")),
                     test_preload.OUTDATED_WAIT + 1)
        new = self.wait_filled("pdvm", 1)
        name = self.create_disposable()
        self.assertEqual(new[0], name)
        self.assertEqual(self.ok("admin.vm.firewall.Get", dest="pdvm"),
                         self.ok("admin.vm.firewall.Get", dest=name))
        self.assertEqual("", self.fetch(name, timeout=2))
        self.assertEqual("hello-from-uplink-%d" % OTHER_PORT, self.fetch(name, OTHER_PORT))
        # the hand-out above started a refill for the old netvm: it may complete before it
        # is found outdated, so the preload to wait for is one made after the change
        made_before = {n for n in self.vm_names() if n.startswith("disp")}
        self.set_prop("pdvm", "netvm", "")
        self.settled(lambda: self.assertTrue(set(self.plist("pdvm")) - made_before),
                     test_preload.OUTDATED_WAIT + 1)
        newer = self.wait_filled("pdvm", 1)
        self.assertNotIn(newer[0], made_before)
        name = self.create_disposable()
        self.assertEqual(newer[0], name)
        self.assertEqual(["lo"], self.qout(name, "ip -o link | cut -d: -f2").split())


if __name__ == "__main__":
    unittest.main()


import test_qemu  # noqa: E402  (after the classes above: it imports test_engine too)

VIRTIO_NET = os.path.join(test_qemu.KERNEL_CACHE, "modules", "virtio_net.ko")


@unittest.skipIf(test_qemu.missing(), test_qemu.missing() or "")
@unittest.skipIf(not os.path.exists(VIRTIO_NET),
                 "the guest kernel in %s has no virtio_net (scripts/fetch-vm-kernel.sh)"
                 % test_qemu.KERNEL_CACHE)
class VmClient(test_qemu.QemuTestCase, NetworkCase):
    """A virt_mode=qemu qube with a netvm: a virtio-net NIC on a tap in the netvm's
    namespace, the same addresses and firewall as a container client. One boot."""

    def vm_fetch(self, port):
        r = harness.run_tool(self.d, "qvm-run", "-p", "vmnet1",
                             "nc -w 3 %s %d </dev/null" % (SERVER_IP, port), timeout=60)
        return r.stdout.strip()

    def test_vm_reaches_what_its_firewall_allows_and_its_tap_goes_with_it(self):
        self.new_vm("vmnet1")
        self.set_prop("vmnet1", "netvm", "sys-net")
        self.set_firewall("vmnet1", ["action=accept proto=tcp dst4=%s dstports=%d"
                                     % (SERVER_IP, TCP_PORT), "action=drop"])
        self.start_vm("vmnet1")  # starts sys-net first
        qid = int(self.get_prop("vmnet1", "qid")[2])
        r = harness.run_tool(self.d, "qvm-run", "-p", "vmnet1",
                             "ip -4 addr show eth0; ip route; cat /etc/resolv.conf", timeout=60)
        self.assertIn("10.137.0.%d/32" % qid, r.stdout)
        self.assertIn("default via %s" % self.get_prop("vmnet1", "gateway")[2], r.stdout)
        self.assertIn("nameserver 10.139.1.1\nnameserver 10.139.1.2\n", r.stdout)
        vif = "vif%d" % qid
        self.assertIn(vif, self.qout("sys-net", "ip -o link"))
        # the firewall holds as for a container: allowed, and blocked
        self.assertEqual("hello-from-uplink-%d" % TCP_PORT, self.vm_fetch(TCP_PORT))
        self.assertEqual("", self.vm_fetch(OTHER_PORT))
        self.change_netvm_of_the_running_vm("vmnet1", vif)
        self.tool("qvm-kill", "vmnet1")
        # the tap went with QEMU
        deadline = time.monotonic() + 10
        while vif in self.qout("sys-net2", "ip -o link") and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertNotIn(vif, self.qout("sys-net2", "ip -o link"))
        self.kill("sys-net2")

    def vm_reaches(self, port, tries=3):
        """Its guest takes new routes through its agent, just after the change."""
        return any(self.vm_fetch(port) == "hello-from-uplink-%d" % port for _ in range(tries))

    def change_netvm_of_the_running_vm(self, vm, vif):
        """Qubes' detach-network and attach-network while the VM runs (same boot)."""
        self.set_prop(vm, "netvm", "")
        self.assertNotIn(vif, self.qout("sys-net", "ip -o link"))
        self.assertEqual("", self.vm_fetch(TCP_PORT))
        self.create("AppVM", "sys-net2", template="bb")
        self.set_prop("sys-net2", "provides_network", True)
        self.ok("admin.vm.feature.Set", "net.uplink-netns", "sys-net2", self.uplink.path.encode())
        self.start("sys-net2")
        self.set_prop(vm, "netvm", "sys-net2")
        self.assertIn(vif, self.qout("sys-net2", "ip -o link"))
        self.assertTrue(self.vm_reaches(TCP_PORT), "%s does not reach through sys-net2" % vm)
        self.assertEqual("", self.vm_fetch(OTHER_PORT))  # its firewall went along
        r = harness.run_tool(self.d, "qvm-run", "-p", vm, "ip route", timeout=60)
        self.assertIn("default via %s" % self.get_prop("sys-net2", "gateway")[2], r.stdout)
        # the netvm it left is not kept alive by it: its uplink goes with its shutdown
        sys_net_uplink = "dspup%s" % self.get_prop("sys-net", "qid")[2]
        self.ok("admin.vm.Shutdown", "force+wait", "sys-net")
        self.settled(lambda: self.assertNotIn(sys_net_uplink, self.uplink.links()), 10)
        # its netvm halts and starts again: the VM is linked again
        self.ok("admin.vm.Shutdown", "force+wait", "sys-net2")
        self.start("sys-net2")
        self.assertTrue(self.vm_reaches(TCP_PORT), "%s not linked again" % vm)
