/* The host's way into the router: beside the Admin API socket (/run/qubesd.sock ->
 * /run/qubesd.qrexec.sock, qrexec_locate.h), where qrexec-client and qvm-run call as
 * dom0. Same mode and group as the Admin API socket: whoever may manage qubes may run
 * commands in them. */
#pragma once
#include <sys/types.h>
#include <systemd/sd-event.h>

struct router;
struct router_host;

int router_host_open(struct router *r, sd_event *loop, const char *path, gid_t gid,
                     struct router_host **out);
void router_host_close(struct router_host *h);
