/* qvm-ls columns and table output: preset formats, computed columns (STATE, CLASS,
 * FLAGS, MEMORY, GATEWAY), property columns, sorting and the network tree. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ls.h"
#include "strbuf.h"

static const struct {
    const char *name;
    const char *columns;
} formats[] = {
    {"simple", "name,state,class,label,template,netvm"},
    {"network", "name,state,netvm,ip,ipback,gateway"},
    {"kernel", "name,state,class,template,kernel,kernelopts"},
    {"full", "name,state,class,label,qid,xid,uuid"},
    {"prefs", "name,label,template,netvm,vcpus,initialmem,maxmem,virt_mode"},
    {"disk", "name,state,disk,priv-curr,priv-max,priv-used,root-curr,root-max,root-used"},
};

static const struct {
    const char *head;
    const char *doc;
} builtin_columns[] = {
    {"CLASS", "Class of the qube."},
    {"FLAGS", "Various flags: type, power state, updateable, provides_network, "
              "installed_by_rpm, internal, debug, autostart."},
    {"GATEWAY", "Network gateway."},
    {"MEMORY", "Memory currently used by VM"},
    {"NAME", "Name of the qube."},
    {"STATE", "Current power state."},
};

/* Upstream sorts these columns as numbers. */
static const char *const sort_numeric[] = {"MEMORY",           "DISK",      "PRIV-CURR",
                                           "PRIV-MAX",         "ROOT-CURR", "XID",
                                           "ROOT-MAX",         "MAXMEM",    "QREXEC-TIMEOUT",
                                           "SHUTDOWN-TIMEOUT", "VCPUS",     "PRIV-USED",
                                           "ROOT-USED"};

const char *ls_format_columns(const char *format) {
    for (size_t i = 0; i < ELEMENTSOF(formats); i++)
        if (streq(formats[i].name, format))
            return formats[i].columns;
    return NULL;
}

void ls_help_formats(void) {
    printf("Available formats:\n");
    for (size_t i = 0; i < ELEMENTSOF(formats); i++) {
        _cleanup_free_ char *cols = xstrdup(formats[i].columns);
        for (char *c = cols; *c; c++)
            *c = (char)toupper((unsigned char)*c);
        printf("  %-7s  %s\n", formats[i].name, cols);
    }
    printf("\n");
}

void ls_help_columns(void) {
    printf("Available columns:\n");
    for (size_t i = 0; i < ELEMENTSOF(builtin_columns); i++)
        printf("  %-7s  %s\n", builtin_columns[i].head, builtin_columns[i].doc);
    printf("\nAdditionally any VM property may be used as a column, see qvm-prefs "
           "--help-properties for available values\n\n");
}

const struct prop *ls_prop(struct ls_qube *lq, const char *name) {
    if (!lq->props_loaded) {
        struct cli_err err;
        /* a qube we may not read shows '-' everywhere, as upstream does */
        if (prop_list_fetch("admin.vm.property", lq->q->name, &lq->props, &err) < 0)
            lq->props = (struct prop_list){0};
        lq->props_loaded = true;
    }
    return prop_list_find(&lq->props, name);
}

const char *ls_prop_text(struct ls_qube *lq, const char *name) {
    const struct prop *p = ls_prop(lq, name);
    if (!p || prop_is_unset(p) || prop_is_none(p))
        return NULL;
    return p->value;
}

void ls_set_free(struct ls_set *s) {
    for (size_t i = 0; i < s->n; i++)
        prop_list_free(&s->v[i].props);
    free(s->v);
    *s = (struct ls_set){0};
}

static bool prop_true(struct ls_qube *lq, const char *name) {
    const char *v = ls_prop_text(lq, name);
    return v && streq(v, "True");
}

static char power_letter(const char *state) {
    static const char *const known[] = {"Running", "Transient", "Paused", "Suspended",
                                        "Halting", "Dying",     "Crashed"};
    if (strcasecmp(state, "unknown") == 0)
        return '?';
    for (size_t i = 0; i < ELEMENTSOF(known); i++)
        if (streq(state, known[i]))
            return (char)tolower((unsigned char)known[i][0]);
    return '-';
}

static char *flags_cell(struct ls_qube *lq) {
    static const struct {
        const char *klass;
        char letter;
    } types[] = {{"AdminVM", '0'},
                 {"TemplateVM", 't'},
                 {"AppVM", 'a'},
                 {"StandaloneVM", 's'},
                 {"DispVM", 'd'}};
    char type = '-';
    for (size_t i = 0; i < ELEMENTSOF(types); i++)
        if (streq(lq->q->klass, types[i].klass))
            type = types[i].letter;
    const char *virt = ls_prop_text(lq, "virt_mode");
    if (type != '0' && type != '-' && virt && streq(virt, "hvm"))
        type = (char)toupper((unsigned char)type);
    char flags[9] = {
        type,
        power_letter(lq->q->state),
        prop_true(lq, "updateable") ? 'U' : '-',
        prop_true(lq, "provides_network") ? 'N' : '-',
        prop_true(lq, "installed_by_rpm") ? 'R' : '-',
        prop_true(lq, "internal") ? 'i' : '-',
        prop_true(lq, "debug") ? 'D' : '-',
        prop_true(lq, "autostart") ? 'A' : '-',
        '\0',
    };
    return xstrdup(flags);
}

static bool is_running(const struct qube *q) {
    return !streq(q->state, "Halted") && !streq(q->state, "NA");
}

/* MEMORY: MiB in use, from admin.vm.CurrentState "mem=<KiB> ...". */
static char *memory_cell(struct ls_qube *lq) {
    _cleanup_reply_ struct client_reply reply = {};
    struct cli_err err;
    if (!is_running(lq->q) ||
        cli_call("admin.vm.CurrentState", "", lq->q->name, NULL, &reply, &err) < 0)
        return NULL;
    const char *mem = strstr(reply.r.content, "mem=");
    if (!mem)
        return NULL;
    char *cell;
    if (asprintf(&cell, "%lld", strtoll(mem + 4, NULL, 10) / 1024) < 0)
        abort();
    return cell;
}

/* GATEWAY: the gateway property of the qube's netvm. */
static char *gateway_cell(struct ls_qube *lq) {
    const char *netvm = ls_prop_text(lq, "netvm");
    _cleanup_reply_ struct client_reply reply = {};
    struct cli_err err;
    struct prop p;
    if (!netvm || cli_call("admin.vm.property.Get", "gateway", netvm, NULL, &reply, &err) < 0 ||
        prop_parse(reply.r.content, &p) < 0)
        return NULL;
    char *cell = *p.value ? xstrdup(p.value) : NULL;
    prop_free(&p);
    return cell;
}

static bool is_volume_column(const char *head) {
    return streq(head, "DISK") || strncmp(head, "PRIV-", 5) == 0 || strncmp(head, "ROOT-", 5) == 0;
}

/* From admin.vm.volume.Info: size and usage in bytes, and whether it is persistent. */
struct vol_numbers {
    unsigned long long size, usage;
    bool save_on_stop;
};

static int vol_numbers(const char *vm, const char *volume, struct vol_numbers *out) {
    _cleanup_reply_ struct client_reply reply = {};
    struct cli_err err;
    if (cli_call("admin.vm.volume.Info", volume, vm, NULL, &reply, &err) < 0)
        return -1;
    const char *text = reply.r.content, *p;
    *out = (struct vol_numbers){0};
    if ((p = strstr(text, "\nsize=")))
        out->size = strtoull(p + 6, NULL, 10);
    if ((p = strstr(text, "\nusage=")))
        out->usage = strtoull(p + 7, NULL, 10);
    out->save_on_stop = strstr(text, "\nsave_on_stop=True\n") != NULL;
    return 0;
}

static char *number_cell(unsigned long long v, const char *suffix) {
    char *cell;
    if (asprintf(&cell, "%llu%s", v, suffix) < 0)
        abort();
    return cell;
}

/* Upstream's disk columns in MiB: DISK the persistent volumes' usage together; PRIV-/
 * ROOT- CURR (usage), MAX (size) and USED (usage in percent of size). */
static char *volume_cell(struct ls_qube *lq, const char *head) {
    struct vol_numbers v, r;
    if (streq(head, "DISK")) {
        if (vol_numbers(lq->q->name, "private", &v) < 0 || vol_numbers(lq->q->name, "root", &r) < 0)
            return NULL;
        return number_cell(((v.save_on_stop ? v.usage : 0) + (r.save_on_stop ? r.usage : 0)) >> 20,
                           "");
    }
    if (vol_numbers(lq->q->name, strncmp(head, "PRIV-", 5) == 0 ? "private" : "root", &v) < 0)
        return NULL;
    const char *what = head + 5;
    unsigned long long size = v.size >> 20, usage = v.usage >> 20;
    if (streq(what, "CURR"))
        return number_cell(usage, "");
    if (streq(what, "MAX"))
        return number_cell(size, "");
    if (streq(what, "USED"))
        return number_cell(size ? usage * 100 / size : 0, "%");
    return NULL;
}

/* The text of one cell, or NULL for "not applicable" (shown as '-'). */
static char *cell_text(struct ls_qube *lq, const char *head) {
    if (streq(head, "NAME"))
        return xstrdup(lq->q->name);
    if (streq(head, "STATE"))
        return xstrdup(lq->q->state);
    if (streq(head, "CLASS"))
        return xstrdup(lq->q->klass);
    if (streq(head, "FLAGS"))
        return flags_cell(lq);
    if (streq(head, "MEMORY"))
        return memory_cell(lq);
    if (streq(head, "GATEWAY"))
        return gateway_cell(lq);
    if (is_volume_column(head))
        return volume_cell(lq, head);
    _cleanup_free_ char *prop = xstrdup(head);
    for (char *c = prop; *c; c++)
        *c = *c == '-' ? '_' : (char)tolower((unsigned char)*c);
    const char *v = ls_prop_text(lq, prop);
    return v && *v ? xstrdup(v) : NULL;
}

struct ls_row {
    struct strv cells;
    size_t order; /* position before sorting by a column, to keep the sort stable */
};

struct sort_spec {
    int col;
    bool numeric, reverse, ignore_case;
};

static long long numeric_key(const char *s) {
    return strtoll(s, NULL, 10); /* "12%" -> 12; "-" and text -> 0 */
}

static int compare_rows(const struct ls_row *a, const struct ls_row *b, const struct sort_spec *s) {
    const char *x = a->cells.v[s->col], *y = b->cells.v[s->col];
    int r;
    if (s->numeric) {
        long long nx = numeric_key(x), ny = numeric_key(y);
        r = nx < ny ? -1 : nx > ny;
    } else {
        r = s->ignore_case ? strcasecmp(x, y) : strcmp(x, y);
    }
    if (s->reverse)
        r = -r;
    return r ? r : (a->order < b->order ? -1 : 1);
}

/* Insertion sort: tables are small and it is stable without extra state. */
static void sort_rows(struct ls_row *rows, size_t n, const struct sort_spec *s) {
    for (size_t i = 1; i < n; i++) {
        struct ls_row cur = rows[i];
        size_t j = i;
        for (; j > 0 && compare_rows(&rows[j - 1], &cur, s) > 0; j--)
            rows[j] = rows[j - 1];
        rows[j] = cur;
    }
}

static void split_heads(const char *columns, struct strv *heads) {
    _cleanup_free_ char *copy = xstrdup(columns);
    char *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        while (isspace((unsigned char)*tok))
            tok++;
        char *end = tok + strlen(tok);
        while (end > tok && isspace((unsigned char)end[-1]))
            *--end = '\0';
        for (char *c = tok; *c; c++)
            *c = *c == '_' ? '-' : (char)toupper((unsigned char)*c);
        strv_push(heads, tok);
    }
}

static void build_row(struct ls_qube *lq, const struct strv *heads, int level, struct ls_row *row) {
    *row = (struct ls_row){0};
    for (size_t c = 0; c < heads->n; c++) {
        _cleanup_free_ char *text = cell_text(lq, heads->v[c]);
        if (level > 0 && streq(heads->v[c], "NAME") && text) {
            _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
            for (int i = 1; i < level; i++)
                strbuf_puts(&sb, "  ");
            strbuf_printf(&sb, "└─%s", text);
            strv_push(&row->cells, strbuf_str(&sb));
            continue;
        }
        strv_push(&row->cells, text ? text : "-");
    }
}

/* --tree: order as upstream's sort_to_tree (network tree under each netvm). */
struct tree_entry {
    size_t idx;
    int level;
};

static bool tree_has(const struct tree_entry *t, size_t n, size_t idx) {
    for (size_t i = 0; i < n; i++)
        if (t[i].idx == idx)
            return true;
    return false;
}

static void tree_children(struct ls_set *set, size_t parent, int level, struct tree_entry *out,
                          size_t *n) {
    for (size_t i = 0; i < set->n; i++) {
        const char *netvm = ls_prop_text(&set->v[i], "netvm");
        if (!netvm || !streq(netvm, set->v[parent].q->name) || tree_has(out, *n, i))
            continue;
        out[(*n)++] = (struct tree_entry){i, level};
        if (prop_true(&set->v[i], "provides_network"))
            tree_children(set, i, level + 1, out, n);
    }
}

static size_t tree_order(struct ls_set *set, struct tree_entry *out) {
    size_t n = 0;
    for (size_t i = 0; i < set->n; i++)
        if (!ls_prop_text(&set->v[i], "netvm") && !prop_true(&set->v[i], "provides_network"))
            out[n++] = (struct tree_entry){i, 0};
    for (size_t i = 0; i < set->n; i++) {
        if (ls_prop_text(&set->v[i], "netvm") || !prop_true(&set->v[i], "provides_network"))
            continue;
        out[n++] = (struct tree_entry){i, 0};
        tree_children(set, i, 1, out, &n);
    }
    return n;
}

static void print_rows(const struct strv *heads, struct ls_row *rows, size_t n, bool raw) {
    _cleanup_(table_free) struct table t = {.ncols = heads->n};
    if (raw) {
        for (size_t r = 0; r < n; r++)
            for (size_t c = 0; c < heads->n; c++)
                printf("%s%s", rows[r].cells.v[c], c + 1 < heads->n ? "|" : "\n");
        return;
    }
    table_add_row(&t, (const char *const *)heads->v);
    for (size_t r = 0; r < n; r++)
        table_add_row(&t, (const char *const *)rows[r].cells.v);
    table_print(&t, stdout);
}

static bool is_numeric_column(const char *head) {
    for (size_t i = 0; i < ELEMENTSOF(sort_numeric); i++)
        if (streq(head, sort_numeric[i]))
            return true;
    return false;
}

void ls_print(struct ls_set *set, const struct ls_table_opts *o) {
    _cleanup_(strv_free) struct strv heads = {0};
    split_heads(o->columns, &heads);
    _cleanup_free_ struct tree_entry *order = xcalloc(set->n + 1, sizeof(*order));
    size_t n = set->n;
    if (o->tree && !o->raw_data)
        n = tree_order(set, order);
    else
        for (size_t i = 0; i < n; i++)
            order[i] = (struct tree_entry){i, 0};
    _cleanup_free_ struct ls_row *rows = xcalloc(n + 1, sizeof(*rows));
    for (size_t i = 0; i < n; i++) {
        build_row(&set->v[order[i].idx], &heads, order[i].level, &rows[i]);
        rows[i].order = i;
    }
    _cleanup_free_ char *sort = xstrdup(o->sort ? o->sort : "NAME");
    for (char *c = sort; *c; c++)
        *c = (char)toupper((unsigned char)*c);
    for (size_t c = 0; !o->raw_data && !o->tree && c < heads.n; c++)
        if (streq(heads.v[c], sort)) {
            struct sort_spec s = {(int)c, is_numeric_column(sort), o->reverse, o->ignore_case};
            sort_rows(rows, n, &s);
            break;
        }
    print_rows(&heads, rows, n, o->raw_data);
    for (size_t i = 0; i < n; i++)
        strv_free(&rows[i].cells);
}
