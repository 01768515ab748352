/* What the policy parser builds and the evaluator reads. Private to src/qrexec. */
#pragma once
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include "macro.h"
#include "policy.h"

#define POLICY_HOST "dom0"

/* One qube designation. Which kinds are legal depends on where it appears
 * (enum token_ctx), exactly as in Qubes' parser.py class hierarchy. */
enum token_kind {
    TOK_NAME,       /* a qube, by name */
    TOK_WILDCARD,   /* "*": anything, the host included */
    TOK_ANYVM,      /* any qube but the host */
    TOK_ADMINVM,    /* the host ("@adminvm", also spelled "dom0") */
    TOK_DEFAULT,    /* "@default": the caller named no target */
    TOK_TYPE,       /* "@type:<Class>" */
    TOK_TAG,        /* "@tag:<tag>" */
    TOK_DISPVM,     /* "@dispvm": a new disposable of the source's default_dispvm */
    TOK_DISPVM_TPL, /* "@dispvm:<template>" */
    TOK_DISPVM_TAG, /* "@dispvm:@tag:<tag>": any disposable template with that tag */
};

enum token_ctx {
    CTX_SOURCE = 1 << 0,   /* third column */
    CTX_TARGET = 1 << 1,   /* fourth column */
    CTX_REDIRECT = 1 << 2, /* target= and default_target= */
    CTX_INTENDED = 1 << 3, /* what a caller may ask for */
};

struct policy_token {
    enum token_kind kind;
    char *value; /* the name, class, tag or template; NULL for bare keywords */
};

enum rule_action { ACTION_ALLOW, ACTION_DENY, ACTION_ASK };

struct policy_rule {
    char *service;  /* NULL = any */
    char *argument; /* NULL = any; else without the leading '+' ("" = empty) */
    struct policy_token source, target;
    enum rule_action action;
    bool has_redirect, has_default_target;
    struct policy_token redirect, default_target;
    char *user; /* NULL = the service's default user */
    bool notify, autostart;
    const char *file; /* owned by struct policy (files[]) */
    int line;
};

struct policy {
    struct policy_rule *rules;
    size_t n_rules, cap_rules;
    char **files; /* every file name a rule points at */
    size_t n_files;
};

/* Parse one token for the given context (a mask of enum token_ctx). Returns 0, or -1
 * with a message in msg. dom0 and @adminvm become TOK_ADMINVM. */
int policy_token_parse(const char *text, unsigned ctx, struct policy_token *out, char *msg,
                       size_t msg_size);
void policy_token_clear(struct policy_token *t);
/* [A-Za-z0-9._-]+, the characters of qube names, tags and classes. */
bool policy_is_name(const char *s);
/* Qubes' RPCNAME_ALLOWED_CHARSET ([A-Za-z0-9._-], '+' where plus_ok); "" passes. */
bool policy_is_rpcname(const char *s, bool plus_ok);
/* s copied into buf for a message: quoted, cut short, control bytes as '?'. */
const char *policy_quote(char *buf, size_t size, const char *s);

/* Error reporting shared by the parser and the loader; err may be NULL. */
int policy_fail(struct policy_error *err, const char *file, int line, const char *fmt, ...)
    _printf_(4, 5);

/* A text being parsed: where it came from and what it may do. service/argument are
 * set for a file pulled in with !include-service (lines then lack those two columns). */
struct policy_loader;
struct policy_text {
    const char *file;
    bool in_service_file;
    const char *service, *argument; /* as written: "*" or a name, "*" or "+arg" */
};

/* Parse text line by line into p. loader is NULL when includes are refused. */
int policy_parse_text(struct policy *p, struct policy_loader *loader, const struct policy_text *t,
                      const char *text, struct policy_error *err);
/* Parse one rule line (already stripped of its newline) and append it. */
int policy_parse_rule(struct policy *p, const struct policy_text *t, int lineno, char *line,
                      struct policy_error *err);
/* Directives; implemented by the loader (policy_load.c). */
int policy_loader_include(struct policy_loader *l, const struct policy_text *from, int lineno,
                          const char *path, const char *service, const char *argument,
                          struct policy_error *err);
int policy_loader_include_dir(struct policy_loader *l, const struct policy_text *from, int lineno,
                              const char *path, struct policy_error *err);

struct policy *policy_new(void);
/* The policy keeps one copy of each file name; rules point into it. */
const char *policy_intern_file(struct policy *p, const char *file);
