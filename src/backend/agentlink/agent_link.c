/* The agent link's life, its bodyless requests: the readiness wait and the shutdown
 * request. Service calls are in agent_link_exec.c, the uplink in agent_link_uplink.c. */
#include "agent_link.h"
#include "agent_link_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "agent_proto.h"
#include "strbuf.h"

struct agent_ready {
    int fd;
    sd_event_source *io, *timer;
    agent_ready_fn done;
    void *userdata;
};

void agent_hub_init(struct agent_hub *hub, struct backend *engine) {
    *hub = (struct agent_hub){.engine = engine};
}

void agent_hub_free(struct agent_hub *hub) {
    agent_calls_free(hub);
    upcopy_free_all(hub);
}

void agent_link_init(struct agent_link *link, struct agent_hub *hub, enum agent_link_mode mode,
                     const char *qube, const char *socket_path) {
    *link = (struct agent_link){.hub = hub,
                                .mode = mode,
                                .qube = xstrdup(qube),
                                .socket_path = xstrdup(socket_path)};
}

void agent_link_free(struct agent_link *link) {
    agent_link_ready_cancel(link);
    agent_link_uplink_close(link);
    free(link->qube);
    free(link->socket_path);
    link->qube = link->socket_path = NULL;
}

/* Connects (a socket bound and listened on by the engine, or by the VM's multiplexer:
 * this never blocks, even before the agent runs, the connection waits in the backlog)
 * and sends a request with its body (len bytes). A non-blocking descriptor, or -errno. */
static int request_with_body(const struct agent_link *link, int type, const char *body,
                             size_t len) {
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(link->socket_path) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    strcpy(sa.sun_path, link->socket_path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    _cleanup_strbuf_ struct strbuf msg = STRBUF_INIT;
    struct agent_request req = {AGENT_MAGIC, (uint16_t)type, 0, (uint32_t)len};
    strbuf_append(&msg, (const char *)&req, sizeof(req));
    strbuf_append(&msg, body, len);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        send(fd, strbuf_str(&msg), msg.len, MSG_NOSIGNAL) != (ssize_t)msg.len ||
        fcntl(fd, F_SETFL, O_NONBLOCK) < 0) {
        int r = -errno;
        close(fd);
        return r;
    }
    return fd;
}

/* A bodyless request: six empty strings. */
int agent_link_request_async(const struct agent_link *link, int type) {
    static const char empty[6];
    return request_with_body(link, type, empty, sizeof(empty));
}

/* 0 with the reply's status, -EAGAIN if not there yet, other -errno if the agent hung up
 * or answered nonsense. The reply is 12 bytes: it arrives whole or not at all. */
static int read_reply_status(int fd, int *status) {
    struct agent_reply reply;
    ssize_t n = recv(fd, &reply, sizeof(reply), MSG_DONTWAIT);
    if (n < 0)
        return -errno;
    if (n != (ssize_t)sizeof(reply) || reply.magic != AGENT_MAGIC)
        return -EPROTO;
    *status = reply.kind == AGENT_EXITED ? reply.status : -1;
    return 0;
}

void agent_link_ready_cancel(struct agent_link *link) {
    struct agent_ready *w = link->ready;
    if (!w)
        return;
    sd_event_source_disable_unref(w->io);
    sd_event_source_disable_unref(w->timer);
    if (w->fd >= 0)
        close(w->fd);
    free(w);
    link->ready = NULL;
}

/* The wait is over before the caller hears of it: its callback may free the link. */
static void ready_end(struct agent_link *link, int r, const char *reason) {
    agent_ready_fn done = link->ready->done;
    void *userdata = link->ready->userdata;
    agent_link_ready_cancel(link);
    done(userdata, r, reason);
}

static int on_ready_reply(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
    struct agent_link *link = userdata;
    int status = -1;
    int r = read_reply_status(fd, &status);
    if (r == -EAGAIN)
        return 0;
    if (r < 0 || status != 0)
        ready_end(link, r < 0 ? r : -EPROTO, "the agent refused or dropped the readiness request");
    else
        ready_end(link, 0, NULL);
    return 0;
}

static int on_ready_timeout(sd_event_source *src, uint64_t usec, void *userdata) {
    ready_end(userdata, -ETIMEDOUT,
              "the agent did not report readiness within "
              "qrexec_timeout");
    return 0;
}

/* A request whose reply ends a wait (link->ready): readiness, a clone's refresh. */
static int request_and_wait(struct agent_link *link, int fd, unsigned timeout_s, int64_t priority,
                            agent_ready_fn done, void *userdata) {
    if (fd < 0)
        return fd;
    struct agent_ready *w = xcalloc(1, sizeof(*w));
    *w = (struct agent_ready){.fd = fd, .done = done, .userdata = userdata};
    link->ready = w;
    sd_event *loop = link->hub->engine->loop;
    int r = sd_event_add_io(loop, &w->io, fd, EPOLLIN, on_ready_reply, link);
    if (r >= 0)
        r = sd_event_add_time_relative(loop, &w->timer, CLOCK_MONOTONIC,
                                       (uint64_t)timeout_s * 1000000ULL, 0, on_ready_timeout, link);
    if (r < 0) {
        agent_link_ready_cancel(link);
        return r;
    }
    agent_link_ready_set_priority(link, priority);
    return 0;
}

int agent_link_wait_ready(struct agent_link *link, unsigned timeout_s, int64_t priority,
                          agent_ready_fn done, void *userdata) {
    agent_link_ready_cancel(link);
    return request_and_wait(link, agent_link_request_async(link, AGENT_REQ_WAIT_READY), timeout_s,
                            priority, done, userdata);
}

int agent_link_refresh(struct agent_link *link, const struct agent_request_body *body,
                       unsigned timeout_s, int64_t priority, agent_ready_fn done, void *userdata) {
    char buf[1024];
    long len = agent_body_encode(body, buf, sizeof(buf));
    if (len < 0)
        return -E2BIG;
    agent_link_ready_cancel(link);
    return request_and_wait(link, request_with_body(link, AGENT_REQ_REFRESH, buf, (size_t)len),
                            timeout_s, priority, done, userdata);
}

bool agent_link_waiting_ready(const struct agent_link *link) { return link->ready != NULL; }

void agent_link_ready_set_priority(struct agent_link *link, int64_t priority) {
    if (!link->ready)
        return;
    sd_event_source_set_priority(link->ready->io, priority);
    sd_event_source_set_priority(link->ready->timer, priority);
}

int agent_link_shutdown(struct agent_link *link) {
    int fd = agent_link_request_async(link, AGENT_REQ_SHUTDOWN);
    if (fd < 0)
        return fd;
    close(fd); /* the agent acts on it; the engine watches the qube's end */
    return 0;
}
