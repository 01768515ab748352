/* Host side of agent_proto.h: connect to a qube's agent, send one request (optionally
 * with the caller's stdio as descriptors), relay the copy path, read the reply.
 * Functions return 0 / a descriptor on success and -errno on failure. */
#pragma once
#include <stdbool.h>
#include <poll.h>

#include "agent_proto.h"
#include "frames.h"

int agent_client_connect(const char *socket_path);
/* stdio: three descriptors sent with SCM_RIGHTS (AGENT_F_FDS), or NULL for the copy path. */
int agent_client_send(int sock, enum agent_request_type type, const struct agent_request_body *body,
                      const int stdio[3]);
/* The same with more request flags (AGENT_F_PTY). */
int agent_client_send_flags(int sock, enum agent_request_type type,
                            const struct agent_request_body *body, const int stdio[3],
                            uint16_t flags);
/* Blocking read of the reply (descriptor path, WAIT_READY, SHUTDOWN). */
int agent_client_read_reply(int sock, struct agent_reply *reply);

/* Copy path, as a state machine so an event loop can drive it: ask agent_relay_events()
 * what to poll for, call agent_relay_step() when any descriptor is ready, until it
 * returns 1 (reply received). `in` is read and framed as stream 0; stream 1 and 2
 * frames are written to `out` and `err`. Those may be blocking or not. */
enum { RELAY_SOCK, RELAY_IN, RELAY_OUT, RELAY_ERR, RELAY_NFDS };

struct agent_relay {
    int fd[RELAY_NFDS];
    struct frame_demux from_agent;
    struct strbuf to_agent;
    bool in_eof, out_blocked;
    struct agent_reply reply;
};

void agent_relay_init(struct agent_relay *r, int sock, int in, int out, int err);
void agent_relay_free(struct agent_relay *r);
/* Fills pfd[RELAY_NFDS] (fd -1 where nothing is wanted). */
void agent_relay_events(const struct agent_relay *r, struct pollfd pfd[RELAY_NFDS]);
/* 0 to continue, 1 done (r->reply valid), -errno on failure. */
int agent_relay_step(struct agent_relay *r, const struct pollfd pfd[RELAY_NFDS]);
/* Blocking poll loop around the two above. */
int agent_relay_run(struct agent_relay *r, struct agent_reply *reply);

/* Whole call: connect, send, relay or wait, reply. */
int agent_client_call(const char *socket_path, enum agent_request_type type,
                      const struct agent_request_body *body, bool pass_fds, const int stdio[3],
                      struct agent_reply *reply);
