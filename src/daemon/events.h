/* admin.Events subscribers. Each event is encoded once and queued to every matching
 * subscriber. A subscriber is judged by whether it keeps reading, not by how far behind a
 * burst left it: one whose queue is past EVENTS_MAX_BACKLOG is dropped only if its socket
 * took no byte for EVENTS_STALL_USEC (it stopped reading), so a reader slowed down by a busy
 * machine is kept. EVENTS_HARD_BACKLOG bounds the memory a subscriber can hold whatever it
 * does, so no reader can stall the daemon or grow it without bound. */
#pragma once
#include <stddef.h>
#include <systemd/sd-event.h>

#include "wire.h"

#define EVENTS_MAX_BACKLOG (1024 * 1024)
#define EVENTS_HARD_BACKLOG (64 * 1024 * 1024)
/* A drained queue keeps its buffer up to this size, for the next event. */
#define EVENTS_KEEP_CAPACITY (64 * 1024)
#define EVENTS_STALL_USEC (5 * 1000000ULL)

struct events_hub;

struct events_hub *events_hub_new(sd_event *loop);
void events_hub_free(struct events_hub *hub);
/* Takes ownership of fd; filter "" = every event, else only events whose subject is it. */
int events_subscribe(struct events_hub *hub, int fd, const char *filter);
/* Matches app_emit_fn, so the model emits straight into the hub. */
void events_broadcast(void *hub, const char *subject, const char *event, const struct wire_kv *kv,
                      size_t n_kv);
size_t events_subscriber_count(const struct events_hub *hub);
