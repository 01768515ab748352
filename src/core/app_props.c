/* Reading and changing properties of qubes and of the system (globals). */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "app.h"
#include "store.h"

#define VALUE_MAX 1024

const struct prop_def *app_prop_def(const struct qube *q, const char *name, struct qerr *err) {
    for (int i = 0; i < PROP_COUNT; i++)
        if (strcmp(PROP_DEFS[i].name, name) == 0 && (PROP_DEFS[i].classes & CLASS_BIT(q->klass)))
            return &PROP_DEFS[i];
    qerr_set(err, EXC_NO_SUCH_PROPERTY, "Invalid property '%s' of %s", name, q->name);
    return NULL;
}

const struct prop_def *app_global_def(const char *name, struct qerr *err) {
    for (int i = 0; i < GPROP_COUNT; i++)
        if (strcmp(GPROP_DEFS[i].name, name) == 0)
            return &GPROP_DEFS[i];
    qerr_set(err, EXC_NO_SUCH_PROPERTY, "Invalid property '%s' of Qubes", name);
    return NULL;
}

/* Identity fields live in struct qube itself, not in props[]. */
static const char *identity_value(const struct qube *q, int id, char *buf, size_t size) {
    switch (id) {
    case P_NAME: return q->name;
    case P_UUID: return q->uuid;
    case P_QID: snprintf(buf, size, "%d", q->qid); return buf;
    default: return NULL;
    }
}

/* Qubes: a disposable runs like its disposable template (memory, vcpus, kernel ...). */
static const struct qube *inherits_from(const struct app *app, const struct qube *q,
                                        const struct prop_def *def) {
    if (!q || q->klass != QUBE_DISPVM || !(def->flags & PF_INHERIT) || !q->props[P_TEMPLATE])
        return NULL;
    return app_find(app, q->props[P_TEMPLATE]);
}

static const char *default_value(const struct app *app, const struct qube *q,
                                 const struct prop_def *def, char *buf, size_t size) {
    const struct qube *tpl = inherits_from(app, q, def);
    if (tpl) {
        bool is_default;
        char tmp[1024];
        snprintf(buf, size, "%s", app_prop_get(app, tpl, def, tmp, sizeof(tmp), &is_default));
        return buf;
    }
    if (def->get_default && def->get_default(app, q, buf, size))
        return buf;
    return def->fixed_default ? def->fixed_default : "";
}

const char *app_prop_get(const struct app *app, const struct qube *q, const struct prop_def *def,
                         char *buf, size_t size, bool *is_default) {
    const char *v = identity_value(q, def->id, buf, size);
    *is_default = v == NULL && q->props[def->id] == NULL;
    if (v)
        return v;
    if (q->props[def->id])
        return q->props[def->id];
    return default_value(app, q, def, buf, size);
}

const char *app_global_get(const struct app *app, const struct prop_def *def, char *buf,
                           size_t size, bool *is_default) {
    *is_default = app->globals[def->id] == NULL;
    if (!*is_default)
        return app->globals[def->id];
    return default_value(app, NULL, def, buf, size);
}

/* Qubes sends str(None) in events for a property that points at no qube. */
static const char *event_value(const struct prop_def *def, const char *v) {
    return def->type == PT_VM && !*v ? "None" : v;
}

static int refuse_write(const struct prop_def *def, const char *klass, struct qerr *err) {
    if (def->id == P_NAME || def->id == P_QID || def->id == P_UUID || def->id == P_DISPID)
        return qerr_set(err, EXC_PROPERTY_VALUE, "property '%s' is write-once and already set",
                        def->name);
    return qerr_set(err, EXC_PROPERTY_VALUE, "property '%s' on %s instance cannot be set",
                    def->name, klass);
}

/* Canonical form plus the checks every setter shares: the qube named exists. */
static int parse_value(const struct app *app, const struct qube *q, const struct prop_def *def,
                       const char *raw, char *out, size_t size, struct qerr *err) {
    if (prop_canonicalize(def, raw, out, size, err) < 0)
        return -1;
    if (def->type == PT_VM && *out) {
        if (!app_find(app, out))
            return qerr_set(err, EXC_PROPERTY_VALUE, "Can't set %s to non-existing qube %s",
                            def->name, out);
        if (q && strcmp(out, q->name) == 0 && def->id != P_NETVM) /* netvm: "Loops ..." */
            return qerr_set(err, EXC_PROPERTY_VALUE, "A qube cannot be its own %s", def->name);
    }
    return def->validate ? def->validate(app, q, out, err) : 0;
}

static void emit_change(struct app *app, const struct qube *q, const char *event_prefix,
                        const struct prop_def *def, const char *newvalue, const char *oldvalue) {
    char event[128];
    snprintf(event, sizeof(event), "%s:%s", event_prefix, def->name);
    struct wire_kv kv[3] = {{"name", def->name}};
    size_t n = 1;
    if (newvalue)
        kv[n++] = (struct wire_kv){"newvalue", event_value(def, newvalue)};
    kv[n++] = (struct wire_kv){"oldvalue", event_value(def, oldvalue)};
    app_emit(app, q, event, kv, n);
}

static bool read_only(const struct qube *q, const struct prop_def *def) {
    return (def->flags & PF_READONLY) ||
           ((def->flags & PF_ADMINVM_READONLY) && q && q->klass == QUBE_ADMINVM);
}

int app_prop_set(struct app *app, struct qube *q, const struct prop_def *def, const char *raw,
                 struct qerr *err) {
    if (read_only(q, def))
        return refuse_write(def, qube_class_name(q->klass), err);
    return app_prop_set_system(app, q, def, raw, err);
}

int app_prop_set_system(struct app *app, struct qube *q, const struct prop_def *def,
                        const char *raw, struct qerr *err) {
    char value[VALUE_MAX], oldbuf[VALUE_MAX], tmp[VALUE_MAX];
    if (parse_value(app, q, def, raw, value, sizeof(value), err) < 0)
        return -1;
    bool was_default;
    /* copy: the old value may live in q->props, which the commit replaces */
    snprintf(oldbuf, sizeof(oldbuf), "%s",
             app_prop_get(app, q, def, tmp, sizeof(tmp), &was_default));
    emit_change(app, q, "property-pre-set", def, value, oldbuf);
    if (store_begin(app->store) < 0 || store_put_prop(app->store, q->qid, def->name, value) < 0 ||
        store_commit(app->store) < 0)
        return app_save_failed(app, err);
    app_undo_prop(app, q, def->id);
    free(q->props[def->id]);
    q->props[def->id] = xstrdup(value);
    if (def->id == P_LABEL) /* the icon follows the label */
        app_emit(app, q, "property-reset:icon", &(struct wire_kv){"name", "icon"}, 1);
    emit_change(app, q, "property-set", def, value, oldbuf);
    return 0;
}

int app_prop_reset(struct app *app, struct qube *q, const struct prop_def *def, struct qerr *err) {
    if (def->id == P_KLASS || def->id == P_ICON) /* computed: resetting is a no-op */
        return 0;
    if (read_only(q, def))
        return refuse_write(def, qube_class_name(q->klass), err);
    return app_prop_reset_system(app, q, def, err);
}

int app_prop_reset_system(struct app *app, struct qube *q, const struct prop_def *def,
                          struct qerr *err) {
    if (def->flags & PF_NO_RESET)
        return qerr_set(err, EXC_VALUE, "Cannot unset %s; set it to a qube instead", def->name);
    char oldbuf[VALUE_MAX], newbuf[VALUE_MAX];
    bool was_default;
    snprintf(oldbuf, sizeof(oldbuf), "%s",
             app_prop_get(app, q, def, newbuf, sizeof(newbuf), &was_default));
    const char *fallback = default_value(app, q, def, newbuf, sizeof(newbuf));
    if (def->validate && def->validate(app, q, fallback, err) < 0)
        return -1;
    emit_change(app, q, "property-pre-reset", def, NULL, oldbuf);
    if (store_begin(app->store) < 0 || store_put_prop(app->store, q->qid, def->name, NULL) < 0 ||
        store_commit(app->store) < 0)
        return app_save_failed(app, err);
    app_undo_prop(app, q, def->id);
    free(q->props[def->id]);
    q->props[def->id] = NULL;
    emit_change(app, q, "property-reset", def, NULL, oldbuf);
    return 0;
}

int app_global_set(struct app *app, const struct prop_def *def, const char *raw, struct qerr *err) {
    char value[VALUE_MAX], oldbuf[VALUE_MAX], tmp[VALUE_MAX];
    if (read_only(NULL, def)) /* maxmem, no_cpus: facts of the host */
        return refuse_write(def, "Qubes", err);
    if (parse_value(app, NULL, def, raw, value, sizeof(value), err) < 0)
        return -1;
    bool was_default;
    snprintf(oldbuf, sizeof(oldbuf), "%s",
             app_global_get(app, def, tmp, sizeof(tmp), &was_default));
    emit_change(app, NULL, "property-pre-set", def, value, oldbuf);
    if (store_begin(app->store) < 0 || store_put_global(app->store, def->name, value) < 0 ||
        store_commit(app->store) < 0)
        return app_save_failed(app, err);
    free(app->globals[def->id]);
    app->globals[def->id] = xstrdup(value);
    emit_change(app, NULL, "property-set", def, value, oldbuf);
    return 0;
}

int app_global_reset(struct app *app, const struct prop_def *def, struct qerr *err) {
    char oldbuf[VALUE_MAX], tmp[VALUE_MAX];
    if (read_only(NULL, def))
        return refuse_write(def, "Qubes", err);
    bool was_default;
    snprintf(oldbuf, sizeof(oldbuf), "%s",
             app_global_get(app, def, tmp, sizeof(tmp), &was_default));
    emit_change(app, NULL, "property-pre-reset", def, NULL, oldbuf);
    if (store_begin(app->store) < 0 || store_put_global(app->store, def->name, NULL) < 0 ||
        store_commit(app->store) < 0)
        return app_save_failed(app, err);
    free(app->globals[def->id]);
    app->globals[def->id] = NULL;
    emit_change(app, NULL, "property-reset", def, NULL, oldbuf);
    return 0;
}

/* Qubes reads start_time from Xen (a float of seconds) and xid from libvirt: here they
 * are kept in memory only, so after a daemon restart an adopted qube's run begins at
 * its adoption. */
void app_qube_run_begins(struct app *app, struct qube *q) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    snprintf(q->start_time, sizeof(q->start_time), "%lld.%02ld", (long long)now.tv_sec,
             now.tv_nsec / 10000000);
    q->xid = ++app->last_xid;
}

void app_qube_run_ends(struct qube *q) {
    q->start_time[0] = '\0';
    q->xid = 0;
}
