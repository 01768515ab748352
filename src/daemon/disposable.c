#include "disposable.h"

#include <stdio.h>
#include <string.h>

#include "api_checks.h"

bool disposable_template_ok(const struct app *app, const struct qube *q) {
    char buf[16];
    bool is_default;
    if (!(PROP_DEFS[P_TEMPLATE_FOR_DISPVMS].classes & CLASS_BIT(q->klass)))
        return false;
    return strcmp(app_prop_get(app, q, &PROP_DEFS[P_TEMPLATE_FOR_DISPVMS], buf, sizeof(buf),
                               &is_default),
                  "True") == 0;
}

struct qube *disposable_default_template(const struct app *app, const struct qube *caller,
                                         struct qerr *err) {
    char buf[64];
    bool is_default;
    const char *name = app_prop_get(app, caller, &PROP_DEFS[P_DEFAULT_DISPVM], buf, sizeof(buf),
                                    &is_default);
    struct qube *tpl = *name ? app_find(app, name) : NULL;
    if (!tpl)
        qerr_set(err, EXC_QUBES, "No disposable template: '%s' has no default_dispvm",
                 caller->name);
    return tpl;
}

/* Qubes copies a disposable template's features into each disposable it makes; of those
 * the services (service.*) are what reach the qube (/run/qubes-service), so a disposable
 * starts with its template's services and keeps them if the template changes later. */
static int copy_services(struct app *app, const struct qube *tpl, struct qube *q,
                         struct qerr *err) {
    size_t plen = strlen(SERVICE_FEATURE_PREFIX);
    for (size_t i = 0; i < tpl->features.n; i++) {
        const struct strmap_entry *f = &tpl->features.e[i];
        if (strncmp(f->key, SERVICE_FEATURE_PREFIX, plen) == 0 &&
            app_feature_set(app, q, f->key, f->value, err) < 0)
            return -1;
    }
    return 0;
}

struct qube *disposable_create(struct app *app, struct qube *tpl, const char *caller,
                               struct qerr *err) {
    if (!disposable_template_ok(app, tpl)) {
        qerr_set(err, EXC_QUBES,
                 "'%s' is not a disposable template (template_for_dispvms "
                 "is not set)",
                 tpl->name);
        return NULL;
    }
    char name[32], created_by[64], disp_created_by[64], label[32];
    int dispid = app_alloc_dispid(app, name, sizeof(name));
    if (dispid < 0) {
        qerr_set(err, EXC_QUBES, "No free disposable id left");
        return NULL;
    }
    bool is_default;
    snprintf(label, sizeof(label), "%s",
             app_prop_get(app, tpl, &PROP_DEFS[P_LABEL], created_by, sizeof(created_by),
                          &is_default));
    snprintf(created_by, sizeof(created_by), "created-by-%s", caller ? caller : "");
    snprintf(disp_created_by, sizeof(disp_created_by), "disp-created-by-%s", caller ? caller : "");
    /* a preload (no caller yet) gets its creator's tags when it is handed out */
    struct qube_spec spec = {QUBE_DISPVM,
                             name,
                             label,
                             tpl->name,
                             caller ? created_by : NULL,
                             caller ? disp_created_by : NULL,
                             dispid,
                             true};
    struct qube *q = NULL;
    if (app_batch_begin_ephemeral(app, err) < 0) /* a disposable is throwaway state */
        return NULL;
    int r = app_create(app, &spec, &q, err);
    if (r == 0)
        r = copy_services(app, tpl, q, err);
    if (app_batch_end(app, r < 0 ? &(struct qerr){0} : err) < 0)
        r = -1;
    /* a failed commit took q back out of the model too (app_batch_end) */
    return r < 0 ? NULL : q;
}
