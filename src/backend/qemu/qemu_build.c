/* Root images built beside the daemon, not in it.
 *
 * The first start of a template revision needs its root image (image.h): mkfs.erofs over
 * the template's layers, ~0.1 s for the busybox template, seconds for a full distribution.
 * Built in the daemon's loop, that would stall every other qube's calls and every preload
 * hand-out meanwhile; so a builder process (a fork of the daemon that runs image.c and
 * exits) builds it, and the starts that need it wait as qubes in their "building" step.
 * Starts of the same image share one builder. */
#include "qemu.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "container/volume.h"
#include "image.h"
#include "log.h"
#include "monoclock.h"
#include "strbuf.h"

struct qemu_build {
    struct qemu_build *next;
    struct qemu_backend *qb;
    char *image;
    int pidfd, result_fd; /* the builder's verdict: "" (built) or why not */
    sd_event_source *exit_src;
    double started_ms;
};

static int attach_builder(void *ctx, pid_t pid) { return cgroup_qube_attach(ctx, pid); }

/* In the builder: a cgroup of its own in the engine's group ("image-<template
 * uuid>-<revision>": two revisions may build at once), removed after, or by the engine's
 * cleanup (which removes every group no running VM owns) if the daemon dies meanwhile. */
static int build_in_cgroup(struct qemu_backend *qb, const char *uuid,
                           const struct volume_stack *stack, struct backend_why *why) {
    char name[80];
    snprintf(name, sizeof(name), "image-%.36s-%llu", uuid, (unsigned long long)stack->revision);
    struct cgroup_limits limits = {.memory_max_bytes = 1ULL << 30,
                                   .pids_max = 64,
                                   .cpu_weight = 100};
    struct cgroup_qube *cg = cgroup_qube_create(qb->cgroups, name, &limits);
    if (!cg)
        return backend_fail(why, -errno, "cannot create the cgroup of the image builder: %s",
                            strerror(errno));
    struct image_confine confine = {attach_builder, cg};
    int r = image_root_ensure(qb->state_dir, uuid, stack->revision, stack->layers, stack->n_layers,
                              &confine, why);
    cgroup_qube_kill(cg);
    cgroup_qube_destroy(cg);
    return r;
}

static _Noreturn void builder_main(struct qemu_backend *qb, const char *uuid,
                                   const struct volume_stack *stack, int result_w) {
    struct backend_why why = {{0}};
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    int r = build_in_cgroup(qb, uuid, stack, &why);
    if (r < 0 && !*why.msg)
        snprintf(why.msg, sizeof(why.msg), "cannot build the root image");
    if (r < 0 && write(result_w, why.msg, strlen(why.msg)) < 0)
        _exit(2);
    _exit(r < 0 ? 1 : 0);
}

static void build_free(struct qemu_build *bld) {
    sd_event_source_disable_unref(bld->exit_src);
    if (bld->pidfd >= 0)
        close(bld->pidfd);
    if (bld->result_fd >= 0)
        close(bld->result_fd);
    free(bld->image);
    free(bld);
}

static void build_unlink(struct qemu_build *bld) {
    for (struct qemu_build **p = &bld->qb->builds; *p; p = &(*p)->next)
        if (*p == bld) {
            *p = bld->next;
            return;
        }
}

/* The builder is done: every start that waited for it goes on (or fails with its why). */
static int on_builder_exit(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
    struct qemu_build *bld = userdata;
    char why[sizeof(((struct backend_why *)0)->msg)] = "";
    ssize_t n = read(bld->result_fd, why, sizeof(why) - 1);
    why[n > 0 ? n : 0] = '\0';
    siginfo_t si = {0};
    waitid(P_PIDFD, (id_t)bld->pidfd, &si, WEXITED | WNOHANG);
    bool built = si.si_code == CLD_EXITED && si.si_status == 0 && access(bld->image, F_OK) == 0;
    if (!built && !*why)
        snprintf(why, sizeof(why), "the image builder ended abnormally");
    log_info("qemu: root image %s %s in %.0f ms by its builder", bld->image,
             built ? "ready" : "failed", mono_ms() - bld->started_ms);
    build_unlink(bld);
    struct qemu_backend *qb = bld->qb;
    for (struct qemu_run *run = qb->runs, *next; run; run = next) {
        next = run->next; /* a failed start leaves the list */
        if (run->build != bld)
            continue;
        run->build = NULL;
        if (built)
            qemu_launch_pending(run);
        else
            qemu_abort_start(run, why);
    }
    build_free(bld);
    return 0;
}

static struct qemu_build *build_spawn(struct qemu_backend *qb, const char *uuid,
                                      const struct volume_stack *stack, const char *image,
                                      struct backend_why *why) {
    int result[2];
    if (pipe2(result, O_CLOEXEC) < 0) {
        backend_fail(why, -errno, "cannot start the image builder: %s", strerror(errno));
        return NULL;
    }
    pid_t pid = fork();
    if (pid == 0) {
        close(result[0]);
        builder_main(qb, uuid, stack, result[1]);
    }
    close(result[1]);
    struct qemu_build *bld = xcalloc(1, sizeof(*bld));
    bld->qb = qb;
    bld->image = xstrdup(image);
    bld->result_fd = result[0];
    bld->started_ms = mono_ms();
    bld->pidfd = pid > 0 ? (int)syscall(SYS_pidfd_open, pid, 0) : -1;
    if (bld->pidfd < 0 || sd_event_add_io(qb->base.loop, &bld->exit_src, bld->pidfd, EPOLLIN,
                                          on_builder_exit, bld) < 0) {
        if (pid > 0) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
        }
        build_free(bld);
        backend_fail(why, -EIO, "cannot start the image builder");
        return NULL;
    }
    log_info("qemu: building root image %s (revision %llu) in the background", image,
             (unsigned long long)stack->revision);
    bld->next = qb->builds;
    qb->builds = bld;
    return bld;
}

struct qemu_build *qemu_build_root(struct qemu_backend *qb, const char *uuid,
                                   const struct volume_stack *stack, struct backend_why *why) {
    char image[4096];
    image_root_path(qb->state_dir, uuid, stack->revision, image, sizeof(image));
    for (struct qemu_build *bld = qb->builds; bld; bld = bld->next)
        if (strcmp(bld->image, image) == 0)
            return bld;
    return build_spawn(qb, uuid, stack, image, why);
}

/* The daemon is going: builders finish on their own (their image is good for the next
 * daemon) or are killed with their cgroup by its cleanup. */
void qemu_builds_forget(struct qemu_backend *qb) {
    while (qb->builds) {
        struct qemu_build *bld = qb->builds;
        qb->builds = bld->next;
        build_free(bld);
    }
}
