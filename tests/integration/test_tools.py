"""Tools a Qubes user reaches for next (issue 18), driven as a user would against a
private daemon with the container engine: qvm-check, qvm-service and the services in the
qube, property help; what they change is checked through the raw Admin API."""

import json
import os
import re
import shutil
import subprocess
import textwrap
import unittest

import harness
from harness import DaemonTestCase, run_tool
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
        # dom0 has neither netvm nor provides_network: not networked, no error
        self.assertEqual("qvm-check: None of qubes: networked\n",
                         self.check(1, "--networked", "dom0"))
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


@unittest.skipUnless(harness.cli_available(), "CLI tools not built")
class Service(EngineTestCase):
    """qvm-service over service.* features, and what the qube sees of them."""

    def feature(self, vm, name):
        r = self.reply("admin.vm.feature.Get", name, vm)
        return r.content.decode() if r.ok else None

    def service(self, code, *args):
        r = run_tool(self.d, "qvm-service", *args)
        self.assertEqual(code, r.returncode, "qvm-service %s: %s%s" % (args, r.stdout, r.stderr))
        return r

    def test_list_set_show_unset(self):
        self.new_appvm("svc")
        self.assertEqual("", self.service(0, "svc").stdout)
        self.service(0, "svc", "cups", "on")
        self.service(0, "svc", "--disable", "crond")
        self.service(0, "svc", "-e", "ssh")
        self.service(0, "svc", "zz", "No")
        self.ok("admin.vm.feature.Set", "other", "svc", b"1")  # not a service: not listed
        self.assertEqual(("1", "", "1", ""), tuple(self.feature("svc", "service." + n)
                                                   for n in ("cups", "crond", "ssh", "zz")))
        self.assertEqual("crond  off\ncups   on\nssh    on\nzz     off\n",
                         self.service(0, "svc", "--list").stdout)
        self.assertEqual("on\n", self.service(0, "svc", "cups").stdout)
        self.assertEqual("off\n", self.service(0, "svc", "crond").stdout)
        r = self.service(1, "svc", "nosuch")  # not set: exit 1, silently
        self.assertEqual(("", ""), (r.stdout, r.stderr))
        self.service(0, "svc", "--unset", "cups")
        self.service(0, "svc", "--default", "cups")  # already gone: no error
        self.assertIsNone(self.feature("svc", "service.cups"))

    def test_bad_input_changes_nothing(self):
        self.new_appvm("svc")
        r = self.service(1, "svc", "cups", "maybe")
        self.assertEqual("qvm-service: error: Invalid literal for boolean value: 'maybe'\n",
                         r.stderr)
        self.assertIn("--unset requires a feature", self.service(2, "svc", "-D").stderr)
        self.assertIn("cannot both set and unset",
                      self.service(2, "svc", "-D", "cups", "on").stderr)
        self.assertIn("no such domain", self.service(2, "nosuch").stderr)
        r = self.service(1, "svc", "x" * 49, "on")
        self.assertEqual("qvm-service: error: Service name must not exceed 48 bytes\n",
                         r.stderr)
        self.assertEqual("", self.service(0, "svc").stdout)

    def test_daemon_checks_service_names(self):
        # Qubes' checks (a name becomes a file in the qube), through the wire
        self.new_appvm("svc")
        for feature, message in (("service.", "Service name cannot be empty"),
                                 ("service..", 'Service name cannot be "." or ".."'),
                                 ("service." + "a" * 49, "Service name must not exceed 48 bytes")):
            r = self.err("admin.vm.feature.Set", feature, "svc", b"1", exc="QubesValueError")
            self.assertEqual(message, r.message)
            self.assertIsNone(self.feature("svc", feature))
        self.ok("admin.vm.feature.Set", "service." + "a" * 48, "svc", b"1")
        self.ok("admin.vm.feature.Set", "service.app-dispvm." + "a" * 60, "svc", b"1")

    def test_enabled_services_are_there_before_startup(self):
        self.new_appvm("svc")
        self.start("svc")
        # what the qube's own start-up (rc.local) sees, written down for us
        self.qrun("svc", "mkdir -p /rw/config && printf '#!/bin/sh\\nls /run/qubes-service "
                  "> /rw/seen\\n' > /rw/config/rc.local && chmod 755 /rw/config/rc.local",
                  user="root")
        self.assertEqual("", self.qout("svc", "ls -A /run/qubes-service"))
        self.shutdown("svc")
        self.service(0, "svc", "cups", "on")
        self.service(0, "svc", "crond", "off")
        self.ok("admin.vm.feature.Set", "service.legacy", "svc", b"0")  # "0" is a true value
        self.start("svc")
        self.addCleanup(self.d.call, "admin.vm.Kill", dest="svc")
        self.assertEqual("cups\nlegacy\n", self.qout("svc", "cat /rw/seen"))
        self.assertEqual("0 0 644\n", self.qout("svc", "stat -c '%u %g %a' "
                                                        "/run/qubes-service/cups"))

    def test_disposable_gets_its_templates_services(self):
        self.new_appvm("sdvm")
        self.set_prop("sdvm", "template_for_dispvms", True)
        self.service(0, "sdvm", "cups", "on")
        self.service(0, "sdvm", "crond", "off")
        self.ok("admin.vm.feature.Set", "preload-dispvm-max", "sdvm", b"0")
        disp = self.ok("admin.vm.CreateDisposable", "", "sdvm").decode()
        self.addCleanup(self.remove_quietly, disp)
        self.assertEqual("crond  off\ncups   on\n", self.service(0, disp).stdout)
        self.assertIsNone(self.feature(disp, "preload-dispvm-max"))
        self.start(disp)
        self.assertEqual("cups\n", self.qout(disp, "ls /run/qubes-service"))


@unittest.skipUnless(harness.cli_available(), "CLI tools not built")
class PropertyHelp(DaemonTestCase):
    """admin.vm.property.Help / admin.property.Help: a sentence for every property, shown
    by --help-properties as upstream's qvm-prefs formats it (textwrap at 80 columns)."""

    PER_CLASS = True

    @classmethod
    def populate(cls, d):
        harness.ok_content(d, "admin.vm.Create.TemplateVM", "", "dom0", b"name=tpl label=black")
        harness.ok_content(d, "admin.vm.Create.AppVM", "tpl", "dom0", b"name=work label=red")
        harness.ok_content(d, "admin.vm.property.Set", "template_for_dispvms", "work", b"True")
        cls.disp = harness.ok_content(d, "admin.vm.CreateDisposable", "", "work").decode()

    def names(self, prefix, dest):
        return sorted(self.ok(prefix + ".List", "", dest).decode().splitlines())

    def help(self, prefix, dest, name):
        text = self.ok(prefix + ".Help", name, dest).decode()
        self.assertEqual(text, self.ok(prefix + ".HelpRst", name, dest).decode())
        return text

    def upstream_format(self, prefix, dest):
        names = self.names(prefix, dest)
        width = max(len(n) for n in names)
        wrapper = textwrap.TextWrapper(width=80, initial_indent="  ",
                                       subsequent_indent=" " * (width + 6))
        return "".join(wrapper.fill("%-*s  %s" % (width, n, self.help(prefix, dest, n))) + "\n"
                       for n in names)

    def test_every_property_has_a_sentence(self):
        for prefix, dest in (("admin.vm.property", "work"), ("admin.vm.property", "tpl"),
                             ("admin.vm.property", self.disp), ("admin.vm.property", "dom0"),
                             ("admin.property", "dom0")):
            for name in self.names(prefix, dest):
                text = self.help(prefix, dest, name)
                self.assertTrue(text.endswith("."), (prefix, dest, name, text))

    def test_engine_dependent_properties_say_both_engines(self):
        for name in ("virt_mode", "memory", "maxmem", "vcpus"):
            text = self.help("admin.vm.property", "work", name)
            self.assertIn("ontainer", text, name)
            self.assertIn("qemu", text, name)

    def test_unknown_property(self):
        self.err("admin.vm.property.Help", "nosuch", "work", exc="QubesNoSuchPropertyError")
        self.err("admin.property.Help", "nosuch", "dom0", exc="QubesNoSuchPropertyError")
        self.err("admin.vm.property.Help", "template_for_dispvms", "tpl",
                 exc="QubesNoSuchPropertyError")  # not a property of templates

    def test_help_properties_formatted_as_upstream(self):
        r = run_tool(self.d, "qvm-prefs", "--help-properties", "work")
        self.assertEqual(0, r.returncode, r.stderr)
        self.assertEqual(self.upstream_format("admin.vm.property", "work"), r.stdout)
        self.assertTrue(any(len(l) > 60 for l in r.stdout.splitlines()))
        r = run_tool(self.d, "qubes-prefs", "--help-properties")
        self.assertEqual(0, r.returncode, r.stderr)
        self.assertEqual(self.upstream_format("admin.property", "dom0"), r.stdout)


if __name__ == "__main__":
    unittest.main()


# --- manual pages: every installed program has one (issue 18) ---

PROGRAM_DIRS = ("/bin", "/sbin", "/libexec/dispenser", "/lib/qubes")


def installed_files(build_dir):
    """{source: destination} of `meson introspect --installed`."""
    out = subprocess.run(["meson", "introspect", "--installed", build_dir],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def missing_man_pages(installed):
    """Programs installed without a manual page installed under their name."""
    programs, pages = set(), set()
    for dest in installed.values():
        directory, name = os.path.split(dest)
        if "/man/man" in directory:
            pages.add(name.rsplit(".", 1)[0])
        elif directory.endswith(PROGRAM_DIRS):
            programs.add(name)
    return sorted(programs - pages)


@unittest.skipUnless(shutil.which("meson") and os.path.isdir(harness.BUILD_DIR),
                     "needs meson and the build directory")
class ManPages(unittest.TestCase):

    def setUp(self):
        self.installed = installed_files(harness.BUILD_DIR)

    def test_every_installed_program_has_a_man_page(self):
        self.assertEqual([], missing_man_pages(self.installed))
        names = {os.path.basename(d) for d in self.installed.values()}
        for program in ("dispenserd", "qvm", "qvm-ls", "dispenser-preload",
                        "dispenser-agent-client"):
            self.assertIn(program, names)

    def test_the_check_sees_a_missing_page(self):
        without = {src: dest for src, dest in self.installed.items()
                   if not dest.endswith("/dispenser-agent-client.1")}
        self.assertEqual(["dispenser-agent-client"], missing_man_pages(without))

    def test_qvm_page_lists_every_tool(self):
        r = subprocess.run([harness.tool_path("qvm"), "--help"], capture_output=True, text=True)
        tools = [line.strip() for line in r.stdout.split("tools:\n", 1)[1].split("\n\n")[0]
                 .splitlines()]
        self.assertIn("qvm-run", tools)
        with open(os.path.join(harness.SOURCE_ROOT, "man", "qvm.1")) as f:
            page = f.read().replace("\\-", "-")
        for tool in tools:
            self.assertRegex(page, r"\.BR %s \([18]\)" % re.escape(tool), tool)

    def test_see_also_never_names_the_page_itself(self):
        man = os.path.join(harness.SOURCE_ROOT, "man")
        for page in sorted(os.listdir(man)):
            if not page[-1].isdigit():
                continue
            with open(os.path.join(man, page)) as f:
                text = f.read().replace("\\-", "-")
            name, section = page.rsplit(".", 1)
            see_also = text.split(".SH SEE ALSO", 1)
            self.assertEqual(2, len(see_also), page)
            self.assertNotRegex(see_also[1], r"\.BR %s \(%s\)" % (re.escape(name), section),
                                page)
            self.assertIn(".SH EXIT STATUS", text, page)
