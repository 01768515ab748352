/* libFuzzer harness for vmux (src/shared/vmux.c) reading what the other end of the
 * stream sends: the first byte picks the end under test (even: the host end, with two
 * connected callers on channels 1 and 2, reading what a hostile guest sends; odd: the
 * guest end, connecting to a local socket for each OPEN), the rest is the stream. The
 * end must neither crash nor hold more than its bounds, whatever comes. */
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "vmux.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[] = "/tmp/dispenser-fuzz-vmux-XXXXXX";
static char host_path[64], target_path[64];
static int host_listener = -1, target_listener = -1;

static int listen_at(const char *path) {
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 64) < 0)
        abort();
    return fd;
}

static int connect_to(const char *path) {
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        abort();
    return fd;
}

static void cleanup(void) {
    unlink(host_path);
    unlink(target_path);
    rmdir(dir);
}

static void setup_once(void) {
    if (host_listener >= 0)
        return;
    log_silence(true); /* refusals of bad frames are what most inputs get here */
    if (!mkdtemp(dir))
        abort();
    snprintf(host_path, sizeof(host_path), "%s/host.sock", dir);
    snprintf(target_path, sizeof(target_path), "%s/agent.sock", dir);
    host_listener = listen_at(host_path);
    target_listener = listen_at(target_path);
    atexit(cleanup);
}

/* Whatever the input, an end holds at most: its input buffer, a window per channel, and
 * its queue to the stream (below VMUX_OUT_MAX when read, plus what one step adds). */
static void check_bounds(const struct vmux *m) {
    size_t bound = VMUX_HDR_SIZE + VMUX_MAX_PAYLOAD + vmux_channel_count(m) * (size_t)VMUX_WINDOW +
                   VMUX_OUT_MAX + 2 * (VMUX_HDR_SIZE + VMUX_MAX_PAYLOAD);
    if (vmux_buffered(m) > bound)
        abort();
}

static void drain_accepts(int listener) {
    int fd;
    while ((fd = accept(listener, NULL, NULL)) >= 0)
        close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    setup_once();
    if (size < 1)
        return 0;
    bool host = !(data[0] & 1);
    int sp[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0)
        abort();
    int callers[2] = {-1, -1};
    struct vmux *m = vmux_new(&(struct vmux_config){.role = host ? VMUX_HOST : VMUX_GUEST,
                                                    .stream = sp[0],
                                                    .listener = host_listener,
                                                    .target = target_path});
    int r = 1;
    if (host) { /* two callers, so that the stream's frames find channels 1 and 2 */
        callers[0] = connect_to(host_path);
        callers[1] = connect_to(host_path);
        for (int i = 0; i < 4 && r == 1; i++)
            r = vmux_step(m, 0);
        if (send(callers[0], "request", 7, 0) != 7)
            abort();
    }
    if (write(sp[1], data + 1, size - 1) != (ssize_t)(size - 1))
        abort();
    shutdown(sp[1], SHUT_WR);
    for (int i = 0; i < 64 && r == 1; i++) {
        r = vmux_step(m, 0);
        check_bounds(m);
    }
    vmux_free(m);
    for (int i = 0; i < 2; i++)
        if (callers[i] >= 0)
            close(callers[i]);
    close(sp[0]);
    close(sp[1]);
    drain_accepts(host_listener);
    drain_accepts(target_listener);
    return 0;
}
