/* The preload settings: features of disposable templates and of dom0, their validation,
 * and the list. Values are read as Qubes reads them (qubes/vm/mix/dvmtemplate.py). */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "disposable.h"
#include "preload_internal.h"

static bool all_digits(const char *v) {
    for (; *v; v++)
        if (!isdigit((unsigned char)*v))
            return false;
    return true;
}

bool all_digits_or_empty(const char *v) { return all_digits(v); }

static bool is_float(const char *v) {
    if (!*v)
        return true; /* "" reads as 0 */
    char *end;
    errno = 0;
    strtod(v, &end);
    return !*end && errno == 0 && !isspace((unsigned char)*v);
}

/* The checks Qubes makes, in its order: qrexec, the readiness services, the value. */
static int validate_max_on(const struct app *app, const struct qube *q, const char *feature,
                           const char *value, struct qerr *err) {
    if (!app_feature_check(app, q, "qrexec", FEATURE_FALLBACK_TEMPLATE))
        return qerr_set(err, EXC_VALUE, "Qube does not support qrexec");
    static const char *const rpcs[] = {"qubes.WaitForRunningSystem", "qubes.WaitForSession"};
    char missing[128] = "";
    for (size_t i = 0; i < 2; i++) {
        char name[96];
        snprintf(name, sizeof(name), "supported-rpc.%s", rpcs[i]);
        const char *v = app_feature_check(app, q, name, FEATURE_FALLBACK_TEMPLATE);
        if (!v || !*v)
            snprintf(missing + strlen(missing), sizeof(missing) - strlen(missing), "%s%s",
                     *missing ? ", " : "", rpcs[i]);
    }
    if (*missing)
        return qerr_set(err, EXC_VALUE, "Qube does not support the RPC(s) '%s'", missing);
    if (!all_digits(value))
        return qerr_set(err, EXC_VALUE, "Invalid %s value: not a digit", feature);
    return 0;
}

/* Seconds of the demand estimator: a positive number ("" for the default). */
static int validate_seconds(const char *name, const char *value, struct qerr *err) {
    if (!is_float(value) || (*value && strtod(value, NULL) <= 0))
        return qerr_set(err, EXC_VALUE, "Invalid %s value: not a positive number of seconds", name);
    return 0;
}

int preload_validate_feature(struct preload *p, const struct qube *q, const char *name,
                             const char *value, struct qerr *err) {
    bool dom0 = q->klass == QUBE_ADMINVM;
    if (strcmp(name, "preload-dispvm-max") == 0) {
        if (!dom0)
            return validate_max_on(p->app, q, name, value, err);
        /* the global value is checked against the default_dispvm it applies to */
        struct qube *dvm = preload_default_dispvm(p->app);
        return dvm ? validate_max_on(p->app, dvm, name, value, err) : 0;
    }
    if (strcmp(name, "preload-dispvm-auto") == 0)
        return dom0 ? qerr_set(err, EXC_VALUE,
                               "preload-dispvm-auto is a feature of disposable templates")
                    : validate_max_on(p->app, q, name, value, err);
    if (strcmp(name, "preload-dispvm-hibernated") == 0)
        return dom0 ? qerr_set(err, EXC_VALUE,
                               "preload-dispvm-hibernated is a feature of disposable templates")
                    : validate_max_on(p->app, q, name, value, err);
    if (strcmp(name, "preload-dispvm-auto-window") == 0 || strcmp(name, "preload-dispvm-idle") == 0)
        return validate_seconds(name, value, err);
    if (strcmp(name, "preload-dispvm-pressure") == 0 && dom0)
        return preload_validate_pressure(value, err);
    if (strcmp(name, "preload-dispvm-threshold") == 0 && dom0 && !all_digits(value))
        return qerr_set(err, EXC_VALUE, "Invalid preload-dispvm-threshold value: not a digit");
    if (strcmp(name, "preload-dispvm-delay") == 0 && !is_float(value))
        return qerr_set(err, EXC_VALUE,
                        "Invalid preload-dispvm-delay value: not an integer "
                        "or float");
    return 0;
}

struct qube *preload_default_dispvm(const struct app *app) {
    char buf[64];
    bool is_default;
    const char *name = app_global_get(app, &GPROP_DEFS[G_DEFAULT_DISPVM], buf, sizeof(buf),
                                      &is_default);
    return *name ? app_find(app, name) : NULL;
}

/* The dom0 value wins for the default_dispvm when the feature is there at all ("" = 0). */
bool preload_global_applies(const struct app *app, const struct qube *tpl) {
    return preload_default_dispvm(app) == tpl &&
           strmap_get(&app_dom0(app)->features, "preload-dispvm-max") != NULL;
}

unsigned preload_max(const struct app *app, const struct qube *tpl) {
    const char *v = preload_global_applies(app, tpl)
                        ? strmap_get(&app_dom0(app)->features, "preload-dispvm-max")
                        : strmap_get(&tpl->features, "preload-dispvm-max");
    return v && all_digits(v) ? (unsigned)strtoul(v, NULL, 10) : 0;
}

bool preload_max_present(const struct app *app, const struct qube *tpl) {
    return preload_global_applies(app, tpl) || strmap_get(&tpl->features, "preload-dispvm-max");
}

uint64_t preload_threshold_mib(const struct app *app) {
    const char *v = strmap_get(&app_dom0(app)->features, "preload-dispvm-threshold");
    return v && all_digits(v) ? strtoull(v, NULL, 10) : 0;
}

double preload_delay(const struct app *app, const struct qube *tpl) {
    const char *v = app_feature_check(app, tpl, "preload-dispvm-delay", FEATURE_FALLBACK_ADMINVM);
    return v ? strtod(v, NULL) : 3.0;
}

/* ---- the list: the template's `preload-dispvm` feature, oldest first ---- */

size_t preload_list(const struct qube *tpl, char names[][32], size_t max) {
    const char *v = strmap_get(&tpl->features, "preload-dispvm");
    size_t n = 0;
    while (v && *v && n < max) {
        while (*v == ' ')
            v++;
        size_t len = strcspn(v, " ");
        if (len && len < 32) {
            memcpy(names[n], v, len);
            names[n++][len] = '\0';
        }
        v += len;
    }
    return n;
}

int preload_list_store(struct preload *p, struct qube *tpl, char names[][32], size_t n) {
    char buf[PRELOAD_LIST_MAX * 33] = "";
    for (size_t i = 0; i < n; i++)
        snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), "%s%s", i ? " " : "", names[i]);
    struct qerr err = {0};
    if (app_feature_set(p->app, tpl, "preload-dispvm", buf, &err) < 0) {
        log_error("preload: %s: cannot save the list: %s", tpl->name, err.msg);
        return -1;
    }
    return 0;
}

/* Removes one name; returns true if it was there. */
bool preload_list_remove(struct preload *p, struct qube *tpl, const char *name) {
    char names[PRELOAD_LIST_MAX][32];
    size_t n = preload_list(tpl, names, PRELOAD_LIST_MAX), k = 0;
    bool found = false;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(names[i], name) == 0) {
            found = true;
            continue;
        }
        memmove(names[k++], names[i], 32);
    }
    if (found)
        preload_list_store(p, tpl, names, k);
    return found;
}
