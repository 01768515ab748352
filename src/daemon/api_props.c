/* admin.vm.property.* (per qube) and admin.property.* (global). */
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "network.h"
#include "props_net.h"
#include "preload.h"

#define VALUE_MAX 1024

/* Qubes' payload is bytes; ours is text, so a NUL inside is refused like bad bytes. */
static int payload_text(const struct api_call *c, char *buf, size_t size) {
    const struct wire_request *req = c->req;
    if (memchr(req->payload, '\0', req->payload_len))
        return qerr_set(c->err, EXC_VALUE, "Invalid characters in property value");
    if (req->payload_len >= size)
        return qerr_set(c->err, EXC_VALUE, "Property value is too long");
    memcpy(buf, req->payload, req->payload_len);
    buf[req->payload_len] = '\0';
    return 0;
}

static void put_get(struct strbuf *out, const struct prop_def *def, const char *value,
                    bool is_default) {
    strbuf_printf(out, "default=%s type=%s %s", is_default ? "True" : "False",
                  prop_type_name(def->type), value);
}

static void put_getall_line(struct strbuf *out, const struct prop_def *def, const char *value,
                            bool is_default) {
    strbuf_printf(out, "%s default=%s type=%s ", def->name, is_default ? "True" : "False",
                  prop_type_name(def->type));
    strbuf_put_escaped(out, value);
    strbuf_putc(out, '\n');
}

/* --- per qube --- */

/* The properties of a class in qubesd's order: alphabetical, the PF_LATE ones (load
 * stage 4) after the rest. *pos starts at 0; returns NULL at the end. */
static const struct prop_def *next_prop(enum qube_class klass, int *pos) {
    for (; *pos < 2 * PROP_COUNT; (*pos)++) {
        const struct prop_def *def = &PROP_DEFS[*pos % PROP_COUNT];
        bool late_pass = *pos >= PROP_COUNT;
        if ((def->classes & CLASS_BIT(klass)) && late_pass == !!(def->flags & PF_LATE)) {
            (*pos)++;
            return def;
        }
    }
    return NULL;
}

static int vm_prop_list(struct api_call *c) {
    int pos = 0;
    for (const struct prop_def *def; (def = next_prop(c->dest->klass, &pos));)
        api_put_line(c->out, def->name);
    return 0;
}

static int vm_prop_get(struct api_call *c) {
    const struct prop_def *def = app_prop_def(c->dest, c->req->arg, c->err);
    if (!def)
        return -1;
    char buf[VALUE_MAX];
    bool is_default;
    const char *v = app_prop_get(c->app, c->dest, def, buf, sizeof(buf), &is_default);
    put_get(c->out, def, v, is_default);
    return 0;
}

static int vm_prop_get_all(struct api_call *c) {
    int pos = 0;
    for (const struct prop_def *def; (def = next_prop(c->dest->klass, &pos));) {
        char buf[VALUE_MAX];
        bool is_default;
        const char *v = app_prop_get(c->app, c->dest, def, buf, sizeof(buf), &is_default);
        put_getall_line(c->out, def, v, is_default);
    }
    return 0;
}

static int vm_prop_get_default(struct api_call *c) {
    const struct prop_def *def = app_prop_def(c->dest, c->req->arg, c->err);
    if (!def)
        return -1;
    if (!def->get_default && !def->fixed_default)
        return 0; /* no default: empty success, as qubesd */
    char buf[VALUE_MAX];
    const char *v = def->fixed_default;
    if (def->get_default && def->get_default(c->app, c->dest, buf, sizeof(buf)))
        v = buf;
    if (!v)
        return 0;
    strbuf_printf(c->out, "type=%s %s", prop_type_name(def->type), v);
    return 0;
}

/* qubesd answers with the property's docstring as text; Rst is the same text, which is
 * valid reStructuredText as it is. */
static int vm_prop_help(struct api_call *c) {
    const struct prop_def *def = app_prop_def(c->dest, c->req->arg, c->err);
    if (!def)
        return -1;
    strbuf_puts(c->out, prop_help(def, false));
    return 0;
}

/* Preloads follow their template's configuration: refused while ordinary disposables
 * depend on it, discarded or refilled after it changed. */
static int after_change(struct api_call *c, const char *prop, int r) {
    if (r == 0 && c->preload)
        preload_property_changed(c->preload, c->dest, prop);
    return r;
}

static int before_change(struct api_call *c, const char *prop) {
    return c->preload ? preload_validate_property(c->preload, c->dest, prop, c->err) : 0;
}

/* A running qube's netvm changes at once (Qubes' attach-network): the new one must run.
 * new_netvm: the canonical value, or NULL for a reset. */
static int before_netvm_change(struct api_call *c, const struct prop_def *def, const char *raw,
                               char *old, size_t size) {
    if (def->id != P_NETVM)
        return 0;
    net_prop(c->app, c->dest, P_NETVM, old, size);
    char value[VALUE_MAX] = "";
    if (raw && prop_canonicalize(def, raw, value, sizeof(value), c->err) < 0)
        return -1;
    if (!raw) {
        /* what a reset falls back to: the default, read without the explicit value */
        char *explicit = c->dest->props[P_NETVM];
        c->dest->props[P_NETVM] = NULL;
        net_prop(c->app, c->dest, P_NETVM, value, sizeof(value));
        c->dest->props[P_NETVM] = explicit;
    }
    return network_check_netvm_change(c->dispatcher, c->dest, value, c->err);
}

static int after_netvm_change(struct api_call *c, const struct prop_def *def, const char *old,
                              int r) {
    if (r < 0 || def->id != P_NETVM)
        return r;
    return network_netvm_changed(c->dispatcher, c->dest, old, c->err);
}

static int vm_prop_set(struct api_call *c) {
    const struct prop_def *def = app_prop_def(c->dest, c->req->arg, c->err);
    char value[VALUE_MAX], old_netvm[64];
    if (!def || payload_text(c, value, sizeof(value)) < 0 || before_change(c, def->name) < 0 ||
        before_netvm_change(c, def, value, old_netvm, sizeof(old_netvm)) < 0)
        return -1;
    int r = app_prop_set(c->app, c->dest, def, value, c->err);
    return after_change(c, def->name, after_netvm_change(c, def, old_netvm, r));
}

static int vm_prop_reset(struct api_call *c) {
    const struct prop_def *def = app_prop_def(c->dest, c->req->arg, c->err);
    char old_netvm[64];
    if (!def || before_change(c, def->name) < 0 ||
        before_netvm_change(c, def, NULL, old_netvm, sizeof(old_netvm)) < 0)
        return -1;
    int r = app_prop_reset(c->app, c->dest, def, c->err);
    return after_change(c, def->name, after_netvm_change(c, def, old_netvm, r));
}

/* --- global --- */

static int global_list(struct api_call *c) {
    for (int i = 0; i < GPROP_COUNT; i++)
        api_put_line(c->out, GPROP_DEFS[i].name);
    return 0;
}

static int global_get(struct api_call *c) {
    const struct prop_def *def = app_global_def(c->req->arg, c->err);
    if (!def)
        return -1;
    char buf[VALUE_MAX];
    bool is_default;
    /* a separate statement: argument evaluation order would read is_default unset */
    const char *v = app_global_get(c->app, def, buf, sizeof(buf), &is_default);
    put_get(c->out, def, v, is_default);
    return 0;
}

static int global_get_all(struct api_call *c) {
    for (int i = 0; i < GPROP_COUNT; i++) {
        char buf[VALUE_MAX];
        bool is_default;
        const char *v = app_global_get(c->app, &GPROP_DEFS[i], buf, sizeof(buf), &is_default);
        put_getall_line(c->out, &GPROP_DEFS[i], v, is_default);
    }
    return 0;
}

static int global_get_default(struct api_call *c) {
    const struct prop_def *def = app_global_def(c->req->arg, c->err);
    if (!def)
        return -1;
    char buf[VALUE_MAX];
    const char *v = def->fixed_default;
    if (def->get_default && def->get_default(c->app, NULL, buf, sizeof(buf)))
        v = buf;
    if (v)
        strbuf_printf(c->out, "type=%s %s", prop_type_name(def->type), v);
    return 0;
}

static int global_help(struct api_call *c) {
    const struct prop_def *def = app_global_def(c->req->arg, c->err);
    if (!def)
        return -1;
    strbuf_puts(c->out, prop_help(def, true));
    return 0;
}

/* default_netvm moves every running qube that follows it (Qubes resets their netvm). */
static int global_change(struct api_call *c, const struct prop_def *def, const char *raw) {
    struct network_moves *moves = NULL;
    char value[VALUE_MAX] = "";
    if (def->id == G_DEFAULT_NETVM) {
        if (raw && prop_canonicalize(def, raw, value, sizeof(value), c->err) < 0)
            return -1;
        moves = network_moves_begin(c->dispatcher);
        if (network_moves_check(c->dispatcher, moves, value, c->err) < 0) {
            network_moves_end(c->dispatcher, moves); /* nothing changed: no move */
            return -1;
        }
    }
    int r = raw ? app_global_set(c->app, def, raw, c->err) : app_global_reset(c->app, def, c->err);
    if (moves)
        network_moves_end(c->dispatcher, moves);
    return after_change(c, def->name, r);
}

static int global_set(struct api_call *c) {
    const struct prop_def *def = app_global_def(c->req->arg, c->err);
    char value[VALUE_MAX];
    if (!def || payload_text(c, value, sizeof(value)) < 0)
        return -1;
    return global_change(c, def, value);
}

static int global_reset(struct api_call *c) {
    const struct prop_def *def = app_global_def(c->req->arg, c->err);
    return def ? global_change(c, def, NULL) : -1;
}

#define BARE (API_NO_ARG | API_NO_PAYLOAD)
#define ONE (API_WANTS_ARG | API_NO_PAYLOAD)
#define GLOBAL API_DEST_ADMINVM
const struct api_method API_PROPERTY_METHODS[] = {
    {"admin.vm.property.List", vm_prop_list, BARE},
    {"admin.vm.property.Get", vm_prop_get, ONE},
    {"admin.vm.property.GetAll", vm_prop_get_all, BARE},
    {"admin.vm.property.GetDefault", vm_prop_get_default, ONE},
    {"admin.vm.property.Set", vm_prop_set, API_WANTS_ARG},
    {"admin.vm.property.Reset", vm_prop_reset, ONE},
    {"admin.vm.property.Help", vm_prop_help, ONE},
    {"admin.vm.property.HelpRst", vm_prop_help, ONE},
    {"admin.property.List", global_list, BARE | GLOBAL},
    {"admin.property.Get", global_get, ONE | GLOBAL},
    {"admin.property.GetAll", global_get_all, BARE | GLOBAL},
    {"admin.property.GetDefault", global_get_default, ONE | GLOBAL},
    {"admin.property.Set", global_set, API_WANTS_ARG | GLOBAL},
    {"admin.property.Reset", global_reset, ONE | GLOBAL},
    {"admin.property.Help", global_help, ONE | GLOBAL},
    {"admin.property.HelpRst", global_help, ONE | GLOBAL},
    {NULL, NULL, 0},
};
