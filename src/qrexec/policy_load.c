/* Policy files on disk: a directory of *.policy files in lexical order, and the files
 * and directories they pull in. Like Qubes' AbstractFileSystemLoader: relative include
 * paths are relative to the policy directory, only *.policy files whose names are
 * [0-9a-z_.-] (not starting with a dot) count, and a badly named file fails the load. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "policy_internal.h"
#include "strbuf.h"

#define MAX_INCLUDE_DEPTH 16                /* deeper is an include loop, in practice */
#define MAX_POLICY_FILE (16u * 1024 * 1024) /* a policy is lines of text, not data */
#define POLICY_SUFFIX ".policy"

struct policy_loader {
    struct policy *p;
    const char *topdir;
    int depth;
};

/* Where the error is reported: the directive that named the file, else the file. */
struct origin {
    const char *file;
    int line;
};

static char *resolve_path(const struct policy_loader *l, const char *path) {
    char *out = NULL;
    if (path[0] == '/')
        return xstrdup(path);
    if (asprintf(&out, "%s/%s", l->topdir, path) < 0)
        abort();
    return out;
}

/* The whole file as a C string. -1 with errno set (EFBIG, EISDIR, EILSEQ for NUL). */
static int read_text(const char *path, char **out) {
    /* O_NONBLOCK: a FIFO named by an include must fail the check below, not hang us */
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0)
        return -1;
    if (!S_ISREG(st.st_mode))
        return errno = S_ISDIR(st.st_mode) ? EISDIR : EINVAL, -1;
    _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
    char buf[8192];
    for (ssize_t n; (n = read(fd, buf, sizeof(buf))) != 0;) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (sb.len + (size_t)n > MAX_POLICY_FILE)
            return errno = EFBIG, -1;
        if (memchr(buf, '\0', (size_t)n))
            return errno = EILSEQ, -1;
        strbuf_append(&sb, buf, (size_t)n);
    }
    strbuf_str(&sb);
    *out = sb.data ? TAKE_PTR(sb.data) : xstrdup("");
    return 0;
}

static int load_file(struct policy_loader *l, const char *path, const char *service,
                     const char *argument, struct origin from, struct policy_error *err) {
    _cleanup_free_ char *text = NULL;
    if (l->depth >= MAX_INCLUDE_DEPTH)
        return policy_fail(err, from.file, from.line,
                           "includes nested more than %d deep (an include loop?)",
                           MAX_INCLUDE_DEPTH);
    if (read_text(path, &text) < 0)
        return policy_fail(err, from.file, from.line, "cannot read %s: %s", path,
                           errno == EILSEQ ? "contains a NUL byte" : strerror(errno));
    const struct policy_text t = {.file = path,
                                  .in_service_file = service != NULL,
                                  .service = service,
                                  .argument = argument};
    l->depth++;
    int r = policy_parse_text(l->p, l, &t, text, err);
    l->depth--;
    return r;
}

static bool is_policy_file_name(const char *name) {
    size_t len = strlen(name), slen = strlen(POLICY_SUFFIX);
    return name[0] != '.' && len > slen && streq(name + len - slen, POLICY_SUFFIX);
}

static bool file_name_chars_ok(const char *name) {
    for (; *name; name++)
        if (!((*name >= 'a' && *name <= 'z') || (*name >= '0' && *name <= '9') ||
              strchr("_.-", *name)))
            return false;
    return true;
}

static int compare_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

struct name_list {
    char **names;
    size_t n;
};

static void name_list_free(struct name_list *nl) {
    for (size_t i = 0; i < nl->n; i++)
        free(nl->names[i]);
    free(nl->names);
}

static bool is_regular_file(int dfd, const char *name) {
    struct stat st;
    return fstatat(dfd, name, &st, 0) == 0 && S_ISREG(st.st_mode); /* symlinks followed */
}

/* The policy files of dir, sorted. A bad name fails the whole directory, so that a file
 * an administrator meant to be read is never silently skipped. */
static int list_policy_files(const char *dir, struct name_list *out, struct origin from,
                             struct policy_error *err) {
    DIR *d = opendir(dir);
    if (!d)
        return policy_fail(err, from.file, from.line, "cannot read directory %s: %s", dir,
                           strerror(errno));
    int r = 0;
    for (struct dirent *de; r == 0 && (de = readdir(d));) {
        if (!is_policy_file_name(de->d_name) || !is_regular_file(dirfd(d), de->d_name))
            continue;
        if (!file_name_chars_ok(de->d_name)) {
            r = policy_fail(err, from.file, from.line,
                            "invalid file name %s/%s (allowed: 0-9 a-z _ . -)", dir, de->d_name);
            break;
        }
        out->names = xrealloc(out->names, (out->n + 1) * sizeof(*out->names));
        out->names[out->n++] = xstrdup(de->d_name);
    }
    closedir(d);
    if (out->n)
        qsort(out->names, out->n, sizeof(*out->names), compare_names);
    return r;
}

static int load_dir(struct policy_loader *l, const char *dir, struct origin from,
                    struct policy_error *err) {
    _cleanup_(name_list_free) struct name_list files = {0};
    if (l->depth >= MAX_INCLUDE_DEPTH)
        return policy_fail(err, from.file, from.line,
                           "includes nested more than %d deep (an include loop?)",
                           MAX_INCLUDE_DEPTH);
    if (list_policy_files(dir, &files, from, err) < 0)
        return -1;
    for (size_t i = 0; i < files.n; i++) {
        _cleanup_free_ char *path = NULL;
        if (asprintf(&path, "%s/%s", dir, files.names[i]) < 0)
            abort();
        if (load_file(l, path, NULL, NULL, (struct origin){path, 0}, err) < 0)
            return -1;
    }
    return 0;
}

int policy_loader_include(struct policy_loader *l, const struct policy_text *from, int lineno,
                          const char *path, const char *service, const char *argument,
                          struct policy_error *err) {
    _cleanup_free_ char *resolved = resolve_path(l, path);
    return load_file(l, resolved, service, argument, (struct origin){from->file, lineno}, err);
}

int policy_loader_include_dir(struct policy_loader *l, const struct policy_text *from, int lineno,
                              const char *path, struct policy_error *err) {
    _cleanup_free_ char *resolved = resolve_path(l, path);
    struct stat st;
    if (stat(resolved, &st) < 0 || !S_ISDIR(st.st_mode))
        return policy_fail(err, from->file, lineno, "not a directory: %s", resolved);
    l->depth++;
    int r = load_dir(l, resolved, (struct origin){from->file, lineno}, err);
    l->depth--;
    return r;
}

struct policy *policy_load_dir(const char *dir, struct policy_error *err) {
    if (err)
        *err = (struct policy_error){0};
    if (!dir) {
        policy_fail(err, "", 0, "no policy directory");
        return NULL;
    }
    struct policy *p = policy_new();
    struct policy_loader l = {.p = p, .topdir = dir};
    if (load_dir(&l, dir, (struct origin){dir, 0}, err) < 0) {
        policy_free(p);
        return NULL;
    }
    return p;
}
