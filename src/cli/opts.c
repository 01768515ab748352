#include "opts.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "config.h"
#include "strbuf.h"

/* Options every upstream tool has (QubesArgumentParser adds them). */
enum {
    OPT_ID_HELP = -1,
    OPT_ID_VERSION = -2,
    OPT_ID_VERBOSE = -3,
    OPT_ID_QUIET = -4,
    OPT_ID_FORCE_ROOT = -5
};

static const struct opt_spec common_specs[] = {
    {"verbose", 'v', OPT_FLAG, OPT_ID_VERBOSE, NULL, "increase verbosity"},
    {"quiet", 'q', OPT_FLAG, OPT_ID_QUIET, NULL, "decrease verbosity"},
    {"help", 'h', OPT_FLAG, OPT_ID_HELP, NULL, "show this help message and exit"},
    {"version", 0, OPT_FLAG, OPT_ID_VERSION, NULL, "show program's version number and exit"},
    {"force-root", 0, OPT_FLAG, OPT_ID_FORCE_ROOT, NULL, NULL},
};

static void print_usage(const struct opt_parser *p, FILE *f) {
    fprintf(f, "usage: %s %s\n", cli_prog, p->usage);
}

void opts_error(const struct opt_parser *p, const char *fmt, ...) {
    va_list ap;
    fflush(stdout);
    print_usage(p, stderr);
    fprintf(stderr, "%s: error: ", cli_prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(2);
}

static void print_spec_help(const struct opt_spec *s) {
    _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
    const char *mv = s->kind == OPT_FLAG ? NULL : s->metavar ? s->metavar : "VALUE";
    const char *more = s->kind == OPT_MULTI ? " [...]" : "";
    strbuf_puts(&sb, "  ");
    if (s->short_name)
        strbuf_printf(&sb, "-%c%s%s%s", s->short_name, mv ? " " : "", mv ? mv : "", more);
    if (s->short_name && s->long_name)
        strbuf_puts(&sb, ", ");
    if (s->long_name)
        strbuf_printf(&sb, "--%s%s%s%s", s->long_name, mv ? " " : "", mv ? mv : "", more);
    /* argparse puts the help text in column 24, or on its own line if it cannot */
    if (sb.len >= 22)
        printf("%s\n%24s%s\n", strbuf_str(&sb), "", s->help);
    else
        printf("%-24s%s\n", strbuf_str(&sb), s->help);
}

void opts_print_help(const struct opt_parser *p) {
    print_usage(p, stdout);
    if (p->description)
        printf("\n%s\n", p->description);
    if (p->positionals)
        printf("\npositional arguments:\n%s", p->positionals);
    printf("\noptions:\n");
    for (size_t i = 0; i < ELEMENTSOF(common_specs); i++)
        if (common_specs[i].help)
            print_spec_help(&common_specs[i]);
    for (size_t i = 0; i < p->n_specs; i++)
        if (p->specs[i].help)
            print_spec_help(&p->specs[i]);
    if (p->epilog)
        printf("\n%s\n", p->epilog);
}

static void print_version(void) {
    printf("%s (dispenser: Qubes OS Admin API tools for Linux) %s\n"
           "License: GPL-2.0-or-later\n",
           cli_prog, DISPENSER_VERSION);
}

/* Look a long option up in both tables: exact name first, then a unique prefix,
 * because argparse accepts abbreviations such as --hide for --hide-default. */
static const struct opt_spec *find_long(const struct opt_parser *p, const char *name, size_t len) {
    const struct opt_spec *tables[2] = {common_specs, p->specs};
    size_t sizes[2] = {ELEMENTSOF(common_specs), p->n_specs};
    const struct opt_spec *found = NULL;
    int matches = 0;
    for (int t = 0; t < 2; t++)
        for (size_t i = 0; i < sizes[t]; i++) {
            const char *ln = tables[t][i].long_name;
            if (!ln || strncmp(ln, name, len) != 0)
                continue;
            if (ln[len] == '\0')
                return &tables[t][i];
            /* several entries may share one id (aliases): count distinct ids */
            if (!found || found->id != tables[t][i].id)
                matches++;
            found = &tables[t][i];
        }
    if (matches > 1)
        opts_error(p, "ambiguous option: --%.*s", (int)len, name);
    return found;
}

static const struct opt_spec *find_short(const struct opt_parser *p, char c) {
    for (size_t i = 0; i < ELEMENTSOF(common_specs); i++)
        if (common_specs[i].short_name == c)
            return &common_specs[i];
    for (size_t i = 0; i < p->n_specs; i++)
        if (p->specs[i].short_name == c)
            return &p->specs[i];
    return NULL;
}

/* argparse treats "-5" as a positional when no option looks like a number. */
static bool looks_like_option(const char *a) {
    return a[0] == '-' && a[1] != '\0' && !isdigit((unsigned char)a[1]);
}

struct parse_state {
    const struct opt_parser *p;
    int argc;
    char **argv;
    int i; /* index of the next unread argument */
    opt_callback cb;
    void *ctx;
    struct opts_result *out;
};

static void spec_name(const struct opt_spec *s, char *buf, size_t n) {
    if (s->long_name)
        snprintf(buf, n, "--%s", s->long_name);
    else
        snprintf(buf, n, "-%c", s->short_name);
}

static void deliver(struct parse_state *st, const struct opt_spec *s, const char *value) {
    switch (s->id) {
    case OPT_ID_HELP: opts_print_help(st->p); exit(0);
    case OPT_ID_VERSION: print_version(); exit(0);
    case OPT_ID_VERBOSE: st->out->verbose++; return;
    case OPT_ID_QUIET: st->out->verbose--; return;
    case OPT_ID_FORCE_ROOT: return;
    default: st->cb(st->ctx, s->id, value);
    }
}

/* Handle an option whose inline value (after '=' or glued to -x) may be NULL. */
static void handle_option(struct parse_state *st, const struct opt_spec *s, const char *inl) {
    char name[64];
    spec_name(s, name, sizeof(name));
    if (s->kind == OPT_FLAG) {
        if (inl)
            opts_error(st->p, "argument %s: ignored explicit argument '%s'", name, inl);
        deliver(st, s, NULL);
        return;
    }
    if (inl) {
        deliver(st, s, inl);
        return;
    }
    if (st->i >= st->argc || looks_like_option(st->argv[st->i]))
        opts_error(st->p, "argument %s: expected %s argument", name,
                   s->kind == OPT_MULTI ? "at least one" : "one");
    deliver(st, s, st->argv[st->i++]);
    while (s->kind == OPT_MULTI && st->i < st->argc && !looks_like_option(st->argv[st->i]) &&
           strcmp(st->argv[st->i], "--") != 0)
        deliver(st, s, st->argv[st->i++]);
}

static void parse_long(struct parse_state *st, const char *arg) {
    const char *name = arg + 2;
    const char *eq = strchr(name, '=');
    size_t len = eq ? (size_t)(eq - name) : strlen(name);
    const struct opt_spec *s = find_long(st->p, name, len);
    if (!s)
        opts_error(st->p, "unrecognized arguments: %s", arg);
    handle_option(st, s, eq ? eq + 1 : NULL);
}

static void parse_short_cluster(struct parse_state *st, const char *arg) {
    for (const char *c = arg + 1; *c; c++) {
        const struct opt_spec *s = find_short(st->p, *c);
        if (!s)
            opts_error(st->p, "unrecognized arguments: %s", arg);
        if (s->kind != OPT_FLAG) {
            handle_option(st, s, c[1] ? c + 1 : NULL);
            return;
        }
        handle_option(st, s, NULL);
    }
}

void opts_parse(const struct opt_parser *p, int argc, char **argv, opt_callback cb, void *ctx,
                struct opts_result *out) {
    *out = (struct opts_result){.pos = xcalloc((size_t)argc + 1, sizeof(char *))};
    struct parse_state st = {p, argc, argv, 1, cb, ctx, out};
    bool only_positionals = false;
    while (st.i < argc) {
        char *a = argv[st.i++];
        if (only_positionals || !looks_like_option(a))
            out->pos[out->n_pos++] = a;
        else if (streq(a, "--"))
            only_positionals = true;
        else if (a[1] == '-')
            parse_long(&st, a);
        else
            parse_short_cluster(&st, a);
    }
}

void opts_result_free(struct opts_result *r) {
    free(r->pos);
    r->pos = NULL;
}
