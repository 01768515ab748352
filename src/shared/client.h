/* Admin API client: one call = one connection (spec/admin-api.md). Used by the qvm-*
 * tools, the tests and the benchmarks. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include "strbuf.h"
#include "wire.h"

/* $QUBESD_SOCKET, else the compiled-in default (/run/qubesd.sock). */
const char *client_socket_path(void);

struct client_reply {
    struct strbuf raw; /* owns the bytes the fields below point into */
    bool empty;        /* daemon closed without a reply (unknown method / access denied) */
    struct wire_reply r;
};
void client_reply_free(struct client_reply *reply);
#define _cleanup_reply_ _cleanup_(client_reply_free)

/* Returns 0 when a reply (success, error or empty) was received; -errno when the daemon
 * could not be reached or the reply was malformed (-EBADMSG). */
int client_call(const char *method, const char *arg, const char *dest, const void *payload,
                size_t payload_len, struct client_reply *reply);

/* Connects and sends an admin.Events request; returns the fd to read events from. */
int client_events_open(const char *dest);
