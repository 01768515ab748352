/* qvm-console-dispvm [-u USER] [DISPOSABLE_TEMPLATE]: an interactive shell in a fresh
 * disposable (from DISPOSABLE_TEMPLATE, else the default_dispvm), on a terminal allocated
 * inside it: `qvm-run --tty --dispvm=T` running the user's shell. The disposable goes
 * when the shell exits; the exit status is the shell's. Upstream's tool of this name
 * attaches to a disposable's serial console; here the qube's console is this shell. */
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include "cli.h"
#include "qrexec_run.h"

enum { OPT_USER = 1 };

static const struct opt_spec console_specs[] = {
    {"user", 'u', OPT_VALUE, OPT_USER, "USER", "run the shell as USER (default: the qube's)"},
};

static const struct opt_parser console_parser = {
    .usage = "[-h] [--user USER] [DISPOSABLE_TEMPLATE]",
    .description = "open an interactive shell in a new disposable qube",
    .positionals = "  DISPOSABLE_TEMPLATE   the disposable template (default: default_dispvm)\n",
    .specs = console_specs,
    .n_specs = ELEMENTSOF(console_specs),
};

static void console_option(void *ctx, int id, const char *value) {
    if (id == OPT_USER)
        *(const char **)ctx = value;
}

/* The login shell the qube's passwd names; -i: interactive, with job control. */
static const char SHELL_COMMAND[] = "exec \"${SHELL:-/bin/sh}\" -i";

int qvm_console_dispvm_main(int argc, char **argv) {
    _cleanup_(opts_result_free) struct opts_result r = {0};
    const char *user = NULL;
    signal(SIGPIPE, SIG_IGN);
    opts_parse(&console_parser, argc, argv, console_option, &user, &r);
    if (r.n_pos > 1)
        opts_error(&console_parser, "unrecognized arguments: %s", r.pos[1]);
    _cleanup_free_ char *target = NULL;
    if (asprintf(&target, r.n_pos ? "@dispvm:%s" : "@dispvm", r.n_pos ? r.pos[0] : "") < 0)
        abort();
    struct qrun_opts o = QRUN_OPTS_INIT;
    o.target = target;
    o.service = "qubes.VMShell";
    o.command = SHELL_COMMAND;
    o.user = user;
    o.pty = true;
    return qrun_call(&o);
}
