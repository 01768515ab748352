/* qvm-remove [--force] VMNAME... | --all: remove qubes after confirmation. When the
 * daemon refuses because a qube is in use, show where it is used, as upstream does. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "cli.h"

enum { OPT_FORCE = 1 };

static const struct opt_spec remove_specs[] = {
    {"force", 'f', OPT_FLAG, OPT_FORCE, NULL, "Do not prompt for confirmation"},
    TARGET_OPT_SPECS("perform the action on all qubes"),
};

static const struct opt_parser remove_parser = {
    .usage = "[-h] [--verbose] [--quiet] [--force] [--all] [--exclude EXCLUDE] [VMNAME ...]",
    .description = "Remove qubes. Asks for confirmation (y/N on stdin) unless --force.",
    .positionals = "  VMNAME                one or more domain names (shell wildcards allowed)\n",
    .specs = remove_specs,
    .n_specs = ELEMENTSOF(remove_specs),
};

struct remove_ctx {
    struct target_args t;
    bool force;
};

static void remove_option(void *userdata, int id, const char *value) {
    struct remove_ctx *c = userdata;
    if (!target_args_option(&c->t, id, value))
        c->force = true;
}

/* One line from stdin, without the newline; false on EOF (taken as "no"). */
static bool read_answer(const char *prompt, char *buf, size_t n) {
    fputs(prompt, stdout);
    fflush(stdout);
    if (!fgets(buf, (int)n, stdin))
        return false;
    buf[strcspn(buf, "\r\n")] = '\0';
    return true;
}

static bool confirm(const struct remove_ctx *c, const struct qube_list *qubes) {
    char answer[64];
    if (c->t.all && !c->force && c->t.exclude.n == 0) {
        fprintf(stderr, "WARNING!!! Removing all domains may leave your system in an "
                        "unrecoverable state!\n");
        if (!read_answer("Are you certain? [N/IKNOWWHATIAMDOING]", answer, sizeof(answer)) ||
            !streq(answer, "IKNOWWHATIAMDOING"))
            return false;
    }
    if (c->force)
        return true;
    fprintf(stderr, "This will completely remove the selected VM(s)...\n");
    for (size_t i = 0; i < qubes->n; i++)
        printf("  %s\n", qubes->v[i].name);
    return read_answer("Are you sure? [y/N] ", answer, sizeof(answer)) &&
           strcasecmp(answer, "y") == 0;
}

/* Where `name` is used: the places upstream's vm_dependencies() looks at. Global
 * properties count even at their default; a qube's only when explicitly set. */
static void print_global_uses(const char *name) {
    static const char *const global_props[] = {"default_dispvm",   "default_netvm",
                                               "default_guivm",    "default_audiovm",
                                               "default_template", "clockvm",
                                               "updatevm",         "management_dispvm"};
    _cleanup_(prop_list_free) struct prop_list props = {0};
    struct cli_err err;
    if (prop_list_fetch("admin.property", "dom0", &props, &err) < 0)
        return;
    for (size_t i = 0; i < ELEMENTSOF(global_props); i++) {
        const struct prop *p = prop_list_find(&props, global_props[i]);
        if (p && streq(p->value, name))
            fprintf(stderr, " - global property %s\n", p->name);
    }
}

static void print_qube_uses(const char *name) {
    static const char *const vm_props[] = {"template", "netvm",          "guivm",
                                           "audiovm",  "default_dispvm", "management_dispvm"};
    _cleanup_(qube_list_free) struct qube_list all = {0};
    struct cli_err err;
    if (qube_list_fetch("dom0", &all, &err) < 0)
        return;
    for (size_t q = 0; q < all.n; q++) {
        _cleanup_(prop_list_free) struct prop_list props = {0};
        if (streq(all.v[q].name, name) ||
            prop_list_fetch("admin.vm.property", all.v[q].name, &props, &err) < 0)
            continue;
        /* a preload is discarded with what it is based on: never a use (as upstream) */
        const struct prop *preload = prop_list_find(&props, "is_preload");
        if (preload && streq(preload->value, "True"))
            continue;
        for (size_t i = 0; i < ELEMENTSOF(vm_props); i++) {
            const struct prop *p = prop_list_find(&props, vm_props[i]);
            if (p && !p->is_default && streq(p->value, name))
                fprintf(stderr, " - %s for %s\n", p->name, all.v[q].name);
        }
    }
}

static void remove_one(const char *name) {
    struct cli_err err;
    if (cli_call_simple("admin.vm.Remove", "", name, NULL, &err) == 0)
        return;
    if (cli_err_is(&err, "QubesVMInUseError")) {
        fprintf(stderr, "VM %s cannot be removed. It is in use as:\n", name);
        print_global_uses(name);
        print_qube_uses(name);
    }
    cli_die_err(&err);
}

int qvm_remove_main(int argc, char **argv) {
    _cleanup_(opts_result_free) struct opts_result r = {0};
    _cleanup_(qube_list_free) struct qube_list qubes = {0};
    struct remove_ctx c = {0};
    opts_parse(&remove_parser, argc, argv, remove_option, &c, &r);
    target_args_set_names(&c.t, &r);
    targets_resolve(&remove_parser, &c.t, true, false, &qubes);
    if (qube_list_find(&qubes, "dom0")) {
        fprintf(stderr, "Domain 'dom0' cannot be removed.\n");
        return 1;
    }
    bool go = confirm(&c, &qubes);
    target_args_free(&c.t);
    if (!go) {
        fprintf(stderr, "Remove cancelled.\n");
        return 1;
    }
    for (size_t i = 0; i < qubes.n; i++)
        remove_one(qubes.v[i].name);
    return 0;
}
