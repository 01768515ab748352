#include "network.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-event.h>

#include "backend_net.h"
#include "dispatcher.h"
#include "firewall.h"
#include "log.h"
#include "monoclock.h"
#include "network_names.h"
#include "props_net.h"

#define NFT_TABLE "inet dispenser"

static bool is_up(const struct qube *q) { return q->power != POWER_HALTED; }

static bool netvm_runs(const struct qube *netvm) {
    return netvm && (netvm->power == POWER_RUNNING || netvm->power == POWER_PAUSED);
}

/* ---- the nftables script of a netvm (pure) ---- */

static void render_dst(const struct fw_rule *r, const char *addrs, struct strbuf *out) {
    if (r->dst_type == FW_DST4)
        strbuf_printf(out, " ip daddr %s", r->dst);
    if (r->dst_type == FW_DST_NAME && addrs)
        strbuf_printf(out, " ip daddr { %s }", addrs);
    if (r->dns)
        strbuf_puts(out, " ip daddr { " NET_DNS1 ", " NET_DNS2 " }");
}

static void render_proto(const struct fw_rule *r, struct strbuf *out) {
    if (*r->proto)
        strbuf_printf(out, " meta l4proto %s", r->proto);
    else if (r->dns)
        strbuf_puts(out, " meta l4proto { tcp, udp }");
    if (r->port_lo >= 0)
        strbuf_printf(out, " th dport %d-%d", r->port_lo, r->port_hi);
    else if (r->dns)
        strbuf_puts(out, " th dport 53");
    if (r->icmptype >= 0)
        strbuf_printf(out, " icmp type %d", r->icmptype);
}

bool network_render_rule_resolved(const struct fw_rule *r, const char *addrs, struct strbuf *out) {
    /* IPv6 never passes (qubes get no IPv6 here), so an IPv6 rule matches nothing. A
     * name without its addresses: an accept for it is left out, a drop drops regardless
     * of the destination (closed rather than open; the chain does not get there while a
     * name is unresolved, network_names.h). */
    if (r->dst_type == FW_DST6 || (r->dst_type == FW_DST_NAME && !addrs && r->accept))
        return false;
    render_dst(r, addrs, out);
    render_proto(r, out);
    strbuf_puts(out, r->accept ? " accept" : " drop");
    return true;
}

bool network_render_rule(const struct fw_rule *r, struct strbuf *out) {
    return network_render_rule_resolved(r, NULL, out);
}

/* The addresses of a rule's dsthost= name as the client's netvm resolved them, NULL for
 * a name it has not; "" for a rule without a name. */
static const char *rule_addrs(const struct app *app, const struct qube *c,
                              const struct fw_rule *r) {
    const struct qube *netvm = net_netvm_of(app, c);
    if (r->dst_type != FW_DST_NAME)
        return "";
    return netvm ? network_name_addrs(netvm->name, r->dst) : NULL;
}

/* The commands that (re)make a client's chain: its anti-spoofing, its rules, the drop
 * at the end. Incremental, so a client's start touches nothing of the others. */
static void render_client_chain(const struct app *app, const struct qube *c, struct strbuf *out) {
    char ip[64];
    net_prop(app, c, P_IP, ip, sizeof(ip));
    const char *t = NFT_TABLE;
    strbuf_printf(out, "add chain %s qube-%d\nflush chain %s qube-%d\n", t, c->qid, t, c->qid);
    strbuf_printf(out, "add rule %s qube-%d meta nfproto ipv6 drop\n", t, c->qid);
    strbuf_printf(out, "add rule %s qube-%d ip saddr != %s drop\n", t, c->qid, ip);
    strbuf_printf(out, "add rule %s qube-%d ct state established,related accept\n", t, c->qid);
    struct fw_rule *rules = xcalloc(FW_RULES_MAX, sizeof(*rules));
    struct qerr err = {0};
    int n = fw_rules_parse(c->firewall ? c->firewall : FW_DEFAULT_RULES, NULL, rules, time(NULL),
                           &err);
    /* a name its netvm has not resolved blocks the client (as qubes-firewall does) */
    bool unresolved = false;
    for (int i = 0; i < n; i++)
        unresolved = unresolved || !rule_addrs(app, c, &rules[i]);
    for (int i = 0; i < n && !unresolved; i++) {
        _cleanup_strbuf_ struct strbuf line = STRBUF_INIT;
        const char *addrs = rule_addrs(app, c, &rules[i]);
        if (network_render_rule_resolved(&rules[i], *addrs ? addrs : NULL, &line))
            strbuf_printf(out, "add rule %s qube-%d%s\n", t, c->qid, strbuf_str(&line));
    }
    free(rules);
    strbuf_printf(out, "add rule %s qube-%d drop\n", t, c->qid);
}

void network_render_client(const struct app *app, const struct qube *c, struct strbuf *out) {
    render_client_chain(app, c, out);
    strbuf_printf(out, "add element %s clients { \"vif%d\" : jump qube-%d }\n", NFT_TABLE, c->qid,
                  c->qid);
}

void network_render_client_gone(const struct qube *c, struct strbuf *out) {
    strbuf_printf(out, "delete element %s clients { \"vif%d\" }\ndelete chain %s qube-%d\n",
                  NFT_TABLE, c->qid, NFT_TABLE, c->qid);
}

/* The base: a verdict map from a client's link to its chain, and nothing passes from a
 * link without an entry; qubes of one netvm never meet through it; the virtual DNS
 * servers forwarded; what leaves through eth0 NATed. The nat chains load conntrack in
 * the netvm's namespace here, at its start, not at its first client's. */
static void render_base(const char *dns_target, struct strbuf *out) {
    strbuf_puts(out, "table " NFT_TABLE " {\n"
                     "  map clients { type ifname : verdict; }\n"
                     "  chain prerouting {\n"
                     "    type filter hook prerouting priority -150; policy accept;\n"
                     "    iifname vmap @clients\n"
                     "    iifname \"vif*\" drop\n  }\n"
                     "  chain forward {\n"
                     "    type filter hook forward priority 0; policy accept;\n"
                     "    iifname \"vif*\" oifname \"vif*\" drop\n  }\n"
                     "  chain dns {\n"
                     "    type nat hook prerouting priority -100; policy accept;\n");
    if (*dns_target)
        for (int i = 0; i < 2; i++)
            strbuf_printf(out,
                          "    ip daddr %s meta l4proto { tcp, udp } th dport 53 dnat ip to %s\n",
                          i ? NET_DNS2 : NET_DNS1, dns_target);
    strbuf_puts(out, "  }\n  chain uplink {\n"
                     "    type nat hook postrouting priority 100; policy accept;\n"
                     "    oifname \"eth0\" masquerade\n  }\n}\n");
}

void network_render_netvm(const struct app *app, const struct qube *netvm, const char *dns_target,
                          struct strbuf *out) {
    /* one transaction: the old table goes and the new one comes at once */
    strbuf_puts(out, "table " NFT_TABLE "\ndelete table " NFT_TABLE "\n");
    render_base(dns_target, out);
    for (size_t i = 0; i < app->n_qubes; i++) {
        const struct qube *c = app->qubes[i];
        if (is_up(c) && net_netvm_of(app, c) == netvm)
            network_render_client(app, c, out);
    }
}

/* ---- applying it ---- */

/* Uplink addresses: a /30 per netvm out of 10.136.0.0/16 (unused by Qubes' scheme). */
static void uplink_addrs(const struct qube *netvm, char *outside, char *inside, size_t size) {
    unsigned a = (unsigned)netvm->qid * 4;
    snprintf(outside, size, "10.136.%u.%u", (a >> 8) & 0xff, (a & 0xff) + 1);
    snprintf(inside, size, "10.136.%u.%u", (a >> 8) & 0xff, (a & 0xff) + 2);
}

static const char *uplink_netns(const struct app *app, const struct qube *netvm) {
    const char *path = app_feature_check(app, netvm, "net.uplink-netns", FEATURE_FALLBACK_TEMPLATE);
    return path && *path ? path : NULL;
}

/* Where 10.139.1.1/.2 go: a netvm with a netvm of its own routes them there unchanged. */
static void dns_target_of(const struct app *app, const struct qube *netvm, char *buf, size_t size) {
    buf[0] = '\0';
    if (net_netvm_of(app, netvm) || !uplink_netns(app, netvm))
        return;
    const char *dns = app_feature_check(app, netvm, "net.uplink-dns", FEATURE_FALLBACK_TEMPLATE);
    char inside[32];
    if (dns && *dns)
        snprintf(buf, size, "%s", dns);
    else
        uplink_addrs(netvm, buf, inside, size);
}

static int run_script(struct dispatcher *disp, const struct qube *netvm, const char *script,
                      struct qerr *err) {
    int fd;
    if (dispatcher_netns_open(disp, netvm, &fd, err) < 0)
        return -1;
    struct backend_why why = {{0}};
    int r = backend_nft_apply(fd, script, &why);
    close(fd);
    if (r < 0)
        return qerr_set(err, EXC_QUBES, "Cannot set up the firewall in '%s': %s", netvm->name,
                        why.msg);
    return 0;
}

/* ---- rules that expire: the netvm's rules again when the first one does ---- */

static time_t expiry_armed; /* when the armed timer fires (epoch seconds), 0: none */

static time_t next_expiry(const struct app *app, time_t now) {
    time_t next = 0;
    struct fw_rule *rules = xcalloc(FW_RULES_MAX, sizeof(*rules));
    for (size_t i = 0; i < app->n_qubes; i++) {
        const struct qube *c = app->qubes[i];
        struct qerr err = {0};
        if (!c->firewall || !is_up(c) || !netvm_runs(net_netvm_of(app, c)))
            continue;
        int n = fw_rules_parse(c->firewall, NULL, rules, now, &err);
        for (int k = 0; k < n; k++)
            if (rules[k].expire && (!next || rules[k].expire < next))
                next = (time_t)rules[k].expire;
    }
    free(rules);
    return next;
}

static int apply_rules(struct dispatcher *disp, const struct qube *netvm, struct qerr *err);

static int on_expiry(sd_event_source *s, uint64_t usec, void *userdata) {
    struct dispatcher *disp = userdata;
    struct app *app = dispatcher_app(disp);
    expiry_armed = 0;
    log_info("firewall: a rule expired; rules of the netvms again");
    for (size_t i = 0; i < app->n_qubes; i++) {
        struct qube *q = app->qubes[i];
        struct qerr err = {0};
        if (net_provides_network(app, q) && netvm_runs(q) && apply_rules(disp, q, &err) < 0)
            log_warning("%s", err.msg);
    }
    return 0;
}

/* One timer for the whole daemon, at the nearest expiry of a rule in force (Qubes
 * reloads then as well). Floating: the loop owns it, and one that fires for nothing
 * only rewrites the same rules. */
static void arm_expiry(struct dispatcher *disp) {
    time_t next = next_expiry(dispatcher_app(disp), time(NULL));
    if (!next || (expiry_armed && expiry_armed <= next + 1))
        return;
    sd_event *loop = NULL;
    if (sd_event_default(&loop) < 0)
        return;
    if (sd_event_add_time(loop, NULL, CLOCK_REALTIME, (uint64_t)(next + 1) * 1000000ULL, 0,
                          on_expiry, disp) >= 0)
        expiry_armed = next + 1;
    sd_event_unref(loop);
}

/* Everything of a netvm at once: at its start and after a daemon restart. */
static int apply_rules(struct dispatcher *disp, const struct qube *netvm, struct qerr *err) {
    struct app *app = dispatcher_app(disp);
    char dns[64];
    dns_target_of(app, netvm, dns, sizeof(dns));
    _cleanup_strbuf_ struct strbuf script = STRBUF_INIT;
    network_render_netvm(app, netvm, dns, &script);
    int r = run_script(disp, netvm, strbuf_str(&script), err);
    if (r == 0)
        arm_expiry(disp);
    return r;
}

/* One client's chain and map entry; the whole table again if that fails (a netvm whose
 * rules someone changed by hand). */
static int apply_client(struct dispatcher *disp, const struct qube *netvm, const struct qube *c,
                        struct qerr *err) {
    _cleanup_strbuf_ struct strbuf script = STRBUF_INIT;
    network_render_client(dispatcher_app(disp), c, &script);
    if (run_script(disp, netvm, strbuf_str(&script), err) == 0) {
        arm_expiry(disp);
        return 0;
    }
    log_warning("%s: %s; all of its rules again", netvm->name, err->msg);
    return apply_rules(disp, netvm, err);
}

static void describe_link(const struct app *app, const struct qube *q, int netvm_fd,
                          struct network_link *l) {
    *l = (struct network_link){.netvm_netns = netvm_fd};
    snprintf(l->ifname, sizeof(l->ifname), "vif%d", q->qid);
    net_prop(app, q, P_IP, l->ip, sizeof(l->ip));
    net_prop(app, q, P_VISIBLE_GATEWAY, l->gateway, sizeof(l->gateway));
    net_prop(app, q, P_MAC, l->mac, sizeof(l->mac));
    net_prop(app, q, P_DNS, l->dns, sizeof(l->dns));
    l->net = (struct backend_net){netvm_fd, l->ifname, l->ip, l->gateway, l->mac, l->dns};
}

int network_link_prepare(struct dispatcher *disp, const struct qube *q, struct network_link *link,
                         const struct backend_net **net, struct qerr *err) {
    struct app *app = dispatcher_app(disp);
    *link = (struct network_link){.netvm_netns = -1};
    *net = NULL;
    struct qube *netvm = net_netvm_of(app, q);
    if (!netvm)
        return 0;
    if (!netvm_runs(netvm))
        return qerr_set(err, EXC_VM_NOT_STARTED, "Cannot start '%s': its netvm '%s' is not running",
                        q->name, netvm->name);
    int fd;
    double t0 = mono_ms();
    network_names_request(disp, netvm, q);
    if (apply_client(disp, netvm, q, err) < 0 || dispatcher_netns_open(disp, netvm, &fd, err) < 0)
        return -1;
    log_debug("%s: firewall in %s %.2f ms", q->name, netvm->name, mono_ms() - t0);
    describe_link(app, q, fd, link);
    *net = &link->net;
    return 0;
}

void network_link_release(struct network_link *link) {
    if (link->netvm_netns >= 0)
        close(link->netvm_netns);
    link->netvm_netns = -1;
}

/* The netvm's side of its uplink: a veth into the namespace the feature names, routed
 * like a client's link, with the netvm as the client. */
static int link_uplink(struct dispatcher *disp, struct qube *netvm, int netvm_fd,
                       struct qerr *err) {
    struct app *app = dispatcher_app(disp);
    const char *path = uplink_netns(app, netvm);
    if (!path || net_netvm_of(app, netvm))
        return 0;
    int up = open(path, O_RDONLY | O_CLOEXEC);
    if (up < 0)
        return qerr_set(err, EXC_QUBES, "'%s': cannot open its uplink namespace %s: %s",
                        netvm->name, path, strerror(errno));
    char outside[32], inside[32], ifname[16], mac[18];
    uplink_addrs(netvm, outside, inside, sizeof(outside));
    snprintf(ifname, sizeof(ifname), "dspup%d", netvm->qid);
    net_prop(app, netvm, P_MAC, mac, sizeof(mac));
    struct backend_net uplink = {up, ifname, inside, outside, mac, NULL};
    struct backend_why why = {{0}};
    int r = backend_net_veth_link(netvm_fd, &uplink, &why);
    close(up);
    if (r < 0)
        return qerr_set(err, EXC_QUBES, "'%s': cannot link its uplink: %s", netvm->name, why.msg);
    return 0;
}

static void reconnect_clients(struct dispatcher *disp, struct qube *netvm, int netvm_fd) {
    struct app *app = dispatcher_app(disp);
    for (size_t i = 0; i < app->n_qubes; i++) {
        struct qube *c = app->qubes[i];
        if (c == netvm || !is_up(c) || c->power == POWER_TRANSIENT || net_netvm_of(app, c) != netvm)
            continue;
        struct network_link l;
        struct qerr err = {0};
        describe_link(app, c, netvm_fd, &l);
        if (dispatcher_net_attach(disp, c, &l.net, &err) < 0)
            log_warning("%s: cannot attach network: %s", c->name, err.msg);
    }
}

void network_netvm_started(struct dispatcher *disp, struct qube *netvm) {
    struct app *app = dispatcher_app(disp);
    if (!net_provides_network(app, netvm))
        return;
    struct qerr err = {0};
    int fd;
    if (dispatcher_netns_open(disp, netvm, &fd, &err) < 0) {
        log_error("%s: no network namespace to route in: %s", netvm->name, err.msg);
        return;
    }
    struct backend_why why = {{0}};
    if (backend_netns_sysctl(fd, "net/ipv4/ip_forward", "1", &why) < 0)
        log_error("%s: cannot enable forwarding: %s", netvm->name, why.msg);
    /* the rules first and whatever becomes of the uplink: they are what keeps its clients
     * apart, and running clients get their links back even when it has no way out */
    if (apply_rules(disp, netvm, &err) < 0) {
        log_error("%s", err.msg);
    } else {
        reconnect_clients(disp, netvm, fd);
    }
    err = (struct qerr){0};
    if (link_uplink(disp, netvm, fd, &err) < 0)
        log_error("%s", err.msg);
    close(fd);
}

/* Its chain and map entry go; the whole table again when they were not there (a start
 * that failed before). */
static void remove_client(struct dispatcher *disp, struct qube *netvm, const struct qube *q) {
    struct qerr err = {0};
    if (!netvm_runs(netvm))
        return;
    _cleanup_strbuf_ struct strbuf script = STRBUF_INIT;
    network_render_client_gone(q, &script);
    if (run_script(disp, netvm, strbuf_str(&script), &err) < 0 &&
        apply_rules(disp, netvm, &err) < 0)
        log_warning("%s", err.msg);
}

/* A netvm halted: its running clients are unlinked now (Qubes detaches them too), a VM's
 * tap back into the VM's own namespace before the netvm's goes and takes it along; its
 * next start links them again (reconnect_clients). */
static void detach_clients(struct dispatcher *disp, struct qube *netvm) {
    struct app *app = dispatcher_app(disp);
    for (size_t i = 0; i < app->n_qubes; i++) {
        struct qube *c = app->qubes[i];
        struct qerr err = {0};
        if (c == netvm || !is_up(c) || c->power == POWER_TRANSIENT || net_netvm_of(app, c) != netvm)
            continue;
        if (dispatcher_net_attach(disp, c, NULL, &err) < 0)
            log_warning("%s: cannot detach network: %s", c->name, err.msg);
    }
}

void network_qube_halted(struct dispatcher *disp, struct qube *q) {
    struct app *app = dispatcher_app(disp);
    remove_client(disp, net_netvm_of(app, q), q);
    if (net_provides_network(app, q))
        detach_clients(disp, q);
}

void network_recover(struct dispatcher *disp) {
    struct app *app = dispatcher_app(disp);
    for (size_t i = 0; i < app->n_qubes; i++) {
        struct qube *q = app->qubes[i];
        struct qerr err = {0};
        if (net_provides_network(app, q) && netvm_runs(q) && apply_rules(disp, q, &err) < 0)
            log_warning("%s", err.msg);
    }
}

int network_check_netvm_change(struct dispatcher *disp, const struct qube *q, const char *newvalue,
                               struct qerr *err) {
    struct app *app = dispatcher_app(disp);
    if (!is_up(q) || !*newvalue)
        return 0;
    const struct qube *netvm = app_find(app, newvalue);
    if (netvm && !netvm_runs(netvm))
        return qerr_set(err, EXC_VM_NOT_STARTED, "Cannot dynamically attach to stopped qube %s",
                        newvalue);
    return 0;
}

int network_netvm_changed(struct dispatcher *disp, struct qube *q, const char *old_netvm,
                          struct qerr *err) {
    struct app *app = dispatcher_app(disp);
    if (q->power != POWER_RUNNING && q->power != POWER_PAUSED)
        return 0;
    struct qube *old = *old_netvm ? app_find(app, old_netvm) : NULL;
    struct qube *now = net_netvm_of(app, q);
    if (old == now)
        return 0;
    if (dispatcher_net_attach(disp, q, NULL, err) < 0)
        return -1;
    remove_client(disp, old, q);
    if (!now)
        return 0;
    struct network_link l;
    const struct backend_net *net;
    int r = network_link_prepare(disp, q, &l, &net, err);
    if (r == 0 && net)
        r = dispatcher_net_attach(disp, q, net, err);
    network_link_release(&l);
    return r;
}

int network_firewall_changed(struct dispatcher *disp, struct qube *q, struct qerr *err) {
    struct app *app = dispatcher_app(disp);
    struct qube *netvm = is_up(q) ? net_netvm_of(app, q) : NULL;
    if (!netvm_runs(netvm))
        return 0;
    network_names_request(disp, netvm, q);
    return apply_client(disp, netvm, q, err);
}

int network_check_shutdown(struct dispatcher *disp, const struct qube *q, bool force,
                           struct qerr *err) {
    struct app *app = dispatcher_app(disp);
    if (force || !net_provides_network(app, q))
        return 0;
    _cleanup_strbuf_ struct strbuf names = STRBUF_INIT;
    for (size_t i = 0; i < app->n_qubes; i++) {
        const struct qube *c = app->qubes[i];
        bool preload = c->props[P_IS_PRELOAD] && strcmp(c->props[P_IS_PRELOAD], "True") == 0;
        if (c != q && is_up(c) && !preload && net_netvm_of(app, c) == q)
            strbuf_printf(&names, "%s%s", names.len ? ", " : "", c->name);
    }
    if (!names.len)
        return 0;
    return qerr_set(err, EXC_VM_IN_USE, "There are other VMs connected to this VM: %s",
                    strbuf_str(&names));
}

/* ---- default_netvm: every running qube that follows it moves ---- */

struct network_moves {
    size_t n;
    struct {
        char name[32], netvm[32];
    } * v;
};

struct network_moves *network_moves_begin(struct dispatcher *disp) {
    struct app *app = dispatcher_app(disp);
    struct network_moves *m = xcalloc(1, sizeof(*m));
    m->v = xcalloc(app->n_qubes + 1, sizeof(*m->v));
    for (size_t i = 0; i < app->n_qubes; i++) {
        const struct qube *q = app->qubes[i];
        if (q->klass == QUBE_ADMINVM || (q->power != POWER_RUNNING && q->power != POWER_PAUSED))
            continue;
        const struct qube *netvm = net_netvm_of(app, q);
        snprintf(m->v[m->n].name, sizeof(m->v[0].name), "%s", q->name);
        snprintf(m->v[m->n].netvm, sizeof(m->v[0].netvm), "%s", netvm ? netvm->name : "");
        m->n++;
    }
    return m;
}

int network_moves_check(struct dispatcher *disp, const struct network_moves *m,
                        const char *new_default, struct qerr *err) {
    struct app *app = dispatcher_app(disp);
    const struct qube *netvm = *new_default ? app_find(app, new_default) : NULL;
    if (!netvm || netvm_runs(netvm))
        return 0;
    for (size_t i = 0; i < m->n; i++) {
        const struct qube *q = app_find(app, m->v[i].name);
        if (q && !q->props[P_NETVM] && q != netvm)
            return qerr_set(err, EXC_VM_NOT_STARTED, "Cannot dynamically attach to stopped qube %s",
                            new_default);
    }
    return 0;
}

void network_moves_end(struct dispatcher *disp, struct network_moves *m) {
    struct app *app = dispatcher_app(disp);
    for (size_t i = 0; i < m->n; i++) {
        struct qube *q = app_find(app, m->v[i].name);
        const struct qube *now = q ? net_netvm_of(app, q) : NULL;
        struct qerr err = {0};
        if (q && strcmp(now ? now->name : "", m->v[i].netvm) != 0 &&
            network_netvm_changed(disp, q, m->v[i].netvm, &err) < 0)
            log_warning("%s: cannot move to its new netvm: %s", q->name, err.msg);
    }
    free(m->v);
    free(m);
}

void network_reapply(struct dispatcher *disp, const char *netvm_name) {
    struct app *app = dispatcher_app(disp);
    struct qube *netvm = app_find(app, netvm_name);
    struct qerr err = {0};
    if (netvm && netvm_runs(netvm) && apply_rules(disp, netvm, &err) < 0)
        log_warning("%s", err.msg);
}
