/* qvm-open-in-dvm FILE: open a copy of FILE in a fresh disposable (qubes.OpenInVM on
 * @dispvm, the default disposable template of dom0). The file's basename is the service
 * argument, its content the service's stdin; what the handler prints is shown here.
 * Nothing comes back: the router destroys the disposable when the call ends. Upstream
 * (qubes-core-agent-linux qubes-rpc/qvm-open-in-dvm) is the same call made from a qube. */
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "qrexec_run.h"

/* A service argument is [A-Za-z0-9._+-]*, and a file name is rarely that. */
#define ARG_MAX_LEN 200

static const struct opt_parser open_parser = {
    .usage = "[-h] FILE",
    .description = "open a file in a new disposable qube (qubes.OpenInVM); changes made "
                   "there are not sent back",
    .positionals = "  FILE                  the file to open\n",
};

static void no_option(void *ctx, int id, const char *value) {}

static void sanitise(const char *name, char *out, size_t size) {
    size_t n = 0;
    for (const char *p = name; *p && n + 1 < size; p++) {
        unsigned char c = (unsigned char)*p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  strchr("._+-", c);
        out[n++] = ok && c ? (char)c : '_';
    }
    out[n] = '\0';
    /* "", "." and ".." would name no file on the other side */
    if (n == 0 || streq(out, ".") || streq(out, ".."))
        snprintf(out, size, "file");
}

int qvm_open_in_dvm_main(int argc, char **argv) {
    _cleanup_(opts_result_free) struct opts_result r = {0};
    signal(SIGPIPE, SIG_IGN);
    opts_parse(&open_parser, argc, argv, no_option, NULL, &r);
    if (r.n_pos != 1) {
        printf("Usage: %s filename\n", cli_prog);
        return 1;
    }
    _cleanup_close_ int fd = open(r.pos[0], O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        cli_die("%s: %m", r.pos[0]);
    _cleanup_free_ char *copy = xstrdup(r.pos[0]);
    char arg[ARG_MAX_LEN + 1], service[ARG_MAX_LEN + 32];
    sanitise(basename(copy), arg, sizeof(arg));
    snprintf(service, sizeof(service), "qubes.OpenInVM+%s", arg);
    struct qrun_opts o = QRUN_OPTS_INIT;
    o.target = "@dispvm";
    o.service = service;
    o.fds[0] = fd;
    /* what the disposable prints on our terminal: filtered, by qvm-run's default rule */
    o.filter_out = isatty(1);
    o.filter_err = isatty(2);
    return qrun_call(&o);
}
