/* The relay process between the caller's stdio and the pipes a qube is given (see
 * qrexec_relay.h). The host descriptors are shared with the caller's shell: they are
 * never made non-blocking (that would change them for the shell too); only our pipe ends
 * are. */
#include "qrexec_relay.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "escape_filter.h"
#include "macro.h"
#include "qrexec_proto.h"
#include "strbuf.h"

#define RELAY_BUF 65536

/* One direction: src -> dst. -1 marks a closed end. */
struct stream {
    int src, dst;
    bool filter;
    bool shut_dst; /* dst is a socket we share with stdin: shutdown(SHUT_WR) at EOF */
    char *buf;
    size_t off, len;
};

struct relay_state {
    struct stream in, out[2];
    int ctl, sig, winsize_tty, winsize_fd;
};

static int write_all(int fd, const char *p, size_t len) {
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static void close_end(int *fd) {
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static void send_winsize(int tty, int fd) {
    struct winsize ws;
    if (tty >= 0 && fd >= 0 && ioctl(tty, TIOCGWINSZ, &ws) == 0)
        (void)!write(fd, &ws, sizeof(ws)); /* atomic (< PIPE_BUF); a full pipe drops it */
}

/* Service output: what is readable now goes to the host; EOF closes the stream.
 * Returns whether there may be more to read right away. */
static bool pump_out(struct stream *s) {
    char buf[RELAY_BUF];
    ssize_t n = read(s->src, buf, sizeof(buf));
    if (n < 0 && errno == EINTR)
        return true;
    if (n < 0 && errno == EAGAIN)
        return false;
    if (n > 0) {
        if (s->filter)
            escape_filter(buf, (size_t)n);
        if (write_all(s->dst, buf, (size_t)n) == 0)
            return true;
    }
    close_end(&s->src);
    if (s->shut_dst)
        shutdown(s->dst, SHUT_WR);
    return false;
}

/* Host input to the service: read only when the buffer is empty, write non-blocking. */
static void pump_in_read(struct stream *s) {
    ssize_t n = read(s->src, s->buf, RELAY_BUF);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        s->src = -1; /* the caller's: not ours to close */
        close_end(&s->dst);
        return;
    }
    s->off = 0;
    s->len = (size_t)n;
}

static void pump_in_write(struct stream *s) {
    ssize_t n = write(s->dst, s->buf + s->off, s->len - s->off);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n < 0) { /* the service closed its stdin */
        s->src = -1;
        close_end(&s->dst);
        return;
    }
    s->off += (size_t)n;
    if (s->off == s->len) {
        s->off = s->len = 0;
        if (s->src < 0)
            close_end(&s->dst);
    }
}

/* The call has ended: everything the service wrote is in the pipes. */
static _Noreturn void drain_and_exit(struct relay_state *st) {
    for (int k = 0; k < 2; k++)
        while (st->out[k].src >= 0 && pump_out(&st->out[k]))
            ;
    _exit(0);
}

static int add(struct pollfd *p, int *n, int fd, short events) {
    if (fd < 0)
        return -1;
    p[*n] = (struct pollfd){.fd = fd, .events = events};
    return (*n)++;
}

static _Noreturn void relay_loop(struct relay_state *st) {
    for (;;) {
        struct pollfd p[6];
        int n = 0;
        int ictl = add(p, &n, st->ctl, POLLIN);
        int isig = add(p, &n, st->sig, POLLIN);
        bool pending = st->in.len > st->in.off;
        int iin = pending ? add(p, &n, st->in.dst, POLLOUT)
                          : add(p, &n, st->in.dst >= 0 ? st->in.src : -1, POLLIN);
        int iout[2] = {add(p, &n, st->out[0].src, POLLIN), add(p, &n, st->out[1].src, POLLIN)};
        if (poll(p, (nfds_t)n, -1) < 0) {
            if (errno == EINTR)
                continue;
            _exit(1);
        }
        if (ictl >= 0 && p[ictl].revents)
            drain_and_exit(st);
        if (isig >= 0 && p[isig].revents) {
            struct signalfd_siginfo si;
            if (read(st->sig, &si, sizeof(si)) > 0)
                send_winsize(st->winsize_tty, st->winsize_fd);
        }
        if (iin >= 0 && p[iin].revents)
            pending ? pump_in_write(&st->in) : pump_in_read(&st->in);
        for (int k = 0; k < 2; k++)
            if (iout[k] >= 0 && p[iout[k]].revents)
                pump_out(&st->out[k]);
    }
}

static bool kept(int fd, const int *keep, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (keep[i] == fd)
            return true;
    return false;
}

/* The open descriptors are listed in /proc/self/fd: no loop up to a limit that may be
 * a million. Without /proc, up to the soft limit (capped). */
void close_fds_except(int from, const int *keep, size_t n) {
    DIR *d = opendir("/proc/self/fd");
    if (!d) {
        long max = sysconf(_SC_OPEN_MAX);
        for (int fd = from; fd < max && fd < 65536; fd++)
            if (!kept(fd, keep, n))
                close(fd);
        return;
    }
    int open_fds[1024], count = 0;
    bool more = true;
    while (more) { /* a batch at a time: closing while reading the directory is unsafe */
        struct dirent *e;
        count = 0;
        rewinddir(d);
        while ((e = readdir(d)) && count < (int)ELEMENTSOF(open_fds)) {
            int fd = atoi(e->d_name);
            if (e->d_name[0] >= '0' && e->d_name[0] <= '9' && fd >= from && fd != dirfd(d) &&
                !kept(fd, keep, n))
                open_fds[count++] = fd;
        }
        more = count == (int)ELEMENTSOF(open_fds);
        for (int i = 0; i < count; i++)
            close(open_fds[i]);
    }
    closedir(d);
}

static int signal_fd_for_winch(void) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGWINCH);
    sigprocmask(SIG_BLOCK, &set, NULL);
    return signalfd(-1, &set, SFD_CLOEXEC);
}

static _Noreturn void relay_child(struct relay_state *st, pid_t parent) {
    /* the caller killed: stop reading its terminal at once */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(1);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, SIG_IGN); /* ^C on a cooked terminal is the service's business */
    if (st->winsize_fd >= 0)
        st->sig = signal_fd_for_winch();
    int keep[] = {st->ctl,    st->sig,        st->winsize_tty, st->winsize_fd, st->in.src,
                  st->in.dst, st->out[0].src, st->out[0].dst,  st->out[1].src, st->out[1].dst};
    /* above all the service's pipe ends: copies here would keep it from seeing EOF */
    close_fds_except(3, keep, ELEMENTSOF(keep));
    relay_loop(st);
}

/* A pipe for slot i; *ours gets our end (non-blocking), svc[i] the service's. */
static int make_pipe(int svc[3], bool owned[3], int i, bool to_service, int *ours) {
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return -1;
    svc[i] = to_service ? p[0] : p[1];
    *ours = to_service ? p[1] : p[0];
    owned[i] = true;
    fcntl(*ours, F_SETFL, O_NONBLOCK);
    return 0;
}

static bool needs_relay(const struct relay_spec *s, int i) {
    /* the qube's terminal relay makes its ends non-blocking: never on a description it
     * would share with the caller's shell */
    if (s->pty)
        return true;
    if (i == 0)
        return (s->prefix && s->prefix_len > 0) || !qrexec_fd_may_cross(s->host[0]);
    if (i == 2 && s->pty)
        return true;
    return s->filter[i] || !qrexec_fd_may_cross(s->host[i]);
}

static void init_state(const struct relay_spec *s, struct relay_state *st) {
    *st = (struct relay_state){
        .ctl = -1, .sig = -1, .winsize_tty = -1, .winsize_fd = -1, .in = {.src = -1, .dst = -1}};
    for (int k = 0; k < 2; k++)
        st->out[k] = (struct stream){.src = -1, .dst = s->host[k + 1], .filter = s->filter[k + 1]};
}

static void undo_pipes(int svc[3], bool owned[3], struct relay_state *st, const int host[3]) {
    for (int i = 0; i < 3; i++) {
        if (owned[i])
            close(svc[i]);
        svc[i] = host[i];
        owned[i] = false;
    }
    close_end(&st->in.dst);
    close_end(&st->out[0].src);
    close_end(&st->out[1].src);
    close_end(&st->winsize_fd);
}

/* Creates the pipes; 1 if there is anything to relay, 0 if not, -1 on failure. */
static int make_pipes(const struct relay_spec *s, int svc[3], bool owned[3],
                      struct relay_state *st) {
    bool any = false;
    for (int i = 0; i < 3; i++) {
        if (!needs_relay(s, i))
            continue;
        any = true;
        int r;
        if (i == 0) {
            r = make_pipe(svc, owned, 0, true, &st->in.dst);
            st->in.src = s->host[0];
        } else if (i == 2 && s->pty) {
            r = make_pipe(svc, owned, 2, true, &st->winsize_fd);
            st->winsize_tty = s->winsize_tty;
        } else {
            r = make_pipe(svc, owned, i, false, &st->out[i - 1].src);
        }
        if (r < 0) {
            undo_pipes(svc, owned, st, s->host);
            return -1;
        }
    }
    /* --use-stdin-socket: the stdout relay ends the socket's sending side at EOF */
    st->out[0].shut_dst = st->out[0].src >= 0 && st->in.src == s->host[1];
    return any;
}

int relay_start(const struct relay_spec *s, int svc[3], bool owned[3], struct relay *r) {
    struct relay_state st;
    *r = (struct relay){.pid = 0, .ctl = -1};
    init_state(s, &st);
    int any = make_pipes(s, svc, owned, &st);
    if (any <= 0)
        return any;
    size_t cap = RELAY_BUF > s->prefix_len ? RELAY_BUF : s->prefix_len;
    st.in.buf = xmalloc(cap);
    if (s->prefix_len > 0)
        memcpy(st.in.buf, s->prefix, s->prefix_len);
    st.in.len = s->prefix_len;
    /* the first size is in the pipe before the service starts */
    send_winsize(st.winsize_tty, st.winsize_fd);
    int ctl[2];
    if (pipe2(ctl, O_CLOEXEC) < 0) {
        undo_pipes(svc, owned, &st, s->host);
        free(st.in.buf);
        return -1;
    }
    pid_t parent = getpid(), pid = fork();
    if (pid == 0) {
        close(ctl[1]);
        st.ctl = ctl[0];
        relay_child(&st, parent);
    }
    int err = errno;
    close(ctl[0]);
    close_end(&st.in.dst);
    close_end(&st.out[0].src);
    close_end(&st.out[1].src);
    close_end(&st.winsize_fd);
    free(st.in.buf);
    if (pid < 0) {
        close(ctl[1]);
        for (int i = 0; i < 3; i++)
            if (owned[i]) {
                close(svc[i]);
                svc[i] = s->host[i];
                owned[i] = false;
            }
        errno = err;
        return -1;
    }
    r->pid = pid;
    r->ctl = ctl[1];
    return 0;
}

static void relay_reap(struct relay *r) {
    close_end(&r->ctl);
    if (r->pid > 0)
        while (waitpid(r->pid, NULL, 0) < 0 && errno == EINTR)
            ;
    r->pid = 0;
}

void relay_finish(struct relay *r) {
    if (r->ctl >= 0)
        (void)!write(r->ctl, "", 1);
    relay_reap(r);
}

void relay_abort(struct relay *r) {
    if (r->pid > 0)
        kill(r->pid, SIGKILL);
    relay_reap(r);
}
