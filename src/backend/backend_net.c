#include "backend_net.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "macro.h"
#include "strbuf.h"

/* The child: into the namespace, stdin from the pipe, stderr to the report pipe. */
static _Noreturn void exec_in_netns(int netns_fd, int in, int errfd, int keep_fd,
                                    char *const argv[]) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (setns(netns_fd, CLONE_NEWNET) < 0) {
        dprintf(errfd, "setns: %s", strerror(errno));
        _exit(126);
    }
    if (keep_fd >= 0)
        fcntl(keep_fd, F_SETFD, 0); /* named by /proc/self/fd/N in argv or input */
    int null = open("/dev/null", O_WRONLY);
    if (dup2(in, 0) < 0 || dup2(null, 1) < 0 || dup2(errfd, 2) < 0)
        _exit(126);
    execvp(argv[0], argv);
    dprintf(2, "cannot run %s: %s", argv[0], strerror(errno));
    _exit(127);
}

static void read_error(int fd, char *buf, size_t size) {
    size_t len = 0;
    ssize_t n;
    while (len + 1 < size && (n = read(fd, buf + len, size - 1 - len)) > 0)
        len += (size_t)n;
    buf[len] = '\0';
    for (char *p = buf; *p; p++) /* one line for the log and the caller */
        if (*p == '\n')
            *p = ' ';
}

static int exec_keeping(int netns_fd, char *const argv[], const char *input, int keep_fd,
                        struct backend_why *why) {
    int in[2], err[2];
    if (pipe2(in, O_CLOEXEC) < 0)
        return backend_fail(why, -errno, "pipe: %s", strerror(errno));
    if (pipe2(err, O_CLOEXEC) < 0) {
        close(in[0]);
        close(in[1]);
        return backend_fail(why, -errno, "pipe: %s", strerror(errno));
    }
    pid_t pid = fork();
    if (pid == 0)
        exec_in_netns(netns_fd, in[0], err[1], keep_fd, argv);
    close(in[0]);
    close(err[1]);
    /* the input is small (a few rules): it fits the pipe, no deadlock */
    size_t len = input ? strlen(input) : 0;
    bool written = pid > 0 && (len == 0 || write(in[1], input, len) == (ssize_t)len);
    close(in[1]);
    char msg[200];
    read_error(err[0], msg, sizeof(msg));
    close(err[0]);
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) < 0)
        return backend_fail(why, -EIO, "cannot run %s: %s", argv[0], strerror(errno));
    if (!written || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return backend_fail(why, -EIO, "%s failed: %s", argv[0], *msg ? msg : "no reason given");
    return 0;
}

int backend_netns_exec(int netns_fd, char *const argv[], const char *input,
                       struct backend_why *why) {
    return exec_keeping(netns_fd, argv, input, -1, why);
}

int backend_nft_apply(int netns_fd, const char *script, struct backend_why *why) {
    char *argv[] = {"nft", "-f", "-", NULL};
    return backend_netns_exec(netns_fd, argv, script, why);
}

int backend_ip_batch(int netns_fd, const char *commands, struct backend_why *why) {
    char *argv[] = {"ip", "-batch", "-", NULL};
    return backend_netns_exec(netns_fd, argv, commands, why);
}

int backend_net_veth_link(int qube_netns, const struct backend_net *net, struct backend_why *why) {
    _cleanup_strbuf_ struct strbuf cmd = STRBUF_INIT;
    /* made in the qube's namespace, the peer sent to the netvm's: ip opens the path */
    strbuf_printf(&cmd,
                  "link add eth0 address %s type veth peer name %s netns /proc/self/fd/%d\n"
                  "addr add %s/32 dev eth0\n"
                  "link set eth0 up\n"
                  "route add %s/32 dev eth0 scope link\n"
                  "route add default via %s dev eth0\n",
                  net->mac, net->netvm_ifname, net->netvm_netns, net->ip, net->gateway,
                  net->gateway);
    char *argv[] = {"ip", "-batch", "-", NULL};
    int r = exec_keeping(qube_netns, argv, strbuf_str(&cmd), net->netvm_netns, why);
    if (r < 0) {
        backend_net_veth_unlink(qube_netns, NULL);
        return r;
    }
    strbuf_reset(&cmd);
    strbuf_printf(&cmd,
                  "addr add %s/32 dev %s\n"
                  "link set %s up\n"
                  "route add %s/32 dev %s scope link\n",
                  net->gateway, net->netvm_ifname, net->netvm_ifname, net->ip, net->netvm_ifname);
    r = backend_ip_batch(net->netvm_netns, strbuf_str(&cmd), why);
    if (r < 0)
        backend_net_veth_unlink(qube_netns, NULL);
    return r;
}

int backend_net_veth_unlink(int qube_netns, struct backend_why *why) {
    char *argv[] = {"ip", "link", "del", "eth0", NULL};
    char *probe[] = {"ip", "link", "show", "eth0", NULL};
    if (backend_netns_exec(qube_netns, probe, NULL, NULL) < 0)
        return 0; /* no link */
    return backend_netns_exec(qube_netns, argv, NULL, why);
}

/* /proc/sys/net shows the namespace of whoever opens it: the daemon steps in to open
 * the file and back out at once (it has no threads that could notice). */
int backend_netns_sysctl(int netns_fd, const char *key, const char *value,
                         struct backend_why *why) {
    char path[256];
    snprintf(path, sizeof(path), "/proc/sys/%s", key);
    _cleanup_close_ int home = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    if (home < 0 || setns(netns_fd, CLONE_NEWNET) < 0)
        return backend_fail(why, -errno, "cannot enter the namespace: %s", strerror(errno));
    _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
    int saved = errno;
    if (setns(home, CLONE_NEWNET) < 0)
        abort(); /* the daemon would go on in a qube's namespace: never */
    if (fd < 0)
        return backend_fail(why, -saved, "cannot open %s: %s", path, strerror(saved));
    size_t len = strlen(value);
    if (write(fd, value, len) != (ssize_t)len)
        return backend_fail(why, -errno, "cannot write %s: %s", path, strerror(errno));
    return 0;
}
