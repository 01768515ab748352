/* Inside a batch the model changes before the one commit that saves them all. If that
 * commit fails (a full state disk, an I/O error), the database keeps none of them, and
 * memory must not keep them either: a disposable listed but never saved, a preload taken
 * out of its list in memory only, would be handed out twice or collide with the row the
 * database still has. So every change made inside a batch first records how to take it
 * back; a failed outermost commit takes them back, newest first. Removed qubes are freed
 * only once the removal is saved. */
#include <stdlib.h>
#include <string.h>

#include "app.h"

enum undo_kind { UNDO_FEATURE, UNDO_TAG, UNDO_PROP, UNDO_CREATED, UNDO_REMOVED };

struct app_undo {
    enum undo_kind kind;
    struct qube *q;
    int prop;  /* UNDO_PROP */
    char *key; /* UNDO_FEATURE, UNDO_TAG */
    char *old; /* the value before, NULL if there was none */
    struct app_undo *next;
};

static void record(struct app *app, enum undo_kind kind, struct qube *q, int prop, const char *key,
                   const char *old) {
    struct app_undo *u = xcalloc(1, sizeof(*u));
    *u = (struct app_undo){kind,     q, prop, key ? xstrdup(key) : NULL, old ? xstrdup(old) : NULL,
                           app->undo};
    app->undo = u;
}

void app_undo_feature(struct app *app, struct qube *q, const char *name) {
    if (app->batch_depth > 0)
        record(app, UNDO_FEATURE, q, -1, name, strmap_get(&q->features, name));
}

void app_undo_tag(struct app *app, struct qube *q, const char *tag) {
    if (app->batch_depth > 0)
        record(app, UNDO_TAG, q, -1, tag, strmap_get(&q->tags, tag));
}

void app_undo_prop(struct app *app, struct qube *q, int prop) {
    if (app->batch_depth > 0)
        record(app, UNDO_PROP, q, prop, NULL, q->props[prop]);
}

void app_undo_created(struct app *app, struct qube *q) {
    if (app->batch_depth > 0)
        record(app, UNDO_CREATED, q, -1, NULL, NULL);
}

bool app_undo_removed(struct app *app, struct qube *q) {
    if (app->batch_depth == 0)
        return false;
    record(app, UNDO_REMOVED, q, -1, NULL, NULL);
    return true;
}

static void restore_map(struct strmap *m, const char *key, const char *old) {
    if (old)
        strmap_set(m, key, old);
    else
        strmap_remove(m, key);
}

static void take_back(struct app *app, struct app_undo *u) {
    switch (u->kind) {
    case UNDO_FEATURE: restore_map(&u->q->features, u->key, u->old); break;
    case UNDO_TAG: restore_map(&u->q->tags, u->key, u->old); break;
    case UNDO_PROP:
        free(u->q->props[u->prop]);
        u->q->props[u->prop] = u->old ? xstrdup(u->old) : NULL;
        break;
    case UNDO_CREATED: /* subscribers saw domain-add: they learn it is gone */
        app_unlink(app, u->q);
        app_emit(app, NULL, "domain-delete", &(struct wire_kv){"vm", u->q->name}, 1);
        app_qube_free(u->q);
        break;
    case UNDO_REMOVED:
        app_insert(app, u->q);
        app_emit(app, NULL, "domain-add", &(struct wire_kv){"vm", u->q->name}, 1);
        break;
    }
}

void app_undo_end(struct app *app, bool saved) {
    struct app_undo *u = app->undo;
    app->undo = NULL;
    while (u) {
        struct app_undo *next = u->next;
        if (!saved)
            take_back(app, u);
        else if (u->kind == UNDO_REMOVED)
            app_qube_free(u->q);
        free(u->key);
        free(u->old);
        free(u);
        u = next;
    }
}
