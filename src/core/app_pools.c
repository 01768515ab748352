/* Storage pools in the model: the list (loaded with the qubes), their settings and the
 * pool of each qube's volumes (pools.h). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "pools.h"
#include "store.h"

const char *const POOL_VOLUME_NAMES[PV_COUNT] = {"private", "root", "volatile"};

int pool_volume_index(const char *volume) {
    for (int v = 0; v < PV_COUNT; v++)
        if (strcmp(POOL_VOLUME_NAMES[v], volume) == 0)
            return v;
    return -1;
}

static const char *const DRIVER_NAMES[] = {[POOL_DIR] = "dir", [POOL_RAM] = "ram"};

const char *pool_driver_name(enum pool_driver d) { return DRIVER_NAMES[d]; }

int pool_driver_from_name(const char *name, enum pool_driver *out) {
    for (size_t i = 0; i < ELEMENTSOF(DRIVER_NAMES); i++)
        if (strcmp(DRIVER_NAMES[i], name) == 0) {
            *out = (enum pool_driver)i;
            return 0;
        }
    return -1;
}

void pool_config_text(const struct pool *p, char *buf, size_t size) {
    int n = snprintf(buf, size, "revisions_to_keep=%d\n", p->revisions_to_keep);
    if (p->driver == POOL_RAM && n > 0 && (size_t)n < size)
        snprintf(buf + n, size - (size_t)n, "size=%" PRIu64 "\n", p->size);
}

int pool_config_parse(struct pool *p, const char *text) {
    for (const char *line = text; line && *line;) {
        const char *end = strchr(line, '\n');
        if (strncmp(line, "revisions_to_keep=", 18) == 0)
            p->revisions_to_keep = atoi(line + 18);
        else if (strncmp(line, "size=", 5) == 0)
            p->size = strtoull(line + 5, NULL, 10);
        line = end ? end + 1 : NULL;
    }
    return 0;
}

struct pool *app_pool_find(const struct app *app, const char *name) {
    for (size_t i = 0; i < app->n_pools; i++)
        if (strcmp(app->pools[i].name, name) == 0)
            return &app->pools[i];
    return NULL;
}

struct pool *app_pool_lookup(const struct app *app, const char *name, struct qerr *err) {
    struct pool *p = app_pool_find(app, name);
    if (!p)
        qerr_set(err, EXC_QUBES, "Unknown storage pool %s", name);
    return p;
}

static int save_pool(struct app *app, const struct pool *p) {
    char config[128];
    pool_config_text(p, config, sizeof(config));
    if (store_begin(app->store) < 0 ||
        store_put_pool(app->store, p->name, pool_driver_name(p->driver), config) < 0)
        return -1;
    return store_commit(app->store);
}

int app_pool_add(struct app *app, const struct pool *p, struct qerr *err) {
    if (app_pool_find(app, p->name))
        return qerr_set(err, "QubesPoolInUseError", "Storage pool is in use: '%s'", p->name);
    if (save_pool(app, p) < 0)
        return app_save_failed(app, err);
    app->pools = xrealloc(app->pools, (app->n_pools + 1) * sizeof(*app->pools));
    app->pools[app->n_pools++] = *p;
    app_emit(app, NULL, "pool-add", &(struct wire_kv){"pool", p->name}, 1);
    return 0;
}

static const int DEFAULT_POOL_PROPS[] = {G_DEFAULT_POOL, G_DEFAULT_POOL_KERNEL,
                                         G_DEFAULT_POOL_PRIVATE, G_DEFAULT_POOL_ROOT,
                                         G_DEFAULT_POOL_VOLATILE};

int app_pool_check_unused(const struct app *app, const char *name, struct qerr *err) {
    for (size_t i = 0; i < app->n_qubes; i++)
        for (int v = 0; v < PV_COUNT; v++)
            if (strcmp(app_volume_pool(app, app->qubes[i], v), name) == 0)
                return qerr_set(err, "QubesPoolInUseError",
                                "Storage pool is in use: '%s' (volume %s of '%s')", name,
                                POOL_VOLUME_NAMES[v], app->qubes[i]->name);
    for (size_t i = 0; i < ELEMENTSOF(DEFAULT_POOL_PROPS); i++) {
        const struct prop_def *def = &GPROP_DEFS[DEFAULT_POOL_PROPS[i]];
        char buf[128];
        bool is_default;
        if (strcmp(app_global_get(app, def, buf, sizeof(buf), &is_default), name) == 0)
            return qerr_set(err, "QubesPoolInUseError", "Storage pool is in use: set as %s",
                            def->name);
    }
    return 0;
}

int app_pool_remove(struct app *app, const char *name, struct qerr *err) {
    struct pool *p = app_pool_lookup(app, name, err);
    if (!p || app_pool_check_unused(app, name, err) < 0)
        return -1;
    if (p->driver == POOL_DIR && strcmp(name, DEFAULT_POOL_NAME) == 0)
        return qerr_set(err, "QubesPoolInUseError",
                        "Storage pool is in use: '%s' is the engines' own on-disk pool", name);
    app_emit(app, NULL, "pool-pre-delete", &(struct wire_kv){"pool", name}, 1);
    if (store_begin(app->store) < 0 || store_put_pool(app->store, name, NULL, NULL) < 0 ||
        store_commit(app->store) < 0)
        return app_save_failed(app, err);
    char saved[64];
    snprintf(saved, sizeof(saved), "%s", name); /* name may point into the entry */
    size_t i = (size_t)(p - app->pools);
    memmove(&app->pools[i], &app->pools[i + 1], (app->n_pools - i - 1) * sizeof(*p));
    app->n_pools--;
    app_emit(app, NULL, "pool-delete", &(struct wire_kv){"pool", saved}, 1);
    return 0;
}

int app_pool_set_revisions(struct app *app, struct pool *p, int keep, struct qerr *err) {
    struct pool next = *p;
    next.revisions_to_keep = keep;
    if (save_pool(app, &next) < 0)
        return app_save_failed(app, err);
    *p = next;
    return 0;
}

/* ---- the pools of a qube's volumes ---- */

const char *app_volume_pool(const struct app *app, const struct qube *q, enum pool_volume v) {
    (void)app;
    return q->volume_pool[v] ? q->volume_pool[v] : DEFAULT_POOL_NAME;
}

const struct pool *app_scratch_pool(const struct app *app, const struct qube *q) {
    const struct pool *p = app_pool_find(app, app_volume_pool(app, q, PV_VOLATILE));
    return p && p->driver == POOL_RAM ? p : NULL;
}

/* Whether volume v of q is thrown away at every stop (the volatile one, a view). */
static bool is_throwaway(const struct qube *q, enum pool_volume v) {
    if (v == PV_VOLATILE)
        return true;
    if (v == PV_ROOT)
        return q->klass == QUBE_APPVM || q->klass == QUBE_DISPVM;
    return q->klass == QUBE_DISPVM;
}

static const int DEFAULT_POOL_OF[PV_COUNT] = {
    [PV_PRIVATE] = G_DEFAULT_POOL_PRIVATE,
    [PV_ROOT] = G_DEFAULT_POOL_ROOT,
    [PV_VOLATILE] = G_DEFAULT_POOL_VOLATILE,
};

static const struct pool *global_pool(const struct app *app, enum pool_volume v) {
    char buf[128];
    bool is_default;
    return app_pool_find(app, app_global_get(app, &GPROP_DEFS[DEFAULT_POOL_OF[v]], buf, sizeof(buf),
                                             &is_default));
}

/* The ram pool named for one of q's throwaway volumes, or the one it inherits. */
static int choose_scratch(const struct app *app, const struct qube *q,
                          const struct pool *named[PV_COUNT], const struct pool **out,
                          struct qerr *err) {
    const struct pool *ram = NULL;
    for (int v = 0; v < PV_COUNT; v++)
        if (is_throwaway(q, v) && named[v] && named[v]->driver == POOL_RAM) {
            if (ram && ram != named[v])
                return qerr_set(err, EXC_VALUE,
                                "The volumes of '%s' that a stop discards are kept in one "
                                "pool: '%s' and '%s' are named",
                                q->name, ram->name, named[v]->name);
            ram = named[v];
        }
    if (!ram && !named[PV_VOLATILE]) {
        const struct qube *tpl = q->klass == QUBE_DISPVM && q->props[P_TEMPLATE]
                                     ? app_find(app, q->props[P_TEMPLATE])
                                     : NULL;
        const struct pool *inherited = tpl ? app_scratch_pool(app, tpl)
                                           : global_pool(app, PV_VOLATILE);
        if (inherited && inherited->driver == POOL_RAM)
            ram = inherited;
    }
    for (int v = 0; ram && v < PV_COUNT; v++)
        if (is_throwaway(q, v) && named[v] && named[v] != ram)
            return qerr_set(err, EXC_VALUE,
                            "Volume %s of '%s' cannot be in pool '%s': what a stop of the qube "
                            "discards is kept in one pool, '%s'",
                            POOL_VOLUME_NAMES[v], q->name, named[v]->name, ram->name);
    *out = ram;
    return 0;
}

static int pick(const struct app *app, struct qube *q, enum pool_volume v, const struct pool *named,
                const struct pool *ram, struct qerr *err) {
    const struct pool *p = named;
    if (is_throwaway(q, v))
        p = ram ? ram : named ? named : v == PV_VOLATILE ? global_pool(app, v) : NULL;
    else if (!p)
        p = global_pool(app, v);
    if (p && p->driver == POOL_RAM && !is_throwaway(q, v))
        return qerr_set(err, EXC_VALUE,
                        "Volume %s of '%s' cannot be in pool '%s': a ram pool keeps nothing past "
                        "a stop, and this volume is saved at every stop",
                        POOL_VOLUME_NAMES[v], q->name, p->name);
    if (p && strcmp(p->name, DEFAULT_POOL_NAME) != 0)
        q->volume_pool[v] = xstrdup(p->name);
    return 0;
}

int app_pools_choose(const struct app *app, struct qube *q, const char *all,
                     const char *const each[PV_COUNT], struct qerr *err) {
    const struct pool *named[PV_COUNT] = {0}, *ram = NULL;
    for (int v = 0; v < PV_COUNT; v++) {
        const char *name = each && each[v] ? each[v] : all;
        if (name && !(named[v] = app_pool_lookup(app, name, err)))
            return -1;
    }
    if (choose_scratch(app, q, named, &ram, err) < 0)
        return -1;
    for (int v = 0; v < PV_COUNT; v++)
        if (pick(app, q, v, named[v], ram, err) < 0)
            return -1;
    return 0;
}
