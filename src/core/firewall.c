#include "firewall.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SAFE_CHARS "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:;,./-_[]"

static bool all_in(const char *s, const char *set) { return s[strspn(s, set)] == '\0'; }

static bool all_digits(const char *s) { return *s && all_in(s, "0123456789"); }

static int bad(struct qerr *err, const char *what, const char *value) {
    return qerr_set(err, EXC_VALUE, "Invalid firewall rule: %s%s%s", what, value ? ": " : "",
                    value ? value : "");
}

static bool parse_ip(const char *s, int family) {
    unsigned char buf[16];
    return inet_pton(family, s, buf) == 1;
}

static int dots(const char *s) {
    int n = 0;
    for (; *s; s++)
        n += *s == '.';
    return n;
}

/* An address gets its prefix length written out; a name must look like one. */
static int parse_dsthost(const char *v, struct fw_rule *r, struct qerr *err) {
    char host[256];
    const char *slash = strchr(v, '/');
    if (slash && strchr(slash + 1, '/'))
        return bad(err, "too many /", v);
    size_t hlen = slash ? (size_t)(slash - v) : strlen(v);
    if (hlen >= sizeof(host))
        return bad(err, "destination too long", NULL);
    memcpy(host, v, hlen);
    host[hlen] = '\0';
    int prefix = -1;
    if (slash) {
        if (!all_digits(slash + 1) || strlen(slash + 1) > 3)
            return bad(err, "bad prefix length", v);
        prefix = atoi(slash + 1);
    }
    if (parse_ip(host, AF_INET6)) {
        if (prefix > 128)
            return bad(err, "netmask for IPv6 must be <= 128", v);
        r->dst_type = FW_DST6;
        snprintf(r->dst, sizeof(r->dst), "%s/%d", host, prefix < 0 ? 128 : prefix);
    } else if (parse_ip(host, AF_INET)) {
        if (dots(host) != 3)
            return bad(err, "invalid number of dots in IPv4 address", v);
        if (prefix > 32)
            return bad(err, "netmask for IPv4 must be <= 32", v);
        r->dst_type = FW_DST4;
        snprintf(r->dst, sizeof(r->dst), "%s/%d", host, prefix < 0 ? 32 : prefix);
    } else if (slash) {
        return bad(err, "invalid IP address", host);
    } else {
        if (!*host || !all_in(host, "abcdefghijklmnopqrstuvwxyz0123456789-._"))
            return bad(err, "invalid hostname", host);
        r->dst_type = FW_DST_NAME;
        snprintf(r->dst, sizeof(r->dst), "%s", host);
    }
    return 0;
}

static int parse_ports(const char *v, struct fw_rule *r, struct qerr *err) {
    char lo[16] = "", hi[16] = "";
    const char *dash = strchr(v, '-');
    size_t llen = dash ? (size_t)(dash - v) : strlen(v);
    if (llen >= sizeof(lo) || (dash && strlen(dash + 1) >= sizeof(hi)) ||
        (dash && strchr(dash + 1, '-')))
        return bad(err, "bad port range", v);
    memcpy(lo, v, llen);
    snprintf(hi, sizeof(hi), "%s", dash ? dash + 1 : lo);
    if (!all_digits(lo) || !all_digits(hi))
        return bad(err, "bad port range", v);
    r->port_lo = atoi(lo);
    r->port_hi = atoi(hi);
    if (strlen(lo) > 5 || strlen(hi) > 5 || r->port_lo > 65535 || r->port_hi > 65535)
        return bad(err, "ports out of range", v);
    if (r->port_lo > r->port_hi)
        return bad(err, "invalid port range", v);
    return 0;
}

static int parse_option(const char *key, const char *v, struct fw_rule *r, unsigned *seen,
                        struct qerr *err) {
    static const char *const keys[] = {"action",   "proto",         "dsthost", "dstports",
                                       "icmptype", "specialtarget", "expire"};
    int k = -1;
    for (int i = 0; i < 7; i++)
        if (strcmp(key, keys[i]) == 0)
            k = i;
    if (k < 0 && (!strcmp(key, "dst4") || !strcmp(key, "dst6") || !strcmp(key, "dstname")))
        k = 2;
    if (k < 0)
        return bad(err, "unknown firewall option", key);
    if (*seen & (1u << k))
        return qerr_set(err, EXC_VALUE, "Invalid firewall rule: option '%s' already set", keys[k]);
    *seen |= 1u << k;
    if (!all_in(v, SAFE_CHARS))
        return bad(err, "strange characters in rule", NULL);
    switch (k) {
    case 0:
        if (strcmp(v, "accept") && strcmp(v, "drop"))
            return bad(err, "action must be accept or drop", v);
        r->accept = strcmp(v, "accept") == 0;
        return 0;
    case 1:
        if (strcmp(v, "tcp") && strcmp(v, "udp") && strcmp(v, "icmp"))
            return bad(err, "proto must be tcp, udp or icmp", v);
        snprintf(r->proto, sizeof(r->proto), "%s", v);
        return 0;
    case 2: return parse_dsthost(v, r, err);
    case 3: return parse_ports(v, r, err);
    case 4:
        if (!all_digits(v) || strlen(v) > 3 || atoi(v) > 255)
            return bad(err, "bad ICMP type", v);
        r->icmptype = atoi(v);
        return 0;
    case 5:
        if (strcmp(v, "dns"))
            return bad(err, "specialtarget must be dns", v);
        r->dns = true;
        return 0;
    default:
        if (!all_digits(v) || strlen(v) > 12)
            return bad(err, "bad expiration time", v);
        r->expire = atoll(v);
        return 0;
    }
}

/* The rule's own consistency, checked after all its options, as Qubes' Rule() does. */
static int check_rule(const struct fw_rule *r, unsigned seen, struct qerr *err) {
    if (!(seen & 1u))
        return bad(err, "action is required", NULL);
    if (r->port_lo >= 0 && strcmp(r->proto, "tcp") && strcmp(r->proto, "udp"))
        return bad(err, "dstports valid only for 'tcp' and 'udp' protocols", NULL);
    if (r->icmptype >= 0 && strcmp(r->proto, "icmp"))
        return bad(err, "icmptype valid only for 'icmp' protocol", NULL);
    return 0;
}

int fw_rule_parse(const char *line, struct fw_rule *r, struct qerr *err) {
    *r = (struct fw_rule){.port_lo = -1, .port_hi = -1, .icmptype = -1};
    char opts[1024];
    const char *comment = strstr(line, "comment=");
    size_t olen = comment ? (size_t)(comment - line) : strlen(line);
    if (olen >= sizeof(opts))
        return bad(err, "rule too long", NULL);
    memcpy(opts, line, olen);
    opts[olen] = '\0';
    if (comment) {
        comment += strlen("comment=");
        if (!all_in(comment, SAFE_CHARS " ") || strlen(comment) >= sizeof(r->comment))
            return bad(err, "strange characters in comment", NULL);
        snprintf(r->comment, sizeof(r->comment), "%s", comment);
    }
    /* Python's str.strip() then split(" "): inner double blanks are errors */
    char *start = opts, *end = opts + olen;
    while (*start && isspace((unsigned char)*start))
        start++;
    while (end > start && isspace((unsigned char)end[-1]))
        *--end = '\0';
    unsigned seen = 0;
    for (char *tok = start, *next; tok; tok = next) {
        next = strchr(tok, ' ');
        if (next)
            *next++ = '\0';
        char *eq = strchr(tok, '=');
        if (!eq)
            return bad(err, "an option is not KEY=VALUE", tok);
        *eq = '\0';
        if (parse_option(tok, eq + 1, r, &seen, err) < 0)
            return -1;
    }
    return check_rule(r, seen, err);
}

static const char *dst_key(enum fw_dst t) {
    return t == FW_DST4 ? "dst4" : t == FW_DST6 ? "dst6" : "dsthost";
}

void fw_rule_format(const struct fw_rule *r, struct strbuf *out) {
    strbuf_printf(out, "action=%s", r->accept ? "accept" : "drop");
    if (r->expire)
        strbuf_printf(out, " expire=%lld", r->expire);
    if (r->dst_type != FW_DST_NONE)
        strbuf_printf(out, " %s=%s", dst_key(r->dst_type), r->dst);
    if (*r->proto)
        strbuf_printf(out, " proto=%s", r->proto);
    if (r->dns)
        strbuf_puts(out, " specialtarget=dns");
    if (r->port_lo >= 0)
        strbuf_printf(out, " dstports=%d-%d", r->port_lo, r->port_hi);
    if (r->icmptype >= 0)
        strbuf_printf(out, " icmptype=%d", r->icmptype);
    if (*r->comment)
        strbuf_printf(out, " comment=%s", r->comment);
}

bool fw_rule_expired(const struct fw_rule *r, time_t now) {
    return r->expire && r->expire < (long long)now;
}

int fw_rules_parse(const char *text, struct strbuf *canonical, struct fw_rule *rules, time_t now,
                   struct qerr *err) {
    int n = 0;
    for (const char *p = text; *p;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        char line[1400];
        if (len >= sizeof(line))
            return bad(err, "rule too long", NULL);
        memcpy(line, p, len);
        line[len] = '\0';
        if (len && line[len - 1] == '\r') /* Python's splitlines() */
            line[len - 1] = '\0';
        p += len + (nl ? 1 : 0);
        struct fw_rule r;
        if (fw_rule_parse(line, &r, err) < 0)
            return -1;
        if (fw_rule_expired(&r, now))
            continue;
        if (n == FW_RULES_MAX)
            return qerr_set(err, EXC_VALUE, "Too many firewall rules (at most %d)", FW_RULES_MAX);
        if (rules)
            rules[n] = r;
        n++;
        if (canonical) {
            fw_rule_format(&r, canonical);
            strbuf_putc(canonical, '\n');
        }
    }
    return n;
}
