/* qvm-device CLASS {list,attach,detach,assign,unassign} and qvm-block (the same with the
 * class "block"), with upstream's sub-commands, aliases, output and exit codes over
 * admin.vm.device.<class>.{Available,Attached,Assigned,Attach,Detach,Assign,Unassign} and
 * admin.deviceclass.List (docs/devices.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

enum {
    OPT_LIST_CLASSES = 1,
    OPT_ASSIGNMENTS,
    OPT_SBDF,
    OPT_RO,
    OPT_OPTION,
    OPT_PERSISTENT,
    OPT_ASK,
    OPT_PORT,
    OPT_DEVICE,
};

static const struct opt_spec device_specs[] = {
    {"list-device-classes", 0, OPT_FLAG, OPT_LIST_CLASSES, NULL, "list the device classes"},
    {"list-classes", 0, OPT_FLAG, OPT_LIST_CLASSES, NULL, NULL},
    {"assignments", 's', OPT_FLAG, OPT_ASSIGNMENTS, NULL,
     "list: include info about device assignments, indicated by '*' before qube name"},
    {"with-sbdf", 0, OPT_FLAG, OPT_SBDF, NULL, "list: ignored for non-PCI devices"},
    {"resolve-paths", 0, OPT_FLAG, OPT_SBDF, NULL, NULL},
    {"ro", 0, OPT_FLAG, OPT_RO, NULL, "attach: attach device read-only (read-only=yes)"},
    {"option", 'o', OPT_VALUE, OPT_OPTION, "OPTION",
     "attach: set option for the device in opt=value form (can be repeated)"},
    {"persistent", 'p', OPT_FLAG, OPT_PERSISTENT, NULL,
     "attach: also assign the device (alias to `assign --required`)"},
    {"required", 'r', OPT_FLAG, OPT_PERSISTENT, NULL, "assign: mark the device required"},
    {"ask", 0, OPT_FLAG, OPT_ASK, NULL, "assign: always ask before auto-attachment"},
    {"ask-to-attach", 0, OPT_FLAG, OPT_ASK, NULL, NULL},
    {"port", 0, OPT_FLAG, OPT_PORT, NULL, "assign: ignore device presented identity"},
    {"only-port", 0, OPT_FLAG, OPT_PORT, NULL, NULL},
    {"device", 0, OPT_FLAG, OPT_DEVICE, NULL, "assign: ignore current port identity"},
    {"only-device", 0, OPT_FLAG, OPT_DEVICE, NULL, NULL},
};

#define COMMANDS_USAGE "{list,ls,l,attach,at,a,detach,d,dt,assign,s,unassign,u} ..."
#define COMMANDS_HELP                                                                  \
    "commands:\n"                                                                      \
    "  list (ls,l) [VMNAME...]             list devices (of the qubes given)\n"        \
    "  attach (at,a) VMNAME BACKEND:DEVICE_ID\n"                                       \
    "                                      attach a device to a running qube\n"        \
    "  detach (d,dt) VMNAME [BACKEND:DEVICE_ID]\n"                                     \
    "                                      detach a device (all without one)\n"        \
    "  assign (s) VMNAME BACKEND:DEVICE_ID assign a device: attached at every start\n" \
    "  unassign (u) VMNAME [BACKEND:DEVICE_ID]\n"                                      \
    "                                      remove an assignment (all without one)\n"   \
    "Without a command, devices are listed."

static const struct opt_parser block_parser = {
    .usage = "[-h] [--verbose] [--quiet] [--list-device-classes] " COMMANDS_USAGE,
    .description = "Qubes volume and block device management\n\n" COMMANDS_HELP,
    .specs = device_specs,
    .n_specs = ELEMENTSOF(device_specs),
};

static const struct opt_parser device_parser = {
    .usage = "[-h] [--verbose] [--quiet] [--list-device-classes] DEVICE_CLASS " COMMANDS_USAGE,
    .description = "Qubes volume and block device management\n\n" COMMANDS_HELP,
    .positionals = "  DEVICE_CLASS          Device class to manage ('pci', 'usb', etc)\n",
    .specs = device_specs,
    .n_specs = ELEMENTSOF(device_specs),
};

struct device_ctx {
    const struct opt_parser *parser;
    const char *devclass;
    bool list_classes, persistent;
    struct strv options; /* "key=value", in order */
    bool ro;
    bool ask, only_port, only_device, assignments, quiet;
};

static void device_option(void *userdata, int id, const char *value) {
    struct device_ctx *c = userdata;
    if (id == OPT_LIST_CLASSES)
        c->list_classes = true;
    else if (id == OPT_RO)
        c->ro = true;
    else if (id == OPT_PERSISTENT)
        c->persistent = true;
    else if (id == OPT_ASK)
        c->ask = true;
    else if (id == OPT_PORT)
        c->only_port = true;
    else if (id == OPT_DEVICE)
        c->only_device = true;
    else if (id == OPT_ASSIGNMENTS)
        c->assignments = true;
    else if (id == OPT_OPTION) {
        if (!strchr(value, '='))
            opts_error(c->parser, "argument --option/-o: expected opt=value, got '%s'", value);
        strv_push(&c->options, value);
    }
}

/* ---- properties "key='value'" of the daemon's lines ---- */

/* The value of key in a line of properties, unescaped; false when absent. */
static bool prop_get(const char *line, const char *key, char *out, size_t size) {
    size_t klen = strlen(key);
    for (const char *p = line; (p = strstr(p, key)); p++) {
        if ((p != line && p[-1] != ' ') || strncmp(p + klen, "='", 2) != 0)
            continue;
        size_t n = 0;
        for (p += klen + 2; *p && *p != '\'' && n + 1 < size; p++)
            out[n++] = (*p == '\\' && p[1] == '\'') ? *++p : *p;
        out[n] = '\0';
        return true;
    }
    return false;
}

static void put_prop(struct strbuf *sb, const char *key, const char *value) {
    strbuf_printf(sb, "%s%s='", sb->len ? " " : "", key);
    for (const char *p = value; *p; p++) {
        if (*p == '\'')
            strbuf_putc(sb, '\\');
        strbuf_putc(sb, *p);
    }
    strbuf_putc(sb, '\'');
}

static void fetch_lines(const char *method, const char *devclass, const char *arg, const char *vm,
                        struct strv *out) {
    char m[128];
    struct cli_err err;
    _cleanup_reply_ struct client_reply reply = {};
    snprintf(m, sizeof(m), "admin.vm.device.%s.%s", devclass, method);
    if (cli_call(m, arg, vm, NULL, &reply, &err) < 0) {
        if (cli_err_is(&err, "QubesVMNotFoundError"))
            return;
        cli_die_err(&err);
    }
    strv_split_lines(out, reply.r.content);
}

/* ---- list ---- */

/* Upstream's DeviceInfo.description: "<category>: <vendor> <product>". */
static void describe(const char *devclass, const char *props, char *out, size_t size) {
    char name[256] = "", serial[256] = "", vendor[256] = "", manuf[256] = "", product[256] = "";
    char parent[64] = "", backend[64] = "";
    prop_get(props, "product", product, sizeof(product));
    prop_get(props, "name", name, sizeof(name));
    prop_get(props, "serial", serial, sizeof(serial));
    prop_get(props, "vendor", vendor, sizeof(vendor));
    prop_get(props, "manufacturer", manuf, sizeof(manuf));
    prop_get(props, "parent_port_id", parent, sizeof(parent));
    prop_get(props, "backend_domain", backend, sizeof(backend));
    const char *prod = *product && strcmp(product, "unknown") ? product
                       : *name && strcmp(name, "unknown")     ? name
                       : *serial && strcmp(serial, "unknown") ? serial
                                                              : NULL;
    if (!prod && *parent) {
        snprintf(out, size, "sub-device of %s:%s", backend, parent);
        return;
    }
    char unknown[64];
    snprintf(unknown, sizeof(unknown), "unknown %s device", devclass);
    const char *vend = *vendor && strcmp(vendor, "unknown") ? vendor
                       : *manuf && strcmp(manuf, "unknown") ? manuf
                                                            : "unknown vendor";
    snprintf(out, size, "%s: %s %s", strcmp(devclass, "block") == 0 ? "Block_Storage" : "Other",
             vend, prod ? prod : unknown);
}

/* "vm (attached: read-only=no, frontend-dev=xvdi)": the options of the assignment;
 * mode "attached" for a device attached, the assignment's for one assigned. */
static void frontend_desc(const char *vm, const char *props, const char *mode, struct strbuf *out) {
    _cleanup_strbuf_ struct strbuf opts = STRBUF_INIT;
    for (const char *p = strstr(props, " _"); p; p = strstr(p + 1, " _")) {
        const char *eq = strstr(p, "='");
        char key[64], value[256];
        if (!eq || (size_t)(eq - p - 1) >= sizeof(key))
            continue;
        snprintf(key, sizeof(key), "%.*s", (int)(eq - p - 1), p + 1); /* "_name" */
        if (prop_get(props, key, value, sizeof(value)))
            strbuf_printf(&opts, "%s%s=%s", opts.len ? ", " : "", key + 1, value);
    }
    if (out->len)
        strbuf_puts(out, ", ");
    if (opts.len)
        strbuf_printf(out, "%s (%s: %s)", vm, mode, strbuf_str(&opts));
    else
        strbuf_printf(out, "%s (%s)", vm, mode);
}

struct dev_line {
    char ident[128]; /* backend:port_id */
    char descr[512];
    struct strbuf used_by;
};

static struct dev_line *line_for(struct dev_line **v, size_t *n, const char *ident) {
    for (size_t i = 0; i < *n; i++)
        if (strcmp((*v)[i].ident, ident) == 0)
            return &(*v)[i];
    *v = xrealloc(*v, (*n + 1) * sizeof(**v));
    struct dev_line *l = &(*v)[(*n)++];
    *l = (struct dev_line){.used_by = STRBUF_INIT};
    snprintf(l->ident, sizeof(l->ident), "%s", ident);
    return l;
}

/* "port:devid props" (Available) or "backend+port:devid props" (Attached). */
static void ident_of(const char *backend, const char *line, char *out, size_t size) {
    const char *colon = strchr(line, ':'), *plus = strchr(line, '+');
    if (plus && colon && plus < colon)
        snprintf(out, size, "%.*s:%.*s", (int)(plus - line), line, (int)(colon - plus - 1),
                 plus + 1);
    else
        snprintf(out, size, "%s:%.*s", backend, colon ? (int)(colon - line) : 0, line);
}

static int cmp_lines(const void *a, const void *b) {
    struct dev_line *x = (struct dev_line *)a, *y = (struct dev_line *)b;
    int r = strcmp(x->ident, y->ident);
    r = r ? r : strcmp(x->descr, y->descr);
    return r ? r : strcmp(strbuf_str(&x->used_by), strbuf_str(&y->used_by));
}

struct assigned {
    char backend[64], port[64], devid[128];
    const char *vm, *line;
};

/* upstream's DeviceAssignment.matches, of one assignment against another's device */
static bool assigned_matches(const struct assigned *a, const struct assigned *dev) {
    return strcmp(a->backend, dev->backend) == 0 &&
           (strcmp(a->port, "*") == 0 || strcmp(a->port, dev->port) == 0) &&
           (strcmp(a->devid, "*") == 0 || strcmp(a->devid, dev->devid) == 0);
}

/* "*vm (required: read-only=yes)": who has the device assigned, how. */
static void assigned_desc(const struct assigned *a, struct strbuf *out) {
    char mode[32] = "", vm[80];
    prop_get(a->line, "mode", mode, sizeof(mode));
    snprintf(vm, sizeof(vm), "*%s", a->vm);
    frontend_desc(vm, a->line, mode, out);
}

/* qvm-device list --assignments: a line per device assigned (port and identity), with
 * every qube whose assignment matches it. */
static void add_assignment_lines(const struct device_ctx *c, const struct qube_list *all,
                                 struct dev_line **v, size_t *n) {
    struct strv *lines = xcalloc(all->n + 1, sizeof(*lines));
    struct assigned *as = NULL;
    size_t na = 0;
    for (size_t q = 0; q < all->n; q++) {
        lines[q] = (struct strv){0};
        fetch_lines("Assigned", c->devclass, "", all->v[q].name, &lines[q]);
        for (size_t i = 0; i < lines[q].n; i++) {
            as = xrealloc(as, (na + 1) * sizeof(*as));
            struct assigned *a = &as[na++];
            *a = (struct assigned){.vm = all->v[q].name, .line = lines[q].v[i]};
            prop_get(a->line, "backend_domain", a->backend, sizeof(a->backend));
            prop_get(a->line, "port_id", a->port, sizeof(a->port));
            prop_get(a->line, "device_id", a->devid, sizeof(a->devid));
        }
    }
    for (size_t i = 0; i < na; i++) {
        bool seen = false; /* one line per device, however many qubes have it */
        for (size_t k = 0; k < i && !seen; k++)
            seen = !strcmp(as[k].backend, as[i].backend) && !strcmp(as[k].port, as[i].port) &&
                   !strcmp(as[k].devid, as[i].devid);
        if (seen)
            continue;
        *v = xrealloc(*v, (*n + 1) * sizeof(**v));
        struct dev_line *l = &(*v)[(*n)++];
        *l = (struct dev_line){.used_by = STRBUF_INIT};
        snprintf(l->ident, sizeof(l->ident), "%s:%s", as[i].backend, as[i].port);
        snprintf(l->descr, sizeof(l->descr), "%s",
                 strcmp(as[i].devid, "*") ? as[i].devid : "any device");
        for (size_t k = 0; k < na; k++)
            if (strcmp(as[k].vm, as[i].backend) && assigned_matches(&as[k], &as[i]))
                assigned_desc(&as[k], &l->used_by);
    }
    free(as);
    for (size_t q = 0; q < all->n; q++)
        strv_free(&lines[q]);
    free(lines);
}

static int device_list(const struct device_ctx *c, char **names, size_t n_names) {
    _cleanup_(qube_list_free) struct qube_list all = {0};
    struct cli_err err;
    if (qube_list_fetch("dom0", &all, &err) < 0)
        cli_die_err(&err);
    for (size_t i = 0; i < n_names; i++)
        if (!qube_list_find(&all, names[i]))
            opts_error(c->parser, "no such domain: '%s'", names[i]);
    struct dev_line *v = NULL;
    size_t n = 0;
    for (size_t q = 0; q < all.n; q++) {
        const char *vm = all.v[q].name;
        bool selected = n_names == 0;
        for (size_t i = 0; i < n_names && !selected; i++)
            selected = strcmp(names[i], vm) == 0;
        if (!selected)
            continue;
        _cleanup_(strv_free) struct strv avail = {0}, att = {0};
        fetch_lines("Available", c->devclass, "", vm, &avail);
        for (size_t i = 0; i < avail.n; i++) {
            char ident[128];
            ident_of(vm, avail.v[i], ident, sizeof(ident));
            struct dev_line *l = line_for(&v, &n, ident);
            describe(c->devclass, avail.v[i], l->descr, sizeof(l->descr));
        }
        /* and the devices attached to it, as their backend describes them */
        fetch_lines("Attached", c->devclass, "", vm, &att);
        for (size_t i = 0; i < att.n; i++) {
            char ident[128], backend[64] = "", port[64] = "";
            ident_of("", att.v[i], ident, sizeof(ident));
            prop_get(att.v[i], "backend_domain", backend, sizeof(backend));
            prop_get(att.v[i], "port_id", port, sizeof(port));
            _cleanup_(strv_free) struct strv dev = {0};
            fetch_lines("Available", c->devclass, port, backend, &dev);
            struct dev_line *l = line_for(&v, &n, ident);
            describe(c->devclass, dev.n ? dev.v[0] : att.v[i], l->descr, sizeof(l->descr));
        }
    }
    /* who uses them: every qube's attachments */
    for (size_t q = 0; q < all.n; q++) {
        _cleanup_(strv_free) struct strv att = {0};
        fetch_lines("Attached", c->devclass, "", all.v[q].name, &att);
        for (size_t i = 0; i < att.n; i++) {
            char ident[128];
            ident_of("", att.v[i], ident, sizeof(ident));
            for (size_t k = 0; k < n; k++)
                if (strcmp(v[k].ident, ident) == 0)
                    frontend_desc(all.v[q].name, att.v[i], "attached", &v[k].used_by);
        }
    }
    if (c->assignments) /* upstream: those of every qube, whichever were named */
        add_assignment_lines(c, &all, &v, &n);
    if (n)
        qsort(v, n, sizeof(*v), cmp_lines);
    _cleanup_(table_free) struct table t = {.ncols = 3};
    if (isatty(STDOUT_FILENO))
        table_add_row(&t, (const char *const[]){"BACKEND:DEVID", "DESCRIPTION", "USED BY"});
    for (size_t i = 0; i < n; i++) {
        table_add_row(&t, (const char *const[]){v[i].ident, v[i].descr, strbuf_str(&v[i].used_by)});
        strbuf_free(&v[i].used_by);
    }
    free(v);
    table_print(&t, stdout);
    return 0;
}

/* ---- the device: BACKEND:PORT_ID[:DEVICE_ID] ---- */

struct device_ref {
    char backend[64], port[64], devid[128];
};

static void parse_ref(const struct device_ctx *c, const char *s, struct device_ref *d) {
    const char *colon = strchr(s, ':');
    if (!colon || colon == s || strlen(s) >= sizeof(d->devid))
        opts_error(c->parser,
                   "expected a backend vm, port id and [optional] device id combination like "
                   "foo:bar[:baz] got %s",
                   s);
    snprintf(d->backend, sizeof(d->backend), "%.*s", (int)(colon - s), s);
    const char *port = colon + 1, *sep = strchr(port, ':');
    snprintf(d->port, sizeof(d->port), "%.*s", sep ? (int)(sep - port) : (int)strlen(port), port);
    snprintf(d->devid, sizeof(d->devid), "%s", sep && sep[1] ? sep + 1 : "*");
}

/* qrexec's argument form: "backend+port+devid", ':' as '+', '*' as '_'. */
static void ref_arg(const struct device_ref *d, char *out, size_t size) {
    snprintf(out, size, "%s+%s+%s", d->backend, strcmp(d->port, "*") ? d->port : "_",
             strcmp(d->devid, "*") ? d->devid : "_");
    for (char *p = out; *p; p++)
        if (*p == ':')
            *p = '+';
}

/* The device as its backend exposes it (its identity filled in), or the tool ends. */
static void resolve_exposed(const struct device_ctx *c, const struct qube_list *all,
                            struct device_ref *d) {
    if (!qube_list_find(all, d->backend))
        cli_die("no such backend vm!");
    _cleanup_(strv_free) struct strv avail = {0};
    fetch_lines("Available", c->devclass, d->port, d->backend, &avail);
    char devid[128] = "";
    if (avail.n)
        prop_get(avail.v[0], "device_id", devid, sizeof(devid));
    if (!avail.n || (strcmp(d->devid, "*") && strcmp(d->devid, devid)))
        cli_die("backend vm %s doesn't expose %s device '%s'", d->backend, c->devclass, d->port);
    snprintf(d->devid, sizeof(d->devid), "%s", devid);
}

/* The options given (-o, --ro) as "_name='value'" properties, upstream's spelling "ro"
 * turned into "read-only"; hint, if given, gets them as " -o name=value". */
static void put_options(const struct device_ctx *c, struct strbuf *payload, struct strbuf *hint) {
    _cleanup_strbuf_ struct strbuf unused = STRBUF_INIT;
    if (!payload)
        payload = &unused;
    bool ro_done = false;
    for (size_t i = 0; i < c->options.n; i++) {
        char key[128];
        const char *opt = c->options.v[i], *eq = strchr(opt, '=');
        snprintf(key, sizeof(key), "_%.*s", (int)(eq - opt), opt);
        const char *value = eq + 1;
        if (strcmp(key, "_ro") == 0) { /* upstream's old spelling */
            snprintf(key, sizeof(key), "_read-only");
            value = feature_is_true(value) && strcasecmp(value, "false") && strcmp(value, "0") &&
                            strcasecmp(value, "no")
                        ? "yes"
                        : "no";
        }
        if (c->ro && strcmp(key, "_read-only") == 0) {
            value = "yes";
            ro_done = true;
        }
        put_prop(payload, key, value);
        if (hint)
            strbuf_printf(hint, " -o %s=%s", key + 1, value);
    }
    if (c->ro && !ro_done) {
        put_prop(payload, "_read-only", "yes");
        if (hint)
            strbuf_puts(hint, " -o read-only=yes");
    }
}

/* An assignment as upstream's client serialises it: the device, the mode, the qube. */
static void put_assignment(const struct device_ctx *c, const struct device_ref *d, const char *mode,
                           const char *frontend, struct strbuf *payload) {
    put_prop(payload, "device_id", d->devid);
    put_prop(payload, "port_id", d->port);
    put_prop(payload, "devclass", c->devclass);
    put_prop(payload, "backend_domain", d->backend);
    put_prop(payload, "mode", mode);
    if (frontend)
        put_prop(payload, "frontend_domain", frontend);
    put_options(c, payload, NULL);
}

static int device_attach(struct device_ctx *c, char **args, size_t n) {
    if (n < 2)
        opts_error(c->parser, "the following arguments are required: %s",
                   n ? "BACKEND:DEVICE_ID" : "VMNAME, BACKEND:DEVICE_ID");
    if (n > 2)
        opts_error(c->parser, "unrecognized arguments: %s", args[2]);
    _cleanup_(qube_list_free) struct qube_list vm = {0}, all = {0};
    struct cli_err err;
    qube_resolve(c->parser, args[0], &vm);
    struct device_ref d;
    parse_ref(c, args[1], &d);
    if (qube_list_fetch("dom0", &all, &err) < 0)
        cli_die_err(&err);
    resolve_exposed(c, &all, &d);
    _cleanup_strbuf_ struct strbuf payload = STRBUF_INIT;
    put_assignment(c, &d, c->persistent ? "required" : "manual", vm.v[0].name, &payload);
    char arg[256], method[128];
    ref_arg(&d, arg, sizeof(arg));
    snprintf(method, sizeof(method), "admin.vm.device.%s.Attach", c->devclass);
    int r = cli_call_simple(method, arg, vm.v[0].name, strbuf_str(&payload), &err);
    if (r < 0 && !c->persistent) {
        cli_print_error("%s", err.msg);
        return 1;
    }
    if (c->persistent) { /* qvm-device's --persistent: the assignment too */
        snprintf(method, sizeof(method), "admin.vm.device.%s.Assign", c->devclass);
        if (cli_call_simple(method, arg, vm.v[0].name, strbuf_str(&payload), &err) < 0) {
            cli_print_error("%s", err.msg);
            return 1;
        }
    }
    return 0;
}

static int detach_one(const struct device_ctx *c, const char *vm, const char *arg) {
    char method[128];
    struct cli_err err;
    snprintf(method, sizeof(method), "admin.vm.device.%s.Detach", c->devclass);
    if (cli_call_simple(method, arg, vm, NULL, &err) == 0)
        return 0;
    cli_print_error("%s", err.msg);
    return 1;
}

static int device_detach(struct device_ctx *c, char **args, size_t n) {
    if (n < 1)
        opts_error(c->parser, "the following arguments are required: VMNAME");
    if (n > 2)
        opts_error(c->parser, "unrecognized arguments: %s", args[2]);
    _cleanup_(qube_list_free) struct qube_list vm = {0};
    qube_resolve(c->parser, args[0], &vm);
    _cleanup_(strv_free) struct strv att = {0};
    fetch_lines("Attached", c->devclass, "", vm.v[0].name, &att);
    struct device_ref d = {0};
    if (n == 2)
        parse_ref(c, args[1], &d);
    bool any = false;
    int ret = 0;
    for (size_t i = 0; i < att.n; i++) {
        char backend[64] = "", port[64] = "", devid[128] = "";
        prop_get(att.v[i], "backend_domain", backend, sizeof(backend));
        prop_get(att.v[i], "port_id", port, sizeof(port));
        prop_get(att.v[i], "device_id", devid, sizeof(devid));
        if (n == 2 &&
            (strcmp(d.backend, backend) || (strcmp(d.port, "*") && strcmp(d.port, port)) ||
             (strcmp(d.devid, "*") && strcmp(d.devid, devid))))
            continue;
        char arg[256];
        snprintf(arg, sizeof(arg), "%s+%s", backend, port);
        any = true;
        ret |= detach_one(c, vm.v[0].name, arg);
    }
    if (n == 2 && !any) {
        cli_print_error("%s is not attached.", args[1]);
        return 1;
    }
    return ret;
}

/* ---- persistent assignments ---- */

/* The device as upstream's DeviceAction(allow_unknown) makes it: the identity the backend
 * shows at that port when none is given or the same is; the one given otherwise. Returns
 * whether the device is offered now with that identity. */
static bool resolve_known(const struct device_ctx *c, const struct qube_list *all,
                          struct device_ref *d, bool *unknown_unset) {
    if (!qube_list_find(all, d->backend))
        cli_die("no such backend vm!");
    _cleanup_(strv_free) struct strv avail = {0};
    if (strcmp(d->port, "*"))
        fetch_lines("Available", c->devclass, d->port, d->backend, &avail);
    char devid[128] = "";
    if (avail.n)
        prop_get(avail.v[0], "device_id", devid, sizeof(devid));
    *unknown_unset = false;
    if (avail.n && (strcmp(d->devid, "*") == 0 || strcmp(d->devid, devid) == 0)) {
        snprintf(d->devid, sizeof(d->devid), "%s", devid);
        return true;
    }
    *unknown_unset = strcmp(d->devid, "*") == 0;
    return false;
}

static bool is_attached_to(const struct device_ctx *c, const char *vm, const struct device_ref *d) {
    _cleanup_(strv_free) struct strv att = {0};
    char arg[160];
    snprintf(arg, sizeof(arg), "%s+%s", d->backend, d->port);
    fetch_lines("Attached", c->devclass, arg, vm, &att);
    for (size_t i = 0; i < att.n; i++) {
        char devid[128] = "";
        prop_get(att.v[i], "device_id", devid, sizeof(devid));
        if (strcmp(devid, d->devid) == 0)
            return true;
    }
    return false;
}

static int call_or_report(const char *method, const char *arg, const char *vm,
                          const char *payload) {
    struct cli_err err;
    if (cli_call_simple(method, arg, vm, payload, &err) == 0)
        return 0;
    cli_print_error("%s", err.msg);
    return 1;
}

static int device_assign(struct device_ctx *c, char **args, size_t n) {
    if (n < 2)
        opts_error(c->parser, "the following arguments are required: %s",
                   n ? "BACKEND:DEVICE_ID" : "VMNAME, BACKEND:DEVICE_ID");
    if (n > 2)
        opts_error(c->parser, "unrecognized arguments: %s", args[2]);
    if (c->ask && c->persistent)
        opts_error(c->parser, "argument --required/-r: not allowed with argument "
                              "--ask/--ask-to-attach");
    _cleanup_(qube_list_free) struct qube_list vm = {0}, all = {0};
    struct cli_err err;
    qube_resolve(c->parser, args[0], &vm);
    struct device_ref d, given;
    parse_ref(c, args[1], &d);
    if (qube_list_fetch("dom0", &all, &err) < 0)
        cli_die_err(&err);
    bool unknown_unset, known = resolve_known(c, &all, &d, &unknown_unset);
    given = d;
    if (c->only_port)
        snprintf(d.devid, sizeof(d.devid), "*");
    else if (unknown_unset) {
        cli_print_error("backend vm %s doesn't expose %s device '%s'", d.backend, c->devclass,
                        d.port);
        return 1;
    }
    if (c->only_device)
        snprintf(d.port, sizeof(d.port), "*");
    const char *mode = c->persistent ? "required" : c->ask ? "ask-to-attach" : "auto-attach";
    _cleanup_strbuf_ struct strbuf payload = STRBUF_INIT, hint = STRBUF_INIT;
    put_assignment(c, &d, mode, vm.v[0].name, &payload);
    put_options(c, NULL, &hint);
    char arg[256], method[128];
    ref_arg(&d, arg, sizeof(arg));
    snprintf(method, sizeof(method), "admin.vm.device.%s.Assign", c->devclass);
    if (call_or_report(method, arg, vm.v[0].name, strbuf_str(&payload)))
        return 1;
    /* as upstream: how to have it now, when the qube runs and does not have it yet */
    if (!c->quiet && vm.v[0].state && strcmp(vm.v[0].state, "Halted") &&
        strcmp(c->devclass, "pci") && known && !is_attached_to(c, vm.v[0].name, &given))
        printf("Assigned. To attach you can now restart domain or run: \n\tqvm-%s attach%s %s "
               "%s:%s\n",
               c->devclass, strbuf_str(&hint), vm.v[0].name, given.backend, given.port);
    return 0;
}

/* One assignment removed; upstream's hint when the device is still attached. */
static int unassign_one(const struct device_ctx *c, const char *vm, const struct device_ref *d) {
    char arg[256], method[128];
    ref_arg(d, arg, sizeof(arg));
    snprintf(method, sizeof(method), "admin.vm.device.%s.Unassign", c->devclass);
    if (call_or_report(method, arg, vm, NULL))
        return 1;
    if (!c->quiet && strcmp(d->port, "*") && is_attached_to(c, vm, d))
        printf("Unassigned. To detach you can now restart domain or run: \n \tqvm-%s detach %s "
               "%s:%s\n",
               c->devclass, vm, d->backend, d->port);
    return 0;
}

static int device_unassign(struct device_ctx *c, char **args, size_t n) {
    if (n < 1)
        opts_error(c->parser, "the following arguments are required: VMNAME");
    if (n > 2)
        opts_error(c->parser, "unrecognized arguments: %s", args[2]);
    _cleanup_(qube_list_free) struct qube_list vm = {0}, all = {0};
    qube_resolve(c->parser, args[0], &vm);
    if (n == 1) { /* every assignment of the qube */
        _cleanup_(strv_free) struct strv lines = {0};
        fetch_lines("Assigned", c->devclass, "", vm.v[0].name, &lines);
        int ret = 0;
        for (size_t i = 0; i < lines.n; i++) {
            struct device_ref d = {0};
            prop_get(lines.v[i], "backend_domain", d.backend, sizeof(d.backend));
            prop_get(lines.v[i], "port_id", d.port, sizeof(d.port));
            prop_get(lines.v[i], "device_id", d.devid, sizeof(d.devid));
            ret |= unassign_one(c, vm.v[0].name, &d);
        }
        return ret;
    }
    struct device_ref d;
    struct cli_err err;
    parse_ref(c, args[1], &d);
    if (qube_list_fetch("dom0", &all, &err) < 0)
        cli_die_err(&err);
    bool unknown_unset;
    resolve_known(c, &all, &d, &unknown_unset);
    if (c->only_port)
        snprintf(d.devid, sizeof(d.devid), "*");
    if (c->only_device)
        snprintf(d.port, sizeof(d.port), "*");
    return unassign_one(c, vm.v[0].name, &d);
}

static int list_classes(void) {
    _cleanup_reply_ struct client_reply reply = {};
    struct cli_err err;
    if (cli_call("admin.deviceclass.List", "", "dom0", NULL, &reply, &err) < 0)
        cli_die_err(&err);
    fputs(reply.r.content, stdout);
    return 0;
}

static bool is_one_of(const char *word, const char *const *names) {
    for (; *names; names++)
        if (strcmp(word, *names) == 0)
            return true;
    return false;
}

static int run_command(struct device_ctx *c, char **pos, size_t n) {
    static const char *const list[] = {"list", "ls", "l", NULL};
    static const char *const attach[] = {"attach", "at", "a", NULL};
    static const char *const detach[] = {"detach", "d", "dt", NULL};
    static const char *const assign[] = {"assign", "s", NULL};
    static const char *const unassign[] = {"unassign", "u", NULL};
    if (n == 0 || is_one_of(pos[0], list))
        return device_list(c, pos + (n ? 1 : 0), n ? n - 1 : 0);
    if (is_one_of(pos[0], attach))
        return device_attach(c, pos + 1, n - 1);
    if (is_one_of(pos[0], detach))
        return device_detach(c, pos + 1, n - 1);
    if (is_one_of(pos[0], assign))
        return device_assign(c, pos + 1, n - 1);
    if (is_one_of(pos[0], unassign))
        return device_unassign(c, pos + 1, n - 1);
    opts_error(c->parser,
               "argument command: invalid choice: '%s' (choose from 'list', 'ls', 'l', "
               "'attach', 'at', 'a', 'detach', 'd', 'dt', 'assign', 's', 'unassign', 'u')",
               pos[0]);
}

static int device_main(const struct opt_parser *parser, const char *devclass, int argc,
                       char **argv) {
    _cleanup_(opts_result_free) struct opts_result r = {0};
    struct device_ctx c = {.parser = parser, .devclass = devclass};
    opts_parse(parser, argc, argv, device_option, &c, &r);
    c.quiet = r.verbose < 0;
    if (c.only_port && c.only_device)
        opts_error(parser, "argument --device/--only-device: not allowed with argument "
                           "--port/--only-port");
    int ret;
    if (c.list_classes) {
        ret = list_classes();
    } else {
        char **pos = r.pos;
        size_t n = r.n_pos;
        if (!devclass) {
            if (n == 0)
                opts_error(parser, "the following arguments are required: DEVICE_CLASS");
            c.devclass = pos[0];
            pos++, n--;
            if (strspn(c.devclass, "abcdefghijklmnopqrstuvwxyz0123456789_") != strlen(c.devclass))
                opts_error(parser, "argument DEVICE_CLASS: invalid device class '%s'", c.devclass);
        }
        ret = run_command(&c, pos, n);
    }
    strv_free(&c.options);
    return ret;
}

int qvm_block_main(int argc, char **argv) {
    return device_main(&block_parser, "block", argc, argv);
}

int qvm_device_main(int argc, char **argv) { return device_main(&device_parser, NULL, argc, argv); }
