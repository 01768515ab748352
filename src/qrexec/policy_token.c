/* Qube designations in policy lines: names and @keywords, and where each may appear.
 * The table follows Qubes' qrexec/policy/parser.py (VMToken subclasses): e.g. @dispvm
 * is a target but not a source, @anyvm is never something a caller can ask for, and
 * @dispvm:@tag: only selects, it cannot be redirected to. */
#include <stdio.h>
#include <string.h>

#include "policy_internal.h"
#include "strbuf.h"

#define CTX_ALL (CTX_SOURCE | CTX_TARGET | CTX_REDIRECT | CTX_INTENDED)

struct keyword {
    const char *text;
    bool prefix; /* text is followed by a value */
    enum token_kind kind;
    unsigned ctx;
};

/* "@dispvm:@tag:" precedes "@dispvm:" so the longer prefix wins. */
static const struct keyword keywords[] = {
    {"*", false, TOK_WILDCARD, CTX_SOURCE | CTX_TARGET},
    {"@adminvm", false, TOK_ADMINVM, CTX_ALL},
    {"@anyvm", false, TOK_ANYVM, CTX_SOURCE | CTX_TARGET},
    {"@default", false, TOK_DEFAULT, CTX_TARGET | CTX_INTENDED},
    {"@dispvm", false, TOK_DISPVM, CTX_TARGET | CTX_REDIRECT | CTX_INTENDED},
    {"@type:", true, TOK_TYPE, CTX_SOURCE | CTX_TARGET},
    {"@tag:", true, TOK_TAG, CTX_SOURCE | CTX_TARGET},
    {"@dispvm:@tag:", true, TOK_DISPVM_TAG, CTX_SOURCE | CTX_TARGET},
    {"@dispvm:", true, TOK_DISPVM_TPL, CTX_ALL},
};

bool policy_is_name(const char *s) {
    size_t len = strlen(s);
    if (len == 0 || len > 255)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

const char *policy_quote(char *buf, size_t size, const char *s) {
    size_t max = size > 40 ? 40 : size; /* a message has room for several of these */
    size_t o = 0;
    if (max < 8)
        return "";
    buf[o++] = '\'';
    for (; *s && o + 5 < max; s++)
        buf[o++] = (*s >= 0x20 && *s < 0x7f) ? *s : '?';
    if (*s) {
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o++] = '\'';
    buf[o] = '\0';
    return buf;
}

static const char *ctx_name(unsigned ctx) {
    if (ctx & CTX_SOURCE)
        return "source";
    if (ctx & CTX_TARGET)
        return "target";
    if (ctx & CTX_REDIRECT)
        return "redirect";
    return "requested target";
}

static int token_from_keyword(const struct keyword *k, const char *text, unsigned ctx,
                              struct policy_token *out, char *msg, size_t msg_size) {
    char q[48];
    const char *value = text + strlen(k->text);
    if (!(k->ctx & ctx)) {
        snprintf(msg, msg_size, "%s cannot be a %s", k->text, ctx_name(ctx));
        return -1;
    }
    if (k->prefix && !policy_is_name(value)) {
        snprintf(msg, msg_size, "invalid %s token %s: %s needs a name after it", ctx_name(ctx),
                 policy_quote(q, sizeof(q), text), k->text);
        return -1;
    }
    out->kind = k->kind;
    out->value = k->prefix ? xstrdup(value) : NULL;
    return 0;
}

int policy_token_parse(const char *text, unsigned ctx, struct policy_token *out, char *msg,
                       size_t msg_size) {
    char q[48];
    *out = (struct policy_token){0};
    if (streq(text, POLICY_HOST)) /* Qubes matches dom0 and @adminvm as one */
        return token_from_keyword(&keywords[1], "@adminvm", ctx, out, msg, msg_size);
    for (size_t i = 0; i < ELEMENTSOF(keywords); i++) {
        const struct keyword *k = &keywords[i];
        bool hit = k->prefix ? strncmp(text, k->text, strlen(k->text)) == 0 : streq(text, k->text);
        /* "@dispvm:@x" is no template name: let it fall through to the error below */
        if (hit && k->kind == TOK_DISPVM_TPL && text[strlen(k->text)] == '@')
            continue;
        if (hit)
            return token_from_keyword(k, text, ctx, out, msg, msg_size);
    }
    if (text[0] == '@' || !policy_is_name(text)) {
        snprintf(msg, msg_size, "invalid %s token: %s", ctx_name(ctx),
                 policy_quote(q, sizeof(q), text));
        return -1;
    }
    out->kind = TOK_NAME;
    out->value = xstrdup(text);
    return 0;
}

void policy_token_clear(struct policy_token *t) {
    free(t->value);
    *t = (struct policy_token){0};
}

int policy_fail(struct policy_error *err, const char *file, int line, const char *fmt, ...) {
    if (!err)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    snprintf(err->file, sizeof(err->file), "%s", file ? file : "");
    err->line = line;
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    return -1;
}
