#include "template_remove.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Where one qube can be named, as upstream looks for it (vm_dependencies). */
static const char *const GLOBAL_VM_PROPS[] = {
    "default_dispvm",   "default_netvm", "default_guivm", "default_audiovm",
    "default_template", "clockvm",       "updatevm",      "management_dispvm",
};
static const char *const VM_PROPS[] = {
    "template", "netvm", "guivm", "audiovm", "default_dispvm", "management_dispvm",
};

/* Every qube with its properties, fetched once. */
struct model {
    struct qube_list qubes;
    struct prop_list *props; /* props[i] of qubes.v[i] */
    struct prop_list globals;
};

static void model_free(struct model *m) {
    for (size_t i = 0; m->props && i < m->qubes.n; i++)
        prop_list_free(&m->props[i]);
    free(m->props);
    qube_list_free(&m->qubes);
    prop_list_free(&m->globals);
}

static void model_fetch(struct model *m) {
    struct cli_err err;
    if (qube_list_fetch("dom0", &m->qubes, &err) < 0 ||
        prop_list_fetch("admin.property", "dom0", &m->globals, &err) < 0)
        cli_die_err(&err);
    m->props = xcalloc(m->qubes.n ? m->qubes.n : 1, sizeof(*m->props));
    for (size_t i = 0; i < m->qubes.n; i++)
        if (prop_list_fetch("admin.vm.property", m->qubes.v[i].name, &m->props[i], &err) < 0)
            cli_die_err(&err);
}

static bool explicit_value(const struct prop_list *l, const char *prop, const char *value) {
    const struct prop *p = prop_list_find(l, prop);
    return p && !p->is_default && streq(p->value, value);
}

/* (holder, property) pairs naming target: holder "" for a global. A preload is never a
 * user of its template: it goes with it. */
static void dependencies(const struct model *m, const char *target, struct strv *deps) {
    for (size_t g = 0; g < ELEMENTSOF(GLOBAL_VM_PROPS); g++) {
        const struct prop *p = prop_list_find(&m->globals, GLOBAL_VM_PROPS[g]);
        if (p && streq(p->value, target)) {
            strv_push(deps, "");
            strv_push(deps, GLOBAL_VM_PROPS[g]);
        }
    }
    for (size_t i = 0; i < m->qubes.n; i++) {
        const char *holder = m->qubes.v[i].name;
        if (streq(holder, target) || explicit_value(&m->props[i], "is_preload", "True"))
            continue;
        for (size_t k = 0; k < ELEMENTSOF(VM_PROPS); k++)
            if (explicit_value(&m->props[i], VM_PROPS[k], target)) {
                strv_push(deps, holder);
                strv_push(deps, VM_PROPS[k]);
            }
    }
}

static void set_or_die(const char *method, const char *prop, const char *dest, const char *value) {
    struct cli_err err;
    if (cli_call_simple(method, prop, dest, value, &err) < 0)
        cli_die_err(&err);
}

/* Upstream asks before anything is removed but the templates themselves. */
static void confirm(const struct strv *names) {
    printf("This will completely remove the selected VM(s)...\n");
    for (size_t i = 0; i < names->n; i++)
        printf("  %s\n", names->v[i]);
    printf("Are you sure? [y/N] ");
    fflush(stdout);
    char line[16] = "";
    if (!fgets(line, sizeof(line), stdin) ||
        (strcmp(line, "y\n") != 0 && strcmp(line, "Y\n") != 0 && strcmp(line, "y") != 0)) {
        printf("command cancelled.\n");
        exit(1);
    }
}

/* The dummy template users move to: "dummy", or dummy-N past a qube of that name that
 * is not one (feature template-dummy=1). */
static void make_dummy(const struct model *m, char *name, size_t size) {
    snprintf(name, size, "dummy");
    for (int n = 1;; n++) {
        const struct qube *q = qube_list_find(&m->qubes, name);
        if (!q)
            break;
        _cleanup_reply_ struct client_reply reply = {};
        struct cli_err err;
        if (cli_call("admin.vm.feature.Get", "template-dummy", name, NULL, &reply, &err) == 0 &&
            streq(reply.r.content, "1"))
            return;
        snprintf(name, size, "dummy-%d", n);
    }
    char payload[128];
    snprintf(payload, sizeof(payload), "name=%s label=red", name);
    set_or_die("admin.vm.Create.TemplateVM", "", "dom0", payload);
    set_or_die("admin.vm.feature.Set", "template-dummy", name, "1");
}

static void disassociate(const struct model *m, const struct strv *names) {
    char dummy[64];
    make_dummy(m, dummy, sizeof(dummy));
    for (size_t i = 0; i < names->n; i++) {
        _cleanup_(strv_free) struct strv deps = {0};
        dependencies(m, names->v[i], &deps);
        for (size_t d = 0; d + 1 < deps.n; d += 2) {
            if (*deps.v[d]) {
                set_or_die("admin.vm.property.Set", deps.v[d + 1], deps.v[d], dummy);
                fprintf(stderr, "Property '%s' of '%s' set to '%s'.\n", deps.v[d + 1], deps.v[d],
                        dummy);
            } else {
                set_or_die("admin.property.Set", deps.v[d + 1], "dom0", "");
                fprintf(stderr, "Global property '%s' set to ''.\n", deps.v[d + 1]);
            }
        }
    }
}

/* Purge: the users, and their users, breadth first after the templates. */
static void collect_users(const struct model *m, struct strv *names) {
    for (size_t i = 0; i < names->n; i++) {
        _cleanup_(strv_free) struct strv deps = {0};
        dependencies(m, names->v[i], &deps);
        for (size_t d = 0; d + 1 < deps.n; d += 2)
            if (*deps.v[d] && !strv_contains(names, deps.v[d]))
                strv_push(names, deps.v[d]);
    }
}

/* Before a purge removes them, nothing may name them: globals are cleared, and the
 * qubes being removed stop naming each other (but for template, which the order of
 * removal takes care of: a qube goes before its template). */
static void unlink_all(const struct model *m, const struct strv *names) {
    for (size_t i = 0; i < names->n; i++) {
        _cleanup_(strv_free) struct strv deps = {0};
        dependencies(m, names->v[i], &deps);
        for (size_t d = 0; d + 1 < deps.n; d += 2) {
            if (!*deps.v[d]) {
                set_or_die("admin.property.Set", deps.v[d + 1], "dom0", "");
                fprintf(stderr, "Global property '%s' set to ''.\n", deps.v[d + 1]);
            } else if (!streq(deps.v[d + 1], "template")) {
                set_or_die("admin.vm.property.Set", deps.v[d + 1], deps.v[d], "");
            }
        }
    }
}

static void kill_running(const struct model *m, const struct strv *names) {
    for (size_t i = 0; i < names->n; i++) {
        const struct qube *q = qube_list_find(&m->qubes, names->v[i]);
        struct cli_err err;
        if (q && !streq(q->state, "Halted") &&
            cli_call_simple("admin.vm.Kill", "", q->name, NULL, &err) < 0 &&
            !cli_err_is(&err, "QubesVMNotStartedError"))
            cli_die_err(&err);
    }
}

int template_remove(const struct qube_list *templates, enum template_removal how, bool yes) {
    _cleanup_(strv_free) struct strv names = {0};
    for (size_t i = 0; i < templates->n; i++)
        strv_push(&names, templates->v[i].name);
    struct model m = {0};
    if (how != REMOVE_PLAIN) {
        model_fetch(&m);
        if (how == REMOVE_PURGE)
            collect_users(&m, &names);
        if (!yes)
            confirm(&names);
        if (how == REMOVE_DISASSOC) {
            disassociate(&m, &names);
            kill_running(&m, &names);
        } else {
            kill_running(&m, &names); /* first: unlinking a running qube moves its network */
            unlink_all(&m, &names);
        }
    }
    for (size_t k = 0; k < names.n; k++) {
        /* purge: the last found first, so each qube goes before what it is based on */
        const char *name = names.v[how == REMOVE_PURGE ? names.n - 1 - k : k];
        struct cli_err err;
        if (cli_call_simple("admin.vm.Remove", "", name, NULL, &err) < 0)
            cli_die_err(&err); /* QubesVMInUseError says which qubes use it */
    }
    model_free(&m);
    return 0;
}
