/* Property descriptors: type, which classes have it, default rule, validation.
 * The tables live in props.c; app.c applies them. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "qerr.h"

struct app;
struct qube;

enum prop_type { PT_STR, PT_INT, PT_BOOL, PT_VM, PT_LABEL };

/* default_user: at most this long (a Linux user name is at most 32 characters). */
#define DEFAULT_USER_MAX 63

/* Per-qube properties, alphabetical; GetAll lists the PF_LATE ones last, as qubesd. */
enum prop_id {
    P_APPVM_DEFAULT_BOOTMODE,
    P_AUDIOVM,
    P_AUTO_CLEANUP,
    P_AUTOSTART,
    P_BACKUP_TIMESTAMP,
    P_BOOTMODE,
    P_DEBUG,
    P_DEFAULT_DISPVM,
    P_DEFAULT_USER,
    P_DEVICES_DENIED,
    P_DISPID,
    P_DNS,
    P_GATEWAY,
    P_GATEWAY6,
    P_GUIVM,
    P_ICON,
    P_INCLUDE_IN_BACKUPS,
    P_INSTALLED_BY_RPM,
    P_IP,
    P_IP6,
    P_IS_PRELOAD,
    P_KERNEL,
    P_KERNELOPTS,
    P_KEYBOARD_LAYOUT,
    P_KLASS,
    P_LABEL,
    P_MAC,
    P_MANAGEMENT_DISPVM,
    P_MAXMEM,
    P_MEMORY,
    P_NAME,
    P_NETVM,
    P_PROVIDES_NETWORK,
    P_QID,
    P_QREXEC_TIMEOUT,
    P_SHUTDOWN_TIMEOUT,
    P_START_TIME,
    P_STUBDOM_MEM,
    P_STUBDOM_UUID,
    P_STUBDOM_XID,
    P_TEMPLATE,
    P_TEMPLATE_FOR_DISPVMS,
    P_UPDATEABLE,
    P_UUID,
    P_VCPUS,
    P_VIRT_MODE,
    P_VISIBLE_GATEWAY,
    P_VISIBLE_GATEWAY6,
    P_VISIBLE_IP,
    P_VISIBLE_IP6,
    P_VISIBLE_NETMASK,
    P_XID,
    PROP_COUNT,
};

enum gprop_id {
    G_CHECK_UPDATES_VM,
    G_CLOCKVM,
    G_DEFAULT_AUDIOVM,
    G_DEFAULT_DISPVM,
    G_DEFAULT_GUIVM,
    G_DEFAULT_KERNEL,
    G_DEFAULT_NETVM,
    G_DEFAULT_POOL,
    G_DEFAULT_POOL_KERNEL,
    G_DEFAULT_POOL_PRIVATE,
    G_DEFAULT_POOL_ROOT,
    G_DEFAULT_POOL_VOLATILE,
    G_DEFAULT_QREXEC_TIMEOUT,
    G_DEFAULT_SHUTDOWN_TIMEOUT,
    G_DEFAULT_TEMPLATE,
    G_MANAGEMENT_DISPVM,
    G_MAXMEM,
    G_NO_CPUS,
    G_STATS_INTERVAL,
    G_UPDATEVM,
    GPROP_COUNT,
};

enum prop_flags {
    PF_READONLY = 1 << 0,         /* computed or identity: never written through the API */
    PF_WRITE_ONCE = 1 << 1,       /* set at creation, then fixed */
    PF_POSITIVE = 1 << 2,         /* int > 0 */
    PF_NONNEG = 1 << 3,           /* int >= 0 */
    PF_NO_RESET = 1 << 4,         /* Qubes refuses to unset it (template) */
    PF_LATE = 1 << 5,             /* qubesd's load stage 4: listed after the others by GetAll */
    PF_INHERIT = 1 << 6,          /* a DispVM's default is its disposable template's value */
    PF_ADMINVM_READONLY = 1 << 7, /* read-only on dom0 only (maxmem: the host's memory) */
};

/* The storage pool every volume lives in (admin.vm.volume.Info's pool=). */
#define DEFAULT_POOL_NAME "dispenser"
/* Qubes' keyboard layout when no GUI qube names one: layout+variant+options. */
#define DEFAULT_KEYBOARD_LAYOUT "us++"

/* Writes the default into buf and returns true, or returns false: no default. */
typedef bool (*prop_default_fn)(const struct app *app, const struct qube *q, char *buf,
                                size_t size);
/* Checks a canonical value against the rest of the model (q is NULL for globals). */
typedef int (*prop_validate_fn)(const struct app *app, const struct qube *q, const char *value,
                                struct qerr *err);

struct prop_def {
    const char *name;
    enum prop_type type;
    int id;           /* index in the per-qube or global table */
    unsigned classes; /* CLASS_BIT mask; 0 for globals */
    unsigned flags;
    const char *fixed_default; /* used when get_default is NULL; NULL: no default */
    prop_default_fn get_default;
    prop_validate_fn validate;
};

extern const struct prop_def PROP_DEFS[PROP_COUNT];
extern const struct prop_def GPROP_DEFS[GPROP_COUNT];

const char *prop_type_name(enum prop_type type);
/* What the property means, one plain-text paragraph (props_help.c); global: def is one
 * of GPROP_DEFS. */
const char *prop_help(const struct prop_def *def, bool global);
/* Turns API input into the canonical stored text (int digits, True/False, "" for no
 * qube), with Qubes' error messages. out must hold at least size bytes. */
int prop_canonicalize(const struct prop_def *def, const char *raw, char *out, size_t size,
                      struct qerr *err);
