/* The qube-to-netvm link made with rtnetlink in the daemon itself (libmnl): a veth pair,
 * addresses, routes, no helper processes: this is on the path of every start of a
 * networked qube. A netlink socket belongs to the namespace it was opened in, so the
 * daemon opens one in each namespace (stepping in and out: it has no other threads). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libmnl/libmnl.h>
#include <linux/if.h>
#include <linux/if_link.h>
#include <linux/if_tun.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backend_net.h"
#include "macro.h"
#include "strbuf.h"

struct nl {
    struct mnl_socket *sock;
    unsigned seq, portid;
    char buf[8192];
};

/* Opens a route socket inside netns_fd; the daemon is back in its own at return. */
static int nl_open(int netns_fd, struct nl *nl) {
    _cleanup_close_ int home = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    if (home < 0 || setns(netns_fd, CLONE_NEWNET) < 0)
        return -errno;
    nl->sock = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC);
    int saved = errno;
    if (setns(home, CLONE_NEWNET) < 0)
        abort(); /* going on inside a qube's namespace is never an option */
    if (!nl->sock)
        return -saved;
    if (mnl_socket_bind(nl->sock, 0, MNL_SOCKET_AUTOPID) < 0) {
        mnl_socket_close(nl->sock);
        nl->sock = NULL;
        return -errno;
    }
    nl->portid = mnl_socket_get_portid(nl->sock);
    nl->seq = (unsigned)time(NULL);
    return 0;
}

static void nl_close(struct nl *nl) {
    if (nl->sock)
        mnl_socket_close(nl->sock);
    nl->sock = NULL;
}

static struct nlmsghdr *nl_msg(struct nl *nl, uint16_t type, uint16_t flags) {
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(nl->buf);
    nlh->nlmsg_type = type;
    nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | flags;
    nlh->nlmsg_seq = ++nl->seq;
    return nlh;
}

/* Sends one request and reads to its ack; cb sees the data messages. 0 or -errno. */
static int nl_talk(struct nl *nl, struct nlmsghdr *nlh, mnl_cb_t cb, void *data) {
    if (mnl_socket_sendto(nl->sock, nlh, nlh->nlmsg_len) < 0)
        return -errno;
    unsigned seq = nlh->nlmsg_seq;
    for (;;) {
        ssize_t n = mnl_socket_recvfrom(nl->sock, nl->buf, sizeof(nl->buf));
        if (n < 0)
            return -errno;
        int r = mnl_cb_run(nl->buf, (size_t)n, seq, nl->portid, cb, data);
        if (r <= MNL_CB_STOP)
            return r < 0 ? -errno : 0;
    }
}

static int on_link(const struct nlmsghdr *nlh, void *data) {
    const struct ifinfomsg *ifm = mnl_nlmsg_get_payload(nlh);
    *(int *)data = ifm->ifi_index;
    return MNL_CB_OK;
}

static int link_index(struct nl *nl, const char *ifname) {
    struct nlmsghdr *nlh = nl_msg(nl, RTM_GETLINK, 0);
    struct ifinfomsg *ifm = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifm));
    ifm->ifi_family = AF_UNSPEC;
    mnl_attr_put_strz(nlh, IFLA_IFNAME, ifname);
    int index = 0;
    int r = nl_talk(nl, nlh, on_link, &index);
    return r < 0 ? r : index > 0 ? index : -ENODEV;
}

static int parse_mac(const char *text, uint8_t mac[6]) {
    unsigned v[6];
    if (sscanf(text, "%2x:%2x:%2x:%2x:%2x:%2x", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) != 6)
        return -EINVAL;
    for (int i = 0; i < 6; i++)
        mac[i] = (uint8_t)v[i];
    return 0;
}

/* eth0 here, its peer `peer` moved into peer_netns at once. */
static int veth_create(struct nl *nl, const char *mac_text, const char *peer, int peer_netns) {
    uint8_t mac[6];
    if (parse_mac(mac_text, mac) < 0)
        return -EINVAL;
    struct nlmsghdr *nlh = nl_msg(nl, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
    struct ifinfomsg *ifm = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifm));
    ifm->ifi_family = AF_UNSPEC;
    mnl_attr_put_strz(nlh, IFLA_IFNAME, "eth0");
    mnl_attr_put(nlh, IFLA_ADDRESS, sizeof(mac), mac);
    struct nlattr *info = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
    mnl_attr_put_strz(nlh, IFLA_INFO_KIND, "veth");
    struct nlattr *data = mnl_attr_nest_start(nlh, IFLA_INFO_DATA);
    struct nlattr *peer_attr = mnl_attr_nest_start(nlh, VETH_INFO_PEER);
    struct ifinfomsg *pifm = (struct ifinfomsg *)mnl_nlmsg_get_payload_tail(nlh);
    memset(pifm, 0, sizeof(*pifm));
    nlh->nlmsg_len += MNL_ALIGN(sizeof(*pifm));
    mnl_attr_put_strz(nlh, IFLA_IFNAME, peer);
    mnl_attr_put_u32(nlh, IFLA_NET_NS_FD, (uint32_t)peer_netns);
    mnl_attr_nest_end(nlh, peer_attr);
    mnl_attr_nest_end(nlh, data);
    mnl_attr_nest_end(nlh, info);
    return nl_talk(nl, nlh, NULL, NULL);
}

static int link_up(struct nl *nl, int index) {
    struct nlmsghdr *nlh = nl_msg(nl, RTM_NEWLINK, 0);
    struct ifinfomsg *ifm = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifm));
    ifm->ifi_family = AF_UNSPEC;
    ifm->ifi_index = index;
    ifm->ifi_flags = IFF_UP;
    ifm->ifi_change = IFF_UP;
    return nl_talk(nl, nlh, NULL, NULL);
}

static int addr_add(struct nl *nl, int index, const char *ip) {
    struct in_addr a;
    if (inet_pton(AF_INET, ip, &a) != 1)
        return -EINVAL;
    struct nlmsghdr *nlh = nl_msg(nl, RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE);
    struct ifaddrmsg *ifa = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifa));
    ifa->ifa_family = AF_INET;
    ifa->ifa_prefixlen = 32;
    ifa->ifa_scope = RT_SCOPE_UNIVERSE;
    ifa->ifa_index = (unsigned)index;
    mnl_attr_put(nlh, IFA_LOCAL, sizeof(a), &a);
    mnl_attr_put(nlh, IFA_ADDRESS, sizeof(a), &a);
    return nl_talk(nl, nlh, NULL, NULL);
}

/* dst NULL: the default route through gw; else a host route on the link. */
static int route_add(struct nl *nl, int index, const char *dst, const char *gw) {
    struct in_addr d, g;
    if ((dst && inet_pton(AF_INET, dst, &d) != 1) || (gw && inet_pton(AF_INET, gw, &g) != 1))
        return -EINVAL;
    struct nlmsghdr *nlh = nl_msg(nl, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE);
    struct rtmsg *rtm = mnl_nlmsg_put_extra_header(nlh, sizeof(*rtm));
    rtm->rtm_family = AF_INET;
    rtm->rtm_dst_len = dst ? 32 : 0;
    rtm->rtm_table = RT_TABLE_MAIN;
    rtm->rtm_protocol = RTPROT_BOOT;
    rtm->rtm_scope = gw ? RT_SCOPE_UNIVERSE : RT_SCOPE_LINK;
    rtm->rtm_type = RTN_UNICAST;
    if (dst)
        mnl_attr_put(nlh, RTA_DST, sizeof(d), &d);
    if (gw)
        mnl_attr_put(nlh, RTA_GATEWAY, sizeof(g), &g);
    mnl_attr_put_u32(nlh, RTA_OIF, (uint32_t)index);
    return nl_talk(nl, nlh, NULL, NULL);
}

static int link_delete(struct nl *nl, const char *ifname) {
    struct nlmsghdr *nlh = nl_msg(nl, RTM_DELLINK, 0);
    struct ifinfomsg *ifm = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifm));
    ifm->ifi_family = AF_UNSPEC;
    mnl_attr_put_strz(nlh, IFLA_IFNAME, ifname);
    int r = nl_talk(nl, nlh, NULL, NULL);
    return r == -ENODEV ? 0 : r;
}

/* The qube's side: eth0 with its /32, the gateway on the link, the default through it. */
static int configure_qube_end(struct nl *nl, const struct backend_net *net, const char **step) {
    int index = link_index(nl, "eth0"), r = index;
    if (index > 0 && ((*step = "address"), r = addr_add(nl, index, net->ip)) == 0 &&
        ((*step = "link up"), r = link_up(nl, index)) == 0 &&
        ((*step = "route to the gateway"), r = route_add(nl, index, net->gateway, NULL)) == 0)
        *step = "default route", r = route_add(nl, index, NULL, net->gateway);
    return r < 0 ? r : 0;
}

/* The netvm's side: the gateway address (as on all its vifs) and a route to the qube. */
static int configure_netvm_end(struct nl *nl, const struct backend_net *net, const char **step) {
    int index = link_index(nl, net->netvm_ifname), r = index;
    if (index > 0 && ((*step = "gateway address"), r = addr_add(nl, index, net->gateway)) == 0 &&
        ((*step = "link up"), r = link_up(nl, index)) == 0)
        *step = "route to the qube", r = route_add(nl, index, net->ip, NULL);
    return r < 0 ? r : 0;
}

/* A link of this name on the netvm's side is a leftover: the other end of a previous link
 * whose namespace is dying (the kernel tears a namespace down asynchronously, so a qube or
 * netvm started again at once finds its old peer still there) or is held open by someone.
 * The name is ours in that namespace: the stale link goes (its peer with it) and the new
 * one is made. Only on EEXIST, so a usual start costs no extra round trip. */
static int veth_create_fresh(struct nl *q, struct nl *n, const struct backend_net *net) {
    int r = veth_create(q, net->mac, net->netvm_ifname, net->netvm_netns);
    if (r != -EEXIST)
        return r;
    r = link_delete(n, net->netvm_ifname);
    return r < 0 ? r : veth_create(q, net->mac, net->netvm_ifname, net->netvm_netns);
}

int backend_net_veth_link(int qube_netns, const struct backend_net *net, struct backend_why *why) {
    struct nl *q = xcalloc(1, sizeof(*q)), *n = xcalloc(1, sizeof(*n));
    const char *step = "netlink";
    int r = nl_open(qube_netns, q);
    if (r == 0)
        r = nl_open(net->netvm_netns, n);
    if (r == 0)
        step = "veth", r = veth_create_fresh(q, n, net);
    if (r == 0)
        r = configure_qube_end(q, net, &step);
    if (r == 0)
        r = configure_netvm_end(n, net, &step);
    if (r < 0 && q->sock)
        link_delete(q, "eth0"); /* its peer goes with it */
    nl_close(q);
    nl_close(n);
    free(q);
    free(n);
    if (r < 0)
        return backend_fail(why, -EIO, "cannot link to the netvm (%s): %s", step, strerror(-r));
    return 0;
}

int backend_net_veth_unlink(int qube_netns, struct backend_why *why) {
    struct nl *q = xcalloc(1, sizeof(*q));
    int r = nl_open(qube_netns, q);
    if (r == 0)
        r = link_delete(q, "eth0");
    nl_close(q);
    free(q);
    return r < 0 ? backend_fail(why, -EIO, "cannot unlink: %s", strerror(-r)) : 0;
}

/* /dev/net/tun makes the device in the namespace it was opened in, and the descriptor
 * keeps that namespace alive: the daemon opens it in the VM's own namespace (its QEMU's,
 * which lives as long as the VM does), never in a netvm's, which would then outlive the
 * netvm's shutdown for as long as the VM runs. */
static int tap_create(int netns_fd, const char *ifname) {
    _cleanup_close_ int home = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    if (home < 0 || setns(netns_fd, CLONE_NEWNET) < 0)
        return -errno;
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    int saved = errno;
    if (setns(home, CLONE_NEWNET) < 0)
        abort(); /* going on inside a qube's namespace is never an option */
    if (fd < 0)
        return -saved;
    struct ifreq ifr = {.ifr_flags = IFF_TAP | IFF_NO_PI};
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
        saved = errno;
        close(fd);
        return -saved;
    }
    return fd;
}

int backend_netns_new(int *fd, struct backend_why *why) {
    _cleanup_close_ int home = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    if (home < 0 || unshare(CLONE_NEWNET) < 0)
        return backend_fail(why, -errno, "cannot make a network namespace: %s", strerror(errno));
    *fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    int saved = errno;
    if (setns(home, CLONE_NEWNET) < 0)
        abort(); /* the daemon would go on in a VM's namespace: never */
    if (*fd < 0)
        return backend_fail(why, -saved, "cannot open a new network namespace: %s",
                            strerror(saved));
    return 0;
}

/* The link named ifname (in the namespace of `from`) moved into target_ns under the same
 * name. Moving drops its addresses and routes. */
static int link_move(struct nl *from, const char *ifname, int target_ns) {
    int index = link_index(from, ifname);
    if (index < 0)
        return index;
    struct nlmsghdr *nlh = nl_msg(from, RTM_NEWLINK, 0);
    struct ifinfomsg *ifm = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifm));
    ifm->ifi_family = AF_UNSPEC;
    ifm->ifi_index = index;
    mnl_attr_put_u32(nlh, IFLA_NET_NS_FD, (uint32_t)target_ns);
    return nl_talk(from, nlh, NULL, NULL);
}

static bool same_netns(int a, int b) {
    struct stat sa, sb;
    return fstat(a, &sa) == 0 && fstat(b, &sb) == 0 && sa.st_ino == sb.st_ino &&
           sa.st_dev == sb.st_dev;
}

/* The tap from wherever it is now into target_ns; a stale link of its name there (the
 * other end of a link whose namespace is dying) goes first, as for a veth. */
static int tap_move(int where_ns, const char *ifname, int target_ns) {
    if (same_netns(where_ns, target_ns))
        return 0;
    struct nl *from = xcalloc(1, sizeof(*from)), *to = xcalloc(1, sizeof(*to));
    int r = nl_open(where_ns, from);
    if (r == 0)
        r = link_move(from, ifname, target_ns);
    if (r == -EEXIST && (r = nl_open(target_ns, to)) == 0 && (r = link_delete(to, ifname)) == 0)
        r = link_move(from, ifname, target_ns);
    nl_close(from);
    nl_close(to);
    free(from);
    free(to);
    return r;
}

/* The netvm's end of a VM's link on the tap, now in the netvm's namespace. */
static int tap_configure(const struct backend_net *net, const char **step) {
    struct nl *n = xcalloc(1, sizeof(*n));
    *step = "netlink";
    int r = nl_open(net->netvm_netns, n);
    if (r == 0)
        r = configure_netvm_end(n, net, step);
    nl_close(n);
    free(n);
    return r;
}

int backend_net_tap_link(const struct backend_net *net, int vm_netns, int *tap_fd,
                         struct backend_why *why) {
    const char *step = "tap";
    int fd = tap_create(vm_netns, net->netvm_ifname), r = fd < 0 ? fd : 0;
    if (r == 0)
        step = "into the netvm", r = tap_move(vm_netns, net->netvm_ifname, net->netvm_netns);
    if (r == 0)
        r = tap_configure(net, &step);
    if (r < 0) {
        if (fd >= 0)
            close(fd); /* the device goes with it, wherever it is */
        return backend_fail(why, -EIO, "cannot link to the netvm (%s): %s", step, strerror(-r));
    }
    *tap_fd = fd;
    return 0;
}

int backend_net_tap_move(const char *ifname, int from_ns, int to_ns, const struct backend_net *net,
                         struct backend_why *why) {
    const char *step = net ? "into the netvm" : "out of the netvm";
    int r = tap_move(from_ns, ifname, to_ns);
    if (r == 0 && net)
        r = tap_configure(net, &step);
    if (r < 0)
        return backend_fail(why, -EIO, "cannot %s the netvm (%s): %s",
                            net ? "link to" : "unlink from", step, strerror(-r));
    return 0;
}
