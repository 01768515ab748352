#include "agent_client.h"
#include "unix_socket.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "fdpass.h"
#include "macro.h"

int agent_client_connect(const char *socket_path) { return unix_connect(socket_path); }

/* sendmsg of everything; descriptors ride on the first byte only. */
static int send_all(int sock, struct iovec *iov, int iovcnt, const int stdio[3]) {
    size_t left = (size_t)iovcnt;
    bool first = true;
    while (left > 0) {
        ssize_t n = fdpass_sendv(sock, iov, left, first ? stdio : NULL, first && stdio ? 3 : 0, 0);
        if (n < 0)
            return (int)n;
        first = false;
        while (left > 0 && (size_t)n >= iov->iov_len)
            n -= (ssize_t)iov->iov_len, iov++, left--;
        if (left > 0) {
            iov->iov_base = (char *)iov->iov_base + n;
            iov->iov_len -= (size_t)n;
        }
    }
    return 0;
}

int agent_client_send(int sock, enum agent_request_type type, const struct agent_request_body *body,
                      const int stdio[3]) {
    return agent_client_send_flags(sock, type, body, stdio, 0);
}

int agent_client_send_flags(int sock, enum agent_request_type type,
                            const struct agent_request_body *body, const int stdio[3],
                            uint16_t flags) {
    static const struct agent_request_body empty = {0};
    _cleanup_free_ char *buf = malloc(AGENT_MAX_BODY);
    if (!buf)
        return -ENOMEM;
    long len = agent_body_encode(body ? body : &empty, buf, AGENT_MAX_BODY);
    if (len < 0)
        return -E2BIG;
    struct agent_request req = {.magic = AGENT_MAGIC,
                                .type = (uint16_t)type,
                                .flags = (uint16_t)(flags | (stdio ? AGENT_F_FDS : 0)),
                                .body_len = (uint32_t)len};
    struct iovec iov[2] = {{&req, sizeof(req)}, {buf, (size_t)len}};
    return send_all(sock, iov, 2, stdio);
}

int agent_client_read_reply(int sock, struct agent_reply *reply) {
    int r = fd_read_exact(sock, reply, sizeof(*reply));
    if (r < 0)
        return r;
    return reply->magic == AGENT_MAGIC ? 0 : -EPROTO;
}

void agent_relay_init(struct agent_relay *r, int sock, int in, int out, int err) {
    *r = (struct agent_relay){.fd = {sock, in, out, err}, .to_agent = STRBUF_INIT};
    frame_demux_init(&r->from_agent, -1, out, err);
}

void agent_relay_free(struct agent_relay *r) {
    frame_demux_free(&r->from_agent);
    strbuf_free(&r->to_agent);
}

void agent_relay_events(const struct agent_relay *r, struct pollfd pfd[RELAY_NFDS]) {
    for (int i = 0; i < RELAY_NFDS; i++)
        pfd[i] = (struct pollfd){.fd = -1};
    pfd[RELAY_SOCK].fd = r->fd[RELAY_SOCK];
    pfd[RELAY_SOCK].events = (r->to_agent.len ? POLLOUT : 0) |
                             (!r->out_blocked && r->from_agent.in.len < AGENT_FRAME_MAX ? POLLIN
                                                                                        : 0);
    if (!r->in_eof && r->to_agent.len < AGENT_FRAME_MAX)
        pfd[RELAY_IN] = (struct pollfd){.fd = r->fd[RELAY_IN], .events = POLLIN};
    if (r->out_blocked) {
        int i = r->from_agent.stream == 1 ? RELAY_OUT : RELAY_ERR;
        pfd[i] = (struct pollfd){.fd = r->fd[i], .events = POLLOUT};
    }
}

/* Delivers what came from the agent; 1 when the reply is in. */
static int relay_pump(struct agent_relay *r) {
    for (;;) {
        switch (frame_demux_run(&r->from_agent)) {
        case FRAME_NEED_MORE: return 0;
        case FRAME_BLOCKED: r->out_blocked = true; return 0;
        case FRAME_EOF: /* the caller's descriptor stays open: it is not ours */
            r->from_agent.dest[r->from_agent.ev_stream] = -2;
            continue;
        case FRAME_REPLY: return r->reply = r->from_agent.reply, 1;
        default: return -EPROTO;
        }
    }
}

static void relay_read_input(struct agent_relay *r) {
    int n = frame_mux_read(&r->to_agent, 0, r->fd[RELAY_IN]);
    if (n < 0 && n != -EAGAIN)
        frame_mux_eof(&r->to_agent, 0), n = 0;
    if (n == 0)
        r->in_eof = true;
}

int agent_relay_step(struct agent_relay *r, const struct pollfd pfd[RELAY_NFDS]) {
    const short ready = POLLIN | POLLOUT | POLLHUP | POLLERR;
    if ((pfd[RELAY_OUT].revents | pfd[RELAY_ERR].revents) & ready)
        r->out_blocked = false;
    if (pfd[RELAY_IN].revents & ready)
        relay_read_input(r);
    if (r->to_agent.len && frame_flush(&r->to_agent, r->fd[RELAY_SOCK]) == -EPIPE) {
        /* The agent stopped reading (service gone): keep waiting for its reply. */
        strbuf_reset(&r->to_agent);
        r->in_eof = true;
    }
    if (!r->out_blocked && (pfd[RELAY_SOCK].revents & (POLLIN | POLLHUP | POLLERR))) {
        int n = frame_demux_fill(&r->from_agent, r->fd[RELAY_SOCK]);
        if (n == 0)
            return relay_pump(r) == 1 ? 1 : -ECONNRESET;
        if (n < 0 && n != -EAGAIN)
            return n;
    }
    return relay_pump(r);
}

int agent_relay_run(struct agent_relay *r, struct agent_reply *reply) {
    for (;;) {
        struct pollfd pfd[RELAY_NFDS];
        agent_relay_events(r, pfd);
        if (poll(pfd, RELAY_NFDS, -1) < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        int s = agent_relay_step(r, pfd);
        if (s < 0)
            return s;
        if (s == 1) {
            *reply = r->reply;
            return 0;
        }
    }
}

int agent_client_call(const char *socket_path, enum agent_request_type type,
                      const struct agent_request_body *body, bool pass_fds, const int stdio[3],
                      struct agent_reply *reply) {
    _cleanup_close_ int sock = agent_client_connect(socket_path);
    if (sock < 0)
        return sock;
    bool copy = type == AGENT_REQ_EXEC && !pass_fds;
    /* without pass_fds no descriptors at all, even where the request ignores them:
     * a connection through a VM's stream cannot carry them (vmux.h) */
    int r = agent_client_send(sock, type, body, pass_fds ? stdio : NULL);
    if (r < 0)
        return r;
    if (!copy)
        return agent_client_read_reply(sock, reply);
    struct agent_relay relay;
    agent_relay_init(&relay, sock, stdio[0], stdio[1], stdio[2]);
    r = agent_relay_run(&relay, reply);
    agent_relay_free(&relay);
    return r;
}
