/* admin.vm.volume.*: List, Info, ListSnapshots, Revert, CloneFrom/CloneTo, Resize, Clear,
 * Set.*, and the internal import pair qvm-template uses (as Qubes'
 * internal.vm.volume.ImportBegin/End: the caller fills a directory we hand out). Volumes
 * are directories here (docs/admin-api.md): Import/ImportWithSize, which stream a disk
 * image, stay QubesNotImplementedError (api_unimplemented.c). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "api.h"
#include "dispatcher.h"
#include "preload.h"

static const char *const VOLUMES[] = {"private", "root", "volatile"};

/* Qubes' defaults (qubes.config.defaults) for a volume whose size nobody set. */
#define DEFAULT_PRIVATE_SIZE (2ULL << 30)
#define DEFAULT_ROOT_SIZE (20ULL << 30)

static bool known_volume(const char *name) {
    for (size_t i = 0; i < ELEMENTSOF(VOLUMES); i++)
        if (strcmp(VOLUMES[i], name) == 0)
            return true;
    return false;
}

static int check_volume(struct api_call *c) {
    if (c->dest->klass == QUBE_ADMINVM)
        return qerr_set(c->err, EXC_VALUE, "dom0 has no volumes");
    if (!known_volume(c->req->arg))
        return qerr_set(c->err, EXC_PERMISSION, "Argument not in 'private', 'root', 'volatile'");
    return 0;
}

static int volume_list(struct api_call *c) {
    if (c->dest->klass != QUBE_ADMINVM)
        for (size_t i = 0; i < ELEMENTSOF(VOLUMES); i++)
            api_put_line(c->out, VOLUMES[i]);
    return 0;
}

static uint64_t default_size(const char *volume) {
    return strcmp(volume, "private") == 0 ? DEFAULT_PRIVATE_SIZE : DEFAULT_ROOT_SIZE;
}

/* Qubes' key=value lines in qubesd's order, then dispenser's own: `revision` (the
 * current one) and `used_revision` (the one a running qube started with). */
static int volume_info(struct api_call *c) {
    if (check_volume(c) < 0)
        return -1;
    const char *vol = c->req->arg;
    struct backend_volume_info vi = {.want_usage = true};
    bool is_volatile = strcmp(vol, "volatile") == 0;
    if (!is_volatile && dispatcher_volume_info(c->dispatcher, c->dest, vol, &vi, c->err) < 0)
        return -1;
    strbuf_printf(c->out,
                  "pool=%s\nvid=%s/%s\nsize=%llu\nusage=%llu\nrw=True\nsource=%s\n"
                  "path=\nsave_on_stop=%s\nsnap_on_start=%s\nrevisions_to_keep=%llu\n"
                  "ephemeral=%s\nis_outdated=%s\nrevision=%llu\nused_revision=%llu\n",
                  app_volume_pool(c->app, c->dest, pool_volume_index(vol)), c->dest->uuid, vol,
                  (unsigned long long)(vi.size_bytes ? vi.size_bytes : default_size(vol)),
                  (unsigned long long)vi.usage_bytes, vi.source_uuid,
                  vi.save_on_stop ? "True" : "False", vi.snap_on_start ? "True" : "False",
                  (unsigned long long)vi.revisions_to_keep, is_volatile ? "True" : "False",
                  vi.in_use && vi.used_revision != vi.revision ? "True" : "False",
                  (unsigned long long)vi.revision, (unsigned long long)vi.used_revision);
    return 0;
}

#define MAX_REVISIONS 256

static int list_snapshots(struct api_call *c) {
    struct backend_volume_revision revs[MAX_REVISIONS];
    size_t n = 0;
    if (check_volume(c) < 0 || dispatcher_volume_revisions(c->dispatcher, c->dest, c->req->arg,
                                                           revs, MAX_REVISIONS, &n, c->err) < 0)
        return -1;
    for (size_t i = 0; i < n && i < MAX_REVISIONS; i++)
        strbuf_printf(c->out, "%llu\n", (unsigned long long)revs[i].revision);
    return 0;
}

static int change(struct api_call *c, enum backend_volume_op op, uint64_t value,
                  const struct qube *src) {
    struct backend_volume_change ch = {.op = op, .volume = c->req->arg, .value = value};
    if (dispatcher_volume_change(c->dispatcher, c->dest, &ch, src, c->err) < 0)
        return -1;
    /* new content: the preloads of (or based on) this qube are made of the old one */
    bool content = op == BACKEND_VOLUME_CLONE || op == BACKEND_VOLUME_REVERT ||
                   op == BACKEND_VOLUME_CLEAR;
    if (content && c->preload)
        preload_qube_halted(c->preload, c->dest->name);
    return 0;
}

/* The payload as a trimmed ASCII string (qubesd strips it too). */
static int payload_text(struct api_call *c, char *buf, size_t size) {
    size_t len = c->req->payload_len;
    const char *p = (const char *)c->req->payload;
    while (len && (p[len - 1] == '\n' || p[len - 1] == ' ' || p[len - 1] == '\r'))
        len--;
    while (len && (*p == ' ' || *p == '\n')) {
        p++;
        len--;
    }
    if (len >= size)
        return qerr_set(c->err, EXC_PROTOCOL, "Payload too long");
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)p[i] < 0x20 || (unsigned char)p[i] > 0x7e)
            return qerr_set(c->err, EXC_PROTOCOL, "Payload contains non-ASCII characters");
    memcpy(buf, p, len);
    buf[len] = '\0';
    return 0;
}

/* A decimal number as qubesd's validate_number takes it. */
static int payload_number(struct api_call *c, const char *what, uint64_t *out) {
    char buf[32];
    if (payload_text(c, buf, sizeof(buf)) < 0)
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(buf, &end, 10);
    if (!*buf || *end || errno || buf[0] == '-' || buf[0] == '+')
        return qerr_set(c->err, EXC_PROTOCOL, "Invalid %s", what);
    *out = v;
    return 0;
}

static int revert(struct api_call *c) {
    char rev[64];
    if (check_volume(c) < 0 || payload_text(c, rev, sizeof(rev)) < 0)
        return -1;
    if (!*rev || strspn(rev, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                             "0123456789:-_.") != strlen(rev))
        return qerr_set(c->err, EXC_PERMISSION,
                        "Revision name must be in safe set: letters, digits, ':-_.'");
    char *end;
    unsigned long long n = strtoull(rev, &end, 10);
    if (*end || n == 0)
        return qerr_set(c->err, "QubesVolumeRevisionNotFoundError",
                        "Revision %s of volume %s of '%s' not found", rev, c->req->arg,
                        c->dest->name);
    int r = change(c, BACKEND_VOLUME_REVERT, n, NULL);
    if (r < 0 && strstr(c->err->msg, "is not kept"))
        c->err->exc = "QubesVolumeRevisionNotFoundError";
    return r;
}

/* ---- clone: a token from CloneFrom names the source volume for one CloneTo ---- */

#define CLONE_TOKEN_LEN 32
#define CLONE_PENDING_MAX 64

struct clone_pending {
    char token[CLONE_TOKEN_LEN + 1];
    char src_uuid[37];
    char volume[16];
};
/* The daemon is single-threaded; a token lives until used or pushed out by newer ones
 * (a client that never came back). */
static struct clone_pending pending[CLONE_PENDING_MAX];
static size_t pending_next;

static void random_token(char out[CLONE_TOKEN_LEN + 1]) {
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    unsigned char b[CLONE_TOKEN_LEN];
    if (getrandom(b, sizeof(b), 0) != sizeof(b))
        abort(); /* the kernel's CSPRNG never fails once booted */
    for (size_t i = 0; i < CLONE_TOKEN_LEN; i++)
        out[i] = alphabet[b[i] % (sizeof(alphabet) - 1)];
    out[CLONE_TOKEN_LEN] = '\0';
}

static int clone_from(struct api_call *c) {
    if (check_volume(c) < 0)
        return -1;
    struct clone_pending *p = &pending[pending_next++ % CLONE_PENDING_MAX];
    random_token(p->token);
    snprintf(p->src_uuid, sizeof(p->src_uuid), "%s", c->dest->uuid);
    snprintf(p->volume, sizeof(p->volume), "%s", c->req->arg);
    strbuf_puts(c->out, p->token);
    return 0;
}

static struct clone_pending *take_token(const char *token) {
    for (size_t i = 0; i < CLONE_PENDING_MAX; i++)
        if (pending[i].token[0] && strcmp(pending[i].token, token) == 0)
            return &pending[i];
    return NULL;
}

static struct qube *find_uuid(const struct app *app, const char *uuid) {
    for (size_t i = 0; i < app->n_qubes; i++)
        if (strcmp(app->qubes[i]->uuid, uuid) == 0)
            return app->qubes[i];
    return NULL;
}

static int clone_to(struct api_call *c) {
    char token[64];
    if (check_volume(c) < 0 || payload_text(c, token, sizeof(token)) < 0)
        return -1;
    struct clone_pending *p = take_token(token);
    if (!p)
        return qerr_set(c->err, "QubesVolumeCopyTokenNotFoundError",
                        "Token to clone volume of qube was not found");
    struct clone_pending src = *p;
    *p = (struct clone_pending){0}; /* one use, whatever happens next */
    const struct qube *from = find_uuid(c->app, src.src_uuid);
    if (!from)
        return qerr_set(c->err, "QubesVolumeNotFoundError",
                        "The qube whose volume %s was to be cloned is gone", src.volume);
    if (strcmp(src.volume, c->req->arg) != 0)
        return qerr_set(c->err, EXC_VALUE,
                        "Cannot clone volume %s of '%s' into volume %s: only into a volume "
                        "of the same name",
                        src.volume, from->name, c->req->arg);
    if (from == c->dest)
        return qerr_set(c->err, EXC_VALUE, "Cannot clone volume %s of '%s' into itself", src.volume,
                        from->name);
    return change(c, BACKEND_VOLUME_CLONE, 0, from);
}

/* ---- size, clear, configuration ---- */

static int resize(struct api_call *c) {
    uint64_t size;
    struct backend_volume_info vi = {0};
    if (check_volume(c) < 0 || payload_number(c, "volume size", &size) < 0)
        return -1;
    if (strcmp(c->req->arg, "volatile") == 0)
        return qerr_set(c->err, EXC_VALUE,
                        "The volatile volume is scratch, discarded at every stop: it has no "
                        "size to change");
    if (dispatcher_volume_info(c->dispatcher, c->dest, c->req->arg, &vi, c->err) < 0)
        return -1;
    uint64_t cur = vi.size_bytes ? vi.size_bytes : default_size(c->req->arg);
    if (size < cur)
        return qerr_set(c->err, EXC_VALUE,
                        "For your own safety, shrinking of %s is disabled (%llu < %llu)",
                        c->req->arg, (unsigned long long)size, (unsigned long long)cur);
    return change(c, BACKEND_VOLUME_SET_SIZE, size, NULL);
}

static int clear(struct api_call *c) {
    return check_volume(c) < 0 ? -1 : change(c, BACKEND_VOLUME_CLEAR, 0, NULL);
}

static int set_revisions_to_keep(struct api_call *c) {
    uint64_t keep;
    if (check_volume(c) < 0 || payload_number(c, "revisions to keep", &keep) < 0)
        return -1;
    if (keep > MAX_REVISIONS)
        return qerr_set(c->err, EXC_VALUE, "revisions_to_keep must be at most %d", MAX_REVISIONS);
    return change(c, BACKEND_VOLUME_SET_REVISIONS_TO_KEEP, keep, NULL);
}

/* qubes.property.bool's spellings; -1 for none of them. */
static int parse_bool(const char *s) {
    static const char *const yes[] = {"True", "true", "1", "yes", "on"};
    static const char *const no[] = {"False", "false", "0", "no", "off", ""};
    for (size_t i = 0; i < ELEMENTSOF(yes); i++)
        if (strcmp(s, yes[i]) == 0)
            return 1;
    for (size_t i = 0; i < ELEMENTSOF(no); i++)
        if (strcmp(s, no[i]) == 0)
            return 0;
    return -1;
}

/* rw and ephemeral are fixed here: every volume is writable, the volatile one alone is
 * ephemeral (discarded at stop). Setting the value a volume has is no change; the other
 * value is a feature dispenser lacks. */
static int set_fixed_bool(struct api_call *c, const char *what, bool fixed) {
    char buf[16];
    if (check_volume(c) < 0 || payload_text(c, buf, sizeof(buf)) < 0)
        return -1;
    int v = parse_bool(buf);
    if (v < 0)
        return qerr_set(c->err, EXC_PROTOCOL, "Payload is not boolean ASCII");
    if (strcmp(what, "rw") == 0 && c->dest->power != POWER_HALTED)
        return qerr_set(c->err, EXC_VM_NOT_HALTED, "Domain is not powered off: '%s'",
                        c->dest->name);
    if ((bool)v != fixed)
        return qerr_set(c->err, EXC_NOT_IMPLEMENTED,
                        "Volume %s of '%s' cannot be made %s=%s: dispenser's volumes are "
                        "directories with a fixed %s",
                        c->req->arg, c->dest->name, what, v ? "True" : "False", what);
    return 0;
}

static int set_rw(struct api_call *c) { return set_fixed_bool(c, "rw", true); }

static int set_ephemeral(struct api_call *c) {
    return set_fixed_bool(c, "ephemeral", strcmp(c->req->arg, "volatile") == 0);
}

/* ---- import for qvm-template ---- */

/* Filling a volume from the host is root's business: the staging dir is root's, and a
 * socket-group member must not get a path the daemon will shift into a qube. */
static int require_root(struct api_call *c) {
    if (c->peer_uid != 0)
        return qerr_set(c->err, EXC_PERMISSION, "internal.* calls are for root only");
    return check_volume(c);
}

static int import_begin(struct api_call *c) {
    char path[4096];
    if (strcmp(c->req->arg, "volatile") == 0)
        return qerr_set(c->err, EXC_VALUE, "The volatile volume is scratch: nothing to import");
    if (require_root(c) < 0 || dispatcher_import_begin(c->dispatcher, c->dest, c->req->arg, path,
                                                       sizeof(path), c->err) < 0)
        return -1;
    strbuf_puts(c->out, path);
    return 0;
}

static int import_end(struct api_call *c) {
    if (require_root(c) < 0)
        return -1;
    bool ok = c->req->payload_len == 2 && memcmp(c->req->payload, "ok", 2) == 0;
    int r = dispatcher_import_end(c->dispatcher, c->dest, c->req->arg, ok, c->err);
    if (r == 0 && !ok)
        return qerr_set(c->err, EXC_QUBES, "Import of volume %s of '%s' abandoned by the caller",
                        c->req->arg, c->dest->name);
    return r;
}

#define ONE (API_WANTS_ARG | API_NO_PAYLOAD | API_DEST_NOT_ADMINVM)
#define WITH_PAYLOAD (API_WANTS_ARG | API_WANTS_PAYLOAD | API_DEST_NOT_ADMINVM)
const struct api_method API_VOLUME_METHODS[] = {
    {"admin.vm.volume.List", volume_list, API_NO_ARG | API_NO_PAYLOAD},
    {"admin.vm.volume.Info", volume_info, ONE},
    {"admin.vm.volume.ListSnapshots", list_snapshots, ONE},
    {"admin.vm.volume.Revert", revert, WITH_PAYLOAD},
    {"admin.vm.volume.CloneFrom", clone_from, ONE},
    {"admin.vm.volume.CloneTo", clone_to, WITH_PAYLOAD},
    {"admin.vm.volume.Resize", resize, WITH_PAYLOAD},
    {"admin.vm.volume.Clear", clear, ONE},
    {"admin.vm.volume.Set.revisions_to_keep", set_revisions_to_keep, WITH_PAYLOAD},
    {"admin.vm.volume.Set.rw", set_rw, WITH_PAYLOAD},
    {"admin.vm.volume.Set.ephemeral", set_ephemeral, WITH_PAYLOAD},
    {"internal.vm.volume.ImportBegin", import_begin, ONE},
    {"internal.vm.volume.ImportEnd", import_end, API_WANTS_ARG | API_DEST_NOT_ADMINVM},
    {NULL, NULL, 0},
};
