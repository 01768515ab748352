/* qvm-prefs VMNAME [PROPERTY [VALUE]] (and qubes-prefs [PROPERTY [VALUE]]): list, show,
 * set or reset properties, with the output format of upstream qvm-prefs. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "cli.h"
#include "strbuf.h"
#include "textwrap.h"

enum { OPT_HELP_PROPS = 1, OPT_HIDE_DEFAULT, OPT_GET, OPT_SET, OPT_DEFAULT };

static const struct opt_spec prefs_specs[] = {
    {"help-properties", 0, OPT_FLAG, OPT_HELP_PROPS, NULL,
     "list all available properties with short descriptions and exit"},
    {"hide-default", 0, OPT_FLAG, OPT_HIDE_DEFAULT, NULL,
     "Do not show properties that are set to the default value."},
    {"get", 'g', OPT_FLAG, OPT_GET, NULL, "Ignored; for compatibility with older scripts."},
    {"set", 's', OPT_FLAG, OPT_SET, NULL, "Ignored; for compatibility with older scripts."},
    {"default", 'D', OPT_FLAG, OPT_DEFAULT, NULL, "reset property to its default value"},
};

static const struct opt_parser vm_parser = {
    .usage = "[-h] [--verbose] [--quiet] [--help-properties] [--hide-default] [--get] "
             "[--set] [--default] VMNAME [PROPERTY] [VALUE]",
    .description = "Show or change the properties (preferences) of a qube.\n"
                   "Without PROPERTY, list all properties: a '-' marks a value that was\n"
                   "set, 'D' a default value, 'U' a property without value or default.",
    .positionals = "  VMNAME                a domain name\n"
                   "  PROPERTY              name of the property to show or change\n"
                   "  VALUE                 new value of the property\n",
    .specs = prefs_specs,
    .n_specs = ELEMENTSOF(prefs_specs),
};

static const struct opt_parser global_parser = {
    .usage = "[-h] [--verbose] [--quiet] [--help-properties] [--hide-default] [--get] "
             "[--set] [--default] [PROPERTY] [VALUE]",
    .description = "Show or change global Qubes properties (default_template, "
                   "default_dispvm, ...).\nWithout PROPERTY, list them all ('-' set, "
                   "'D' default, 'U' unset).",
    .positionals = "  PROPERTY              name of the property to show or change\n"
                   "  VALUE                 new value of the property\n",
    .specs = prefs_specs,
    .n_specs = ELEMENTSOF(prefs_specs),
};

struct prefs_ctx {
    const struct opt_parser *parser;
    const char *prefix; /* admin.vm.property or admin.property */
    const char *dest;
    bool help_props, hide_default, reset;
};

static void prefs_option(void *userdata, int id, const char *value) {
    struct prefs_ctx *c = userdata;
    if (id == OPT_HELP_PROPS)
        c->help_props = true;
    else if (id == OPT_HIDE_DEFAULT)
        c->hide_default = true;
    else if (id == OPT_DEFAULT)
        c->reset = true;
}

static int prefs_call(const struct prefs_ctx *c, const char *verb, const char *prop,
                      const char *payload, struct client_reply *reply, struct cli_err *err) {
    char method[64];
    snprintf(method, sizeof(method), "%s.%s", c->prefix, verb);
    return cli_call(method, prop, c->dest, payload, reply, err);
}

/* Property names come from List (the authoritative set); values from one GetAll, as
 * upstream does with its property cache. */
static void list_names(const struct prefs_ctx *c, struct strv *names) {
    _cleanup_reply_ struct client_reply reply = {};
    struct cli_err err;
    if (prefs_call(c, "List", "", NULL, &reply, &err) < 0)
        cli_die_err(&err);
    strv_split_lines(names, reply.r.content);
    strv_sort(names);
}

/* Fetch one property with Get; returns -1 with err on failure. */
static int get_one(const struct prefs_ctx *c, const char *name, struct prop *out,
                   struct cli_err *err) {
    _cleanup_reply_ struct client_reply reply = {};
    if (prefs_call(c, "Get", name, NULL, &reply, err) < 0)
        return -1;
    if (prop_parse(reply.r.content, out) < 0) {
        snprintf(err->exc, sizeof(err->exc), "%s", EXC_CLIENT_COMM);
        snprintf(err->msg, sizeof(err->msg), "Malformed property value from qubesd: %s", name);
        return -1;
    }
    out->name = xstrdup(name);
    return 0;
}

static void print_listed(const struct prefs_ctx *c, const struct prop *p, int width) {
    if (prop_is_unset(p))
        printf("%-*s  U\n", width, p->name);
    else if (!p->is_default)
        printf("%-*s  -  %s\n", width, p->name, prop_is_none(p) ? "None" : p->value);
    else if (!c->hide_default)
        printf("%-*s  D  %s\n", width, p->name, prop_is_none(p) ? "None" : p->value);
}

static int prefs_list(const struct prefs_ctx *c) {
    _cleanup_(strv_free) struct strv names = {0};
    _cleanup_(prop_list_free) struct prop_list all = {0};
    struct cli_err err;
    list_names(c, &names);
    if (prop_list_fetch(c->prefix, c->dest, &all, &err) < 0)
        all = (struct prop_list){0}; /* fall back to one Get per property */
    int width = 0;
    for (size_t i = 0; i < names.n; i++)
        if ((int)strlen(names.v[i]) > width)
            width = (int)strlen(names.v[i]);
    for (size_t i = 0; i < names.n; i++) {
        const struct prop *p = prop_list_find(&all, names.v[i]);
        struct prop fetched = {0};
        if (!p) {
            if (get_one(c, names.v[i], &fetched, &err) < 0)
                cli_die_err(&err);
            p = &fetched;
        }
        print_listed(c, p, width);
        prop_free(&fetched);
    }
    return 0;
}

/* upstream: each property's "NAME  HELP" (NAME padded to the longest) through
 * textwrap.fill at 80 columns, indented 2, the lines after the first by the width + 6. */
static int prefs_help_properties(const struct prefs_ctx *c) {
    _cleanup_(strv_free) struct strv names = {0};
    list_names(c, &names);
    size_t width = 0;
    for (size_t i = 0; i < names.n; i++)
        if (strlen(names.v[i]) > width)
            width = strlen(names.v[i]);
    _cleanup_free_ char *indent = xcalloc(width + 7, 1);
    memset(indent, ' ', width + 6);
    for (size_t i = 0; i < names.n; i++) {
        _cleanup_reply_ struct client_reply reply = {};
        struct cli_err err;
        if (prefs_call(c, "Help", names.v[i], NULL, &reply, &err) < 0)
            cli_die_err(&err);
        _cleanup_strbuf_ struct strbuf entry = STRBUF_INIT;
        strbuf_printf(&entry, "%-*s  %s", (int)width, names.v[i], reply.r.content);
        text_fill(stdout, strbuf_str(&entry), 80, "  ", indent);
    }
    return 0;
}

static _Noreturn void fail(const struct prefs_ctx *c, const char *prop, const struct cli_err *e) {
    if (cli_err_is(e, "QubesNoSuchPropertyError"))
        opts_error(c->parser, "no such property: '%s'", prop);
    cli_die_err(e);
}

/* "none" is how users write "no qube" for the qube-valued properties upstream knows. */
static const char *set_value(const char *prop, const char *value) {
    static const char *const vm_props[] = {"default_dispvm", "netvm", "template", "guivm",
                                           "audiovm"};
    if (strcasecmp(value, "none") != 0)
        return value;
    for (size_t i = 0; i < ELEMENTSOF(vm_props); i++)
        if (streq(prop, vm_props[i]))
            return "";
    return value;
}

static int prefs_show(const struct prefs_ctx *c, const char *prop) {
    _cleanup_(prop_free) struct prop p = {0};
    struct cli_err err;
    if (get_one(c, prop, &p, &err) < 0)
        fail(c, prop, &err);
    if (c->hide_default && p.is_default)
        return 0;
    /* upstream dies with an AttributeError here; say what it means instead */
    if (prop_is_unset(&p))
        cli_die("property '%s' has no value and no default", prop);
    if (!prop_is_none(&p))
        printf("%s\n", p.value);
    return 0;
}

static int prefs_run(struct prefs_ctx *c, const char *prop_arg, const char *value) {
    if (c->help_props)
        return prefs_help_properties(c);
    if (!prop_arg)
        return prefs_list(c);
    _cleanup_free_ char *prop = xstrdup(prop_arg);
    for (char *s = prop; *s; s++)
        if (*s == '-')
            *s = '_';
    struct cli_err err;
    if (value) {
        _cleanup_reply_ struct client_reply reply = {};
        if (prefs_call(c, "Set", prop, set_value(prop, value), &reply, &err) < 0)
            fail(c, prop, &err);
        return 0;
    }
    if (c->reset) {
        _cleanup_reply_ struct client_reply reply = {};
        if (prefs_call(c, "Reset", prop, NULL, &reply, &err) < 0)
            fail(c, prop, &err);
        return 0;
    }
    return prefs_show(c, prop);
}

int prefs_main(int argc, char **argv, bool global) {
    struct prefs_ctx c = {
        .parser = global ? &global_parser : &vm_parser,
        .prefix = global ? "admin.property" : "admin.vm.property",
        .dest = "dom0",
    };
    _cleanup_(opts_result_free) struct opts_result r = {0};
    opts_parse(c.parser, argc, argv, prefs_option, &c, &r);
    size_t first = 0;
    _cleanup_(qube_list_free) struct qube_list vm = {0};
    if (!global) {
        if (r.n_pos == 0)
            opts_error(c.parser, "the following arguments are required: VMNAME");
        qube_resolve(c.parser, r.pos[0], &vm);
        c.dest = vm.v[0].name;
        first = 1;
    }
    if (r.n_pos > first + 2)
        opts_error(c.parser, "unrecognized arguments: %s", r.pos[first + 2]);
    return prefs_run(&c, r.n_pos > first ? r.pos[first] : NULL,
                     r.n_pos > first + 1 ? r.pos[first + 1] : NULL);
}

int qvm_prefs_main(int argc, char **argv) { return prefs_main(argc, argv, false); }
