/* Property values as the Admin API encodes them (spec/admin-api.md, "Value encodings"). */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "strbuf.h"

/* "default=<True|False> type=<t> <value>"; the value is everything after the second
 * space and may itself contain spaces. */
int prop_parse(const char *text, struct prop *out) {
    *out = (struct prop){0};
    if (strncmp(text, "default=", 8) != 0)
        return -1;
    const char *sp1 = strchr(text, ' ');
    if (!sp1 || strncmp(sp1 + 1, "type=", 5) != 0)
        return -1;
    const char *type = sp1 + 6;
    const char *sp2 = strchr(type, ' ');
    size_t type_len = sp2 ? (size_t)(sp2 - type) : strlen(type);
    out->is_default = strncmp(text + 8, "True", 4) == 0;
    out->type = xstrndup(type, type_len);
    out->value = xstrdup(sp2 ? sp2 + 1 : "");
    return 0;
}

/* Undo GetAll's escaping: "\\\\" -> '\\', "\\n" -> newline. */
static void unescape_value(char *s) {
    char *w = s;
    for (char *r = s; *r; r++) {
        if (r[0] == '\\' && (r[1] == 'n' || r[1] == '\\')) {
            *w++ = r[1] == 'n' ? '\n' : '\\';
            r++;
        } else {
            *w++ = *r;
        }
    }
    *w = '\0';
}

static void prop_list_push(struct prop_list *l, struct prop *p) {
    l->v = xrealloc(l->v, (l->n + 1) * sizeof(*l->v));
    l->v[l->n++] = *p;
}

int prop_list_fetch(const char *prefix, const char *dest, struct prop_list *out,
                    struct cli_err *err) {
    _cleanup_reply_ struct client_reply reply = {};
    _cleanup_free_ char *method = NULL;
    *out = (struct prop_list){0};
    if (asprintf(&method, "%s.GetAll", prefix) < 0)
        abort();
    if (cli_call(method, "", dest, NULL, &reply, err) < 0)
        return -1;
    _cleanup_(strv_free) struct strv lines = {0};
    strv_split_lines(&lines, reply.r.content);
    for (size_t i = 0; i < lines.n; i++) {
        char *sp = strchr(lines.v[i], ' ');
        struct prop p;
        if (!sp)
            continue;
        *sp = '\0';
        if (prop_parse(sp + 1, &p) < 0)
            continue;
        p.name = xstrdup(lines.v[i]);
        unescape_value(p.value);
        prop_list_push(out, &p);
    }
    return 0;
}

const struct prop *prop_list_find(const struct prop_list *l, const char *name) {
    for (size_t i = 0; i < l->n; i++)
        if (streq(l->v[i].name, name))
            return &l->v[i];
    return NULL;
}

void prop_free(struct prop *p) {
    free(p->name);
    free(p->type);
    free(p->value);
    *p = (struct prop){0};
}

void prop_list_free(struct prop_list *l) {
    for (size_t i = 0; i < l->n; i++)
        prop_free(&l->v[i]);
    free(l->v);
    *l = (struct prop_list){0};
}

bool prop_is_unset(const struct prop *p) {
    return !*p->value && (streq(p->type, "int") || streq(p->type, "bool"));
}

bool prop_is_none(const struct prop *p) {
    return !*p->value && (streq(p->type, "vm") || streq(p->type, "label"));
}
