/* Creating and removing qubes (their definitions; engines come later). */
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "app.h"
#include "labels.h"
#include "names.h"
#include "store.h"

#define MAX_DISPID 10000

static int alloc_qid(const struct app *app) {
    _cleanup_free_ bool *used = xcalloc(MAX_QID, sizeof(bool));
    for (size_t i = 0; i < app->n_qubes; i++)
        used[app->qubes[i]->qid] = true;
    for (int qid = 1; qid < MAX_QID; qid++)
        if (!used[qid])
            return qid;
    return -1;
}

static bool dispid_taken(const struct app *app, int dispid) {
    char buf[16];
    snprintf(buf, sizeof(buf), "%d", dispid);
    for (size_t i = 0; i < app->n_qubes; i++)
        if (streq_ptr(app->qubes[i]->props[P_DISPID], buf))
            return true;
    return false;
}

/* Random, as Qubes does, so a disposable's name says nothing about its predecessors. */
static int alloc_dispid(const struct app *app);

int app_alloc_dispid(const struct app *app, char *name, size_t size) {
    for (int attempt = 0; attempt < 100; attempt++) {
        int id = alloc_dispid(app);
        if (id < 0)
            return -1;
        snprintf(name, size, "disp%d", id);
        if (!app_find(app, name))
            return id;
    }
    return -1;
}

static int alloc_dispid(const struct app *app) {
    for (int attempt = 0; attempt < 1000; attempt++) {
        unsigned v;
        if (getrandom(&v, sizeof(v), 0) != sizeof(v))
            break;
        int id = (int)(v % (MAX_DISPID - 1)) + 1;
        if (!dispid_taken(app, id))
            return id;
    }
    for (int id = 1; id < MAX_DISPID; id++)
        if (!dispid_taken(app, id))
            return id;
    return -1;
}

static void random_uuid(char out[37]) {
    unsigned char b[16] = {0};
    if (getrandom(b, sizeof(b), 0) != sizeof(b))
        abort();                                  /* the kernel's CSPRNG never fails once booted */
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
             b[14], b[15]);
}

/* Resolves and checks the template of a new qube into q->props[P_TEMPLATE]. */
static int resolve_template(struct app *app, struct qube *q, const char *requested,
                            struct qerr *err) {
    bool wants = CLASS_BIT(q->klass) & PROP_DEFS[P_TEMPLATE].classes;
    if (requested && *requested && !wants)
        return qerr_set(err, EXC_PROTOCOL, "%s cannot be based on template",
                        qube_class_name(q->klass));
    if (!wants)
        return 0;
    char buf[64];
    if (requested && *requested) {
        if (!app_find(app, requested))
            return qerr_set(err, EXC_VM_NOT_FOUND, "No such domain: '%s'", requested);
        snprintf(buf, sizeof(buf), "%s", requested);
    } else {
        char tmp[64];
        bool is_default;
        snprintf(buf, sizeof(buf), "%s",
                 app_prop_get(app, q, &PROP_DEFS[P_TEMPLATE], tmp, sizeof(tmp), &is_default));
    }
    if (PROP_DEFS[P_TEMPLATE].validate(app, q, buf, err) < 0)
        return -1;
    q->props[P_TEMPLATE] = xstrdup(buf);
    return 0;
}

static int build_qube(struct app *app, const struct qube_spec *spec, struct qube *q,
                      struct qerr *err) {
    if (name_validate_qube(spec->name, err) < 0)
        return -1;
    if (app_find(app, spec->name))
        return qerr_set(err, EXC_VM_EXISTS, "Qube already exists: %s", spec->name);
    if (spec->klass == QUBE_ADMINVM)
        return qerr_set(err, EXC_VALUE, "There is only one AdminVM (dom0)");
    if (!label_find(spec->label))
        return qerr_set(err, EXC_LABEL_NOT_FOUND, "Label does not exist: %s", spec->label);
    q->klass = spec->klass;
    snprintf(q->name, sizeof(q->name), "%s", spec->name);
    q->props[P_LABEL] = xstrdup(spec->label);
    if (resolve_template(app, q, spec->template, err) < 0 ||
        app_pools_choose(app, q, spec->pool, spec->volume_pools, err) < 0)
        return -1;
    q->qid = alloc_qid(app);
    int dispid = spec->klass != QUBE_DISPVM                             ? 0
                 : spec->dispid > 0 && !dispid_taken(app, spec->dispid) ? spec->dispid
                                                                        : alloc_dispid(app);
    if (q->qid < 0 || dispid < 0)
        return qerr_set(err, EXC_QUBES, "No free qube id left");
    if (dispid) {
        char buf[16];
        snprintf(buf, sizeof(buf), "%d", dispid);
        q->props[P_DISPID] = xstrdup(buf);
    }
    random_uuid(q->uuid);
    q->power = POWER_HALTED;
    if (spec->creator)
        strmap_set(&q->tags, spec->creator, "");
    if (spec->extra_tag)
        strmap_set(&q->tags, spec->extra_tag, "");
    if (spec->klass == QUBE_DISPVM && spec->auto_cleanup)
        q->props[P_AUTO_CLEANUP] = xstrdup("True");
    return 0;
}

static int save_new_qube(struct app *app, const struct qube *q) {
    struct store *s = app->store;
    if (store_begin(s) < 0 ||
        store_insert_qube(s, q->qid, q->name, qube_class_name(q->klass), q->uuid) < 0)
        return -1;
    for (int i = 0; i < PROP_COUNT; i++)
        if (q->props[i] && store_put_prop(s, q->qid, PROP_DEFS[i].name, q->props[i]) < 0)
            return -1;
    for (size_t i = 0; i < q->tags.n; i++)
        if (store_put_tag(s, q->qid, q->tags.e[i].key, true) < 0)
            return -1;
    if (q->firewall && store_put_firewall(s, q->qid, q->firewall) < 0)
        return -1;
    for (int v = 0; v < PV_COUNT; v++)
        if (q->volume_pool[v] &&
            store_put_volume_pool(s, q->qid, POOL_VOLUME_NAMES[v], q->volume_pool[v]) < 0)
            return -1;
    return store_commit(s);
}

int app_create(struct app *app, const struct qube_spec *spec, struct qube **out, struct qerr *err) {
    struct qube *q = xcalloc(1, sizeof(*q));
    if (build_qube(app, spec, q, err) < 0) {
        app_qube_free(q);
        return -1;
    }
    /* Qubes: a disposable starts with its disposable template's firewall */
    const struct qube *tpl = q->klass == QUBE_DISPVM && q->props[P_TEMPLATE]
                                 ? app_find(app, q->props[P_TEMPLATE])
                                 : NULL;
    if (tpl && tpl->firewall)
        q->firewall = xstrdup(tpl->firewall);
    if (save_new_qube(app, q) < 0) {
        app_qube_free(q);
        return app_save_failed(app, err);
    }
    app_insert(app, q);
    app_undo_created(app, q);
    app_emit(app, NULL, "domain-add", &(struct wire_kv){"vm", q->name}, 1);
    if (out)
        *out = q;
    return 0;
}

static void append_dependent(char *buf, size_t size, const char *holder, const char *prop) {
    size_t len = strlen(buf);
    snprintf(buf + len, size - len, "%s%s:%s", len ? ", " : "", holder, prop);
}

/* Qubes counts only explicit references: a default that points here follows the global. */
bool app_dependents(const struct app *app, const struct qube *q, char *buf, size_t size) {
    buf[0] = '\0';
    for (int g = 0; g < GPROP_COUNT; g++)
        if (GPROP_DEFS[g].type == PT_VM && streq_ptr(app->globals[g], q->name))
            append_dependent(buf, size, "@GLOBAL", GPROP_DEFS[g].name);
    for (size_t i = 0; i < app->n_qubes; i++) {
        const struct qube *other = app->qubes[i];
        if (other == q || streq_ptr(other->props[P_IS_PRELOAD], "True"))
            continue; /* a preload is discarded with its template, never a dependent */
        for (int p = 0; p < PROP_COUNT; p++)
            if (PROP_DEFS[p].type == PT_VM && streq_ptr(other->props[p], q->name))
                append_dependent(buf, size, other->name, PROP_DEFS[p].name);
    }
    return buf[0] != '\0';
}

int app_remove(struct app *app, struct qube *q, struct qerr *err) {
    if (q->klass == QUBE_ADMINVM)
        return qerr_set(err, EXC_VM_IN_USE, "'%s' cannot be removed", q->name);
    if (q->power != POWER_HALTED)
        return qerr_set(err, EXC_VM_NOT_HALTED, "Domain is not powered off: '%s'", q->name);
    char deps[400];
    if (app_dependents(app, q, deps, sizeof(deps)))
        return qerr_set(err, EXC_VM_IN_USE, "Domain is in use: '%s'; used by %s", q->name, deps);
    app_emit(app, NULL, "domain-pre-delete", &(struct wire_kv){"vm", q->name}, 1);
    if (store_begin(app->store) < 0 || store_delete_qube(app->store, q->qid) < 0 ||
        store_commit(app->store) < 0)
        return app_save_failed(app, err);
    app_unlink(app, q);
    app_emit(app, NULL, "domain-delete", &(struct wire_kv){"vm", q->name}, 1);
    if (!app_undo_removed(app, q)) /* in a batch: freed once the removal is saved */
        app_qube_free(q);
    return 0;
}
