/* admin.label.*, admin.vmclass.List and admin.vm.notes.* */
#include <string.h>

#include "api.h"
#include "labels.h"

static int label_list(struct api_call *c) {
    for (size_t i = 0; i < ELEMENTSOF(LABELS); i++)
        api_put_line(c->out, LABELS[i].name);
    return 0;
}

static const struct label *find_label(struct api_call *c) {
    const struct label *l = label_find(c->req->arg);
    if (!l)
        qerr_set(c->err, EXC_LABEL_NOT_FOUND, "Label does not exist: %s", c->req->arg);
    return l;
}

static int label_get(struct api_call *c) {
    const struct label *l = find_label(c);
    if (l)
        strbuf_puts(c->out, l->color);
    return l ? 0 : -1;
}

static int label_index(struct api_call *c) {
    const struct label *l = find_label(c);
    if (l)
        strbuf_printf(c->out, "%d", l->index);
    return l ? 0 : -1;
}

static int vmclass_list(struct api_call *c) {
    for (int k = 0; k < QUBE_CLASS_COUNT; k++) /* the enum is in alphabetical order */
        api_put_line(c->out, qube_class_name((enum qube_class)k));
    return 0;
}

#define BARE (API_NO_ARG | API_NO_PAYLOAD | API_DEST_ADMINVM)
#define ONE (API_WANTS_ARG | API_NO_PAYLOAD | API_DEST_ADMINVM)
static int notes_get(struct api_call *c) {
    if (c->dest->notes)
        strbuf_puts(c->out, c->dest->notes);
    return 0;
}

/* The payload may be empty: that deletes the notes (qvm-notes --delete). */
static int notes_set(struct api_call *c) {
    if (c->req->payload_len > APP_NOTES_MAX)
        return qerr_set(c->err, EXC_PROTOCOL, "Maximum note size is %d bytes (%zu bytes received)",
                        APP_NOTES_MAX, c->req->payload_len);
    if (memchr(c->req->payload, '\0', c->req->payload_len))
        return qerr_set(c->err, EXC_PROTOCOL, "Unable to sanitise qube notes: a NUL byte");
    _cleanup_free_ char *text = c->req->payload_len
                                    ? xstrndup((const char *)c->req->payload, c->req->payload_len)
                                    : xstrdup("");
    return app_notes_set(c->app, c->dest, text, c->err);
}

const struct api_method API_MISC_METHODS[] = {
    {"admin.label.List", label_list, BARE},
    {"admin.label.Get", label_get, ONE},
    {"admin.label.Index", label_index, ONE},
    {"admin.vmclass.List", vmclass_list, BARE},
    {"admin.vm.notes.Get", notes_get, API_NO_ARG | API_NO_PAYLOAD | API_DEST_NOT_ADMINVM},
    {"admin.vm.notes.Set", notes_set, API_NO_ARG | API_DEST_NOT_ADMINVM},
    {NULL, NULL, 0},
};
