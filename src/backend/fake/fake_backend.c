/* The fake engine (fake_backend.h): qubes are records in a list, "starting" is a timer
 * of zero length, and every operation is written to a log the tests read. */
#include "fake_backend.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "strbuf.h"

struct fake_qube {
    struct fake_qube *next;
    struct fake *f;
    char name[32], uuid[40];
    enum backend_power power;
    bool background;
    char root_source[40], private_source[40];
    uint64_t used_root, used_private; /* revisions it started with */
    char options[512];
    /* a start under way */
    bool starting;
    backend_done_fn start_done;
    void *start_userdata;
    sd_event_source *start_src;
    int start_r;
    char start_msg[256];
    /* a shutdown under way */
    sd_event_source *stop_src;
    backend_done_fn stop_done;
    void *stop_userdata;
};

struct fake_volume {
    struct fake_volume *next;
    char uuid[40], volume[16];
    uint64_t revision;
};

struct fake_exec {
    struct fake_exec *next;
    struct fake *f;
    char name[32];
    backend_call_done_fn done;
    void *userdata;
    int status;
    sd_event_source *src; /* NULL: hangs until fake_finish_exec */
};

struct fake {
    struct backend base;
    struct backend_ops ops;
    char name[32];
    struct fake_qube *qubes;
    struct fake_volume *volumes;
    struct fake_exec *execs;
    char *fail_msg[FAKE_OP_COUNT]; /* the next call of the op fails with this */
    enum fake_start_plan start_plan;
    char start_msg[256];
    bool exec_hang;
    int exec_status;
    int64_t headroom;
    uint64_t memory_usage;
    bool stats_unavailable;
    struct strbuf log, replies, keep;
    char last_exec[512];
};

static const char *const OP_NAMES[FAKE_OP_COUNT] = {
    "start",        "pause",       "unpause", "reclaim",         "foreground",     "shutdown",
    "kill",         "kill_nowait", "stats",   "memory_headroom", "remove_volumes", "volume_info",
    "import_begin", "import_end",  "exec",    "upcall_reply",    "adopt",          "cleanup",
};

const char *fake_op_name(enum fake_op op) { return op < FAKE_OP_COUNT ? OP_NAMES[op] : "?"; }

static struct fake *fake_of(struct backend *b) { return (struct fake *)b; }

static void record(struct fake *f, enum fake_op op, const char *qube) {
    strbuf_printf(&f->log, "%s %s\n", OP_NAMES[op], qube ? qube : "-");
}

/* The planned failure of this call, if any: -EIO with its words. */
static int planned_failure(struct fake *f, enum fake_op op, struct backend_why *why) {
    if (!f->fail_msg[op])
        return 0;
    backend_fail(why, -EIO, "%s", f->fail_msg[op]);
    free(f->fail_msg[op]);
    f->fail_msg[op] = NULL;
    return -EIO;
}

static struct fake_qube *find(struct fake *f, const char *name) {
    for (struct fake_qube *q = f->qubes; q; q = q->next)
        if (strcmp(q->name, name) == 0)
            return q;
    return NULL;
}

static struct fake_qube *qube_add(struct fake *f, const char *name) {
    struct fake_qube *q = xcalloc(1, sizeof(*q));
    q->f = f;
    snprintf(q->name, sizeof(q->name), "%s", name);
    q->next = f->qubes;
    f->qubes = q;
    return q;
}

static void qube_forget(struct fake *f, struct fake_qube *q) {
    for (struct fake_qube **pp = &f->qubes; *pp; pp = &(*pp)->next)
        if (*pp == q) {
            *pp = q->next;
            break;
        }
    sd_event_source_disable_unref(q->start_src);
    sd_event_source_disable_unref(q->stop_src);
    free(q);
}

static uint64_t *revision_slot(struct fake *f, const char *uuid, const char *volume) {
    for (struct fake_volume *v = f->volumes; v; v = v->next)
        if (strcmp(v->uuid, uuid) == 0 && strcmp(v->volume, volume) == 0)
            return &v->revision;
    struct fake_volume *v = xcalloc(1, sizeof(*v));
    snprintf(v->uuid, sizeof(v->uuid), "%s", uuid);
    snprintf(v->volume, sizeof(v->volume), "%s", volume);
    v->revision = 1; /* every volume has a first revision */
    v->next = f->volumes;
    f->volumes = v;
    return &v->revision;
}

/* Whose revision a qube's volume follows: its own, or its source's (a CoW view). */
static const char *volume_owner(const struct backend_qube *q, const char *volume) {
    bool own_root = q->kind == BACKEND_TEMPLATEVM || q->kind == BACKEND_STANDALONEVM;
    if (strcmp(volume, "root") == 0)
        return own_root || !q->root_source ? NULL : q->root_source;
    return q->kind == BACKEND_DISPVM ? q->private_source : NULL;
}

static uint64_t revision_of(struct fake *f, const struct backend_qube *q, const char *volume) {
    const char *owner = volume_owner(q, volume);
    return *revision_slot(f, owner ? owner : q->uuid, volume);
}

/* ---- start ---- */

static void start_end(struct fake_qube *q) {
    struct fake *f = q->f;
    backend_done_fn done = q->start_done;
    void *userdata = q->start_userdata;
    int r = q->start_r;
    char why[sizeof(((struct backend_why *)0)->msg)] = "";
    if (r < 0)
        snprintf(why, sizeof(why), "%s", q->start_msg);
    q->starting = false;
    q->start_src = sd_event_source_disable_unref(q->start_src);
    if (r < 0) /* on failure nothing is left */
        qube_forget(f, q);
    else
        q->power = BACKEND_RUNNING;
    done(userdata, r, r < 0 ? why : NULL);
}

static int on_start_due(sd_event_source *src, void *userdata) {
    start_end(userdata);
    return 0;
}

static void describe_options(struct fake_qube *fq, const struct backend_qube *q) {
    fq->options[0] = '\0';
    for (size_t i = 0; i < q->n_options; i++)
        snprintf(fq->options + strlen(fq->options), sizeof(fq->options) - strlen(fq->options),
                 "%s%s=%s", i ? " " : "", q->options[i].key, q->options[i].value);
}

static int f_start(struct backend *b, const struct backend_qube *q, backend_done_fn done,
                   void *userdata, struct backend_why *why) {
    struct fake *f = fake_of(b);
    record(f, FAKE_START, q->name);
    if (planned_failure(f, FAKE_START, why) < 0)
        return -EIO;
    struct fake_qube *fq = find(f, q->name);
    if (fq && (fq->power != BACKEND_HALTED || fq->starting))
        return backend_fail(why, -EBUSY, "Domain is not powered off: '%s'", q->name);
    if (!fq)
        fq = qube_add(f, q->name);
    snprintf(fq->uuid, sizeof(fq->uuid), "%s", q->uuid);
    snprintf(fq->root_source, sizeof(fq->root_source), "%s", q->root_source ? q->root_source : "");
    snprintf(fq->private_source, sizeof(fq->private_source), "%s",
             q->private_source ? q->private_source : "");
    fq->used_root = revision_of(f, q, "root");
    fq->used_private = revision_of(f, q, "private");
    fq->background = q->background;
    describe_options(fq, q);
    fq->starting = true;
    fq->start_done = done;
    fq->start_userdata = userdata;
    fq->start_r = f->start_plan == FAKE_START_FAIL ? -1 : 0;
    snprintf(fq->start_msg, sizeof(fq->start_msg), "%s", f->start_msg);
    switch (f->start_plan) {
    case FAKE_START_OK_SYNC: start_end(fq); break;
    case FAKE_START_HANG: break;
    default:
        if (sd_event_add_defer(b->loop, &fq->start_src, on_start_due, fq) < 0) {
            qube_forget(f, fq);
            return backend_fail(why, -EIO, "fake: cannot schedule the start");
        }
        break;
    }
    return 0;
}

int fake_finish_start(struct backend *b, const char *name, int r, const char *msg) {
    struct fake_qube *q = find(fake_of(b), name);
    if (!q || !q->starting)
        return -1;
    q->start_r = r < 0 ? -1 : 0;
    snprintf(q->start_msg, sizeof(q->start_msg), "%s", msg ? msg : "");
    start_end(q);
    return 0;
}

/* ---- power ---- */

static int not_running(const char *name, struct backend_why *why) {
    return backend_fail(why, -EAGAIN,
                        "Domain not running (either powered off or "
                        "paused): '%s'",
                        name);
}

static int f_pause(struct backend *b, const char *name, struct backend_why *why) {
    struct fake *f = fake_of(b);
    record(f, FAKE_PAUSE, name);
    struct fake_qube *q = find(f, name);
    if (planned_failure(f, FAKE_PAUSE, why) < 0)
        return -EIO;
    if (!q || q->starting || q->power != BACKEND_RUNNING)
        return not_running(name, why);
    q->power = BACKEND_PAUSED;
    return 0;
}

static int f_unpause(struct backend *b, const char *name, struct backend_why *why) {
    struct fake *f = fake_of(b);
    record(f, FAKE_UNPAUSE, name);
    struct fake_qube *q = find(f, name);
    if (planned_failure(f, FAKE_UNPAUSE, why) < 0)
        return -EIO;
    if (!q || q->power != BACKEND_PAUSED)
        return backend_fail(why, -EALREADY, "Domain is not paused: '%s'", name);
    q->power = BACKEND_RUNNING;
    return 0;
}

static int f_reclaim(struct backend *b, const char *name) {
    struct fake *f = fake_of(b);
    record(f, FAKE_RECLAIM, name);
    if (planned_failure(f, FAKE_RECLAIM, NULL) < 0)
        return -EIO;
    return find(f, name) ? 0 : -ENOENT;
}

static int f_foreground(struct backend *b, const char *name) {
    struct fake *f = fake_of(b);
    record(f, FAKE_FOREGROUND, name);
    struct fake_qube *q = find(f, name);
    if (planned_failure(f, FAKE_FOREGROUND, NULL) < 0)
        return -EIO;
    if (!q)
        return -ENOENT;
    q->background = false;
    return 0;
}

static void end_execs_of(struct fake *f, const char *name);

/* Gone: a start under way fails (the qube never came up), else the exit is reported.
 * Whoever waits for a shutdown is answered first, as the container engine does. */
static void halt(struct fake *f, struct fake_qube *q, int status) {
    if (q->starting) {
        q->start_r = -1;
        snprintf(q->start_msg, sizeof(q->start_msg), "the qube's init exited during start-up");
        start_end(q);
        return;
    }
    char name[32];
    snprintf(name, sizeof(name), "%s", q->name);
    backend_done_fn stop_done = q->stop_done;
    void *stop_userdata = q->stop_userdata;
    qube_forget(f, q);
    end_execs_of(f, name);
    if (stop_done)
        stop_done(stop_userdata, 0, NULL);
    if (f->base.events.exited)
        f->base.events.exited(f->base.events.userdata, name, status);
}

static int on_stop_due(sd_event_source *src, void *userdata) {
    struct fake_qube *q = userdata;
    halt(q->f, q, 0);
    return 0;
}

static int f_shutdown(struct backend *b, const char *name, bool force, backend_done_fn done,
                      void *userdata, struct backend_why *why) {
    struct fake *f = fake_of(b);
    record(f, FAKE_SHUTDOWN, name);
    struct fake_qube *q = find(f, name);
    if (planned_failure(f, FAKE_SHUTDOWN, why) < 0)
        return -EIO;
    if (!q || q->power == BACKEND_HALTED)
        return backend_fail(why, -ESRCH, "Domain is powered off: '%s'", name);
    if (q->stop_src)
        return backend_fail(why, -EIO, "fake: '%s' is already shutting down", name);
    q->stop_done = done;
    q->stop_userdata = userdata;
    if (sd_event_add_defer(b->loop, &q->stop_src, on_stop_due, q) < 0)
        return backend_fail(why, -EIO, "fake: cannot schedule the shutdown");
    return 0;
}

/* As the container engine's: it is gone (and reported) before kill returns. */
static int f_kill(struct backend *b, const char *name, struct backend_why *why) {
    struct fake *f = fake_of(b);
    record(f, FAKE_KILL, name);
    struct fake_qube *q = find(f, name);
    if (planned_failure(f, FAKE_KILL, why) < 0)
        return -EIO;
    if (!q)
        return backend_fail(why, -ESRCH, "Domain is powered off: '%s'", name);
    halt(f, q, 137);
    return 0;
}

static int on_killed(sd_event_source *src, void *userdata) {
    struct fake_qube *q = userdata;
    q->stop_src = sd_event_source_disable_unref(q->stop_src);
    halt(q->f, q, 137);
    return 0;
}

/* The exit comes later, through the loop, as the container's exit watcher reports it. */
static int f_kill_nowait(struct backend *b, const char *name, struct backend_why *why) {
    struct fake *f = fake_of(b);
    record(f, FAKE_KILL_NOWAIT, name);
    struct fake_qube *q = find(f, name);
    if (planned_failure(f, FAKE_KILL_NOWAIT, why) < 0)
        return -EIO;
    if (!q)
        return backend_fail(why, -ESRCH, "Domain is powered off: '%s'", name);
    q->stop_src = sd_event_source_disable_unref(q->stop_src);
    if (sd_event_add_defer(b->loop, &q->stop_src, on_killed, q) < 0)
        return backend_fail(why, -EIO, "fake: cannot schedule the kill");
    return 0;
}

static enum backend_power f_state(struct backend *b, const char *name) {
    struct fake_qube *q = find(fake_of(b), name);
    return q && !q->starting ? q->power : BACKEND_HALTED;
}

static int f_stats(struct backend *b, const char *name, struct backend_stats *out) {
    struct fake *f = fake_of(b);
    struct fake_qube *q = find(f, name);
    if (planned_failure(f, FAKE_STATS, NULL) < 0)
        return -EIO;
    if (!q)
        return -ENOENT;
    if (f->stats_unavailable)
        return -EIO;
    *out = (struct backend_stats){.memory_bytes = f->memory_usage};
    return 0;
}

static int f_memory_headroom(struct backend *b, uint64_t *bytes) {
    struct fake *f = fake_of(b);
    record(f, FAKE_MEMORY_HEADROOM, NULL);
    if (planned_failure(f, FAKE_MEMORY_HEADROOM, NULL) < 0)
        return -EIO;
    if (f->headroom < 0)
        return -ENOENT;
    *bytes = (uint64_t)f->headroom;
    return 0;
}

/* ---- volumes ---- */

static int f_remove_volumes(struct backend *b, const struct backend_qube *q,
                            struct backend_why *why) {
    struct fake *f = fake_of(b);
    record(f, FAKE_REMOVE_VOLUMES, q->name);
    if (planned_failure(f, FAKE_REMOVE_VOLUMES, why) < 0)
        return -EIO;
    struct fake_qube *fq = find(f, q->name);
    if (fq && fq->power != BACKEND_HALTED)
        return backend_fail(why, -EBUSY, "Domain is not powered off: '%s'", q->name);
    for (struct fake_volume **pp = &f->volumes; *pp;) {
        struct fake_volume *v = *pp;
        if (strcmp(v->uuid, q->uuid) == 0) {
            *pp = v->next;
            free(v);
        } else {
            pp = &v->next;
        }
    }
    return 0;
}

static int f_volume_info(struct backend *b, const struct backend_qube *q, const char *volume,
                         struct backend_volume_info *out, struct backend_why *why) {
    struct fake *f = fake_of(b);
    record(f, FAKE_VOLUME_INFO, q->name);
    if (planned_failure(f, FAKE_VOLUME_INFO, why) < 0)
        return -EIO;
    if (strcmp(volume, "root") != 0 && strcmp(volume, "private") != 0)
        return backend_fail(why, -EIO, "no volume %s of '%s'", volume, q->name);
    const char *owner = volume_owner(q, volume);
    struct fake_qube *fq = find(f, q->name);
    bool in_use = fq && !fq->starting && fq->power != BACKEND_HALTED;
    *out = (struct backend_volume_info){
        .revision = revision_of(f, q, volume),
        .used_revision = !in_use                       ? 0
                         : strcmp(volume, "root") == 0 ? fq->used_root
                                                       : fq->used_private,
        .in_use = in_use,
        .save_on_stop = !owner,
        .snap_on_start = owner != NULL,
    };
    snprintf(out->source_uuid, sizeof(out->source_uuid), "%s", owner ? owner : "");
    return 0;
}

static int f_import_begin(struct backend *b, const struct backend_qube *q, const char *volume,
                          char *path, size_t size, struct backend_why *why) {
    struct fake *f = fake_of(b);
    record(f, FAKE_IMPORT_BEGIN, q->name);
    if (planned_failure(f, FAKE_IMPORT_BEGIN, why) < 0)
        return -EIO;
    snprintf(path, size, "/nonexistent/fake-import/%s/%s", q->uuid, volume);
    return 0;
}

static int f_import_end(struct backend *b, const struct backend_qube *q, const char *volume,
                        bool commit, struct backend_why *why) {
    struct fake *f = fake_of(b);
    record(f, FAKE_IMPORT_END, q->name);
    if (planned_failure(f, FAKE_IMPORT_END, why) < 0)
        return -EIO;
    if (commit)
        (*revision_slot(f, q->uuid, volume))++;
    return 0;
}

/* ---- qrexec ---- */

static void exec_unlink(struct fake_exec *x) {
    for (struct fake_exec **pp = &x->f->execs; *pp; pp = &(*pp)->next)
        if (*pp == x) {
            *pp = x->next;
            break;
        }
    sd_event_source_disable_unref(x->src);
}

static void exec_end_as(struct fake_exec *x, enum backend_call_end how, const char *reason) {
    exec_unlink(x);
    backend_call_done_fn done = x->done;
    void *userdata = x->userdata;
    int status = x->status;
    free(x);
    done(userdata, how, status, reason);
}

static void exec_end(struct fake_exec *x) { exec_end_as(x, BACKEND_CALL_EXITED, NULL); }

/* As the container engine's calls end when the agent's connection does. */
static void end_execs_of(struct fake *f, const char *name) {
    for (struct fake_exec *x = f->execs, *next; x; x = next) {
        next = x->next;
        if (strcmp(x->name, name) == 0) {
            x->status = 0;
            exec_end_as(x, BACKEND_CALL_FAILED, "the qube went away during the call");
            next = f->execs; /* the callback may have changed the list */
        }
    }
}

static int on_exec_due(sd_event_source *src, void *userdata) {
    exec_end(userdata);
    return 0;
}

static int f_exec(struct backend *b, const char *name, const struct backend_service_call *call,
                  backend_call_done_fn done, void *userdata, struct backend_why *why) {
    struct fake *f = fake_of(b);
    record(f, FAKE_EXEC, name);
    struct fake_qube *q = find(f, name);
    if (planned_failure(f, FAKE_EXEC, why) < 0)
        return -EIO;
    if (!q || q->starting || q->power != BACKEND_RUNNING)
        return not_running(name, why);
    snprintf(f->last_exec, sizeof(f->last_exec), "%s+%s in %s from %s for %s user=%s",
             call->service, call->argument, name, call->source, call->target, call->user);
    struct fake_exec *x = xcalloc(1, sizeof(*x));
    *x = (struct fake_exec){.f = f, .done = done, .userdata = userdata, .status = f->exec_status};
    snprintf(x->name, sizeof(x->name), "%s", name);
    /* appended: fake_finish_exec ends the oldest first */
    struct fake_exec **tail = &f->execs;
    while (*tail)
        tail = &(*tail)->next;
    *tail = x;
    if (!f->exec_hang && sd_event_add_defer(b->loop, &x->src, on_exec_due, x) < 0) {
        exec_unlink(x);
        free(x);
        return backend_fail(why, -EIO, "fake: cannot schedule the call");
    }
    return 0;
}

int fake_finish_exec(struct backend *b, const char *name, int status) {
    for (struct fake_exec *x = fake_of(b)->execs; x; x = x->next)
        if (strcmp(x->name, name) == 0) {
            x->status = status;
            exec_end(x);
            return 0;
        }
    return -1;
}

struct fake_upcall {
    struct backend_upcall call;
    char source[32], target[64], service[128];
};

static void f_upcall_reply(struct backend *b, struct backend_upcall *call,
                           enum backend_call_end how, int status, const char *reason) {
    struct fake *f = fake_of(b);
    static const char *const HOW[] = {"exited", "signaled", "failed"};
    record(f, FAKE_UPCALL_REPLY, call->source);
    strbuf_printf(&f->replies, "%s %d %s\n", how <= BACKEND_CALL_FAILED ? HOW[how] : "?", status,
                  reason ? reason : "");
    free(call->handle);
}

int fake_inject_upcall(struct backend *b, const char *source, const char *target,
                       const char *service) {
    struct fake *f = fake_of(b);
    struct fake_qube *q = find(f, source);
    if (!q || q->starting || !b->events.upcall)
        return -1;
    struct fake_upcall *u = xcalloc(1, sizeof(*u));
    snprintf(u->source, sizeof(u->source), "%s", source);
    snprintf(u->target, sizeof(u->target), "%s", target);
    snprintf(u->service, sizeof(u->service), "%s", service);
    u->call = (struct backend_upcall){.source = u->source,
                                      .target = u->target,
                                      .service = u->service,
                                      .user = "",
                                      .command = "",
                                      .from = b,
                                      .handle = u};
    for (int i = 0; i < 3; i++)
        u->call.stdio[i] = open("/dev/null", O_RDWR | O_CLOEXEC);
    b->events.upcall(b->events.userdata, &u->call);
    return 0;
}

/* ---- restart ---- */

static int f_adopt(struct backend *b, const struct backend_qube *q) {
    struct fake *f = fake_of(b);
    record(f, FAKE_ADOPT, q->name);
    struct fake_qube *fq = find(f, q->name);
    if (!fq || fq->power == BACKEND_HALTED)
        return -1;
    snprintf(fq->uuid, sizeof(fq->uuid), "%s", q->uuid);
    /* it started before the restart, from the revisions current then: the ones now (a
     * real engine reads them from what it kept of the run) */
    fq->used_root = revision_of(f, q, "root");
    fq->used_private = revision_of(f, q, "private");
    return 0;
}

static bool kept(const char *uuid, const char *const *keep) {
    for (size_t i = 0; *uuid && keep[i]; i++)
        if (strcmp(keep[i], uuid) == 0)
            return true;
    return false;
}

/* What runs but belongs to no qube of the keep list is gone, as a real engine removes it
 * (a qube never adopted has no uuid here: it is a leftover too). */
static void f_cleanup(struct backend *b, const char *const *keep) {
    struct fake *f = fake_of(b);
    record(f, FAKE_CLEANUP, NULL);
    strbuf_reset(&f->keep);
    for (size_t i = 0; keep[i]; i++)
        strbuf_printf(&f->keep, "%s%s", i ? " " : "", keep[i]);
    for (struct fake_qube *q = f->qubes, *next; q; q = next) {
        next = q->next;
        if (!q->starting && !kept(q->uuid, keep))
            qube_forget(f, q);
    }
}

static void f_free(struct backend *b) {
    struct fake *f = fake_of(b);
    while (f->qubes)
        qube_forget(f, f->qubes);
    while (f->volumes) {
        struct fake_volume *v = f->volumes;
        f->volumes = v->next;
        free(v);
    }
    while (f->execs) {
        struct fake_exec *x = f->execs;
        exec_unlink(x);
        free(x);
    }
    for (int i = 0; i < FAKE_OP_COUNT; i++)
        free(f->fail_msg[i]);
    strbuf_free(&f->log);
    strbuf_free(&f->replies);
    strbuf_free(&f->keep);
    sd_event_unref(b->loop);
    free(f);
}

static const struct backend_ops FAKE_OPS = {
    .start = f_start,
    .pause = f_pause,
    .reclaim = f_reclaim,
    .unpause = f_unpause,
    .foreground = f_foreground,
    .shutdown = f_shutdown,
    .kill = f_kill,
    .kill_nowait = f_kill_nowait,
    .state = f_state,
    .stats = f_stats,
    .memory_headroom = f_memory_headroom,
    .remove_volumes = f_remove_volumes,
    .volume_info = f_volume_info,
    .import_begin = f_import_begin,
    .import_end = f_import_end,
    .exec = f_exec,
    .upcall_reply = f_upcall_reply,
    .adopt = f_adopt,
    .cleanup = f_cleanup,
    .free = f_free,
};

struct backend *fake_backend_new(sd_event *loop, const char *name) {
    struct fake *f = xcalloc(1, sizeof(*f));
    snprintf(f->name, sizeof(f->name), "%s", name);
    f->ops = FAKE_OPS;
    f->ops.name = f->name;
    f->base = (struct backend){&f->ops, sd_event_ref(loop), {0}};
    f->headroom = -1;
    strbuf_puts(&f->log, "");
    return &f->base;
}

void fake_drop_optional(struct backend *b) {
    struct fake *f = fake_of(b);
    f->ops.reclaim = NULL;
    f->ops.foreground = NULL;
    f->ops.memory_headroom = NULL;
}

/* ---- controls ---- */

void fake_fail_next(struct backend *b, enum fake_op op, const char *msg) {
    struct fake *f = fake_of(b);
    free(f->fail_msg[op]);
    f->fail_msg[op] = xstrdup(msg);
}

void fake_plan_start(struct backend *b, enum fake_start_plan plan, const char *msg) {
    struct fake *f = fake_of(b);
    f->start_plan = plan;
    snprintf(f->start_msg, sizeof(f->start_msg), "%s", msg ? msg : "");
}

void fake_plan_exec(struct backend *b, bool hang, int status) {
    fake_of(b)->exec_hang = hang;
    fake_of(b)->exec_status = status;
}

int fake_crash(struct backend *b, const char *name, int status) {
    struct fake *f = fake_of(b);
    struct fake_qube *q = find(f, name);
    if (!q)
        return -1;
    halt(f, q, status);
    return 0;
}

void fake_set_headroom(struct backend *b, int64_t bytes) { fake_of(b)->headroom = bytes; }

void fake_set_memory_usage(struct backend *b, uint64_t bytes) { fake_of(b)->memory_usage = bytes; }

void fake_set_stats_unavailable(struct backend *b, bool unavailable) {
    fake_of(b)->stats_unavailable = unavailable;
}

void fake_set_running(struct backend *b, const char *name, enum backend_power power) {
    struct fake *f = fake_of(b);
    struct fake_qube *q = find(f, name);
    if (!q)
        q = qube_add(f, name);
    q->power = power;
}

void fake_bump_revision(struct backend *b, const char *uuid, const char *volume) {
    (*revision_slot(fake_of(b), uuid, volume))++;
}

/* ---- what it saw ---- */

enum backend_power fake_power(struct backend *b, const char *name) { return f_state(b, name); }

unsigned fake_calls(struct backend *b, enum fake_op op, const char *qube) {
    struct fake *f = fake_of(b);
    char want[96];
    snprintf(want, sizeof(want), "%s %s\n", OP_NAMES[op], qube ? qube : "");
    size_t wlen = strlen(want) - (qube ? 0 : 1); /* "op " is a prefix when any qube */
    unsigned n = 0;
    for (const char *line = strbuf_str(&f->log); *line;) {
        const char *end = strchr(line, '\n');
        size_t len = (size_t)(end - line) + 1;
        if (len >= wlen && strncmp(line, want, wlen) == 0 && (qube || len > wlen))
            n++;
        line = end + 1;
    }
    return n;
}

const char *fake_log(struct backend *b) { return strbuf_str(&fake_of(b)->log); }

void fake_log_clear(struct backend *b) { strbuf_reset(&fake_of(b)->log); }

bool fake_started_background(struct backend *b, const char *name) {
    struct fake_qube *q = find(fake_of(b), name);
    return q && q->background;
}

unsigned fake_pending_starts(struct backend *b) {
    unsigned n = 0;
    for (struct fake_qube *q = fake_of(b)->qubes; q; q = q->next)
        n += q->starting;
    return n;
}

const char *fake_upcall_replies(struct backend *b) { return strbuf_str(&fake_of(b)->replies); }

const char *fake_last_cleanup_keep(struct backend *b) { return strbuf_str(&fake_of(b)->keep); }

const char *fake_last_options(struct backend *b, const char *name) {
    struct fake_qube *q = find(fake_of(b), name);
    return q ? q->options : NULL;
}

const char *fake_last_exec(struct backend *b) { return fake_of(b)->last_exec; }
