/* Service calls into a qube: AGENT_REQ_EXEC on a connection of its own, the agent's reply
 * mapped to how the call ended. With AGENT_LINK_FDPASS the caller's descriptors go to the
 * agent and the daemon never sees the bytes; with AGENT_LINK_COPY the link relays them as
 * agent_frame streams on the loop (agent_relay of shared/agent_client.h, one step per
 * event). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent_client.h"
#include "agent_link_internal.h"
#include "log.h"
#include "strbuf.h"

/* The copy path: one event source per relay slot (RELAY_SOCK, RELAY_IN, ...). A
 * descriptor epoll cannot watch (a regular file, /dev/null) is always ready: a deferred
 * event stands in for it. */
struct copy_relay {
    struct agent_relay relay;
    int own[RELAY_NFDS]; /* the descriptors the relay uses, ours to close */
    sd_event_source *io[RELAY_NFDS];
    bool always_ready[RELAY_NFDS];
    sd_event_source *kick;
};

struct agent_call {
    struct agent_hub *hub;
    struct agent_call *next;
    int fd;
    sd_event_source *io;     /* the reply (descriptor path) */
    struct copy_relay *copy; /* or the relay (copy path) */
    backend_call_done_fn done;
    void *userdata;
};

static void copy_relay_free(struct copy_relay *cr) {
    if (!cr)
        return;
    for (int i = 0; i < RELAY_NFDS; i++) {
        sd_event_source_disable_unref(cr->io[i]);
        if (i != RELAY_SOCK && cr->own[i] >= 0) /* the socket is the call's */
            close(cr->own[i]);
    }
    sd_event_source_disable_unref(cr->kick);
    agent_relay_free(&cr->relay);
    free(cr);
}

static void call_free(struct agent_call *c) {
    for (struct agent_call **p = &c->hub->calls; *p; p = &(*p)->next)
        if (*p == c) {
            *p = c->next;
            break;
        }
    sd_event_source_disable_unref(c->io);
    copy_relay_free(c->copy);
    close(c->fd);
    free(c);
}

void agent_calls_free(struct agent_hub *hub) {
    while (hub->calls)
        call_free(hub->calls);
}

static void call_end(struct agent_call *c, enum backend_call_end how, int status,
                     const char *reason) {
    backend_call_done_fn done = c->done;
    void *userdata = c->userdata;
    call_free(c);
    done(userdata, how, status, reason);
}

static void call_gone(struct agent_call *c) {
    call_end(c, BACKEND_CALL_FAILED, 0, "the qube went away during the call");
}

static void call_replied(struct agent_call *c, const struct agent_reply *reply) {
    switch (reply->kind) {
    case AGENT_EXITED: call_end(c, BACKEND_CALL_EXITED, reply->status, NULL); return;
    case AGENT_SIGNALED: call_end(c, BACKEND_CALL_SIGNALED, reply->status, NULL); return;
    case AGENT_REFUSED:
        if (reply->status == ENOENT) { /* Qubes' QREXEC_EXIT_SERVICE_NOT_FOUND */
            call_end(c, BACKEND_CALL_EXITED, 127, NULL);
            return;
        }
        /* fall through */
    default: {
        char why[160];
        snprintf(why, sizeof(why), "the service could not be run: %s",
                 reply->status == ENOENT ? "no such service (or user) in the qube"
                                         : strerror(reply->status));
        call_end(c, BACKEND_CALL_FAILED, reply->status, why);
    }
    }
}

static int on_exec_reply(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
    struct agent_call *c = userdata;
    struct agent_reply reply;
    ssize_t n = recv(fd, &reply, sizeof(reply), MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return 0;
    if (n != (ssize_t)sizeof(reply) || reply.magic != AGENT_MAGIC)
        call_gone(c);
    else
        call_replied(c, &reply);
    return 0;
}

/* ---- the copy path ---- */

static void copy_step(struct agent_call *c, const struct pollfd pfd[RELAY_NFDS]);

/* Our own description of a caller's descriptor, non-blocking without touching the
 * caller's: a pipe or terminal is opened anew; anything else is duplicated, and a socket
 * made non-blocking (shared with the caller: they come only from a qube's call). */
static int own_copy(int fd, bool for_reading) {
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -errno;
    if (S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode)) {
        char path[64];
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        int r = open(path, (for_reading ? O_RDONLY : O_WRONLY) | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
        if (r >= 0)
            return r;
    }
    int r = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (r < 0)
        return -errno;
    if (S_ISSOCK(st.st_mode) || S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode))
        fcntl(r, F_SETFL, fcntl(r, F_GETFL) | O_NONBLOCK);
    return r;
}

static int on_copy_io(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
    struct agent_call *c = userdata;
    struct pollfd pfd[RELAY_NFDS] = {{0}};
    for (int i = 0; i < RELAY_NFDS; i++)
        pfd[i].fd = -1;
    for (int i = 0; i < RELAY_NFDS; i++)
        if (c->copy->io[i] == src)
            pfd[i] = (struct pollfd){.fd = fd, .revents = (short)revents}; /* same bits */
    copy_step(c, pfd);
    return 0;
}

static int on_copy_kick(sd_event_source *src, void *userdata) {
    struct agent_call *c = userdata;
    struct pollfd pfd[RELAY_NFDS];
    agent_relay_events(&c->copy->relay, pfd);
    for (int i = 0; i < RELAY_NFDS; i++)
        pfd[i].revents = c->copy->always_ready[i] && pfd[i].fd >= 0 ? pfd[i].events : 0;
    copy_step(c, pfd);
    return 0;
}

/* A stream the agent ended is closed here, so that its reader sees the end. */
static void close_ended(struct copy_relay *cr) {
    static const int slot_of_stream[3] = {RELAY_IN, RELAY_OUT, RELAY_ERR};
    for (int s = 0; s < 3; s++) {
        int i = slot_of_stream[s];
        bool ended = s == 0 ? cr->relay.in_eof : cr->relay.from_agent.dest[s] == -2;
        if (!ended || cr->own[i] < 0)
            continue;
        cr->io[i] = sd_event_source_disable_unref(cr->io[i]);
        cr->always_ready[i] = false;
        close(cr->own[i]);
        cr->own[i] = cr->relay.fd[i] = -1;
    }
}

/* What the relay waits for now, on each source. */
static void copy_arm(struct copy_relay *cr) {
    struct pollfd pfd[RELAY_NFDS];
    agent_relay_events(&cr->relay, pfd);
    bool kick = false;
    for (int i = 0; i < RELAY_NFDS; i++) {
        bool want = pfd[i].fd >= 0 && pfd[i].events;
        if (cr->always_ready[i]) {
            kick |= want;
        } else if (cr->io[i]) {
            if (want)
                sd_event_source_set_io_events(cr->io[i], (uint32_t)pfd[i].events);
            sd_event_source_set_enabled(cr->io[i], want ? SD_EVENT_ON : SD_EVENT_OFF);
        }
    }
    sd_event_source_set_enabled(cr->kick, kick ? SD_EVENT_ONESHOT : SD_EVENT_OFF);
}

static void copy_step(struct agent_call *c, const struct pollfd pfd[RELAY_NFDS]) {
    int s = agent_relay_step(&c->copy->relay, pfd);
    if (s == 1) {
        struct agent_reply reply = c->copy->relay.reply;
        call_replied(c, &reply);
        return;
    }
    if (s < 0) {
        call_gone(c);
        return;
    }
    close_ended(c->copy);
    copy_arm(c->copy);
}

static int copy_start(struct agent_call *c, const int stdio[3]) {
    struct copy_relay *cr = xcalloc(1, sizeof(*cr));
    c->copy = cr;
    cr->own[RELAY_SOCK] = c->fd;
    for (int s = 0; s < 3; s++) {
        cr->own[RELAY_IN + s] = own_copy(stdio[s], s == 0);
        if (cr->own[RELAY_IN + s] < 0)
            return cr->own[RELAY_IN + s];
    }
    agent_relay_init(&cr->relay, c->fd, cr->own[RELAY_IN], cr->own[RELAY_OUT], cr->own[RELAY_ERR]);
    sd_event *loop = c->hub->engine->loop;
    int r = sd_event_add_defer(loop, &cr->kick, on_copy_kick, c);
    for (int i = 0; i < RELAY_NFDS && r >= 0; i++) {
        r = sd_event_add_io(loop, &cr->io[i], cr->own[i], 0, on_copy_io, c);
        if (r == -EPERM) /* a regular file or /dev/null: never waits */
            cr->always_ready[i] = true, r = 0;
    }
    if (r < 0)
        return r;
    copy_arm(cr);
    return 0;
}

int agent_link_exec(struct agent_link *link, const struct backend_service_call *call,
                    backend_call_done_fn done, void *userdata, struct backend_why *why) {
    bool copy = link->mode == AGENT_LINK_COPY;
    if (copy && call->pty) /* the window sizes would need a stream of their own */
        return backend_fail(why, -EOPNOTSUPP,
                            "a terminal in '%s' is not available: its "
                            "agent link cannot pass descriptors",
                            link->qube);
    struct agent_request_body body = {call->service, call->argument, call->source,
                                      call->target,  call->user,     call->command};
    int fd = agent_client_connect(link->socket_path);
    int r = fd < 0 ? fd
                   : agent_client_send_flags(fd, AGENT_REQ_EXEC, &body, copy ? NULL : call->stdio,
                                             call->pty ? AGENT_F_PTY : 0);
    if (r >= 0 && fcntl(fd, F_SETFL, O_NONBLOCK) < 0)
        r = -errno;
    if (r < 0) {
        if (fd >= 0)
            close(fd);
        return backend_fail(why, r, "cannot reach the agent of '%s': %s", link->qube, strerror(-r));
    }
    struct agent_call *c = xcalloc(1, sizeof(*c));
    *c = (struct agent_call){link->hub, link->hub->calls, fd, NULL, NULL, done, userdata};
    link->hub->calls = c;
    r = copy ? copy_start(c, call->stdio)
             : sd_event_add_io(link->hub->engine->loop, &c->io, fd, EPOLLIN, on_exec_reply, c);
    if (r < 0) {
        call_free(c);
        return backend_fail(why, r, "cannot watch the call into '%s'", link->qube);
    }
    return 0;
}
