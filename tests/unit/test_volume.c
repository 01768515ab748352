/* Layered volumes and uid shifting (src/backend/container/volume.c, uidshift.c).
 * Needs root (chown, mknod, overlay mounts in a private mount namespace); skipped
 * otherwise. Each test gets its own state dir. */
#include "testutil.h"

#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/capability.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>

#include "volume.h"

#define BASE 200000u
#define COUNT 65536u
#define UUID "11111111-2222-3333-4444-555555555555"

struct fixture {
    char *state;
    char *voldir;
};

static int setup(void **state) {
    if (geteuid() != 0) {
        print_message("test_volume needs root; skipping\n");
        skip();
    }
    struct fixture *f = calloc(1, sizeof(*f));
    f->state = tu_mkdtemp();
    assert_non_null(f->state);
    assert_true(asprintf(&f->voldir, "%s/volumes/%s/root", f->state, UUID) > 0);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    struct fixture *f = *state;
    if (!f)
        return 0;
    tu_rmdir(f->state);
    free(f->voldir);
    free(f);
    return 0;
}

/* ---- small file helpers ---- */

static void put(const char *dir, const char *rel, const char *content, mode_t mode, uid_t uid,
                gid_t gid) {
    char *p = tu_path(dir, rel);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, mode);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, content, strlen(content)), (ssize_t)strlen(content));
    close(fd);
    assert_int_equal(chown(p, uid, gid), 0);
    assert_int_equal(chmod(p, mode), 0);
    free(p);
}

static void mkdir_owned(const char *dir, const char *rel, mode_t mode, uid_t uid) {
    char *p = tu_path(dir, rel);
    assert_int_equal(mkdir(p, mode), 0);
    assert_int_equal(chown(p, uid, uid), 0);
    free(p);
}

static struct stat lstat_of(const char *dir, const char *rel) {
    char *p = tu_path(dir, rel);
    struct stat st;
    assert_int_equal(lstat(p, &st), 0);
    free(p);
    return st;
}

static bool exists(const char *dir, const char *rel) {
    char *p = tu_path(dir, rel);
    struct stat st;
    bool r = lstat(p, &st) == 0;
    free(p);
    return r;
}

static struct volume_stack current(struct fixture *f) {
    struct volume_stack s;
    assert_int_equal(volume_current(f->state, UUID, "root", &s), 0);
    return s;
}

/* v2 and v3 security.capability blobs granting cap_net_raw (bit 13), effective. */
static void caps_v2(unsigned char *buf) {
    struct vfs_cap_data d = {0};
    d.magic_etc = htole32(VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE);
    d.data[0].permitted = htole32(1u << 13);
    memcpy(buf, &d, XATTR_CAPS_SZ_2);
}

static void caps_v3(unsigned char *buf, uint32_t rootid) {
    struct vfs_ns_cap_data d = {0};
    d.magic_etc = htole32(VFS_CAP_REVISION_3 | VFS_CAP_FLAGS_EFFECTIVE);
    d.data[0].permitted = htole32(1u << 13);
    d.rootid = htole32(rootid);
    memcpy(buf, &d, XATTR_CAPS_SZ_3);
}

/* A small root file system, as a builder (host root) would leave it. */
static void fill_tree(const char *dir) {
    unsigned char caps[XATTR_CAPS_SZ_3];
    mkdir_owned(dir, "etc", 0755, 0);
    mkdir_owned(dir, "bin", 0755, 0);
    mkdir_owned(dir, "home", 0755, 0);
    mkdir_owned(dir, "home/user", 0700, 1000);
    put(dir, "etc/passwd", "root:x:0:0::/root:/bin/sh\n", 0644, 0, 0);
    put(dir, "home/user/notes", "mine\n", 0600, 1000, 1000);
    put(dir, "bin/su", "#!su\n", 04755, 0, 0);
    put(dir, "bin/wall", "#!wall\n", 02755, 0, 5);
    put(dir, "bin/ping", "#!ping\n", 0755, 0, 0);
    put(dir, "gone", "soon deleted\n", 0644, 0, 0);
    caps_v2(caps);
    char *ping = tu_path(dir, "bin/ping");
    assert_int_equal(lsetxattr(ping, "security.capability", caps, XATTR_CAPS_SZ_2, 0), 0);
    free(ping);
    char *sh = tu_path(dir, "bin/sh");
    assert_int_equal(symlink("su", sh), 0);
    free(sh);
}

static void import_tree(struct fixture *f, void (*fill)(const char *dir)) {
    char path[4096];
    assert_int_equal(volume_import_begin(f->state, UUID, "root", path, sizeof(path)), 0);
    fill(path);
    assert_int_equal(volume_import_end(f->state, UUID, "root", true, BASE, COUNT), 0);
}

/* ---- the merged view, as a qube would see it ---- */

typedef int (*merged_fn)(const char *mnt, void *arg);

/* Mounts the layers (top first) read-only in a forked child with its own mount namespace
 * and returns fn's result. An empty bottom layer is added: overlayfs wants two lowers. */
static int in_merged(char **layers, size_t n, const char *scratch, merged_fn fn, void *arg) {
    char *mnt = tu_path(scratch, "mnt"), *empty = tu_path(scratch, "empty");
    mkdir(mnt, 0700);
    mkdir(empty, 0700);
    size_t len = 64 + strlen(empty);
    for (size_t i = 0; i < n; i++)
        len += strlen(layers[i]) + 1;
    char *opts = calloc(1, len);
    strcpy(opts, "lowerdir=");
    for (size_t i = 0; i < n; i++)
        strcat(strcat(opts, layers[i]), ":");
    strcat(opts, empty);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
            mount("overlay", mnt, "overlay", MS_RDONLY, opts) < 0) {
            perror("mount merged view");
            _exit(99);
        }
        _exit(fn(mnt, arg));
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    free(opts);
    free(mnt);
    free(empty);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 98;
}

static int merged_lacks(const char *mnt, void *rel) { return exists(mnt, rel) ? 1 : 0; }
static int merged_has(const char *mnt, void *rel) { return exists(mnt, rel) ? 0 : 1; }

/* Manifest of a tree: one sorted line per entry (path, type+mode, owner, size, mtime,
 * content hash, link target, capability xattr), written to the file `arg`. */
static char *manifest_lines[4096];
static size_t manifest_n;
static size_t manifest_root_len;

static uint64_t fnv_file(const char *path) {
    uint64_t h = 1469598103934665603ull;
    int fd = open(path, O_RDONLY);
    unsigned char buf[4096];
    ssize_t n;
    while (fd >= 0 && (n = read(fd, buf, sizeof(buf))) > 0)
        for (ssize_t i = 0; i < n; i++)
            h = (h ^ buf[i]) * 1099511628211ull;
    if (fd >= 0)
        close(fd);
    return h;
}

static int manifest_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    char link[256] = "", caps[64] = "";
    unsigned char cap[32];
    uint64_t h = S_ISREG(st->st_mode) ? fnv_file(path) : 0;
    if (S_ISLNK(st->st_mode)) {
        ssize_t l = readlink(path, link, sizeof(link) - 1);
        link[l < 0 ? 0 : l] = '\0';
    }
    ssize_t cl = S_ISREG(st->st_mode) ? lgetxattr(path, "security.capability", cap, 32) : -1;
    for (ssize_t i = 0; i < cl; i++)
        sprintf(caps + 2 * i, "%02x", cap[i]);
    char *line;
    assert_true(asprintf(&line, "/%s %o %u:%u %lld %lld %016" PRIx64 " %s %s",
                         path + manifest_root_len, (unsigned)st->st_mode, (unsigned)st->st_uid,
                         (unsigned)st->st_gid, S_ISDIR(st->st_mode) ? 0 : (long long)st->st_size,
                         S_ISLNK(st->st_mode) ? 0 : (long long)st->st_mtime, h, link, caps) > 0);
    manifest_lines[manifest_n++] = line;
    return manifest_n < 4096 ? 0 : 1;
}

static int cmp_line(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int write_manifest(const char *mnt, void *out) {
    manifest_n = 0;
    manifest_root_len = strlen(mnt);
    if (nftw(mnt, manifest_entry, 16, FTW_PHYS) != 0)
        return 1;
    qsort(manifest_lines, manifest_n, sizeof(char *), cmp_line);
    FILE *fp = fopen(out, "w");
    for (size_t i = 0; fp && i < manifest_n; i++)
        fprintf(fp, "%s\n", manifest_lines[i]);
    return fp && fclose(fp) == 0 ? 0 : 1;
}

static char *slurp(const char *path) {
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    char *buf = calloc(1, 1 << 20);
    size_t n = fread(buf, 1, (1 << 20) - 1, fp);
    buf[n] = '\0';
    fclose(fp);
    return buf;
}

/* ---- tests ---- */

static void test_empty_volume(void **state) {
    struct fixture *f = *state;
    struct volume_stack s = current(f);
    assert_int_equal(s.revision, 0);
    assert_int_equal(s.n_layers, 0);
    volume_stack_free(&s);
    assert_int_equal(volume_usage_bytes(f->state, UUID, "root"), 0);
    assert_int_equal(volume_current(f->state, "../x", "root", &s), -EINVAL);
    assert_int_equal(volume_current(f->state, UUID, "a/b", &s), -EINVAL);
}

static void test_import(void **state) {
    struct fixture *f = *state;
    char path[4096];
    assert_int_equal(volume_import_begin(f->state, UUID, "root", path, sizeof(path)), 0);
    char *staging = tu_path(f->voldir, "staging");
    assert_string_equal(path, staging);
    assert_int_equal(lstat_of(path, ".").st_mode & 07777, 0700);
    fill_tree(path);
    assert_int_equal(volume_import_end(f->state, UUID, "root", true, BASE, COUNT), 0);
    assert_false(exists(f->voldir, "staging"));

    struct volume_stack s = current(f);
    assert_int_equal(s.revision, 1);
    assert_int_equal(s.n_layers, 1);
    const char *l = s.layers[0];
    struct stat st = lstat_of(l, ".");
    assert_int_equal(st.st_uid, BASE);
    assert_int_equal(st.st_mode & 07777, 0755);
    assert_int_equal(lstat_of(l, "etc/passwd").st_uid, BASE);
    assert_int_equal(lstat_of(l, "home/user").st_uid, BASE + 1000);
    assert_int_equal(lstat_of(l, "home/user/notes").st_gid, BASE + 1000);
    assert_int_equal(lstat_of(l, "bin/sh").st_uid, BASE);
    assert_int_equal(lstat_of(l, "bin/su").st_mode & 07777, 04755);
    st = lstat_of(l, "bin/wall");
    assert_int_equal(st.st_mode & 07777, 02755);
    assert_int_equal(st.st_gid, BASE + 5);
    unsigned char want[XATTR_CAPS_SZ_3], got[32];
    caps_v2(want);
    char *ping = tu_path(l, "bin/ping");
    assert_int_equal(lgetxattr(ping, "security.capability", got, sizeof(got)), XATTR_CAPS_SZ_2);
    assert_memory_equal(got, want, XATTR_CAPS_SZ_2);
    assert_true(volume_usage_bytes(f->state, UUID, "root") > 0);
    free(ping);
    free(staging);
    volume_stack_free(&s);
}

static void fill_one_file(const char *dir) { put(dir, "junk", "x\n", 0644, 0, 0); }

static void test_import_abort(void **state) {
    struct fixture *f = *state;
    char path[4096];
    assert_int_equal(volume_import_begin(f->state, UUID, "root", path, sizeof(path)), 0);
    fill_one_file(path);
    assert_int_equal(volume_import_end(f->state, UUID, "root", false, BASE, COUNT), 0);
    assert_false(exists(f->voldir, "staging"));
    struct volume_stack s = current(f);
    assert_int_equal(s.revision, 0);
    volume_stack_free(&s);
    /* begin twice: a stale staging dir from an interrupted import is started afresh */
    assert_int_equal(volume_import_begin(f->state, UUID, "root", path, sizeof(path)), 0);
    fill_one_file(path);
    assert_int_equal(volume_import_begin(f->state, UUID, "root", path, sizeof(path)), 0);
    assert_false(exists(path, "junk"));
}

static void test_commit(void **state) {
    struct fixture *f = *state;
    char *upper, *work;
    import_tree(f, fill_tree);
    assert_int_equal(volume_begin_write(f->state, UUID, "root", BASE, &upper, &work), 0);
    struct stat st = lstat_of(upper, ".");
    assert_int_equal(st.st_uid, BASE);
    assert_int_equal(st.st_gid, BASE);
    assert_int_equal(st.st_mode & 07777, 0755);
    assert_true(exists(work, "."));
    put(upper, "new", "written by the qube\n", 0644, BASE, BASE);
    assert_int_equal(volume_commit(f->state, UUID, "root", upper, work), 1);
    assert_false(exists(upper, "."));
    assert_false(exists(work, "."));

    struct volume_stack s = current(f);
    assert_int_equal(s.revision, 2);
    assert_int_equal(s.n_layers, 2);
    assert_true(exists(s.layers[0], "new"));
    assert_true(exists(s.layers[1], "etc/passwd"));
    assert_int_equal(in_merged(s.layers, s.n_layers, f->state, merged_has, "new"), 0);
    assert_int_equal(in_merged(s.layers, s.n_layers, f->state, merged_has, "etc/passwd"), 0);
    volume_stack_free(&s);
    free(upper);
    free(work);
}

static void test_commit_unchanged(void **state) {
    struct fixture *f = *state;
    char *upper, *work;
    import_tree(f, fill_tree);
    assert_int_equal(volume_begin_write(f->state, UUID, "root", BASE, &upper, &work), 0);
    assert_int_equal(volume_commit(f->state, UUID, "root", upper, work), 0);
    assert_false(exists(upper, "."));
    assert_false(exists(work, "."));
    struct volume_stack s = current(f);
    assert_int_equal(s.revision, 1);
    assert_int_equal(s.n_layers, 1);
    volume_stack_free(&s);
    /* paths that are not this volume's writer are refused, not removed */
    assert_int_equal(volume_commit(f->state, UUID, "root", f->state, work), -EINVAL);
    assert_true(exists(f->state, "."));
    free(upper);
    free(work);
}

static void test_whiteout(void **state) {
    struct fixture *f = *state;
    char *upper, *work;
    import_tree(f, fill_tree);
    assert_int_equal(volume_begin_write(f->state, UUID, "root", BASE, &upper, &work), 0);
    char *wh = tu_path(upper, "gone");
    assert_int_equal(mknod(wh, S_IFCHR | 0, makedev(0, 0)), 0);
    assert_int_equal(volume_commit(f->state, UUID, "root", upper, work), 1);
    struct volume_stack s = current(f);
    assert_int_equal(s.revision, 2);
    assert_int_equal(in_merged(s.layers, s.n_layers, f->state, merged_lacks, "gone"), 0);
    assert_int_equal(in_merged(s.layers, s.n_layers, f->state, merged_has, "etc/passwd"), 0);
    volume_stack_free(&s);
    free(wh);
    free(upper);
    free(work);
}

static void fill_with_caps(const char *dir) {
    fill_tree(dir);
    unsigned char caps[XATTR_CAPS_SZ_3];
    caps_v3(caps, 70000);
    put(dir, "nscap", "#!nscap\n", 0755, 0, 0);
    char *p = tu_path(dir, "nscap");
    assert_int_equal(lsetxattr(p, "security.capability", caps, XATTR_CAPS_SZ_3, 0), 0);
    free(p);
}

/* One writer session: a new file, an overwritten file, at step 3 a deletion. */
static void write_step(const char *upper, int i) {
    char name[32], content[32];
    snprintf(name, sizeof(name), "f%d", i);
    snprintf(content, sizeof(content), "%d\n", i);
    put(upper, name, content, 0640, BASE + 1000, BASE + 1000);
    put(upper, "counter", content, 0644, BASE, BASE);
    if (i == 3) {
        char *wh = tu_path(upper, "f1");
        assert_int_equal(mknod(wh, S_IFCHR | 0, makedev(0, 0)), 0);
        free(wh);
    }
}

/* The manifest of the stack that committing `upper` would make, without squashing. */
static char *expected_manifest(struct fixture *f, const char *upper) {
    struct volume_stack s = current(f);
    char **layers = calloc(s.n_layers + 1, sizeof(char *));
    layers[0] = (char *)upper;
    memcpy(layers + 1, s.layers, s.n_layers * sizeof(char *));
    char *out = tu_path(f->state, "expected");
    assert_int_equal(in_merged(layers, s.n_layers + 1, f->state, write_manifest, out), 0);
    char *text = slurp(out);
    free(out);
    free(layers);
    volume_stack_free(&s);
    return text;
}

static void test_squash(void **state) {
    struct fixture *f = *state;
    char *upper, *work, *expected = NULL;
    /* no revision kept for revert: what a squash replaced is garbage at once */
    assert_int_equal(volume_set_revisions_to_keep(f->state, UUID, "root", 0), 0);
    import_tree(f, fill_with_caps);
    for (int i = 1; i <= VOLUME_MAX_LAYERS; i++) {
        assert_int_equal(volume_begin_write(f->state, UUID, "root", BASE, &upper, &work), 0);
        write_step(upper, i);
        if (i == VOLUME_MAX_LAYERS)
            expected = expected_manifest(f, upper);
        assert_int_equal(volume_commit(f->state, UUID, "root", upper, work), 1);
        free(upper);
        free(work);
        struct volume_stack s = current(f);
        assert_int_equal(s.revision, (uint64_t)i + 1);
        assert_int_equal(s.n_layers, i < VOLUME_MAX_LAYERS ? (size_t)i + 1 : 1);
        volume_stack_free(&s);
    }
    struct volume_stack s = current(f);
    char *out = tu_path(f->state, "actual");
    assert_int_equal(in_merged(s.layers, s.n_layers, f->state, write_manifest, out), 0);
    char *actual = slurp(out);
    assert_string_equal(actual, expected);
    assert_non_null(strstr(actual, "/counter "));
    assert_null(strstr(actual, "/f1 "));
    /* 17 layers were replaced by one: gc finds them unreferenced */
    assert_int_equal(volume_gc(f->state, UUID, "root", NULL), VOLUME_MAX_LAYERS + 1);
    assert_true(exists(s.layers[0], "f16"));
    free(actual);
    free(expected);
    free(out);
    volume_stack_free(&s);
}

static char *layer_path(struct fixture *f) {
    struct volume_stack s = current(f);
    char *p = strdup(s.layers[0]);
    volume_stack_free(&s);
    return p;
}

static void test_gc(void **state) {
    struct fixture *f = *state;
    char *upper, *work;
    assert_int_equal(volume_set_revisions_to_keep(f->state, UUID, "root", 0), 0);
    import_tree(f, fill_tree);
    char *a = layer_path(f);
    assert_int_equal(volume_begin_write(f->state, UUID, "root", BASE, &upper, &work), 0);
    put(upper, "b", "b\n", 0644, BASE, BASE);
    assert_int_equal(volume_commit(f->state, UUID, "root", upper, work), 1);
    char *b = layer_path(f);
    free(upper);
    free(work);
    import_tree(f, fill_one_file); /* revision 3 = [c]; a and b unreferenced */
    char *c = layer_path(f);
    const char *in_use[] = {a, NULL};
    assert_int_equal(volume_gc(f->state, UUID, "root", in_use), 1);
    assert_true(exists(a, "."));
    assert_false(exists(b, "."));
    assert_true(exists(c, "."));
    assert_int_equal(volume_gc(f->state, UUID, "root", NULL), 1);
    assert_false(exists(a, "."));

    /* a running writer's base stays even when a newer revision replaces it */
    assert_int_equal(volume_begin_write(f->state, UUID, "root", BASE, &upper, &work), 0);
    import_tree(f, fill_one_file);
    assert_int_equal(volume_gc(f->state, UUID, "root", NULL), 0);
    assert_true(exists(c, "."));
    assert_int_equal(volume_abort_write(f->state, UUID, "root", upper, work), 0);
    assert_false(exists(upper, "."));
    assert_int_equal(volume_gc(f->state, UUID, "root", NULL), 1);
    assert_false(exists(c, "."));
    struct volume_stack s = current(f);
    assert_int_equal(s.revision, 4);
    assert_true(exists(s.layers[0], "junk"));
    volume_stack_free(&s);

    assert_int_equal(volume_remove_all(f->state, UUID), 0);
    assert_false(exists(f->voldir, "."));
    free(a);
    free(b);
    free(c);
    free(upper);
    free(work);
}

static void test_uidshift(void **state) {
    struct fixture *f = *state;
    char *dir = tu_path(f->state, "tree");
    unsigned char caps[XATTR_CAPS_SZ_3], got[32];
    mkdir_owned(f->state, "tree", 0755, 0);
    put(dir, "su", "su\n", 04755, 0, 0);
    put(dir, "mine", "m\n", 02750, 1000, 1000);
    put(dir, "foreign", "f\n", 0644, 70000, 70000);
    put(dir, "done", "d\n", 0644, BASE + 5, BASE + 5);
    put(dir, "nscap", "n\n", 0755, 0, 0);
    caps_v3(caps, 70000);
    char *nscap = tu_path(dir, "nscap"), *su = tu_path(dir, "su"), *hard = tu_path(dir, "link");
    assert_int_equal(lsetxattr(nscap, "security.capability", caps, XATTR_CAPS_SZ_3, 0), 0);
    assert_int_equal(link(su, hard), 0); /* a hard link is visited twice */
    for (int round = 0; round < 2; round++) {
        assert_int_equal(uidshift_tree(dir, BASE, COUNT), 0);
        struct stat st = lstat_of(dir, "su");
        assert_int_equal(st.st_uid, BASE);
        assert_int_equal(st.st_mode & 07777, 04755);
        st = lstat_of(dir, "mine");
        assert_int_equal(st.st_gid, BASE + 1000);
        assert_int_equal(st.st_mode & 07777, 02750);
        assert_int_equal(lstat_of(dir, "foreign").st_uid, BASE + 65534);
        assert_int_equal(lstat_of(dir, "done").st_uid, BASE + 5);
        assert_int_equal(lstat_of(dir, ".").st_uid, BASE);
        /* v3: the capability now belongs to the qube's namespace root */
        caps_v3(caps, BASE);
        assert_int_equal(lgetxattr(nscap, "security.capability", got, 32), XATTR_CAPS_SZ_3);
        assert_memory_equal(got, caps, XATTR_CAPS_SZ_3);
    }
    assert_int_equal(uidshift_tree(dir, 1000, COUNT), -EINVAL);
    assert_int_equal(uidshift_tree(dir, 0, COUNT), 0);
    free(nscap);
    free(su);
    free(hard);
    free(dir);
}

/* Canonical range -> a qube's slot and back (the chowned copies, and a commit on them):
 * ids of the source range move by the same offset, set-id bits and capabilities
 * survive, ids outside the range (host root's whiteouts) stay, twice is once. */
static void test_uidshift_range(void **state) {
    struct fixture *f = *state;
    const uid_t to = BASE + 3 * COUNT;
    char *dir = tu_path(f->state, "tree");
    unsigned char caps[XATTR_CAPS_SZ_3], got[32];
    mkdir_owned(f->state, "tree", 0755, BASE);
    put(dir, "su", "su\n", 04755, BASE, BASE);
    put(dir, "mine", "m\n", 02750, BASE + 1000, BASE + 1000);
    put(dir, "root", "r\n", 0644, 0, 0);
    put(dir, "nscap", "n\n", 0755, BASE, BASE);
    caps_v3(caps, BASE);
    char *nscap = tu_path(dir, "nscap");
    assert_int_equal(lsetxattr(nscap, "security.capability", caps, XATTR_CAPS_SZ_3, 0), 0);
    for (int round = 0; round < 2; round++) {
        assert_int_equal(uidshift_range(dir, BASE, to, COUNT), 0);
        struct stat st = lstat_of(dir, "su");
        assert_int_equal(st.st_uid, to);
        assert_int_equal(st.st_mode & 07777, 04755);
        st = lstat_of(dir, "mine");
        assert_int_equal(st.st_gid, to + 1000);
        assert_int_equal(st.st_mode & 07777, 02750);
        assert_int_equal(lstat_of(dir, "root").st_uid, 0);
        assert_int_equal(lstat_of(dir, ".").st_uid, to);
        caps_v3(caps, to);
        assert_int_equal(lgetxattr(nscap, "security.capability", got, 32), XATTR_CAPS_SZ_3);
        assert_memory_equal(got, caps, XATTR_CAPS_SZ_3);
    }
    assert_int_equal(uidshift_range(dir, to, BASE, COUNT), 0); /* and back */
    assert_int_equal(lstat_of(dir, "mine").st_uid, BASE + 1000);
    assert_int_equal(lstat_of(dir, "root").st_uid, 0);
    assert_int_equal(uidshift_range(dir, BASE, BASE + 10, COUNT), -EINVAL); /* overlapping */
    free(nscap);
    free(dir);
}

/* The daemon killed between a commit's rename of its upper dir into layers/ and the new
 * `current`: the next daemon's commit of the same writer finishes it (the qube's changes
 * are in that layer) instead of losing them to garbage collection. */
static void test_commit_cut_short_by_a_crash(void **state) {
    struct fixture *f = *state;
    char *upper, *work;
    import_tree(f, fill_tree);
    assert_int_equal(volume_begin_write(f->state, UUID, "root", BASE, &upper, &work), 0);
    put(upper, "kept", "written before the crash\n", 0644, BASE, BASE);
    char name[64];
    snprintf(name, sizeof(name), "layers/%s", strrchr(upper, '-') + 1);
    char *layer = tu_path(f->voldir, name);
    assert_int_equal(rename(upper, layer), 0);
    assert_int_equal(volume_commit(f->state, UUID, "root", upper, work), 1);
    assert_false(exists(work, "."));
    struct volume_stack s = current(f);
    assert_int_equal(s.revision, 2);
    assert_true(exists(s.layers[0], "kept"));
    volume_stack_free(&s);
    assert_int_equal(volume_gc(f->state, UUID, "root", NULL), 0);
    /* killed after `current` was replaced: nothing more to do, nothing lost */
    assert_int_equal(volume_commit(f->state, UUID, "root", upper, work), 0);
    s = current(f);
    assert_int_equal(s.revision, 2);
    assert_true(exists(s.layers[0], "kept"));
    volume_stack_free(&s);
    free(layer);
    free(upper);
    free(work);
}

static void test_crash_leftovers(void **state) {
    struct fixture *f = *state;
    char *upper, *work;
    import_tree(f, fill_tree);
    /* a crash in the middle of replacing `current`, of a commit, and of a squash */
    put(f->voldir, "current.tmp", "revision 99\nlay", 0600, 0, 0);
    mkdir_owned(f->voldir, "layers/999", 0755, 0);
    mkdir_owned(f->voldir, "squash-998.tmp", 0755, 0);
    /* and of a seed (its staging layer, its scratch mount point) */
    mkdir_owned(f->voldir, "seed-1005.tmp", 0755, 0);
    mkdir_owned(f->voldir, "seed-1005.mnt", 0700, 0);
    struct volume_stack s = current(f);
    assert_int_equal(s.revision, 1);
    volume_stack_free(&s);
    assert_int_equal(volume_begin_write(f->state, UUID, "root", BASE, &upper, &work), 0);
    /* ids are never reused, even ones only seen on disk */
    assert_non_null(strstr(upper, "upper-1006"));
    put(upper, "x", "x\n", 0644, BASE, BASE);
    assert_int_equal(volume_commit(f->state, UUID, "root", upper, work), 1);
    s = current(f);
    assert_int_equal(s.revision, 2);
    volume_stack_free(&s);
    assert_int_equal(volume_gc(f->state, UUID, "root", NULL), 1);
    assert_false(exists(f->voldir, "layers/999"));
    assert_false(exists(f->voldir, "squash-998.tmp"));
    assert_false(exists(f->voldir, "seed-1005.tmp"));
    assert_false(exists(f->voldir, "seed-1005.mnt"));
    assert_false(exists(f->voldir, "current.tmp"));
    /* a torn `current` itself is an error, never an empty volume */
    put(f->voldir, "current", "revision 3\nlay", 0600, 0, 0);
    assert_int_equal(volume_current(f->state, UUID, "root", &s), -EBADMSG);
    free(upper);
    free(work);
}

static void fill_big(const char *dir) {
    char *buf = malloc(100 * 1024 + 1);
    memset(buf, 'x', 100 * 1024);
    buf[100 * 1024] = '\0';
    put(dir, "big", buf, 0644, 0, 0);
    char *a = tu_path(dir, "big"), *b = tu_path(dir, "big2");
    assert_int_equal(link(a, b), 0);
    free(a);
    free(b);
    free(buf);
}

static void test_usage(void **state) {
    struct fixture *f = *state;
    import_tree(f, fill_big);
    uint64_t u = volume_usage_bytes(f->state, UUID, "root");
    assert_true(u >= 100 * 1024);
    assert_true(u < 2 * 100 * 1024); /* the hard link is counted once */
}

/* ---- seed: a private volume's first revision, made before anyone writes it ---- */

static int fill_calls;

static int fill_home_file(void *ctx, const char *dir, const char *scratch) {
    fill_calls++;
    assert_true(exists(scratch, "."));
    mkdir_owned(dir, "home", 0755, BASE);
    put(dir, "home/.seeded", (const char *)ctx, 0644, BASE, BASE);
    return 0;
}

static int fill_nothing(void *ctx, const char *dir, const char *scratch) {
    fill_calls++;
    return 0;
}

static int fill_fails(void *ctx, const char *dir, const char *scratch) {
    fill_calls++;
    put(dir, "half", "x", 0644, BASE, BASE);
    return -EIO;
}

static struct volume_stack private_current(struct fixture *f) {
    struct volume_stack s;
    assert_int_equal(volume_current(f->state, UUID, "private", &s), 0);
    return s;
}

/* Nothing but the volume's dir and its empty layers dir: no seed-* leftovers. */
static void assert_clean_private(struct fixture *f) {
    char *dir = tu_path(f->state, "volumes/" UUID "/private");
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *de;
    while ((de = readdir(d)))
        assert_true(de->d_name[0] == '.' || strcmp(de->d_name, "layers") == 0 ||
                    strcmp(de->d_name, "next-id") == 0);
    closedir(d);
    free(dir);
}

static void test_seed(void **state) {
    struct fixture *f = *state;
    fill_calls = 0;
    /* a fill that leaves nothing, or fails, leaves the volume never written */
    assert_int_equal(volume_seed(f->state, UUID, "private", BASE, fill_nothing, NULL), 0);
    assert_int_equal(volume_seed(f->state, UUID, "private", BASE, fill_fails, NULL), -EIO);
    struct volume_stack s = private_current(f);
    assert_int_equal(s.revision, 0);
    volume_stack_free(&s);
    assert_clean_private(f);

    assert_int_equal(volume_seed(f->state, UUID, "private", BASE, fill_home_file, "one\n"), 1);
    s = private_current(f);
    assert_int_equal(s.revision, 1);
    assert_int_equal(s.n_layers, 1);
    struct stat st = lstat_of(s.layers[0], ".");
    assert_int_equal(st.st_uid, BASE);
    assert_int_equal(st.st_mode & 07777, 0755);
    char *seeded = tu_path(s.layers[0], "home/.seeded"), *text = slurp(seeded);
    assert_string_equal(text, "one\n");
    free(seeded);
    free(text);
    volume_stack_free(&s);

    /* written once: never seeded again */
    assert_int_equal(volume_seed(f->state, UUID, "private", BASE, fill_home_file, "two\n"), 0);
    assert_int_equal(fill_calls, 3);
    /* a start on the seed that writes nothing makes no new revision */
    char *upper, *work;
    assert_int_equal(volume_begin_write(f->state, UUID, "private", BASE, &upper, &work), 0);
    assert_int_equal(volume_commit(f->state, UUID, "private", upper, work), 0);
    s = private_current(f);
    assert_int_equal(s.revision, 1);
    volume_stack_free(&s);
    /* one that writes stacks on the seed */
    free(upper);
    free(work);
    assert_int_equal(volume_begin_write(f->state, UUID, "private", BASE, &upper, &work), 0);
    put(upper, "mine", "x", 0644, BASE, BASE);
    assert_int_equal(volume_commit(f->state, UUID, "private", upper, work), 1);
    s = private_current(f);
    assert_int_equal(s.revision, 2);
    assert_int_equal(s.n_layers, 2);
    assert_true(exists(s.layers[1], "home/.seeded"));
    volume_stack_free(&s);
    free(upper);
    free(work);
}

static void test_copy_out(void **state) {
    struct fixture *f = *state;
    char *upper, *work, *scratch = tu_path(f->state, "scratch");
    import_tree(f, fill_tree);
    assert_int_equal(mkdir(scratch, 0700), 0);
    /* one layer: its own merged view */
    struct volume_stack s = current(f);
    char *one = tu_path(f->state, "one");
    assert_int_equal(mkdir(one, 0755), 0);
    assert_int_equal(volume_copy_out(&s, scratch, "home/user", one), 0);
    assert_true(exists(one, "notes"));
    volume_stack_free(&s);
    /* two layers: a deletion and a new file in the top one */
    assert_int_equal(volume_begin_write(f->state, UUID, "root", BASE, &upper, &work), 0);
    mkdir_owned(upper, "home", 0755, BASE);
    mkdir_owned(upper, "home/user", 0700, BASE + 1000);
    char *wh = tu_path(upper, "home/user/notes");
    assert_int_equal(mknod(wh, S_IFCHR | 0, makedev(0, 0)), 0);
    put(upper, "home/user/new", "new\n", 0600, BASE + 1000, BASE + 1000);
    assert_int_equal(volume_commit(f->state, UUID, "root", upper, work), 1);
    s = current(f);
    assert_int_equal(s.n_layers, 2);
    char *two = tu_path(f->state, "two");
    assert_int_equal(mkdir(two, 0755), 0);
    assert_int_equal(volume_copy_out(&s, scratch, "home/user", two), 0);
    assert_true(exists(two, "new"));
    assert_false(exists(two, "notes"));
    struct stat st = lstat_of(two, ".");
    assert_int_equal(st.st_uid, BASE + 1000);
    assert_int_equal(st.st_mode & 07777, 0700);
    assert_true(exists(scratch, ".")); /* the view was the child's only */
    assert_int_equal(volume_copy_out(&s, scratch, "nope", two), -ENOENT);
    volume_stack_free(&s);
    free(wh);
    free(one);
    free(two);
    free(scratch);
    free(upper);
    free(work);
}

/* ---- kept revisions, clear and clone ---- */

#define UUID2 "99999999-8888-7777-6666-555555555555"

static void commit_step(struct fixture *f, int i) {
    char *upper, *work;
    assert_int_equal(volume_begin_write(f->state, UUID, "root", BASE, &upper, &work), 0);
    write_step(upper, i);
    assert_int_equal(volume_commit(f->state, UUID, "root", upper, work), 1);
    free(upper);
    free(work);
}

static size_t kept(struct fixture *f, const char *uuid, uint64_t *first) {
    struct volume_revision *revs = NULL;
    size_t n = 0;
    assert_int_equal(volume_revisions(f->state, uuid, "root", &revs, &n), 0);
    if (n && first)
        *first = revs[0].revision;
    free(revs);
    return n;
}

static char *manifest_of(struct fixture *f, const char *uuid, const char *name) {
    struct volume_stack s = {0};
    assert_int_equal(volume_current(f->state, uuid, "root", &s), 0);
    char *out = tu_path(f->state, name);
    assert_int_equal(in_merged(s.layers, s.n_layers, f->state, write_manifest, out), 0);
    char *text = slurp(out);
    free(out);
    volume_stack_free(&s);
    return text;
}

static void test_kept_revisions(void **state) {
    struct fixture *f = *state;
    uint64_t rev = 0;
    import_tree(f, fill_tree);
    assert_int_equal(kept(f, UUID, NULL), 0); /* the first revision replaced nothing */
    commit_step(f, 1);
    assert_int_equal(kept(f, UUID, &rev), 1);
    assert_int_equal(rev, 1);
    commit_step(f, 2); /* revision 3; one kept by default: 2 */
    assert_int_equal(kept(f, UUID, &rev), 1);
    assert_int_equal(rev, 2);
    assert_int_equal(volume_gc(f->state, UUID, "root", NULL), 0); /* 2 shares 3's layers */
    char *before = manifest_of(f, UUID, "before");

    assert_int_equal(volume_revert(f->state, UUID, "root", 3), -ENOENT); /* current, not kept */
    assert_int_equal(volume_revert(f->state, UUID, "root", 2), 0);
    struct volume_stack s = current(f);
    assert_int_equal(s.revision, 4);
    assert_int_equal(in_merged(s.layers, s.n_layers, f->state, merged_lacks, "f2"), 0);
    assert_int_equal(in_merged(s.layers, s.n_layers, f->state, merged_has, "f1"), 0);
    volume_stack_free(&s);
    assert_int_equal(kept(f, UUID, NULL), 0); /* reverted to: current again, not kept */
    assert_int_equal(volume_gc(f->state, UUID, "root", NULL), 1); /* revision 3's top */
    char *after = manifest_of(f, UUID, "after");
    assert_string_not_equal(before, after);

    /* two kept; fewer forgets the oldest at once */
    assert_int_equal(volume_set_revisions_to_keep(f->state, UUID, "root", 2), 0);
    commit_step(f, 5);
    commit_step(f, 6);
    assert_int_equal(kept(f, UUID, &rev), 2);
    assert_int_equal(rev, 4);
    assert_int_equal(volume_set_revisions_to_keep(f->state, UUID, "root", 0), 0);
    assert_int_equal(kept(f, UUID, NULL), 0);
    struct volume_config conf;
    assert_int_equal(volume_get_config(f->state, UUID, "root", &conf), 0);
    assert_int_equal(conf.revisions_to_keep, 0);
    assert_int_equal(volume_set_size(f->state, UUID, "root", 12345), 0);
    assert_int_equal(volume_get_config(f->state, UUID, "root", &conf), 0);
    assert_int_equal(conf.size, 12345);
    free(before);
    free(after);
}

/* A squash replaces every layer; the revision before it is still kept whole. */
static void test_kept_revision_survives_a_squash(void **state) {
    struct fixture *f = *state;
    import_tree(f, fill_tree);
    for (int i = 1; i < VOLUME_MAX_LAYERS; i++)
        commit_step(f, i);
    char *before = manifest_of(f, UUID, "before");
    commit_step(f, VOLUME_MAX_LAYERS); /* squashed */
    struct volume_stack s = current(f);
    assert_int_equal(s.n_layers, 1);
    volume_stack_free(&s);
    assert_int_equal(volume_gc(f->state, UUID, "root", NULL), 1); /* only the new upper */
    uint64_t rev = 0;
    assert_int_equal(kept(f, UUID, &rev), 1);
    assert_int_equal(volume_revert(f->state, UUID, "root", rev), 0);
    char *after = manifest_of(f, UUID, "after");
    assert_string_equal(before, after);
    free(before);
    free(after);
}

static void test_clear(void **state) {
    struct fixture *f = *state;
    import_tree(f, fill_tree);
    assert_int_equal(volume_clear(f->state, UUID, "root", BASE), 0);
    struct volume_stack s = current(f);
    assert_int_equal(s.revision, 2);
    assert_int_equal(s.n_layers, 1);
    struct stat st = lstat_of(s.layers[0], ".");
    assert_int_equal(st.st_uid, BASE);
    assert_int_equal(st.st_mode & 07777, 0755);
    DIR *d = opendir(s.layers[0]);
    int entries = 0;
    for (struct dirent *de; (de = readdir(d));)
        entries += strcmp(de->d_name, ".") && strcmp(de->d_name, "..");
    closedir(d);
    assert_int_equal(entries, 0);
    volume_stack_free(&s);
    assert_int_equal(kept(f, UUID, NULL), 1); /* the cleared content can be reverted to */
}

static void test_clone(void **state) {
    struct fixture *f = *state;
    /* never written: so is the copy */
    assert_int_equal(volume_clone(f->state, UUID, UUID2, "root", BASE), 0);
    struct volume_stack none = {0};
    assert_int_equal(volume_current(f->state, UUID2, "root", &none), 0);
    assert_int_equal(none.revision, 0);
    volume_stack_free(&none);
    /* one layer (copied as it is), then a stack with a whiteout and file capabilities
     * (copied through its merged view): the same tree either way */
    import_tree(f, fill_with_caps);
    assert_int_equal(volume_clone(f->state, UUID, UUID2, "root", BASE), 0);
    char *src = manifest_of(f, UUID, "src1"), *dst = manifest_of(f, UUID2, "dst1");
    assert_string_equal(src, dst);
    free(src);
    free(dst);
    for (int i = 1; i <= 3; i++)
        commit_step(f, i);
    assert_int_equal(volume_clone(f->state, UUID, UUID2, "root", BASE), 0);
    src = manifest_of(f, UUID, "src2");
    dst = manifest_of(f, UUID2, "dst2");
    assert_string_equal(src, dst);
    assert_null(strstr(dst, "/f1 "));
    struct volume_stack s = {0};
    assert_int_equal(volume_current(f->state, UUID2, "root", &s), 0);
    assert_int_equal(s.revision, 2);
    assert_int_equal(s.n_layers, 1);
    /* a copy, not shared: a change to the source does not reach it */
    char *p = tu_path(s.layers[0], "counter");
    struct stat a, b;
    assert_int_equal(stat(p, &a), 0);
    struct volume_stack cur = current(f);
    char *q = tu_path(cur.layers[0], "counter");
    assert_int_equal(stat(q, &b), 0);
    assert_true(a.st_ino != b.st_ino || a.st_dev != b.st_dev);
    volume_stack_free(&cur);
    volume_stack_free(&s);
    assert_int_equal(volume_remove_all(f->state, UUID2), 0);
    free(p);
    free(q);
    free(src);
    free(dst);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_empty_volume, setup, teardown),
        cmocka_unit_test_setup_teardown(test_import, setup, teardown),
        cmocka_unit_test_setup_teardown(test_import_abort, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_unchanged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_whiteout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_squash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gc, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uidshift, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uidshift_range, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_cut_short_by_a_crash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_leftovers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_usage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_seed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_copy_out, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kept_revisions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kept_revision_survives_a_squash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_clear, setup, teardown),
        cmocka_unit_test_setup_teardown(test_clone, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
