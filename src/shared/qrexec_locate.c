#include "qrexec_locate.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client.h"
#include "unix_socket.h"

#define ROUTER_SUFFIX ".qrexec.sock"

static char mismatch[1024]; /* why the last qrexec_router_connect gave -EXDEV */

int qrexec_router_path_for(const char *admin_sock, char *buf, size_t size) {
    size_t len = strlen(admin_sock);
    if (len >= 5 && strcmp(admin_sock + len - 5, ".sock") == 0)
        len -= 5;
    int n = snprintf(buf, size, "%.*s" ROUTER_SUFFIX, (int)len, admin_sock);
    return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

static const char *override_path(void) {
    const char *env = getenv("DISPENSER_QREXEC_SOCKET");
    return env && *env ? env : NULL;
}

const char *qrexec_socket_path(void) {
    static char derived[4096]; /* a path too long for a socket: connecting reports it */
    if (override_path())
        return override_path();
    if (qrexec_router_path_for(client_socket_path(), derived, sizeof(derived)) < 0)
        return "(QUBESD_SOCKET too long)";
    return derived;
}

static pid_t peer_pid(int fd) {
    struct ucred cred;
    socklen_t len = sizeof(cred);
    return getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 ? -1 : cred.pid;
}

/* The pid that listens on the selected daemon's Admin API socket. The connection sends
 * nothing: the daemon drops such a probe without a word. */
static pid_t daemon_pid(int *err) {
    int fd = unix_connect(client_socket_path());
    if (fd < 0) {
        *err = -fd;
        return -1;
    }
    pid_t pid = peer_pid(fd);
    *err = errno;
    close(fd);
    return pid;
}

/* An overriding router must be the selected daemon's: else a call meant for one daemon
 * runs in qubes (or disposables of templates) of another. */
static int check_same_daemon(int router_fd) {
    int err = 0;
    pid_t router = peer_pid(router_fd), daemon = daemon_pid(&err);
    if (daemon < 0) {
        snprintf(mismatch, sizeof(mismatch),
                 "cannot check that it belongs to the dispenserd "
                 "at %s (QUBESD_SOCKET): %s",
                 client_socket_path(), strerror(err));
        return -EXDEV;
    }
    if (router != daemon) {
        snprintf(mismatch, sizeof(mismatch),
                 "it belongs to another dispenserd (pid %d) than "
                 "the one at %s (QUBESD_SOCKET, pid %d); unset DISPENSER_QREXEC_SOCKET to use "
                 "that daemon's own router",
                 (int)router, client_socket_path(), (int)daemon);
        return -EXDEV;
    }
    return 0;
}

int qrexec_router_connect(void) {
    int fd = unix_connect(qrexec_socket_path());
    if (fd < 0 || !override_path())
        return fd;
    int r = check_same_daemon(fd);
    if (r < 0) {
        close(fd);
        return r;
    }
    return fd;
}

const char *qrexec_connect_strerror(int r) {
    return r == -EXDEV && *mismatch ? mismatch : strerror(-r);
}
