/* admin.deviceclass.List and admin.vm.device.<class>.{Available,Assigned,Attached,Attach,
 * Detach} (docs/devices.md). Block devices are real: dom0 offers the host's loop devices
 * and removable disks nobody on the host uses (block_host.h), a running qube is given
 * one by its engine. The other classes Qubes has (pci, usb, mic) list nothing here.
 * A block device can also be assigned (Assign, Unassign, Set.assignment, Assigned): kept
 * in the database and attached at every start (device_assign.c).
 *
 * Wire format as qubesd's: a device is "<port_id>:<device_id> <properties>", a property
 * key='value' (a ' inside escaped as \'), options of an assignment keyed "_name". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "block_host.h"
#include "device_assign.h"
#include "dispatcher.h"
#include "names.h"

/* In qubesd's order: its own classes first, then those of the USB proxy and audio. */
static const char *const CLASSES[] = {"pci", "block", "usb", "mic"};

static int deviceclass_list(struct api_call *c) {
    for (size_t i = 0; i < ELEMENTSOF(CLASSES); i++)
        api_put_line(c->out, CLASSES[i]);
    return 0;
}

/* The class in "admin.vm.device.<class>.<op>". */
static bool method_class_is(const struct api_call *c, const char *cls) {
    const char *m = c->req->method + strlen("admin.vm.device.");
    size_t n = strlen(cls);
    return strncmp(m, cls, n) == 0 && m[n] == '.';
}

/* ---- serialisation ---- */

static void put_device_props(struct strbuf *out, const char *port, const char *devid) {
    device_put_prop(out, "device_id", devid);
    device_put_prop(out, "port_id", port);
    device_put_prop(out, "devclass", "block");
    device_put_prop(out, "backend_domain", "dom0");
}

static const struct block_attachment *attachment_of(const struct api_call *c, const char *port) {
    size_t n;
    const struct block_attachment *a = dispatcher_block_attachments(c->dispatcher, &n);
    for (size_t i = 0; i < n; i++)
        if (strcmp(a[i].port_id, port) == 0)
            return &a[i];
    return NULL;
}

static void put_available(const struct api_call *c, const struct block_host_dev *d) {
    strbuf_printf(c->out, "%s:%s", d->port_id, d->device_id);
    put_device_props(c->out, d->port_id, d->device_id);
    device_put_prop(c->out, "manufacturer", "hosted by dom0");
    if (*d->name)
        device_put_prop(c->out, "name", d->name);
    if (*d->serial)
        device_put_prop(c->out, "serial", d->serial);
    const struct block_attachment *a = attachment_of(c, d->port_id);
    if (a)
        device_put_prop(c->out, "attachment", a->frontend);
    device_put_prop(c->out, "interfaces", "b******");
    if (*d->parent) {
        device_put_prop(c->out, "parent_port_id", d->parent);
        device_put_prop(c->out, "parent_devclass", "block");
    }
    strbuf_putc(c->out, '\n');
}

/* dest: the backend. Only dom0 offers block devices; an argument picks one port. */
static int device_available(struct api_call *c) {
    if (!method_class_is(c, "block") || c->dest->klass != QUBE_ADMINVM)
        return 0;
    struct block_host_dev *devs;
    size_t n = block_host_list(&devs);
    for (size_t i = 0; i < n; i++)
        if (!*c->req->arg || strcmp(c->req->arg, devs[i].port_id) == 0)
            put_available(c, &devs[i]);
    free(devs);
    return 0;
}

/* An attached device is listed with the mode of the assignment that matches it, as
 * qubesd's; "manual" when none does. */
static const char *attached_mode(const struct qube *q, const struct block_attachment *a) {
    struct block_host_dev dev = {0};
    snprintf(dev.port_id, sizeof(dev.port_id), "%s", a->port_id);
    snprintf(dev.device_id, sizeof(dev.device_id), "%s", a->device_id);
    for (size_t i = 0; i < q->n_assignments; i++)
        if (assignment_matches(&q->assignments[i], &dev))
            return q->assignments[i].mode;
    return "manual";
}

/* dest: the frontend; an argument "<backend>+<port_id>" picks one. */
static int device_attached(struct api_call *c) {
    if (!method_class_is(c, "block"))
        return 0;
    size_t n;
    const struct block_attachment *a = dispatcher_block_attachments(c->dispatcher, &n);
    /* sorted output as qubesd's: by port id (one backend) */
    const struct block_attachment **v = xcalloc(n + 1, sizeof(*v));
    size_t k = 0;
    char want[128];
    for (size_t i = 0; i < n; i++) {
        snprintf(want, sizeof(want), "dom0+%s", a[i].port_id);
        if (strcmp(a[i].frontend, c->dest->name) == 0 &&
            (!*c->req->arg || strcmp(c->req->arg, want) == 0))
            v[k++] = &a[i];
    }
    for (size_t i = 1; i < k; i++)
        for (size_t j = i; j > 0 && strcmp(v[j - 1]->port_id, v[j]->port_id) > 0; j--) {
            const struct block_attachment *t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    for (size_t i = 0; i < k; i++) {
        strbuf_printf(c->out, "dom0+%s:%s", v[i]->port_id, v[i]->device_id);
        put_device_props(c->out, v[i]->port_id, v[i]->device_id);
        device_put_prop(c->out, "mode", attached_mode(c->dest, v[i]));
        device_put_prop(c->out, "frontend_domain", v[i]->frontend);
        device_put_prop(c->out, "_read-only", v[i]->read_only ? "yes" : "no");
        device_put_prop(c->out, "_frontend-dev", v[i]->frontend_dev);
        strbuf_putc(c->out, '\n');
    }
    free(v);
    return 0;
}

/* ---- the argument: <backend>+<port_id>+<device_id> ("_" for any) ---- */

struct device_arg {
    char backend[32], port[32], devid[64];
};

static int parse_device_arg(const char *arg, struct device_arg *d, struct qerr *err) {
    const char *plus = strchr(arg, '+');
    if (!plus || (size_t)(plus - arg) >= sizeof(d->backend))
        return qerr_set(err, EXC_PROTOCOL,
                        "Invalid device argument: expected "
                        "<backend>+<port_id>[+<device_id>]");
    snprintf(d->backend, sizeof(d->backend), "%.*s", (int)(plus - arg), arg);
    const char *rest = plus + 1, *sep = rest + strcspn(rest, "+:");
    if ((size_t)(sep - rest) >= sizeof(d->port) || strlen(*sep ? sep + 1 : sep) >= sizeof(d->devid))
        return qerr_set(err, EXC_PROTOCOL, "Device argument too long");
    snprintf(d->port, sizeof(d->port), "%.*s", (int)(sep - rest), rest);
    snprintf(d->devid, sizeof(d->devid), "%s", *sep ? sep + 1 : "");
    for (char *p = d->devid; *p; p++)
        if (*p == '+')
            *p = ':';
    if (strcmp(d->port, "_") == 0)
        strcpy(d->port, "*");
    if (strcmp(d->devid, "_") == 0 || !*d->devid)
        strcpy(d->devid, "*");
    return 0;
}

/* The device of the argument: dom0's, offered now, with that identity. */
static int find_device(struct api_call *c, struct device_arg *arg, struct block_host_dev *dev) {
    if (parse_device_arg(c->req->arg, arg, c->err) < 0)
        return -1;
    if (strcmp(arg->backend, "_") && !app_lookup(c->app, arg->backend, c->err))
        return -1;
    const char *cls = c->req->method + strlen("admin.vm.device.");
    if (!method_class_is(c, "block") || strcmp(arg->backend, "dom0") ||
        block_host_find(arg->port, dev) < 0)
        return qerr_set(c->err, EXC_PROTOCOL, "Cannot attach unknown %.*s device.",
                        (int)strcspn(cls, "."), cls);
    if (strcmp(arg->devid, "*") && strcmp(arg->devid, dev->device_id))
        return qerr_set(c->err, EXC_PROTOCOL, "Unrecognized device identity '%s' expected '%s'",
                        arg->devid, dev->device_id);
    return 0;
}

/* ---- the payload: a serialised assignment ---- */

/* What the payload must name (the argument's device; "*" takes what the payload says)
 * and what it says. */
struct payload {
    char port[32], devid[64];
    char mode[16];
    struct block_options o;
};

static int payload_prop(void *ctx, const char *key, const char *value, struct qerr *err) {
    struct payload *p = ctx;
    if (strcmp(key, "backend_domain") == 0 || strcmp(key, "port_id") == 0 ||
        strcmp(key, "devclass") == 0) {
        const char *want = key[0] == 'b' ? "dom0" : key[0] == 'p' ? p->port : "block";
        if (strcmp(value, want))
            return qerr_set(err, EXC_PROTOCOL, "Unexpected %s '%s', expected '%s'", key, value,
                            want);
        return 0;
    }
    if (strcmp(key, "device_id") == 0) {
        if (strcmp(p->devid, "*") && strcmp(value, p->devid))
            return qerr_set(err, EXC_PROTOCOL, "Unrecognized device identity '%s' expected '%s'",
                            value, p->devid);
        if (strlen(value) >= sizeof(p->devid))
            return qerr_set(err, EXC_PROTOCOL, "Device identity too long");
        snprintf(p->devid, sizeof(p->devid), "%s", value);
        return 0;
    }
    if (strcmp(key, "mode") == 0) {
        static const char *const modes[] = {"manual", "auto-attach", "ask-to-attach", "required"};
        for (size_t i = 0; i < ELEMENTSOF(modes); i++)
            if (strcmp(value, modes[i]) == 0) {
                snprintf(p->mode, sizeof(p->mode), "%s", value);
                return 0;
            }
        return qerr_set(err, EXC_PROTOCOL, "'%s' is not a valid AssignmentMode", value);
    }
    if (strcmp(key, "frontend_domain") == 0)
        return 0; /* the destination's (checked by the caller where it matters) */
    if (key[0] == '_')
        return block_option_set(&p->o, key, value, err);
    return qerr_set(err, EXC_PROTOCOL, "Unexpected device property '%s'", key);
}

static int parse_payload(struct api_call *c, const struct device_arg *arg, struct payload *p) {
    *p = (struct payload){.mode = "manual"};
    snprintf(p->port, sizeof(p->port), "%s", arg->port);
    snprintf(p->devid, sizeof(p->devid), "%s", arg->devid);
    return device_props_each((const char *)c->req->payload, c->req->payload_len, payload_prop, p,
                             c->err);
}

/* ---- attach, detach ---- */

static int device_attach(struct api_call *c) {
    struct device_arg arg;
    struct block_host_dev dev;
    struct payload p;
    if (c->dest->klass == QUBE_ADMINVM)
        return qerr_set(c->err, EXC_QUBES, "dom0 cannot take devices: it is the backend");
    if (c->dest->power == POWER_HALTED)
        return qerr_set(c->err, EXC_VM_NOT_RUNNING,
                        "VM not running, cannot attach device, do you mean `assign`?");
    if (find_device(c, &arg, &dev) < 0)
        return -1;
    snprintf(arg.devid, sizeof(arg.devid), "%s", dev.device_id);
    if (parse_payload(c, &arg, &p) < 0)
        return -1;
    return block_attach_device(c->dispatcher, c->dest, &dev, &p.o, c->err);
}

static int device_detach(struct api_call *c) {
    struct device_arg arg;
    if (parse_device_arg(c->req->arg, &arg, c->err) < 0)
        return -1;
    if (strcmp(arg.backend, "_") && !app_lookup(c->app, arg.backend, c->err))
        return -1;
    const struct block_attachment *a = attachment_of(c, arg.port);
    if (!method_class_is(c, "block") || strcmp(arg.backend, "dom0") || !a ||
        strcmp(a->frontend, c->dest->name))
        return qerr_set(c->err, EXC_DEVICE_NOT_ASSIGNED, "%.*s device %s not attached to %s",
                        (int)strcspn(c->req->method + strlen("admin.vm.device."), "."),
                        c->req->method + strlen("admin.vm.device."), arg.port, c->dest->name);
    const struct device_assignment *req = NULL;
    struct block_host_dev now = {0};
    snprintf(now.port_id, sizeof(now.port_id), "%s", a->port_id);
    snprintf(now.device_id, sizeof(now.device_id), "%s", a->device_id);
    for (size_t i = 0; i < c->dest->n_assignments && !req; i++)
        if (!strcmp(c->dest->assignments[i].mode, "required") &&
            assignment_matches(&c->dest->assignments[i], &now))
            req = &c->dest->assignments[i];
    if (req)
        return qerr_set(c->err, EXC_VM_NOT_HALTED,
                        "Can not detach a required device from a non halted qube. You need to "
                        "unassign device first.");
    char port[64];
    snprintf(port, sizeof(port), "dom0:%s", arg.port);
    struct wire_kv kv = {"port", port};
    app_emit(c->app, c->dest, "device-pre-detach:block", &kv, 1);
    if (dispatcher_block_detach(c->dispatcher, c->dest, arg.port, c->err) < 0)
        return -1;
    app_emit(c->app, c->dest, "device-detach:block", &kv, 1);
    return 0;
}

/* ---- persistent assignments ---- */

/* "<backend>+<port>:<devid>" and the properties of one assignment, as Assigned lists it. */
static void put_assignment(const struct api_call *c, const struct device_assignment *a,
                           struct strbuf *out) {
    strbuf_printf(out, "%s+%s:%s", a->backend, a->port_id, a->device_id);
    device_put_prop(out, "device_id", a->device_id);
    device_put_prop(out, "port_id", a->port_id);
    device_put_prop(out, "devclass", a->devclass);
    device_put_prop(out, "backend_domain", a->backend);
    device_put_prop(out, "mode", a->mode);
    device_put_prop(out, "frontend_domain", c->dest->name);
    strbuf_puts(out, a->options);
    strbuf_putc(out, '\n');
}

static int cmp_str(const void *x, const void *y) {
    return strcmp(*(char *const *)x, *(char *const *)y);
}

/* dest: the frontend; an argument "<backend>+<port_id>" picks one. Sorted as qubesd's. */
static int device_assigned(struct api_call *c) {
    size_t n = 0;
    char **lines = xcalloc(c->dest->n_assignments + 1, sizeof(*lines));
    for (size_t i = 0; i < c->dest->n_assignments; i++) {
        const struct device_assignment *a = &c->dest->assignments[i];
        char key[128];
        snprintf(key, sizeof(key), "%s+%s", a->backend, a->port_id);
        if (!method_class_is(c, a->devclass) || (*c->req->arg && strcmp(c->req->arg, key)))
            continue;
        struct strbuf line = STRBUF_INIT;
        put_assignment(c, a, &line);
        lines[n++] = xstrdup(strbuf_str(&line));
        strbuf_free(&line);
    }
    qsort(lines, n, sizeof(*lines), cmp_str);
    for (size_t i = 0; i < n; i++) {
        strbuf_puts(c->out, lines[i]);
        free(lines[i]);
    }
    free(lines);
    return 0;
}

/* The argument's device, for an assignment: dom0's, whether offered now or not. */
static int assign_arg(struct api_call *c, struct device_arg *arg) {
    if (parse_device_arg(c->req->arg, arg, c->err) < 0)
        return -1;
    if (strcmp(arg->backend, "_") == 0)
        return qerr_set(c->err, EXC_PROTOCOL, "Invalid device argument: no backend");
    if (!app_lookup(c->app, arg->backend, c->err))
        return -1;
    if (strcmp(arg->backend, "dom0"))
        return qerr_set(c->err, EXC_VALUE, "Only dom0 offers block devices, not '%s'",
                        arg->backend);
    if (c->dest->klass == QUBE_ADMINVM)
        return qerr_set(c->err, EXC_QUBES, "dom0 cannot take devices: it is the backend");
    return 0;
}

static void emit_assignment(struct api_call *c, const char *event, const struct device_arg *arg,
                            const struct block_options *o) {
    char device[160];
    snprintf(device, sizeof(device), "dom0:%s:%s", arg->port, arg->devid);
    _cleanup_strbuf_ struct strbuf opts = STRBUF_INIT;
    if (o)
        block_options_repr(o, &opts);
    struct wire_kv kv[] = {{"device", device}, {"options", strbuf_str(&opts)}};
    app_emit(c->app, c->dest, event, kv, o ? 2 : 1);
}

static int device_assign(struct api_call *c) {
    struct device_arg arg;
    struct payload p;
    if (assign_arg(c, &arg) < 0 || parse_payload(c, &arg, &p) < 0)
        return -1;
    snprintf(arg.devid, sizeof(arg.devid), "%s", p.devid);
    if (strcmp(arg.port, "*") == 0 && strcmp(arg.devid, "*") == 0)
        return qerr_set(c->err, EXC_PROTOCOL,
                        "Cannot assign any device: name a port, an identity or both");
    if (strcmp(p.mode, "manual") == 0)
        return qerr_set(c->err, EXC_VALUE, "Only auto-attachable devices can be assigned.");
    struct device_assignment a = {0};
    snprintf(a.devclass, sizeof(a.devclass), "block");
    snprintf(a.backend, sizeof(a.backend), "%s", arg.backend);
    snprintf(a.port_id, sizeof(a.port_id), "%s", arg.port);
    snprintf(a.device_id, sizeof(a.device_id), "%s", arg.devid);
    snprintf(a.mode, sizeof(a.mode), "%s", p.mode);
    if (app_assignment_find(c->dest, a.devclass, a.backend, a.port_id, a.device_id))
        return qerr_set(c->err, EXC_DEVICE_ALREADY_ASSIGNED,
                        "block device dom0:%s:%s already assigned to %s", a.port_id, a.device_id,
                        c->dest->name);
    _cleanup_strbuf_ struct strbuf opts = STRBUF_INIT;
    block_options_format(&p.o, &opts);
    a.options = (char *)strbuf_str(&opts);
    emit_assignment(c, "device-pre-assign:block", &arg, &p.o);
    if (app_assignment_add(c->app, c->dest, &a, c->err) < 0)
        return -1;
    emit_assignment(c, "device-assign:block", &arg, &p.o);
    return 0;
}

static int device_unassign(struct api_call *c) {
    struct device_arg arg;
    if (assign_arg(c, &arg) < 0)
        return -1;
    struct device_assignment *a = app_assignment_find(c->dest, "block", arg.backend, arg.port,
                                                      arg.devid);
    if (!a)
        return qerr_set(c->err, EXC_DEVICE_NOT_ASSIGNED, "block device %s:%s:%s not assigned to %s",
                        arg.backend, arg.port, arg.devid, c->dest->name);
    if (app_assignment_remove(c->app, c->dest, a, c->err) < 0)
        return -1;
    emit_assignment(c, "device-unassign:block", &arg, NULL);
    return 0;
}

/* The payload is the mode alone: required, ask-to-attach or auto-attach. */
static int device_set_assignment(struct api_call *c) {
    static const char *const modes[] = {"required", "ask-to-attach", "auto-attach"};
    const char *mode = NULL;
    for (size_t i = 0; i < ELEMENTSOF(modes); i++)
        if (c->req->payload_len == strlen(modes[i]) &&
            memcmp(c->req->payload, modes[i], c->req->payload_len) == 0)
            mode = modes[i];
    if (!mode)
        return qerr_set(c->err, EXC_UNRECOGNIZED_ASSIGNMENT_MODE, "Invalid assignment mode");
    struct device_arg arg;
    if (assign_arg(c, &arg) < 0)
        return -1;
    struct device_assignment *a = app_assignment_find(c->dest, "block", arg.backend, arg.port,
                                                      arg.devid);
    if (!a)
        return qerr_set(c->err, EXC_VALUE, "Device %s:%s:%s not assigned to %s", arg.backend,
                        arg.port, arg.devid, c->dest->name);
    if (strcmp(a->mode, mode) == 0)
        return 0;
    struct block_options o = {0};
    struct qerr stored = {0}; /* checked when assigned: cannot fail */
    block_options_parse(a->options, &o, &stored);
    emit_assignment(c, "device-pre-assign:block", &arg, &o);
    if (app_assignment_set_mode(c->app, c->dest, a, mode, c->err) < 0)
        return -1;
    emit_assignment(c, "device-assignment-changed:block", &arg, NULL);
    return 0;
}

#define LIST (API_NO_PAYLOAD)
#define DEVICE_METHODS(cls)                                                             \
    {"admin.vm.device." cls ".Available", device_available, LIST},                      \
        {"admin.vm.device." cls ".Assigned", device_assigned, LIST},                    \
        {"admin.vm.device." cls ".Attached", device_attached, LIST},                    \
        {"admin.vm.device." cls ".Attach", device_attach, API_WANTS_ARG}, {             \
        "admin.vm.device." cls ".Detach", device_detach, API_WANTS_ARG | API_NO_PAYLOAD \
    }

const struct api_method API_DEVICE_METHODS[] = {
    {"admin.deviceclass.List", deviceclass_list, API_NO_ARG | API_NO_PAYLOAD | API_DEST_ADMINVM},
    DEVICE_METHODS("pci"),
    DEVICE_METHODS("block"),
    DEVICE_METHODS("usb"),
    DEVICE_METHODS("mic"),
    /* persistent assignments: block devices only (the other classes have no devices) */
    {"admin.vm.device.block.Assign", device_assign, API_WANTS_ARG | API_WANTS_PAYLOAD},
    {"admin.vm.device.block.Unassign", device_unassign, API_WANTS_ARG | API_NO_PAYLOAD},
    {"admin.vm.device.block.Set.assignment", device_set_assignment,
     API_WANTS_ARG | API_WANTS_PAYLOAD},
    {NULL, NULL, 0},
};
