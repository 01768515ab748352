/* The network properties of qubes (Qubes' NetVMMixin): who routes for whom, the
 * addresses a qube gets, and the checks on netvm and provides_network. props.c takes
 * the defaults and validators from here; the daemon asks the helpers at the end. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "qerr.h"

struct app;
struct qube;

/* Qubes' fixed virtual DNS servers, DNAT'ed by every network-providing qube. */
#define NET_DNS1 "10.139.1.1"
#define NET_DNS2 "10.139.1.2"
#define NET_NETMASK "255.255.255.255"
#define NET_DEFAULT_MAC "00:16:3e:5e:6c:00"

bool net_prop_default_netvm(const struct app *app, const struct qube *q, char *buf, size_t size);
bool net_prop_default_ip(const struct app *app, const struct qube *q, char *buf, size_t size);
bool net_prop_visible_ip(const struct app *app, const struct qube *q, char *buf, size_t size);
bool net_prop_gateway(const struct app *app, const struct qube *q, char *buf, size_t size);
bool net_prop_visible_gateway(const struct app *app, const struct qube *q, char *buf, size_t size);
bool net_prop_visible_netmask(const struct app *app, const struct qube *q, char *buf, size_t size);
bool net_prop_dns(const struct app *app, const struct qube *q, char *buf, size_t size);
int net_validate_netvm(const struct app *app, const struct qube *q, const char *value,
                       struct qerr *err);
int net_validate_provides_network(const struct app *app, const struct qube *q, const char *value,
                                  struct qerr *err);
int net_validate_mac(const struct app *app, const struct qube *q, const char *value,
                     struct qerr *err);

/* The qube that routes for q (its effective netvm), or NULL: loopback only. */
struct qube *net_netvm_of(const struct app *app, const struct qube *q);
bool net_provides_network(const struct app *app, const struct qube *q);
/* Text of a property of q (effective value) into buf: a shorthand for the daemon. */
const char *net_prop(const struct app *app, const struct qube *q, int prop_id, char *buf,
                     size_t size);
