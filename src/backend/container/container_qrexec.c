/* qrexec for container qubes: service calls into a qube go to its agent with the caller's
 * descriptors (the daemon never sees the bytes); calls made inside a qube come up the
 * agent's uplink and go to the daemon's router. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent_client.h"
#include "container.h"
#include "log.h"
#include "qrexec_proto.h"
#include "strbuf.h"

/* ---- calls into a qube ---- */

struct exec_call {
    struct container_backend *cb;
    struct exec_call *next;
    int fd;
    sd_event_source *io;
    backend_call_done_fn done;
    void *userdata;
};

static void exec_call_free(struct exec_call *c) {
    for (struct exec_call **p = &c->cb->calls; *p; p = &(*p)->next)
        if (*p == c) {
            *p = c->next;
            break;
        }
    sd_event_source_disable_unref(c->io);
    close(c->fd);
    free(c);
}

static void exec_call_end(struct exec_call *c, enum backend_call_end how, int status,
                          const char *reason) {
    backend_call_done_fn done = c->done;
    void *userdata = c->userdata;
    exec_call_free(c);
    done(userdata, how, status, reason);
}

static int on_exec_reply(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
    struct exec_call *c = userdata;
    struct agent_reply reply;
    ssize_t n = recv(fd, &reply, sizeof(reply), MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return 0;
    if (n != (ssize_t)sizeof(reply) || reply.magic != AGENT_MAGIC) {
        exec_call_end(c, BACKEND_CALL_FAILED, 0, "the qube went away during the call");
        return 0;
    }
    switch (reply.kind) {
    case AGENT_EXITED:
        exec_call_end(c, BACKEND_CALL_EXITED, reply.status, NULL);
        break;
    case AGENT_SIGNALED:
        exec_call_end(c, BACKEND_CALL_SIGNALED, reply.status, NULL);
        break;
    case AGENT_REFUSED:
        if (reply.status == ENOENT) { /* Qubes' QREXEC_EXIT_SERVICE_NOT_FOUND */
            exec_call_end(c, BACKEND_CALL_EXITED, 127, NULL);
            break;
        }
        /* fall through */
    default: {
        char why[160];
        snprintf(why, sizeof(why), "the service could not be run: %s",
                 reply.status == ENOENT ? "no such service (or user) in the qube"
                                        : strerror(reply.status));
        exec_call_end(c, BACKEND_CALL_FAILED, reply.status, why);
    }
    }
    return 0;
}

int container_exec(struct backend *b, const char *name, const struct backend_service_call *call,
                   backend_call_done_fn done, void *userdata, struct qerr *err) {
    struct container_backend *cb = (struct container_backend *)b;
    struct run *run = container_find(cb, name);
    if (!run || run->power != BACKEND_RUNNING)
        return qerr_set(err, EXC_VM_NOT_RUNNING, "Domain not running (either powered off or "
                        "paused): '%s'", name);
    char sock[4096];
    container_path(cb, sock, sizeof(sock), "%s/qubes/%s/agent.sock", cb->runtime_dir, name);
    struct agent_request_body body = {call->service, call->argument, call->source,
                                      call->target, call->user, call->command};
    int fd = agent_client_connect(sock);
    int r = fd < 0 ? fd : agent_client_send_flags(fd, AGENT_REQ_EXEC, &body, call->stdio,
                                                      call->pty ? AGENT_F_PTY : 0);
    if (r < 0 || fcntl(fd, F_SETFL, O_NONBLOCK) < 0) {
        if (fd >= 0)
            close(fd);
        return qerr_set(err, EXC_QUBES, "cannot reach the agent of '%s': %s", name,
                        strerror(r < 0 ? -r : errno));
    }
    struct exec_call *c = xcalloc(1, sizeof(*c));
    *c = (struct exec_call){cb, cb->calls, fd, NULL, done, userdata};
    cb->calls = c;
    if (sd_event_add_io(b->loop, &c->io, fd, EPOLLIN, on_exec_reply, c) < 0) {
        exec_call_free(c);
        return qerr_set(err, EXC_QUBES, "cannot watch the call into '%s'", name);
    }
    return 0;
}

void container_calls_free(struct container_backend *cb) {
    while (cb->calls)
        exec_call_free(cb->calls);
}
