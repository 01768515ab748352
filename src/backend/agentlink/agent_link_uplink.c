/* The uplink: the daemon's connection to each agent over which calls made inside the
 * qube (qrexec-client-vm) come up. The qube is known by the connection, so a call's
 * source cannot be forged; everything else in it is untrusted input. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent_client.h"
#include "agent_link.h"
#include "agent_link_internal.h"
#include "fdpass.h"
#include "log.h"
#include "qrexec_proto.h"
#include "strbuf.h"

#define UPLINK_MAX_FDS 16

struct agent_uplink {
    int fd;
    sd_event_source *io;
    struct strbuf in;
    int fds[UPLINK_MAX_FDS]; /* received with the messages, in order, not yet claimed */
    size_t n_fds;
    unsigned generation;
};

struct upcall {
    struct backend_upcall pub;
    struct upcall *next; /* in the hub's list until answered */
    struct agent_hub *hub;
    struct agent_upcall_id who;
    char *body;          /* the strings pub points into */
    struct upcopy *copy; /* its stdio's relay (COPY links), told the reply */
};

static void close_fds(int *fds, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (fds[i] >= 0)
            close(fds[i]);
}

void agent_link_uplink_close(struct agent_link *link) {
    struct agent_uplink *u = link->uplink;
    if (!u)
        return;
    upcopy_link_closed(link);
    sd_event_source_disable_unref(u->io);
    close(u->fd);
    close_fds(u->fds, u->n_fds);
    strbuf_free(&u->in);
    free(u);
    link->uplink = NULL;
}

/* Only what a service's stdio can sensibly be: a directory or other object passed by a
 * hostile qube must not reach another qube. */
static bool stdio_fd_acceptable(int fd) {
    struct stat st;
    return fstat(fd, &st) == 0 && (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode) ||
                                   S_ISCHR(st.st_mode) || S_ISREG(st.st_mode));
}

static void send_result(int fd, uint32_t id, uint32_t kind, int32_t status, const char *msg) {
    size_t len = msg ? strnlen(msg, QREXEC_MAX_MSG) : 0;
    struct qrexec_result res = {QREXEC_MAGIC, id, kind, status, (uint32_t)len};
    _cleanup_strbuf_ struct strbuf out = STRBUF_INIT;
    strbuf_append(&out, &res, sizeof(res));
    strbuf_append(&out, msg, len);
    /* small, and the agent reads its uplink at once: a blocking send does not stall */
    if (send(fd, out.data, out.len, MSG_NOSIGNAL) != (ssize_t)out.len)
        log_warning("uplink: cannot answer call %u: %s", id, strerror(errno));
}

static bool take_fds(struct agent_uplink *u, int out[3]) {
    if (u->n_fds < 3)
        return false;
    memcpy(out, u->fds, 3 * sizeof(int));
    memmove(u->fds, u->fds + 3, (u->n_fds - 3) * sizeof(int));
    u->n_fds -= 3;
    return true;
}

bool agent_uplink_deliver(struct agent_link *link, const struct agent_upcall_id *who,
                          const char *body, uint32_t body_len, const int stdio[3],
                          struct upcopy *copy) {
    struct backend *engine = link->hub->engine;
    struct upcall *c = xcalloc(1, sizeof(*c));
    c->who = *who;
    c->body = xstrndup(body, body_len);
    struct qrexec_call_body b;
    if (qrexec_body_decode(c->body, body_len, &b) < 0) {
        close_fds((int *)stdio, 3);
        free(c->body);
        free(c);
        return false;
    }
    c->pub = (struct backend_upcall){c->who.qube, b.target,  b.service,
                                     b.user,      b.command, {stdio[0], stdio[1], stdio[2]},
                                     engine,      c};
    c->hub = link->hub;
    c->copy = copy;
    c->next = link->hub->upcalls;
    link->hub->upcalls = c;
    if (engine->events.upcall)
        engine->events.upcall(engine->events.userdata, &c->pub);
    else
        agent_link_upcall_reply(link, &c->pub, BACKEND_CALL_FAILED, 0,
                                "this dispenserd routes no calls");
    return true;
}

void agent_uplink_answer(struct agent_link *link, const struct agent_upcall_id *who, uint32_t kind,
                         const char *msg) {
    if (link->uplink && link->uplink->generation == who->generation)
        send_result(link->uplink->fd, who->id, kind, 0, msg);
}

void agent_uplink_forget_copy(struct agent_hub *hub, struct upcopy *copy) {
    for (struct upcall *c = hub->upcalls; c; c = c->next)
        if (c->copy == copy)
            c->copy = NULL;
}

static struct agent_upcall_id upcall_id(const struct agent_link *link, uint32_t id) {
    struct agent_upcall_id who = {.id = id, .generation = link->uplink->generation};
    snprintf(who.qube, sizeof(who.qube), "%s", link->qube);
    return who;
}

static void deliver(struct agent_link *link, const struct qrexec_request *req, const char *body,
                    const int stdio[3]) {
    struct agent_upcall_id who = upcall_id(link, req->id);
    if (!agent_uplink_deliver(link, &who, body, req->body_len, stdio, NULL))
        send_result(link->uplink->fd, req->id, QREXEC_REFUSED, 0, "malformed call");
}

/* A call without descriptors (a VM's): its stdio come over a data connection of its own. */
static void deliver_copy(struct agent_link *link, const struct qrexec_request *req,
                         const char *body) {
    struct agent_upcall_id who = upcall_id(link, req->id);
    _cleanup_free_ char *copy = xstrndup(body, req->body_len);
    struct qrexec_call_body b;
    if (qrexec_body_decode(copy, req->body_len, &b) < 0) {
        send_result(link->uplink->fd, req->id, QREXEC_REFUSED, 0, "malformed call");
        return;
    }
    int r = upcopy_begin(link, &who, body, req->body_len);
    if (r < 0) {
        char why[160];
        snprintf(why, sizeof(why), "cannot open the call's data connection: %s", strerror(-r));
        send_result(link->uplink->fd, req->id, QREXEC_FAILED, 0, why);
    }
}

/* The agent says the caller of call `id` went away: the daemon is told (the call is
 * still answered once, later). An unknown id is a call answered meanwhile. */
static void cancel(struct agent_link *link, uint32_t id) {
    struct backend *engine = link->hub->engine;
    for (struct upcall *c = link->hub->upcalls; c; c = c->next)
        if (c->who.id == id && c->who.generation == link->uplink->generation &&
            strcmp(c->who.qube, link->qube) == 0) {
            if (engine->events.upcall_cancel)
                engine->events.upcall_cancel(engine->events.userdata, &c->pub);
            return;
        }
}

static void forget(struct agent_hub *hub, struct upcall *c) {
    for (struct upcall **p = &hub->upcalls; *p; p = &(*p)->next)
        if (*p == c) {
            *p = c->next;
            return;
        }
}

/* One complete request at the head of the buffer: 1 handled, 0 need more, -1 broken. */
static int handle_one(struct agent_link *link) {
    struct agent_uplink *u = link->uplink;
    struct qrexec_request req;
    if (u->in.len < sizeof(req))
        return 0;
    memcpy(&req, u->in.data, sizeof(req));
    if (req.magic != QREXEC_MAGIC || req.body_len > QREXEC_MAX_BODY)
        return -1;
    if (u->in.len < sizeof(req) + req.body_len)
        return 0;
    if (req.flags & QREXEC_F_CANCEL) {
        if (req.flags != QREXEC_F_CANCEL || req.body_len)
            return -1;
        strbuf_consume(&u->in, sizeof(req));
        cancel(link, req.id);
        return 1;
    }
    if (req.flags & QREXEC_F_COPY) { /* only where descriptors cannot pass */
        if (req.flags != QREXEC_F_COPY || link->mode != AGENT_LINK_COPY)
            return -1;
        deliver_copy(link, &req, u->in.data + sizeof(req));
        strbuf_consume(&u->in, sizeof(req) + req.body_len);
        return 1;
    }
    int stdio[3] = {-1, -1, -1};
    if ((req.flags & QREXEC_F_FDS) && !take_fds(u, stdio))
        return -1; /* descriptors travel with the first byte: they must be here */
    if (!(req.flags & QREXEC_F_FDS) || !stdio_fd_acceptable(stdio[0]) ||
        !stdio_fd_acceptable(stdio[1]) || !stdio_fd_acceptable(stdio[2])) {
        send_result(u->fd, req.id, QREXEC_REFUSED, 0,
                    "a call must pass its stdin, stdout "
                    "and stderr as pipes, sockets, terminals or files");
        close_fds(stdio, 3);
    } else {
        deliver(link, &req, u->in.data + sizeof(req), stdio);
    }
    strbuf_consume(&u->in, sizeof(req) + req.body_len);
    return 1;
}

static int read_some(struct agent_uplink *u) {
    strbuf_reserve(&u->in, 16384);
    size_t got = 0; /* beyond UPLINK_MAX_FDS unclaimed, they are closed */
    ssize_t n = fdpass_recv(u->fd, u->in.data + u->in.len, u->in.cap - u->in.len - 1,
                            u->fds + u->n_fds, UPLINK_MAX_FDS - u->n_fds, &got, MSG_DONTWAIT);
    u->n_fds += got;
    if (n < 0)
        return n == -EAGAIN || n == -EINTR ? 0 : -1;
    if (n == 0)
        return -1;
    u->in.len += (size_t)n;
    return 1;
}

static int on_uplink(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
    struct agent_link *link = userdata;
    int r = read_some(link->uplink);
    while (r > 0 && (r = handle_one(link)) > 0)
        ;
    if (r < 0) {
        log_warning("%s: uplink closed or broken; calls from inside it fail until it is back",
                    link->qube);
        agent_link_uplink_close(link);
    }
    return 0;
}

int agent_link_uplink_open(struct agent_link *link) {
    /* a COPY link's agent sends its calls without descriptors (agent_link_upcopy.c) */
    uint16_t flags = link->mode == AGENT_LINK_COPY ? AGENT_F_COPY : 0;
    int fd = agent_client_connect(link->socket_path);
    int r = fd < 0 ? fd : agent_client_send_flags(fd, AGENT_REQ_UPLINK, NULL, NULL, flags);
    if (r >= 0 && fcntl(fd, F_SETFL, O_NONBLOCK) < 0)
        r = -errno;
    if (r < 0) {
        if (fd >= 0)
            close(fd);
        return errno = -r, r;
    }
    agent_link_uplink_close(link);
    struct agent_uplink *u = xcalloc(1, sizeof(*u));
    *u = (struct agent_uplink){.fd = fd,
                               .in = STRBUF_INIT,
                               .generation = ++link->hub->uplink_generation};
    link->uplink = u;
    r = sd_event_add_io(link->hub->engine->loop, &u->io, fd, EPOLLIN, on_uplink, link);
    if (r < 0) {
        agent_link_uplink_close(link);
        return errno = -r, r;
    }
    return 0;
}

void agent_link_upcall_reply(struct agent_link *link, struct backend_upcall *pub,
                             enum backend_call_end how, int status, const char *reason) {
    struct upcall *c = pub->handle;
    static const uint32_t kinds[] = {[BACKEND_CALL_EXITED] = QREXEC_EXITED,
                                     [BACKEND_CALL_SIGNALED] = QREXEC_SIGNALED,
                                     [BACKEND_CALL_FAILED] = QREXEC_FAILED};
    uint32_t kind = status < 0 ? QREXEC_REFUSED : kinds[how];
    /* the caller's qube may have stopped, or its uplink been replaced, meanwhile */
    if (c->copy) /* the service's last output goes down before the agent hands on the result */
        upcopy_finish(c->copy);
    if (link && link->uplink && link->uplink->generation == c->who.generation)
        send_result(link->uplink->fd, c->who.id, kind, status < 0 ? 0 : status, reason);
    forget(c->hub, c);
    free(c->body);
    free(c);
}
