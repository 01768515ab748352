#include "qrexec_client.h"
#include "unix_socket.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "config.h"
#include "fdpass.h"
#include "macro.h"
#include "strbuf.h"

/* One request per connection, so any id will do. */
#define CALL_ID 1u

/* The selected daemon's router (qrexec_locate.h). */
static int connect_router(void) { return qrexec_router_connect(); }

/* The descriptors ride on the first bytes (the header), as the router expects them
 * with the first sendmsg; the body follows with plain sends. */
static int send_header(int fd, const struct qrexec_request *hdr, const int stdio[3]) {
    ssize_t n = fdpass_send(fd, hdr, sizeof(*hdr), stdio, stdio ? 3 : 0, 0);
    if (n < 0)
        return (int)n;
    return (size_t)n == sizeof(*hdr) ? 0 : -EPIPE;
}

static int send_all(int fd, const char *data, size_t len) {
    while (len > 0) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

int qrexec_request_send(const struct qrexec_call_body *body, const int stdio[3], uint32_t flags) {
    _cleanup_free_ char *buf = xmalloc(QREXEC_MAX_BODY);
    long len = qrexec_body_encode(body, buf, QREXEC_MAX_BODY);
    if (len < 0)
        return -E2BIG;
    struct qrexec_request hdr = {.magic = QREXEC_MAGIC,
                                 .id = CALL_ID,
                                 .flags = flags | (stdio ? QREXEC_F_FDS : 0),
                                 .body_len = (uint32_t)len};
    _cleanup_close_ int fd = connect_router();
    if (fd < 0)
        return fd;
    int r = send_header(fd, &hdr, stdio);
    if (r == 0)
        r = send_all(fd, buf, (size_t)len);
    return r < 0 ? r : TAKE_FD(fd);
}

int qrexec_result_read(int fd, struct qrexec_result *res, char *msg, size_t msgsize) {
    char text[QREXEC_MAX_MSG + 1];
    if (msgsize > 0)
        msg[0] = '\0';
    int r = fd_read_exact(fd, res, sizeof(*res));
    if (r < 0)
        return r;
    /* the id is not checked: one request per connection leaves nothing to pair */
    if (res->magic != QREXEC_MAGIC || res->msg_len > QREXEC_MAX_MSG)
        return -EBADMSG;
    r = fd_read_exact(fd, text, res->msg_len);
    if (r < 0)
        return r == -ECONNRESET ? -EBADMSG : r;
    text[res->msg_len] = '\0';
    if (msgsize > 0)
        snprintf(msg, msgsize, "%s", text);
    return 0;
}

int qrexec_call(const char *target, const char *service, const char *user, const char *command,
                const int stdio[3], struct qrexec_result *res, char *msg, size_t msgsize) {
    struct qrexec_call_body body = {target, service, user, command};
    _cleanup_close_ int fd = qrexec_request_send(&body, stdio, 0);
    if (fd < 0)
        return fd;
    return qrexec_result_read(fd, res, msg, msgsize);
}
