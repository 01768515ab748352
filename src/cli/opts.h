/* A small argparse-alike: the upstream qvm-* tools are Python argparse programs, and
 * users rely on its habits (options anywhere, --long=value, unique prefixes of long
 * options, "usage:" + "prog: error:" with exit status 2). getopt_long gets close but
 * cannot express argparse's nargs='+' options, so the parsing is done here. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include "macro.h"

enum opt_kind {
    OPT_FLAG,  /* --flag */
    OPT_VALUE, /* --opt VALUE, --opt=VALUE, -oVALUE */
    OPT_MULTI, /* --opt V1 V2 ... (argparse nargs='+'): one callback per value */
};

struct opt_spec {
    const char *long_name; /* without leading "--"; NULL if none */
    char short_name;       /* 0 if none */
    enum opt_kind kind;
    int id;
    const char *metavar;
    const char *help; /* NULL: accepted but not shown in --help */
};

struct opt_parser {
    const char *usage; /* what follows "usage: PROG " */
    const char *description;
    const char *positionals; /* preformatted "positional arguments" body, may be NULL */
    const char *epilog;      /* may be NULL */
    const struct opt_spec *specs;
    size_t n_specs;
};

/* Called for every option occurrence (OPT_FLAG: value is NULL). To reject a value,
 * the callback calls opts_error(), which exits. */
typedef void (*opt_callback)(void *ctx, int id, const char *value);

struct opts_result {
    char **pos; /* positional arguments, in order (points into argv) */
    size_t n_pos;
    int verbose; /* -v count minus -q count */
};

/* Parses argv[1..]; handles -h/--help and --version itself (exit 0). Errors exit 2. */
void opts_parse(const struct opt_parser *p, int argc, char **argv, opt_callback cb, void *ctx,
                struct opts_result *out);
void opts_result_free(struct opts_result *r);

/* argparse's parser.error(): usage line + "prog: error: msg" on stderr, exit 2. */
_Noreturn void opts_error(const struct opt_parser *p, const char *fmt, ...) _printf_(2, 3);
void opts_print_help(const struct opt_parser *p);
