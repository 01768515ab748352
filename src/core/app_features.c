/* Features (free key/value per qube) and tags. */
#include <stdio.h>
#include <string.h>

#include "app.h"
#include "store.h"

static void emit_feature(struct app *app, const struct qube *q, const char *prefix,
                         const char *name, const char *value, const char *oldvalue) {
    char event[300];
    snprintf(event, sizeof(event), "%s:%s", prefix, name);
    struct wire_kv kv[3] = {{"feature", name}};
    size_t n = 1;
    if (value)
        kv[n++] = (struct wire_kv){"value", value};
    if (oldvalue)
        kv[n++] = (struct wire_kv){"oldvalue", oldvalue};
    app_emit(app, q, event, kv, n);
}

int app_feature_set(struct app *app, struct qube *q, const char *name, const char *value,
                    struct qerr *err) {
    const char *cur = strmap_get(&q->features, name);
    _cleanup_free_ char *old = cur ? xstrdup(cur) : NULL;
    emit_feature(app, q, "domain-feature-pre-set", name, value, old);
    if (store_begin(app->store) < 0 || store_put_feature(app->store, q->qid, name, value) < 0 ||
        store_commit(app->store) < 0)
        return app_save_failed(app, err);
    app_undo_feature(app, q, name);
    strmap_set(&q->features, name, value);
    emit_feature(app, q, "domain-feature-set", name, value, old);
    return 0;
}

int app_feature_remove(struct app *app, struct qube *q, const char *name, struct qerr *err) {
    if (!strmap_get(&q->features, name))
        return qerr_set(err, EXC_FEATURE_NOT_FOUND, "Feature not set for domain %s: %s", q->name,
                        name);
    emit_feature(app, q, "domain-feature-pre-delete", name, NULL, NULL);
    if (store_begin(app->store) < 0 || store_put_feature(app->store, q->qid, name, NULL) < 0 ||
        store_commit(app->store) < 0)
        return app_save_failed(app, err);
    app_undo_feature(app, q, name);
    strmap_remove(&q->features, name);
    emit_feature(app, q, "domain-feature-delete", name, NULL, NULL);
    return 0;
}

static const struct qube *linked_qube(const struct app *app, const struct qube *q, int prop) {
    if (!(PROP_DEFS[prop].classes & CLASS_BIT(q->klass)))
        return NULL;
    char buf[64];
    bool is_default;
    const char *name = app_prop_get(app, q, &PROP_DEFS[prop], buf, sizeof(buf), &is_default);
    return *name ? app_find(app, name) : NULL;
}

/* Walks q, then its template (or netvm) chain; the chain is short and loop-free because
 * a template is always of another class (DispVM -> AppVM -> TemplateVM). */
static const char *feature_along(const struct app *app, const struct qube *q, const char *name,
                                 int link_prop) {
    for (int depth = 0; q && depth < 8; depth++) {
        const char *v = strmap_get(&q->features, name);
        if (v)
            return v;
        q = linked_qube(app, q, link_prop);
    }
    return NULL;
}

const char *app_feature_check(const struct app *app, const struct qube *q, const char *name,
                              unsigned fallback) {
    const char *v = NULL;
    if (fallback & FEATURE_FALLBACK_TEMPLATE)
        v = feature_along(app, q, name, P_TEMPLATE);
    else if (fallback & FEATURE_FALLBACK_NETVM)
        v = feature_along(app, q, name, P_NETVM);
    else
        v = strmap_get(&q->features, name);
    if (!v && (fallback & FEATURE_FALLBACK_ADMINVM))
        v = strmap_get(&app_dom0(app)->features, name);
    return v;
}

int app_tag_add(struct app *app, struct qube *q, const char *tag, struct qerr *err) {
    if (strmap_get(&q->tags, tag))
        return 0; /* already there: no event, as in Qubes */
    if (store_begin(app->store) < 0 || store_put_tag(app->store, q->qid, tag, true) < 0 ||
        store_commit(app->store) < 0)
        return app_save_failed(app, err);
    app_undo_tag(app, q, tag);
    strmap_set(&q->tags, tag, "");
    char event[300];
    snprintf(event, sizeof(event), "domain-tag-add:%s", tag);
    app_emit(app, q, event, &(struct wire_kv){"tag", tag}, 1);
    return 0;
}

int app_tag_remove(struct app *app, struct qube *q, const char *tag, struct qerr *err) {
    if (!strmap_get(&q->tags, tag))
        return qerr_set(err, EXC_TAG_NOT_FOUND, "Tag not set for domain %s: %s", q->name, tag);
    if (store_begin(app->store) < 0 || store_put_tag(app->store, q->qid, tag, false) < 0 ||
        store_commit(app->store) < 0)
        return app_save_failed(app, err);
    app_undo_tag(app, q, tag);
    strmap_remove(&q->tags, tag);
    char event[300];
    snprintf(event, sizeof(event), "domain-tag-delete:%s", tag);
    app_emit(app, q, event, &(struct wire_kv){"tag", tag}, 1);
    return 0;
}
