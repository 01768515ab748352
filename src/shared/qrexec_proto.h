/* qrexec calls between clients and dispenserd's router, and between the router and the
 * agents' uplinks. One framing for both:
 *
 *   caller -> router: struct qrexec_request, then body_len bytes of body; with
 *                     QREXEC_F_FDS the first sendmsg carries SCM_RIGHTS with exactly three
 *                     descriptors, the service's stdin, stdout and stderr.
 *   router -> caller: struct qrexec_result once the service has ended or the call was
 *                     refused, followed by msg_len bytes of a human-readable reason.
 *
 * Body: NUL-terminated strings: target (as asked: a qube, "@dispvm", "@dispvm:T",
 * "@default", "dom0"), service (with "+argument" if any), user ("" or "DEFAULT": the
 * target's default_user), command (for qubes.VMShell: a command for sh -c instead of a
 * script on stdin; may be empty). The router honours user and command from dom0 only.
 *
 * Who the caller is comes from where the request arrives, never from its content: the
 * host socket (beside the Admin API socket, qrexec_locate.h; root and the socket group
 * only) is dom0; an agent's uplink is its qube.
 * Several calls may be in flight on one uplink; `id` pairs results with requests.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define QREXEC_MAGIC 0x51524531u /* "QRE1" */
#define QREXEC_MAX_BODY 65536
#define QREXEC_MAX_MSG 1024

enum qrexec_flags {
    QREXEC_F_FDS = 1u << 0,
    QREXEC_F_CANCEL = 1u << 2, /* agent -> router, no body, no descriptors: the caller of
                                * call `id` went away; a disposable made for it goes */
    QREXEC_F_PTY = 1u << 1,    /* the service gets a terminal allocated in the qube; the third
                             * descriptor carries struct winsize records to it (host calls
                             * only: a qube's call with it is refused) */
    QREXEC_F_COPY = 1u << 3,   /* agent -> router on an AGENT_F_COPY uplink: no descriptors;
                                * the stdio flow over an AGENT_REQ_UPCALL_IO connection */
};

struct qrexec_request {
    uint32_t magic;
    uint32_t id;
    uint32_t flags;
    uint32_t body_len;
};

enum qrexec_result_kind {
    QREXEC_EXITED = 0,   /* status: the service's exit code */
    QREXEC_SIGNALED = 1, /* status: signal number */
    QREXEC_REFUSED = 2,  /* denied by policy, no such target, bad request */
    QREXEC_FAILED = 3,   /* the target could not be started or the service run */
};

struct qrexec_result {
    uint32_t magic;
    uint32_t id;
    uint32_t kind;
    int32_t status;
    uint32_t msg_len;
};

struct qrexec_call_body {
    const char *target, *service, *user, *command;
};

long qrexec_body_encode(const struct qrexec_call_body *b, char *buf, size_t size);
int qrexec_body_decode(char *buf, size_t len, struct qrexec_call_body *out);

/* Whether a descriptor from the host may be handed to a qube as it is: a pipe or FIFO, a
 * regular file, /dev/null. Not a terminal (stty, TIOCSTI would act on the host's), a
 * socket or another device: host tools relay those through pipes, and the router
 * refuses them from the host socket. */
bool qrexec_fd_may_cross(int fd);

/* "service+arg" -> service and argument (argument "" when there is no '+'). Returns -1 if
 * the name is not [A-Za-z0-9._-]+ or the argument not [A-Za-z0-9._+-]* */
int qrexec_split_service(const char *full, char *service, size_t ssize, char *arg, size_t asize);
