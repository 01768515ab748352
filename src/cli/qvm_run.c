/* qvm-run [options] VMNAME|--dispvm[=TEMPLATE]|--all COMMAND [ARG...]: run a command (or,
 * with --service, a qrexec service) in qubes through the router, with the options, output
 * and exit codes of upstream qubesadmin/tools/qvm_run.py. */
#include <ctype.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "qrexec_run.h"
#include "strbuf.h"

#define MAX(a, b) ((a) > (b) ? (a) : (b))

enum {
    OPT_USER = 1,
    OPT_AUTOSTART,
    OPT_NO_AUTOSTART,
    OPT_PASSIO,
    OPT_LOCALCMD,
    OPT_GUI,
    OPT_NO_GUI,
    OPT_COLOUR_OUT,
    OPT_COLOUR_ERR,
    OPT_NO_COLOUR_OUT,
    OPT_NO_COLOUR_ERR,
    OPT_FILTER,
    OPT_NO_FILTER,
    OPT_SERVICE,
    OPT_NO_SHELL,
    OPT_DISPVM,
    OPT_TTY,
};

static const struct opt_spec run_specs[] = {
    {"user", 'u', OPT_VALUE, OPT_USER, "USER",
     "run command in a qube as USER (available only from dom0)"},
    {"autostart", 'a', OPT_FLAG, OPT_AUTOSTART, NULL, "option ignored, this is default"},
    {"auto", 0, OPT_FLAG, OPT_AUTOSTART, NULL, NULL},
    {"no-autostart", 'n', OPT_FLAG, OPT_NO_AUTOSTART, NULL, "do not autostart/unpause qube"},
    {"no-auto", 0, OPT_FLAG, OPT_NO_AUTOSTART, NULL, NULL},
    {"pass-io", 'p', OPT_FLAG, OPT_PASSIO, NULL, "pass stdio from remote program"},
    {"localcmd", 0, OPT_VALUE, OPT_LOCALCMD, "COMMAND",
     "with --pass-io, pass stdio to the given program"},
    {"gui", 0, OPT_FLAG, OPT_GUI, NULL, "accepted; there is no GUI session to wait for"},
    {"no-gui", 0, OPT_FLAG, OPT_NO_GUI, NULL, "run the command without GUI (the default)"},
    {"nogui", 0, OPT_FLAG, OPT_NO_GUI, NULL, NULL},
    {"colour-output", 0, OPT_VALUE, OPT_COLOUR_OUT, "COLOUR",
     "mark the qube output with given ANSI colour (ie. \"31\" for red)"},
    {"color-output", 0, OPT_VALUE, OPT_COLOUR_OUT, "COLOUR", NULL},
    {"colour-stderr", 0, OPT_VALUE, OPT_COLOUR_ERR, "COLOUR",
     "mark the qube stderr with given ANSI colour (ie. \"31\" for red)"},
    {"color-stderr", 0, OPT_VALUE, OPT_COLOUR_ERR, "COLOUR", NULL},
    {"no-colour-output", 0, OPT_FLAG, OPT_NO_COLOUR_OUT, NULL, "disable colouring the stdio"},
    {"no-color-output", 0, OPT_FLAG, OPT_NO_COLOUR_OUT, NULL, NULL},
    {"no-colour-stderr", 0, OPT_FLAG, OPT_NO_COLOUR_ERR, NULL, "disable colouring the stderr"},
    {"no-color-stderr", 0, OPT_FLAG, OPT_NO_COLOUR_ERR, NULL, NULL},
    {"filter-escape-chars", 0, OPT_FLAG, OPT_FILTER, NULL,
     "filter terminal escape sequences (default if output is terminal)"},
    {"no-filter-escape-chars", 0, OPT_FLAG, OPT_NO_FILTER, NULL,
     "do not filter terminal escape sequences - overrides --filter-escape-chars, "
     "DANGEROUS when output is terminal"},
    {"tty", 't', OPT_FLAG, OPT_TTY, NULL,
     "run the command on a terminal allocated in the qube (interactive; implies "
     "--pass-io, no filtering or colours unless asked for)"},
    {"service", 0, OPT_FLAG, OPT_SERVICE, NULL,
     "run a qrexec service (named by COMMAND) instead of shell command"},
    {"no-shell", 0, OPT_FLAG, OPT_NO_SHELL, NULL,
     "treat COMMAND as a simple executable, not a shell command"},
    {"dispvm", 0, OPT_VALUE, OPT_DISPVM, "DISPOSABLE_TEMPLATE",
     "(--dispvm[=DISPOSABLE_TEMPLATE]) start a service in new disposable qube; "
     "optionally specify a disposable template, else the system default will be used"},
    TARGET_OPT_SPECS("run command on all running qubes"),
};

static const struct opt_parser run_parser = {
    .usage = "[-h] [--verbose] [--quiet] [--user USER] [--autostart] [--no-autostart] "
             "[--pass-io] [--localcmd COMMAND] [--gui] [--no-gui] [--colour-output COLOUR] "
             "[--colour-stderr COLOUR] [--no-colour-output] [--no-colour-stderr] "
             "[--filter-escape-chars] [--no-filter-escape-chars] [--tty] [--service] "
             "[--no-shell] "
             "[--dispvm [DISPOSABLE_TEMPLATE] | --all] [--exclude EXCLUDE] "
             "[VMNAME] COMMAND ...",
    .description = "run a command in a qube (qubes.VMShell), or a service with --service",
    .positionals = "  VMNAME                name of the qube (not with --dispvm or --all)\n"
                   "  COMMAND               command or service to run\n"
                   "  ARG                   command arguments (implies --no-shell)\n",
    .epilog = "Exit status: the command's (the highest of them with --all); 126 when the\n"
              "call was refused, 125 when it could not be made, 1 when a qube was skipped.",
    .specs = run_specs,
    .n_specs = ELEMENTSOF(run_specs),
};

struct run_args {
    struct target_args t;
    const char *user, *localcmd, *dispvm; /* dispvm: "" for the default */
    const char *colour_out, *colour_err;  /* NULL: default; "": disabled */
    bool passio, autostart, service, no_shell, filter_esc, filter_set, tty;
    const char *cmd;
    struct strv cmd_args;
    int verbose;           /* upstream: 1 + -v - -q, one less with --pass-io */
    struct strv argv_copy; /* the rewritten arguments the strings above point into */
};

/* ---- argv: argparse's nargs='?' for --dispvm and REMAINDER for ARG... ----
 * opts_parse has neither, so the arguments are split first: "--dispvm" takes the next
 * argument as its template when that is not an option (as argparse does), and everything
 * after COMMAND is ARG..., options included ("qvm-run work ls -l"). */

static bool looks_like_option(const char *a) {
    return a[0] == '-' && a[1] != '\0' && !isdigit((unsigned char)a[1]);
}

/* Exact name or unique prefix, as argparse matches long options; NULL if neither. */
static const struct opt_spec *find_long(const char *name, size_t len) {
    const struct opt_spec *found = NULL;
    for (size_t i = 0; i < ELEMENTSOF(run_specs); i++) {
        const char *ln = run_specs[i].long_name;
        if (!ln || strncmp(ln, name, len) != 0)
            continue;
        if (ln[len] == '\0')
            return &run_specs[i];
        if (found && found->id != run_specs[i].id)
            return NULL;
        found = &run_specs[i];
    }
    return found;
}

/* -u takes a value, glued ("-uroot", "-puroot") or as the next argument. */
static int take_short(const char *a, const char *next, struct strv *out) {
    strv_push(out, a);
    const char *u = strchr(a + 1, 'u');
    if (u && u[1] == '\0' && next) {
        strv_push(out, next);
        return 1;
    }
    return 0;
}

/* Copies the option argv[i] (and its separate value) to out; returns how many more
 * arguments it used. --dispvm and --all mean the first positional is COMMAND. */
static int take_option(int argc, char **argv, int i, struct strv *out, int *need) {
    const char *a = argv[i], *next = i + 1 < argc ? argv[i + 1] : NULL;
    if (a[1] != '-')
        return take_short(a, next, out);
    const char *eq = strchr(a, '=');
    const struct opt_spec *s = find_long(a + 2, eq ? (size_t)(eq - a - 2) : strlen(a + 2));
    if (s && (s->id == OPT_DISPVM || s->id == TARGET_OPT_ALL))
        *need = 1;
    if (s && s->id == OPT_DISPVM && !eq) {
        bool take = next && !looks_like_option(next);
        _cleanup_free_ char *opt = NULL;
        if (asprintf(&opt, "--dispvm=%s", take ? next : "") < 0)
            abort();
        strv_push(out, opt);
        return take;
    }
    strv_push(out, a);
    if (s && s->kind == OPT_VALUE && !eq && next) {
        strv_push(out, next);
        return 1;
    }
    return 0;
}

/* Returns the index of the first ARG (argc if none). */
static int split_argv(int argc, char **argv, struct strv *out) {
    int need = 2, npos = 0;
    bool only_pos = false;
    strv_push(out, argv[0]);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (only_pos || !looks_like_option(a)) {
            strv_push(out, a);
            if (++npos >= need)
                return i + 1;
        } else if (streq(a, "--")) {
            only_pos = true;
            strv_push(out, a);
        } else {
            i += take_option(argc, argv, i, out, &need);
        }
    }
    return argc;
}

static void run_option(void *userdata, int id, const char *value) {
    struct run_args *a = userdata;
    if (target_args_option(&a->t, id, value)) {
        if (id == TARGET_OPT_ALL && a->dispvm)
            opts_error(&run_parser, "argument --all: not allowed with argument --dispvm");
        return;
    }
    switch (id) {
    case OPT_USER: a->user = value; break;
    case OPT_AUTOSTART: a->autostart = true; break;
    case OPT_NO_AUTOSTART: a->autostart = false; break;
    case OPT_PASSIO: a->passio = true; break;
    case OPT_LOCALCMD: a->localcmd = value; break;
    case OPT_COLOUR_OUT: a->colour_out = value; break;
    case OPT_COLOUR_ERR: a->colour_err = value; break;
    case OPT_NO_COLOUR_OUT: a->colour_out = ""; break;
    case OPT_NO_COLOUR_ERR: a->colour_err = ""; break;
    case OPT_FILTER: a->filter_esc = a->filter_set = true; break;
    case OPT_NO_FILTER:
        a->filter_esc = false;
        a->filter_set = true;
        break;
    case OPT_TTY: a->tty = a->passio = true; break;
    case OPT_SERVICE: a->service = true; break;
    case OPT_NO_SHELL: a->no_shell = true; break;
    case OPT_DISPVM:
        if (a->t.all)
            opts_error(&run_parser, "argument --dispvm: not allowed with argument --all");
        a->dispvm = value;
        break;
    default: break; /* --gui / --no-gui: no GUI session here */
    }
}

static _Noreturn void usage_exit(void) {
    fprintf(stderr, "usage: %s %s\n", cli_prog, run_parser.usage);
    exit(2);
}

/* VMNAME COMMAND ARG...; with --dispvm or --all there is no VMNAME (upstream shifts). */
static void take_positionals(struct run_args *a, const struct opts_result *r, char **rest,
                             int n_rest) {
    size_t first = a->dispvm || a->t.all ? 0 : 1;
    if (r->n_pos == 0)
        opts_error(&run_parser, "the following arguments are required: COMMAND");
    if (r->n_pos <= first)
        usage_exit(); /* upstream: a COMMAND but no qube */
    if (first)
        strv_push(&a->t.names, r->pos[0]);
    a->cmd = r->pos[first];
    for (size_t i = first + 1; i < r->n_pos; i++)
        strv_push(&a->cmd_args, r->pos[i]);
    for (int i = 0; i < n_rest; i++)
        strv_push(&a->cmd_args, rest[i]);
}

static void parse_args(int argc, char **argv, struct run_args *a) {
    _cleanup_(opts_result_free) struct opts_result r = {0};
    int rest = split_argv(argc, argv, &a->argv_copy);
    opts_parse(&run_parser, (int)a->argv_copy.n, a->argv_copy.v, run_option, a, &r);
    take_positionals(a, &r, argv + rest, argc - rest);
    a->verbose = 1 + r.verbose - (a->passio ? 1 : 0);
}

/* ---- which qubes ---- */

static bool feature_set(const char *vm, const char *feature) {
    _cleanup_reply_ struct client_reply reply = {};
    struct cli_err err;
    return cli_call("admin.vm.feature.Get", feature, vm, NULL, &reply, &err) == 0 &&
           feature_is_true(reply.r.content);
}

static bool is_preload(const char *vm) {
    _cleanup_reply_ struct client_reply reply = {};
    struct cli_err err;
    struct prop p = {0};
    bool yes = cli_call("admin.vm.property.Get", "is_preload", vm, NULL, &reply, &err) == 0 &&
               prop_parse(reply.r.content, &p) == 0 && streq(p.value, "True");
    prop_free(&p);
    return yes;
}

/* --all: running qubes only, and not the internal ones (preloaded disposables among
 * them) nor dom0. Returns how many qubes --all named before that filter, which is what
 * upstream's --pass-io check counts. */
static size_t select_all(struct run_args *a, struct qube_list *out) {
    _cleanup_(qube_list_free) struct qube_list all = {0};
    targets_resolve(&run_parser, &a->t, false, false, &all);
    for (size_t i = 0; i < all.n; i++) {
        const struct qube *q = &all.v[i];
        if (streq(q->state, "Running") && !feature_set(q->name, "internal") && !is_preload(q->name))
            qube_list_push(out, q);
    }
    return all.n;
}

static size_t select_targets(struct run_args *a, struct qube_list *out) {
    *out = (struct qube_list){0};
    if (a->t.exclude.n && a->dispvm)
        opts_error(&run_parser, "Cannot use --exclude with --dispvm");
    if (a->t.all)
        return select_all(a, out);
    if (a->dispvm) {
        _cleanup_free_ char *name = NULL;
        if (asprintf(&name, *a->dispvm ? "@dispvm:%s" : "@dispvm", a->dispvm) < 0)
            abort();
        qube_list_push(out, &(struct qube){name, "DispVM", "Running"});
        return 1;
    }
    if (strncmp(a->t.names.v[0], "@dispvm", 7) == 0) /* the router makes this one too */
        qube_list_push(out, &(struct qube){a->t.names.v[0], "DispVM", "Running"});
    else
        targets_resolve(&run_parser, &a->t, true, true, out);
    return out->n;
}

/* ---- what runs ---- */

/* Python's shlex.quote. */
static void shell_quote(struct strbuf *sb, const char *s) {
    bool safe = *s != '\0';
    for (const char *p = s; *p && safe; p++)
        safe = isalnum((unsigned char)*p) || strchr("_@%+=:,./-", *p);
    if (safe) {
        strbuf_puts(sb, s);
        return;
    }
    strbuf_putc(sb, '\'');
    for (const char *p = s; *p; p++)
        strbuf_puts(sb, *p == '\'' ? "'\"'\"'" : (char[]){*p, '\0'});
    strbuf_putc(sb, '\'');
}

/* COMMAND ARG... (or --no-shell) become one quoted shell command for qubes.VMShell, as
 * upstream does for qubes without the vmexec feature. */
static char *shell_command(const struct run_args *a) {
    if (a->cmd_args.n == 0 && !a->no_shell)
        return xstrdup(a->cmd);
    _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
    shell_quote(&sb, a->cmd);
    for (size_t i = 0; i < a->cmd_args.n; i++) {
        strbuf_putc(&sb, ' ');
        shell_quote(&sb, a->cmd_args.v[i]);
    }
    return xstrdup(strbuf_str(&sb));
}

/* ---- running ---- */

/* Upstream's print_no_color: leave the qube's colour for our own message. */
static void note(const struct run_args *a, const char *fmt, ...) _printf_(2, 3);
static void note(const struct run_args *a, const char *fmt, ...) {
    va_list ap;
    bool colour = a->colour_err && *a->colour_err;
    if (colour)
        fputs("\033[0m", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (colour)
        fprintf(stderr, "\033[0;%sm", a->colour_err);
    fputc('\n', stderr);
}

/* Before the call: autostart and unpause as upstream does. Returns 0 to go on, 1 to skip
 * the qube, -1 when upstream would give up altogether. */
static int prepare_qube(const struct run_args *a, const struct qube *q) {
    struct cli_err err;
    bool halted = streq(q->state, "Halted");
    if (a->dispvm || q->name[0] == '@')
        return 0;
    if (!a->autostart && (halted || streq(q->state, "Paused"))) {
        if (a->verbose > 0)
            note(a, halted ? "Qube '%s' not started" : "Qube '%s' is paused", q->name);
        return 1;
    }
    if (streq(q->state, "Paused") &&
        cli_call_simple("admin.vm.Unpause", "", q->name, NULL, &err) < 0) {
        if (a->verbose > 0)
            note(a, "Qube '%s' cannot be unpaused", q->name);
        return 1;
    }
    if (halted && cli_call_simple("admin.vm.Start", "", q->name, NULL, &err) < 0 &&
        !cli_err_is(&err, "QubesVMNotHaltedError")) {
        fprintf(stderr, "%s: %s\n", q->name, err.msg);
        return -1;
    }
    return 0;
}

struct job {
    const char *name;
    struct qrun q;
    bool waiting;
};

/* Starts the call; returns an exit status when there is nothing to wait for. */
static int launch(const struct run_args *a, const char *target, const char *command,
                  struct job *j) {
    struct qrun_opts o = QRUN_OPTS_INIT;
    char msg[QREXEC_MAX_MSG + 1];
    o.target = target;
    o.service = a->service ? a->cmd : "qubes.VMShell";
    o.command = a->service ? "" : command;
    o.user = a->user;
    o.localcmd = a->localcmd;
    o.null_io = !a->passio;
    /* upstream's rule (qubesadmin run_service): -t with filtering, -T also whenever our
     * stderr is a terminal */
    o.filter_out = a->filter_esc;
    o.filter_err = a->filter_esc || isatty(2);
    o.pty = a->tty;
    if (a->verbose > 0)
        note(a, "Running '%s' on %s", a->cmd, target);
    fflush(stdout);
    if (qrun_start(&o, &j->q, msg, sizeof(msg)) < 0) {
        fprintf(stderr, "%s: %s\n", target, msg);
        return QRUN_EXIT_PROBLEM;
    }
    /* upstream does not wait for a service without --pass-io (qrexec-client -e) */
    if (a->service && !a->passio && !a->dispvm) {
        qrun_detach(&j->q);
        return 0;
    }
    j->name = target;
    j->waiting = true;
    return -1;
}

static int finish(const struct run_args *a, struct job *j) {
    char msg[QREXEC_MAX_MSG + 1];
    int kind;
    int rc = qrun_wait(&j->q, &kind, msg, sizeof(msg));
    if (kind != QREXEC_EXITED && kind != QREXEC_SIGNALED)
        fprintf(stderr, "%s: %s%s\n", j->name, kind == QREXEC_REFUSED ? "Request refused: " : "",
                msg);
    if (rc && a->verbose > 0)
        note(a, "%s: command failed with code: %d", j->name, rc);
    return rc;
}

static int run_all(const struct run_args *a, const struct qube_list *targets) {
    _cleanup_free_ struct job *jobs = xcalloc(targets->n + 1, sizeof(*jobs));
    _cleanup_free_ char *command = shell_command(a);
    int ret = 0;
    for (size_t i = 0; i < targets->n; i++) {
        int r = prepare_qube(a, &targets->v[i]);
        if (r < 0)
            return 255; /* upstream returns -1 here */
        if (r > 0) {
            ret = MAX(ret, 1);
            continue;
        }
        r = launch(a, targets->v[i].name, command, &jobs[i]);
        if (r >= 0)
            ret = MAX(ret, r);
    }
    for (size_t i = 0; i < targets->n; i++) {
        if (!jobs[i].waiting)
            continue;
        int r = finish(a, &jobs[i]);
        ret = MAX(ret, r);
    }
    return ret;
}

/* Upstream's checks, in its order, once the qubes are known. */
static void check_args(struct run_args *a, size_t n_named) {
    if (a->tty) {
        /* a terminal on purpose: its control sequences are the point */
        if (!a->filter_set)
            a->filter_esc = false;
        if (!a->colour_out)
            a->colour_out = "";
        if (!a->colour_err)
            a->colour_err = "";
    }
    if (a->passio) {
        if (!a->colour_out && a->filter_esc)
            a->colour_out = "31";
        if (!a->colour_err && isatty(2))
            a->colour_err = "31";
    }
    if (n_named > 1 && a->passio && !a->localcmd)
        opts_error(&run_parser, "--passio cannot be used when more than 1 qube is chosen "
                                "and no --localcmd is used");
    if (a->localcmd && !a->passio)
        opts_error(&run_parser, "--localcmd have no effect without --pass-io");
    if (a->colour_out && *a->colour_out && !a->filter_esc)
        opts_error(&run_parser, "--color-output must be used with --filter-escape-chars");
    if (a->service && a->no_shell)
        opts_error(&run_parser, "--no-shell does not apply to --service");
}

static void colours(const struct run_args *a, bool on) {
    if (a->colour_out && *a->colour_out) {
        printf(on ? "\033[0;%sm" : "\033[0m", a->colour_out);
        fflush(stdout);
    }
    if (a->colour_err && *a->colour_err)
        fprintf(stderr, on ? "\033[0;%sm" : "\033[0m", a->colour_err);
}

int qvm_run_main(int argc, char **argv) {
    struct run_args a = {.autostart = true, .filter_esc = isatty(1)};
    _cleanup_(qube_list_free) struct qube_list targets = {0};
    signal(SIGPIPE, SIG_IGN);
    parse_args(argc, argv, &a);
    size_t n_named = select_targets(&a, &targets);
    check_args(&a, n_named);
    colours(&a, true);
    int ret = run_all(&a, &targets);
    colours(&a, false);
    target_args_free(&a.t);
    strv_free(&a.cmd_args);
    strv_free(&a.argv_copy);
    return ret;
}
