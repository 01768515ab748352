/* A container's network: its own network namespace (made with the qube, owned by the
 * host's user namespace, so root inside cannot change it) and a veth to its netvm's. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "backend_net.h"
#include "container.h"
#include "log.h"
#include "monoclock.h"

void container_net_keep(struct run *run, const struct backend_net *net) {
    struct run_net *n = &run->net;
    *n = (struct run_net){.on = true};
    n->netvm_fd = fcntl(net->netvm_netns, F_DUPFD_CLOEXEC, 3);
    snprintf(n->ifname, sizeof(n->ifname), "%s", net->netvm_ifname);
    snprintf(n->ip, sizeof(n->ip), "%s", net->ip);
    snprintf(n->gateway, sizeof(n->gateway), "%s", net->gateway);
    snprintf(n->mac, sizeof(n->mac), "%s", net->mac);
    snprintf(n->dns, sizeof(n->dns), "%s", net->dns ? net->dns : "");
}

void container_net_drop(struct run *run) {
    if (run->net.on && run->net.netvm_fd >= 0)
        close(run->net.netvm_fd);
    run->net.on = false;
    run->net.netvm_fd = -1;
}

static int open_netns(pid_t pid, int *fd) {
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/ns/net", pid);
    *fd = open(path, O_RDONLY | O_CLOEXEC);
    return *fd < 0 ? -errno : 0;
}

int container_net_before_exec(void *ctx, pid_t pid, struct backend_why *why) {
    struct run *run = ctx;
    struct run_net *n = &run->net;
    double t0 = mono_ms();
    int qube_fd;
    if (n->netvm_fd < 0 || open_netns(pid, &qube_fd) < 0)
        return backend_fail(why, -EIO, "cannot reach the network namespaces");
    struct backend_net net = {n->netvm_fd, n->ifname, n->ip, n->gateway, n->mac, n->dns};
    int r = backend_net_veth_link(qube_fd, &net, why);
    close(qube_fd);
    container_net_drop(run);
    log_debug("%s: network link %.2f ms", run->name, mono_ms() - t0);
    return r;
}

int container_netns_open(struct backend *b, const char *name, int *fd) {
    struct run *run = container_find((struct container_backend *)b, name);
    if (!run || run->pid <= 0 || run->power == BACKEND_HALTED)
        return -EAGAIN;
    return open_netns(run->pid, fd);
}

int container_net_attach(struct backend *b, const char *name, const struct backend_net *net,
                         struct backend_why *why) {
    struct run *run = container_find((struct container_backend *)b, name);
    if (!run || run->pid <= 0 || run->power == BACKEND_HALTED)
        return backend_fail(why, -EAGAIN, "Domain not running: '%s'", name);
    int fd;
    if (open_netns(run->pid, &fd) < 0)
        return backend_fail(why, -EAGAIN, "Domain not running: '%s'", name);
    int r = backend_net_veth_unlink(fd, why);
    if (r == 0 && net)
        r = backend_net_veth_link(fd, net, why);
    close(fd);
    return r;
}
