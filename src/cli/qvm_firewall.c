/* qvm-firewall VMNAME [add [--before N] MATCH... | del [--rule-no N] [MATCH...] | list |
 * reset]: a qube's firewall rules, with upstream's options and its table. The daemon
 * checks every rule (Qubes' syntax); here they are only split and put in order. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

enum { OPT_RELOAD = 1, OPT_RAW, OPT_BEFORE, OPT_RULE_NO };

static const struct opt_spec firewall_specs[] = {
    {"reload", 'r', OPT_FLAG, OPT_RELOAD, NULL, "force reload of rules even when unchanged"},
    {"raw", 0, OPT_FLAG, OPT_RAW, NULL, "output rules as raw strings, instead of nice table"},
    {"before", 0, OPT_VALUE, OPT_BEFORE, "BEFORE",
     "add: add rule before rule with given number instead at the end"},
    {"rule-no", 0, OPT_VALUE, OPT_RULE_NO, "RULE_NO", "del: rule number"},
};

static const struct opt_parser firewall_parser = {
    .usage = "[-h] [--verbose] [--quiet] [--reload] [--raw] VMNAME {add,del,list,reset} ...",
    .description = "Manage a qube's firewall rules\n\n"
                   "commands:\n"
                   "  add [--before N] MATCH...   add rule\n"
                   "  del [--rule-no N] [MATCH...] remove rule\n"
                   "  list                        list rules (the default)\n"
                   "  reset                       remove all firewall rules and reset to "
                   "default\n"
                   "                              (accept all connections)",
    .positionals = "  VMNAME                a domain name\n",
    .epilog = "Rules can be given as positional arguments:\n"
              "    <action> [<dsthost> [<proto> [<dstports>|<icmptype>]]]\n\n"
              "And as keyword arguments:\n"
              "    action=<action> [specialtarget=dns] [dsthost=<dsthost>]\n"
              "    [proto=<proto>] [dstports=<dstports>] [icmptype=<icmptype>]\n"
              "    [expire=<expire>] [comment=<text>]\n\n"
              "expire is seconds since 1/1/1970, or +seconds from now.",
    .specs = firewall_specs,
    .n_specs = ELEMENTSOF(firewall_specs),
};

/* A rule's elements, in the order the client sends them (upstream's Rule.rule). */
enum { F_ACTION, F_PROTO, F_DSTHOST, F_DSTPORTS, F_ICMPTYPE, F_SPECIAL, F_EXPIRE, F_COMMENT, F_N };
static const char *const FIELD_KEYS[F_N] = {"action",   "proto",         "dsthost", "dstports",
                                            "icmptype", "specialtarget", "expire",  "comment"};

struct fw_line {
    char *v[F_N];
    char dst_key[8]; /* dst4, dst6 or dsthost */
};

struct firewall_args {
    bool reload, raw;
    long before, rule_no;
};

static void on_option(void *ctx, int id, const char *value) {
    struct firewall_args *a = ctx;
    char *end;
    switch (id) {
    case OPT_RELOAD: a->reload = true; return;
    case OPT_RAW: a->raw = true; return;
    default:;
        long v = strtol(value, &end, 10);
        if (!*value || *end)
            opts_error(&firewall_parser, "argument --%s: invalid int value: '%s'",
                       id == OPT_BEFORE ? "before" : "rule-no", value);
        if (id == OPT_BEFORE)
            a->before = v;
        else
            a->rule_no = v;
    }
}

static int field_of(const char *key) {
    for (int i = 0; i < F_N; i++)
        if (streq(key, FIELD_KEYS[i]))
            return i;
    return -1;
}

static void line_free(struct fw_line *l) {
    for (int i = 0; i < F_N; i++)
        free(l->v[i]);
}

static void line_set(struct fw_line *l, int f, const char *value) {
    free(l->v[f]);
    l->v[f] = xstrdup(value);
}

/* A line as the daemon gives it: KEY=VALUE ... [comment=TEXT]. */
static void line_parse(const char *text, struct fw_line *l) {
    *l = (struct fw_line){.dst_key = "dsthost"};
    const char *comment = strstr(text, "comment=");
    char *opts = strndup(text, comment ? (size_t)(comment - text) : strlen(text));
    if (comment)
        line_set(l, F_COMMENT, comment + strlen("comment="));
    for (char *save, *tok = strtok_r(opts, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
        char *eq = strchr(tok, '=');
        if (!eq)
            continue;
        *eq = '\0';
        int f = field_of(tok);
        if (streq(tok, "dst4") || streq(tok, "dst6")) {
            snprintf(l->dst_key, sizeof(l->dst_key), "%s", tok);
            f = F_DSTHOST;
        }
        if (f >= 0)
            line_set(l, f, eq + 1);
    }
    free(opts);
}

/* What a value looks like as upstream prints it: a port range "443" when one port. */
static const char *pretty(const struct fw_line *l, int f, char *buf, size_t size) {
    const char *v = l->v[f];
    if (!v)
        return "-";
    if (f == F_DSTPORTS) {
        const char *dash = strchr(v, '-');
        if (dash && strncmp(v, dash + 1, (size_t)(dash - v)) == 0 &&
            strlen(dash + 1) == (size_t)(dash - v))
            return snprintf(buf, size, "%.*s", (int)(dash - v), v), buf;
    }
    if (f == F_EXPIRE)
        return snprintf(buf, size, "%+.0fs", difftime((time_t)atoll(v), time(NULL))), buf;
    return v;
}

/* The rule as the client sends it (and --raw prints it): upstream's element order. */
static void line_format(const struct fw_line *l, struct strbuf *out) {
    for (int f = 0; f < F_N; f++) {
        const char *v = l->v[f];
        if (!v)
            continue;
        if (out->len)
            strbuf_putc(out, ' ');
        char ports[32];
        if (f == F_DSTPORTS && !strchr(v, '-'))
            v = (snprintf(ports, sizeof(ports), "%s-%s", v, v), ports);
        strbuf_printf(out, "%s=%s", f == F_DSTHOST ? l->dst_key : FIELD_KEYS[f], v);
    }
}

struct rules {
    struct fw_line *v;
    size_t n;
};

static void rules_free(struct rules *r) {
    for (size_t i = 0; i < r->n; i++)
        line_free(&r->v[i]);
    free(r->v);
}

static void rules_fetch(const char *vm, struct rules *out) {
    struct cli_err err;
    _cleanup_reply_ struct client_reply reply = {};
    if (cli_call("admin.vm.firewall.Get", "", vm, NULL, &reply, &err) < 0)
        cli_die_err(&err);
    _cleanup_(strv_free) struct strv lines = {0};
    strv_split_lines(&lines, reply.r.content);
    out->v = xcalloc(lines.n + 1, sizeof(*out->v));
    for (size_t i = 0; i < lines.n; i++)
        line_parse(lines.v[i], &out->v[out->n++]);
}

static void rules_save(const char *vm, const struct rules *r) {
    _cleanup_strbuf_ struct strbuf payload = STRBUF_INIT;
    for (size_t i = 0; i < r->n; i++) {
        _cleanup_strbuf_ struct strbuf line = STRBUF_INIT;
        line_format(&r->v[i], &line);
        strbuf_printf(&payload, "%s\n", strbuf_str(&line));
    }
    struct cli_err err;
    if (cli_call_simple("admin.vm.firewall.Set", "", vm, strbuf_str(&payload), &err) < 0)
        cli_die_err(&err);
}

/* MATCH...: KEY=VALUE, or bare values taking the next of action, dsthost, proto,
 * dstports|icmptype (upstream's RuleAction). */
static void rule_from_args(char **args, size_t n, struct fw_line *l) {
    *l = (struct fw_line){.dst_key = "dsthost"};
    int order[] = {F_ACTION, F_DSTHOST, F_PROTO, F_DSTPORTS, F_ICMPTYPE};
    bool used[F_N] = {false};
    for (size_t i = 0; i < n; i++) {
        const char *a = args[i], *eq = strchr(a, '=');
        if (a[0] && a[strlen(a) - 1] == '=')
            opts_error(&firewall_parser, "invalid rule description: %s", a);
        int f = -1;
        char key[32] = "";
        if (eq) {
            snprintf(key, sizeof(key), "%.*s", (int)(eq - a), a);
            f = field_of(key);
            if (streq(key, "dst4") || streq(key, "dst6"))
                f = F_DSTHOST;
            if (f < 0 || strchr(eq + 1, '='))
                opts_error(&firewall_parser, "Invalid rule element: %s", a);
        } else {
            for (size_t k = 0; k < ELEMENTSOF(order) && f < 0; k++)
                if (!used[order[k]])
                    f = order[k];
            if (f < 0)
                opts_error(&firewall_parser, "invalid rule description: %s", a);
        }
        const char *value = eq ? eq + 1 : a;
        char expire[32];
        if (f == F_EXPIRE && value[0] == '+')
            value = (snprintf(expire, sizeof(expire), "%lld",
                              (long long)time(NULL) + atoll(value + 1)),
                     expire);
        used[f] = true;
        if (f == F_PROTO && (streq(value, "tcp") || streq(value, "udp")))
            used[F_ICMPTYPE] = true;
        else if (f == F_PROTO && streq(value, "icmp"))
            used[F_DSTPORTS] = true;
        line_set(l, f, value);
    }
    if (!l->v[F_ACTION])
        opts_error(&firewall_parser, "missing action=");
    /* as the daemon will show it: an address with its prefix length */
    const char *h = l->v[F_DSTHOST];
    if (h && !strchr(h, '/') && strspn(h, "0123456789.") == strlen(h)) {
        char full[64];
        snprintf(full, sizeof(full), "%s/32", h);
        line_set(l, F_DSTHOST, full);
    } else if (h && !strchr(h, '/') && strchr(h, ':')) {
        char full[80];
        snprintf(full, sizeof(full), "%s/128", h);
        line_set(l, F_DSTHOST, full);
    }
}

static bool same_rule(const struct fw_line *a, const struct fw_line *b) {
    _cleanup_strbuf_ struct strbuf x = STRBUF_INIT, y = STRBUF_INIT;
    struct fw_line bb = *b;
    snprintf(bb.dst_key, sizeof(bb.dst_key), "%s", a->dst_key); /* dsthost= matches dst4= */
    line_format(a, &x);
    line_format(&bb, &y);
    return streq(strbuf_str(&x), strbuf_str(&y));
}

static void list_table(const struct rules *r) {
    struct table t = {.ncols = 9};
    const char *header[] = {"NO",        "ACTION",  "HOST",
                            "PROTOCOL",  "PORT(S)", "SPECIAL TARGET",
                            "ICMP TYPE", "EXPIRE",  "COMMENT"};
    table_add_row(&t, header);
    static const int cols[] = {F_ACTION,  F_DSTHOST,  F_PROTO,  F_DSTPORTS,
                               F_SPECIAL, F_ICMPTYPE, F_EXPIRE, F_COMMENT};
    for (size_t i = 0; i < r->n; i++) {
        char no[24], bufs[8][64];
        const char *row[9] = {no};
        snprintf(no, sizeof(no), "%zu", i);
        for (int c = 0; c < 8; c++)
            row[c + 1] = pretty(&r->v[i], cols[c], bufs[c], sizeof(bufs[c]));
        table_add_row(&t, row);
    }
    table_print(&t, stdout);
    table_free(&t);
}

static void list_raw(const struct rules *r) {
    for (size_t i = 0; i < r->n; i++) {
        _cleanup_strbuf_ struct strbuf line = STRBUF_INIT;
        line_format(&r->v[i], &line);
        printf("%s\n", strbuf_str(&line));
    }
}

static int do_add(const char *vm, const struct firewall_args *a, char **args, size_t n) {
    if (n == 0)
        opts_error(&firewall_parser, "the following arguments are required: match");
    struct rules r = {0};
    rules_fetch(vm, &r);
    struct fw_line rule;
    rule_from_args(args, n, &rule);
    size_t at = a->before >= 0 && (size_t)a->before < r.n ? (size_t)a->before : r.n;
    memmove(&r.v[at + 1], &r.v[at], (r.n - at) * sizeof(*r.v));
    r.v[at] = rule;
    r.n++;
    rules_save(vm, &r);
    rules_free(&r);
    return 0;
}

static int do_del(const char *vm, const struct firewall_args *a, char **args, size_t n) {
    struct rules r = {0};
    rules_fetch(vm, &r);
    size_t at = r.n;
    if (a->rule_no >= 0) {
        at = (size_t)a->rule_no;
    } else {
        if (n == 0)
            opts_error(&firewall_parser, "either --rule-no or a rule is required");
        struct fw_line rule;
        rule_from_args(args, n, &rule);
        for (size_t i = 0; i < r.n && at == r.n; i++)
            if (same_rule(&r.v[i], &rule))
                at = i;
        line_free(&rule);
    }
    if (at >= r.n)
        cli_die(a->rule_no >= 0 ? "pop index out of range" : "rule not found");
    line_free(&r.v[at]);
    memmove(&r.v[at], &r.v[at + 1], (r.n - at - 1) * sizeof(*r.v));
    r.n--;
    rules_save(vm, &r);
    rules_free(&r);
    return 0;
}

static int do_list(const char *vm, const struct firewall_args *a) {
    struct rules r = {0};
    rules_fetch(vm, &r);
    if (a->raw)
        list_raw(&r);
    else
        list_table(&r);
    rules_free(&r);
    struct cli_err err;
    if (a->reload && cli_call_simple("admin.vm.firewall.Reload", "", vm, NULL, &err) < 0)
        cli_die_err(&err);
    return 0;
}

int qvm_firewall_main(int argc, char **argv) {
    _cleanup_(opts_result_free) struct opts_result r = {0};
    _cleanup_(qube_list_free) struct qube_list vm = {0};
    struct firewall_args a = {.before = -1, .rule_no = -1};
    opts_parse(&firewall_parser, argc, argv, on_option, &a, &r);
    if (r.n_pos == 0)
        opts_error(&firewall_parser, "the following arguments are required: VMNAME");
    qube_resolve(&firewall_parser, r.pos[0], &vm);
    const char *cmd = r.n_pos > 1 ? r.pos[1] : "list";
    char **rest = r.pos + (r.n_pos > 1 ? 2 : 1);
    size_t n_rest = r.n_pos > 1 ? r.n_pos - 2 : 0;
    const char *name = vm.v[0].name;
    if (streq(cmd, "add"))
        return do_add(name, &a, rest, n_rest);
    if (streq(cmd, "del"))
        return do_del(name, &a, rest, n_rest);
    if (n_rest)
        opts_error(&firewall_parser, "unrecognized arguments: %s", rest[0]);
    if (streq(cmd, "reset")) {
        struct rules def = {xcalloc(1, sizeof(struct fw_line)), 1};
        line_parse("action=accept", &def.v[0]);
        rules_save(name, &def);
        rules_free(&def);
        return 0;
    }
    if (streq(cmd, "list"))
        return do_list(name, &a);
    opts_error(&firewall_parser,
               "argument command: invalid choice: '%s' (choose from 'add', 'del', 'list', "
               "'reset')",
               cmd);
}
