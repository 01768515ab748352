/* admin.deviceclass.List and admin.vm.device.<class>.{Available,Assigned,Attached,Attach,
 * Detach} (docs/devices.md). Block devices are real: dom0 offers the host's loop devices
 * and removable disks nobody on the host uses (block_host.h), a running qube is given
 * one by its engine. The other classes Qubes has (pci, usb, mic) list nothing here.
 * Persistent assignments (Assign, Unassign, Set.assignment) are not implemented: they
 * answer QubesNotImplementedError (api_unimplemented.c) and Assigned lists none.
 *
 * Wire format as qubesd's: a device is "<port_id>:<device_id> <properties>", a property
 * key='value' (a ' inside escaped as \'), options of an assignment keyed "_name". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "block_host.h"
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

/* " key='value'": every property follows the line's key, blank-separated. */
static void put_prop(struct strbuf *out, const char *key, const char *value) {
    strbuf_printf(out, " %s='", key);
    for (const char *p = value; *p; p++) {
        if (*p == '\'')
            strbuf_putc(out, '\\');
        strbuf_putc(out, *p);
    }
    strbuf_putc(out, '\'');
}

static void put_device_props(struct strbuf *out, const char *port, const char *devid) {
    put_prop(out, "device_id", devid);
    put_prop(out, "port_id", port);
    put_prop(out, "devclass", "block");
    put_prop(out, "backend_domain", "dom0");
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
    put_prop(c->out, "manufacturer", "hosted by dom0");
    if (*d->name)
        put_prop(c->out, "name", d->name);
    if (*d->serial)
        put_prop(c->out, "serial", d->serial);
    const struct block_attachment *a = attachment_of(c, d->port_id);
    if (a)
        put_prop(c->out, "attachment", a->frontend);
    put_prop(c->out, "interfaces", "b******");
    if (*d->parent) {
        put_prop(c->out, "parent_port_id", d->parent);
        put_prop(c->out, "parent_devclass", "block");
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

static int device_assigned(struct api_call *c) { return 0; }

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
        put_prop(c->out, "mode", "manual");
        put_prop(c->out, "frontend_domain", v[i]->frontend);
        put_prop(c->out, "_read-only", v[i]->read_only ? "yes" : "no");
        put_prop(c->out, "_frontend-dev", v[i]->frontend_dev);
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

struct assignment {
    bool read_only, ro_given;
    char frontend_dev[16];
};

static bool key_char(char ch) { return ch > ' ' && ch < 0x7f && ch != '=' && ch != '\''; }

/* key='value' pairs, a ' in a value escaped as \'; the basic properties must be the
 * device's, options are read-only, frontend-dev and devtype. */
static int check_prop(struct api_call *c, const struct block_host_dev *dev, const char *key,
                      const char *value, struct assignment *as) {
    static const char *const modes[] = {"manual", "auto-attach", "ask-to-attach", "required"};
    if (strcmp(key, "device_id") == 0 || strcmp(key, "port_id") == 0 ||
        strcmp(key, "devclass") == 0 || strcmp(key, "backend_domain") == 0) {
        const char *want = strcmp(key, "device_id") == 0  ? dev->device_id
                           : strcmp(key, "port_id") == 0  ? dev->port_id
                           : strcmp(key, "devclass") == 0 ? "block"
                                                          : "dom0";
        if (strcmp(value, want))
            return qerr_set(c->err, EXC_PROTOCOL, "Unexpected %s '%s', expected '%s'", key, value,
                            want);
        return 0;
    }
    if (strcmp(key, "mode") == 0) {
        for (size_t i = 0; i < ELEMENTSOF(modes); i++)
            if (strcmp(value, modes[i]) == 0)
                return 0;
        return qerr_set(c->err, EXC_PROTOCOL, "'%s' is not a valid AssignmentMode", value);
    }
    if (strcmp(key, "frontend_domain") == 0)
        return 0;
    if (strcmp(key, "_read-only") == 0) {
        bool yes = !strcasecmp(value, "yes") || !strcasecmp(value, "true") ||
                   !strcasecmp(value, "on") || !strcmp(value, "1");
        bool no = !strcasecmp(value, "no") || !strcasecmp(value, "false") ||
                  !strcasecmp(value, "off") || !strcmp(value, "0") || !*value;
        if (!yes && !no)
            return qerr_set(c->err, EXC_VALUE, "Invalid literal for boolean property: '%s'", value);
        as->read_only = yes;
        as->ro_given = true;
        return 0;
    }
    if (strcmp(key, "_frontend-dev") == 0) {
        bool ok = (strncmp(value, "xvd", 3) == 0 || strncmp(value, "sd", 2) == 0) &&
                  strlen(value) < sizeof(as->frontend_dev) &&
                  strspn(value, "abcdefghijklmnopqrstuvwxyz0123456789") == strlen(value);
        if (!ok)
            return qerr_set(c->err, EXC_VALUE, "Invalid frontend-dev option value: %s", value);
        snprintf(as->frontend_dev, sizeof(as->frontend_dev), "%s", value);
        return 0;
    }
    if (strcmp(key, "_devtype") == 0) {
        if (strcmp(value, "disk") && strcmp(value, "cdrom"))
            return qerr_set(c->err, EXC_VALUE,
                            "devtype option can only have 'disk' or "
                            "'cdrom' value");
        return 0;
    }
    if (key[0] == '_')
        return qerr_set(c->err, EXC_VALUE, "Unsupported option %s", key + 1);
    return qerr_set(c->err, EXC_PROTOCOL, "Unexpected device property '%s'", key);
}

static int parse_assignment(struct api_call *c, const struct block_host_dev *dev,
                            struct assignment *as) {
    const char *p = (const char *)c->req->payload, *end = p + c->req->payload_len;
    if (!text_is_printable_ascii(p, c->req->payload_len))
        return qerr_set(c->err, EXC_PROTOCOL, "Assignment contains non-ASCII characters");
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
            return qerr_set(c->err, EXC_PROTOCOL, "Invalid assignment: expected key='value'");
        p += 2;
        size_t v = 0;
        for (; p < end && *p != '\'' && v + 1 < sizeof(value); p++)
            value[v++] = (*p == '\\' && p + 1 < end && p[1] == '\'') ? *++p : *p;
        value[v] = '\0';
        if (p == end || *p != '\'')
            return qerr_set(c->err, EXC_PROTOCOL, "Invalid assignment: unterminated value");
        p++;
        if (check_prop(c, dev, key, value, as) < 0)
            return -1;
    }
    return 0;
}

/* ---- attach, detach ---- */

/* Qubes' frontends for extra disks: xvdi and on (xvda-d are the qube's own). */
static void free_frontend(const struct api_call *c, char *out, size_t size) {
    size_t n;
    const struct block_attachment *a = dispatcher_block_attachments(c->dispatcher, &n);
    for (char l = 'i'; l <= 'z'; l++) {
        snprintf(out, size, "xvd%c", l);
        bool used = false;
        for (size_t i = 0; i < n && !used; i++)
            used = strcmp(a[i].frontend, c->dest->name) == 0 && strcmp(a[i].frontend_dev, out) == 0;
        if (!used)
            return;
    }
    out[0] = '\0';
}

static int device_attach(struct api_call *c) {
    struct device_arg arg;
    struct block_host_dev dev;
    struct assignment as = {0};
    if (c->dest->klass == QUBE_ADMINVM)
        return qerr_set(c->err, EXC_QUBES, "dom0 cannot take devices: it is the backend");
    if (c->dest->power == POWER_HALTED)
        return qerr_set(c->err, EXC_VM_NOT_RUNNING,
                        "VM not running, cannot attach device, do you mean `assign`?");
    if (find_device(c, &arg, &dev) < 0 || parse_assignment(c, &dev, &as) < 0)
        return -1;
    if (!as.ro_given)
        as.read_only = dev.read_only;
    if (!as.read_only && dev.read_only)
        return qerr_set(c->err, EXC_VALUE, "This device can be attached only read-only");
    const struct block_attachment *other = attachment_of(c, dev.port_id);
    if (other)
        return qerr_set(c->err, EXC_DEVICE_ALREADY_ATTACHED,
                        "Device dom0:%s:%s already attached to %s", dev.port_id, dev.device_id,
                        other->frontend);
    struct block_attachment a = {.read_only = as.read_only, .major = dev.major, .minor = dev.minor};
    snprintf(a.frontend, sizeof(a.frontend), "%s", c->dest->name);
    snprintf(a.port_id, sizeof(a.port_id), "%s", dev.port_id);
    snprintf(a.device_id, sizeof(a.device_id), "%s", dev.device_id);
    if (*as.frontend_dev)
        snprintf(a.frontend_dev, sizeof(a.frontend_dev), "%s", as.frontend_dev);
    else
        free_frontend(c, a.frontend_dev, sizeof(a.frontend_dev));
    if (!*a.frontend_dev)
        return qerr_set(c->err, EXC_QUBES, "No free frontend name left in '%s'", c->dest->name);
    return dispatcher_block_attach(c->dispatcher, c->dest, &a, c->err);
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
    return dispatcher_block_detach(c->dispatcher, c->dest, arg.port, c->err);
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
    {NULL, NULL, 0},
};
