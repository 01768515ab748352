/* What a restarted daemon needs to adopt a running VM (RUNTIME/qemu/<name>/state), the
 * adoption itself, and the removal of what VMs left behind. */
#include "qemu.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "fsutil.h"
#include "log.h"
#include "qemu_balloon.h"
#include "strbuf.h"

int qemu_state_save(const struct qemu_run *run) {
    char dir[4096], path[4200], tmp[4300];
    qemu_rundir(run->qb, run->name, dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/state", dir);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    /* QEMU's group may add files to the directory: whatever it put at tmp goes, and the
     * file is made anew, never followed through a link */
    unlink(tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    fprintf(f,
            "pid %d\nstarttime %llu\nuuid %s\nkind %d\naccel %s\nshutdown_timeout %u\n"
            "cpu_weight %u\nvmux_pid %d\nvmux_starttime %llu\nuid %u\nroot_revision %llu\n",
            (int)run->pid, run->starttime, run->uuid, (int)run->kind, qemu_accel_name(run->accel),
            run->shutdown_timeout, run->cpu_weight, (int)run->vmux_pid, run->vmux_starttime,
            (unsigned)run->uid, (unsigned long long)run->root_revision);
    if (fclose(f) != 0 || rename(tmp, path) < 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

static struct qemu_run *state_load(struct qemu_backend *qb, const char *name) {
    char dir[4096], path[4200], line[256], word[64], value[128];
    qemu_rundir(qb, name, dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/state", dir);
    FILE *f = fopen(path, "re");
    if (!f)
        return NULL;
    struct qemu_run *run = xcalloc(1, sizeof(*run));
    run->qb = qb;
    run->name = xstrdup(name);
    run->pidfd = run->control_fd = run->qmp.fd = run->vmux_pidfd = -1;
    run->hibernate_fd = run->wake_fd = -1;
    run->power = BACKEND_RUNNING;
    while (fgets(line, sizeof(line), f)) {
        if (sscanf(line, "%63s %127s", word, value) != 2)
            continue;
        if (streq(word, "pid"))
            run->pid = (pid_t)atoi(value);
        else if (streq(word, "starttime"))
            run->starttime = strtoull(value, NULL, 10);
        else if (streq(word, "uuid"))
            run->uuid = xstrdup(value);
        else if (streq(word, "kind"))
            run->kind = (enum backend_kind)atoi(value);
        else if (streq(word, "accel"))
            run->accel = streq(value, "kvm") ? QEMU_ACCEL_KVM : QEMU_ACCEL_TCG;
        else if (streq(word, "shutdown_timeout"))
            run->shutdown_timeout = (unsigned)atoi(value);
        else if (streq(word, "cpu_weight"))
            run->cpu_weight = (unsigned)atoi(value);
        else if (streq(word, "vmux_pid"))
            run->vmux_pid = (pid_t)atoi(value);
        else if (streq(word, "vmux_starttime"))
            run->vmux_starttime = strtoull(value, NULL, 10);
        else if (streq(word, "uid"))
            run->uid = (uid_t)strtoul(value, NULL, 10);
        else if (streq(word, "root_revision"))
            run->root_revision = strtoull(value, NULL, 10);
    }
    fclose(f);
    if (!run->uuid)
        run->uuid = xstrdup("");
    qemu_link_init(run);
    return run;
}

/* The recorded QEMU, still the same process (pids are reused) and alive. */
static bool run_alive(struct qemu_run *run) {
    return backend_proc_alive(run->pid, run->starttime, &run->pidfd);
}

/* Gone, or never ours: whatever is left of it goes (without telling the daemon); its
 * dispenser-vmux goes with its cgroup. */
static void discard(struct qemu_run *run) {
    if (run->pidfd >= 0)
        syscall(SYS_pidfd_send_signal, run->pidfd, SIGKILL, NULL, 0);
    run->next = run->qb->runs;
    run->qb->runs = run;
    qemu_teardown(run, false, 0);
}

/* Paused or running, as QEMU says. */
static enum backend_power query_power(struct qemu_run *run) {
    char status[256] = "";
    struct backend_why err = {{0}};
    if (qmp_execute(&run->qmp, "query-status", NULL, 5000, status, sizeof(status), &err) < 0)
        return BACKEND_RUNNING;
    return strstr(status, "\"running\":false") ? BACKEND_PAUSED : BACKEND_RUNNING;
}

int qemu_adopt(struct backend *b, const struct backend_qube *q) {
    struct qemu_backend *qb = (struct qemu_backend *)b;
    if (qemu_hibernate_adopt(qb, q) == 0)
        return 0;
    struct qemu_run *run = state_load(qb, q->name);
    if (!run)
        return -1;
    struct backend_why err = {{0}};
    run->cg = cgroup_qube_open(qb->cgroups, q->name);
    if (!run_alive(run) || qemu_connect(run, &err) < 0 || qemu_watch(run) < 0 ||
        qemu_vmux_adopt(run, &err) < 0) {
        log_info("%s: was running before the restart but is gone%s%s; cleaning up", q->name,
                 *err.msg ? ": " : "", err.msg);
        discard(run);
        return -1;
    }
    run->power = query_power(run);
    if (run->power == BACKEND_RUNNING && qemu_balloon_adopt(run))
        run->power = BACKEND_PAUSED; /* the daemon before us had paused it */
    /* a ballooned preload gets its memory back on unpause */
    run->balloon = qemu_balloon_present(run) ? QEMU_BALLOON_SHRINK : QEMU_BALLOON_OFF;
    run->next = qb->runs;
    qb->runs = run;
    if (agent_link_uplink_open(&run->link) < 0) /* a paused guest answers once it runs */
        log_warning("%s: no qrexec uplink after adoption", q->name);
    log_info("%s: adopted (QEMU pid %d, %s, %s)", q->name, run->pid,
             run->power == BACKEND_PAUSED ? "paused" : "running", qemu_accel_name(run->accel));
    return 0;
}

static bool in_list(const char *const *list, const char *s) {
    for (; list && *list; list++)
        if (strcmp(*list, s) == 0)
            return true;
    return false;
}

static void cleanup_runtime(struct qemu_backend *qb) {
    char path[4096];
    snprintf(path, sizeof(path), "%s/qemu", qb->runtime_dir);
    DIR *d = opendir(path);
    for (struct dirent *e; d && (e = readdir(d));) {
        if (e->d_name[0] == '.' || qemu_find(qb, e->d_name))
            continue;
        struct qemu_run *run = state_load(qb, e->d_name);
        log_info("%s: removing leftovers of a VM that no longer runs here", e->d_name);
        if (run) {
            run->cg = cgroup_qube_open(qb->cgroups, e->d_name);
            run_alive(run); /* its pidfd, to kill a QEMU nobody adopted */
            discard(run);
        } else {
            qemu_rundir(qb, e->d_name, path, sizeof(path));
            remove_recursive(path);
        }
    }
    if (d)
        closedir(d);
}

static bool vm_in_use(void *ctx, const char *name) { return qemu_find(ctx, name) != NULL; }

static void cleanup_cgroups(struct qemu_backend *qb) {
    cgroup_remove_leftovers(qb->cgroups, vm_in_use, qb);
}

/* Half-written files (NAME.tmp) of a builder the last daemon left behind. */
static void remove_partial_files(const char *dir) {
    char path[8192];
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));) {
        size_t n = strlen(e->d_name);
        if (n <= 4 || strcmp(e->d_name + n - 4, ".tmp") != 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        log_info("removing leftover %s", path);
        unlink(path);
    }
    if (d)
        closedir(d);
}

/* Images and volumes of qubes (or templates) that no longer exist. */
static void cleanup_images(struct qemu_backend *qb, const char *sub, const char *const *keep) {
    char dir[4096], path[8192];
    snprintf(dir, sizeof(dir), "%s/qemu/%s", qb->state_dir, sub);
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));) {
        if (e->d_name[0] == '.')
            continue;
        if (in_list(keep, e->d_name)) {
            snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
            remove_partial_files(path);
            continue;
        }
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        log_info("removing leftover %s", path);
        remove_recursive(path);
    }
    if (d)
        closedir(d);
}

/* Scratch directories of VMs that no longer run (their QEMU killed above). */
static void cleanup_scratch(struct qemu_backend *qb) {
    char dir[4096];
    qemu_scratch_path(qb, "", dir, sizeof(dir));
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));) {
        if (e->d_name[0] == '.' || qemu_find(qb, e->d_name))
            continue;
        log_info("%s: removing the scratch directory of a VM that no longer runs", e->d_name);
        qemu_scratch_remove(qb, e->d_name);
    }
    if (d)
        closedir(d);
}

void qemu_cleanup(struct backend *b, const char *const *keep) {
    struct qemu_backend *qb = (struct qemu_backend *)b;
    cleanup_runtime(qb);
    cleanup_scratch(qb);
    cleanup_cgroups(qb);
    cleanup_images(qb, "images", keep);
    cleanup_images(qb, "volumes", keep);
    cleanup_images(qb, "hibernate", keep); /* hibernated qubes that are gone */
    qemu_golden_cleanup(qb, keep);
}
