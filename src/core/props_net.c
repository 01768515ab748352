#include "props_net.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "props.h"

/* Deeper netvm chains than this are refused as loops (they could only be one). */
#define NET_CHAIN_MAX 16

const char *net_prop(const struct app *app, const struct qube *q, int prop_id, char *buf,
                     size_t size) {
    bool is_default;
    const char *v = app_prop_get(app, q, &PROP_DEFS[prop_id], buf, size, &is_default);
    if (v != buf)
        snprintf(buf, size, "%s", v);
    return buf;
}

bool net_provides_network(const struct app *app, const struct qube *q) {
    char buf[16];
    return q->klass != QUBE_ADMINVM &&
           strcmp(net_prop(app, q, P_PROVIDES_NETWORK, buf, sizeof(buf)), "True") == 0;
}

struct qube *net_netvm_of(const struct app *app, const struct qube *q) {
    if (q->klass == QUBE_ADMINVM)
        return NULL;
    char buf[64];
    const char *name = net_prop(app, q, P_NETVM, buf, sizeof(buf));
    struct qube *netvm = *name ? app_find(app, name) : NULL;
    return netvm != q ? netvm : NULL;
}

static bool is_networked(const struct app *app, const struct qube *q) {
    return net_provides_network(app, q) || net_netvm_of(app, q);
}

/* The default netvm is the global default_netvm, except for that qube itself (sys-net
 * would otherwise be its own netvm). A disposable's comes from its template (PF_INHERIT). */
bool net_prop_default_netvm(const struct app *app, const struct qube *q, char *buf, size_t size) {
    bool is_default;
    char tmp[64];
    const char *v = app_global_get(app, &GPROP_DEFS[G_DEFAULT_NETVM], tmp, sizeof(tmp),
                                   &is_default);
    snprintf(buf, size, "%s", q && strcmp(v, q->name) == 0 ? "" : v);
    return true;
}

/* Qubes' vmid_to_ipv4: low ids keep their plain address; above, skip .0 and .255. */
static void vmid_to_ipv4(const char *prefix, unsigned id, char *buf, size_t size) {
    if (id < 255) {
        snprintf(buf, size, "%s.%u.%u", prefix, (id >> 8) & 0xff, id & 0xff);
        return;
    }
    id -= 1;
    snprintf(buf, size, "%s.%u.%u", prefix, id / 254, id % 254 + 1);
}

bool net_prop_default_ip(const struct app *app, const struct qube *q, char *buf, size_t size) {
    if (!is_networked(app, q))
        return false;
    if (q->klass == QUBE_DISPVM) {
        char id[16];
        vmid_to_ipv4("10.138", (unsigned)atoi(net_prop(app, q, P_DISPID, id, sizeof(id))), buf,
                     size);
        return true;
    }
    vmid_to_ipv4("10.137", (unsigned)q->qid, buf, size);
    return true;
}

static bool fake_or(const struct app *app, const struct qube *q, const char *feature, int prop_id,
                    char *buf, size_t size) {
    const char *fake = app_feature_check(app, q, feature, FEATURE_FALLBACK_TEMPLATE);
    if (fake && *fake) {
        snprintf(buf, size, "%s", fake);
        return true;
    }
    net_prop(app, q, prop_id, buf, size);
    return true;
}

bool net_prop_visible_ip(const struct app *app, const struct qube *q, char *buf, size_t size) {
    return fake_or(app, q, "net.fake-ip", P_IP, buf, size);
}

bool net_prop_gateway(const struct app *app, const struct qube *q, char *buf, size_t size) {
    if (!net_provides_network(app, q))
        return false;
    return net_prop_visible_ip(app, q, buf, size);
}

bool net_prop_visible_gateway(const struct app *app, const struct qube *q, char *buf, size_t size) {
    const char *fake = app_feature_check(app, q, "net.fake-gateway", FEATURE_FALLBACK_TEMPLATE);
    if (fake && *fake)
        return snprintf(buf, size, "%s", fake), true;
    const struct qube *netvm = net_netvm_of(app, q);
    if (!netvm)
        return false;
    net_prop(app, netvm, P_GATEWAY, buf, size);
    return true;
}

bool net_prop_visible_netmask(const struct app *app, const struct qube *q, char *buf, size_t size) {
    const char *fake = app_feature_check(app, q, "net.fake-netmask", FEATURE_FALLBACK_TEMPLATE);
    if (fake && *fake)
        return snprintf(buf, size, "%s", fake), true;
    if (!net_netvm_of(app, q))
        return false;
    snprintf(buf, size, NET_NETMASK);
    return true;
}

bool net_prop_dns(const struct app *app, const struct qube *q, char *buf, size_t size) {
    if (!is_networked(app, q))
        return false;
    snprintf(buf, size, NET_DNS1 " " NET_DNS2);
    return true;
}

/* Does following `from`'s netvm chain lead to `to`? */
static bool chain_reaches(const struct app *app, const struct qube *from, const struct qube *to) {
    for (int depth = 0; from && depth < NET_CHAIN_MAX; depth++) {
        if (from == to)
            return true;
        from = net_netvm_of(app, from);
    }
    return from != NULL; /* too deep: treat as a loop */
}

int net_validate_netvm(const struct app *app, const struct qube *q, const char *value,
                       struct qerr *err) {
    if (!*value)
        return 0;
    const struct qube *netvm = app_find(app, value);
    if (!netvm || !net_provides_network(app, netvm))
        return qerr_set(err, EXC_VALUE, "The %s qube does not provide network", value);
    if (q && chain_reaches(app, netvm, q))
        return qerr_set(err, EXC_VALUE, "Loops in network are unsupported");
    return 0;
}

int net_validate_provides_network(const struct app *app, const struct qube *q, const char *value,
                                  struct qerr *err) {
    if (strcmp(value, "False") != 0)
        return 0;
    for (size_t i = 0; i < app->n_qubes; i++)
        if (app->qubes[i] != q && net_netvm_of(app, app->qubes[i]) == q)
            return qerr_set(err, EXC_VALUE,
                            "The qube is still used by other qubes, change theirs "
                            "'netvm' first");
    return 0;
}

int net_validate_mac(const struct app *app, const struct qube *q, const char *value,
                     struct qerr *err) {
    /* six hex pairs separated by ':' */
    bool ok = strlen(value) == 17;
    for (int i = 0; ok && i < 17; i++)
        ok = i % 3 == 2 ? value[i] == ':' : strchr("0123456789abcdefABCDEF", value[i]) != NULL;
    if (!ok)
        return qerr_set(err, EXC_PROPERTY_VALUE, "Invalid MAC address value");
    return 0;
}
