/* qrexec-client -d TARGET [options] 'USER:COMMAND' | 'USER:QUBESRPC SERVICE+ARG SOURCE':
 * the host end of a service call, with the options of upstream qubes-core-qrexec's
 * daemon/qrexec-client.c that the upstream qubesadmin tools pass (-d, -l, -e, -E, -t, -T,
 * -w, -W, -k, -p), so upstream Python qvm-run works unchanged. It is a getopt program
 * upstream, not argparse, and so it is here. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "qrexec_run.h"

enum { OPT_SOCKET_DIR = 256, OPT_STDIN_SOCKET };

static const struct option longopts[] = {
    {"help", no_argument, 0, 'h'},
    {"socket-dir", required_argument, 0, OPT_SOCKET_DIR},
    {"no-exit-code", no_argument, 0, 'E'},
    {"prefix-data", required_argument, 0, 'p'},
    {"use-stdin-socket", no_argument, 0, OPT_STDIN_SOCKET},
    {NULL, 0, 0, 0},
};

struct qc_args {
    const char *target, *local, *prefix;
    bool just_exec, exit_zero, kill, stdin_socket, filter_out, filter_err;
};

static _Noreturn void usage(int status) {
    FILE *f = status ? stderr : stdout;
    fprintf(f,
            "usage: %s [options] -d TARGET [-l LOCAL_PROGRAM|-e] USER:COMMAND\n"
            "       %s [options] -d TARGET [-l LOCAL_PROGRAM|-e] 'USER:QUBESRPC SERVICE+ARG dom0'\n"
            "Runs COMMAND (through qubes.VMShell) or SERVICE in TARGET (a qube, @dispvm or\n"
            "@dispvm:TEMPLATE) through dispenserd's qrexec router; USER DEFAULT is the qube's\n"
            "default user. Exits with the service's exit status; 126 if the call was refused,\n"
            "125 if it could not be made.\n"
            "Options:\n"
            "  -h, --help - display usage\n"
            "  -e - exit after sending cmd (the command gets no stdio)\n"
            "  -E, --no-exit-code - always exit with 0 after command exits\n"
            "  -l LOCAL_PROGRAM - connect the service's stdin/stdout to LOCAL_PROGRAM (sh -c)\n"
            "  -p PREFIX-DATA, --prefix-data=PREFIX-DATA - send the given data before the\n"
            "     provided stdin (can only be used once)\n"
            "  -k - kill the target right before exiting\n"
            "  --use-stdin-socket - use fd 0 (which must be a socket) for both stdin and stdout\n"
            "  --socket-dir=DIR - use DIR/qrexec.sock as the router socket (default: %s)\n"
            "  -t - replace control characters in the service's stdout with '_'\n"
            "  -T - replace control characters in the service's stderr with '_'\n"
            "  -w TIMEOUT, -W - accepted for compatibility; the router applies its own timeouts\n"
            "  -c - (VM to VM connections) not supported on this host\n",
            cli_prog, cli_prog, qrexec_socket_path());
    exit(status);
}

/* Upstream validates the number strictly and fails with status 1. */
static void check_timeout(const char *s) {
    char *end;
    if (s[0] < '0' || s[0] > '9') {
        fprintf(stderr, "%s: connection timeout '%s' does not start with an ASCII digit\n",
                cli_prog, s);
        exit(1);
    }
    strtol(s, &end, 0);
    if (*end) {
        fprintf(stderr, "%s: trailing junk '%s' after connection timeout\n", cli_prog, end);
        exit(1);
    }
}

static void set_socket_dir(const char *dir) {
    _cleanup_free_ char *path = NULL;
    if (asprintf(&path, "%s/qrexec.sock", dir) < 0)
        abort();
    setenv("DISPENSER_QREXEC_SOCKET", path, 1);
}

static void parse_options(int argc, char **argv, struct qc_args *a) {
    int opt;
    while ((opt = getopt_long(argc, argv, "hd:l:eEc:p:tTw:Wk", longopts, NULL)) != -1) {
        switch (opt) {
        case 'd': a->target = optarg; break;
        case 'l': a->local = optarg; break;
        case 'e': a->just_exec = true; break;
        case 'E': a->exit_zero = true; break;
        case 'k': a->kill = true; break;
        case 't': a->filter_out = true; break;
        case 'T': a->filter_err = true; break;
        case 'W': break;
        case 'w': check_timeout(optarg); break;
        case OPT_SOCKET_DIR: set_socket_dir(optarg); break;
        case OPT_STDIN_SOCKET: a->stdin_socket = true; break;
        case 'p':
            if (a->prefix)
                usage(2);
            a->prefix = optarg;
            break;
        case 'c':
            fprintf(stderr,
                    "%s: -c (connecting to an existing VM-to-VM call) is not "
                    "supported\n",
                    cli_prog);
            exit(1);
        case 'h': usage(0);
        default: usage(1);
        }
    }
    if (optind >= argc || !a->target)
        usage(1);
    if (a->just_exec && a->local) {
        fprintf(stderr, "ERROR: only one of -e, -l, -c can be specified\n");
        usage(1);
    }
    if (a->local && a->stdin_socket) {
        fprintf(stderr, "ERROR: at most one of -l and --use-stdin-socket can be specified\n");
        usage(1);
    }
}

/* "USER:COMMAND" runs COMMAND with qubes.VMShell; "USER:QUBESRPC SERVICE+ARG SOURCE" is a
 * service call. The source can only be dom0: that is who calls on the host socket. */
static void parse_cmdline(char *cmdline, struct qrun_opts *o) {
    char *colon = strchr(cmdline, ':');
    if (!colon) {
        fprintf(stderr, "%s: bad command '%s': expected USER:COMMAND\n", cli_prog, cmdline);
        exit(1);
    }
    *colon = '\0';
    o->user = streq(cmdline, "DEFAULT") ? "" : cmdline;
    char *rest = colon + 1;
    if (strncmp(rest, "QUBESRPC ", 9) != 0) {
        o->service = "qubes.VMShell";
        o->command = rest;
        return;
    }
    char *service = rest + 9, *source = strchr(service, ' ');
    if (source)
        *source++ = '\0';
    char name[256], arg[1024];
    if (qrexec_split_service(service, name, sizeof(name), arg, sizeof(arg)) < 0) {
        fprintf(stderr, "%s: invalid service name '%s'\n", cli_prog, service);
        exit(1);
    }
    if (source && *source && !streq(source, "dom0") && !streq(source, "@adminvm")) {
        fprintf(stderr, "%s: source '%s': calls from this host always come from dom0\n", cli_prog,
                source);
        exit(1);
    }
    o->service = service;
}

static void report(int kind, const char *msg) {
    if (kind == QREXEC_REFUSED)
        fprintf(stderr, "Request refused%s%s\n", *msg ? ": " : "", msg);
    else if (kind == QREXEC_FAILED || kind < 0)
        fprintf(stderr, "%s: %s\n", cli_prog, *msg ? msg : "service call failed");
}

static int run_call(const struct qc_args *a, const struct qrun_opts *o, int *kind) {
    struct qrun q;
    char msg[QREXEC_MAX_MSG + 1];
    *kind = -1;
    if (qrun_start(o, &q, msg, sizeof(msg)) < 0) {
        report(-1, msg);
        return QRUN_EXIT_PROBLEM;
    }
    if (a->just_exec) {
        qrun_detach(&q);
        *kind = QREXEC_EXITED;
        return 0;
    }
    int rc = qrun_wait(&q, kind, msg, sizeof(msg));
    report(*kind, msg);
    return rc;
}

int qrexec_client_main(int argc, char **argv) {
    struct qc_args a = {0};
    struct qrun_opts o = QRUN_OPTS_INIT;
    signal(SIGPIPE, SIG_IGN);
    parse_options(argc, argv, &a);
    parse_cmdline(argv[optind], &o);
    o.target = a.target;
    o.localcmd = a.local;
    o.null_io = a.just_exec;
    if (a.prefix) {
        o.prefix = a.prefix;
        o.prefix_len = strlen(a.prefix);
    }
    if (a.stdin_socket)
        o.fds[1] = 0;
    o.filter_out = a.filter_out;
    o.filter_err = a.filter_err;
    int kind;
    int rc = run_call(&a, &o, &kind);
    if (a.kill) {
        struct cli_err err;
        if (cli_call_simple("admin.vm.Kill", "", a.target, NULL, &err) < 0 &&
            !cli_err_is(&err, "QubesVMNotStartedError"))
            fprintf(stderr, "%s: killing %s: %s\n", cli_prog, a.target, err.msg);
    }
    if (a.exit_zero && (kind == QREXEC_EXITED || kind == QREXEC_SIGNALED))
        return 0;
    return rc;
}
