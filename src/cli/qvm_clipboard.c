/* qvm-clipboard copy|paste|show: Qubes' two-step inter-qube clipboard from the host
 * (docs/gui.md). What Qubes' GUI daemon does on Ctrl-Shift-C and Ctrl-Shift-V is a
 * command here that the desktop binds to those keys:
 *
 *   copy QUBE   QUBE's own X clipboard (read inside it with xclip, as its user) into
 *               the global clipboard the daemon keeps (dispenser.clipboard.Copy), which
 *               records QUBE as its source and refuses more than QUBE's limit;
 *   paste QUBE  the global clipboard into QUBE's X clipboard, if the qrexec policy allows
 *               qubes.ClipboardPaste from the source to QUBE; the daemon empties it;
 *   show        the source and size of what the global clipboard holds.
 *
 * With --title, QUBE comes from a window title "[QUBE] ..." (the prefix the host's GUI
 * daemon gives every window of a qube), for a key binding that names the focused window. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "qrexec_run.h"

/* The largest clipboard (api_checks.h); the daemon applies the qube's own limit. */
#define CLIPBOARD_LIMIT CLIPBOARD_MAX_BYTES
#define XCLIP_OUT "xclip -selection clipboard -o"
/* xclip stays behind to serve the selection: its output must not hold the call open */
#define XCLIP_IN "xclip -selection clipboard -i >/dev/null 2>&1"

enum { OPT_TITLE = 1 };

static const struct opt_spec clip_specs[] = {
    {"title", 't', OPT_VALUE, OPT_TITLE, "TITLE",
     "the qube of a window titled \"[QUBE] ...\" (the focused window's, in a key binding)"},
};

static const struct opt_parser clip_parser = {
    .usage = "[-h] [--title TITLE] {copy,paste,show} [VMNAME]",
    .description = "copy a qube's clipboard to the global clipboard, or paste the global "
                   "clipboard into a qube's",
    .positionals = "  copy VMNAME           VMNAME's clipboard becomes the global clipboard\n"
                   "  paste VMNAME          the global clipboard goes to VMNAME's clipboard,\n"
                   "                        and is emptied\n"
                   "  show                  where the global clipboard's content came from, "
                   "and its size\n",
    .epilog = "Bind copy and paste of the focused window to keys, as Qubes' Ctrl-Shift-C "
              "and Ctrl-Shift-V: qvm-clipboard copy --title \"$(xdotool getactivewindow "
              "getwindowname)\"",
    .specs = clip_specs,
    .n_specs = ELEMENTSOF(clip_specs),
};

static void clip_option(void *ctx, int id, const char *value) { *(const char **)ctx = value; }

/* "[QUBE] rest" -> QUBE. The prefix is the host's: a qube names only what follows it. */
static void qube_of_title(const char *title, char *out, size_t size) {
    const char *end = title[0] == '[' ? strchr(title, ']') : NULL;
    if (!end || end == title + 1 || (size_t)(end - title - 1) >= size)
        cli_die("not the title of a qube's window: %s", title);
    snprintf(out, size, "%.*s", (int)(end - title - 1), title + 1);
}

/* The daemon decides again; asking first keeps a qube without a GUI (or a halted one,
 * which the call would start) from being called at all. */
static void require_running_gui(const char *name) {
    _cleanup_(qube_list_free) struct qube_list qubes = {0};
    struct cli_err err;
    if (qube_list_fetch(name, &qubes, &err) < 0)
        cli_die_err(&err);
    const struct qube *q = qube_list_find(&qubes, name);
    if (!q)
        cli_die("no such domain: '%s'", name);
    if (!streq(q->state, "Running"))
        cli_die("%s is not running", name);
    _cleanup_reply_ struct client_reply reply = {};
    const char *v = "";
    if (cli_call("admin.vm.feature.CheckWithTemplate", "gui", name, NULL, &reply, &err) == 0)
        v = reply.r.content;
    else if (!cli_err_is(&err, "QubesFeatureNotFoundError"))
        cli_die_err(&err);
    if (!*v || streq(v, "0") || streq(v, "False"))
        cli_die("%s has no GUI (feature gui), so no clipboard", name);
}

/* Runs command in the qube as its default user, stdin from in, stdout to out (-1: none). */
static int run_in(const char *qube, const char *command, int in, int out) {
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    struct qrun_opts o = QRUN_OPTS_INIT;
    o.target = qube;
    o.service = "qubes.VMShell";
    o.command = command;
    o.fds[0] = in >= 0 ? in : null;
    o.fds[1] = out >= 0 ? out : null;
    o.fds[2] = null;
    struct qrun q;
    char msg[QREXEC_MAX_MSG + 1];
    int kind = -1, rc = QRUN_EXIT_PROBLEM;
    if (qrun_start(&o, &q, msg, sizeof(msg)) == 0) {
        if (out >= 0)
            close(out); /* the service holds the write end now: EOF when it ends */
        rc = qrun_wait(&q, &kind, msg, sizeof(msg));
    } else if (out >= 0) {
        close(out);
    }
    close(null);
    if (kind != QREXEC_EXITED && kind != QREXEC_SIGNALED)
        cli_die("%s: %s", qube, *msg ? msg : "service call failed");
    return rc;
}

/* What xclip prints, at most CLIPBOARD_LIMIT + 1 bytes (one more tells the daemon it is
 * over any limit); -1 when reading failed (no clipboard owner, no xclip). */
static int read_qube_clipboard(const char *qube, struct strbuf *out) {
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        cli_die("pipe: %m");
    pid_t pid = fork();
    if (pid < 0)
        cli_die("fork: %m");
    if (pid == 0) {
        close(p[0]);
        _exit(run_in(qube, XCLIP_OUT, -1, p[1]) == 0 ? 0 : 1);
    }
    close(p[1]);
    char buf[16384];
    ssize_t n;
    while ((n = read(p[0], buf, sizeof(buf))) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            break;
        size_t room = CLIPBOARD_LIMIT + 1 - out->len;
        strbuf_append(out, buf, (size_t)n < room ? (size_t)n : room);
        if (out->len > CLIPBOARD_LIMIT)
            break; /* the rest is not wanted: xclip gets EPIPE */
    }
    close(p[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    return ok || out->len > CLIPBOARD_LIMIT ? 0 : -1;
}

static int call(const char *method, const char *dest, const struct strbuf *payload,
                struct client_reply *reply) {
    int r = client_call(method, "", dest, payload ? payload->data : NULL,
                        payload ? payload->len : 0, reply);
    struct cli_err err = {0};
    if (r < 0)
        cli_die("cannot reach dispenserd: %s", strerror(-r));
    if (reply->empty)
        cli_die("dispenserd gave no reply; see its log: " DAEMON_LOG_HINT);
    if (!reply->r.ok) {
        snprintf(err.exc, sizeof(err.exc), "%s", reply->r.exc);
        snprintf(err.msg, sizeof(err.msg), "%s", reply->r.msg);
        cli_die_err(&err);
    }
    return 0;
}

static int do_copy(const char *qube) {
    _cleanup_strbuf_ struct strbuf data = STRBUF_INIT;
    _cleanup_reply_ struct client_reply reply = {};
    require_running_gui(qube);
    if (read_qube_clipboard(qube, &data) < 0)
        cli_die("%s: cannot read its clipboard (empty, or no xclip in the qube)", qube);
    call("dispenser.clipboard.Copy", qube, &data, &reply);
    printf("copied %zu bytes from %s to the global clipboard\n", data.len, qube);
    return 0;
}

static int do_paste(const char *qube) {
    _cleanup_reply_ struct client_reply reply = {};
    require_running_gui(qube);
    call("dispenser.clipboard.Paste", qube, NULL, &reply);
    int fd = memfd_create("clipboard", MFD_CLOEXEC);
    if (fd < 0)
        cli_die("memfd_create: %m");
    const char *p = reply.r.content;
    for (size_t done = 0, len = reply.r.content_len; done < len;) {
        ssize_t n = write(fd, p + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            cli_die("memfd: %m");
        done += (size_t)n;
    }
    lseek(fd, 0, SEEK_SET);
    int rc = run_in(qube, XCLIP_IN, fd, -1);
    close(fd);
    if (rc != 0)
        cli_die("%s: xclip failed (status %d); the global clipboard was emptied", qube, rc);
    printf("pasted %zu bytes into %s's clipboard\n", reply.r.content_len, qube);
    return 0;
}

static int do_show(void) {
    _cleanup_reply_ struct client_reply reply = {};
    call("dispenser.clipboard.Get", "dom0", NULL, &reply);
    char source[64];
    unsigned long long size;
    if (reply.r.content_len == 0 || sscanf(reply.r.content, "%63s %llu", source, &size) != 2)
        printf("the global clipboard is empty\n");
    else
        printf("%llu bytes copied from %s\n", size, source);
    return 0;
}

int qvm_clipboard_main(int argc, char **argv) {
    _cleanup_(opts_result_free) struct opts_result r = {0};
    const char *title = NULL;
    char from_title[64];
    signal(SIGPIPE, SIG_IGN);
    opts_parse(&clip_parser, argc, argv, clip_option, &title, &r);
    if (r.n_pos < 1)
        opts_error(&clip_parser, "an action is required: copy, paste or show");
    const char *action = r.pos[0];
    if (streq(action, "show")) {
        if (r.n_pos != 1 || title)
            opts_error(&clip_parser, "show takes no qube");
        return do_show();
    }
    if (!streq(action, "copy") && !streq(action, "paste"))
        opts_error(&clip_parser, "unknown action '%s' (copy, paste or show)", action);
    if ((title != NULL) == (r.n_pos == 2) || r.n_pos > 2)
        opts_error(&clip_parser, "%s takes one VMNAME, or --title", action);
    const char *qube = r.n_pos == 2 ? r.pos[1] : from_title;
    if (title)
        qube_of_title(title, from_title, sizeof(from_title));
    return streq(action, "copy") ? do_copy(qube) : do_paste(qube);
}
