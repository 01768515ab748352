"""Every bad-input path: the right error (or no bytes at all where the protocol says so),
and nothing in the model changes. One daemon per class; each test compares the full
Admin API view of the model before and after."""

import socket
import time
import unittest

import harness
from harness import DaemonTestCase

PROTOCOL = "ProtocolError"
VALUE = "QubesValueError"
PROP_VALUE = "QubesPropertyValueError"
# Qubes' QubesPropertyValueError is a QubesValueError: either is a faithful answer.
ANY_VALUE = (VALUE, PROP_VALUE)


class UnchangedCase(DaemonTestCase):
    PER_CLASS = True

    @classmethod
    def populate(cls, d):
        def ok(method, arg="", dest="dom0", payload=b""):
            harness.ok_content(d, method, arg, dest, payload)
        ok("admin.vm.Create.TemplateVM", "", "dom0", b"name=tpl label=black")
        ok("admin.vm.Create.AppVM", "tpl", "dom0", b"name=work label=red")
        ok("admin.vm.Create.AppVM", "tpl", "dom0", b"name=dvm label=green")
        ok("admin.vm.property.Set", "template_for_dispvms", "dvm", b"True")
        ok("admin.vm.Create.DispVM", "dvm", "dom0", b"name=disp1 label=red")
        ok("admin.vm.Create.StandaloneVM", "", "dom0", b"name=alone label=blue")
        ok("admin.vm.feature.Set", "foo", "work", b"bar")
        ok("admin.vm.tag.Set", "mytag", "work")

    def setUp(self):
        super().setUp()
        self.before = self.snapshot()
        self.addCleanup(self.assert_unchanged)

    def assert_unchanged(self):
        self.assertTrue(self.d.running(), "dispenserd died:\n" + self.d.log()[-3000:])
        self.assertEqual(self.before, self.snapshot(), "a refused request changed the model")

    def assert_dropped(self, data, **kw):
        """The daemon closes the connection without sending a single byte."""
        self.assertEqual(b"", self.d.raw(data, **kw), "reply to %r" % data[:100])


class MalformedFrames(UnchangedCase):
    FRAMES = [
        b"",
        b"admin.vm.List+ dom0 name dom0",             # no NUL
        b"admin.vm.List+ dom0 name\x00",               # 3 fields
        b"admin.vm.List+ dom0\x00",                    # 2 fields
        b"admin.vm.List+\x00",                         # 1 field
        b"admin.vm.List+ dom0 nameX dom0\x00",         # bad destination type
        b"admin.vm.List+ dom0 keyword dom0\x00",       # keyword other than adminvm
        b"admin.vm.List+ dom0 uuid dom0\x00",
        b"admin.vm.List+ dom0\tname dom0\x00",       # a tab is not a separator
        b"admin.vm\x1bList+ dom0 name dom0\x00",      # control character in the method
        b"admin.vm.L\xc3\xafst+ dom0 name dom0\x00",   # non-ASCII method
        b"\x00",
        b"\x00\x00\x00",
        b"    \x00",
    ]

    def test_malformed_frames_get_no_bytes(self):
        for frame in self.FRAMES:
            with self.subTest(frame=frame):
                self.assert_dropped(frame)

    def test_garbage(self):
        self.assert_dropped(bytes(range(256)) * 8)

    def test_keyword_adminvm_means_dom0(self):
        got = self.d.raw(b"admin.vm.List+ dom0 keyword adminvm\x00")
        self.assertEqual(harness.parse_reply(got).content,
                         self.ok("admin.vm.List"))

    def test_oversized_request_gets_a_value_error(self):
        # qubesd drops it ("empty response"); the sender learns what was wrong instead
        head = b"admin.vm.feature.Set+big dom0 name work\x00"
        for size in [64 * 1024 + 1, 300 * 1024, 4 * 1024 * 1024]:
            with self.subTest(size=size):
                r = harness.parse_reply(self.d.raw(head + b"a" * (size - len(head))))
                self.assertEqual((r.ok, r.exc), (False, VALUE))
                self.assertIn("admin.vm.feature.Set makes a request of %d bytes" % size,
                              r.message)
                self.assertIn("at most 65536 bytes", r.message)
        # the daemon is fine and answers at once
        t = time.monotonic()
        self.ok("admin.vm.List")
        self.assertLess(time.monotonic() - t, 1.0)

    def test_request_beyond_16m_is_dropped(self):
        head = b"admin.vm.feature.Set+big dom0 name work\x00"
        self.assert_dropped(head + b"a" * (16 * 1024 * 1024 + 1))
        self.ok("admin.vm.List")

    def test_request_of_exactly_64k_is_served(self):
        head = b"admin.vm.feature.Get+big dom0 name work\x00"
        # payload makes it 65536 bytes: within the limit, so a real answer (unexpected payload)
        got = self.d.raw(head + b"a" * (64 * 1024 - len(head)))
        r = harness.parse_reply(got)
        self.assertEqual((r.ok, r.exc), (False, PROTOCOL))

    def test_client_that_never_finishes_does_not_block_others(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(self.d.socket)
        s.sendall(b"admin.vm.List+ dom0 na")  # and never more, never EOF
        try:
            t = time.monotonic()
            self.ok("admin.vm.List")
            self.assertLess(time.monotonic() - t, 1.0)
        finally:
            s.close()


class MalformedContent(UnchangedCase):
    """Framed requests with bad content: a Qubes error naming the field and its rule or
    limit, in printable ASCII whatever the input was; never an empty reply."""

    def assert_answered(self, data, exc, *words):
        got = self.d.raw(data)
        self.assertNotEqual(b"", got, "no reply to %r" % data[:80])
        r = harness.parse_reply(got)
        self.assertEqual((r.ok, r.exc), (False, exc), r)
        for w in words:
            self.assertIn(w, r.message)
        self.assertTrue(all(0x20 <= ord(ch) < 0x7f for ch in r.message), r.message)
        return r

    def test_non_ascii_and_control_characters_in_names(self):
        for dest in [b"w\xc3\xb6rk", b"do\x01m0", b"dom0\x7f", b"work\x01"]:
            with self.subTest(dest=dest):
                self.assert_answered(b"admin.vm.List+ dom0 name " + dest + b"\x00", VALUE,
                                     "VM name contains illegal characters")
        self.assert_answered(b"admin.vm.feature.Set+foo dom0 name work\x01\x00x", VALUE,
                             "VM name")
        # 16 two-byte letters are 32 bytes but 16 characters: not a length problem
        self.assert_answered(b"admin.vm.List+ dom0 name " + "\u0431".encode() * 16 + b"\x00",
                             VALUE, "illegal characters")

    def test_tag_with_space_or_non_ascii(self):
        for method in ["admin.vm.tag.Set", "admin.vm.tag.Get", "admin.vm.tag.Remove"]:
            with self.subTest(method=method):
                self.assert_answered(method.encode() + b"+a b dom0 name work\x00",
                                     "QubesInvalidTagError", "tag", "' ' at offset 1",
                                     "A-Z a-z 0-9 _ -")
                self.assert_answered(method.encode() + b"+t\xc3\xb6g dom0 name work\x00",
                                     "QubesInvalidTagError", "byte 0xc3 at offset 1")

    def test_feature_name_length_is_not_a_character_problem(self):
        r = self.err("admin.vm.feature.Set", "x" * 300, "work", b"v", exc=VALUE)
        self.assertEqual("feature name is 300 characters long: the limit is 255", r.message)
        self.ok("admin.vm.feature.Set", "x" * 255, "work", b"v")
        self.ok("admin.vm.feature.Remove", "x" * 255, "work")

    def test_feature_names_with_space_or_non_ascii(self):
        for arg in [b"a b", b"w\xc3\xb6rd", b"a\tb"]:
            for method, payload in [(b"admin.vm.feature.Set", b"v"),
                                    (b"admin.vm.feature.Get", b""),
                                    (b"admin.vm.feature.Remove", b"")]:
                with self.subTest(arg=arg, method=method):
                    self.assert_answered(method + b"+" + arg + b" dom0 name work\x00" + payload,
                                         VALUE, "feature name contains a disallowed character")

    def test_other_arguments_with_space_or_non_ascii(self):
        self.assert_answered(b"admin.vm.property.Get+la bel dom0 name work\x00", VALUE,
                             "the argument of admin.vm.property.Get", "' ' at offset 2")
        self.assert_answered(b"admin.vm.property.Set+l\xc3\xa4bel dom0 name work\x00red", VALUE,
                             "byte 0xc3 at offset 1")
        # a method that takes no argument says so first
        self.assert_answered(b"admin.vm.List+\x1b dom0 name dom0\x00", PROTOCOL,
                             "unexpected argument")

    def test_argument_cannot_write_lines_into_the_log(self):
        self.assert_answered(b"admin.vm.tag.Set+x\n<3>error: forged line dom0 name work\x00",
                             "QubesInvalidTagError", "byte 0x0a at offset 1")
        self.assertNotIn("\n<3>error: forged line", self.d.log())

    def test_seventy_kilobyte_feature_value(self):
        self.assert_answered(b"admin.vm.feature.Set+big dom0 name work\x00" + b"a" * 70000,
                             VALUE, "makes a request of 70040 bytes", "65536")


class MethodShape(UnchangedCase):
    def test_unknown_method(self):
        for m in ["admin.no.such.method", "admin.vm.list", "admin.vm.Create.AdminVM",
                  "admin.vm.Create.RemoteVM", "admin.vm.Create.", "admin.vm.property",
                  "admin.vm.property.Get.", "x"]:
            with self.subTest(method=m):
                r = self.err(m, "", "dom0", exc=PROTOCOL)
                self.assertIn("no such method", r.message)

    def test_upstream_methods_we_lack_are_not_implemented(self):
        # Known Admin API methods answer QubesNotImplementedError (which upstream tools
        # catch: qvm-clone's rollback, --ignore-errors), naming the method.
        for m, arg, dest, payload in [("admin.vm.volume.Import", "private", "work", b"x"),
                                      ("admin.backup.Execute", "x", "dom0", b""),
                                      ("admin.vm.device.usb.Assign", "dom0+1-1", "work",
                                       b"mode='required'"),
                                      ("admin.vm.firewall.GetPolicy", "", "work", b""),
                                      ("admin.backup.Info", "x", "dom0", b"")]:
            with self.subTest(method=m):
                r = self.err(m, arg, dest, payload, exc="QubesNotImplementedError")
                self.assertIn(m, r.message)
                self.assertIn("not implemented", r.message)

    def test_unknown_destination(self):
        self.err("admin.vm.List", "", "nosuchvm", exc="QubesVMNotFoundError")
        self.err("admin.vm.property.Set", "label", "nosuchvm", b"red",
                 exc="QubesVMNotFoundError")
        self.err("admin.vm.Remove", "", "nosuchvm", exc="QubesVMNotFoundError")

    def test_unknown_source(self):
        r = harness.parse_reply(self.d.call("admin.vm.List", source="nosuchvm"))
        self.assertFalse(r.ok)
        r = harness.parse_reply(self.d.call("admin.vm.property.Set", "label", "work", b"blue",
                                            source="work"))
        self.assertFalse(r.ok)

    def test_unexpected_payload(self):
        for method, arg, dest in [("admin.vm.List", "", "dom0"),
                                  ("admin.vm.property.Get", "label", "work"),
                                  ("admin.vm.property.Reset", "memory", "work"),
                                  ("admin.vm.feature.Remove", "foo", "work"),
                                  ("admin.vm.tag.Set", "t", "work"),
                                  ("admin.vm.Remove", "", "work"),
                                  ("admin.label.List", "", "dom0"),
                                  ("admin.property.Reset", "default_template", "dom0")]:
            with self.subTest(method=method):
                r = self.err(method, arg, dest, b"x", exc=PROTOCOL)
                self.assertIn("payload", r.message)

    def test_unexpected_argument(self):
        for method, dest in [("admin.vm.List", "dom0"), ("admin.vm.Remove", "work"),
                             ("admin.vm.property.List", "work"),
                             ("admin.vm.feature.List", "work"), ("admin.vm.tag.List", "work"),
                             ("admin.vm.CurrentState", "work"), ("admin.label.List", "dom0"),
                             ("admin.vmclass.List", "dom0")]:
            with self.subTest(method=method):
                self.err(method, "x", dest, exc=PROTOCOL)

    def test_missing_argument(self):
        for method, dest, payload in [("admin.vm.property.Get", "work", b""),
                                      ("admin.vm.property.Set", "work", b"1"),
                                      ("admin.vm.property.Reset", "work", b""),
                                      ("admin.vm.feature.Get", "work", b""),
                                      ("admin.vm.feature.Set", "work", b"v"),
                                      ("admin.vm.feature.Remove", "work", b""),
                                      ("admin.vm.tag.Set", "work", b""),
                                      ("admin.label.Get", "dom0", b""),
                                      ("admin.property.Set", "dom0", b"tpl")]:
            with self.subTest(method=method):
                self.err(method, "", dest, payload, exc=PROTOCOL)

    def test_wrong_destination_kind(self):
        self.err("admin.property.Get", "default_template", "work", exc=PROTOCOL)
        self.err("admin.vm.Create.AppVM", "tpl", "work", b"name=x label=red", exc=PROTOCOL)
        self.err("admin.label.List", "", "work", exc=PROTOCOL)
        self.err("admin.vm.Start", "", "dom0", exc=PROTOCOL)

    def test_events_with_argument_or_payload(self):
        r = harness.parse_reply(self.d.call("admin.Events", "x", "dom0"))
        self.assertEqual((r.ok, r.exc), (False, PROTOCOL))
        r = harness.parse_reply(self.d.call("admin.Events", "", "dom0", b"x"))
        self.assertEqual((r.ok, r.exc), (False, PROTOCOL))
        r = harness.parse_reply(self.d.call("admin.Events", "", "nosuch"))
        self.assertEqual((r.ok, r.exc), (False, "QubesVMNotFoundError"))


BAD_NAMES = {
    "": "empty",
    "a" * 32: "too long",
    "1bad": "starts with a digit",
    "_bad": "starts with underscore",
    ".bad": "starts with a dot",
    "-bad": "starts with a hyphen",
    "a@b": "illegal character",
    "a/b": "slash",
    "a:b": "colon",
    "a,b": "comma",
    "a+b": "plus",
    "none": "reserved",
    "default": "reserved",
    "Domain-0": "reserved (Xen)",
    "foo-dm": "reserved suffix",
}


class Names(UnchangedCase):
    def test_create_with_invalid_name(self):
        for name, why in BAD_NAMES.items():
            with self.subTest(name=name, why=why):
                self.err("admin.vm.Create.AppVM", "tpl", "dom0",
                         b"name=" + name.encode() + b" label=red", exc=VALUE)

    def test_invalid_name_as_destination(self):
        for name, why in BAD_NAMES.items():
            if not name or "+" in name:
                continue  # empty = malformed frame; '+' is in the method field's place
            with self.subTest(name=name, why=why):
                self.err("admin.vm.List", "", name, exc=VALUE)

    def test_invalid_name_as_vm_property(self):
        for name in ["1bad", "a@b", "a" * 32, "Domain-0", "foo-dm"]:
            with self.subTest(name=name):
                self.err("admin.vm.property.Set", "default_dispvm", "work", name.encode(),
                         exc=ANY_VALUE)
                self.err("admin.property.Set", "default_template", "dom0", name.encode(),
                         exc=ANY_VALUE)

    def test_existing_names(self):
        for name in ["dom0", "tpl", "work"]:
            with self.subTest(name=name):
                self.err("admin.vm.Create.AppVM", "tpl", "dom0",
                         ("name=%s label=red" % name).encode(),
                         exc="QubesVMAlreadyExistsError")
        self.err("admin.vm.Create.TemplateVM", "", "dom0", b"name=work label=red",
                 exc="QubesVMAlreadyExistsError")


class PropertyValues(UnchangedCase):
    CASES = [
        ("work", "memory", b"abc", VALUE),
        ("work", "memory", b"", VALUE),
        ("work", "memory", b"1.5", VALUE),
        ("work", "memory", b"0x10", VALUE),
        ("work", "memory", b"99999999999999999999", VALUE),
        ("work", "memory", b"0", ANY_VALUE),
        ("work", "memory", b"-1", ANY_VALUE),
        ("work", "vcpus", b"0", ANY_VALUE),
        ("work", "maxmem", b"-5", ANY_VALUE),
        ("work", "qrexec_timeout", b"0", ANY_VALUE),
        ("work", "shutdown_timeout", b"-1", ANY_VALUE),
        ("work", "debug", b"maybe", VALUE),
        ("work", "debug", b"", VALUE),
        ("work", "debug", b"2", VALUE),
        ("work", "autostart", b"Truee", VALUE),
        ("work", "label", b"nosuchlabel", "QubesLabelNotFoundError"),
        ("work", "label", b"", "QubesLabelNotFoundError"),
        ("work", "template", b"nosuchvm", PROP_VALUE),
        ("work", "template", b"work", ANY_VALUE),          # itself
        ("work", "template", b"alone", ANY_VALUE),         # not a TemplateVM
        ("work", "template", b"", ANY_VALUE),              # AppVM needs one
        ("work", "default_dispvm", b"nosuchvm", PROP_VALUE),
        ("work", "default_dispvm", b"tpl", ANY_VALUE),     # no template_for_dispvms
        ("work", "management_dispvm", b"work", ANY_VALUE),
        ("work", "netvm", b"tpl", VALUE),                  # provides no network
        ("work", "netvm", b"alone", VALUE),
        ("work", "mac", b"00:16:3e:5e:6c", PROP_VALUE),
        ("work", "mac", b"00-16-3e-5e-6c-00", PROP_VALUE),
        ("work", "netvm", b"nosuchvm", ANY_VALUE),
        ("work", "virt_mode", b"pvh", ANY_VALUE),
        ("work", "virt_mode", b"", ANY_VALUE),
        ("work", "virt_mode", b"xen", ANY_VALUE),
        ("work", "kernel", b"../../etc", ANY_VALUE),
        ("work", "kernel", b"a/b", ANY_VALUE),
        ("work", "kernelopts", "caf\u00e9".encode(), VALUE),  # non-ASCII
        ("work", "default_user", b"a\x01b", VALUE),            # control character
        ("work", "default_user", b"root:x", PROP_VALUE),      # ':' splits USER:COMMAND
        ("work", "default_user", b"a b", PROP_VALUE),
        ("work", "default_user", b"o'brien", PROP_VALUE),
        ("work", "default_user", b"u" * 64, PROP_VALUE),       # longer than any user name
        ("work", "kernelopts", b"a\x00b", VALUE),
        ("work", "kernelopts", b"x" * 5000, VALUE),            # too long
        ("disp1", "template", b"tpl", ANY_VALUE),          # DispVM needs a dvm template
        ("disp1", "template", b"work", ANY_VALUE),
        ("dvm", "template_for_dispvms", b"no", None),      # in use by disp1 -> refused
    ]

    def test_invalid_values(self):
        for vm, prop, value, exc in self.CASES:
            with self.subTest(vm=vm, prop=prop, value=value[:40]):
                self.err("admin.vm.property.Set", prop, vm, value, exc=exc)

    def test_dvm_template_in_use_cannot_lose_the_flag(self):
        r = self.err("admin.vm.property.Set", "template_for_dispvms", "dvm", b"False",
                     exc="QubesVMInUseError")
        self.err("admin.vm.property.Reset", "template_for_dispvms", "dvm",
                 exc="QubesVMInUseError")
        self.assertIn("dvm", r.message)

    def test_unknown_property(self):
        for method, payload in [("admin.vm.property.Get", b""), ("admin.vm.property.Set", b"1"),
                                ("admin.vm.property.Reset", b""),
                                ("admin.vm.property.GetDefault", b"")]:
            with self.subTest(method=method):
                self.err(method, "nosuch", "work", payload, exc="QubesNoSuchPropertyError")
        # exists, but not on this class
        self.err("admin.vm.property.Get", "template", "tpl", exc="QubesNoSuchPropertyError")
        self.err("admin.vm.property.Get", "auto_cleanup", "work",
                 exc="QubesNoSuchPropertyError")
        self.err("admin.vm.property.Set", "template", "alone", b"tpl",
                 exc="QubesNoSuchPropertyError")
        self.err("admin.property.Get", "nosuch", "dom0", exc="QubesNoSuchPropertyError")
        self.err("admin.property.Set", "memory", "dom0", b"1", exc="QubesNoSuchPropertyError")

    def test_read_only_properties(self):
        for vm, prop, value in [("work", "name", b"other"), ("work", "qid", b"77"),
                                ("work", "uuid", b"12345678-1234-4234-8234-123456789abc"),
                                ("work", "klass", b"TemplateVM"), ("work", "icon", b"x"),
                                ("disp1", "dispid", b"42"), ("work", "updateable", b"True"),
                                ("work", "ip", b"10.137.0.99"), ("work", "dns", b"1.1.1.1"),
                                ("work", "visible_ip", b"1.2.3.4"),
                                ("work", "gateway", b"1.2.3.4"),
                                ("work", "start_time", b"1"),
                                ("dom0", "name", b"dom1"), ("dom0", "qid", b"5")]:
            with self.subTest(vm=vm, prop=prop):
                self.err("admin.vm.property.Set", prop, vm, value, exc=ANY_VALUE)
        for vm, prop in [("work", "name"), ("work", "qid"), ("work", "uuid"),
                         ("disp1", "dispid")]:
            with self.subTest(reset=prop):
                self.err("admin.vm.property.Reset", prop, vm, exc=ANY_VALUE)

    def test_template_cannot_be_reset(self):
        self.err("admin.vm.property.Reset", "template", "work", exc=ANY_VALUE)
        self.err("admin.vm.property.Reset", "template", "disp1", exc=ANY_VALUE)

    def test_invalid_global_values(self):
        for prop, value, exc in [("default_template", b"work", ANY_VALUE),
                                 ("default_template", b"nosuchvm", PROP_VALUE),
                                 ("default_dispvm", b"work", ANY_VALUE),
                                 ("default_dispvm", b"tpl", ANY_VALUE),
                                 ("management_dispvm", b"alone", ANY_VALUE),
                                 ("default_netvm", b"work", ANY_VALUE),
                                 ("default_qrexec_timeout", b"x", VALUE),
                                 ("default_qrexec_timeout", b"0", ANY_VALUE),
                                 ("default_shutdown_timeout", b"-3", ANY_VALUE),
                                 ("default_kernel", b"../x", ANY_VALUE),
                                 ("stats_interval", "\u00e9".encode(), VALUE)]:
            with self.subTest(prop=prop, value=value):
                self.err("admin.property.Set", prop, "dom0", value, exc=exc)


class Features(UnchangedCase):
    def test_invalid_feature_names(self):
        for name in ["a/b", "a=b", "a*b", "a:b", "a%b", "a!b", "x" * 300]:
            with self.subTest(name=name):
                r = self.err("admin.vm.feature.Set", name, "work", b"v", exc=VALUE)
                self.assertIn("feature name", r.message)

    def test_invalid_feature_values(self):
        for value in [b"a\nb", b"\x01", b"\x7f", b"tab\there", b"a\x00b",
                      "caf\u00e9".encode(), b"\xff\xfe"]:
            with self.subTest(value=value):
                r = self.err("admin.vm.feature.Set", "foo", "work", value, exc=VALUE)
                self.assertIn("feature value contains a disallowed character", r.message)

    def test_protected_features(self):
        for name in ["preload-dispvm", "preload-dispvm-in-progress",
                     "preload-dispvm-completed"]:
            for dest in ["work", "dvm", "dom0"]:
                with self.subTest(name=name, dest=dest):
                    self.err("admin.vm.feature.Set", name, dest, b"x",
                             exc="PermissionDenied")
                    self.err("admin.vm.feature.Set", name, dest, b"",
                             exc="PermissionDenied")
                    self.err("admin.vm.feature.Remove", name, dest, exc="PermissionDenied")

    def test_missing_feature(self):
        for method in ["admin.vm.feature.Get", "admin.vm.feature.Remove",
                       "admin.vm.feature.CheckWithTemplate",
                       "admin.vm.feature.CheckWithAdminVM",
                       "admin.vm.feature.CheckWithNetvm",
                       "admin.vm.feature.CheckWithTemplateAndAdminVM"]:
            with self.subTest(method=method):
                self.err(method, "nosuch", "work", exc="QubesFeatureNotFoundError")


class Tags(UnchangedCase):
    def test_invalid_tag_names(self):
        for tag in ["a.b", "a/b", "a:b", "a=b", "a*b", "a%b"]:
            for method in ["admin.vm.tag.Get", "admin.vm.tag.Set", "admin.vm.tag.Remove"]:
                with self.subTest(tag=tag, method=method):
                    self.err(method, tag, "work", exc="QubesInvalidTagError")

    def test_remove_missing_tag(self):
        self.err("admin.vm.tag.Remove", "nosuch", "work", exc="QubesTagNotFoundError")

    def test_setting_present_tag_is_a_no_op(self):
        self.ok("admin.vm.tag.Set", "mytag", "work")


class Labels(UnchangedCase):
    def test_unknown_label(self):
        for method in ["admin.label.Get", "admin.label.Index"]:
            for label in ["nosuch", "Red", "0", "9"]:
                with self.subTest(method=method, label=label):
                    self.err(method, label, "dom0", exc="QubesLabelNotFoundError")


class CreateAndRemove(UnchangedCase):
    def create_err(self, klass, template, payload, exc):
        return self.err("admin.vm.Create." + klass, template, "dom0", payload, exc=exc)

    def test_bad_create_payloads(self):
        for payload in [b"", b"name=x", b"label=red", b"name=x label=nosuchlabel",
                        b"name=x label=", b"name=x label=red pool=lvm",
                        b"name=x label=red foo=bar", b"name=x name=y label=red",
                        b"name=x label=red label=red", b"name=x label=red junk",
                        "name=x\u00e9 label=red".encode(), b"name=x\tlabel=red"]:
            with self.subTest(payload=payload):
                self.create_err("AppVM", "tpl", payload, PROTOCOL)

    def test_unknown_template(self):
        self.create_err("AppVM", "nosuch", b"name=x label=red", "QubesVMNotFoundError")

    def test_template_of_wrong_class(self):
        for template in ["work", "alone", "dom0", "disp1"]:
            with self.subTest(template=template):
                self.create_err("AppVM", template, b"name=x label=red", ANY_VALUE)

    def test_class_without_template_given_one(self):
        self.create_err("TemplateVM", "tpl", b"name=x label=red", PROTOCOL)
        self.create_err("StandaloneVM", "tpl", b"name=x label=red", PROTOCOL)

    def test_no_template_and_no_default_template(self):
        r = self.create_err("AppVM", "", b"name=x label=red", ANY_VALUE)
        self.assertIn("emplate", r.message)

    def test_dispvm_template_without_template_for_dispvms(self):
        for template in ["work", "tpl", "alone"]:
            with self.subTest(template=template):
                self.create_err("DispVM", template, b"name=x label=red", ANY_VALUE)
        # and no default_dispvm to fall back on
        self.create_err("DispVM", "", b"name=x label=red", ANY_VALUE)

    def test_remove_dom0(self):
        self.err("admin.vm.Remove", "", "dom0", exc="QubesVMInUseError")

    def test_remove_template_in_use(self):
        r = self.err("admin.vm.Remove", "", "tpl", exc="QubesVMInUseError")
        for dependent in ["work", "dvm"]:
            self.assertIn(dependent, r.message)

    def test_remove_dispvm_template_in_use(self):
        r = self.err("admin.vm.Remove", "", "dvm", exc="QubesVMInUseError")
        self.assertIn("disp1", r.message)


class InUseByProperties(DaemonTestCase):
    """Dependents through default_dispvm, per qube and global; then freed again."""

    def test_default_dispvm_dependents(self):
        self.create("TemplateVM", "tpl", "black")
        self.create("AppVM", "dvm", "red", "tpl")
        self.create("AppVM", "work", "red", "tpl")
        self.ok("admin.vm.property.Set", "template_for_dispvms", "dvm", b"True")
        self.ok("admin.property.Set", "default_dispvm", "dom0", b"dvm")
        self.ok("admin.vm.property.Set", "default_dispvm", "work", b"dvm")
        before = self.snapshot()
        r = self.err("admin.vm.Remove", "", "dvm", exc="QubesVMInUseError")
        self.assertIn("default_dispvm", r.message)
        self.assertIn("work", r.message)
        self.assertEqual(before, self.snapshot())
        self.ok("admin.vm.property.Reset", "default_dispvm", "work")
        r = self.err("admin.vm.Remove", "", "dvm", exc="QubesVMInUseError")
        self.assertNotIn("work", r.message)
        self.ok("admin.property.Reset", "default_dispvm", "dom0")
        self.ok("admin.vm.Remove", "", "dvm")
        self.assertNotIn("dvm", self.vm_names())

    def test_global_default_template_dependent(self):
        self.create("TemplateVM", "tpl", "black")
        self.ok("admin.property.Set", "default_template", "dom0", b"tpl")
        r = self.err("admin.vm.Remove", "", "tpl", exc="QubesVMInUseError")
        self.assertIn("default_template", r.message)


class Lifecycle(UnchangedCase):
    def test_start_without_root_filesystem(self):
        # nothing was ever imported into these qubes' (templates') root volumes
        for vm in ["work", "tpl", "disp1", "alone"]:
            with self.subTest(vm=vm):
                r = self.err("admin.vm.Start", "", vm, exc="QubesException")
                self.assertIn(vm, r.message)
                self.assertIn("root filesystem", r.message)
                line = self.ok("admin.vm.List", "", vm).decode()
                self.assertIn("state=Halted", line)

    def test_state_checks_come_first_on_halted_qubes(self):
        # as in Qubes: stopping a halted qube says so (qvm-shutdown then succeeds)
        for method, arg, exc in [("admin.vm.Shutdown", "", "QubesVMNotStartedError"),
                                 ("admin.vm.Shutdown", "force", "QubesVMNotStartedError"),
                                 ("admin.vm.Shutdown", "wait", "QubesVMNotStartedError"),
                                 ("admin.vm.Shutdown", "force+wait", "QubesVMNotStartedError"),
                                 ("admin.vm.Kill", "", "QubesVMNotStartedError"),
                                 ("admin.vm.Pause", "", "QubesVMNotRunningError"),
                                 ("admin.vm.Unpause", "", "QubesVMNotPausedError")]:
            for vm in ["work", "tpl", "disp1"]:
                with self.subTest(method=method, arg=arg, vm=vm):
                    r = self.err(method, arg, vm, exc=exc)
                    self.assertIn(vm, r.message)

    def test_create_disposable_refusals(self):
        # not a disposable template; dom0 without a default_dispvm; bad argument/payload
        for dest, arg, payload, exc in [("work", "", b"", "QubesException"),
                                        ("tpl", "", b"", "QubesException"),
                                        ("dom0", "", b"", "QubesException"),
                                        ("dvm", "now", b"", "PermissionDenied"),
                                        ("dvm", "", b"name", PROTOCOL)]:
            with self.subTest(dest=dest, arg=arg, payload=payload):
                self.err("admin.vm.CreateDisposable", arg, dest, payload, exc=exc)

    def test_lifecycle_bad_arguments(self):
        self.err("admin.vm.Shutdown", "now", "work", exc="PermissionDenied")
        self.err("admin.vm.Start", "x", "work", exc=PROTOCOL)
        self.err("admin.vm.Kill", "", "work", b"x", exc=PROTOCOL)
        self.err("admin.vm.CreateDisposable", "x", "dvm", exc="PermissionDenied")
        self.err("admin.vm.CreateDisposable", "", "dvm", b"name", exc=PROTOCOL)


class StillResponsive(UnchangedCase):
    def test_many_bad_requests_then_good_ones(self):
        for i in range(200):
            self.assertEqual(b"", self.d.raw(b"\x00garbage %d" % i))
            self.err("admin.vm.property.Set", "memory", "work", b"x%d" % i, exc=VALUE)
        self.assertEqual(self.ok("admin.vm.property.Get", "memory", "work"),
                         b"default=True type=int 400")


if __name__ == "__main__":
    unittest.main()
