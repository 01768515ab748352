/* The attach of a host block device to a running qube, shared by Attach and by a start,
 * and what a qube's persistent assignments do when it starts (docs/devices.md):
 *
 * - before the start, every "required" device must be offered by dom0 and free, and the
 *   qube's engine able to take it; else the start fails with qubesd's QubesException
 *   ("Block device dom0:loop0:... not available") and nothing starts;
 * - once the engine reports the qube started, and before domain-start (so before
 *   qvm-start returns), the assigned devices offered and free are attached, the most
 *   specific assignment first as in qubesd (port and identity, port, identity, any). An
 *   "auto-attach" one that cannot be is skipped with a log line; a required one that fails
 *   now (taken in between, the engine refused) fails the start. "ask-to-attach" would
 *   ask a GUI qube, which dispenser has not: it is skipped with a log line. */
#include "device_assign.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dispatcher.h"
#include "log.h"
#include "names.h"

/* ---- serialisation ---- */

void device_put_prop(struct strbuf *out, const char *key, const char *value) {
    strbuf_printf(out, " %s='", key);
    for (const char *p = value; *p; p++) {
        if (*p == '\'')
            strbuf_putc(out, '\\');
        strbuf_putc(out, *p);
    }
    strbuf_putc(out, '\'');
}

static bool key_char(char ch) { return ch > ' ' && ch < 0x7f && ch != '=' && ch != '\''; }

int device_props_each(const char *p, size_t len, device_prop_fn fn, void *ctx, struct qerr *err) {
    const char *end = p + len;
    if (!text_is_printable_ascii(p, len))
        return qerr_set(err, EXC_PROTOCOL, "Assignment contains non-ASCII characters");
    char key[64], value[256];
    while (p < end) {
        while (p < end && *p == ' ')
            p++;
        if (p == end)
            break;
        size_t k = 0;
        while (p < end && key_char(*p) && k + 1 < sizeof(key))
            key[k++] = *p++;
        key[k] = '\0';
        if (!k || end - p < 2 || p[0] != '=' || p[1] != '\'')
            return qerr_set(err, EXC_PROTOCOL, "Invalid assignment: expected key='value'");
        p += 2;
        size_t v = 0;
        for (; p < end && *p != '\'' && v + 1 < sizeof(value); p++)
            value[v++] = (*p == '\\' && p + 1 < end && p[1] == '\'') ? *++p : *p;
        value[v] = '\0';
        if (p == end || *p != '\'')
            return qerr_set(err, EXC_PROTOCOL, "Invalid assignment: unterminated value");
        p++;
        if (fn(ctx, key, value, err) < 0)
            return -1;
    }
    return 0;
}

int block_option_set(struct block_options *o, const char *key, const char *value,
                     struct qerr *err) {
    if (strcmp(key, "_read-only") == 0) {
        bool yes = !strcasecmp(value, "yes") || !strcasecmp(value, "true") ||
                   !strcasecmp(value, "on") || !strcmp(value, "1");
        bool no = !strcasecmp(value, "no") || !strcasecmp(value, "false") ||
                  !strcasecmp(value, "off") || !strcmp(value, "0") || !*value;
        if (!yes && !no)
            return qerr_set(err, EXC_VALUE, "Invalid literal for boolean property: '%s'", value);
        o->read_only = yes;
        o->ro_given = true;
        return 0;
    }
    if (strcmp(key, "_frontend-dev") == 0) {
        bool ok = (strncmp(value, "xvd", 3) == 0 || strncmp(value, "sd", 2) == 0) &&
                  strlen(value) < sizeof(o->frontend_dev) &&
                  strspn(value, "abcdefghijklmnopqrstuvwxyz0123456789") == strlen(value);
        if (!ok)
            return qerr_set(err, EXC_VALUE, "Invalid frontend-dev option value: %s", value);
        snprintf(o->frontend_dev, sizeof(o->frontend_dev), "%s", value);
        return 0;
    }
    if (strcmp(key, "_devtype") == 0) {
        if (strcmp(value, "disk") && strcmp(value, "cdrom"))
            return qerr_set(err, EXC_VALUE,
                            "devtype option can only have 'disk' or "
                            "'cdrom' value");
        snprintf(o->devtype, sizeof(o->devtype), "%s", value);
        return 0;
    }
    return qerr_set(err, EXC_VALUE, "Unsupported option %s", key + 1);
}

static int option_of_list(void *ctx, const char *key, const char *value, struct qerr *err) {
    return block_option_set(ctx, key, value, err);
}

int block_options_parse(const char *text, struct block_options *o, struct qerr *err) {
    return device_props_each(text, strlen(text), option_of_list, o, err);
}

void block_options_format(const struct block_options *o, struct strbuf *out) {
    if (o->ro_given)
        device_put_prop(out, "_read-only", o->read_only ? "yes" : "no");
    if (*o->frontend_dev)
        device_put_prop(out, "_frontend-dev", o->frontend_dev);
    if (*o->devtype)
        device_put_prop(out, "_devtype", o->devtype);
}

void block_options_repr(const struct block_options *o, struct strbuf *out) {
    strbuf_putc(out, '{');
    const char *sep = "";
    if (o->ro_given)
        strbuf_printf(out, "%s'read-only': '%s'", sep, o->read_only ? "yes" : "no"), sep = ", ";
    if (*o->frontend_dev)
        strbuf_printf(out, "%s'frontend-dev': '%s'", sep, o->frontend_dev), sep = ", ";
    if (*o->devtype)
        strbuf_printf(out, "%s'devtype': '%s'", sep, o->devtype);
    strbuf_putc(out, '}');
}

static void emit_device(struct dispatcher *disp, const struct qube *q, const char *event,
                        const struct block_host_dev *dev, const struct block_options *o) {
    char device[128];
    snprintf(device, sizeof(device), "dom0:%s:%s", dev->port_id, dev->device_id);
    _cleanup_strbuf_ struct strbuf opts = STRBUF_INIT;
    block_options_repr(o, &opts);
    struct wire_kv kv[] = {{"device", device}, {"options", strbuf_str(&opts)}};
    app_emit(dispatcher_app(disp), q, event, kv, 2);
}

/* ---- the attach ---- */

static const struct block_attachment *attachment_of(struct dispatcher *disp, const char *port) {
    size_t n;
    const struct block_attachment *a = dispatcher_block_attachments(disp, &n);
    for (size_t i = 0; i < n; i++)
        if (strcmp(a[i].port_id, port) == 0)
            return &a[i];
    return NULL;
}

/* Qubes' frontends for extra disks: xvdi and on (xvda-d are the qube's own). */
static void free_frontend(struct dispatcher *disp, const struct qube *q, char *out, size_t size) {
    size_t n;
    const struct block_attachment *a = dispatcher_block_attachments(disp, &n);
    for (char l = 'i'; l <= 'z'; l++) {
        snprintf(out, size, "xvd%c", l);
        bool used = false;
        for (size_t i = 0; i < n && !used; i++)
            used = strcmp(a[i].frontend, q->name) == 0 && strcmp(a[i].frontend_dev, out) == 0;
        if (!used)
            return;
    }
    out[0] = '\0';
}

int block_attach_device(struct dispatcher *disp, struct qube *q, const struct block_host_dev *dev,
                        const struct block_options *given, struct qerr *err) {
    struct block_options o = *given;
    if (!o.ro_given)
        o.read_only = dev->read_only;
    if (!o.read_only && dev->read_only)
        return qerr_set(err, EXC_VALUE, "This device can be attached only read-only");
    const struct block_attachment *other = attachment_of(disp, dev->port_id);
    if (other)
        return qerr_set(err, EXC_DEVICE_ALREADY_ATTACHED,
                        "Device dom0:%s:%s already attached to %s", dev->port_id, dev->device_id,
                        other->frontend);
    struct block_attachment a = {.read_only = o.read_only,
                                 .major = dev->major,
                                 .minor = dev->minor};
    snprintf(a.frontend, sizeof(a.frontend), "%s", q->name);
    snprintf(a.port_id, sizeof(a.port_id), "%s", dev->port_id);
    snprintf(a.device_id, sizeof(a.device_id), "%s", dev->device_id);
    if (*o.frontend_dev)
        snprintf(a.frontend_dev, sizeof(a.frontend_dev), "%s", o.frontend_dev);
    else
        free_frontend(disp, q, a.frontend_dev, sizeof(a.frontend_dev));
    if (!*a.frontend_dev)
        return qerr_set(err, EXC_QUBES, "No free frontend name left in '%s'", q->name);
    emit_device(disp, q, "device-pre-attach:block", dev, given);
    if (dispatcher_block_attach(disp, q, &a, err) < 0)
        return -1;
    o.ro_given = true;
    snprintf(o.frontend_dev, sizeof(o.frontend_dev), "%s", a.frontend_dev);
    emit_device(disp, q, "device-attach:block", dev, &o);
    return 0;
}

/* ---- assignments at a start ---- */

bool assignment_matches(const struct device_assignment *a, const struct block_host_dev *dev) {
    return strcmp(a->devclass, "block") == 0 && strcmp(a->backend, "dom0") == 0 &&
           (strcmp(a->port_id, "*") == 0 || strcmp(a->port_id, dev->port_id) == 0) &&
           (strcmp(a->device_id, "*") == 0 || strcmp(a->device_id, dev->device_id) == 0);
}

/* The offered device a required assignment names, free or attached to q. */
static const struct block_host_dev *usable_device(struct dispatcher *disp, const struct qube *q,
                                                  const struct device_assignment *a,
                                                  const struct block_host_dev *devs, size_t n) {
    for (size_t i = 0; i < n; i++) {
        const struct block_attachment *at = attachment_of(disp, devs[i].port_id);
        if (assignment_matches(a, &devs[i]) && (!at || strcmp(at->frontend, q->name) == 0))
            return &devs[i];
    }
    return NULL;
}

int devices_check_required(struct dispatcher *disp, const struct qube *q, struct qerr *err) {
    struct block_host_dev *devs = NULL;
    size_t n = 0;
    bool listed = false;
    int r = 0;
    for (size_t i = 0; i < q->n_assignments && r == 0; i++) {
        const struct device_assignment *a = &q->assignments[i];
        if (strcmp(a->mode, "required") || strcmp(a->devclass, "block"))
            continue;
        if (!dispatcher_can_take_blocks(disp, q, err)) {
            r = -1;
            break;
        }
        if (!listed)
            n = block_host_list(&devs), listed = true;
        if (!usable_device(disp, q, a, devs, n))
            r = qerr_set(err, EXC_QUBES, "Block device %s:%s:%s not available", a->backend,
                         a->port_id, a->device_id);
    }
    free(devs);
    return r;
}

/* Most specific first: port and identity, port only, identity only, any. */
static int specificity(const struct device_assignment *a) {
    return (strcmp(a->port_id, "*") == 0) * 2 + (strcmp(a->device_id, "*") == 0);
}

static int attach_one(struct dispatcher *disp, struct qube *q, const struct device_assignment *a,
                      const struct block_host_dev *devs, size_t n, struct qerr *err) {
    struct block_options o = {0};
    if (block_options_parse(a->options, &o, err) < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (!assignment_matches(a, &devs[i]) || attachment_of(disp, devs[i].port_id))
            continue; /* attached already: by a more specific assignment, or elsewhere */
        if (strcmp(a->mode, "ask-to-attach") == 0) {
            log_info("%s: dom0:%s is assigned ask-to-attach and no GUI qube can ask: not "
                     "attached",
                     q->name, devs[i].port_id);
            continue;
        }
        if (block_attach_device(disp, q, &devs[i], &o, err) < 0)
            return -1;
        if (strcmp(a->port_id, "*")) /* one port, one device */
            break;
    }
    return 0;
}

int devices_attach_assigned(struct dispatcher *disp, struct qube *q, struct qerr *err) {
    bool any = false;
    for (size_t i = 0; i < q->n_assignments; i++)
        any |= strcmp(q->assignments[i].devclass, "block") == 0;
    if (!any)
        return 0;
    struct qerr none = {0};
    if (!dispatcher_can_take_blocks(disp, q, &none)) {
        log_info("%s: its assigned block devices are not attached: %s", q->name, none.msg);
        return 0;
    }
    struct block_host_dev *devs = NULL;
    size_t n = block_host_list(&devs);
    int r = 0;
    for (int rank = 0; rank < 4 && r == 0; rank++)
        for (size_t i = 0; i < q->n_assignments && r == 0; i++) {
            const struct device_assignment *a = &q->assignments[i];
            if (strcmp(a->devclass, "block") || specificity(a) != rank)
                continue;
            struct qerr why = {0};
            if (attach_one(disp, q, a, devs, n, &why) == 0)
                continue;
            if (strcmp(a->mode, "required") == 0)
                r = qerr_set(err, why.exc, "%s", why.msg);
            else
                log_warning("%s: assigned block device %s:%s:%s skipped: %s", q->name, a->backend,
                            a->port_id, a->device_id, why.msg);
        }
    for (size_t i = 0; i < q->n_assignments && r == 0; i++) {
        const struct device_assignment *a = &q->assignments[i];
        bool found = false;
        for (size_t k = 0; k < n && !found; k++)
            found = assignment_matches(a, &devs[k]);
        if (!found && strcmp(a->devclass, "block") == 0)
            log_info("%s: assigned block device %s:%s:%s not available, skipping", q->name,
                     a->backend, a->port_id, a->device_id);
    }
    free(devs);
    return r;
}
