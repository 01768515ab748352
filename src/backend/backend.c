/* What every engine shares: option lookup, and the stand-in for an engine that cannot run
 * on this host (crun's pattern of a disabled cgroup manager: an object that refuses, so
 * callers never test for a missing one). */
#include "backend.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strbuf.h"

int backend_fail(struct backend_why *why, int r, const char *fmt, ...) {
    if (why) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why->msg, sizeof(why->msg), fmt, ap);
        va_end(ap);
    }
    return r;
}

const char *backend_option(const struct backend_option *opts, size_t n, const char *key) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(opts[i].key, key) == 0)
            return opts[i].value;
    return NULL;
}

static char *dup_or_null(const char *s) { return s ? xstrdup(s) : NULL; }

static const struct backend_option *options_dup(const struct backend_option *o, size_t n) {
    struct backend_option *c = n ? xcalloc(n, sizeof(*c)) : NULL;
    for (size_t i = 0; i < n; i++)
        c[i] = (struct backend_option){xstrdup(o[i].key), xstrdup(o[i].value)};
    return c;
}

static void options_free(const struct backend_option *o, size_t n) {
    for (size_t i = 0; i < n; i++) {
        free((char *)o[i].key);
        free((char *)o[i].value);
    }
    free((void *)o);
}

struct backend_qube *backend_qube_dup(const struct backend_qube *q) {
    struct backend_qube *c = xmalloc(sizeof(*c));
    *c = *q;
    c->name = dup_or_null(q->name);
    c->uuid = dup_or_null(q->uuid);
    c->root_source = dup_or_null(q->root_source);
    c->private_source = dup_or_null(q->private_source);
    c->kernel = dup_or_null(q->kernel);
    c->kernelopts = dup_or_null(q->kernelopts);
    c->net = NULL; /* borrowed descriptors, valid during the call only: not kept */
    c->options = options_dup(q->options, q->n_options);
    c->services = options_dup(q->services, q->n_services);
    return c;
}

void backend_qube_free(struct backend_qube *q) {
    if (!q)
        return;
    options_free(q->options, q->n_options);
    options_free(q->services, q->n_services);
    free((char *)q->name);
    free((char *)q->uuid);
    free((char *)q->root_source);
    free((char *)q->private_source);
    free((char *)q->kernel);
    free((char *)q->kernelopts);
    free(q);
}

struct unavailable {
    struct backend base;
    struct backend_ops ops; /* the refusing ops under the engine's own name */
    char name[32];
    char why[256];
};

static int refuse(struct backend *b, struct backend_why *why) {
    struct unavailable *u = (struct unavailable *)b;
    return backend_fail(why, -ENODEV, "virt_mode=%s is not available: %s", u->name, u->why);
}

static int u_start(struct backend *b, const struct backend_qube *q, backend_done_fn done,
                   void *userdata, struct backend_why *why) {
    return refuse(b, why);
}

static int u_by_name(struct backend *b, const char *name, struct backend_why *why) {
    return refuse(b, why);
}

static int u_shutdown(struct backend *b, const char *name, bool force, backend_done_fn done,
                      void *userdata, struct backend_why *why) {
    return refuse(b, why);
}

/* Nothing of it can be running: it never started anything. */
static enum backend_power u_state(struct backend *b, const char *name) { return BACKEND_HALTED; }

static int u_stats(struct backend *b, const char *name, struct backend_stats *out) {
    return -ENOTSUP;
}

static int u_by_qube(struct backend *b, const struct backend_qube *q, struct backend_why *why) {
    return refuse(b, why);
}

static int u_volume_info(struct backend *b, const struct backend_qube *q, const char *volume,
                         struct backend_volume_info *out, struct backend_why *why) {
    return refuse(b, why);
}

static int u_import_begin(struct backend *b, const struct backend_qube *q, const char *volume,
                          char *path, size_t size, struct backend_why *why) {
    return refuse(b, why);
}

static int u_import_end(struct backend *b, const struct backend_qube *q, const char *volume,
                        bool commit, struct backend_why *why) {
    return refuse(b, why);
}

static int u_exec(struct backend *b, const char *name, const struct backend_service_call *call,
                  backend_call_done_fn done, void *userdata, struct backend_why *why) {
    return refuse(b, why);
}

/* Never called: an engine that runs nothing receives no calls from inside qubes. */
static void u_upcall_reply(struct backend *b, struct backend_upcall *call,
                           enum backend_call_end how, int status, const char *reason) {}

static int u_adopt(struct backend *b, const struct backend_qube *q) { return -1; }

/* Its leftovers, if any, wait for a daemon that can run the engine. */
static void u_cleanup(struct backend *b, const char *const *keep) {}

static void u_free(struct backend *b) {
    sd_event_unref(b->loop);
    free(b);
}

static const struct backend_ops UNAVAILABLE_OPS = {
    .start = u_start,
    .pause = u_by_name,
    .unpause = u_by_name,
    .shutdown = u_shutdown,
    .kill = u_by_name,
    .kill_nowait = u_by_name,
    .state = u_state,
    .stats = u_stats,
    .remove_volumes = u_by_qube,
    .volume_info = u_volume_info,
    .import_begin = u_import_begin,
    .import_end = u_import_end,
    .exec = u_exec,
    .upcall_reply = u_upcall_reply,
    .adopt = u_adopt,
    .cleanup = u_cleanup,
    .free = u_free,
};

struct backend *backend_unavailable_new(sd_event *loop, const char *name, const char *why) {
    struct unavailable *u = xcalloc(1, sizeof(*u));
    snprintf(u->name, sizeof(u->name), "%s", name);
    u->ops = UNAVAILABLE_OPS;
    u->ops.name = u->name;
    u->base = (struct backend){&u->ops, sd_event_ref(loop), {0}};
    snprintf(u->why, sizeof(u->why), "%s", why);
    return &u->base;
}
