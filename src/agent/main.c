/* dispenser-agent: PID 1 of every qube. Reaps orphans, runs the start-up scripts, serves
 * service requests on the listening socket the engine passes as fd 3 (agent_proto.h),
 * and powers the qube off on request or on the usual init signals. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent.h"
#include "client_vm.h"
#include "monoclock.h"
#include "vmux.h"

#define LISTEN_FD 3
#define SHUTDOWN_GRACE_MS 5000

static const char *env_or(const char *name, const char *fallback) {
    const char *v = getenv(name);
    return v && *v ? v : fallback;
}

static void config_load(struct agent_config *cfg) {
    cfg->rpc_dir = env_or("DISPENSER_AGENT_RPC_DIR", "/etc/qubes-rpc");
    cfg->startup_dir = env_or("DISPENSER_AGENT_STARTUP_DIR", "/etc/dispenser/startup.d");
    cfg->conf_dir = env_or("DISPENSER_AGENT_CONF_DIR", "/etc/dispenser");
    cfg->rc_local = env_or("DISPENSER_AGENT_RC_LOCAL", "/rw/config/rc.local");
    cfg->passwd = "/etc/passwd";
    cfg->group = "/etc/group";
    cfg->qube = env_or("DISPENSER_QUBE", "");
}

/* The engine's socket on fd 3: must be a listening socket; not inherited by services. */
static int adopt_listen_fd(void) {
    int accepting = 0;
    socklen_t len = sizeof(accepting);
    if (getsockopt(LISTEN_FD, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) < 0)
        return -errno;
    if (!accepting)
        return -EINVAL;
    if (fcntl(LISTEN_FD, F_SETFD, FD_CLOEXEC) < 0 || fd_set_nonblock(LISTEN_FD) < 0)
        return -errno;
    return LISTEN_FD;
}

/* As init, fds 0-2 may be missing; anything opened later must not land there. */
static void ensure_std_fds(void) {
    for (int fd = 0; fd < 3; fd++)
        if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", O_RDWR) != fd)
            _exit(1);
}

/* Every signal is read from a signalfd: none can kill the agent, none interrupts it. */
static int setup_signals(void) {
    sigset_t all;
    sigfillset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    signal(SIGPIPE, SIG_IGN);
    return signalfd(-1, &all, SFD_CLOEXEC | SFD_NONBLOCK);
}

/* --init PATH: the template's init becomes PID 1 (this process execs it); the agent
 * carries on in the child, which the init adopts. */
static pid_t hand_pid1_to(const char *init) {
    pid_t self = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        agent_log("fork for --init: %m");
        _exit(1);
    }
    if (pid > 0) {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        execl(init, init, (char *)NULL);
        agent_log("exec %s: %m", init);
        _exit(1);
    }
    return self;
}

void agent_set_ready(struct agent *a) {
    if (a->ready)
        return;
    a->ready = true;
    for (size_t i = 0; i < a->nscripts; i++)
        free(a->scripts[i]);
    free(a->scripts);
    a->scripts = NULL;
    a->nscripts = a->next_script = 0;
    agent_log("ready");
    conns_ready(a);
}

/* TERM or KILL everything: as init, the whole pid namespace; run by hand (tests), only
 * what the agent started, never the host. */
static void signal_everyone(struct agent *a, int sig) {
    if (a->pid1) {
        kill(-1, sig);
        return;
    }
    conns_signal(a, sig);
    if (a->vmux_pid > 0)
        kill(a->vmux_pid, sig);
    if (a->gui_port_pid > 0)
        kill(a->gui_port_pid, sig);
    if (a->startup_pid > 0)
        kill(-a->startup_pid, sig);
}

static _Noreturn void agent_exit(struct agent *a) {
    if (a->listen_path)
        unlink(a->listen_path);
    if (a->listen_path && a->qrexec_path) /* in a qube, /run goes with it */
        unlink(a->qrexec_path);
    agent_log("powered off");
    exit(0);
}

/* With --init the template's init owns the shutdown: ask it (a poweroff-command, else
 * the poweroff signal of each common init: SIGRTMIN+4 for systemd, SIGUSR2 for busybox,
 * SIGPWR for sysvinit; each is harmless to the others); the engine kills the qube if
 * none of that works. */
static void ask_init_to_poweroff(struct agent *a) {
    char *path;
    if (asprintf(&path, "%s/poweroff-command", a->cfg.conf_dir) < 0)
        abort();
    if (access(path, X_OK) == 0) {
        if (fork() == 0) {
            sigset_t none;
            sigemptyset(&none);
            sigprocmask(SIG_SETMASK, &none, NULL);
            execl(path, path, (char *)NULL);
            _exit(127);
        }
    } else {
        kill(a->init_pid, SIGRTMIN + 4);
        kill(a->init_pid, SIGUSR2);
        kill(a->init_pid, SIGPWR);
    }
    free(path);
}

void agent_poweroff(struct agent *a) {
    if (a->stopping)
        return;
    a->stopping = true;
    agent_log("powering off");
    watch_close(a, &a->listener);
    qrexec_stop_listening(a);
    if (a->init_mode)
        return ask_init_to_poweroff(a);
    signal_everyone(a, SIGTERM);
    a->kill_at = (int64_t)mono_ms() + SHUTDOWN_GRACE_MS;
}

/* Reaps every child; after a poweroff started, exits once none is left. */
static void reap_children(struct agent *a) {
    for (;;) {
        int wstatus;
        pid_t pid = waitpid(-1, &wstatus, WNOHANG);
        if (pid < 0 && errno == ECHILD && a->stopping && !a->init_mode)
            agent_exit(a);
        if (pid <= 0)
            return;
        if (pid == a->vmux_pid) {
            agent_log("the --vmux bridge ended (status 0x%x)", (unsigned)wstatus);
            a->vmux_pid = 0;
        } else if (pid == a->gui_port_pid) {
            agent_log("the --gui-port bridge ended (status 0x%x)", (unsigned)wstatus);
            a->gui_port_pid = 0;
        } else if (qcall_relay_exited(a, pid, wstatus)) {
            /* a copy call's relay: its result went to its caller if it was in */
        } else if (gui_launcher_exited(a, pid, wstatus)) {
            startup_continue(a);
        } else if (!conn_child_exited(a, pid, wstatus)) {
            startup_child_exited(a, pid, wstatus);
        }
    }
}

static void on_signal(struct watch *w, uint32_t revents) {
    struct agent *a = w->owner;
    struct signalfd_siginfo si;
    while (read(w->fd, &si, sizeof(si)) == sizeof(si)) {
        switch (si.ssi_signo) {
        case SIGCHLD: break; /* reaped below */
        case SIGTERM:
        case SIGINT:
        case SIGUSR2: /* busybox poweroff */
        case SIGPWR:
            if (a->init_mode) /* our init is shutting down: nothing left to do */
                agent_exit(a);
            agent_poweroff(a);
            break;
        default: agent_log("ignoring signal %u from pid %u", si.ssi_signo, si.ssi_pid);
        }
    }
    reap_children(a);
}

static int loop_timeout(const struct agent *a) {
    int64_t next = -1;
    if (a->ready_retry_at >= 0)
        next = a->ready_retry_at;
    if (a->kill_at >= 0 && (next < 0 || a->kill_at < next))
        next = a->kill_at;
    if (next < 0)
        return -1;
    int64_t wait = next - (int64_t)mono_ms();
    return wait < 0 ? 0 : (int)wait;
}

/* Shutdown deadline: KILL what is left, then give the kernel a second to reap. */
static void shutdown_tick(struct agent *a) {
    reap_children(a);
    if (a->kill_at < 0 || (int64_t)mono_ms() < a->kill_at)
        return;
    if (a->killed)
        agent_exit(a);
    agent_log("processes left after %d ms: killing them", SHUTDOWN_GRACE_MS);
    signal_everyone(a, SIGKILL);
    a->killed = true;
    a->kill_at = (int64_t)mono_ms() + 1000;
}

static _Noreturn void run_loop(struct agent *a) {
    struct epoll_event evs[16];
    for (;;) {
        int n = epoll_wait(a->epfd, evs, ELEMENTSOF(evs), loop_timeout(a));
        if (n < 0 && errno != EINTR) {
            agent_log("epoll_wait: %m");
            _exit(1);
        }
        for (int i = 0; i < n; i++) {
            struct watch *w = evs[i].data.ptr;
            w->fn(w, evs[i].events);
        }
        conns_reap_dead(a);
        qcalls_reap_dead(a);
        startup_tick(a);
        if (a->stopping && !a->init_mode)
            shutdown_tick(a);
    }
}

/* In a qube: always at AGENT_QREXEC_SOCKET. Run by hand (--listen, tests) only where
 * DISPENSER_AGENT_QREXEC_SOCKET says: never on the host's /run. */
static void setup_qrexec_socket(struct agent *a, bool by_hand) {
    const char *path = getenv("DISPENSER_AGENT_QREXEC_SOCKET");
    if (path && *path)
        qrexec_listen(a, path);
    else if (!by_hand)
        qrexec_listen(a, AGENT_QREXEC_SOCKET);
}

/* --listen PATH --vmux DEVICE: a child bridges the VM's port to PATH (vmux_guest.c); it
 * goes when the agent goes. Forked before the event loop exists: nothing to close but
 * the two descriptors made so far. */
static pid_t spawn_vmux(const char *device, const char *path, int lfd, int sigfd) {
    pid_t pid = fork();
    if (pid < 0)
        agent_log("fork for --vmux: %m");
    if (pid != 0)
        return pid < 0 ? 0 : pid;
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    close(lfd);
    close(sigfd);
    _exit(vmux_guest_main(device, path));
}

static const char *base_name(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

static void usage(FILE *f) {
    fputs("Usage: dispenser-agent [--listen PATH] [--init PATH]\n"
          "       dispenser-agent --vmux DEVICE [--agent-socket PATH]\n"
          "Runs as PID 1 of a qube, serving requests on the listening socket on fd 3\n"
          "(or on PATH with --listen).\n"
          "--vmux bridges the host's channels on a VM's serial port DEVICE to the agent's\n"
          "socket: alone, to --agent-socket (default " VMUX_GUEST_AGENT_SOCKET "); with\n"
          "--listen, from a child of this agent, to PATH.\n"
          "--gui-port DEVICE (with --listen): a VM's window channel, bridged to its xpra.\n",
          f);
}

struct agent_args {
    const char *listen, *init, *vmux, *agent_socket, *gui_port;
};

static void parse_args(int argc, char **argv, struct agent_args *o) {
    static const struct option opts[] = {{"listen", required_argument, NULL, 'l'},
                                         {"init", required_argument, NULL, 'i'},
                                         {"vmux", required_argument, NULL, 'v'},
                                         {"agent-socket", required_argument, NULL, 'a'},
                                         {"gui-port", required_argument, NULL, 'g'},
                                         {"help", no_argument, NULL, 'h'},
                                         {0}};
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'l')
            o->listen = optarg;
        else if (c == 'i')
            o->init = optarg;
        else if (c == 'v')
            o->vmux = optarg;
        else if (c == 'a')
            o->agent_socket = optarg;
        else if (c == 'g')
            o->gui_port = optarg;
        else
            usage(c == 'h' ? stdout : stderr), exit(c == 'h' ? 0 : 2);
    }
    bool standalone_vmux = o->vmux && !o->listen;
    if (optind < argc || (standalone_vmux && o->init) || (o->agent_socket && !standalone_vmux) ||
        (o->gui_port && !o->listen))
        usage(stderr), exit(2);
}

int main(int argc, char **argv) {
    static struct agent a = {.kill_at = -1,
                             .ready_retry_at = -1,
                             .uplink.fd = -1,
                             .gui_fd = -1,
                             .qrexec_listener.fd = -1};
    /* multi-call: the engine puts this binary in every qube as qrexec-client-vm too */
    if (argc > 0 && streq(base_name(argv[0]), "qrexec-client-vm"))
        return qrexec_client_vm_main(argc, argv);
    if (argc == 2 && streq(argv[1], "--gui-agent"))
        return gui_agent_main();
    if (argc == 3 && streq(argv[1], "--resolve4"))
        return resolve4_main(argv[2]);
    struct agent_args args = {0};
    parse_args(argc, argv, &args);
    /* Root inside the qube shares our user namespace but lacks CAP_SYS_PTRACE: not
     * dumpable, we cannot be traced, nor our memory, fds, environment or executable read
     * through /proc (the exe would name a host path). What we exec is dumpable again. */
    prctl(PR_SET_DUMPABLE, 0);
    if (args.vmux && !args.listen)
        return vmux_guest_main(args.vmux,
                               args.agent_socket ? args.agent_socket : VMUX_GUEST_AGENT_SOCKET);
    const char *listen_path = args.listen, *init = args.init;
    /* first: a signal that arrives while we set up must not kill init */
    int sigfd = setup_signals();
    ensure_std_fds();
    config_load(&a.cfg);
    a.pid1 = getpid() == 1;
    int lfd = listen_path ? unix_listen(listen_path) : adopt_listen_fd();
    if (lfd < 0) {
        agent_log("no listening socket (%s): %s", listen_path ? listen_path : "fd 3",
                  strerror(-lfd));
        return 1;
    }
    a.listen_path = listen_path ? xstrdup(listen_path) : NULL;
    if (init) {
        a.init_pid = hand_pid1_to(init);
        a.init_mode = true;
        a.pid1 = false;
    }
    if (!a.pid1) /* orphans of services come back to us, as they would to init */
        prctl(PR_SET_CHILD_SUBREAPER, 1);
    if (args.vmux) /* the socket listens already: the bridge's connects find it */
        a.vmux_pid = spawn_vmux(args.vmux, listen_path, lfd, sigfd);
    if (args.gui_port) /* before the start-up: its GUI agent takes the socket */
        a.gui_port_pid = gui_port_begin(args.gui_port, (int[2]){lfd, sigfd});
    a.epfd = epoll_create1(EPOLL_CLOEXEC);
    a.signals = (struct watch){.fd = sigfd, .fn = on_signal, .owner = &a};
    a.listener = (struct watch){.fd = lfd, .fn = conn_accept, .owner = &a};
    if (a.epfd < 0 || a.signals.fd < 0 || watch_set(&a, &a.signals, EPOLLIN) < 0 ||
        watch_set(&a, &a.listener, EPOLLIN) < 0) {
        agent_log("event loop set-up: %m");
        return 1;
    }
    setup_qrexec_socket(&a, listen_path != NULL);
    startup_begin(&a);
    run_loop(&a);
}
