/* dispenserd: the qube daemon. One sd-event loop serves the Admin API socket and the
 * event stream; the qube model lives in memory, backed by SQLite in the state dir. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>

#include "app.h"
#include "backend.h"
#include "clipboard.h"
#include "registry.h"
#include "dispatcher.h"
#include "config.h"
#include "events.h"
#include "gui.h"
#include "host.h"
#include "log.h"
#include "pool_mount.h"
#include "preload.h"
#include "qrexec_locate.h"
#include "qrexec_router.h"
#include "server.h"

struct options {
    const char *state_dir;
    const char *runtime_dir;
    const char *socket_path;
    gid_t socket_gid;
    bool foreground;
    const char *agent_path;
    struct backend_option engine_options[16]; /* --engine-option ENGINE.KEY=VALUE */
    size_t n_engine_options;
    const char *policy_dir;
    const char *meminfo;     /* simulated /proc/meminfo for tests, or NULL */
    const char *gui_display; /* where GUI qubes' windows go (docs/gui.md), or NULL */
};

static void usage(FILE *f) {
    fprintf(f,
            "Usage: dispenserd [OPTIONS]\n"
            "Serve the Qubes Admin API for dispenser qubes.\n\n"
            "  --state-dir DIR      qube database and volumes (default %s)\n"
            "  --runtime-dir DIR    runtime state, agent sockets (default %s)\n"
            "  --socket PATH        Admin API socket (default $QUBESD_SOCKET or %s)\n"
            "  --socket-group GROUP group allowed to use the socket (mode 0660)\n"
            "  --foreground         stay in the foreground (default: detach when ready)\n"
            "  --log-level LEVEL    error, warning, info (default) or debug\n"
            "  --log-timestamps     prefix log lines with monotonic milliseconds (profiling)\n"
            "  --agent PATH         the static in-qube agent (default %s)\n"
            "  --engine-option ENGINE.KEY=VALUE\n"
            "                       a setting of one isolation engine (repeatable); each\n"
            "                       engine's keys are in dispenserd(8)\n"
            "  --policy-dir DIR     qrexec policy (default %s; reloaded on change and SIGHUP)\n"
            "  --gui-display DISPLAY  X display for the windows of GUI qubes (feature gui;\n"
            "                       default $DISPLAY; \"\" for none)\n"
            "  --meminfo FILE       read free memory for preloading from FILE (/proc/meminfo\n"
            "                       format) instead of the host's: for tests\n"
            "  --help, --version\n",
            DEFAULT_STATE_DIR, DEFAULT_RUNTIME_DIR, DEFAULT_SOCKET, DEFAULT_AGENT,
            DEFAULT_POLICY_DIR);
}

static int parse_group(const char *name, gid_t *out) {
    struct group *g = getgrnam(name);
    if (!g) {
        fprintf(stderr, "dispenserd: no such group: %s\n", name);
        return -1;
    }
    *out = g->gr_gid;
    return 0;
}

static int add_engine_option(struct options *o, const char *key, const char *value) {
    if (o->n_engine_options == sizeof(o->engine_options) / sizeof(o->engine_options[0])) {
        fprintf(stderr, "dispenserd: too many engine options\n");
        return -1;
    }
    o->engine_options[o->n_engine_options++] = (struct backend_option){key, value};
    return 0;
}

/* ENGINE.KEY=VALUE; the string stays in argv, so it is split in place. */
static int parse_engine_option(struct options *o, char *arg) {
    char *eq = strchr(arg, '=');
    if (!eq || eq == arg || !strchr(arg, '.') || strchr(arg, '.') > eq) {
        fprintf(stderr, "dispenserd: --engine-option wants ENGINE.KEY=VALUE, not '%s'\n", arg);
        return -1;
    }
    *eq = '\0';
    return add_engine_option(o, arg, eq + 1);
}

/* Returns 1 to go on, 0 to exit successfully (help/version), -1 on bad usage. */
static int parse_options(int argc, char **argv, struct options *o) {
    enum {
        OPT_STATE = 256,
        OPT_RUNTIME,
        OPT_SOCKET,
        OPT_GROUP,
        OPT_FG,
        OPT_LOG,
        OPT_VERSION,
        OPT_AGENT,
        OPT_POLICY,
        OPT_MEMINFO,
        OPT_LOG_TIME,
        OPT_ENGINE,
        OPT_GUI_DISPLAY
    };
    static const struct option longopts[] = {
        {"state-dir", required_argument, NULL, OPT_STATE},
        {"runtime-dir", required_argument, NULL, OPT_RUNTIME},
        {"socket", required_argument, NULL, OPT_SOCKET},
        {"socket-group", required_argument, NULL, OPT_GROUP},
        {"foreground", no_argument, NULL, OPT_FG},
        {"log-level", required_argument, NULL, OPT_LOG},
        {"log-timestamps", no_argument, NULL, OPT_LOG_TIME},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, OPT_VERSION},
        {"agent", required_argument, NULL, OPT_AGENT},
        {"engine-option", required_argument, NULL, OPT_ENGINE},
        {"policy-dir", required_argument, NULL, OPT_POLICY},
        {"meminfo", required_argument, NULL, OPT_MEMINFO},
        {"gui-display", required_argument, NULL, OPT_GUI_DISPLAY},
        {0},
    };
    const char *env = getenv("QUBESD_SOCKET");
    *o = (struct options){.state_dir = DEFAULT_STATE_DIR,
                          .runtime_dir = DEFAULT_RUNTIME_DIR,
                          .socket_path = env && *env ? env : DEFAULT_SOCKET,
                          .socket_gid = (gid_t)-1,
                          .agent_path = DEFAULT_AGENT,
                          .policy_dir = DEFAULT_POLICY_DIR,
                          .gui_display = getenv("DISPLAY")};
    int c;
    enum log_level level;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case OPT_STATE: o->state_dir = optarg; break;
        case OPT_RUNTIME: o->runtime_dir = optarg; break;
        case OPT_SOCKET: o->socket_path = optarg; break;
        case OPT_GROUP:
            if (parse_group(optarg, &o->socket_gid) < 0)
                return -1;
            break;
        case OPT_FG: o->foreground = true; break;
        case OPT_LOG:
            if (log_parse_level(optarg, &level) < 0) {
                fprintf(stderr, "dispenserd: unknown log level: %s\n", optarg);
                return -1;
            }
            log_set_level(level);
            break;
        case OPT_LOG_TIME: log_set_timestamps(true); break;
        case OPT_AGENT: o->agent_path = optarg; break;
        case OPT_POLICY: o->policy_dir = optarg; break;
        case OPT_MEMINFO: o->meminfo = optarg; break;
        case OPT_GUI_DISPLAY: o->gui_display = optarg; break;
        case OPT_ENGINE:
            if (parse_engine_option(o, optarg) < 0)
                return -1;
            break;
        case 'h': usage(stdout); return 0;
        case OPT_VERSION: puts("dispenserd " DISPENSER_VERSION); return 0;
        default: usage(stderr); return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "dispenserd: unexpected argument: %s\n", argv[optind]);
        return -1;
    }
    struct backend_config cfg = {.options = o->engine_options, .n_options = o->n_engine_options};
    struct backend_why why = {0};
    if (backends_check_options(&cfg, &why) < 0) {
        fprintf(stderr, "dispenserd: %s\n", why.msg);
        return -1;
    }
    return 1;
}

static int make_dir(const char *path, mode_t mode) {
    if (mkdir(path, mode) < 0 && errno != EEXIST) {
        log_error("cannot create %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* One daemon per state dir: a second one would corrupt nothing (SQLite locks) but would
 * fight over the qubes; refuse it early with a clear message. A POSIX record lock, not
 * flock: it belongs to this process alone, so it goes the moment the daemon dies, even
 * while a qube it was launching still holds a copy of the descriptor (until its exec). */
static int lock_state_dir(const char *state_dir) {
    char path[4096];
    snprintf(path, sizeof(path), "%s/dispenserd.lock", state_dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    struct flock whole = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    if (fd < 0 || fcntl(fd, F_SETLK, &whole) < 0) {
        log_error("state dir %s is in use by another dispenserd (%s)", state_dir, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd; /* held until exit */
}

/* Forks; the parent waits until the child reports readiness, so `dispenserd && qvm-ls`
 * works. Returns in the child only. */
static int detach(int *ready_fd) {
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid > 0) {
        close(p[1]);
        char ok = 0;
        ssize_t n = read(p[0], &ok, 1);
        _exit(n == 1 && ok == 'R' ? 0 : 1);
    }
    close(p[0]);
    setsid();
    *ready_fd = p[1];
    return 0;
}

/* For scripts that restart a daemon not run by systemd (scripts/setup.sh). */
static void write_pid_file(const char *runtime_dir) {
    char path[4096], pid[32];
    snprintf(path, sizeof(path), "%s/dispenserd.pid", runtime_dir);
    int len = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0) {
        (void)!write(fd, pid, (size_t)len);
        close(fd);
    }
}

static void report_ready(int ready_fd) {
    sd_notify(0, "READY=1\nSTATUS=Serving the Admin API");
    if (ready_fd >= 0) {
        (void)!write(ready_fd, "R", 1);
        close(ready_fd);
        int null = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (null >= 0) {
            dup2(null, STDIN_FILENO);
            dup2(null, STDOUT_FILENO);
            close(null);
        }
    }
}

/* Every model event goes to the admin.Events subscribers and to the GUI daemons. */
struct emit_targets {
    struct events_hub *hub;
    struct gui *gui;
};

static void emit_everywhere(void *ctx, const char *subject, const char *event,
                            const struct wire_kv *kv, size_t n_kv) {
    struct emit_targets *t = ctx;
    events_broadcast(t->hub, subject, event, kv, n_kv);
    gui_on_event(t->gui, subject, event, kv, n_kv);
}

static void on_qube_halted(void *userdata, const char *name) {
    preload_qube_halted(userdata, name);
}

/* A burst (100 callers, each with its connection's buffers, its disposable's link and
 * frames) leaves the heap as large as its peak: glibc's free() gives memory back only
 * from the top of the heap, and one allocation that outlives the burst above its freed
 * buffers pins them all (the soak's daemon stayed at 25 MiB; test_memory). Every few
 * seconds, when the heap holds more than TRIM_SLACK free, malloc_trim() returns the free
 * pages wherever they are (madvise), at idle priority: the loop has nothing else to do. */
#define TRIM_PERIOD_USEC (5 * 1000 * 1000ULL)
#define TRIM_SLACK (1024 * 1024)

static int on_trim_timer(sd_event_source *src, uint64_t usec, void *userdata) {
    struct mallinfo2 mi = mallinfo2();
    if (mi.fordblks > TRIM_SLACK)
        malloc_trim(0);
    sd_event_source_set_time(src, usec + TRIM_PERIOD_USEC);
    return 0;
}

static void start_trimming(sd_event *loop) {
    sd_event_source *src = NULL;
    uint64_t now = 0;
    sd_event_now(loop, CLOCK_MONOTONIC, &now);
    if (sd_event_add_time(loop, &src, CLOCK_MONOTONIC, now + TRIM_PERIOD_USEC, 1000 * 1000,
                          on_trim_timer, NULL) < 0)
        return; /* the heap then keeps its high-water mark: no harm but memory */
    sd_event_source_set_priority(src, SD_EVENT_PRIORITY_IDLE);
    sd_event_source_set_enabled(src, SD_EVENT_ON);
    sd_event_source_set_floating(src, true);
    sd_event_source_unref(src);
}

static int on_sighup(sd_event_source *src, const struct signalfd_siginfo *si, void *userdata) {
    router_reload_policy(userdata);
    return 0;
}

/* Qubes keep running across restarts: adopt them before the first call is served. A host
 * where an engine cannot work still gets a management plane (and the other engines). */
static struct dispatcher *start_dispatcher(sd_event *loop, struct app *app,
                                           const struct options *o) {
    struct backend_config cfg = {o->state_dir, o->runtime_dir, o->agent_path, o->engine_options,
                                 o->n_engine_options};
    struct backend *backends[BACKENDS_MAX];
    size_t n = backends_open(loop, &cfg, backends);
    struct dispatcher *dispatcher = dispatcher_new(app, backends, n);
    dispatcher_recover(dispatcher);
    return dispatcher;
}

/* A clipboard paste (clipboard.h) is decided by the qrexec policy, as in Qubes. */
static bool clipboard_policy(void *ctx, const char *source, const char *target, char *why,
                             size_t why_size) {
    return router_policy_allows(ctx, "qubes.ClipboardPaste", source, target, why, why_size);
}

/* The router listens beside the Admin API socket (qrexec_locate.h), so QUBESD_SOCKET alone
 * selects both; RUNTIME/qrexec.sock, where it used to be, stays as a link to it. */
static struct router *start_router(sd_event *loop, struct app *app, struct dispatcher *dispatcher,
                                   struct preload *preload, const struct options *o, char *link,
                                   size_t link_size) {
    char path[4096];
    struct qerr err = {0};
    if (qrexec_router_path_for(o->socket_path, path, sizeof(path)) < 0) {
        log_error("the qrexec socket beside %s would be too long a path", o->socket_path);
        return NULL;
    }
    struct router_config rcfg = {o->policy_dir, path, o->runtime_dir, o->socket_gid, preload};
    struct router *router = router_new(loop, app, dispatcher, &rcfg, &err);
    if (!router) {
        log_error("%s", err.msg);
        return NULL;
    }
    snprintf(link, link_size, "%s/qrexec.sock", o->runtime_dir);
    unlink(link);
    if (symlink(path, link) < 0)
        log_warning("cannot link %s to %s: %m", link, path);
    return router;
}

static int run(const struct options *o, int ready_fd) {
    if (make_dir(o->state_dir, 0700) < 0 || make_dir(o->runtime_dir, 0755) < 0)
        return 1;
    int lock_fd = lock_state_dir(o->state_dir);
    if (lock_fd < 0)
        return 1;
    sd_event *loop = NULL;
    struct app app = {.host_mem_mib = host_mem_total_mib()};
    struct events_hub *hub = NULL;
    struct emit_targets targets = {0};
    struct server *srv = NULL;
    struct dispatcher *dispatcher = NULL;
    struct router *router = NULL;
    struct preload *preload = NULL;
    struct clipboard *clipboard = NULL;
    struct qerr err = {0};
    char db[4096], router_link[4096] = "", pools_dir[4096];
    snprintf(db, sizeof(db), "%s/qubes.db", o->state_dir);
    snprintf(pools_dir, sizeof(pools_dir), "%s/pools", o->state_dir);
    app.pools_dir = pools_dir;
    int ret = 1, r;
    if (sd_event_default(&loop) < 0 || app_open(&app, db, &err) < 0) {
        log_error("%s", err.exc ? err.msg : "cannot start the event loop");
        goto out;
    }
    pool_mount_all(&app); /* before any qube starts from a ram pool */
    hub = events_hub_new(loop);
    targets.hub = hub;
    app.emit = emit_everywhere;
    app.emit_ctx = &targets;
    dispatcher = start_dispatcher(loop, &app, o);
    targets.gui = gui_new(loop, &app, dispatcher, o->gui_display, o->runtime_dir);
    struct memory_source mem = {o->meminfo, o->meminfo == NULL};
    preload = preload_new(loop, &app, dispatcher, &mem);
    dispatcher_set_halted_hook(dispatcher, on_qube_halted, preload);
    preload_recover(preload);
    clipboard = clipboard_new(o->runtime_dir);
    struct server_config cfg = {o->socket_path, o->socket_gid, preload, clipboard};
    if ((r = server_new(loop, &app, dispatcher, hub, &cfg, &srv)) < 0) {
        log_error("cannot listen on %s: %s", o->socket_path, strerror(-r));
        goto out;
    }
    if (!(router = start_router(loop, &app, dispatcher, preload, o, router_link,
                                sizeof(router_link))))
        goto out;
    clipboard_set_policy(clipboard, clipboard_policy, router);
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    sd_event_add_signal(loop, NULL, SIGTERM, NULL, NULL); /* NULL handler: exit the loop */
    sd_event_add_signal(loop, NULL, SIGINT, NULL, NULL);
    sd_event_add_signal(loop, NULL, SIGHUP, on_sighup, router);
    start_trimming(loop);
    log_info("dispenserd %s: %zu qubes, listening on %s", DISPENSER_VERSION, app.n_qubes,
             o->socket_path);
    write_pid_file(o->runtime_dir);
    report_ready(ready_fd);
    ret = sd_event_loop(loop) < 0;
out:
    server_free(srv);
    router_free(router);
    if (*router_link)
        unlink(router_link);
    preload_free(preload);
    clipboard_free(clipboard);
    app.emit = NULL;
    gui_free(targets.gui);       /* the windows go; the qubes run on */
    dispatcher_free(dispatcher); /* qubes keep running: a restarted daemon adopts them */
    events_hub_free(hub);
    app_close(&app);
    sd_event_unref(loop);
    close(lock_fd);
    return ret;
}

/* Up to the hard limit: the daemon holds a descriptor or more per running qube, per
 * event subscriber and per kept uid-range namespace (up to 1024), past the usual soft
 * limit of 1024. Descriptors it passes to what it runs are CLOEXEC or closed. */
static void raise_descriptor_limit(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
            fprintf(stderr, "dispenserd: cannot raise the descriptor limit: %s\n", strerror(errno));
    }
}

int main(int argc, char **argv) {
    struct options o;
    int r = parse_options(argc, argv, &o);
    if (r <= 0)
        return r < 0 ? 2 : 0;
    signal(SIGPIPE, SIG_IGN);
    raise_descriptor_limit();
    int ready_fd = -1;
    if (!o.foreground && detach(&ready_fd) < 0) {
        perror("dispenserd: fork");
        return 1;
    }
    return run(&o, ready_fd);
}
