#include "events.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "log.h"
#include "strbuf.h"

struct subscriber {
    struct events_hub *hub;
    struct subscriber *next;
    int fd;
    sd_event_source *io;
    char *filter;
    struct strbuf queue;
    sd_event_source *stall_timer; /* armed while the queue is past EVENTS_MAX_BACKLOG */
    uint64_t last_progress;       /* CLOCK_MONOTONIC usec of the last byte the socket took */
};

struct events_hub {
    sd_event *loop;
    struct subscriber *head;
    size_t count;
};

struct events_hub *events_hub_new(sd_event *loop) {
    struct events_hub *hub = xcalloc(1, sizeof(*hub));
    hub->loop = sd_event_ref(loop);
    return hub;
}

static void subscriber_drop(struct subscriber *s) {
    struct events_hub *hub = s->hub;
    for (struct subscriber **p = &hub->head; *p; p = &(*p)->next)
        if (*p == s) {
            *p = s->next;
            break;
        }
    hub->count--;
    sd_event_source_disable_unref(s->io);
    sd_event_source_disable_unref(s->stall_timer);
    close(s->fd);
    strbuf_free(&s->queue);
    free(s->filter);
    free(s);
}

void events_hub_free(struct events_hub *hub) {
    if (!hub)
        return;
    while (hub->head)
        subscriber_drop(hub->head);
    sd_event_unref(hub->loop);
    free(hub);
}

/* Writes what the socket takes now; returns -1 when the subscriber must go. */
static int subscriber_flush(struct subscriber *s) {
    while (s->queue.len > 0) {
        ssize_t n = send(s->fd, s->queue.data, s->queue.len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                break;
            return -1;
        }
        strbuf_consume(&s->queue, (size_t)n);
        sd_event_now(s->hub->loop, CLOCK_MONOTONIC, &s->last_progress);
    }
    /* caught up after a burst: give the burst's memory back (200 subscribers each
     * keeping their high-water mark held ~20 MiB after the soak) */
    if (s->queue.len == 0 && s->queue.cap > EVENTS_KEEP_CAPACITY)
        strbuf_free(&s->queue);
    uint32_t want = s->queue.len ? EPOLLOUT : 0;
    sd_event_source_set_io_events(s->io, want);
    return 0;
}

/* EPOLLHUP/ERR arrive even with no events requested: that is how a reader that went
 * away is noticed (its half-closed write side alone is not a disconnect). */
static int on_subscriber_io(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
    struct subscriber *s = userdata;
    if ((revents & (EPOLLHUP | EPOLLERR)) || subscriber_flush(s) < 0)
        subscriber_drop(s);
    return 0;
}

static void drop_lagging(struct subscriber *s, const char *why) {
    log_warning("events: dropping a subscriber that fell %zu bytes behind (%s)", s->queue.len, why);
    subscriber_drop(s);
}

static int arm_stall_check(struct subscriber *s);

/* Fires EVENTS_STALL_USEC after the last byte the subscriber took, while it is behind. */
static int on_stall_check(sd_event_source *src, uint64_t usec, void *userdata) {
    struct subscriber *s = userdata;
    sd_event_source_disable_unref(s->stall_timer);
    s->stall_timer = NULL;
    if (s->queue.len <= EVENTS_MAX_BACKLOG)
        return 0;
    /* `usec` is when the timer was due, which may be before this iteration's progress */
    uint64_t now = 0;
    sd_event_now(s->hub->loop, CLOCK_MONOTONIC, &now);
    if (now >= s->last_progress + EVENTS_STALL_USEC)
        drop_lagging(s, "it stopped reading");
    else if (arm_stall_check(s) < 0)
        drop_lagging(s, "no timer");
    return 0;
}

static int arm_stall_check(struct subscriber *s) {
    if (s->stall_timer)
        return 0;
    return sd_event_add_time(s->hub->loop, &s->stall_timer, CLOCK_MONOTONIC,
                             s->last_progress + EVENTS_STALL_USEC, 0, on_stall_check, s);
}

static void subscriber_queue(struct subscriber *s, const void *data, size_t len) {
    if (s->queue.len + len > EVENTS_HARD_BACKLOG) {
        drop_lagging(s, "hard limit");
        return;
    }
    if (s->queue.len + len > EVENTS_MAX_BACKLOG && arm_stall_check(s) < 0) {
        drop_lagging(s, "no timer");
        return;
    }
    bool was_idle = s->queue.len == 0;
    strbuf_append(&s->queue, data, len);
    if (was_idle && subscriber_flush(s) < 0)
        subscriber_drop(s);
}

int events_subscribe(struct events_hub *hub, int fd, const char *filter) {
    struct subscriber *s = xcalloc(1, sizeof(*s));
    s->hub = hub;
    s->fd = fd;
    s->filter = xstrdup(filter);
    sd_event_now(hub->loop, CLOCK_MONOTONIC, &s->last_progress);
    if (sd_event_add_io(hub->loop, &s->io, fd, 0, on_subscriber_io, s) < 0) {
        close(fd);
        free(s->filter);
        free(s);
        return -1;
    }
    s->next = hub->head;
    hub->head = s;
    hub->count++;
    _cleanup_strbuf_ struct strbuf hello = STRBUF_INIT;
    wire_event(&hello, "", "connection-established", NULL, 0);
    subscriber_queue(s, hello.data, hello.len);
    return 0;
}

void events_broadcast(void *userdata, const char *subject, const char *event,
                      const struct wire_kv *kv, size_t n_kv) {
    struct events_hub *hub = userdata;
    if (!hub || !hub->head)
        return;
    _cleanup_strbuf_ struct strbuf msg = STRBUF_INIT;
    wire_event(&msg, subject, event, kv, n_kv);
    struct subscriber *next;
    for (struct subscriber *s = hub->head; s; s = next) {
        next = s->next; /* queueing may drop s */
        if (!*s->filter || strcmp(s->filter, subject) == 0)
            subscriber_queue(s, msg.data, msg.len);
    }
}

size_t events_subscriber_count(const struct events_hub *hub) { return hub->count; }
