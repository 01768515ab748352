#include "network_names.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>

#include "agent_proto.h"
#include "dispatcher.h"
#include "firewall.h"
#include "log.h"
#include "network.h"
#include "strbuf.h"

#define NAME_ADDRS_MAX 32 /* more than enough for a host name's A records */

struct name_entry {
    struct name_entry *next;
    char netvm[32], host[256];
    char *addrs;    /* NULL: not resolved */
    bool in_flight; /* a resolution is under way */
};

static struct name_entry *entries;

static struct name_entry *find(const char *netvm, const char *host) {
    for (struct name_entry *e = entries; e; e = e->next)
        if (strcmp(e->netvm, netvm) == 0 && strcmp(e->host, host) == 0)
            return e;
    return NULL;
}

const char *network_name_addrs(const char *netvm, const char *host) {
    struct name_entry *e = find(netvm, host);
    return e ? e->addrs : NULL;
}

struct resolution {
    struct dispatcher *disp;
    char netvm[32], host[256];
    int out; /* the read end of the service's stdout */
};

/* The netvm's answer: lines of dotted quads, each checked (the netvm is trusted to
 * resolve, as in Qubes, but nothing else than addresses gets into the rules). */
static char *parse_addrs(int fd) {
    char buf[4096];
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    if (n <= 0)
        return NULL;
    buf[n] = '\0';
    _cleanup_strbuf_ struct strbuf out = STRBUF_INIT;
    int count = 0;
    for (char *save = NULL, *line = strtok_r(buf, "\n", &save); line && count < NAME_ADDRS_MAX;
         line = strtok_r(NULL, "\n", &save)) {
        struct in_addr a;
        char text[INET_ADDRSTRLEN];
        if (inet_pton(AF_INET, line, &a) != 1 || !inet_ntop(AF_INET, &a, text, sizeof(text)))
            return NULL;
        if (!strstr(strbuf_str(&out), text)) /* a name may list one address twice */
            strbuf_printf(&out, "%s%s", count++ ? ", " : "", text);
    }
    return count ? xstrdup(strbuf_str(&out)) : NULL;
}

static void on_resolved(void *userdata, enum backend_call_end how, int status, const char *reason) {
    struct resolution *res = userdata;
    struct name_entry *e = find(res->netvm, res->host);
    char *addrs = how == BACKEND_CALL_EXITED && status == 0 ? parse_addrs(res->out) : NULL;
    if (!addrs)
        log_warning("firewall: %s cannot resolve %s: the rules naming it block their qubes",
                    res->netvm, res->host);
    if (e) {
        bool changed = (addrs == NULL) != (e->addrs == NULL) ||
                       (addrs && strcmp(addrs, e->addrs) != 0);
        free(e->addrs);
        e->addrs = addrs;
        e->in_flight = false;
        if (changed)
            network_reapply(res->disp, res->netvm);
    } else {
        free(addrs);
    }
    close(res->out);
    free(res);
}

static void resolve(struct dispatcher *disp, const struct qube *netvm, struct name_entry *e) {
    int pipefd[2];
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null < 0 || pipe2(pipefd, O_CLOEXEC | O_NONBLOCK) < 0) {
        log_warning("firewall: cannot ask %s to resolve %s: %s", netvm->name, e->host,
                    strerror(errno));
        if (null >= 0)
            close(null);
        return;
    }
    char cmd[512];
    /* the name is [a-z0-9._-] (fw_rule_parse): nothing the shell would read */
    snprintf(cmd, sizeof(cmd), AGENT_BIN_DIR "/dispenser-agent --resolve4 %s", e->host);
    struct backend_service_call call = {"qubes.VMShell",         "",   "dom0", netvm->name, "", cmd,
                                        {null, pipefd[1], null}, false};
    struct resolution *res = xcalloc(1, sizeof(*res));
    *res = (struct resolution){.disp = disp, .out = pipefd[0]};
    snprintf(res->netvm, sizeof(res->netvm), "%s", netvm->name);
    snprintf(res->host, sizeof(res->host), "%s", e->host);
    struct qerr err = {0};
    int r = dispatcher_exec(disp, netvm, &call, on_resolved, res, &err);
    close(null);
    close(pipefd[1]);
    if (r < 0) {
        log_warning("firewall: cannot ask %s to resolve %s: %s", netvm->name, e->host, err.msg);
        close(pipefd[0]);
        free(res);
        return;
    }
    e->in_flight = true;
}

void network_names_request(struct dispatcher *disp, const struct qube *netvm,
                           const struct qube *client) {
    if (!client->firewall || !strstr(client->firewall, "dsthost="))
        return;
    struct fw_rule *rules = xcalloc(FW_RULES_MAX, sizeof(*rules));
    struct qerr err = {0};
    int n = fw_rules_parse(client->firewall, NULL, rules, time(NULL), &err);
    for (int i = 0; i < n; i++) {
        if (rules[i].dst_type != FW_DST_NAME)
            continue;
        struct name_entry *e = find(netvm->name, rules[i].dst);
        if (!e) {
            e = xcalloc(1, sizeof(*e));
            snprintf(e->netvm, sizeof(e->netvm), "%s", netvm->name);
            snprintf(e->host, sizeof(e->host), "%s", rules[i].dst);
            e->next = entries;
            entries = e;
        }
        if (!e->in_flight)
            resolve(disp, netvm, e);
    }
    free(rules);
}
