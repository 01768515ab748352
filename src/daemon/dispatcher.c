#include "dispatcher.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-event.h>
#include <unistd.h>

#include "api_checks.h"
#include "device_assign.h"
#include "log.h"
#include "network.h"
#include "pool_mount.h"
#include "preload.h"
#include "props_net.h"

#define DISPATCHER_ENGINES_MAX 8
#define CLEANUP_RETRY_USEC (2 * 1000 * 1000ULL)

struct dispatcher {
    struct app *app;
    /* the engines, one per virt_mode, found by its ops' name */
    struct backend *backends[DISPATCHER_ENGINES_MAX];
    size_t n_backends;
    dispatcher_upcall_fn upcall, upcall_cancel;
    void *upcall_userdata;
    dispatcher_halted_fn halted;
    void *halted_userdata;
    struct netvm_first *waiting;     /* starts waiting for their netvm's */
    sd_event_source *cleanup_retry;  /* disposables whose removal could not be saved */
    struct block_attachment *blocks; /* block devices given to running qubes */
    size_t n_blocks;
};

/* Descriptions hold pointers into the model; they are used at once, never kept. */
struct qube_desc {
    struct backend_qube bq;
    char template_uuid[37], dvm_uuid[37];
    char virt_mode[32];
    char kernel[256], kernelopts[4096];
    char scratch_dir[4096];
    struct backend_option options[DISPATCHER_OPTIONS_MAX];
    struct backend_option services[DISPATCHER_SERVICES_MAX];
};

static long prop_long(const struct app *app, const struct qube *q, int id) {
    char buf[64];
    bool is_default;
    return strtol(app_prop_get(app, q, &PROP_DEFS[id], buf, sizeof(buf), &is_default), NULL, 10);
}

static void prop_copy(const struct app *app, const struct qube *q, int id, char *out, size_t size) {
    char buf[4096];
    bool is_default;
    snprintf(out, size, "%s", app_prop_get(app, q, &PROP_DEFS[id], buf, sizeof(buf), &is_default));
}

static const struct qube *prop_qube(const struct app *app, const struct qube *q, int id) {
    char buf[64];
    bool is_default;
    const char *name = app_prop_get(app, q, &PROP_DEFS[id], buf, sizeof(buf), &is_default);
    return *name ? app_find(app, name) : NULL;
}

static enum backend_kind kind_of(const struct qube *q) {
    switch (q->klass) {
    case QUBE_TEMPLATEVM: return BACKEND_TEMPLATEVM;
    case QUBE_DISPVM: return BACKEND_DISPVM;
    case QUBE_STANDALONEVM: return BACKEND_STANDALONEVM;
    default: return BACKEND_APPVM;
    }
}

/* Copies the qube's virt_mode into buf (the model may answer with a pointer of its own). */
static const char *virt_mode_of(const struct app *app, const struct qube *q, char *buf,
                                size_t size) {
    char tmp[32];
    bool is_default;
    snprintf(buf, size, "%s",
             app_prop_get(app, q, &PROP_DEFS[P_VIRT_MODE], tmp, sizeof(tmp), &is_default));
    return buf;
}

/* The engine's knobs are features named "<virt_mode>-KEY" (crun's annotations): the
 * daemon passes them on without knowing what they mean. The qube's own win over its
 * template's, as with every feature read along the template chain. */
size_t dispatcher_qube_options(const struct app *app, const struct qube *q,
                               struct backend_option *out, size_t max) {
    char mode[32], prefix[40];
    int plen = snprintf(prefix, sizeof(prefix), "%s-", virt_mode_of(app, q, mode, sizeof(mode)));
    size_t n = 0;
    for (int depth = 0; q && depth < 8; depth++) {
        for (size_t i = 0; i < q->features.n; i++) {
            const struct strmap_entry *f = &q->features.e[i];
            if (strncmp(f->key, prefix, (size_t)plen) != 0 || backend_option(out, n, f->key + plen))
                continue;
            if (n == max) {
                log_warning("%s: more than %zu %s* features; the rest are ignored", q->name, max,
                            prefix);
                return n;
            }
            out[n++] = (struct backend_option){f->key + plen, f->value};
        }
        q = (CLASS_BIT(q->klass) & PROP_DEFS[P_TEMPLATE].classes) ? prop_qube(app, q, P_TEMPLATE)
                                                                  : NULL;
    }
    return n;
}

/* Qubes' services: the qube's own service.NAME features (a disposable has copies of its
 * template's, made when it was created), NAME with "1" for a true value and "0" for an
 * empty one, as Qubes writes /qubes-service/NAME. Names an engine could not make a file
 * of (set before they were checked) are left out, as Qubes leaves them out. */
size_t dispatcher_qube_services(const struct qube *q, struct backend_option *out, size_t max) {
    size_t n = 0;
    for (size_t i = 0; i < q->features.n; i++) {
        const struct strmap_entry *f = &q->features.e[i];
        struct qerr err = {0};
        if (strncmp(f->key, SERVICE_FEATURE_PREFIX, strlen(SERVICE_FEATURE_PREFIX)) != 0 ||
            check_service_feature(f->key, &err) < 0 ||
            strlen(f->key) - strlen(SERVICE_FEATURE_PREFIX) > SERVICE_NAME_MAX)
            continue;
        if (n == max) {
            log_warning("%s: more than %zu services; the rest are not shown to it", q->name, max);
            break;
        }
        out[n++] = (struct backend_option){f->key + strlen(SERVICE_FEATURE_PREFIX),
                                           *f->value ? "1" : "0"};
    }
    return n;
}

bool dispatcher_is_option_feature(const struct dispatcher *disp, const char *feature) {
    for (size_t i = 0; i < disp->n_backends; i++) {
        size_t len = strlen(disp->backends[i]->ops->name);
        if (strncmp(feature, disp->backends[i]->ops->name, len) == 0 && feature[len] == '-')
            return true;
    }
    return false;
}

/* Qubes' feature `gui` (read along the template chain) gives a qube a GUI agent; a
 * qube without it is headless and pays nothing for the GUI (docs/gui.md). */
bool dispatcher_qube_gui(const struct app *app, const struct qube *q) {
    const char *v = app_feature_check(app, q, "gui", FEATURE_FALLBACK_TEMPLATE);
    return v && *v && strcmp(v, "0") != 0 && strcmp(v, "False") != 0;
}

/* AppVM: root from its template. DispVM: root from its disposable template's template,
 * private from the disposable template. */
static void describe(const struct app *app, const struct qube *q, struct qube_desc *d) {
    *d = (struct qube_desc){0};
    virt_mode_of(app, q, d->virt_mode, sizeof(d->virt_mode));
    const struct qube *tpl = (CLASS_BIT(q->klass) & PROP_DEFS[P_TEMPLATE].classes)
                                 ? prop_qube(app, q, P_TEMPLATE)
                                 : NULL;
    if (q->klass == QUBE_DISPVM && tpl) {
        snprintf(d->dvm_uuid, sizeof(d->dvm_uuid), "%s", tpl->uuid);
        tpl = prop_qube(app, tpl, P_TEMPLATE);
    }
    if (tpl)
        snprintf(d->template_uuid, sizeof(d->template_uuid), "%s", tpl->uuid);
    prop_copy(app, q, P_KERNEL, d->kernel, sizeof(d->kernel));
    prop_copy(app, q, P_KERNELOPTS, d->kernelopts, sizeof(d->kernelopts));
    d->bq = (struct backend_qube){
        .name = q->name,
        .uuid = q->uuid,
        .kind = kind_of(q),
        .root_source = *d->template_uuid ? d->template_uuid : NULL,
        .private_source = *d->dvm_uuid ? d->dvm_uuid : NULL,
        .memory_mib = (uint64_t)prop_long(app, q, P_MEMORY),
        .maxmem_mib = (uint64_t)prop_long(app, q, P_MAXMEM),
        .vcpus = (unsigned)prop_long(app, q, P_VCPUS),
        .qrexec_timeout = (unsigned)prop_long(app, q, P_QREXEC_TIMEOUT),
        .shutdown_timeout = (unsigned)prop_long(app, q, P_SHUTDOWN_TIMEOUT),
        .kernel = d->kernel,
        .kernelopts = d->kernelopts,
        .options = d->options,
        .gui = dispatcher_qube_gui(app, q),
    };
    const struct pool *scratch = app_scratch_pool(app, q);
    if (scratch && pool_path(app, scratch->name, d->scratch_dir, sizeof(d->scratch_dir)) == 0)
        d->bq.scratch_dir = d->scratch_dir;
    d->bq.n_options = dispatcher_qube_options(app, q, d->options, DISPATCHER_OPTIONS_MAX);
    d->bq.services = d->services;
    d->bq.n_services = dispatcher_qube_services(q, d->services, DISPATCHER_SERVICES_MAX);
}

static struct backend *backend_named(struct dispatcher *disp, const char *mode) {
    for (size_t i = 0; i < disp->n_backends; i++)
        if (strcmp(disp->backends[i]->ops->name, mode) == 0)
            return disp->backends[i];
    return NULL;
}

/* The qube's own engine, chosen by its virt_mode. An engine that cannot run here is an
 * object that refuses with its reason, so only a mode no engine has is handled here. */
static struct backend *backend_for(struct dispatcher *disp, const struct qube *q,
                                   struct qerr *err) {
    char mode[32];
    struct backend *b = backend_named(disp, virt_mode_of(disp->app, q, mode, sizeof(mode)));
    if (!b)
        qerr_set(err, EXC_QUBES,
                 "Qube '%s': virt_mode=%s is not available: this dispenserd "
                 "has no such engine",
                 q->name, mode);
    return b;
}

/* The one place where an engine's failure (-errno and words, backend.h) becomes a Qubes
 * exception. Returns -1, as every call of this module does on failure. */
static int dispatcher_failed(const struct qube *q, int r, const char *why, struct qerr *err) {
    const char *exc = EXC_QUBES;
    switch (r) {
    case -ESRCH: exc = EXC_VM_NOT_STARTED; break;
    case -EAGAIN: exc = EXC_VM_NOT_RUNNING; break;
    case -EBUSY: exc = EXC_VM_NOT_HALTED; break;
    case -EALREADY: exc = EXC_VM_NOT_PAUSED; break;
    case -EINVAL: exc = EXC_VALUE; break;
    case -EOPNOTSUPP: exc = EXC_NOT_IMPLEMENTED; break;
    }
    if (!why || !*why)
        return qerr_set(err, exc, "%s: '%s'", strerror(r < 0 ? -r : EIO), q->name);
    if (r == -ENODEV) /* an engine that cannot run here does not know whose call it was */
        return qerr_set(err, exc, "Qube '%s': %s", q->name, why);
    return qerr_set(err, exc, "%s", why);
}

/* Calls op-returning expression `call` with a fresh `why`, mapping a failure into err. */
#define DISPATCHER_CALL(q, err, call)                             \
    ({                                                            \
        struct backend_why why = {{0}};                           \
        int r_ = (call);                                          \
        r_ < 0 ? dispatcher_failed((q), r_, why.msg, (err)) : r_; \
    })

static void blocks_drop(struct dispatcher *disp, size_t i) {
    disp->blocks[i] = disp->blocks[--disp->n_blocks];
}

/* A halted qube has no devices: its /dev and its cgroup went with it (qubesd tells
 * device-detach for each, as here). */
static void blocks_of_halted(struct dispatcher *disp, const struct qube *q) {
    for (size_t i = disp->n_blocks; i-- > 0;)
        if (strcmp(disp->blocks[i].frontend, q->name) == 0) {
            char port[64];
            snprintf(port, sizeof(port), "dom0:%s", disp->blocks[i].port_id);
            app_emit(disp->app, q, "device-detach:block", &(struct wire_kv){"port", port}, 1);
            blocks_drop(disp, i);
        }
}

static void set_power(struct dispatcher *disp, struct qube *q, enum power_state state) {
    if (q->power == POWER_HALTED && state != POWER_HALTED)
        app_qube_run_begins(disp->app, q);
    else if (state == POWER_HALTED)
        app_qube_run_ends(q);
    if (state == POWER_HALTED)
        blocks_of_halted(disp, q);
    q->power = state;
    q->suspended = false; /* dispatcher_suspend sets it after its pause */
}

static void emit(struct dispatcher *disp, const struct qube *q, const char *event, const char *key,
                 const char *value) {
    struct wire_kv kv = {key, value};
    app_emit(disp->app, q, event, key ? &kv : NULL, key ? 1 : 0);
}

/* ---- start ---- */

struct pending {
    struct dispatcher *disp;
    char name[32];
    dispatcher_done_fn done;
    void *userdata;
};

static struct pending *pending_new(struct dispatcher *disp, const struct qube *q,
                                   dispatcher_done_fn done, void *userdata) {
    struct pending *p = xcalloc(1, sizeof(*p));
    p->disp = disp;
    snprintf(p->name, sizeof(p->name), "%s", q->name);
    p->done = done;
    p->userdata = userdata;
    return p;
}

static void resume_waiting(struct dispatcher *disp, const char *name, int r, const char *why);

static void on_started(void *userdata, int r, const char *why) {
    struct pending *p = userdata;
    struct qube *q = app_find(p->disp->app, p->name);
    struct qerr err = {0};
    if (q && r == 0) {
        set_power(p->disp, q, POWER_RUNNING);
        r = devices_attach_assigned(p->disp, q, &err);
    }
    if (q && r == 0) {
        network_netvm_started(p->disp, q);
        emit(p->disp, q, "domain-start", "start_guid", "False");
    } else if (q && err.exc) { /* a required device could not be attached: no start */
        emit(p->disp, q, "domain-start-failed", "reason", err.msg);
        log_warning("%s: %s", q->name, err.msg);
        struct qerr kill_err = {0};
        dispatcher_kill_nowait(p->disp, q, &kill_err);
    } else if (q) {
        dispatcher_failed(q, r, why, &err);
        set_power(p->disp, q, POWER_HALTED);
        network_qube_halted(p->disp, q);
        emit(p->disp, q, "domain-start-failed", "reason", err.msg);
        log_warning("%s", err.msg);
    } else if (r < 0) {
        qerr_set(&err, EXC_QUBES, "%s", why ? why : "start failed");
    }
    if (p->done)
        p->done(p->userdata, r < 0 ? -1 : 0, r < 0 ? &err : NULL);
    resume_waiting(p->disp, p->name, r, r < 0 ? err.msg : NULL);
    free(p);
}

static int start(struct dispatcher *disp, struct qube *q, bool background, dispatcher_done_fn done,
                 void *userdata, struct qerr *err);

int dispatcher_start(struct dispatcher *disp, struct qube *q, dispatcher_done_fn done,
                     void *userdata, struct qerr *err) {
    return start(disp, q, false, done, userdata, err);
}

int dispatcher_start_background(struct dispatcher *disp, struct qube *q, dispatcher_done_fn done,
                                void *userdata, struct qerr *err) {
    return start(disp, q, true, done, userdata, err);
}

/* Qubes starts a qube's netvm first when it is not running; starts that find it starting
 * wait for it (two clients started at once, a preload refill). */
struct netvm_first {
    struct netvm_first *next;
    struct dispatcher *disp;
    char name[32], netvm[32];
    bool background;
    dispatcher_done_fn done;
    void *userdata;
};

static void wait_for_netvm(struct dispatcher *disp, const struct qube *q, const struct qube *netvm,
                           bool background, dispatcher_done_fn done, void *userdata) {
    struct netvm_first *nf = xcalloc(1, sizeof(*nf));
    *nf = (struct netvm_first){disp->waiting, disp, "", "", background, done, userdata};
    snprintf(nf->name, sizeof(nf->name), "%s", q->name);
    snprintf(nf->netvm, sizeof(nf->netvm), "%s", netvm->name);
    disp->waiting = nf;
    log_info("%s: waiting for its netvm %s to start", q->name, netvm->name);
}

/* The netvm `name` has started (r = 0) or failed: the starts waiting for it go on. */
static void resume_waiting(struct dispatcher *disp, const char *name, int r, const char *why) {
    struct netvm_first **pp = &disp->waiting, *ready = NULL;
    while (*pp) { /* taken off the list first: the starts below may add to it */
        struct netvm_first *nf = *pp;
        if (strcmp(nf->netvm, name) == 0) {
            *pp = nf->next;
            nf->next = ready;
            ready = nf;
        } else {
            pp = &nf->next;
        }
    }
    while (ready) {
        struct netvm_first *nf = ready;
        ready = nf->next;
        struct qerr err = {0};
        struct qube *q = app_find(disp->app, nf->name);
        int rr = -1;
        if (r < 0)
            qerr_set(&err, EXC_QUBES, "Cannot start the netvm of '%s': %s", nf->name,
                     why ? why : "failed");
        else if (!q)
            qerr_set(&err, EXC_VM_NOT_FOUND, "'%s' is gone", nf->name);
        else
            rr = start(disp, q, nf->background, nf->done, nf->userdata, &err);
        if (rr < 0 && nf->done)
            nf->done(nf->userdata, -1, &err);
        free(nf);
    }
}

static int start(struct dispatcher *disp, struct qube *q, bool background, dispatcher_done_fn done,
                 void *userdata, struct qerr *err) {
    if (q->power != POWER_HALTED)
        return qerr_set(err, EXC_VM_NOT_HALTED, "Domain is not powered off: '%s'", q->name);
    struct backend *b = backend_for(disp, q, err);
    if (!b)
        return -1;
    struct qube *netvm = net_netvm_of(disp->app, q);
    if (netvm && netvm->power == POWER_HALTED) {
        log_info("%s: starting its netvm %s first", q->name, netvm->name);
        if (start(disp, netvm, background, NULL, NULL, err) < 0)
            return -1;
    }
    if (netvm && netvm->power == POWER_TRANSIENT) {
        wait_for_netvm(disp, q, netvm, background, done, userdata);
        return 0;
    }
    if (devices_check_required(disp, q, err) < 0)
        return -1;
    struct qube_desc d;
    describe(disp->app, q, &d);
    d.bq.background = background;
    d.bq.hibernatable = background && preload_may_hibernate(disp->app, q);
    emit(disp, q, "domain-pre-start", "start_guid", "False");
    set_power(disp, q, POWER_TRANSIENT);
    struct network_link link = {.netvm_netns = -1};
    bool linkable = b->ops->net_attach != NULL; /* an engine that can link its qubes */
    if (netvm && !linkable)
        log_warning("%s: starts without network: virt_mode=%s cannot link to a netvm yet", q->name,
                    b->ops->name);
    if (linkable && network_link_prepare(disp, q, &link, &d.bq.net, err) < 0) {
        set_power(disp, q, POWER_HALTED);
        network_qube_halted(disp, q);
        emit(disp, q, "domain-start-failed", "reason", err->msg);
        return -1;
    }
    struct pending *p = pending_new(disp, q, done, userdata);
    int r = DISPATCHER_CALL(q, err, b->ops->start(b, &d.bq, on_started, p, &why));
    network_link_release(&link);
    if (r < 0) {
        free(p);
        set_power(disp, q, POWER_HALTED);
        network_qube_halted(disp, q);
        emit(disp, q, "domain-start-failed", "reason", err->msg);
        return -1;
    }
    return 0;
}

/* ---- what engines report ---- */

static void schedule_cleanup_retry(struct dispatcher *disp);

/* An unnamed disposable lives as long as its qube: gone with it (Qubes' auto_cleanup). */
static void auto_cleanup(struct dispatcher *disp, struct qube *q) {
    char buf[16];
    bool is_default;
    if (q->klass != QUBE_DISPVM || strcmp(app_prop_get(disp->app, q, &PROP_DEFS[P_AUTO_CLEANUP],
                                                       buf, sizeof(buf), &is_default),
                                          "True") != 0)
        return;
    struct qerr err = {0};
    char name[32];
    snprintf(name, sizeof(name), "%s", q->name);
    bool batch = app_batch_begin_ephemeral(disp->app, &err) == 0;
    if (dispatcher_remove(disp, q, &err) < 0) {
        log_error("%s: auto cleanup failed: %s", name, err.msg);
        if (!batch) /* the database refused even to begin: try again later */
            schedule_cleanup_retry(disp);
    }
    if (batch && app_batch_end(disp->app, &err) < 0) {
        /* the qube is back in the model, halted, as the database still has it */
        log_error("%s: auto cleanup not saved: %s", name, err.msg);
        schedule_cleanup_retry(disp);
    }
}

static void on_exited(void *userdata, const char *name, int status) {
    struct dispatcher *disp = userdata;
    struct qube *q = app_find(disp->app, name);
    if (!q)
        return;
    set_power(disp, q, POWER_HALTED);
    network_qube_halted(disp, q);
    emit(disp, q, "domain-shutdown", NULL, NULL);
    /* told while the qube is still there: a preload that stopped must be seen as one
     * (its list, its template) before auto_cleanup removes it */
    if (disp->halted)
        disp->halted(disp->halted_userdata, name);
    if ((q = app_find(disp->app, name)))
        auto_cleanup(disp, q);
}

void dispatcher_set_halted_hook(struct dispatcher *disp, dispatcher_halted_fn fn, void *userdata) {
    disp->halted = fn;
    disp->halted_userdata = userdata;
}

/* ---- the other life-cycle calls ---- */

static bool is_running(const struct qube *q) {
    return q->power == POWER_RUNNING || q->power == POWER_PAUSED || q->power == POWER_TRANSIENT ||
           q->power == POWER_HALTING;
}

static int not_started(const struct qube *q, struct qerr *err) {
    return qerr_set(err, EXC_VM_NOT_STARTED, "Domain is powered off: '%s'", q->name);
}

struct stop_pending {
    struct dispatcher *disp;
    dispatcher_done_fn done;
    void *userdata;
};

static void on_stopped(void *userdata, int r, const char *why) {
    struct stop_pending *p = userdata;
    struct qerr err = {0};
    if (r < 0)
        qerr_set(&err, EXC_QUBES, "%s", why && *why ? why : strerror(-r));
    if (p->done)
        p->done(p->userdata, r < 0 ? -1 : 0, r < 0 ? &err : NULL);
    free(p);
}

int dispatcher_shutdown(struct dispatcher *disp, struct qube *q, bool force,
                        dispatcher_done_fn done, void *userdata, struct qerr *err) {
    struct backend *b = is_running(q) ? backend_for(disp, q, err) : NULL;
    if (!is_running(q))
        return not_started(q, err);
    if (!b || network_check_shutdown(disp, q, force, err) < 0)
        return -1;
    emit(disp, q, "domain-pre-shutdown", "force", force ? "True" : "False");
    struct stop_pending *p = NULL;
    if (done) {
        p = xcalloc(1, sizeof(*p));
        *p = (struct stop_pending){disp, done, userdata};
    }
    if (DISPATCHER_CALL(q, err,
                        b->ops->shutdown(b, q->name, force, p ? on_stopped : NULL, p, &why)) < 0) {
        free(p);
        return -1;
    }
    set_power(disp, q, POWER_HALTING);
    return 0;
}

int dispatcher_kill(struct dispatcher *disp, struct qube *q, struct qerr *err) {
    if (!is_running(q))
        return not_started(q, err);
    struct backend *b = backend_for(disp, q, err);
    return b ? DISPATCHER_CALL(q, err, b->ops->kill(b, q->name, &why)) : -1;
}

int dispatcher_kill_nowait(struct dispatcher *disp, struct qube *q, struct qerr *err) {
    if (!is_running(q))
        return not_started(q, err);
    struct backend *b = backend_for(disp, q, err);
    return b ? DISPATCHER_CALL(q, err, b->ops->kill_nowait(b, q->name, &why)) : -1;
}

int dispatcher_reclaim(struct dispatcher *disp, const struct qube *q) {
    struct qerr err;
    struct backend *b = backend_for(disp, q, &err);
    return b && b->ops->reclaim ? b->ops->reclaim(b, q->name) : -ENOTSUP;
}

int dispatcher_pause(struct dispatcher *disp, struct qube *q, struct qerr *err) {
    if (q->power != POWER_RUNNING)
        return qerr_set(err, EXC_VM_NOT_RUNNING,
                        "Domain not running (either powered off or "
                        "paused): '%s'",
                        q->name);
    struct backend *b = backend_for(disp, q, err);
    if (!b || DISPATCHER_CALL(q, err, b->ops->pause(b, q->name, &why)) < 0)
        return -1;
    set_power(disp, q, POWER_PAUSED);
    emit(disp, q, "domain-paused", NULL, NULL);
    return 0;
}

int dispatcher_foreground(struct dispatcher *disp, const struct qube *q) {
    struct qerr err;
    struct backend *b = backend_for(disp, q, &err);
    return b && b->ops->foreground ? b->ops->foreground(b, q->name) : -ENOTSUP;
}

int dispatcher_unpause(struct dispatcher *disp, struct qube *q, struct qerr *err) {
    if (q->power != POWER_PAUSED || q->suspended) /* a suspended one wakes by Resume */
        return qerr_set(err, EXC_VM_NOT_PAUSED, "Domain is not paused: '%s'", q->name);
    struct backend *b = backend_for(disp, q, err);
    if (!b || DISPATCHER_CALL(q, err, b->ops->unpause(b, q->name, &why)) < 0)
        return -1;
    set_power(disp, q, POWER_RUNNING);
    emit(disp, q, "domain-unpaused", NULL, NULL);
    return 0;
}

/* Qubes' suspend: the engine's deepest cheap sleep. What the qube can spare is given
 * back (the engine's reclaim: a container's page cache, a VM's balloon) while it still
 * runs, then it is frozen. A paused qube is thawed for the reclaim. */
int dispatcher_suspend(struct dispatcher *disp, struct qube *q, struct qerr *err) {
    if ((q->power != POWER_RUNNING && q->power != POWER_PAUSED) || q->suspended)
        return qerr_set(err, EXC_VM_NOT_RUNNING,
                        "Domain not running (either powered off or "
                        "suspended): '%s'",
                        q->name);
    struct backend *b = backend_for(disp, q, err);
    if (!b)
        return -1;
    if (q->power == POWER_PAUSED && dispatcher_unpause(disp, q, err) < 0)
        return -1;
    int r = dispatcher_reclaim(disp, q);
    if (r < 0 && r != -ENOTSUP && r != -EAGAIN)
        log_warning("%s: nothing reclaimed before the suspend: %s", q->name, strerror(-r));
    if (DISPATCHER_CALL(q, err, b->ops->pause(b, q->name, &why)) < 0)
        return -1;
    set_power(disp, q, POWER_PAUSED);
    q->suspended = true;
    emit(disp, q, "domain-paused", NULL, NULL);
    return 0;
}

/* Qubes' resume: a suspended qube wakes up; any other is unpaused. */
int dispatcher_resume(struct dispatcher *disp, struct qube *q, struct qerr *err) {
    if (!q->suspended)
        return dispatcher_unpause(disp, q, err);
    struct backend *b = backend_for(disp, q, err);
    if (!b || DISPATCHER_CALL(q, err, b->ops->unpause(b, q->name, &why)) < 0)
        return -1;
    set_power(disp, q, POWER_RUNNING);
    emit(disp, q, "domain-resumed", NULL, NULL);
    return 0;
}

/* ---- hibernation (a preload's tier below paused: docs/preload.md) ---- */

bool dispatcher_can_hibernate(struct dispatcher *disp, const struct qube *q) {
    struct qerr err;
    struct backend *b = backend_for(disp, q, &err);
    return b && b->ops->hibernate && b->ops->wake;
}

/* The engine of a paused qube, if it can hibernate and wake qubes (NULL with err). */
static struct backend *hibernation_backend(struct dispatcher *disp, struct qube *q,
                                           struct qerr *err) {
    if (q->power != POWER_PAUSED) {
        qerr_set(err, EXC_VM_NOT_PAUSED, "Domain is not paused: '%s'", q->name);
        return NULL;
    }
    struct backend *b = backend_for(disp, q, err);
    if (b && (!b->ops->hibernate || !b->ops->wake)) {
        qerr_set(err, EXC_NOT_IMPLEMENTED, "virt_mode=%s qubes cannot be hibernated", b->ops->name);
        return NULL;
    }
    return b;
}

static void on_hibernated(void *userdata, int r, const char *why) {
    struct pending *p = userdata;
    struct qerr err = {0};
    if (r < 0)
        qerr_set(&err, EXC_QUBES, "%s", why && *why ? why : strerror(-r));
    if (p->done)
        p->done(p->userdata, r < 0 ? -1 : 0, r < 0 ? &err : NULL);
    free(p);
}

/* The qube stays paused to the model: only its engine knows it has no process now. */
int dispatcher_hibernate(struct dispatcher *disp, struct qube *q, dispatcher_done_fn done,
                         void *userdata, struct qerr *err) {
    struct backend *b = hibernation_backend(disp, q, err);
    if (!b)
        return -1;
    struct pending *p = pending_new(disp, q, done, userdata);
    if (DISPATCHER_CALL(q, err, b->ops->hibernate(b, q->name, on_hibernated, p, &why)) < 0) {
        free(p);
        return -1;
    }
    return 0;
}

/* Woken: running, as after an unpause; failed: gone, as after an exit. */
static void on_woken(void *userdata, int r, const char *why) {
    struct pending *p = userdata;
    struct qube *q = app_find(p->disp->app, p->name);
    struct qerr err = {0};
    if (r < 0) {
        qerr_set(&err, EXC_QUBES, "%s", why && *why ? why : strerror(-r));
        log_warning("%s: %s", p->name, err.msg);
        if (q)
            on_exited(p->disp, p->name, 0);
    } else if (q) {
        set_power(p->disp, q, POWER_RUNNING);
        emit(p->disp, q, "domain-unpaused", NULL, NULL);
    }
    if (p->done)
        p->done(p->userdata, r < 0 ? -1 : 0, r < 0 ? &err : NULL);
    free(p);
}

int dispatcher_wake(struct dispatcher *disp, struct qube *q, dispatcher_done_fn done,
                    void *userdata, struct qerr *err) {
    struct backend *b = hibernation_backend(disp, q, err);
    if (!b)
        return -1;
    struct qube_desc d;
    describe(disp->app, q, &d);
    struct network_link link = {.netvm_netns = -1};
    if (b->ops->net_attach && network_link_prepare(disp, q, &link, &d.bq.net, err) < 0)
        return -1;
    char name[32];
    snprintf(name, sizeof(name), "%s", q->name);
    struct pending *p = pending_new(disp, q, done, userdata);
    int r = DISPATCHER_CALL(q, err, b->ops->wake(b, &d.bq, on_woken, p, &why));
    network_link_release(&link);
    if (r < 0) {
        free(p);
        if (app_find(disp->app, name)) /* gone in its engine: as after an exit */
            on_exited(disp, name, 0);
        return -1;
    }
    return 0;
}

/* ---- block devices ---- */

static struct backend *block_engine(struct dispatcher *disp, const struct qube *q,
                                    struct qerr *err) {
    if (!is_running(q) || q->power == POWER_HALTING)
        return qerr_set(err, EXC_VM_NOT_RUNNING,
                        "VM not running, cannot attach device, do you mean `assign`?"),
               NULL;
    struct backend *b = backend_for(disp, q, err);
    if (b && !b->ops->block_attach) {
        qerr_set(err, EXC_NOT_IMPLEMENTED, "virt_mode=%s qubes cannot take block devices yet",
                 b->ops->name);
        return NULL;
    }
    return b;
}

bool dispatcher_can_take_blocks(struct dispatcher *disp, const struct qube *q, struct qerr *err) {
    struct backend *b = backend_for(disp, q, err);
    if (b && !b->ops->block_attach)
        qerr_set(err, EXC_NOT_IMPLEMENTED, "virt_mode=%s qubes cannot take block devices yet",
                 b->ops->name);
    return b && b->ops->block_attach;
}

static int block_failed(const struct qube *q, int r, const char *why, struct qerr *err) {
    if (r == -EAGAIN)
        return qerr_set(err, EXC_VM_NOT_RUNNING, "Domain not running: '%s'", q->name);
    return qerr_set(err, EXC_QUBES, "%s", *why ? why : strerror(-r));
}

int dispatcher_block_attach(struct dispatcher *disp, struct qube *q,
                            const struct block_attachment *a, struct qerr *err) {
    struct backend *b = block_engine(disp, q, err);
    if (!b)
        return -1;
    struct backend_block dev = {a->major, a->minor, a->frontend_dev, a->read_only};
    struct backend_why why = {{0}};
    int r = b->ops->block_attach(b, q->name, &dev, &why);
    if (r < 0)
        return block_failed(q, r, why.msg, err);
    disp->blocks = xrealloc(disp->blocks, (disp->n_blocks + 1) * sizeof(*disp->blocks));
    disp->blocks[disp->n_blocks++] = *a;
    return 0;
}

int dispatcher_block_detach(struct dispatcher *disp, struct qube *q, const char *port_id,
                            struct qerr *err) {
    size_t i = 0;
    while (i < disp->n_blocks && (strcmp(disp->blocks[i].frontend, q->name) != 0 ||
                                  strcmp(disp->blocks[i].port_id, port_id) != 0))
        i++;
    if (i == disp->n_blocks)
        return qerr_set(err, EXC_DEVICE_NOT_ASSIGNED, "block device %s not attached to %s", port_id,
                        q->name);
    struct backend *b = block_engine(disp, q, err);
    if (!b)
        return -1;
    const struct block_attachment *a = &disp->blocks[i];
    struct backend_block dev = {a->major, a->minor, a->frontend_dev, a->read_only};
    struct backend_why why = {{0}};
    int r = b->ops->block_detach(b, q->name, &dev, &why);
    if (r < 0)
        return block_failed(q, r, why.msg, err);
    blocks_drop(disp, i);
    return 0;
}

const struct block_attachment *dispatcher_block_attachments(const struct dispatcher *disp,
                                                            size_t *n) {
    *n = disp->n_blocks;
    return disp->blocks;
}

int dispatcher_stats(struct dispatcher *disp, const struct qube *q, struct backend_stats *out) {
    struct qerr err;
    struct backend *b = is_running(q) ? backend_for(disp, q, &err) : NULL;
    return b ? b->ops->stats(b, q->name, out) : -1;
}

int64_t dispatcher_memory_headroom_mib(struct dispatcher *disp) {
    int64_t tightest = -1;
    for (size_t i = 0; i < disp->n_backends; i++) {
        struct backend *b = disp->backends[i];
        uint64_t bytes;
        if (b->ops->memory_headroom && b->ops->memory_headroom(b, &bytes) == 0 &&
            (tightest < 0 || (int64_t)(bytes >> 20) < tightest))
            tightest = (int64_t)(bytes >> 20);
    }
    return tightest;
}

/* ---- volumes ---- */

int dispatcher_remove(struct dispatcher *disp, struct qube *q, struct qerr *err) {
    struct qube_desc d;
    describe(disp->app, q, &d);
    char name[32], uuid[37];
    snprintf(name, sizeof(name), "%s", q->name);
    snprintf(uuid, sizeof(uuid), "%s", q->uuid);
    d.bq.name = name;
    d.bq.uuid = uuid;
    struct backend *b = q->klass != QUBE_ADMINVM ? backend_named(disp, d.virt_mode) : NULL;
    if (app_remove(disp->app, q, err) < 0) /* frees q */
        return -1;
    /* The definition is gone and committed; volumes left by a failure here are removed
     * by the next start's cleanup, as they belong to no qube. */
    struct backend_why why = {{0}};
    if (b && b->ops->remove_volumes(b, &d.bq, &why) < 0)
        log_warning("%s: %s", name, why.msg);
    return 0;
}

int dispatcher_volume_info(struct dispatcher *disp, const struct qube *q, const char *volume,
                           struct backend_volume_info *out, struct qerr *err) {
    struct backend *b = backend_for(disp, q, err);
    if (!b)
        return -1;
    struct qube_desc d;
    describe(disp->app, q, &d);
    return DISPATCHER_CALL(q, err, b->ops->volume_info(b, &d.bq, volume, out, &why));
}

int dispatcher_import_begin(struct dispatcher *disp, const struct qube *q, const char *volume,
                            char *path, size_t size, struct qerr *err) {
    struct backend *b = backend_for(disp, q, err);
    if (!b)
        return -1;
    if (is_running(q))
        return qerr_set(err, EXC_VM_NOT_HALTED, "Domain is not powered off: '%s'", q->name);
    struct qube_desc d;
    describe(disp->app, q, &d);
    return DISPATCHER_CALL(q, err, b->ops->import_begin(b, &d.bq, volume, path, size, &why));
}

int dispatcher_import_end(struct dispatcher *disp, const struct qube *q, const char *volume,
                          bool commit, struct qerr *err) {
    struct backend *b = backend_for(disp, q, err);
    if (!b)
        return -1;
    struct qube_desc d;
    describe(disp->app, q, &d);
    return DISPATCHER_CALL(q, err, b->ops->import_end(b, &d.bq, volume, commit, &why));
}

/* ---- volume changes (api_volume.c) ---- */

static int volume_unsupported(const struct qube *q, const struct backend *b, struct qerr *err) {
    return qerr_set(err, EXC_NOT_IMPLEMENTED,
                    "Volumes of virt_mode=%s qubes cannot do that: '%s' (see docs/admin-api.md)",
                    b->ops->name, q->name);
}

int dispatcher_volume_revisions(struct dispatcher *disp, const struct qube *q, const char *volume,
                                struct backend_volume_revision *out, size_t max, size_t *n,
                                struct qerr *err) {
    struct backend *b = backend_for(disp, q, err);
    if (!b)
        return -1;
    if (!b->ops->volume_revisions) {
        *n = 0; /* nothing to revert to is a true answer for any engine */
        return 0;
    }
    struct qube_desc d;
    describe(disp->app, q, &d);
    return DISPATCHER_CALL(q, err, b->ops->volume_revisions(b, &d.bq, volume, out, max, n, &why));
}

int dispatcher_volume_change(struct dispatcher *disp, const struct qube *q,
                             const struct backend_volume_change *change, const struct qube *src,
                             struct qerr *err) {
    struct backend *b = backend_for(disp, q, err);
    if (!b)
        return -1;
    if (!b->ops->volume_change)
        return volume_unsupported(q, b, err);
    bool config_only = change->op == BACKEND_VOLUME_SET_SIZE ||
                       change->op == BACKEND_VOLUME_SET_REVISIONS_TO_KEEP;
    if (!config_only && is_running(q))
        return qerr_set(err, EXC_VM_NOT_HALTED, "Domain is not powered off: '%s'", q->name);
    struct backend_volume_change c = *change;
    struct qube_desc d, s;
    describe(disp->app, q, &d);
    if (src) {
        struct backend *sb = backend_for(disp, src, err);
        if (!sb)
            return -1;
        if (sb != b)
            return qerr_set(err, EXC_NOT_IMPLEMENTED,
                            "Cannot clone a volume of virt_mode=%s '%s' into virt_mode=%s '%s'",
                            sb->ops->name, src->name, b->ops->name, q->name);
        describe(disp->app, src, &s);
        c.src = &s.bq;
    }
    return DISPATCHER_CALL(q, err, b->ops->volume_change(b, &d.bq, &c, &why));
}

/* ---- networking ---- */

struct app *dispatcher_app(struct dispatcher *disp) {
    return disp->app;
}

int dispatcher_netns_open(struct dispatcher *disp, const struct qube *q, int *fd,
                          struct qerr *err) {
    struct backend *b = backend_for(disp, q, err);
    if (!b)
        return -1;
    if (!b->ops->netns_open)
        return qerr_set(err, EXC_QUBES, "'%s': virt_mode=%s cannot provide network", q->name,
                        b->ops->name);
    int r = b->ops->netns_open(b, q->name, fd);
    return r < 0 ? dispatcher_failed(q, r, NULL, err) : 0;
}

int dispatcher_net_attach(struct dispatcher *disp, const struct qube *q,
                          const struct backend_net *net, struct qerr *err) {
    struct backend *b = backend_for(disp, q, err);
    if (!b)
        return -1;
    if (!b->ops->net_attach)
        return qerr_set(err, EXC_QUBES,
                        "'%s': virt_mode=%s cannot change its network while it runs", q->name,
                        b->ops->name);
    return DISPATCHER_CALL(q, err, b->ops->net_attach(b, q->name, net, &why));
}

/* ---- qrexec ---- */

int dispatcher_exec(struct dispatcher *disp, const struct qube *q,
                    const struct backend_service_call *call, backend_call_done_fn done,
                    void *userdata, struct qerr *err) {
    struct backend *b = backend_for(disp, q, err);
    return b ? DISPATCHER_CALL(q, err, b->ops->exec(b, q->name, call, done, userdata, &why)) : -1;
}

static void on_upcall(void *userdata, struct backend_upcall *call) {
    struct dispatcher *disp = userdata;
    if (disp->upcall) {
        disp->upcall(disp->upcall_userdata, call);
        return;
    }
    for (int i = 0; i < 3; i++)
        close(call->stdio[i]);
    call->from->ops->upcall_reply(call->from, call, BACKEND_CALL_FAILED, -1,
                                  "this dispenserd routes no qrexec calls");
}

static void on_upcall_cancel(void *userdata, struct backend_upcall *call) {
    struct dispatcher *disp = userdata;
    if (disp->upcall_cancel)
        disp->upcall_cancel(disp->upcall_userdata, call);
}

void dispatcher_set_upcall_handler(struct dispatcher *disp, dispatcher_upcall_fn fn,
                                   dispatcher_upcall_fn cancel, void *userdata) {
    disp->upcall = fn;
    disp->upcall_cancel = cancel;
    disp->upcall_userdata = userdata;
}

void dispatcher_upcall_reply(struct dispatcher *disp, struct backend_upcall *call,
                             enum backend_call_end how, int status, const char *reason) {
    call->from->ops->upcall_reply(call->from, call, how, status, reason);
}

/* ---- restart ---- */

/* Each qube is adopted by its own engine; every engine then removes what belongs to no
 * qube at all (a qube whose virt_mode changed keeps its volumes in the old engine until
 * it is removed: they are its data). */
static void adopt_running(struct dispatcher *disp) {
    for (size_t i = 0; i < disp->app->n_qubes; i++) {
        struct qube *q = disp->app->qubes[i];
        if (q->klass == QUBE_ADMINVM)
            continue;
        struct qube_desc d;
        describe(disp->app, q, &d);
        struct backend *b = backend_named(disp, d.virt_mode);
        if (b && b->ops->adopt(b, &d.bq) == 0)
            set_power(disp, q,
                      b->ops->state(b, q->name) == BACKEND_PAUSED ? POWER_PAUSED : POWER_RUNNING);
    }
}

static void cleanup_leftovers(struct dispatcher *disp) {
    const char **keep = xcalloc(disp->app->n_qubes + 1, sizeof(char *));
    size_t n = 0;
    for (size_t i = 0; i < disp->app->n_qubes; i++)
        if (disp->app->qubes[i]->klass != QUBE_ADMINVM)
            keep[n++] = disp->app->qubes[i]->uuid;
    for (size_t i = 0; i < disp->n_backends; i++)
        disp->backends[i]->ops->cleanup(disp->backends[i], keep);
    free(keep);
}

/* Every halted unnamed disposable goes, as it would have when it stopped. */
static void sweep_halted_disposables(struct dispatcher *disp) {
    for (size_t i = 0; i < disp->app->n_qubes;) {
        struct qube *q = disp->app->qubes[i];
        size_t before = disp->app->n_qubes;
        if (q->power == POWER_HALTED)
            auto_cleanup(disp, q);
        if (disp->app->n_qubes == before)
            i++;
    }
}

static int on_cleanup_retry(sd_event_source *s, uint64_t usec, void *userdata) {
    (void)s, (void)usec;
    struct dispatcher *disp = userdata;
    disp->cleanup_retry = sd_event_source_disable_unref(disp->cleanup_retry);
    sweep_halted_disposables(disp); /* fails again: schedules the next try */
    return 0;
}

/* A removal that could not be saved (a full state disk) is tried again every few
 * seconds, until space is back: the disposable does not wait for the next start. */
static void schedule_cleanup_retry(struct dispatcher *disp) {
    sd_event *loop = NULL;
    if (disp->cleanup_retry || sd_event_default(&loop) < 0)
        return;
    if (sd_event_add_time_relative(loop, &disp->cleanup_retry, CLOCK_MONOTONIC, CLEANUP_RETRY_USEC,
                                   0, on_cleanup_retry, disp) < 0)
        log_warning("cannot schedule the retry of disposables' removal: they go at next start");
    sd_event_unref(loop);
}

void dispatcher_recover(struct dispatcher *disp) {
    adopt_running(disp);
    network_recover(disp);
    cleanup_leftovers(disp);
    /* disposables that died while we were away go the way they would have */
    sweep_halted_disposables(disp);
}

struct dispatcher *dispatcher_new(struct app *app, struct backend *const *backends, size_t n) {
    struct dispatcher *disp = xcalloc(1, sizeof(*disp));
    disp->app = app;
    for (size_t i = 0; i < n && i < DISPATCHER_ENGINES_MAX; i++) {
        struct backend *b = backends[i];
        b->events = (struct backend_events){disp, on_exited, on_upcall, on_upcall_cancel};
        disp->backends[disp->n_backends++] = b;
    }
    return disp;
}

void dispatcher_free(struct dispatcher *disp) {
    if (!disp)
        return;
    while (disp->waiting) { /* daemon exit: nobody is left to tell */
        struct netvm_first *nf = disp->waiting;
        disp->waiting = nf->next;
        free(nf);
    }
    sd_event_source_disable_unref(disp->cleanup_retry);
    for (size_t i = 0; i < disp->n_backends; i++)
        disp->backends[i]->ops->free(disp->backends[i]);
    free(disp->blocks);
    free(disp);
}

int dispatcher_gui_socket(struct dispatcher *disp, const struct qube *q, char *path, size_t size) {
    struct qerr err = {0};
    struct backend *b = backend_for(disp, q, &err);
    if (!b || !b->ops->gui_socket)
        return -ENOTSUP;
    return b->ops->gui_socket(b, q->name, path, size);
}
