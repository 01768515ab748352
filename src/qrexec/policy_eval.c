/* Policy evaluation: first matching rule wins, no match denies. No I/O: everything about
 * qubes comes through struct policy_system. Matching follows the match() methods of
 * Qubes' qrexec/policy/parser.py; the resolution of the decided target follows
 * Allow.evaluate() there (redirect first, @dispvm through the source's default_dispvm). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "policy_internal.h"

#define DISPVM_PREFIX "@dispvm:"

/* What the caller asked for, classified once. */
enum request_kind { REQ_NAME, REQ_HOST, REQ_DEFAULT, REQ_DISPVM, REQ_DISPVM_TPL };

struct request {
    const char *service, *argument, *source;
    bool source_is_host;
    enum request_kind kind;
    const char *name;       /* REQ_NAME: the qube; REQ_HOST: "dom0"; REQ_DISPVM_TPL: the template */
    const char *source_dvm; /* the source's default_dispvm, NULL when none */
};

struct eval {
    const struct policy_system *sys;
    struct request req;
    struct policy_decision *out;
};

static bool is_host(const char *name) {
    return streq(name, POLICY_HOST) || streq(name, "@adminvm");
}

static void deny(struct policy_decision *out, const struct policy_rule *r, const char *fmt, ...)
    _printf_(3, 4);
static void deny(struct policy_decision *out, const struct policy_rule *r, const char *fmt, ...) {
    va_list ap;
    out->action = POLICY_DENY;
    out->target[0] = '\0';
    if (r) {
        snprintf(out->file, sizeof(out->file), "%s", r->file);
        out->line = r->line;
    }
    va_start(ap, fmt);
    vsnprintf(out->reason, sizeof(out->reason), fmt, ap);
    va_end(ap);
}

static bool qube_has_class(const struct eval *e, const char *name, const char *klass) {
    const char *k = e->sys->klass ? e->sys->klass(e->sys->ctx, name) : NULL;
    return k && streq(k, klass);
}

static bool qube_has_tag(const struct eval *e, const char *name, const char *tag) {
    return e->sys->has_tag && e->sys->has_tag(e->sys->ctx, name, tag);
}

static bool is_dvm_template(const struct eval *e, const char *name) {
    return e->sys->is_dispvm_template && e->sys->exists(e->sys->ctx, name) &&
           e->sys->is_dispvm_template(e->sys->ctx, name);
}

static bool match_source(const struct eval *e, const struct policy_token *t) {
    const char *src = e->req.source;
    switch (t->kind) {
    case TOK_NAME: return !e->req.source_is_host && streq(t->value, src);
    case TOK_WILDCARD: return true;
    case TOK_ANYVM: return !e->req.source_is_host;
    case TOK_ADMINVM: return e->req.source_is_host;
    case TOK_TYPE: return qube_has_class(e, src, t->value);
    case TOK_TAG: return qube_has_tag(e, src, t->value);
    default:
        /* @dispvm:T and @dispvm:@tag:T parse as sources, but upstream compares them with
         * the caller's plain name, so they never match; we keep that */
        return false;
    }
}

/* The template a requested @dispvm / @dispvm:T stands for, NULL when there is none. */
static const char *requested_template(const struct eval *e) {
    if (e->req.kind == REQ_DISPVM_TPL)
        return e->req.name;
    return e->req.kind == REQ_DISPVM ? e->req.source_dvm : NULL;
}

static bool match_target(const struct eval *e, const struct policy_token *t) {
    enum request_kind k = e->req.kind;
    const char *tpl = requested_template(e);
    switch (t->kind) {
    case TOK_NAME: return k == REQ_NAME && streq(t->value, e->req.name);
    case TOK_WILDCARD: return true;
    case TOK_ANYVM: /* upstream: everything but the host, @default and @dispvm included */
        return k != REQ_HOST;
    case TOK_ADMINVM: return k == REQ_HOST;
    case TOK_DEFAULT: return k == REQ_DEFAULT;
    case TOK_TYPE:
        return (k == REQ_NAME || k == REQ_HOST) && qube_has_class(e, e->req.name, t->value);
    case TOK_TAG: return (k == REQ_NAME || k == REQ_HOST) && qube_has_tag(e, e->req.name, t->value);
    case TOK_DISPVM: return k == REQ_DISPVM;
    case TOK_DISPVM_TPL: return tpl && streq(t->value, tpl);
    case TOK_DISPVM_TAG: return tpl && is_dvm_template(e, tpl) && qube_has_tag(e, tpl, t->value);
    }
    return false;
}

static bool rule_matches(const struct eval *e, const struct policy_rule *r) {
    return (!r->service || streq(r->service, e->req.service)) &&
           (!r->argument || streq(r->argument, e->req.argument)) && match_source(e, &r->source) &&
           match_target(e, &r->target);
}

/* Writes "@dispvm:<tpl>" as the decided target; deny when tpl is no disposable template. */
static int decide_dispvm(struct eval *e, const struct policy_rule *r, const char *tpl) {
    char q[48];
    if (!tpl) {
        deny(e->out, r, "%s:%d sends the call to @dispvm, but %s has no default_dispvm", r->file,
             r->line, e->req.source);
        return -1;
    }
    if (!is_dvm_template(e, tpl) || strlen(tpl) + strlen(DISPVM_PREFIX) >= sizeof(e->out->target)) {
        deny(e->out, r, "%s is not a disposable template", policy_quote(q, sizeof(q), tpl));
        return -1;
    }
    snprintf(e->out->target, sizeof(e->out->target), DISPVM_PREFIX "%s", tpl);
    return 0;
}

static int decide_qube(struct eval *e, const struct policy_rule *r, const char *name) {
    char q[48];
    if (strlen(name) >= sizeof(e->out->target) || !e->sys->exists(e->sys->ctx, name)) {
        deny(e->out, r, "%s:%d redirects to %s, which does not exist", r->file, r->line,
             policy_quote(q, sizeof(q), name));
        return -1;
    }
    snprintf(e->out->target, sizeof(e->out->target), "%s", name);
    return 0;
}

/* target= of the rule: a qube, the host, @dispvm or @dispvm:T. */
static int decide_redirect(struct eval *e, const struct policy_rule *r) {
    const struct policy_token *t = &r->redirect;
    switch (t->kind) {
    case TOK_ADMINVM: snprintf(e->out->target, sizeof(e->out->target), POLICY_HOST); return 0;
    case TOK_DISPVM: return decide_dispvm(e, r, e->req.source_dvm);
    case TOK_DISPVM_TPL: return decide_dispvm(e, r, t->value);
    default: /* the parser lets only names through otherwise */ return decide_qube(e, r, t->value);
    }
}

/* No redirect: the call goes where it was asked to (already checked to exist). */
static int decide_requested(struct eval *e, const struct policy_rule *r) {
    switch (e->req.kind) {
    case REQ_DEFAULT:
        deny(e->out, r, "%s:%d allows the call, but no target is given by caller or policy",
             r->file, r->line);
        return -1;
    case REQ_DISPVM:
    case REQ_DISPVM_TPL: return decide_dispvm(e, r, requested_template(e));
    default: snprintf(e->out->target, sizeof(e->out->target), "%s", e->req.name); return 0;
    }
}

static void apply_allow(struct eval *e, const struct policy_rule *r) {
    struct policy_decision *out = e->out;
    int ret = r->has_redirect ? decide_redirect(e, r) : decide_requested(e, r);
    out->notify = r->notify;
    out->autostart = r->autostart;
    if (ret < 0)
        return;
    /* a new disposable must always be started (upstream denies it too); for a named qube
     * the router, which knows whether it runs, enforces autostart=no */
    if (!r->autostart && strncmp(out->target, DISPVM_PREFIX, strlen(DISPVM_PREFIX)) == 0) {
        deny(out, r, "%s:%d has autostart=no, and a new disposable would need starting", r->file,
             r->line);
        return;
    }
    out->action = POLICY_ALLOW;
    snprintf(out->user, sizeof(out->user), "%s", r->user ? r->user : "");
    snprintf(out->file, sizeof(out->file), "%s", r->file);
    out->line = r->line;
}

static void apply_rule(struct eval *e, const struct policy_rule *r) {
    switch (r->action) {
    case ACTION_ALLOW: apply_allow(e, r); break;
    case ACTION_DENY:
        deny(e->out, r, "denied by policy %s:%d", r->file, r->line);
        e->out->notify = r->notify;
        break;
    case ACTION_ASK:
        deny(e->out, r, "%s:%d says ask, which needs a prompt, and there is none here: denied",
             r->file, r->line);
        e->out->notify = r->notify;
        break;
    }
}

/* Sorts the requested target into a request kind; 0, or -1 with a denial in e->out. */
static int classify_target(struct eval *e, const char *target) {
    char q[48];
    struct request *req = &e->req;
    if (!*target || streq(target, "@default")) {
        req->kind = REQ_DEFAULT;
    } else if (is_host(target)) {
        req->kind = REQ_HOST;
        req->name = POLICY_HOST;
    } else if (streq(target, "@dispvm")) {
        req->kind = REQ_DISPVM;
    } else if (strncmp(target, DISPVM_PREFIX, strlen(DISPVM_PREFIX)) == 0) {
        req->kind = REQ_DISPVM_TPL;
        req->name = target + strlen(DISPVM_PREFIX);
        if (!policy_is_name(req->name) || !is_dvm_template(e, req->name)) {
            deny(e->out, NULL, "%s is not a disposable template",
                 policy_quote(q, sizeof(q), req->name));
            return -1;
        }
    } else if (target[0] == '@' || target[0] == '*') {
        deny(e->out, NULL, "invalid target %s", policy_quote(q, sizeof(q), target));
        return -1;
    } else if (!policy_is_name(target) || strlen(target) >= sizeof(e->out->target) ||
               !e->sys->exists(e->sys->ctx, target)) {
        deny(e->out, NULL, "no such qube: %s", policy_quote(q, sizeof(q), target));
        return -1;
    } else {
        req->kind = REQ_NAME;
        req->name = target;
    }
    return 0;
}

static bool request_is_well_formed(const struct policy_system *sys, const char *service,
                                   const char *argument, const char *source) {
    return sys && sys->exists && service && *service && policy_is_rpcname(service, false) &&
           policy_is_rpcname(argument, true) && source &&
           (is_host(source) || policy_is_name(source));
}

int policy_evaluate(const struct policy *p, const struct policy_system *sys, const char *service,
                    const char *argument, const char *source, const char *target,
                    struct policy_decision *out) {
    char dvm[256];
    if (!out)
        return errno = EINVAL, -1;
    *out = (struct policy_decision){.action = POLICY_DENY};
    argument = argument ? argument : "";
    if (!p || !request_is_well_formed(sys, service, argument, source)) {
        deny(out, NULL, "malformed request");
        return errno = EINVAL, -1;
    }
    bool from_host = is_host(source);
    struct eval e = {.sys = sys,
                     .out = out,
                     .req = {.service = service,
                             .argument = argument,
                             .source = from_host ? POLICY_HOST : source,
                             .source_is_host = from_host}};
    const char *d = sys->default_dispvm ? sys->default_dispvm(sys->ctx, e.req.source) : NULL;
    if (d && *d) {
        snprintf(dvm, sizeof(dvm), "%s", d); /* the callback's string may not outlive us */
        e.req.source_dvm = dvm;
    }
    if (classify_target(&e, target ? target : "") < 0)
        return 0;
    for (size_t i = 0; i < p->n_rules; i++) {
        if (rule_matches(&e, &p->rules[i])) {
            apply_rule(&e, &p->rules[i]);
            return 0;
        }
    }
    deny(out, NULL, "no policy rule matches %s+%s from %s to %s (default deny)", service, argument,
         source, target && *target ? target : "@default");
    return 0;
}
