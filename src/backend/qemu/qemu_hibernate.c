/* Hibernation: a preload's whole state saved to a file and its QEMU ended, so that it
 * holds no host memory, no process and no uid while it waits; woken on demand by a new
 * QEMU that loads the file (-incoming defer, migrate-incoming) instead of booting.
 *
 * STATE/qemu/hibernate/<uuid>/ holds, for one qube:
 *   private.img  its private image: a copy of its template's made at its start, its own
 *                from then on (a saved guest's page cache must agree with its disk: a
 *                throwaway overlay would go with the QEMU that held it);
 *   image        the migration stream (guest RAM and devices), written as image.tmp and
 *                renamed once complete; 0600, root's (the daemon's): it holds guest RAM;
 *   meta         what an adopting daemon needs (root revision), written last.
 * The image is used once: a wake opens it and unlinks it before loading it. Everything
 * goes when the qube ends (qemu_teardown). The state dir, not the runtime dir: a tmpfs
 * would keep the guest's RAM in host memory.
 *
 * A saved VM is saved as restore mode's golden is: its agent port quiesced (the guest's
 * mux must not take its next host's first channel for an old one), stopped, migrated to
 * a descriptor (QEMU 7.2 has no file: URI and its sandbox forbids exec:). A woken VM gets
 * the host's time and fresh entropy as a restored clone does (qemu_golden_refresh). */
#include "qemu.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"
#include "image.h"
#include "log.h"
#include "monoclock.h"
#include "strbuf.h"

#define QMP_TIMEOUT_MS 5000
#define SHRINK_WAIT_MS 15000 /* the balloon's shrink before the pause, bounded again */
#define MIGRATE_TIMEOUT_MS 120000
#define POLL_US 10000

void qemu_hibernate_path(const struct qemu_backend *qb, const char *uuid, const char *file,
                         char *buf, size_t size) {
    snprintf(buf, size, "%s/qemu/hibernate/%s%s%s", qb->state_dir, uuid, *file ? "/" : "", file);
}

static int make_dir(const struct qemu_backend *qb, const char *uuid) {
    char path[4096];
    snprintf(path, sizeof(path), "%s/qemu", qb->state_dir);
    mkdir(path, 0700);
    snprintf(path, sizeof(path), "%s/qemu/hibernate", qb->state_dir);
    mkdir(path, 0700);
    qemu_hibernate_path(qb, uuid, "", path, sizeof(path));
    return mkdir(path, 0700) < 0 && errno != EEXIST ? -errno : 0;
}

int qemu_hibernate_private(struct qemu_run *run, const struct backend_qube *q, char *image,
                           size_t size, struct backend_why *why) {
    struct qemu_backend *qb = run->qb;
    char template[4096];
    *image = '\0';
    image_private_path(qb->state_dir, q->private_source, template, sizeof(template));
    if (!q->private_source || access(template, F_OK) < 0)
        return 0; /* none: its /rw is a tmpfs, in its RAM */
    qemu_hibernate_path(qb, q->uuid, "private.img", image, size);
    if (run->wake_fd >= 0)
        return 0; /* woken: the image it left */
    int r = make_dir(qb, q->uuid);
    if (r == 0)
        r = qemu_copy_sparse(template, image);
    if (r < 0)
        return backend_fail(why, r, "cannot copy %s for a hibernatable preload: %s", template,
                            strerror(-r));
    return 0;
}

/* ---- the save ---- */

static void finish(struct qemu_run *run, int r, const char *why) {
    backend_done_fn done = TAKE_PTR(run->hibernate_done);
    run->hibernate_timer = sd_event_source_disable_unref(run->hibernate_timer);
    if (run->hibernate_fd > 0)
        close(run->hibernate_fd);
    run->hibernate_fd = -1;
    if (done)
        done(run->hibernate_userdata, r, why);
}

static int write_meta(const struct qemu_run *run) {
    char path[4200], tmp[4300];
    qemu_hibernate_path(run->qb, run->uuid, "meta", path, sizeof(path));
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "we");
    if (!f)
        return -errno;
    fprintf(f, "name %s\nkind %d\nroot_revision %llu\n", run->name, (int)run->kind,
            (unsigned long long)run->root_revision);
    if (fflush(f) != 0 || fsync(fileno(f)) < 0) {
        fclose(f);
        return -EIO;
    }
    return fclose(f) != 0 || rename(tmp, path) < 0 ? -errno : 0;
}

/* A run with no QEMU, only its files: what the daemon sees as a paused qube. */
static struct qemu_run *hibernated_run(struct qemu_backend *qb, const char *name, const char *uuid,
                                       enum backend_kind kind, uint64_t root_revision) {
    struct qemu_run *run = xcalloc(1, sizeof(*run));
    run->qb = qb;
    run->name = xstrdup(name);
    run->uuid = xstrdup(uuid);
    run->kind = kind;
    run->accel = qb->accel;
    run->root_revision = root_revision;
    run->pidfd = run->control_fd = run->qmp.fd = run->vmux_pidfd = -1;
    run->hibernate_fd = run->wake_fd = -1;
    run->power = BACKEND_PAUSED;
    run->hibernatable = run->hibernated = true;
    qemu_link_init(run);
    run->next = qb->runs;
    qb->runs = run;
    return run;
}

/* Saved: the image complete, QEMU and everything of the running VM gone (its uid free),
 * the run replaced by a hibernated one. */
static void saved(struct qemu_run *run) {
    struct qemu_backend *qb = run->qb;
    char tmp[4200], image[4200];
    qemu_hibernate_path(qb, run->uuid, "image.tmp", tmp, sizeof(tmp));
    qemu_hibernate_path(qb, run->uuid, "image", image, sizeof(image));
    int r = fsync(run->hibernate_fd) < 0 || rename(tmp, image) < 0 ? -errno : write_meta(run);
    if (r < 0) {
        unlink(tmp);
        finish(run, r, "cannot write the hibernation image");
        return;
    }
    struct stat st = {0};
    stat(image, &st);
    log_info("%s: hibernated (saved in %.0f ms): %lld MiB on disk", run->name,
             mono_ms() - (run->hibernate_deadline_ms - MIGRATE_TIMEOUT_MS),
             (long long)(st.st_blocks * 512 >> 20));
    backend_done_fn done = TAKE_PTR(run->hibernate_done);
    void *userdata = run->hibernate_userdata;
    char *name = xstrdup(run->name), *uuid = xstrdup(run->uuid);
    enum backend_kind kind = run->kind;
    uint64_t revision = run->root_revision;
    run->keep_hibernation = true;
    run->exit_src = sd_event_source_disable_unref(run->exit_src); /* no exit to report */
    qemu_kill_and_wait(run);
    qemu_teardown(run, false, 0);
    hibernated_run(qb, name, uuid, kind, revision);
    free(name);
    free(uuid);
    done(userdata, 0, NULL);
}

static int on_migrate_poll(sd_event_source *src, uint64_t usec, void *userdata) {
    struct qemu_run *run = userdata;
    struct backend_why err = {{0}};
    char out[4096] = "";
    if (qmp_execute(&run->qmp, "query-migrate", NULL, QMP_TIMEOUT_MS, out, sizeof(out), &err) < 0) {
        finish(run, -EIO, err.msg);
    } else if (strstr(out, "\"status\":\"completed\"")) {
        run->hibernate_timer = sd_event_source_disable_unref(run->hibernate_timer);
        saved(run);
    } else if (strstr(out, "\"status\":\"failed\"") || strstr(out, "\"status\":\"cancelled\"")) {
        snprintf(err.msg, sizeof(err.msg), "QEMU could not save it: %s", out);
        finish(run, -EIO, err.msg);
    } else if (mono_ms() > run->hibernate_deadline_ms) {
        finish(run, -ETIMEDOUT, "saving it took too long");
    } else {
        sd_event_source_set_time_relative(src, POLL_US);
        sd_event_source_set_enabled(src, SD_EVENT_ONESHOT);
    }
    return 0;
}

/* The guest runs a moment (its mux must close the agent port), then stops and its state
 * streams to image.tmp, polled from the loop. */
static int save_begin(struct qemu_run *run, struct backend_why *why) {
    char tmp[4200];
    qemu_hibernate_path(run->qb, run->uuid, "image.tmp", tmp, sizeof(tmp));
    if (make_dir(run->qb, run->uuid) < 0)
        return backend_fail(why, -EIO, "cannot create the hibernation directory");
    if (qmp_execute(&run->qmp, "cont", NULL, QMP_TIMEOUT_MS, NULL, 0, why) < 0 ||
        qemu_quiesce_agent_port(run, why) < 0 ||
        qmp_execute(&run->qmp, "stop", NULL, QMP_TIMEOUT_MS, NULL, 0, why) < 0)
        return -1;
    unlink(tmp);
    run->hibernate_fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (run->hibernate_fd < 0)
        return backend_fail(why, -errno, "cannot create %s: %s", tmp, strerror(errno));
    if (qmp_execute_fd(&run->qmp, "getfd", "{\"fdname\": \"hibernate\"}", run->hibernate_fd,
                       QMP_TIMEOUT_MS, NULL, 0, why) < 0 ||
        qmp_execute(&run->qmp, "migrate", "{\"uri\": \"fd:hibernate\"}", QMP_TIMEOUT_MS, NULL, 0,
                    why) < 0)
        return -1;
    run->hibernate_deadline_ms = mono_ms() + MIGRATE_TIMEOUT_MS;
    return 0;
}

/* Waits for a shrink under way (the balloon stops the VM when it settled), then saves. */
static int on_hibernate_step(sd_event_source *src, uint64_t usec, void *userdata) {
    struct qemu_run *run = userdata;
    if (run->hibernate_deadline_ms == 0) {
        if (run->shrink_timer && mono_ms() < run->shrink_started_ms + SHRINK_WAIT_MS) {
            sd_event_source_set_time_relative(src, POLL_US);
            sd_event_source_set_enabled(src, SD_EVENT_ONESHOT);
            return 0;
        }
        qemu_balloon_cancel(run);
        struct backend_why why = {{0}};
        if (save_begin(run, &why) < 0) {
            finish(run, -EIO, why.msg);
            return 0;
        }
    }
    return on_migrate_poll(src, usec, userdata);
}

int qemu_hibernate(struct backend *b, const char *name, backend_done_fn done, void *userdata,
                   struct backend_why *why) {
    struct qemu_backend *qb = (struct qemu_backend *)b;
    struct qemu_run *run = qemu_find(qb, name);
    if (!run || run->power != BACKEND_PAUSED || run->start_done)
        return backend_fail(why, -EAGAIN, "Domain is not paused: '%s'", name);
    if (run->hibernated || run->hibernate_done)
        return backend_fail(why, -EALREADY, "'%s' is hibernated already", name);
    if (!run->hibernatable)
        return backend_fail(why, -EINVAL,
                            "'%s' was not started to be hibernated (a preload of a template "
                            "with preload-dispvm-hibernated)",
                            name);
    run->hibernate_deadline_ms = 0;
    int r = sd_event_add_time_relative(b->loop, &run->hibernate_timer, CLOCK_MONOTONIC, 0, 0,
                                       on_hibernate_step, run);
    if (r < 0)
        return backend_fail(why, r, "cannot hibernate '%s': %s", name, strerror(-r));
    sd_event_source_set_priority(run->hibernate_timer, SD_EVENT_PRIORITY_IDLE);
    run->hibernate_done = done;
    run->hibernate_userdata = userdata;
    log_info("%s: hibernating", name);
    return 0;
}

void qemu_hibernate_end(struct qemu_run *run) {
    if (run->keep_hibernation)
        return;
    char dir[4096];
    qemu_hibernate_path(run->qb, run->uuid, "", dir, sizeof(dir));
    if (access(dir, F_OK) == 0)
        remove_recursive(dir);
}

/* ---- the wake ---- */

void qemu_hibernate_claim(struct qemu_run *run) {
    struct qemu_backend *qb = run->qb;
    if (!qb->waking || strcmp(qb->waking, run->name) != 0)
        return;
    run->wake_fd = qb->waking_fd;
    run->woken = true;
    qb->waking_fd = -1;
    run->hibernatable = true;
}

int qemu_wake(struct backend *b, const struct backend_qube *q, backend_done_fn done, void *userdata,
              struct backend_why *why) {
    struct qemu_backend *qb = (struct qemu_backend *)b;
    struct qemu_run *run = qemu_find(qb, q->name);
    if (!run || !run->hibernated)
        return backend_fail(why, -EINVAL, "'%s' is not hibernated", q->name);
    char image[4200];
    qemu_hibernate_path(qb, run->uuid, "image", image, sizeof(image));
    int fd = open(image, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd >= 0)
        unlink(image); /* used once: nothing can wake it a second time */
    /* the hibernated run makes way for the start, its files kept for it */
    for (struct qemu_run **p = &qb->runs; *p; p = &(*p)->next)
        if (*p == run) {
            *p = run->next;
            break;
        }
    qemu_run_free(run);
    if (fd < 0) {
        int e = errno;
        qemu_hibernate_path(qb, q->uuid, "", image, sizeof(image));
        remove_recursive(image); /* it is gone: the daemon takes it for an exit */
        return backend_fail(why, -e, "the hibernation image of '%s' cannot be read: %s", q->name,
                            strerror(e));
    }
    qb->waking = xstrdup(q->name);
    qb->waking_fd = fd;
    int r = qemu_start(b, q, done, userdata, why);
    if (qb->waking_fd >= 0) /* not claimed: the start failed before its run existed */
        close(qb->waking_fd);
    qb->waking_fd = -1;
    free(TAKE_PTR(qb->waking));
    if (r < 0) { /* its files, if its run never existed to take them along */
        qemu_hibernate_path(qb, q->uuid, "", image, sizeof(image));
        remove_recursive(image);
    }
    return r;
}

static void restore_failed(struct qemu_run *run, const char *what) {
    char why[300];
    snprintf(why, sizeof(why), "cannot wake it from its hibernation image: %s", what);
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
        sd_event_source_set_time_relative(src, POLL_US / 5);
        sd_event_source_set_enabled(src, SD_EVENT_ONESHOT);
        return 0;
    }
    run->hibernate_timer = sd_event_source_disable_unref(run->hibernate_timer);
    close(run->wake_fd);
    run->wake_fd = -1;
    if (!strstr(status, "\"paused\"")) {
        restore_failed(run, status);
        return 0;
    }
    log_info("%s: state loaded %.0f ms after QEMU's start", run->name,
             mono_ms() - run->launched_ms);
    if (qemu_continue_start(run, &err) < 0) {
        qemu_abort_start(run, err.msg);
        return 0;
    }
    qemu_balloon_give_back(run); /* its balloon held what it did not use when saved */
    return 0;
}

void qemu_hibernate_restore(struct qemu_run *run) {
    struct backend_why err = {{0}};
    if (qmp_execute_fd(&run->qmp, "getfd", "{\"fdname\": \"hibernate\"}", run->wake_fd,
                       QMP_TIMEOUT_MS, NULL, 0, &err) < 0 ||
        qmp_execute(&run->qmp, "migrate-incoming", "{\"uri\": \"fd:hibernate\"}", QMP_TIMEOUT_MS,
                    NULL, 0, &err) < 0) {
        restore_failed(run, err.msg);
        return;
    }
    int r = sd_event_add_time_relative(run->qb->base.loop, &run->hibernate_timer, CLOCK_MONOTONIC,
                                       POLL_US / 5, 0, on_restore_poll, run);
    if (r < 0) {
        restore_failed(run, strerror(-r));
        return;
    }
    sd_event_source_set_priority(run->hibernate_timer, run->start_priority);
}

/* ---- after a restart ---- */

int qemu_hibernate_adopt(struct qemu_backend *qb, const struct backend_qube *q) {
    char path[4200], line[256], word[64], value[128];
    snprintf(path, sizeof(path), "%s/qemu/%s/state", qb->runtime_dir, q->name);
    if (access(path, F_OK) == 0)
        return -1; /* a QEMU was (or is) there: adopted or cleaned up as such */
    qemu_hibernate_path(qb, q->uuid, "image", path, sizeof(path));
    if (access(path, F_OK) < 0)
        return -1;
    qemu_hibernate_path(qb, q->uuid, "meta", path, sizeof(path));
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    uint64_t revision = 0;
    bool same = false;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "%63s %127s", word, value) == 2) {
            if (streq(word, "root_revision"))
                revision = strtoull(value, NULL, 10);
            else if (streq(word, "name"))
                same = streq(value, q->name);
        }
    fclose(f);
    if (!same)
        return -1;
    hibernated_run(qb, q->name, q->uuid, q->kind, revision);
    log_info("%s: adopted (hibernated: no QEMU, its image on disk)", q->name);
    return 0;
}
