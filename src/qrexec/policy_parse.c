/* Policy text -> rules. One line is `service argument source target action [opt=value...]`;
 * the checks and their order follow Qubes' parser.py (Rule.__init__,
 * validate_service_and_argument, AbstractParser.load_policy_file). */
#include <stdio.h>
#include <string.h>

#include "policy_internal.h"
#include "strbuf.h"

#define FIELD_SEPARATORS " \t\r\v\f"

/* Next whitespace-separated field of *cursor, NUL-terminated in place; NULL at the end. */
static char *next_field(char **cursor) {
    char *p = *cursor + strspn(*cursor, FIELD_SEPARATORS);
    if (!*p)
        return NULL;
    char *end = p + strcspn(p, FIELD_SEPARATORS);
    if (*end)
        *end++ = '\0';
    *cursor = end;
    return p;
}

/* Qubes' RPCNAME_ALLOWED_CHARSET: what a service name (less '+') or argument may hold. */
bool policy_is_rpcname(const char *s, bool plus_ok) {
    for (; *s; s++) {
        char c = *s;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '.' || c == '_' || (plus_ok && c == '+');
        if (!ok)
            return false;
    }
    return true;
}

static int parse_service_argument(struct policy_rule *r, const char *file, int lineno,
                                  const char *service, const char *argument,
                                  struct policy_error *err) {
    char q[48];
    if (!streq(service, "*") && !policy_is_rpcname(service, false))
        return policy_fail(err, file, lineno, "service %s contains invalid characters",
                           policy_quote(q, sizeof(q), service));
    if (!streq(argument, "*")) {
        if (!policy_is_rpcname(argument, true))
            return policy_fail(err, file, lineno, "argument %s contains invalid characters",
                               policy_quote(q, sizeof(q), argument));
        if (argument[0] != '+')
            return policy_fail(err, file, lineno, "argument %s does not start with +",
                               policy_quote(q, sizeof(q), argument));
        if (streq(service, "*"))
            return policy_fail(err, file, lineno, "only * argument allowed for * service");
    }
    r->service = streq(service, "*") ? NULL : xstrdup(service);
    r->argument = streq(argument, "*") ? NULL : xstrdup(argument + 1);
    return 0;
}

static int parse_token_field(struct policy_token *t, const char *text, unsigned ctx,
                             const char *file, int lineno, struct policy_error *err) {
    char msg[200];
    if (policy_token_parse(text, ctx, t, msg, sizeof(msg)) < 0)
        return policy_fail(err, file, lineno, "%s", msg);
    return 0;
}

static int parse_action(struct policy_rule *r, const char *text, const char *file, int lineno,
                        struct policy_error *err) {
    char q[48];
    if (streq(text, "allow"))
        r->action = ACTION_ALLOW;
    else if (streq(text, "deny"))
        r->action = ACTION_DENY;
    else if (streq(text, "ask"))
        r->action = ACTION_ASK;
    else
        return policy_fail(err, file, lineno, "invalid action: %s (allow, deny or ask)",
                           policy_quote(q, sizeof(q), text));
    /* Qubes' defaults: a denial is reported to the user, an allowed call is not */
    r->notify = r->action == ACTION_DENY;
    r->autostart = true;
    return 0;
}

static int parse_bool(const char *value, bool *out) {
    static const char *const yes[] = {"yes", "true", "1"}, *const no[] = {"no", "false", "0"};
    for (size_t i = 0; i < ELEMENTSOF(yes); i++) {
        if (streq(value, yes[i]) || streq(value, no[i])) {
            *out = streq(value, yes[i]);
            return 0;
        }
    }
    return -1;
}

static bool user_is_valid(const char *s) {
    /* it travels as "user:QUBESRPC ..." to the agent: keep to plain user names */
    return policy_is_name(s) && strlen(s) < sizeof(((struct policy_decision *)0)->user);
}

/* Which options each action takes, as Qubes' Allow/Deny/Ask constructors do. */
static bool option_fits_action(const char *key, enum rule_action action) {
    if (streq(key, "notify"))
        return true;
    if (action == ACTION_DENY)
        return false;
    if (streq(key, "default_target"))
        return action == ACTION_ASK;
    return true; /* target, user, autostart */
}

static const char *const option_keys[] = {"target", "default_target", "user", "notify",
                                          "autostart"};

static int set_option(struct policy_rule *r, const char *key, const char *value, const char *file,
                      int lineno, struct policy_error *err) {
    char q[48];
    if (streq(key, "target")) {
        r->has_redirect = true;
        return parse_token_field(&r->redirect, value, CTX_REDIRECT, file, lineno, err);
    }
    if (streq(key, "default_target")) {
        r->has_default_target = true;
        return parse_token_field(&r->default_target, value, CTX_REDIRECT, file, lineno, err);
    }
    if (streq(key, "user")) {
        if (!user_is_valid(value))
            return policy_fail(err, file, lineno, "invalid user= value %s",
                               policy_quote(q, sizeof(q), value));
        r->user = xstrdup(value);
        return 0;
    }
    bool *flag = streq(key, "notify") ? &r->notify : &r->autostart;
    if (parse_bool(value, flag) < 0)
        return policy_fail(err, file, lineno, "%s= is %s, but can be only 'yes' or 'no'", key,
                           policy_quote(q, sizeof(q), value));
    return 0;
}

/* One `key=value` field. seen: bit i set once option_keys[i] was given. */
static int parse_option(struct policy_rule *r, char *field, unsigned *seen, const char *file,
                        int lineno, struct policy_error *err) {
    char q[48];
    char *eq = strchr(field, '=');
    if (!eq)
        return policy_fail(err, file, lineno,
                           "invalid action parameter syntax: %s (want key=value)",
                           policy_quote(q, sizeof(q), field));
    *eq = '\0';
    const char *key = field, *value = eq + 1;
    size_t i = 0;
    while (i < ELEMENTSOF(option_keys) && !streq(key, option_keys[i]))
        i++;
    if (i == ELEMENTSOF(option_keys))
        return policy_fail(err, file, lineno, "unknown option %s", policy_quote(q, sizeof(q), key));
    if (*seen & (1u << i))
        return policy_fail(err, file, lineno, "option %s= given twice", key);
    *seen |= 1u << i;
    if (!option_fits_action(key, r->action))
        return policy_fail(err, file, lineno, "option %s= is not valid for action %s", key,
                           r->action == ACTION_DENY ? "deny" : "allow");
    return set_option(r, key, value, file, lineno, err);
}

static void rule_clear(struct policy_rule *r) {
    free(r->service);
    free(r->argument);
    free(r->user);
    policy_token_clear(&r->source);
    policy_token_clear(&r->target);
    policy_token_clear(&r->redirect);
    policy_token_clear(&r->default_target);
}

static void append_rule(struct policy *p, struct policy_rule *r) {
    if (p->n_rules == p->cap_rules) {
        p->cap_rules = p->cap_rules ? 2 * p->cap_rules : 16;
        p->rules = xrealloc(p->rules, p->cap_rules * sizeof(*p->rules));
    }
    p->rules[p->n_rules++] = *r;
}

/* Fields after service/argument: source target action [options]. */
static int parse_rule_tail(struct policy_rule *r, char **cursor, const char *file, int lineno,
                           struct policy_error *err) {
    char *source = next_field(cursor), *target = next_field(cursor), *action = next_field(cursor);
    if (!action)
        return policy_fail(err, file, lineno,
                           "wrong number of fields (want service argument source target action)");
    if (parse_token_field(&r->source, source, CTX_SOURCE, file, lineno, err) < 0 ||
        parse_token_field(&r->target, target, CTX_TARGET, file, lineno, err) < 0 ||
        parse_action(r, action, file, lineno, err) < 0)
        return -1;
    unsigned seen = 0;
    for (char *opt; (opt = next_field(cursor));)
        if (parse_option(r, opt, &seen, file, lineno, err) < 0)
            return -1;
    /* a caller naming no target, allowed, must be sent somewhere (Qubes: a syntax error) */
    if (r->target.kind == TOK_DEFAULT && r->action == ACTION_ALLOW && !r->has_redirect)
        return policy_fail(err, file, lineno,
                           "allow action for @default rule must specify target= option");
    return 0;
}

int policy_parse_rule(struct policy *p, const struct policy_text *t, int lineno, char *line,
                      struct policy_error *err) {
    struct policy_rule r = {.line = lineno};
    char *cursor = line;
    const char *service = t->service, *argument = t->argument;
    if (!t->in_service_file) {
        service = next_field(&cursor);
        argument = next_field(&cursor);
    }
    if (!service || !argument) {
        policy_fail(err, t->file, lineno,
                    "wrong number of fields (want service argument source target action)");
        return -1;
    }
    if (parse_service_argument(&r, t->file, lineno, service, argument, err) < 0 ||
        parse_rule_tail(&r, &cursor, t->file, lineno, err) < 0) {
        rule_clear(&r);
        return -1;
    }
    r.file = policy_intern_file(p, t->file);
    append_rule(p, &r);
    return 0;
}

/* Qubes 4.0 syntax still found in !include-service files: "$anyvm", "allow,target=x",
 * "$include:file". Rewritten in place to the current spelling (never grows). */
static void rewrite_compat_line(char *line) {
    static const char old_include[] = "$include:";
    if (strncmp(line, old_include, strlen(old_include)) == 0) {
        memcpy(line, "!include ", strlen(old_include));
    }
    for (char *p = line; *p; p++) {
        if (*p == '$')
            *p = '@';
        else if (*p == ',')
            *p = ' ';
    }
}

static int parse_directive(struct policy_loader *loader, const struct policy_text *t, int lineno,
                           char *line, struct policy_error *err) {
    char *cursor = line;
    char *name = next_field(&cursor), *args[4] = {0};
    size_t n = 0;
    for (char *f; n < ELEMENTSOF(args) && (f = next_field(&cursor));)
        args[n++] = f;
    bool include = streq(name, "!include"), dir = streq(name, "!include-dir"),
         service = streq(name, "!include-service");
    if ((!include && !dir && !service) || (t->in_service_file && !include))
        return policy_fail(err, t->file, lineno, "invalid directive");
    if (n != (service ? 3u : 1u))
        return policy_fail(err, t->file, lineno, "invalid number of params for %s", name);
    if (!loader)
        return policy_fail(err, t->file, lineno, "%s is not allowed here", name);
    if (dir)
        return policy_loader_include_dir(loader, t, lineno, args[0], err);
    if (include && !t->in_service_file)
        return policy_loader_include(loader, t, lineno, args[0], NULL, NULL, err);
    if (include)
        return policy_loader_include(loader, t, lineno, args[0], t->service, t->argument, err);
    struct policy_rule probe = {0}; /* check service and argument before opening the file */
    int r = parse_service_argument(&probe, t->file, lineno, args[0], args[1], err);
    free(probe.service);
    free(probe.argument);
    return r < 0 ? r : policy_loader_include(loader, t, lineno, args[2], args[0], args[1], err);
}

static int parse_line(struct policy *p, struct policy_loader *loader, const struct policy_text *t,
                      int lineno, char *line, struct policy_error *err) {
    if (t->in_service_file)
        rewrite_compat_line(line);
    line += strspn(line, FIELD_SEPARATORS);
    if (!*line || *line == '#')
        return 0;
    if (*line == '!')
        return parse_directive(loader, t, lineno, line, err);
    return policy_parse_rule(p, t, lineno, line, err);
}

int policy_parse_text(struct policy *p, struct policy_loader *loader, const struct policy_text *t,
                      const char *text, struct policy_error *err) {
    _cleanup_free_ char *copy = xstrdup(text);
    int lineno = 1;
    for (char *line = copy, *next; line; line = next, lineno++) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        if (parse_line(p, loader, t, lineno, line, err) < 0)
            return -1;
    }
    return 0;
}

struct policy *policy_new(void) {
    return xcalloc(1, sizeof(struct policy));
}

const char *policy_intern_file(struct policy *p, const char *file) {
    for (size_t i = 0; i < p->n_files; i++)
        if (streq(p->files[i], file))
            return p->files[i];
    p->files = xrealloc(p->files, (p->n_files + 1) * sizeof(*p->files));
    return p->files[p->n_files++] = xstrdup(file);
}

void policy_free(struct policy *p) {
    if (!p)
        return;
    for (size_t i = 0; i < p->n_rules; i++)
        rule_clear(&p->rules[i]);
    for (size_t i = 0; i < p->n_files; i++)
        free(p->files[i]);
    free(p->rules);
    free(p->files);
    free(p);
}

unsigned policy_rule_count(const struct policy *p) { return p ? (unsigned)p->n_rules : 0; }

struct policy *policy_parse(const char *text, const char *filename, struct policy_error *err) {
    const struct policy_text t = {.file = filename ? filename : "<policy>"};
    if (err)
        *err = (struct policy_error){0};
    if (!text) {
        policy_fail(err, t.file, 0, "no policy text");
        return NULL;
    }
    struct policy *p = policy_new();
    if (policy_parse_text(p, NULL, &t, text, err) < 0) {
        policy_free(p);
        return NULL;
    }
    return p;
}
