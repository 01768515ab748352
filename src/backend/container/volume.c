/* Layered, versioned directory volumes (see volume.h for the layout).
 *
 * Crash safety rests on one rule: `current` is the only thing that says which layers
 * form the volume, and it is replaced atomically after everything it names is on disk.
 * Any other leftover (an unreferenced layer, a temp file, a half-made squash) is
 * garbage that readers ignore and volume_gc() removes.
 *
 * Other files in a volume directory:
 *   next-id          the next layer id; ids are never reused, so a path names one
 *                    content forever (running qubes hold lowerdir paths)
 *   upper-<id>.base  the stack a writer's upper was put over; commit stacks the upper on
 *                    exactly that, and gc keeps its layers while the writer runs
 *   staging/         an import in progress
 */
#include "volume.h"
#include "volume_limit.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <sched.h>
#include <search.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "copytree.h"
#include "log.h"
#include "macro.h"
#include "strbuf.h"

/* A revision as stored: layer ids, top first. */
struct ids {
    uint64_t revision;
    size_t n;
    uint64_t *v;
};

static int keep_revision(const char *voldir, const struct ids *old);

static void ids_free(struct ids *s) {
    free(s->v);
    *s = (struct ids){0};
}

static void ids_push(struct ids *s, uint64_t id) {
    s->v = xrealloc(s->v, (s->n + 1) * sizeof(uint64_t));
    s->v[s->n++] = id;
}

static bool ids_contains(const struct ids *s, uint64_t id) {
    for (size_t i = 0; i < s->n; i++)
        if (s->v[i] == id)
            return true;
    return false;
}

static void closedirp(DIR **d) {
    if (*d)
        closedir(*d);
}

_printf_(1, 2) static char *xasprintf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0)
        abort(); /* same policy as strbuf: no memory, nothing sensible to do */
    return s;
}

/* uuid and name become path components: refuse anything that could climb out. */
static bool component_ok(const char *s) {
    return s && *s && !strchr(s, '/') && !streq(s, ".") && !streq(s, "..");
}

static int vol_path(const char *state_dir, const char *uuid, const char *name, char **out) {
    if (!state_dir || !*state_dir || !component_ok(uuid) || (name && !component_ok(name)))
        return -EINVAL;
    *out = name ? xasprintf("%s/volumes/%s/%s", state_dir, uuid, name)
                : xasprintf("%s/volumes/%s", state_dir, uuid);
    return 0;
}

static int mkdir_p(const char *path, mode_t mode) {
    _cleanup_free_ char *p = xstrdup(path);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, mode) < 0 && errno != EEXIST)
            return -errno;
        *s = '/';
    }
    if (mkdir(p, mode) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

static __thread int rm_errno;

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    if (remove(path) < 0 && errno != ENOENT) {
        rm_errno = errno;
        log_warning("volume: cannot remove %s: %s", path, strerror(rm_errno));
        return -1;
    }
    return 0;
}

/* rm -rf that never leaves the file system: a mount below `path` makes it fail
 * (EBUSY/ENOTEMPTY) instead of emptying whatever is mounted there. Root removes the
 * mode-000 "work" dir that overlayfs leaves in a work dir like anything else. */
static int rm_rf(const char *path) {
    struct stat st;
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : -errno;
    rm_errno = EIO;
    if (nftw(path, rm_entry, 32, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) != 0)
        return -rm_errno;
    return 0;
}

static int write_all(int fd, const char *p, size_t len) {
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* dir/name replaced atomically: temp file, rename; when durable, with fsync of the file
 * before and of the directory after. */
static int write_atomic(const char *dir, const char *name, const char *content, bool durable) {
    _cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC, true);
    if (dfd < 0)
        return -errno;
    _cleanup_free_ char *tmp = xasprintf("%s.tmp", name);
    _cleanup_close_ int fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    int r = write_all(fd, content, strlen(content));
    if (r == 0 && durable && fsync(fd) < 0)
        r = -errno;
    if (r == 0 && renameat(dfd, tmp, dfd, name) < 0)
        r = -errno;
    if (r < 0) {
        unlinkat(dfd, tmp, 0);
        return r;
    }
    return durable && fsync(dfd) < 0 ? -errno : 0;
}

static int read_small_file(const char *path, char **out) {
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
    char buf[4096];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            break;
        strbuf_append(&sb, buf, (size_t)n);
        if (sb.len > 1 << 20)
            return -EFBIG;
    }
    strbuf_str(&sb);
    *out = TAKE_PTR(sb.data);
    return 0;
}

/* "revision <n>\nlayers <id> <id>...\n" */
static int ids_parse(const char *text, struct ids *out) {
    char *end;
    if (strncmp(text, "revision ", 9) != 0)
        return -EBADMSG;
    out->revision = strtoull(text + 9, &end, 10);
    if (end == text + 9 || *end != '\n' || strncmp(end + 1, "layers", 6) != 0)
        return -EBADMSG;
    const char *p = end + 7;
    while (*p == ' ') {
        p++;
        uint64_t id = strtoull(p, &end, 10);
        if (end == p || id == 0)
            return -EBADMSG;
        ids_push(out, id);
        p = end;
    }
    return streq(p, "\n") ? 0 : -EBADMSG;
}

/* A missing file reads as revision 0 with no layers (a volume never written). */
static int ids_read(const char *voldir, const char *file, struct ids *out) {
    _cleanup_free_ char *path = xasprintf("%s/%s", voldir, file);
    _cleanup_free_ char *text = NULL;
    *out = (struct ids){0};
    int r = read_small_file(path, &text);
    if (r == -ENOENT)
        return 0;
    if (r == 0)
        r = ids_parse(text, out);
    if (r < 0) {
        log_error("volume: %s: %s", path, strerror(-r));
        ids_free(out);
    }
    return r;
}

static char *ids_format(const struct ids *s) {
    struct strbuf sb = STRBUF_INIT;
    strbuf_printf(&sb, "revision %" PRIu64 "\nlayers", s->revision);
    for (size_t i = 0; i < s->n; i++)
        strbuf_printf(&sb, " %" PRIu64, s->v[i]);
    strbuf_putc(&sb, '\n');
    strbuf_str(&sb);
    return sb.data;
}

/* Makes s the current revision. Layer contents were written without fsync (that would
 * cost a sync per file); one syncfs makes them durable before anything refers to them. */
static int ids_commit(const char *voldir, const struct ids *s) {
    _cleanup_close_ int dfd = open(voldir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return -errno;
    if (syncfs(dfd) < 0)
        return -errno;
    _cleanup_free_ char *text = ids_format(s);
    return write_atomic(voldir, "current", text, true);
}

/* "<prefix><digits>[<suffix>]" -> the number, or 0 if the name is not of that form. */
static uint64_t parse_id(const char *name, const char *prefix, const char *suffix) {
    size_t pl = strlen(prefix);
    if (strncmp(name, prefix, pl) != 0 || name[pl] < '1' || name[pl] > '9')
        return 0;
    char *end;
    uint64_t id = strtoull(name + pl, &end, 10);
    return streq(end, suffix) ? id : 0;
}

static uint64_t max_id_in(const char *dir, const char *prefix) {
    _cleanup_(closedirp) DIR *d = opendir(dir);
    uint64_t max = 0;
    struct dirent *de;
    while (d && (de = readdir(d))) {
        uint64_t id = parse_id(de->d_name, prefix, "");
        if (!id)
            id = parse_id(de->d_name, prefix, ".tmp");
        if (id > max)
            max = id;
    }
    return max;
}

/* Overwritten in place, fixed width, never truncated nor renamed over: ext4 flushes a
 * file replaced either way (auto_da_alloc), and that flush cost a millisecond per start.
 * Nothing depends on it surviving a crash: the directories are checked too. */
static int write_next_id(const char *path, uint64_t next) {
    char buf[32];
    int len = snprintf(buf, sizeof(buf), "%020" PRIu64 "\n", next);
    _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    ssize_t n = pwrite(fd, buf, (size_t)len, 0);
    return n == len ? 0 : n < 0 ? -errno : -EIO;
}

/* A new layer id from next-id. The directories are checked too, so that a lost
 * next-id cannot make a path that running qubes use name other content. */
static int alloc_id(const char *voldir, uint64_t *out) {
    _cleanup_free_ char *path = xasprintf("%s/next-id", voldir);
    _cleanup_free_ char *layers = xasprintf("%s/layers", voldir);
    _cleanup_free_ char *text = NULL;
    uint64_t next = 1;
    int r = read_small_file(path, &text);
    if (r < 0 && r != -ENOENT)
        return r;
    if (r == 0)
        next = strtoull(text, NULL, 10);
    static const char *const prefixes[] = {"upper-", "work-", "squash-", "seed-"};
    uint64_t seen = max_id_in(layers, "");
    for (size_t i = 0; i < ELEMENTSOF(prefixes); i++) {
        uint64_t m = max_id_in(voldir, prefixes[i]);
        seen = m > seen ? m : seen;
    }
    if (next <= seen)
        next = seen + 1;
    r = write_next_id(path, next + 1);
    if (r < 0)
        return r;
    *out = next;
    return 0;
}

static void ids_to_stack(const char *voldir, const struct ids *s, struct volume_stack *out) {
    out->revision = s->revision;
    out->n_layers = s->n;
    out->layers = xcalloc(s->n + 1, sizeof(char *));
    for (size_t i = 0; i < s->n; i++)
        out->layers[i] = xasprintf("%s/layers/%" PRIu64, voldir, s->v[i]);
}

void volume_stack_free(struct volume_stack *s) {
    if (!s)
        return;
    for (size_t i = 0; i < s->n_layers; i++)
        free(s->layers[i]);
    free(s->layers);
    *s = (struct volume_stack){0};
}

int volume_current(const char *state_dir, const char *uuid, const char *name,
                   struct volume_stack *out) {
    _cleanup_free_ char *voldir = NULL;
    _cleanup_(ids_free) struct ids cur = {0};
    *out = (struct volume_stack){0};
    int r = vol_path(state_dir, uuid, name, &voldir);
    if (r < 0 || (r = ids_read(voldir, "current", &cur)) < 0)
        return r;
    ids_to_stack(voldir, &cur, out);
    return 0;
}

/* ---- writers ---- */

static int make_upper(const char *upper, const char *work, uid_t owner) {
    /* the merged root takes its owner and mode from the upper's root */
    if (mkdir(upper, 0755) < 0 || chown(upper, owner, owner) < 0 || chmod(upper, 0755) < 0 ||
        mkdir(work, 0700) < 0)
        return -errno;
    return 0;
}

/* A volume with a size gets a writer on a filesystem of the room left (volume_limit.h);
 * upper-<id> and work-<id> stay, empty, for the commit to copy into. */
static int limit_writer(const char *state_dir, const char *uuid, const char *name,
                        const char *voldir, uint64_t id, uid_t owner, char **upper, char **work) {
    struct volume_config cfg = {0};
    int r = volume_get_config(state_dir, uuid, name, &cfg);
    if (r < 0 || !cfg.size)
        return r < 0 ? r : 0;
    uint64_t used = volume_usage_bytes(state_dir, uuid, name);
    uint64_t room = cfg.size > used ? cfg.size - used : 0;
    return volume_limit_begin(voldir, id,
                              room > VOLUME_LIMIT_MIN_ROOM ? room : VOLUME_LIMIT_MIN_ROOM, owner,
                              upper, work);
}

int volume_begin_write(const char *state_dir, const char *uuid, const char *name, uid_t owner,
                       char **upper, char **work) {
    _cleanup_free_ char *voldir = NULL, *layers = NULL;
    _cleanup_(ids_free) struct ids base = {0};
    uint64_t id;
    int r = vol_path(state_dir, uuid, name, &voldir);
    if (r < 0)
        return r;
    layers = xasprintf("%s/layers", voldir);
    if ((r = mkdir_p(layers, 0700)) < 0 || (r = ids_read(voldir, "current", &base)) < 0 ||
        (r = alloc_id(voldir, &id)) < 0)
        return r;
    _cleanup_free_ char *base_file = xasprintf("upper-%" PRIu64 ".base", id);
    _cleanup_free_ char *text = ids_format(&base);
    _cleanup_free_ char *u = xasprintf("%s/upper-%" PRIu64, voldir, id);
    _cleanup_free_ char *w = xasprintf("%s/work-%" PRIu64, voldir, id);
    /* as durable as the upper it describes, whose files are not synced either: only a
     * power loss could lose it, and then the writes it would commit are gone too */
    r = write_atomic(voldir, base_file, text, false);
    if (r == 0)
        r = make_upper(u, w, owner);
    char *lu = NULL, *lw = NULL;
    if (r == 0)
        r = limit_writer(state_dir, uuid, name, voldir, id, owner, &lu, &lw);
    if (r < 0) {
        rm_rf(u);
        rm_rf(w);
        _cleanup_free_ char *p = xasprintf("%s/%s", voldir, base_file);
        unlink(p);
        return r;
    }
    *upper = lu ? lu : TAKE_PTR(u);
    *work = lw ? lw : TAKE_PTR(w);
    return 0;
}

/* The id of a writer's upper; refuses paths that are not this volume's upper/work pair,
 * since what follows renames and removes them. */
static int writer_id(const char *voldir, const char *upper, const char *work, uint64_t *id) {
    size_t vl = strlen(voldir);
    if (!upper || !work || strncmp(upper, voldir, vl) != 0 || upper[vl] != '/')
        return -EINVAL;
    *id = parse_id(upper + vl + 1, "upper-", "");
    if (!*id)
        *id = parse_id(upper + vl + 1, "upper-", ".fs/u");
    if (!*id)
        return -EINVAL;
    _cleanup_free_ char *w = xasprintf("%s/work-%" PRIu64, voldir, *id);
    return streq(w, work) || volume_limit_paths(voldir, *id, upper, work) ? 0 : -EINVAL;
}

/* Any entry is a change: overlayfs records deletions as whiteouts (0/0 char devices) and
 * replaced directories as opaque directories, both of which are entries too. */
static int dir_has_entries(const char *dir) {
    _cleanup_(closedirp) DIR *d = opendir(dir);
    if (!d)
        return -errno;
    struct dirent *de;
    while ((de = readdir(d)))
        if (!streq(de->d_name, ".") && !streq(de->d_name, ".."))
            return 1;
    return 0;
}

static void writer_cleanup(const char *voldir, uint64_t id, const char *upper, const char *work) {
    _cleanup_free_ char *base_file = xasprintf("%s/upper-%" PRIu64 ".base", voldir, id);
    _cleanup_free_ char *u = xasprintf("%s/upper-%" PRIu64, voldir, id);
    _cleanup_free_ char *w = xasprintf("%s/work-%" PRIu64, voldir, id);
    volume_limit_release(voldir, id); /* a sized writer's filesystem, if any */
    if (upper)
        rm_rf(u);
    rm_rf(w);
    unlink(base_file);
}

int volume_abort_write(const char *state_dir, const char *uuid, const char *name, const char *upper,
                       const char *work) {
    _cleanup_free_ char *voldir = NULL;
    uint64_t id;
    int r = vol_path(state_dir, uuid, name, &voldir);
    if (r < 0 || (r = writer_id(voldir, upper, work, &id)) < 0)
        return r;
    writer_cleanup(voldir, id, upper, work);
    return 0;
}

/* ---- squash: a deep stack becomes one layer holding a copy of its merged view ---- */

/* Runs in a forked child: the overlay lives in a private mount namespace, so it vanishes
 * with the child whatever happens, and no other process ever sees it. Paths are
 * relative to the volume dir to keep the mount options short (they are limited to a
 * page). cp -a keeps owners, modes, times, hard links and xattrs including file
 * capabilities (it sets them after chown); overlayfs already hides its own xattrs and
 * resolves whiteouts in the merged view. */
_Noreturn static void squash_child(const char *voldir, const char *opts, const char *mnt,
                                   const char *dest) {
    if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
        chdir(voldir) < 0 || mount("overlay", mnt, "overlay", MS_RDONLY, opts) < 0) {
        log_error("volume: squash: cannot mount the merged view in %s: %m", voldir);
        _exit(126);
    }
    execl("/bin/cp", "cp", "-a", "-T", "--", mnt, dest, (char *)NULL);
    log_error("volume: squash: cannot run /bin/cp: %m");
    _exit(127);
}

static int squash_copy(const char *voldir, const struct ids *stack, const char *mnt,
                       const char *dest) {
    _cleanup_strbuf_ struct strbuf opts = STRBUF_INIT;
    strbuf_puts(&opts, "lowerdir=");
    for (size_t i = 0; i < stack->n; i++)
        strbuf_printf(&opts, "%slayers/%" PRIu64, i ? ":" : "", stack->v[i]);
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0)
        squash_child(voldir, strbuf_str(&opts), mnt, dest);
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -errno;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        log_error("volume: squash of %s failed (status 0x%x)", voldir, (unsigned)status);
        return -EIO;
    }
    return 0;
}

/* Replaces *stack (at least two layers) by a single new layer with the same content. */
static int squash(const char *voldir, struct ids *stack) {
    uint64_t id;
    int r = alloc_id(voldir, &id);
    if (r < 0)
        return r;
    _cleanup_free_ char *mnt = xasprintf("squash-%" PRIu64 ".mnt", id);
    _cleanup_free_ char *tmp = xasprintf("squash-%" PRIu64 ".tmp", id);
    _cleanup_free_ char *mnt_abs = xasprintf("%s/%s", voldir, mnt);
    _cleanup_free_ char *tmp_abs = xasprintf("%s/%s", voldir, tmp);
    _cleanup_free_ char *layer = xasprintf("%s/layers/%" PRIu64, voldir, id);
    if (mkdir(mnt_abs, 0700) < 0)
        return -errno;
    r = squash_copy(voldir, stack, mnt, tmp);
    rmdir(mnt_abs);
    if (r == 0 && rename(tmp_abs, layer) < 0)
        r = -errno;
    if (r < 0) {
        rm_rf(tmp_abs);
        return r;
    }
    stack->n = 1;
    stack->v[0] = id;
    return 0;
}

/* The stack the writer started on; volumes written before .base files existed, or whose
 * .base was lost, fall back to the current revision. */
static int writer_base(const char *voldir, uint64_t id, struct ids *base) {
    _cleanup_free_ char *file = xasprintf("upper-%" PRIu64 ".base", id);
    _cleanup_free_ char *path = xasprintf("%s/%s", voldir, file);
    if (access(path, F_OK) < 0)
        return ids_read(voldir, "current", base);
    return ids_read(voldir, file, base);
}

/* Writer `id`'s upper, already moved to layers/<id>, on top of its base. */
static int commit_layer(const char *voldir, uint64_t id, struct ids *next) {
    _cleanup_(ids_free) struct ids cur = {0}, base = {0};
    int r = ids_read(voldir, "current", &cur);
    if (r < 0 || (r = writer_base(voldir, id, &base)) < 0)
        return r;
    /* a revision never goes back, even if another writer committed meanwhile: the last
     * writer wins, as in Qubes where a template's root is replaced at its shutdown */
    next->revision = cur.revision + 1;
    ids_push(next, id);
    for (size_t i = 0; i < base.n; i++)
        ids_push(next, base.v[i]);
    if (next->n > VOLUME_MAX_LAYERS && (r = squash(voldir, next)) < 0)
        log_warning("volume: %s: keeping %zu layers unsquashed: %s", voldir, next->n, strerror(-r));
    if ((r = keep_revision(voldir, &cur)) < 0)
        return r;
    return ids_commit(voldir, next);
}

/* A commit the last daemon began and did not end (killed after renaming the upper dir
 * into layers/ID): ID's layer holds the qube's changes, so the commit is finished now,
 * before any garbage collection could take the unreferenced layer. Returns 1 if that made
 * a revision, 0 if the commit had made it already, -ENOENT if there is no such layer. */
static int resume_commit(const char *voldir, uint64_t id, const char *work) {
    _cleanup_free_ char *layer = xasprintf("%s/layers/%" PRIu64, voldir, id);
    _cleanup_(ids_free) struct ids cur = {0}, next = {0};
    if (access(layer, F_OK) < 0)
        return -errno;
    int r = ids_read(voldir, "current", &cur);
    if (r < 0)
        return r;
    bool done = ids_contains(&cur, id);
    if (!done && (r = commit_layer(voldir, id, &next)) < 0)
        return r;
    writer_cleanup(voldir, id, NULL, work);
    log_info("volume: %s: the commit of layer %" PRIu64 " a crash interrupted %s", voldir, id,
             done ? "had ended" : "is finished");
    return done ? 0 : 1;
}

int volume_commit(const char *state_dir, const char *uuid, const char *name, const char *upper,
                  const char *work) {
    _cleanup_free_ char *voldir = NULL;
    _cleanup_(ids_free) struct ids next = {0};
    uint64_t id;
    int r = vol_path(state_dir, uuid, name, &voldir);
    if (r < 0 || (r = writer_id(voldir, upper, work, &id)) < 0)
        return r;
    _cleanup_free_ char *plain = xasprintf("%s/upper-%" PRIu64, voldir, id);
    if (volume_limit_paths(voldir, id, upper, work)) {
        if (access(upper, F_OK) == 0 && (r = volume_limit_settle(voldir, id)) < 0)
            return r; /* the upper stays mounted: nothing is lost */
        upper = plain;
    }
    r = dir_has_entries(upper);
    if (r == -ENOENT)
        return resume_commit(voldir, id, work);
    if (r <= 0) {
        if (r == 0)
            writer_cleanup(voldir, id, upper, work);
        return r;
    }
    _cleanup_free_ char *layer = xasprintf("%s/layers/%" PRIu64, voldir, id);
    if (rename(upper, layer) < 0)
        return -errno;
    /* from here a failure leaves layers/<id> unreferenced: volume_gc() takes it */
    r = commit_layer(voldir, id, &next);
    if (r < 0)
        return r;
    writer_cleanup(voldir, id, NULL, work);
    log_debug("volume: %s: revision %" PRIu64 " (%zu layers)", voldir, next.revision, next.n);
    return 1;
}

/* ---- import ---- */

int volume_import_begin(const char *state_dir, const char *uuid, const char *name, char *path,
                        size_t size) {
    _cleanup_free_ char *voldir = NULL;
    int r = vol_path(state_dir, uuid, name, &voldir);
    if (r < 0)
        return r;
    _cleanup_free_ char *staging = xasprintf("%s/staging", voldir);
    if (strlen(staging) + 1 > size)
        return -ENAMETOOLONG;
    if ((r = mkdir_p(voldir, 0700)) < 0 || (r = rm_rf(staging)) < 0)
        return r;
    /* 0700: nobody but root looks at a root file system before its ids are shifted */
    if (mkdir(staging, 0700) < 0 || chmod(staging, 0700) < 0)
        return -errno;
    snprintf(path, size, "%s", staging);
    return 0;
}

static int import_commit(const char *voldir, const char *staging, uid_t base, uid_t count) {
    _cleanup_(ids_free) struct ids cur = {0}, next = {0};
    _cleanup_free_ char *layers = xasprintf("%s/layers", voldir);
    uint64_t id;
    int r = uidshift_tree(staging, base, count);
    if (r < 0)
        return r;
    /* the staging dir's 0700 was for the import only; the root dir is 0755 as usual */
    if (chmod(staging, 0755) < 0)
        return -errno;
    if ((r = mkdir_p(layers, 0700)) < 0 || (r = ids_read(voldir, "current", &cur)) < 0 ||
        (r = alloc_id(voldir, &id)) < 0)
        return r;
    _cleanup_free_ char *layer = xasprintf("%s/%" PRIu64, layers, id);
    if (rename(staging, layer) < 0)
        return -errno;
    next.revision = cur.revision + 1;
    ids_push(&next, id);
    if ((r = keep_revision(voldir, &cur)) < 0)
        return r;
    return ids_commit(voldir, &next);
}

int volume_import_end(const char *state_dir, const char *uuid, const char *name, bool commit,
                      uid_t uid_base, uid_t uid_count) {
    _cleanup_free_ char *voldir = NULL;
    int r = vol_path(state_dir, uuid, name, &voldir);
    if (r < 0)
        return r;
    _cleanup_free_ char *staging = xasprintf("%s/staging", voldir);
    struct stat st;
    if (lstat(staging, &st) < 0)
        return errno == ENOENT && !commit ? 0 : -errno; /* aborting twice is fine */
    if (!S_ISDIR(st.st_mode))
        return -ENOTDIR;
    r = commit ? import_commit(voldir, staging, uid_base, uid_count) : 0;
    if (r < 0)
        log_error("volume: import into %s failed: %s", voldir, strerror(-r));
    /* a failed import leaves nothing behind; on success staging is gone already */
    int k = rm_rf(staging);
    return r < 0 ? r : k;
}

/* ---- seed: the first revision of a volume never written ---- */

int volume_seed(const char *state_dir, const char *uuid, const char *name, uid_t owner,
                volume_fill_fn fill, void *ctx) {
    _cleanup_free_ char *voldir = NULL, *layers = NULL;
    _cleanup_(ids_free) struct ids cur = {0}, next = {0};
    uint64_t id;
    int r = vol_path(state_dir, uuid, name, &voldir);
    if (r < 0)
        return r;
    layers = xasprintf("%s/layers", voldir);
    if ((r = mkdir_p(layers, 0700)) < 0 || (r = ids_read(voldir, "current", &cur)) < 0)
        return r;
    if (cur.revision > 0 || cur.n > 0)
        return 0; /* written already: its content is its own */
    if ((r = alloc_id(voldir, &id)) < 0)
        return r;
    _cleanup_free_ char *tmp = xasprintf("%s/seed-%" PRIu64 ".tmp", voldir, id);
    _cleanup_free_ char *mnt = xasprintf("%s/seed-%" PRIu64 ".mnt", voldir, id);
    _cleanup_free_ char *layer = xasprintf("%s/%" PRIu64, layers, id);
    /* the merged root takes its owner and mode from the top layer's root, as from an
     * upper's (make_upper) */
    if (mkdir(tmp, 0755) < 0 || chown(tmp, owner, owner) < 0 || chmod(tmp, 0755) < 0 ||
        mkdir(mnt, 0700) < 0)
        r = -errno;
    if (r == 0)
        r = fill(ctx, tmp, mnt);
    rmdir(mnt);
    if (r == 0 && (r = dir_has_entries(tmp)) == 0) {
        rm_rf(tmp); /* nothing to seed: the volume stays never written */
        return 0;
    }
    if (r > 0)
        r = rename(tmp, layer) < 0 ? -errno : 0;
    if (r < 0) {
        rm_rf(tmp);
        return r;
    }
    next.revision = 1;
    ids_push(&next, id);
    r = ids_commit(voldir, &next); /* on failure layers/<id> is garbage for volume_gc() */
    return r < 0 ? r : 1;
}

/* In a forked child with a private mount namespace: the overlay vanishes with it. */
_Noreturn static void copy_out_child(const char *opts, const char *mnt, const char *from_sub,
                                     const char *dest) {
    if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
        mount("overlay", mnt, "overlay", MS_RDONLY, opts) < 0) {
        log_error("volume: cannot mount a merged view on %s: %m", mnt);
        _exit(126);
    }
    _cleanup_free_ char *from = xasprintf("%s/%s", mnt, from_sub);
    if (access(from, F_OK) < 0)
        _exit(errno == ENOENT ? 2 : 1);
    int r = copy_tree(from, dest);
    if (r < 0)
        log_error("volume: cannot copy %s out of a merged view: %s", from_sub, strerror(-r));
    _exit(r < 0 ? 1 : 0);
}

int volume_copy_out(const struct volume_stack *stack, const char *mnt, const char *sub,
                    const char *dest) {
    if (stack->n_layers == 0)
        return -ENOENT;
    if (stack->n_layers == 1) { /* one layer is its own merged view: no mount needed */
        _cleanup_free_ char *from = xasprintf("%s/%s", stack->layers[0], sub);
        return access(from, F_OK) < 0 ? -errno : copy_tree(from, dest);
    }
    _cleanup_strbuf_ struct strbuf opts = STRBUF_INIT;
    strbuf_puts(&opts, "lowerdir=");
    for (size_t i = 0; i < stack->n_layers; i++)
        strbuf_printf(&opts, "%s%s", i ? ":" : "", stack->layers[i]);
    if (opts.len >= 4000)
        return -E2BIG; /* mount options are limited to a page */
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0)
        copy_out_child(strbuf_str(&opts), mnt, sub, dest);
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -errno;
    if (WIFEXITED(status) && WEXITSTATUS(status) <= 2)
        return WEXITSTATUS(status) == 0 ? 0 : WEXITSTATUS(status) == 2 ? -ENOENT : -EIO;
    return -EIO;
}

/* ---- garbage collection and removal ---- */

/* Layers the current revision or a running writer's base refers to. */
static int collect_referenced(const char *voldir, struct ids *keep) {
    _cleanup_(ids_free) struct ids cur = {0};
    int r = ids_read(voldir, "current", &cur);
    if (r < 0)
        return r;
    for (size_t i = 0; i < cur.n; i++)
        ids_push(keep, cur.v[i]);
    _cleanup_(closedirp) DIR *d = opendir(voldir);
    if (!d)
        return -errno;
    struct dirent *de;
    while ((de = readdir(d))) {
        _cleanup_(ids_free) struct ids base = {0};
        /* a writer's base, or a revision kept for revert */
        if (!parse_id(de->d_name, "upper-", ".base") && !parse_id(de->d_name, "rev-", ""))
            continue;
        if ((r = ids_read(voldir, de->d_name, &base)) < 0)
            return r; /* unreadable: better keep everything than guess */
        for (size_t i = 0; i < base.n; i++)
            ids_push(keep, base.v[i]);
    }
    return 0;
}

/* Compared by inode, so any spelling of the path the daemon kept works. */
static bool path_in_use(const char *path, const char *const *in_use) {
    struct stat st, o;
    if (!in_use || stat(path, &st) < 0)
        return false;
    for (size_t i = 0; in_use[i]; i++)
        if (stat(in_use[i], &o) == 0 && o.st_dev == st.st_dev && o.st_ino == st.st_ino)
            return true;
    return false;
}

static bool is_leftover(const char *voldir, const char *name) {
    size_t len = strlen(name);
    if (len > 4 && streq(name + len - 4, ".tmp"))
        return true; /* an interrupted atomic write or squash */
    if (parse_id(name, "squash-", ".mnt") || parse_id(name, "seed-", ".mnt"))
        return true;
    uint64_t id = parse_id(name, "upper-", ".base");
    if (!id)
        id = parse_id(name, "upper-", ".fs");
    if (!id)
        id = parse_id(name, "upper-", ".img");
    if (!id)
        return false;
    _cleanup_free_ char *upper = xasprintf("%s/upper-%" PRIu64, voldir, id);
    return access(upper, F_OK) < 0 && errno == ENOENT;
}

static void gc_leftovers(const char *voldir) {
    _cleanup_(closedirp) DIR *d = opendir(voldir);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        if (!is_leftover(voldir, de->d_name))
            continue;
        uint64_t id = parse_id(de->d_name, "upper-", ".fs");
        if (id) /* a sized writer's filesystem, whose writer is gone */
            volume_limit_release(voldir, id);
        _cleanup_free_ char *p = xasprintf("%s/%s", voldir, de->d_name);
        rm_rf(p);
    }
}

int volume_gc(const char *state_dir, const char *uuid, const char *name,
              const char *const *in_use) {
    _cleanup_free_ char *voldir = NULL, *layers = NULL;
    _cleanup_(ids_free) struct ids keep = {0};
    int r = vol_path(state_dir, uuid, name, &voldir);
    if (r < 0 || (r = collect_referenced(voldir, &keep)) < 0)
        return r == -ENOENT ? 0 : r;
    gc_leftovers(voldir);
    layers = xasprintf("%s/layers", voldir);
    _cleanup_(closedirp) DIR *d = opendir(layers);
    if (!d)
        return errno == ENOENT ? 0 : -errno;
    int removed = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        uint64_t id = parse_id(de->d_name, "", "");
        if (!id || ids_contains(&keep, id))
            continue;
        _cleanup_free_ char *p = xasprintf("%s/%s", layers, de->d_name);
        if (path_in_use(p, in_use))
            continue;
        if ((r = rm_rf(p)) < 0)
            return r;
        removed++;
    }
    return removed;
}

int volume_remove_all(const char *state_dir, const char *uuid) {
    _cleanup_free_ char *dir = NULL;
    int r = vol_path(state_dir, uuid, NULL, &dir);
    return r < 0 ? r : rm_rf(dir);
}

/* ---- usage ---- */

/* nftw has no user pointer; the walk is synchronous, so thread-local state will do. */
static __thread uint64_t usage_sum;
static __thread void *usage_seen; /* tsearch tree of (dev, ino) of multi-link files */

struct inode_key {
    dev_t dev;
    ino_t ino;
};

static int inode_cmp(const void *a, const void *b) {
    const struct inode_key *x = a, *y = b;
    if (x->dev != y->dev)
        return x->dev < y->dev ? -1 : 1;
    return x->ino < y->ino ? -1 : x->ino > y->ino;
}

static int usage_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    if (flag == FTW_NS)
        return 0;
    if (st->st_nlink > 1 && !S_ISDIR(st->st_mode)) {
        struct inode_key *k = xmalloc(sizeof(*k));
        *k = (struct inode_key){st->st_dev, st->st_ino};
        struct inode_key **found = tsearch(k, &usage_seen, inode_cmp);
        if (!found)
            abort();
        if (*found != k) {
            free(k);
            return 0; /* counted already under another name */
        }
    }
    usage_sum += (uint64_t)st->st_blocks * 512;
    return 0;
}

/* Disk space of the current revision: what `du -s` reports over its layers (allocated
 * blocks; hard links once). Older revisions kept for running qubes and writers' uppers
 * are not counted: they go away when those qubes stop. 0 if nothing can be read. */
uint64_t volume_usage_bytes(const char *state_dir, const char *uuid, const char *name) {
    _cleanup_(volume_stack_free) struct volume_stack s = {0};
    if (volume_current(state_dir, uuid, name, &s) < 0)
        return 0;
    usage_sum = 0;
    usage_seen = NULL;
    for (size_t i = 0; i < s.n_layers; i++)
        nftw(s.layers[i], usage_entry, 32, FTW_PHYS | FTW_MOUNT);
    tdestroy(usage_seen, free);
    usage_seen = NULL;
    return usage_sum;
}

/* ---- kept revisions (revert), configuration, clear and clone ----
 *
 * Qubes keeps `revisions_to_keep` older revisions of a volume to revert to. Here a
 * revision is a list of immutable layers, so keeping one costs a small file, rev-<n>
 * (its "current" as it was), and the layers only it still names: usually just the
 * layers a later commit squashed away, as revision n+1 is revision n plus a layer.
 * Two more small files hold what admin.vm.volume.Set.* and Resize changed:
 *   keep   revisions_to_keep (absent: VOLUME_DEFAULT_KEEP)
 *   size   the volume's size in bytes as the user set it (absent: the engine's default) */

static uint64_t read_number(const char *voldir, const char *file, uint64_t fallback) {
    _cleanup_free_ char *path = xasprintf("%s/%s", voldir, file);
    _cleanup_free_ char *text = NULL;
    if (read_small_file(path, &text) < 0)
        return fallback;
    char *end;
    errno = 0;
    uint64_t v = strtoull(text, &end, 10);
    return errno || end == text || (*end && *end != '\n') ? fallback : v;
}

static int write_number(const char *voldir, const char *file, uint64_t value) {
    char text[32];
    snprintf(text, sizeof(text), "%" PRIu64 "\n", value);
    int r = mkdir_p(voldir, 0700);
    return r < 0 ? r : write_atomic(voldir, file, text, true);
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The kept revisions' numbers, oldest first. */
static size_t list_kept(const char *voldir, uint64_t **out) {
    _cleanup_(closedirp) DIR *d = opendir(voldir);
    size_t n = 0;
    *out = NULL;
    struct dirent *de;
    while (d && (de = readdir(d))) {
        uint64_t rev = parse_id(de->d_name, "rev-", "");
        if (!rev)
            continue;
        *out = xrealloc(*out, (n + 1) * sizeof(uint64_t));
        (*out)[n++] = rev;
    }
    if (n)
        qsort(*out, n, sizeof(uint64_t), cmp_u64);
    return n;
}

/* Forgets the oldest kept revisions beyond `keep`; volume_gc() takes their layers. */
static void prune_kept(const char *voldir, uint64_t keep) {
    _cleanup_free_ uint64_t *revs = NULL;
    size_t n = list_kept(voldir, &revs);
    for (size_t i = 0; i + keep < n; i++) {
        _cleanup_free_ char *p = xasprintf("%s/rev-%" PRIu64, voldir, revs[i]);
        unlink(p);
    }
}

/* `old` stops being current: kept for revert if revisions_to_keep allows. Called before
 * the new "current" is written, so its layers are never unreferenced in between. */
static int keep_revision(const char *voldir, const struct ids *old) {
    uint64_t keep = read_number(voldir, "keep", VOLUME_DEFAULT_KEEP);
    if (keep > 0 && old->revision > 0 && old->n > 0) {
        _cleanup_free_ char *file = xasprintf("rev-%" PRIu64, old->revision);
        _cleanup_free_ char *text = ids_format(old);
        int r = write_atomic(voldir, file, text, true);
        if (r < 0)
            return r;
    }
    prune_kept(voldir, keep);
    return 0;
}

int volume_get_config(const char *state_dir, const char *uuid, const char *name,
                      struct volume_config *out) {
    _cleanup_free_ char *voldir = NULL;
    int r = vol_path(state_dir, uuid, name, &voldir);
    if (r < 0)
        return r;
    out->revisions_to_keep = read_number(voldir, "keep", VOLUME_DEFAULT_KEEP);
    out->size = read_number(voldir, "size", 0);
    return 0;
}

int volume_set_revisions_to_keep(const char *state_dir, const char *uuid, const char *name,
                                 uint64_t keep) {
    _cleanup_free_ char *voldir = NULL;
    int r = vol_path(state_dir, uuid, name, &voldir);
    if (r < 0 || (r = write_number(voldir, "keep", keep)) < 0)
        return r;
    prune_kept(voldir, keep);
    return 0;
}

int volume_set_size(const char *state_dir, const char *uuid, const char *name, uint64_t size) {
    _cleanup_free_ char *voldir = NULL;
    int r = vol_path(state_dir, uuid, name, &voldir);
    return r < 0 ? r : write_number(voldir, "size", size);
}

int volume_revisions(const char *state_dir, const char *uuid, const char *name,
                     struct volume_revision **out, size_t *n) {
    _cleanup_free_ char *voldir = NULL;
    _cleanup_free_ uint64_t *revs = NULL;
    int r = vol_path(state_dir, uuid, name, &voldir);
    if (r < 0)
        return r;
    *n = list_kept(voldir, &revs);
    *out = xcalloc(*n + 1, sizeof(**out));
    for (size_t i = 0; i < *n; i++) {
        _cleanup_free_ char *p = xasprintf("%s/rev-%" PRIu64, voldir, revs[i]);
        struct stat st;
        (*out)[i].revision = revs[i];
        (*out)[i].time = stat(p, &st) == 0 ? (int64_t)st.st_mtime : 0;
    }
    return 0;
}

/* Makes `layers` (top first) the next revision, keeping the current one for revert. */
static int commit_stack(const char *voldir, const struct ids *layers, bool keep_current) {
    _cleanup_(ids_free) struct ids cur = {0}, next = {0};
    int r = ids_read(voldir, "current", &cur);
    if (r < 0)
        return r;
    next.revision = cur.revision + 1;
    for (size_t i = 0; i < layers->n; i++)
        ids_push(&next, layers->v[i]);
    if (keep_current && (r = keep_revision(voldir, &cur)) < 0)
        return r;
    return ids_commit(voldir, &next);
}

int volume_revert(const char *state_dir, const char *uuid, const char *name, uint64_t revision) {
    _cleanup_free_ char *voldir = NULL;
    _cleanup_(ids_free) struct ids old = {0};
    int r = vol_path(state_dir, uuid, name, &voldir);
    if (r < 0)
        return r;
    _cleanup_free_ char *file = xasprintf("rev-%" PRIu64, revision);
    _cleanup_free_ char *path = xasprintf("%s/%s", voldir, file);
    if (access(path, F_OK) < 0)
        return -ENOENT;
    if ((r = ids_read(voldir, file, &old)) < 0)
        return r;
    /* as in Qubes, the data reverted from is dropped, and the revision reverted to is
     * current again (under a new number: numbers never go back) */
    if ((r = commit_stack(voldir, &old, false)) < 0)
        return r;
    unlink(path);
    return 0;
}

/* A new empty layer (its root owned by `owner`, as an upper's) in layers/<id>. */
static int empty_layer(const char *voldir, uid_t owner, uint64_t *id) {
    _cleanup_free_ char *layers = xasprintf("%s/layers", voldir);
    int r = mkdir_p(layers, 0700);
    if (r < 0 || (r = alloc_id(voldir, id)) < 0)
        return r;
    _cleanup_free_ char *tmp = xasprintf("%s/squash-%" PRIu64 ".tmp", voldir, *id);
    _cleanup_free_ char *layer = xasprintf("%s/%" PRIu64, layers, *id);
    if (mkdir(tmp, 0755) < 0 || chown(tmp, owner, owner) < 0 || chmod(tmp, 0755) < 0 ||
        rename(tmp, layer) < 0) {
        r = -errno;
        rm_rf(tmp);
        return r;
    }
    return 0;
}

int volume_clear(const char *state_dir, const char *uuid, const char *name, uid_t owner) {
    _cleanup_free_ char *voldir = NULL;
    _cleanup_(ids_free) struct ids layers = {0};
    uint64_t id;
    int r = vol_path(state_dir, uuid, name, &voldir);
    if (r < 0 || (r = empty_layer(voldir, owner, &id)) < 0)
        return r;
    ids_push(&layers, id);
    return commit_stack(voldir, &layers, true);
}

static int run_cp(const char *from, const char *to) {
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        execl("/bin/cp", "cp", "-a", "-T", "--", from, to, (char *)NULL);
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -errno;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -EIO;
}

/* A copy of the merged view of `src` (in src_voldir) as the new layer layers/<id> of
 * voldir; one layer is its own merged view and is copied as it is. */
static int copy_stack(const char *src_voldir, const struct ids *src, const char *voldir,
                      uint64_t *id) {
    _cleanup_free_ char *layers = xasprintf("%s/layers", voldir);
    int r = mkdir_p(layers, 0700);
    if (r < 0 || (r = alloc_id(voldir, id)) < 0)
        return r;
    _cleanup_free_ char *tmp = xasprintf("%s/squash-%" PRIu64 ".tmp", voldir, *id);
    _cleanup_free_ char *mnt = xasprintf("%s/squash-%" PRIu64 ".mnt", voldir, *id);
    _cleanup_free_ char *layer = xasprintf("%s/%" PRIu64, layers, *id);
    if (src->n == 1) {
        _cleanup_free_ char *from = xasprintf("%s/layers/%" PRIu64, src_voldir, src->v[0]);
        r = run_cp(from, tmp);
    } else if (mkdir(mnt, 0700) < 0) {
        r = -errno;
    } else {
        r = squash_copy(src_voldir, src, mnt, tmp);
        rmdir(mnt);
    }
    if (r == 0 && rename(tmp, layer) < 0)
        r = -errno;
    if (r < 0)
        rm_rf(tmp);
    return r;
}

int volume_clone(const char *state_dir, const char *src_uuid, const char *uuid, const char *name,
                 uid_t owner) {
    _cleanup_free_ char *src_voldir = NULL, *voldir = NULL;
    _cleanup_(ids_free) struct ids src = {0}, cur = {0}, layers = {0};
    uint64_t id;
    int r = vol_path(state_dir, src_uuid, name, &src_voldir);
    if (r < 0 || (r = vol_path(state_dir, uuid, name, &voldir)) < 0 ||
        (r = ids_read(src_voldir, "current", &src)) < 0 ||
        (r = ids_read(voldir, "current", &cur)) < 0)
        return r;
    if (src.n == 0) /* never written: so is the copy (or it is emptied) */
        return cur.revision == 0 ? 0 : volume_clear(state_dir, uuid, name, owner);
    if ((r = copy_stack(src_voldir, &src, voldir, &id)) < 0)
        return r;
    ids_push(&layers, id);
    return commit_stack(voldir, &layers, true);
}
