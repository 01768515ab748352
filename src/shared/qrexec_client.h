/* Caller side of the router socket (qrexec_proto.h): used by qrexec-client, qvm-run and
 * the file tools on the host, where every call comes from dom0. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "qrexec_locate.h"
#include "qrexec_proto.h"

/* Connects and sends one request; stdio (stdin, stdout, stderr) are handed to the router
 * with SCM_RIGHTS; flags: QREXEC_F_PTY or 0 (QREXEC_F_FDS is added with stdio). Returns
 * the connection to read the result from, or -errno (see qrexec_connect_strerror). */
int qrexec_request_send(const struct qrexec_call_body *body, const int stdio[3], uint32_t flags);

/* Reads the result for a request sent on fd; msg receives the router's reason (NUL-
 * terminated, truncated to msgsize). Returns 0, -EBADMSG for a malformed result or
 * -ECONNRESET when the router hung up without one. */
int qrexec_result_read(int fd, struct qrexec_result *res, char *msg, size_t msgsize);

/* Send + wait: the whole call. Returns 0 once a result was received, else -errno. */
int qrexec_call(const char *target, const char *service, const char *user, const char *command,
                const int stdio[3], struct qrexec_result *res, char *msg, size_t msgsize);
