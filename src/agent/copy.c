/* The copy path: the connection carries the service's stdio as frames (engines that
 * cannot pass descriptors). Flow control both ways: the connection is read only while
 * the service's stdin takes the data, the service's output only while the connection
 * takes the frames, so at most about one frame per direction is ever buffered. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "agent.h"

static void copy_sock_event(struct watch *w, uint32_t revents);
static void copy_stdin_writable(struct watch *w, uint32_t revents);
static void copy_output_readable(struct watch *w, uint32_t revents);

int copy_start(struct conn *c, int child_stdio[3]) {
    int p[3][2];
    for (int i = 0; i < 3; i++)
        if (pipe2(p[i], O_CLOEXEC) < 0) {
            int err = errno;
            while (i-- > 0)
                close(p[i][0]), close(p[i][1]);
            return -err;
        }
    struct copy_relay *r = xcalloc(1, sizeof(*r));
    r->stdin_w = (struct watch){.fd = p[0][1], .fn = copy_stdin_writable, .owner = c};
    r->stdout_w = (struct watch){.fd = p[1][0], .fn = copy_output_readable, .owner = c};
    r->stderr_w = (struct watch){.fd = p[2][0], .fn = copy_output_readable, .owner = c};
    r->to_client = (struct strbuf)STRBUF_INIT;
    frame_demux_init(&r->from_client, p[0][1], -1, -1);
    for (int i = 0; i < 3; i++)
        fd_set_nonblock(i == 0 ? p[0][1] : p[i][0]);
    child_stdio[0] = p[0][0];
    child_stdio[1] = p[1][1];
    child_stdio[2] = p[2][1];
    c->copy = r;
    c->sock.fn = copy_sock_event;
    return 0;
}

/* Closes and frees the buffers; the struct itself (its watches may still be named by
 * events of the current loop iteration) is freed with the connection. */
void copy_close(struct agent *a, struct copy_relay *r) {
    watch_close(a, &r->stdin_w);
    watch_close(a, &r->stdout_w);
    watch_close(a, &r->stderr_w);
    frame_demux_free(&r->from_client);
    strbuf_free(&r->to_client);
}

/* The caller vanished: qrexec hangs the service up, as a terminal would. */
static void client_gone(struct conn *c) {
    if (c->pid > 0 && !c->exited)
        kill(-c->pid, SIGHUP);
    conn_destroy(c);
}

/* Delivers buffered stdin frames to the service; false on a protocol violation. */
static bool pump_stdin(struct conn *c) {
    struct copy_relay *r = c->copy;
    for (;;) {
        enum frame_event ev = frame_demux_run(&r->from_client);
        if (r->from_client.dest[0] == -2 && r->stdin_w.fd >= 0)
            watch_close(c->agent, &r->stdin_w); /* service closed its stdin: discard */
        switch (ev) {
        case FRAME_NEED_MORE: return true;
        case FRAME_BLOCKED: r->stdin_blocked = true; return true;
        case FRAME_EOF: /* EOF on stdin: close the pipe so the service sees it */
            r->stdin_done = true;
            r->from_client.dest[0] = -2;
            watch_close(c->agent, &r->stdin_w);
            continue;
        default: agent_log("copy path: malformed frame from client"); return false;
        }
    }
}

static void copy_sock_event(struct watch *w, uint32_t revents) {
    struct conn *c = w->owner;
    struct copy_relay *r = c->copy;
    if (c->dead)
        return;
    if (r->to_client.len > 0) {
        int e = frame_flush(&r->to_client, w->fd);
        if (e < 0 && e != -EAGAIN)
            return client_gone(c);
    }
    if ((w->events & EPOLLIN) && (revents & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
        int n = frame_demux_fill(&r->from_client, w->fd);
        if (n == 0 && !r->stdin_done)
            return client_gone(c);
        if (n == 0)
            r->client_eof = true; /* half-closed after stdin EOF: still reading replies */
        else if (n < 0 && n != -EAGAIN)
            return client_gone(c);
        if (!pump_stdin(c))
            return client_gone(c);
    }
    copy_update(c);
}

static void copy_stdin_writable(struct watch *w, uint32_t revents) {
    struct conn *c = w->owner;
    if (c->dead)
        return;
    c->copy->stdin_blocked = false;
    if (!pump_stdin(c))
        return client_gone(c);
    copy_update(c);
}

static void copy_output_readable(struct watch *w, uint32_t revents) {
    struct conn *c = w->owner;
    struct copy_relay *r = c->copy;
    if (c->dead)
        return;
    uint32_t stream = w == &r->stdout_w ? 1 : 2;
    int n = frame_mux_read(&r->to_client, stream, w->fd);
    if (n < 0 && n != -EAGAIN)
        frame_mux_eof(&r->to_client, stream), n = 0;
    if (n == 0) /* frame_mux_read queued the EOF frame */
        watch_close(c->agent, w);
    copy_update(c);
}

/* 1 if the connection is finished (destroyed), 0 otherwise. */
static int copy_progress(struct conn *c) {
    struct copy_relay *r = c->copy;
    if (c->state == CONN_RUNNING && c->exited && r->stdout_w.fd < 0 && r->stderr_w.fd < 0) {
        struct agent_reply rep = {.magic = AGENT_MAGIC};
        reply_from_wstatus(c->wstatus, &rep.kind, &rep.status);
        strbuf_append(&r->to_client, &rep, sizeof(rep));
        c->state = CONN_FLUSHING;
    }
    if (r->to_client.len > 0) {
        int e = frame_flush(&r->to_client, c->sock.fd);
        if (e < 0 && e != -EAGAIN) {
            client_gone(c);
            return 1;
        }
    }
    if (c->state == CONN_FLUSHING && r->to_client.len == 0) {
        conn_destroy(c);
        return 1;
    }
    return 0;
}

void copy_update(struct conn *c) {
    struct copy_relay *r = c->copy;
    if (c->dead || copy_progress(c))
        return;
    bool running = c->state == CONN_RUNNING;
    bool room_in = r->from_client.in.len < AGENT_FRAME_MAX;
    uint32_t sock = (r->to_client.len ? EPOLLOUT : 0) |
                    (running && !r->client_eof && !r->stdin_blocked && room_in ? EPOLLIN : 0);
    bool room_out = r->to_client.len < AGENT_FRAME_MAX;
    watch_set(c->agent, &c->sock, sock);
    watch_set(c->agent, &r->stdin_w, r->stdin_blocked ? EPOLLOUT : 0);
    watch_set(c->agent, &r->stdout_w, room_out ? EPOLLIN : 0);
    watch_set(c->agent, &r->stderr_w, room_out ? EPOLLIN : 0);
}
