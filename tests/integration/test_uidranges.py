"""A host uid range per qube (docs/engine.md, "A host uid range per qube"): two qubes'
roots are different host users; volumes stay owned by the canonical range and each qube
sees them through idmapped mounts; a qube keeps its slot across starts and daemon
restarts; a slot is released when the qube's volumes are removed, and only then reused;
a disposable gets a range of its own and gives it back; `container.uid-ranges=shared`
keeps the old single range."""
import os
import time
import unittest

from harness import Daemon, parse_reply, run_tool
from test_engine import (RANGE_BASE, RANGE_COUNT, EngineTestCase, build_template,
                         engine_skip_reason, kill_all_qubes, proc_uid, qrun,
                         unified_cgroup_dir)


def slot_links(d):
    """{slot: uuid} as recorded in STATE/container/uids."""
    top = os.path.join(d.state_dir, "container", "uids")
    if not os.path.isdir(top):
        return {}
    return {int(n): os.readlink(os.path.join(top, n)) for n in os.listdir(top)}


def host_ids_of_tree(top):
    """Every (uid, gid) owning something under top, as the host sees it."""
    ids = set()
    for root, dirs, files in os.walk(top):
        for n in dirs + files:
            st = os.lstat(os.path.join(root, n))
            ids.add((st.st_uid, st.st_gid))
    return ids


@unittest.skipIf(engine_skip_reason(), engine_skip_reason())
class UidRanges(EngineTestCase):
    PER_CLASS = False  # slots are counted from a fresh state dir

    def uid_map(self, name):
        return [int(x) for x in self.qout(name, "cat /proc/self/uid_map").split()]

    def range_of(self, name):
        inside, base, count = self.uid_map(name)
        self.assertEqual((0, RANGE_COUNT), (inside, count))
        self.assertEqual(0, (base - RANGE_BASE) % RANGE_COUNT, base)
        return base

    def root_pid_uid(self, name):
        with open(os.path.join(unified_cgroup_dir(self.d, name), "cgroup.procs")) as f:
            pids = [int(p) for p in f.read().split()]
        return {proc_uid(p) for p in pids} - {None}

    def test_two_qubes_roots_are_different_host_users(self):
        self.new_appvm("a")
        self.new_appvm("b")
        self.start("a")
        self.start("b")
        ra, rb = self.range_of("a"), self.range_of("b")
        self.assertNotEqual(ra, rb)
        for base in (ra, rb):  # neither is the canonical range the volumes are owned by
            self.assertGreaterEqual(base, RANGE_BASE + RANGE_COUNT)
        self.assertEqual({ra}, self.root_pid_uid("a"))  # the agent: root inside
        self.assertEqual({rb}, self.root_pid_uid("b"))
        self.qrun("a", "setsid sleep 7771 </dev/null >/dev/null 2>&1 &", user="root")
        self.qrun("b", "setsid sleep 7772 </dev/null >/dev/null 2>&1 &", user="root")
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and not (
                self.root_pid_uid("a") - {ra} or len(self.root_pid_uid("b")) > 0):
            time.sleep(0.02)
        self.assertEqual({ra}, self.root_pid_uid("a"))
        self.assertEqual({rb}, self.root_pid_uid("b"))

    def test_files_root_makes_are_no_other_qubes(self):
        self.new_appvm("a")
        self.new_appvm("b")
        self.start("a")
        self.start("b")
        ra, rb = self.range_of("a"), self.range_of("b")
        self.qrun("a", "echo x > /home/user/by-root; echo y > /tmp/in-tmp", user="root")
        self.assertEqual("0 0\n", self.qout("a", "stat -c '%u %g' /home/user/by-root"))
        # on disk: the canonical range, which no qube runs as
        private = os.path.join(self.d.state_dir, "volumes", self.qube_uuid("a"), "private")
        found = [os.path.join(r, "by-root") for r, _, f in os.walk(private) if "by-root" in f]
        self.assertTrue(found)
        owner = os.stat(found[0]).st_uid
        self.assertEqual(RANGE_BASE, owner)
        self.assertFalse(rb <= owner < rb + RANGE_COUNT)
        self.assertFalse(ra <= owner < ra + RANGE_COUNT)
        # a file on a tmpfs of the qube belongs to its own range on the host
        with open(os.path.join(unified_cgroup_dir(self.d, "a"), "cgroup.procs")) as f:
            rootdir = "/proc/%d/root" % min(int(p) for p in f.read().split())
        self.assertEqual(ra, os.stat(rootdir + "/tmp/in-tmp").st_uid)
        # b, root inside, cannot see nor reach a's files; its own show as its own
        self.assertEqual("1000 1000\n", self.qout("b", "stat -c '%u %g' /home/user"))

    def test_template_layers_stay_canonical_and_unchanged(self):
        layers = self.root_layers(self.TEMPLATE)
        before = {l: host_ids_of_tree(l) for l in layers}
        for ids in before.values():
            for uid, gid in ids:
                self.assertTrue(RANGE_BASE <= uid < RANGE_BASE + RANGE_COUNT, uid)
        self.new_appvm("a")
        self.start("a")
        self.qrun("a", "echo changed > /etc/hostname-mark; chown 5 /bin; touch /etc/passwd",
                  user="root")
        self.assertEqual("0\n", self.qout("a", "stat -c %u /etc"))  # root inside
        self.kill("a")
        self.assertEqual(before, {l: host_ids_of_tree(l) for l in layers})
        self.assertEqual(layers, self.root_layers(self.TEMPLATE))
        for l in layers:
            self.assertFalse(os.path.exists(os.path.join(l, "etc", "hostname-mark")))

    def test_slot_kept_across_starts_and_daemon_restarts(self):
        self.new_appvm("a")
        self.new_appvm("b")
        self.start("a")
        self.start("b")
        ra, rb = self.range_of("a"), self.range_of("b")
        self.assertNotEqual(ra, rb)
        links = slot_links(self.d)
        self.assertEqual(2, len(links))
        self.kill("a")
        self.start("a")
        self.assertEqual(ra, self.range_of("a"))
        self.d.kill()  # a crash: b keeps running, a is adopted; both keep their slots
        self.d.start()
        self.assertEqual(rb, self.range_of("b"))
        self.kill("a")
        self.kill("b")
        self.d.restart()
        self.start("b")
        self.start("a")
        self.assertEqual((ra, rb), (self.range_of("a"), self.range_of("b")))
        self.assertEqual(links, slot_links(self.d))

    def test_slot_released_with_the_volumes_and_reused_after(self):
        self.new_appvm("a")
        self.start("a")
        ra = self.range_of("a")
        uuid = self.qube_uuid("a")
        slot = (ra - RANGE_BASE) // RANGE_COUNT
        self.assertEqual({slot: uuid}, slot_links(self.d))
        self.kill("a")
        self.assertEqual({slot: uuid}, slot_links(self.d))  # stopped: still its own
        self.new_appvm("b")
        self.start("b")
        self.assertNotEqual(ra, self.range_of("b"))
        self.kill("b")
        self.ok("admin.vm.Remove", dest="a")
        self.assertFalse(os.path.exists(os.path.join(self.d.state_dir, "volumes", uuid)))
        self.assertNotIn(slot, slot_links(self.d))
        self.new_appvm("c")
        self.start("c")
        self.assertEqual(ra, self.range_of("c"))  # the lowest free slot: a's, now free

    def test_slot_of_a_qube_removed_while_the_daemon_was_down_is_swept(self):
        self.new_appvm("a")
        self.start("a")
        self.kill("a")
        uuid = self.qube_uuid("a")
        self.assertIn(uuid, slot_links(self.d).values())
        # the daemon killed after the removal of a's row, before its slot's: simulated by
        # a link naming a qube the database does not have
        top = os.path.join(self.d.state_dir, "container", "uids")
        os.symlink("00000000-dead-beef-0000-000000000000", os.path.join(top, "77"))
        self.d.kill()
        self.d.start()
        self.assertEqual([uuid], list(slot_links(self.d).values()))

    def test_disposable_gets_its_own_range_and_gives_it_back(self):
        self.new_appvm("dvm")
        self.set_prop("dvm", "template_for_dispvms", True)
        self.start("dvm")
        rd = self.range_of("dvm")
        self.kill("dvm")
        before = slot_links(self.d)
        r = run_tool(self.d, "qvm-run", "--dispvm=dvm", "-p", "cat /proc/self/uid_map")
        self.assertEqual(0, r.returncode, r.stderr)
        inside, base, count = [int(x) for x in r.stdout.split()]
        self.assertNotEqual(rd, base)
        self.assertGreaterEqual(base, RANGE_BASE + RANGE_COUNT)
        self.settled(lambda: self.assertEqual(before, slot_links(self.d)), timeout=10)


@unittest.skipIf(engine_skip_reason(), engine_skip_reason())
class SharedRange(unittest.TestCase):
    def test_shared_option_keeps_one_range(self):
        d = Daemon(extra_args=["--engine-option", "container.uid-ranges=shared"])
        self.addCleanup(d.cleanup)
        d.start()
        self.addCleanup(kill_all_qubes, d)
        build_template(d, "bb")
        for name in ("s1", "s2"):
            r = parse_reply(d.call("admin.vm.Create.AppVM", "bb", "dom0",
                                   b"name=%s label=red" % name.encode()))
            self.assertTrue(r.ok, r)
            self.assertTrue(parse_reply(d.call("admin.vm.Start", dest=name)).ok)
            r = qrun(d, name, "cat /proc/self/uid_map")
            self.assertEqual(["0", str(RANGE_BASE), str(RANGE_COUNT)], r.stdout.decode().split())
        self.assertEqual([], os.listdir(os.path.join(d.state_dir, "container", "uids")))

    def test_bad_value_makes_the_engine_unavailable(self):
        d = Daemon(extra_args=["--engine-option", "container.uid-ranges=sometimes"])
        self.addCleanup(d.cleanup)
        d.start()
        r = parse_reply(d.call("admin.vm.Create.StandaloneVM", "", "dom0",
                               b"name=opt label=red"))
        self.assertTrue(r.ok, r)
        r = parse_reply(d.call("admin.vm.Start", dest="opt"))
        self.assertEqual("QubesException", r.exc)
        self.assertIn("container.uid-ranges: 'sometimes' is not auto, per-qube, copies or shared",
                      r.message)


if __name__ == "__main__":
    unittest.main()
