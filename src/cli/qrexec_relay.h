/* The host end of a call's streams. A qube is handed only descriptors that cannot reach
 * back into the host (qrexec_fd_may_cross): pipes (FIFOs), regular files the caller
 * redirected, /dev/null.
 * Anything else the caller's stdio is (a terminal, a socket, another device) stays here
 * and a relay process copies between it and pipes of its own; the relay also filters
 * escape sequences (qrexec-client -t/-T), sends the prefix before stdin (-p), and for a
 * terminal in the qube (--tty) sends window-size records. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct relay_spec {
    int host[3];        /* what the service would get: stdin, stdout, stderr */
    bool filter[3];     /* [1], [2]: replace escape characters in that output */
    const char *prefix; /* sent before stdin (may be NULL) */
    size_t prefix_len;
    bool pty;        /* slot 2 carries struct winsize records to the qube, not stderr;
                       * every slot is relayed */
    int winsize_tty; /* with pty: the host terminal whose size is sent, or -1 */
};

struct relay {
    pid_t pid; /* 0: nothing relayed */
    int ctl;   /* a byte written here: the call has ended, drain and stop */
};

/* Closes every descriptor >= from except those in keep (for our helper processes). */
void close_fds_except(int from, const int *keep, size_t n);

/* Replaces every slot of svc (initially s->host) that must not cross with a pipe end
 * and starts the relay when there is one; owned[i] is set for the pipe ends (closed by
 * the caller once handed over). -1 on failure (errno), nothing started. */
int relay_start(const struct relay_spec *s, int svc[3], bool owned[3], struct relay *r);
/* The call has ended: what the service wrote is in the pipes; the relay drains it to
 * the host and exits. Waits for it. */
void relay_finish(struct relay *r);
/* The call could not be made: stop at once. */
void relay_abort(struct relay *r);
