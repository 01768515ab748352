/* Which qrexec router a host tool calls: the one of the daemon QUBESD_SOCKET selects.
 *
 * dispenserd listens for host calls beside its Admin API socket, at the same path with
 * ".sock" replaced by ".qrexec.sock" (/run/qubesd.sock -> /run/qubesd.qrexec.sock), so
 * one setting selects both. $DISPENSER_QREXEC_SOCKET overrides the router's path, and is
 * trusted only once the router is seen to be the selected daemon's: the same process
 * (SO_PEERCRED) listens on both sockets. */
#pragma once
#include <stddef.h>

/* The router socket beside the Admin API socket admin_sock; -ENAMETOOLONG if it does not
 * fit size. (Binding or connecting says whether it fits a socket address.) */
int qrexec_router_path_for(const char *admin_sock, char *buf, size_t size);

/* $DISPENSER_QREXEC_SOCKET, else the router beside the selected daemon's socket. */
const char *qrexec_socket_path(void);

/* A connection to the router, or -errno; -EXDEV for an overriding router that is not the
 * selected daemon's (qrexec_connect_strerror says why). */
int qrexec_router_connect(void);

/* A message for qrexec_router_connect's error r. */
const char *qrexec_connect_strerror(int r);
