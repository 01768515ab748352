/* qvm-features VMNAME [FEATURE [VALUE]] / --unset VMNAME FEATURE: manage a qube's
 * features (admin.vm.feature.*), with upstream's output and exit codes. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

enum { OPT_UNSET = 1 };

static const struct opt_spec features_specs[] = {
    {"unset", 'D', OPT_FLAG, OPT_UNSET, NULL, "unset the feature"},
    {"default", 0, OPT_FLAG, OPT_UNSET, NULL, "same as --unset"},
    {"delete", 0, OPT_FLAG, OPT_UNSET, NULL, "same as --unset"},
};

static const struct opt_parser features_parser = {
    .usage = "[-h] [--verbose] [--quiet] [--unset] VMNAME [FEATURE] [VALUE]",
    .description = "manage domain's features\n\n"
                   "Without FEATURE, list features as 'name value' pairs. With FEATURE, print\n"
                   "its value (exit status 1 if it is not set). With VALUE, set it.",
    .positionals = "  VMNAME                a domain name\n"
                   "  FEATURE               name of the feature\n"
                   "  VALUE                 new value of the feature\n",
    .specs = features_specs,
    .n_specs = ELEMENTSOF(features_specs),
};

static void features_option(void *userdata, int id, const char *value) {
    *(bool *)userdata = true; /* the only option is --unset */
}

static int features_list(const char *vm) {
    _cleanup_reply_ struct client_reply reply = {};
    _cleanup_(strv_free) struct strv names = {0};
    _cleanup_(table_free) struct table t = {.ncols = 2};
    struct cli_err err;
    if (cli_call("admin.vm.feature.List", "", vm, NULL, &reply, &err) < 0)
        cli_die_err(&err);
    strv_split_lines(&names, reply.r.content);
    for (size_t i = 0; i < names.n; i++) {
        _cleanup_reply_ struct client_reply value = {};
        if (cli_call("admin.vm.feature.Get", names.v[i], vm, NULL, &value, &err) < 0)
            cli_die_err(&err);
        const char *row[2] = {names.v[i], value.r.content};
        table_add_row(&t, row);
    }
    table_print(&t, stdout);
    return 0;
}

static int features_show(const char *vm, const char *feature) {
    _cleanup_reply_ struct client_reply reply = {};
    struct cli_err err;
    if (cli_call("admin.vm.feature.Get", feature, vm, NULL, &reply, &err) < 0) {
        if (cli_err_is(&err, "QubesFeatureNotFoundError"))
            return 1; /* silently, so scripts can test for a feature */
        cli_die_err(&err);
    }
    printf("%s\n", reply.r.content);
    return 0;
}

static int features_unset(const char *vm, const char *feature) {
    struct cli_err err;
    /* removing a feature that is not there is not an error (upstream ignores it) */
    if (cli_call_simple("admin.vm.feature.Remove", feature, vm, NULL, &err) < 0 &&
        !cli_err_is(&err, "QubesFeatureNotFoundError"))
        cli_die_err(&err);
    return 0;
}

int qvm_features_main(int argc, char **argv) {
    bool unset = false;
    _cleanup_(opts_result_free) struct opts_result r = {0};
    _cleanup_(qube_list_free) struct qube_list vm = {0};
    opts_parse(&features_parser, argc, argv, features_option, &unset, &r);
    if (r.n_pos == 0)
        opts_error(&features_parser, "the following arguments are required: VMNAME");
    if (r.n_pos > 3)
        opts_error(&features_parser, "unrecognized arguments: %s", r.pos[3]);
    qube_resolve(&features_parser, r.pos[0], &vm);
    const char *name = vm.v[0].name;
    if (r.n_pos == 1) {
        if (unset)
            opts_error(&features_parser, "--unset requires a feature");
        return features_list(name);
    }
    if (unset) {
        if (r.n_pos == 3)
            opts_error(&features_parser, "cannot both set and unset a value");
        return features_unset(name, r.pos[1]);
    }
    if (r.n_pos == 2)
        return features_show(name, r.pos[1]);
    struct qerr qe = {0};
    const char *value = r.pos[2];
    cli_check(check_feature_name(r.pos[1], &qe), &qe);
    cli_check(check_feature_value(value, strlen(value), &qe), &qe);
    cli_check(check_request_size(wire_request_len("admin.vm.feature.Set", r.pos[1], name,
                                                  strlen(value)),
                                 "the feature value", &qe),
              &qe);
    struct cli_err err;
    if (cli_call_simple("admin.vm.feature.Set", r.pos[1], name, value, &err) < 0)
        cli_die_err(&err);
    return 0;
}
