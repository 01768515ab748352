/* qrexec-client-vm [options] TARGET SERVICE[+ARG] [LOCAL_PROGRAM [ARGS...]]
 *
 * Calls a service in another qube (or dom0) from inside a qube, with upstream's command
 * line: the agent binary run under this name. It hands its stdio (or LOCAL_PROGRAM's
 * stdin/stdout) to the qube's agent on AGENT_QREXEC_SOCKET, which passes them up to
 * dispenserd; the bytes then flow between the service and the descriptors directly.
 * Exit status as upstream: the service's (with LOCAL_PROGRAM: the local program's),
 * 128+signal, 126 refused, 125 any other failure. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent.h"
#include "unix_socket.h"
#include "client_vm.h"

#define PROG "qrexec-client-vm"
#define EXIT_FAILED 125

struct cvm_opts {
    const char *socket;
    char *target;
    const char *service;
    char **local;   /* LOCAL_PROGRAM and its arguments, NULL if none */
    int filter_out; /* -1: when stdout is a terminal (and no LOCAL_PROGRAM) */
    int filter_err; /* -1: when stderr is a terminal */
};

/* A pipe between the service and one of our terminals, filtered on the way (-t, -T). */
struct filter {
    int from, to;
};

static _Noreturn void usage(int status) {
    fputs("usage: " PROG " [options] TARGET SERVICE[+ARG] [LOCAL_PROGRAM [ARGS...]]\n"
          "Options:\n"
          "  --buffer-size=SIZE              accepted, ignored (no vchan here)\n"
          "  -t, --filter-escape-chars-stdout  replace control characters on stdout\n"
          "                                  (default if stdout is a terminal)\n"
          "  -T, --filter-escape-chars-stderr  same for stderr\n"
          "  --no-filter-escape-chars-stdout / --no-filter-escape-chars-stderr\n"
          "  -a, --agent-socket=PATH         default: " AGENT_QREXEC_SOCKET "\n",
          status ? stderr : stdout);
    exit(status);
}

enum { OPT_NO_FILTER_OUT = 0x100, OPT_NO_FILTER_ERR, OPT_BUFFER_SIZE };

static void parse_args(int argc, char **argv, struct cvm_opts *o) {
    static const struct option opts[] = {{"buffer-size", required_argument, NULL, OPT_BUFFER_SIZE},
                                         {"filter-escape-chars-stdout", no_argument, NULL, 't'},
                                         {"filter-escape-chars-stderr", no_argument, NULL, 'T'},
                                         {"no-filter-escape-chars-stdout", no_argument, NULL,
                                          OPT_NO_FILTER_OUT},
                                         {"no-filter-escape-chars-stderr", no_argument, NULL,
                                          OPT_NO_FILTER_ERR},
                                         {"agent-socket", required_argument, NULL, 'a'},
                                         {"help", no_argument, NULL, 'h'},
                                         {0}};
    int c;
    while ((c = getopt_long(argc, argv, "+htTa:", opts, NULL)) != -1) {
        switch (c) {
        case 't': o->filter_out = 1; break;
        case 'T': o->filter_err = 1; break;
        case OPT_NO_FILTER_OUT: o->filter_out = 0; break;
        case OPT_NO_FILTER_ERR: o->filter_err = 0; break;
        case OPT_BUFFER_SIZE: break;
        case 'a': o->socket = optarg; break;
        case 'h': usage(0);
        default: usage(2);
        }
    }
    if (argc - optind < 2)
        usage(2);
    o->target = argv[optind];
    o->service = argv[optind + 1];
    o->local = argc - optind > 2 ? argv + optind + 2 : NULL;
    if (o->filter_out < 0)
        o->filter_out = !o->local && isatty(STDOUT_FILENO);
    if (o->filter_err < 0)
        o->filter_err = isatty(STDERR_FILENO);
}

/* The whole request; the descriptors ride on its first byte. */
static int send_call(int sock, const struct cvm_opts *o, const int stdio[3]) {
    struct qrexec_call_body b = {qrexec_target_normalize(o->target), o->service, "", ""};
    _cleanup_free_ char *msg = xmalloc(sizeof(struct qrexec_request) + QREXEC_MAX_BODY);
    long len = qrexec_body_encode(&b, msg + sizeof(struct qrexec_request), QREXEC_MAX_BODY);
    if (len < 0)
        return -E2BIG;
    struct qrexec_request req = {QREXEC_MAGIC, 1, QREXEC_F_FDS, (uint32_t)len};
    memcpy(msg, &req, sizeof(req));
    size_t total = sizeof(req) + (size_t)len, sent = 0;
    while (sent < total) {
        ssize_t n = send_fds(sock, msg + sent, total - sent, sent ? NULL : stdio);
        if (n == -EAGAIN) {
            struct pollfd p = {.fd = sock, .events = POLLOUT};
            poll(&p, 1, -1);
            continue;
        }
        if (n < 0)
            return (int)n;
        sent += (size_t)n;
    }
    return 0;
}

static int read_all(int fd, void *buf, size_t len) {
    for (size_t got = 0; got < len;) {
        ssize_t n = read(fd, (char *)buf + got, len - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : -ECONNRESET;
        got += (size_t)n;
    }
    return 0;
}

static int read_result(int sock, struct qrexec_result *r, char msg[QREXEC_MAX_MSG + 1]) {
    int e = read_all(sock, r, sizeof(*r));
    if (e < 0)
        return e;
    if (r->magic != QREXEC_MAGIC || r->msg_len > QREXEC_MAX_MSG)
        return -EPROTO;
    e = read_all(sock, msg, r->msg_len);
    msg[e < 0 ? 0 : r->msg_len] = '\0';
    return e;
}

static void write_all(int fd, const char *buf, size_t len) {
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return; /* our reader is gone: nothing to do but drop it */
        buf += n, len -= (size_t)n;
    }
}

/* Our own stdin and stdout, once the service holds them: a copy kept here would hide
 * from our reader that the service closed its stdout. stderr stays: our messages go
 * there. */
static void drop_std_fd(int fd) {
    int n = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (n >= 0 && n != fd) {
        dup2(n, fd);
        close(n);
    }
}

/* Returns the end to hand to the service, or -errno. */
static int filter_open(struct filter *f, int to) {
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return -errno;
    *f = (struct filter){.from = p[0], .to = to};
    return p[1];
}

/* One read: false once the pipe is done (EOF, error, or empty when non-blocking). */
static bool filter_pump(struct filter *f) {
    char buf[65536];
    ssize_t n = read(f->from, buf, sizeof(buf));
    if (n < 0 && errno == EINTR)
        return true;
    if (n <= 0) {
        if (n == 0 || errno != EAGAIN) {
            close(f->from), f->from = -1;
            if (f->to == STDOUT_FILENO) /* the service closed its stdout: so do we */
                drop_std_fd(STDOUT_FILENO);
        }
        return false;
    }
    qrexec_replace_chars(buf, (size_t)n);
    write_all(f->to, buf, (size_t)n);
    return true;
}

/* The result, filtering the output meanwhile. Once the service has ended its output
 * is in the pipes: drain what is there, without waiting for any process it left. */
static int wait_result(int sock, struct filter f[2], struct qrexec_result *r, char *msg) {
    for (;;) {
        struct pollfd p[3] = {{.fd = sock, .events = POLLIN},
                              {.fd = f[0].from, .events = POLLIN},
                              {.fd = f[1].from, .events = POLLIN}};
        if (f[0].from < 0 && f[1].from < 0)
            return read_result(sock, r, msg);
        if (poll(p, 3, -1) < 0 && errno != EINTR)
            return -errno;
        for (int i = 0; i < 2; i++)
            if (f[i].from >= 0 && p[i + 1].revents)
                filter_pump(&f[i]);
        if (p[0].revents)
            break;
    }
    int e = read_result(sock, r, msg);
    for (int i = 0; i < 2; i++) {
        if (f[i].from < 0)
            continue;
        fcntl(f[i].from, F_SETFL, O_NONBLOCK);
        while (filter_pump(&f[i]))
            ;
    }
    return e;
}

static pid_t start_local(char **argv, int in, int out) {
    pid_t pid = fork();
    if (pid != 0)
        return pid < 0 ? -errno : pid;
    signal(SIGPIPE, SIG_DFL);
    if (dup2(in, STDIN_FILENO) < 0 || dup2(out, STDOUT_FILENO) < 0)
        _exit(127);
    execvp(argv[0], argv);
    fprintf(stderr, PROG ": cannot run %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

static int wait_local(pid_t pid, bool kill_it) {
    int ws;
    if (kill_it)
        kill(pid, SIGTERM);
    while (waitpid(pid, &ws, 0) < 0)
        if (errno != EINTR)
            return EXIT_FAILED;
    return WIFSIGNALED(ws) ? 128 + WTERMSIG(ws) : WEXITSTATUS(ws);
}

/* Tells why the call did not run; the exit status for it. */
static int report(const struct qrexec_result *r, const char *msg) {
    if (r->kind == QREXEC_REFUSED)
        fprintf(stderr, "Request refused%s%s\n", *msg ? ": " : "", msg);
    else if (r->kind != QREXEC_EXITED && r->kind != QREXEC_SIGNALED)
        fprintf(stderr, PROG ": %s\n", *msg ? msg : "the call failed");
    return qrexec_exit_status(r->kind, r->status);
}

/* As in the agent: a missing 0-2 must not be taken by a socket or pipe we open. */
static void ensure_std_fds(void) {
    for (int fd = 0; fd < 3; fd++)
        if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", O_RDWR) != fd)
            _exit(EXIT_FAILED);
}

static void close_mine(int *fd) {
    if (*fd > STDERR_FILENO)
        close(*fd);
    *fd = -1;
}

int qrexec_client_vm_main(int argc, char **argv) {
    const char *env = getenv("DISPENSER_AGENT_QREXEC_SOCKET");
    struct cvm_opts o = {.socket = env && *env ? env : AGENT_QREXEC_SOCKET,
                         .filter_out = -1,
                         .filter_err = -1};
    parse_args(argc, argv, &o);
    ensure_std_fds();
    signal(SIGPIPE, SIG_IGN);
    int sock = unix_connect(o.socket);
    if (sock < 0) {
        fprintf(stderr, PROG ": cannot connect to %s: %s\n", o.socket, strerror(-sock));
        return EXIT_FAILED;
    }
    /* svc: the service's stdio; local: LOCAL_PROGRAM's stdin and stdout */
    int svc[3] = {STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO}, local[2] = {-1, -1};
    struct filter f[2] = {{-1, -1}, {-1, -1}};
    int p[2][2];
    if (o.local && (pipe2(p[0], O_CLOEXEC) < 0 || pipe2(p[1], O_CLOEXEC) < 0)) {
        perror(PROG ": pipe");
        return EXIT_FAILED;
    }
    if (o.local) {
        svc[0] = p[0][0], local[1] = p[0][1]; /* the program writes to the service */
        svc[1] = p[1][1], local[0] = p[1][0]; /* and reads what the service writes */
    } else if (o.filter_out) {
        svc[1] = filter_open(&f[0], STDOUT_FILENO);
    }
    if (o.filter_err)
        svc[2] = filter_open(&f[1], STDERR_FILENO);
    if (svc[1] < 0 || svc[2] < 0) {
        perror(PROG ": pipe");
        return EXIT_FAILED;
    }
    int e = send_call(sock, &o, svc);
    for (int i = 0; i < 2; i++) /* the service has them now: EOF must reach it */
        if (e == 0 && svc[i] == i)
            drop_std_fd(i);
    for (int i = 0; i < 3; i++)
        close_mine(&svc[i]);
    if (e < 0) {
        fprintf(stderr, PROG ": cannot send the call: %s\n", strerror(-e));
        return EXIT_FAILED;
    }
    pid_t pid = o.local ? start_local(o.local, local[0], local[1]) : 0;
    close_mine(&local[0]);
    close_mine(&local[1]);
    if (pid < 0) {
        fprintf(stderr, PROG ": fork: %s\n", strerror((int)-pid));
        return EXIT_FAILED;
    }
    struct qrexec_result r;
    char msg[QREXEC_MAX_MSG + 1];
    e = wait_result(sock, f, &r, msg);
    if (e < 0) {
        fprintf(stderr, PROG ": lost the connection to the agent: %s\n", strerror(-e));
        if (pid > 0)
            wait_local(pid, true);
        return EXIT_FAILED;
    }
    bool ran = r.kind == QREXEC_EXITED || r.kind == QREXEC_SIGNALED;
    int status = report(&r, msg);
    if (pid > 0) { /* upstream never starts it unless allowed: stop it if not */
        int local_status = wait_local(pid, !ran);
        return ran ? local_status : status;
    }
    return status;
}
