/* The host side of the GUI (docs/gui.md): one GUI daemon per GUI qube, `xpra attach`
 * on the host display, connected to the window channel the qube's engine created
 * (backend_ops.gui_socket). It draws the qube's windows seamlessly, each one titled
 * "[QUBE] title" with a border in the qube's label colour, as Qubes' GUI daemon does.
 *
 * Driven by the model's events: a GUI qube that starts is attached at once, a preload
 * too: its client starts (Python, seconds) and connects while the qube is paused, the
 * kernel queueing the connection on the qube's listening socket; the handshake happens
 * when the hand-out thaws the qube, so the caller does not pay for the client's start.
 * Its timeouts are made long enough for a long pause; a client that gave up anyway is
 * replaced at the hand-out. The client goes when the qube does. */
#include "gui.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "labels.h"
#include "log.h"
#include "strbuf.h"

extern char **environ;

#define GUI_BORDER_WIDTH "3"
/* xpra's own knobs: how long its client waits for a (paused) server's hello and pings */
#define GUI_PAUSE_TOLERANCE_S "864000"

struct gui_client {
    struct gui *gui;
    struct gui_client *next;
    char name[32];
    pid_t pid;
    int pidfd;
    sd_event_source *exit_src;
};

struct gui {
    sd_event *loop;
    struct app *app;
    struct dispatcher *disp;
    char *display, *log_dir;
    struct gui_client *clients;
};

static void attach(struct gui *g, const struct qube *q);

/* Qubes outlive the daemon, their windows do not (its clients stop with it): the GUI
 * qubes a restarted daemon adopted are attached again, paused ones (preloads) too. */
static void attach_adopted(struct gui *g) {
    for (size_t i = 0; i < g->app->n_qubes; i++) {
        const struct qube *q = g->app->qubes[i];
        if ((q->power == POWER_RUNNING || q->power == POWER_PAUSED) &&
            dispatcher_qube_gui(g->app, q))
            attach(g, q);
    }
}

struct gui *gui_new(sd_event *loop, struct app *app, struct dispatcher *disp, const char *display,
                    const char *runtime_dir) {
    struct gui *g = xcalloc(1, sizeof(*g));
    g->loop = loop;
    g->app = app;
    g->disp = disp;
    g->display = display && *display ? xstrdup(display) : NULL;
    if (asprintf(&g->log_dir, "%s/gui", runtime_dir) < 0)
        abort();
    if (g->display) {
        log_info("gui: windows of GUI qubes go to display %s", g->display);
        attach_adopted(g);
    }
    return g;
}

static void client_free(struct gui_client *c) {
    struct gui_client **pp = &c->gui->clients;
    while (*pp && *pp != c)
        pp = &(*pp)->next;
    if (*pp)
        *pp = c->next;
    sd_event_source_disable_unref(c->exit_src);
    if (c->pidfd >= 0)
        close(c->pidfd);
    free(c);
}

static struct gui_client *client_find(struct gui *g, const char *name) {
    for (struct gui_client *c = g->clients; c; c = c->next)
        if (strcmp(c->name, name) == 0)
            return c;
    return NULL;
}

static int on_client_exit(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
    struct gui_client *c = userdata;
    siginfo_t si = {0};
    if (waitid(P_PIDFD, (id_t)c->pidfd, &si, WEXITED | WNOHANG) < 0 || si.si_pid == 0)
        return 0;
    log_debug("gui: %s: xpra attach ended (status %d)", c->name, si.si_status);
    client_free(c);
    return 0;
}

/* "0xcc0000" (admin.label.Get's form) as xpra's "#cc0000". */
static void border_of(const struct app *app, const struct qube *q, char *out, size_t size) {
    char buf[64];
    bool is_default;
    const struct label *l = label_find(
        app_prop_get(app, q, &PROP_DEFS[P_LABEL], buf, sizeof(buf), &is_default));
    snprintf(out, size, "#%s,%s", l ? l->color + 2 : "cc0000", GUI_BORDER_WIDTH);
}

/* Everything but the windows is off: no clipboard (explicit only, docs/gui.md), no
 * sound, no files, no printing, no notifications, no tray. Pictures come as plain RGB:
 * no video or image decoder of the host's client reads what a qube sends. */
static const char *const ATTACH_OPTIONS[] = {
    "--clipboard=no",     "--tray=no",          "--system-tray=no", "--notifications=no",
    "--speaker=off",      "--microphone=off",   "--webcam=no",      "--pulseaudio=no",
    "--printing=no",      "--file-transfer=no", "--open-files=no",  "--bell=no",
    "--mdns=no",          "--dbus-proxy=no",    "--opengl=no",      "--mmap=no",
    "--modal-windows=no", "--encodings=rgb",    "--encoding=rgb",   NULL};

/* The daemon's environment (XAUTHORITY, HOME...) with the display and xpra's timeouts
 * set; the strings stay the caller's (display) and environ's: free only the array. */
static char **attach_env(char *display) {
    size_t n = 0, k = 0;
    while (environ[n])
        n++;
    char **envp = xcalloc(n + 4, sizeof(char *));
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "DISPLAY=", 8) != 0 && strncmp(environ[i], "XPRA_", 5) != 0)
            envp[k++] = environ[i];
    envp[k++] = display;
    envp[k++] = "XPRA_SOCKET_TIMEOUT=" GUI_PAUSE_TOLERANCE_S;
    envp[k++] = "XPRA_PING_TIMEOUT=" GUI_PAUSE_TOLERANCE_S;
    return envp;
}

static pid_t spawn_attach(struct gui *g, const struct qube *q, const char *sock, int logfd) {
    char url[4200], title[64], border[32], display[256];
    snprintf(url, sizeof(url), "socket://%s", sock);
    snprintf(title, sizeof(title), "--title=[%s] @title@", q->name);
    char border_opt[48];
    border_of(g->app, q, border, sizeof(border));
    snprintf(border_opt, sizeof(border_opt), "--border=%s", border);
    snprintf(display, sizeof(display), "DISPLAY=%s", g->display);
    const char *argv[ELEMENTSOF(ATTACH_OPTIONS) + 5] = {"xpra", "attach", url, title, border_opt};
    memcpy(argv + 5, ATTACH_OPTIONS, sizeof(ATTACH_OPTIONS));
    char **envp = attach_env(display);
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, logfd, 1);
    posix_spawn_file_actions_adddup2(&fa, logfd, 2);
    posix_spawnattr_init(&attr);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setflags(&attr,
                             POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSID);
    pid_t pid;
    int r = posix_spawnp(&pid, "xpra", &fa, &attr, (char *const *)argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    free(envp);
    return r ? -r : pid;
}

static int open_log(struct gui *g, const char *name) {
    char path[4096];
    mkdir(g->log_dir, 0700);
    snprintf(path, sizeof(path), "%s/%s.log", g->log_dir, name);
    return open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
}

static void attach(struct gui *g, const struct qube *q) {
    char sock[4096];
    if (!g->display || client_find(g, q->name))
        return;
    int r = dispatcher_gui_socket(g->disp, q, sock, sizeof(sock));
    if (r < 0) {
        log_warning("gui: %s has no window channel: %s", q->name, strerror(-r));
        return;
    }
    int logfd = open_log(g, q->name);
    pid_t pid = logfd < 0 ? -errno : spawn_attach(g, q, sock, logfd);
    if (logfd >= 0)
        close(logfd);
    if (pid < 0) {
        log_warning("gui: %s: cannot run xpra attach: %s", q->name, strerror((int)-pid));
        return;
    }
    struct gui_client *c = xcalloc(1, sizeof(*c));
    *c = (struct gui_client){.gui = g, .next = g->clients, .pid = pid};
    snprintf(c->name, sizeof(c->name), "%s", q->name);
    c->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    g->clients = c;
    if (c->pidfd < 0 ||
        sd_event_add_io(g->loop, &c->exit_src, c->pidfd, EPOLLIN, on_client_exit, c) < 0)
        log_warning("gui: %s: cannot watch xpra attach (pid %d)", q->name, (int)pid);
    log_info("gui: %s: attached (xpra pid %d) to %s", q->name, (int)pid, g->display);
}

static void detach(struct gui *g, const char *name) {
    struct gui_client *c = client_find(g, name);
    if (c) /* its exit is reaped by on_client_exit */
        kill(c->pid, SIGTERM);
}

static const char *kv_get(const struct wire_kv *kv, size_t n, const char *key) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(kv[i].key, key) == 0)
            return kv[i].value;
    return NULL;
}

void gui_on_event(struct gui *g, const char *subject, const char *event, const struct wire_kv *kv,
                  size_t n_kv) {
    if (!g || !g->display)
        return;
    const struct qube *q = NULL;
    if (strcmp(event, "domain-start") == 0) {
        q = app_find(g->app, subject);
        if (q && dispatcher_qube_gui(g->app, q))
            attach(g, q); /* a preload's client waits for the thaw (above) */
    } else if (strcmp(event, "domain-preload-dispvm-used") == 0) {
        const char *name = kv_get(kv, n_kv, "dispvm");
        q = name ? app_find(g->app, name) : NULL;
        if (q && dispatcher_qube_gui(g->app, q))
            attach(g, q);
    } else if (strcmp(event, "domain-shutdown") == 0) {
        detach(g, subject);
    }
}

void gui_free(struct gui *g) {
    if (!g)
        return;
    while (g->clients) {
        kill(g->clients->pid, SIGTERM);
        client_free(g->clients);
    }
    free(g->display);
    free(g->log_dir);
    free(g);
}
