#include "tty_guard.h"
#include "qrexec_relay.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

/* The guardian: outside our process group (a kill of the job does not reach it) and
 * deaf to the terminal's signals; SIGTTOU is ignored so that it may set the terminal
 * from the background. Only its two descriptors stay open. */
static _Noreturn void guardian(int tty, int pipe_r, const struct termios *saved) {
    static const int quiet[] = {SIGINT,  SIGQUIT, SIGTERM, SIGHUP,  SIGTSTP,
                                SIGTTOU, SIGTTIN, SIGPIPE, SIGWINCH};
    for (size_t i = 0; i < sizeof(quiet) / sizeof(quiet[0]); i++)
        signal(quiet[i], SIG_IGN);
    setpgid(0, 0);
    int keep[] = {tty, pipe_r};
    close_fds_except(0, keep, 2);
    char c;
    while (read(pipe_r, &c, 1) != 0 && (errno == EINTR || errno == EAGAIN))
        ;
    tcsetattr(tty, TCSADRAIN, saved);
    _exit(0);
}

int tty_guard_raw(int fd, struct tty_guard *g) {
    *g = (struct tty_guard){.fd = -1, .pipe = -1};
    if (tcgetattr(fd, &g->saved) < 0)
        return -1;
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0) {
        close(p[0]);
        close(p[1]);
        return -1;
    }
    if (pid == 0)
        guardian(fd, p[0], &g->saved);
    close(p[0]);
    g->pid = pid;
    g->pipe = p[1];
    struct termios raw = g->saved;
    cfmakeraw(&raw);
    if (tcsetattr(fd, TCSADRAIN, &raw) < 0) {
        int err = errno;
        tty_guard_restore(g);
        errno = err;
        return -1;
    }
    g->fd = fd;
    return 0;
}

void tty_guard_restore(struct tty_guard *g) {
    if (g->fd >= 0)
        tcsetattr(g->fd, TCSADRAIN, &g->saved);
    g->fd = -1;
    if (g->pipe >= 0)
        close(g->pipe);
    g->pipe = -1;
    if (g->pid > 0)
        while (waitpid(g->pid, NULL, 0) < 0 && errno == EINTR)
            ;
    g->pid = 0;
}
