/* Running a service call for the host tools (see qrexec_run.h). */
#include "qrexec_run.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "macro.h"

int qrun_exit_code(const struct qrexec_result *r) {
    switch (r->kind) {
    case QREXEC_EXITED: return r->status & 0xff;
    case QREXEC_SIGNALED: return 128 + (r->status & 0x7f);
    case QREXEC_REFUSED: return QRUN_EXIT_REFUSED;
    default: return QRUN_EXIT_PROBLEM;
    }
}

/* The local program reads the service's stdout and writes its stdin (upstream -l). */
static int start_local(const struct qrun_opts *o, int svc[2], pid_t *pid) {
    int to_local[2], from_local[2];
    if (pipe2(to_local, O_CLOEXEC) < 0)
        return -1;
    if (pipe2(from_local, O_CLOEXEC) < 0) {
        close(to_local[0]);
        close(to_local[1]);
        return -1;
    }
    *pid = fork();
    if (*pid < 0) {
        for (int i = 0; i < 2; i++) {
            close(to_local[i]);
            close(from_local[i]);
        }
        return -1;
    }
    if (*pid == 0) {
        dup2(to_local[0], 0);
        dup2(from_local[1], 1);
        setenv("QREXEC_REMOTE_DOMAIN", o->target, 1);
        signal(SIGPIPE, SIG_DFL);
        execl("/bin/sh", "sh", "-c", o->localcmd, (char *)NULL);
        perror("exec /bin/sh");
        _exit(QRUN_EXIT_PROBLEM);
    }
    close(to_local[0]);
    close(from_local[1]);
    svc[0] = from_local[0]; /* service stdin */
    svc[1] = to_local[1];   /* service stdout */
    return 0;
}

static int host_tty(const int fds[3]) {
    return isatty(fds[0]) ? fds[0] : isatty(fds[1]) ? fds[1] : -1;
}

/* Whatever must not cross into the qube, or must be filtered, goes through the relay
 * (qrexec_relay.h); with --tty a terminal on our stdin goes raw first, under a guardian
 * that restores it. */
static int start_relay(const struct qrun_opts *o, struct qrun *q, int fds[3], bool owned[3]) {
    struct relay_spec s = {.host = {fds[0], fds[1], fds[2]},
                           .filter = {false, o->filter_out, o->filter_err},
                           .prefix = o->prefix,
                           .prefix_len = o->prefix_len,
                           .pty = o->pty,
                           .winsize_tty = o->pty ? host_tty(fds) : -1};
    bool relayed[3] = {false, false, false};
    if (o->pty && isatty(fds[0]) && tty_guard_raw(fds[0], &q->guard) < 0)
        return -1;
    if (relay_start(&s, fds, relayed, &q->relay) < 0)
        return -1;
    for (int i = 0; i < 3; i++) {
        if (!relayed[i])
            continue;
        if (owned[i]) /* a --localcmd pipe: the relay holds its own copy */
            close(s.host[i]);
        owned[i] = true;
    }
    return 0;
}

/* Fills fds with what the service gets; *owned says which of them we must close. */
static int prepare_fds(const struct qrun_opts *o, struct qrun *q, int fds[3], bool owned[3]) {
    for (int i = 0; i < 3; i++) {
        fds[i] = o->fds[i] >= 0 ? o->fds[i] : i;
        owned[i] = false;
    }
    if (o->null_io) {
        int n = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (n < 0)
            return -1;
        fds[0] = fds[1] = fds[2] = n;
        owned[0] = true;
        return 0;
    }
    if (o->localcmd) {
        if (start_local(o, fds, &q->local) < 0)
            return -1;
        owned[0] = owned[1] = true;
    }
    return start_relay(o, q, fds, owned);
}

static void reap(pid_t *pid, bool kill_it) {
    if (*pid <= 0)
        return;
    if (kill_it)
        kill(*pid, SIGTERM);
    while (waitpid(*pid, NULL, 0) < 0 && errno == EINTR)
        ;
    *pid = 0;
}

/* Our own stdin and stdout, handed to the service, are swapped for /dev/null: whoever
 * reads our stdout then sees its end when the service closes it, not when we exit (as
 * qrexec-client-vm does). stderr stays: our own messages go there. */
static void drop_own_stdio(const int fds[3]) {
    int null = -1;
    for (int i = 0; i < 2; i++) {
        if (fds[i] != i)
            continue;
        if (null < 0)
            null = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (null >= 0)
            dup2(null, i);
    }
    if (null >= 0)
        close(null);
}

int qrun_start(const struct qrun_opts *o, struct qrun *q, char *err, size_t errsize) {
    int fds[3];
    bool owned[3];
    *q = (struct qrun){.sock = -1, .relay = {.ctl = -1}, .guard = {.fd = -1, .pipe = -1}};
    int r = prepare_fds(o, q, fds, owned);
    if (r == 0) {
        struct qrexec_call_body body = {o->target, o->service, o->user ? o->user : "",
                                        o->command ? o->command : ""};
        r = q->sock = qrexec_request_send(&body, fds, o->pty ? QREXEC_F_PTY : 0);
        if (r < 0)
            snprintf(err, errsize, "Failed to connect to qrexec router at %s: %s",
                     qrexec_socket_path(), qrexec_connect_strerror(r));
    } else {
        snprintf(err, errsize, "Cannot set up the service's streams: %m");
    }
    /* the router holds its own copies now; ours would keep the pipes from ending */
    for (int i = 0; i < 3; i++)
        if (owned[i])
            close(fds[i]);
    if (r < 0) {
        relay_abort(&q->relay);
        tty_guard_restore(&q->guard);
        reap(&q->local, true);
        return -1;
    }
    drop_own_stdio(fds);
    return 0;
}

int qrun_wait(struct qrun *q, int *kind, char *msg, size_t msgsize) {
    struct qrexec_result res;
    int r = qrexec_result_read(q->sock, &res, msg, msgsize);
    closep(&q->sock);
    q->sock = -1;
    /* what the service wrote is in the pipes now: the relay drains it and stops */
    relay_finish(&q->relay);
    tty_guard_restore(&q->guard);
    reap(&q->local, false);
    if (r < 0) {
        *kind = -1;
        snprintf(msg, msgsize, "%s",
                 r == -ECONNRESET ? "qrexec router closed the connection without a result"
                 : r == -EBADMSG  ? "malformed result from the qrexec router"
                                  : strerror(-r));
        return QRUN_EXIT_PROBLEM;
    }
    *kind = (int)res.kind;
    return qrun_exit_code(&res);
}

void qrun_detach(struct qrun *q) {
    pid_t pid = fork();
    if (pid == 0) {
        /* our caller may be reading our stdout/stderr until every writer is gone */
        int n = open("/dev/null", O_RDWR);
        for (int i = 0; i < 3 && n >= 0; i++)
            dup2(n, i);
        setsid();
        int kind;
        char msg[QREXEC_MAX_MSG + 1];
        _exit(qrun_wait(q, &kind, msg, sizeof(msg)));
    }
    closep(&q->sock);
    q->sock = -1;
    q->local = 0;
    q->relay = (struct relay){.ctl = -1}; /* there is none: -e has no stdio */
}

int qrun_call(const struct qrun_opts *o) {
    struct qrun q;
    char msg[QREXEC_MAX_MSG + 1];
    int kind = -1, rc = QRUN_EXIT_PROBLEM;
    if (qrun_start(o, &q, msg, sizeof(msg)) == 0)
        rc = qrun_wait(&q, &kind, msg, sizeof(msg));
    if (kind != QREXEC_EXITED && kind != QREXEC_SIGNALED)
        fprintf(stderr, "%s: %s%s\n", cli_prog, kind == QREXEC_REFUSED ? "Request refused: " : "",
                *msg ? msg : "service call failed");
    return rc;
}
