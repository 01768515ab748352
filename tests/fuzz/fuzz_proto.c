/* libFuzzer harness for the wire formats a qube can write to the host (and the host to a
 * qube's agent): the agent request body and the qrexec call body (NUL-separated fields),
 * the service+argument split, and the copy path's framing (agent_frame records and the
 * agent_reply at the end) as the host reads them from an agent. Every decoded field must
 * lie inside the input and end with a NUL; the frame reader must end in a verdict. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent_proto.h"
#include "frames.h"
#include "log.h"
#include "qrexec_proto.h"
#include "strbuf.h"

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

/* One socket pair for the whole run (making one per input cost more than the parsing):
 * the input is written into it, read through the frame reader as an agent's answer on
 * the copy path, and whatever the reader left unread is drained before the next input.
 * Its writing end stays open, so the reader meets EAGAIN where a closed agent would
 * give EOF: both end the harness's loop the same way (fill <= 0). */
static int sv[2] = {-1, -1};

static void open_pair(void) {
    if (sv[0] >= 0)
        return;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0)
        abort();
    int buf_size = 1 << 20;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &buf_size, sizeof(buf_size));
    setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &buf_size, sizeof(buf_size));
}

static void drain(int fd) {
    char junk[4096];
    while (read(fd, junk, sizeof(junk)) > 0)
        ;
}

static void frames(const uint8_t *data, size_t size) {
    open_pair();
    size_t off = 0;
    while (off < size) {
        ssize_t n = write(sv[0], data + off, size - off);
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    /* The reader's buffer (a frame's worth, 128 KiB) is kept from one input to the
     * next: ASan maps and unmaps an allocation that large every time, which took most
     * of the run's time. Everything else starts afresh. */
    static struct strbuf kept = STRBUF_INIT;
    struct frame_demux d;
    frame_demux_init(&d, -2, -2, -2); /* every stream's payload is discarded */
    d.in = kept;
    d.in.len = 0;
    for (int rounds = 0; rounds < 100000; rounds++) {
        enum frame_event ev = frame_demux_run(&d);
        if (ev == FRAME_BAD || ev == FRAME_REPLY || ev == FRAME_BLOCKED)
            break;
        if (ev == FRAME_NEED_MORE && frame_demux_fill(&d, sv[1]) <= 0)
            break;
    }
    kept = d.in;
    drain(sv[1]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    log_silence(true);
    bodies(data, size);
    frames(data, size);
    return 0;
}
