/* The protocol between the host (dispenserd, tools) and the agent inside a qube.
 *
 * One request per connection to the agent's Unix socket, like qrexec:
 *   client -> agent: struct agent_request, then `body_len` bytes of body.
 *                    With AGENT_F_FDS, the first sendmsg carries SCM_RIGHTS with exactly
 *                    three descriptors: the service's stdin, stdout and stderr. The daemon
 *                    never touches the data then (container engine).
 *                    Without it the connection itself carries the data, framed as
 *                    struct agent_frame + payload in both directions (engines that cannot
 *                    pass descriptors, e.g. a VM's virtio-serial).
 *   agent -> client: struct agent_reply once the service has ended (or could not start).
 * Body: NUL-terminated strings in this order:
 *   service, argument, source (remote domain), requested target, user, command
 * (command: for qubes.VMShell a command for `sh -c` instead of a script on stdin; for
 * qubes.VMExec the encoded argv travels in the argument, as in Qubes).
 * All integers are in host byte order: both ends run on the same machine.
 */
#pragma once
#include <stddef.h>
#include <stdint.h>

#define AGENT_MAGIC 0x44535031u /* "DSP1" */
#define AGENT_MAX_BODY 65536

enum agent_request_type {
    AGENT_REQ_EXEC = 1,       /* run a service (qubes.VMShell, qubes.VMExec, /etc/qubes-rpc/...) */
    AGENT_REQ_WAIT_READY = 2, /* reply once start-up is complete (qubes.WaitForRunningSystem) */
    AGENT_REQ_SHUTDOWN = 3,   /* orderly power-off: TERM every process, then exit */
    AGENT_REQ_UPLINK = 4,     /* the daemon's qrexec router: this connection becomes the
                              * agent's uplink. From then on the agent sends the calls made
                              * inside the qube (qrexec-client-vm) up it as qrexec_request
                              * (+ SCM_RIGHTS), and the daemon answers each with a
                              * qrexec_result (qrexec_proto.h). No agent_reply is sent.
                              * A newer uplink replaces an older one (daemon restart).
                              * With AGENT_F_COPY the connection cannot carry descriptors
                              * (a VM's stream): calls come up with QREXEC_F_COPY and none,
                              * and each call's stdio flow over an AGENT_REQ_UPCALL_IO. */
    AGENT_REQ_REFRESH = 5,    /* a VM restored from a saved one (a clone) becomes itself:
                              * body strings service = its name (hostname, DISPENSER_QUBE),
                              * argument = its machine-id (32 hex digits), command = fresh
                              * host entropy as hex (credited to the RNG, which is then
                              * reseeded), user = the host's time (seconds.nanoseconds).
                              * Only the engine sends it: the router only sends EXEC. */
    AGENT_REQ_UPCALL_IO = 6,  /* the daemon's data connection for a QREXEC_F_COPY call; the
                              * body's argument is the call's id (decimal). The agent
                              * answers agent_reply EXITED 0 once it relays the caller's
                              * stdio on it (else REFUSED, ENOENT: no such call waiting),
                              * then stream 0 (the caller's stdin) goes up as frames and
                              * streams 1 and 2 come down, ended by the daemon's
                              * agent_reply once the service has ended. The call's result
                              * still comes on the uplink; the agent hands it to the caller
                              * after its output is all out. */
};

/* Inside every qube the agent also listens on this path for qrexec-client-vm; the agent
 * binary is there too, read-only, for qubes to run as qrexec-client-vm. */
#define AGENT_QREXEC_SOCKET "/run/dispenser/qrexec.sock"
#define AGENT_BIN_DIR "/run/dispenser/bin"

enum agent_request_flags {
    AGENT_F_FDS = 1u << 0,  /* stdio passed as descriptors (SCM_RIGHTS) */
    AGENT_F_PTY = 1u << 1,  /* with AGENT_F_FDS: the service runs on a terminal the agent
                            * allocates; stdin and stdout are relayed to and from it, and
                            * the third descriptor carries struct winsize records (the
                            * caller's window size, the first before the service starts) */
    AGENT_F_COPY = 1u << 2, /* with AGENT_REQ_UPLINK: no descriptors can cross (see there) */
};

struct agent_request {
    uint32_t magic;
    uint16_t type;
    uint16_t flags;
    uint32_t body_len;
};

enum agent_reply_kind {
    AGENT_EXITED = 0,       /* status: exit code */
    AGENT_SIGNALED = 1,     /* status: signal number */
    AGENT_START_FAILED = 2, /* status: errno; the service never ran */
    AGENT_REFUSED = 3,      /* status: errno; bad request (unknown service, bad user ...) */
};

struct agent_reply {
    uint32_t magic;
    uint32_t kind;
    int32_t status;
};

/* Copy-path framing (no AGENT_F_FDS). stream: 0 stdin (client->agent), 1 stdout, 2 stderr
 * (agent->client). A frame of length 0 is EOF on that stream. After the service ends the
 * agent sends the agent_reply with magic AGENT_MAGIC as usual. */
struct agent_frame {
    uint32_t stream;
    uint32_t len;
};
#define AGENT_FRAME_MAX 65536

struct agent_request_body {
    const char *service, *argument, *source, *target, *user, *command;
};

/* Encodes the body; returns its length, or -1 if it would exceed AGENT_MAX_BODY. */
long agent_body_encode(const struct agent_request_body *b, char *buf, size_t size);
/* Parses in place (buf must have len bytes of the six strings); -1 if malformed. */
int agent_body_decode(char *buf, size_t len, struct agent_request_body *out);
