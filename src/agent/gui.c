/* The qube's GUI agent (docs/gui.md). When the engine starts a qube with gui on, it hands
 * the agent a listening socket (its number in DISPENSER_GUI_FD): the channel the host's
 * GUI daemon connects to. Before anything else of the start-up, the agent runs itself as
 * `dispenser-agent --gui-agent` as the qube's user, with that socket as fd 3; that launcher
 * starts the qube's own X server and xpra server (xpra takes the socket over through
 * systemd's socket activation protocol) and exits once xpra says it is ready, so the qube
 * is ready — and a preload pauses — only with its GUI agent up. Services then get
 * DISPLAY=:0: the qube's own display, in its own /tmp and network namespace. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "service.h"

#define GUI_DISPLAY ":0"
#define GUI_LOG "/tmp/.dispenser-gui.log"
#define GUI_RUNTIME_DIR "/tmp/.dispenser-gui"
#define GUI_READY_LINE "xpra is ready"
#define GUI_POLL_NS (20 * 1000 * 1000)

/* The socket the engine passed, made close-on-exec (only the launcher gets it); -1 if
 * the qube has no GUI. */
static int adopt_gui_fd(void) {
    const char *env = getenv("DISPENSER_GUI_FD");
    if (!env)
        return -1;
    int fd = atoi(env), accepting = 0;
    socklen_t len = sizeof(accepting);
    unsetenv("DISPENSER_GUI_FD");
    if (fd < 3 || getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) < 0 || !accepting ||
        fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
        agent_log("DISPENSER_GUI_FD=%s is not a listening socket: no GUI", env);
        return -1;
    }
    return fd;
}

bool gui_agent_begin(struct agent *a) {
    a->gui_fd = adopt_gui_fd();
    if (a->gui_fd < 0)
        return false;
    setenv("DISPLAY", GUI_DISPLAY, 1); /* for every service from now on (service.c) */
    char **argv = xcalloc(3, sizeof(char *));
    argv[0] = xstrdup(AGENT_BIN_DIR "/dispenser-agent");
    argv[1] = xstrdup("--gui-agent");
    _cleanup_(spawn_spec_free) struct spawn_spec spec = {0};
    pid_t pid = -ENOENT;
    if (service_spec_user(&a->cfg, argv, &spec) == 0) {
        spec.extra_fd = a->gui_fd;
        pid = spawn_run(&spec);
    }
    /* xpra alone holds the channel: if it dies, the host's attach is refused, not hung */
    close(a->gui_fd);
    a->gui_fd = -1;
    if (pid < 0) {
        agent_log("GUI agent: cannot run it as 'user': %s", strerror((int)-pid));
        return false;
    }
    a->gui_launcher_pid = pid;
    return true;
}

bool gui_launcher_exited(struct agent *a, pid_t pid, int wstatus) {
    if (pid <= 0 || pid != a->gui_launcher_pid)
        return false;
    a->gui_launcher_pid = 0;
    if (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0)
        agent_log("GUI agent did not start (see %s in the qube): the qube has no display", GUI_LOG);
    return true;
}

/* ---- the launcher: `dispenser-agent --gui-agent`, as the user, socket on fd 3 ---- */

static bool log_says_ready(void) {
    char buf[65536];
    int fd = open(GUI_LOG, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return false;
    buf[n] = '\0';
    return strstr(buf, GUI_READY_LINE) != NULL;
}

/* Everything xpra could reach out to beyond its own socket is off: no clipboard (only
 * on explicit request, docs/gui.md), no sound, no files, no printing, no D-Bus. */
static _Noreturn void exec_xpra(int logfd) {
    static char *const argv[] = {
        "xpra",
        "start",
        GUI_DISPLAY,
        "--daemon=no",
        "--bind=none",
        "--mdns=no",
        "--socket-dirs=" GUI_RUNTIME_DIR,
        "--log-dir=" GUI_RUNTIME_DIR,
        "--notifications=no",
        "--pulseaudio=no",
        "--speaker=off",
        "--microphone=off",
        "--webcam=no",
        "--dbus-proxy=no",
        "--dbus-control=no",
        "--dbus-launch=",
        "--system-tray=no",
        "--printing=no",
        "--file-transfer=no",
        "--open-files=no",
        "--opengl=no",
        "--clipboard=no",
        "--html=off",
        "--systemd-run=no",
        "--start-via-proxy=no",
        "--xsettings=no",
        "--mmap=no",
        "--start-new-commands=no",
        "--exit-with-children=no",
        "--av-sync=no",
        "--xvfb=Xvfb +extension Composite -screen 0 1920x1080x24+32 -nolisten tcp -noreset",
        NULL};
    char pid[32];
    snprintf(pid, sizeof(pid), "%d", (int)getpid());
    /* sd_listen_fds(3): fd 3 is ours only if LISTEN_PID names this process */
    if (dup2(logfd, 1) < 0 || dup2(logfd, 2) < 0 || setenv("LISTEN_FDS", "1", 1) < 0 ||
        setenv("LISTEN_PID", pid, 1) < 0 || setenv("XDG_RUNTIME_DIR", GUI_RUNTIME_DIR, 1) < 0)
        _exit(127);
    execvp(argv[0], argv);
    fprintf(stderr, "cannot run xpra: %s\n", strerror(errno));
    _exit(127);
}

int gui_agent_main(void) {
    mkdir(GUI_RUNTIME_DIR, 0700);
    int logfd = open(GUI_LOG, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (logfd < 0) {
        fprintf(stderr, "gui-agent: %s: %s\n", GUI_LOG, strerror(errno));
        return 1;
    }
    pid_t pid = fork();
    if (pid < 0)
        return 1;
    if (pid == 0)
        exec_xpra(logfd);
    close(logfd);
    close(3); /* xpra holds the socket now */
    for (;;) {
        int wstatus;
        if (waitpid(pid, &wstatus, WNOHANG) == pid) {
            fprintf(stderr, "gui-agent: xpra exited before it was ready (%s)\n", GUI_LOG);
            return 1;
        }
        if (log_says_ready())
            return 0; /* xpra goes on, an orphan the agent adopts and reaps */
        nanosleep(&(struct timespec){0, GUI_POLL_NS}, NULL);
    }
}
