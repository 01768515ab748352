#include "frames.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

void frame_demux_init(struct frame_demux *d, int dest0, int dest1, int dest2) {
    *d = (struct frame_demux){.in = STRBUF_INIT, .dest = {dest0, dest1, dest2}};
}

void frame_demux_free(struct frame_demux *d) { strbuf_free(&d->in); }

int frame_demux_fill(struct frame_demux *d, int sock) {
    /* Never buffer more than one frame's worth: this is the flow control towards the
     * sender, whose writes block once the socket buffer is full. */
    size_t want = AGENT_FRAME_MAX + sizeof(struct agent_frame);
    if (d->in.len >= want)
        return -EAGAIN;
    strbuf_reserve(&d->in, want - d->in.len);
    ssize_t n = read(sock, d->in.data + d->in.len, want - d->in.len);
    if (n < 0)
        return errno == EINTR ? -EAGAIN : -errno;
    d->in.len += (size_t)n;
    return (int)n;
}

/* At a frame boundary: parses a frame or reply header at the front. */
static enum frame_event demux_header(struct frame_demux *d, size_t *pos) {
    const char *p = d->in.data + *pos;
    size_t avail = d->in.len - *pos;
    uint32_t first;
    if (avail < sizeof(struct agent_frame))
        return FRAME_NEED_MORE;
    memcpy(&first, p, sizeof(first));
    if (first == AGENT_MAGIC) {
        if (avail < sizeof(struct agent_reply))
            return FRAME_NEED_MORE;
        memcpy(&d->reply, p, sizeof(d->reply));
        *pos += sizeof(d->reply);
        return FRAME_REPLY;
    }
    struct agent_frame f;
    memcpy(&f, p, sizeof(f));
    if (f.stream > 2 || d->dest[f.stream] == -1 || f.len > AGENT_FRAME_MAX)
        return FRAME_BAD;
    *pos += sizeof(f);
    if (f.len == 0) {
        d->ev_stream = f.stream;
        return FRAME_EOF;
    }
    d->in_payload = true;
    d->stream = f.stream;
    d->left = f.len;
    return FRAME_NEED_MORE; /* means "continue" inside demux_step */
}

/* Writes payload at *pos to the current stream's destination. */
static enum frame_event demux_payload(struct frame_demux *d, size_t *pos) {
    size_t n = d->in.len - *pos;
    if (n > d->left)
        n = d->left;
    if (n == 0)
        return FRAME_NEED_MORE;
    ssize_t w = (ssize_t)n;
    if (d->dest[d->stream] >= 0)
        w = write(d->dest[d->stream], d->in.data + *pos, n);
    if (w < 0 && (errno == EAGAIN || errno == EINTR))
        return FRAME_BLOCKED;
    if (w < 0) /* EPIPE and friends: nobody reads this stream any more */
        d->dest[d->stream] = -2, w = (ssize_t)n;
    *pos += (size_t)w;
    d->left -= (uint32_t)w;
    if (d->left == 0)
        d->in_payload = false;
    return (size_t)w < n ? FRAME_BLOCKED : FRAME_NEED_MORE;
}

enum frame_event frame_demux_run(struct frame_demux *d) {
    size_t pos = 0;
    enum frame_event ev = FRAME_NEED_MORE;
    while (pos < d->in.len) {
        size_t before = pos;
        ev = d->in_payload ? demux_payload(d, &pos) : demux_header(d, &pos);
        if (ev != FRAME_NEED_MORE || pos == before)
            break;
    }
    strbuf_consume(&d->in, pos);
    return ev;
}

int frame_mux_read(struct strbuf *out, uint32_t stream, int fd) {
    struct agent_frame f = {.stream = stream};
    strbuf_reserve(out, sizeof(f) + AGENT_FRAME_MAX);
    char *payload = out->data + out->len + sizeof(f);
    ssize_t n = read(fd, payload, AGENT_FRAME_MAX);
    if (n < 0)
        return errno == EINTR ? -EAGAIN : -errno;
    f.len = (uint32_t)n;
    memcpy(out->data + out->len, &f, sizeof(f));
    out->len += sizeof(f) + (size_t)n;
    return (int)n;
}

void frame_mux_eof(struct strbuf *out, uint32_t stream) {
    struct agent_frame f = {.stream = stream, .len = 0};
    strbuf_append(out, &f, sizeof(f));
}

int frame_flush(struct strbuf *out, int sock) {
    while (out->len > 0) {
        ssize_t n = send(sock, out->data, out->len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        strbuf_consume(out, (size_t)n);
    }
    return 0;
}
