/* qvm-ls: list qubes as a table (NAME STATE CLASS LABEL TEMPLATE NETVM by default),
 * with upstream's formats, columns, filters and sorting. Properties are fetched with
 * one GetAll per qube, and only when a column or filter needs them. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "ls.h"
#include "strbuf.h"

enum {
    OPT_FORMAT = 1,
    OPT_FIELDS,
    OPT_TREE,
    OPT_RAW_DATA,
    OPT_RAW_LIST,
    OPT_DISK,
    OPT_NETWORK,
    OPT_KERNEL,
    OPT_HELP_FORMATS,
    OPT_HELP_COLUMNS,
    OPT_CLASS,
    OPT_LABEL,
    OPT_TAGS,
    OPT_EXCLUDE_TAGS,
    OPT_RUNNING,
    OPT_PAUSED,
    OPT_HALTED,
    OPT_TEMPLATE_SOURCE,
    OPT_NETVM_IS,
    OPT_INTERNAL,
    OPT_SERVICEVM,
    OPT_PENDING_UPDATE,
    OPT_FEATURES,
    OPT_PREFS,
    OPT_SORT,
    OPT_REVERSE,
    OPT_IGNORE_CASE,
    OPT_SPINNER,
};

static const struct opt_spec ls_specs[] = {
    TARGET_OPT_SPECS("perform the action on all qubes"),
    {"format", 'o', OPT_VALUE, OPT_FORMAT, "FORMAT", "preset format"},
    {"fields", 'O', OPT_VALUE, OPT_FIELDS, "FIELD,...",
     "user specified format (see available columns below)"},
    {"tree", 't', OPT_FLAG, OPT_TREE, NULL, "sort domain list as network tree"},
    {"raw-data", 0, OPT_FLAG, OPT_RAW_DATA, NULL,
     "Display specify data of specified VMs. Intended for bash-parsing."},
    {"raw-list", 0, OPT_FLAG, OPT_RAW_LIST, NULL, "Same as --raw-data --fields=name"},
    {"disk", 'd', OPT_FLAG, OPT_DISK, NULL, "Same as --format=disk"},
    {"network", 'n', OPT_FLAG, OPT_NETWORK, NULL, "Same as --format=network"},
    {"kernel", 'k', OPT_FLAG, OPT_KERNEL, NULL, "Same as --format=kernel"},
    {"help-formats", 0, OPT_FLAG, OPT_HELP_FORMATS, NULL,
     "list all available formats with their definitions and exit"},
    {"help-columns", 0, OPT_FLAG, OPT_HELP_COLUMNS, NULL,
     "list all available columns with short descriptions and exit"},
    {"class", 0, OPT_MULTI, OPT_CLASS, "CLASS", "show only qubes of specific class(es)"},
    {"label", 0, OPT_MULTI, OPT_LABEL, "LABEL", "show only qubes with specific label(s)"},
    {"tags", 0, OPT_MULTI, OPT_TAGS, "TAG", "show only qubes having specific tag(s)"},
    {"exclude-tags", 0, OPT_MULTI, OPT_EXCLUDE_TAGS, "TAG", "exclude qubes having specific tag(s)"},
    {"running", 0, OPT_FLAG, OPT_RUNNING, NULL, "show running VMs"},
    {"paused", 0, OPT_FLAG, OPT_PAUSED, NULL, "show paused VMs"},
    {"halted", 0, OPT_FLAG, OPT_HALTED, NULL, "show halted VMs"},
    {"template-source", 0, OPT_MULTI, OPT_TEMPLATE_SOURCE, "TEMPLATE",
     "filter results to the qubes based on the TEMPLATE. \"\" means None"},
    {"netvm-is", 0, OPT_MULTI, OPT_NETVM_IS, "NETVM",
     "filter results to the qubes connecting via NETVM"},
    {"internal", 0, OPT_VALUE, OPT_INTERNAL, "<y|n>",
     "show only internal qubes or option to hide them"},
    {"servicevm", 0, OPT_VALUE, OPT_SERVICEVM, "<y|n>",
     "show only ServiceVMs or option to hide them"},
    {"pending-update", 0, OPT_FLAG, OPT_PENDING_UPDATE, NULL,
     "filter results to qubes pending for update"},
    {"features", 0, OPT_MULTI, OPT_FEATURES, "FEATURE=VALUE",
     "filter results to qubes that matches all specified features. omitted VALUE means\n"
     "                        None (unset). Empty value means \"\" (blank)"},
    {"prefs", 0, OPT_MULTI, OPT_PREFS, "PREFERENCE=VALUE",
     "filter results to qubes that matches all specified preferences. omitted VALUE\n"
     "                        means None (unset). Empty value means \"\" (blank)"},
    {"sort", 0, OPT_VALUE, OPT_SORT, "COLUMN", "sort based on provided column rather than NAME"},
    {"reverse", 0, OPT_FLAG, OPT_REVERSE, NULL, "reverse sort"},
    {"ignore-case", 0, OPT_FLAG, OPT_IGNORE_CASE, NULL, "ignore case distinctions when sorting"},
    {"spinner", 0, OPT_FLAG, OPT_SPINNER, NULL, "reenable spinner (no effect)"},
    {"no-spinner", 0, OPT_FLAG, OPT_SPINNER, NULL, "disable spinner (no effect)"},
};

static const struct opt_parser ls_parser = {
    .usage = "[-h] [--verbose] [--quiet] [--all] [--exclude EXCLUDE] [--format FORMAT | "
             "--fields FIELD,...] [--tree] [--raw-data] [--raw-list] [--class CLASS ...] "
             "[--label LABEL ...] [--tags TAG ...] [--running] [--paused] [--halted] "
             "[--sort COLUMN] [--reverse] [VMNAME ...]",
    .description = "List Qubes domains and their parameters.",
    .positionals = "  VMNAME                zero or more domain names (shell wildcards allowed)\n",
    .epilog = "available formats (see --help-formats):\n"
              "  disk, full, kernel, network, prefs, simple\n\n"
              "available columns (see --help-columns):\n"
              "  CLASS, FLAGS, GATEWAY, MEMORY, NAME, STATE, and any qube property\n"
              "  (LABEL, TEMPLATE, NETVM, ...); a value that is not set shows as '-'.",
    .specs = ls_specs,
    .n_specs = ELEMENTSOF(ls_specs),
};

struct ls_ctx {
    struct target_args t;
    const char *format, *fields, *internal, *servicevm;
    struct ls_table_opts table;
    bool raw_list, pending_update, running, paused, halted;
    struct strv klass, label, tags, exclude_tags, template_source, netvm_is, features, prefs;
};

static void ls_ctx_free(struct ls_ctx *c) {
    target_args_free(&c->t);
    struct strv *lists[] = {&c->klass,           &c->label,    &c->tags,     &c->exclude_tags,
                            &c->template_source, &c->netvm_is, &c->features, &c->prefs};
    for (size_t i = 0; i < ELEMENTSOF(lists); i++)
        strv_free(lists[i]);
}

static const char *yes_no(const char *opt, const char *value) {
    static const char *const choices[] = {"y", "yes", "n", "no"};
    for (size_t i = 0; i < ELEMENTSOF(choices); i++)
        if (streq(value, choices[i]))
            return value;
    opts_error(&ls_parser,
               "argument --%s: invalid choice: '%s' (choose from 'y', 'yes', "
               "'n', 'no')",
               opt, value);
}

static struct strv *multi_target(struct ls_ctx *c, int id) {
    switch (id) {
    case OPT_CLASS: return &c->klass;
    case OPT_LABEL: return &c->label;
    case OPT_TAGS: return &c->tags;
    case OPT_EXCLUDE_TAGS: return &c->exclude_tags;
    case OPT_TEMPLATE_SOURCE: return &c->template_source;
    case OPT_NETVM_IS: return &c->netvm_is;
    case OPT_FEATURES: return &c->features;
    case OPT_PREFS: return &c->prefs;
    default: return NULL;
    }
}

static void ls_option(void *userdata, int id, const char *value) {
    struct ls_ctx *c = userdata;
    struct strv *list = multi_target(c, id);
    if (list) {
        strv_push(list, value);
        return;
    }
    if (target_args_option(&c->t, id, value))
        return;
    switch (id) {
    case OPT_FORMAT: c->format = value; break;
    case OPT_FIELDS: c->fields = value; break;
    case OPT_TREE: c->table.tree = true; break;
    case OPT_RAW_DATA: c->table.raw_data = true; break;
    case OPT_RAW_LIST: c->raw_list = true; break;
    case OPT_DISK: c->format = "disk"; break;
    case OPT_NETWORK: c->format = "network"; break;
    case OPT_KERNEL: c->format = "kernel"; break;
    case OPT_HELP_FORMATS: ls_help_formats(); exit(0);
    case OPT_HELP_COLUMNS: ls_help_columns(); exit(0);
    case OPT_RUNNING: c->running = true; break;
    case OPT_PAUSED: c->paused = true; break;
    case OPT_HALTED: c->halted = true; break;
    case OPT_INTERNAL: c->internal = yes_no("internal", value); break;
    case OPT_SERVICEVM: c->servicevm = yes_no("servicevm", value); break;
    case OPT_PENDING_UPDATE: c->pending_update = true; break;
    case OPT_SORT: c->table.sort = value; break;
    case OPT_REVERSE: c->table.reverse = true; break;
    case OPT_IGNORE_CASE: c->table.ignore_case = true; break;
    }
}

/* Returns the feature's value (caller frees) or NULL when it is not set. */
static char *feature_get(const char *qube, const char *feature) {
    _cleanup_reply_ struct client_reply reply = {};
    struct cli_err err;
    if (cli_call("admin.vm.feature.Get", feature, qube, NULL, &reply, &err) < 0)
        return NULL;
    return xstrdup(reply.r.content);
}

static bool feature_is_yes(const char *qube, const char *feature) {
    _cleanup_free_ char *v = feature_get(qube, feature);
    return v && (streq(v, "1") || strcasecmp(v, "true") == 0);
}

static bool yes_no_matches(const char *choice, const char *qube, const char *feature) {
    if (!choice)
        return true;
    return feature_is_yes(qube, feature) == (choice[0] == 'y');
}

static bool has_any_tag(const char *qube, const struct strv *wanted) {
    _cleanup_reply_ struct client_reply reply = {};
    _cleanup_(strv_free) struct strv tags = {0};
    struct cli_err err;
    if (cli_call("admin.vm.tag.List", "", qube, NULL, &reply, &err) < 0)
        return false;
    strv_split_lines(&tags, reply.r.content);
    for (size_t i = 0; i < wanted->n; i++)
        if (strv_contains(&tags, wanted->v[i]))
            return true;
    return false;
}

/* "KEY=VALUE": VALUE empty means "not set", '' or "" means the empty string. */
static bool kv_filter_matches(const char *opt, const char *spec, struct ls_qube *lq, bool feature) {
    const char *eq = strchr(spec, '=');
    if (!eq || eq == spec)
        opts_error(&ls_parser, "Invalid argument: --%s %s", opt, spec);
    _cleanup_free_ char *key = xstrndup(spec, (size_t)(eq - spec));
    const char *want = eq + 1;
    bool want_none = *want == '\0';
    if (streq(want, "''") || streq(want, "\"\""))
        want = "";
    _cleanup_free_ char *fval = feature ? feature_get(lq->q->name, key) : NULL;
    const char *have = feature ? fval : ls_prop_text(lq, key);
    if (want_none)
        return have == NULL;
    return have && streq(have, want);
}

static bool all_kv_match(const char *opt, const struct strv *specs, struct ls_qube *lq,
                         bool feature) {
    for (size_t i = 0; i < specs->n; i++)
        if (!kv_filter_matches(opt, specs->v[i], lq, feature))
            return false;
    return true;
}

static bool prop_in(struct ls_qube *lq, const char *prop, const struct strv *names) {
    const char *v = ls_prop_text(lq, prop);
    return strv_contains(names, v ? v : "");
}

static bool power_matches(const struct ls_ctx *c, const struct qube *q) {
    if (!c->running && !c->paused && !c->halted)
        return true;
    return (c->running && streq(q->state, "Running")) || (c->paused && streq(q->state, "Paused")) ||
           (c->halted && streq(q->state, "Halted"));
}

static bool keep_qube(const struct ls_ctx *c, struct ls_qube *lq) {
    const char *name = lq->q->name;
    if (c->klass.n && !strv_contains(&c->klass, lq->q->klass))
        return false;
    if (c->label.n && !prop_in(lq, "label", &c->label))
        return false;
    if (c->tags.n && !has_any_tag(name, &c->tags))
        return false;
    if (c->exclude_tags.n && has_any_tag(name, &c->exclude_tags))
        return false;
    if (c->template_source.n && !prop_in(lq, "template", &c->template_source))
        return false;
    if (c->netvm_is.n && !prop_in(lq, "netvm", &c->netvm_is))
        return false;
    if (!yes_no_matches(c->internal, name, "internal") ||
        !yes_no_matches(c->servicevm, name, "servicevm"))
        return false;
    if (c->pending_update) {
        _cleanup_free_ char *v = feature_get(name, "updates-available");
        if (!feature_is_true(v))
            return false;
    }
    return all_kv_match("features", &c->features, lq, true) &&
           all_kv_match("prefs", &c->prefs, lq, false) && power_matches(c, lq->q);
}

static int cmp_qube_name(const void *a, const void *b) {
    return strcmp(((const struct qube *)a)->name, ((const struct qube *)b)->name);
}

/* The qubes to consider: VMNAMEs, --all (AdminVM included, as upstream qvm-ls does),
 * or everything; always in name order. */
static void select_qubes(struct ls_ctx *c, struct qube_list *out) {
    targets_resolve(&ls_parser, &c->t, false, true, out);
    if (!c->t.all && c->t.names.n == 0) {
        struct cli_err err;
        if (qube_list_fetch("dom0", out, &err) < 0)
            cli_die_err(&err);
    }
    if (out->n > 1)
        qsort(out->v, out->n, sizeof(*out->v), cmp_qube_name);
}

static const char *pick_columns(struct ls_ctx *c) {
    if (c->raw_list) {
        c->table.raw_data = true;
        return "name";
    }
    if (c->fields && c->format)
        opts_error(&ls_parser, "argument --fields/-O: not allowed with argument --format/-o");
    if (c->fields)
        return c->fields;
    const char *cols = ls_format_columns(c->format ? c->format : "simple");
    if (!cols)
        opts_error(&ls_parser,
                   "argument --format/-o: invalid choice: '%s' (choose from "
                   "'simple', 'network', 'kernel', 'full', 'prefs', 'disk')",
                   c->format);
    return cols;
}

int qvm_ls_main(int argc, char **argv) {
    _cleanup_(opts_result_free) struct opts_result r = {0};
    _cleanup_(qube_list_free) struct qube_list qubes = {0};
    _cleanup_(ls_set_free) struct ls_set set = {0};
    _cleanup_(ls_ctx_free) struct ls_ctx c = {0};
    opts_parse(&ls_parser, argc, argv, ls_option, &c, &r);
    target_args_set_names(&c.t, &r);
    c.table.columns = pick_columns(&c);
    select_qubes(&c, &qubes);
    set.v = xcalloc(qubes.n + 1, sizeof(*set.v));
    for (size_t i = 0; i < qubes.n; i++) {
        set.v[set.n] = (struct ls_qube){.q = &qubes.v[i]};
        if (keep_qube(&c, &set.v[set.n]))
            set.n++;
        else
            prop_list_free(&set.v[set.n].props);
    }
    ls_print(&set, &c.table);
    return 0;
}
