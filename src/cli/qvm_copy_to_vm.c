/* qvm-copy-to-vm VMNAME FILE...: copy files from the host (dom0) into a qube with
 * qubes.Filecopy. Upstream (qubes-core-admin-linux file-copy-vm/qvm-copy-to-vm) pipes
 * qfile-dom0-agent into "qvm-run --pass-io VM 'QUBESRPC qubes.Filecopy dom0'"; here the
 * stream is a tar archive, which our agent's qubes.Filecopy unpacks into
 * ~/QubesIncoming/dom0/. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "qrexec_run.h"

static const struct opt_parser copy_parser = {
    .usage = "[-h] VMNAME FILE [FILE ...]",
    .description = "copy files from dom0 into ~/QubesIncoming/dom0/ in a qube "
                   "(qubes.Filecopy)",
    .positionals = "  VMNAME                the qube to copy to (started if halted)\n"
                   "  FILE                  files or directories to copy\n",
};

static void no_option(void *ctx, int id, const char *value) {}

/* tar arguments for one file: "-C DIR ./NAME", DIR absolute because tar applies each -C
 * relative to the previous one, "./" so that a name starting with '-' stays a name. */
static void add_file(struct strv *args, const char *file) {
    struct stat st;
    if (lstat(file, &st) < 0)
        cli_die("%s: %m", file);
    /* "dir/." and ".." name a directory by a name tar cannot use: take its real path */
    _cleanup_free_ char *b0 = xstrdup(file);
    const char *base0 = basename(b0);
    bool dots = streq(base0, ".") || streq(base0, "..");
    _cleanup_free_ char *path = dots ? realpath(file, NULL) : xstrdup(file);
    if (!path)
        cli_die("%s: %m", file);
    _cleanup_free_ char *d = xstrdup(path), *b = xstrdup(path);
    _cleanup_free_ char *dir = realpath(dirname(d), NULL);
    const char *base = basename(b);
    if (!dir || streq(base, "/"))
        cli_die("%s: cannot copy this path", file);
    _cleanup_free_ char *dotted = NULL;
    if (asprintf(&dotted, "./%s", base) < 0)
        abort();
    strv_push(args, "-C");
    strv_push(args, dir);
    strv_push(args, dotted);
}

/* tar writes the archive into a pipe whose read end becomes the service's stdin. */
static pid_t start_tar(const struct strv *files, int *out) {
    _cleanup_(strv_free) struct strv args = {0};
    const char *head[] = {"tar", "-c", "-f", "-", "--numeric-owner"};
    for (size_t i = 0; i < ELEMENTSOF(head); i++)
        strv_push(&args, head[i]);
    for (size_t i = 0; i < files->n; i++)
        add_file(&args, files->v[i]);
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        cli_die("pipe: %m");
    pid_t pid = fork();
    if (pid < 0)
        cli_die("fork: %m");
    if (pid == 0) {
        dup2(p[1], 1);
        signal(SIGPIPE, SIG_DFL); /* a reader that gave up ends tar quietly */
        execvp("tar", args.v);
        perror("tar");
        _exit(127);
    }
    close(p[1]);
    *out = p[0];
    return pid;
}

static int wait_status(pid_t pid) {
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return 1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Upstream is a shell script: fewer than two arguments print its usage and exit 1. */
static void parse_args(int argc, char **argv, struct opts_result *r, struct qube_list *vm) {
    opts_parse(&copy_parser, argc, argv, no_option, NULL, r);
    if (r->n_pos < 2) {
        printf("usage: %s dest_vmname file [file]+\n", cli_prog);
        exit(1);
    }
    qube_resolve(&copy_parser, r->pos[0], vm);
}

int qvm_copy_to_vm_main(int argc, char **argv) {
    _cleanup_(opts_result_free) struct opts_result r = {0};
    _cleanup_(qube_list_free) struct qube_list vm = {0};
    _cleanup_(strv_free) struct strv files = {0};
    struct cli_err err;
    signal(SIGPIPE, SIG_IGN);
    parse_args(argc, argv, &r, &vm);
    for (size_t i = 1; i < r.n_pos; i++)
        strv_push(&files, r.pos[i]);
    int archive;
    pid_t tar = start_tar(&files, &archive);
    /* like qvm-run's autostart; a start failure is the qube's problem, not the copy's */
    if (streq(vm.v[0].state, "Halted") &&
        cli_call_simple("admin.vm.Start", "", vm.v[0].name, NULL, &err) < 0 &&
        !cli_err_is(&err, "QubesVMNotHaltedError"))
        cli_die_err(&err);
    struct qrun_opts o = QRUN_OPTS_INIT;
    o.target = vm.v[0].name;
    o.service = "qubes.Filecopy";
    o.fds[0] = archive;
    /* the qube's messages on our terminal: filtered, by qvm-run's default rule */
    o.filter_out = isatty(1);
    o.filter_err = isatty(2);
    int rc = qrun_call(&o);
    close(archive);
    /* a service that stopped reading leaves tar on a broken pipe: its status says less */
    int tar_rc = wait_status(tar);
    return rc ? rc : tar_rc;
}
