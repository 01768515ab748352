/* The global clipboard's store and rules (clipboard.h). The daemon is single-threaded,
 * so a copy and a paste never interleave: no lock such as Qubes' guid processes need. */
#include "clipboard.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

#define DATA_FILE "qubes-clipboard.bin"
#define SOURCE_FILE "qubes-clipboard.bin.source"

struct clipboard {
    char *dir;
    clipboard_policy_fn policy;
    void *policy_ctx;
};

struct clipboard *clipboard_new(const char *runtime_dir) {
    struct clipboard *cb = xcalloc(1, sizeof(*cb));
    if (asprintf(&cb->dir, "%s/clipboard", runtime_dir) < 0)
        abort();
    if (mkdir(cb->dir, 0700) < 0 && errno != EEXIST)
        log_warning("clipboard: %s: %s", cb->dir, strerror(errno));
    return cb;
}

void clipboard_set_policy(struct clipboard *cb, clipboard_policy_fn fn, void *ctx) {
    cb->policy = fn;
    cb->policy_ctx = ctx;
}

void clipboard_free(struct clipboard *cb) {
    if (!cb)
        return;
    free(cb->dir);
    free(cb);
}

/* ---- the files ---- */

static int write_whole(const struct clipboard *cb, const char *name, const void *data, size_t len) {
    char path[4096], tmp[4200];
    snprintf(path, sizeof(path), "%s/%s", cb->dir, name);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    const char *p = data;
    for (size_t done = 0; done < len;) {
        ssize_t n = write(fd, p + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int e = n < 0 ? errno : EIO;
            close(fd);
            unlink(tmp);
            return -e;
        }
        done += (size_t)n;
    }
    close(fd);
    return rename(tmp, path) < 0 ? -errno : 0;
}

/* The whole file into out (nothing when missing); -errno on a read error. */
static int read_whole(const struct clipboard *cb, const char *name, struct strbuf *out) {
    char path[4096], buf[65536];
    snprintf(path, sizeof(path), "%s/%s", cb->dir, name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : -errno;
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR))
        if (n > 0)
            strbuf_append(out, buf, (size_t)n);
    int r = n < 0 ? -errno : 0;
    close(fd);
    return r;
}

/* Writes the content first: a source names the content it came with. */
static int store(struct clipboard *cb, const char *source, const void *data, size_t len) {
    int r = write_whole(cb, DATA_FILE, data, len);
    return r < 0 ? r : write_whole(cb, SOURCE_FILE, source, strlen(source));
}

/* The source qube's name ("" when empty). */
static void source_of(const struct clipboard *cb, char *out, size_t size) {
    _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
    *out = '\0';
    if (read_whole(cb, SOURCE_FILE, &sb) == 0 && sb.len > 0)
        snprintf(out, size, "%.*s", (int)sb.len, sb.data);
}

/* ---- the rules ---- */

static size_t parse_limit(const char *v) {
    char *end;
    if (!v || !*v)
        return 0;
    errno = 0;
    unsigned long n = strtoul(v, &end, 10);
    if (errno || *end || n < CLIPBOARD_MIN_MAX)
        return 0; /* out of Qubes' range: the default holds */
    return n < CLIPBOARD_MAX_BYTES ? n : CLIPBOARD_MAX_BYTES;
}

size_t clipboard_max_size(const struct app *app, const struct qube *q) {
    size_t n = parse_limit(
        app_feature_check(app, q, "gui-max-clipboard-size", FEATURE_FALLBACK_TEMPLATE));
    if (!n)
        n = parse_limit(app_feature_check(app, app_dom0(app), "gui-default-max-clipboard-size", 0));
    return n ? n : CLIPBOARD_DEFAULT_MAX;
}

int clipboard_copy(struct clipboard *cb, const struct app *app, const struct qube *source,
                   const void *data, size_t len, struct qerr *err) {
    size_t max = clipboard_max_size(app, source);
    if (len > max)
        return qerr_set(err, EXC_VALUE,
                        "%s's clipboard holds more than %zu bytes (its gui-max-clipboard-size): "
                        "not copied",
                        source->name, max);
    int r = store(cb, source->name, data, len);
    if (r < 0)
        return qerr_set(err, EXC_QUBES, "cannot keep the clipboard in %s: %s", cb->dir,
                        strerror(-r));
    log_info("clipboard: %zu bytes copied from %s", len, source->name);
    return 0;
}

int clipboard_paste(struct clipboard *cb, const struct qube *target, struct strbuf *out,
                    struct qerr *err) {
    char source[64], why[512] = "no policy";
    source_of(cb, source, sizeof(source));
    if (!*source)
        return qerr_set(err, EXC_VALUE, "the global clipboard is empty");
    if (!cb->policy || !cb->policy(cb->policy_ctx, source, target->name, why, sizeof(why))) {
        log_info("clipboard: paste from %s into %s refused: %s", source, target->name, why);
        return qerr_set(err, EXC_PERMISSION,
                        "pasting from %s into %s is refused by the policy (qubes.ClipboardPaste)",
                        source, target->name);
    }
    int r = read_whole(cb, DATA_FILE, out);
    if (r == 0)
        r = store(cb, "", "", 0); /* only the chosen qube gets it, as in Qubes */
    if (r < 0)
        return qerr_set(err, EXC_QUBES, "cannot read the clipboard in %s: %s", cb->dir,
                        strerror(-r));
    log_info("clipboard: %zu bytes from %s pasted into %s (%s)", out->len, source, target->name,
             why);
    return 0;
}

void clipboard_describe(struct clipboard *cb, struct strbuf *out) {
    char source[64], path[4096];
    struct stat st;
    source_of(cb, source, sizeof(source));
    snprintf(path, sizeof(path), "%s/%s", cb->dir, DATA_FILE);
    if (*source)
        strbuf_printf(out, "%s %lld\n", source, stat(path, &st) == 0 ? (long long)st.st_size : 0LL);
}
