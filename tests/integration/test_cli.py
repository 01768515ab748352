"""Our qvm-* tools against a private daemon: outputs and exit codes as upstream's
(research notes, section 5), and that what they do shows up through the raw API."""

import os
import queue
import signal
import socket
import subprocess
import threading
import time
import unittest

import harness
from harness import DaemonTestCase

SKIP_REASON = ("CLI tools not built: no %s (build src/cli, or set QVM_BIN_DIR)"
               % harness.tool_path("qvm-ls"))


@unittest.skipUnless(harness.cli_available(), SKIP_REASON)
class CliCase(DaemonTestCase):
    @classmethod
    def populate(cls, d):
        harness.ok_content(d, "admin.vm.Create.TemplateVM", "", "dom0", b"name=tpl label=black")
        harness.ok_content(d, "admin.vm.Create.AppVM", "tpl", "dom0", b"name=work label=red")

    def run_ok(self, *args, input=None):
        r = harness.run_tool(self.d, *args, input=input)
        self.assertEqual(0, r.returncode, "%s: %s%s" % (args, r.stdout, r.stderr))
        return r.stdout

    def run_fail(self, code, *args, input=None):
        r = harness.run_tool(self.d, *args, input=input)
        self.assertEqual(code, r.returncode, "%s: %s%s" % (args, r.stdout, r.stderr))
        return r


class Help(CliCase):
    PER_CLASS = True

    def test_help_everywhere(self):
        for tool in ["qvm-ls", "qvm-prefs", "qubes-prefs", "qvm-features", "qvm-tags",
                     "qvm-create", "qvm-remove", "qvm-events", "qvm-check", "qvm-service"]:
            with self.subTest(tool=tool):
                out = self.run_ok(tool, "--help")
                self.assertTrue(out.startswith("usage: " + tool), out[:200])

    def test_no_daemon(self):
        env_daemon = harness.Daemon()
        self.addCleanup(env_daemon.cleanup)  # never started: its socket does not exist
        r = harness.run_tool(env_daemon, "qvm-ls")
        self.assertNotEqual(0, r.returncode)
        self.assertTrue(r.stderr)


class Create(CliCase):
    def test_create_and_list(self):
        self.assertEqual("", self.run_ok("qvm-create", "-t", "tpl", "-l", "blue", "new"))
        self.assertEqual((False, "vm", "tpl"), self.get_prop("new", "template"))
        self.assertEqual((False, "label", "blue"), self.get_prop("new", "label"))
        self.run_ok("qvm-create", "-C", "StandaloneVM", "-l", "green", "alone")
        self.run_ok("qvm-create", "--class", "TemplateVM", "--label", "black", "tpl2")
        self.run_ok("qvm-create", "-t", "tpl", "-l", "red", "--prop", "memory=800",
                    "--property", "vcpus=3", "props")
        self.assertEqual((False, "int", "800"), self.get_prop("props", "memory"))
        self.assertEqual((False, "int", "3"), self.get_prop("props", "vcpus"))
        listed = self.ok("admin.vm.List").decode()
        self.assertIn("alone class=StandaloneVM", listed)
        self.assertIn("tpl2 class=TemplateVM", listed)

    def test_create_errors(self):
        r = self.run_fail(1, "qvm-create", "-t", "tpl", "-l", "red", "work")
        self.assertIn("Error creating VM", r.stderr)
        r = self.run_fail(2, "qvm-create", "-t", "tpl", "x")
        self.assertIn("--label option is mandatory", r.stderr)
        r = self.run_fail(2, "qvm-create", "-t", "tpl", "-l", "nosuch", "x")
        self.assertIn("no such label", r.stderr)
        r = self.run_fail(2, "qvm-create", "-C", "NoClass", "-l", "red", "x")
        self.assertIn("no such domain class", r.stderr)
        r = self.run_fail(1, "qvm-create", "-l", "red", "x")  # no default_template
        self.assertIn("Template", r.stderr)
        self.run_fail(1, "qvm-create", "-t", "tpl", "-l", "red", "1bad")
        self.assertNotIn("x", self.vm_names())

    def test_help_classes(self):
        self.assertEqual("AdminVM\nAppVM\nDispVM\nStandaloneVM\nTemplateVM\n",
                         self.run_ok("qvm-create", "--help-classes"))


class Ls(CliCase):
    def test_default_table(self):
        out = self.run_ok("qvm-ls")
        self.assertEqual(
            "NAME  STATE    CLASS       LABEL  TEMPLATE  NETVM\n"
            "dom0  Running  AdminVM     black  -         -\n"
            "tpl   Halted   TemplateVM  black  -         -\n"
            "work  Halted   AppVM       red    tpl       -\n", out)

    def test_raw(self):
        self.assertEqual("dom0\ntpl\nwork\n", self.run_ok("qvm-ls", "--raw-list"))
        self.assertEqual("dom0|black|-\ntpl|black|-\nwork|red|tpl\n",
                         self.run_ok("qvm-ls", "--raw-data", "-O", "name,label,template"))
        self.assertEqual("work\n", self.run_ok("qvm-ls", "--raw-list", "work"))
        self.assertEqual("work|container\n",
                         self.run_ok("qvm-ls", "--raw-data", "-O", "name,virt_mode", "work"))

    def test_fields_header(self):
        out = self.run_ok("qvm-ls", "-O", "name,virt_mode,qrexec_timeout", "tpl")
        self.assertEqual("NAME  VIRT-MODE  QREXEC-TIMEOUT\ntpl   container  60\n", out)

    def test_unknown_qube(self):
        r = self.run_fail(2, "qvm-ls", "nosuch")
        self.assertIn("no such domain: 'nosuch'", r.stderr)


class Prefs(CliCase):
    def test_get_set_reset(self):
        self.assertEqual("400\n", self.run_ok("qvm-prefs", "work", "memory"))
        self.assertEqual("", self.run_ok("qvm-prefs", "work", "memory", "800"))
        self.assertEqual((False, "int", "800"), self.get_prop("work", "memory"))
        self.assertEqual("800\n", self.run_ok("qvm-prefs", "work", "memory"))
        self.run_ok("qvm-prefs", "--default", "work", "memory")
        self.assertEqual((True, "int", "400"), self.get_prop("work", "memory"))
        # '-' in a property name means '_'
        self.assertEqual("60\n", self.run_ok("qvm-prefs", "work", "qrexec-timeout"))
        # a vm property that is none prints nothing
        self.assertEqual("", self.run_ok("qvm-prefs", "work", "netvm"))

    def test_none_for_vm_properties(self):
        self.ok("admin.vm.property.Set", "template_for_dispvms", "work", b"True")
        self.run_ok("qvm-prefs", "tpl", "default_dispvm", "work")
        self.assertEqual((False, "vm", "work"), self.get_prop("tpl", "default_dispvm"))
        self.run_ok("qvm-prefs", "tpl", "default_dispvm", "None")
        self.assertEqual((False, "vm", ""), self.get_prop("tpl", "default_dispvm"))

    def test_listing(self):
        lines = self.run_ok("qvm-prefs", "work").splitlines()
        width = max(len(l.split()[0]) for l in lines)
        by_name = {l.split()[0]: l for l in lines}
        self.assertEqual("label".ljust(width) + "  -  red", by_name["label"])
        self.assertEqual("memory".ljust(width) + "  D  400", by_name["memory"])
        self.assertEqual("netvm".ljust(width) + "  D  None", by_name["netvm"])
        self.assertEqual("template".ljust(width) + "  -  tpl", by_name["template"])
        self.assertEqual(sorted(by_name), [l.split()[0] for l in lines])
        hidden = self.run_ok("qvm-prefs", "--hide-default", "work")
        self.assertNotIn("memory", hidden)
        self.assertIn("label", hidden)

    def test_errors(self):
        r = self.run_fail(2, "qvm-prefs", "work", "nosuch")
        self.assertIn("no such property: 'nosuch'", r.stderr)
        r = self.run_fail(1, "qvm-prefs", "work", "memory", "abc")
        self.assertIn("qvm-prefs: error:", r.stderr)
        self.run_fail(1, "qvm-prefs", "work", "label", "nosuchlabel")
        self.run_fail(1, "qvm-prefs", "work", "qid", "5")
        r = self.run_fail(2, "qvm-prefs", "nosuch", "memory")
        self.assertIn("no such domain", r.stderr)
        self.assertEqual((True, "int", "400"), self.get_prop("work", "memory"))

    def test_qubes_prefs(self):
        out = self.run_ok("qubes-prefs")
        self.assertRegex(out, r"(?m)^default_template +D  None$")
        self.assertEqual("", self.run_ok("qubes-prefs", "default_template", "tpl"))
        self.assertEqual("tpl\n", self.run_ok("qubes-prefs", "default_template"))
        self.assertEqual((False, "vm", "tpl"), self.get_global("default_template"))
        self.assertRegex(self.run_ok("qubes-prefs"), r"(?m)^default_template +-  tpl$")
        self.run_ok("qubes-prefs", "--default", "default_template")
        self.assertEqual((True, "vm", ""), self.get_global("default_template"))
        self.run_fail(2, "qubes-prefs", "nosuch")
        self.run_fail(1, "qubes-prefs", "default_template", "work")


class Features(CliCase):
    def test_features(self):
        self.assertEqual("", self.run_ok("qvm-features", "work"))
        self.run_ok("qvm-features", "work", "foo", "bar")
        self.run_ok("qvm-features", "work", "longer-name", "two words")
        self.assertEqual(b"two words", self.ok("admin.vm.feature.Get", "longer-name", "work"))
        self.assertEqual("foo          bar\nlonger-name  two words\n",
                         self.run_ok("qvm-features", "work"))
        self.assertEqual("bar\n", self.run_ok("qvm-features", "work", "foo"))
        r = self.run_fail(1, "qvm-features", "work", "nosuch")
        self.assertEqual("", r.stdout)
        self.run_ok("qvm-features", "--unset", "work", "foo")
        self.err("admin.vm.feature.Get", "foo", "work", exc="QubesFeatureNotFoundError")
        self.run_ok("qvm-features", "--unset", "work", "foo")  # absent: still fine
        self.run_ok("qvm-features", "-D", "work", "longer-name")
        self.assertEqual(b"", self.ok("admin.vm.feature.List", "", "work"))

    def test_errors(self):
        r = self.run_fail(1, "qvm-features", "work", "preload-dispvm", "x")
        self.assertIn("error", r.stderr)
        self.run_fail(1, "qvm-features", "work", "bad/name", "x")
        self.run_fail(2, "qvm-features", "--unset", "work")
        self.run_fail(2, "qvm-features", "nosuch")


class Tags(CliCase):
    def test_tags(self):
        self.assertEqual("created-by-dom0\n", self.run_ok("qvm-tags", "work"))
        self.run_ok("qvm-tags", "work", "add", "b2", "a1")
        self.assertEqual("a1\nb2\ncreated-by-dom0\n", self.run_ok("qvm-tags", "work", "list"))
        self.assertEqual("a1\n", self.run_ok("qvm-tags", "work", "list", "a1"))
        self.run_fail(1, "qvm-tags", "work", "list", "zz")
        self.run_ok("qvm-tags", "work", "del", "a1")
        self.assertEqual(b"0", self.ok("admin.vm.tag.Get", "a1", "work"))
        self.run_ok("qvm-tags", "work", "del", "a1")  # absent: discard is silent
        r = self.run_fail(1, "qvm-tags", "work", "add", "bad.tag")
        self.assertIn("qvm-tags: error:", r.stderr)
        self.assertEqual(b"b2\ncreated-by-dom0\n", self.ok("admin.vm.tag.List", "", "work"))


class BadInput(CliCase):
    """Malformed input ends in a message naming the field and its rule or limit, never in
    "empty response"."""

    def assert_refused(self, code, words, *args):
        r = self.run_fail(code, *args)
        self.assertNotIn("empty response", r.stderr)
        for w in words:
            self.assertIn(w, r.stderr)
        return r

    def test_non_ascii_qube_name(self):
        for tool, rest in [("qvm-prefs", ["label"]), ("qvm-features", []), ("qvm-tags", []),
                           ("qvm-start", [])]:
            with self.subTest(tool=tool):
                self.assert_refused(2, ["no such domain: 'w\u00f6rk'"], tool, "w\u00f6rk", *rest)

    def test_feature_name_and_value(self):
        self.assert_refused(1, ["feature name is 300 characters long: the limit is 255"],
                            "qvm-features", "work", "x" * 300, "1")
        self.assert_refused(1, ["feature name contains a disallowed character"],
                            "qvm-features", "work", "w\u00f6rd", "1")
        self.assert_refused(1, ["the feature value makes a request of 70040 bytes",
                                "at most 65536 bytes"],
                            "qvm-features", "work", "big", "a" * 70000)
        self.assert_refused(1, ["feature value contains a disallowed character"],
                            "qvm-features", "work", "foo", "v\u00e4l")
        self.assertEqual(b"", self.ok("admin.vm.feature.List", "", "work"))

    def test_tags(self):
        self.assert_refused(1, ["tag contains a disallowed character (' ' at offset 1)"],
                            "qvm-tags", "work", "add", "ok", "a b")
        self.assert_refused(1, ["tag contains a disallowed character"],
                            "qvm-tags", "work", "add", "t\u00f6g")
        # the good tag before the bad one was not added either
        self.assertEqual(b"created-by-dom0\n", self.ok("admin.vm.tag.List", "", "work"))

    def test_create_with_a_bad_name(self):
        for name in ["a b", "\u0431" * 20, "w\u00f6rk"]:
            with self.subTest(name=name):
                self.assert_refused(1, ["Error creating VM: VM name contains illegal characters"],
                                    "qvm-create", "-t", "tpl", "-l", "red", name)
        self.assert_refused(1, ["VM name must be shorter than 32 characters"],
                            "qvm-create", "-t", "tpl", "-l", "red", "a" * 40)
        self.assertEqual(["dom0", "tpl", "work"], sorted(self.vm_names()))

    def test_oversized_property_value(self):
        self.assert_refused(1, ["admin.vm.property.Set makes a request of", "65536"],
                            "qvm-prefs", "work", "label", "a" * 70000)


class FakeDaemon:
    """A socket that records requests: admin.vm.List gets one qube, anything else the
    empty reply a daemon-side failure leaves."""

    def __init__(self, path):
        self.requests = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(16)
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while True:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                self.requests.append(data)
                if data.startswith(b"admin.vm.List+"):
                    conn.sendall(b"0\x00work class=AppVM state=Halted\n")

    def methods(self):
        return [r.split(b"\x00", 1)[0].split(b"+", 1)[0].decode() for r in self.requests]

    def close(self):
        self.sock.close()


@unittest.skipUnless(harness.cli_available(), SKIP_REASON)
class ChecksBeforeSending(unittest.TestCase):
    def setUp(self):
        self.d = harness.Daemon()  # never started: only its socket path and env are used
        self.addCleanup(self.d.cleanup)
        self.fake = FakeDaemon(self.d.socket)
        self.addCleanup(self.fake.close)

    def run_tool(self, *args):
        return harness.run_tool(self.d, *args)

    def test_bad_input_is_not_sent(self):
        for args in [("qvm-tags", "work", "add", "a b"),
                     ("qvm-features", "work", "x" * 300, "1"),
                     ("qvm-features", "work", "big", "a" * 70000),
                     ("qvm-prefs", "work", "label", "a" * 70000)]:
            with self.subTest(args=args[:3]):
                r = self.run_tool(*args)
                self.assertEqual(1, r.returncode, r.stderr)
                self.assertEqual({"admin.vm.List"}, set(self.fake.methods()), r.stderr)
        r = self.run_tool("qvm-prefs", "w\u00f6rk", "label")
        self.assertEqual(2, r.returncode, r.stderr)
        self.assertNotIn(b"w\xc3\xb6rk", b"".join(self.fake.requests))

    def test_empty_reply_points_to_the_daemon_log(self):
        r = self.run_tool("qvm-tags", "work", "add", "fine")
        self.assertEqual(1, r.returncode, r.stderr)
        self.assertIn("admin.vm.tag.Set", self.fake.methods())
        self.assertIn("Got empty response from dispenserd", r.stderr)
        self.assertIn("/var/log/dispenser/dispenserd.log", r.stderr)
        self.assertNotIn("journalctl in dom0", r.stderr)


class Remove(CliCase):
    def test_remove_forced(self):
        self.run_ok("qvm-remove", "-f", "work")
        self.assertNotIn("work", self.vm_names())

    def test_remove_confirmed_and_cancelled(self):
        r = self.run_fail(1, "qvm-remove", "work", input="n\n")
        self.assertIn("Remove cancelled", r.stderr)
        self.assertIn("work", self.vm_names())
        out = self.run_ok("qvm-remove", "work", input="y\n")
        self.assertIn("  work", out)
        self.assertNotIn("work", self.vm_names())

    def test_remove_refused(self):
        r = self.run_fail(1, "qvm-remove", "-f", "tpl")
        self.assertIn("VM tpl cannot be removed. It is in use as:", r.stderr)
        self.assertIn(" - template for work", r.stderr)
        self.assertIn("tpl", self.vm_names())
        r = self.run_fail(1, "qvm-remove", "-f", "dom0")
        self.assertIn("Domain 'dom0' cannot be removed.", r.stderr)
        self.run_fail(2, "qvm-remove", "-f", "nosuch")


class Events(CliCase):
    def start_events(self, *args, established=True):
        baseline = self.d.open_fds()
        p = subprocess.Popen([harness.tool_path("qvm-events")] + list(args), env=self.d.env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines = queue.Queue()

        def reader():
            for line in p.stdout:
                lines.put(line.rstrip("\n"))
        threading.Thread(target=reader, daemon=True).start()

        def cleanup():
            if p.poll() is None:
                p.kill()
            p.wait()
            p.stdout.close()
            p.stderr.close()
        self.addCleanup(cleanup)
        if established:
            self.assertEqual("- connection-established", lines.get(timeout=10))
        else:
            # the global connection-established line is filtered out with a VMNAME, so
            # wait until the daemon holds the subscriber's connection instead
            deadline = time.monotonic() + 10
            while self.d.open_fds() <= baseline and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.2)
        return p, lines

    def expect(self, lines, wanted):
        seen = []
        while True:
            line = lines.get(timeout=10)
            seen.append(line)
            if line == wanted:
                return seen

    def test_events(self):
        p, lines = self.start_events()
        self.create("AppVM", "new", "red", "tpl")
        self.expect(lines, "- domain-add vm=new")
        self.ok("admin.vm.property.Set", "label", "work", b"green")
        seen = self.expect(lines, "work property-set:label name=label newvalue=green "
                                  "oldvalue=red")
        self.assertIn("work property-pre-set:label name=label newvalue=green oldvalue=red",
                      seen)
        self.ok("admin.vm.feature.Set", "foo", "work", b"bar")
        self.expect(lines, "work domain-feature-set:foo feature=foo value=bar")
        p.send_signal(signal.SIGINT)
        self.assertEqual(0, p.wait(10))

    def test_events_of_one_qube(self):
        p, lines = self.start_events("work", established=False)
        self.ok("admin.vm.feature.Set", "x", "tpl", b"1")
        self.create("AppVM", "new", "red", "tpl")
        self.ok("admin.vm.feature.Set", "y", "work", b"2")
        seen = self.expect(lines, "work domain-feature-set:y feature=y value=2")
        # the stream opens with the global "subscription is live" line, then only work's
        self.assertEqual("- connection-established", seen[0])
        self.assertTrue(all(l.startswith("work ") for l in seen[1:]), seen)

    def test_stream_closed_by_daemon(self):
        p, lines = self.start_events()
        self.d.stop()
        self.assertEqual(1, p.wait(10))


if __name__ == "__main__":
    unittest.main()
