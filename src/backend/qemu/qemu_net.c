/* A VM's network: a tap device made by the daemon before QEMU starts, in a network
 * namespace of the VM's own that QEMU then joins (so the tap's descriptor keeps only that
 * one alive), and moved into its netvm's namespace (backend_net_tap_link: the netvm's end
 * holds the gateway address and a route to the VM, as a container's veth does; the daemon
 * has put the VM's firewall chain in the netvm before). QEMU's virtio-net device uses it
 * through an inherited descriptor; the tap goes when QEMU does. The guest has no DHCP:
 * its init configures eth0 from the kernel command line (dispenser.ip=,
 * dispenser.gateway=, dispenser.dns=).
 *
 * Qubes' attach-network/detach-network while the VM runs: the tap's device moves to the
 * new netvm's namespace, or back into the VM's own (where nothing routes) when its netvm
 * goes or halts, and the guest's routes are set again through its agent. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend_net.h"
#include "log.h"
#include "qemu.h"
#include "strbuf.h"

static void copy_addresses(struct qemu_net *n, const struct backend_net *net) {
    snprintf(n->ip, sizeof(n->ip), "%s", net->ip);
    snprintf(n->gateway, sizeof(n->gateway), "%s", net->gateway);
    snprintf(n->mac, sizeof(n->mac), "%s", net->mac);
    /* blank-separated in the model; one word on a kernel command line */
    snprintf(n->dns, sizeof(n->dns), "%s", net->dns ? net->dns : "");
    for (char *p = n->dns; *p; p++)
        if (*p == ' ')
            *p = ',';
}

int qemu_net_prepare(struct qemu_run *run, const struct backend_net *net, struct backend_why *why) {
    if (!net)
        return 0;
    struct qemu_net *n = xcalloc(1, sizeof(*n));
    *n = (struct qemu_net){.tap_fd = -1, .vm_netns = -1, .netvm_netns = -1};
    snprintf(n->ifname, sizeof(n->ifname), "%s", net->netvm_ifname);
    run->net = n; /* qemu_net_free closes what there is */
    if (backend_netns_new(&n->vm_netns, why) < 0 ||
        backend_net_tap_link(net, n->vm_netns, &n->tap_fd, why) < 0)
        return -1;
    n->netvm_netns = fcntl(net->netvm_netns, F_DUPFD_CLOEXEC, 3);
    copy_addresses(n, net);
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
    struct qemu_net *n = run->net;
    if (!n)
        return;
    qemu_net_spawned(run);
    if (n->vm_netns >= 0)
        close(n->vm_netns);
    if (n->netvm_netns >= 0)
        close(n->netvm_netns);
    free(n);
    run->net = NULL;
}

static void on_readdressed(void *userdata, enum backend_call_end how, int status,
                           const char *reason) {
    char *name = userdata;
    if (how != BACKEND_CALL_EXITED || status != 0)
        log_warning("%s: its guest did not take its new network settings (%s %d)", name,
                    reason ? reason : "exit status", status);
    free(name);
}

/* The guest's eth0 told what changed (it has no DHCP): its address and the routes through
 * the new gateway, or no routes at all without a netvm. Through its agent, as root. */
static void readdress_guest(struct backend *b, struct qemu_run *run, bool linked) {
    struct qemu_net *n = run->net;
    _cleanup_strbuf_ struct strbuf cmd = STRBUF_INIT;
    strbuf_puts(&cmd, "ip route flush dev eth0");
    if (linked)
        strbuf_printf(&cmd,
                      "; ip link set eth0 up && ip addr replace %s/32 dev eth0 && "
                      "ip route add %s dev eth0 && ip route add default via %s",
                      n->ip, n->gateway, n->gateway);
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    struct backend_service_call call = {.service = "qubes.VMShell",
                                        .argument = "",
                                        .source = "dom0",
                                        .target = run->name,
                                        .user = "root",
                                        .command = strbuf_str(&cmd),
                                        .stdio = {null, null, null}};
    struct backend_why why = {{0}};
    char *name = xstrdup(run->name);
    if (null < 0 || qemu_exec(b, run->name, &call, on_readdressed, name, &why) < 0) {
        log_warning("%s: cannot give its guest its new network settings: %s", run->name,
                    null < 0 ? strerror(errno) : why.msg);
        free(name);
    }
    if (null >= 0)
        close(null);
}

int qemu_net_attach(struct backend *b, const char *name, const struct backend_net *net,
                    struct backend_why *why) {
    struct qemu_run *run = qemu_find((struct qemu_backend *)b, name);
    if (!run || run->power == BACKEND_HALTED)
        return backend_fail(why, -EAGAIN, "Domain not running: '%s'", name);
    struct qemu_net *n = run->net;
    if (!n || n->vm_netns < 0) {
        if (!net)
            return 0; /* no network card: nothing to unlink */
        return backend_fail(why, -EOPNOTSUPP,
                            "VM '%s' has no network card (it started without a netvm, or "
                            "before the daemon's restart): its netvm takes effect at its "
                            "next start",
                            name);
    }
    int from = n->netvm_netns >= 0 ? n->netvm_netns : n->vm_netns;
    if (backend_net_tap_move(n->ifname, from, net ? net->netvm_netns : n->vm_netns, net, why) < 0)
        return -1;
    if (n->netvm_netns >= 0)
        close(n->netvm_netns);
    n->netvm_netns = net ? fcntl(net->netvm_netns, F_DUPFD_CLOEXEC, 3) : -1;
    if (net)
        copy_addresses(n, net);
    if (run->power == BACKEND_RUNNING && !run->start_done)
        readdress_guest(b, run, net != NULL);
    return 0;
}
