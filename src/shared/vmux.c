/* vmux: the frame codec, per-channel flow control and the poll() loop (vmux.h). */
#include "vmux.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "fdpass.h"
#include "log.h"
#include "strbuf.h"

/* ---- frame codec ---- */

static void put_le32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)v, p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16), p[3] = (unsigned char)(v >> 24);
}

static uint32_t get_le32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

void vmux_hdr_encode(unsigned char out[VMUX_HDR_SIZE], const struct vmux_hdr *h) {
    put_le32(out, h->channel);
    out[4] = (unsigned char)h->type, out[5] = (unsigned char)(h->type >> 8);
    out[6] = (unsigned char)h->reserved, out[7] = (unsigned char)(h->reserved >> 8);
    put_le32(out + 8, h->len);
}

void vmux_hdr_decode(const unsigned char in[VMUX_HDR_SIZE], struct vmux_hdr *h) {
    h->channel = get_le32(in);
    h->type = (uint16_t)(in[4] | in[5] << 8);
    h->reserved = (uint16_t)(in[6] | in[7] << 8);
    h->len = get_le32(in + 8);
}

int vmux_hdr_check(const struct vmux_hdr *h) {
    if (h->channel == 0 || h->reserved != 0)
        return -EPROTO;
    switch (h->type) {
    case VMUX_DATA: return h->len >= 1 && h->len <= VMUX_MAX_PAYLOAD ? 0 : -EPROTO;
    case VMUX_CREDIT: return h->len == 4 ? 0 : -EPROTO;
    case VMUX_OPEN:
    case VMUX_EOF:
    case VMUX_CLOSE: return h->len == 0 ? 0 : -EPROTO;
    default: return -EPROTO;
    }
}

long vmux_frame_parse(const void *buf, size_t len, struct vmux_hdr *h) {
    if (len < VMUX_HDR_SIZE)
        return 0;
    vmux_hdr_decode(buf, h);
    if (vmux_hdr_check(h) < 0)
        return -EPROTO;
    size_t total = VMUX_HDR_SIZE + (size_t)h->len;
    return len < total ? 0 : (long)total;
}

void vmux_frame_put(void *out, uint32_t channel, uint16_t type, const void *payload, uint32_t len) {
    unsigned char hdr[VMUX_HDR_SIZE];
    vmux_hdr_encode(hdr, &(struct vmux_hdr){.channel = channel, .type = type, .len = len});
    strbuf_append(out, hdr, sizeof(hdr));
    strbuf_append(out, payload, len);
}

/* ---- flow control ---- */

void vmux_flow_init(struct vmux_flow *f) { *f = (struct vmux_flow){.send_credit = VMUX_WINDOW}; }

uint32_t vmux_flow_sendable(const struct vmux_flow *f, size_t want) {
    size_t n = want < VMUX_MAX_PAYLOAD ? want : VMUX_MAX_PAYLOAD;
    return (uint32_t)(n < f->send_credit ? n : f->send_credit);
}

void vmux_flow_sent(struct vmux_flow *f, uint32_t n) { f->send_credit -= n; }

int vmux_flow_received(struct vmux_flow *f, uint32_t n) {
    if (n > VMUX_WINDOW - f->recv_held)
        return -EPROTO;
    f->recv_held += n;
    return 0;
}

uint32_t vmux_flow_consumed(struct vmux_flow *f, uint32_t n) {
    f->consumed += n;
    if (f->consumed < VMUX_CREDIT_BATCH)
        return 0;
    uint32_t grant = f->consumed;
    f->consumed = 0;
    f->recv_held -= grant;
    return grant;
}

int vmux_flow_granted(struct vmux_flow *f, uint32_t n) {
    if (n > VMUX_WINDOW - f->send_credit)
        return -EPROTO;
    f->send_credit += n;
    return 0;
}

/* ---- the multiplexer ---- */

struct vmux_chan {
    uint32_t id;
    int fd;                 /* the local connection */
    struct strbuf to_local; /* DATA received, not yet written to fd (<= window) */
    struct vmux_flow flow;
    bool local_eof;   /* fd read EOF; our EOF frame is queued */
    bool peer_eof;    /* EOF received: shut fd's write side once to_local is out */
    bool wr_shut;     /* that shutdown is done */
    bool wr_dead;     /* fd no longer takes data (EPIPE): DATA is discarded */
    bool peer_closed; /* CLOSE received: close fd once to_local is out */
    bool fds_logged;
    bool dead; /* freed at the end of the step */
};

struct vmux {
    struct vmux_config cfg;
    struct strbuf out; /* frames queued for the stream */
    unsigned char in[VMUX_HDR_SIZE + VMUX_MAX_PAYLOAD];
    size_t in_len;
    bool stream_eof;
    bool stream_is_socket; /* else a character device (virtio port): write(), not send() */
    uint32_t last_id;      /* host: last channel opened; guest: last OPEN seen */
    struct vmux_chan **chans;
    size_t nchans, cap;
    struct pollfd *pfd; /* [0] stream, [1] listener, [2..] channels */
    size_t rotate;      /* first channel to read from: fairness under a full queue */
};

struct vmux *vmux_new(const struct vmux_config *cfg) {
    struct vmux *m = xcalloc(1, sizeof(*m));
    m->cfg = *cfg;
    m->out = (struct strbuf)STRBUF_INIT;
    struct stat st;
    m->stream_is_socket = fstat(cfg->stream, &st) == 0 && S_ISSOCK(st.st_mode);
    int flags = fcntl(cfg->stream, F_GETFL);
    if (flags >= 0)
        (void)fcntl(cfg->stream, F_SETFL, flags | O_NONBLOCK);
    return m;
}

size_t vmux_channel_count(const struct vmux *m) {
    size_t n = 0;
    for (size_t i = 0; i < m->nchans; i++)
        n += !m->chans[i]->dead;
    return n;
}

size_t vmux_buffered(const struct vmux *m) {
    size_t n = m->out.len + m->in_len;
    for (size_t i = 0; i < m->nchans; i++)
        n += m->chans[i]->to_local.len;
    return n;
}

static struct vmux_chan *chan_find(struct vmux *m, uint32_t id) {
    for (size_t i = 0; i < m->nchans; i++)
        if (m->chans[i]->id == id && !m->chans[i]->dead)
            return m->chans[i];
    return NULL;
}

static struct vmux_chan *chan_add(struct vmux *m, uint32_t id, int fd) {
    if (m->nchans == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 8;
        m->chans = xrealloc(m->chans, m->cap * sizeof(*m->chans));
    }
    struct vmux_chan *c = xcalloc(1, sizeof(*c));
    *c = (struct vmux_chan){.id = id, .fd = fd, .to_local = STRBUF_INIT};
    vmux_flow_init(&c->flow);
    m->chans[m->nchans++] = c;
    return c;
}

static void put_ctl(struct vmux *m, uint32_t id, uint16_t type) {
    vmux_frame_put(&m->out, id, type, NULL, 0);
}

/* The connection is dropped; `tell` sends CLOSE (not when the peer closed first). */
static void chan_drop(struct vmux *m, struct vmux_chan *c, bool tell) {
    if (c->dead)
        return;
    if (tell)
        put_ctl(m, c->id, VMUX_CLOSE);
    close(c->fd);
    c->fd = -1;
    strbuf_free(&c->to_local);
    c->dead = true;
}

static void reap_dead(struct vmux *m) {
    size_t j = 0;
    for (size_t i = 0; i < m->nchans; i++) {
        if (m->chans[i]->dead)
            free(m->chans[i]);
        else
            m->chans[j++] = m->chans[i];
    }
    m->nchans = j;
}

void vmux_free(struct vmux *m) {
    if (!m)
        return;
    for (size_t i = 0; i < m->nchans; i++) {
        chan_drop(m, m->chans[i], false);
        free(m->chans[i]);
    }
    free(m->chans);
    free(m->pfd);
    strbuf_free(&m->out);
    free(m);
}

static void grant(struct vmux *m, struct vmux_chan *c, uint32_t n) {
    uint32_t g = vmux_flow_consumed(&c->flow, n);
    if (g) {
        unsigned char p[4] = {(unsigned char)g, (unsigned char)(g >> 8), (unsigned char)(g >> 16),
                              (unsigned char)(g >> 24)};
        vmux_frame_put(&m->out, c->id, VMUX_CREDIT, p, 4);
    }
}

/* ---- frames from the stream ---- */

/* Guest: a new connection to the target; refused with CLOSE when that fails. */
static int on_open(struct vmux *m, uint32_t id) {
    if (m->cfg.role != VMUX_GUEST || id <= m->last_id)
        return -EPROTO;
    m->last_id = id;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd = -1, err = ENAMETOOLONG;
    if (vmux_channel_count(m) >= VMUX_MAX_CHANNELS) {
        err = EMFILE;
    } else if (strlen(m->cfg.target) < sizeof(sa.sun_path)) {
        strcpy(sa.sun_path, m->cfg.target);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
            err = errno;
            close(fd);
            fd = -1;
        } else if (fd < 0) {
            err = errno;
        }
    }
    if (fd < 0) {
        log_warning("vmux: channel %u: cannot connect to %s: %s", id, m->cfg.target, strerror(err));
        put_ctl(m, id, VMUX_CLOSE);
        return 0;
    }
    chan_add(m, id, fd);
    return 0;
}

static int on_data(struct vmux *m, struct vmux_chan *c, const void *p, uint32_t len) {
    if (c->peer_eof || vmux_flow_received(&c->flow, len) < 0)
        return -EPROTO;
    if (c->wr_dead) /* nobody reads it any more: keep the sender going, as a pipe would */
        grant(m, c, len);
    else
        strbuf_append(&c->to_local, p, len);
    return 0;
}

static int on_frame(struct vmux *m, const struct vmux_hdr *h, const unsigned char *p) {
    if (h->type == VMUX_OPEN)
        return on_open(m, h->channel);
    struct vmux_chan *c = chan_find(m, h->channel);
    if (!c || c->peer_closed) /* closed on our side; the peer's frames crossed ours */
        return 0;
    switch (h->type) {
    case VMUX_DATA: return on_data(m, c, p, h->len);
    case VMUX_EOF: c->peer_eof = true; return 0;
    case VMUX_CLOSE: c->peer_closed = true; return 0;
    default: /* VMUX_CREDIT */ return vmux_flow_granted(&c->flow, get_le32(p));
    }
}

/* Reads what the stream has and handles every whole frame: 0, or -errno / -EPROTO;
 * sets stream_eof at its end. */
static int stream_read(struct vmux *m) {
    ssize_t n = read(m->cfg.stream, m->in + m->in_len, sizeof(m->in) - m->in_len);
    if (n == 0) {
        m->stream_eof = true;
        return 0;
    }
    if (n < 0 && (errno == ECONNRESET || errno == EIO)) /* the other end went away */
        m->stream_eof = true;
    if (n < 0)
        return errno == EAGAIN || errno == EINTR || m->stream_eof ? 0 : -errno;
    m->in_len += (size_t)n;
    size_t off = 0;
    for (;;) {
        struct vmux_hdr h;
        long size = vmux_frame_parse(m->in + off, m->in_len - off, &h);
        if (size < 0) {
            log_error("vmux: malformed frame (channel %u, type %u, length %u)", h.channel, h.type,
                      h.len);
            return -EPROTO;
        }
        if (size == 0)
            break;
        int r = on_frame(m, &h, m->in + off + VMUX_HDR_SIZE);
        if (r < 0) {
            log_error("vmux: channel %u: protocol violation (frame type %u)", h.channel, h.type);
            return r;
        }
        off += (size_t)size;
    }
    memmove(m->in, m->in + off, m->in_len - off);
    m->in_len -= off;
    return 0;
}

static int stream_flush(struct vmux *m) {
    while (m->out.len) {
        ssize_t n = m->stream_is_socket ? send(m->cfg.stream, m->out.data, m->out.len, MSG_NOSIGNAL)
                                        : write(m->cfg.stream, m->out.data, m->out.len);
        if (n < 0 && (errno == EPIPE || errno == ECONNRESET || errno == ENOTCONN)) {
            m->stream_eof = true; /* the other end went away */
            return 0;
        }
        if (n < 0)
            return errno == EAGAIN || errno == EINTR ? 0 : -errno;
        strbuf_consume(&m->out, (size_t)n);
    }
    return 0;
}

/* ---- local connections ---- */

static void accept_all(struct vmux *m) {
    while (vmux_channel_count(m) < VMUX_MAX_CHANNELS) {
        int fd = accept4(m->cfg.listener, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                log_warning("vmux: accept: %s", strerror(errno));
            return;
        }
        struct vmux_chan *c = chan_add(m, ++m->last_id, fd);
        put_ctl(m, c->id, VMUX_OPEN);
    }
}

/* Descriptors cannot cross the stream: close what came, say so once. */
static void drop_fds(struct vmux_chan *c, int *fds, size_t n) {
    fdpass_close(fds, n);
    if (!c->fds_logged)
        log_warning("vmux: channel %u: descriptors cannot cross the stream: closed "
                    "them, the bytes go on without them",
                    c->id);
    c->fds_logged = true;
}

/* One read from the local connection into a DATA frame (or EOF). */
static void local_read(struct vmux *m, struct vmux_chan *c) {
    uint32_t want = vmux_flow_sendable(&c->flow, VMUX_MAX_PAYLOAD);
    if (!want)
        return;
    strbuf_reserve(&m->out, VMUX_HDR_SIZE + want);
    int fds[1]; /* one is enough to tell; fdpass closes any others */
    size_t n_fds = 0;
    ssize_t n = fdpass_recv(c->fd, m->out.data + m->out.len + VMUX_HDR_SIZE, want, fds, 1, &n_fds,
                            MSG_DONTWAIT);
    if (n_fds)
        drop_fds(c, fds, n_fds);
    if (n == -EAGAIN || n == -EINTR)
        return;
    if (n < 0)
        return chan_drop(m, c, true);
    if (n == 0) {
        c->local_eof = true;
        return put_ctl(m, c->id, VMUX_EOF);
    }
    unsigned char *hdr = (unsigned char *)m->out.data + m->out.len;
    vmux_hdr_encode(hdr,
                    &(struct vmux_hdr){.channel = c->id, .type = VMUX_DATA, .len = (uint32_t)n});
    m->out.len += VMUX_HDR_SIZE + (size_t)n;
    vmux_flow_sent(&c->flow, (uint32_t)n);
}

static void local_write(struct vmux *m, struct vmux_chan *c) {
    if (!c->to_local.len)
        return;
    ssize_t n = send(c->fd, c->to_local.data, c->to_local.len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n < 0) { /* the reader is gone: what is held and what comes is discarded */
        n = (ssize_t)c->to_local.len;
        c->wr_dead = true;
    }
    strbuf_consume(&c->to_local, (size_t)n);
    grant(m, c, (uint32_t)n);
}

/* Half-closes and ends channels whose business is done. */
static void chan_settle(struct vmux *m, struct vmux_chan *c) {
    if (c->dead)
        return;
    bool flushed = !c->to_local.len || c->wr_dead;
    if (c->peer_closed && flushed)
        return chan_drop(m, c, false);
    if (c->peer_eof && flushed && !c->wr_shut && !c->wr_dead) {
        shutdown(c->fd, SHUT_WR);
        c->wr_shut = true;
    }
    if (c->local_eof && (c->wr_shut || c->wr_dead))
        chan_drop(m, c, true);
}

static short chan_events(const struct vmux *m, const struct vmux_chan *c) {
    short ev = 0;
    if (c->dead)
        return 0;
    if (!c->local_eof && !c->peer_closed && c->flow.send_credit && m->out.len < VMUX_OUT_HIGH)
        ev |= POLLIN;
    if (c->to_local.len && !c->wr_dead)
        ev |= POLLOUT;
    return ev;
}

/* ---- the loop ---- */

static void build_pollset(struct vmux *m) {
    m->pfd = xrealloc(m->pfd, (2 + m->nchans) * sizeof(*m->pfd));
    m->pfd[0] = (struct pollfd){.fd = m->cfg.stream,
                                .events = (m->out.len ? POLLOUT : 0) |
                                          (m->out.len < VMUX_OUT_MAX ? POLLIN : 0)};
    bool accepting = m->cfg.role == VMUX_HOST && vmux_channel_count(m) < VMUX_MAX_CHANNELS;
    m->pfd[1] = (struct pollfd){.fd = accepting ? m->cfg.listener : -1, .events = POLLIN};
    for (size_t i = 0; i < m->nchans; i++) {
        short ev = chan_events(m, m->chans[i]);
        m->pfd[2 + i] = (struct pollfd){.fd = ev ? m->chans[i]->fd : -1, .events = ev};
    }
}

/* Local reads and writes, starting at a rotating channel so that, with the queue to the
 * stream nearly full, no channel always comes last. */
static void serve_channels(struct vmux *m, size_t n) {
    for (size_t k = 0; k < n; k++) {
        size_t i = (m->rotate + k) % n;
        struct vmux_chan *c = m->chans[i];
        short rev = m->pfd[2 + i].revents;
        if (c->dead || !rev)
            continue;
        if (rev & (POLLOUT | POLLERR | POLLHUP))
            local_write(m, c);
        bool wanted = m->pfd[2 + i].events & POLLIN;
        if (!c->dead && wanted && (rev & (POLLIN | POLLERR | POLLHUP)) &&
            m->out.len < VMUX_OUT_HIGH)
            local_read(m, c);
    }
    m->rotate = n ? (m->rotate + 1) % n : 0;
}

int vmux_step(struct vmux *m, int timeout_ms) {
    build_pollset(m);
    size_t n = m->nchans; /* channels added during this step were not polled */
    struct timespec ts = {.tv_sec = timeout_ms / 1000, .tv_nsec = timeout_ms % 1000 * 1000000L};
    if (ppoll(m->pfd, 2 + n, timeout_ms < 0 ? NULL : &ts, m->cfg.wait_mask) < 0)
        return errno == EINTR ? 1 : -errno;
    int r = 0;
    short srev = m->pfd[0].revents;
    if (srev & (POLLIN | POLLHUP | POLLERR)) {
        if (m->pfd[0].events & POLLIN)
            r = stream_read(m);
        else if (srev & (POLLHUP | POLLERR)) /* not read while the queue is full */
            m->stream_eof = true;
    }
    if (r == 0 && (m->pfd[1].revents & POLLIN))
        accept_all(m);
    if (r == 0)
        serve_channels(m, n);
    if (m->stream_eof) /* last words (a reply just before power-off): what fits, goes */
        for (size_t i = 0; i < m->nchans; i++)
            local_write(m, m->chans[i]);
    for (size_t i = 0; i < m->nchans; i++)
        chan_settle(m, m->chans[i]);
    reap_dead(m);
    if (r == 0 && !m->stream_eof) /* at once: most often the stream takes it all */
        r = stream_flush(m);
    if (r < 0) {
        if (r != -EPROTO)
            log_error("vmux: stream: %s", strerror(-r));
        return r;
    }
    return m->stream_eof ? 0 : 1;
}

int vmux_run(struct vmux *m) {
    int r;
    while ((r = vmux_step(m, -1)) > 0)
        ;
    return r;
}
