#include "props.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app.h"
#include "labels.h"
#include "names.h"
#include "props_net.h"

#define ALL_CLASSES 0x1fu
#define VM_CLASSES (ALL_CLASSES & ~CLASS_BIT(QUBE_ADMINVM))
#define TEMPLATED (CLASS_BIT(QUBE_APPVM) | CLASS_BIT(QUBE_DISPVM))
#define DVM_TEMPLATES (CLASS_BIT(QUBE_APPVM) | CLASS_BIT(QUBE_STANDALONEVM))

static bool copy_out(const char *value, char *buf, size_t size) {
    snprintf(buf, size, "%s", value);
    return true;
}

static bool global_default(const struct app *app, int gid, char *buf, size_t size) {
    char tmp[256];
    bool is_default;
    return copy_out(app_global_get(app, &GPROP_DEFS[gid], tmp, sizeof(tmp), &is_default), buf,
                    size);
}

static bool is_dispvm_template(const struct app *app, const struct qube *q);

/* --- defaults that depend on the qube or on the global properties --- */

static bool default_template(const struct app *app, const struct qube *q, char *buf, size_t size) {
    /* A DispVM comes from a disposable template; everything else from a TemplateVM. */
    int gid = q->klass == QUBE_DISPVM ? G_DEFAULT_DISPVM : G_DEFAULT_TEMPLATE;
    return global_default(app, gid, buf, size);
}

static bool default_qrexec_timeout(const struct app *app, const struct qube *q, char *buf,
                                   size_t size) {
    return global_default(app, G_DEFAULT_QREXEC_TIMEOUT, buf, size);
}

static bool default_shutdown_timeout(const struct app *app, const struct qube *q, char *buf,
                                     size_t size) {
    return global_default(app, G_DEFAULT_SHUTDOWN_TIMEOUT, buf, size);
}

static bool default_kernel(const struct app *app, const struct qube *q, char *buf, size_t size) {
    return global_default(app, G_DEFAULT_KERNEL, buf, size);
}

static bool default_management_dispvm(const struct app *app, const struct qube *q, char *buf,
                                      size_t size) {
    return global_default(app, G_MANAGEMENT_DISPVM, buf, size);
}

static bool default_default_dispvm(const struct app *app, const struct qube *q, char *buf,
                                   size_t size) {
    /* Qubes: a disposable's own disposables come from the same disposable template. */
    if (q->klass == QUBE_DISPVM) {
        char tmp[64];
        bool is_default;
        return copy_out(app_prop_get(app, q, &PROP_DEFS[P_TEMPLATE], tmp, sizeof(tmp), &is_default),
                        buf, size);
    }
    return global_default(app, G_DEFAULT_DISPVM, buf, size);
}

static bool default_icon(const struct app *app, const struct qube *q, char *buf, size_t size) {
    char klass[32];
    snprintf(klass, sizeof(klass), "%s", qube_class_name(q->klass));
    for (char *p = klass; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    if (CLASS_BIT(q->klass) & DVM_TEMPLATES && is_dispvm_template(app, q))
        snprintf(klass, sizeof(klass), "templatevm"); /* as Qubes shows disposable templates */
    const char *label = q->props[P_LABEL] ? q->props[P_LABEL] : "black";
    snprintf(buf, size, "%s-%s", klass, label);
    return true;
}

static bool default_klass(const struct app *app, const struct qube *q, char *buf, size_t size) {
    return copy_out(qube_class_name(q->klass), buf, size);
}

static bool default_updateable(const struct app *app, const struct qube *q, char *buf,
                               size_t size) {
    bool own_root = q->klass == QUBE_TEMPLATEVM || q->klass == QUBE_STANDALONEVM;
    return copy_out(own_root ? "True" : "False", buf, size);
}

static bool default_memory(const struct app *app, const struct qube *q, char *buf, size_t size) {
    if (q->klass == QUBE_ADMINVM) {
        snprintf(buf, size, "%llu", (unsigned long long)app->host_mem_mib);
        return true;
    }
    return copy_out("400", buf, size);
}

static bool default_maxmem(const struct app *app, const struct qube *q, char *buf, size_t size) {
    /* 0 = no balancing: the qube's limit is `memory` (see the container engine). */
    return q->klass == QUBE_ADMINVM ? default_memory(app, q, buf, size) : copy_out("0", buf, size);
}

static bool default_guivm(const struct app *app, const struct qube *q, char *buf, size_t size) {
    return global_default(app, G_DEFAULT_GUIVM, buf, size);
}

static bool default_audiovm(const struct app *app, const struct qube *q, char *buf, size_t size) {
    return global_default(app, G_DEFAULT_AUDIOVM, buf, size);
}

/* Qubes: the layout of the qube's GUI qube (dom0's is us++ unless set); followed a few
 * hops only, so a loop of guivms cannot hang a read. */
static bool default_keyboard_layout(const struct app *app, const struct qube *q, char *buf,
                                    size_t size) {
    const struct qube *cur = q;
    for (int hops = 0; hops < 8 && cur->klass != QUBE_ADMINVM; hops++) {
        char name[64];
        bool is_default;
        const struct qube *gui = app_find(app, app_prop_get(app, cur, &PROP_DEFS[P_GUIVM], name,
                                                            sizeof(name), &is_default));
        if (!gui)
            break;
        if (gui->props[P_KEYBOARD_LAYOUT])
            return copy_out(gui->props[P_KEYBOARD_LAYOUT], buf, size);
        cur = gui;
    }
    return copy_out(DEFAULT_KEYBOARD_LAYOUT, buf, size);
}

static bool default_xid(const struct app *app, const struct qube *q, char *buf, size_t size) {
    snprintf(buf, size, "%d", q->xid > 0 ? q->xid : -1);
    return true;
}

static bool default_start_time(const struct app *app, const struct qube *q, char *buf,
                               size_t size) {
    return copy_out(q->start_time, buf, size);
}

static bool default_pool_of_volume(const struct app *app, const struct qube *q, char *buf,
                                   size_t size) {
    return global_default(app, G_DEFAULT_POOL, buf, size);
}

static bool default_host_maxmem(const struct app *app, const struct qube *q, char *buf,
                                size_t size) {
    snprintf(buf, size, "%llu", (unsigned long long)app->host_mem_mib);
    return true;
}

static bool default_no_cpus(const struct app *app, const struct qube *q, char *buf, size_t size) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    snprintf(buf, size, "%ld", n > 0 ? n : 1);
    return true;
}

/* --- validation against the rest of the model --- */

/* Qubes' setter: device interface codes, each a class letter (b)lock, (u)sb, (m)ic,
 * (p)ci or * and six hex digits or *; kept sorted without duplicates by the caller's
 * tools, checked here. */
static int validate_devices_denied(const struct app *app, const struct qube *q, const char *value,
                                   struct qerr *err) {
    size_t len = strlen(value);
    bool ok = len % 7 == 0;
    for (size_t i = 0; ok && i < len; i++)
        ok = i % 7 == 0 ? strchr("bump*", value[i]) != NULL
                        : strchr("0123456789abcdef*", value[i]) != NULL;
    if (!ok)
        return qerr_set(err, EXC_PROPERTY_VALUE,
                        "Interface code list should be in the form chhhhhhchhhhhh..., where c "
                        "is one of \"b\", \"u\", \"m\", \"p\", \"*\" and h is a hexdigit "
                        "or \"*\".");
    return 0;
}

static bool all_in(const char *s, size_t n, const char *allowed) {
    for (size_t i = 0; i < n; i++)
        if (!strchr(allowed, s[i]))
            return false;
    return true;
}

#define LETTERS "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
#define ALNUM LETTERS "0123456789"

/* Qubes' setter: LAYOUT+VARIANT+OPTIONS, an alphabetic layout, then letters, digits,
 * - and _ (options also : and ,); it goes to the GUI qube's X server. */
static int validate_keyboard_layout(const struct app *app, const struct qube *q, const char *value,
                                    struct qerr *err) {
    const char *p1 = strchr(value, '+');
    const char *p2 = p1 ? strchr(p1 + 1, '+') : NULL;
    if (!p2 || strchr(p2 + 1, '+'))
        return qerr_set(err, EXC_PROPERTY_VALUE, "invalid number of keyboard layout parameters");
    size_t layout_len = (size_t)(p1 - value);
    if (layout_len == 0 || !all_in(value, layout_len, LETTERS))
        return qerr_set(err, EXC_PROPERTY_VALUE, "Invalid keyboard layout provided");
    if (!all_in(p1 + 1, (size_t)(p2 - p1 - 1), ALNUM "-_"))
        return qerr_set(err, EXC_PROPERTY_VALUE, "Invalid layout variant provided");
    if (!all_in(p2 + 1, strlen(p2 + 1), ALNUM "-_:,"))
        return qerr_set(err, EXC_PROPERTY_VALUE, "Invalid layout options provided");
    return 0;
}

/* A pool new volumes of any kind may be in: the volatile ones can be in RAM. */
static int validate_pool(const struct app *app, const struct qube *q, const char *value,
                         struct qerr *err) {
    if (!app_pool_find(app, value))
        return qerr_set(err, EXC_PROPERTY_VALUE, "No such storage pool: '%s'", value);
    return 0;
}

/* A pool for volumes saved at every stop too (default_pool, _root, _private): not ram. */
static int validate_saving_pool(const struct app *app, const struct qube *q, const char *value,
                                struct qerr *err) {
    if (validate_pool(app, q, value, err) < 0)
        return -1;
    if (app_pool_find(app, value)->driver == POOL_RAM)
        return qerr_set(err, EXC_PROPERTY_VALUE,
                        "Storage pool '%s' is a ram pool: it keeps nothing past a stop, so "
                        "only default_pool_volatile can name it",
                        value);
    return 0;
}

static bool is_dispvm_template(const struct app *app, const struct qube *q) {
    if (!(CLASS_BIT(q->klass) & DVM_TEMPLATES))
        return false;
    char buf[16];
    bool is_default;
    return strcmp(app_prop_get(app, q, &PROP_DEFS[P_TEMPLATE_FOR_DISPVMS], buf, sizeof(buf),
                               &is_default),
                  "True") == 0;
}

static int require_dispvm_template(const struct app *app, const char *value, const char *what,
                                   struct qerr *err) {
    if (!*value)
        return 0;
    const struct qube *target = app_find(app, value);
    if (target && !is_dispvm_template(app, target))
        return qerr_set(err, EXC_PROPERTY_VALUE,
                        "%s must be a qube with "
                        "template_for_dispvms=True, and '%s' is not one",
                        what, value);
    return 0;
}

static int require_templatevm(const struct app *app, const char *value, struct qerr *err) {
    const struct qube *target = *value ? app_find(app, value) : NULL;
    if (target && target->klass != QUBE_TEMPLATEVM)
        return qerr_set(err, EXC_PROPERTY_VALUE,
                        "wrong qube class: '%s' is a %s, not a "
                        "TemplateVM",
                        value, qube_class_name(target->klass));
    return 0;
}

static int validate_template(const struct app *app, const struct qube *q, const char *value,
                             struct qerr *err) {
    if (!*value)
        return qerr_set(err, EXC_VALUE,
                        "Template for the qube not specified, nor default "
                        "template set.");
    if (q->klass == QUBE_DISPVM)
        return require_dispvm_template(app, value, "The template of a DispVM", err);
    return require_templatevm(app, value, err);
}

static int validate_default_dispvm(const struct app *app, const struct qube *q, const char *value,
                                   struct qerr *err) {
    return require_dispvm_template(app, value, "default_dispvm", err);
}

static int validate_virt_mode(const struct app *app, const struct qube *q, const char *value,
                              struct qerr *err) {
    if (strcmp(value, "container") != 0 && strcmp(value, "qemu") != 0)
        return qerr_set(err, EXC_PROPERTY_VALUE,
                        "Invalid virtualization mode '%s', supported "
                        "values: container, qemu",
                        value);
    return 0;
}

static int validate_kernel(const struct app *app, const struct qube *q, const char *value,
                           struct qerr *err) {
    /* A kernel is a directory name under the kernels dir, never a path. */
    if (*value && (!name_is_valid_token(value) || value[0] == '.'))
        return qerr_set(err, EXC_PROPERTY_VALUE,
                        "Invalid kernel name '%s': a kernel is a "
                        "directory name, not a path",
                        value);
    return 0;
}

/* The user name goes to the qube's agent and into "USER:COMMAND" lines: Qubes allows
 * only these characters (no ':', blanks or quotes). */
static int validate_default_user(const struct app *app, const struct qube *q, const char *value,
                                 struct qerr *err) {
    static const char allowed[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                  "0123456789_-+,.";
    if (value[strspn(value, allowed)])
        return qerr_set(err, EXC_PROPERTY_VALUE,
                        "Invalid user name '%s': only letters, "
                        "digits and _-+,. are allowed",
                        value);
    if (strlen(value) > DEFAULT_USER_MAX) /* longer than any Linux user name */
        return qerr_set(err, EXC_PROPERTY_VALUE,
                        "Invalid user name '%s': longer than %d "
                        "characters",
                        value, DEFAULT_USER_MAX);
    return 0;
}

/* Is q named as a disposable template anywhere (explicitly, as Qubes checks)? */
static bool used_as_dispvm_template(const struct app *app, const struct qube *q) {
    if (streq_ptr(app->globals[G_DEFAULT_DISPVM], q->name) ||
        streq_ptr(app->globals[G_MANAGEMENT_DISPVM], q->name))
        return true;
    for (size_t i = 0; i < app->n_qubes; i++) {
        const struct qube *d = app->qubes[i];
        if (streq_ptr(d->props[P_IS_PRELOAD], "True"))
            continue; /* preloads never hold their template: they are discarded instead */
        if (streq_ptr(d->props[P_DEFAULT_DISPVM], q->name) ||
            streq_ptr(d->props[P_MANAGEMENT_DISPVM], q->name) ||
            (d->klass == QUBE_DISPVM && streq_ptr(d->props[P_TEMPLATE], q->name)))
            return true;
    }
    return false;
}

static int validate_template_for_dispvms(const struct app *app, const struct qube *q,
                                         const char *value, struct qerr *err) {
    if (strcmp(value, "False") == 0 && used_as_dispvm_template(app, q))
        return qerr_set(err, EXC_VM_IN_USE,
                        "Cannot change template_for_dispvms of '%s' to "
                        "False while it is in use as a disposable template (default_dispvm, "
                        "management_dispvm or a disposable's template)",
                        q->name);
    return 0;
}

static int validate_global_default_template(const struct app *app, const struct qube *q,
                                            const char *value, struct qerr *err) {
    return require_templatevm(app, value, err);
}

static int validate_global_dispvm(const struct app *app, const struct qube *q, const char *value,
                                  struct qerr *err) {
    return require_dispvm_template(app, value, "default_dispvm", err);
}

static int validate_global_management_dispvm(const struct app *app, const struct qube *q,
                                             const char *value, struct qerr *err) {
    return require_dispvm_template(app, value, "management_dispvm", err);
}

#define P(id_, name_, type_, classes_, flags_, fixed_, fn_, val_) \
    [id_] = {.name = name_,                                       \
             .type = type_,                                       \
             .id = id_,                                           \
             .classes = classes_,                                 \
             .flags = flags_,                                     \
             .fixed_default = fixed_,                             \
             .get_default = fn_,                                  \
             .validate = val_}

const struct prop_def PROP_DEFS[PROP_COUNT] = {
    /* no boot modes (Qubes' boot-mode.* features) here: the one mode is "default" */
    P(P_APPVM_DEFAULT_BOOTMODE, "appvm_default_bootmode", PT_STR, CLASS_BIT(QUBE_TEMPLATEVM),
      PF_READONLY | PF_LATE, "default", NULL, NULL),
    P(P_AUDIOVM, "audiovm", PT_VM, VM_CLASSES, PF_LATE, NULL, default_audiovm, NULL),
    P(P_AUTO_CLEANUP, "auto_cleanup", PT_BOOL, CLASS_BIT(QUBE_DISPVM), 0, "False", NULL, NULL),
    P(P_AUTOSTART, "autostart", PT_BOOL, VM_CLASSES, 0, "False", NULL, NULL),
    P(P_BACKUP_TIMESTAMP, "backup_timestamp", PT_INT, VM_CLASSES, PF_NONNEG, NULL, NULL, NULL),
    P(P_BOOTMODE, "bootmode", PT_STR, VM_CLASSES, PF_READONLY | PF_LATE, "default", NULL, NULL),
    P(P_DEBUG, "debug", PT_BOOL, VM_CLASSES, 0, "False", NULL, NULL),
    P(P_DEFAULT_DISPVM, "default_dispvm", PT_VM, ALL_CLASSES, PF_LATE, NULL, default_default_dispvm,
      validate_default_dispvm),
    P(P_DEFAULT_USER, "default_user", PT_STR, VM_CLASSES, PF_INHERIT, "user", NULL,
      validate_default_user),
    P(P_DEVICES_DENIED, "devices_denied", PT_STR, ALL_CLASSES, 0, "", NULL,
      validate_devices_denied),
    P(P_DISPID, "dispid", PT_INT, CLASS_BIT(QUBE_DISPVM), PF_READONLY, NULL, NULL, NULL),
    P(P_DNS, "dns", PT_STR, VM_CLASSES, PF_READONLY, NULL, net_prop_dns, NULL),
    P(P_GATEWAY, "gateway", PT_STR, VM_CLASSES, PF_READONLY, NULL, net_prop_gateway, NULL),
    /* qubes get no IPv6 (docs/network.md) */
    P(P_GATEWAY6, "gateway6", PT_STR, VM_CLASSES, PF_READONLY, "", NULL, NULL),
    P(P_GUIVM, "guivm", PT_VM, VM_CLASSES, PF_LATE, NULL, default_guivm, NULL),
    P(P_ICON, "icon", PT_STR, ALL_CLASSES, PF_READONLY, NULL, default_icon, NULL),
    P(P_INCLUDE_IN_BACKUPS, "include_in_backups", PT_BOOL, VM_CLASSES, 0, "True", NULL, NULL),
    P(P_INSTALLED_BY_RPM, "installed_by_rpm", PT_BOOL, VM_CLASSES, 0, "False", NULL, NULL),
    P(P_IP, "ip", PT_STR, VM_CLASSES, PF_READONLY, NULL, net_prop_default_ip, NULL),
    P(P_IP6, "ip6", PT_STR, VM_CLASSES, PF_READONLY, "", NULL, NULL),
    /* a preloaded disposable not yet handed out; the preload pool's, never the API's */
    P(P_IS_PRELOAD, "is_preload", PT_BOOL, CLASS_BIT(QUBE_DISPVM), PF_READONLY, "False", NULL,
      NULL),
    P(P_KERNEL, "kernel", PT_STR, VM_CLASSES, PF_INHERIT, NULL, default_kernel, validate_kernel),
    P(P_KERNELOPTS, "kernelopts", PT_STR, VM_CLASSES, PF_LATE | PF_INHERIT, "", NULL, NULL),
    P(P_KEYBOARD_LAYOUT, "keyboard_layout", PT_STR, ALL_CLASSES, 0, NULL, default_keyboard_layout,
      validate_keyboard_layout),
    P(P_KLASS, "klass", PT_STR, ALL_CLASSES, PF_READONLY, NULL, default_klass, NULL),
    P(P_LABEL, "label", PT_LABEL, ALL_CLASSES, 0, NULL, NULL, NULL),
    P(P_MAC, "mac", PT_STR, VM_CLASSES, 0, NET_DEFAULT_MAC, NULL, net_validate_mac),
    P(P_MANAGEMENT_DISPVM, "management_dispvm", PT_VM, VM_CLASSES, PF_LATE, NULL,
      default_management_dispvm, validate_default_dispvm),
    P(P_MAXMEM, "maxmem", PT_INT, ALL_CLASSES, PF_NONNEG | PF_INHERIT | PF_ADMINVM_READONLY, NULL,
      default_maxmem, NULL),
    P(P_MEMORY, "memory", PT_INT, ALL_CLASSES, PF_POSITIVE | PF_INHERIT, NULL, default_memory,
      NULL),
    P(P_NAME, "name", PT_STR, ALL_CLASSES, PF_READONLY, NULL, NULL, NULL),
    P(P_NETVM, "netvm", PT_VM, VM_CLASSES, PF_LATE | PF_INHERIT, NULL, net_prop_default_netvm,
      net_validate_netvm),
    P(P_PROVIDES_NETWORK, "provides_network", PT_BOOL, VM_CLASSES, 0, "False", NULL,
      net_validate_provides_network),
    P(P_QID, "qid", PT_INT, ALL_CLASSES, PF_READONLY, NULL, NULL, NULL),
    P(P_QREXEC_TIMEOUT, "qrexec_timeout", PT_INT, VM_CLASSES, PF_POSITIVE | PF_INHERIT, NULL,
      default_qrexec_timeout, NULL),
    P(P_SHUTDOWN_TIMEOUT, "shutdown_timeout", PT_INT, VM_CLASSES, PF_POSITIVE | PF_INHERIT, NULL,
      default_shutdown_timeout, NULL),
    P(P_START_TIME, "start_time", PT_STR, VM_CLASSES, PF_READONLY, NULL, default_start_time, NULL),
    P(P_STUBDOM_MEM, "stubdom_mem", PT_INT, VM_CLASSES, PF_POSITIVE, NULL, NULL, NULL),
    /* no stub domains (Xen's device-model qubes) here */
    P(P_STUBDOM_UUID, "stubdom_uuid", PT_STR, VM_CLASSES, PF_READONLY, "", NULL, NULL),
    P(P_STUBDOM_XID, "stubdom_xid", PT_INT, VM_CLASSES, PF_READONLY, "-1", NULL, NULL),
    P(P_TEMPLATE, "template", PT_VM, TEMPLATED, PF_NO_RESET | PF_LATE, NULL, default_template,
      validate_template),
    P(P_TEMPLATE_FOR_DISPVMS, "template_for_dispvms", PT_BOOL, DVM_TEMPLATES, 0, "False", NULL,
      validate_template_for_dispvms),
    P(P_UPDATEABLE, "updateable", PT_BOOL, VM_CLASSES, PF_READONLY, NULL, default_updateable, NULL),
    P(P_UUID, "uuid", PT_STR, ALL_CLASSES, PF_READONLY, NULL, NULL, NULL),
    P(P_VCPUS, "vcpus", PT_INT, VM_CLASSES, PF_POSITIVE | PF_INHERIT, "2", NULL, NULL),
    P(P_VIRT_MODE, "virt_mode", PT_STR, VM_CLASSES, PF_INHERIT, "container", NULL,
      validate_virt_mode),
    P(P_VISIBLE_GATEWAY, "visible_gateway", PT_STR, VM_CLASSES, PF_READONLY, NULL,
      net_prop_visible_gateway, NULL),
    P(P_VISIBLE_GATEWAY6, "visible_gateway6", PT_STR, VM_CLASSES, PF_READONLY, "", NULL, NULL),
    P(P_VISIBLE_IP, "visible_ip", PT_STR, VM_CLASSES, PF_READONLY, NULL, net_prop_visible_ip, NULL),
    P(P_VISIBLE_IP6, "visible_ip6", PT_STR, VM_CLASSES, PF_READONLY, "", NULL, NULL),
    P(P_VISIBLE_NETMASK, "visible_netmask", PT_STR, VM_CLASSES, PF_READONLY, NULL,
      net_prop_visible_netmask, NULL),
    P(P_XID, "xid", PT_INT, VM_CLASSES, PF_READONLY, NULL, default_xid, NULL),
};

const struct prop_def GPROP_DEFS[GPROP_COUNT] = {
    P(G_CHECK_UPDATES_VM, "check_updates_vm", PT_BOOL, 0, 0, "True", NULL, NULL),
    P(G_CLOCKVM, "clockvm", PT_VM, 0, 0, "", NULL, NULL),
    P(G_DEFAULT_AUDIOVM, "default_audiovm", PT_VM, 0, 0, "dom0", NULL, NULL),
    P(G_DEFAULT_DISPVM, "default_dispvm", PT_VM, 0, 0, "", NULL, validate_global_dispvm),
    P(G_DEFAULT_GUIVM, "default_guivm", PT_VM, 0, 0, "dom0", NULL, NULL),
    P(G_DEFAULT_KERNEL, "default_kernel", PT_STR, 0, 0, "", NULL, validate_kernel),
    P(G_DEFAULT_NETVM, "default_netvm", PT_VM, 0, 0, "", NULL, net_validate_netvm),
    P(G_DEFAULT_POOL, "default_pool", PT_STR, 0, 0, DEFAULT_POOL_NAME, NULL, validate_saving_pool),
    P(G_DEFAULT_POOL_KERNEL, "default_pool_kernel", PT_STR, 0, 0, NULL, default_pool_of_volume,
      validate_pool),
    P(G_DEFAULT_POOL_PRIVATE, "default_pool_private", PT_STR, 0, 0, NULL, default_pool_of_volume,
      validate_saving_pool),
    P(G_DEFAULT_POOL_ROOT, "default_pool_root", PT_STR, 0, 0, NULL, default_pool_of_volume,
      validate_saving_pool),
    P(G_DEFAULT_POOL_VOLATILE, "default_pool_volatile", PT_STR, 0, 0, NULL, default_pool_of_volume,
      validate_pool),
    P(G_DEFAULT_QREXEC_TIMEOUT, "default_qrexec_timeout", PT_INT, 0, PF_POSITIVE, "60", NULL, NULL),
    P(G_DEFAULT_SHUTDOWN_TIMEOUT, "default_shutdown_timeout", PT_INT, 0, PF_POSITIVE, "60", NULL,
      NULL),
    P(G_DEFAULT_TEMPLATE, "default_template", PT_VM, 0, 0, NULL, NULL,
      validate_global_default_template),
    P(G_MANAGEMENT_DISPVM, "management_dispvm", PT_VM, 0, 0, "", NULL,
      validate_global_management_dispvm),
    P(G_MAXMEM, "maxmem", PT_INT, 0, PF_READONLY, NULL, default_host_maxmem, NULL),
    P(G_NO_CPUS, "no_cpus", PT_INT, 0, PF_READONLY, NULL, default_no_cpus, NULL),
    P(G_STATS_INTERVAL, "stats_interval", PT_INT, 0, PF_POSITIVE, "3", NULL, NULL),
    P(G_UPDATEVM, "updatevm", PT_VM, 0, 0, "", NULL, NULL),
};

const char *prop_type_name(enum prop_type type) {
    static const char *const names[] = {"str", "int", "bool", "vm", "label"};
    return names[type];
}

static int canonical_int(const struct prop_def *def, const char *raw, char *out, size_t size,
                         struct qerr *err) {
    errno = 0;
    char *end;
    long long v = strtoll(raw, &end, 10);
    bool no_digits = end == raw;
    while (isspace((unsigned char)*end)) /* Python's int() allows surrounding blanks */
        end++;
    if (no_digits || *end || errno == ERANGE || v > INT_MAX || v < INT_MIN)
        return qerr_set(err, EXC_VALUE, "Failed to parse property value as int");
    if ((def->flags & PF_POSITIVE) && v <= 0)
        return qerr_set(err, EXC_PROPERTY_VALUE, "%s must be positive", def->name);
    if ((def->flags & PF_NONNEG) && v < 0)
        return qerr_set(err, EXC_PROPERTY_VALUE, "%s must be positive or zero", def->name);
    snprintf(out, size, "%lld", v);
    return 0;
}

static int canonical_bool(const char *raw, char *out, size_t size, struct qerr *err) {
    static const char *const yes[] = {"1", "yes", "true", "on"};
    static const char *const no[] = {"0", "no", "false", "off"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(raw, yes[i]) == 0)
            return snprintf(out, size, "True"), 0;
        if (strcasecmp(raw, no[i]) == 0)
            return snprintf(out, size, "False"), 0;
    }
    return qerr_set(err, EXC_VALUE, "Invalid literal for boolean property: '%s'", raw);
}

int prop_canonicalize(const struct prop_def *def, const char *raw, char *out, size_t size,
                      struct qerr *err) {
    for (const unsigned char *p = (const unsigned char *)raw; *p; p++) {
        if (*p > 0x7e)
            return qerr_set(err, EXC_VALUE, "Non-ASCII bytes in property value");
        if (*p < 0x20 && *p != '\t' && *p != '\n')
            return qerr_set(err, EXC_VALUE, "Invalid characters in property value");
    }
    if (strlen(raw) >= size)
        return qerr_set(err, EXC_VALUE, "Value of property '%s' is too long", def->name);
    switch (def->type) {
    case PT_INT: return canonical_int(def, raw, out, size, err);
    case PT_BOOL: return canonical_bool(raw, out, size, err);
    case PT_VM:
        if (!*raw || strcmp(raw, "none") == 0 || strcmp(raw, "None") == 0) {
            out[0] = '\0';
            return 0;
        }
        if (name_validate_qube(raw, err) < 0)
            return -1;
        break;
    case PT_LABEL:
        if (!label_find(raw))
            return qerr_set(err, EXC_LABEL_NOT_FOUND, "Label does not exist: %s", raw);
        break;
    case PT_STR: break;
    }
    snprintf(out, size, "%s", raw);
    return 0;
}
