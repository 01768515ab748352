"""GUI qubes (docs/gui.md) under an Xvfb of the test's own as the host display: a GUI
program in a qube maps a window there titled "[QUBE] title", bordered in the qube's label
colour; the qube sees only its own X server; a headless qube gets nothing of the GUI;
closing the window of a `qvm-run --dispvm` call ends the disposable; a preloaded GUI
disposable (its GUI agent started before it was paused) maps its window too.

The template is the busybox one with the host's /usr (feature container-host-usr), so the
qubes run the host's Xvfb, xpra and xmessage: the test needs them installed on the host
(scripts/install-deps.sh) and skips, saying what is missing, where they are not."""

import ctypes
import ctypes.util
import os
import re
import shutil
import subprocess
import time
import unittest

import harness
import tempfile
import test_engine
from test_engine import EngineTestCase, build_template, kill_all_qubes, run_tool

WINDOW_WAIT = 120.0  # a cold GUI disposable on a loaded two-core machine: xpra is Python
CLOSE_WAIT = 60.0
TEMPLATE_SETUP = "ln -s usr/lib /lib && ln -s usr/lib64 /lib64"
HOST_ETC = ["etc/xpra", "etc/fonts", "etc/X11"]  # what xpra and Xvfb read beside /usr
DEFAULT_POLICY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "policy",
                              "50-dispenser-default.policy")
LABEL_COLOURS = {"red": 0xcc0000, "green": 0x73d216, "blue": 0x3465a4}


def xpra_python_reason():
    """xpra's own interpreter must have what its server and client import at run time."""
    try:
        with open(shutil.which("xpra")) as f:
            python = f.readline()[2:].strip().split()[0]
    except (OSError, IndexError, TypeError):
        return "cannot read xpra's interpreter"
    r = subprocess.run([python, "-c", "import PIL, cairo, gi, xpra"], capture_output=True)
    if r.returncode != 0:
        return "xpra's Python lacks python3-pil/python3-gi-cairo (scripts/install-deps.sh)"
    return None


def gui_skip_reason():
    reason = test_engine.engine_skip_reason()
    if reason:
        return reason
    for prog in ("Xvfb", "xpra", "xmessage", "xdotool", "xdpyinfo", "xclip"):
        if not shutil.which(prog):
            return "%s is not installed (scripts/install-deps.sh installs it)" % prog
    if not ctypes.util.find_library("X11"):
        return "libX11 is not installed"
    return xpra_python_reason()


# --- the host display ---

class HostDisplay:
    """An Xvfb of our own; Xvfb picks a free display number and writes it to a pipe."""

    def __init__(self):
        # not :0, the number every qube's own display has: a qube that could reach the
        # host's display must not pass for one that reaches its own
        for number in range(100 + os.getpid() % 300, 1000):
            if os.path.exists("/tmp/.X%d-lock" % number):
                continue
            if self._start(number):
                self.name = ":%d" % number
                return
        raise AssertionError("no free display number for Xvfb")

    def _start(self, number):
        """Xvfb writes the number to the -displayfd pipe once it accepts connections."""
        r, w = os.pipe()
        self.proc = subprocess.Popen(
            ["Xvfb", ":%d" % number, "-displayfd", str(w), "-screen", "0", "1280x1024x24",
             "-nolisten", "tcp"],
            pass_fds=(w,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(w)
        with os.fdopen(r) as f:
            ok = f.readline().strip() == str(number)
        if not ok:
            self.proc.kill()
            self.proc.wait()
        return ok

    def env(self):
        return dict(os.environ, DISPLAY=self.name)

    def windows(self, title_regex):
        """Window ids whose title matches (xdotool search), [] when none."""
        r = subprocess.run(["xdotool", "search", "--name", title_regex], env=self.env(),
                           capture_output=True, text=True, timeout=30)
        return [int(w) for w in r.stdout.split()]

    def title(self, wid):
        r = subprocess.run(["xdotool", "getwindowname", str(wid)], env=self.env(),
                           capture_output=True, text=True, timeout=30)
        return r.stdout.strip()

    def wait_window(self, title_regex, timeout=WINDOW_WAIT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.windows(title_regex)
            if found:
                return found[0]
            time.sleep(0.1)
        raise AssertionError("no window titled %r on %s within %ss" % (title_regex, self.name,
                                                                       timeout))

    def wait_gone(self, title_regex, timeout=CLOSE_WAIT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.windows(title_regex):
                return
            time.sleep(0.1)
        raise AssertionError("window %r still there after %ss" % (title_regex, timeout))

    def close_window(self, wid):
        """What a window manager's close button does: WM_DELETE_WINDOW to the window."""
        xlib.close_window(self.name, wid)

    def pixel(self, wid, x, y):
        return xlib.pixel(self.name, wid, x, y)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Xlib:
    """The two X calls xdotool 2016 lacks, through libX11 (ctypes: no extra module)."""

    class ClientMessage(ctypes.Structure):
        _fields_ = [("type", ctypes.c_int), ("serial", ctypes.c_ulong),
                    ("send_event", ctypes.c_int), ("display", ctypes.c_void_p),
                    ("window", ctypes.c_ulong), ("message_type", ctypes.c_ulong),
                    ("format", ctypes.c_int), ("data", ctypes.c_long * 5)]

    class Event(ctypes.Union):
        pass

    Event._fields_ = [("xclient", ClientMessage), ("pad", ctypes.c_long * 24)]

    def __init__(self):
        self.lib = None

    def _x(self):
        if self.lib is None:
            x = ctypes.CDLL(ctypes.util.find_library("X11"))
            x.XOpenDisplay.restype = ctypes.c_void_p
            x.XOpenDisplay.argtypes = [ctypes.c_char_p]
            x.XInternAtom.restype = ctypes.c_ulong
            x.XInternAtom.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
            x.XSendEvent.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int,
                                     ctypes.c_long, ctypes.POINTER(Xlib.Event)]
            x.XFlush.argtypes = [ctypes.c_void_p]
            x.XCloseDisplay.argtypes = [ctypes.c_void_p]
            x.XGetImage.restype = ctypes.c_void_p
            x.XGetImage.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int, ctypes.c_int,
                                    ctypes.c_uint, ctypes.c_uint, ctypes.c_ulong, ctypes.c_int]
            x.XGetPixel.restype = ctypes.c_ulong
            x.XGetPixel.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
            self.lib = x
        return self.lib

    def close_window(self, display, wid):
        x = self._x()
        d = x.XOpenDisplay(display.encode())
        ev = Xlib.Event()
        ev.xclient.type = 33  # ClientMessage
        ev.xclient.window = wid
        ev.xclient.message_type = x.XInternAtom(d, b"WM_PROTOCOLS", 0)
        ev.xclient.format = 32
        ev.xclient.data[0] = x.XInternAtom(d, b"WM_DELETE_WINDOW", 0)
        x.XSendEvent(d, wid, 0, 0, ctypes.byref(ev))
        x.XFlush(d)
        x.XCloseDisplay(d)

    def pixel(self, display, wid, px, py):
        x = self._x()
        d = x.XOpenDisplay(display.encode())
        image = x.XGetImage(d, wid, px, py, 1, 1, 0xFFFFFFFF, 2)  # ZPixmap
        value = x.XGetPixel(image, 0, 0) & 0xFFFFFF if image else None
        x.XCloseDisplay(d)
        return value


xlib = Xlib()


def blended(colour, under, alpha=0.6):
    """xpra draws its border at 60% over the window's own pixels."""
    out = 0
    for shift in (16, 8, 0):
        c, u = (colour >> shift) & 0xFF, (under >> shift) & 0xFF
        out |= int(round(alpha * c + (1 - alpha) * u)) << shift
    return out


def close_enough(a, b, tolerance=3):
    return all(abs(((a >> s) & 0xFF) - ((b >> s) & 0xFF)) <= tolerance for s in (16, 8, 0))


@unittest.skipIf(gui_skip_reason(), gui_skip_reason())
class GuiCase(EngineTestCase):
    """One daemon and one host display for the class; template `gt` runs the host's /usr,
    `dvm` is a GUI disposable template (label blue), `work` a GUI AppVM (label green)."""

    TEMPLATE = "gt"

    @classmethod
    def setUpClass(cls):
        # the shipped default policy (qubes.ClipboardPaste allowed between qubes); tests
        # add deny rules before it
        cls.policy_dir = tempfile.mkdtemp(prefix="dispenser-gui-policy-")
        shutil.copy(DEFAULT_POLICY, cls.policy_dir)
        cls.display = HostDisplay()
        try:
            super().setUpClass()
        except BaseException:
            cls.display.stop()
            shutil.rmtree(cls.policy_dir, ignore_errors=True)
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            cls.display.stop()
            shutil.rmtree(cls.policy_dir, ignore_errors=True)

    @classmethod
    def daemon_args(cls):
        return ["--gui-display", cls.display.name, "--policy-dir", cls.policy_dir]

    @classmethod
    def populate(cls, d):
        build_template(d, "gt")
        for feature, value in (("container-host-usr", "1"),):
            harness.ok_content(d, "admin.vm.feature.Set", feature, "gt", value.encode())
        r = run_tool(d, "qvm-run", "-u", "root", "-p", "gt", TEMPLATE_SETUP)
        if r.returncode != 0:
            raise AssertionError("setting up gt: %s" % r.stderr)
        etc = subprocess.run(["tar", "-C", "/", "-cf", "-"] + HOST_ETC, capture_output=True,
                             check=True).stdout
        r = subprocess.run([harness.tool_path("qvm-run"), "-u", "root", "-p", "gt",
                            "tar -C / -xf -"], input=etc, env=d.env(), capture_output=True,
                           timeout=60)
        if r.returncode != 0:
            raise AssertionError("copying %s into gt: %s" % (HOST_ETC, r.stderr))
        harness.ok_content(d, "admin.vm.Shutdown", "wait", "gt")
        harness.ok_content(d, "admin.vm.Create.AppVM", "gt", "dom0", b"name=dvm label=blue")
        harness.ok_content(d, "admin.vm.property.Set", "template_for_dispvms", "dvm", b"True")
        harness.ok_content(d, "admin.vm.feature.Set", "gui", "dvm", b"1")
        harness.ok_content(d, "admin.vm.Create.AppVM", "gt", "dom0", b"name=work label=green")
        harness.ok_content(d, "admin.vm.feature.Set", "gui", "work", b"1")
        harness.ok_content(d, "admin.vm.Create.AppVM", "gt", "dom0", b"name=plain label=red")
        for name in ("mail", "bank"):  # more GUI qubes, for the clipboard
            harness.ok_content(d, "admin.vm.Create.AppVM", "gt", "dom0",
                               b"name=%s label=yellow" % name.encode())
            harness.ok_content(d, "admin.vm.feature.Set", "gui", name, b"1")

    def setUp(self):
        super().setUp()
        self.addCleanup(kill_all_qubes, self.d)

    # --- helpers ---

    def tool(self, name, *args):
        """GUI qubes start slower than the harness's 20 s on a loaded machine."""
        r = run_tool(self.d, name, *args, timeout=WINDOW_WAIT)
        self.assertEqual(0, r.returncode, "%s %s: %s%s" % (name, args, r.stdout, r.stderr))
        return r

    def popen_run(self, *args):
        p = subprocess.Popen([harness.tool_path("qvm-run")] + list(args), env=self.d.env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(lambda: p.poll() is None and (p.kill(), p.wait()))
        return p

    def disposables(self):
        return [n for n in self.vm_names() if re.match(r"disp\d+$", n)]

    def wait_until(self, predicate, timeout, what):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.1)
        self.fail("%s: not within %ss" % (what, timeout))

    def state(self, name):
        for line in self.ok("admin.vm.List").decode().splitlines():
            fields = line.split(" ")
            if fields[0] == name:
                return dict(f.split("=", 1) for f in fields[1:])["state"]
        return None

    # --- tests ---

    def test_window_titled_with_the_qube_and_bordered_in_its_label_colour(self):
        self.tool("qvm-start", "work")
        p = self.popen_run("-p", "work", "xmessage -name hello 'hello from work'")
        wid = self.display.wait_window(r"^\[work\] ")
        self.assertEqual("[work] hello", self.display.title(wid))
        # the border: 3 pixels of the label colour at 60% over the window's own pixels
        green = LABEL_COLOURS["green"]
        self.wait_until(lambda: any(close_enough(self.display.pixel(wid, 1, 1), blended(green, u))
                                    for u in (0x000000, 0xFFFFFF)), 30,
                        "a border in the label colour (got %06x)" % (
                            self.display.pixel(wid, 1, 1) or 0))
        self.display.close_window(wid)
        p.wait(CLOSE_WAIT)
        self.display.wait_gone(r"^\[work\] ")

    def test_qube_sees_only_its_own_display(self):
        self.tool("qvm-start", "work")
        out = self.qout("work", "ls -A /tmp/.X11-unix; echo DISPLAY=$DISPLAY")
        self.assertEqual("X0\nDISPLAY=:0\n", out)
        # neither the host's display (its socket file nor its abstract socket) nor the
        # window channel's host end is reachable from inside
        r = test_engine.qrun(self.d, "work", "xdpyinfo -display %s" % self.display.name)
        self.assertNotEqual(0, r.returncode, r.stdout)
        sock = os.path.join(self.d.runtime_dir, "qubes", "work", "gui.sock")
        self.assertTrue(os.path.exists(sock))
        r = test_engine.qrun(self.d, "work", "ls %s" % sock)
        self.assertNotEqual(0, r.returncode)
        self.assertEqual("ok\n", self.qout("work", "xdpyinfo >/dev/null && echo ok"))

    def test_windows_come_back_after_a_daemon_restart(self):
        # qubes outlive their daemon; its host-side clients do not, and come back
        self.tool("qvm-start", "work")
        # in the background of a call that ends: the program does not depend on a caller
        self.qrun("work", "xmessage -name again 'still here' >/dev/null 2>&1 &")
        self.display.wait_window(r"^\[work\] again$")
        self.d.restart()
        self.display.wait_gone(r"^\[work\] again$")  # went with the daemon's client...
        wid = self.display.wait_window(r"^\[work\] again$")  # ...back with the new one
        self.display.close_window(wid)
        self.display.wait_gone(r"^\[work\] again$")
        self.assertEqual("", self.qout("work", "pidof xmessage || true"))

    def test_headless_qube_gets_nothing_of_the_gui(self):
        self.tool("qvm-start", "plain")
        self.assertFalse(os.path.exists(os.path.join(self.d.runtime_dir, "qubes", "plain",
                                                     "gui.sock")))
        out = self.qout("plain", "echo DISPLAY=$DISPLAY; ls -A /tmp")
        self.assertEqual("DISPLAY=\n", out)
        self.assertFalse(os.path.exists(os.path.join(self.d.runtime_dir, "gui", "plain.log")))

    def test_closing_the_window_ends_the_disposable(self):
        p = self.popen_run("--dispvm=dvm", "xmessage -name bye 'close me'")
        wid = self.display.wait_window(r"^\[disp[0-9]+\] bye$")
        disp = re.match(r"\[(disp\d+)\]", self.display.title(wid)).group(1)
        self.assertEqual("blue", self.get_prop(disp, "label")[2])
        self.assertEqual("Running", self.state(disp))
        self.display.close_window(wid)
        p.wait(CLOSE_WAIT)
        self.wait_until(lambda: disp not in self.vm_names(), CLOSE_WAIT, "%s removed" % disp)
        self.display.wait_gone(r"^\[%s\] " % disp)

    def test_preloaded_gui_disposable_maps_its_window(self):
        self.ok("admin.vm.feature.Set", "preload-dispvm-max", "dvm", b"1")
        self.addCleanup(self.d.call, "admin.vm.feature.Remove", "preload-dispvm-max", "dvm")

        def preloaded():
            v = parse_feature(self.reply("admin.vm.feature.Get", "preload-dispvm", "dvm"))
            return v and self.state(v.split()[0]) == "Paused" and v.split()[0]
        self.wait_until(preloaded, WINDOW_WAIT, "a paused preload of dvm")
        name = preloaded()
        # its GUI agent came up before the pause: the qube's own X server is there
        sock = os.path.join(self.d.runtime_dir, "qubes", name, "gui.sock")
        self.assertTrue(os.path.exists(sock))
        p = self.popen_run("--dispvm=dvm", "xmessage -name pre preloaded")
        wid = self.display.wait_window(r"^\[%s\] pre$" % name)
        self.display.close_window(wid)
        p.wait(CLOSE_WAIT)
        self.wait_until(lambda: name not in self.vm_names(), CLOSE_WAIT, "%s removed" % name)

    # --- the global clipboard (qvm-clipboard) ---

    def set_clipboard(self, qube, text):
        """What a program in the qube does on Ctrl-C: owns the qube's X clipboard."""
        self.qrun(qube, "printf %%s '%s' | xclip -selection clipboard -i >/dev/null 2>&1" % text)

    def clipboard_of(self, qube):
        """The qube's own X clipboard, None when no one there owns it."""
        r = self.qrun(qube, "xclip -selection clipboard -o", check=False)
        return r.stdout.decode() if r.returncode == 0 else None

    def clip(self, *args):
        return run_tool(self.d, "qvm-clipboard", *args, timeout=WINDOW_WAIT)

    def global_clipboard(self):
        path = os.path.join(self.d.runtime_dir, "clipboard", "qubes-clipboard.bin")
        with open(path, "rb") as data, open(path + ".source") as source:
            return source.read(), data.read()

    def start_gui_qubes(self, *names):
        for name in names:
            self.tool("qvm-start", name)

    def test_clipboard_goes_only_where_it_is_pasted_and_then_is_gone(self):
        self.start_gui_qubes("work", "mail", "bank")
        self.set_clipboard("work", "from work")
        self.assertEqual("from work", self.clipboard_of("work"))
        # nothing flows by itself: the other qubes' clipboards stay empty
        self.assertIsNone(self.clipboard_of("mail"))
        r = self.clip("copy", "work")
        self.assertEqual(0, r.returncode, r.stderr)
        self.assertEqual(("work", b"from work"), self.global_clipboard())
        self.assertEqual("9 bytes copied from work\n", self.clip("show").stdout)
        self.assertIsNone(self.clipboard_of("mail"))
        self.assertIsNone(self.clipboard_of("bank"))
        # the key binding's form: the qube of the focused window's title
        r = self.clip("paste", "--title", "[mail] hello")
        self.assertEqual(0, r.returncode, r.stderr)
        self.assertEqual("from work", self.clipboard_of("mail"))
        self.assertIsNone(self.clipboard_of("bank"))
        # emptied by the paste: a second one has nothing to give
        self.assertEqual(("", b""), self.global_clipboard())
        self.assertEqual("the global clipboard is empty\n", self.clip("show").stdout)
        r = self.clip("paste", "bank")
        self.assertNotEqual(0, r.returncode)
        self.assertIn("the global clipboard is empty", r.stderr)
        self.assertIsNone(self.clipboard_of("bank"))

    def test_paste_refused_by_the_policy_moves_nothing(self):
        deny = os.path.join(self.policy_dir, "30-clipboard.policy")
        before = self.d.log().count("rules loaded")
        with open(deny + ".tmp", "w") as f:
            f.write("qubes.ClipboardPaste  *  work  mail  deny\n")
        os.rename(deny + ".tmp", deny)
        self.addCleanup(os.unlink, deny)
        self.wait_until(lambda: self.d.log().count("rules loaded") > before, 30,
                        "the policy reloaded")
        self.start_gui_qubes("work", "mail")
        self.set_clipboard("work", "secret")
        self.assertEqual(0, self.clip("copy", "work").returncode)
        r = self.clip("paste", "mail")
        self.assertNotEqual(0, r.returncode)
        self.assertIn("refused by the policy", r.stderr)
        self.assertIsNone(self.clipboard_of("mail"))
        self.assertEqual(("work", b"secret"), self.global_clipboard())  # kept for another

    def test_clipboard_over_the_limit_or_without_a_gui_is_not_copied(self):
        self.start_gui_qubes("work", "plain")
        self.ok("admin.vm.feature.Set", "gui-max-clipboard-size", "work", b"256")
        self.addCleanup(self.d.call, "admin.vm.feature.Remove", "gui-max-clipboard-size", "work")
        self.set_clipboard("work", "small")
        self.assertEqual(0, self.clip("copy", "work").returncode)
        self.set_clipboard("work", "x" * 300)
        r = self.clip("copy", "work")
        self.assertNotEqual(0, r.returncode)
        self.assertIn("more than 256 bytes", r.stderr)
        self.assertEqual(("work", b"small"), self.global_clipboard())
        # past the most any qube may copy (64000, Qubes' default) whatever its limit
        self.ok("admin.vm.feature.Set", "gui-max-clipboard-size", "work", b"256000")
        self.qrun("work", "xclip -selection clipboard -i >/dev/null 2>&1", input=b"y" * 70000)
        r = self.clip("copy", "work")
        self.assertNotEqual(0, r.returncode)
        self.assertIn("more than 64000 bytes", r.stderr)
        self.assertEqual(("work", b"small"), self.global_clipboard())
        r = self.clip("copy", "plain")
        self.assertNotEqual(0, r.returncode)
        self.assertIn("no GUI", r.stderr)
        self.assertEqual(("work", b"small"), self.global_clipboard())


def parse_feature(reply):
    return reply.content.decode() if reply.ok else None


if __name__ == "__main__":
    unittest.main()
