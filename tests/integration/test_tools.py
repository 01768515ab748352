"""Tools a Qubes user reaches for next (issue 18), driven as a user would against a
private daemon with the container engine: qvm-check; what they change is checked through
the raw Admin API."""

import unittest

import harness
from harness import run_tool
from test_engine import EngineTestCase


@unittest.skipUnless(harness.cli_available(), "CLI tools not built")
class Check(EngineTestCase):
    """qvm-check: exit status 0 all pass, 3 some, 1 none or an unknown name; messages on
    stderr as upstream's logger writes them."""

    @classmethod
    def populate(cls, d):
        super().populate(d)
        harness.ok_content(d, "admin.vm.Create.AppVM", "bb", "dom0", b"name=idle label=red")

    def check(self, code, *args):
        r = run_tool(self.d, "qvm-check", *args)
        self.assertEqual(code, r.returncode, "qvm-check %s: %s%s" % (args, r.stdout, r.stderr))
        self.assertEqual("", r.stdout)
        return r.stderr

    def test_exists(self):
        self.assertEqual("qvm-check: bb: exists\nqvm-check: idle: exists\n",
                         self.check(0, "idle", "bb"))
        self.assertEqual("", self.check(0, "-q", "idle"))
        self.assertEqual("qvm-check: bb: exists\n", self.check(0, "--all", "--exclude", "idle"))

    def test_unknown_names_are_collected(self):
        # upstream keeps the closing quote of "no such domain: 'NAME'"
        self.assertEqual("qvm-check: idle: exists\nqvm-check: nosuch': non-existent!\n",
                         self.check(1, "idle", "nosuch"))
        self.assertEqual("qvm-check: a': non-existent!\nqvm-check: b': non-existent!\n",
                         self.check(1, "b", "a"))
        # below verbosity 1 only the warning is left, as the bare message
        self.assertEqual("nosuch': non-existent!\n", self.check(1, "-q", "idle", "nosuch"))

    def test_usage_errors(self):
        r = run_tool(self.d, "qvm-check")
        self.assertEqual(2, r.returncode)
        self.assertIn("one of the arguments --all VMNAME is required", r.stderr)
        r = run_tool(self.d, "qvm-check", "--exclude", "bb", "idle")
        self.assertEqual(2, r.returncode)

    def test_states_and_classes(self):
        self.assertEqual("qvm-check: None of qubes: running\n", self.check(1, "--running",
                                                                             "idle"))
        self.assertEqual("qvm-check: bb: template\n", self.check(3, "--template", "bb",
                                                                  "idle"))
        self.assertEqual("qvm-check: None of qubes: networked\n",
                         self.check(1, "--networked", "idle"))
        self.start("idle")
        self.addCleanup(self.d.call, "admin.vm.Kill", dest="idle")
        self.assertEqual("qvm-check: idle: running\n", self.check(3, "--running", "idle", "bb"))
        self.assertEqual("qvm-check: None of qubes: paused\n", self.check(1, "--paused", "idle"))
        self.ok("admin.vm.Pause", dest="idle")
        self.assertEqual("qvm-check: idle: running, paused\n",
                         self.check(0, "--paused", "--running", "idle"))
        # a check with unknown names: they make it a failure whatever the others are
        self.assertEqual("qvm-check: idle: paused\nqvm-check: x': non-existent!\n",
                         self.check(1, "--paused", "idle", "x"))


if __name__ == "__main__":
    unittest.main()
