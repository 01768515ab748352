/* admin.vm.firewall.Get/Set/Reload: Qubes' rule lines; the daemon enforces them in the
 * qube's netvm (network.c) as soon as they are saved. */
#include <string.h>

#include "api.h"
#include "network.h"
#include "preload.h"

static int firewall_get(struct api_call *c) {
    app_firewall_get(c->app, c->dest, c->out);
    return 0;
}

static int firewall_set(struct api_call *c) {
    const struct wire_request *req = c->req;
    char *text = xmalloc(req->payload_len + 1);
    memcpy(text, req->payload, req->payload_len);
    text[req->payload_len] = '\0';
    int r = 0;
    for (size_t i = 0; i < req->payload_len && r == 0; i++)
        if ((unsigned char)text[i] > 0x7e || text[i] == '\0')
            r = qerr_set(c->err, EXC_PROTOCOL, "Rules contains non-ASCII characters");
    if (r == 0)
        r = app_firewall_set(c->app, c->dest, text, c->err);
    free(text);
    if (r < 0)
        return -1;
    if (c->preload)
        preload_property_changed(c->preload, c->dest, "firewall");
    return network_firewall_changed(c->dispatcher, c->dest, c->err);
}

static int firewall_reload(struct api_call *c) {
    app_emit(c->app, c->dest, "firewall-changed", NULL, 0);
    return network_firewall_changed(c->dispatcher, c->dest, c->err);
}

const struct api_method API_FIREWALL_METHODS[] = {
    {"admin.vm.firewall.Get", firewall_get, API_NO_ARG | API_NO_PAYLOAD | API_DEST_NOT_ADMINVM},
    {"admin.vm.firewall.Set", firewall_set, API_NO_ARG | API_DEST_NOT_ADMINVM},
    {"admin.vm.firewall.Reload", firewall_reload,
     API_NO_ARG | API_NO_PAYLOAD | API_DEST_NOT_ADMINVM},
    {NULL, NULL, 0},
};
