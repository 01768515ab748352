/* The copy path's framing (struct agent_frame), shared by the agent and its clients:
 * a demultiplexer that delivers received payload to one descriptor per stream with
 * back-pressure, and a multiplexer that reads a descriptor into outgoing frames. Both
 * work on non-blocking and blocking descriptors alike. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "agent_proto.h"
#include "strbuf.h"

enum frame_event {
    FRAME_NEED_MORE, /* everything buffered was delivered: read more from the peer */
    FRAME_BLOCKED,   /* the destination of the current frame would block: wait POLLOUT */
    FRAME_EOF,       /* stream `stream` ended (frame of length 0) */
    FRAME_REPLY,     /* an agent_reply is at the front: taken into `reply` */
    FRAME_BAD,       /* protocol violation (unknown stream, oversized frame) */
};

struct frame_demux {
    struct strbuf in; /* received, not yet delivered */
    int dest[3];      /* where each stream's payload goes; -1 = refused, -2 = discard */
    bool in_payload;
    uint32_t stream, left;
    uint32_t ev_stream;       /* with FRAME_EOF */
    struct agent_reply reply; /* with FRAME_REPLY */
};

void frame_demux_init(struct frame_demux *d, int dest0, int dest1, int dest2);
void frame_demux_free(struct frame_demux *d);
/* Reads once from sock into the buffer: >0 bytes, 0 on EOF, -EAGAIN, -errno. */
int frame_demux_fill(struct frame_demux *d, int sock);
/* Delivers as much as possible; see enum frame_event. A destination failing with EPIPE
 * (reader gone) is switched to discard, as qrexec does. */
enum frame_event frame_demux_run(struct frame_demux *d);

/* Reads up to AGENT_FRAME_MAX bytes from fd and appends them to out as one frame of
 * `stream`; on EOF appends the EOF frame. >0 bytes, 0 on EOF, -EAGAIN, -errno. */
int frame_mux_read(struct strbuf *out, uint32_t stream, int fd);
void frame_mux_eof(struct strbuf *out, uint32_t stream);
/* Sends what is buffered (MSG_NOSIGNAL). 0 when all went, -EAGAIN, -errno. */
int frame_flush(struct strbuf *out, int sock);
