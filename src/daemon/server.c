#include "server.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "api.h"
#include "api_checks.h"
#include "log.h"
#include "strbuf.h"

#define MAX_CONNECTIONS 4096
#define REQUEST_TIMEOUT_USEC (30ULL * 1000000ULL) /* a client that never finishes its request */
/* An over-long request is read to its end (and thrown away) so that its sender, still
 * writing, gets the error reply rather than a reset; past this much it is dropped. */
#define DISCARD_MAX (16u * 1024 * 1024)

struct server {
    sd_event *loop;
    struct app *app;
    struct dispatcher *dispatcher;
    struct preload *preload;
    struct clipboard *clipboard;
    struct events_hub *hub;
    int listen_fd;
    sd_event_source *accept_src;
    char *socket_path;
    size_t n_conns;
};

struct conn {
    struct server *srv;
    int fd;
    sd_event_source *io;
    sd_event_source *timer;
    struct strbuf in;
    struct strbuf out;
    size_t sent;
    size_t request_len; /* bytes received, kept in `in` or (past the limit) thrown away */
    uid_t peer_uid;
};

static void conn_free(struct conn *c) {
    sd_event_source_disable_unref(c->io);
    sd_event_source_disable_unref(c->timer);
    if (c->fd >= 0)
        close(c->fd);
    strbuf_free(&c->in);
    strbuf_free(&c->out);
    c->srv->n_conns--;
    free(c);
}

static int conn_write(struct conn *c) {
    while (c->sent < c->out.len) {
        ssize_t n = send(c->fd, c->out.data + c->sent, c->out.len - c->sent,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN ? 0 : -1;
        }
        c->sent += (size_t)n;
    }
    conn_free(c); /* the reply is complete: close, as the protocol says */
    return 1;
}

/* The reply is in c->out: send it now, or as the socket drains. */
static void conn_send_reply(struct conn *c) {
    sd_event_source_disable_unref(TAKE_PTR(c->timer));
    sd_event_source_set_io_events(c->io, EPOLLOUT);
    if (conn_write(c) < 0)
        conn_free(c);
}

static void conn_deferred_reply(void *ctx, const struct strbuf *reply) {
    struct conn *c = ctx;
    if (!reply) {
        conn_free(c);
        return;
    }
    strbuf_append(&c->out, reply->data, reply->len);
    sd_event_source_set_enabled(c->io, SD_EVENT_ON);
    conn_send_reply(c);
}

/* admin.Events keeps the connection: the hub owns the fd from here on. */
static void conn_to_events(struct conn *c, const struct wire_request *req) {
    struct qerr err = {0};
    struct qube *dest = app_lookup(c->srv->app, req->dest, &err);
    if (!dest || *req->arg || req->payload_len) {
        if (!dest)
            wire_reply_error(&c->out, err.exc, err.msg);
        else
            wire_reply_error(&c->out, EXC_PROTOCOL,
                             *req->arg ? "unexpected argument" : "unexpected payload");
        conn_send_reply(c);
        return;
    }
    struct events_hub *hub = c->srv->hub;
    int fd = TAKE_FD(c->fd);
    const char *filter = dest->klass == QUBE_ADMINVM ? "" : dest->name;
    conn_free(c);
    events_subscribe(hub, fd, filter);
}

static void conn_handle_request(struct conn *c) {
    struct wire_request req;
    if (c->in.len == 0) { /* a probe: the host tools check who listens (qrexec_locate.c) */
        conn_free(c);
        return;
    }
    if (wire_parse_request((uint8_t *)c->in.data, c->in.len, &req) < 0) {
        log_warning("framing error: dropping a malformed request");
        conn_free(c);
        return;
    }
    if (strcmp(req.method, "admin.Events") == 0) {
        conn_to_events(c, &req);
        return;
    }
    struct api_env env = {c->srv->app, c->srv->dispatcher, c->peer_uid, c->srv->preload,
                          c->srv->clipboard};
    struct api_sink sink = {conn_deferred_reply, c};
    enum api_result r = api_dispatch_env(&env, &req, &c->out, &sink);
    if (r == API_NO_REPLY) {
        conn_free(c);
        return;
    }
    if (r == API_DEFERRED) {
        /* the answer comes when the operation ends (Start waits for the agent): stop
         * reading and stop the request timer meanwhile */
        sd_event_source_disable_unref(TAKE_PTR(c->timer));
        sd_event_source_set_enabled(c->io, SD_EVENT_OFF);
        return;
    }
    conn_send_reply(c);
}

/* Reads what is there; returns 1 at EOF (request complete), 0 for more, -1 to drop. */
static int conn_read(struct conn *c) {
    char scratch[16384];
    for (;;) {
        bool keep = c->request_len <= WIRE_MAX_REQUEST;
        if (keep)
            strbuf_reserve(&c->in, sizeof(scratch));
        char *dst = keep ? c->in.data + c->in.len : scratch;
        size_t room = keep ? c->in.cap - c->in.len - 1 : sizeof(scratch);
        ssize_t n = recv(c->fd, dst, room, MSG_DONTWAIT);
        if (n < 0)
            return errno == EINTR ? 0 : errno == EAGAIN ? 0 : -1;
        if (n == 0)
            return 1;
        if (keep)
            c->in.len += (size_t)n;
        c->request_len += (size_t)n;
        if (c->request_len > DISCARD_MAX) {
            log_warning("request over %u bytes: dropping the connection", DISCARD_MAX);
            return -1;
        }
    }
}

/* The method of a request, for messages: printable up to '+', ' ' or NUL. */
static void request_method(const struct strbuf *in, char *buf, size_t size) {
    size_t i = 0;
    for (; i + 1 < size && i < in->len; i++) {
        char ch = in->data[i];
        if (ch == '+' || ch == ' ' || ch == '\0')
            break;
        if (ch < 0x21 || ch > 0x7e) {
            i = 0;
            break;
        }
        buf[i] = ch;
    }
    buf[i] = '\0';
    if (i == 0)
        snprintf(buf, size, "the request");
}

/* Qubes drops such a request unanswered; a QubesValueError says what went wrong. */
static void conn_refuse_oversized(struct conn *c) {
    char method[128];
    struct qerr err = {0};
    request_method(&c->in, method, sizeof(method));
    check_request_size(c->request_len, method, &err);
    log_warning("%s", err.msg);
    wire_reply_error(&c->out, err.exc, err.msg);
    conn_send_reply(c);
}

static int on_conn_io(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
    struct conn *c = userdata;
    if (c->out.len) {
        if (conn_write(c) < 0)
            conn_free(c);
        return 0;
    }
    int r = conn_read(c);
    if (r < 0)
        conn_free(c);
    else if (r > 0 && c->request_len > WIRE_MAX_REQUEST)
        conn_refuse_oversized(c);
    else if (r > 0)
        conn_handle_request(c);
    return 0;
}

static int on_conn_timeout(sd_event_source *src, uint64_t usec, void *userdata) {
    log_warning("dropping a client that did not finish its request in time");
    conn_free(userdata);
    return 0;
}

static void conn_new(struct server *srv, int fd) {
    struct conn *c = xcalloc(1, sizeof(*c));
    c->srv = srv;
    c->fd = fd;
    struct ucred cred;
    socklen_t len = sizeof(cred);
    /* unknown peers get a uid no check will ever trust */
    c->peer_uid = getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 ? cred.uid : (uid_t)-1;
    srv->n_conns++;
    if (sd_event_add_io(srv->loop, &c->io, fd, EPOLLIN, on_conn_io, c) < 0 ||
        sd_event_add_time_relative(srv->loop, &c->timer, CLOCK_MONOTONIC, REQUEST_TIMEOUT_USEC, 0,
                                   on_conn_timeout, c) < 0)
        conn_free(c);
}

static int on_accept(sd_event_source *src, int lfd, uint32_t revents, void *userdata) {
    struct server *srv = userdata;
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EINTR)
                log_warning("accept: %s", strerror(errno));
            return 0;
        }
        if (srv->n_conns >= MAX_CONNECTIONS) {
            log_warning("too many connections; refusing one");
            close(fd);
            continue;
        }
        conn_new(srv, fd);
    }
}

/* A socket file that nobody answers on is a leftover of a killed daemon: remove it.
 * One that answers belongs to a running daemon: refuse to steal it. */
static int claim_socket_path(const char *path) {
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
    close(fd);
    if (r == 0)
        return -EADDRINUSE;
    if (unlink(path) < 0 && errno != ENOENT)
        return -errno;
    return 0;
}

static int bind_socket(const struct server_config *cfg) {
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(cfg->socket_path) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    strcpy(sa.sun_path, cfg->socket_path);
    int r = claim_socket_path(cfg->socket_path);
    if (r < 0)
        return r;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    mode_t old = umask(0117); /* the socket is born 0660: no window with wider access */
    r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
    umask(old);
    if (r < 0 ||
        (cfg->socket_gid != (gid_t)-1 && chown(cfg->socket_path, (uid_t)-1, cfg->socket_gid) < 0) ||
        listen(fd, SOMAXCONN) < 0) {
        r = -errno;
        close(fd);
        return r;
    }
    return fd;
}

int server_new(sd_event *loop, struct app *app, struct dispatcher *dispatcher,
               struct events_hub *hub, const struct server_config *cfg, struct server **out) {
    int fd = bind_socket(cfg);
    if (fd < 0)
        return fd;
    struct server *srv = xcalloc(1, sizeof(*srv));
    *srv = (struct server){.loop = sd_event_ref(loop),
                           .app = app,
                           .dispatcher = dispatcher,
                           .hub = hub,
                           .preload = cfg->preload,
                           .clipboard = cfg->clipboard,
                           .listen_fd = fd,
                           .socket_path = xstrdup(cfg->socket_path)};
    int r = sd_event_add_io(loop, &srv->accept_src, fd, EPOLLIN, on_accept, srv);
    if (r < 0) {
        server_free(srv);
        return r;
    }
    *out = srv;
    return 0;
}

void server_free(struct server *srv) {
    if (!srv)
        return;
    sd_event_source_disable_unref(srv->accept_src);
    close(srv->listen_fd);
    unlink(srv->socket_path);
    free(srv->socket_path);
    sd_event_unref(srv->loop);
    free(srv);
}
