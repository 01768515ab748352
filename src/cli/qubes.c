/* The qube list (admin.vm.List) and turning VMNAME arguments into qubes the way the
 * upstream VmNameAction / VmNameGroup do. */
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "names.h"
#include "strbuf.h"

/* "<name> class=<C> state=<S>[ uuid=...]" */
static int parse_qube_line(const char *line, struct qube *q) {
    *q = (struct qube){0};
    const char *sp = strchr(line, ' ');
    if (!sp || sp == line)
        return -1;
    q->name = xstrndup(line, (size_t)(sp - line));
    for (const char *f = sp + 1; *f;) {
        const char *end = strchrnul(f, ' ');
        size_t len = (size_t)(end - f);
        if (len > 6 && strncmp(f, "class=", 6) == 0)
            q->klass = xstrndup(f + 6, len - 6);
        else if (len > 6 && strncmp(f, "state=", 6) == 0)
            q->state = xstrndup(f + 6, len - 6);
        f = *end ? end + 1 : end;
    }
    if (!q->klass)
        q->klass = xstrdup("");
    if (!q->state)
        q->state = xstrdup("NA");
    return 0;
}

void qube_list_push(struct qube_list *l, const struct qube *q) {
    l->v = xrealloc(l->v, (l->n + 1) * sizeof(*l->v));
    l->v[l->n++] = (struct qube){xstrdup(q->name), xstrdup(q->klass), xstrdup(q->state)};
}

static void qube_free(struct qube *q) {
    free(q->name);
    free(q->klass);
    free(q->state);
}

void qube_list_free(struct qube_list *l) {
    for (size_t i = 0; i < l->n; i++)
        qube_free(&l->v[i]);
    free(l->v);
    *l = (struct qube_list){0};
}

int qube_list_fetch(const char *dest, struct qube_list *out, struct cli_err *err) {
    _cleanup_reply_ struct client_reply reply = {};
    *out = (struct qube_list){0};
    if (cli_call("admin.vm.List", "", dest, NULL, &reply, err) < 0)
        return -1;
    _cleanup_(strv_free) struct strv lines = {0};
    strv_split_lines(&lines, reply.r.content);
    for (size_t i = 0; i < lines.n; i++) {
        struct qube q;
        if (parse_qube_line(lines.v[i], &q) < 0)
            continue;
        qube_list_push(out, &q);
        qube_free(&q);
    }
    return 0;
}

const struct qube *qube_list_find(const struct qube_list *l, const char *name) {
    for (size_t i = 0; i < l->n; i++)
        if (streq(l->v[i].name, name))
            return &l->v[i];
    return NULL;
}

/* Ask the daemon about one name. Errors other than "no such qube" (including a bad
 * name, which upstream also reports as unknown) are fatal runtime errors. */
/* Adds the qube to out; false if there is no such qube. */
static bool qube_lookup(const char *name, struct qube_list *out) {
    struct cli_err err;
    _cleanup_(qube_list_free) struct qube_list one = {0};
    if (name_validate_qube(name, NULL) < 0) /* no qube has such a name: nothing to ask */
        return false;
    if (qube_list_fetch(name, &one, &err) < 0) {
        if (cli_err_is(&err, "QubesVMNotFoundError") || cli_err_is(&err, "QubesValueError"))
            return false;
        cli_die_err(&err);
    }
    const struct qube *q = qube_list_find(&one, name);
    if (!q)
        return false;
    if (!qube_list_find(out, name))
        qube_list_push(out, q);
    return true;
}

void qube_resolve(const struct opt_parser *p, const char *name, struct qube_list *out) {
    if (!qube_lookup(name, out))
        opts_error(p, "no such domain: '%s'", name);
}

static void fetch_all_or_die(struct qube_list *all) {
    struct cli_err err;
    if (qube_list_fetch("dom0", all, &err) < 0)
        cli_die_err(&err);
}

static bool has_wildcard(const char *s) { return strpbrk(s, "*?[!]") != NULL; }

/* unknown: where names of no qube go; NULL makes them a usage error. */
static void resolve_names(const struct opt_parser *p, const struct strv *names,
                          struct qube_list *out, struct strv *unknown) {
    _cleanup_(qube_list_free) struct qube_list all = {0};
    for (size_t i = 0; i < names->n; i++) {
        if (!has_wildcard(names->v[i])) {
            if (!unknown)
                qube_resolve(p, names->v[i], out);
            else if (!qube_lookup(names->v[i], out))
                strv_push(unknown, names->v[i]);
            continue;
        }
        /* a pattern matching nothing selects nothing, as with upstream fnmatch */
        if (!all.v)
            fetch_all_or_die(&all);
        for (size_t j = 0; j < all.n; j++)
            if (fnmatch(names->v[i], all.v[j].name, 0) == 0 && !qube_list_find(out, all.v[j].name))
                qube_list_push(out, &all.v[j]);
    }
}

static void targets_resolve_into(const struct opt_parser *p, const struct target_args *t,
                                 bool required, bool keep_admin, struct qube_list *out,
                                 struct strv *unknown) {
    *out = (struct qube_list){0};
    if (t->all && t->names.n > 0)
        opts_error(p, "argument VMNAME: not allowed with argument --all");
    if (!t->all && t->exclude.n > 0)
        opts_error(p, "--exclude can only be used with --all");
    if (!t->all) {
        if (required && t->names.n == 0)
            opts_error(p, "one of the arguments --all VMNAME is required");
        resolve_names(p, &t->names, out, unknown);
        return;
    }
    _cleanup_(qube_list_free) struct qube_list all = {0};
    fetch_all_or_die(&all);
    for (size_t i = 0; i < all.n; i++) {
        if (!keep_admin && streq(all.v[i].klass, "AdminVM"))
            continue;
        if (!strv_contains(&t->exclude, all.v[i].name))
            qube_list_push(out, &all.v[i]);
    }
}

void targets_resolve(const struct opt_parser *p, const struct target_args *t, bool required,
                     bool keep_admin, struct qube_list *out) {
    targets_resolve_into(p, t, required, keep_admin, out, NULL);
}

void targets_resolve_collect(const struct opt_parser *p, const struct target_args *t,
                             struct qube_list *out, struct strv *unknown) {
    targets_resolve_into(p, t, true, false, out, unknown);
}

bool target_args_option(struct target_args *t, int id, const char *value) {
    if (id == TARGET_OPT_ALL)
        t->all = true;
    else if (id == TARGET_OPT_EXCLUDE)
        strv_push(&t->exclude, value);
    else
        return false;
    return true;
}

void target_args_set_names(struct target_args *t, const struct opts_result *r) {
    for (size_t i = 0; i < r->n_pos; i++)
        strv_push(&t->names, r->pos[i]);
}

void target_args_free(struct target_args *t) {
    strv_free(&t->names);
    strv_free(&t->exclude);
}
