/* fork + exec of services and start-up scripts. Everything that allocates is done by the
 * caller before fork (service.c); the child only makes system calls. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <unistd.h>

#include "service.h"

extern char **environ;

/* Signals are all blocked in the agent (it reads them from a signalfd) and SIGPIPE is
 * ignored; a service must start with the defaults. */
static void reset_signals(void) {
    sigset_t none;
    sigemptyset(&none);
    for (int s = 1; s < NSIG; s++)
        signal(s, SIG_DFL);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

/* dup2 the three descriptors onto 0, 1, 2 even when some of them are already < 3. */
static int setup_stdio(const int src[3]) {
    int fds[3];
    for (int i = 0; i < 3; i++) {
        fds[i] = src[i] < 0 ? open("/dev/null", O_RDWR | O_CLOEXEC) : src[i];
        if (fds[i] >= 0 && fds[i] < 3)
            fds[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
        if (fds[i] < 0)
            return -1;
    }
    for (int i = 0; i < 3; i++)
        if (dup2(fds[i], i) < 0)
            return -1;
    return 0;
}

static int switch_user(const struct spawn_spec *s) {
    /* In a user namespace with setgroups denied, the groups cannot change anyway. */
    if (setgroups(s->ngroups, s->groups) < 0 && errno != EPERM)
        return -1;
    if (setresgid(s->gid, s->gid, s->gid) < 0 || setresuid(s->uid, s->uid, s->uid) < 0)
        return -1;
    return 0;
}

static _Noreturn void child_exec(const struct spawn_spec *s, int errpipe) {
    reset_signals();
    if (setsid() < 0 || setup_stdio(s->stdio) < 0 ||
        (s->extra_fd > 2 && dup2(s->extra_fd, 3) < 0)) {
        int err = errno;
        (void)!write(errpipe, &err, sizeof(err));
        _exit(127);
    }
    if (s->pty)
        pty_session(s, errpipe);
    spawn_become(s, errpipe);
}

_Noreturn void spawn_become(const struct spawn_spec *s, int errpipe) {
    if (s->switch_user && switch_user(s) < 0)
        goto fail;
    if (!s->home || chdir(s->home) < 0)
        (void)!chdir("/");
    environ = s->envp;
    if (s->search_path)
        execvp(s->argv[0], s->argv);
    else
        execve(s->argv[0], s->argv, s->envp);
fail:;
    int err = errno;
    (void)!write(errpipe, &err, sizeof(err));
    _exit(127);
}

pid_t spawn_run(const struct spawn_spec *spec) {
    int errpipe[2];
    if (pipe2(errpipe, O_CLOEXEC) < 0)
        return -errno;
    pid_t pid = fork();
    if (pid < 0) {
        int err = errno;
        close(errpipe[0]);
        close(errpipe[1]);
        return -err;
    }
    if (pid == 0)
        child_exec(spec, errpipe[1]);
    close(errpipe[1]);
    /* Blocks only until exec: the pipe closes on success, carries errno on failure. */
    int err = 0;
    ssize_t n;
    do
        n = read(errpipe[0], &err, sizeof(err));
    while (n < 0 && errno == EINTR);
    close(errpipe[0]);
    if (n == sizeof(err)) {
        /* The child has exited with 127; SIGCHLD reaps it and finds no owner. */
        return -(err ? err : EIO);
    }
    return pid;
}
