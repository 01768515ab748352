/* admin.vm.volume.List / Info, and the internal import pair qvm-template uses (as
 * Qubes' internal.vm.volume.ImportBegin/End: the caller fills a directory we hand out). */
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "dispatcher.h"

static const char *const VOLUMES[] = {"private", "root", "volatile"};

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

/* Qubes' key=value lines, plus `revision` (the current one) and `is_outdated` telling
 * whether a running qube's view is older than the current revision. */
static int volume_info(struct api_call *c) {
    if (check_volume(c) < 0)
        return -1;
    struct backend_volume_info vi = {.want_usage = true};
    bool is_volatile = strcmp(c->req->arg, "volatile") == 0;
    if (!is_volatile &&
        dispatcher_volume_info(c->dispatcher, c->dest, c->req->arg, &vi, c->err) < 0)
        return -1;
    strbuf_printf(c->out,
                  "pool=dispenser\nvid=%s/%s\nrw=True\nsave_on_stop=%s\n"
                  "snap_on_start=%s\nsource=%s\nrevision=%llu\nused_revision=%llu\n"
                  "usage=%llu\nis_outdated=%s\nrevisions_to_keep=0\nephemeral=%s\n",
                  c->dest->uuid, c->req->arg, vi.save_on_stop ? "True" : "False",
                  vi.snap_on_start ? "True" : "False", vi.source_uuid,
                  (unsigned long long)vi.revision, (unsigned long long)vi.used_revision,
                  (unsigned long long)vi.usage_bytes,
                  vi.in_use && vi.used_revision != vi.revision ? "True" : "False",
                  is_volatile ? "True" : "False");
    return 0;
}

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
const struct api_method API_VOLUME_METHODS[] = {
    {"admin.vm.volume.List", volume_list, API_NO_ARG | API_NO_PAYLOAD},
    {"admin.vm.volume.Info", volume_info, ONE},
    {"internal.vm.volume.ImportBegin", import_begin, ONE},
    {"internal.vm.volume.ImportEnd", import_end, API_WANTS_ARG | API_DEST_NOT_ADMINVM},
    {NULL, NULL, 0},
};
