/* Qubes' firewall rules (qubes/firewall.py): one rule per line in the Admin API's
 * syntax, `action=accept|drop [dst4=|dst6=|dsthost=] [proto=] [specialtarget=dns]
 * [dstports=] [icmptype=] [expire=] [comment=...]`, the first match deciding, drop when
 * none does. Pure: parsing, the canonical text, expiry; enforcement is the daemon's. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "qerr.h"
#include "strbuf.h"

enum fw_dst { FW_DST_NONE, FW_DST4, FW_DST6, FW_DST_NAME };

struct fw_rule {
    bool accept;
    enum fw_dst dst_type;
    char dst[256];        /* with its /prefix for addresses ("10.0.0.0/8", "1.2.3.4/32") */
    char proto[8];        /* "", "tcp", "udp", "icmp" */
    bool dns;             /* specialtarget=dns */
    int port_lo, port_hi; /* 0/-1: none */
    int icmptype;         /* -1: none */
    long long expire;     /* 0: never */
    char comment[256];
};

/* The firewall a qube has until it is set: accept everything (Qubes' default). */
#define FW_DEFAULT_RULES "action=accept\n"
/* More would be a mistake: each rule is an nft rule in the netvm. */
#define FW_RULES_MAX 512

/* Parses one line as Qubes does; QubesValueError with what is wrong. */
int fw_rule_parse(const char *line, struct fw_rule *out, struct qerr *err);
/* The rule as admin.vm.firewall.Get shows it (Qubes' api_rule order), no newline. */
void fw_rule_format(const struct fw_rule *r, struct strbuf *out);
bool fw_rule_expired(const struct fw_rule *r, time_t now);
/* Parses a whole payload (lines) into canonical text, dropping expired rules; the rules
 * array is filled when not NULL (up to FW_RULES_MAX). Returns the number of rules. */
int fw_rules_parse(const char *text, struct strbuf *canonical, struct fw_rule *rules, time_t now,
                   struct qerr *err);
