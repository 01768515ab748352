/* qvm-volume [list|info|config|extend|revert] ...: a qube's volumes, with upstream's
 * sub-commands, aliases, output and exit codes (1: a failed call, 2: bad usage). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

enum { OPT_FULL = 1, OPT_POOL };

static const struct opt_spec volume_specs[] = {
    {"full", 0, OPT_FLAG, OPT_FULL, NULL,
     "list: print full line for each POOL_NAME:VOLUME_ID & vm combination"},
    {"pool", 'p', OPT_VALUE, OPT_POOL, "POOL", "list: only volumes of this pool"},
};

static const struct opt_parser volume_parser = {
    .usage = "[-h] [--verbose] [--quiet] {info,i,config,c,set,s,extend,resize,list,ls,l,"
             "revert,rv,r} ...",
    .description = "Qubes volume management\n\n"
                   "commands:\n"
                   "  list (ls,l) [--full] [-p POOL] [VMNAME...]   list storage volumes\n"
                   "  info (i) VM:VOLUME [PROPERTY]               info about volume\n"
                   "  config (c,set,s) VM:VOLUME PROPERTY VALUE   set config option for a volume\n"
                   "  extend (resize) VM:VOLUME SIZE              extend volume from domain\n"
                   "  revert (rv,r) VM:VOLUME [REVISION]          revert volume to previous "
                   "revision",
    .specs = volume_specs,
    .n_specs = ELEMENTSOF(volume_specs),
};

/* list's -p: only the volumes of these pools */
static struct strv only_pools;

static void volume_option(void *userdata, int id, const char *value) {
    if (id == OPT_POOL)
        strv_push(&only_pools, value);
}

struct vol_ref {
    char vm[64], volume[32];
};

static void parse_ref(const char *arg, struct vol_ref *out) {
    const char *colon = strchr(arg, ':');
    if (!colon || colon == arg || !colon[1])
        opts_error(&volume_parser, "expected a vm & volume combination like foo:bar");
    snprintf(out->vm, sizeof(out->vm), "%.*s", (int)(colon - arg), arg);
    snprintf(out->volume, sizeof(out->volume), "%s", colon + 1);
    _cleanup_(qube_list_free) struct qube_list vm = {0};
    qube_resolve(&volume_parser, out->vm, &vm);
}

static char *call_or_die(const char *method, const char *arg, const char *dest,
                         const char *payload) {
    _cleanup_reply_ struct client_reply reply = {};
    struct cli_err err;
    if (cli_call(method, arg, dest, payload, &reply, &err) < 0)
        cli_die_err(&err);
    return xstrdup(reply.r.content);
}

/* The value of `key` in admin.vm.volume.Info's lines, "" if absent. */
static const char *info_value(const struct strv *lines, const char *key, char *buf, size_t size) {
    size_t kl = strlen(key);
    for (size_t i = 0; i < lines->n; i++)
        if (strncmp(lines->v[i], key, kl) == 0 && lines->v[i][kl] == '=') {
            snprintf(buf, size, "%s", lines->v[i] + kl + 1);
            return buf;
        }
    return "";
}

static int info(char **args, size_t n) {
    static const char *const items[] = {"pool",     "vid",          "rw",
                                        "source",   "save_on_stop", "snap_on_start",
                                        "size",     "usage",        "revisions_to_keep",
                                        "ephemeral"};
    if (n < 1 || n > 2)
        opts_error(&volume_parser,
                   n ? "unrecognized arguments: %s"
                     : "the following arguments are required: VM:VOLUME",
                   n ? args[2] : "");
    struct vol_ref ref;
    parse_ref(args[0], &ref);
    _cleanup_free_ char *text = call_or_die("admin.vm.volume.Info", ref.volume, ref.vm, NULL);
    _cleanup_free_ char *snaps = call_or_die("admin.vm.volume.ListSnapshots", ref.volume, ref.vm,
                                             NULL);
    _cleanup_(strv_free) struct strv lines = {0}, revs = {0};
    strv_split_lines(&lines, text);
    strv_split_lines(&revs, snaps);
    char buf[256];
    if (n == 2) {
        const char *prop = args[1];
        if (streq(prop, "revisions")) {
            for (size_t i = 0; i < revs.n; i++)
                printf("%s\n", revs.v[i]);
            return 0;
        }
        bool known = streq(prop, "is_outdated");
        for (size_t i = 0; i < ELEMENTSOF(items); i++)
            known = known || streq(prop, items[i]);
        if (!known)
            cli_die("No such property: %s", prop);
        printf("%s\n", info_value(&lines, prop, buf, sizeof(buf)));
        return 0;
    }
    _cleanup_(table_free) struct table t = {.ncols = 2};
    for (size_t i = 0; i < ELEMENTSOF(items); i++)
        table_add_row(&t, (const char *const[]){items[i],
                                                info_value(&lines, items[i], buf, sizeof(buf))});
    table_add_row(&t, (const char *const[]){"is_outdated",
                                            info_value(&lines, "is_outdated", buf, sizeof(buf))});
    table_print(&t, stdout);
    if (!revs.n)
        printf("Available revisions (for revert): none\n");
    else
        printf("Available revisions (for revert):\n");
    for (size_t i = 0; i < revs.n; i++)
        printf("  %s\n", revs.v[i]);
    return 0;
}

static int config(char **args, size_t n) {
    if (n != 3)
        opts_error(&volume_parser, "the following arguments are required: VM:VOLUME, "
                                   "property, value");
    struct vol_ref ref;
    parse_ref(args[0], &ref);
    if (!streq(args[1], "rw") && !streq(args[1], "revisions_to_keep"))
        cli_die("Invalid property: %s", args[1]);
    char method[64];
    snprintf(method, sizeof(method), "admin.vm.volume.Set.%s", args[1]);
    free(call_or_die(method, ref.volume, ref.vm, args[2]));
    return 0;
}

/* qubesadmin.utils.parse_size: a number with an optional unit, binary or decimal. */
static unsigned long long parse_size(const char *s) {
    static const struct {
        const char *unit;
        unsigned long long mult;
    } units[] = {
        {"", 1},
        {"B", 1},
        {"K", 1ULL << 10},
        {"KiB", 1ULL << 10},
        {"KB", 1000},
        {"M", 1ULL << 20},
        {"MiB", 1ULL << 20},
        {"MB", 1000000},
        {"G", 1ULL << 30},
        {"GiB", 1ULL << 30},
        {"GB", 1000000000},
        {"T", 1ULL << 40},
        {"TiB", 1ULL << 40},
        {"TB", 1000000000000ULL},
    };
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    while (*end == ' ')
        end++;
    if (end != s && isdigit((unsigned char)*s))
        for (size_t i = 0; i < ELEMENTSOF(units); i++)
            if (streq(end, units[i].unit))
                return v * units[i].mult;
    cli_die("Invalid size: %s", s);
}

static int extend(char **args, size_t n) {
    if (n != 2)
        opts_error(&volume_parser, "the following arguments are required: VM:VOLUME, size");
    struct vol_ref ref;
    parse_ref(args[0], &ref);
    char size[32];
    snprintf(size, sizeof(size), "%llu", parse_size(args[1]));
    free(call_or_die("admin.vm.volume.Resize", ref.volume, ref.vm, size));
    return 0;
}

static int revert(char **args, size_t n) {
    if (n < 1 || n > 2)
        opts_error(&volume_parser, "the following arguments are required: VM:VOLUME");
    struct vol_ref ref;
    parse_ref(args[0], &ref);
    _cleanup_free_ char *snaps = call_or_die("admin.vm.volume.ListSnapshots", ref.volume, ref.vm,
                                             NULL);
    _cleanup_(strv_free) struct strv revs = {0};
    strv_split_lines(&revs, snaps);
    if (n == 1 && !revs.n)
        cli_die("No snapshots available");
    const char *rev = n == 2 ? args[1] : revs.v[revs.n - 1];
    free(call_or_die("admin.vm.volume.Revert", ref.volume, ref.vm, rev));
    return 0;
}

/* One row of `list`: "pool:vid", the qube, the volume, REVERT_POSSIBLE. */
struct vol_row {
    char *cells[4];
};
struct vol_rows {
    struct vol_row *v;
    size_t n;
};

static void list_qube(const char *vm, struct vol_rows *rows) {
    _cleanup_free_ char *names = call_or_die("admin.vm.volume.List", "", vm, NULL);
    _cleanup_(strv_free) struct strv vols = {0};
    strv_split_lines(&vols, names);
    for (size_t i = 0; i < vols.n; i++) {
        _cleanup_free_ char *text = call_or_die("admin.vm.volume.Info", vols.v[i], vm, NULL);
        _cleanup_free_ char *snaps = call_or_die("admin.vm.volume.ListSnapshots", vols.v[i], vm,
                                                 NULL);
        _cleanup_(strv_free) struct strv lines = {0};
        strv_split_lines(&lines, text);
        char pool[64], vid[128], id[200];
        info_value(&lines, "pool", pool, sizeof(pool));
        if (only_pools.n && !strv_contains(&only_pools, pool))
            continue;
        snprintf(id, sizeof(id), "%s:%s", pool, info_value(&lines, "vid", vid, sizeof(vid)));
        rows->v = xrealloc(rows->v, (rows->n + 1) * sizeof(*rows->v));
        rows->v[rows->n++] = (struct vol_row){
            {xstrdup(id), xstrdup(vm), xstrdup(vols.v[i]), xstrdup(*snaps ? "Yes" : "No")}};
    }
}

static int cmp_row(const void *a, const void *b) {
    return strcmp(((const struct vol_row *)a)->cells[0], ((const struct vol_row *)b)->cells[0]);
}

/* Sorted by pool and volume id, as upstream. */
static void rows_to_table(struct vol_rows *rows, struct table *t) {
    if (rows->n)
        qsort(rows->v, rows->n, sizeof(*rows->v), cmp_row);
    for (size_t i = 0; i < rows->n; i++) {
        table_add_row(t, (const char *const *)rows->v[i].cells);
        for (size_t c = 0; c < 4; c++)
            free(rows->v[i].cells[c]);
    }
    free(rows->v);
}

/* --full changes nothing: a volume here belongs to one qube, so every row is full. -p
 * keeps the volumes of the pools named. */
static int list(char **args, size_t n) {
    _cleanup_(qube_list_free) struct qube_list all = {0};
    _cleanup_(table_free) struct table t = {.ncols = 4};
    struct vol_rows rows = {0};
    struct cli_err err;
    table_add_row(&t,
                  (const char *const[]){"POOL:VOLUME", "VMNAME", "VOLUME_NAME", "REVERT_POSSIBLE"});
    bool ours = true;
    for (size_t i = 0; i < n; i++) {
        _cleanup_(qube_list_free) struct qube_list vm = {0};
        qube_resolve(&volume_parser, args[i], &vm);
        if (ours)
            list_qube(vm.v[0].name, &rows);
    }
    if (n == 0 && ours) {
        if (qube_list_fetch("dom0", &all, &err) < 0)
            cli_die_err(&err);
        for (size_t i = 0; i < all.n; i++)
            if (!streq(all.v[i].klass, "AdminVM"))
                list_qube(all.v[i].name, &rows);
    }
    rows_to_table(&rows, &t);
    table_print(&t, stdout);
    return 0;
}

int qvm_volume_main(int argc, char **argv) {
    static const struct {
        const char *name;
        int (*run)(char **args, size_t n);
    } cmds[] = {
        {"list", list},     {"ls", list},       {"l", list},     {"info", info}, {"i", info},
        {"config", config}, {"c", config},      {"set", config}, {"s", config},  {"extend", extend},
        {"resize", extend}, {"revert", revert}, {"rv", revert},  {"r", revert},
    };
    _cleanup_(opts_result_free) struct opts_result r = {0};
    opts_parse(&volume_parser, argc, argv, volume_option, NULL, &r);
    if (r.n_pos == 0)
        return list(NULL, 0);
    for (size_t i = 0; i < ELEMENTSOF(cmds); i++)
        if (streq(r.pos[0], cmds[i].name))
            return cmds[i].run(r.pos + 1, r.n_pos - 1);
    opts_error(&volume_parser,
               "argument command: invalid choice: '%s' (choose from 'info', 'i', 'config', "
               "'c', 'set', 's', 'extend', 'resize', 'list', 'ls', 'l', 'revert', 'rv', 'r')",
               r.pos[0]);
}
