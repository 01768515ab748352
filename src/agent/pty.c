/* A service on a terminal (AGENT_F_PTY): the session process that spawn.c forks becomes
 * the terminal's owner. It allocates a pty here, inside the qube, runs the service on its
 * slave as controlling terminal (so job control, ^C and window-size changes work as on
 * any terminal) and copies bytes between the master and the caller's pipes: fd 0 (the
 * caller's keystrokes), fd 1 (the terminal's output), fd 2 (struct winsize records). The
 * caller's own terminal never comes here. It exits as the service did, after the output
 * is out, so the reply never overtakes the last bytes. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "service.h"

#define PTY_BUF 16384

struct pty_relay {
    int master, sig;
    pid_t svc;
    bool svc_done, in_open, master_open, out_open, win_open;
    int wstatus;
    char in[PTY_BUF], out[PTY_BUF];
    size_t in_off, in_len, out_off, out_len;
};

static _Noreturn void fail(int errpipe) {
    int err = errno;
    (void)!write(errpipe, &err, sizeof(err));
    _exit(127);
}

static void set_nonblock(int fd) {
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* Every complete record waiting in fd 2; returns whether there was one. */
static bool apply_winsize(int master) {
    struct winsize ws;
    bool any = false;
    while (read(2, &ws, sizeof(ws)) == (ssize_t)sizeof(ws)) {
        ioctl(master, TIOCSWINSZ, &ws);
        any = true;
    }
    return any;
}

static int open_pty(const struct spawn_spec *s, int *slave) {
    char name[128];
    int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0 || grantpt(master) < 0 || unlockpt(master) < 0 ||
        ptsname_r(master, name, sizeof(name)) != 0)
        return -1;
    *slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (*slave < 0)
        return -1;
    if (s->switch_user) /* the user's terminal, as login would make it */
        (void)!fchown(*slave, s->uid, (gid_t)-1);
    return master;
}

static _Noreturn void run_service(const struct spawn_spec *s, int master, int slave, int errpipe) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (setsid() < 0 || ioctl(slave, TIOCSCTTY, 0) < 0)
        fail(errpipe);
    for (int i = 0; i < 3; i++)
        if (dup2(slave, i) < 0)
            fail(errpipe);
    close(master);
    spawn_become(s, errpipe);
}

static int block_signals(void) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGINT);
    sigprocmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    return signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
}

/* The caller's stdin ended: on a canonical terminal that is an EOF character. */
static void queue_eof(struct pty_relay *r) {
    struct termios t;
    r->in_open = false;
    if (tcgetattr(r->master, &t) == 0 && (t.c_lflag & ICANON) && r->in_len < PTY_BUF) {
        r->in[r->in_len++] = (char)t.c_cc[VEOF];
    }
}

static void on_signal(struct pty_relay *r) {
    struct signalfd_siginfo si;
    while (read(r->sig, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        if (si.ssi_signo != SIGCHLD) {
            kill(-r->svc, (int)si.ssi_signo); /* the agent stopping: pass it on */
            continue;
        }
        int st;
        if (!r->svc_done && waitpid(r->svc, &st, WNOHANG) == r->svc) {
            r->svc_done = true;
            r->wstatus = st;
        }
    }
}

static void read_side(int fd, char *buf, size_t *off, size_t *len, bool *open) {
    ssize_t n = read(fd, buf, PTY_BUF);
    if (n > 0) {
        *off = 0;
        *len = (size_t)n;
    } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
        *open = false; /* EIO on the master: no one has the terminal open any more */
    }
}

static bool write_side(int fd, const char *buf, size_t *off, size_t *len) {
    ssize_t n = write(fd, buf + *off, *len - *off);
    if (n < 0)
        return errno == EAGAIN || errno == EINTR;
    *off += (size_t)n;
    if (*off == *len)
        *off = *len = 0;
    return true;
}

static void step(struct pty_relay *r) {
    struct pollfd p[5] = {
        {r->sig, POLLIN, 0},
        {r->in_open && !r->in_len ? 0 : -1, POLLIN, 0},
        {r->master_open ? r->master : -1,
         (short)((r->out_len ? 0 : POLLIN) | (r->in_len ? POLLOUT : 0)), 0},
        {r->out_len && r->out_open ? 1 : -1, POLLOUT, 0},
        {r->win_open ? 2 : -1, POLLIN, 0},
    };
    if (poll(p, 5, -1) < 0)
        return;
    if (p[0].revents)
        on_signal(r);
    if (p[4].revents && !apply_winsize(r->master) && !(p[4].revents & POLLIN))
        r->win_open = false; /* the caller's end is closed */
    if (p[1].revents) {
        bool open = true;
        read_side(0, r->in, &r->in_off, &r->in_len, &open);
        if (!open)
            queue_eof(r);
    }
    if ((p[2].revents & POLLOUT) && !write_side(r->master, r->in, &r->in_off, &r->in_len))
        r->in_off = r->in_len = 0;
    if (p[2].revents & (POLLIN | POLLHUP | POLLERR) && !r->out_len)
        read_side(r->master, r->out, &r->out_off, &r->out_len, &r->master_open);
    if (p[3].revents && !write_side(1, r->out, &r->out_off, &r->out_len)) {
        r->out_open = false; /* the caller is gone: hang the terminal up */
        r->out_off = r->out_len = 0;
        close(r->master);
        r->master_open = false;
    }
}

/* After the service: what it wrote is in the master; out it goes, then its status. */
static _Noreturn void finish(struct pty_relay *r) {
    int fl = fcntl(1, F_GETFL);
    fcntl(1, F_SETFL, fl & ~O_NONBLOCK);
    for (;;) {
        while (r->out_open && r->out_len > r->out_off)
            if (!write_side(1, r->out, &r->out_off, &r->out_len))
                r->out_open = false;
        if (!r->master_open || !r->out_open)
            break;
        r->out_off = r->out_len = 0;
        read_side(r->master, r->out, &r->out_off, &r->out_len, &r->master_open);
        if (!r->out_len)
            break; /* EAGAIN: drained */
    }
    if (WIFSIGNALED(r->wstatus)) {
        int sig = WTERMSIG(r->wstatus);
        struct rlimit none = {0, 0};
        setrlimit(RLIMIT_CORE, &none);
        signal(sig, SIG_DFL);
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, sig);
        sigprocmask(SIG_UNBLOCK, &set, NULL);
        raise(sig);
        _exit(128 + sig);
    }
    _exit(WEXITSTATUS(r->wstatus));
}

_Noreturn void pty_session(const struct spawn_spec *s, int errpipe) {
    static struct pty_relay r; /* forked child: static instead of 32 KiB of stack */
    int slave;
    int master = open_pty(s, &slave);
    if (master < 0)
        fail(errpipe);
    set_nonblock(2);
    if (!apply_winsize(master)) {
        struct winsize ws = {.ws_row = 24, .ws_col = 80};
        ioctl(master, TIOCSWINSZ, &ws);
    }
    int sig = block_signals();
    if (sig < 0)
        fail(errpipe);
    pid_t svc = fork();
    if (svc < 0)
        fail(errpipe);
    if (svc == 0)
        run_service(s, master, slave, errpipe);
    close(slave);
    close(errpipe);
    r = (struct pty_relay){.master = master,
                           .sig = sig,
                           .svc = svc,
                           .in_open = true,
                           .master_open = true,
                           .out_open = true,
                           .win_open = true};
    set_nonblock(0);
    set_nonblock(1);
    set_nonblock(master);
    while (!r.svc_done)
        step(&r);
    finish(&r);
}
