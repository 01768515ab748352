/* The qube collection: loading, lookup, creation and removal. */
#include "app.h"

#include <stdio.h>
#include <string.h>

#include "labels.h"
#include "log.h"
#include "names.h"
#include "store.h"

static const char *const CLASS_NAMES[QUBE_CLASS_COUNT] = {
    [QUBE_ADMINVM] = "AdminVM",       [QUBE_APPVM] = "AppVM",
    [QUBE_DISPVM] = "DispVM",         [QUBE_STANDALONEVM] = "StandaloneVM",
    [QUBE_TEMPLATEVM] = "TemplateVM",
};

const char *qube_class_name(enum qube_class klass) { return CLASS_NAMES[klass]; }

const char *power_state_name(enum power_state state) {
    static const char *const names[] = {"Halted", "Transient", "Running", "Paused", "Halting"};
    return names[state];
}

const char *qube_power_name(const struct qube *q) {
    return q->power == POWER_PAUSED && q->suspended ? "Suspended" : power_state_name(q->power);
}

int qube_class_from_name(const char *name, enum qube_class *out) {
    for (int i = 0; i < QUBE_CLASS_COUNT; i++)
        if (strcmp(CLASS_NAMES[i], name) == 0) {
            *out = (enum qube_class)i;
            return 0;
        }
    return -1;
}

void app_qube_free(struct qube *q) {
    if (!q)
        return;
    for (int i = 0; i < PROP_COUNT; i++)
        free(q->props[i]);
    strmap_free(&q->features);
    strmap_free(&q->tags);
    free(q->firewall);
    free(q->notes);
    for (int v = 0; v < PV_COUNT; v++)
        free(q->volume_pool[v]);
    app_assignments_free(q);
    free(q);
}

static const char *qube_name_of(const void *elem) { return (*(struct qube *const *)elem)->name; }

/* Index of name in the sorted array, or where it would go. */
static size_t app_index(const struct app *app, const char *name, bool *found) {
    return sorted_index(app->qubes, app->n_qubes, sizeof(app->qubes[0]), name, qube_name_of, found);
}

struct qube *app_find(const struct app *app, const char *name) {
    bool found;
    size_t i = app_index(app, name, &found);
    return found ? app->qubes[i] : NULL;
}

struct qube *app_dom0(const struct app *app) {
    return app_find(app, "dom0");
}

struct qube *app_lookup(const struct app *app, const char *name, struct qerr *err) {
    if (name_validate_qube(name, err) < 0)
        return NULL;
    struct qube *q = app_find(app, name);
    if (!q)
        qerr_set(err, EXC_VM_NOT_FOUND, "No such domain: '%s'", name);
    return q;
}

void app_insert(struct app *app, struct qube *q) {
    bool found;
    size_t i = app_index(app, q->name, &found);
    app->qubes = xrealloc(app->qubes, (app->n_qubes + 1) * sizeof(*app->qubes));
    memmove(&app->qubes[i + 1], &app->qubes[i], (app->n_qubes - i) * sizeof(*app->qubes));
    app->qubes[i] = q;
    app->n_qubes++;
}

void app_unlink(struct app *app, struct qube *q) {
    bool found;
    size_t i = app_index(app, q->name, &found);
    if (!found)
        return;
    memmove(&app->qubes[i], &app->qubes[i + 1], (app->n_qubes - i - 1) * sizeof(*app->qubes));
    app->n_qubes--;
}

void app_emit(struct app *app, const struct qube *subject, const char *event,
              const struct wire_kv *kv, size_t n_kv) {
    if (app->emit)
        app->emit(app->emit_ctx, subject ? subject->name : "", event, kv, n_kv);
}

int app_save_failed(struct app *app, struct qerr *err) {
    bool full = store_disk_full(app->store);
    store_rollback(app->store);
    if (full)
        return qerr_set(err, EXC_QUBES,
                        "Failed to save the change to the qube database: no space left on the "
                        "state disk (nothing was changed)");
    return qerr_set(err, EXC_QUBES, "Failed to save the change to the qube database");
}

int app_batch_begin(struct app *app, struct qerr *err) {
    if (store_begin(app->store) < 0)
        return app_save_failed(app, err);
    app->batch_depth++;
    return 0;
}

int app_batch_begin_ephemeral(struct app *app, struct qerr *err) {
    if (store_begin_ephemeral(app->store) < 0)
        return app_save_failed(app, err);
    app->batch_depth++;
    return 0;
}

int app_batch_end(struct app *app, struct qerr *err) {
    int r = store_commit(app->store) < 0 ? app_save_failed(app, err) : 0;
    if (app->batch_depth > 0 && --app->batch_depth == 0)
        app_undo_end(app, r == 0);
    return r;
}

/* ---- loading ---- */

struct loader_ctx {
    struct app *app;
    struct qube **by_qid; /* MAX_QID entries */
};

static struct qube *loaded_qube(struct loader_ctx *l, int qid) {
    return qid >= 0 && qid < MAX_QID ? l->by_qid[qid] : NULL;
}

static int load_qube(void *ctx, int qid, const char *name, const char *klass, const char *uuid) {
    struct loader_ctx *l = ctx;
    struct qube *q = xcalloc(1, sizeof(*q));
    if (qid < 0 || qid >= MAX_QID || strlen(name) > QUBE_NAME_MAX ||
        qube_class_from_name(klass, &q->klass) < 0) {
        log_error("database: skipping qube %d '%s' of class '%s'", qid, name, klass);
        free(q);
        return 0;
    }
    q->qid = qid;
    snprintf(q->name, sizeof(q->name), "%s", name);
    snprintf(q->uuid, sizeof(q->uuid), "%s", uuid);
    q->power = q->klass == QUBE_ADMINVM ? POWER_RUNNING : POWER_HALTED;
    l->by_qid[qid] = q;
    app_insert(l->app, q);
    return 0;
}

static int load_prop(void *ctx, int qid, const char *name, const char *value) {
    struct qube *q = loaded_qube(ctx, qid);
    for (int i = 0; q && i < PROP_COUNT; i++)
        if (strcmp(PROP_DEFS[i].name, name) == 0) {
            q->props[i] = xstrdup(value);
            return 0;
        }
    log_warning("database: ignoring property '%s' of qube %d", name, qid);
    return 0;
}

static int load_feature(void *ctx, int qid, const char *name, const char *value) {
    struct qube *q = loaded_qube(ctx, qid);
    if (q)
        strmap_set(&q->features, name, value);
    return 0;
}

static int load_tag(void *ctx, int qid, const char *tag) {
    struct qube *q = loaded_qube(ctx, qid);
    if (q)
        strmap_set(&q->tags, tag, "");
    return 0;
}

static int load_global(void *ctx, const char *name, const char *value) {
    struct loader_ctx *l = ctx;
    for (int i = 0; i < GPROP_COUNT; i++)
        if (strcmp(GPROP_DEFS[i].name, name) == 0) {
            l->app->globals[i] = xstrdup(value);
            return 0;
        }
    log_warning("database: ignoring global property '%s'", name);
    return 0;
}

static int load_firewall(void *ctx, int qid, const char *rules) {
    struct qube *q = loaded_qube(ctx, qid);
    if (q)
        q->firewall = xstrdup(rules);
    return 0;
}

static int load_notes(void *ctx, int qid, const char *text) {
    struct qube *q = loaded_qube(ctx, qid);
    if (q)
        q->notes = xstrdup(text);
    return 0;
}

static int load_pool(void *ctx, const char *name, const char *driver, const char *config) {
    struct loader_ctx *l = ctx;
    struct pool p = {0};
    snprintf(p.name, sizeof(p.name), "%s", name);
    if (pool_driver_from_name(driver, &p.driver) < 0) {
        log_warning("database: ignoring pool '%s' of unknown driver '%s'", name, driver);
        return 0;
    }
    pool_config_parse(&p, config);
    l->app->pools = xrealloc(l->app->pools, (l->app->n_pools + 1) * sizeof(p));
    l->app->pools[l->app->n_pools++] = p;
    return 0;
}

static int load_volume_pool(void *ctx, int qid, const char *volume, const char *pool) {
    struct qube *q = loaded_qube(ctx, qid);
    int v = pool_volume_index(volume);
    if (q && v >= 0) {
        free(q->volume_pool[v]);
        q->volume_pool[v] = xstrdup(pool);
    }
    return 0;
}

static int load_assignment(void *ctx, int qid, const struct store_assignment *row) {
    struct qube *q = loaded_qube(ctx, qid);
    struct device_assignment a = {.options = (char *)row->options};
    snprintf(a.devclass, sizeof(a.devclass), "%s", row->devclass);
    snprintf(a.backend, sizeof(a.backend), "%s", row->backend);
    snprintf(a.port_id, sizeof(a.port_id), "%s", row->port_id);
    snprintf(a.device_id, sizeof(a.device_id), "%s", row->device_id);
    snprintf(a.mode, sizeof(a.mode), "%s", row->mode);
    if (q)
        app_assignment_load(q, &a);
    return 0;
}

int app_open(struct app *app, const char *db_path, struct qerr *err) {
    if (store_open(db_path, &app->store, err) < 0)
        return -1;
    struct loader_ctx l = {.app = app, .by_qid = xcalloc(MAX_QID, sizeof(struct qube *))};
    struct store_loader loader = {&l,        load_qube,        load_prop,      load_feature,
                                  load_tag,  load_global,      load_firewall,  load_notes,
                                  load_pool, load_volume_pool, load_assignment};
    int r = store_load(app->store, &loader);
    free(l.by_qid);
    if (r < 0 || !app_dom0(app)) {
        app_close(app);
        return qerr_set(err, EXC_QUBES, "cannot load the qube database %s", db_path);
    }
    return 0;
}

void app_close(struct app *app) {
    app_undo_end(app, true); /* a batch left open: its removed qubes are freed */
    for (size_t i = 0; i < app->n_qubes; i++)
        app_qube_free(app->qubes[i]);
    free(app->qubes);
    for (int i = 0; i < GPROP_COUNT; i++) {
        free(app->globals[i]);
        app->globals[i] = NULL; /* app_close may run twice after a failed open */
    }
    store_close(app->store);
    free(app->pools);
    app->pools = NULL;
    app->n_pools = 0;
    app->qubes = NULL;
    app->n_qubes = 0;
    app->store = NULL;
}
