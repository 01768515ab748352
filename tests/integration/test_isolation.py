"""Isolation of a container qube, checked from inside it (as its root and as its user)
and from the host: processes and files of the host and of other qubes, the template's
root, the network, mounts, kernel modules, keyctl/bpf/unshare, the uid mapping,
capabilities, no_new_privs and seccomp, the memory limit, and a paused qube's CPU.

Busybox lacks tools for some checks: a static C probe, compiled here with gcc, is copied
into the qube through the agent client's stdin."""

import hashlib
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import unittest

import harness
from test_engine import (RANGE_BASE, RANGE_COUNT, EngineTestCase, engine_skip_reason,
                         proc_uid, qube_cgroup_dirs, unified_cgroup_dir)

PROBE_C = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/bpf.h>
#include <linux/keyctl.h>
#include <linux/perf_event.h>
#include <netinet/in.h>
#include <sys/ptrace.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>

/* Each check prints "name: blocked (errno)" or "name: ALLOWED"; the exit status is the
 * number of checks that were allowed. */
static int allowed;

static void report(const char *name, long r) {
    if (r < 0) {
        printf("%s: blocked (%s)\n", name, strerrorname_np(errno) ? strerrorname_np(errno) : "?");
    } else {
        printf("%s: ALLOWED\n", name);
        allowed++;
    }
}

static void syscalls(void) {
    report("keyctl", syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 1));
    report("add_key", syscall(SYS_add_key, "user", "probe", "x", 1, KEY_SPEC_SESSION_KEYRING));
    union bpf_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.map_type = BPF_MAP_TYPE_ARRAY;
    attr.key_size = 4;
    attr.value_size = 4;
    attr.max_entries = 1;
    report("bpf", syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof(attr)));
    report("unshare_user", unshare(CLONE_NEWUSER));
    report("unshare_mount", unshare(CLONE_NEWNS));
    report("unshare_net", unshare(CLONE_NEWNET));
    report("mount_tmpfs", mount("none", "/mnt", "tmpfs", 0, NULL));
    report("mount_proc", mount("proc", "/tmp", "proc", 0, NULL));
    report("umount_proc", umount2("/proc", MNT_DETACH));
    report("init_module", syscall(SYS_init_module, "\0asm", (unsigned long)4, ""));
    report("finit_module", syscall(SYS_finit_module, 0, "", 0));
    report("delete_module", syscall(SYS_delete_module, "loop", 0));
    report("kexec_load", syscall(SYS_kexec_load, 0, 0, NULL, 0));
    report("reboot", syscall(SYS_reboot, 0xfee1dead, 672274793, 0x1234567, NULL));
    report("swapoff", syscall(SYS_swapoff, "/dev/null"));
    report("open_by_handle_at", syscall(SYS_open_by_handle_at, 0, NULL, 0));
    struct perf_event_attr pe;
    memset(&pe, 0, sizeof(pe));
    pe.size = sizeof(pe);
    pe.type = PERF_TYPE_SOFTWARE;
    pe.config = PERF_COUNT_SW_CPU_CLOCK;
    report("perf_event_open", syscall(SYS_perf_event_open, &pe, 0, -1, -1, 0));
    report("userfaultfd", syscall(SYS_userfaultfd, 0));
    char params[120];
    memset(params, 0, sizeof(params));
    report("io_uring_setup", syscall(SYS_io_uring_setup, 4, params));
    report("raw_socket_inet", socket(AF_INET, SOCK_RAW, IPPROTO_ICMP));
    report("raw_socket_packet", socket(AF_PACKET, SOCK_RAW, 0));
    /* the agent (pid 1 of the qube): not dumpable, not traceable */
    report("ptrace_agent", ptrace(PTRACE_ATTACH, 1, NULL, NULL));
    char buf[16];
    struct iovec local = {buf, sizeof(buf)}, remote = {(void *)0x400000, sizeof(buf)};
    report("process_vm_readv_agent", syscall(SYS_process_vm_readv, 1, &local, 1, &remote, 1, 0));
    report("setns_host_net", syscall(SYS_setns, -1, 0));
    report("kmsg", open("/dev/kmsg", 0));
    report("mknod", syscall(SYS_mknodat, AT_FDCWD, "/tmp/probe-dev", 020666, 0x0801));
}

static int hog(long mib) {
    for (long i = 1; i <= mib; i++) {
        char *p = malloc(1 << 20);
        if (!p)
            return 2;
        memset(p, 1, 1 << 20);
        if (i % 16 == 0) {
            printf("%ld MiB\n", i);
            fflush(stdout);
        }
    }
    printf("survived\n");
    return 0;
}

/* A unix socket address: "@name" is abstract, anything else a path. */
static socklen_t unix_addr(const char *name, struct sockaddr_un *sa) {
    size_t n = strlen(name);
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    if (n >= sizeof(sa->sun_path))
        n = sizeof(sa->sun_path) - 1;
    memcpy(sa->sun_path, name, n);
    if (name[0] == '@')
        sa->sun_path[0] = '\0';
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (name[0] != '@'));
}

static int connect_each(int n, char **names) {
    for (int i = 0; i < n; i++) {
        struct sockaddr_un sa;
        socklen_t len = unix_addr(names[i], &sa);
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        report(names[i], fd < 0 ? -1 : connect(fd, (struct sockaddr *)&sa, len));
        if (fd >= 0)
            close(fd);
    }
    return allowed;
}

static int listen_on(const char *name) {
    struct sockaddr_un sa;
    socklen_t len = unix_addr(name, &sa);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, len) < 0 || listen(fd, 8) < 0)
        return 2;
    printf("listening\n");
    fflush(stdout);
    for (;;) {
        int c = accept(fd, NULL, NULL);
        if (c >= 0)
            close(c);
    }
}

int main(int argc, char **argv) {
    if (argc > 2 && strcmp(argv[1], "hog") == 0)
        return hog(atol(argv[2]));
    if (argc > 2 && strcmp(argv[1], "connect") == 0)
        return connect_each(argc - 2, argv + 2);
    if (argc > 2 && strcmp(argv[1], "listen") == 0)
        return listen_on(argv[2]);
    syscalls();
    return allowed;
}
"""

HOST_MARKER = "61.2345"  # sleep's argument: nothing else on the host has it


def build_probe(directory):
    src = os.path.join(directory, "probe.c")
    out = os.path.join(directory, "probe")
    with open(src, "w") as f:
        f.write(PROBE_C)
    r = subprocess.run(["gcc", "-static", "-O1", "-o", out, src], capture_output=True,
                       text=True)
    if r.returncode != 0:
        raise unittest.SkipTest("cannot build the static probe: %s" % r.stderr[-500:])
    return out


def host_ip():
    """The host's address on its real interface (not loopback)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect(("192.0.2.1", 9))  # no packet is sent for a UDP connect
        ip = s.getsockname()[0]
    except OSError:
        ip = None
    finally:
        s.close()
    return ip if ip and not ip.startswith("127.") else None


class Listener:
    """A host TCP listener counting the connections it accepts."""

    def __init__(self, addr):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((addr, 0))
        self.sock.listen(8)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.stop = False
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        while not self.stop:
            try:
                c, _ = self.sock.accept()
                self.accepted += 1
                c.sendall(b"host-secret\n")
                c.close()
            except OSError:
                pass

    def close(self):
        self.stop = True
        self.thread.join(1)
        self.sock.close()


@unittest.skipIf(engine_skip_reason(), engine_skip_reason())
class Isolation(EngineTestCase):
    """Two qubes, alpha and beta, run for the whole class."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="dispenser-probe-")
        cls.probe = build_probe(cls.tmp)
        with open(cls.probe, "rb") as f:
            cls.probe_bytes = f.read()
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def populate(cls, d):
        super().populate(d)
        for name in ("alpha", "beta"):
            harness.ok_content(d, "admin.vm.Create.AppVM", "bb", "dom0",
                               ("name=%s label=red" % name).encode())
            harness.ok_content(d, "admin.vm.Start", dest=name)

    def install_probe(self, name):
        self.qrun(name, "cat > /home/user/probe && chmod 755 /home/user/probe",
                  input=self.probe_bytes)
        return "/home/user/probe"

    # --- processes ---

    def test_host_processes_invisible(self):
        marker = subprocess.Popen(["sleep", HOST_MARKER])
        self.addCleanup(marker.wait)
        self.addCleanup(marker.kill)
        out = self.qout("alpha", "cat /proc/[0-9]*/cmdline | tr '\\0' ' '; echo; ps -o pid,comm",
                        user="root")
        self.assertNotIn(HOST_MARKER, out)
        self.assertNotIn("dispenserd", out)
        self.assertNotIn("python", out)
        pids = self.qout("alpha", "ls -d /proc/[0-9]* | wc -l", user="root")
        self.assertLess(int(pids), 10, "the qube sees %s processes" % pids)
        self.assertEqual("dispenser-agent\n", self.qout("alpha", "cat /proc/1/comm"))
        # and cannot signal what it cannot see: the host's pid of the marker means nothing
        r = self.qrun("alpha", "kill -0 %d" % marker.pid, user="root", check=False)
        self.assertNotEqual(0, r.returncode)
        self.assertIsNone(marker.poll())

    def test_mountinfo_names_no_host_path(self):
        """The overlays are mounted through short links and the agent is a sealed copy in
        memory: nothing in the qube's mount table names where the host keeps things."""
        info = self.qout("alpha", "cat /proc/self/mountinfo", user="root")
        for host_path in (self.d.state_dir, self.d.runtime_dir, os.path.realpath(self.d.state_dir),
                          os.path.dirname(harness.AGENT), "/work", "/tmp/"):
            self.assertNotIn(host_path, info)
        self.assertIn("lowerdir=r0", info)
        self.assertEqual("dispenser-agent\n", self.qout("alpha", "cat /proc/1/comm"))
        self.assertEqual("", self.qout("alpha", "qrexec-client-vm --help >/dev/null 2>&1; true"))

    def test_root_in_the_qube_cannot_reach_into_the_agent(self):
        """Root inside a qube shares the agent's user namespace, but the agent is not
        dumpable: no ptrace, no /proc/1/mem, environ or exe (which would name a host path),
        and PID 1 of the qube's pid namespace ignores what it has no handler for."""
        for probe in ("cat /proc/1/environ", "readlink /proc/1/exe", "head -c 16 /proc/1/mem",
                      "readlink /proc/1/fd/0", "cat /proc/1/maps"):
            r = self.qrun("alpha", probe, user="root", check=False)
            self.assertNotEqual(0, r.returncode, "%s: %r" % (probe, r.stdout))
        r = self.qrun("alpha", "kill -KILL 1; sleep 0.2; echo alive", user="root", check=False)
        self.assertEqual(b"alive\n", r.stdout)
        self.assertEqual("dispenser-agent\n", self.qout("alpha", "cat /proc/1/comm"))

    def test_other_qubes_invisible(self):
        self.qrun("beta", "setsid sleep 7777 </dev/null >/dev/null 2>&1 &")
        deadline = time.monotonic() + 3
        while "7777" not in self.qout("beta", "ps -o args") and time.monotonic() < deadline:
            time.sleep(0.02)
        self.qrun("beta", "echo beta-secret > /home/user/beta-secret; "
                          "echo beta-tmp > /tmp/beta-tmp")
        self.qrun("beta", "echo beta-root > /etc/beta-root", user="root")
        self.assertIn("7777", self.qout("beta", "ps -o args"))
        out = self.qout("alpha", "cat /proc/[0-9]*/cmdline | tr '\\0' ' '", user="root")
        self.assertNotIn("7777", out)
        found = self.qout("alpha", "find / -xdev \\( -name 'beta-*' -o -name '*7777*' \\) "
                                   "2>/dev/null; find /home /tmp /rw -name 'beta-*' 2>/dev/null; "
                                   "echo end", user="root")
        self.assertEqual("end\n", found)
        # not by the host's paths either: the host's file system is not there at all
        for path in (self.d.state_dir, self.d.runtime_dir, "/work"):
            r = self.qrun("alpha", "ls %s" % path, user="root", check=False)
            self.assertNotEqual(0, r.returncode, "%s visible in the qube" % path)
        self.assertEqual("beta-secret\n", self.qout("beta", "cat /home/user/beta-secret"))

    # --- files ---

    def test_template_root_not_writable(self):
        layers = self.root_layers("bb")
        before = tree_digest(layers)
        self.new_appvm("scribble")
        self.start("scribble")
        self.qrun("scribble", "echo pwned > /bin/pwned && echo 'evil:x:0:0::/:/bin/sh' "
                              ">> /etc/passwd && rm -f /bin/cat.bak; rm /bin/ls && "
                              "chmod 777 /etc", user="root")
        self.assertEqual("pwned\n", self.qout("scribble", "cat /bin/pwned"))
        self.assertEqual(before, tree_digest(layers), "the template's layers changed")
        # the other qube on the same template sees none of it
        self.assertEqual(1, self.qrun("alpha", "grep -q evil /etc/passwd",
                                      check=False).returncode)
        self.assertEqual(0, self.qrun("alpha", "[ -e /bin/ls ]", check=False).returncode)
        # and after a restart it is all gone
        self.shutdown("scribble")
        self.assertEqual(before, tree_digest(layers))
        self.assertEqual("0", self.volume_info("bb")["used_revision"])
        self.start("scribble")
        self.assertEqual("clean\n", self.qout(
            "scribble", "[ ! -e /bin/pwned ] && ! grep -q evil /etc/passwd && [ -e /bin/ls ] "
                        "&& echo clean"))
        self.kill("scribble")

    def test_user_cannot_write_system_files(self):
        for cmd in ("echo x > /etc/passwd", "touch /bin/x", "touch /root/x",
                    "cat /etc/shadow"):
            r = self.qrun("alpha", cmd, check=False)
            self.assertNotEqual(0, r.returncode, "user could: %s" % cmd)

    # --- network ---

    def test_no_network_but_loopback(self):
        self.assertEqual(["lo"], self.qout("alpha", "tail -n +3 /proc/net/dev | "
                                                    "cut -d: -f1 | tr -d ' '").split())
        self.assertEqual("", self.qout("alpha", "ip -4 route 2>&1; ip -6 route 2>/dev/null "
                                                "| grep -v '^$' || true").strip())
        addrs = ["127.0.0.1"] + ([host_ip()] if host_ip() else [])
        for addr in addrs:
            lst = Listener(addr)
            self.addCleanup(lst.close)
            r = self.qrun("alpha", "nc -w 1 %s %d </dev/null" % (addr, lst.port),
                          user="root", check=False, timeout=10)
            self.assertNotEqual(0, r.returncode, "connected to %s" % addr)
            self.assertNotIn(b"host-secret", r.stdout)
            r = self.qrun("alpha", "wget -q -T 1 -O - http://%s:%d/" % (addr, lst.port),
                          check=False, timeout=10)
            self.assertNotEqual(0, r.returncode)
            self.assertEqual(0, lst.accepted, "the host accepted a connection from the qube")
        # loopback inside works, and is the qube's own
        out = self.qout("alpha", "nc -l -p 5555 > /tmp/got & sleep 0.2; "
                                 "echo inside | nc -w 1 127.0.0.1 5555; sleep 0.2; cat /tmp/got")
        self.assertEqual("inside\n", out)

    # --- privileges ---

    def test_cannot_mount(self):
        for user in ("root", None):
            r = self.qrun("alpha", "mount -t tmpfs none /mnt", user=user, check=False)
            self.assertNotEqual(0, r.returncode)
            r = self.qrun("alpha", "umount /proc || umount -l /home", user=user, check=False)
            self.assertNotEqual(0, r.returncode)
        self.assertNotIn("/mnt", self.qout("alpha", "cat /proc/mounts"))

    def test_blocked_syscalls(self):
        probe = self.install_probe("alpha")
        for user in ("root", None):
            r = self.qrun("alpha", probe, user=user, check=False)
            out = r.stdout.decode()
            if os.environ.get("PROBE_VERBOSE"):
                print(out)
            self.assertEqual(0, r.returncode, "allowed as %s:\n%s" % (user or "user", out))
            for name in ("keyctl", "add_key", "bpf", "unshare_user", "unshare_mount",
                         "unshare_net", "mount_tmpfs", "mount_proc", "umount_proc",
                         "init_module", "finit_module", "delete_module", "kexec_load",
                         "reboot", "swapoff", "open_by_handle_at", "perf_event_open",
                         "userfaultfd", "io_uring_setup", "raw_socket_inet",
                         "raw_socket_packet", "ptrace_agent", "process_vm_readv_agent",
                         "setns_host_net", "kmsg", "mknod"):
                self.assertIn("%s: blocked" % name, out)
        r = self.qrun("alpha", "insmod /nonexistent.ko; modprobe loop", user="root",
                      check=False)
        self.assertNotEqual(0, r.returncode)

    def test_sockets_of_other_qubes_and_the_host_unreachable(self):
        """Unix sockets: another qube's (abstract: per network namespace), the host's
        abstract ones, the daemon's Admin API socket, the qrexec router's and another
        qube's agent socket (paths: not in the qube's file system)."""
        host = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(host.close)
        host_name = "dispenser-iso-host-%d" % os.getpid()
        host.bind("\0" + host_name)
        host.listen()
        beta_probe = self.install_probe("beta")
        self.qrun("beta", "setsid %s listen @dispenser-iso-beta </dev/null >/tmp/listen.out "
                          "2>&1 &" % beta_probe)
        deadline = time.monotonic() + 5
        while "listening" not in self.qout("beta", "cat /tmp/listen.out"):
            self.assertLess(time.monotonic(), deadline, "the listener in beta never started")
            time.sleep(0.05)
        # the check can fail: from beta itself the listener is there
        r = self.qrun("beta", beta_probe + " connect @dispenser-iso-beta", check=False)
        self.assertIn("@dispenser-iso-beta: ALLOWED", r.stdout.decode())
        targets = ["@dispenser-iso-beta", "@" + host_name, self.d.socket,
                   os.path.join(self.d.runtime_dir, "qrexec.sock"),
                   os.path.join(self.d.runtime_dir, "qubes", "beta", "agent.sock")]
        alpha_probe = self.install_probe("alpha")
        for user in ("root", None):
            r = self.qrun("alpha", "%s connect %s" % (alpha_probe, " ".join(targets)),
                          user=user, check=False)
            out = r.stdout.decode()
            self.assertEqual(0, r.returncode, "reached as %s:\n%s" % (user or "user", out))
            for t in targets:
                self.assertIn("%s: blocked" % t, out)
        unix_table = self.qout("alpha", "cat /proc/net/unix")
        self.assertNotIn("dispenser-iso", unix_table)

    def test_uid_mapping(self):
        umap = self.qout("alpha", "cat /proc/self/uid_map").split()
        self.assertEqual(umap, self.qout("alpha", "cat /proc/self/gid_map").split())
        base = int(umap[1])  # the qube's own range: a slot above the canonical one
        self.assertEqual(["0", str(RANGE_COUNT)], [umap[0], umap[2]])
        self.assertGreaterEqual(base, RANGE_BASE + RANGE_COUNT)
        self.assertEqual(0, (base - RANGE_BASE) % RANGE_COUNT)
        self.qrun("alpha", "setsid sleep 8881 </dev/null >/dev/null 2>&1 &", user="root")
        self.qrun("alpha", "setsid sleep 8882 </dev/null >/dev/null 2>&1 &")
        deadline = time.monotonic() + 3
        while True:  # the background sleeps may not have exec'd yet
            uids = self.qube_uids("alpha")
            if (b"sleep 8881" in uids and b"sleep 8882" in uids) or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        for cmd, uid in uids.items():
            self.assertGreaterEqual(uid, base, "%r runs as host uid %d" % (cmd, uid))
        self.assertEqual(base, uids.get(b"sleep 8881"), uids)  # root inside
        self.assertEqual(base + 1000, uids[b"sleep 8882"])  # user inside
        self.assertEqual(base, uids[b"dispenser-agent"])
        # files root creates inside are root's inside; on the host the volumes stay owned
        # by the canonical range, which no qube runs as (idmapped mounts)
        self.qrun("alpha", "echo x > /home/user/rootfile", user="root")
        self.assertEqual("0\n", self.qout("alpha", "stat -c %u /home/user/rootfile"))
        private = os.path.join(self.d.state_dir, "volumes", self.qube_uuid("alpha"), "private")
        found = [os.path.join(r, "rootfile") for r, _, files in os.walk(private)
                 if "rootfile" in files]
        self.assertTrue(found, "rootfile not in %s" % private)
        self.assertEqual(RANGE_BASE, os.stat(found[0]).st_uid)
        self.qrun("alpha", "kill $(pidof sleep)", user="root")

    def qube_uids(self, name):
        """{cmdline: host uid} of the qube's processes, seen from the host."""
        with open(os.path.join(unified_cgroup_dir(self.d, name), "cgroup.procs")) as f:
            pids = [int(p) for p in f.read().split()]
        uids = {}
        for pid in pids:
            try:
                with open("/proc/%d/cmdline" % pid, "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").strip()
            except OSError:
                continue
            uid = proc_uid(pid)
            if uid is not None:
                uids[cmd] = uid
        return uids

    def test_capabilities_nnp_seccomp(self):
        forbidden = {"CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13, "CAP_SYS_MODULE": 16,
                     "CAP_SYS_RAWIO": 17, "CAP_SYS_PTRACE": 19, "CAP_SYS_ADMIN": 21,
                     "CAP_SYS_BOOT": 22, "CAP_SYS_RESOURCE": 24, "CAP_SYS_TIME": 25,
                     "CAP_MAC_ADMIN": 33, "CAP_SYSLOG": 34, "CAP_BPF": 39, "CAP_PERFMON": 38,
                     "CAP_DAC_READ_SEARCH": 2, "CAP_LINUX_IMMUTABLE": 9, "CAP_IPC_LOCK": 14}
        for user, path in (("root", "/proc/self/status"), (None, "/proc/self/status"),
                           ("root", "/proc/1/status")):
            fields = dict(line.split(":\t", 1) for line in
                          self.qout("alpha", "cat %s" % path, user=user).splitlines()
                          if ":\t" in line)
            bnd = int(fields["CapBnd"], 16)
            for cap, bit in forbidden.items():
                self.assertFalse(bnd & (1 << bit), "%s in the bounding set (%s %s)"
                                 % (cap, user, path))
            self.assertEqual("1", fields["NoNewPrivs"].strip())
            self.assertEqual("2", fields["Seccomp"].strip())
            if user is None:
                self.assertEqual(0, int(fields["CapEff"], 16))
                self.assertEqual(0, int(fields["CapPrm"], 16))

    # --- resources ---

    def test_memory_limit(self):
        self.new_appvm("small")
        self.set_prop("small", "memory", 64)
        self.set_prop("small", "maxmem", 0)
        self.start("small")
        limits = self.memory_files("small")
        self.assertEqual(64 << 20, limits["limit"])
        probe = self.install_probe("small")
        r = self.qrun("small", probe + " hog 200", check=False, timeout=30)
        self.assertNotEqual(0, r.returncode, r.stdout)
        self.assertNotIn(b"survived", r.stdout)
        self.assertIn(r.returncode, (137, -9, 128 + 9), "not killed by SIGKILL: %r" % r)
        # the qube, its agent and the host are fine
        self.assertEqual("alive\n", self.qout("small", "echo alive"))
        self.assertEqual("Running", self.api_state("small"))
        self.assertTrue(self.d.running())
        self.assertLessEqual(self.current_state("small")["mem"], 64 * 1024)
        self.assertGreaterEqual(self.memory_files("small")["oom_kills"], 1)
        # and a hog within the limit is not
        self.assertIn(b"survived", self.qrun("small", probe + " hog 16").stdout)
        self.kill("small")

    def memory_files(self, name):
        """The memory limit and OOM kill count of the qube's cgroup (v1 or v2)."""
        for d in qube_cgroup_dirs(self.d, name):
            v1 = os.path.join(d, "memory.limit_in_bytes")
            v2 = os.path.join(d, "memory.max")
            if os.path.exists(v1):
                with open(v1) as f:
                    limit = int(f.read())
                with open(os.path.join(d, "memory.oom_control")) as f:
                    stats = dict(l.split() for l in f if l.strip())
                return {"limit": limit, "oom_kills": int(stats.get("oom_kill", 0))}
            if os.path.exists(v2):
                with open(v2) as f:
                    limit = int(f.read())
                with open(os.path.join(d, "memory.events")) as f:
                    stats = dict(l.split() for l in f if l.strip())
                return {"limit": limit, "oom_kills": int(stats.get("oom_kill", 0))}
        self.fail("no memory cgroup for %s" % name)

    def test_paused_qube_uses_no_cpu(self):
        self.new_appvm("spinner")
        self.start("spinner")
        self.qrun("spinner", "setsid sh -c 'while :; do :; done' </dev/null >/dev/null 2>&1 &")
        # "spins": it keeps gaining CPU time; how fast depends on how busy the host is
        def gains_cpu(since, what):
            deadline = time.monotonic() + 20
            while self.current_state("spinner")["cputime"] - since < 100 * 1000 * 1000:
                self.assertLess(time.monotonic(), deadline, what)
                time.sleep(0.05)
        gains_cpu(self.current_state("spinner")["cputime"], "the loop does not spin")
        self.ok("admin.vm.Pause", dest="spinner")
        p0 = self.current_state("spinner")["cputime"]
        time.sleep(0.5)
        p1 = self.current_state("spinner")["cputime"]
        self.assertLess(p1 - p0, 2 * 1000 * 1000, "a paused qube used %d ns" % (p1 - p0))
        self.ok("admin.vm.Unpause", dest="spinner")
        gains_cpu(p1, "no CPU after unpause")
        self.kill("spinner")
        self.assert_no_trace("spinner")


def tree_digest(dirs):
    """Hash of names, owners, modes and contents of everything under dirs."""
    h = hashlib.sha256()
    for top in dirs:
        for root, subdirs, files in os.walk(top):
            subdirs.sort()
            for name in sorted(files + subdirs):
                path = os.path.join(root, name)
                st = os.lstat(path)
                h.update(("%s %o %d %d\n" % (os.path.relpath(path, top), st.st_mode, st.st_uid,
                                             st.st_gid)).encode())
                if os.path.isfile(path) and not os.path.islink(path):
                    with open(path, "rb") as f:
                        h.update(f.read())
    return h.hexdigest()


if __name__ == "__main__":
    unittest.main()
