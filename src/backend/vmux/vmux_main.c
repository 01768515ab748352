/* dispenser-vmux: the host end of a VM's agent stream (vmux.h). Run by the engine, one
 * per VM:
 *   dispenser-vmux --connect RUNDIR/serial.sock --listen RUNDIR/agent.sock
 * It listens first (clients may connect at once: they wait in the backlog), connects to
 * the stream, retrying while QEMU starts, then makes every accepted connection a channel
 * to the agent inside. It exits when the stream ends (the VM is gone) or on SIGTERM,
 * removing the listening socket. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "monoclock.h"
#include "unix_socket.h"
#include "vmux.h"

#define RETRY_MS 20

static const char *listen_path;

/* unlink and _exit are async-signal-safe; the clients' connections close with us. */
static void on_stop(int sig) {
    if (listen_path)
        unlink(listen_path);
    _exit(0);
}

struct opts {
    const char *connect, *listen;
    int timeout_s;
};

static _Noreturn void usage(int status) {
    fputs("Usage: dispenser-vmux --connect STREAM --listen SOCKET [--connect-timeout SEC]\n"
          "         [--log-level LEVEL]\n"
          "Bridges every connection accepted on SOCKET to the agent of a VM, as one channel\n"
          "of the byte stream at STREAM (a QEMU chardev socket on a virtio-serial port).\n",
          status ? stderr : stdout);
    exit(status);
}

static void parse_args(int argc, char **argv, struct opts *o) {
    static const struct option opts[] = {{"connect", required_argument, NULL, 'c'},
                                         {"listen", required_argument, NULL, 'l'},
                                         {"connect-timeout", required_argument, NULL, 't'},
                                         {"log-level", required_argument, NULL, 'L'},
                                         {"help", no_argument, NULL, 'h'},
                                         {0}};
    int c;
    enum log_level level;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'c': o->connect = optarg; break;
        case 'l': o->listen = optarg; break;
        case 't': o->timeout_s = atoi(optarg); break;
        case 'L':
            if (log_parse_level(optarg, &level) < 0)
                usage(2);
            log_set_level(level);
            break;
        case 'h': usage(0);
        default: usage(2);
        }
    }
    if (optind < argc || !o->connect || !o->listen || o->timeout_s < 0)
        usage(2);
}

/* QEMU creates its chardev socket a little after it starts: retry what says "not yet". */
static int connect_stream(const char *path, int timeout_s) {
    double deadline = mono_ms() + timeout_s * 1000.0;
    for (;;) {
        int fd = unix_connect(path);
        if (fd >= 0 || (fd != -ENOENT && fd != -ECONNREFUSED) || mono_ms() >= deadline)
            return fd;
        nanosleep(&(struct timespec){.tv_nsec = RETRY_MS * 1000000L}, NULL);
    }
}

static void catch_signals(void) {
    struct sigaction sa = {.sa_handler = on_stop};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

int main(int argc, char **argv) {
    struct opts o = {.timeout_s = 60};
    parse_args(argc, argv, &o);
    listen_path = o.listen;
    catch_signals();
    int lfd = unix_listen(o.listen);
    if (lfd < 0) {
        log_error("vmux: cannot listen on %s: %s", o.listen, strerror(-lfd));
        return 1;
    }
    int stream = connect_stream(o.connect, o.timeout_s);
    int r = stream;
    if (stream < 0) {
        log_error("vmux: cannot connect to %s: %s", o.connect, strerror(-stream));
    } else {
        struct vmux *m = vmux_new(
            &(struct vmux_config){.role = VMUX_HOST, .stream = stream, .listener = lfd});
        r = vmux_run(m);
        vmux_free(m);
        close(stream);
    }
    unlink(o.listen);
    close(lfd);
    return r < 0 ? 1 : 0;
}
