/* cgroups for qubes: hierarchy detection, limits, freeze/thaw, kill, stats, cleanup.
 *
 * A "hierarchy" is one mounted cgroup tree: the cgroup2 tree, or one v1 tree carrying some
 * controllers. Every qube gets a directory <own>/<group>/<name> in each hierarchy we use,
 * and each job (limit, freeze, kill, stats) goes to the hierarchy that can do it. */
#include "cgroup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "devbpf.h"
#include "log.h"
#include "macro.h"
#include "monoclock.h"
#include "strbuf.h"

/* The controllers we use. Others (cpuset, blkio, name=systemd) are ignored: a qube needs
 * no directory there. devices is v1's device cgroup; where there is none, a qube's
 * cgroup2 directory gets a BPF device program instead (devbpf.h, docs/devices.md). */
enum ctl { CTL_MEMORY, CTL_PIDS, CTL_CPU, CTL_CPUACCT, CTL_FREEZER, CTL_DEVICES, N_CTL };
static const char *const ctl_names[N_CTL] = {"memory",  "pids",    "cpu",
                                             "cpuacct", "freezer", "devices"};
#define CTL_BIT(c) (1u << (c))
/* What cgroup2 can provide for us when the controller is not bound to a v1 tree. */
#define V2_WANTED (CTL_BIT(CTL_MEMORY) | CTL_BIT(CTL_PIDS) | CTL_BIT(CTL_CPU))

#define MAX_HIER (N_CTL + 1)
#define WAIT_TIMEOUT_NS (5 * 1000000000LL)

struct hierarchy {
    char *mount;      /* mount point, e.g. /sys/fs/cgroup/memory */
    char *mount_root; /* which cgroup is mounted there (mountinfo "root") */
    char *own;        /* the daemon's cgroup (from /proc/self/cgroup) */
    char *own_dir;    /* mount + own made relative to mount_root */
    char *group_dir;  /* own_dir/group: the parent of every qube cgroup */
    unsigned ctls;    /* v1: our controllers bound here; v2: those enabled for qubes */
    bool v2;
};

struct cgroup_system {
    char *group;
    struct hierarchy hier[MAX_HIER];
    size_t n_hier;
    int by_ctl[N_CTL]; /* index in hier of the tree doing that job, -1 if none */
    int v2;            /* index of the cgroup2 tree, -1 if none */
    bool v2_freeze, v2_kill, v2_cpustat;
    char *description;
};

struct cgroup_qube {
    struct cgroup_system *cs;
    char *name;
    char *dir[MAX_HIER]; /* parallel to cs->hier */
    /* cgroup2 device control (no v1 devices controller): the program attached to the
     * qube's cgroup2 directory (-1: none) and the devices allowed beyond its /dev's */
    int bpf_fd;
    struct devbpf_rule *granted;
    size_t n_granted;
};

static void fclosep(FILE **f) {
    if (*f)
        fclose(*f);
}

static void closedirp(DIR **d) {
    if (*d)
        closedir(*d);
}

/* ---- small file helpers (cgroup files want one write per value) ---- */

static char *path_join(const char *a, const char *b) {
    _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
    strbuf_printf(&sb, "%s/%s", a, b);
    return TAKE_PTR(sb.data);
}

static int write_file(const char *dir, const char *file, const char *value) {
    _cleanup_free_ char *p = path_join(dir, file);
    _cleanup_close_ int fd = open(p, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t len = strlen(value);
    ssize_t n = write(fd, value, len);
    if (n < 0)
        return -errno;
    return (size_t)n == len ? 0 : -EIO;
}

static int write_u64(const char *dir, const char *file, uint64_t v) {
    char buf[32];
    snprintf(buf, sizeof(buf), "%" PRIu64, v);
    return write_file(dir, file, buf);
}

/* Reads a whole (small) file; NUL-terminated. Returns length or -errno. */
static ssize_t read_fd_all(int fd, char *buf, size_t size) {
    ssize_t n = pread(fd, buf, size - 1, 0);
    if (n < 0)
        return -errno;
    buf[n] = '\0';
    return n;
}

static ssize_t read_file(const char *dir, const char *file, char *buf, size_t size) {
    _cleanup_free_ char *p = path_join(dir, file);
    _cleanup_close_ int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    return read_fd_all(fd, buf, size);
}

static int read_u64(const char *dir, const char *file, uint64_t *out) {
    char buf[64];
    ssize_t n = read_file(dir, file, buf, sizeof(buf));
    if (n < 0)
        return (int)n;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(buf, &end, 10);
    if (errno || end == buf)
        return -EINVAL;
    *out = v;
    return 0;
}

/* Value of "key N" in a flat-keyed file such as cpu.stat or cgroup.events. */
static int keyed_value(const char *text, const char *key, uint64_t *out) {
    size_t klen = strlen(key);
    for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        if (strncmp(l, key, klen) == 0 && l[klen] == ' ') {
            *out = strtoull(l + klen + 1, NULL, 10);
            return 0;
        }
    }
    return -ENOENT;
}

static int read_keyed(const char *dir, const char *file, const char *key, uint64_t *out) {
    char buf[4096];
    ssize_t n = read_file(dir, file, buf, sizeof(buf));
    return n < 0 ? (int)n : keyed_value(buf, key, out);
}

static bool file_exists(const char *dir, const char *file) {
    _cleanup_free_ char *p = path_join(dir, file);
    return access(p, F_OK) == 0;
}

/* Exponential backoff for the few things the kernel gives no notification for. */
static void backoff_sleep(long *ns) {
    struct timespec ts = {0, *ns};
    nanosleep(&ts, NULL);
    *ns = *ns * 2 > 10000000 ? 10000000 : *ns * 2;
}

/* ---- detection ---- */

/* mountinfo escapes space, tab, newline and backslash as \ooo. */
static void unescape_octal(char *s) {
    char *w = s;
    for (char *r = s; *r; r++) {
        if (r[0] == '\\' && r[1] >= '0' && r[1] <= '7' && r[2] && r[3]) {
            *w++ = (char)(((r[1] - '0') << 6) | ((r[2] - '0') << 3) | (r[3] - '0'));
            r += 3;
        } else {
            *w++ = *r;
        }
    }
    *w = '\0';
}

/* Our controllers among a comma-separated list ("rw,cpu,cpuacct" or "cpu,cpuacct"). */
static unsigned parse_ctl_list(const char *list) {
    unsigned mask = 0;
    _cleanup_free_ char *copy = xstrdup(list);
    char *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save))
        for (int c = 0; c < N_CTL; c++)
            if (streq(t, ctl_names[c]))
                mask |= CTL_BIT(c);
    return mask;
}

static void hierarchy_clear(struct hierarchy *h) {
    free(h->mount);
    free(h->mount_root);
    free(h->own);
    free(h->own_dir);
    free(h->group_dir);
    *h = (struct hierarchy){0};
}

/* Adds a mount unless one for the same tree is already known (bind mounts repeat it). */
static void add_mount(struct cgroup_system *cs, bool v2, unsigned ctls, const char *root,
                      const char *mnt) {
    for (size_t i = 0; i < cs->n_hier; i++)
        if (cs->hier[i].v2 == v2 && cs->hier[i].ctls == ctls)
            return;
    if (cs->n_hier == MAX_HIER)
        return;
    struct hierarchy *h = &cs->hier[cs->n_hier++];
    *h = (struct hierarchy){.mount = xstrdup(mnt),
                            .mount_root = xstrdup(root),
                            .ctls = ctls,
                            .v2 = v2};
}

static void parse_mountinfo_line(struct cgroup_system *cs, char *line) {
    char *sep = strstr(line, " - ");
    if (!sep)
        return;
    *sep = '\0';
    char root[4096], mnt[4096], fstype[64], super[1024];
    if (sscanf(line, "%*s %*s %*s %4095s %4095s", root, mnt) != 2 ||
        sscanf(sep + 3, "%63s %*s %1023s", fstype, super) != 2)
        return;
    unescape_octal(root);
    unescape_octal(mnt);
    if (streq(fstype, "cgroup2"))
        add_mount(cs, true, 0, root, mnt);
    else if (streq(fstype, "cgroup")) {
        unsigned ctls = parse_ctl_list(super);
        if (ctls)
            add_mount(cs, false, ctls, root, mnt);
    }
}

/* Hands every line of a file (mountinfo, /proc/self/cgroup) to one of the parsers. */
static int parse_lines(struct cgroup_system *cs, const char *path,
                       void (*parse)(struct cgroup_system *, char *)) {
    _cleanup_(fclosep) FILE *f = fopen(path, "re");
    if (!f)
        return -errno;
    _cleanup_free_ char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0)
        parse(cs, line);
    return 0;
}

/* One /proc/self/cgroup line, "id:controllers:path": gives the daemon's own cgroup to the
 * hierarchy with the same controllers ("0::/x" is cgroup2). */
static void parse_self_line(struct cgroup_system *cs, char *line) {
    char *c1 = strchr(line, ':');
    char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    if (!c2)
        return;
    *c1 = *c2 = '\0';
    char *path = c2 + 1;
    path[strcspn(path, "\n")] = '\0';
    bool v2 = streq(line, "0") && c2 == c1 + 1;
    unsigned ctls = v2 ? 0 : parse_ctl_list(c1 + 1);
    if (!v2 && !ctls)
        return;
    for (size_t i = 0; i < cs->n_hier; i++) {
        struct hierarchy *h = &cs->hier[i];
        if (h->v2 == v2 && h->ctls == ctls && !h->own)
            h->own = xstrdup(path);
    }
}

/* The directory of our own cgroup: the mount shows the cgroup mount_root, so own must lie
 * below it (a container may see only a subtree). NULL if it is not reachable. */
static char *own_dir_of(const struct hierarchy *h) {
    const char *rel = h->own;
    size_t rlen = strlen(h->mount_root);
    if (!streq(h->mount_root, "/")) {
        if (strncmp(h->own, h->mount_root, rlen) != 0 ||
            (h->own[rlen] != '/' && h->own[rlen] != '\0'))
            return NULL;
        rel = h->own + rlen;
    }
    while (*rel == '/')
        rel++;
    return *rel ? path_join(h->mount, rel) : xstrdup(h->mount);
}

/* Drops hierarchies we cannot use: our cgroup unknown or outside the mounted subtree. */
static void resolve_own_dirs(struct cgroup_system *cs) {
    size_t w = 0;
    for (size_t i = 0; i < cs->n_hier; i++) {
        struct hierarchy *h = &cs->hier[i];
        if (h->own && (h->own_dir = own_dir_of(h))) {
            cs->hier[w++] = *h;
            continue;
        }
        log_warning("cgroup: ignoring %s (our cgroup %s is not below its root %s)", h->mount,
                    h->own ? h->own : "unknown", h->mount_root);
        hierarchy_clear(h);
    }
    cs->n_hier = w;
}

static bool is_pure_v2(const struct cgroup_system *cs) { return cs->n_hier == 1 && cs->hier[0].v2; }

/* On pure cgroup v2 the daemon lives in <own>/supervisor, so that <own> holds no process
 * and may hand controllers to its children (the no-internal-processes rule). A daemon that
 * is already there (restart in place, second open) treats the parent as its own cgroup. */
static int v2_move_to_supervisor(struct hierarchy *h) {
    const char *base = strrchr(h->own_dir, '/');
    if (base && streq(base + 1, "supervisor")) {
        h->own_dir[base - h->own_dir] = '\0';
        return 0;
    }
    /* The real root may keep processes; it has no cgroup.type (a cgroupns root has one). */
    if (!file_exists(h->own_dir, "cgroup.type"))
        return 0;
    _cleanup_free_ char *sup = path_join(h->own_dir, "supervisor");
    if (mkdir(sup, 0755) < 0 && errno != EEXIST)
        return -errno;
    char pid[32];
    snprintf(pid, sizeof(pid), "%d", (int)getpid());
    int r = write_file(sup, "cgroup.procs", pid);
    if (r < 0)
        return r;
    log_info("cgroup: moved the daemon to %s (no-internal-processes rule)", sup);
    return 0;
}

static unsigned v1_ctls(const struct cgroup_system *cs) {
    unsigned mask = 0;
    for (size_t i = 0; i < cs->n_hier; i++)
        if (!cs->hier[i].v2)
            mask |= cs->hier[i].ctls;
    return mask;
}

/* Enables one controller for <own>/<group>/<qube>: both levels' subtree_control. */
static int v2_enable(struct hierarchy *h, int c) {
    char value[32];
    snprintf(value, sizeof(value), "+%s", ctl_names[c]);
    int r = write_file(h->own_dir, "cgroup.subtree_control", value);
    if (r >= 0)
        r = write_file(h->group_dir, "cgroup.subtree_control", value);
    return r;
}

/* Turns on what cgroup2 offers of memory/pids/cpu that no v1 tree already has. A missing
 * controller is not fatal: qubes run without that limit, and the log says so. */
static void v2_enable_controllers(struct cgroup_system *cs, struct hierarchy *h) {
    unsigned wanted = V2_WANTED & ~v1_ctls(cs);
    char avail_text[512] = "";
    if (read_file(h->own_dir, "cgroup.controllers", avail_text, sizeof(avail_text)) < 0)
        avail_text[0] = '\0';
    avail_text[strcspn(avail_text, "\n")] = '\0';
    for (char *p = avail_text; *p; p++)
        if (*p == ' ')
            *p = ',';
    unsigned avail = parse_ctl_list(avail_text);
    for (int c = 0; c < N_CTL; c++) {
        if (!(wanted & CTL_BIT(c)))
            continue;
        int r = (avail & CTL_BIT(c)) ? v2_enable(h, c) : -ENOENT;
        if (r < 0)
            log_warning("cgroup: %s controller %s in %s: qubes run without %s limits", ctl_names[c],
                        r == -ENOENT ? "not offered" : strerror(-r), h->own_dir, ctl_names[c]);
        else
            h->ctls |= CTL_BIT(c);
    }
}

static int make_group_dir(struct cgroup_system *cs, struct hierarchy *h) {
    h->group_dir = path_join(h->own_dir, cs->group);
    if (mkdir(h->group_dir, 0755) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

static int setup_v2(struct cgroup_system *cs, struct hierarchy *h) {
    if (is_pure_v2(cs)) {
        int r = v2_move_to_supervisor(h);
        if (r < 0)
            log_warning("cgroup: cannot move the daemon below %s: %s", h->own_dir, strerror(-r));
    }
    int r = make_group_dir(cs, h);
    if (r < 0)
        return r;
    v2_enable_controllers(cs, h);
    /* Core files of every non-root cgroup2 directory; old kernels lack some. */
    cs->v2_freeze = file_exists(h->group_dir, "cgroup.freeze");
    cs->v2_kill = file_exists(h->group_dir, "cgroup.kill");
    cs->v2_cpustat = file_exists(h->group_dir, "cpu.stat");
    return 0;
}

/* Which tree does each job; v1 trees left with no job are dropped (no directory there). */
static void assign_roles(struct cgroup_system *cs) {
    unsigned needed = V2_WANTED | CTL_BIT(CTL_DEVICES) |
                      (cs->v2_cpustat ? 0 : CTL_BIT(CTL_CPUACCT)) |
                      (cs->v2_freeze ? 0 : CTL_BIT(CTL_FREEZER));
    size_t w = 0;
    for (size_t i = 0; i < cs->n_hier; i++) {
        struct hierarchy *h = &cs->hier[i];
        bool useful = h->v2 ? (h->ctls || cs->v2_freeze || cs->v2_kill || cs->v2_cpustat)
                            : (h->ctls & needed) != 0;
        if (useful)
            cs->hier[w++] = *h;
        else
            hierarchy_clear(h);
    }
    cs->n_hier = w;
    cs->v2 = -1;
    for (int c = 0; c < N_CTL; c++)
        cs->by_ctl[c] = -1;
    for (size_t i = 0; i < cs->n_hier; i++) {
        if (cs->hier[i].v2)
            cs->v2 = (int)i;
        for (int c = 0; c < N_CTL; c++)
            if ((cs->hier[i].ctls & CTL_BIT(c) & needed) && cs->by_ctl[c] < 0)
                cs->by_ctl[c] = (int)i;
    }
}

static void describe(struct cgroup_system *cs) {
    _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
    strbuf_puts(&sb, is_pure_v2(cs) ? "cgroup2" : cs->v2 >= 0 ? "hybrid" : "cgroup v1");
    for (size_t i = 0; i < cs->n_hier; i++) {
        const struct hierarchy *h = &cs->hier[i];
        _cleanup_strbuf_ struct strbuf jobs = STRBUF_INIT;
        for (int c = 0; c < N_CTL; c++)
            if (cs->by_ctl[c] == (int)i)
                strbuf_printf(&jobs, " %s", ctl_names[c]);
        if (h->v2)
            strbuf_printf(&jobs, "%s%s%s", cs->v2_freeze ? " freeze" : "",
                          cs->v2_kill ? " kill" : "", cs->v2_cpustat ? " cpu.stat" : "");
        strbuf_printf(&sb, "%s %s (%s) at %s", i ? ";" : ":", h->v2 ? "cgroup2" : "v1",
                      jobs.len ? strbuf_str(&jobs) + 1 : "", h->group_dir);
    }
    if (cs->n_hier == 0)
        strbuf_puts(&sb, ": none usable");
    cs->description = TAKE_PTR(sb.data);
}

/* cgroup2 first: what it offers decides which v1 trees are needed at all. */
static int setup_hierarchies(struct cgroup_system *cs) {
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < cs->n_hier; i++) {
            struct hierarchy *h = &cs->hier[i];
            if (h->v2 != (pass == 0))
                continue;
            int r = h->v2 ? setup_v2(cs, h) : make_group_dir(cs, h);
            if (r < 0) {
                log_error("cgroup: cannot create %s/%s: %s", h->own_dir, cs->group, strerror(-r));
                return r;
            }
        }
        if (pass == 0)
            assign_roles(cs);
    }
    describe(cs);
    return 0;
}

static bool valid_dir_name(const char *name) {
    return name && *name && !strchr(name, '/') && !streq(name, ".") && !streq(name, "..") &&
           strlen(name) < 256;
}

struct cgroup_system *cgroup_system_open_from(const char *group, const char *mountinfo,
                                              const char *self_cgroup) {
    if (!valid_dir_name(group)) {
        errno = EINVAL;
        return NULL;
    }
    struct cgroup_system *cs = xcalloc(1, sizeof(*cs));
    cs->group = xstrdup(group);
    cs->v2 = -1;
    int r = parse_lines(cs, mountinfo, parse_mountinfo_line);
    if (r >= 0)
        r = parse_lines(cs, self_cgroup, parse_self_line);
    if (r >= 0) {
        resolve_own_dirs(cs);
        r = cs->n_hier ? setup_hierarchies(cs) : -ENOMEDIUM;
    }
    if (r < 0) {
        cgroup_system_free(cs);
        errno = -r;
        return NULL;
    }
    return cs;
}

struct cgroup_system *cgroup_system_open(const char *group) {
    return cgroup_system_open_from(group, "/proc/self/mountinfo", "/proc/self/cgroup");
}

void cgroup_system_free(struct cgroup_system *cs) {
    if (!cs)
        return;
    for (size_t i = 0; i < cs->n_hier; i++)
        hierarchy_clear(&cs->hier[i]);
    free(cs->group);
    free(cs->description);
    free(cs);
}

const char *cgroup_system_describe(const struct cgroup_system *cs) {
    return cs->description ? cs->description : "cgroups not set up";
}

/* ---- one qube ---- */

/* Limit minus usage of one cgroup directory; -ENOENT if it has no limit ("max" in v2, a
 * page-rounded LONG_MAX in v1). */
static int dir_memory_headroom(const char *dir, bool v2, uint64_t *out) {
    uint64_t limit, usage;
    if (read_u64(dir, v2 ? "memory.max" : "memory.limit_in_bytes", &limit) < 0 ||
        limit >= (1ULL << 60) ||
        read_u64(dir, v2 ? "memory.current" : "memory.usage_in_bytes", &usage) < 0)
        return -ENOENT;
    *out = limit > usage ? limit - usage : 0;
    return 0;
}

int cgroup_system_memory_headroom(const struct cgroup_system *cs, uint64_t *bytes) {
    if (cs->by_ctl[CTL_MEMORY] < 0)
        return -ENOTSUP;
    const struct hierarchy *h = &cs->hier[cs->by_ctl[CTL_MEMORY]];
    _cleanup_free_ char *dir = xstrdup(h->own_dir);
    size_t mount_len = strlen(h->mount);
    int r = -ENOENT;
    for (;;) { /* the tightest limit on the way up to the mount point */
        uint64_t room;
        if (dir_memory_headroom(dir, h->v2, &room) == 0 && (r < 0 || room < *bytes)) {
            *bytes = room;
            r = 0;
        }
        char *slash = strrchr(dir, '/');
        if (strlen(dir) <= mount_len || !slash)
            return r;
        *slash = '\0';
    }
}

static struct cgroup_qube *qube_new(struct cgroup_system *cs, const char *name) {
    if (!valid_dir_name(name)) {
        errno = EINVAL;
        return NULL;
    }
    struct cgroup_qube *cg = xcalloc(1, sizeof(*cg));
    cg->cs = cs;
    cg->name = xstrdup(name);
    cg->bpf_fd = -1;
    for (size_t i = 0; i < cs->n_hier; i++)
        cg->dir[i] = path_join(cs->hier[i].group_dir, name);
    return cg;
}

void cgroup_qube_free(struct cgroup_qube *cg) {
    if (!cg)
        return;
    for (size_t i = 0; i < MAX_HIER; i++)
        free(cg->dir[i]);
    if (cg->bpf_fd >= 0) /* the program stays attached: the cgroup holds it */
        close(cg->bpf_fd);
    free(cg->granted);
    free(cg->name);
    free(cg);
}

const char *cgroup_qube_dir(const struct cgroup_qube *cg, size_t i) {
    return i < cg->cs->n_hier ? cg->dir[i] : NULL;
}

/* The directory doing a controller's job, NULL if no tree has it. */
static const char *ctl_dir(const struct cgroup_qube *cg, enum ctl c) {
    int i = cg->cs->by_ctl[c];
    return i < 0 ? NULL : cg->dir[i];
}

static const char *v2_dir(const struct cgroup_qube *cg) {
    return cg->cs->v2 < 0 ? NULL : cg->dir[cg->cs->v2];
}

static bool ctl_is_v2(const struct cgroup_qube *cg, enum ctl c) {
    return cg->cs->by_ctl[c] >= 0 && cg->cs->by_ctl[c] == cg->cs->v2;
}

/* v1: memsw must stay >= limit, so the order of the two writes depends on the direction. */
static int v1_set_memory(const char *dir, uint64_t bytes) {
    bool memsw = file_exists(dir, "memory.memsw.limit_in_bytes");
    int r = write_u64(dir, "memory.limit_in_bytes", bytes);
    if (r == -EINVAL && memsw) {
        r = write_u64(dir, "memory.memsw.limit_in_bytes", bytes);
        if (r >= 0)
            r = write_u64(dir, "memory.limit_in_bytes", bytes);
    }
    if (r >= 0 && memsw)
        r = write_u64(dir, "memory.memsw.limit_in_bytes", bytes);
    return r;
}

static int set_memory(struct cgroup_qube *cg, uint64_t bytes) {
    const char *dir = ctl_dir(cg, CTL_MEMORY);
    if (!ctl_is_v2(cg, CTL_MEMORY))
        return v1_set_memory(dir, bytes);
    int r = write_u64(dir, "memory.max", bytes);
    /* No swap for qubes: the limit is what they get, as with a VM's RAM. */
    if (r >= 0 && file_exists(dir, "memory.swap.max"))
        r = write_file(dir, "memory.swap.max", "0");
    return r;
}

static int set_cpu_weight(struct cgroup_qube *cg, unsigned weight) {
    const char *dir = ctl_dir(cg, CTL_CPU);
    if (ctl_is_v2(cg, CTL_CPU))
        return write_u64(dir, "cpu.weight", weight < 1 ? 1 : weight > 10000 ? 10000 : weight);
    /* v1 shares: 1024 is the default as 100 is for weight; the kernel's minimum is 2. */
    uint64_t shares = (uint64_t)weight * 1024 / 100;
    return write_u64(dir, "cpu.shares", shares < 2 ? 2 : shares);
}

int cgroup_qube_set_idle(struct cgroup_qube *cg, bool idle, unsigned weight) {
    const char *dir = ctl_dir(cg, CTL_CPU);
    if (!dir)
        return -ENOTSUP;
    if (file_exists(dir, "cpu.idle"))
        return write_file(dir, "cpu.idle", idle ? "1" : "0");
    return set_cpu_weight(cg, idle ? 1 : weight);
}

/* Nothing but the nodes every qube's /dev has (launch.c: null, zero, full, random, urandom,
 * tty; its own devpts: ptmx and the terminals); a block device given to the qube is
 * allowed on its own (cgroup_qube_device_allow). */
#define RWM (DEVBPF_MKNOD | DEVBPF_READ | DEVBPF_WRITE)
static const struct devbpf_rule QUBE_DEV_NODES[] = {
    {'c', 1, 3, RWM},    {'c', 1, 5, RWM},    {'c', 1, 7, RWM},    {'c', 1, 8, RWM},
    {'c', 1, 9, RWM},    {'c', 5, 0, RWM},    {'c', 5, 2, RWM},    {'c', 136, -1, RWM},
    {'c', 137, -1, RWM}, {'c', 138, -1, RWM}, {'c', 139, -1, RWM}, {'c', 140, -1, RWM},
    {'c', 141, -1, RWM}, {'c', 142, -1, RWM}, {'c', 143, -1, RWM},
};

static int devices_default_deny(const char *dir) {
    int r = write_file(dir, "devices.deny", "a");
    for (size_t i = 0; i < ELEMENTSOF(QUBE_DEV_NODES) && r >= 0; i++) {
        const struct devbpf_rule *d = &QUBE_DEV_NODES[i];
        char rule[64], minor[16] = "*";
        if (d->minor >= 0)
            snprintf(minor, sizeof(minor), "%d", d->minor);
        snprintf(rule, sizeof(rule), "%c %u:%s rwm", d->type, d->major, minor);
        r = write_file(dir, "devices.allow", rule);
    }
    return r;
}

static const char *v1_devices_dir(const struct cgroup_qube *cg) {
    return ctl_is_v2(cg, CTL_DEVICES) ? NULL : ctl_dir(cg, CTL_DEVICES);
}

/* cgroup2: a program for the qube's /dev nodes and what it was granted, in place of the
 * one attached (at once: BPF_F_REPLACE). */
static int bpf_apply(struct cgroup_qube *cg) {
    size_t n = ELEMENTSOF(QUBE_DEV_NODES) + cg->n_granted;
    struct devbpf_rule *rules = xcalloc(n, sizeof(*rules));
    memcpy(rules, QUBE_DEV_NODES, sizeof(QUBE_DEV_NODES));
    if (cg->n_granted) /* none yet: granted is NULL */
        memcpy(rules + ELEMENTSOF(QUBE_DEV_NODES), cg->granted, cg->n_granted * sizeof(*rules));
    int prog = devbpf_load(rules, n);
    free(rules);
    if (prog < 0)
        return prog;
    _cleanup_close_ int dirfd = open(v2_dir(cg), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int r = dirfd < 0 ? -errno : devbpf_attach(dirfd, prog, cg->bpf_fd);
    if (r < 0) {
        close(prog);
        return r;
    }
    if (cg->bpf_fd >= 0)
        close(cg->bpf_fd);
    cg->bpf_fd = prog;
    return 0;
}

bool cgroup_qube_has_device_control(const struct cgroup_qube *cg) {
    return v1_devices_dir(cg) != NULL || cg->bpf_fd >= 0;
}

static struct devbpf_rule *granted_find(struct cgroup_qube *cg, char type, unsigned major,
                                        unsigned minor) {
    for (size_t i = 0; i < cg->n_granted; i++)
        if (cg->granted[i].type == type && cg->granted[i].major == major &&
            cg->granted[i].minor == (int)minor)
            return &cg->granted[i];
    return NULL;
}

/* The grants with one device's changed (access 0: taken away), the program replaced; the
 * grants as they were if the kernel refuses. */
static int bpf_grant(struct cgroup_qube *cg, char type, unsigned major, unsigned minor,
                     unsigned access) {
    struct devbpf_rule *g = granted_find(cg, type, major, minor);
    if (!g && !access)
        return 0;
    struct devbpf_rule *before = xcalloc(cg->n_granted + 1, sizeof(*before));
    size_t n_before = cg->n_granted;
    if (n_before)
        memcpy(before, cg->granted, n_before * sizeof(*before));
    if (!g) {
        cg->granted = xrealloc(cg->granted, (cg->n_granted + 1) * sizeof(*cg->granted));
        g = &cg->granted[cg->n_granted++];
        *g = (struct devbpf_rule){type, major, (int)minor, access};
    } else if (access) {
        g->access = access;
    } else {
        *g = cg->granted[--cg->n_granted];
    }
    int r = bpf_apply(cg);
    if (r < 0) {
        if (n_before)
            memcpy(cg->granted, before, n_before * sizeof(*before));
        cg->n_granted = n_before;
    }
    free(before);
    return r;
}

int cgroup_qube_device_allow(struct cgroup_qube *cg, char type, unsigned major, unsigned minor,
                             bool read_only) {
    const char *dir = v1_devices_dir(cg);
    char rule[64];
    if (!dir)
        return cg->bpf_fd >= 0
                   ? bpf_grant(cg, type, major, minor, DEVBPF_READ | (read_only ? 0 : DEVBPF_WRITE))
                   : -ENOTSUP;
    snprintf(rule, sizeof(rule), "%c %u:%u %s", type, major, minor, read_only ? "r" : "rw");
    return write_file(dir, "devices.allow", rule);
}

int cgroup_qube_device_deny(struct cgroup_qube *cg, char type, unsigned major, unsigned minor) {
    const char *dir = v1_devices_dir(cg);
    char rule[64];
    if (!dir)
        return cg->bpf_fd >= 0 ? bpf_grant(cg, type, major, minor, 0) : -ENOTSUP;
    snprintf(rule, sizeof(rule), "%c %u:%u rwm", type, major, minor);
    return write_file(dir, "devices.deny", rule);
}

int cgroup_qube_devices_reset(struct cgroup_qube *cg) {
    const char *dir = v1_devices_dir(cg);
    if (!dir) {
        if (!v2_dir(cg))
            return -ENOTSUP;
        free(cg->granted);
        cg->granted = NULL;
        cg->n_granted = 0;
        return bpf_apply(cg); /* the earlier daemon's program is detached once it is in */
    }
    /* v1: each block device rule denied on its own; the /dev nodes' rules never go */
    char list[8192], *save = NULL;
    ssize_t n = read_file(dir, "devices.list", list, sizeof(list));
    if (n < 0)
        return (int)n;
    int r = 0;
    for (char *line = strtok_r(list, "\n", &save); line && r >= 0;
         line = strtok_r(NULL, "\n", &save)) {
        char rule[64], devno[32];
        if (line[0] != 'b' || sscanf(line, "b %31s", devno) != 1)
            continue;
        snprintf(rule, sizeof(rule), "b %s rwm", devno);
        r = write_file(dir, "devices.deny", rule);
    }
    return r;
}

/* No v1 device cgroup: the BPF program on cgroup2, if the kernel lets us. Without it the
 * qube runs, but takes no block device (cgroup_qube_has_device_control). */
static void devices_bpf_default(struct cgroup_qube *cg) {
    free(cg->granted);
    cg->granted = NULL;
    cg->n_granted = 0;
    int r = bpf_apply(cg);
    if (r < 0)
        log_warning("cgroup: no BPF device program for %s (%s): it cannot take block devices",
                    cg->name, strerror(-r));
}

/* Zero means "no limit" for each field. A controller the host lacks was logged once at
 * open; the qube runs without that limit. */
static int apply_limits(struct cgroup_qube *cg, const struct cgroup_limits *l) {
    int r = 0;
    if (l->memory_max_bytes && ctl_dir(cg, CTL_MEMORY))
        r = set_memory(cg, l->memory_max_bytes);
    if (r >= 0 && l->pids_max && ctl_dir(cg, CTL_PIDS))
        r = write_u64(ctl_dir(cg, CTL_PIDS), "pids.max", l->pids_max);
    if (r >= 0 && l->cpu_weight && ctl_dir(cg, CTL_CPU))
        r = set_cpu_weight(cg, l->cpu_weight);
    if (r >= 0 && l->cpu_idle && ctl_dir(cg, CTL_CPU))
        r = cgroup_qube_set_idle(cg, true, l->cpu_weight);
    if (r >= 0 && l->devices_own_only && v1_devices_dir(cg))
        r = devices_default_deny(v1_devices_dir(cg));
    else if (r >= 0 && l->devices_own_only && v2_dir(cg))
        devices_bpf_default(cg);
    if (r < 0)
        log_error("cgroup: cannot set limits of %s: %s", cg->name, strerror(-r));
    return r;
}

struct cgroup_qube *cgroup_qube_create(struct cgroup_system *cs, const char *name,
                                       const struct cgroup_limits *limits) {
    struct cgroup_qube *cg = qube_new(cs, name);
    if (!cg)
        return NULL;
    bool created[MAX_HIER] = {false};
    int r = 0;
    for (size_t i = 0; i < cs->n_hier && r >= 0; i++) {
        if (mkdir(cg->dir[i], 0755) == 0)
            created[i] = true;
        else if (errno != EEXIST) /* EEXIST: adopting a qube that outlived a daemon */
            r = -errno;
    }
    if (r >= 0 && limits)
        r = apply_limits(cg, limits);
    if (r < 0) {
        for (size_t i = 0; i < cs->n_hier; i++) /* leave no trace of a failed start */
            if (created[i])
                rmdir(cg->dir[i]);
        cgroup_qube_free(cg);
        errno = -r;
        return NULL;
    }
    return cg;
}

/* For adoption and crash cleanup: a qube found in any tree is returned, so that a start
 * that died halfway through the mkdirs can still be destroyed. */
struct cgroup_qube *cgroup_qube_open(struct cgroup_system *cs, const char *name) {
    struct cgroup_qube *cg = qube_new(cs, name);
    if (!cg)
        return NULL;
    for (size_t i = 0; i < cs->n_hier; i++)
        if (access(cg->dir[i], F_OK) == 0)
            return cg;
    cgroup_qube_free(cg);
    errno = ENOENT;
    return NULL;
}

int cgroup_qube_attach(struct cgroup_qube *cg, pid_t pid) {
    char value[32];
    snprintf(value, sizeof(value), "%d", (int)pid);
    for (size_t i = 0; i < cg->cs->n_hier; i++) {
        int r = write_file(cg->dir[i], "cgroup.procs", value);
        if (r < 0)
            return r;
    }
    return 0;
}

/* ---- freeze, thaw, kill ---- */

/* Waits for "key want" in cgroup.events ("frozen 1", "populated 0"): the file wakes
 * poll() with POLLPRI on a change, and a read re-arms it, so reading before each poll
 * cannot miss the transition. But the kernel sends at most one notification per file per
 * 10 ms (cgroup_file_notify), so a freeze soon after a thaw would wait ~10 ms for its
 * wake-up: the timeout grows from 20 us, re-reading the file in between. */
static int v2_wait_event(const char *dir, const char *key, uint64_t want, int64_t deadline) {
    _cleanup_free_ char *p = path_join(dir, "cgroup.events");
    _cleanup_close_ int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    for (long wait_ns = 20000;;) {
        char buf[256];
        uint64_t v = 0;
        ssize_t n = read_fd_all(fd, buf, sizeof(buf));
        if (n < 0)
            return (int)n;
        if (keyed_value(buf, key, &v) >= 0 && v == want)
            return 0;
        if (mono_ns() > deadline)
            return -ETIMEDOUT;
        struct pollfd pfd = {.fd = fd, .events = POLLPRI};
        struct timespec ts = {0, wait_ns};
        if (ppoll(&pfd, 1, &ts, NULL) < 0 && errno != EINTR)
            return -errno;
        wait_ns = wait_ns * 2 > 100000000 ? 100000000 : wait_ns * 2;
    }
}

/* v1 has no notification: the state moves from FREEZING to FROZEN when a read finds every
 * task frozen. Writing FROZEN again retries tasks that were busy in the kernel. */
static int v1_wait_frozen(const char *dir, int64_t deadline) {
    long sleep_ns = 20000;
    for (unsigned round = 1;; round++) {
        char buf[32];
        ssize_t n = read_file(dir, "freezer.state", buf, sizeof(buf));
        if (n < 0)
            return (int)n;
        if (strncmp(buf, "FROZEN", 6) == 0)
            return 0;
        if (mono_ns() > deadline)
            return -ETIMEDOUT;
        backoff_sleep(&sleep_ns);
        if (round % 8 == 0)
            write_file(dir, "freezer.state", "FROZEN");
    }
}

int cgroup_qube_freeze(struct cgroup_qube *cg) {
    int64_t deadline = mono_ns() + WAIT_TIMEOUT_NS;
    bool v2 = cg->cs->v2_freeze;
    const char *dir = v2 ? v2_dir(cg) : ctl_dir(cg, CTL_FREEZER);
    if (!dir)
        return -ENOTSUP;
    int r = write_file(dir, v2 ? "cgroup.freeze" : "freezer.state", v2 ? "1" : "FROZEN");
    if (r >= 0)
        r = v2 ? v2_wait_event(dir, "frozen", 1, deadline) : v1_wait_frozen(dir, deadline);
    if (r < 0) {
        log_error("cgroup: cannot freeze %s: %s", cg->name, strerror(-r));
        cgroup_qube_thaw(cg); /* never leave a qube half frozen */
    }
    return r;
}

int cgroup_qube_thaw(struct cgroup_qube *cg) {
    if (cg->cs->v2_freeze)
        return write_file(v2_dir(cg), "cgroup.freeze", "0");
    const char *dir = ctl_dir(cg, CTL_FREEZER);
    return dir ? write_file(dir, "freezer.state", "THAWED") : -ENOTSUP;
}

bool cgroup_qube_is_frozen(struct cgroup_qube *cg) {
    if (cg->cs->v2_freeze) {
        uint64_t frozen = 0;
        return read_keyed(v2_dir(cg), "cgroup.events", "frozen", &frozen) >= 0 && frozen == 1;
    }
    const char *dir = ctl_dir(cg, CTL_FREEZER);
    char buf[32];
    return dir && read_file(dir, "freezer.state", buf, sizeof(buf)) >= 0 &&
           strncmp(buf, "FROZEN", 6) == 0;
}

/* Sends SIGKILL to every pid listed in dir; returns how many were listed. */
static int kill_listed(const char *dir) {
    _cleanup_free_ char *p = path_join(dir, "cgroup.procs");
    _cleanup_(fclosep) FILE *f = fopen(p, "re");
    if (!f)
        return errno == ENOENT ? 0 : -errno;
    int n = 0, pid;
    while (fscanf(f, "%d", &pid) == 1) {
        n++;
        if (pid > 0)
            kill(pid, SIGKILL);
    }
    return n;
}

bool cgroup_qube_is_empty(struct cgroup_qube *cg) {
    for (size_t i = 0; i < cg->cs->n_hier; i++) {
        char buf[16];
        ssize_t n = read_file(cg->dir[i], "cgroup.procs", buf, sizeof(buf));
        if (n > 0)
            return false;
    }
    return true;
}

/* Exited tasks leave cgroup.procs at once, zombies included, so this does not depend on
 * anyone reaping them. cgroup2 notifies; v1 is polled. */
static int wait_empty(struct cgroup_qube *cg, int64_t deadline) {
    const char *v2 = v2_dir(cg);
    if (v2 && v2_wait_event(v2, "populated", 0, deadline) == -ETIMEDOUT)
        return -ETIMEDOUT;
    long sleep_ns = 10000;
    while (!cgroup_qube_is_empty(cg)) {
        if (mono_ns() > deadline)
            return -ETIMEDOUT;
        backoff_sleep(&sleep_ns);
    }
    return 0;
}

/* Kill first, then thaw. A task frozen by the v1 freezer keeps a pending SIGKILL and stays
 * (in D state, still in cgroup.procs) until thawed; cgroup2 lets fatal signals through a
 * freeze (both measured on kernel 6.18). Thawing only after the signal is queued means no
 * qube code runs in between: the kill is acted on before returning to user space. */
int cgroup_qube_kill(struct cgroup_qube *cg) {
    int64_t deadline = mono_ns() + WAIT_TIMEOUT_NS;
    int r = 0;
    if (cg->cs->v2_kill) {
        r = write_file(v2_dir(cg), "cgroup.kill", "1"); /* the kernel also catches forks */
    } else {
        /* Without cgroup.kill, repeat until a pass finds nobody: a task that forked while
         * we read the list shows up in the next pass. */
        for (int rounds = 0; r >= 0 && rounds < 1000; rounds++) {
            int found = 0;
            for (size_t i = 0; i < cg->cs->n_hier && r >= 0; i++) {
                r = kill_listed(cg->dir[i]);
                found += r > 0 ? r : 0;
            }
            if (!found)
                break;
            if (cg->cs->v2_freeze || ctl_dir(cg, CTL_FREEZER))
                cgroup_qube_thaw(cg);
            if (wait_empty(cg, mono_ns() + 1000000) >= 0)
                break;
        }
    }
    if (cg->cs->v2_freeze || ctl_dir(cg, CTL_FREEZER))
        cgroup_qube_thaw(cg);
    if (r >= 0)
        r = wait_empty(cg, deadline);
    if (r < 0)
        log_error("cgroup: cannot kill %s: %s", cg->name, strerror(-r));
    return r;
}

/* ---- stats and memory ---- */

uint64_t cgroup_qube_memory_bytes(struct cgroup_qube *cg) {
    const char *dir = ctl_dir(cg, CTL_MEMORY);
    uint64_t v = 0;
    if (dir)
        read_u64(dir, ctl_is_v2(cg, CTL_MEMORY) ? "memory.current" : "memory.usage_in_bytes", &v);
    return v;
}

/* cgroup2's cpu.stat works without the cpu controller, so hybrid hosts use it too. */
uint64_t cgroup_qube_cpu_ns(struct cgroup_qube *cg) {
    uint64_t v = 0;
    if (cg->cs->v2_cpustat) {
        if (read_keyed(v2_dir(cg), "cpu.stat", "usage_usec", &v) >= 0)
            return v * 1000;
        return 0;
    }
    const char *dir = ctl_dir(cg, CTL_CPUACCT);
    if (dir)
        read_u64(dir, "cpuacct.usage", &v);
    return v;
}

/* -EAGAIN from the kernel means it reclaimed less than asked; the caller may retry. */
/* cgroup v1 has no memory.reclaim: a limit below the usage makes the kernel reclaim to
 * it (in the writer's context), and refuses it with EBUSY when a pass frees nothing (pages
 * under writeback, locked). The qube's file pages are what can go without swap: the limit
 * is squeezed to the usage without them (then without half, a quarter of them), for a few
 * rounds while that helps, and put back at once. */
static int v1_squeeze_once(const char *dir, uint64_t limit) {
    uint64_t usage, active = 0, inactive = 0;
    if (read_u64(dir, "memory.usage_in_bytes", &usage) < 0 ||
        read_keyed(dir, "memory.stat", "total_active_file", &active) < 0 ||
        read_keyed(dir, "memory.stat", "total_inactive_file", &inactive) < 0)
        return -ENOTSUP;
    uint64_t file = active + inactive > usage ? usage : active + inactive;
    if (file < (1ULL << 20))
        return -EALREADY; /* nothing worth a round left */
    for (unsigned shift = 0; shift < 3; shift++) {
        uint64_t target = usage - (file >> shift) + (1ULL << 20);
        if (target < limit && write_u64(dir, "memory.limit_in_bytes", target) == 0)
            return 0;
    }
    return -EAGAIN;
}

static int v1_squeeze(const char *dir) {
    uint64_t limit;
    if (read_u64(dir, "memory.limit_in_bytes", &limit) < 0)
        return -ENOTSUP;
    int r = -EAGAIN, round;
    bool any = false;
    for (int i = 0; i < 4 && (round = v1_squeeze_once(dir, limit)) != -EALREADY; i++) {
        if (round == -ENOTSUP) {
            r = round;
            break;
        }
        any |= round == 0;
    }
    int w = write_u64(dir, "memory.limit_in_bytes", limit);
    return w < 0 ? w : any ? 0 : r;
}

int cgroup_qube_reclaim(struct cgroup_qube *cg, uint64_t bytes) {
    const char *dir = ctl_dir(cg, CTL_MEMORY);
    if (!dir)
        return -ENOTSUP;
    if (!ctl_is_v2(cg, CTL_MEMORY))
        return v1_squeeze(dir);
    if (!file_exists(dir, "memory.reclaim"))
        return -ENOTSUP;
    return write_u64(dir, "memory.reclaim", bytes);
}

/* ---- removal and listing ---- */

/* rmdir fails with EBUSY for a moment after the last task exited (it is still being torn
 * down) and while child cgroups exist: a qube's own init may have made some. */
static int rmdir_tree(const char *path, int64_t deadline) {
    _cleanup_(closedirp) DIR *d = opendir(path);
    if (!d)
        return errno == ENOENT ? 0 : -errno;
    for (struct dirent *de; (de = readdir(d));) {
        if (de->d_type != DT_DIR || streq(de->d_name, ".") || streq(de->d_name, ".."))
            continue;
        _cleanup_free_ char *child = path_join(path, de->d_name);
        int r = rmdir_tree(child, deadline);
        if (r < 0)
            return r;
    }
    long sleep_ns = 10000;
    while (rmdir(path) < 0) {
        if (errno == ENOENT)
            return 0;
        if (errno != EBUSY || mono_ns() > deadline)
            return -errno;
        backoff_sleep(&sleep_ns);
    }
    return 0;
}

int cgroup_qube_destroy(struct cgroup_qube *cg) {
    int64_t deadline = mono_ns() + 2000000000LL;
    int ret = 0;
    for (size_t i = 0; i < cg->cs->n_hier; i++) {
        int r = rmdir_tree(cg->dir[i], deadline);
        if (r < 0) {
            log_error("cgroup: cannot remove %s: %s", cg->dir[i], strerror(-r));
            if (ret == 0)
                ret = r;
        }
    }
    cgroup_qube_free(cg);
    return ret;
}

int cgroup_system_remove_group(struct cgroup_system *cs) {
    int ret = 0;
    for (size_t i = 0; i < cs->n_hier; i++)
        if (rmdir(cs->hier[i].group_dir) < 0 && errno != ENOENT && ret == 0)
            ret = -errno;
    return ret;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void collect_names(const char *dir, char ***names, size_t *n, size_t *cap) {
    _cleanup_(closedirp) DIR *d = opendir(dir);
    if (!d)
        return;
    for (struct dirent *de; (de = readdir(d));) {
        if (de->d_type != DT_DIR || streq(de->d_name, ".") || streq(de->d_name, ".."))
            continue;
        if (*n + 2 > *cap) {
            *cap = *cap ? *cap * 2 : 16;
            *names = xrealloc(*names, *cap * sizeof(char *));
        }
        (*names)[(*n)++] = xstrdup(de->d_name);
    }
}

char **cgroup_list_qubes(struct cgroup_system *cs) {
    char **names = NULL;
    size_t n = 0, cap = 0;
    for (size_t i = 0; i < cs->n_hier; i++)
        collect_names(cs->hier[i].group_dir, &names, &n, &cap);
    if (!names)
        return xcalloc(1, sizeof(char *));
    qsort(names, n, sizeof(char *), cmp_str);
    size_t w = 0; /* the union: one name per qube however many trees hold it */
    for (size_t i = 0; i < n; i++) {
        if (w > 0 && streq(names[w - 1], names[i]))
            free(names[i]);
        else
            names[w++] = names[i];
    }
    names[w] = NULL;
    return names;
}

void cgroup_names_free(char **names) {
    if (!names)
        return;
    for (char **p = names; *p; p++)
        free(*p);
    free(names);
}

void cgroup_remove_leftovers(struct cgroup_system *cs, bool (*in_use)(void *ctx, const char *name),
                             void *ctx) {
    char **names = cgroup_list_qubes(cs);
    for (char **n = names; n && *n; n++) {
        if (in_use(ctx, *n))
            continue;
        struct cgroup_qube *cg = cgroup_qube_open(cs, *n);
        if (!cg)
            continue;
        log_info("%s: removing a leftover cgroup", *n);
        cgroup_qube_kill(cg);
        cgroup_qube_destroy(cg);
    }
    cgroup_names_free(names);
}
