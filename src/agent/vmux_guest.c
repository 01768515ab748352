/* dispenser-agent --vmux DEVICE: the guest end of the VM's agent stream (vmux.h). Run by
 * the VM's init beside the agent; for each channel the host opens it connects to the
 * agent's own socket and bridges, so the agent keeps one request per connection.
 * DEVICE is the virtio-serial port; a Unix socket path there stands in for it in tests. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "log.h"
#include "monoclock.h"
#include "unix_socket.h"
#include "vmux.h"

#define PORT_IDLE_MS 100
#define DRAIN_MS 500
#define AGENT_RETRY_MS 20

static volatile sig_atomic_t draining;

static void on_term(int sig) { draining = 1; }

static void sleep_ms(long ms) {
    nanosleep(&(struct timespec){.tv_sec = ms / 1000, .tv_nsec = ms % 1000 * 1000000L}, NULL);
}

/* The port (a character device), or a connected socket where DEVICE is one. */
static int open_stream(const char *device, bool *is_port) {
    struct stat st;
    if (stat(device, &st) < 0)
        return -errno;
    *is_port = !S_ISSOCK(st.st_mode);
    if (!*is_port)
        return unix_connect(device);
    int fd = open(device, O_RDWR | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    return fd < 0 ? -errno : fd;
}

static bool term_pending(void) {
    sigset_t pending;
    return draining || (sigpending(&pending) == 0 && sigismember(&pending, SIGTERM));
}

/* Opening the port is what lets QEMU pass the host's bytes on: until the agent listens,
 * the host's OPENs wait in the stream instead of being refused. False on SIGTERM. */
static bool wait_for_agent(const char *agent_socket) {
    bool said = false;
    for (;;) {
        if (term_pending())
            return false;
        int fd = unix_connect(agent_socket);
        if (fd >= 0)
            close(fd);
        if (fd >= 0 || (fd != -ENOENT && fd != -ECONNREFUSED))
            return true;
        if (!said)
            log_info("vmux: waiting for the agent at %s", agent_socket);
        said = true;
        sleep_ms(AGENT_RETRY_MS);
    }
}

/* Until the stream ends; after SIGTERM (the VM powering off, or the agent leaving),
 * until what the agent said last (its reply to a shutdown request) is on the stream. */
static int run(struct vmux *m) {
    int r, steps = 0;
    double deadline = 0;
    while ((r = vmux_step(m, draining ? 50 : -1)) > 0) {
        if (!draining)
            continue;
        if (!deadline)
            deadline = mono_ms() + DRAIN_MS;
        if ((++steps > 2 && vmux_buffered(m) == 0) || mono_ms() > deadline)
            return 0;
    }
    return r;
}

int vmux_guest_main(const char *device, const char *agent_socket) {
    /* SIGTERM comes in only while waiting: it cannot slip in between the check of
     * `draining` and the wait. (A child of the agent inherits "all blocked".) */
    sigset_t term, waiting;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    sigprocmask(SIG_SETMASK, &term, NULL);
    sigemptyset(&waiting);
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_term};
    sigaction(SIGTERM, &sa, NULL);
    if (!wait_for_agent(agent_socket))
        return 0;
    for (;;) {
        bool is_port = false;
        int fd = open_stream(device, &is_port);
        if (fd < 0) {
            log_error("vmux: cannot open %s: %s", device, strerror(-fd));
            return 1;
        }
        struct vmux *m = vmux_new(&(struct vmux_config){
            .role = VMUX_GUEST, .stream = fd, .target = agent_socket, .wait_mask = &waiting});
        int r = run(m);
        vmux_free(m);
        close(fd);
        if (!is_port || draining)
            return r < 0 ? 1 : 0;
        /* A port reads EOF while no host end is connected (not yet, or a restarted
         * dispenser-vmux): every channel went with it; wait for the next host end. */
        sleep_ms(PORT_IDLE_MS);
    }
}
