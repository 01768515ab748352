/* A client of the QEMU Machine Protocol on a Unix socket: one connection per qube, kept
 * open. Commands are synchronous (QEMU answers `stop`/`cont` in ~0.5 ms) or sent without
 * waiting (qmp_send); events that arrive meanwhile or between commands, and the answers
 * to commands nobody waits for, are read and dropped (the engine learns of the
 * end of a qube from its process, not from events). */
#pragma once
#include <stddef.h>

#include "backend.h"

struct qmp {
    int fd;
    char buf[8192];
    size_t len;
    unsigned long next_id; /* every command carries an id: a reply is matched by it */
};

/* Connects, reads the greeting and leaves negotiation mode. -1 with err set. */
int qmp_open(struct qmp *q, const char *path, struct backend_why *why);
void qmp_close(struct qmp *q);
/* Runs `command` (arguments: a JSON object text, or NULL) and waits up to timeout_ms for
 * its answer. 0 on success (the "return" value's text in out, if out is given), -1 with
 * err set on an error answer, a timeout or a lost connection. */
int qmp_execute(struct qmp *q, const char *command, const char *arguments, int timeout_ms,
                char *out, size_t out_size, struct backend_why *why);
/* The same, passing a descriptor with the command (SCM_RIGHTS), as `getfd` wants. */
int qmp_execute_fd(struct qmp *q, const char *command, const char *arguments, int pass_fd,
                   int timeout_ms, char *out, size_t out_size, struct backend_why *why);
/* Sends a command and does not wait: its answer is dropped when it comes (an error
 * answer is logged). 0, or -1 with err set if the connection is gone. */
int qmp_send(struct qmp *q, const char *command, const char *arguments, struct backend_why *why);
/* Waits up to timeout_ms for the event whose (plain JSON) text contains both matches
 * (NULL: any), dropping other messages: 0, -ETIMEDOUT, or -EIO when the connection is
 * gone. timeout_ms 0 looks only at what QEMU has sent so far. */
int qmp_wait_event(struct qmp *q, const char *event, const char *match1, const char *match2,
                   int timeout_ms);
/* Reads and drops what is pending (events); -1 when the connection is gone. */
int qmp_drain(struct qmp *q);
