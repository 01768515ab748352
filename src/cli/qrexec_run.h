/* One service call from a host tool through the router: wiring the caller's stdio (or
 * /dev/null, a local program, or a prefix sent before stdin) and turning the result into
 * the exit status upstream's qrexec-client gives. Shared by qrexec-client, qvm-run,
 * qvm-copy-to-vm and qvm-open-in-dvm. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include "qrexec_client.h"
#include "qrexec_relay.h"
#include "tty_guard.h"

/* Upstream's codes (qubes-core-qrexec libqrexec/qrexec.h). */
#define QRUN_EXIT_PROBLEM 125
#define QRUN_EXIT_REFUSED 126
#define QRUN_EXIT_NOT_FOUND 127

struct qrun_opts {
    const char *target, *service, *user, *command;
    const char *prefix; /* bytes the service reads before our stdin (may be NULL) */
    size_t prefix_len;
    const char *localcmd;        /* "sh -c" program wired to the service's stdin and stdout */
    bool null_io;                /* /dev/null for all three streams */
    int fds[3];                  /* stdin, stdout, stderr to hand over; -1 = ours */
    bool filter_out, filter_err; /* escape filtering (qrexec-client -t, -T) */
    bool pty;                    /* a terminal in the qube; ours (if stdin is one) goes raw */
};
#define QRUN_OPTS_INIT        \
    {                         \
        .fds = { -1, -1, -1 } \
    }

/* A call in flight: the router connection and our helper processes. */
struct qrun {
    int sock;
    struct relay relay;     /* copies between our stdio and the service's pipes */
    struct tty_guard guard; /* --tty: our terminal, raw until the end */
    pid_t local;            /* the local program */
};

/* Sends the request. On failure returns -1 with a message in err. */
int qrun_start(const struct qrun_opts *o, struct qrun *q, char *err, size_t errsize);
/* Waits for the result and the helpers; returns the exit status to use. msg receives the
 * router's reason when the call was refused or failed, or the transport error. kind is set
 * to the result kind, or -1 for a transport error. */
int qrun_wait(struct qrun *q, int *kind, char *msg, size_t msgsize);
/* Lets a detached child wait for the result (upstream qrexec-client -e: return once the
 * command is sent) and forgets the call. */
void qrun_detach(struct qrun *q);

/* Exit status for a result: the service's own, 128+N for a signal, 126/125 otherwise. */
int qrun_exit_code(const struct qrexec_result *r);

/* Start + wait; a refusal or failure is reported as "PROG: [Request refused: ]MSG". */
int qrun_call(const struct qrun_opts *o);
