/* qvm-start [--skip-if-running] VMNAME... | --all: admin.vm.Start for each qube. */
#include <stdio.h>

#include "cli.h"

enum { OPT_SKIP = 1, OPT_DRIVE };

static const struct opt_spec start_specs[] = {
    {"skip-if-running", 0, OPT_FLAG, OPT_SKIP, NULL, "Do not fail if the qube is already runnning"},
    {"drive", 0, OPT_VALUE, OPT_DRIVE, "DRIVE", NULL},
    {"hddisk", 0, OPT_VALUE, OPT_DRIVE, "IMAGE", NULL},
    {"cdrom", 0, OPT_VALUE, OPT_DRIVE, "IMAGE", NULL},
    {"install-windows-tools", 0, OPT_FLAG, OPT_DRIVE, NULL, NULL},
    TARGET_OPT_SPECS("perform the action on all qubes"),
};

static const struct opt_parser start_parser = {
    .usage = "[-h] [--verbose] [--quiet] [--skip-if-running] [--all] [--exclude EXCLUDE] "
             "[VMNAME ...]",
    .description = "start a domain",
    .positionals = "  VMNAME                one or more domain names (shell wildcards allowed)\n",
    .specs = start_specs,
    .n_specs = ELEMENTSOF(start_specs),
};

struct start_ctx {
    struct target_args t;
    bool skip_if_running;
};

static void start_option(void *userdata, int id, const char *value) {
    struct start_ctx *c = userdata;
    if (target_args_option(&c->t, id, value))
        return;
    if (id == OPT_SKIP)
        c->skip_if_running = true;
    else
        opts_error(&start_parser, "attaching drives at start is not supported");
}

/* Upstream checks the power state on the client side, before asking to start. */
static bool start_one(const struct start_ctx *c, const struct qube *q) {
    struct cli_err err;
    if (!streq(q->state, "Halted") && !streq(q->state, "NA")) {
        if (c->skip_if_running)
            return true;
        cli_print_error("Starting qube failed: %s: Domain is already running", q->name);
        return false;
    }
    if (cli_call_simple("admin.vm.Start", "", q->name, NULL, &err) < 0) {
        cli_print_error("Starting qube failed: %s: %s", q->name, err.msg);
        return false;
    }
    return true;
}

int qvm_start_main(int argc, char **argv) {
    _cleanup_(opts_result_free) struct opts_result r = {0};
    _cleanup_(qube_list_free) struct qube_list qubes = {0};
    struct start_ctx c = {0};
    opts_parse(&start_parser, argc, argv, start_option, &c, &r);
    target_args_set_names(&c.t, &r);
    targets_resolve(&start_parser, &c.t, true, false, &qubes);
    target_args_free(&c.t);
    int ret = 0;
    for (size_t i = 0; i < qubes.n; i++)
        if (!start_one(&c, &qubes.v[i]))
            ret = 1;
    return ret;
}
