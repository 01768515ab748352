"""The qube model through the Admin API: classes, property defaults and how they follow
each other, Set/Reset/GetDefault, globals, features with their fallback chains, tags,
labels, vmclass, CurrentState, and that all of it survives a restart."""

import os
import re
import unittest

import harness
from harness import DaemonTestCase

LABELS = [("red", "0xcc0000"), ("orange", "0xf57900"), ("yellow", "0xedd400"),
          ("green", "0x73d216"), ("gray", "0x555555"), ("blue", "0x3465a4"),
          ("purple", "0x75507b"), ("black", "0x000000")]


class ModelCase(DaemonTestCase):
    """tpl (TemplateVM), work (AppVM on tpl), dvm (disposable template), disp1 (DispVM)."""

    @classmethod
    def populate(cls, d):
        for klass, template, payload in [
                ("TemplateVM", "", b"name=tpl label=black"),
                ("AppVM", "tpl", b"name=work label=red"),
                ("AppVM", "tpl", b"name=dvm label=green")]:
            harness.ok_content(d, "admin.vm.Create." + klass, template, "dom0", payload)
        harness.ok_content(d, "admin.vm.property.Set", "template_for_dispvms", "dvm", b"True")
        harness.ok_content(d, "admin.vm.Create.DispVM", "dvm", "dom0", b"name=disp1 label=red")

    def assertProp(self, vm, prop, value, default=None, type_=None):
        is_default, t, v = self.get_prop(vm, prop)
        self.assertEqual(value, v, "%s.%s" % (vm, prop))
        if default is not None:
            self.assertEqual(default, is_default, "%s.%s default flag" % (vm, prop))
        if type_ is not None:
            self.assertEqual(type_, t, "%s.%s type" % (vm, prop))


class Defaults(ModelCase):
    def test_appvm_defaults(self):
        for prop, value, type_ in [("memory", "400", "int"), ("maxmem", "0", "int"),
                                   ("vcpus", "2", "int"), ("qrexec_timeout", "60", "int"),
                                   ("shutdown_timeout", "60", "int"),
                                   ("virt_mode", "container", "str"),
                                   ("include_in_backups", "True", "bool"),
                                   ("autostart", "False", "bool"), ("debug", "False", "bool"),
                                   ("template_for_dispvms", "False", "bool"),
                                   ("updateable", "False", "bool"),
                                   ("provides_network", "False", "bool"),
                                   ("netvm", "", "vm"), ("default_dispvm", "", "vm"),
                                   ("management_dispvm", "", "vm"),
                                   ("kernelopts", "", "str"), ("default_user", "user", "str"),
                                   ("klass", "AppVM", "str"), ("icon", "appvm-red", "str"),
                                   ("backup_timestamp", "", "int")]:
            with self.subTest(prop=prop):
                self.assertProp("work", prop, value, True, type_)

    def test_identity_properties(self):
        self.assertProp("work", "name", "work", False, "str")
        self.assertProp("work", "label", "red", False, "label")
        self.assertProp("work", "template", "tpl", False, "vm")
        self.assertProp("tpl", "qid", "1", False, "int")
        self.assertProp("work", "qid", "2", False, "int")
        _, t, uuid = self.get_prop("work", "uuid")
        self.assertEqual("str", t)
        self.assertRegex(uuid, r"\A[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-"
                               r"[0-9a-f]{12}\Z")
        listed = self.ok("admin.vm.List", "", "work").decode()
        self.assertEqual("work class=AppVM state=Halted uuid=%s\n" % uuid, listed)

    def test_templatevm_and_standalone(self):
        self.create("StandaloneVM", "alone", "blue")
        self.assertProp("tpl", "updateable", "True", True)
        self.assertProp("alone", "updateable", "True", True)
        self.assertProp("tpl", "icon", "templatevm-black", True)
        self.assertProp("alone", "icon", "standalonevm-blue", True)
        for vm in ["tpl", "alone"]:
            props = self.ok("admin.vm.property.List", "", vm).decode().split()
            self.assertNotIn("template", props)
            self.assertNotIn("auto_cleanup", props)
            self.assertNotIn("dispid", props)
        self.assertIn("template_for_dispvms",
                      self.ok("admin.vm.property.List", "", "alone").decode().split())
        self.assertNotIn("template_for_dispvms",
                         self.ok("admin.vm.property.List", "", "tpl").decode().split())

    def test_dispvm_defaults(self):
        self.assertProp("disp1", "template", "dvm", False, "vm")
        # a disposable's own disposables come from its template
        self.assertProp("disp1", "default_dispvm", "dvm", True, "vm")
        self.assertProp("disp1", "auto_cleanup", "False", True, "bool")
        self.assertProp("disp1", "icon", "dispvm-red", True)
        is_default, t, dispid = self.get_prop("disp1", "dispid")
        self.assertEqual((False, "int"), (is_default, t))
        self.assertTrue(0 < int(dispid) < 10000)
        # a disposable template is shown as a template
        self.assertProp("dvm", "icon", "templatevm-green", True)

    def test_dispvm_from_global_default_dispvm(self):
        self.ok("admin.property.Set", "default_dispvm", "dom0", b"dvm")
        self.ok("admin.vm.Create.DispVM", "", "dom0", b"name=disp2 label=red")
        self.assertProp("disp2", "template", "dvm", False)
        self.assertProp("work", "default_dispvm", "dvm", True)
        ids = {self.get_prop(v, "dispid")[2] for v in ["disp1", "disp2"]}
        self.assertEqual(2, len(ids), "dispids are unique")

    def test_appvm_template_from_default_template(self):
        self.ok("admin.property.Set", "default_template", "dom0", b"tpl")
        self.ok("admin.vm.Create.AppVM", "", "dom0", b"name=work2 label=orange")
        # Qubes stores the template it picked: a later default change does not move it
        self.assertProp("work2", "template", "tpl", False)
        self.create("TemplateVM", "tpl2", "black")
        self.ok("admin.property.Set", "default_template", "dom0", b"tpl2")
        self.assertProp("work2", "template", "tpl", False)

    def test_defaults_follow_globals(self):
        self.ok("admin.property.Set", "default_qrexec_timeout", "dom0", b"120")
        self.ok("admin.property.Set", "default_shutdown_timeout", "dom0", b"33")
        self.assertProp("work", "qrexec_timeout", "120", True)
        self.assertProp("tpl", "shutdown_timeout", "33", True)
        self.assertEqual(b"type=int 120",
                         self.ok("admin.vm.property.GetDefault", "qrexec_timeout", "work"))
        self.ok("admin.vm.property.Set", "qrexec_timeout", "work", b"7")
        self.ok("admin.property.Set", "default_qrexec_timeout", "dom0", b"99")
        self.assertProp("work", "qrexec_timeout", "7", False)
        self.ok("admin.vm.property.Reset", "qrexec_timeout", "work")
        self.assertProp("work", "qrexec_timeout", "99", True)
        self.ok("admin.property.Reset", "default_qrexec_timeout", "dom0")
        self.assertProp("work", "qrexec_timeout", "60", True)

    def test_dispvm_default_follows_global(self):
        self.ok("admin.property.Set", "default_dispvm", "dom0", b"dvm")
        self.assertProp("work", "default_dispvm", "dvm", True)
        self.assertProp("dom0", "default_dispvm", "dvm", True)
        self.ok("admin.property.Reset", "default_dispvm", "dom0")
        self.assertProp("work", "default_dispvm", "", True)

    def test_dom0(self):
        self.assertProp("dom0", "name", "dom0")
        self.assertProp("dom0", "qid", "0")
        self.assertProp("dom0", "uuid", "00000000-0000-0000-0000-000000000000")
        self.assertProp("dom0", "klass", "AdminVM")
        self.assertProp("dom0", "label", "black")
        self.assertProp("dom0", "icon", "adminvm-black", True)
        _, _, mem = self.get_prop("dom0", "memory")
        self.assertGreater(int(mem), 0)
        props = self.ok("admin.vm.property.List", "", "dom0").decode().split()
        for absent in ["template", "netvm", "vcpus", "virt_mode"]:
            self.assertNotIn(absent, props)

    def test_property_list_matches_getall(self):
        for vm in ["dom0", "tpl", "work", "dvm", "disp1"]:
            with self.subTest(vm=vm):
                names = self.ok("admin.vm.property.List", "", vm).decode().splitlines()
                allp = harness.parse_getall(self.ok("admin.vm.property.GetAll", "", vm))
                self.assertEqual(names, list(allp))
                for name in names:
                    self.assertEqual(allp[name], self.get_prop(vm, name), name)


class SetReset(ModelCase):
    def test_set_get_default_reset(self):
        self.ok("admin.vm.property.Set", "memory", "work", b"800")
        self.assertProp("work", "memory", "800", False)
        self.assertEqual(b"type=int 400",
                         self.ok("admin.vm.property.GetDefault", "memory", "work"))
        self.ok("admin.vm.property.Reset", "memory", "work")
        self.assertProp("work", "memory", "400", True)
        # resetting what is already default is fine
        self.ok("admin.vm.property.Reset", "memory", "work")
        self.assertProp("work", "memory", "400", True)

    def test_set_to_the_default_value_is_explicit(self):
        self.ok("admin.vm.property.Set", "vcpus", "work", b"2")
        self.assertProp("work", "vcpus", "2", False)

    def test_get_default_without_default(self):
        self.assertEqual(b"", self.ok("admin.vm.property.GetDefault", "label", "work"))
        self.assertEqual(b"", self.ok("admin.vm.property.GetDefault", "name", "work"))

    def test_value_parsing(self):
        for prop, raw, canon in [("debug", b"yes", "True"), ("debug", b"OFF", "False"),
                                 ("debug", b"1", "True"), ("debug", b"False", "False"),
                                 ("autostart", b"true", "True"), ("autostart", b"no", "False"),
                                 ("memory", b" 512 ", "512"), ("memory", b"+64", "64"),
                                 ("maxmem", b"0", "0"), ("backup_timestamp", b"0", "0"),
                                 ("virt_mode", b"qemu", "qemu"),
                                 ("kernelopts", b"a=b c%d", "a=b c%d"),
                                 ("default_user", b"", ""),
                                 ("label", b"purple", "purple")]:
            with self.subTest(prop=prop, raw=raw):
                self.ok("admin.vm.property.Set", prop, "work", raw)
                self.assertProp("work", prop, canon, False)

    def test_vm_property_to_none_and_back(self):
        self.ok("admin.vm.property.Set", "default_dispvm", "work", b"dvm")
        self.assertProp("work", "default_dispvm", "dvm", False, "vm")
        self.ok("admin.vm.property.Set", "default_dispvm", "work", b"")
        self.assertProp("work", "default_dispvm", "", False, "vm")
        self.ok("admin.vm.property.Reset", "default_dispvm", "work")
        self.assertProp("work", "default_dispvm", "", True, "vm")

    def test_change_template_frees_the_old_one(self):
        self.create("TemplateVM", "tpl2", "black")
        self.ok("admin.vm.property.Set", "template", "work", b"tpl2")
        self.assertProp("work", "template", "tpl2", False)
        self.err("admin.vm.Remove", "", "tpl", exc="QubesVMInUseError")  # dvm
        # a disposable template's template waits for its (non-preload) disposables
        self.err("admin.vm.property.Set", "template", "dvm", b"tpl2", exc="QubesVMInUseError")
        self.ok("admin.vm.Remove", "", "disp1")
        self.ok("admin.vm.property.Set", "template", "dvm", b"tpl2")
        self.ok("admin.vm.Remove", "", "tpl")
        self.assertNotIn("tpl", self.vm_names())

    def test_klass_and_icon_reset_is_a_no_op(self):
        self.ok("admin.vm.property.Reset", "klass", "work")
        self.ok("admin.vm.property.Reset", "icon", "work")
        self.assertProp("work", "klass", "AppVM", True)

    def test_icon_follows_label(self):
        self.ok("admin.vm.property.Set", "label", "work", b"blue")
        self.assertProp("work", "icon", "appvm-blue", True)

    def test_getall_escapes(self):
        self.ok("admin.vm.property.Set", "kernelopts", "work", b"a\\b\nc")
        line = [l for l in self.ok("admin.vm.property.GetAll", "", "work").split(b"\n")
                if l.startswith(b"kernelopts ")]
        self.assertEqual([b"kernelopts default=False type=str a\\\\b\\nc"], line)
        self.assertEqual(b"default=False type=str a\\b\nc",
                         self.ok("admin.vm.property.Get", "kernelopts", "work"))

    def test_template_for_dispvms_released(self):
        self.ok("admin.vm.property.Set", "template_for_dispvms", "work", b"True")
        self.ok("admin.vm.property.Set", "template_for_dispvms", "work", b"False")
        self.ok("admin.vm.Remove", "", "disp1")
        self.ok("admin.vm.property.Reset", "template_for_dispvms", "dvm")
        self.assertProp("dvm", "template_for_dispvms", "False", True)

    def test_name_limits(self):
        name = "a" + "B0_.-" * 6  # 31 characters
        self.assertEqual(31, len(name))
        self.create("AppVM", name, "red", "tpl")
        self.assertProp(name, "name", name)
        self.create("AppVM", "X", "red", "tpl")
        self.create("AppVM", "nonex", "red", "tpl")
        self.create("AppVM", "my-dmz", "red", "tpl")


class CreateDisposable(ModelCase):
    PER_CLASS = False

    def test_unnamed_disposable(self):
        name = self.ok("admin.vm.CreateDisposable", "", "dvm").decode()
        self.assertRegex(name, r"^disp[0-9]{1,4}$")
        self.assertEqual(name[4:], self.get_prop(name, "dispid")[2])
        self.assertEqual("dvm", self.get_prop(name, "template")[2])
        self.assertEqual("True", self.get_prop(name, "auto_cleanup")[2])
        tags = self.ok("admin.vm.tag.List", "", name).decode().split()
        self.assertIn("created-by-dom0", tags)
        self.assertIn("disp-created-by-dom0", tags)

    def test_through_dom0_default_dispvm_and_uuid(self):
        self.ok("admin.property.Set", "default_dispvm", "dom0", b"dvm")
        out = self.ok("admin.vm.CreateDisposable", "", "dom0", b"uuid").decode()
        self.assertTrue(out.startswith("uuid:"), out)
        listing = self.ok("admin.vm.List").decode()
        self.assertIn("uuid=" + out[5:], listing)

    def test_preload_argument_creates_nothing(self):
        before = self.vm_names()
        self.assertEqual(b"", self.ok("admin.vm.CreateDisposable", "preload", "dvm"))
        self.assertEqual(before, self.vm_names())


class Globals(ModelCase):
    def test_list_and_getall(self):
        names = self.ok("admin.property.List").decode().splitlines()
        for g in ["default_dispvm", "default_template", "default_netvm",
                  "default_qrexec_timeout", "default_shutdown_timeout"]:
            self.assertIn(g, names)
        allp = harness.parse_getall(self.ok("admin.property.GetAll"))
        self.assertEqual(names, list(allp))
        for name in names:
            self.assertEqual(allp[name], self.get_global(name), name)

    def test_fresh_values(self):
        self.assertEqual((True, "vm", ""), self.get_global("default_template"))
        self.assertEqual((True, "vm", ""), self.get_global("default_dispvm"))
        self.assertEqual((True, "vm", ""), self.get_global("default_netvm"))
        self.assertEqual((True, "int", "60"), self.get_global("default_qrexec_timeout"))
        self.assertEqual(b"type=int 60",
                         self.ok("admin.property.GetDefault", "default_qrexec_timeout"))

    def test_set_reset(self):
        self.ok("admin.property.Set", "default_template", "dom0", b"tpl")
        self.assertEqual((False, "vm", "tpl"), self.get_global("default_template"))
        self.ok("admin.property.Set", "default_template", "dom0", b"")
        self.assertEqual((False, "vm", ""), self.get_global("default_template"))
        self.ok("admin.property.Reset", "default_template", "dom0")
        self.assertEqual((True, "vm", ""), self.get_global("default_template"))
        self.ok("admin.property.Set", "default_netvm", "dom0", b"none")
        self.assertEqual((False, "vm", ""), self.get_global("default_netvm"))


class QubesdProperties(ModelCase):
    """The properties qubesd has that dispenser added for issue 18: Qubes' values and
    checks, or read-only with the documented value where they cannot apply."""

    def test_gui_audio_follow_globals(self):
        self.assertProp("work", "guivm", "dom0", default=True, type_="vm")
        self.assertProp("work", "audiovm", "dom0", default=True, type_="vm")
        self.ok("admin.property.Set", "default_guivm", "dom0", b"")
        self.assertProp("work", "guivm", "", default=True)
        self.ok("admin.vm.property.Set", "audiovm", "work", b"dvm")
        self.assertProp("work", "audiovm", "dvm", default=False)
        self.err("admin.vm.Remove", dest="dvm", exc="QubesVMInUseError")
        self.err("admin.vm.property.Set", "guivm", "work", b"nosuch",
                 exc="QubesPropertyValueError")

    def test_keyboard_layout(self):
        self.assertProp("work", "keyboard_layout", "us++", default=True, type_="str")
        self.assertProp("dom0", "keyboard_layout", "us++", default=True, type_="str")
        self.ok("admin.vm.property.Set", "keyboard_layout", "dom0", b"de+neo+grp:alt_shift")
        # a qube's default is the layout of its guivm (dom0 here)
        self.assertProp("work", "keyboard_layout", "de+neo+grp:alt_shift", default=True)
        for bad in [b"de", b"de+neo", b"d1++", b"de+n o+", b"de++a;b", b"+++"]:
            with self.subTest(value=bad):
                self.err("admin.vm.property.Set", "keyboard_layout", "work", bad,
                         exc="QubesPropertyValueError")
        self.ok("admin.vm.property.Set", "keyboard_layout", "work", b"fr++")
        self.assertProp("work", "keyboard_layout", "fr++", default=False)

    def test_devices_denied(self):
        self.assertProp("work", "devices_denied", "", default=True, type_="str")
        self.ok("admin.vm.property.Set", "devices_denied", "work", b"b******u0e0101")
        self.assertProp("work", "devices_denied", "b******u0e0101", default=False)
        for bad in [b"x******", b"b12345", b"bABCDEF", b"b******u"]:
            with self.subTest(value=bad):
                self.err("admin.vm.property.Set", "devices_denied", "work", bad,
                         exc="QubesPropertyValueError")
        self.assertProp("work", "devices_denied", "b******u0e0101")

    def test_plain_kept_properties(self):
        self.assertProp("work", "installed_by_rpm", "False", default=True, type_="bool")
        self.ok("admin.vm.property.Set", "installed_by_rpm", "tpl", b"true")
        self.assertProp("tpl", "installed_by_rpm", "True", default=False)
        self.assertProp("work", "stubdom_mem", "", default=True, type_="int")
        self.ok("admin.vm.property.Set", "stubdom_mem", "work", b"128")
        self.err("admin.vm.property.Set", "stubdom_mem", "work", b"0",
                 exc="QubesPropertyValueError")

    def test_read_only_values(self):
        for vm, prop, type_, value in [
                ("work", "xid", "int", "-1"), ("work", "start_time", "str", ""),
                ("work", "bootmode", "str", "default"),
                ("tpl", "appvm_default_bootmode", "str", "default"),
                ("work", "stubdom_xid", "int", "-1"), ("work", "stubdom_uuid", "str", ""),
                ("work", "ip6", "str", ""), ("work", "gateway6", "str", ""),
                ("work", "visible_ip6", "str", ""), ("work", "visible_gateway6", "str", "")]:
            with self.subTest(vm=vm, prop=prop):
                self.assertProp(vm, prop, value, default=True, type_=type_)
                self.err("admin.vm.property.Set", prop, vm, value.encode() or b"1",
                         exc="QubesPropertyValueError")
                self.assertTrue(self.ok("admin.vm.property.Help", prop, vm))
        self.err("admin.vm.property.Get", "appvm_default_bootmode", "work",
                 exc="QubesNoSuchPropertyError")
        # dom0's maxmem is the host's memory: read-only there only
        self.err("admin.vm.property.Set", "maxmem", "dom0", b"100",
                 exc="QubesPropertyValueError")
        self.ok("admin.vm.property.Set", "maxmem", "work", b"800")

    def test_global_pools(self):
        for name in ["default_pool", "default_pool_kernel", "default_pool_private",
                     "default_pool_root", "default_pool_volatile"]:
            with self.subTest(name=name):
                self.assertEqual((True, "str", "dispenser"), self.get_global(name))
                self.assertEqual(b"type=str dispenser",
                                 self.ok("admin.property.GetDefault", name))
                self.err("admin.property.Set", name, "dom0", b"nosuch",
                         exc="QubesPropertyValueError")
        self.ok("admin.property.Set", "default_pool_root", "dom0", b"dispenser")
        self.assertEqual((False, "str", "dispenser"), self.get_global("default_pool_root"))

    def test_global_host_facts(self):
        with open("/proc/meminfo") as f:
            total_kib = int(f.readline().split()[1])
        self.assertEqual((True, "int", str(total_kib // 1024)), self.get_global("maxmem"))
        self.assertEqual((True, "int", str(os.sysconf("SC_NPROCESSORS_ONLN"))),
                         self.get_global("no_cpus"))
        for name in ["maxmem", "no_cpus"]:
            with self.subTest(name=name):
                self.err("admin.property.Set", name, "dom0", b"1",
                         exc="QubesPropertyValueError")
                self.err("admin.property.Reset", name, "dom0", exc="QubesPropertyValueError")
        self.assertEqual((True, "bool", "True"), self.get_global("check_updates_vm"))
        self.ok("admin.property.Set", "check_updates_vm", "dom0", b"False")
        self.assertEqual((False, "bool", "False"), self.get_global("check_updates_vm"))
        self.assertEqual((True, "vm", "dom0"), self.get_global("default_guivm"))
        self.assertEqual((True, "vm", "dom0"), self.get_global("default_audiovm"))


class Features(ModelCase):
    def test_set_get_list_remove(self):
        self.assertEqual(b"", self.ok("admin.vm.feature.List", "", "work"))
        self.ok("admin.vm.feature.Set", "foo", "work", b"bar")
        self.ok("admin.vm.feature.Set", "empty", "work", b"")
        self.ok("admin.vm.feature.Set", "a.b-c_D9", "work", b" spaced ~!@#$%^&*() value ")
        self.assertEqual(b"bar", self.ok("admin.vm.feature.Get", "foo", "work"))
        self.assertEqual(b"", self.ok("admin.vm.feature.Get", "empty", "work"))
        self.assertEqual(b" spaced ~!@#$%^&*() value ",
                         self.ok("admin.vm.feature.Get", "a.b-c_D9", "work"))
        listed = self.ok("admin.vm.feature.List", "", "work")
        self.assertTrue(listed.endswith(b"\n"))
        self.assertEqual(["a.b-c_D9", "empty", "foo"], sorted(listed.decode().split()))
        self.ok("admin.vm.feature.Set", "foo", "work", b"baz")
        self.assertEqual(b"baz", self.ok("admin.vm.feature.Get", "foo", "work"))
        self.ok("admin.vm.feature.Remove", "foo", "work")
        self.err("admin.vm.feature.Get", "foo", "work", exc="QubesFeatureNotFoundError")
        self.assertNotIn(b"foo", self.ok("admin.vm.feature.List", "", "work"))
        # features of one qube are not another's
        self.err("admin.vm.feature.Get", "empty", "tpl", exc="QubesFeatureNotFoundError")

    def test_check_with_template(self):
        self.ok("admin.vm.feature.Set", "f", "tpl", b"from-tpl")
        self.assertEqual(b"from-tpl", self.ok("admin.vm.feature.CheckWithTemplate", "f", "work"))
        # disp1 -> dvm -> tpl
        self.assertEqual(b"from-tpl",
                         self.ok("admin.vm.feature.CheckWithTemplate", "f", "disp1"))
        self.ok("admin.vm.feature.Set", "f", "dvm", b"from-dvm")
        self.assertEqual(b"from-dvm",
                         self.ok("admin.vm.feature.CheckWithTemplate", "f", "disp1"))
        self.ok("admin.vm.feature.Set", "f", "disp1", b"own")
        self.assertEqual(b"own", self.ok("admin.vm.feature.CheckWithTemplate", "f", "disp1"))
        # plain Get never falls back
        self.err("admin.vm.feature.Get", "f", "work", exc="QubesFeatureNotFoundError")
        # dom0 is not on the template chain
        self.ok("admin.vm.feature.Set", "g", "dom0", b"dom0")
        self.err("admin.vm.feature.CheckWithTemplate", "g", "work",
                 exc="QubesFeatureNotFoundError")

    def test_check_with_adminvm(self):
        self.ok("admin.vm.feature.Set", "f", "dom0", b"dom0-value")
        self.ok("admin.vm.feature.Set", "t", "tpl", b"tpl-value")
        self.assertEqual(b"dom0-value",
                         self.ok("admin.vm.feature.CheckWithAdminVM", "f", "work"))
        # template is skipped by ...WithAdminVM
        self.err("admin.vm.feature.CheckWithAdminVM", "t", "work",
                 exc="QubesFeatureNotFoundError")
        self.ok("admin.vm.feature.Set", "f", "work", b"own")
        self.assertEqual(b"own", self.ok("admin.vm.feature.CheckWithAdminVM", "f", "work"))
        self.assertEqual(b"dom0-value",
                         self.ok("admin.vm.feature.CheckWithAdminVM", "f", "dom0"))

    def test_check_with_template_and_adminvm(self):
        method = "admin.vm.feature.CheckWithTemplateAndAdminVM"
        self.ok("admin.vm.feature.Set", "f", "dom0", b"dom0")
        self.assertEqual(b"dom0", self.ok(method, "f", "disp1"))
        self.ok("admin.vm.feature.Set", "f", "tpl", b"tpl")
        self.assertEqual(b"tpl", self.ok(method, "f", "disp1"))
        self.ok("admin.vm.feature.Set", "f", "dvm", b"dvm")
        self.assertEqual(b"dvm", self.ok(method, "f", "disp1"))
        self.ok("admin.vm.feature.Set", "f", "disp1", b"disp1")
        self.assertEqual(b"disp1", self.ok(method, "f", "disp1"))
        self.ok("admin.vm.feature.Remove", "f", "dvm")
        self.assertEqual(b"tpl", self.ok(method, "f", "dvm"))
        self.err(method, "nosuch", "disp1", exc="QubesFeatureNotFoundError")

    def test_check_with_netvm(self):
        self.ok("admin.vm.feature.Set", "f", "work", b"own")
        self.assertEqual(b"own", self.ok("admin.vm.feature.CheckWithNetvm", "f", "work"))
        self.ok("admin.vm.feature.Set", "h", "tpl", b"x")
        self.err("admin.vm.feature.CheckWithNetvm", "h", "work",
                 exc="QubesFeatureNotFoundError")

    def test_preload_dispvm_max_is_not_protected(self):
        # only the engine-owned preload-dispvm* names are; the user knob is settable
        # (once the qube supports qrexec and the readiness services)
        for feat in ("qrexec", "supported-rpc.qubes.WaitForRunningSystem",
                     "supported-rpc.qubes.WaitForSession"):
            self.ok("admin.vm.feature.Set", feat, "tpl", b"1")
        self.ok("admin.vm.feature.Set", "preload-dispvm-max", "dvm", b"0")
        self.ok("admin.vm.feature.Remove", "preload-dispvm-max", "dvm")


class Tags(ModelCase):
    def test_created_by_tag(self):
        for vm in ["tpl", "work", "dvm", "disp1"]:
            self.assertEqual(b"created-by-dom0\n", self.ok("admin.vm.tag.List", "", vm))
            self.assertEqual(b"1", self.ok("admin.vm.tag.Get", "created-by-dom0", vm))

    def test_set_get_list_remove(self):
        self.assertEqual(b"0", self.ok("admin.vm.tag.Get", "zeta", "work"))
        for tag in ["zeta", "Alpha_1", "mid-dle"]:
            self.ok("admin.vm.tag.Set", tag, "work")
        self.ok("admin.vm.tag.Set", "zeta", "work")  # twice: still one
        self.assertEqual(b"Alpha_1\ncreated-by-dom0\nmid-dle\nzeta\n",
                         self.ok("admin.vm.tag.List", "", "work"))
        self.assertEqual(b"1", self.ok("admin.vm.tag.Get", "zeta", "work"))
        self.assertEqual(b"0", self.ok("admin.vm.tag.Get", "zeta", "tpl"))
        self.ok("admin.vm.tag.Remove", "zeta", "work")
        self.assertEqual(b"0", self.ok("admin.vm.tag.Get", "zeta", "work"))
        self.err("admin.vm.tag.Remove", "zeta", "work", exc="QubesTagNotFoundError")
        self.ok("admin.vm.tag.Remove", "created-by-dom0", "work")
        self.assertEqual(b"Alpha_1\nmid-dle\n", self.ok("admin.vm.tag.List", "", "work"))


class LabelsAndClasses(ModelCase):
    def test_labels(self):
        self.assertEqual("".join(n + "\n" for n, _ in LABELS).encode(),
                         self.ok("admin.label.List"))
        for i, (name, color) in enumerate(LABELS, 1):
            with self.subTest(label=name):
                self.assertEqual(color.encode(), self.ok("admin.label.Get", name))
                self.assertEqual(str(i).encode(), self.ok("admin.label.Index", name))

    def test_every_label_on_a_qube(self):
        for name, _ in LABELS:
            self.ok("admin.vm.property.Set", "label", "work", name.encode())
            self.assertProp("work", "label", name, False, "label")

    def test_vmclass_list(self):
        self.assertEqual(b"AdminVM\nAppVM\nDispVM\nStandaloneVM\nTemplateVM\n",
                         self.ok("admin.vmclass.List"))

    def test_vm_list(self):
        self.create("AppVM", "b-second", "red", "tpl")
        self.create("AppVM", "a-first", "red", "tpl")
        self.create("AppVM", "Zupper", "red", "tpl")
        lines = self.ok("admin.vm.List").decode().splitlines()
        names = [l.split()[0] for l in lines]
        self.assertEqual("dom0", names[0])
        self.assertEqual(sorted(names[1:]), names[1:])
        self.assertEqual({"dom0", "tpl", "work", "dvm", "disp1", "b-second", "a-first",
                          "Zupper"}, set(names))
        classes = dict(re.match(r"(\S+) class=(\S+) state=(\S+) uuid=\S+\Z", l).group(1, 2)
                       for l in lines)
        self.assertEqual({"dom0": "AdminVM", "tpl": "TemplateVM", "work": "AppVM",
                          "disp1": "DispVM"},
                         {k: classes[k] for k in ["dom0", "tpl", "work", "disp1"]})
        for l in lines:
            state = l.split()[2]
            self.assertEqual("state=Running" if l.startswith("dom0 ") else "state=Halted",
                             state)

    def test_current_state(self):
        self.assertEqual(b"mem=0 mem_static_max=0 cputime=0 power_state=Halted",
                         self.ok("admin.vm.CurrentState", "", "work"))
        m = re.match(rb"\Amem=(\d+) mem_static_max=(\d+) cputime=(\d+) power_state=Running\Z",
                     self.ok("admin.vm.CurrentState", "", "dom0"))
        self.assertIsNotNone(m)
        self.assertGreater(int(m.group(1)), 0)
        self.assertGreaterEqual(int(m.group(2)), int(m.group(1)))


class RemoveAndPersist(ModelCase):
    def test_remove_then_recreate_is_fresh(self):
        self.ok("admin.vm.feature.Set", "foo", "work", b"bar")
        self.ok("admin.vm.tag.Set", "t1", "work")
        self.ok("admin.vm.property.Set", "memory", "work", b"1000")
        self.ok("admin.vm.Remove", "", "work")
        self.assertNotIn("work", self.vm_names())
        self.err("admin.vm.property.Get", "memory", "work", exc="QubesVMNotFoundError")
        self.create("AppVM", "work", "blue", "tpl")
        self.assertEqual(b"", self.ok("admin.vm.feature.List", "", "work"))
        self.assertEqual(b"created-by-dom0\n", self.ok("admin.vm.tag.List", "", "work"))
        self.assertProp("work", "memory", "400", True)
        self.assertProp("work", "label", "blue", False)

    def test_qids_are_reused_lowest_first(self):
        self.ok("admin.vm.Remove", "", "work")  # qid 2
        self.create("AppVM", "again", "red", "tpl")
        self.assertProp("again", "qid", "2")

    def test_everything_survives_restart(self):
        self.ok("admin.vm.feature.Set", "foo", "work", b"bar")
        self.ok("admin.vm.tag.Set", "t1", "work")
        self.ok("admin.vm.property.Set", "memory", "work", b"1000")
        self.ok("admin.vm.property.Set", "kernelopts", "work", b"x\\y\nz")
        self.ok("admin.property.Set", "default_template", "dom0", b"tpl")
        self.ok("admin.property.Set", "default_qrexec_timeout", "dom0", b"5")
        self.ok("admin.vm.feature.Set", "g", "dom0", b"1")
        before = self.snapshot()
        self.d.restart()
        self.assertEqual(before, self.snapshot())
        self.d.kill()
        self.d.start()
        self.assertEqual(before, self.snapshot())


if __name__ == "__main__":
    unittest.main()
