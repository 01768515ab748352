/* qvm-pool [list|info|add|remove|set|drivers] ...: storage pools, with upstream's
 * sub-commands, aliases, output and exit codes (1: a failed call, 2: bad usage). The
 * legacy options (-l, -i, -a, -r, -s, --help-drivers) map to the same commands. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

enum { OPT_OPTION = 1, OPT_L_LIST, OPT_L_INFO, OPT_L_ADD, OPT_L_REMOVE, OPT_L_SET, OPT_L_DRIVERS };

static const struct opt_spec pool_specs[] = {
    {"option", 'o', OPT_VALUE, OPT_OPTION, "OPTION",
     "add, set: an option of the driver in opt=value form (can be given several times)"},
    {"list", 'l', OPT_FLAG, OPT_L_LIST, NULL, NULL},
    {"info", 'i', OPT_FLAG, OPT_L_INFO, NULL, NULL},
    {"add", 'a', OPT_FLAG, OPT_L_ADD, NULL, NULL},
    {"remove", 'r', OPT_FLAG, OPT_L_REMOVE, NULL, NULL},
    {"set", 's', OPT_FLAG, OPT_L_SET, NULL, NULL},
    {"help-drivers", 0, OPT_FLAG, OPT_L_DRIVERS, NULL, NULL},
};

static const struct opt_parser pool_parser = {
    .usage = "[-h] [--verbose] [--quiet] {drivers,d,list,l,ls,info,i,add,a,remove,r,rm,set,s} ...",
    .description = "Manages Qubes pools and their options\n\n"
                   "commands:\n"
                   "  drivers (d)                      List all drivers with their options\n"
                   "  list (l,ls)                      List all available pools\n"
                   "  info (i) POOL_NAME               Print info about the specified pools\n"
                   "  add (a) POOL_NAME DRIVER [-o opt=value]...   Add a new pool\n"
                   "  remove (r,rm) POOL_NAME...       Remove the specified pools\n"
                   "  set (s) POOL_NAME [-o opt=value]...          Modify driver options for "
                   "a pool",
    .specs = pool_specs,
    .n_specs = ELEMENTSOF(pool_specs),
};

struct pool_args {
    struct strv options; /* -o opt=value */
    const char *legacy;  /* the command a legacy option names */
};

static void pool_option(void *userdata, int id, const char *value) {
    struct pool_args *a = userdata;
    static const char *const legacy[] = {
        [OPT_L_LIST] = "list",     [OPT_L_INFO] = "info", [OPT_L_ADD] = "add",
        [OPT_L_REMOVE] = "remove", [OPT_L_SET] = "set",   [OPT_L_DRIVERS] = "drivers",
    };
    if (id == OPT_OPTION) {
        if (!strchr(value, '='))
            opts_error(&pool_parser, "argument --option/-o: expected opt=value: '%s'", value);
        strv_push(&a->options, value);
    } else {
        a->legacy = legacy[id];
    }
}

static char *call_or_die(const char *method, const char *arg, const char *payload) {
    _cleanup_reply_ struct client_reply reply = {};
    struct cli_err err;
    if (cli_call(method, arg, "dom0", payload, &reply, &err) < 0)
        cli_die_err(&err);
    return xstrdup(reply.r.content);
}

static void need_args(size_t n, size_t min, size_t max, const char *names) {
    if (n < min)
        opts_error(&pool_parser, "the following arguments are required: %s", names);
    if (n > max)
        opts_error(&pool_parser, "unrecognized arguments");
}

static void no_options(const struct pool_args *a) {
    if (a->options.n)
        opts_error(&pool_parser, "unrecognized arguments: -o %s", a->options.v[0]);
}

/* "DRIVER OPTIONS": sorted by driver, options as the daemon lists them. */
static int drivers(const struct pool_args *a, char **args, size_t n) {
    need_args(n, 0, 0, "");
    no_options(a);
    _cleanup_free_ char *text = call_or_die("admin.pool.ListDrivers", "", NULL);
    _cleanup_(strv_free) struct strv lines = {0};
    _cleanup_(table_free) struct table t = {.ncols = 2};
    strv_split_lines(&lines, text);
    strv_sort(&lines);
    table_add_row(&t, (const char *const[]){"DRIVER", "OPTIONS"});
    for (size_t i = 0; i < lines.n; i++) {
        char *sp = strchr(lines.v[i], ' ');
        _cleanup_strbuf_ struct strbuf opts = STRBUF_INIT;
        for (char *save = NULL, *o = sp ? strtok_r(sp + 1, " ", &save) : NULL; o;
             o = strtok_r(NULL, " ", &save))
            strbuf_printf(&opts, "%s%s", opts.len ? ", " : "", o);
        if (sp)
            *sp = '\0';
        table_add_row(&t, (const char *const[]){lines.v[i], strbuf_str(&opts)});
    }
    table_print(&t, stdout);
    return 0;
}

/* The value of `key` in admin.pool.Info's lines, "" if absent. */
static const char *info_value(const struct strv *lines, const char *key) {
    size_t kl = strlen(key);
    for (size_t i = 0; i < lines->n; i++)
        if (strncmp(lines->v[i], key, kl) == 0 && lines->v[i][kl] == '=')
            return lines->v[i] + kl + 1;
    return "";
}

static int list(const struct pool_args *a, char **args, size_t n) {
    need_args(n, 0, 0, "");
    no_options(a);
    _cleanup_free_ char *text = call_or_die("admin.pool.List", "", NULL);
    _cleanup_(strv_free) struct strv names = {0};
    _cleanup_(table_free) struct table t = {.ncols = 2};
    strv_split_lines(&names, text);
    table_add_row(&t, (const char *const[]){"NAME", "DRIVER"});
    for (size_t i = 0; i < names.n; i++) {
        _cleanup_free_ char *info = call_or_die("admin.pool.Info", names.v[i], NULL);
        _cleanup_(strv_free) struct strv lines = {0};
        strv_split_lines(&lines, info);
        table_add_row(&t, (const char *const[]){names.v[i], info_value(&lines, "driver")});
    }
    table_print(&t, stdout);
    return 0;
}

/* Argparse's PoolsAction: a name no pool has is a usage error. */
static void require_pools(char **names, size_t n) {
    _cleanup_free_ char *text = call_or_die("admin.pool.List", "", NULL);
    _cleanup_(strv_free) struct strv pools = {0};
    strv_split_lines(&pools, text);
    for (size_t i = 0; i < n; i++)
        if (!strv_contains(&pools, names[i]))
            opts_error(&pool_parser, "No such pools: ['%s']", names[i]);
}

/* name first, then the rest of the pool's configuration sorted by key. */
static int info(const struct pool_args *a, char **args, size_t n) {
    need_args(n, 1, 1, "POOL_NAME");
    no_options(a);
    require_pools(args, n);
    _cleanup_free_ char *text = call_or_die("admin.pool.Info", args[0], NULL);
    _cleanup_(strv_free) struct strv lines = {0};
    _cleanup_(table_free) struct table t = {.ncols = 2};
    strv_split_lines(&lines, text);
    strv_sort(&lines);
    table_add_row(&t, (const char *const[]){"name", args[0]});
    for (size_t i = 0; i < lines.n; i++) {
        char *eq = strchr(lines.v[i], '=');
        if (!eq || strncmp(lines.v[i], "name=", 5) == 0)
            continue;
        *eq = '\0';
        table_add_row(&t, (const char *const[]){lines.v[i], eq + 1});
    }
    table_print(&t, stdout);
    return 0;
}

static int cmp_str(const void *x, const void *y) {
    return strcmp(*(char *const *)x, *(char *const *)y);
}

static int add(const struct pool_args *a, char **args, size_t n) {
    need_args(n, 2, 2, "POOL_NAME, DRIVER");
    /* upstream's client sends name first, then the options sorted by key */
    _cleanup_strbuf_ struct strbuf payload = STRBUF_INIT;
    char **sorted = xcalloc(a->options.n + 1, sizeof(char *));
    memcpy(sorted, a->options.v, a->options.n * sizeof(char *));
    qsort(sorted, a->options.n, sizeof(char *), cmp_str);
    strbuf_printf(&payload, "name=%s\n", args[0]);
    for (size_t i = 0; i < a->options.n; i++)
        strbuf_printf(&payload, "%s\n", sorted[i]);
    free(sorted);
    struct cli_err err;
    if (cli_call_simple("admin.pool.Add", args[1], "dom0", strbuf_str(&payload), &err) < 0)
        cli_die("Failed to add pool %s: %s\n", args[0], err.msg);
    return 0;
}

static int remove_pools(const struct pool_args *a, char **args, size_t n) {
    need_args(n, 1, (size_t)-1, "POOL_NAME");
    no_options(a);
    _cleanup_strbuf_ struct strbuf errors = STRBUF_INIT;
    for (size_t i = 0; i < n; i++) {
        struct cli_err err;
        if (cli_call_simple("admin.pool.Remove", args[i], "dom0", NULL, &err) < 0)
            strbuf_printf(&errors, "%sFailed to remove pool %s: %s\n", errors.len ? "\n" : "",
                          args[i], err.msg);
    }
    if (errors.len)
        cli_die("%s", strbuf_str(&errors));
    return 0;
}

/* Only what a pool object of upstream's client can be given: revisions_to_keep and
 * ephemeral_volatile. */
static int set(const struct pool_args *a, char **args, size_t n) {
    need_args(n, 1, 1, "POOL_NAME");
    require_pools(args, n);
    _cleanup_strbuf_ struct strbuf errors = STRBUF_INIT;
    for (size_t i = 0; i < a->options.n; i++) {
        char opt[64];
        const char *eq = strchr(a->options.v[i], '=');
        snprintf(opt, sizeof(opt), "%.*s", (int)(eq - a->options.v[i]), a->options.v[i]);
        if (!streq(opt, "revisions_to_keep") && !streq(opt, "ephemeral_volatile")) {
            strbuf_printf(&errors, "%sSetting option %s is not supported for pool %s\n",
                          errors.len ? "\n" : "", opt, args[0]);
            continue;
        }
        char method[96];
        struct cli_err err;
        snprintf(method, sizeof(method), "admin.pool.Set.%s", opt);
        if (cli_call_simple(method, args[0], "dom0", eq + 1, &err) < 0)
            strbuf_printf(&errors, "%sFailed to set option %s for pool %s: %s\n",
                          errors.len ? "\n" : "", opt, args[0], err.msg);
    }
    if (errors.len)
        cli_die("%s", strbuf_str(&errors));
    return 0;
}

int qvm_pool_main(int argc, char **argv) {
    static const struct {
        const char *name;
        int (*run)(const struct pool_args *a, char **args, size_t n);
    } cmds[] = {
        {"drivers", drivers}, {"d", drivers},
        {"list", list},       {"l", list},
        {"ls", list},         {"info", info},
        {"i", info},          {"add", add},
        {"a", add},           {"remove", remove_pools},
        {"r", remove_pools},  {"rm", remove_pools},
        {"set", set},         {"s", set},
    };
    struct pool_args a = {0};
    _cleanup_(opts_result_free) struct opts_result r = {0};
    opts_parse(&pool_parser, argc, argv, pool_option, &a, &r);
    const char *cmd = a.legacy ? a.legacy : r.n_pos ? r.pos[0] : "list";
    char **args = r.pos + (a.legacy || !r.n_pos ? 0 : 1);
    size_t n = a.legacy ? r.n_pos : r.n_pos ? r.n_pos - 1 : 0;
    int ret = -1;
    for (size_t i = 0; i < ELEMENTSOF(cmds) && ret < 0; i++)
        if (streq(cmd, cmds[i].name))
            ret = cmds[i].run(&a, args, n);
    strv_free(&a.options);
    if (ret < 0)
        opts_error(&pool_parser,
                   "argument command: invalid choice: '%s' (choose from 'drivers', 'd', 'list', "
                   "'l', 'ls', 'info', 'i', 'add', 'a', 'remove', 'r', 'rm', 'set', 's')",
                   cmd);
    return ret;
}
