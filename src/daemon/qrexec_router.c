#include "qrexec_router.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "disposable.h"
#include "log.h"
#include "monoclock.h"
#include "policy.h"
#include "preload.h"
#include "qrexec_host.h"
#include "qrexec_proto.h"

struct router {
    sd_event *loop;
    struct app *app;
    struct dispatcher *dispatcher;
    char *policy_dir;
    struct policy *policy; /* the one in force; never NULL */
    sd_event_source *inotify;
    sd_event_source *reload_timer;
    struct router_host *host; /* qrexec_host.c */
    struct preload *preload;  /* NULL: every disposable is made fresh */
    struct route *routes;     /* the calls under way */
    char *calls_dir;          /* RUNTIME/calls/NAME: a disposable a call is using */
    char scratch[64];         /* default_dispvm answers for the evaluator */
};

/* ---- what the policy may ask about qubes ---- */

static bool sys_exists(void *ctx, const char *name) {
    return app_find(((struct router *)ctx)->app, name) != NULL;
}

static const char *sys_klass(void *ctx, const char *name) {
    const struct qube *q = app_find(((struct router *)ctx)->app, name);
    return q ? qube_class_name(q->klass) : "";
}

static bool sys_has_tag(void *ctx, const char *name, const char *tag) {
    const struct qube *q = app_find(((struct router *)ctx)->app, name);
    return q && strmap_get(&q->tags, tag);
}

static const char *sys_default_dispvm(void *ctx, const char *name) {
    struct router *r = ctx;
    const struct qube *q = app_find(r->app, name);
    char tmp[64];
    bool is_default;
    if (!q)
        return "";
    snprintf(r->scratch, sizeof(r->scratch), "%s",
             app_prop_get(r->app, q, &PROP_DEFS[P_DEFAULT_DISPVM], tmp, sizeof(tmp), &is_default));
    return r->scratch;
}

static bool sys_is_dispvm_template(void *ctx, const char *name) {
    struct router *r = ctx;
    const struct qube *q = app_find(r->app, name);
    return q && disposable_template_ok(r->app, q);
}

/* ---- the policy in force ---- */

int router_reload_policy(struct router *r) {
    struct policy_error perr = {0};
    struct policy *p = policy_load_dir(r->policy_dir, &perr);
    if (!p) {
        if (perr.line)
            log_error("policy: %s:%d: %s; keeping the policy in force", perr.file, perr.line,
                      perr.msg);
        else
            log_error("policy: %s%s%s; keeping the policy in force", perr.file,
                      *perr.file ? ": " : "", perr.msg);
        return -1;
    }
    policy_free(r->policy);
    r->policy = p;
    log_info("policy: %u rules loaded from %s", policy_rule_count(p), r->policy_dir);
    return 0;
}

/* Editors write in bursts (temp file, rename): reload once things are quiet. */
static int on_reload_timer(sd_event_source *src, uint64_t usec, void *userdata) {
    struct router *r = userdata;
    r->reload_timer = sd_event_source_disable_unref(r->reload_timer);
    router_reload_policy(r);
    return 0;
}

static int on_policy_change(sd_event_source *src, const struct inotify_event *ev, void *userdata) {
    struct router *r = userdata;
    if (!r->reload_timer)
        sd_event_add_time_relative(r->loop, &r->reload_timer, CLOCK_MONOTONIC, 100000, 0,
                                   on_reload_timer, r);
    return 0;
}

static int watch_policy_dir(struct router *r) {
    return sd_event_add_inotify(r->loop, &r->inotify, r->policy_dir,
                                IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE |
                                    IN_CREATE | IN_ONLYDIR,
                                on_policy_change, r);
}

/* ---- one call ---- */

struct route {
    struct router *r;
    struct route *next;
    char source[32], requested[80], service[64], argument[256], user[64];
    char *command;
    char target[32];        /* the qube that runs the service */
    char dvm[32];           /* for @dispvm:T: T */
    bool held;              /* holds the preload pool's refills until answered */
    double t_begin, t_exec; /* CLOCK_MONOTONIC ms, for the debug log */
    bool disposable;        /* made for this call: killed when it ends */
    bool running;           /* the service runs in target */
    bool abandoned;         /* the caller went away */
    bool pty;               /* a terminal in the qube */
    int stdio[3];
    router_reply_fn reply;
    void *ctx;
};

static void route_free(struct route *rt) {
    if (rt->held)
        preload_release(rt->r->preload);
    for (struct route **p = &rt->r->routes; *p; p = &(*p)->next)
        if (*p == rt) {
            *p = rt->next;
            break;
        }
    for (int i = 0; i < 3; i++)
        if (rt->stdio[i] >= 0)
            close(rt->stdio[i]);
    free(rt->command);
    free(rt);
}

/* ---- disposables in use by calls, as the next daemon must know them ----
 * The router owns the disposables of its calls (Qubes' qrexec-client -W kills one when
 * its call ends). A daemon killed mid-call loses the call (its caller sees the
 * connection end) but not the qube, which runs on: RUNTIME/calls/NAME, a file on tmpfs
 * (no database write on the hand-out path), tells the next daemon to kill it, so its
 * auto_cleanup removes it instead of it running forever. */

static char *path_join(const char *dir, const char *name) {
    char buf[4096];
    snprintf(buf, sizeof(buf), "%s/%s", dir, name);
    return xstrdup(buf);
}

static void call_mark_path(const struct router *r, const char *name, char *buf, size_t size) {
    snprintf(buf, size, "%s/%s", r->calls_dir, name);
}

static void call_mark(const struct router *r, const char *name) {
    char path[4096];
    call_mark_path(r, name, path, sizeof(path));
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        log_warning("qrexec: cannot record %s as in use by a call: %m", name);
    else
        close(fd);
}

static void call_unmark(const struct router *r, const char *name) {
    char path[4096];
    call_mark_path(r, name, path, sizeof(path));
    unlink(path);
}

/* The calls of the last daemon ended with it: their disposables go. */
static void calls_recover(struct router *r) {
    mkdir(r->calls_dir, 0700);
    DIR *d = opendir(r->calls_dir);
    for (struct dirent *e; d && (e = readdir(d));) {
        if (e->d_name[0] == '.')
            continue;
        struct qube *q = app_find(r->app, e->d_name);
        struct qerr err = {0};
        if (q && q->power != POWER_HALTED) {
            log_info("qrexec: %s: its call ended with the last daemon; killing it", q->name);
            if (dispatcher_kill_nowait(r->dispatcher, q, &err) < 0)
                log_warning("qrexec: cannot kill %s: %s", q->name, err.msg);
        }
        call_unmark(r, e->d_name);
    }
    if (d)
        closedir(d);
}

/* A disposable made for a call: a running one is killed (its auto_cleanup then removes
 * it); one that never ran is removed here. Either way q is gone afterwards. */
static void dispose(struct router *router, const char *name) {
    struct dispatcher *dispatcher = router->dispatcher;
    struct qube *q = app_find(router->app, name);
    struct qerr err = {0};
    call_unmark(router, name);
    if (!q)
        return; /* it powered off by itself and is gone already */
    /* no waiting: the next call must not queue behind this one's teardown */
    int r = q->power != POWER_HALTED ? dispatcher_kill_nowait(dispatcher, q, &err)
                                     : dispatcher_remove(dispatcher, q, &err);
    if (r < 0)
        log_warning("qrexec: cannot dispose of %s: %s", name, err.msg);
}

/* The end of every call: answer first (nobody waits for cleanup), then kill a
 * disposable, whose auto_cleanup removes it. */
static void route_end(struct route *rt, uint32_t kind, int32_t status, const char *msg) {
    if ((kind == QREXEC_REFUSED || kind == QREXEC_FAILED) && msg &&
        strcmp(msg, "Request refused") != 0)
        log_info("qrexec: %s -> %s %s+%s: %s", rt->source,
                 *rt->requested ? rt->requested : "@default", rt->service, rt->argument, msg);
    rt->reply(rt->ctx, kind, status, msg);
    log_debug("qrexec: %s to %s: %.2f ms to start the service, %.2f ms for it to end", rt->service,
              rt->target, rt->t_exec ? rt->t_exec - rt->t_begin : 0,
              rt->t_exec ? mono_ms() - rt->t_exec : 0);
    if (rt->disposable)
        dispose(rt->r, rt->target);
    route_free(rt);
}

static void on_exec_done(void *userdata, enum backend_call_end how, int status,
                         const char *reason) {
    struct route *rt = userdata;
    static const uint32_t kinds[] = {[BACKEND_CALL_EXITED] = QREXEC_EXITED,
                                     [BACKEND_CALL_SIGNALED] = QREXEC_SIGNALED,
                                     [BACKEND_CALL_FAILED] = QREXEC_FAILED};
    route_end(rt, kinds[how], status, reason);
}

/* No user asked ("" or upstream's DEFAULT): the target's default_user, as Qubes' qrexec
 * daemon substitutes it; a disposable inherits its template's. */
static const char *service_user(struct router *r, const struct qube *q, const char *asked,
                                char *buf, size_t size) {
    bool is_default;
    if (*asked && strcmp(asked, "DEFAULT") != 0)
        return asked;
    return app_prop_get(r->app, q, &PROP_DEFS[P_DEFAULT_USER], buf, size, &is_default);
}

static void route_exec(struct route *rt) {
    struct qube *q = app_find(rt->r->app, rt->target);
    char user[DEFAULT_USER_MAX + 1];
    struct backend_service_call call = {rt->service,
                                        rt->argument,
                                        rt->source,
                                        *rt->requested ? rt->requested : "@default",
                                        q ? service_user(rt->r, q, rt->user, user, sizeof(user))
                                          : "",
                                        rt->command ? rt->command : "",
                                        {rt->stdio[0], rt->stdio[1], rt->stdio[2]},
                                        rt->pty};
    struct qerr err = {0};
    rt->t_exec = mono_ms();
    if (!q || dispatcher_exec(rt->r->dispatcher, q, &call, on_exec_done, rt, &err) < 0) {
        route_end(rt, QREXEC_FAILED, 0, q ? err.msg : "the target qube is gone");
        return;
    }
    rt->running = true;
    /* the agent holds its own copies now: ours would only delay the caller's EOF */
    for (int i = 0; i < 3; i++) {
        close(rt->stdio[i]);
        rt->stdio[i] = -1;
    }
}

static void on_target_started(void *userdata, int r, const struct qerr *err) {
    struct route *rt = userdata;
    if (r < 0) {
        route_end(rt, QREXEC_FAILED, 0, err ? err->msg : "the target could not be started");
        return;
    }
    if (rt->abandoned && rt->disposable) { /* nobody left to serve: not even run it */
        route_end(rt, QREXEC_FAILED, 0, "the caller went away");
        return;
    }
    route_exec(rt);
}

/* Runs in the target, starting it first if it is halted. */
static void route_to_target(struct route *rt) {
    struct qube *q = app_find(rt->r->app, rt->target);
    struct qerr err = {0};
    if (!q || q->klass == QUBE_ADMINVM) {
        route_end(rt, QREXEC_REFUSED, 0, "calls into dom0 are not served");
        return;
    }
    if (q->power == POWER_RUNNING) {
        route_exec(rt);
        return;
    }
    if (q->power != POWER_HALTED) {
        route_end(rt, QREXEC_FAILED, 0, "the target qube is paused or changing state");
        return;
    }
    if (dispatcher_start(rt->r->dispatcher, q, on_target_started, rt, &err) < 0)
        route_end(rt, QREXEC_FAILED, 0, err.msg);
}

static void route_to_fresh_disposable(struct route *rt, const char *tpl_name);

/* A preload was handed out to this call (running, tagged for the caller), or none could
 * be (NULL): then a fresh disposable. */
static void on_preload(void *userdata, struct qube *disp, const struct qerr *err) {
    struct route *rt = userdata;
    if (!disp) {
        route_to_fresh_disposable(rt, rt->dvm);
        return;
    }
    snprintf(rt->target, sizeof(rt->target), "%s", disp->name);
    rt->disposable = true;
    call_mark(rt->r, disp->name);
    rt->held = true; /* the refill this hand-out triggered waits for the answer */
    preload_hold(rt->r->preload);
    route_to_target(rt);
}

/* "@dispvm:T": a preloaded disposable of T if one is ready, else a fresh one. */
static void route_to_new_disposable(struct route *rt, const char *tpl_name) {
    struct qube *tpl = app_find(rt->r->app, tpl_name);
    snprintf(rt->dvm, sizeof(rt->dvm), "%s", tpl_name);
    if (tpl && rt->r->preload && disposable_template_ok(rt->r->app, tpl) &&
        preload_request(rt->r->preload, tpl, rt->source, on_preload, rt) == 1)
        return;
    route_to_fresh_disposable(rt, tpl_name);
}

static void route_to_fresh_disposable(struct route *rt, const char *tpl_name) {
    struct qerr err = {0};
    struct qube *tpl = app_find(rt->r->app, tpl_name);
    struct qube *q = tpl ? disposable_create(rt->r->app, tpl, rt->source, &err) : NULL;
    if (!q) {
        route_end(rt, QREXEC_REFUSED, 0, tpl ? err.msg : "no such disposable template");
        return;
    }
    snprintf(rt->target, sizeof(rt->target), "%s", q->name);
    rt->disposable = true;
    call_mark(rt->r, q->name);
    route_to_target(rt);
}

static void route_decided(struct route *rt, const char *target) {
    if (strncmp(target, "@dispvm:", 8) == 0) {
        route_to_new_disposable(rt, target + 8);
        return;
    }
    snprintf(rt->target, sizeof(rt->target), "%s", target);
    route_to_target(rt);
}

/* dom0 is trusted, as qrexec-client in Qubes' dom0 is: no policy, only resolution. */
static void route_from_dom0(struct route *rt) {
    struct qerr err = {0};
    const char *t = rt->requested;
    if (strcmp(t, "@dispvm") == 0) {
        struct qube *tpl = disposable_default_template(rt->r->app, app_dom0(rt->r->app), &err);
        if (!tpl) {
            route_end(rt, QREXEC_REFUSED, 0, err.msg);
            return;
        }
        route_to_new_disposable(rt, tpl->name);
        return;
    }
    if (strncmp(t, "@dispvm:", 8) != 0 && !app_lookup(rt->r->app, t, &err)) {
        route_end(rt, QREXEC_REFUSED, 0, err.msg);
        return;
    }
    route_decided(rt, t);
}

/* What the policy may ask about qubes, answered from the router's model. */
static struct policy_system policy_system_of(struct router *r) {
    return (struct policy_system){r,           sys_exists,         sys_klass,
                                  sys_has_tag, sys_default_dispvm, sys_is_dispvm_template};
}

static void route_by_policy(struct route *rt) {
    struct router *r = rt->r;
    struct policy_system sys = policy_system_of(r);
    struct policy_decision d = {0};
    if (policy_evaluate(r->policy, &sys, rt->service, rt->argument, rt->source, rt->requested, &d) <
            0 ||
        d.action != POLICY_ALLOW) {
        /* the caller learns only that it was refused, as in Qubes: the reason (which
         * rule, whether a qube exists) is for the host's log */
        log_info("qrexec: %s -> %s %s+%s refused: %s", rt->source,
                 *rt->requested ? rt->requested : "@default", rt->service, rt->argument,
                 *d.reason ? d.reason : "malformed request");
        route_end(rt, QREXEC_REFUSED, 0, "Request refused");
        return;
    }
    log_info("qrexec: %s -> %s %s+%s allowed (%s:%d) to %s", rt->source, rt->requested, rt->service,
             rt->argument, d.file, d.line, d.target);
    if (*d.user)
        snprintf(rt->user, sizeof(rt->user), "%s", d.user);
    route_decided(rt, d.target);
}

bool router_policy_allows(struct router *r, const char *service, const char *source,
                          const char *target, char *why, size_t why_size) {
    struct policy_system sys = policy_system_of(r);
    struct policy_decision d = {0};
    if (policy_evaluate(r->policy, &sys, service, "", source, target, &d) < 0) {
        snprintf(why, why_size, "malformed request");
        return false;
    }
    if (d.action != POLICY_ALLOW) {
        snprintf(why, why_size, "%s", d.reason);
        return false;
    }
    if (strcmp(d.target, target) != 0) {
        snprintf(why, why_size, "%s:%d sends it to %s instead", d.file, d.line, d.target);
        return false;
    }
    snprintf(why, why_size, "%s:%d", d.file, d.line);
    return true;
}

void router_call(struct router *r, const struct router_request *req, int stdio[3],
                 router_reply_fn reply, void *ctx) {
    struct route *rt = xcalloc(1, sizeof(*rt));
    *rt = (struct route){.r = r,
                         .next = r->routes,
                         .reply = reply,
                         .ctx = ctx,
                         .stdio = {stdio[0], stdio[1], stdio[2]},
                         .t_begin = mono_ms(),
                         .pty = req->pty};
    r->routes = rt;
    snprintf(rt->source, sizeof(rt->source), "%s", req->source);
    snprintf(rt->requested, sizeof(rt->requested), "%s", req->target);
    /* Only dom0 chooses the user and a shell command. A qube's call runs the service
     * as the policy's user= says, else as the target's default_user (as in Qubes, where
     * qrexec-client-vm cannot send either): what a qube put there is ignored. */
    bool from_dom0 = strcmp(rt->source, "dom0") == 0;
    snprintf(rt->user, sizeof(rt->user), "%s", from_dom0 && req->user ? req->user : "");
    rt->command = from_dom0 && req->command && *req->command ? xstrdup(req->command) : NULL;
    if (qrexec_split_service(req->service, rt->service, sizeof(rt->service), rt->argument,
                             sizeof(rt->argument)) < 0) {
        route_end(rt, QREXEC_REFUSED, 0, "malformed service name");
        return;
    }
    if (from_dom0)
        route_from_dom0(rt);
    else
        route_by_policy(rt);
}

/* A service in a disposable may never look at its stdio (a viewer, a sleep): without
 * this, the disposable made for a caller that died would live on until it ends. */
void router_abandon(struct router *r, void *ctx) {
    for (struct route *rt = r->routes; rt; rt = rt->next) {
        if (rt->ctx != ctx)
            continue;
        rt->abandoned = true;
        if (rt->disposable && rt->running) {
            log_info("qrexec: %s went away: killing %s", rt->source, rt->target);
            dispose(r, rt->target); /* the call ends when the qube does */
        }
        return;
    }
}

/* ---- calls from inside qubes ---- */

struct upcall_ctx {
    struct router *r;
    struct backend_upcall *call;
};

static void on_upcall_done(void *ctx, uint32_t kind, int32_t status, const char *msg) {
    struct upcall_ctx *u = ctx;
    enum backend_call_end how = kind == QREXEC_EXITED     ? BACKEND_CALL_EXITED
                                : kind == QREXEC_SIGNALED ? BACKEND_CALL_SIGNALED
                                                          : BACKEND_CALL_FAILED;
    dispatcher_upcall_reply(u->r->dispatcher, u->call, how, kind == QREXEC_REFUSED ? -1 : status,
                            msg);
    free(u);
}

/* The qube's caller went away: its call is abandoned as a host caller's is. */
static void on_upcall_cancel(void *userdata, struct backend_upcall *call) {
    struct router *r = userdata;
    for (struct route *rt = r->routes; rt; rt = rt->next)
        if (rt->reply == on_upcall_done && ((struct upcall_ctx *)rt->ctx)->call == call) {
            router_abandon(r, rt->ctx);
            return;
        }
}

static void on_upcall(void *userdata, struct backend_upcall *call) {
    struct router *r = userdata;
    struct upcall_ctx *u = xcalloc(1, sizeof(*u));
    *u = (struct upcall_ctx){r, call};
    struct router_request req = {call->source, call->target, call->service, call->user,
                                 call->command};
    router_call(r, &req, call->stdio, on_upcall_done, u);
}

/* ---- life ---- */

struct router *router_new(sd_event *loop, struct app *app, struct dispatcher *dispatcher,
                          const struct router_config *cfg, struct qerr *err) {
    struct router *r = xcalloc(1, sizeof(*r));
    *r = (struct router){.loop = sd_event_ref(loop),
                         .app = app,
                         .dispatcher = dispatcher,
                         .policy_dir = xstrdup(cfg->policy_dir),
                         .preload = cfg->preload,
                         .calls_dir = path_join(cfg->runtime_dir, "calls")};
    calls_recover(r);
    struct policy_error perr = {0};
    r->policy = policy_parse("", "(empty)", &perr); /* deny everything until loaded */
    router_reload_policy(r);
    if (watch_policy_dir(r) < 0)
        log_warning("policy: cannot watch %s; reload with SIGHUP", cfg->policy_dir);
    int res = router_host_open(r, loop, cfg->socket_path, cfg->socket_gid, &r->host);
    if (res < 0) {
        qerr_set(err, EXC_QUBES, "cannot listen on %s: %s", cfg->socket_path, strerror(-res));
        router_free(r);
        return NULL;
    }
    dispatcher_set_upcall_handler(dispatcher, on_upcall, on_upcall_cancel, r);
    return r;
}

void router_free(struct router *r) {
    if (!r)
        return;
    dispatcher_set_upcall_handler(r->dispatcher, NULL, NULL, NULL);
    router_host_close(r->host);
    sd_event_source_disable_unref(r->inotify);
    sd_event_source_disable_unref(r->reload_timer);
    policy_free(r->policy);
    free(r->policy_dir);
    free(r->calls_dir);
    sd_event_unref(r->loop);
    free(r);
}
