/* qvm-clone [--class CLS] [--ignore-errors] [-P POOL | -p VOLUME=POOL] VMNAME NEWVM: a new
 * qube with the source's label, template, explicitly set properties, tags, features,
 * firewall and persistent volumes, in upstream's order (qubesadmin's clone_vm). Any
 * failure removes the half-made clone (metadata failures only warn with
 * --ignore-errors). Never copied: the preload pool's own features (a clone of a
 * disposable template starts with no preloads: its pool fills as its max says), and the
 * created-by-* tags (the new qube's own creator tag is the daemon's). */
#include <stdio.h>
#include <string.h>

#include "cli.h"

enum { OPT_CLASS = 1, OPT_IGNORE_ERRORS, OPT_ONE_POOL, OPT_POOL };

static const struct opt_spec clone_specs[] = {
    {"class", 'C', OPT_VALUE, OPT_CLASS, "CLS",
     "specify the class of the new domain (default: same as source)"},
    {"ignore-errors", 0, OPT_FLAG, OPT_IGNORE_ERRORS, NULL,
     "log errors encountered during setting metadata but continue clone operation"},
    {NULL, 'P', OPT_VALUE, OPT_ONE_POOL, "POOL", "pool to use for the new domain"},
    {"pool", 'p', OPT_VALUE, OPT_POOL, "VOLUME=POOL",
     "specify the pool to use for the specific volume"},
};

static const struct opt_parser clone_parser = {
    .usage = "[-h] [--verbose] [--quiet] [--class CLS] [--ignore-errors]\n"
             "                 [-P POOL | -p VOLUME=POOL] VMNAME NEWVM",
    .description = "Clone a domain",
    .positionals = "  VMNAME                name of the domain to clone\n"
                   "  NEWVM                 name of the domain to create\n",
    .specs = clone_specs,
    .n_specs = ELEMENTSOF(clone_specs),
};

struct clone_ctx {
    const char *klass;
    bool ignore_errors;
    const char *one_pool;
    struct strv pools;
};

static void clone_option(void *userdata, int id, const char *value) {
    struct clone_ctx *c = userdata;
    switch (id) {
    case OPT_CLASS: c->klass = value; break;
    case OPT_IGNORE_ERRORS: c->ignore_errors = true; break;
    case OPT_ONE_POOL: c->one_pool = value; break;
    case OPT_POOL:
        if (!strchr(value, '='))
            opts_error(&clone_parser, "Pool argument must be of form: -P volume_name=pool_name");
        strv_push(&c->pools, value);
        break;
    }
}

/* Features the preload pool writes: a clone starts with no preloads of its own. */
static bool is_preload_feature(const char *name) {
    return strncmp(name, "preload-dispvm", 14) == 0 && strcmp(name, "preload-dispvm-max") != 0;
}

/* Properties Create sets, or the daemon manages. */
static bool skip_property(const char *name) {
    static const char *const skip[] = {"name", "qid",    "template",   "label",
                                       "uuid", "dispid", "is_preload", "installed_by_rpm"};
    for (size_t i = 0; i < ELEMENTSOF(skip); i++)
        if (streq(name, skip[i]))
            return true;
    return false;
}

/* A metadata failure: logged; fatal unless --ignore-errors. */
static int meta_failed(const struct clone_ctx *c, const char *what, const char *name,
                       const struct cli_err *err) {
    fprintf(stderr, "Failed to set %s %s: %s\n", name, what, err->msg);
    return c->ignore_errors ? 0 : -1;
}

static int copy_properties(const struct clone_ctx *c, const char *src, const char *dst,
                           struct cli_err *err) {
    _cleanup_(prop_list_free) struct prop_list props = {0};
    if (prop_list_fetch("admin.vm.property", src, &props, err) < 0)
        return -1;
    for (size_t i = 0; i < props.n; i++) {
        const struct prop *p = &props.v[i];
        if (p->is_default || skip_property(p->name))
            continue;
        if (cli_call_simple("admin.vm.property.Set", p->name, dst, p->value, err) < 0 &&
            !cli_err_is(err, "QubesNoSuchPropertyError") &&
            meta_failed(c, "property", p->name, err) < 0)
            return -1;
    }
    return 0;
}

static int fetch(const char *method, const char *arg, const char *dest, struct strv *lines,
                 struct cli_err *err) {
    _cleanup_reply_ struct client_reply reply = {};
    if (cli_call(method, arg, dest, NULL, &reply, err) < 0)
        return -1;
    strv_split_lines(lines, reply.r.content);
    return 0;
}

static int copy_tags(const struct clone_ctx *c, const char *src, const char *dst,
                     struct cli_err *err) {
    _cleanup_(strv_free) struct strv tags = {0};
    if (fetch("admin.vm.tag.List", "", src, &tags, err) < 0)
        return -1;
    for (size_t i = 0; i < tags.n; i++)
        if (strncmp(tags.v[i], "created-by-", 11) != 0 &&
            cli_call_simple("admin.vm.tag.Set", tags.v[i], dst, NULL, err) < 0 &&
            meta_failed(c, "tag", tags.v[i], err) < 0)
            return -1;
    return 0;
}

static int copy_features(const struct clone_ctx *c, const char *src, const char *dst,
                         struct cli_err *err) {
    _cleanup_(strv_free) struct strv names = {0};
    if (fetch("admin.vm.feature.List", "", src, &names, err) < 0)
        return -1;
    for (size_t i = 0; i < names.n; i++) {
        _cleanup_reply_ struct client_reply value = {};
        if (is_preload_feature(names.v[i]))
            continue;
        if (cli_call("admin.vm.feature.Get", names.v[i], src, NULL, &value, err) < 0 ||
            cli_call_simple("admin.vm.feature.Set", names.v[i], dst, value.r.content, err) < 0) {
            if (meta_failed(c, "feature", names.v[i], err) < 0)
                return -1;
        }
    }
    return 0;
}

static int copy_firewall(const struct clone_ctx *c, const char *src, const char *dst,
                         struct cli_err *err) {
    _cleanup_reply_ struct client_reply rules = {};
    if (cli_call("admin.vm.firewall.Get", "", src, NULL, &rules, err) < 0 ||
        cli_call_simple("admin.vm.firewall.Set", "", dst, rules.r.content, err) < 0) {
        fprintf(stderr, "Failed to set firewall: %s\n", err->msg);
        return c->ignore_errors ? 0 : -1;
    }
    return 0;
}

/* "key=value" lines of admin.vm.volume.Info: is `key` "True"? */
static bool info_true(const char *info, const char *key) {
    char want[64];
    snprintf(want, sizeof(want), "\n%s=True\n", key);
    return strncmp(info, want + 1, strlen(want + 1)) == 0 || strstr(info, want) != NULL;
}

int clone_volume(const char *src, const char *dst, const char *volume, struct cli_err *err) {
    _cleanup_reply_ struct client_reply token = {};
    if (cli_call("admin.vm.volume.CloneFrom", volume, src, NULL, &token, err) < 0)
        return -1;
    return cli_call_simple("admin.vm.volume.CloneTo", volume, dst, token.r.content, err);
}

/* Every persistent (save_on_stop) volume of the new qube, from the source's. */
static int copy_volumes(const char *src, const char *dst, struct cli_err *err) {
    _cleanup_(strv_free) struct strv vols = {0};
    if (fetch("admin.vm.volume.List", "", dst, &vols, err) < 0)
        return -1;
    strv_sort(&vols);
    for (size_t i = 0; i < vols.n; i++) {
        _cleanup_reply_ struct client_reply info = {};
        if (cli_call("admin.vm.volume.Info", vols.v[i], dst, NULL, &info, err) < 0)
            return -1;
        if (info_true(info.r.content, "save_on_stop") && clone_volume(src, dst, vols.v[i], err) < 0)
            return -1;
    }
    return 0;
}

static int create_clone(const struct clone_ctx *c, const char *src, const char *klass,
                        const char *dst, struct cli_err *err) {
    _cleanup_(prop_list_free) struct prop_list props = {0};
    if (prop_list_fetch("admin.vm.property", src, &props, err) < 0)
        return -1;
    const struct prop *label = prop_list_find(&props, "label");
    const struct prop *tpl = prop_list_find(&props, "template");
    bool based = streq(klass, "AppVM") || streq(klass, "DispVM");
    _cleanup_strbuf_ struct strbuf payload = STRBUF_INIT;
    strbuf_printf(&payload, "name=%s label=%s", dst, label ? label->value : "red");
    if (c->one_pool)
        strbuf_printf(&payload, " pool=%s", c->one_pool);
    for (size_t i = 0; i < c->pools.n; i++)
        strbuf_printf(&payload, " pool:%s", c->pools.v[i]);
    char method[128];
    snprintf(method, sizeof(method), "admin.vm.%s.%s",
             c->one_pool || c->pools.n ? "CreateInPool" : "Create", klass);
    return cli_call_simple(method, based && tpl ? tpl->value : "", "dom0", strbuf_str(&payload),
                           err);
}

/* Everything after the creation; -1 (err set) means the clone must go. */
static int fill_clone(const struct clone_ctx *c, const char *src, const char *dst,
                      struct cli_err *err) {
    if (copy_properties(c, src, dst, err) < 0 || copy_tags(c, src, dst, err) < 0 ||
        copy_features(c, src, dst, err) < 0 || copy_firewall(c, src, dst, err) < 0)
        return -1;
    return copy_volumes(src, dst, err);
}

void remove_half_made(const char *name) {
    struct cli_err err;
    if (cli_call_simple("admin.vm.Remove", "", name, NULL, &err) < 0)
        fprintf(stderr, "Failed to remove the half-made '%s': %s\n", name, err.msg);
}

int qvm_clone_main(int argc, char **argv) {
    _cleanup_(opts_result_free) struct opts_result r = {0};
    _cleanup_(qube_list_free) struct qube_list vm = {0};
    struct clone_ctx c = {0};
    opts_parse(&clone_parser, argc, argv, clone_option, &c, &r);
    if (r.n_pos < 2)
        opts_error(&clone_parser, "the following arguments are required: %s",
                   r.n_pos ? "NEWVM" : "VMNAME, NEWVM");
    if (r.n_pos > 2)
        opts_error(&clone_parser, "unrecognized arguments: %s", r.pos[2]);
    if (c.one_pool && c.pools.n)
        opts_error(&clone_parser, "argument -p/--pool: not allowed with argument -P");
    qube_resolve(&clone_parser, r.pos[0], &vm);
    const char *src = vm.v[0].name, *dst = r.pos[1];
    const char *klass = c.klass ? c.klass : vm.v[0].klass;
    struct cli_err err;
    int ret = 0;
    if (create_clone(&c, src, klass, dst, &err) < 0) {
        ret = 1;
    } else if (fill_clone(&c, src, dst, &err) < 0) {
        remove_half_made(dst);
        ret = 1;
    }
    strv_free(&c.pools);
    if (ret)
        cli_die_err(&err);
    return 0;
}
