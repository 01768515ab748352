/* Restore mode (feature qemu-preload-mode=restore on a disposable template): its preloads
 * are not booted one by one. One *golden* VM per template revision boots to readiness with
 * its RAM in a memfd of the daemon's (mapped shared), is saved once (QMP migrate to a
 * file, x-ignore-shared: the RAM stays in the memfd, the state file holds only the
 * devices) and killed; the daemon then seals the memfd (no write, grow, shrink, nor
 * another seal) and every preload is a QEMU that maps it privately (copy-on-write) and
 * loads the saved state (-incoming defer, migrate-incoming) instead of booting, as Kata's
 * VM templating does. The seal is what keeps clones apart: each clone's QEMU runs as a
 * uid of its own and opens the memfd read-write (QEMU 7.2 has no read-only mem-path but
 * as ROM), yet any write through it fails (EPERM), so a QEMU taken over by its guest
 * cannot change what later clones start from.
 *
 * The memfd exists only in the daemon (and the clones that map it): a restarted daemon
 * has none, so it starts with no golden. Until a template revision's golden is saved,
 * its preloads boot as in boot mode while the golden VM boots beside them.
 *
 * RUNTIME/qemu-golden/<template uuid>/<fingerprint>/ holds state (written last) and
 * private.img (the template's private image as the golden VM left it: a clone's
 * throwaway overlay goes over that, so its disk agrees with the page cache in its RAM).
 * The fingerprint covers everything a boot depends on (the template's root revision, its
 * private image, the guest kernel, size): a new revision makes a new golden, and the old
 * one goes, as outdated preloads go.
 *
 * A clone is made fresh where the saved state would make all clones alike: the agent gets
 * its name (hostname), a new machine-id, the host's time and fresh host entropy, credited
 * and reseeded at once (AGENT_REQ_REFRESH) before the preload is ready. What clones still
 * share is in docs/engine.md. */
#include "qemu.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent_proto.h"
#include "fsutil.h"
#include "log.h"
#include "monoclock.h"
#include "strbuf.h"

#define GOLDEN_FORMAT 1 /* bump when what a golden holds changes */
#define QMP_TIMEOUT_MS 5000
#define MIGRATE_TIMEOUT_MS 60000
#define QUIESCE_TIMEOUT_MS 10000
#define RESTORE_POLL_US 5000
#define SAVE_POLL_US 2000
#define REFRESH_TIMEOUT_S 10
#define REFRESH_SEED_BYTES 64
#define GOLDEN_TRIES 3 /* golden VMs of one revision that may fail before it boots only */
#define GOLDEN_SEALS (F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL)

enum save_step {
    SAVE_BEGIN,   /* the golden VM's start is over: the save begins at the first tick */
    SAVE_QUIESCE, /* waiting for the guest to close its agent port */
    SAVE_MIGRATE, /* waiting for QEMU to have written the state */
};

struct qemu_golden {
    struct qemu_golden *next;
    struct qemu_backend *qb;
    char *template_uuid, *dir, *vm_name;
    /* what a boot of the template's disposables runs (all clones run the same) */
    char *kernel, *initrd, *kernelopts, *init, *root_image, *template_private;
    uint64_t memory_mib;
    unsigned vcpus, qrexec_timeout;
    int ram_fd;                /* the guest RAM's memfd, sealed once saved; -1: none */
    bool saved;                /* state written, RAM sealed: clones start from it */
    bool stale;                /* superseded or its template removed: freed once nobody uses it */
    unsigned failures;         /* golden VMs that did not boot or save */
    unsigned users;            /* runs pointing here: the golden VM, clones starting */
    struct qemu_run *vm;       /* the golden VM while it boots and is saved */
    sd_event_source *save_src; /* the save's timer while it runs */
    enum save_step save_step;
    int save_fd; /* state.tmp while the save runs, else -1 */
    double save_started_ms, save_deadline_ms;
};

/* A qube with a network boots: a clone would wake with the golden's MAC, addresses and
 * connections, which the refresh does not renew (yet). */
bool qemu_golden_wanted(const struct backend_qube *q) {
    const char *mode = backend_option(q->options, q->n_options, "preload-mode");
    return q->kind == BACKEND_DISPVM && q->background && q->private_source && !q->net && !q->gui &&
           mode && strcmp(mode, "restore") == 0;
}

/* ---- files ---- */

static void golden_path(const struct qemu_golden *g, const char *file, char *buf, size_t size) {
    snprintf(buf, size, "%s/%s", g->dir, file);
}

static void fnv_add(uint64_t *h, const void *data, size_t n) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++)
        *h = (*h ^ p[i]) * 1099511628211ULL;
}

static void fnv_str(uint64_t *h, const char *s) { fnv_add(h, s ? s : "", s ? strlen(s) + 1 : 1); }

/* A file by what it is now (path, size, modification time): a rebuilt kernel, a changed
 * private image make another golden. */
static void fnv_file(uint64_t *h, const char *path) {
    struct stat st = {0};
    fnv_str(h, path);
    if (path && stat(path, &st) == 0) {
        fnv_add(h, &st.st_size, sizeof(st.st_size));
        fnv_add(h, &st.st_mtim, sizeof(st.st_mtim));
        fnv_add(h, &st.st_ino, sizeof(st.st_ino));
    }
}

static uint64_t fingerprint(const struct qemu_backend *qb, const struct qemu_launch *l) {
    uint64_t h = 14695981039346656037ULL;
    unsigned format = GOLDEN_FORMAT, accel = qb->accel;
    fnv_add(&h, &format, sizeof(format));
    fnv_add(&h, &accel, sizeof(accel));
    fnv_file(&h, qb->binary);
    fnv_file(&h, l->kernel);
    fnv_file(&h, l->initrd);
    fnv_str(&h, l->kernelopts);
    fnv_str(&h, l->init);
    fnv_file(&h, l->root_image); /* its path names the template's root revision */
    fnv_file(&h, l->private_image);
    fnv_add(&h, &l->memory_mib, sizeof(l->memory_mib));
    fnv_add(&h, &l->vcpus, sizeof(l->vcpus));
    return h;
}

static void template_dir(const struct qemu_backend *qb, const char *uuid, char *buf, size_t size) {
    snprintf(buf, size, "%s/qemu-golden/%s", qb->runtime_dir, uuid);
}

/* Sparse: only the written extents of the image are copied. */
int qemu_copy_sparse(const char *from, const char *to) {
    _cleanup_close_ int in = open(from, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (in < 0 || fstat(in, &st) < 0)
        return -errno;
    _cleanup_close_ int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (out < 0 || ftruncate(out, st.st_size) < 0)
        return -errno;
    for (off_t at = 0; at < st.st_size;) {
        off_t data = lseek(in, at, SEEK_DATA);
        if (data < 0)
            break; /* only a hole left */
        off_t hole = lseek(in, data, SEEK_HOLE);
        if (hole < 0)
            return -errno;
        for (off_t pos = data; pos < hole;) {
            loff_t src = pos, dst = pos;
            ssize_t n = copy_file_range(in, &src, out, &dst, (size_t)(hole - pos), 0);
            if (n <= 0)
                return n < 0 ? -errno : -EIO;
            pos += n;
        }
        at = hole;
    }
    return fsync(out) < 0 ? -errno : 0;
}

/* ---- the goldens in use ---- */

static void golden_drop_ram(struct qemu_golden *g) {
    if (g->ram_fd >= 0)
        close(g->ram_fd);
    g->ram_fd = -1;
    g->saved = false;
}

static void golden_free(struct qemu_golden *g) {
    sd_event_source_disable_unref(g->save_src);
    if (g->save_fd >= 0)
        close(g->save_fd);
    golden_drop_ram(g);
    free(g->template_uuid);
    free(g->dir);
    free(g->vm_name);
    free(g->kernel);
    free(g->initrd);
    free(g->kernelopts);
    free(g->init);
    free(g->root_image);
    free(g->template_private);
    free(g);
}

static void golden_unlink(struct qemu_golden *g) {
    for (struct qemu_golden **p = &g->qb->goldens; *p; p = &(*p)->next)
        if (*p == g) {
            *p = g->next;
            return;
        }
}

static void golden_release(struct qemu_golden *g) {
    if (g->users > 0 || !g->stale)
        return;
    golden_unlink(g);
    golden_free(g);
}

/* The golden VM's logs (console, qemu, vmux), kept until its golden goes: they tell
 * why a golden failed. */
static void remove_logs(struct qemu_backend *qb, const char *vm_name) {
    static const char *const kinds[] = {"console", "qemu", "vmux"};
    for (size_t i = 0; i < ELEMENTSOF(kinds); i++) {
        char path[4096], old[4200];
        qemu_log_path(qb, vm_name, kinds[i], path, sizeof(path));
        snprintf(old, sizeof(old), "%s.1", path);
        unlink(path);
        unlink(old);
    }
}

/* A golden nobody may start from any more; its files and RAM go now (a clone that still
 * maps them keeps them alive until it ends). */
static void golden_retire(struct qemu_golden *g) {
    g->stale = true;
    golden_drop_ram(g);
    remove_recursive(g->dir);
    remove_logs(g->qb, g->vm_name);
    golden_release(g);
}

static char *xstrdup_or_null(const char *s) { return s ? xstrdup(s) : NULL; }

static struct qemu_golden *golden_new(struct qemu_backend *qb, const struct backend_qube *q,
                                      const struct qemu_launch *base, uint64_t fp) {
    struct qemu_golden *g = xcalloc(1, sizeof(*g));
    char dir[4096], name[64];
    template_dir(qb, q->private_source, dir, sizeof(dir));
    g->qb = qb;
    g->template_uuid = xstrdup(q->private_source);
    char path[4200];
    snprintf(path, sizeof(path), "%s/%016llx", dir, (unsigned long long)fp);
    g->dir = xstrdup(path);
    /* '@' is in no qube name: the golden VM is nobody the daemon knows */
    snprintf(name, sizeof(name), "@golden-%016llx", (unsigned long long)fp);
    g->vm_name = xstrdup(name);
    g->kernel = xstrdup(base->kernel);
    g->initrd = xstrdup(base->initrd);
    g->kernelopts = xstrdup_or_null(base->kernelopts);
    g->init = xstrdup_or_null(base->init);
    g->root_image = xstrdup(base->root_image);
    g->template_private = xstrdup_or_null(base->private_image);
    g->memory_mib = base->memory_mib;
    g->vcpus = base->vcpus;
    g->qrexec_timeout = q->qrexec_timeout;
    g->ram_fd = g->save_fd = -1;
    g->next = qb->goldens;
    qb->goldens = g;
    return g;
}

static void remove_fingerprint_logs(struct qemu_backend *qb, const char *fp) {
    char name[64];
    snprintf(name, sizeof(name), "@golden-%.16s", fp);
    remove_logs(qb, name);
}

/* Another revision's goldens of the same template are outdated: gone, on disk too. */
static void retire_others(struct qemu_backend *qb, const char *uuid, const char *keep_dir) {
    for (struct qemu_golden *g = qb->goldens, *next; g; g = next) {
        next = g->next;
        if (!g->stale && strcmp(g->template_uuid, uuid) == 0 && strcmp(g->dir, keep_dir) != 0) {
            log_info("golden VM %s of %s is outdated: removed", g->vm_name, uuid);
            golden_retire(g);
        }
    }
    char dir[4096], path[8192];
    template_dir(qb, uuid, dir, sizeof(dir));
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));) {
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        if (e->d_name[0] != '.' && strcmp(path, keep_dir) != 0) {
            remove_recursive(path);
            remove_fingerprint_logs(qb, e->d_name);
        }
    }
    if (d)
        closedir(d);
}

static struct qemu_golden *golden_find(struct qemu_backend *qb, const char *dir) {
    for (struct qemu_golden *g = qb->goldens; g; g = g->next)
        if (!g->stale && strcmp(g->dir, dir) == 0)
            return g;
    return NULL;
}

static void attach(struct qemu_run *run, struct qemu_golden *g) {
    run->golden = g;
    g->users++;
}

void qemu_golden_detach(struct qemu_run *run) {
    struct qemu_golden *g = run->golden;
    if (!g)
        return;
    if (g->vm == run)
        g->vm = NULL;
    run->golden = NULL;
    run->restore_timer = sd_event_source_disable_unref(run->restore_timer);
    g->users--;
    golden_release(g);
}

/* ---- launches ---- */

static struct qemu_launch base_of(const struct qemu_golden *g) {
    return (struct qemu_launch){
        .kernel = g->kernel,
        .initrd = g->initrd,
        .kernelopts = g->kernelopts,
        .init = g->init,
        .root_image = g->root_image,
        .private_image = g->template_private,
        .private_throwaway = true,
        .memory_mib = g->memory_mib,
        .vcpus = g->vcpus,
    };
}

/* A clone: the golden's sealed RAM mapped privately, its disk under a throwaway overlay,
 * and a wait for the saved state instead of a boot; no balloon (its discards would punch
 * holes in the golden's RAM, which the seal refuses). */
static int launch_clone(struct qemu_run *run, struct backend_why *why) {
    struct qemu_golden *g = run->golden;
    char private[4200];
    golden_path(g, "private.img", private, sizeof(private));
    struct qemu_launch l = base_of(g);
    if (g->template_private)
        l.private_image = private;
    l.ram_fd = g->ram_fd;
    l.incoming = true;
    run->balloon = QEMU_BALLOON_OFF;
    log_info("%s: restoring from golden VM %s", run->name, g->vm_name);
    return qemu_run_launch(run, &l, g->qrexec_timeout, why);
}

/* ---- the golden VM's save, a step per tick of a timer on the loop ----
 *
 * The guest has to close its agent port, QEMU to stop and write the device state: up to
 * a second under TCG. The daemon serves calls meanwhile: each step below asks QEMU a
 * question it answers at once (or reads what came), and the timer comes back for the
 * next. The golden's files: state.tmp from the save's start, renamed to state last. */

/* The guest's end of the agent's port is saved with no channel open: the golden's
 * dispenser-vmux goes, and the guest's mux, reading the end of the stream, drops its
 * channels and closes the port (QEMU tells of that) to wait for the next host end. Saved
 * with channels open, a clone's mux would take its new host's first channel for an old
 * one. The golden VM's own reader of QMP events stops: the save reads them. */
static int save_begin(struct qemu_golden *g, struct backend_why *why) {
    char tmp[4200];
    golden_path(g, "state.tmp", tmp, sizeof(tmp));
    g->save_fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (g->save_fd < 0)
        return backend_fail(why, -errno, "cannot create %s: %s", tmp, strerror(errno));
    sd_event_source_set_enabled(g->vm->qmp_src, SD_EVENT_OFF);
    qemu_vmux_end(g->vm);
    g->save_step = SAVE_QUIESCE;
    g->save_deadline_ms = mono_ms() + QUIESCE_TIMEOUT_MS;
    return 0;
}

/* The same quiesce, waited for on the spot: the hibernated tier's save (qemu_hibernate.c)
 * runs it before its stop. */
int qemu_quiesce_agent_port(struct qemu_run *vm, struct backend_why *why) {
    qemu_vmux_end(vm);
    if (qmp_wait_event(&vm->qmp, "VSERPORT_CHANGE", "\"id\":\"port-agent\"", "\"open\":false",
                       QUIESCE_TIMEOUT_MS) < 0)
        return backend_fail(why, -ETIMEDOUT,
                            "the guest did not close its agent port after its host end left");
    return 0;
}

/* Stopped, then saved (devices only: the RAM is in its memfd already) through the
 * descriptor (QEMU 7.2 has no file: URI, and its sandbox forbids exec:). */
static int save_migrate(struct qemu_golden *g, struct backend_why *why) {
    struct qmp *q = &g->vm->qmp;
    if (qmp_execute(q, "stop", NULL, QMP_TIMEOUT_MS, NULL, 0, why) < 0 ||
        qmp_execute(q, "migrate-set-capabilities",
                    "{\"capabilities\": [{\"capability\": \"x-ignore-shared\", \"state\": true}]}",
                    QMP_TIMEOUT_MS, NULL, 0, why) < 0 ||
        qmp_execute_fd(q, "getfd", "{\"fdname\": \"golden\"}", g->save_fd, QMP_TIMEOUT_MS, NULL, 0,
                       why) < 0 ||
        qmp_execute(q, "migrate", "{\"uri\": \"fd:golden\"}", QMP_TIMEOUT_MS, NULL, 0, why) < 0)
        return -1;
    g->save_step = SAVE_MIGRATE;
    g->save_deadline_ms = mono_ms() + MIGRATE_TIMEOUT_MS;
    return 0;
}

/* One step: 1 to come back, 0 when the state is written, -1 with why set. */
static int save_step(struct qemu_golden *g, struct backend_why *why) {
    if (!g->vm)
        return backend_fail(why, -EIO, "the golden VM is gone");
    struct qmp *q = &g->vm->qmp;
    if (g->save_step == SAVE_BEGIN)
        return save_begin(g, why) < 0 ? -1 : 1;
    if (g->save_step == SAVE_QUIESCE) {
        int r = qmp_wait_event(q, "VSERPORT_CHANGE", "\"id\":\"port-agent\"", "\"open\":false", 0);
        if (r == 0)
            return save_migrate(g, why) < 0 ? -1 : 1;
        if (r != -ETIMEDOUT || mono_ms() > g->save_deadline_ms)
            return backend_fail(why, -ETIMEDOUT,
                                "the guest did not close its agent port after its host end left");
        return 1;
    }
    char out[4096];
    if (qmp_execute(q, "query-migrate", NULL, QMP_TIMEOUT_MS, out, sizeof(out), why) < 0)
        return -1;
    if (strstr(out, "\"status\":\"completed\""))
        return 0;
    if (strstr(out, "\"status\":\"failed\"") || strstr(out, "\"status\":\"cancelled\""))
        return backend_fail(why, -EIO, "QEMU could not save the golden VM: %s", out);
    if (mono_ms() > g->save_deadline_ms)
        return backend_fail(why, -ETIMEDOUT, "saving the golden VM took too long");
    return 1;
}

/* The state on disk under its final name, written last. */
static int save_commit(struct qemu_golden *g, struct backend_why *why) {
    char tmp[4200], state[4200];
    golden_path(g, "state.tmp", tmp, sizeof(tmp));
    golden_path(g, "state", state, sizeof(state));
    if (fsync(g->save_fd) < 0 || rename(tmp, state) < 0)
        return backend_fail(why, -errno, "cannot write %s: %s", state, strerror(errno));
    return 0;
}

/* The golden's RAM as clones get it: nobody may write, grow or shrink it, nor unseal it.
 * The golden VM is gone (its shared mapping with it), else F_SEAL_WRITE is refused. */
static int seal_ram(struct qemu_golden *g, struct backend_why *why) {
    if (fcntl(g->ram_fd, F_ADD_SEALS, GOLDEN_SEALS) < 0 ||
        (fcntl(g->ram_fd, F_GET_SEALS) & GOLDEN_SEALS) != GOLDEN_SEALS)
        return backend_fail(why, -errno, "cannot seal the golden's RAM: %s", strerror(errno));
    return 0;
}

/* The golden's files and RAM go; the next preload start may try again. */
static void golden_failed(struct qemu_golden *g, const char *what, const char *reason) {
    g->failures++;
    log_warning("golden VM %s %s (preloads boot meanwhile%s): %s", g->vm_name, what,
                g->failures >= GOLDEN_TRIES ? "; no more tries for this revision" : "",
                reason ? reason : "");
    golden_drop_ram(g);
    remove_recursive(g->dir);
}

static void seal_ram_or_fail(struct qemu_golden *g, int r, struct backend_why *why) {
    if (r == 0)
        r = seal_ram(g, why);
    if (r < 0) {
        golden_failed(g, "not saved", why->msg);
        return;
    }
    g->saved = true;
    log_info("golden VM %s saved and sealed in %.0f ms", g->vm_name,
             mono_ms() - g->save_started_ms);
}

/* The save is over (r: 0 or -1 with why): the golden VM's work is done either way. */
static void save_end(struct qemu_golden *g, int r, struct backend_why *why) {
    g->save_src = sd_event_source_disable_unref(g->save_src);
    if (r == 0)
        r = save_commit(g, why);
    if (g->save_fd >= 0)
        close(g->save_fd);
    g->save_fd = -1;
    if (g->vm) {
        qemu_kill_and_wait(g->vm);
        qemu_teardown(g->vm, false, 0);
    }
    seal_ram_or_fail(g, r, why);
    g->users--;
    golden_release(g);
}

static int on_save_tick(sd_event_source *src, uint64_t usec, void *userdata) {
    struct qemu_golden *g = userdata;
    struct backend_why why = {{0}};
    int r = save_step(g, &why);
    if (r > 0) {
        sd_event_source_set_time_relative(src, SAVE_POLL_US);
        sd_event_source_set_enabled(src, SD_EVENT_ONESHOT);
        return 0;
    }
    save_end(g, r, &why);
    return 0;
}

/* The golden VM booted: its save runs on the loop's timer, step by step, from the loop
 * (not from within its start's end). */
static void save_start(struct qemu_golden *g) {
    g->users++;
    g->save_started_ms = mono_ms();
    g->save_step = SAVE_BEGIN;
    /* accuracy 1 ms: sd-event's default (250 ms) would stretch every step */
    if (sd_event_add_time_relative(g->qb->base.loop, &g->save_src, CLOCK_MONOTONIC, 0, 1000,
                                   on_save_tick, g) < 0) {
        struct backend_why why = {{0}};
        backend_fail(&why, -EIO, "no timer for the save");
        save_end(g, -1, &why);
    }
}

/* The golden VM's start is over: saved from the loop (not from within its start's end). */
static void on_golden_booted(void *userdata, int r, const char *reason) {
    struct qemu_golden *g = userdata;
    if (r < 0) {
        golden_failed(g, "did not boot", reason);
        return;
    }
    save_start(g);
}

/* The guest's RAM: a memfd only the daemon names, sealable once the golden is saved. */
static int make_ram(struct qemu_golden *g, struct backend_why *why) {
    uint64_t mib = g->memory_mib ? g->memory_mib : 256; /* qemu_argv's default */
    g->ram_fd = memfd_create("dispenser-golden-ram", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (g->ram_fd < 0 || ftruncate(g->ram_fd, (off_t)(mib << 20)) < 0) {
        int e = errno;
        golden_drop_ram(g);
        return backend_fail(why, -e, "cannot make the golden's RAM: %s", strerror(e));
    }
    return 0;
}

static int make_dir(struct qemu_golden *g, struct backend_why *why) {
    char parent[4096];
    remove_recursive(g->dir);
    snprintf(parent, sizeof(parent), "%s/qemu-golden", g->qb->runtime_dir);
    mkdir(parent, 0700);
    template_dir(g->qb, g->template_uuid, parent, sizeof(parent));
    mkdir(parent, 0700);
    if (mkdir(g->dir, 0700) < 0)
        return backend_fail(why, -errno, "cannot create %s: %s", g->dir, strerror(errno));
    return 0;
}

static int boot_golden(struct qemu_golden *g, const struct backend_qube *q,
                       struct backend_why *why) {
    struct qemu_backend *qb = g->qb;
    char private[4200];
    golden_path(g, "private.img", private, sizeof(private));
    if (make_dir(g, why) < 0)
        return -1;
    int r;
    if (g->template_private && (r = qemu_copy_sparse(g->template_private, private)) < 0)
        return backend_fail(why, r, "cannot copy %s: %s", g->template_private, strerror(-r));
    if (make_ram(g, why) < 0)
        return -1;
    struct backend_qube gq = {
        .name = g->vm_name,
        .uuid = g->template_uuid,
        .kind = BACKEND_DISPVM,
        .memory_mib = g->memory_mib,
        .vcpus = g->vcpus,
        .qrexec_timeout = q->qrexec_timeout,
        .shutdown_timeout = 1,
        .background = true,
    };
    struct qemu_run *vm = qemu_run_create(qb, &gq, why);
    if (!vm)
        return -1;
    vm->golden_vm = true;
    attach(vm, g);
    g->vm = vm;
    struct qemu_launch l = base_of(g);
    l.private_image = g->template_private ? private : NULL;
    l.private_throwaway = false; /* the clones' disk is what it leaves */
    l.ram_fd = g->ram_fd;
    l.ram_shared = true;
    if (qemu_run_launch(vm, &l, q->qrexec_timeout, why) < 0) {
        qemu_kill_and_wait(vm);
        qemu_teardown(vm, false, 0);
        return -1;
    }
    vm->start_done = on_golden_booted;
    vm->start_userdata = g;
    log_info("golden VM %s of %s: booting (QEMU pid %d)", g->vm_name, g->template_uuid, vm->pid);
    return 0;
}

/* No golden to restore from yet (none made, or a daemon restart took its RAM): one is
 * booted beside this preload, which boots as in boot mode. */
static void golden_begin(struct qemu_golden *g, const struct backend_qube *q) {
    if (g->vm || g->save_src || g->failures >= GOLDEN_TRIES)
        return;
    struct backend_why failed = {{0}};
    g->users++;
    if (boot_golden(g, q, &failed) < 0)
        golden_failed(g, "could not start", failed.msg);
    g->users--;
    golden_release(g);
}

int qemu_golden_start(struct qemu_run *run, const struct backend_qube *q,
                      const struct qemu_launch *base, struct backend_why *why) {
    struct qemu_backend *qb = run->qb;
    char dir[4096], path[4200];
    uint64_t fp = fingerprint(qb, base);
    template_dir(qb, q->private_source, dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/%016llx", dir, (unsigned long long)fp);
    retire_others(qb, q->private_source, path);
    struct qemu_golden *g = golden_find(qb, path);
    if (!g)
        g = golden_new(qb, q, base, fp);
    if (g->saved) {
        attach(run, g);
        return launch_clone(run, why);
    }
    golden_begin(g, q);
    log_info("%s: no golden VM saved yet: it boots", run->name);
    return qemu_run_launch(run, base, q->qrexec_timeout, why);
}

/* ---- a clone's start ---- */

static void restore_failed(struct qemu_run *run, const char *what) {
    char why[300];
    snprintf(why, sizeof(why), "cannot restore from golden VM %s: %s", run->golden->vm_name, what);
    qemu_abort_start(run, why);
}

static int on_restore_poll(sd_event_source *src, uint64_t usec, void *userdata) {
    struct qemu_run *run = userdata;
    struct backend_why err = {{0}};
    char status[512] = "";
    if (qmp_execute(&run->qmp, "query-status", NULL, QMP_TIMEOUT_MS, status, sizeof(status), &err) <
        0) {
        restore_failed(run, err.msg);
        return 0;
    }
    if (strstr(status, "\"inmigrate\"")) {
        sd_event_source_set_time_relative(src, RESTORE_POLL_US);
        sd_event_source_set_enabled(src, SD_EVENT_ONESHOT);
        return 0;
    }
    run->restore_timer = sd_event_source_disable_unref(run->restore_timer);
    if (!strstr(status, "\"paused\"")) {
        restore_failed(run, status);
        return 0;
    }
    log_debug("%s: state loaded %.0f ms after QEMU's start", run->name,
              mono_ms() - run->launched_ms);
    if (qemu_continue_start(run, &err) < 0)
        qemu_abort_start(run, err.msg);
    return 0;
}

void qemu_golden_restore(struct qemu_run *run) {
    struct backend_why err = {{0}};
    char state[4200];
    golden_path(run->golden, "state", state, sizeof(state));
    _cleanup_close_ int fd = open(state, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        restore_failed(run, strerror(errno));
        return;
    }
    if (qmp_execute(&run->qmp, "migrate-set-capabilities",
                    "{\"capabilities\": [{\"capability\": \"x-ignore-shared\", \"state\": true}]}",
                    QMP_TIMEOUT_MS, NULL, 0, &err) < 0 ||
        qmp_execute_fd(&run->qmp, "getfd", "{\"fdname\": \"golden\"}", fd, QMP_TIMEOUT_MS, NULL, 0,
                       &err) < 0 ||
        qmp_execute(&run->qmp, "migrate-incoming", "{\"uri\": \"fd:golden\"}", QMP_TIMEOUT_MS, NULL,
                    0, &err) < 0) {
        restore_failed(run, err.msg);
        return;
    }
    int r = sd_event_add_time_relative(run->qb->base.loop, &run->restore_timer, CLOCK_MONOTONIC,
                                       RESTORE_POLL_US, 0, on_restore_poll, run);
    if (r < 0) {
        restore_failed(run, strerror(-r));
        return;
    }
    sd_event_source_set_priority(run->restore_timer, run->start_priority);
}

static void hex(const unsigned char *in, size_t n, char *out) {
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", in[i]);
}

static void on_refreshed(void *userdata, int r, const char *reason) {
    struct qemu_run *run = userdata;
    if (r < 0) {
        char why[300];
        snprintf(why, sizeof(why), "the restored agent did not take its own identity: %s",
                 reason ? reason : strerror(-r));
        qemu_abort_start(run, why);
        return;
    }
    log_info("%s: restored from %s%s and refreshed", run->name,
             run->golden ? "golden VM " : "its hibernation image",
             run->golden ? run->golden->vm_name : "");
    qemu_golden_detach(run);
    qemu_got_ready(run);
}

void qemu_golden_refresh(struct qemu_run *run) {
    unsigned char id[16], seed[REFRESH_SEED_BYTES];
    char id_hex[33], seed_hex[2 * REFRESH_SEED_BYTES + 1], now_text[48];
    if (getrandom(id, sizeof(id), 0) != sizeof(id) ||
        getrandom(seed, sizeof(seed), 0) != sizeof(seed)) {
        qemu_abort_start(run, "no host entropy for the clone");
        return;
    }
    hex(id, sizeof(id), id_hex);
    hex(seed, sizeof(seed), seed_hex);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    snprintf(now_text, sizeof(now_text), "%lld.%09ld", (long long)now.tv_sec, now.tv_nsec);
    struct agent_request_body b = {.service = run->name,
                                   .argument = id_hex,
                                   .source = "",
                                   .target = "",
                                   .user = now_text,
                                   .command = seed_hex};
    int r = agent_link_refresh(&run->link, &b, REFRESH_TIMEOUT_S, run->start_priority, on_refreshed,
                               run);
    explicit_bzero(seed_hex, sizeof(seed_hex));
    explicit_bzero(seed, sizeof(seed));
    if (r < 0)
        on_refreshed(run, r, strerror(-r));
}

/* ---- removal ---- */

/* A template's golden directory and the logs of its golden VMs. */
static void remove_template_dir(struct qemu_backend *qb, const char *dir) {
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));)
        if (e->d_name[0] != '.')
            remove_fingerprint_logs(qb, e->d_name);
    if (d)
        closedir(d);
    remove_recursive(dir);
}

void qemu_golden_remove(struct qemu_backend *qb, const char *template_uuid) {
    for (struct qemu_golden *g = qb->goldens, *next; g; g = next) {
        next = g->next;
        if (strcmp(g->template_uuid, template_uuid) == 0)
            golden_retire(g);
    }
    char dir[4096];
    template_dir(qb, template_uuid, dir, sizeof(dir));
    remove_template_dir(qb, dir);
}

/* At start-up: the goldens' RAM died with the daemon that held it, so every golden
 * directory (state and private image) goes; running clones keep what they have open. */
void qemu_golden_cleanup(struct qemu_backend *qb, const char *const *keep) {
    (void)keep;
    char dir[4096], path[8192];
    snprintf(dir, sizeof(dir), "%s/qemu-golden", qb->runtime_dir);
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        log_info("removing golden VM files of a previous daemon (its RAM is gone): %s", path);
        remove_template_dir(qb, path);
    }
    if (d)
        closedir(d);
}

void qemu_golden_free_all(struct qemu_backend *qb) {
    while (qb->goldens) {
        struct qemu_golden *g = qb->goldens;
        qb->goldens = g->next;
        golden_free(g);
    }
}
