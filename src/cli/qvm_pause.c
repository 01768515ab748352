/* qvm-pause [--suspend] VMNAME... | --all: admin.vm.Pause (or Suspend). */
#include <stdio.h>

#include "cli.h"

enum { OPT_SUSPEND = 1 };

static const struct opt_spec pause_specs[] = {
    {"suspend", 'S', OPT_FLAG, OPT_SUSPEND, NULL,
     "Put the qube to (S3) suspend mode instead of emergency pause"},
    TARGET_OPT_SPECS("perform the action on all qubes"),
};

static const struct opt_parser pause_parser = {
    .usage = "[-h] [--verbose] [--quiet] [--suspend] [--all] [--exclude EXCLUDE] [VMNAME ...]",
    .description = "pause a qube",
    .positionals = "  VMNAME                one or more domain names (shell wildcards allowed)\n",
    .epilog = "Paused qubes will be killed on system shutdown.",
    .specs = pause_specs,
    .n_specs = ELEMENTSOF(pause_specs),
};

struct pause_ctx {
    struct target_args t;
    bool suspend;
};

static void pause_option(void *userdata, int id, const char *value) {
    struct pause_ctx *c = userdata;
    if (!target_args_option(&c->t, id, value))
        c->suspend = true;
}

int qvm_pause_main(int argc, char **argv) {
    _cleanup_(opts_result_free) struct opts_result r = {0};
    _cleanup_(qube_list_free) struct qube_list qubes = {0};
    struct pause_ctx c = {0};
    opts_parse(&pause_parser, argc, argv, pause_option, &c, &r);
    target_args_set_names(&c.t, &r);
    targets_resolve(&pause_parser, &c.t, true, false, &qubes);
    target_args_free(&c.t);
    const char *method = c.suspend ? "admin.vm.Suspend" : "admin.vm.Pause";
    int ret = 0;
    for (size_t i = 0; i < qubes.n; i++) {
        struct cli_err err;
        if (cli_call_simple(method, "", qubes.v[i].name, NULL, &err) == 0)
            continue;
        cli_print_error("Failed to %s: %s: %s", c.suspend ? "suspend" : "pause", qubes.v[i].name,
                        err.msg);
        ret = 1;
    }
    return ret;
}
