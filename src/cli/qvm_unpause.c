/* qvm-unpause VMNAME... | --all: admin.vm.Unpause, or Resume for a suspended qube. */
#include <stdio.h>

#include "cli.h"

static const struct opt_spec unpause_specs[] = {
    TARGET_OPT_SPECS("perform the action on all qubes"),
};

static const struct opt_parser unpause_parser = {
    .usage = "[-h] [--verbose] [--quiet] [--all] [--exclude EXCLUDE] [VMNAME ...]",
    .description = "unpause a domain",
    .positionals = "  VMNAME                one or more domain names (shell wildcards allowed)\n",
    .specs = unpause_specs,
    .n_specs = ELEMENTSOF(unpause_specs),
};

static void unpause_option(void *userdata, int id, const char *value) {
    target_args_option(userdata, id, value);
}

/* --all leaves internal qubes (feature "internal") alone, as upstream does. */
static bool is_internal(const char *name) {
    _cleanup_reply_ struct client_reply reply = {};
    struct cli_err err;
    return cli_call("admin.vm.feature.Get", "internal", name, NULL, &reply, &err) == 0 &&
           feature_is_true(reply.r.content);
}

int qvm_unpause_main(int argc, char **argv) {
    _cleanup_(opts_result_free) struct opts_result r = {0};
    _cleanup_(qube_list_free) struct qube_list qubes = {0};
    _cleanup_(target_args_free) struct target_args t = {0};
    opts_parse(&unpause_parser, argc, argv, unpause_option, &t, &r);
    target_args_set_names(&t, &r);
    targets_resolve(&unpause_parser, &t, true, false, &qubes);
    int ret = 0;
    for (size_t i = 0; i < qubes.n; i++) {
        const struct qube *q = &qubes.v[i];
        struct cli_err err;
        if (t.all && is_internal(q->name))
            continue;
        const char *method = streq(q->state, "Suspended") ? "admin.vm.Resume" : "admin.vm.Unpause";
        if (cli_call_simple(method, "", q->name, NULL, &err) == 0)
            continue;
        cli_print_error("Failed to unpause/resume: %s: %s", q->name, err.msg);
        ret = 1;
    }
    return ret;
}
