/* The qrexec policy: Qubes' policy format (version 5), the subset in spec/qrexec.md.
 * Pure: parsing reads only what it is given (policy_load_dir reads files, nothing else),
 * and evaluation does no I/O at all: the world comes in through callbacks. */
#pragma once
#include <stdbool.h>

struct policy;

struct policy_error {
    char file[256];
    int line; /* 0 when not about a line */
    char msg[256];
};

/* Every *.policy file of dir in lexical order, following !include, !include-dir and
 * !include-service (relative paths are relative to dir). Any error -> NULL and err: never
 * a partial policy, so a broken file can never loosen the policy in force. On NULL the
 * caller keeps the policy it already has (and logs err.file:err.line: err.msg); only a
 * successful load replaces it. As in Qubes, a *.policy file whose name has characters
 * other than [0-9a-z_.-] fails the load; hidden files and other names are skipped. */
struct policy *policy_load_dir(const char *dir, struct policy_error *err);
/* One policy text (tests, the fuzzer). !include and the other directives are refused. */
struct policy *policy_parse(const char *text, const char *filename, struct policy_error *err);
void policy_free(struct policy *p);
/* Number of rules, for logs. */
unsigned policy_rule_count(const struct policy *p);

/* What the evaluator may ask about qubes. exists is required; a NULL klass/has_tag/
 * default_dispvm/is_dispvm_template answers "no". Strings returned need to live only
 * until the callback is called again. The host is asked about as "dom0". */
struct policy_system {
    void *ctx;
    bool (*exists)(void *ctx, const char *qube);
    const char *(*klass)(void *ctx, const char *qube); /* "AppVM", "DispVM", ... */
    bool (*has_tag)(void *ctx, const char *qube, const char *tag);
    const char *(*default_dispvm)(void *ctx, const char *qube); /* "" = none */
    bool (*is_dispvm_template)(void *ctx, const char *qube);
};

enum policy_action { POLICY_DENY = 0, POLICY_ALLOW = 1 };

struct policy_decision {
    enum policy_action action;
    /* allow: where the call goes: a qube name, "dom0", or "@dispvm:T" meaning a new
     * disposable of T (T checked to be a disposable template) */
    char target[80];
    char user[64]; /* from user=, else "" */
    bool notify, autostart;
    char file[256]; /* the rule that decided, for the log ("" if none matched) */
    int line;
    char reason[256]; /* deny: why, in words a person understands. For the log: tell
                        * the caller only "refused", so that "no such qube" and "denied"
                        * do not reveal which qubes exist */
};

/* source: the calling qube ("dom0" for the host). argument: what follows the '+' in
 * "service+argument", without it ("" or NULL = empty). target: as requested: a qube,
 * "dom0"/"@adminvm", "@dispvm", "@dispvm:T", or ""/"@default"/NULL.
 * Returns 0 with *out filled (allow or deny); -1 (errno EINVAL) only for a malformed
 * request (bad service/argument characters, no source), *out then says deny too.
 * autostart=no is only enforced here for new disposables (always denied): for a named
 * target the caller, which knows whether it runs, must deny when it is not running. */
int policy_evaluate(const struct policy *p, const struct policy_system *sys, const char *service,
                    const char *argument, const char *source, const char *target,
                    struct policy_decision *out);
