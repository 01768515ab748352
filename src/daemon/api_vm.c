/* admin.vm.List, Create, Remove, CurrentState and the life cycle calls. */
#include <stdio.h>
#include <string.h>

#include <stdlib.h>

#include "api.h"
#include "disposable.h"
#include "dispatcher.h"
#include "preload.h"
#include "host.h"
#include "labels.h"
#include "names.h"

static void list_line(struct strbuf *out, const struct qube *q) {
    strbuf_printf(out, "%s class=%s state=%s uuid=%s\n", q->name, qube_class_name(q->klass),
                  qube_power_name(q), q->uuid);
}

static int vm_list(struct api_call *c) {
    if (c->dest->klass != QUBE_ADMINVM) {
        list_line(c->out, c->dest);
        return 0;
    }
    list_line(c->out, c->dest); /* dom0 first, then by name, as qubesd sorts */
    for (size_t i = 0; i < c->app->n_qubes; i++)
        if (c->app->qubes[i] != c->dest)
            list_line(c->out, c->app->qubes[i]);
    return 0;
}

struct create_request {
    char buf[1024];
    const char *name, *label;
    const char *pool;                   /* pool=: every volume */
    const char *volume_pools[PV_COUNT]; /* pool:VOLUME= */
    const char *kernel_pool;            /* pool:kernel=, for Qubes' tools: no such volume */
    bool any_volume_pool;
};

/* pool:VOLUME=POOL of CreateInPool; `kernel` is accepted for Qubes' tools and has no
 * volume here. */
static int create_volume_pool(struct create_request *r, const char *volume, const char *pool,
                              struct qerr *err) {
    static const char *const allowed[] = {"root", "private", "volatile", "kernel"};
    bool known = false;
    for (size_t i = 0; i < ELEMENTSOF(allowed); i++)
        known = known || strcmp(allowed[i], volume) == 0;
    if (!known)
        return qerr_set(err, EXC_PROTOCOL,
                        "Volume must be one of: root, private, volatile, kernel");
    int v = pool_volume_index(volume);
    const char **slot = v >= 0 ? &r->volume_pools[v] : &r->kernel_pool;
    if (*slot)
        return qerr_set(err, EXC_PROTOCOL, "Option 'pool:%s' must be unique", volume);
    *slot = pool;
    r->any_volume_pool = true;
    return 0;
}

/* Payload "name=<n> label=<l>", each key once; CreateInPool also takes pool= or
 * pool:VOLUME= (qubesd's checks and messages). */
static int parse_create_payload(const struct wire_request *req, bool allow_pool,
                                struct create_request *r, struct qerr *err) {
    if (req->payload_len >= sizeof(r->buf))
        return qerr_set(err, EXC_PROTOCOL, "Creation parameters are too long");
    if (!text_is_printable_ascii(req->payload, req->payload_len))
        return qerr_set(err, EXC_PROTOCOL, "Parameters contains non-ASCII characters");
    memcpy(r->buf, req->payload, req->payload_len);
    r->buf[req->payload_len] = '\0';
    for (char *save = NULL, *item = strtok_r(r->buf, " ", &save); item;
         item = strtok_r(NULL, " ", &save)) {
        char *eq = strchr(item, '=');
        if (!eq)
            return qerr_set(err, EXC_PROTOCOL, "Invalid creation parameter '%s'", item);
        *eq = '\0';
        bool is_pool = strcmp(item, "pool") == 0 || strncmp(item, "pool:", 5) == 0;
        if (is_pool && !allow_pool)
            return qerr_set(err, EXC_PROTOCOL, "Pool option specified but 'allow_pool' is False");
        if (strncmp(item, "pool:", 5) == 0) {
            if (create_volume_pool(r, item + 5, eq + 1, err) < 0)
                return -1;
            continue;
        }
        const char **slot = strcmp(item, "name") == 0    ? &r->name
                            : strcmp(item, "label") == 0 ? &r->label
                            : is_pool                    ? &r->pool
                                                         : NULL;
        if (!slot)
            return qerr_set(err, EXC_PROTOCOL,
                            allow_pool ? "Options does not match: name, label, pool, pool:"
                                       : "Options does not match: name, label");
        if (*slot)
            return qerr_set(err, EXC_PROTOCOL,
                            is_pool ? "Option 'pool' must be unique" : "Options must be unique");
        *slot = eq + 1;
    }
    if (r->pool && r->any_volume_pool)
        return qerr_set(err, EXC_PROTOCOL,
                        "Conflicting options specified: 'pool=', 'pool:volume='");
    return 0;
}

static int vm_create_in(struct api_call *c, enum qube_class klass, bool allow_pool) {
    struct create_request r = {0};
    if (parse_create_payload(c->req, allow_pool, &r, c->err) < 0)
        return -1;
    if (!r.name)
        return qerr_set(c->err, EXC_PROTOCOL, "Creation requested without key: name");
    /* qubesd answers an unknown label exactly like a missing one (recorded reply 9). */
    if (!r.label || !*r.label || !label_find(r.label))
        return qerr_set(c->err, EXC_PROTOCOL, "Creation requested without key: label");
    char creator[64];
    snprintf(creator, sizeof(creator), "created-by-%s", c->src->name);
    struct qube_spec spec = {klass, r.name, r.label, c->req->arg, creator};
    spec.pool = r.pool;
    spec.volume_pools = r.volume_pools;
    return app_create(c->app, &spec, NULL, c->err);
}

static int vm_create(struct api_call *c, enum qube_class klass) {
    return vm_create_in(c, klass, false);
}

static int vm_create_appvm(struct api_call *c) { return vm_create(c, QUBE_APPVM); }
static int vm_create_dispvm(struct api_call *c) { return vm_create(c, QUBE_DISPVM); }
static int vm_create_standalonevm(struct api_call *c) { return vm_create(c, QUBE_STANDALONEVM); }
static int vm_create_templatevm(struct api_call *c) { return vm_create(c, QUBE_TEMPLATEVM); }
static int vm_create_in_pool_appvm(struct api_call *c) { return vm_create_in(c, QUBE_APPVM, true); }
static int vm_create_in_pool_dispvm(struct api_call *c) {
    return vm_create_in(c, QUBE_DISPVM, true);
}
static int vm_create_in_pool_standalonevm(struct api_call *c) {
    return vm_create_in(c, QUBE_STANDALONEVM, true);
}
static int vm_create_in_pool_templatevm(struct api_call *c) {
    return vm_create_in(c, QUBE_TEMPLATEVM, true);
}

static int vm_remove(struct api_call *c) {
    char deps[8];
    /* its preloads go with it, once nothing else refuses the removal */
    if (c->preload && c->dest->power == POWER_HALTED &&
        !app_dependents(c->app, c->dest, deps, sizeof(deps)))
        preload_discard_of(c->preload, c->dest);
    return dispatcher_remove(c->dispatcher, c->dest, c->err);
}

static unsigned long long prop_ull(const struct api_call *c, int id) {
    char buf[64];
    bool is_default;
    return strtoull(app_prop_get(c->app, c->dest, &PROP_DEFS[id], buf, sizeof(buf), &is_default),
                    NULL, 10);
}

static int vm_current_state(struct api_call *c) {
    struct host_usage u = {0};
    struct backend_stats st = {0};
    if (c->dest->klass == QUBE_ADMINVM) {
        host_usage_read(&u);
    } else if (dispatcher_stats(c->dispatcher, c->dest, &st) == 0) {
        unsigned long long mem = prop_ull(c, P_MEMORY), maxmem = prop_ull(c, P_MAXMEM);
        u = (struct host_usage){st.memory_bytes / 1024, (maxmem > mem ? maxmem : mem) * 1024,
                                st.cpu_ns};
    }
    strbuf_printf(c->out, "mem=%llu mem_static_max=%llu cputime=%llu power_state=%s", u.mem_kib,
                  u.mem_max_kib, u.cputime_ns, qube_power_name(c->dest));
    /* Our addition, only where the engine has a choice (a VM: kvm or tcg): upstream's
     * client reads the keys it knows and ignores the rest. */
    if (st.accel[0])
        strbuf_printf(c->out, " accel=%s", st.accel);
    return 0;
}

static void finish_deferred(void *userdata, int r, const struct qerr *err) {
    api_deferred_finish(userdata, r, err);
}

/* Runs an engine operation that completes later; the reply waits for it. */
static int run_deferred(struct api_call *c,
                        int (*op)(struct api_call *c, dispatcher_done_fn done, void *ud)) {
    struct api_deferred *d = api_defer(c);
    if (op(c, d ? finish_deferred : NULL, d) < 0) {
        free(d);
        return -1;
    }
    return d ? API_HANDLER_DEFERRED : 0;
}

static int op_start(struct api_call *c, dispatcher_done_fn done, void *ud) {
    return dispatcher_start(c->dispatcher, c->dest, done, ud, c->err);
}

/* The power-state guards (Qubes' exceptions for a call in the wrong state) are the
 * dispatcher's (dispatcher.c): one place, whichever way a call comes in. */
static int vm_start(struct api_call *c) { return run_deferred(c, op_start); }

static int vm_kill(struct api_call *c) { return dispatcher_kill(c->dispatcher, c->dest, c->err); }

static int vm_pause(struct api_call *c) { return dispatcher_pause(c->dispatcher, c->dest, c->err); }

static int vm_unpause(struct api_call *c) {
    if (dispatcher_unpause(c->dispatcher, c->dest, c->err) < 0)
        return -1;
    if (c->preload) /* unpausing a preload by hand counts as using it */
        preload_unpaused_by_hand(c->preload, c->dest);
    return 0;
}

static int vm_suspend(struct api_call *c) {
    return dispatcher_suspend(c->dispatcher, c->dest, c->err);
}

static int vm_resume(struct api_call *c) {
    if (dispatcher_resume(c->dispatcher, c->dest, c->err) < 0)
        return -1;
    if (c->preload) /* as an unpause by hand: the preload is taken */
        preload_unpaused_by_hand(c->preload, c->dest);
    return 0;
}

static int op_shutdown_force_wait(struct api_call *c, dispatcher_done_fn done, void *ud) {
    bool force = strstr(c->req->arg, "force") != NULL;
    return dispatcher_shutdown(c->dispatcher, c->dest, force, done, ud, c->err);
}

static int vm_shutdown(struct api_call *c) {
    const char *a = c->req->arg;
    if (*a && strcmp(a, "force") && strcmp(a, "wait") && strcmp(a, "force+wait") &&
        strcmp(a, "wait+force"))
        return qerr_set(c->err, EXC_PERMISSION, "Argument not in 'force', 'wait', 'force+wait'");
    /* a preload is not waited on: shutting it down (qvm-shutdown --all) kills it */
    if (c->preload && preload_is_preload(c->app, c->dest))
        return dispatcher_kill(c->dispatcher, c->dest, c->err);
    if (strstr(a, "wait"))
        return run_deferred(c, op_shutdown_force_wait);
    return dispatcher_shutdown(c->dispatcher, c->dest, strstr(a, "force") != NULL, NULL, NULL,
                               c->err);
}

static int reply_disposable(struct api_call *c, const struct qube *q, bool want_uuid) {
    if (!q)
        return -1;
    if (want_uuid)
        strbuf_printf(c->out, "uuid:%s", q->uuid);
    else
        strbuf_puts(c->out, q->name);
    return 0;
}

/* A preloaded disposable when one is ready (it is returned running: the caller cannot
 * tell it from a fresh one but by speed), else a fresh one, not started. The answer is
 * deferred only while a preload is still starting: a deferred reply finished inside the
 * handler would free the connection under the server's feet. */
struct preload_reply {
    struct api_deferred *d; /* NULL while still inside the handler */
    struct app *app;
    char caller[32], tpl[32];
    bool want_uuid, answered;
    int r;
    struct qerr err;
    char out[80];
};

static void on_preload_got(void *userdata, struct qube *disp, const struct qerr *err) {
    struct preload_reply *pr = userdata;
    struct qube *tpl = app_find(pr->app, pr->tpl);
    if (!disp && tpl)
        disp = disposable_create(pr->app, tpl, pr->caller, &pr->err);
    else if (!disp && err && err->exc)
        pr->err = *err;
    else if (!disp)
        qerr_set(&pr->err, EXC_QUBES, "The disposable template '%s' is gone", pr->tpl);
    if (disp)
        snprintf(pr->out, sizeof(pr->out), pr->want_uuid ? "uuid:%s" : "%s",
                 pr->want_uuid ? disp->uuid : disp->name);
    pr->r = disp ? 0 : -1;
    pr->answered = true;
    if (!pr->d)
        return; /* the handler answers */
    api_deferred_finish_content(pr->d, pr->r, &pr->err, pr->out);
    free(pr);
}

static int create_from_preload(struct api_call *c, struct qube *tpl, bool want_uuid) {
    struct preload_reply *pr = xcalloc(1, sizeof(*pr));
    *pr = (struct preload_reply){.app = c->app, .want_uuid = want_uuid};
    snprintf(pr->caller, sizeof(pr->caller), "%s", c->src->name);
    snprintf(pr->tpl, sizeof(pr->tpl), "%s", tpl->name);
    if (preload_request(c->preload, tpl, c->src->name, on_preload_got, pr) == 0)
        on_preload_got(pr, NULL, NULL);
    if (!pr->answered) { /* the oldest preload is still starting */
        pr->d = api_defer(c);
        return API_HANDLER_DEFERRED;
    }
    int r = pr->r;
    if (r == 0)
        strbuf_puts(c->out, pr->out);
    else
        *c->err = pr->err;
    free(pr);
    return r;
}

/* admin.vm.CreateDisposable: dest is the disposable template, or dom0 for the caller's
 * default_dispvm. Returns the new name (or uuid:<uuid> for payload "uuid"). */
static int vm_create_disposable(struct api_call *c) {
    const char *a = c->req->arg;
    bool want_uuid = c->req->payload_len == 4 && memcmp(c->req->payload, "uuid", 4) == 0;
    if (*a && strcmp(a, "preload") != 0)
        return qerr_set(c->err, EXC_PERMISSION, "Argument not in \"'', 'preload'\"");
    if (c->req->payload_len && !want_uuid)
        return qerr_set(c->err, EXC_PROTOCOL, "Invalid payload, expected empty string or 'uuid'");
    struct qube *tpl = c->dest->klass == QUBE_ADMINVM
                           ? disposable_default_template(c->app, c->src, c->err)
                           : c->dest;
    if (!tpl)
        return -1;
    if (!disposable_template_ok(c->app, tpl))
        return qerr_set(c->err, EXC_QUBES,
                        "'%s' is not a disposable template "
                        "(template_for_dispvms is not set)",
                        tpl->name);
    if (*a) { /* "preload": a refill only, never above max (the boot unit, by hand) */
        if (c->preload)
            preload_refill(c->preload, tpl, "autostart was requested");
        return 0;
    }
    if (c->preload && c->sink)
        return create_from_preload(c, tpl, want_uuid);
    return reply_disposable(c, disposable_create(c->app, tpl, c->src->name, c->err), want_uuid);
}

#define BARE (API_NO_ARG | API_NO_PAYLOAD)
const struct api_method API_VM_METHODS[] = {
    {"admin.vm.List", vm_list, BARE},
    {"admin.vm.Create.AppVM", vm_create_appvm, API_DEST_ADMINVM},
    {"admin.vm.Create.DispVM", vm_create_dispvm, API_DEST_ADMINVM},
    {"admin.vm.Create.StandaloneVM", vm_create_standalonevm, API_DEST_ADMINVM},
    {"admin.vm.Create.TemplateVM", vm_create_templatevm, API_DEST_ADMINVM},
    {"admin.vm.CreateInPool.AppVM", vm_create_in_pool_appvm, API_DEST_ADMINVM},
    {"admin.vm.CreateInPool.DispVM", vm_create_in_pool_dispvm, API_DEST_ADMINVM},
    {"admin.vm.CreateInPool.StandaloneVM", vm_create_in_pool_standalonevm, API_DEST_ADMINVM},
    {"admin.vm.CreateInPool.TemplateVM", vm_create_in_pool_templatevm, API_DEST_ADMINVM},
    {"admin.vm.Remove", vm_remove, BARE},
    {"admin.vm.CurrentState", vm_current_state, BARE},
    {"admin.vm.Start", vm_start, BARE | API_DEST_NOT_ADMINVM},
    {"admin.vm.Shutdown", vm_shutdown, API_NO_PAYLOAD | API_DEST_NOT_ADMINVM},
    {"admin.vm.Kill", vm_kill, BARE | API_DEST_NOT_ADMINVM},
    {"admin.vm.Pause", vm_pause, BARE | API_DEST_NOT_ADMINVM},
    {"admin.vm.Unpause", vm_unpause, BARE | API_DEST_NOT_ADMINVM},
    {"admin.vm.Suspend", vm_suspend, BARE | API_DEST_NOT_ADMINVM},
    {"admin.vm.Resume", vm_resume, BARE | API_DEST_NOT_ADMINVM},
    {"admin.vm.CreateDisposable", vm_create_disposable, 0},
    {NULL, NULL, 0},
};
