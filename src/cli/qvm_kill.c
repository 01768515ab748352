/* qvm-kill VMNAME... | --all: admin.vm.Kill; a qube that is not running is no error. */
#include <stdio.h>

#include "cli.h"

static const struct opt_spec kill_specs[] = {
    TARGET_OPT_SPECS("perform the action on all qubes"),
};

static const struct opt_parser kill_parser = {
    .usage = "[-h] [--verbose] [--quiet] [--all] [--exclude EXCLUDE] [VMNAME ...]",
    .description = "immediately terminate a qube without a graceful shutdown sequence",
    .positionals = "  VMNAME                one or more domain names (shell wildcards allowed)\n",
    .specs = kill_specs,
    .n_specs = ELEMENTSOF(kill_specs),
};

static void kill_option(void *userdata, int id, const char *value) {
    target_args_option(userdata, id, value);
}

int qvm_kill_main(int argc, char **argv) {
    _cleanup_(opts_result_free) struct opts_result r = {0};
    _cleanup_(qube_list_free) struct qube_list qubes = {0};
    _cleanup_(target_args_free) struct target_args t = {0};
    opts_parse(&kill_parser, argc, argv, kill_option, &t, &r);
    target_args_set_names(&t, &r);
    targets_resolve(&kill_parser, &t, true, false, &qubes);
    int failed = 0;
    for (size_t i = 0; i < qubes.n; i++) {
        struct cli_err err;
        if (cli_call_simple("admin.vm.Kill", "", qubes.v[i].name, NULL, &err) == 0 ||
            cli_err_is(&err, "QubesVMNotStartedError"))
            continue;
        cli_print_error("Failed to kill: %s: %s", qubes.v[i].name, err.msg);
        failed++;
    }
    /* upstream exits with the number of failures */
    return failed;
}
