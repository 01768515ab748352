#include "qrexec_host.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "fdpass.h"
#include "log.h"
#include "qrexec_proto.h"
#include "qrexec_router.h"
#include "strbuf.h"

struct router_host {
    struct router *r;
    sd_event *loop;
    int listen_fd;
    sd_event_source *accept_src;
    char *path;
};

struct host_conn {
    struct router_host *h;
    uint32_t id; /* the request's, echoed in the result */
    int fd;
    sd_event_source *io;
    struct strbuf in;
    int fds[3];
    size_t n_fds;
    bool dispatched; /* the router has the call: only a hang-up is watched for */
};

static void host_conn_free(struct host_conn *c) {
    sd_event_source_disable_unref(c->io);
    if (c->fd >= 0)
        close(c->fd);
    for (size_t i = 0; i < c->n_fds; i++)
        close(c->fds[i]);
    strbuf_free(&c->in);
    free(c);
}

/* The result goes back and the connection closes; the client may be gone already. */
static void on_reply(void *ctx, uint32_t kind, int32_t status, const char *msg) {
    struct host_conn *c = ctx;
    size_t len = msg ? strnlen(msg, QREXEC_MAX_MSG) : 0;
    struct qrexec_result res = {QREXEC_MAGIC, c->id, kind, status, (uint32_t)len};
    _cleanup_strbuf_ struct strbuf out = STRBUF_INIT;
    strbuf_append(&out, &res, sizeof(res));
    strbuf_append(&out, msg, len);
    /* a few dozen bytes into an empty socket buffer: the send does not block */
    if (send(c->fd, out.data, out.len, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
        log_debug("qrexec: caller went away before its result");
    host_conn_free(c);
}

static void dispatch(struct host_conn *c, const struct qrexec_request *req) {
    struct qrexec_call_body body;
    c->id = req->id;
    if (qrexec_body_decode(c->in.data + sizeof(*req), req->body_len, &body) < 0 ||
        !(req->flags & QREXEC_F_FDS) || c->n_fds != 3 ||
        (req->flags & ~(uint32_t)(QREXEC_F_FDS | QREXEC_F_PTY))) {
        on_reply(c, QREXEC_REFUSED, 0,
                 "malformed call: a target, a service and the "
                 "caller's stdin, stdout and stderr are needed");
        return;
    }
    if (!qrexec_fd_may_cross(c->fds[0]) || !qrexec_fd_may_cross(c->fds[1]) ||
        !qrexec_fd_may_cross(c->fds[2])) {
        on_reply(c, QREXEC_REFUSED, 0,
                 "the caller's stdio must be pipes, regular files "
                 "or /dev/null: a terminal or socket never goes into a qube (relay it)");
        return;
    }
    int stdio[3] = {c->fds[0], c->fds[1], c->fds[2]};
    c->n_fds = 0; /* the router owns them now */
    c->dispatched = true;
    /* no more input is read; epoll still reports the caller's going away (EPOLLHUP) */
    sd_event_source_set_io_events(c->io, 0);
    struct router_request rreq = {"dom0",    body.target,  body.service,
                                  body.user, body.command, req->flags & QREXEC_F_PTY};
    router_call(c->h->r, &rreq, stdio, on_reply, c);
}

/* 1: a whole request is in, 0: more to come, -1: drop the connection. */
static int read_request(struct host_conn *c, struct qrexec_request *req) {
    strbuf_reserve(&c->in, 4096);
    size_t got = 0; /* three at most: any more are closed */
    ssize_t n = fdpass_recv(c->fd, c->in.data + c->in.len, c->in.cap - c->in.len - 1,
                            c->fds + c->n_fds, 3 - c->n_fds, &got, MSG_DONTWAIT);
    c->n_fds += got;
    if (n < 0)
        return n == -EAGAIN || n == -EINTR ? 0 : -1;
    if (n == 0)
        return -1;
    c->in.len += (size_t)n;
    if (c->in.len < sizeof(*req))
        return 0;
    memcpy(req, c->in.data, sizeof(*req));
    if (req->magic != QREXEC_MAGIC || req->body_len > QREXEC_MAX_BODY)
        return -1;
    return c->in.len >= sizeof(*req) + req->body_len ? 1 : 0;
}

static int on_conn_io(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
    struct host_conn *c = userdata;
    struct qrexec_request req;
    if (c->dispatched) {
        /* the caller died or gave up: its result has nowhere to go */
        sd_event_source_set_enabled(c->io, SD_EVENT_OFF);
        router_abandon(c->h->r, c);
        return 0;
    }
    int r = read_request(c, &req);
    if (r < 0)
        host_conn_free(c);
    else if (r > 0)
        dispatch(c, &req);
    return 0;
}

static int on_accept(sd_event_source *src, int lfd, uint32_t revents, void *userdata) {
    struct router_host *h = userdata;
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return 0;
        struct host_conn *c = xcalloc(1, sizeof(*c));
        *c = (struct host_conn){.h = h, .fd = fd, .in = STRBUF_INIT};
        if (sd_event_add_io(h->loop, &c->io, fd, EPOLLIN, on_conn_io, c) < 0)
            host_conn_free(c);
    }
}

int router_host_open(struct router *r, sd_event *loop, const char *path, gid_t gid,
                     struct router_host **out) {
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    strcpy(sa.sun_path, path);
    unlink(path); /* ours, as the Admin API socket it sits beside is */
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    mode_t old = umask(0117);
    int res = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
    umask(old);
    if (res < 0 || (gid != (gid_t)-1 && chown(path, (uid_t)-1, gid) < 0) || listen(fd, 128) < 0) {
        res = -errno;
        close(fd);
        return res;
    }
    struct router_host *h = xcalloc(1, sizeof(*h));
    *h = (struct router_host){r, sd_event_ref(loop), fd, NULL, xstrdup(path)};
    if (sd_event_add_io(loop, &h->accept_src, fd, EPOLLIN, on_accept, h) < 0) {
        router_host_close(h);
        return -ENOMEM;
    }
    *out = h;
    return 0;
}

void router_host_close(struct router_host *h) {
    if (!h)
        return;
    sd_event_source_disable_unref(h->accept_src);
    close(h->listen_fd);
    unlink(h->path);
    free(h->path);
    sd_event_unref(h->loop);
    free(h);
}
