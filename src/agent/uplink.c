/* Calls out of the qube. Processes inside call qrexec-client-vm, which connects to
 * AGENT_QREXEC_SOCKET and sends a qrexec_request with its stdio (qrexec_proto.h); the
 * agent forwards it, descriptors and all, up the uplink (the daemon's router, which
 * connected with AGENT_REQ_UPLINK) under an id of its own, and relays the router's
 * qrexec_result back. The agent never touches the call's data.
 *
 * Both sides are untrusted: a local client may be any process in the qube, and what
 * comes down the uplink is checked as well. A broken client loses only its own call; a
 * broken uplink is dropped and every call in flight on it fails. */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"

#define MSG_NOT_CONNECTED "qrexec is not connected to dispenserd"
#define MSG_LOST "qrexec lost its connection to dispenserd"

static void qcall_readable(struct watch *w, uint32_t revents);
static void uplink_event(struct watch *w, uint32_t revents);

/* ---- local clients ---- */

static void qcall_destroy(struct qcall *q) {
    if (q->dead)
        return;
    q->dead = true;
    watch_close(q->agent, &q->sock);
    close_fds(q->fds);
    if (q->relay_pid > 0 && !q->relay_done)
        kill(q->relay_pid, SIGKILL); /* reaped by the loop, as any child */
}

void qcalls_reap_dead(struct agent *a) {
    for (struct qcall **p = &a->qcalls; *p;) {
        struct qcall *q = *p;
        if (!q->dead) {
            p = &q->next;
            continue;
        }
        *p = q->next;
        free(q->msg);
        free(q->result_msg);
        free(q);
    }
}

/* Answers the local client and ends the call. The result is at most ~1 KiB into a socket
 * the client has not written to since: it never blocks, and a gone client is no error. */
void qcall_finish(struct qcall *q, uint32_t kind, int32_t status, const char *msg, size_t msg_len) {
    char out[sizeof(struct qrexec_result) + QREXEC_MAX_MSG];
    if (msg_len > QREXEC_MAX_MSG)
        msg_len = QREXEC_MAX_MSG;
    struct qrexec_result r = {.magic = QREXEC_MAGIC,
                              .id = q->client_id,
                              .kind = kind,
                              .status = status,
                              .msg_len = (uint32_t)msg_len};
    memcpy(out, &r, sizeof(r));
    memcpy(out + sizeof(r), msg, msg_len);
    (void)!send(q->sock.fd, out, sizeof(r) + msg_len, MSG_NOSIGNAL | MSG_DONTWAIT);
    qcall_destroy(q);
}

static void qcall_fail(struct qcall *q, uint32_t kind, const char *msg) {
    qcall_finish(q, kind, 0, msg, strlen(msg));
}

static void qcall_accept(struct watch *w, uint32_t revents) {
    struct agent *a = w->owner;
    for (;;) {
        int fd = accept4(w->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                agent_log("qrexec accept: %m");
            return;
        }
        struct qcall *q = xcalloc(1, sizeof(*q));
        *q = (struct qcall){.next = a->qcalls,
                            .agent = a,
                            .fds = {-1, -1, -1},
                            .sock = {.fd = fd, .fn = qcall_readable, .owner = q}};
        a->qcalls = q;
        watch_set(a, &q->sock, EPOLLIN);
    }
}

/* 1 when header and body are in, 0 for more, -errno on a broken request. */
static int qcall_read(struct qcall *q) {
    size_t hdr = sizeof(q->req);
    bool in_header = q->got < hdr;
    void *dst = in_header ? (char *)&q->req + q->got : q->msg + q->got;
    size_t want = in_header ? hdr - q->got : hdr + q->req.body_len - q->got;
    ssize_t n = recv_fds(q->sock.fd, dst, want, q->fds);
    if (n == -EAGAIN || n == -EINTR)
        return 0;
    if (n <= 0)
        return n == 0 ? -ECONNRESET : (int)n;
    q->got += (size_t)n;
    if (q->got == hdr) {
        if (q->req.magic != QREXEC_MAGIC || q->req.body_len > QREXEC_MAX_BODY)
            return -EPROTO;
        q->msg = xmalloc(hdr + q->req.body_len);
    }
    return q->got >= hdr && q->got == hdr + q->req.body_len;
}

/* What the router would refuse anyway is refused here, with the reason. */
static const char *qcall_check(struct qcall *q) {
    struct qrexec_call_body b;
    _cleanup_free_ char *body = xmalloc(q->req.body_len + 1);
    memcpy(body, q->msg + sizeof(q->req), q->req.body_len);
    if (q->req.flags & ~(uint32_t)QREXEC_F_FDS)
        return "malformed call: unknown flags";
    if (!(q->req.flags & QREXEC_F_FDS) || q->fds[0] < 0)
        return "malformed call: a call must pass its stdin, stdout and stderr";
    if (qrexec_body_decode(body, q->req.body_len, &b) < 0)
        return "malformed call";
    return NULL;
}

static void uplink_flush(struct agent *a);

static void qcall_submit(struct qcall *q) {
    struct agent *a = q->agent;
    /* nothing more to read: the result is all that follows; but a client that dies
     * meanwhile (its hangup) cancels the call, and a disposable made for it goes */
    watch_set(a, &q->sock, EPOLLRDHUP);
    q->client_id = q->req.id;
    const char *bad = qcall_check(q);
    if (bad)
        return qcall_fail(q, QREXEC_REFUSED, bad);
    if (a->stopping)
        return qcall_fail(q, QREXEC_FAILED, "the qube is shutting down");
    if (a->uplink.fd < 0)
        return qcall_fail(q, QREXEC_FAILED, MSG_NOT_CONNECTED);
    q->id = ++a->next_qid;
    q->copy = a->uplink_copy; /* the stdio stay here until the daemon's data connection */
    struct qrexec_request up = {.magic = QREXEC_MAGIC,
                                .id = q->id,
                                .flags = q->copy ? QREXEC_F_COPY : QREXEC_F_FDS,
                                .body_len = q->req.body_len};
    memcpy(q->msg, &up, sizeof(up));
    q->state = QCALL_QUEUED;
    uplink_flush(a);
}

/* The cancel replaces the call's message once the call is all on the uplink: a header
 * alone, no body, no descriptors. */
static void qcall_queue_cancel(struct qcall *q) {
    struct qrexec_request cancel = {.magic = QREXEC_MAGIC, .id = q->id, .flags = QREXEC_F_CANCEL};
    q->req.body_len = 0;
    memcpy(q->msg, &cancel, sizeof(cancel));
    q->sent = 0;
    q->state = QCALL_QUEUED;
}

static void qcall_client_gone(struct qcall *q) {
    struct agent *a = q->agent;
    watch_close(a, &q->sock);
    if (q->client_gone)
        return;
    q->client_gone = true;
    if (q->state == QCALL_QUEUED && q->sent == 0)
        qcall_destroy(q); /* the router never heard of it */
    else if (q->state == QCALL_SENT && a->uplink.fd >= 0) {
        qcall_queue_cancel(q);
        uplink_flush(a);
    }
    /* else half sent: uplink_flush queues the cancel when the call is all out */
}

static void qcall_readable(struct watch *w, uint32_t revents) {
    struct qcall *q = w->owner;
    if (q->dead)
        return;
    if (q->state != QCALL_READING) {
        qcall_client_gone(q);
        return;
    }
    int r = qcall_read(q);
    if (r < 0) {
        if (r != -ECONNRESET)
            agent_log("bad qrexec call from inside: %s", strerror(-r));
        qcall_destroy(q);
    } else if (r > 0) {
        qcall_submit(q);
    }
}

/* ---- the uplink ---- */

/* Every call in flight fails: its result can no longer come. */
static void uplink_lost(struct agent *a, const char *why) {
    agent_log("qrexec uplink %s", why);
    watch_close(a, &a->uplink);
    a->up_got = 0;
    for (struct qcall *q = a->qcalls; q; q = q->next)
        if (!q->dead && q->state != QCALL_READING)
            qcall_fail(q, QREXEC_FAILED, MSG_LOST);
}

/* A message begun must be finished before the next starts; otherwise any will do. */
static struct qcall *next_to_send(struct agent *a) {
    struct qcall *any = NULL;
    for (struct qcall *q = a->qcalls; q; q = q->next) {
        if (q->dead || q->state != QCALL_QUEUED)
            continue;
        if (q->sent > 0)
            return q;
        any = q;
    }
    return any;
}

static void uplink_flush(struct agent *a) {
    while (a->uplink.fd >= 0) {
        struct qcall *q = next_to_send(a);
        if (!q) {
            watch_set(a, &a->uplink, EPOLLIN);
            return;
        }
        size_t total = sizeof(q->req) + q->req.body_len;
        bool cancelling = q->client_gone && q->req.body_len == 0;
        ssize_t n = send_fds(a->uplink.fd, q->msg + q->sent, total - q->sent,
                             q->sent == 0 && !cancelling && !q->copy ? q->fds : NULL);
        if (n == -EAGAIN) {
            watch_set(a, &a->uplink, EPOLLIN | EPOLLOUT);
            return;
        }
        if (n < 0)
            return uplink_lost(a, "broken while sending");
        if (q->sent == 0 && !q->copy)
            close_fds(q->fds); /* in flight: the router gets its own copies */
        q->sent += (size_t)n;
        if (q->sent == total)
            q->state = QCALL_SENT;
        if (q->sent == total && q->client_gone && !cancelling)
            qcall_queue_cancel(q);
    }
}

static void uplink_deliver(struct agent *a, const struct qrexec_result *r, const char *msg) {
    for (struct qcall *q = a->qcalls; q; q = q->next) {
        if (q->dead || q->state != QCALL_SENT || q->id != r->id || q->has_result)
            continue;
        if (q->relay_pid > 0 && !q->relay_done) { /* its output first */
            q->has_result = true;
            q->result = *r;
            q->result_msg = xmalloc(r->msg_len + 1);
            memcpy(q->result_msg, msg, r->msg_len);
            return;
        }
        return qcall_finish(q, r->kind, r->status, msg, r->msg_len);
    }
    agent_log("qrexec uplink: result for unknown call %u ignored", r->id);
}

/* Reads results until the socket is empty; false if the uplink was dropped. */
static bool uplink_read(struct agent *a) {
    const size_t hdr = sizeof(struct qrexec_result);
    for (;;) {
        struct qrexec_result r = {0};
        memcpy(&r, a->up_buf, a->up_got < hdr ? 0 : hdr);
        size_t want = a->up_got < hdr ? hdr - a->up_got : hdr + r.msg_len - a->up_got;
        ssize_t n = recv_fds(a->uplink.fd, a->up_buf + a->up_got, want, NULL);
        if (n == -EAGAIN || n == -EINTR)
            return true;
        if (n <= 0) {
            uplink_lost(a, n == 0 ? "closed" : "broken");
            return false;
        }
        a->up_got += (size_t)n;
        if (a->up_got < hdr)
            continue;
        memcpy(&r, a->up_buf, hdr);
        if (r.magic != QREXEC_MAGIC || r.msg_len > QREXEC_MAX_MSG) {
            uplink_lost(a, "sent a malformed result: dropped");
            return false;
        }
        if (a->up_got == hdr + r.msg_len) {
            a->up_got = 0;
            uplink_deliver(a, &r, a->up_buf + hdr);
        }
    }
}

static void uplink_event(struct watch *w, uint32_t revents) {
    struct agent *a = w->owner;
    if ((revents & (EPOLLIN | EPOLLHUP | EPOLLERR)) && !uplink_read(a))
        return;
    uplink_flush(a);
}

void uplink_adopt(struct conn *c) {
    struct agent *a = c->agent;
    if (a->uplink.fd >= 0)
        uplink_lost(a, "replaced by a new one");
    a->uplink = (struct watch){.fd = c->sock.fd, .fn = uplink_event, .owner = a};
    a->uplink_copy = c->req.flags & AGENT_F_COPY;
    c->sock.fd = -1; /* the connection's socket lives on as the uplink */
    c->sock.events = 0;
    conn_destroy(c);
    agent_log("qrexec uplink connected%s", a->uplink_copy ? " (copy)" : "");
    uplink_flush(a);
}

/* ---- the listening socket ---- */

static int make_parent_dir(const char *path) {
    _cleanup_free_ char *dir = xstrdup(path);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir)
        return 0;
    *slash = '\0';
    if (mkdir(dir, 0755) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

void qrexec_listen(struct agent *a, const char *path) {
    a->qrexec_listener.fd = -1;
    int fd = make_parent_dir(path);
    /* any process in the qube may call out, as with Qubes' qrexec-client-vm; the policy
     * in dispenserd decides, knowing only which qube calls. Born 0666: no window in
     * which the socket exists with another mode. */
    mode_t old = umask(0111);
    if (fd >= 0)
        fd = unix_listen(path);
    umask(old);
    if (fd < 0) {
        agent_log("cannot listen for qrexec calls on %s: %s", path, strerror(-fd));
        return;
    }
    a->qrexec_path = xstrdup(path);
    a->qrexec_listener = (struct watch){.fd = fd, .fn = qcall_accept, .owner = a};
    watch_set(a, &a->qrexec_listener, EPOLLIN);
}

void qrexec_stop_listening(struct agent *a) { watch_close(a, &a->qrexec_listener); }
