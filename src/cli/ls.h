/* qvm-ls internals shared between its option/filter part (qvm_ls.c) and its
 * column/table part (ls_columns.c). */
#pragma once
#include "cli.h"

/* One listed qube with what was fetched about it, lazily. */
struct ls_qube {
    const struct qube *q;
    struct prop_list props;
    bool props_loaded;
};

struct ls_set {
    struct ls_qube *v;
    size_t n;
};

const struct prop *ls_prop(struct ls_qube *lq, const char *name);
/* The string upstream would show for a property value: NULL for None/unset. */
const char *ls_prop_text(struct ls_qube *lq, const char *name);
void ls_set_free(struct ls_set *s);

/* Column names of a preset format, or NULL if there is no such format. */
const char *ls_format_columns(const char *format);
void ls_help_formats(void);
void ls_help_columns(void);

struct ls_table_opts {
    const char *columns; /* comma separated */
    bool raw_data, tree, reverse, ignore_case;
    const char *sort;
};
void ls_print(struct ls_set *set, const struct ls_table_opts *o);
