/* A VM's network: a tap device in its netvm's namespace, made by the daemon before QEMU
 * starts (backend_net_tap_link: the netvm's end holds the gateway address and a route to
 * the VM, as a container's veth does; the daemon has put the VM's firewall chain in the
 * netvm before), handed to QEMU as an inherited descriptor for its virtio-net device.
 * The tap goes when QEMU does (the daemon keeps no copy once QEMU runs). The guest has no
 * DHCP: its init configures eth0 from the kernel command line (dispenser.ip=,
 * dispenser.gateway=, dispenser.dns=). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "backend_net.h"
#include "qemu.h"
#include "strbuf.h"

int qemu_net_prepare(struct qemu_run *run, const struct backend_net *net, struct backend_why *why) {
    if (!net)
        return 0;
    struct qemu_net *n = xcalloc(1, sizeof(*n));
    if (backend_net_tap_link(net, &n->tap_fd, why) < 0) {
        free(n);
        return -1;
    }
    snprintf(n->ip, sizeof(n->ip), "%s", net->ip);
    snprintf(n->gateway, sizeof(n->gateway), "%s", net->gateway);
    snprintf(n->mac, sizeof(n->mac), "%s", net->mac);
    /* blank-separated in the model; one word on a kernel command line */
    snprintf(n->dns, sizeof(n->dns), "%s", net->dns ? net->dns : "");
    for (char *p = n->dns; *p; p++)
        if (*p == ' ')
            *p = ',';
    run->net = n;
    return 0;
}

/* QEMU holds the tap now: without our copy it goes when QEMU does. */
void qemu_net_spawned(struct qemu_run *run) {
    if (run->net && run->net->tap_fd >= 0) {
        close(run->net->tap_fd);
        run->net->tap_fd = -1;
    }
}

void qemu_net_free(struct qemu_run *run) {
    qemu_net_spawned(run);
    free(run->net);
    run->net = NULL;
}

/* A VM's NIC cannot be moved to another netvm while it runs (no hot-plug on a microvm):
 * its netvm changes at its next start. */
int qemu_net_attach(struct backend *b, const char *name, const struct backend_net *net,
                    struct backend_why *why) {
    return backend_fail(why, -EOPNOTSUPP,
                        "the network of VM '%s' cannot change while it runs: "
                        "it takes effect at its next start",
                        name);
}
