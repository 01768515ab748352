"""Per-qube uid ranges without idmapped mounts (docs/engine.md, "A host uid range per
qube", container.uid-ranges=copies: what a kernel without idmapped overlay layers gets):
each qube stands on copies of its layers chowned into its own range. Two qubes' roots
are different host users, neither canonical; the template's files are readable and its
layers stay canonical and unchanged; what a qube writes lands on disk as the canonical
range; when a slot is given back no file of its previous owner is left (its copies go
first), and the next owner of the slot starts clean; leftovers of a killed daemon (a
half-made copy, the copies of a slot nobody holds, of a layer that is gone) are removed
at the next start, while the copies a running qube stands on stay."""
import os
import unittest

from harness import run_tool
from test_engine import RANGE_BASE, RANGE_COUNT, EngineTestCase, engine_skip_reason
from test_uidranges import host_ids_of_tree, slot_links

SECRET = "a-secret-of-the-first-owner"


def shifted_dir(d, slot=None):
    top = os.path.join(d.state_dir, "container", "shifted")
    return top if slot is None else os.path.join(top, str(slot))


def entries(path):
    return os.listdir(path) if os.path.isdir(path) else []


def files_owned_in(top, base):
    """Paths under top owned (uid or gid) by an id of the range at base."""
    found = []
    for root, dirs, files in os.walk(top):
        for n in dirs + files:
            p = os.path.join(root, n)
            st = os.lstat(p)
            if base <= st.st_uid < base + RANGE_COUNT or base <= st.st_gid < base + RANGE_COUNT:
                found.append(p)
    return found


def files_containing(top, text):
    found = []
    for root, _, files in os.walk(top):
        for n in files:
            p = os.path.join(root, n)
            if os.path.isfile(p) and not os.path.islink(p):
                with open(p, "rb") as f:
                    if text.encode() in f.read():
                        found.append(p)
    return found


@unittest.skipIf(engine_skip_reason(), engine_skip_reason())
class UidRangesOnCopies(EngineTestCase):
    PER_CLASS = False  # slots are counted from a fresh state dir

    @classmethod
    def daemon_args(cls):
        return ["--engine-option", "container.uid-ranges=copies"]

    def range_of(self, name):
        inside, base, count = [int(x) for x in self.qout(name, "cat /proc/self/uid_map").split()]
        self.assertEqual((0, RANGE_COUNT), (inside, count))
        self.assertEqual(0, (base - RANGE_BASE) % RANGE_COUNT, base)
        return base

    def slot_of(self, base):
        return (base - RANGE_BASE) // RANGE_COUNT

    def test_roots_differ_and_the_template_is_readable(self):
        layers = self.root_layers(self.TEMPLATE)
        before = {l: host_ids_of_tree(l) for l in layers}
        self.new_appvm("a")
        self.new_appvm("b")
        self.start("a")
        self.start("b")
        ra, rb = self.range_of("a"), self.range_of("b")
        self.assertNotEqual(ra, rb)
        for base in (ra, rb):
            self.assertGreaterEqual(base, RANGE_BASE + RANGE_COUNT)  # never the canonical
        # no idmapped mount: the copies are what the qube stands on
        self.assertNotIn("idmapped", self.qout("a", "cat /proc/self/mountinfo"))
        for name in ("a", "b"):
            self.assertEqual("0 0\n", self.qout(name, "stat -c '%u %g' /etc/passwd", user="root"))
            self.assertIn("root:", self.qout(name, "cat /etc/passwd"))  # as the user
            self.assertEqual("hi\n", self.qout(name, "echo hi | cat"))
        # the copies belong to each qube's range on the host, nothing else of theirs
        for base in (ra, rb):
            copies = shifted_dir(self.d, self.slot_of(base))
            ids = host_ids_of_tree(copies) - {(0, 0)}  # (0, 0): the directory itself
            self.assertTrue(ids)
            for uid, gid in ids:
                self.assertTrue(base <= uid < base + RANGE_COUNT, (copies, uid))
        self.qrun("a", "echo x > /etc/mark-a; chown 5 /bin", user="root")
        self.assertEqual("0\n", self.qout("a", "stat -c %u /etc"))
        self.assertEqual("1\n", self.qrun("b", "test -e /etc/mark-a; echo $?",
                                          check=False).stdout.decode())
        self.kill("a")
        self.kill("b")
        self.assertEqual(before, {l: host_ids_of_tree(l) for l in layers})
        self.assertEqual(layers, self.root_layers(self.TEMPLATE))

    def test_writes_land_canonical_and_come_back(self):
        self.new_appvm("a")
        self.start("a")
        ra = self.range_of("a")
        self.qrun("a", "echo x > /home/user/by-root; echo y > /home/user/by-user", user="root")
        self.qrun("a", "chown user:user /home/user/by-user", user="root")
        self.kill("a")
        private = os.path.join(self.d.state_dir, "volumes", self.qube_uuid("a"), "private")
        self.settled(lambda: self.assertEqual([], files_owned_in(private, ra)))
        owners = {}
        for root, _, files in os.walk(private):
            for n in ("by-root", "by-user"):
                if n in files:
                    owners[n] = os.stat(os.path.join(root, n)).st_uid
        self.assertEqual({"by-root": RANGE_BASE, "by-user": RANGE_BASE + 1000}, owners)
        self.start("a")
        self.assertEqual(ra, self.range_of("a"))  # its slot is kept
        self.assertEqual("0 x\n1000 y\n", self.qout(
            "a", "for f in by-root by-user; do echo $(stat -c %u /home/user/$f) "
                 "$(cat /home/user/$f); done"))

    def test_a_reused_slot_holds_no_file_of_its_previous_owner(self):
        self.new_appvm("a")
        self.start("a")
        ra = self.range_of("a")
        slot = self.slot_of(ra)
        uuid = self.qube_uuid("a")
        self.qrun("a", "echo %s > /home/user/secret" % SECRET, user="root")
        self.kill("a")
        self.start("a")  # now a copy of its own private layer holds the secret
        self.assertIn(SECRET, self.qout("a", "cat /home/user/secret"))
        copies = shifted_dir(self.d, slot)
        self.assertTrue([n for n in os.listdir(copies) if n.startswith(uuid + ".")])
        self.assertTrue(files_containing(copies, SECRET))
        self.kill("a")
        self.ok("admin.vm.Remove", dest="a")
        self.settled(lambda: self.assertNotIn(slot, slot_links(self.d)))
        self.assertEqual([], [n for n in entries(copies) if n.startswith(uuid + ".")])
        self.assertEqual([], files_containing(self.d.state_dir, SECRET))
        # every file of the slot's range left is a copy of the template's layers
        for p in files_owned_in(self.d.state_dir, ra):
            self.assertTrue(p.startswith(copies + "/"), p)
        self.new_appvm("c")
        self.start("c")
        self.assertEqual(ra, self.range_of("c"))  # the lowest free slot: a's
        self.assertEqual("1\n", self.qrun("c", "test -e /home/user/secret; echo $?",
                                          check=False).stdout.decode())
        self.assertEqual([], files_containing(self.d.state_dir, SECRET))

    def test_disposables_on_copies(self):
        self.new_appvm("dvm")
        self.set_prop("dvm", "template_for_dispvms", True)
        self.start("dvm")
        rd = self.range_of("dvm")
        self.kill("dvm")
        before = slot_links(self.d)
        bases = set()
        for _ in range(2):  # the second finds the first's copies of the templates' layers
            r = run_tool(self.d, "qvm-run", "--dispvm=dvm", "-p",
                         "cat /proc/self/uid_map; cat /etc/passwd | head -1")
            self.assertEqual(0, r.returncode, r.stderr)
            inside, base, count = [int(x) for x in r.stdout.split()[:3]]
            self.assertIn("root:", r.stdout)
            self.assertNotEqual(rd, base)
            self.assertGreaterEqual(base, RANGE_BASE + RANGE_COUNT)
            bases.add(base)
            # given back once its remains are gone, its upper with the range's files
            self.settled(lambda: self.assertEqual(before, slot_links(self.d)), timeout=20)
            self.assertEqual([], files_owned_in(os.path.join(self.d.state_dir, "volatile"),
                                                base))

    def test_leftovers_go_at_restart_and_copies_in_use_stay(self):
        self.new_appvm("a")
        self.start("a")
        slot = self.slot_of(self.range_of("a"))
        copies = shifted_dir(self.d, slot)
        in_use = sorted(os.listdir(copies))
        # what a daemon killed at the wrong moment leaves: a half-made copy, the copies
        # of a slot that was released, of a layer that went
        os.makedirs(os.path.join(copies, ".tmp-%s" % in_use[0], "etc"))
        os.makedirs(os.path.join(shifted_dir(self.d, 77), "stale", "etc"))
        os.makedirs(os.path.join(copies, "00000000-dead-beef-0000-000000000000.root.9", "etc"))
        self.d.kill()
        self.d.start()
        self.assertEqual(in_use, sorted(os.listdir(copies)))  # a runs on, adopted
        self.assertFalse(os.path.exists(shifted_dir(self.d, 77)))
        self.assertIn("root:", self.qout("a", "cat /etc/passwd"))
        self.qrun("a", "echo kept > /home/user/after-restart", user="root")
        self.kill("a")  # the adopted qube's commit gives its files back to the canonical range
        private = os.path.join(self.d.state_dir, "volumes", self.qube_uuid("a"), "private")

        def owners():
            return [os.stat(os.path.join(r, "after-restart")).st_uid
                    for r, _, f in os.walk(private) if "after-restart" in f]
        self.settled(lambda: self.assertEqual([RANGE_BASE], owners()))
        self.start("a")
        self.assertEqual("0 kept\n", self.qout(
            "a", "echo $(stat -c %u /home/user/after-restart) $(cat /home/user/after-restart)"))


if __name__ == "__main__":
    unittest.main()
