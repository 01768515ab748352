/* A fake system of qubes for the qrexec policy evaluator (struct policy_system), shared
 * by the policy unit tests and the policy fuzzer: each declares its table of qubes and
 * passes FAKE_POLICY_SYSTEM(table) to policy_evaluate. */
#pragma once
#include <stdbool.h>
#include <string.h>

#include "macro.h"
#include "policy.h"

struct fake_qube {
    const char *name, *klass, *tags, *default_dispvm; /* tags: space-separated */
    bool dvm_template;
};

struct fake_qubes {
    const struct fake_qube *qube;
    size_t n;
};

static inline const struct fake_qube *fake_find(void *ctx, const char *name) {
    const struct fake_qubes *all = ctx;
    for (size_t i = 0; i < all->n; i++)
        if (streq(all->qube[i].name, name))
            return &all->qube[i];
    return NULL;
}

static inline bool fake_exists(void *ctx, const char *q) { return fake_find(ctx, q) != NULL; }

static inline const char *fake_klass(void *ctx, const char *q) {
    const struct fake_qube *f = fake_find(ctx, q);
    return f ? f->klass : NULL;
}

static inline bool fake_has_tag(void *ctx, const char *q, const char *tag) {
    const struct fake_qube *f = fake_find(ctx, q);
    size_t n = strlen(tag);
    if (!f || n == 0)
        return false;
    for (const char *p = f->tags; (p = strstr(p, tag)); p += n)
        if ((p == f->tags || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0'))
            return true;
    return false;
}

static inline const char *fake_default_dispvm(void *ctx, const char *q) {
    const struct fake_qube *f = fake_find(ctx, q);
    return f ? f->default_dispvm : "";
}

static inline bool fake_is_dvm_template(void *ctx, const char *q) {
    const struct fake_qube *f = fake_find(ctx, q);
    return f && f->dvm_template;
}

#define FAKE_POLICY_SYSTEM(table)                                                                \
    {                                                                                            \
        (void *)&(const struct fake_qubes){(table), ELEMENTSOF(table)}, fake_exists, fake_klass, \
            fake_has_tag, fake_default_dispvm, fake_is_dvm_template                              \
    }
