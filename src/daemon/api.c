#include "api.h"

#include <stdio.h>
#include <string.h>

#include "api_checks.h"
#include "dispatcher.h"
#include "log.h"

static const struct api_method *const TABLES[] = {
    API_VM_METHODS,     API_PROPERTY_METHODS,  API_FEATURE_METHODS,  API_MISC_METHODS,
    API_VOLUME_METHODS, API_INTERNAL_METHODS,  API_FIREWALL_METHODS, API_DEVICE_METHODS,
    API_POOL_METHODS,   API_CLIPBOARD_METHODS,
};

const struct api_method *api_find_method(const char *name) {
    for (size_t t = 0; t < ELEMENTSOF(TABLES); t++)
        for (const struct api_method *m = TABLES[t]; m->name; m++)
            if (strcmp(m->name, name) == 0)
                return m;
    return NULL;
}

void api_put_line(struct strbuf *out, const char *line) {
    strbuf_puts(out, line);
    strbuf_putc(out, '\n');
}

/* The generic checks qubesd makes before any handler, in its order. */
static int check_shape(const struct api_method *m, const struct api_call *c) {
    const struct wire_request *req = c->req;
    if ((m->flags & API_NO_PAYLOAD) && req->payload_len)
        return qerr_set(c->err, EXC_PROTOCOL, "unexpected payload");
    if ((m->flags & API_WANTS_PAYLOAD) && !req->payload_len)
        return qerr_set(c->err, EXC_PROTOCOL, "expected payload");
    if ((m->flags & API_NO_ARG) && *req->arg)
        return qerr_set(c->err, EXC_PROTOCOL, "unexpected argument");
    if ((m->flags & API_WANTS_ARG) && !*req->arg)
        return qerr_set(c->err, EXC_PROTOCOL, "expected an argument");
    if ((m->flags & API_DEST_ADMINVM) && c->dest->klass != QUBE_ADMINVM)
        return qerr_set(c->err, EXC_PROTOCOL, "expected destination to be AdminVM");
    if ((m->flags & API_DEST_NOT_ADMINVM) && c->dest->klass == QUBE_ADMINVM)
        return qerr_set(c->err, EXC_PROTOCOL, "expected destination to not be AdminVM");
    return 0;
}

static bool starts_with(const char *s, const char *prefix) {
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* The wire lets any byte but NUL into the argument, so that a bad one gets a Qubes error
 * rather than a dropped connection; handlers only ever see printable ASCII. */
static int check_arg_bytes(const struct api_call *c) {
    const char *method = c->req->method, *arg = c->req->arg;
    if (check_argument(method, arg, NULL) == 0)
        return 0;
    if (starts_with(method, "admin.vm.tag."))
        return check_tag(arg, c->err);
    if (starts_with(method, "admin.vm.feature."))
        return check_feature_name(arg, c->err);
    return check_argument(method, arg, c->err);
}

/* Source and destination are resolved before the method, as qubesd does. */
static int resolve_call(struct api_call *c) {
    c->src = app_lookup(c->app, c->req->source, c->err);
    if (!c->src)
        return -1;
    /* Until the qrexec policy exists, only dom0 (local admin tools) may manage qubes. */
    if (c->src->klass != QUBE_ADMINVM)
        return qerr_set(c->err, EXC_PERMISSION, "Admin API calls from qubes are not allowed");
    c->dest = app_lookup(c->app, c->req->dest, c->err);
    return c->dest ? 0 : -1;
}

/* A method Qubes has but we lack is "not implemented" (tools catch that); any other
 * name is a protocol error, as qubesd answers it. */
static int refuse_missing_method(struct api_call *c) {
    const char *name = c->req->method;
    if (api_is_upstream_method(name))
        return qerr_set(c->err, EXC_NOT_IMPLEMENTED, "`%s` is not implemented by dispenser", name);
    return qerr_set(c->err, EXC_PROTOCOL, "no such method: '%s'", name);
}

/* Argument and names may hold any byte but NUL: the log gets '?' for the unprintable
 * ones, so that a request cannot write lines of its own into it. */
static const char *loggable(const char *s, char *buf, size_t size) {
    size_t i = 0;
    for (; s[i] && i + 1 < size; i++)
        buf[i] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?';
    buf[i] = '\0';
    return buf;
}

static enum api_result reply_of(struct api_call *call, int r, struct strbuf *reply) {
    const struct wire_request *req = call->req;
    if (r == 0) {
        wire_reply_ok(reply, call->out->data, call->out->len);
        return API_REPLIED;
    }
    char arg[128], src[64], dest[64];
    loggable(req->arg, arg, sizeof(arg));
    loggable(req->source, src, sizeof(src));
    loggable(req->dest, dest, sizeof(dest));
    if (!call->err->exc) {
        log_error("%s+%s on %s failed without a reason", req->method, arg, dest);
        return API_NO_REPLY;
    }
    log_debug("call %s+%s (%s -> %s) failed: %s: %s", req->method, arg, src, dest, call->err->exc,
              call->err->msg);
    wire_reply_error(reply, call->err->exc, call->err->msg);
    return API_REPLIED;
}

enum api_result api_dispatch_env(const struct api_env *env, const struct wire_request *req,
                                 struct strbuf *reply, const struct api_sink *sink) {
    struct qerr err = {0};
    _cleanup_strbuf_ struct strbuf out = STRBUF_INIT;
    struct api_call call = {.app = env->app,
                            .dispatcher = env->dispatcher,
                            .peer_uid = env->peer_uid,
                            .preload = env->preload,
                            .clipboard = env->clipboard,
                            .sink = sink,
                            .req = req,
                            .out = &out,
                            .err = &err};
    const struct api_method *m = NULL;
    int r = resolve_call(&call);
    if (r == 0) {
        m = api_find_method(req->method);
        r = m ? check_shape(m, &call) : refuse_missing_method(&call);
    }
    if (r == 0)
        r = check_arg_bytes(&call);
    if (r == 0)
        r = m->handler(&call);
    if (r == API_HANDLER_DEFERRED)
        return API_DEFERRED;
    return reply_of(&call, r, reply);
}

enum api_result api_dispatch(struct app *app, const struct wire_request *req,
                             struct strbuf *reply) {
    /* a dispatcher with no engines: every qube's engine is then "not available" */
    struct dispatcher *dispatcher = dispatcher_new(app, NULL, 0);
    struct api_env env = {.app = app, .dispatcher = dispatcher, .peer_uid = 0, .preload = NULL};
    enum api_result r = api_dispatch_env(&env, req, reply, NULL);
    dispatcher_free(dispatcher);
    return r;
}

/* ---- replies that come later ---- */

struct api_deferred {
    struct api_sink sink;
    char method[128];
};

struct api_deferred *api_defer(struct api_call *call) {
    if (!call->sink)
        return NULL;
    struct api_deferred *d = xcalloc(1, sizeof(*d));
    d->sink = *call->sink;
    snprintf(d->method, sizeof(d->method), "%s", call->req->method);
    return d;
}

void api_deferred_finish(struct api_deferred *d, int r, const struct qerr *err) {
    api_deferred_finish_content(d, r, err, "");
}

void api_deferred_finish_content(struct api_deferred *d, int r, const struct qerr *err,
                                 const char *content) {
    _cleanup_strbuf_ struct strbuf reply = STRBUF_INIT;
    if (r == 0)
        wire_reply_ok(&reply, content, strlen(content));
    else if (err && err->exc)
        wire_reply_error(&reply, err->exc, err->msg);
    d->sink.reply(d->sink.ctx, r == 0 || (err && err->exc) ? &reply : NULL);
    free(d);
}
