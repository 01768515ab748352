/* qvm-service VMNAME [SERVICE [VALUE]] | --enable/--disable/--unset VMNAME SERVICE:
 * a qube's Qubes services, which are its service.NAME features (admin.vm.feature.*),
 * with upstream's output and exit codes. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "cli.h"

enum { OPT_UNSET = 1, OPT_LIST, OPT_ENABLE, OPT_DISABLE };

static const struct opt_spec service_specs[] = {
    {"unset", 'D', OPT_FLAG, OPT_UNSET, NULL, "unset service (default to VM preference)"},
    {"default", 0, OPT_FLAG, OPT_UNSET, NULL, NULL},
    {"delete", 0, OPT_FLAG, OPT_UNSET, NULL, NULL},
    {"list", 'l', OPT_FLAG, OPT_LIST, NULL, "list services (default action)"},
    {"enable", 'e', OPT_FLAG, OPT_ENABLE, NULL, "enable service (same as setting \"on\" value)"},
    {"disable", 'd', OPT_FLAG, OPT_DISABLE, NULL,
     "disable service (same as setting \"off\" value)"},
};

static const struct opt_parser service_parser = {
    .usage = "[-h] [--verbose] [--quiet] [--unset] [--list] [--enable] [--disable] VMNAME "
             "[SERVICE] [VALUE]",
    .description = "manage domain's services",
    .positionals = "  VMNAME                a domain name\n"
                   "  SERVICE               name of the feature\n"
                   "  VALUE                 new value of the service (on/off)\n",
    .specs = service_specs,
    .n_specs = ELEMENTSOF(service_specs),
};

struct service_args {
    bool unset;
    const char *value; /* from --enable/--disable: "1" or "0" */
};

static void service_option(void *userdata, int id, const char *value) {
    struct service_args *a = userdata;
    if (id == OPT_UNSET)
        a->unset = true;
    else if (id == OPT_ENABLE)
        a->value = "1";
    else if (id == OPT_DISABLE)
        a->value = "0";
    /* --list is what happens without SERVICE anyway */
}

/* upstream's parse_bool: the words it knows, whatever their case; a feature holds "1"
 * for true and "" for false. Returns NULL for anything else. */
static const char *parse_bool(const char *value) {
    static const char *const no[] = {"0", "no", "false", "off"};
    static const char *const yes[] = {"1", "yes", "true", "on"};
    for (size_t i = 0; i < ELEMENTSOF(no); i++) {
        if (strcasecmp(value, no[i]) == 0)
            return "";
        if (strcasecmp(value, yes[i]) == 0)
            return "1";
    }
    return NULL;
}

static void feature_of(const char *service, char *buf, size_t size) {
    snprintf(buf, size, "%s%s", SERVICE_FEATURE_PREFIX, service);
}

static int services_list(const char *vm) {
    _cleanup_reply_ struct client_reply reply = {};
    _cleanup_(strv_free) struct strv names = {0};
    _cleanup_(table_free) struct table t = {.ncols = 2};
    struct cli_err err;
    size_t plen = strlen(SERVICE_FEATURE_PREFIX);
    if (cli_call("admin.vm.feature.List", "", vm, NULL, &reply, &err) < 0)
        cli_die_err(&err);
    strv_split_lines(&names, reply.r.content);
    for (size_t i = 0; i < names.n; i++) {
        if (strncmp(names.v[i], SERVICE_FEATURE_PREFIX, plen) != 0)
            continue;
        _cleanup_reply_ struct client_reply value = {};
        if (cli_call("admin.vm.feature.Get", names.v[i], vm, NULL, &value, &err) < 0)
            cli_die_err(&err);
        const char *row[2] = {names.v[i] + plen, feature_is_true(value.r.content) ? "on" : "off"};
        table_add_row(&t, row);
    }
    table_print(&t, stdout);
    return 0;
}

static int service_show(const char *vm, const char *feature) {
    _cleanup_reply_ struct client_reply reply = {};
    struct cli_err err;
    if (cli_call("admin.vm.feature.Get", feature, vm, NULL, &reply, &err) < 0) {
        if (cli_err_is(&err, "QubesFeatureNotFoundError"))
            return 1; /* silently, as upstream */
        cli_die_err(&err);
    }
    printf("%s\n", feature_is_true(reply.r.content) ? "on" : "off");
    return 0;
}

static int service_unset(const char *vm, const char *feature) {
    struct cli_err err;
    if (cli_call_simple("admin.vm.feature.Remove", feature, vm, NULL, &err) < 0 &&
        !cli_err_is(&err, "QubesFeatureNotFoundError"))
        cli_die_err(&err);
    return 0;
}

static int service_set(const char *vm, const char *feature, const char *value) {
    const char *stored = parse_bool(value);
    if (!stored) /* upstream: repr() of the string */
        cli_die("Invalid literal for boolean value: '%s'", value);
    struct qerr qe = {0};
    cli_check(check_feature_name(feature, &qe), &qe);
    cli_check(check_service_feature(feature, &qe), &qe);
    struct cli_err err;
    if (cli_call_simple("admin.vm.feature.Set", feature, vm, stored, &err) < 0)
        cli_die_err(&err);
    return 0;
}

int qvm_service_main(int argc, char **argv) {
    struct service_args a = {0};
    _cleanup_(opts_result_free) struct opts_result r = {0};
    _cleanup_(qube_list_free) struct qube_list vm = {0};
    opts_parse(&service_parser, argc, argv, service_option, &a, &r);
    if (r.n_pos == 0)
        opts_error(&service_parser, "the following arguments are required: VMNAME");
    if (r.n_pos > 3)
        opts_error(&service_parser, "unrecognized arguments: %s", r.pos[3]);
    qube_resolve(&service_parser, r.pos[0], &vm);
    const char *name = vm.v[0].name;
    const char *value = a.value ? a.value : r.n_pos == 3 ? r.pos[2] : NULL;
    if (r.n_pos == 1) {
        if (a.unset)
            opts_error(&service_parser, "--unset requires a feature");
        return services_list(name);
    }
    char feature[512];
    feature_of(r.pos[1], feature, sizeof(feature));
    if (a.unset) {
        if (value)
            opts_error(&service_parser, "cannot both set and unset a value");
        return service_unset(name, feature);
    }
    if (value)
        return service_set(name, feature, value);
    return service_show(name, feature);
}
