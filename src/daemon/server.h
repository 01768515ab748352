/* The Admin API socket: accepts connections, reads one request until EOF, answers and
 * closes; admin.Events connections are handed to the events hub instead. */
#pragma once
#include <sys/types.h>
#include <systemd/sd-event.h>

#include "app.h"
#include "events.h"

struct server;

struct preload;
struct clipboard;

struct server_config {
    const char *socket_path;
    gid_t socket_gid; /* (gid_t)-1: keep the daemon's group */
    struct preload *preload;
    struct clipboard *clipboard; /* the global clipboard (clipboard.h) */
};

struct dispatcher;

int server_new(sd_event *loop, struct app *app, struct dispatcher *dispatcher,
               struct events_hub *hub, const struct server_config *cfg, struct server **out);
void server_free(struct server *srv);
