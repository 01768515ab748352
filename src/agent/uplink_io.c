/* Calls out of a VM: the uplink cannot carry descriptors (a VM's stream), so a call goes
 * up with QREXEC_F_COPY and its caller's stdio stay here. The daemon then opens a data
 * connection for it (AGENT_REQ_UPCALL_IO, the call's id in the argument) and a child of
 * the agent relays the caller's stdio over it with the copy path's framing, as a host
 * client of the agent does (agent_relay, shared/agent_client.h): the caller's stdin goes
 * up as stream 0, the service's stdout and stderr come down as streams 1 and 2, and the
 * daemon's agent_reply ends it once the service has ended. A child rather than the
 * agent's loop because the caller's descriptors may be anything (a terminal, a file,
 * /dev/null) that a blocking poll() handles and epoll does not.
 *
 * The call's result still comes on the uplink, and may overtake the output on its way
 * (two connections): it goes to the caller only when the relay has ended. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent.h"
#include "agent_client.h"

static struct qcall *waiting_call(struct agent *a, const char *id_text) {
    char *end;
    errno = 0;
    unsigned long id = strtoul(id_text, &end, 10);
    if (errno || !*id_text || *end || id > UINT32_MAX)
        return NULL;
    for (struct qcall *q = a->qcalls; q; q = q->next)
        if (!q->dead && q->copy && q->state == QCALL_SENT && q->id == id && !q->relay_pid &&
            !q->client_gone)
            return q;
    return NULL;
}

/* Only the connection and the caller's three descriptors stay open in the child, as 3-6:
 * a copy of another call's socket would hold that call open. */
static int keep_only(int fds[4]) {
    int tmp[4];
    for (int i = 0; i < 4; i++)
        if ((tmp[i] = fcntl(fds[i], F_DUPFD, 7)) < 0) /* above the targets */
            return -1;
    for (int i = 0; i < 4; i++)
        if ((fds[i] = dup2(tmp[i], 3 + i)) < 0)
            return -1;
    if (syscall(SYS_close_range, 7, ~0U, 0) < 0)
        for (long fd = 7, max = sysconf(_SC_OPEN_MAX); fd < max; fd++)
            close((int)fd);
    return 0;
}

/* The service closed its stdout (or stderr): so does the relay, so that the caller's
 * reader sees the end while the service may still run, as it would with the descriptor
 * itself. */
static void close_ended(struct agent_relay *r) {
    for (int s = 1; s <= 2; s++) {
        int *fd = &r->fd[RELAY_IN + s];
        if (r->from_agent.dest[s] == -2 && *fd >= 0) {
            close(*fd);
            *fd = -1;
        }
    }
}

/* The relay child: exits 0 once the daemon's final reply came, 1 otherwise. */
static _Noreturn void relay_child(int sock, const int stdio[3]) {
    sigset_t none;
    sigemptyset(&none);
    signal(SIGTERM, SIG_DFL); /* the agent's shutdown ends it with everything else */
    sigprocmask(SIG_SETMASK, &none, NULL);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int fds[4] = {sock, stdio[0], stdio[1], stdio[2]};
    if (keep_only(fds) < 0)
        _exit(1);
    struct agent_relay relay;
    agent_relay_init(&relay, fds[0], fds[1], fds[2], fds[3]);
    for (;;) {
        struct pollfd pfd[RELAY_NFDS];
        agent_relay_events(&relay, pfd);
        if (poll(pfd, RELAY_NFDS, -1) < 0 && errno != EINTR)
            _exit(1);
        int s = agent_relay_step(&relay, pfd);
        if (s != 0)
            _exit(s == 1 ? 0 : 1);
        close_ended(&relay);
    }
}

void uplink_attach_io(struct conn *c) {
    struct agent *a = c->agent;
    struct agent_request_body b;
    c->body[c->req.body_len] = '\0';
    struct qcall *q = agent_body_decode(c->body, c->req.body_len, &b) < 0 || c->fds[0] >= 0
                          ? NULL
                          : waiting_call(a, b.argument);
    if (!q) { /* answered, gone, or never ours: the daemon fails the call */
        close_fds(c->fds);
        conn_send_reply(c, AGENT_REFUSED, ENOENT);
        return;
    }
    /* the answer first, into the fresh connection's empty buffer: it never blocks */
    struct agent_reply attached = {.magic = AGENT_MAGIC, .kind = AGENT_EXITED, .status = 0};
    if (send(c->sock.fd, &attached, sizeof(attached), MSG_NOSIGNAL | MSG_DONTWAIT) !=
        (ssize_t)sizeof(attached)) {
        conn_destroy(c);
        return;
    }
    pid_t pid = fork();
    if (pid == 0)
        relay_child(c->sock.fd, q->fds);
    if (pid < 0) {
        agent_log("qrexec call %u: cannot fork its relay: %m", q->id);
        q->relay_done = true; /* the result fails it; nothing to wait for */
    }
    q->relay_pid = pid < 0 ? -1 : pid;
    close_fds(q->fds); /* the relay has them */
    conn_destroy(c);
}

bool qcall_relay_exited(struct agent *a, pid_t pid, int wstatus) {
    for (struct qcall *q = a->qcalls; q; q = q->next) {
        if (q->relay_pid != pid || q->relay_done)
            continue;
        q->relay_done = true;
        if (WIFEXITED(wstatus) && WEXITSTATUS(wstatus) != 0)
            agent_log("qrexec call %u: its data connection broke", q->id);
        if (!q->dead && q->has_result)
            qcall_finish(q, q->result.kind, q->result.status, q->result_msg, q->result.msg_len);
        return true;
    }
    return false;
}
