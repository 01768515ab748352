/* One connection = one request (agent_proto.h): read it, then answer WAIT_READY and
 * SHUTDOWN or start a service, and send the reply when the service has ended. */
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent.h"
#include "service.h"

static void conn_readable(struct watch *w, uint32_t revents);

void conn_accept(struct watch *w, uint32_t revents) {
    struct agent *a = w->owner;
    for (;;) {
        int fd = accept4(w->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                agent_log("accept: %m");
            return;
        }
        struct conn *c = xcalloc(1, sizeof(*c));
        *c = (struct conn){.next = a->conns,
                           .agent = a,
                           .fds = {-1, -1, -1},
                           .sock = {.fd = fd, .fn = conn_readable, .owner = c}};
        a->conns = c;
        watch_set(a, &c->sock, EPOLLIN);
    }
}

/* The end of a connection; the memory goes at the end of the loop iteration, because
 * other events of this iteration may still point at its watches. */
void conn_destroy(struct conn *c) {
    if (c->dead)
        return;
    c->dead = true;
    if (c->copy)
        copy_close(c->agent, c->copy);
    watch_close(c->agent, &c->sock);
    close_fds(c->fds);
}

void conns_reap_dead(struct agent *a) {
    bool freed = false;
    for (struct conn **p = &a->conns; *p;) {
        struct conn *c = *p;
        if (!c->dead) {
            p = &c->next;
            continue;
        }
        *p = c->next;
        free(c->copy);
        free(c->body);
        free(c);
        freed = true;
    }
    /* Idle again after a burst of copy-path calls (~130 KiB of buffers each): give the
     * heap back, an idle qube is charged for what its agent keeps. */
#ifdef __GLIBC__ /* musl's allocator returns freed memory by itself */
    if (freed && !a->conns)
        malloc_trim(0);
#else
    (void)freed;
#endif
}

/* Replies and closes. Not for a running copy path: that one queues the reply behind the
 * service's output (copy.c). */
void conn_send_reply(struct conn *c, uint32_t kind, int32_t status) {
    struct agent_reply r = {.magic = AGENT_MAGIC, .kind = kind, .status = status};
    /* 12 bytes into an empty socket buffer: never blocks; a gone client is no error. */
    (void)!send(c->sock.fd, &r, sizeof(r), MSG_NOSIGNAL | MSG_DONTWAIT);
    conn_destroy(c);
}

/* 1 when the whole request is in, 0 for more, -errno on a broken request. */
static int read_request(struct conn *c) {
    size_t hdr = sizeof(c->req);
    bool in_header = c->got < hdr;
    void *dst = in_header ? (char *)&c->req + c->got : c->body + (c->got - hdr);
    size_t want = in_header ? hdr - c->got : hdr + c->req.body_len - c->got;
    /* exactly the bytes asked for: the copy path's frames follow */
    ssize_t n = recv_fds(c->sock.fd, dst, want, c->fds);
    if (n == -EAGAIN || n == -EINTR)
        return 0;
    if (n <= 0)
        return n == 0 ? -ECONNRESET : (int)n;
    c->got += (size_t)n;
    if (c->got == hdr) {
        if (c->req.magic != AGENT_MAGIC || c->req.body_len > AGENT_MAX_BODY)
            return -EPROTO;
        c->body = xmalloc(c->req.body_len + 1);
    }
    return c->got >= hdr && c->got == hdr + c->req.body_len;
}

static void start_service(struct conn *c);

static void dispatch(struct conn *c) {
    struct agent *a = c->agent;
    watch_set(a, &c->sock, 0); /* nothing more to read until the copy path says so */
    switch (c->req.type) {
    case AGENT_REQ_WAIT_READY:
        c->state = CONN_WAIT_READY;
        if (a->ready)
            conn_send_reply(c, AGENT_EXITED, 0);
        return;
    case AGENT_REQ_SHUTDOWN:
        conn_send_reply(c, AGENT_EXITED, 0);
        agent_poweroff(a);
        return;
    case AGENT_REQ_EXEC: start_service(c); return;
    case AGENT_REQ_UPLINK: uplink_adopt(c); return;
    case AGENT_REQ_REFRESH: refresh_identity(c); return;
    case AGENT_REQ_UPCALL_IO: uplink_attach_io(c); return;
    default: conn_send_reply(c, AGENT_REFUSED, EINVAL);
    }
}

static void conn_readable(struct watch *w, uint32_t revents) {
    struct conn *c = w->owner;
    if (c->dead)
        return;
    int r = read_request(c);
    if (r < 0) {
        if (r != -ECONNRESET)
            agent_log("bad request: %s", strerror(-r));
        conn_destroy(c);
    } else if (r > 0) {
        dispatch(c);
    }
}

void reply_from_wstatus(int wstatus, uint32_t *kind, int32_t *status) {
    if (WIFSIGNALED(wstatus)) {
        *kind = AGENT_SIGNALED;
        *status = WTERMSIG(wstatus);
    } else {
        *kind = AGENT_EXITED;
        *status = WEXITSTATUS(wstatus);
    }
}

static void refuse(struct conn *c, int err, const char *service) {
    agent_log("refusing %s: %s", service ? service : "request", strerror(err));
    close_fds(c->fds);
    conn_send_reply(c, AGENT_REFUSED, err);
}

/* The built-in qubes.WaitForRunningSystem: a WAIT_READY in service clothes. */
static void wait_ready_service(struct conn *c) {
    close_fds(c->fds);
    c->state = CONN_WAIT_READY;
    if (c->agent->ready)
        conn_send_reply(c, AGENT_EXITED, 0);
}

/* Spawns with the passed descriptors or through a new copy relay; -errno on failure. */
static pid_t spawn_for(struct conn *c, struct spawn_spec *spec) {
    int child[3] = {-1, -1, -1};
    if (!(c->req.flags & AGENT_F_FDS)) {
        int r = copy_start(c, child);
        if (r < 0)
            return r;
        memcpy(spec->stdio, child, sizeof(child));
    } else {
        memcpy(spec->stdio, c->fds, sizeof(c->fds));
    }
    pid_t pid = spawn_run(spec);
    close_fds(c->fds); /* the service has its copies; the caller keeps the originals */
    close_fds(child);
    if (pid < 0 && c->copy) { /* no event can name it yet: free at once */
        copy_close(c->agent, c->copy);
        free(TAKE_PTR(c->copy));
    }
    return pid;
}

static void start_service(struct conn *c) {
    struct agent *a = c->agent;
    struct agent_request_body b;
    bool with_fds = c->req.flags & AGENT_F_FDS;
    if (with_fds != (c->fds[0] >= 0))
        return refuse(c, EBADMSG, NULL);
    c->body[c->req.body_len] = '\0';
    if (agent_body_decode(c->body, c->req.body_len, &b) < 0)
        return refuse(c, EINVAL, NULL);
    if (a->stopping)
        return refuse(c, ESHUTDOWN, b.service);
    _cleanup_(spawn_spec_free) struct spawn_spec spec = {0};
    int r = service_resolve(&a->cfg, &b, &spec);
    if (r < 0)
        return refuse(c, -r, b.service);
    if (r == 1)
        return wait_ready_service(c);
    if (c->req.flags & AGENT_F_PTY) {
        if (!with_fds)
            return refuse(c, EINVAL, b.service);
        spec.pty = true;
        service_env_add_term(&spec);
    }
    pid_t pid = spawn_for(c, &spec);
    if (pid < 0) {
        agent_log("cannot start %s: %s", b.service, strerror((int)-pid));
        conn_send_reply(c, AGENT_START_FAILED, (int32_t)-pid);
        return;
    }
    c->pid = pid;
    c->state = CONN_RUNNING;
    if (c->copy)
        copy_update(c);
}

bool conn_child_exited(struct agent *a, pid_t pid, int wstatus) {
    for (struct conn *c = a->conns; c; c = c->next) {
        if (c->dead || c->pid != pid || c->exited)
            continue;
        c->exited = true;
        c->wstatus = wstatus;
        if (c->copy) {
            copy_update(c);
        } else {
            uint32_t kind;
            int32_t status;
            reply_from_wstatus(wstatus, &kind, &status);
            conn_send_reply(c, kind, status);
        }
        return true;
    }
    return false;
}

void conns_ready(struct agent *a) {
    for (struct conn *c = a->conns; c; c = c->next)
        if (!c->dead && c->state == CONN_WAIT_READY)
            conn_send_reply(c, AGENT_EXITED, 0);
}

/* Shutdown: TERM (or KILL) every service session we started. */
void conns_signal(struct agent *a, int sig) {
    for (struct conn *c = a->conns; c; c = c->next)
        if (c->pid > 0 && !c->exited)
            kill(-c->pid, sig);
}
