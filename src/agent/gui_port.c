/* The guest end of a VM's window channel (docs/gui.md): `dispenser-agent --listen PATH
 * --vmux PORT --gui-port DEVICE`, as a GUI VM's init runs it. The agent binds the qube's
 * GUI socket (GUI_PORT_SOCKET) and treats it as a container engine's DISPENSER_GUI_FD:
 * its xpra server takes it over (gui.c). A child bridges the virtio-serial port
 * dispenser.gui to that socket: when the host's GUI daemon connects to the port's host
 * end (QEMU's socket) and sends its first bytes, the bridge connects to the socket and
 * copies both ways until the host goes (the port reads EOF: no host end) or xpra closes;
 * then the next host connection gets a connection of its own. One connection at a time,
 * as QEMU's socket has one client: no multiplexing is needed for one GUI daemon. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "log.h"
#include "unix_socket.h"

#define NO_HOST_MS 100 /* a port without a host end reads EOF at once: poll it slowly */
#define CONNECT_TRIES 50
#define BUF_SIZE 65536

static void sleep_ms(long ms) {
    nanosleep(&(struct timespec){.tv_sec = ms / 1000, .tv_nsec = ms % 1000 * 1000000L}, NULL);
}

/* All of it, waiting while fd (non-blocking or not) is full; false when fd is gone. */
static bool write_all(int fd, const char *p, size_t len) {
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EAGAIN) {
            poll(&(struct pollfd){.fd = fd, .events = POLLOUT}, 1, -1);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        p += n;
        len -= (size_t)n;
    }
    return true;
}

/* The socket xpra listens on; its backlog holds the connection until xpra accepts. */
static int connect_gui(const char *path) {
    for (int i = 0; i < CONNECT_TRIES; i++) {
        int fd = unix_connect(path);
        if (fd >= 0 || (fd != -ENOENT && fd != -ECONNREFUSED))
            return fd;
        sleep_ms(NO_HOST_MS);
    }
    return -ECONNREFUSED;
}

/* Copies between the port and the connection until one side ends. True when the host
 * went (the port read EOF); false when the qube's side did. */
static bool relay(int port, int conn) {
    char buf[BUF_SIZE];
    struct pollfd p[2] = {{.fd = port, .events = POLLIN}, {.fd = conn, .events = POLLIN}};
    for (;;) {
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            return false;
        }
        for (int i = 0; i < 2; i++) {
            if (!p[i].revents)
                continue;
            ssize_t n = read(p[i].fd, buf, sizeof(buf));
            if (n < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            if (n <= 0)
                return i == 0;
            if (!write_all(p[1 - i].fd, buf, (size_t)n))
                return i == 1;
        }
    }
}

/* What a host sends after the qube's side closed: dropped until that host goes. */
static void drain_until_host_goes(int port) {
    char buf[BUF_SIZE];
    for (;;) {
        poll(&(struct pollfd){.fd = port, .events = POLLIN}, 1, -1);
        ssize_t n = read(port, buf, sizeof(buf));
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            return;
    }
}

static int gui_port_main(const char *device, const char *path) {
    signal(SIGPIPE, SIG_IGN);
    int port = open(device, O_RDWR | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (port < 0) {
        log_error("gui-port: cannot open %s: %s", device, strerror(errno));
        return 1;
    }
    char first[BUF_SIZE];
    for (;;) {
        poll(&(struct pollfd){.fd = port, .events = POLLIN}, 1, NO_HOST_MS);
        ssize_t n = read(port, first, sizeof(first));
        if (n <= 0) { /* no host end yet (EOF), or nothing sent yet */
            if (n == 0)
                sleep_ms(NO_HOST_MS);
            continue;
        }
        int conn = connect_gui(path);
        if (conn < 0) {
            log_error("gui-port: cannot connect to %s: %s", path, strerror(-conn));
            drain_until_host_goes(port);
            continue;
        }
        bool host_went = write_all(conn, first, (size_t)n) ? relay(port, conn) : false;
        close(conn);
        if (!host_went)
            drain_until_host_goes(port);
    }
}

pid_t gui_port_begin(const char *device, int keep_fds[2]) {
    int fd = unix_listen(GUI_PORT_SOCKET);
    char env[16];
    if (fd < 0) {
        agent_log("--gui-port: cannot listen on %s: %s", GUI_PORT_SOCKET, strerror(-fd));
        return 0;
    }
    /* xpra takes it as a socket-activated listener: blocking, as systemd passes them */
    if (fcntl(fd, F_SETFL, 0) < 0 || fcntl(fd, F_SETFD, 0) < 0)
        return close(fd), 0;
    snprintf(env, sizeof(env), "%d", fd);
    setenv("DISPENSER_GUI_FD", env, 1); /* gui_agent_begin takes it from there */
    pid_t pid = fork();
    if (pid < 0)
        agent_log("fork for --gui-port: %m");
    if (pid != 0)
        return pid < 0 ? 0 : pid;
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    close(fd);
    close(keep_fds[0]);
    close(keep_fds[1]);
    _exit(gui_port_main(device, GUI_PORT_SOCKET));
}
