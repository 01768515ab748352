/* The container engine: the backend_ops of virt_mode=container. */
#include "container.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent_proto.h"
#include "container_backend.h"
#include "fsutil.h"
#include "idmap.h"
#include "launch.h"
#include "log.h"
#include "monoclock.h"
#include "reaper.h"
#include "sandbox.h"
#include "shiftcache.h"
#include "strbuf.h"
#include "uidslot.h"

static struct container_backend *cb_of(struct backend *b) { return (struct container_backend *)b; }

void container_path(const struct container_backend *cb, char *buf, size_t size, const char *fmt,
                    ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, size, fmt, ap);
    va_end(ap);
}

struct run *container_find(struct container_backend *cb, const char *name) {
    for (struct run *r = cb->runs; r; r = r->next)
        if (strcmp(r->name, name) == 0)
            return r;
    return NULL;
}

static int not_running(const char *name, struct backend_why *why) {
    return backend_fail(why, -EAGAIN,
                        "Domain not running (either powered off or "
                        "paused): '%s'",
                        name);
}

void run_volume_free(struct run_volume *v) {
    shiftcache_paths_free(v->shifted);
    v->shifted = NULL;
    volume_stack_free(&v->stack);
    free(v->upper);
    free(v->work);
    v->upper = v->work = NULL;
}

static void run_free(struct run *run) {
    if (run->release_slot && run->cb->slots) /* its volumes went while it was ending */
        container_release_slot(run->cb, run->uuid);
    container_net_drop(run);
    sd_event_source_disable_unref(run->exit_src);
    sd_event_source_disable_unref(run->stop_timer);
    if (run->pidfd >= 0)
        close(run->pidfd);
    if (run->cg)
        cgroup_qube_free(run->cg);
    agent_link_free(&run->link);
    run_volume_free(&run->root);
    run_volume_free(&run->priv);
    backend_waiters_free(&run->stop_waiters); /* only at daemon exit: nobody to tell */
    free(run->name);
    free(run->uuid);
    free(run);
}

static void run_unlink(struct run *run) {
    for (struct run **p = &run->cb->runs; *p; p = &(*p)->next)
        if (*p == run) {
            *p = run->next;
            return;
        }
}

/* ---- the end of a qube ---- */

static void finish_start(struct run *run, int r, const char *reason) {
    backend_done_fn done = run->start_done;
    run->start_done = NULL;
    agent_link_ready_cancel(&run->link);
    if (!done)
        return;
    char why[sizeof(((struct backend_why *)0)->msg)] = "";
    if (r < 0)
        snprintf(why, sizeof(why), "Start of qube '%s' failed: %s", run->name, reason);
    done(run->start_userdata, r, r < 0 ? why : NULL);
}

/* Layers of old revisions go once no running qube stands on them. */
static void collect_garbage(struct container_backend *cb, const char *uuid, const char *volname) {
    size_t n = 0;
    for (struct run *r = cb->runs; r; r = r->next)
        n += r->root.stack.n_layers + r->priv.stack.n_layers;
    const char **in_use = xcalloc(n + 1, sizeof(char *));
    n = 0;
    for (struct run *r = cb->runs; r; r = r->next) {
        for (size_t i = 0; i < r->root.stack.n_layers; i++)
            in_use[n++] = r->root.stack.layers[i];
        for (size_t i = 0; i < r->priv.stack.n_layers; i++)
            in_use[n++] = r->priv.stack.layers[i];
    }
    int res = volume_gc(cb->state_dir, uuid, volname, in_use);
    if (res < 0)
        log_warning("volume %s/%s: garbage collection failed: %s", uuid, volname, strerror(-res));
    free(in_use);
}

static void finish_volume(struct run *run, struct run_volume *v, const char *volname) {
    if (!v->upper || !v->persistent)
        return;
    struct container_backend *cb = run->cb;
    /* what a qube on copies wrote is its range's: back to the canonical range first, as
     * every layer is (idempotent: a commit cut short by a crash is redone) */
    if (run->copies && uidshift_range(v->upper, run->uid_base, cb->uid_base, cb->uid_count) < 0) {
        log_error("%s: cannot give the %s volume's changes back to the canonical uid range; "
                  "they stay in %s",
                  run->name, volname, v->upper);
        return;
    }
    int r = volume_commit(run->cb->state_dir, v->owner_uuid, volname, v->upper, v->work);
    if (r < 0)
        log_error("%s: cannot save the %s volume; its changes stay in %s", run->name, volname,
                  v->upper);
    else if (r > 0) {
        collect_garbage(run->cb, v->owner_uuid, volname);
        container_sweep_copies(cb, false);
    }
}

/* Every process of the qube must be gone before its cgroups can go. */
static void reap_cgroup(struct run *run) {
    if (!run->cg)
        return;
    cgroup_qube_kill(run->cg);
    int r = cgroup_qube_destroy(run->cg); /* -errno, as every cgroup_* call */
    if (r < 0)
        log_warning("%s: cgroup not removed: %s", run->name, strerror(-r));
    run->cg = NULL;
}

/* The slow part of a qube's end: commit or drop its volumes, remove its directories. */
static void finish_filesystem(struct run *run) {
    struct container_backend *cb = run->cb;
    char path[4096];
    double t0 = mono_ms();
    finish_volume(run, &run->root, "root");
    finish_volume(run, &run->priv, "private");
    double t1 = mono_ms();
    container_path(cb, path, sizeof(path), "%s/volatile/%s", cb->state_dir, run->name);
    remove_scratch(path);
    container_path(cb, path, sizeof(path), "%s/qubes/%s", cb->runtime_dir, run->name);
    remove_recursive(path);
    log_debug("%s: cleanup: volumes %.2f ms, directories %.2f ms", run->name, t1 - t0,
              mono_ms() - t1);
}

static bool slot_is_this_runs(const struct run *run);

static bool commits_volumes(const struct run *run) {
    return run->root.persistent || run->priv.persistent;
}

static void retire_here(struct run *run) {
    reap_cgroup(run);
    finish_filesystem(run);
    run_free(run);
}

static void retired(void *userdata, bool ok) {
    struct run *run = userdata;
    for (struct run **pp = &run->cb->retiring; *pp; pp = &(*pp)->next)
        if (*pp == run) {
            *pp = run->next;
            break;
        }
    if (ok)
        run_free(run);
    else
        retire_here(run);
}

/* What is left of an ended qube goes. A volume commit is done here and now (the next
 * start, an info or an import reads the result); a disposable commits nothing, so its
 * cgroups and directories go to the reaper process while the loop goes on serving. */
static void retire(struct run *run) {
    struct container_backend *cb = run->cb;
    if (!commits_volumes(run) && reaper_retire(cb->reaper, run->name, retired, run) == 0) {
        run->next = cb->retiring;
        cb->retiring = run;
        return;
    }
    retire_here(run);
}

/* Finishes the queued teardowns that match (name NULL: those that commit volumes). */
static void settle_matching(struct container_backend *cb, const char *name) {
    for (struct run **pp = &cb->dying; *pp;) {
        struct run *run = *pp;
        bool match = name ? strcmp(run->name, name) == 0 : commits_volumes(run);
        if (!match) {
            pp = &run->next;
            continue;
        }
        *pp = run->next;
        retire(run);
    }
    for (struct run *run = cb->retiring; name && run; run = run->next)
        if (strcmp(run->name, name) == 0) { /* a start reusing the name: its dirs clash */
            reaper_wait_idle(cb->reaper);
            break;
        }
}

/* Only the ends that commit volumes (templates, AppVM privates): a disposable's cleanup
 * can wait, and must, when a hand-out is asking about revisions. */
void container_settle_writers(struct container_backend *cb) { settle_matching(cb, NULL); }

void container_settle_name(struct container_backend *cb, const char *name) {
    settle_matching(cb, name);
}

/* Hands every ended qube's remains on (the reaper's queue, or done here). */
static void retire_dying(struct container_backend *cb) {
    cb->settle_src = sd_event_source_disable_unref(cb->settle_src);
    while (cb->dying) {
        struct run *run = cb->dying;
        cb->dying = run->next;
        retire(run);
    }
}

void container_settle(struct container_backend *cb) {
    retire_dying(cb);
    reaper_wait_idle(cb->reaper);
}

/* After the reply to whoever asked. */
static int on_settle(sd_event_source *src, void *userdata) {
    retire_dying(userdata);
    return 0;
}

/* Ends are dealt with at idle priority while few wait, at normal priority beyond
 * REAPER_BACKLOG: a loop that 100 callers never let idle kept ~740 ends queued in the
 * 10-minute soak (docs/reliability.md). */
static int64_t backlog_priority(size_t waiting) {
    return waiting > REAPER_BACKLOG ? SD_EVENT_PRIORITY_NORMAL : SD_EVENT_PRIORITY_IDLE;
}

static size_t count_dying(const struct container_backend *cb) {
    size_t n = 0;
    for (const struct run *r = cb->dying; r && n <= REAPER_BACKLOG; r = r->next)
        n++;
    return n;
}

/* Exits the loop has seen but not handled yet (idle priority) are handled at normal
 * priority once more than a few wait. Called at every start. */
static void hurry_exits(struct container_backend *cb) {
    size_t n = 0;
    for (struct run *r = cb->runs; r; r = r->next)
        n += r->exit_src && sd_event_source_get_pending(r->exit_src) > 0;
    if (n <= REAPER_BACKLOG)
        return;
    for (struct run *r = cb->runs; r; r = r->next)
        if (r->exit_src && sd_event_source_get_pending(r->exit_src) > 0)
            sd_event_source_set_priority(r->exit_src, SD_EVENT_PRIORITY_NORMAL);
}

/* The qube is forgotten now; its cgroups, volumes and directories are dealt with on the
 * next loop iteration, after the reply to whoever asked has been sent: nobody waits for
 * cleanup. Anything that needs them settled (a start, an import) calls container_settle.
 * (When init is gone the kernel has already killed the rest of its pid namespace.) */
void container_teardown(struct run *run, bool report, int status) {
    struct container_backend *cb = run->cb;
    run_unlink(run);
    launch_cancel(TAKE_PTR(run->launch));
    agent_link_uplink_close(&run->link);
    run->exit_src = sd_event_source_disable_unref(run->exit_src);
    run->stop_timer = sd_event_source_disable_unref(run->stop_timer);
    /* a qube that never finished starting failed to start; it did not shut down */
    bool was_starting = run->start_done != NULL;
    finish_start(run, -1, "the qube's init exited during start-up");
    struct backend_waiter *waiters = TAKE_PTR(run->stop_waiters);
    char *name = xstrdup(run->name);
    run->next = cb->dying;
    cb->dying = run;
    if (!cb->settle_src && sd_event_add_defer(cb->base.loop, &cb->settle_src, on_settle, cb) < 0)
        container_settle(cb);
    else
        sd_event_source_set_priority(cb->settle_src, backlog_priority(count_dying(cb)));
    backend_waiters_tell(&waiters);
    if (report && !was_starting && cb->base.events.exited)
        cb->base.events.exited(cb->base.events.userdata, name, status);
    free(name);
}

static int on_exit_event(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
    struct run *run = userdata;
    siginfo_t si = {0};
    /* only a qube we started is our child; an adopted one is reaped by the host's init */
    int status = 0;
    if (waitid(P_PIDFD, (id_t)run->pidfd, &si, WEXITED | WNOHANG) == 0 && si.si_pid)
        status = si.si_code == CLD_EXITED ? si.si_status : 128 + si.si_status;
    log_info("%s: init exited (status %d)", run->name, status);
    /* A disposable's slot is free now: its init gone, the kernel has killed and reaped
     * the rest of its pid namespace, and its files with the slot's ids were on tmpfs in
     * its own mount namespace, gone with it (its volumes are written as the canonical
     * range). Waiting for its directories' cleanup, which runs when the loop is idle,
     * held a slot per ended disposable while 100 callers kept the loop busy (the soak
     * ran out of 1023 slots). On chowned copies its upper, on disk, holds files of the
     * slot's range: the slot waits until the reaper has removed it. */
    if (!commits_volumes(run) && !run->copies && run->cb->slots && slot_is_this_runs(run))
        container_release_slot(run->cb, run->uuid);
    container_teardown(run, true, status);
    return 0;
}

/* An exit is dealt with after the calls pending at the same moment: the end of a used
 * disposable must not hold up the next hand-out. */
int container_watch_exit(struct run *run) {
    int r = sd_event_add_io(run->cb->base.loop, &run->exit_src, run->pidfd, EPOLLIN, on_exit_event,
                            run);
    if (r >= 0)
        sd_event_source_set_priority(run->exit_src, SD_EVENT_PRIORITY_IDLE);
    return r;
}

/* ---- start ---- */

/* Overlay needs at least one lower layer: a volume never written yet gets this one. */
static char *empty_layer(struct container_backend *cb) {
    char path[4096];
    container_path(cb, path, sizeof(path), "%s/empty-layer", cb->state_dir);
    make_owned_dir(path, cb->uid_base, 0755);
    return xstrdup(path);
}

static int volume_lowers_or_empty(struct container_backend *cb, struct run_volume *v) {
    if (v->stack.n_layers > 0)
        return 0;
    v->stack.layers = xcalloc(1, sizeof(char *));
    v->stack.layers[0] = empty_layer(cb);
    v->stack.n_layers = 1;
    return 0;
}

/* Who owns a fresh upper: the canonical range, which the qube sees through its idmapped
 * mounts as its own root, or on copies the qube's own root. */
static uid_t upper_owner(const struct run *run) {
    return run->copies ? run->uid_base : run->cb->uid_base;
}

static int prepare_own(struct run *run, struct run_volume *v, const char *volname) {
    struct container_backend *cb = run->cb;
    int r = volume_current(cb->state_dir, run->uuid, volname, &v->stack);
    if (r == 0)
        r = volume_begin_write(cb->state_dir, run->uuid, volname, upper_owner(run), &v->upper,
                               &v->work);
    if (r < 0) {
        errno = -r;
        return -1;
    }
    v->persistent = true;
    v->owner_uuid = run->uuid;
    return 0;
}

static int prepare_cow(struct run *run, struct run_volume *v, const char *source,
                       const char *volname) {
    struct container_backend *cb = run->cb;
    char dir[4096], path[4096];
    int r = volume_current(cb->state_dir, source, volname, &v->stack);
    if (r < 0) {
        errno = -r;
        return -1;
    }
    container_path(cb, dir, sizeof(dir), "%s/volatile/%s", cb->state_dir, run->name);
    if (make_owned_dir(dir, 0, 0700) < 0)
        return -1;
    snprintf(path, sizeof(path), "%s/%s-upper", dir, volname);
    if (make_owned_dir(path, upper_owner(run), 0755) < 0)
        return -1;
    v->upper = xstrdup(path);
    snprintf(path, sizeof(path), "%s/%s-work", dir, volname);
    if (make_owned_dir(path, 0, 0700) < 0)
        return -1;
    v->work = xstrdup(path);
    return 0;
}

/* ---- a private volume's first content ---- */

struct home_seed {
    const struct volume_stack *root;
    uid_t base;
};

/* What a fresh private volume gets at its first start (launch.c's mount_private does
 * the same in a qube when there is no seed): home/ and home/user for uid 1000, with
 * the template's /home/user (its skeleton) copied in. */
static int fill_home(void *ctx, const char *dir, const char *scratch) {
    const struct home_seed *seed = ctx;
    char home[4096], user[4096];
    snprintf(home, sizeof(home), "%s/home", dir);
    snprintf(user, sizeof(user), "%s/home/user", dir);
    if (make_owned_dir(home, seed->base, 0755) < 0 ||
        make_owned_dir(user, seed->base + 1000, 0700) < 0)
        return -errno;
    int r = volume_copy_out(seed->root, scratch, "home/user", user);
    return r == -ENOENT ? 0 : r;
}

/* A private volume never written gets its home as a revision of its own before anyone
 * uses it: the owner's first start and its disposables then start from the same
 * content, and a start that writes nothing else makes no new revision (that would
 * outdate every preload made from the volume: docs/preload.md, "Never stale"). Without
 * a seed the qube seeds its home itself, in its upper, as before. */
static void seed_private(struct run *run, const char *owner_uuid) {
    struct container_backend *cb = run->cb;
    struct home_seed seed = {&run->root.stack, cb->uid_base};
    int r = volume_seed(cb->state_dir, owner_uuid, "private", cb->uid_base, fill_home, &seed);
    if (r < 0)
        log_warning("%s: cannot seed the private volume of %s: %s", run->name, owner_uuid,
                    strerror(-r));
    else if (r > 0)
        log_debug("%s: private volume of %s seeded", run->name, owner_uuid);
}

/* A qube whose throwaway writes go to a ram pool: its scratch directory is a symlink to
 * one on the pool's tmpfs, so that the rest of the engine (and its clean-ups) find it at
 * the usual place and nothing of it lands on the disk. */
static int place_scratch(struct run *run, const char *scratch_dir) {
    char link[4096], target[4096];
    container_path(run->cb, link, sizeof(link), "%s/volatile/%s", run->cb->state_dir, run->name);
    snprintf(target, sizeof(target), "%s/%s", scratch_dir, run->name);
    remove_scratch(link); /* a crashed run's leftover */
    remove_recursive(target);
    if (make_owned_dir(target, 0, 0700) < 0 || symlink(target, link) < 0)
        return -1;
    return 0;
}

/* ---- per-qube ranges without idmapped mounts: chowned copies of the layers ---- */

static size_t count_copies(char *const *paths) {
    size_t n = 0;
    while (paths && paths[n])
        n++;
    return n;
}

static void list_copies(const struct run_volume *v, const char **list, size_t *n) {
    for (size_t i = 0; v->shifted && v->shifted[i]; i++)
        list[(*n)++] = v->shifted[i];
}

static bool slot_held(void *ctx, unsigned slot) {
    return uid_slots_owner(((struct container_backend *)ctx)->slots, slot) != NULL;
}

/* Copies under a running qube's overlay stay (removing them would pull files out from
 * under it); the others go with their layer, and at the daemon's start with their slot
 * if no qube holds it. */
void container_sweep_copies(struct container_backend *cb, bool at_start) {
    if (!cb->slots)
        return;
    size_t n = 0;
    for (const struct run *r = cb->runs; r; r = r->next)
        n += count_copies(r->root.shifted) + count_copies(r->priv.shifted);
    const char **in_use = xcalloc(n + 1, sizeof(char *));
    n = 0;
    for (const struct run *r = cb->runs; r; r = r->next) {
        list_copies(&r->root, in_use, &n);
        list_copies(&r->priv, in_use, &n);
    }
    shiftcache_sweep(cb->state_dir, in_use, at_start ? slot_held : NULL, cb);
    free(in_use);
}

void container_release_slot(struct container_backend *cb, const char *uuid) {
    int slot = uid_slots_find(cb->slots, uuid);
    if (slot > 0) /* first: the slot is never free while files of this owner remain */
        shiftcache_drop_owner(cb->state_dir, (unsigned)slot, uuid);
    uid_slots_release(cb->slots, uuid);
}

static int copies_of(struct run *run, struct run_volume *v) {
    struct container_backend *cb = run->cb;
    unsigned slot = (unsigned)((run->uid_base - cb->uid_base) / cb->uid_count);
    return shiftcache_get(cb->state_dir, slot, cb->uid_base, run->uid_base, cb->uid_count,
                          v->stack.layers, v->stack.n_layers, &v->shifted);
}

static int use_copies(struct run *run, struct backend_why *why) {
    container_sweep_copies(run->cb, false); /* revisions gone since: their copies first */
    double t0 = mono_ms();
    int r = copies_of(run, &run->root);
    if (r == 0)
        r = copies_of(run, &run->priv);
    if (r < 0)
        return backend_fail(why, r, "cannot make the chowned copies of the layers of '%s': %s",
                            run->name, strerror(-r));
    log_debug("%s: chowned copies of its layers ready in %.2f ms", run->name, mono_ms() - t0);
    return 0;
}

static int prepare_volumes(struct run *run, const struct backend_qube *q, struct backend_why *why) {
    struct container_backend *cb = run->cb;
    char tmp[4096];
    container_path(cb, tmp, sizeof(tmp), "%s/volatile", cb->state_dir);
    make_owned_dir(tmp, 0, 0700);
    if (q->scratch_dir && place_scratch(run, q->scratch_dir) < 0)
        return backend_fail(why, -errno, "cannot prepare the ram pool directory of '%s' in %s: %s",
                            q->name, q->scratch_dir, strerror(errno));
    bool own_root = q->kind == BACKEND_TEMPLATEVM || q->kind == BACKEND_STANDALONEVM;
    int r = own_root ? prepare_own(run, &run->root, "root")
                     : prepare_cow(run, &run->root, q->root_source, "root");
    const char *priv_owner = q->kind == BACKEND_DISPVM ? q->private_source : run->uuid;
    if (r == 0 && priv_owner && run->root.stack.n_layers > 0)
        seed_private(run, priv_owner);
    if (r == 0)
        r = q->kind == BACKEND_DISPVM ? prepare_cow(run, &run->priv, q->private_source, "private")
                                      : prepare_own(run, &run->priv, "private");
    if (r < 0)
        return backend_fail(why, -errno, "cannot prepare the volumes of '%s': %s", q->name,
                            strerror(errno));
    if (run->root.stack.n_layers == 0)
        return backend_fail(why, -EIO,
                            "'%s' has no root filesystem: its template was never "
                            "built (see qvm-template build)",
                            q->name);
    volume_lowers_or_empty(cb, &run->priv);
    return run->copies ? use_copies(run, why) : 0;
}

int bind_agent_socket(const char *path) {
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    strcpy(sa.sun_path, path);
    unlink(path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    mode_t old = umask(0177); /* only the daemon (root) may talk to the agent */
    int r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
    umask(old);
    if (r < 0 || listen(fd, 128) < 0) {
        r = -errno;
        close(fd);
        return r;
    }
    return fd;
}

static bool option_true(const struct backend_qube *q, const char *key) {
    const char *v = backend_option(q->options, q->n_options, key);
    return v && (strcmp(v, "1") == 0 || strcmp(v, "True") == 0 || strcmp(v, "true") == 0);
}

static int attach_to_cgroups(void *ctx, pid_t pid) { return cgroup_qube_attach(ctx, pid); }

static void on_launched(void *userdata, int r, const char *why);

static char **lowers_of(const struct run_volume *v) {
    return v->shifted ? v->shifted : v->stack.layers;
}

static int launch_run(struct run *run, const struct backend_qube *q, struct backend_why *why) {
    struct container_backend *cb = run->cb;
    char rundir[4096], sock[4096], mnt[4096], links[4200], env_name[64];
    container_path(cb, rundir, sizeof(rundir), "%s/qubes/%s", cb->runtime_dir, run->name);
    snprintf(sock, sizeof(sock), "%s/agent.sock", rundir);
    snprintf(mnt, sizeof(mnt), "%s/root", rundir);
    snprintf(links, sizeof(links), "%s/links", rundir);
    if (make_owned_dir(rundir, 0, 0700) < 0 || make_owned_dir(mnt, 0, 0755) < 0)
        return backend_fail(why, -errno, "cannot create %s: %s", rundir, strerror(errno));
    _cleanup_close_ int listen_fd = bind_agent_socket(sock);
    _cleanup_close_ int log_fd = guest_log_open(cb, run->name);
    _cleanup_close_ int gui_fd = q->gui ? container_gui_bind(run) : -1;
    if (listen_fd < 0 || log_fd < 0 || (q->gui && gui_fd < 0))
        return backend_fail(why, -EIO, "cannot create the agent socket or log of '%s'", run->name);
    snprintf(env_name, sizeof(env_name), "DISPENSER_QUBE=%s", run->name);
    /* the template's own init (systemd) comes from its feature container-init: only an
     * absolute path goes to the agent, which then runs beside it instead of as PID 1 */
    const char *init = backend_option(q->options, q->n_options, "init");
    bool own_init = init && init[0] == '/';
    char *argv[] = {"dispenser-agent", own_init ? "--init" : NULL, (char *)init, NULL};
    char env_dns[96];
    snprintf(env_dns, sizeof(env_dns), "DISPENSER_DNS=%s", run->net.on ? run->net.dns : "");
    char *envp[8] = {env_name, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                     "HOME=/root", "TERM=dumb"};
    size_t n_env = 4;
    if (run->net.on)
        envp[n_env++] = env_dns;
    if (q->gui)
        envp[n_env++] = (char *)LAUNCH_GUI_FD_ENV;
    envp[n_env] = NULL;
    struct launch_spec spec = {
        .hostname = run->name,
        .root_mountpoint = mnt,
        .links_dir = links,
        .root = {"/", lowers_of(&run->root), run->root.stack.n_layers, run->root.upper,
                 run->root.work, !run->root.persistent},
        .private_vol = {"/rw", lowers_of(&run->priv), run->priv.stack.n_layers, run->priv.upper,
                        run->priv.work, !run->priv.persistent},
        .uid_base = run->uid_base,
        .uid_count = cb->uid_count,
        .idmap_fd = run->idmap_fd,
        .agent_fd = cb->agent_fd,
        .listen_fd = listen_fd,
        .log_fd = log_fd,
        .gui_fd = gui_fd,
        .host_usr = option_true(q, "host-usr"),
        .attach = attach_to_cgroups,
        .attach_ctx = run->cg,
        .before_exec = run->net.on ? container_net_before_exec : NULL,
        .before_exec_ctx = run,
        .argv = argv,
        .envp = envp,
        .services = q->services,
        .n_services = q->n_services,
    };
    if (launch_qube_async(cb->base.loop, &spec, on_launched, run, &run->pid, &run->pidfd,
                          &run->launch, why) < 0)
        return -EIO;
    run->starttime = backend_proc_starttime(run->pid);
    return 0;
}

/* SIGKILL to every process of the qube, and wait for its init to be gone. */
static void kill_and_wait(struct run *run) {
    double t0 = mono_ms();
    if (run->cg)
        cgroup_qube_kill(run->cg);
    syscall(SYS_pidfd_send_signal, run->pidfd, SIGKILL, NULL, 0);
    struct pollfd pfd = {.fd = run->pidfd, .events = POLLIN};
    if (poll(&pfd, 1, 5000) <= 0)
        log_warning("%s: init still alive 5 s after SIGKILL", run->name);
    siginfo_t si;
    waitid(P_PIDFD, (id_t)run->pidfd, &si, WEXITED | WNOHANG);
    log_debug("%s: killed in %.2f ms", run->name, mono_ms() - t0);
}

static void abort_start(struct run *run, const char *reason);
static int wait_ready(struct run *run, unsigned timeout_s);

/* The child is the agent now: watch it, and wait for it to be ready. */
static void on_launched(void *userdata, int r, const char *why) {
    struct run *run = userdata;
    run->launch = NULL; /* the launcher is done with it */
    run->launched_ms = mono_ms();
    if (r < 0 && run->sync_failure) { /* container_start reports it */
        snprintf(run->sync_failure, sizeof(((struct backend_why *)0)->msg), "%s",
                 why ? why : "the qube's init failed");
        run->start_done = NULL;
    }
    if (r < 0) {
        abort_start(run, why ? why : "the qube's init failed");
        return;
    }
    run->sync_failure = NULL;
    if (run_state_save(run) < 0 || container_watch_exit(run) < 0 ||
        wait_ready(run, run->qrexec_timeout) < 0)
        abort_start(run, "cannot watch the qube's agent");
}

/* The caller hears of the failure only once nothing of the qube is left: a failed Start
 * leaves no trace, and the qube can be started again at once. */
static void abort_start(struct run *run, const char *reason) {
    struct container_backend *cb = run->cb;
    backend_done_fn done = run->start_done;
    void *userdata = run->start_userdata;
    char why[sizeof(((struct backend_why *)0)->msg)];
    snprintf(why, sizeof(why), "Start of qube '%s' failed: %s", run->name, reason);
    run->start_done = NULL;
    kill_and_wait(run);
    guest_log_keep_failed_start(cb, run->name);
    container_teardown(run, false, 0);
    container_settle(cb);
    if (done)
        done(userdata, -EIO, why);
}

static void on_agent_ready(void *userdata, int r, const char *reason) {
    struct run *run = userdata;
    if (r == -ETIMEDOUT)
        log_warning("%s: the agent did not report readiness in time; killing it", run->name);
    if (r < 0) {
        abort_start(run, reason);
        return;
    }
    run->power = BACKEND_RUNNING;
    /* the qube runs, but cannot call out: say so, go on */
    if (agent_link_uplink_open(&run->link) < 0)
        log_warning("%s: no qrexec uplink: %s", run->name, strerror(errno));
    log_info("%s: ready %.2f ms after the launch", run->name, mono_ms() - run->launched_ms);
    finish_start(run, 0, NULL);
}

static int wait_ready(struct run *run, unsigned timeout_s) {
    return agent_link_wait_ready(&run->link, timeout_s,
                                 run->background ? SD_EVENT_PRIORITY_IDLE
                                                 : SD_EVENT_PRIORITY_NORMAL,
                                 on_agent_ready, run);
}

static struct run *run_new(struct container_backend *cb, const struct backend_qube *q) {
    struct run *run = xcalloc(1, sizeof(*run));
    run->cb = cb;
    run->name = xstrdup(q->name);
    run->uuid = xstrdup(q->uuid);
    run->kind = q->kind;
    run->pidfd = -1;
    run->uid_base = cb->uid_base;
    run->idmap_fd = -1;
    container_link_init(run);
    run->power = BACKEND_RUNNING;
    run->shutdown_timeout = q->shutdown_timeout;
    return run;
}

/* The helper that made an id-mapping namespace is gone: reap it. */
static int on_idmap_helper_exit(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
    siginfo_t si;
    waitid(P_PIDFD, (id_t)fd, &si, WEXITED | WNOHANG);
    sd_event_source_disable_unref(src); /* floating: the loop's reference; the pidfd
                                         * closes with it (io_fd_own) */
    return 0;
}

/* A slot's id-mapping namespace, made once and kept: a slot handed to the next
 * disposable costs nothing more. */
static int idmap_ns_of(struct container_backend *cb, int slot) {
    if (cb->idmap_ns[slot] >= 0)
        return cb->idmap_ns[slot];
    int helper = -1;
    double t0 = mono_ms();
    int fd = idmap_userns_open(cb->uid_base, cb->uid_base + (uid_t)slot * cb->uid_count,
                               cb->uid_count, &helper);
    sd_event_source *src = NULL;
    if (helper >= 0 &&
        sd_event_add_io(cb->base.loop, &src, helper, EPOLLIN, on_idmap_helper_exit, NULL) >= 0) {
        sd_event_source_set_io_fd_own(src, true);
        sd_event_source_set_floating(src, true);
        sd_event_source_unref(src);
    } else if (helper >= 0) { /* reaped here, then: it was SIGKILLed already */
        waitid(P_PIDFD, (id_t)helper, &(siginfo_t){0}, WEXITED);
        close(helper);
    }
    log_debug("uid range slot %d: id-mapping namespace %.2f ms", slot, mono_ms() - t0);
    if (fd >= 0)
        cb->idmap_ns[slot] = fd;
    return fd;
}

/* The probe started with the engine has answered (at the first start, not before: the
 * daemon's own start does not wait for it). */
static void uid_ranges_settle(struct container_backend *cb) {
    if (!cb->idmap_probe)
        return;
    char reason[256];
    double t0 = mono_ms();
    bool ok = idmap_probe_finish(TAKE_PTR(cb->idmap_probe), reason, sizeof(reason));
    if (!ok && cb->per_qube_required) {
        log_error("container engine: container.uid-ranges=per-qube, but %s", reason);
        cb->uid_ranges_failure = xstrdup(reason);
        return;
    }
    if (!ok) {
        log_warning("container engine: no idmapped overlay layers here (%s): each qube "
                    "gets copies of its layers chowned into its own uid range",
                    reason);
        cb->per_qube = cb->copies = true;
        return;
    }
    cb->per_qube = true;
    cb->idmap_ns = xcalloc(cb->n_slots, sizeof(int));
    for (unsigned i = 0; i < cb->n_slots; i++)
        cb->idmap_ns[i] = -1;
    log_info("container engine: a host uid range per qube (%u.., %u ids each, %u in use; "
             "waited %.2f ms for the probe)",
             (unsigned)cb->uid_base, (unsigned)cb->uid_count, uid_slots_in_use(cb->slots),
             mono_ms() - t0);
}

/* Whether the slot of `run`'s qube belongs to it alone: a slot is the qube's (by uuid),
 * and a new run of the same qube may have started before this one's end was handled
 * (a netvm restarted at once): freeing the slot then took it from the live run. */
static bool slot_is_this_runs(const struct run *run) {
    for (const struct run *o = run->cb->runs; o; o = o->next)
        if (o != run && strcmp(o->uuid, run->uuid) == 0)
            return false;
    return true;
}

/* Before a slot is taken: disposables whose init has exited but whose exit the loop has
 * not handled yet (it does so when idle, which a stream of calls can put off for long)
 * give theirs back, so that slots (and the namespace kept per slot) follow the qubes
 * alive, not the ends not yet handled. A poll per running qube. Their processes are gone (see on_exit_event); the exit itself is
 * handled later as usual. Returns how many came free. */
static int reclaim_ended_slots(struct container_backend *cb) {
    int n = 0;
    if (cb->copies) /* their uppers hold files of their ranges until the reaper is done */
        return 0;
    for (struct run *run = cb->runs; run; run = run->next) {
        struct pollfd p = {.fd = run->pidfd, .events = POLLIN};
        if (run->pidfd < 0 || commits_volumes(run) || poll(&p, 1, 0) != 1 ||
            !slot_is_this_runs(run))
            continue;
        if (uid_slots_find(cb->slots, run->uuid) > 0) {
            container_release_slot(cb, run->uuid);
            n++;
        }
    }
    return n;
}

/* The qube's own host uid range (its slot, kept from its first start until its volumes
 * are removed), and the namespace its layers are idmapped through. Shared mode: the
 * canonical range, layers as they are. */
static int assign_uid_range(struct run *run, struct backend_why *why) {
    struct container_backend *cb = run->cb;
    uid_ranges_settle(cb);
    if (cb->uid_ranges_failure)
        return backend_fail(why, -ENODEV, "container.uid-ranges=per-qube: %s",
                            cb->uid_ranges_failure);
    if (!cb->per_qube)
        return 0;
    reclaim_ended_slots(cb);
    int slot = uid_slots_get(cb->slots, run->uuid);
    if (slot == -ENOSPC)
        return backend_fail(why, -ENOSPC,
                            "no free host uid range for '%s': all %u are in use "
                            "(container.uid-slots)",
                            run->name, cb->n_slots - 1);
    if (slot < 0)
        return backend_fail(why, slot, "cannot record the uid range of '%s': %s", run->name,
                            strerror(-slot));
    run->uid_base = cb->uid_base + (uid_t)slot * cb->uid_count;
    if (cb->copies) {
        run->copies = true;
        return 0;
    }
    int fd = idmap_ns_of(cb, slot);
    if (fd < 0)
        return backend_fail(why, fd, "cannot make the id mapping of '%s': %s", run->name,
                            strerror(-fd));
    run->idmap_fd = fd;
    return 0;
}

static struct cgroup_limits limits_of(const struct backend_qube *q) {
    uint64_t mib = q->maxmem_mib > q->memory_mib ? q->maxmem_mib : q->memory_mib;
    return (struct cgroup_limits){
        .memory_max_bytes = mib << 20,
        .pids_max = 4096,
        .cpu_weight = 100 * (q->vcpus ? q->vcpus : 1), /* more vcpus, bigger share */
        /* a preload sets itself up in the idle class: a hand-out running meanwhile, and
         * its caller, get the CPUs first */
        .cpu_idle = q->background,
        .devices_own_only = true, /* its /dev nodes, and block devices given to it */
    };
}

static int container_start(struct backend *b, const struct backend_qube *q, backend_done_fn done,
                           void *userdata, struct backend_why *why) {
    struct container_backend *cb = cb_of(b);
    /* a previous run's volume commit comes first, and a teardown of this very name (its
     * directories would clash); other disposables' cleanups can wait */
    container_settle_writers(cb);
    container_settle_name(cb, q->name);
    hurry_exits(cb);
    double t0 = mono_ms(), t1, t2, t3;
    if (container_find(cb, q->name))
        return backend_fail(why, -EBUSY, "Domain is not powered off: '%s'", q->name);
    struct run *run = run_new(cb, q);
    if (q->net)
        container_net_keep(run, q->net);
    struct cgroup_limits limits = limits_of(q);
    run->cpu_weight = limits.cpu_weight;
    int r = assign_uid_range(run, why);
    if (r == 0)
        r = prepare_volumes(run, q, why);
    if (r < 0)
        goto fail;
    t1 = mono_ms();
    run->cg = cgroup_qube_create(cb->cgroups, q->name, &limits);
    t2 = mono_ms();
    if (!run->cg) {
        r = backend_fail(why, -errno, "cannot create the cgroups of '%s': %s", q->name,
                         strerror(errno));
        goto fail;
    }
    r = launch_run(run, q, why);
    if (r < 0)
        goto fail;
    t3 = mono_ms();
    run->launched_ms = t3;
    log_debug("%s: volumes %.2f ms, cgroups %.2f ms, launch %.2f ms", q->name, t1 - t0, t2 - t1,
              t3 - t2);
    run->next = cb->runs;
    cb->runs = run;
    run->start_done = done;
    run->start_userdata = userdata;
    run->qrexec_timeout = q->qrexec_timeout;
    if (q->background) { /* on_launched goes on once the agent runs */
        run->background = true;
        launch_set_priority(run->launch, SD_EVENT_PRIORITY_IDLE);
        return 0;
    }
    /* someone waits: no trips through the loop. A failure here is returned, not called
     * back: our caller has not even heard that a start is under way. */
    char failure[sizeof(why->msg)] = "";
    run->sync_failure = failure;
    launch_wait(run->launch);
    if (*failure)
        return backend_fail(why, -EIO, "Start of qube '%s' failed: %s", q->name, failure);
    run->sync_failure = NULL;
    return 0;
fail:
    container_teardown(run, false, 0);
    container_settle(cb);
    return r;
}

static int container_pause(struct backend *b, const char *name, struct backend_why *why) {
    struct run *run = container_find(cb_of(b), name);
    if (!run || run->power != BACKEND_RUNNING || run->start_done)
        return not_running(name, why);
    int r = cgroup_qube_freeze(run->cg);
    if (r < 0)
        return backend_fail(why, r, "cannot freeze '%s': %s", name, strerror(-r));
    run->power = BACKEND_PAUSED;
    return 0;
}

static int container_reclaim(struct backend *b, const char *name) {
    struct run *run = container_find(cb_of(b), name);
    /* more than any qube holds: the kernel stops when nothing more is reclaimable */
    return run && run->cg ? cgroup_qube_reclaim(run->cg, 1ULL << 40) : -ENOENT;
}

static int container_unpause(struct backend *b, const char *name, struct backend_why *why) {
    struct run *run = container_find(cb_of(b), name);
    if (!run || run->power != BACKEND_PAUSED)
        return backend_fail(why, -EALREADY, "Domain is not paused: '%s'", name);
    int r = cgroup_qube_thaw(run->cg);
    if (r < 0)
        return backend_fail(why, r, "cannot thaw '%s': %s", name, strerror(-r));
    run->power = BACKEND_RUNNING;
    return 0;
}

/* Someone waits for this qube now: its CPU share back, and its start's remaining steps
 * (the uid maps, the readiness answer) no longer wait behind the daemon's other work. */
static int container_foreground(struct backend *b, const char *name) {
    struct run *run = container_find(cb_of(b), name);
    if (!run || !run->cg)
        return -ENOENT;
    run->background = false;
    if (run->launch)
        launch_set_priority(run->launch, SD_EVENT_PRIORITY_NORMAL);
    agent_link_ready_set_priority(&run->link, SD_EVENT_PRIORITY_NORMAL);
    return cgroup_qube_set_idle(run->cg, false, run->cpu_weight);
}

/* Kill and wait: the caller may start the qube again right after Kill returns. */
static int container_kill(struct backend *b, const char *name, struct backend_why *why) {
    struct run *run = container_find(cb_of(b), name);
    if (!run)
        return backend_fail(why, -ESRCH, "Domain is powered off: '%s'", name);
    kill_and_wait(run);
    container_teardown(run, true, 128 + SIGKILL);
    return 0;
}

static int container_kill_nowait(struct backend *b, const char *name, struct backend_why *why) {
    struct run *run = container_find(cb_of(b), name);
    if (!run)
        return backend_fail(why, -ESRCH, "Domain is powered off: '%s'", name);
    if (run->power == BACKEND_PAUSED && run->cg)
        cgroup_qube_thaw(run->cg); /* a frozen init would not die */
    /* the kernel takes the whole pid namespace down with its init; the exit watcher
     * then removes the cgroups: nothing here waits */
    syscall(SYS_pidfd_send_signal, run->pidfd, SIGKILL, NULL, 0);
    return 0;
}

static int on_stop_timeout(sd_event_source *src, uint64_t usec, void *userdata) {
    struct run *run = userdata;
    log_warning("%s: still running after shutdown_timeout; killing it", run->name);
    cgroup_qube_kill(run->cg);
    syscall(SYS_pidfd_send_signal, run->pidfd, SIGKILL, NULL, 0);
    return 0;
}

static int container_shutdown(struct backend *b, const char *name, bool force, backend_done_fn done,
                              void *userdata, struct backend_why *why) {
    struct run *run = container_find(cb_of(b), name);
    if (!run)
        return backend_fail(why, -ESRCH, "Domain is powered off: '%s'", name);
    if (run->power == BACKEND_PAUSED)
        cgroup_qube_thaw(run->cg); /* a frozen init cannot act on the request */
    run->power = BACKEND_RUNNING;
    if (agent_link_shutdown(&run->link) < 0) /* else the agent acts on it; we watch the init */
        syscall(SYS_pidfd_send_signal, run->pidfd, SIGTERM, NULL, 0);
    backend_shutdown_watch(b->loop, &run->stop_timer, run->shutdown_timeout, on_stop_timeout, run,
                           &run->stop_waiters, done, userdata);
    return 0;
}

static enum backend_power container_state(struct backend *b, const char *name) {
    struct run *run = container_find(cb_of(b), name);
    return run ? run->power : BACKEND_HALTED;
}

static int container_stats(struct backend *b, const char *name, struct backend_stats *out) {
    struct run *run = container_find(cb_of(b), name);
    if (!run)
        return -ENOENT;
    out->memory_bytes = cgroup_qube_memory_bytes(run->cg);
    out->cpu_ns = cgroup_qube_cpu_ns(run->cg);
    return 0;
}

static int container_memory_headroom(struct backend *b, uint64_t *bytes) {
    return cgroup_system_memory_headroom(cb_of(b)->cgroups, bytes);
}

static struct run *ending_run(struct container_backend *cb, const char *uuid) {
    for (struct run *r = cb->dying; r; r = r->next)
        if (strcmp(r->uuid, uuid) == 0)
            return r;
    for (struct run *r = cb->retiring; r; r = r->next)
        if (strcmp(r->uuid, uuid) == 0)
            return r;
    return NULL;
}

/* The qube's slot is free once nothing of it is left: its volumes are gone (the caller
 * removed them), and an ending run's processes and directories once the run is freed. */
static void release_uid_range(struct container_backend *cb, const char *uuid) {
    if (!cb->slots)
        return;
    struct run *ending = ending_run(cb, uuid);
    if (ending)
        ending->release_slot = true;
    else
        container_release_slot(cb, uuid);
}

static int container_remove_volumes(struct backend *b, const struct backend_qube *q,
                                    struct backend_why *why) {
    struct container_backend *cb = cb_of(b);
    /* a previous run's volume commit comes first; a disposable's own remains are only
     * in directories named after it, which its reaper job removes */
    container_settle_writers(cb);
    if (container_find(cb, q->name))
        return backend_fail(why, -EBUSY, "Domain is not powered off: '%s'", q->name);
    guest_log_remove(cb, q->name);
    int r = volume_remove_all(cb->state_dir, q->uuid);
    if (r < 0)
        return backend_fail(why, r, "cannot remove the volumes of '%s': %s", q->name, strerror(-r));
    release_uid_range(cb, q->uuid);
    container_sweep_copies(cb, false); /* the copies of its layers in other slots */
    return 0;
}

static int container_volume_info(struct backend *b, const struct backend_qube *q,
                                 const char *volume, struct backend_volume_info *out,
                                 struct backend_why *why) {
    struct container_backend *cb = cb_of(b);
    bool want_usage = out->want_usage;
    container_settle_writers(cb); /* a template's pending commit makes a new revision */
    const char *source = container_volume_source(q, volume);
    const char *vol = strcmp(volume, "root") == 0 ? "root" : "private";
    struct volume_stack cur = {0};
    if (volume_current(cb->state_dir, source ? source : q->uuid, vol, &cur) < 0)
        return backend_fail(why, -EIO, "cannot read volume %s of '%s'", volume, q->name);
    struct run *run = container_find(cb, q->name);
    const struct run_volume *rv = run ? (strcmp(vol, "root") == 0 ? &run->root : &run->priv) : NULL;
    *out = (struct backend_volume_info){
        .revision = cur.revision,
        .used_revision = rv ? rv->stack.revision : 0,
        .in_use = rv != NULL,
        .usage_bytes = want_usage
                           ? volume_usage_bytes(cb->state_dir, source ? source : q->uuid, vol)
                           : 0,
        .save_on_stop = !source,
        .snap_on_start = source != NULL,
    };
    struct volume_config conf = {0};
    if (!source && volume_get_config(cb->state_dir, q->uuid, vol, &conf) == 0) {
        out->size_bytes = conf.size;
        out->revisions_to_keep = conf.revisions_to_keep;
    }
    snprintf(out->source_uuid, sizeof(out->source_uuid), "%s", source ? source : "");
    volume_stack_free(&cur);
    return 0;
}

static int container_import_begin(struct backend *b, const struct backend_qube *q,
                                  const char *volume, char *path, size_t size,
                                  struct backend_why *why) {
    struct container_backend *cb = cb_of(b);
    container_settle(cb); /* a previous run's volume commit comes first */
    if (container_find(cb, q->name))
        return backend_fail(why, -EBUSY, "Domain is not powered off: '%s'", q->name);
    if (container_volume_source(q, volume))
        return backend_fail(why, -EINVAL,
                            "Volume %s of '%s' is a view of another qube's; import "
                            "into that one",
                            volume, q->name);
    int r = volume_import_begin(cb->state_dir, q->uuid, volume, path, size);
    if (r < 0)
        return backend_fail(why, r, "cannot prepare the import: %s", strerror(-r));
    return 0;
}

static int container_import_end(struct backend *b, const struct backend_qube *q, const char *volume,
                                bool commit, struct backend_why *why) {
    struct container_backend *cb = cb_of(b);
    container_settle(cb); /* a previous run's volume commit comes first */
    int r = volume_import_end(cb->state_dir, q->uuid, volume, commit, cb->uid_base, cb->uid_count);
    if (r < 0)
        return backend_fail(why, r, "cannot finish the import: %s", strerror(-r));
    return 0;
}

/* One cgroup directory per state dir: several daemons (the test suite runs many) must
 * never see, let alone clean up, each other's qubes. */
static void cgroup_group_name(const char *state_dir, char *buf, size_t size) {
    char real[4096];
    const char *p = realpath(state_dir, real) ? real : state_dir;
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    snprintf(buf, size, "dispenser-%08x", h);
}

static void container_free(struct backend *b) {
    struct container_backend *cb = cb_of(b);
    container_settle(cb);
    reaper_stop(TAKE_PTR(cb->reaper));
    agent_hub_free(&cb->agents);
    /* Qubes outlive the daemon: forget them, do not stop them. */
    bool qubes_left = cb->runs != NULL;
    while (cb->runs) {
        struct run *run = cb->runs;
        cb->runs = run->next;
        run_free(run);
    }
    if (!qubes_left && cb->cgroups)
        cgroup_system_remove_group(cb->cgroups); /* no qube left: leave no empty dirs */
    cgroup_system_free(cb->cgroups);
    guest_log_owners_free(cb);
    if (cb->idmap_probe) { /* its scratch directory goes */
        char unused[256];
        idmap_probe_finish(TAKE_PTR(cb->idmap_probe), unused, sizeof(unused));
    }
    free(cb->uid_ranges_failure);
    for (unsigned i = 0; cb->idmap_ns && i < cb->n_slots; i++)
        if (cb->idmap_ns[i] >= 0)
            close(cb->idmap_ns[i]);
    free(cb->idmap_ns);
    uid_slots_free(cb->slots);
    if (cb->agent_fd >= 0)
        close(cb->agent_fd);
    free(cb->state_dir);
    free(cb->runtime_dir);
    free(cb->agent_path);
    sd_event_unref(b->loop);
    free(cb);
}

static const struct backend_ops CONTAINER_OPS = {
    .name = "container",
    .start = container_start,
    .pause = container_pause,
    .unpause = container_unpause,
    .reclaim = container_reclaim,
    .foreground = container_foreground,
    .shutdown = container_shutdown,
    .kill = container_kill,
    .kill_nowait = container_kill_nowait,
    .state = container_state,
    .stats = container_stats,
    .memory_headroom = container_memory_headroom,
    .remove_volumes = container_remove_volumes,
    .volume_info = container_volume_info,
    .volume_revisions = container_volume_revisions,
    .volume_change = container_volume_change,
    .import_begin = container_import_begin,
    .import_end = container_import_end,
    .gui_socket = container_gui_socket,
    .exec = container_exec,
    .upcall_reply = container_upcall_reply,
    .netns_open = container_netns_open,
    .net_attach = container_net_attach,
    .block_attach = container_block_attach,
    .block_detach = container_block_detach,
    .adopt = container_adopt,
    .cleanup = container_cleanup,
    .free = container_free,
};

/* Host ids 0x60000000.. (65,536 of them) are what ids 0.. inside qubes map to. Far above
 * the ranges useradd hands out (/etc/subuid starts at 100000) and systemd's dynamic users. */
#define DEFAULT_UID_BASE 0x60000000u
#define DEFAULT_UID_COUNT 65536u
/* Slot 0 (the canonical range) and 1023 qubes' ranges: 0x60000000..0x63ffffff, below the
 * QEMU engine's default qemu.uid-base=0x64000000. A slot is held until its run's remains
 * are cleaned up, behind the reaper: 100 callers of `qvm-run --dispvm` (the soak) held
 * more than 255 at once on two cores. */
#define DEFAULT_UID_SLOTS 1024u

enum uid_ranges { UID_RANGES_AUTO, UID_RANGES_PER_QUBE, UID_RANGES_SHARED, UID_RANGES_COPIES };

static int parse_uid_option(const char *key, const char *value, uid_t *out,
                            struct backend_why *why) {
    char *end;
    errno = 0;
    unsigned long v = strtoul(value, &end, 0);
    if (errno || !*value || *end || v == 0 || v > UINT32_MAX / 2)
        return backend_fail(why, -EIO, "container.%s: '%s' is not a valid id", key, value);
    *out = (uid_t)v;
    return 0;
}

/* The engine's own settings from the daemon's --engine-option container.KEY=VALUE. */
static int parse_uid_ranges(const char *value, enum uid_ranges *out, struct backend_why *why) {
    if (strcmp(value, "auto") == 0)
        *out = UID_RANGES_AUTO;
    else if (strcmp(value, "per-qube") == 0)
        *out = UID_RANGES_PER_QUBE;
    else if (strcmp(value, "shared") == 0)
        *out = UID_RANGES_SHARED;
    else if (strcmp(value, "copies") == 0)
        *out = UID_RANGES_COPIES;
    else
        return backend_fail(why, -EIO,
                            "container.uid-ranges: '%s' is not auto, per-qube, copies or shared",
                            value);
    return 0;
}

static int apply_options(struct container_backend *cb, const struct backend_config *cfg,
                         enum uid_ranges *ranges, struct backend_why *why) {
    cb->uid_base = DEFAULT_UID_BASE;
    cb->uid_count = DEFAULT_UID_COUNT;
    uid_t slots = DEFAULT_UID_SLOTS;
    *ranges = UID_RANGES_AUTO;
    for (size_t i = 0; i < cfg->n_options; i++) {
        const struct backend_option *o = &cfg->options[i];
        int r;
        if (strcmp(o->key, "uid-base") == 0)
            r = parse_uid_option(o->key, o->value, &cb->uid_base, why);
        else if (strcmp(o->key, "uid-count") == 0)
            r = parse_uid_option(o->key, o->value, &cb->uid_count, why);
        else if (strcmp(o->key, "uid-slots") == 0)
            r = parse_uid_option(o->key, o->value, &slots, why);
        else if (strcmp(o->key, "uid-ranges") == 0)
            r = parse_uid_ranges(o->value, ranges, why);
        else
            r = backend_fail(why, -EIO,
                             "container.%s: no such option (known: uid-base, "
                             "uid-count, uid-ranges, uid-slots)",
                             o->key);
        if (r < 0)
            return -1;
    }
    if ((uint64_t)cb->uid_base + (uint64_t)slots * cb->uid_count > UINT32_MAX)
        return backend_fail(why, -EIO,
                            "container.uid-slots: %u ranges of %u ids from %u pass the "
                            "largest uid",
                            (unsigned)slots, (unsigned)cb->uid_count, (unsigned)cb->uid_base);
    cb->n_slots = (unsigned)slots;
    return 0;
}

/* Per-qube ranges where this kernel idmaps the state dir's file system for overlayfs
 * (probed: 5.19+, and the file system must support it); else, or when asked, one shared
 * range. Both keep volumes owned by the canonical range: switching costs nothing. The
 * slot table is read in both modes: slots of removed qubes are released in both. */
static int open_uid_ranges(struct container_backend *cb, enum uid_ranges mode,
                           struct backend_why *why) {
    char dir[4096];
    container_path(cb, dir, sizeof(dir), "%s/container", cb->state_dir);
    cb->slots = uid_slots_open(cb->state_dir, cb->n_slots);
    if (!cb->slots)
        return backend_fail(why, -EIO, "cannot read %s/uids: %s", dir, strerror(errno));
    if (mode == UID_RANGES_SHARED || cb->n_slots < 2) {
        log_info("container engine: every qube runs as the host uid range %u.. "
                 "(container.uid-ranges=shared)",
                 (unsigned)cb->uid_base);
        return 0;
    }
    if (mode == UID_RANGES_COPIES) { /* as where the kernel has no idmapped mounts */
        log_info("container engine: a host uid range per qube, on chowned copies of the "
                 "layers (container.uid-ranges=copies)");
        cb->per_qube = cb->copies = true;
        return 0;
    }
    cb->per_qube_required = mode == UID_RANGES_PER_QUBE;
    cb->idmap_probe = idmap_probe_start(dir, cb->uid_base, cb->uid_count);
    return 0;
}

struct backend *container_backend_new(sd_event *loop, const struct backend_config *cfg,
                                      struct backend_why *why) {
    struct container_backend *cb = xcalloc(1, sizeof(*cb));
    cb->base = (struct backend){&CONTAINER_OPS, sd_event_ref(loop), {0}};
    cb->agent_fd = -1; /* until opened: container_free must not close fd 0 */
    agent_hub_init(&cb->agents, &cb->base);
    cb->state_dir = xstrdup(cfg->state_dir);
    cb->agent_path = xstrdup(cfg->agent_path);
    cb->runtime_dir = xstrdup(cfg->runtime_dir);
    enum uid_ranges ranges;
    if (apply_options(cb, cfg, &ranges, why) < 0 || open_uid_ranges(cb, ranges, why) < 0) {
        container_free(&cb->base);
        return NULL;
    }
    /* a sealed copy in memory: its path shows nowhere in a qube (mountinfo, /proc/1/exe),
     * and a rebuilt binary on disk changes no running daemon's qubes */
    cb->agent_fd = sealed_memfd_copy(cfg->agent_path, "dispenser-agent");
    int agent_errno = cb->agent_fd < 0 ? -cb->agent_fd : 0;
    char group[64];
    cgroup_group_name(cfg->state_dir, group, sizeof(group));
    cb->cgroups = cgroup_system_open(group);
    char path[4096];
    container_path(cb, path, sizeof(path), "%s/qubes", cb->runtime_dir);
    make_owned_dir(path, 0, 0700);
    if (cb->agent_fd < 0 || !cb->cgroups) {
        if (cb->agent_fd < 0)
            backend_fail(why, -EIO, "the agent binary %s cannot be opened (%s)", cfg->agent_path,
                         strerror(agent_errno));
        else
            backend_fail(why, -EIO, "no usable cgroup hierarchy was found");
        container_free(&cb->base);
        return NULL;
    }
    /* forked now, while the daemon is small and has no qubes' descriptors open */
    cb->reaper = reaper_start(loop, cb->cgroups, cb->state_dir, cb->runtime_dir);
    if (!cb->reaper) /* cleanups then run in the daemon: slower, as clean */
        log_warning("cannot start the reaper process: %s", strerror(errno));
    int r = sandbox_prepare_seccomp();
    if (r < 0) /* each qube's init then compiles it itself: slower, as safe */
        log_warning("cannot precompile the seccomp filter: %s", strerror(-r));
    log_info("container engine: %s", cgroup_system_describe(cb->cgroups));
    return &cb->base;
}
