/* qvm-create [--class C] [--template T] --label L [--prop NAME=VALUE...] VMNAME:
 * admin.vm.Create.<Class> (or CreateInPool with pool options), then the properties. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "names.h"
#include "strbuf.h"

enum {
    OPT_CLASS = 1,
    OPT_STANDALONE,
    OPT_DISP,
    OPT_PROP,
    OPT_POOL,
    OPT_ONE_POOL,
    OPT_TEMPLATE,
    OPT_LABEL,
    OPT_HELP_CLASSES,
    OPT_ROOT_COPY,
    OPT_ROOT_MOVE
};

static const struct opt_spec create_specs[] = {
    {"class", 'C', OPT_VALUE, OPT_CLASS, "CLS",
     "specify the class of the new domain (default: AppVM)"},
    {"standalone", 0, OPT_FLAG, OPT_STANDALONE, NULL, "shortcut for --class StandaloneVM"},
    {"disp", 0, OPT_FLAG, OPT_DISP, NULL, "alias for --class DispVM --label red"},
    {"property", 0, OPT_VALUE, OPT_PROP, "NAME=VALUE",
     "set domain's property, like \"memory\" or \"vcpus\" (repeatable)"},
    {"prop", 0, OPT_VALUE, OPT_PROP, "NAME=VALUE", "same as --property"},
    {"pool", 'p', OPT_VALUE, OPT_POOL, "VOLUME_NAME=POOL_NAME",
     "specify the pool to use for a volume (root, private, volatile, kernel); any other\n"
     "                        NAME=VALUE is taken as --property NAME=VALUE"},
    {NULL, 'P', OPT_VALUE, OPT_ONE_POOL, "POOL_NAME", "change all volume pools to specified pool"},
    {"template", 't', OPT_VALUE, OPT_TEMPLATE, "VALUE", "specify the TemplateVM to use"},
    {"label", 'l', OPT_VALUE, OPT_LABEL, "VALUE",
     "specify the label to use for the new domain (e.g. red, yellow, green, ...)"},
    {"help-classes", 0, OPT_FLAG, OPT_HELP_CLASSES, NULL, "List available classes and exit"},
    {"root-copy-from", 'r', OPT_VALUE, OPT_ROOT_COPY, "FILENAME", NULL},
    {"root-move-from", 'R', OPT_VALUE, OPT_ROOT_MOVE, "FILENAME", NULL},
};

static const struct opt_parser create_parser = {
    .usage = "[-h] [--verbose] [--quiet] [--class CLS] [--standalone] [--disp] "
             "[--property NAME=VALUE] [--pool VOLUME_NAME=POOL_NAME] [-P POOL_NAME] "
             "[--template VALUE] [--label VALUE] [--help-classes] [VMNAME]",
    .description = "Create a new qube. --label is mandatory; without --template the\n"
                   "default template (qubes-prefs default_template) is used.",
    .positionals = "  VMNAME                name of the domain to create\n",
    .specs = create_specs,
    .n_specs = ELEMENTSOF(create_specs),
};

struct create_ctx {
    const char *klass, *template, *label, *one_pool;
    bool disp, standalone, help_classes, root_source;
    struct strv props; /* "name=value" */
    struct strv pools; /* "volume=pool" */
};

static bool is_volume_name(const char *spec) {
    static const char *const volumes[] = {"root", "private", "volatile", "kernel"};
    size_t len = strcspn(spec, "=");
    for (size_t i = 0; i < ELEMENTSOF(volumes); i++)
        if (strlen(volumes[i]) == len && strncmp(spec, volumes[i], len) == 0)
            return true;
    return false;
}

static void create_option(void *userdata, int id, const char *value) {
    struct create_ctx *c = userdata;
    switch (id) {
    case OPT_CLASS: c->klass = value; break;
    case OPT_STANDALONE: c->standalone = true; break;
    case OPT_DISP: c->disp = true; break;
    case OPT_ONE_POOL: c->one_pool = value; break;
    case OPT_TEMPLATE: c->template = value; break;
    case OPT_LABEL: c->label = value; break;
    case OPT_HELP_CLASSES: c->help_classes = true; break;
    case OPT_ROOT_COPY:
    case OPT_ROOT_MOVE: c->root_source = true; break;
    case OPT_PROP:
        if (!strchr(value, '='))
            opts_error(&create_parser, "Invalid property token: '%s'", value);
        strv_push(&c->props, value);
        break;
    case OPT_POOL:
        if (!strchr(value, '='))
            opts_error(&create_parser, "Pool argument must be of form: -p volume_name=pool_name");
        /* -p has meant --pool upstream since R4.0, but people also write -p for
         * --prop; only the four volume names can be pools, so both readings fit. */
        strv_push(is_volume_name(value) ? &c->pools : &c->props, value);
        break;
    }
}

static void fetch_lines(const char *method, struct strv *out) {
    _cleanup_reply_ struct client_reply reply = {};
    struct cli_err err;
    if (cli_call(method, "", "dom0", NULL, &reply, &err) < 0)
        cli_die_err(&err);
    strv_split_lines(out, reply.r.content);
}

static void check_label_and_class(const struct create_ctx *c) {
    _cleanup_(strv_free) struct strv labels = {0};
    _cleanup_(strv_free) struct strv classes = {0};
    fetch_lines("admin.label.List", &labels);
    if (!strv_contains(&labels, c->label)) {
        _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
        for (size_t i = 0; i < labels.n; i++)
            strbuf_printf(&sb, "%s%s", i ? ", " : "", labels.v[i]);
        opts_error(&create_parser, "no such label: '%s'; available: %s", c->label, strbuf_str(&sb));
    }
    fetch_lines("admin.vmclass.List", &classes);
    if (!strv_contains(&classes, c->klass))
        opts_error(&create_parser, "no such domain class: '%s'", c->klass);
}

/* --prop name=/label=/template= feed the creation call, as in upstream's dict. */
static void take_creation_props(struct create_ctx *c, const char **name) {
    for (size_t i = 0; i < c->props.n; i++) {
        const char *p = c->props.v[i];
        if (strncmp(p, "name=", 5) == 0 && !*name)
            *name = p + 5;
        else if (strncmp(p, "label=", 6) == 0 && !c->label)
            c->label = p + 6;
        else if (strncmp(p, "template=", 9) == 0 && !c->template)
            c->template = p + 9;
    }
}

static int create_qube(const struct create_ctx *c, const char *name) {
    /* in the payload a space would start another key, and the daemon could only say
     * that the parameters are not ASCII: check the name here, in qubesd's words */
    struct qerr qe = {0};
    if (name_validate_qube(name, &qe) < 0) {
        fprintf(stderr, "app: Error creating VM: %s\n", qe.msg);
        return -1;
    }
    _cleanup_strbuf_ struct strbuf payload = STRBUF_INIT;
    char method[128];
    bool in_pool = c->one_pool || c->pools.n > 0;
    strbuf_printf(&payload, "name=%s label=%s", name, c->label);
    if (c->one_pool)
        strbuf_printf(&payload, " pool=%s", c->one_pool);
    for (size_t i = 0; i < c->pools.n; i++)
        strbuf_printf(&payload, " pool:%s", c->pools.v[i]);
    snprintf(method, sizeof(method), "admin.vm.%s.%s", in_pool ? "CreateInPool" : "Create",
             c->klass);
    struct cli_err err;
    if (cli_call_simple(method, c->template ? c->template : "", "dom0", strbuf_str(&payload),
                        &err) < 0) {
        fprintf(stderr, "app: Error creating VM: %s\n", err.msg);
        return -1;
    }
    return 0;
}

static bool is_creation_key(const char *p) {
    return strncmp(p, "name=", 5) == 0 || strncmp(p, "label=", 6) == 0 ||
           strncmp(p, "template=", 9) == 0;
}

/* Properties after creation; a failure keeps the qube and makes the exit status 2. */
static int set_props(const struct create_ctx *c, const char *name) {
    int ret = 0;
    for (size_t i = 0; i < c->props.n; i++) {
        if (is_creation_key(c->props.v[i]))
            continue;
        _cleanup_free_ char *prop = xstrdup(c->props.v[i]);
        char *eq = strchr(prop, '=');
        *eq = '\0';
        struct cli_err err;
        if (cli_call_simple("admin.vm.property.Set", prop, name, eq + 1, &err) < 0) {
            fprintf(stderr, "app: Error setting property %s (but VM created): %s\n", prop, err.msg);
            ret = 2;
        }
    }
    return ret;
}

/* A StandaloneVM from a template: qubesd takes no template for it, so the qube is made
 * without one and gets a copy of the template's root (Qubes' clone of a template into a
 * StandaloneVM does the same); a failure removes it. */
static int create_standalone(struct create_ctx *c, const char *name) {
    const char *template = c->template;
    struct cli_err err;
    c->template = NULL;
    if (create_qube(c, name) < 0)
        return 1;
    if (clone_volume(template, name, "root", &err) < 0) {
        fprintf(stderr, "app: Error creating VM: %s\n", err.msg);
        remove_half_made(name);
        return 1;
    }
    return set_props(c, name);
}

int qvm_create_main(int argc, char **argv) {
    _cleanup_(opts_result_free) struct opts_result r = {0};
    struct create_ctx c = {.klass = "AppVM"};
    opts_parse(&create_parser, argc, argv, create_option, &c, &r);
    if (r.n_pos > 1)
        opts_error(&create_parser, "unrecognized arguments: %s", r.pos[1]);
    if (c.help_classes) {
        _cleanup_(strv_free) struct strv classes = {0};
        fetch_lines("admin.vmclass.List", &classes);
        for (size_t i = 0; i < classes.n; i++)
            printf("%s\n", classes.v[i]);
        return 0;
    }
    const char *name = r.n_pos ? r.pos[0] : NULL;
    take_creation_props(&c, &name);
    if (c.disp) {
        c.klass = "DispVM";
        c.label = c.label ? c.label : "red";
    }
    if (c.standalone)
        c.klass = "StandaloneVM";
    if (!c.label)
        opts_error(&create_parser, "--label option is mandatory");
    if (!name)
        opts_error(&create_parser, "VMNAME is mandatory");
    if (c.root_source)
        opts_error(&create_parser, "--root-copy-from/--root-move-from are not supported");
    check_label_and_class(&c);
    int ret = streq(c.klass, "StandaloneVM") && c.template ? create_standalone(&c, name)
              : create_qube(&c, name) < 0                  ? 1
                                                           : set_props(&c, name);
    strv_free(&c.props);
    strv_free(&c.pools);
    return ret;
}
