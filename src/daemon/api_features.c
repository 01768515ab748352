/* admin.vm.feature.* and admin.vm.tag.* */
#include <string.h>

#include "api.h"
#include "api_checks.h"
#include "names.h"
#include "preload.h"

/* Written only by the preload pool: a client must not forge or clear them. */
static const char *const PROTECTED_FEATURES[] = {
    "preload-dispvm",        "preload-dispvm-in-progress", "preload-dispvm-completed",
    "preload-dispvm-origin", "preload-dispvm-saved",
};

static int refuse_protected(const struct api_call *c) {
    for (size_t i = 0; i < ELEMENTSOF(PROTECTED_FEATURES); i++)
        if (strcmp(c->req->arg, PROTECTED_FEATURES[i]) == 0)
            return qerr_set(c->err, EXC_PERMISSION,
                            "changing this feature is prohibited: "
                            "dispenserd's preload pool manages it");
    return 0;
}

static int feature_list(struct api_call *c) {
    for (size_t i = 0; i < c->dest->features.n; i++)
        api_put_line(c->out, c->dest->features.e[i].key);
    return 0;
}

static int feature_reply(struct api_call *c, const char *value) {
    if (!value)
        return qerr_set(c->err, EXC_FEATURE_NOT_FOUND, "Feature not set for domain %s: %s",
                        c->dest->name, c->req->arg);
    strbuf_puts(c->out, value);
    return 0;
}

static int feature_get(struct api_call *c) {
    return feature_reply(c, strmap_get(&c->dest->features, c->req->arg));
}

static int feature_check(struct api_call *c, unsigned fallback) {
    return feature_reply(c, app_feature_check(c->app, c->dest, c->req->arg, fallback));
}
static int check_template(struct api_call *c) {
    return feature_check(c, FEATURE_FALLBACK_TEMPLATE);
}
static int check_adminvm(struct api_call *c) { return feature_check(c, FEATURE_FALLBACK_ADMINVM); }
static int check_netvm(struct api_call *c) { return feature_check(c, FEATURE_FALLBACK_NETVM); }
static int check_template_adminvm(struct api_call *c) {
    return feature_check(c, FEATURE_FALLBACK_TEMPLATE | FEATURE_FALLBACK_ADMINVM);
}

static int feature_set(struct api_call *c) {
    const struct wire_request *req = c->req;
    if (refuse_protected(c) < 0)
        return -1;
    if (check_feature_name(req->arg, c->err) < 0 || check_service_feature(req->arg, c->err) < 0 ||
        check_feature_value(req->payload, req->payload_len, c->err) < 0)
        return -1;
    _cleanup_free_ char *value = xstrndup((const char *)req->payload, req->payload_len);
    if (c->preload && preload_validate_feature(c->preload, c->dest, req->arg, value, c->err) < 0)
        return -1;
    if (app_feature_set(c->app, c->dest, req->arg, value, c->err) < 0)
        return -1;
    if (c->preload)
        preload_feature_changed(c->preload, c->dest, req->arg);
    return 0;
}

static int feature_remove(struct api_call *c) {
    if (refuse_protected(c) < 0 || app_feature_remove(c->app, c->dest, c->req->arg, c->err) < 0)
        return -1;
    if (c->preload)
        preload_feature_changed(c->preload, c->dest, c->req->arg);
    return 0;
}

static int tag_check(const struct api_call *c) { return check_tag(c->req->arg, c->err); }

static int tag_list(struct api_call *c) {
    for (size_t i = 0; i < c->dest->tags.n; i++)
        api_put_line(c->out, c->dest->tags.e[i].key);
    return 0;
}

static int tag_get(struct api_call *c) {
    if (tag_check(c) < 0)
        return -1;
    strbuf_puts(c->out, strmap_get(&c->dest->tags, c->req->arg) ? "1" : "0");
    return 0;
}

static int tag_set(struct api_call *c) {
    return tag_check(c) < 0 ? -1 : app_tag_add(c->app, c->dest, c->req->arg, c->err);
}

static int tag_remove(struct api_call *c) {
    return tag_check(c) < 0 ? -1 : app_tag_remove(c->app, c->dest, c->req->arg, c->err);
}

#define BARE (API_NO_ARG | API_NO_PAYLOAD)
#define ONE (API_WANTS_ARG | API_NO_PAYLOAD)
const struct api_method API_FEATURE_METHODS[] = {
    {"admin.vm.feature.List", feature_list, BARE},
    {"admin.vm.feature.Get", feature_get, ONE},
    {"admin.vm.feature.CheckWithTemplate", check_template, ONE},
    {"admin.vm.feature.CheckWithAdminVM", check_adminvm, ONE},
    {"admin.vm.feature.CheckWithNetvm", check_netvm, ONE},
    {"admin.vm.feature.CheckWithTemplateAndAdminVM", check_template_adminvm, ONE},
    {"admin.vm.feature.Set", feature_set, API_WANTS_ARG},
    {"admin.vm.feature.Remove", feature_remove, ONE},
    {"admin.vm.tag.List", tag_list, BARE},
    {"admin.vm.tag.Get", tag_get, ONE},
    {"admin.vm.tag.Set", tag_set, ONE},
    {"admin.vm.tag.Remove", tag_remove, ONE},
    {NULL, NULL, 0},
};
