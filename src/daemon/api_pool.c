/* admin.pool.*: storage pools in qubesd's wire format (pools.h has what they are).
 * Bad input answers qubesd's exceptions and changes nothing: an unknown pool or driver
 * as argument is PermissionDenied ("Argument not in ..."), a malformed payload a
 * ProtocolError, a name taken QubesPoolInUseError. */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "names.h"
#include "pool_mount.h"

/* Each driver's parameters as qubesd lists them (its __init__'s, without name). */
static const char *const DIR_PARAMS[] = {"dir_path", "revisions_to_keep", "ephemeral_volatile"};
static const char *const RAM_PARAMS[] = {"size", "revisions_to_keep", "ephemeral_volatile"};

static struct pool *pool_arg(struct api_call *c) {
    struct pool *p = app_pool_find(c->app, c->req->arg);
    if (!p)
        qerr_set(c->err, EXC_PERMISSION, "Argument not in 'pools'");
    return p;
}

static int pool_list(struct api_call *c) {
    for (size_t i = 0; i < c->app->n_pools; i++)
        api_put_line(c->out, c->app->pools[i].name);
    return 0;
}

static void driver_line(struct strbuf *out, const char *driver, const char *const *params,
                        size_t n) {
    strbuf_puts(out, driver);
    for (size_t i = 0; i < n; i++)
        strbuf_printf(out, " %s", params[i]);
    strbuf_putc(out, '\n');
}

static int pool_list_drivers(struct api_call *c) {
    driver_line(c->out, "dir", DIR_PARAMS, ELEMENTSOF(DIR_PARAMS));
    driver_line(c->out, "ram", RAM_PARAMS, ELEMENTSOF(RAM_PARAMS));
    return 0;
}

/* The dir pool has no encrypted volatile volume; a ram pool's is gone at every stop
 * anyway, which is what ephemeral_volatile is for in Qubes. */
static bool ephemeral_volatile(const struct pool *p) { return p->driver == POOL_RAM; }

/* qubesd's order: the configuration sorted by key, then size and usage. */
static int pool_info(struct api_call *c) {
    const struct pool *p = pool_arg(c);
    if (!p)
        return -1;
    char dir[4096];
    uint64_t size = 0, used = 0;
    bool known = pool_usage(c->app, p, &size, &used) == 0;
    if (p->driver == POOL_DIR && pool_dir_path(c->app, dir, sizeof(dir)) == 0)
        strbuf_printf(c->out, "dir_path=%s\n", dir);
    strbuf_printf(c->out, "driver=%s\nephemeral_volatile=%s\nname=%s\nrevisions_to_keep=%d\n",
                  pool_driver_name(p->driver), ephemeral_volatile(p) ? "True" : "False", p->name,
                  p->revisions_to_keep);
    if (p->driver == POOL_RAM)
        strbuf_printf(c->out, "size=%" PRIu64 "\n", p->size);
    else if (known)
        strbuf_printf(c->out, "size=%" PRIu64 "\n", size);
    if (known)
        strbuf_printf(c->out, "usage=%" PRIu64 "\n", used);
    return 0;
}

static int pool_usage_details(struct api_call *c) {
    const struct pool *p = pool_arg(c);
    uint64_t size = 0, used = 0;
    if (!p)
        return -1;
    if (pool_usage(c->app, p, &size, &used) == 0)
        strbuf_printf(c->out, "data_size=%" PRIu64 "\ndata_usage=%" PRIu64 "\n",
                      p->driver == POOL_RAM ? p->size : size, used);
    return 0;
}

static int pool_volume_list(struct api_call *c) {
    const struct pool *p = pool_arg(c);
    if (!p)
        return -1;
    for (size_t i = 0; i < c->app->n_qubes; i++) {
        const struct qube *q = c->app->qubes[i];
        for (int v = 0; q->klass != QUBE_ADMINVM && v < PV_COUNT; v++)
            if (strcmp(app_volume_pool(c->app, q, v), p->name) == 0)
                strbuf_printf(c->out, "%s/%s\n", q->uuid, POOL_VOLUME_NAMES[v]);
    }
    return 0;
}

/* ---- add ---- */

/* Bytes with an optional binary unit (K, M, G, T, also as KiB...): the tmpfs's size. */
static int parse_size(const char *s, uint64_t *out) {
    char *end;
    if (!isdigit((unsigned char)*s))
        return -1;
    unsigned long long v = strtoull(s, &end, 10);
    static const char units[] = "KMGT";
    const char *u = *end ? strchr(units, toupper((unsigned char)*end)) : NULL;
    if (*end && (!u || (end[1] && strcmp(end + 1, "iB") != 0 && strcmp(end + 1, "B") != 0)))
        return -1;
    for (int shift = u ? (int)(u - units) + 1 : 0; shift > 0; shift--) {
        if (v > (~0ULL >> 10))
            return -1;
        v <<= 10;
    }
    *out = v;
    return 0;
}

struct add_request {
    char buf[2048];
    const char *keys[16], *values[16];
    size_t n;
};

static const char *add_value(const struct add_request *r, const char *key) {
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->keys[i], key) == 0)
            return r->values[i];
    return NULL;
}

/* "key=value" lines, each key once (qubesd's checks, in its order). */
static int parse_add_payload(struct api_call *c, struct add_request *r) {
    size_t len = c->req->payload_len;
    if (len >= sizeof(r->buf))
        return qerr_set(c->err, EXC_PROTOCOL, "Pool parameters are too long");
    memcpy(r->buf, c->req->payload, len);
    r->buf[len] = '\0';
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)r->buf[i] > 0x7e || (r->buf[i] < 0x20 && r->buf[i] != '\n'))
            return qerr_set(c->err, EXC_PROTOCOL, "Pool parameters contains non-ASCII characters");
    for (char *save = NULL, *line = strtok_r(r->buf, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        char *eq = strchr(line, '=');
        if (!eq)
            return qerr_set(c->err, EXC_PROTOCOL, "Options must be separated by equal sign");
        if (r->n == ELEMENTSOF(r->keys))
            return qerr_set(c->err, EXC_PROTOCOL, "Unexpected driver options found");
        *eq = '\0';
        if (add_value(r, line))
            return qerr_set(c->err, EXC_PROTOCOL, "Options must be unique");
        r->keys[r->n] = line;
        r->values[r->n++] = eq + 1;
    }
    return 0;
}

static bool is_param(const char *const *params, size_t n, const char *key) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(params[i], key) == 0)
            return true;
    return false;
}

static int check_add_options(struct api_call *c, const struct add_request *r,
                             enum pool_driver driver) {
    const char *const *params = driver == POOL_RAM ? RAM_PARAMS : DIR_PARAMS;
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->keys[i], "name") != 0 && !is_param(params, 3, r->keys[i]))
            return qerr_set(c->err, EXC_PROTOCOL, "Unexpected driver options found");
    const char *required = driver == POOL_RAM ? "size" : "dir_path";
    if (!add_value(r, required))
        return qerr_set(c->err, EXC_QUBES, "missing required driver options: %s", required);
    return 0;
}

static int parse_keep(struct api_call *c, const char *text, int *out) {
    char *end;
    long v = strtol(text, &end, 10);
    if (!*text || *end || v < -1 || v > 256)
        return qerr_set(c->err, EXC_VALUE,
                        "revisions_to_keep must be a number from -1 (no limit) to 256: '%s'", text);
    *out = (int)v;
    return 0;
}

static int check_ephemeral(struct api_call *c, const struct pool *p, const char *text) {
    bool yes = strcmp(text, "True") == 0 || strcmp(text, "true") == 0 || strcmp(text, "1") == 0;
    bool no = strcmp(text, "False") == 0 || strcmp(text, "false") == 0 || strcmp(text, "0") == 0 ||
              !*text;
    if (!yes && !no)
        return qerr_set(c->err, EXC_PROTOCOL, "Payload is not boolean ASCII");
    if (yes != ephemeral_volatile(p))
        return qerr_set(c->err, EXC_NOT_IMPLEMENTED,
                        "ephemeral_volatile is %s for a pool of the %s driver: a ram pool's "
                        "volatile data is gone at every stop, the dir driver does not encrypt it",
                        ephemeral_volatile(p) ? "True" : "False", pool_driver_name(p->driver));
    return 0;
}

#define MIN_RAM_POOL (1ULL << 20)

static int build_pool(struct api_call *c, const struct add_request *r, struct pool *p) {
    const char *v;
    snprintf(p->name, sizeof(p->name), "%s", add_value(r, "name"));
    p->revisions_to_keep = 1;
    if ((v = add_value(r, "revisions_to_keep")) && parse_keep(c, v, &p->revisions_to_keep) < 0)
        return -1;
    if (p->driver == POOL_DIR)
        return qerr_set(c->err, EXC_NOT_IMPLEMENTED,
                        "A second pool of the dir driver is not implemented by dispenser: the "
                        "engines keep their volumes in '%s' under the state directory",
                        DEFAULT_POOL_NAME);
    v = add_value(r, "size");
    if (parse_size(v, &p->size) < 0 || p->size < MIN_RAM_POOL)
        return qerr_set(c->err, EXC_VALUE,
                        "size of a ram pool must be a number of bytes of at least 1M, with an "
                        "optional unit K, M, G or T: '%s'",
                        v);
    if ((v = add_value(r, "ephemeral_volatile")) && check_ephemeral(c, p, v) < 0)
        return -1;
    return 0;
}

static int pool_add(struct api_call *c) {
    enum pool_driver driver;
    struct add_request r = {0};
    if (pool_driver_from_name(c->req->arg, &driver) < 0)
        return qerr_set(c->err, EXC_PERMISSION, "Argument not in 'available drivers'");
    if (parse_add_payload(c, &r) < 0)
        return -1;
    const char *name = add_value(&r, "name");
    if (!name)
        return qerr_set(c->err, EXC_PROTOCOL, "Pool configuration must contain key: name");
    if (!*name || strlen(name) >= sizeof(((struct pool *)0)->name) ||
        strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") !=
            strlen(name) ||
        strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return qerr_set(c->err, EXC_PROTOCOL,
                        "Pool name must be in safe set: "
                        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.");
    struct pool p = {.driver = driver};
    if (check_add_options(c, &r, driver) < 0)
        return -1;
    if (app_pool_find(c->app, name))
        return qerr_set(c->err, "QubesPoolInUseError", "Storage pool is in use: '%s'", name);
    if (build_pool(c, &r, &p) < 0 || pool_mount(c->app, &p, c->err) < 0)
        return -1;
    if (app_pool_add(c->app, &p, c->err) < 0) {
        struct qerr ignored = {0};
        pool_unmount(c->app, &p, &ignored);
        return -1;
    }
    return 0;
}

/* ---- remove, settings ---- */

static int pool_remove(struct api_call *c) {
    struct pool *p = pool_arg(c);
    if (!p || app_pool_check_unused(c->app, p->name, c->err) < 0)
        return -1;
    struct pool copy = *p;
    if (strcmp(copy.name, DEFAULT_POOL_NAME) != 0 && pool_unmount(c->app, &copy, c->err) < 0)
        return -1;
    if (app_pool_remove(c->app, copy.name, c->err) < 0) {
        struct qerr ignored = {0};
        pool_mount(c->app, &copy, &ignored); /* still a pool: its tmpfs back */
        return -1;
    }
    return 0;
}

/* The payload as a NUL-terminated string (short: a number or a boolean). */
static int short_payload(struct api_call *c, char *buf, size_t size) {
    size_t len = c->req->payload_len;
    if (len >= size || !text_is_printable_ascii(c->req->payload, len))
        return qerr_set(c->err, EXC_PROTOCOL, "Invalid payload");
    memcpy(buf, c->req->payload, len);
    buf[len] = '\0';
    return 0;
}

static int pool_set_revisions(struct api_call *c) {
    struct pool *p = pool_arg(c);
    char buf[32];
    int keep;
    if (!p || short_payload(c, buf, sizeof(buf)) < 0)
        return -1;
    char *end;
    long v = strtol(buf, &end, 10);
    if (!*buf || *end || strspn(buf, "-0123456789") != strlen(buf))
        return qerr_set(c->err, EXC_PROTOCOL, "Invalid revisions to keep");
    if (v < -1)
        return qerr_set(c->err, EXC_PROTOCOL, "Value can't be lower than -1");
    if (parse_keep(c, buf, &keep) < 0)
        return -1;
    return app_pool_set_revisions(c->app, p, keep, c->err);
}

static int pool_set_ephemeral(struct api_call *c) {
    const struct pool *p = pool_arg(c);
    char buf[16];
    if (!p || short_payload(c, buf, sizeof(buf)) < 0)
        return -1;
    return check_ephemeral(c, p, buf);
}

#define GLOBAL (API_DEST_ADMINVM | API_NO_PAYLOAD)
const struct api_method API_POOL_METHODS[] = {
    {"admin.pool.List", pool_list, GLOBAL | API_NO_ARG},
    {"admin.pool.ListDrivers", pool_list_drivers, GLOBAL | API_NO_ARG},
    {"admin.pool.Info", pool_info, GLOBAL | API_WANTS_ARG},
    {"admin.pool.UsageDetails", pool_usage_details, GLOBAL | API_WANTS_ARG},
    {"admin.pool.volume.List", pool_volume_list, GLOBAL | API_WANTS_ARG},
    {"admin.pool.Add", pool_add, API_DEST_ADMINVM | API_WANTS_ARG | API_WANTS_PAYLOAD},
    {"admin.pool.Remove", pool_remove, GLOBAL | API_WANTS_ARG},
    {"admin.pool.Set.revisions_to_keep", pool_set_revisions,
     API_DEST_ADMINVM | API_WANTS_ARG | API_WANTS_PAYLOAD},
    {"admin.pool.Set.ephemeral_volatile", pool_set_ephemeral,
     API_DEST_ADMINVM | API_WANTS_ARG | API_WANTS_PAYLOAD},
    {NULL, NULL, 0},
};
