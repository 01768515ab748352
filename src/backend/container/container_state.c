/* What survives a daemon restart: the state file of each running qube, adoption, and
 * the removal of leftovers of qubes that no longer exist. */
#include <dirent.h>
#include <stdbool.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "container.h"
#include "uidslot.h"
#include "fsutil.h"
#include "log.h"
#include "strbuf.h"

static void put_volume(struct strbuf *sb, const char *key, const struct run_volume *v) {
    strbuf_printf(sb, "%s_upper %s\n%s_work %s\n%s_persistent %d\n%s_revision %llu\n", key,
                  v->upper ? v->upper : "", key, v->work ? v->work : "", key, v->persistent, key,
                  (unsigned long long)v->stack.revision);
    for (size_t i = 0; i < v->stack.n_layers; i++)
        strbuf_printf(sb, "%s_layer %s\n", key, v->stack.layers[i]);
    for (size_t i = 0; v->shifted && v->shifted[i]; i++)
        strbuf_printf(sb, "%s_shifted %s\n", key, v->shifted[i]);
}

/* Written once at start, replaced atomically: a crash leaves the old file or the new. No
 * fsync: the runtime dir is tmpfs on a real host (/run) and gone at reboot anyway, and a
 * killed daemon loses nothing the kernel has; only a daemon restart reads this. */
int run_state_save(const struct run *run) {
    const struct container_backend *cb = run->cb;
    char path[4096], tmp[4200];
    container_path(cb, path, sizeof(path), "%s/qubes/%s/state", cb->runtime_dir, run->name);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
    strbuf_printf(&sb, "pid %d\nstarttime %llu\nuuid %s\nkind %d\nshutdown_timeout %u\n", run->pid,
                  run->starttime, run->uuid, (int)run->kind, run->shutdown_timeout);
    /* on chowned copies, its commit gives its range's files back to the canonical one */
    strbuf_printf(&sb, "uid_base %u\ncopies %d\n", (unsigned)run->uid_base, run->copies);
    put_volume(&sb, "root", &run->root);
    put_volume(&sb, "private", &run->priv);
    _cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, sb.data, sb.len) != (ssize_t)sb.len)
        return -1;
    return rename(tmp, path);
}

static void add_layer(struct run_volume *v, const char *path) {
    v->stack.layers = xrealloc(v->stack.layers, (v->stack.n_layers + 1) * sizeof(char *));
    v->stack.layers[v->stack.n_layers++] = xstrdup(path);
}

static void add_shifted(struct run_volume *v, const char *path) {
    size_t n = 0;
    while (v->shifted && v->shifted[n])
        n++;
    v->shifted = xrealloc(v->shifted, (n + 2) * sizeof(char *));
    v->shifted[n] = xstrdup(path);
    v->shifted[n + 1] = NULL;
}

static void parse_volume_line(struct run *run, const char *key, const char *value) {
    struct run_volume *v = strncmp(key, "root_", 5) == 0 ? &run->root : &run->priv;
    const char *field = strchr(key, '_') + 1;
    if (strcmp(field, "upper") == 0 && *value)
        v->upper = xstrdup(value);
    else if (strcmp(field, "work") == 0 && *value)
        v->work = xstrdup(value);
    else if (strcmp(field, "persistent") == 0)
        v->persistent = atoi(value) != 0;
    else if (strcmp(field, "revision") == 0)
        v->stack.revision = strtoull(value, NULL, 10);
    else if (strcmp(field, "layer") == 0)
        add_layer(v, value);
    else if (strcmp(field, "shifted") == 0)
        add_shifted(v, value);
}

static void parse_line(struct run *run, char *line) {
    char *value = strchr(line, ' ');
    if (!value)
        return;
    *value++ = '\0';
    value[strcspn(value, "\n")] = '\0';
    if (strcmp(line, "pid") == 0)
        run->pid = atoi(value);
    else if (strcmp(line, "starttime") == 0)
        run->starttime = strtoull(value, NULL, 10);
    else if (strcmp(line, "uuid") == 0)
        run->uuid = xstrdup(value);
    else if (strcmp(line, "kind") == 0)
        run->kind = (enum backend_kind)atoi(value);
    else if (strcmp(line, "shutdown_timeout") == 0)
        run->shutdown_timeout = (unsigned)atoi(value);
    else if (strcmp(line, "uid_base") == 0)
        run->uid_base = (uid_t)strtoul(value, NULL, 10);
    else if (strcmp(line, "copies") == 0)
        run->copies = atoi(value) != 0;
    else if (strncmp(line, "root_", 5) == 0 || strncmp(line, "private_", 8) == 0)
        parse_volume_line(run, line, value);
}

struct run *run_state_load(struct container_backend *cb, const char *name) {
    char path[4096], line[4200];
    container_path(cb, path, sizeof(path), "%s/qubes/%s/state", cb->runtime_dir, name);
    FILE *f = fopen(path, "re");
    if (!f)
        return NULL;
    struct run *run = xcalloc(1, sizeof(*run));
    run->cb = cb;
    run->name = xstrdup(name);
    run->pidfd = -1;
    container_link_init(run);
    while (fgets(line, sizeof(line), f))
        parse_line(run, line);
    fclose(f);
    if (!run->uuid)
        run->uuid = xstrdup("");
    run->root.owner_uuid = run->priv.owner_uuid = run->uuid;
    return run;
}

/* Is the recorded init still the same process (pids are reused), and alive? An init
 * that died while we were away is no longer our child: it may linger as a zombie until
 * the host's init reaps it, and a zombie's pidfd is readable at once. */
static bool run_alive(struct run *run) {
    return backend_proc_alive(run->pid, run->starttime, &run->pidfd);
}

int container_adopt(struct backend *b, const struct backend_qube *q) {
    struct container_backend *cb = (struct container_backend *)b;
    guest_log_note_qube(cb, q->name);
    struct run *run = run_state_load(cb, q->name);
    if (!run)
        return -1;
    run->cg = cgroup_qube_open(cb->cgroups, q->name);
    if (!run_alive(run) || !run->cg || container_watch_exit(run) < 0) {
        log_info("%s: was running before the restart but is gone; cleaning up", q->name);
        run->next = cb->runs;
        cb->runs = run;
        container_teardown(run, false, 0); /* saves what a template wrote before it died */
        container_settle(cb);
        return -1;
    }
    run->power = cgroup_qube_is_frozen(run->cg) ? BACKEND_PAUSED : BACKEND_RUNNING;
    /* the daemon that gave it block devices is gone, and its record with it */
    int dr = cgroup_qube_devices_reset(run->cg);
    if (dr < 0 && dr != -ENOTSUP)
        log_warning("%s: cannot take back its block devices: %s", q->name, strerror(-dr));
    run->next = cb->runs;
    cb->runs = run;
    if (agent_link_uplink_open(&run->link) <
        0) /* a paused agent answers once thawed: the uplink waits */
        log_warning("%s: no qrexec uplink after adoption", q->name);
    log_info("%s: adopted (pid %d, %s)", q->name, run->pid,
             run->power == BACKEND_PAUSED ? "paused" : "running");
    return 0;
}

static bool in_list(const char *const *list, const char *s) {
    for (; list && *list; list++)
        if (strcmp(*list, s) == 0)
            return true;
    return false;
}

/* Runtime dirs whose qube was not adopted: a qube removed while the daemon was down, or
 * one that died. Kill whatever is left of it and remove its traces. */
static void cleanup_runtime(struct container_backend *cb) {
    char path[4096];
    container_path(cb, path, sizeof(path), "%s/qubes", cb->runtime_dir);
    DIR *d = opendir(path);
    for (struct dirent *e; d && (e = readdir(d));) {
        if (e->d_name[0] == '.' || container_find(cb, e->d_name))
            continue;
        struct run *run = run_state_load(cb, e->d_name);
        if (!run) {
            container_path(cb, path, sizeof(path), "%s/qubes/%s", cb->runtime_dir, e->d_name);
            remove_recursive(path);
            continue;
        }
        log_info("%s: removing leftovers of a qube that no longer runs", e->d_name);
        run->cg = cgroup_qube_open(cb->cgroups, e->d_name);
        run->next = cb->runs;
        cb->runs = run;
        container_teardown(run, false, 0);
    }
    if (d)
        closedir(d);
}

static bool qube_in_use(void *ctx, const char *name) { return container_find(ctx, name) != NULL; }

static void cleanup_cgroups(struct container_backend *cb) {
    cgroup_remove_leftovers(cb->cgroups, qube_in_use, cb);
}

static void cleanup_dir_entries(struct container_backend *cb, const char *sub,
                                const char *const *keep, bool by_run) {
    char path[4096];
    container_path(cb, path, sizeof(path), "%s/%s", cb->state_dir, sub);
    DIR *d = opendir(path);
    for (struct dirent *e; d && (e = readdir(d));) {
        if (e->d_name[0] == '.' ||
            (by_run ? container_find(cb, e->d_name) != NULL : in_list(keep, e->d_name)))
            continue;
        container_path(cb, path, sizeof(path), "%s/%s/%s", cb->state_dir, sub, e->d_name);
        log_info("removing leftover %s", path);
        remove_scratch(path);
    }
    if (d)
        closedir(d);
}

struct slot_keep {
    struct container_backend *cb;
    const char *const *keep;
};

/* A slot stays while its qube is in the database or still runs here. */
static bool slot_kept(void *ctx, const char *uuid) {
    const struct slot_keep *k = ctx;
    if (in_list(k->keep, uuid))
        return true;
    for (struct run *r = k->cb->runs; r; r = r->next)
        if (strcmp(r->uuid, uuid) == 0)
            return true;
    return false;
}

void container_cleanup(struct backend *b, const char *const *keep) {
    struct container_backend *cb = (struct container_backend *)b;
    cleanup_runtime(cb);
    container_settle(cb);
    cleanup_cgroups(cb);
    cleanup_dir_entries(cb, "volatile", NULL, true);
    cleanup_dir_entries(cb, "volumes", keep, false);
    if (cb->slots) { /* after the volumes: a slot goes once its qube's files have */
        uid_slots_sweep(cb->slots, slot_kept, &(struct slot_keep){cb, keep});
        container_sweep_copies(cb, true); /* of released slots, of layers gone */
    }
    guest_log_sweep(cb);
}
