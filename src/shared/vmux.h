/* vmux: many connections over one byte stream (a VM's virtio-serial port).
 *
 * The host end listens on a Unix socket: each accepted connection becomes a channel,
 * opened with OPEN. The guest end answers each OPEN by connecting to a Unix socket (the
 * agent's). Bytes are bridged both ways; half-close travels as EOF, the end of a
 * connection as CLOSE. Neither end knows anything of the protocol spoken inside a
 * channel, so every client keeps "one request per connection" unchanged.
 *
 * Frame: a 12-byte header, all fields little-endian (the stream may cross an emulated
 * machine boundary, so no "host byte order" here), then `len` bytes of payload:
 *   u32 channel   (0 is never used; the host numbers channels 1, 2, ... never reusing one)
 *   u16 type      (enum vmux_type)
 *   u16 reserved  (0)
 *   u32 len       (DATA: 1..VMUX_MAX_PAYLOAD, CREDIT: 4, others: 0)
 *
 * Flow control: each end may have at most VMUX_WINDOW bytes of DATA on a channel that the
 * other end has not yet handed to its local socket. CREDIT (payload: u32 bytes) gives
 * back what was handed on. A slow reader on one channel thus stops only its own sender,
 * and the buffers of a channel never exceed the window. The stream itself is read as
 * long as the outgoing queue is below VMUX_OUT_MAX, which honest peers never reach.
 *
 * No descriptors cross: any SCM_RIGHTS a local peer sends is closed and logged.
 * Pure poll(), no threads, no glibc-only calls: the static musl agent compiles this in. */
#pragma once
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VMUX_HDR_SIZE 12
#define VMUX_MAX_PAYLOAD 65536
#define VMUX_WINDOW (256 * 1024)
#define VMUX_CREDIT_BATCH (VMUX_WINDOW / 4) /* grant back in batches: fewer frames */
#define VMUX_MAX_CHANNELS 1024
#define VMUX_OUT_HIGH (128 * 1024)     /* local sockets are read only below this */
#define VMUX_OUT_MAX (4 * 1024 * 1024) /* the stream is read only below this */

/* Where the agent's mux looks by default inside a VM (the boot side may say otherwise). */
#define VMUX_GUEST_PORT "/dev/virtio-ports/dispenser.agent"
#define VMUX_GUEST_AGENT_SOCKET "/run/dispenser/agent.sock"

enum vmux_type {
    VMUX_OPEN = 1,   /* host -> guest: a new connection on this channel */
    VMUX_DATA = 2,   /* payload bytes of the channel */
    VMUX_EOF = 3,    /* the sender's side read EOF: no more DATA from it (half-close) */
    VMUX_CLOSE = 4,  /* the sender dropped the channel: nothing more in either direction;
                      * also the guest's refusal of an OPEN it could not connect */
    VMUX_CREDIT = 5, /* payload u32: that many more bytes may be sent on the channel */
};

struct vmux_hdr {
    uint32_t channel;
    uint16_t type;
    uint16_t reserved;
    uint32_t len;
};

/* Frame codec. */
void vmux_hdr_encode(unsigned char out[VMUX_HDR_SIZE], const struct vmux_hdr *h);
void vmux_hdr_decode(const unsigned char in[VMUX_HDR_SIZE], struct vmux_hdr *h);
/* 0 if the header is well-formed (known type, length allowed for it), else -EPROTO. */
int vmux_hdr_check(const struct vmux_hdr *h);
/* The frame at the front of buf: its total size (header + payload) with *h filled, 0 if
 * more bytes are needed, -EPROTO if malformed. */
long vmux_frame_parse(const void *buf, size_t len, struct vmux_hdr *h);
/* Appends one frame to *out (a struct strbuf *; void here to keep this header light). */
void vmux_frame_put(void *out, uint32_t channel, uint16_t type, const void *payload, uint32_t len);

/* Flow control of one channel, both directions. */
struct vmux_flow {
    uint32_t send_credit; /* bytes we may still send */
    uint32_t recv_held;   /* received, not yet given back by CREDIT */
    uint32_t consumed;    /* handed on locally, not yet given back */
};

void vmux_flow_init(struct vmux_flow *f);
/* How much of `want` may be sent now. */
uint32_t vmux_flow_sendable(const struct vmux_flow *f, size_t want);
void vmux_flow_sent(struct vmux_flow *f, uint32_t n);
/* DATA of n bytes came: -EPROTO if the peer overran the window. */
int vmux_flow_received(struct vmux_flow *f, uint32_t n);
/* n bytes were handed on (or discarded): the credit to send back now, 0 to wait for more
 * (grants go in batches of VMUX_CREDIT_BATCH). */
uint32_t vmux_flow_consumed(struct vmux_flow *f, uint32_t n);
/* CREDIT of n came: -EPROTO if it gives back more than was sent. */
int vmux_flow_granted(struct vmux_flow *f, uint32_t n);

/* The multiplexer. */
enum vmux_role {
    VMUX_HOST,  /* accepts on `listener`, opens channels */
    VMUX_GUEST, /* connects to `target` for each OPEN */
};

struct vmux_config {
    enum vmux_role role;
    int stream;         /* the byte stream; made non-blocking; not closed by vmux_free */
    int listener;       /* HOST: a listening socket (non-blocking); not closed either */
    const char *target; /* GUEST: the Unix socket each channel connects to */
    /* If set, the signal mask while waiting (ppoll): a caller that blocks a signal
     * elsewhere sees it only there, as EINTR, and cannot miss it just before a wait. */
    const sigset_t *wait_mask;
};

struct vmux;

struct vmux *vmux_new(const struct vmux_config *cfg);
/* One poll() round (timeout_ms as poll's): 1 to go on, 0 when the stream has ended,
 * -errno when it failed or the peer broke the protocol (logged). EINTR returns 1. */
int vmux_step(struct vmux *m, int timeout_ms);
/* vmux_step until the stream ends: 0, or -errno. */
int vmux_run(struct vmux *m);
/* Closes every channel's connection. */
void vmux_free(struct vmux *m);

/* For tests and logs: open channels, and the bytes held in buffers. */
size_t vmux_channel_count(const struct vmux *m);
size_t vmux_buffered(const struct vmux *m);
