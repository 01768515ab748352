/* libFuzzer harness for the wire formats a qube can write to the host (and the host to a
 * qube's agent): the agent request body and the qrexec call body (NUL-separated fields),
 * the service+argument split, and the copy path's framing (agent_frame records and the
 * agent_reply at the end) as the host reads them from an agent. Every decoded field must
 * lie inside the input and end with a NUL; the frame reader must end in a verdict. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent_proto.h"
#include "frames.h"
#include "log.h"
#include "qrexec_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_field(const char *f, const char *buf, size_t len) {
    if (!f)
        return;
    if (f < buf || f >= buf + len || !memchr(f, '\0', (size_t)(buf + len - f)))
        abort();
}

static void bodies(const uint8_t *data, size_t size) {
    char *buf = malloc(size + 1);
    memcpy(buf, data, size);
    struct agent_request_body a;
    if (agent_body_decode(buf, size, &a) == 0) {
        const char *fields[] = {a.service, a.argument, a.source, a.target, a.user, a.command};
        for (size_t i = 0; i < 6; i++)
            check_field(fields[i], buf, size);
    }
    memcpy(buf, data, size);
    struct qrexec_call_body q;
    if (qrexec_body_decode(buf, size, &q) == 0) {
        const char *fields[] = {q.target, q.service, q.user, q.command};
        for (size_t i = 0; i < 4; i++)
            check_field(fields[i], buf, size);
    }
    memcpy(buf, data, size);
    buf[size] = '\0';
    char service[256], arg[256];
    if (qrexec_split_service(buf, service, sizeof(service), arg, sizeof(arg)) == 0 &&
        (!memchr(service, '\0', sizeof(service)) || !memchr(arg, '\0', sizeof(arg))))
        abort();
    free(buf);
}

/* The bytes as an agent's answer on the copy path, read through a socket pair. */
static void frames(const uint8_t *data, size_t size) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return;
    int buf_size = 1 << 20;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &buf_size, sizeof(buf_size));
    setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &buf_size, sizeof(buf_size));
    size_t off = 0;
    while (off < size) {
        ssize_t n = write(sv[0], data + off, size - off);
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    close(sv[0]);
    fcntl(sv[1], F_SETFL, O_NONBLOCK);
    struct frame_demux d;
    frame_demux_init(&d, -2, -2, -2); /* every stream's payload is discarded */
    for (int rounds = 0; rounds < 100000; rounds++) {
        enum frame_event ev = frame_demux_run(&d);
        if (ev == FRAME_BAD || ev == FRAME_REPLY || ev == FRAME_BLOCKED)
            break;
        if (ev == FRAME_NEED_MORE && frame_demux_fill(&d, sv[1]) <= 0)
            break;
    }
    frame_demux_free(&d);
    close(sv[1]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    log_silence(true);
    bodies(data, size);
    frames(data, size);
    return 0;
}
